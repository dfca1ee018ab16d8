"""The job journal: every accepted job as a durable record, in SQLite, with its files beside it.

The journal, not process memory, is the truth about jobs. A job is a row in
``$STYLIZE_DATA_DIR/jobs.sqlite3`` (WAL mode) before its user is told it is queued, and its
inputs and result are files in ``$STYLIZE_DATA_DIR/jobs/<job id>/``. After a crash or a
restart, the rows that are not finished are the jobs to resume, and the pending rows of the
outbox are the results and notices still to deliver.

Every call runs on one dedicated thread that owns the SQLite connection: the event loop never
waits on the disk, and the writes happen in the order they were made. ``PRAGMA user_version``
holds the schema version; ``MIGRATIONS`` brings an older file up to date at open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import enum
import functools
import json
import logging
import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

# SQLite's primary result codes (the sqlite3 module names them only from Python 3.11 on).
SQLITE_BUSY = 5
SQLITE_READONLY = 8

log = logging.getLogger(__name__)

T = TypeVar("T")

FILENAME = "jobs.sqlite3"
FILES_DIR = "jobs"
STYLES_DIR = "styles"
PICKS_DIR = "picks"
DB_SIDE_FILES = ("-wal", "-shm", "-journal")
"""Suffixes of the files SQLite keeps beside the database."""

# Members' photos and interaction tokens: readable by the bot's user alone, whatever the umask.
FOLDER_MODE = 0o700
FILE_MODE = 0o600

BUSY_TIMEOUT = 5.0
"""Seconds to wait for another connection's write lock before calling the journal busy."""

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
UNFINISHED: tuple[JobState, ...] = ("queued", "running")
OutboxKind = Literal["result", "notice", "status"]
"""What an outbox item delivers: the result; a notice (shown on the status message, or posted
if that is gone); or a final status (shown on the status message only)."""
OutboxState = Literal["pending", "delivered", "failed"]
SpoilerMode = Literal["off", "always", "outside_nsfw"]
"""When a server's results are posted as spoilers: never, always, or outside NSFW channels."""
SPOILER_MODES: tuple[SpoilerMode, ...] = ("off", "always", "outside_nsfw")
FORMER_MEMBER = 0
"""``styles.added_by`` of a style whose member asked the bot to forget them."""
DAY_SECONDS = 86400

ORPHAN_AGE = 3600.0
"""Seconds after which a job folder without a row (a crash between the two writes) is removed."""

# Each entry brings the schema from version i to i + 1. Never edit one that has shipped: add
# the next instead.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL,
        guild_id INTEGER,
        channel_id INTEGER NOT NULL,
        application_id INTEGER NOT NULL,
        interaction_id INTEGER NOT NULL,
        interaction_token TEXT NOT NULL,
        token_expires_at REAL NOT NULL,
        status_message_id INTEGER,
        status_in_channel INTEGER NOT NULL DEFAULT 0,
        upload_limit INTEGER NOT NULL,
        settings TEXT NOT NULL,
        seed INTEGER NOT NULL,
        style_count INTEGER NOT NULL,
        state TEXT NOT NULL,
        queue_rank INTEGER,
        runs INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        updated_at REAL NOT NULL,
        result_format TEXT,
        result_stats TEXT,
        outcome TEXT
    );
    CREATE INDEX jobs_by_state ON jobs (state, seq);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        text TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        message_id INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX outbox_by_state ON outbox (state, next_at);
    """,
    # 2: a follow-up job (Re-roll, Stronger, Weaker) records the job it derives from and how.
    """
    ALTER TABLE jobs ADD COLUMN parent_id TEXT;
    ALTER TABLE jobs ADD COLUMN derivation TEXT;
    """,
    # 3: each server's gallery of saved styles (the images are files in styles/<guild id>/).
    """
    CREATE TABLE styles (
        guild_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        file TEXT NOT NULL,
        size INTEGER NOT NULL,
        added_by INTEGER NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (guild_id, name_key)
    );
    """,
    # 4: the languages a job speaks: its member's (replies to them) and its server's (posts in
    # the channel once the interaction expired). The outbox keeps a text as its message and
    # arguments (bot.messages.Text, JSON), written out in the language of the route it takes;
    # a text kept before is wrapped as already written.
    """
    ALTER TABLE jobs ADD COLUMN locale TEXT NOT NULL DEFAULT 'en-US';
    ALTER TABLE jobs ADD COLUMN guild_locale TEXT;
    UPDATE outbox SET text = json_object('text', 'verbatim', 'args', json_object('text', text))
        WHERE text != '';
    """,
    # 5: each server's policy (where the bot works, per-role daily quotas and size caps,
    # blocked members, spoilers), the jobs each member started per UTC day (the quota's count,
    # kept across restarts), and per job: whether its result is a spoiler, and whether it was
    # deleted (its files gone, its row kept so that a later follow-up click can say so).
    """
    CREATE TABLE server_policy (
        guild_id INTEGER PRIMARY KEY,
        channels TEXT NOT NULL DEFAULT '[]',
        spoiler TEXT NOT NULL DEFAULT 'off',
        updated_at REAL NOT NULL
    );
    CREATE TABLE role_limits (
        guild_id INTEGER NOT NULL,
        role_id INTEGER NOT NULL,
        daily INTEGER,
        max_size INTEGER,
        PRIMARY KEY (guild_id, role_id)
    );
    CREATE TABLE blocked_members (
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    );
    CREATE TABLE daily_usage (
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        day INTEGER NOT NULL,
        jobs INTEGER NOT NULL,
        PRIMARY KEY (guild_id, user_id, day)
    );
    CREATE INDEX jobs_by_user ON jobs (user_id, guild_id);
    ALTER TABLE jobs ADD COLUMN spoiler INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN deleted_at REAL;
    """,
    # 6: more ways to a picture. A job made from a message's image in the Apps menu records
    # where it came from (`origin`, JSON); a Bigger job starts from an earlier result, kept as
    # the file `initial` beside its inputs (`has_initial`); and a photo waits in `picks` (its
    # file is picks/<id>.photo) until its member picks a saved style for it.
    """
    ALTER TABLE jobs ADD COLUMN origin TEXT;
    ALTER TABLE jobs ADD COLUMN has_initial INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE picks (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL,
        guild_id INTEGER,
        origin TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class JournalError(Exception):
    """The journal cannot be used; ``str()`` is one line that says what to fix."""


class Connect(Protocol):
    """Opens the SQLite connection, called as ``sqlite3.connect`` is (which it defaults to)."""

    def __call__(
        self, database: str, *, timeout: float, isolation_level: None, check_same_thread: bool
    ) -> sqlite3.Connection: ...


@dataclass(frozen=True)
class Conversation:
    """Where a job's messages go: the interaction while its token lives, else the channel."""

    user_id: int
    guild_id: int | None
    channel_id: int
    application_id: int
    interaction_id: int
    interaction_token: str
    token_expires_at: float
    """Wall-clock time (``time.time()``) after which the token is no longer used."""
    upload_limit: int
    locale: str = "en-US"
    """The member's language (Discord's code): replies to them use it."""
    guild_locale: str | None = None
    """The server's language: posts in its channel after the interaction expired use it."""

    def __repr__(self) -> str:
        # The token is a credential for 15 minutes: keep it out of every log line.
        return (
            f"Conversation(user_id={self.user_id}, channel_id={self.channel_id}, "
            f"interaction_id={self.interaction_id})"
        )


@dataclass(frozen=True)
class StatusMessage:
    """The message that shows a job's state."""

    id: int
    in_channel: bool = False
    """Posted with the bot token in the channel (after the interaction's token died), rather
    than the interaction's own response: only the bot token can edit it then."""


@dataclass(frozen=True)
class NewJob:
    id: str
    conversation: Conversation
    settings: dict[str, Any]
    """``StylizeSettings.to_dict()``, with the seed fixed."""
    seed: int
    content: bytes
    styles: tuple[bytes, ...]
    derivation: Derivation | None = None
    spoiler: bool = False
    """Post its result as a spoiler (the server's policy, decided when it was asked for)."""
    origin: Origin | None = None
    initial: bool = False
    """Whether the job starts from an image of its own (the file ``initial``, already there:
    ``link_result``)."""


@dataclass(frozen=True)
class Origin:
    """Where a job's pictures came from when a message's Apps menu, not a command, gave them."""

    kind: str
    """``photo`` (the message's image is the photo, the style a saved one) or ``avatar`` (the
    member's avatar is the photo, the message's image the style)."""
    guild_id: int | None
    channel_id: int
    message_id: int
    """The message whose image it took."""
    style: str | None = None
    """The saved style's name (``photo``)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Origin:
        fields = json.loads(text)
        return cls(
            str(fields["kind"]),
            None if fields.get("guild_id") is None else int(fields["guild_id"]),
            int(fields["channel_id"]),
            int(fields["message_id"]),
            None if fields.get("style") is None else str(fields["style"]),
        )


@dataclass(frozen=True)
class Pick:
    """A photo taken from a message, waiting for its member to pick a saved style for it."""

    id: str
    user_id: int
    guild_id: int | None
    origin: Origin
    created_at: float


@dataclass(frozen=True)
class Derivation:
    """What a follow-up job derives from: the earlier job and the button that made it."""

    parent_id: str
    kind: str
    """A key of ``bot.jobs.followups.RULES``: ``reroll``, ``stronger``, ``weaker`` or ``bigger``."""
    parent_seed: int


@dataclass(frozen=True)
class JobRecord:
    seq: int
    id: str
    conversation: Conversation
    status_message: StatusMessage | None
    settings: dict[str, Any]
    seed: int
    style_count: int
    state: JobState
    runs: int
    """How many times a worker started it (a job that keeps killing the bot is given up)."""
    created_at: float
    started_at: float | None
    finished_at: float | None
    result_format: str | None
    result_stats: dict[str, Any] | None
    derivation: Derivation | None = None
    origin: Origin | None = None
    has_initial: bool = False
    """The job starts from its ``initial`` file (``Journal.initial``)."""
    spoiler: bool = False
    deleted: bool = False
    """Its result was deleted with the Delete button: its files are gone."""


@dataclass(frozen=True)
class RoleLimit:
    """A role's allowance in one server; None: no limit on that."""

    role_id: int
    daily: int | None
    """Jobs a member may start per UTC day."""
    max_size: int | None
    """Longest side of a result, px."""


@dataclass(frozen=True)
class ServerPolicy:
    """What one server's admins decided (``/stylize-admin``); the default allows everything."""

    guild_id: int
    channels: frozenset[int] = frozenset()
    """Where the bot works; empty: everywhere."""
    limits: tuple[RoleLimit, ...] = ()
    blocked: frozenset[int] = frozenset()
    spoiler: SpoilerMode = "off"

    def limit_of(self, role_id: int) -> RoleLimit | None:
        return next((limit for limit in self.limits if limit.role_id == role_id), None)


@dataclass(frozen=True)
class Forgotten:
    """What ``Journal.forget`` deleted."""

    jobs: int
    """Job records of the member (their tokens with them)."""
    files: int
    bytes: int
    """Pictures (inputs and results), theirs or made from theirs, and their size."""
    styles: int
    """Saved styles now attributed to "a former member"."""


@dataclass(frozen=True)
class DayCount:
    """Jobs and failures of one server on one UTC day."""

    jobs: int
    failures: int


class StyleAdded(enum.Enum):
    """What became of a request to save a style."""

    ADDED = "added"
    NAME_TAKEN = "name_taken"
    TOO_MANY = "too_many"
    TOO_LARGE = "too_large"


@dataclass(frozen=True)
class NewStyle:
    guild_id: int
    name: str
    image: bytes
    thumbnail: bytes
    """A small JPEG for ``/styles list``."""
    added_by: int


@dataclass(frozen=True)
class SavedStyle:
    guild_id: int
    name: str
    size: int
    """Bytes of the image."""
    added_by: int
    created_at: float


@dataclass(frozen=True)
class OutboxItem:
    id: int
    job_id: str
    kind: OutboxKind
    text: str
    """A notice's text as ``bot.messages.Text.dumps()`` writes it (empty for a result)."""
    attempts: int
    """Delivery attempts begun; above 0, an earlier attempt may have posted already."""
    next_at: float


class Journal:
    """The SQLite journal. Open with ``await Journal.open(data_dir)``; close with ``close()``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        sync_files: bool = True,
        busy_timeout: float = BUSY_TIMEOUT,
        connect: Connect = sqlite3.connect,
    ) -> None:
        """``sync_files``: fsync each job's files before its row is committed, so that a power
        cut cannot leave a row whose inputs were never written (the bot always does; the
        benchmark turns it off to show what it costs)."""
        self.data_dir = data_dir
        self._sync_files = sync_files
        self._busy_timeout = busy_timeout
        self._connect = connect
        self.path = data_dir / FILENAME
        self.files_dir = data_dir / FILES_DIR
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls,
        data_dir: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        sync_files: bool = True,
        busy_timeout: float = BUSY_TIMEOUT,
        connect: Connect = sqlite3.connect,
    ) -> Journal:
        """Open (creating or migrating) the journal; raises ``JournalError``."""
        journal = cls(
            Path(data_dir),
            clock=clock,
            sync_files=sync_files,
            busy_timeout=busy_timeout,
            connect=connect,
        )
        try:
            await journal._call(journal._open)
        except BaseException:
            journal._executor.shutdown(wait=False)
            raise
        return journal

    async def close(self) -> None:
        """Finish every write already asked for, then close the database."""
        with contextlib.suppress(RuntimeError):  # already closed
            await self._call(self._close)
        self._executor.shutdown(wait=True)

    # --- jobs ---------------------------------------------------------------------------------

    async def stage_inputs(self, job_id: str, content: bytes, styles: tuple[bytes, ...]) -> None:
        """Write a job's input files ahead of its row (while the command decodes them, say).
        Until ``add`` commits the row they are an orphan, removed by ``purge`` after a crash;
        ``discard`` removes them at once if the job is refused."""
        await self._call(self._write_inputs, job_id, content, styles)

    async def add(self, job: NewJob, *, inputs_staged: bool = False) -> None:
        """Store the inputs (unless ``stage_inputs`` did), then the row: once this returns,
        the job survives a crash."""
        await self._call(self._add, job, inputs_staged)

    async def set_status_message(self, job_id: str, message: StatusMessage) -> None:
        await self._call(
            self._update,
            job_id,
            status_message_id=message.id,
            status_in_channel=int(message.in_channel),
        )

    async def mark_running(self, job_id: str) -> None:
        await self._call(self._mark_running, job_id)

    async def set_order(self, job_ids: list[str]) -> None:
        """The waiting jobs in the order they will start (the fair queue's, which is not the
        order they arrived in): the order they resume in after a restart."""
        await self._call(self._set_order, job_ids)

    async def requeue(self, job_id: str) -> None:
        """A running job was stopped for a restart: it waits again, ahead of the jobs that were
        waiting. An orderly stop does not count as a run (``runs`` counts the runs that a crash
        ended)."""
        await self._call(self._requeue, job_id)

    async def discard(self, job_id: str) -> None:
        """Forget a job that was refused after it was written (its user is told at once)."""
        await self._call(self._discard, job_id)

    async def finish(
        self,
        job_id: str,
        state: Literal["done", "failed", "cancelled"],
        *,
        outcome: dict[str, Any],
        deliver: OutboxKind,
        text: str = "",
        result: bytes | None = None,
        result_format: str | None = None,
        result_stats: dict[str, Any] | None = None,
    ) -> None:
        """Record a job's end and, in the same transaction, what must be delivered for it."""
        await self._call(
            self._finish, job_id, state, outcome, deliver, text, result, result_format,
            result_stats,
        )  # fmt: skip

    async def finish_unkept(
        self,
        job_id: str,
        state: Literal["done", "failed", "cancelled"],
        *,
        outcome: dict[str, Any],
        result_stats: dict[str, Any] | None = None,
    ) -> None:
        """Record a job's end when ``finish`` failed (a full disk): the row alone, with no
        result file and nothing in the outbox, since the caller delivers what it holds in
        memory. What the failed write of the result left is removed first, which also gives
        its space back. Once this returns, a restart does not run the job again."""
        await self._call(self._finish_unkept, job_id, state, outcome, result_stats)

    async def drop_inputs(self, job_id: str) -> None:
        """Delete a job's input files, to give space back when even ``finish_unkept`` fails:
        a job without inputs is never painted again (a restart reports it lost), and its
        follow-up buttons say its pictures are no longer kept."""
        await self._call(self._drop_inputs, job_id)

    async def unfinished(self) -> list[JobRecord]:
        """Jobs to resume, in their old order: those that were running first (by when they
        started), then the waiting ones in the order they were to start."""
        return await self._call(self._unfinished)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._call(self._get, job_id)

    async def inputs(self, job_id: str, style_count: int) -> tuple[bytes, tuple[bytes, ...]]:
        """The job's content and style images; raises ``FileNotFoundError`` if they are gone."""
        return await self._call(self._inputs, job_id, style_count)

    async def has_inputs(self, job_id: str, style_count: int) -> bool:
        """Whether the job's input files are all still kept."""
        return await self._call(self._has_inputs, job_id, style_count)

    async def link_inputs(self, source_id: str, job_id: str, style_count: int) -> None:
        """Give a new job the inputs of an earlier one, as files of its own (hard links where
        the file system allows, else copies), so each job's retention stays its own. Raises
        ``FileNotFoundError`` if the earlier job's inputs are gone."""
        await self._call(self._link_inputs, source_id, job_id, style_count)

    async def result(self, job_id: str, result_format: str) -> bytes:
        return await self._call(self._read, self._job_dir(job_id) / f"result.{result_format}")

    async def link_result(self, source_id: str, result_format: str, job_id: str) -> None:
        """Give a new job the result of an earlier one as the image it starts from (its file
        ``initial``: a hard link where the file system allows, else a copy). Raises
        ``FileNotFoundError`` if that result is gone."""
        await self._call(self._link_result, source_id, result_format, job_id)

    async def initial(self, job_id: str) -> bytes:
        """The image a job starts from; raises ``FileNotFoundError`` if it is gone."""
        return await self._call(self._read, self._job_dir(job_id) / "initial")

    # --- photos waiting for a saved style (the "Stylize this photo" menu) --------------------

    async def add_pick(self, pick: Pick, photo: bytes) -> None:
        """Keep a photo (its file first, then its row) until its member picks a style; kept as
        long as finished jobs are (``purge``)."""
        await self._call(self._add_pick, pick, photo)

    async def pick(self, pick_id: str) -> tuple[Pick, bytes] | None:
        """The pick and its photo; None if it expired or its photo is gone."""
        return await self._call(self._pick, pick_id)

    # --- the servers' galleries of saved styles ----------------------------------------------

    async def add_style(self, style: NewStyle, *, max_count: int, max_bytes: int) -> StyleAdded:
        """Save a style unless its name (compared without case) is taken in that server, or
        the server would then hold more than ``max_count`` styles or ``max_bytes`` bytes."""
        return await self._call(self._add_style, style, max_count, max_bytes)

    async def styles(self, guild_id: int) -> list[SavedStyle]:
        """A server's saved styles, by name."""
        return await self._call(self._styles, guild_id)

    async def style_image(
        self, guild_id: int, name: str, *, thumbnail: bool = False
    ) -> bytes | None:
        """A saved style's image (or its thumbnail); None if there is no such style."""
        return await self._call(self._style_image, guild_id, name, thumbnail)

    async def remove_style(self, guild_id: int, name: str) -> bool:
        """False if there was no such style."""
        return await self._call(self._remove_style, guild_id, name)

    # --- server policy, daily usage, deletion ------------------------------------------------

    async def policies(self) -> list[ServerPolicy]:
        """Every server's policy that differs from the default."""
        return await self._call(self._policies)

    async def set_channels(self, guild_id: int, channels: frozenset[int]) -> ServerPolicy:
        return await self._call(self._set_policy, guild_id, channels=sorted(channels))

    async def set_spoiler(self, guild_id: int, mode: SpoilerMode) -> ServerPolicy:
        return await self._call(self._set_policy, guild_id, spoiler=mode)

    async def set_role_limit(self, guild_id: int, limit: RoleLimit) -> ServerPolicy:
        """Set a role's limits; a limit with neither a daily quota nor a size removes it."""
        return await self._call(self._set_role_limit, guild_id, limit)

    async def set_blocked(self, guild_id: int, user_id: int, blocked: bool) -> ServerPolicy:
        return await self._call(self._set_blocked, guild_id, user_id, blocked)

    async def usage_on(self, day: int) -> dict[tuple[int, int], int]:
        """Jobs started on a UTC day (days since the epoch), by (guild, member)."""
        return await self._call(self._usage_on, day)

    async def add_usage(self, guild_id: int, user_id: int, day: int) -> None:
        """Count one job against a member's quota of that day."""
        await self._call(self._add_usage, guild_id, user_id, day)

    async def take_back_usage(self, guild_id: int, user_id: int, day: int) -> None:
        """Give one job of a member's quota of that day back (never below none)."""
        await self._call(self._take_back_usage, guild_id, user_id, day)

    async def day_count(self, guild_id: int, since: float) -> DayCount:
        """A server's jobs asked for since ``since`` (wall-clock), and how many failed."""
        return await self._call(self._day_count, guild_id, since)

    async def outbox_backlog(self) -> int:
        """Items still to deliver."""
        return await self._call(lambda: self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0])  # fmt: skip

    async def unfinished_of(self, user_id: int, guild_id: int | None) -> list[str]:
        """The member's waiting or running jobs (in ``guild_id``; None: in every server), and
        those of others that derive from the member's (their follow-ups)."""
        return await self._call(self._unfinished_of, user_id, guild_id)

    async def delete_result(self, job_id: str) -> bool:
        """The Delete button: remove a finished job's files (inputs and result) and mark it
        deleted; False if there is no such job."""
        return await self._call(self._delete_result, job_id)

    async def forget(self, user_id: int, guild_id: int | None, *, keep_blocks: bool) -> Forgotten:
        """Delete what the journal keeps about a member (in ``guild_id``; None: in every
        server): their job rows (tokens included) and outbox items, their daily counts, the
        files of their jobs and of the follow-ups made from them (those jobs' rows stay, as
        the other members' records, without pictures); unless ``keep_blocks``, the blocks on
        them. Their saved styles stay, attributed to a former member (``FORMER_MEMBER``).
        Cancel their unfinished jobs first: a job still running would write its end later."""
        return await self._call(self._forget, user_id, guild_id, keep_blocks)

    # --- the outbox ---------------------------------------------------------------------------

    async def outbox_pending(self) -> list[OutboxItem]:
        """Undelivered items, oldest first."""
        return await self._call(self._outbox_pending)

    async def begin_attempt(self, item_id: int) -> None:
        """Recorded before a post, so that a retry knows to look for it first."""
        await self._call(self._outbox_update, item_id, attempts_plus=1)

    async def delivered(self, item_id: int, message_id: int | None) -> None:
        await self._call(self._outbox_update, item_id, state="delivered", message_id=message_id)

    async def retry_later(self, item_id: int, next_at: float, error: str) -> None:
        await self._call(self._outbox_update, item_id, next_at=next_at, last_error=error)

    async def undeliverable(self, item_id: int, error: str) -> None:
        await self._call(self._outbox_update, item_id, state="failed", last_error=error)

    # --- retention ----------------------------------------------------------------------------

    async def purge(self, keep_seconds: float) -> int:
        """Delete finished jobs (rows and files) that ended more than ``keep_seconds`` ago,
        and forget interaction tokens that have expired. Returns how many jobs went."""
        return await self._call(self._purge, keep_seconds)

    def job_dir(self, job_id: str) -> Path:
        return self._job_dir(job_id)

    # --- the journal thread -------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the journal is closed")
        return self._db

    def _open(self) -> None:
        where = str(self.path)
        try:
            make_private_folder(self.files_dir)
            if not os.access(self.data_dir, os.W_OK):
                raise JournalError(f"the data folder {self.data_dir} is not writable")
        except OSError as error:
            raise JournalError(
                f"cannot create the data folder {self.data_dir} ({error.strerror or error}); "
                "fix STYLIZE_DATA_DIR or its permissions"
            ) from None
        try:
            # SQLite makes the -wal and -shm files with the database's mode: make it 0600 first.
            _create_private(self.path)
            for suffix in DB_SIDE_FILES:
                _strip_group_and_others(Path(where + suffix))
        except OSError as error:
            raise JournalError(
                f"cannot create or protect the job journal {where} ({error.strerror or error}); "
                "fix STYLIZE_DATA_DIR or its permissions"
            ) from None
        try:
            db = self._connect(
                where,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as error:
            raise JournalError(f"cannot open the job journal {where} ({error})") from None
        try:
            # The mode in effect comes back: SQLite keeps the old one where WAL cannot work (a
            # network file system has no shared memory), and then nothing is durable as promised.
            (mode,) = db.execute("PRAGMA journal_mode=WAL").fetchone()
            if str(mode).lower() != "wal":
                raise JournalError(
                    f"the job journal {where} cannot use WAL mode (SQLite kept journal_mode="
                    f"{mode}): STYLIZE_DATA_DIR={self.data_dir} must be on a local file system, "
                    "not a network share"
                )
            # FULL: a commit survives a power cut, not only a crash of the process.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            # A deleted row's bytes are overwritten, not left in free pages: forgetting a
            # member must leave no token or id of theirs in the file.
            db.execute("PRAGMA secure_delete=ON")
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check and check[0]}")
            self._migrate(db)
            # A write now, so an unwritable file is found at start-up, not on the first job.
            db.execute("BEGIN IMMEDIATE")
            db.execute("COMMIT")
        except JournalError:
            db.close()
            raise
        except sqlite3.Error as error:
            db.close()
            raise JournalError(self._open_failure(error)) from None
        self._db = db

    def _open_failure(self, error: sqlite3.Error) -> str:
        """The one line for an error from SQLite at open. Only a damaged file is worth moving
        aside: the advice throws its queue away, so a busy or unwritable one must not get it."""
        where = self.path
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
        if code == SQLITE_BUSY or "database is locked" in str(error):
            return (
                f"the job journal {where} is in use by another process (likely another instance "
                f"of stylize-bot on STYLIZE_DATA_DIR={self.data_dir}; {error}); stop that one "
                "first, and do not move the journal aside: it holds the queue"
            )
        if code == SQLITE_READONLY or "readonly" in str(error):
            return f"the job journal {where} is read-only: fix its permissions"
        if isinstance(error, sqlite3.OperationalError):  # a full disk, an I/O error
            return (
                f"cannot use the job journal {where} ({error}); check the disk that holds "
                f"STYLIZE_DATA_DIR={self.data_dir}"
            )
        return (
            f"the job journal {where} is damaged ({error}); move it aside to start a new "
            "one (its unfinished jobs would be lost)"
        )

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the job journal {self.path} was written by a newer stylize-bot "
                f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade the bot"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={target}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            log.info("job journal: schema migrated to version %d", target)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _job_dir(self, job_id: str) -> Path:
        if not job_id.isalnum():  # ids are uuid4 hex: never a path
            raise ValueError(f"bad job id {job_id!r}")
        return self.files_dir / job_id

    def _write_inputs(self, job_id: str, content: bytes, styles: tuple[bytes, ...]) -> None:
        folder = self._job_dir(job_id)
        make_private_folder(folder)
        _write(folder / "content", content, sync=self._sync_files)
        for index, style in enumerate(styles):
            _write(folder / f"style-{index}", style, sync=self._sync_files)
        if self._sync_files:
            _fsync_dir(folder)

    def _has_inputs(self, job_id: str, style_count: int) -> bool:
        folder = self._job_dir(job_id)
        names = ["content", *(f"style-{i}" for i in range(style_count))]
        return all((folder / name).is_file() for name in names)

    def _link_inputs(self, source_id: str, job_id: str, style_count: int) -> None:
        source, folder = self._job_dir(source_id), self._job_dir(job_id)
        names = ["content", *(f"style-{i}" for i in range(style_count))]
        for name in names:  # all present, or nothing is made
            if not (source / name).is_file():
                raise FileNotFoundError(f"{source / name} is gone")
        make_private_folder(folder)
        for name in names:
            try:
                os.link(source / name, folder / name)  # the same file, so its 0600 mode too
            except OSError:  # no hard links here (another device, a FAT volume): copy
                _write(folder / name, (source / name).read_bytes(), sync=self._sync_files)
        if self._sync_files:
            _fsync_dir(folder)

    def _link_result(self, source_id: str, result_format: str, job_id: str) -> None:
        if not result_format.isalnum():
            raise ValueError(f"bad result format {result_format!r}")
        result = self._job_dir(source_id) / f"result.{result_format}"
        if not result.is_file():
            raise FileNotFoundError(f"{result} is gone")
        folder = self._job_dir(job_id)
        make_private_folder(folder)
        try:
            os.link(result, folder / "initial")
        except OSError:  # no hard links here: copy, as _link_inputs does
            _write(folder / "initial", result.read_bytes(), sync=self._sync_files)
        if self._sync_files:
            _fsync_dir(folder)

    def _pick_file(self, pick_id: str) -> Path:
        if not pick_id.isalnum():  # ids are uuid4 hex: never a path
            raise ValueError(f"bad pick id {pick_id!r}")
        return self.data_dir / PICKS_DIR / f"{pick_id}.photo"

    def _add_pick(self, pick: Pick, photo: bytes) -> None:
        path = self._pick_file(pick.id)
        make_private_folder(path.parent)
        _write(path, photo, sync=self._sync_files)
        if self._sync_files:
            _fsync_dir(path.parent)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO picks (id, user_id, guild_id, origin, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (pick.id, pick.user_id, pick.guild_id, pick.origin.to_json(), pick.created_at),
            )

    def _pick(self, pick_id: str) -> tuple[Pick, bytes] | None:
        row = self.db.execute(
            "SELECT id, user_id, guild_id, origin, created_at FROM picks WHERE id = ?",
            (pick_id,),
        ).fetchone()
        if row is None:
            return None
        try:
            photo = self._read(self._pick_file(pick_id))
        except FileNotFoundError:
            return None
        return Pick(row[0], row[1], row[2], Origin.from_json(row[3]), row[4]), photo

    def _add(self, job: NewJob, inputs_staged: bool) -> None:
        if not inputs_staged:
            self._write_inputs(job.id, job.content, job.styles)
        if job.initial and not (self._job_dir(job.id) / "initial").is_file():
            raise FileNotFoundError(f"job {job.id} has no initial image")
        c = job.conversation
        d = job.derivation
        now = self._clock()
        with self._transaction() as db:
            db.execute(
                """INSERT INTO jobs (id, user_id, guild_id, channel_id, application_id,
                   interaction_id, interaction_token, token_expires_at, upload_limit, settings,
                   seed, style_count, state, created_at, updated_at, parent_id, derivation,
                   locale, guild_locale, spoiler, origin, has_initial)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued',
                           ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    job.id, c.user_id, c.guild_id, c.channel_id, c.application_id,
                    c.interaction_id, c.interaction_token, c.token_expires_at, c.upload_limit,
                    json.dumps(job.settings), job.seed, len(job.styles), now, now,
                    None if d is None else d.parent_id,
                    None if d is None else json.dumps({"kind": d.kind,
                                                       "parent_seed": d.parent_seed}),
                    c.locale, c.guild_locale, int(job.spoiler),
                    None if job.origin is None else job.origin.to_json(), int(job.initial),
                ),
            )  # fmt: skip

    def _update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = self._clock()
        names = ", ".join(f"{name} = ?" for name in fields)
        with self._transaction() as db:
            db.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*fields.values(), job_id))

    def _mark_running(self, job_id: str) -> None:
        now = self._clock()
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = 'running', runs = runs + 1, started_at = ?, "
                "updated_at = ? WHERE id = ?",
                (now, now, job_id),
            )

    def _set_order(self, job_ids: list[str]) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE jobs SET queue_rank = ? WHERE id = ? AND state = 'queued'",
                [(rank, job_id) for rank, job_id in enumerate(job_ids, start=1)],
            )

    def _requeue(self, job_id: str) -> None:
        # Rank 0: ahead of every waiting job (ranked from 1); among themselves, by start time.
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET runs = CASE WHEN state = 'running' THEN MAX(runs - 1, 0) "
                "ELSE runs END, queue_rank = CASE WHEN state = 'running' THEN 0 "
                "ELSE queue_rank END, state = 'queued', updated_at = ? WHERE id = ?",
                (self._clock(), job_id),
            )

    def _discard(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self._job_dir(job_id), ignore_errors=True)

    def _finish(
        self,
        job_id: str,
        state: str,
        outcome: dict[str, Any],
        deliver: str,
        text: str,
        result: bytes | None,
        result_format: str | None,
        result_stats: dict[str, Any] | None,
    ) -> None:
        if result is not None:
            folder = self._job_dir(job_id)
            make_private_folder(folder)
            _write(folder / f"result.{result_format}", result, sync=self._sync_files)
        now = self._clock()
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, updated_at = ?, result_format = ?, "
                "result_stats = ?, outcome = ? WHERE id = ?",
                (
                    state, now, now, result_format,
                    None if result_stats is None else json.dumps(result_stats),
                    json.dumps(outcome), job_id,
                ),
            )  # fmt: skip
            db.execute(
                "INSERT INTO outbox (job_id, kind, text, state, next_at, created_at, updated_at) "
                "VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                (job_id, deliver, text, now, now, now),
            )

    def _finish_unkept(
        self, job_id: str, state: str, outcome: dict[str, Any], result_stats: dict[str, Any] | None
    ) -> None:
        for leftover in self._job_dir(job_id).glob("result.*"):
            leftover.unlink(missing_ok=True)
        self._update(
            job_id,
            state=state,
            finished_at=self._clock(),
            result_format=None,
            result_stats=None if result_stats is None else json.dumps(result_stats),
            outcome=json.dumps(outcome),
        )

    def _drop_inputs(self, job_id: str) -> None:
        folder = self._job_dir(job_id)
        for name in ("content", "initial", *(p.name for p in folder.glob("style-*"))):
            (folder / name).unlink(missing_ok=True)

    def _unfinished(self) -> list[JobRecord]:
        cursor = self.db.execute(
            "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY "
            "state = 'running' DESC, queue_rank IS NULL, queue_rank, started_at, seq"
        )
        return [_record(cursor, row) for row in cursor.fetchall()]

    def _get(self, job_id: str) -> JobRecord | None:
        cursor = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        row = cursor.fetchone()
        return None if row is None else _record(cursor, row)

    def _inputs(self, job_id: str, style_count: int) -> tuple[bytes, tuple[bytes, ...]]:
        folder = self._job_dir(job_id)
        content = self._read(folder / "content")
        styles = tuple(self._read(folder / f"style-{i}") for i in range(style_count))
        return content, styles

    @staticmethod
    def _read(path: Path) -> bytes:
        data = path.read_bytes()
        if not data:
            raise FileNotFoundError(f"{path} is empty")
        return data

    def _styles_dir(self, guild_id: int) -> Path:
        return self.data_dir / STYLES_DIR / str(int(guild_id))

    def _add_style(self, style: NewStyle, max_count: int, max_bytes: int) -> StyleAdded:
        key = style_key(style.name)
        folder = self._styles_dir(style.guild_id)
        file = os.urandom(16).hex()
        make_private_folder(folder)
        _write(folder / f"{file}.image", style.image, sync=self._sync_files)
        _write(folder / f"{file}.thumb", style.thumbnail, sync=self._sync_files)
        outcome = StyleAdded.ADDED
        with self._transaction() as db:
            count, total = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM styles WHERE guild_id = ?",
                (style.guild_id,),
            ).fetchone()
            taken = db.execute(
                "SELECT 1 FROM styles WHERE guild_id = ? AND name_key = ?", (style.guild_id, key)
            ).fetchone()
            if taken is not None:
                outcome = StyleAdded.NAME_TAKEN
            elif count >= max_count:
                outcome = StyleAdded.TOO_MANY
            elif total + len(style.image) > max_bytes:
                outcome = StyleAdded.TOO_LARGE
            else:
                db.execute(
                    "INSERT INTO styles (guild_id, name, name_key, file, size, added_by, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (style.guild_id, style.name, key, file, len(style.image), style.added_by,
                     self._clock()),
                )  # fmt: skip
        if outcome is not StyleAdded.ADDED:
            for suffix in ("image", "thumb"):
                (folder / f"{file}.{suffix}").unlink(missing_ok=True)
        return outcome

    def _styles(self, guild_id: int) -> list[SavedStyle]:
        rows = self.db.execute(
            "SELECT guild_id, name, size, added_by, created_at FROM styles WHERE guild_id = ? "
            "ORDER BY name_key",
            (guild_id,),
        ).fetchall()
        return [SavedStyle(*row) for row in rows]

    def _style_file(self, guild_id: int, name: str) -> str | None:
        row = self.db.execute(
            "SELECT file FROM styles WHERE guild_id = ? AND name_key = ?",
            (guild_id, style_key(name)),
        ).fetchone()
        return None if row is None else str(row[0])

    def _style_image(self, guild_id: int, name: str, thumbnail: bool) -> bytes | None:
        file = self._style_file(guild_id, name)
        if file is None:
            return None
        suffix = "thumb" if thumbnail else "image"
        try:
            return self._read(self._styles_dir(guild_id) / f"{file}.{suffix}")
        except FileNotFoundError:
            return None

    def _remove_style(self, guild_id: int, name: str) -> bool:
        file = self._style_file(guild_id, name)
        if file is None:
            return False
        with self._transaction() as db:
            db.execute(
                "DELETE FROM styles WHERE guild_id = ? AND name_key = ?",
                (guild_id, style_key(name)),
            )
        for suffix in ("image", "thumb"):
            (self._styles_dir(guild_id) / f"{file}.{suffix}").unlink(missing_ok=True)
        return True

    def _policies(self) -> list[ServerPolicy]:
        guilds = {row[0] for row in self.db.execute(
            "SELECT guild_id FROM server_policy UNION SELECT guild_id FROM role_limits "
            "UNION SELECT guild_id FROM blocked_members")}  # fmt: skip
        return [self._policy(guild_id) for guild_id in sorted(guilds)]

    def _policy(self, guild_id: int) -> ServerPolicy:
        row = self.db.execute(
            "SELECT channels, spoiler FROM server_policy WHERE guild_id = ?", (guild_id,)
        ).fetchone()
        channels, spoiler = row if row is not None else ("[]", "off")
        limits = tuple(
            RoleLimit(*limit)
            for limit in self.db.execute(
                "SELECT role_id, daily, max_size FROM role_limits WHERE guild_id = ? "
                "ORDER BY role_id",
                (guild_id,),
            )
        )
        blocked = frozenset(
            user for (user,) in self.db.execute(
                "SELECT user_id FROM blocked_members WHERE guild_id = ?", (guild_id,))
        )  # fmt: skip
        mode: SpoilerMode = spoiler if spoiler in SPOILER_MODES else "off"
        return ServerPolicy(guild_id, frozenset(json.loads(channels)), limits, blocked, mode)

    def _set_policy(self, guild_id: int, **fields: Any) -> ServerPolicy:
        if "channels" in fields:
            fields["channels"] = json.dumps(fields["channels"])
        fields["updated_at"] = self._clock()
        names = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        updates = ", ".join(f"{name} = excluded.{name}" for name in fields)
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO server_policy (guild_id, {names}) VALUES (?, {marks}) "
                f"ON CONFLICT (guild_id) DO UPDATE SET {updates}",
                (guild_id, *fields.values()),
            )
        return self._policy(guild_id)

    def _set_role_limit(self, guild_id: int, limit: RoleLimit) -> ServerPolicy:
        with self._transaction() as db:
            if limit.daily is None and limit.max_size is None:
                db.execute(
                    "DELETE FROM role_limits WHERE guild_id = ? AND role_id = ?",
                    (guild_id, limit.role_id),
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO role_limits (guild_id, role_id, daily, max_size) "
                    "VALUES (?, ?, ?, ?)",
                    (guild_id, limit.role_id, limit.daily, limit.max_size),
                )
        return self._policy(guild_id)

    def _set_blocked(self, guild_id: int, user_id: int, blocked: bool) -> ServerPolicy:
        with self._transaction() as db:
            if blocked:
                db.execute(
                    "INSERT OR IGNORE INTO blocked_members (guild_id, user_id, created_at) "
                    "VALUES (?, ?, ?)",
                    (guild_id, user_id, self._clock()),
                )
            else:
                db.execute(
                    "DELETE FROM blocked_members WHERE guild_id = ? AND user_id = ?",
                    (guild_id, user_id),
                )
        return self._policy(guild_id)

    def _usage_on(self, day: int) -> dict[tuple[int, int], int]:
        rows = self.db.execute(
            "SELECT guild_id, user_id, jobs FROM daily_usage WHERE day = ?", (day,)
        )
        return {(guild, user): jobs for guild, user, jobs in rows}

    def _add_usage(self, guild_id: int, user_id: int, day: int) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO daily_usage (guild_id, user_id, day, jobs) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (guild_id, user_id, day) DO UPDATE SET jobs = jobs + 1",
                (guild_id, user_id, day),
            )

    def _take_back_usage(self, guild_id: int, user_id: int, day: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE daily_usage SET jobs = jobs - 1 "
                "WHERE guild_id = ? AND user_id = ? AND day = ? AND jobs > 0",
                (guild_id, user_id, day),
            )

    def _day_count(self, guild_id: int, since: float) -> DayCount:
        jobs, failures = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(state = 'failed'), 0) FROM jobs "
            "WHERE guild_id = ? AND created_at >= ?",
            (guild_id, since),
        ).fetchone()
        return DayCount(jobs, failures)

    def _member_jobs(self, user_id: int, guild_id: int | None) -> tuple[list[str], list[str]]:
        """(the member's jobs, the other members' jobs derived from them)."""
        where = "user_id = ?" + ("" if guild_id is None else " AND guild_id = ?")
        params = (user_id,) if guild_id is None else (user_id, guild_id)
        rows = self.db.execute(
            f"""WITH RECURSIVE tree (id) AS (
                    SELECT id FROM jobs WHERE {where}
                    UNION SELECT jobs.id FROM jobs JOIN tree ON jobs.parent_id = tree.id)
                SELECT jobs.id, jobs.user_id = ? AND ({where}) FROM jobs JOIN tree
                ON jobs.id = tree.id""",
            (*params, user_id, *params),
        ).fetchall()
        own = [job_id for job_id, mine in rows if mine]
        derived = [job_id for job_id, mine in rows if not mine]
        return own, derived

    def _unfinished_of(self, user_id: int, guild_id: int | None) -> list[str]:
        own, derived = self._member_jobs(user_id, guild_id)
        ids = own + derived
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        return [
            job_id
            for (job_id,) in self.db.execute(
                f"SELECT id FROM jobs WHERE id IN ({marks}) AND state IN ('queued', 'running')",
                ids,
            )
        ]

    def _delete_result(self, job_id: str) -> bool:
        folder = self._job_dir(job_id)
        with self._transaction() as db:
            found = db.execute(
                "UPDATE jobs SET deleted_at = ?, updated_at = ? WHERE id = ?",
                (self._clock(), self._clock(), job_id),
            ).rowcount
        shutil.rmtree(folder, ignore_errors=True)
        return bool(found)

    def _forget(self, user_id: int, guild_id: int | None, keep_blocks: bool) -> Forgotten:
        own, derived = self._member_jobs(user_id, guild_id)
        files = size = 0
        for job_id in own + derived:
            folder = self._job_dir(job_id)
            for path in folder.glob("*") if folder.is_dir() else ():
                with contextlib.suppress(OSError):
                    size += path.stat().st_size
                    files += 1
            shutil.rmtree(folder, ignore_errors=True)
        in_guild = "" if guild_id is None else " AND guild_id = ?"
        params = (user_id,) if guild_id is None else (user_id, guild_id)
        # Photos taken from messages, still waiting for the member to pick a style.
        picks = [
            row[0]
            for row in self.db.execute(f"SELECT id FROM picks WHERE user_id = ?{in_guild}", params)
        ]
        for pick_id in picks:
            photo = self._pick_file(pick_id)
            with contextlib.suppress(OSError):
                size += photo.stat().st_size
                photo.unlink()
                files += 1
        with self._transaction() as db:
            db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in own])
            db.executemany("DELETE FROM picks WHERE id = ?", [(p,) for p in picks])
            db.execute(f"DELETE FROM daily_usage WHERE user_id = ?{in_guild}", params)
            if not keep_blocks:
                db.execute(f"DELETE FROM blocked_members WHERE user_id = ?{in_guild}", params)
            styles = db.execute(
                f"UPDATE styles SET added_by = {FORMER_MEMBER} WHERE added_by = ?{in_guild}",
                params,
            ).rowcount
        # The write-ahead log still holds the pages as they were: copy them back now (their
        # old bytes overwritten, by secure_delete) and empty it.
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return Forgotten(len(own), files, size, styles)

    def _outbox_pending(self) -> list[OutboxItem]:
        rows = self.db.execute(
            "SELECT id, job_id, kind, text, attempts, next_at FROM outbox "
            "WHERE state = 'pending' ORDER BY id"
        ).fetchall()
        return [OutboxItem(*row) for row in rows]

    def _outbox_update(self, item_id: int, *, attempts_plus: int = 0, **fields: Any) -> None:
        fields["updated_at"] = self._clock()
        names = ", ".join(f"{name} = ?" for name in fields)
        with self._transaction() as db:
            db.execute(
                f"UPDATE outbox SET {names}, attempts = attempts + ? WHERE id = ?",
                (*fields.values(), attempts_plus, item_id),
            )

    def _purge(self, keep_seconds: float) -> int:
        now = self._clock()
        cutoff = now - keep_seconds
        # A job goes once it ended before the cutoff and nothing is left to deliver for it.
        expired = [
            row[0]
            for row in self.db.execute(
                "SELECT id FROM jobs WHERE state NOT IN ('queued', 'running') "
                "AND finished_at < ? AND NOT EXISTS (SELECT 1 FROM outbox "
                "WHERE outbox.job_id = jobs.id AND outbox.state = 'pending')",
                (cutoff,),
            )
        ]
        for job_id in expired:
            shutil.rmtree(self._job_dir(job_id), ignore_errors=True)
        old_picks = [
            row[0]
            for row in self.db.execute("SELECT id FROM picks WHERE created_at < ?", (cutoff,))
        ]
        with self._transaction() as db:
            db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in expired])
            db.executemany("DELETE FROM picks WHERE id = ?", [(p,) for p in old_picks])
            db.execute(
                "UPDATE jobs SET interaction_token = '' WHERE token_expires_at < ? "
                "AND interaction_token != ''",
                (now,),
            )
            # Only today's count matters; yesterday's is kept for a clock a little behind.
            db.execute("DELETE FROM daily_usage WHERE day < ?", (int(now // DAY_SECONDS) - 1,))
        known = {row[0] for row in self.db.execute("SELECT id FROM jobs")}
        for folder in self.files_dir.iterdir():
            if folder.name in known:
                continue
            with contextlib.suppress(OSError):
                if folder.stat().st_mtime < now - ORPHAN_AGE:
                    shutil.rmtree(folder, ignore_errors=True)
        # A pick's photo goes with its row, or an hour after a crash left it without one.
        kept_picks = {row[0] for row in self.db.execute("SELECT id FROM picks")}
        picks_dir = self.data_dir / PICKS_DIR
        for photo in picks_dir.glob("*.photo") if picks_dir.is_dir() else ():
            with contextlib.suppress(OSError):
                if photo.stem not in kept_picks and (
                    photo.stem in old_picks or photo.stat().st_mtime < now - ORPHAN_AGE
                ):
                    photo.unlink()
        return len(expired)

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _record(cursor: sqlite3.Cursor, row: Sequence[Any]) -> JobRecord:
    """The record of a ``SELECT * FROM jobs`` row; ``cursor`` names its columns."""
    names = [d[0] for d in cursor.description]
    r = dict(zip(names, row, strict=True))
    conversation = Conversation(
        user_id=r["user_id"],
        guild_id=r["guild_id"],
        channel_id=r["channel_id"],
        application_id=r["application_id"],
        interaction_id=r["interaction_id"],
        interaction_token=r["interaction_token"],
        token_expires_at=r["token_expires_at"],
        upload_limit=r["upload_limit"],
        locale=r["locale"],
        guild_locale=r["guild_locale"],
    )
    return JobRecord(
        seq=r["seq"],
        id=r["id"],
        conversation=conversation,
        status_message=None
        if r["status_message_id"] is None
        else StatusMessage(r["status_message_id"], bool(r["status_in_channel"])),
        settings=json.loads(r["settings"]),
        seed=r["seed"],
        style_count=r["style_count"],
        state=r["state"],
        runs=r["runs"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        result_format=r["result_format"],
        result_stats=None if r["result_stats"] is None else json.loads(r["result_stats"]),
        derivation=_derivation(r["parent_id"], r["derivation"]),
        origin=None if r["origin"] is None else Origin.from_json(r["origin"]),
        has_initial=bool(r["has_initial"]),
        spoiler=bool(r["spoiler"]),
        deleted=r["deleted_at"] is not None,
    )


def style_key(name: str) -> str:
    """Names are unique per server without regard to case or surrounding spaces."""
    return " ".join(name.split()).casefold()


def _derivation(parent_id: str | None, text: str | None) -> Derivation | None:
    if parent_id is None or text is None:
        return None
    fields = json.loads(text)
    return Derivation(parent_id, str(fields["kind"]), int(fields["parent_seed"]))


def make_private_folder(path: Path) -> None:
    """``mkdir -p`` whose every new level is 0700 (pathlib's parents are 0777 less the umask)."""
    if path.is_dir():
        return
    if path.parent != path:
        make_private_folder(path.parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, FOLDER_MODE)
        os.chmod(path, FOLDER_MODE)  # a umask may take more than group and others away


def _create_private(path: Path) -> None:
    """Create an empty file 0600 if missing (SQLite takes an empty file for an empty
    database); an existing one loses its group and others' permissions."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
    _strip_group_and_others(path)


def _strip_group_and_others(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & 0o700)


def _write(path: Path, data: bytes, *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    with open(fd, "wb") as file:
        os.fchmod(fd, FILE_MODE)  # the mode above is only for a new file, less the umask
        file.write(data)
        if sync:
            file.flush()
            os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    # The new names must be durable too, not only the bytes (POSIX; a no-op elsewhere).
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
