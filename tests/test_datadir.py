"""The data folder (bot.datadir): one instance per folder, private modes, one-line refusals."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.datadir import DataDirError, prepare_data_dir

ROOT = Path(__file__).resolve().parent.parent

# Another process asks for the folder: it prints the refusal and exits 3, or says "granted"
# and then holds the lock until its stdin closes.
OTHER_INSTANCE = """
import sys
from pathlib import Path
from bot.datadir import DataDirError, prepare_data_dir
try:
    lock = prepare_data_dir(Path(sys.argv[1]))
except DataDirError as error:
    print(error, flush=True)
    sys.exit(3)
print("granted", flush=True)
sys.stdin.read()
"""


def other_instance(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", OTHER_INSTANCE, str(folder)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def ask_from_another_process(folder: Path) -> tuple[int, str]:
    """The other process's exit status and line, once it has let the folder go again."""
    process = other_instance(folder)
    out, _ = process.communicate("", timeout=30)
    return process.returncode, out.strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def umask_0() -> Iterator[None]:
    """No umask to hide a missing mode: what is not set explicitly comes out 0777 or 0666."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_a_second_instance_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    lock = prepare_data_dir(folder)
    status, line = ask_from_another_process(folder)
    assert status == 3
    assert line == (
        f"another instance of stylize-bot is already using STYLIZE_DATA_DIR={folder} "
        f"(lock {folder / '.lock'}); stop it first"
    )
    lock.release()
    lock.release()  # a second release does nothing
    assert ask_from_another_process(folder) == (0, "granted")
    with prepare_data_dir(folder) as again:
        assert again.held
    assert not again.held


def test_a_crashed_instance_leaves_no_stale_lock(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    process = other_instance(folder)
    assert process.stdout is not None
    try:
        assert process.stdout.readline().strip() == "granted"
        with pytest.raises(DataDirError, match="another instance"):
            prepare_data_dir(folder)
    finally:
        process.kill()
        process.communicate(timeout=30)
    prepare_data_dir(folder).release()


def test_a_missing_folder_is_made_private_with_its_parents(tmp_path: Path, umask_0: None) -> None:
    folder = tmp_path / "new" / "deeper" / "data"
    with prepare_data_dir(folder):
        for made in (tmp_path / "new", tmp_path / "new" / "deeper", folder):
            assert mode(made) == 0o700, made
        assert mode(folder / ".lock") == 0o600
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # the probe is gone


def test_an_open_folder_from_an_older_bot_is_tightened_once(
    tmp_path: Path, umask_0: None, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "data"
    job = folder / "jobs" / ("a" * 32)
    style = folder / "styles" / "7"
    for made in (job, style):
        made.mkdir(mode=0o755, parents=True)
    own_files = [
        folder / "jobs.sqlite3",
        folder / "jobs.sqlite3-wal",
        folder / "jobs.sqlite3-shm",
        job / "content",
        job / "result.png",
        style / "x.image",
    ]
    for file in [*own_files, folder / "operator-notes.txt"]:
        file.write_bytes(b"x")
        file.chmod(0o644)
    folder.chmod(0o755)

    with caplog.at_level(logging.INFO, logger="bot.datadir"):
        prepare_data_dir(folder).release()
    for made in (folder, folder / "jobs", job, folder / "styles", style):
        assert mode(made) == 0o700, made
    for file in own_files:
        assert mode(file) == 0o600, file
    assert mode(folder / "operator-notes.txt") == 0o644  # not the bot's to change
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert f"STYLIZE_DATA_DIR={folder}" in record.getMessage()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bot.datadir"):
        prepare_data_dir(folder).release()
    assert caplog.records == []  # private already: nothing to say


def make_file(tmp_path: Path) -> Path:
    (tmp_path / "data").write_text("x")
    return tmp_path / "data"


def make_below_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "data"


def make_read_only(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir(mode=0o500)
    try:
        (tmp_path / "data" / "probe").touch()
    except PermissionError:
        return tmp_path / "data"
    pytest.skip("this user writes in read-only folders (root with CAP_DAC_OVERRIDE)")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (make_file, "is not a folder"),
        (make_below_a_file, "cannot be created (Not a directory)"),
        (make_read_only, "is not writable (Permission denied)"),
    ],
)
def test_a_folder_that_cannot_be_used_is_refused_in_one_line(
    tmp_path: Path, make: Callable[[Path], Path], problem: str
) -> None:
    folder = make(tmp_path)
    with pytest.raises(DataDirError) as caught:
        prepare_data_dir(folder)
    assert str(caught.value) == f"STYLIZE_DATA_DIR={folder} {problem}"
