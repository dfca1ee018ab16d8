"""The data folder (``STYLIZE_DATA_DIR``): made ready, made private and locked before start-up.

Two bots on one data folder would both resume the same jobs and deliver every result twice,
so the folder is held by one process at a time: an exclusive ``flock`` on ``.lock`` inside
it, kept for the life of the process. The operating system drops the lock when the process
dies, however it dies, so a crash never leaves a stale lock behind.

The folder holds members' photos and the interaction tokens in the journal: it is the bot
user's alone (0700 folders, 0600 files), and a folder left readable by others from an older
version is tightened on the way in.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from pathlib import Path
from types import TracebackType

from bot.journal import (
    DB_SIDE_FILES,
    FILE_MODE,
    FILENAME,
    FILES_DIR,
    FOLDER_MODE,
    STYLES_DIR,
    make_private_folder,
)

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# What the bot itself writes in the folder: only these are tightened, never an operator's
# own files that happen to sit beside them.
_OWN_FILES = (LOCK_FILE, FILENAME, *(FILENAME + suffix for suffix in DB_SIDE_FILES))
_OWN_FOLDERS = (FILES_DIR, STYLES_DIR)


class DataDirError(Exception):
    """The data folder cannot be used; ``str()`` is one line that says what to fix."""


class DataDirLock:
    """This process's hold on a data folder; ``release()`` (or leaving ``with``) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        """The data folder."""
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let another instance have the folder. A second call does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"DataDirLock({str(self.path)!r}, held={self.held})"


def prepare_data_dir(path: Path) -> DataDirLock:
    """Create the data folder if missing, check that it can be written, take this process's
    lock on it and make it private. Raises ``DataDirError``."""
    folder = path.absolute()
    where = f"STYLIZE_DATA_DIR={folder}"
    try:
        missing = not folder.exists()
        if missing:
            make_private_folder(folder)
    except OSError as error:
        raise DataDirError(f"{where} cannot be created ({_reason(error)})") from None
    if missing:
        log.info("created the data folder %s", folder)
    elif not folder.is_dir():
        raise DataDirError(f"{where} is not a folder")
    _check_writable(folder, where)
    lock = _lock(folder, where)
    try:
        _make_private(folder, where)
    except BaseException:
        lock.release()
        raise
    return lock


def _check_writable(folder: Path, where: str) -> None:
    # os.access answers for the real uid and ignores read-only mounts: try a real write.
    probe = folder / f".probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise DataDirError(f"{where} is not writable ({_reason(error)})") from None


def _lock(folder: Path, where: str) -> DataDirLock:
    lock_path = folder / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as error:
        raise DataDirError(
            f"{where}: cannot open its lock file {lock_path} ({_reason(error)})"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirError(
            f"another instance of stylize-bot is already using {where} (lock {lock_path}); "
            "stop it first"
        ) from None
    except OSError as error:  # ENOLCK: a file system without locks
        os.close(fd)
        raise DataDirError(
            f"{where}: cannot lock {lock_path} ({_reason(error)}); it must be on a local "
            "file system"
        ) from None
    return DataDirLock(folder, fd)


def _make_private(folder: Path, where: str) -> None:
    try:
        # The folder itself may be a symbolic link to the real one: that is the one to close.
        tightened = _tighten(folder.resolve(), FOLDER_MODE)
        for name in _OWN_FILES:
            tightened += _tighten(folder / name, FILE_MODE)
        for name in _OWN_FOLDERS:
            for root, folders, files in os.walk(folder / name):
                tightened += _tighten(Path(root), FOLDER_MODE)
                tightened += sum(_tighten(Path(root, file), FILE_MODE) for file in files)
                folders[:] = [f for f in folders if not Path(root, f).is_symlink()]
    except OSError as error:
        raise DataDirError(f"{where} cannot be made private ({_reason(error)})") from None
    if tightened:
        log.warning(
            "%s was readable by other users: made %d of its files and folders private "
            "(folders 0700, files 0600)",
            where,
            tightened,
        )


def _tighten(path: Path, mode: int) -> int:
    """1 if ``path`` let its group or others in and now does not; 0 if it was private already,
    is missing or is a symbolic link (whose target is not ours to change)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
        return 0
    os.chmod(path, mode)
    return 1


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
