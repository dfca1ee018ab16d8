"""The job journal (bot.journal): durable rows and files, order, the outbox, retention, schema."""

from __future__ import annotations

import dataclasses
import errno
import inspect
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from bot import messages
from bot.jobs.service import MAX_RUNS, rebuild_job
from bot.journal import (
    ORPHAN_AGE,
    SCHEMA_VERSION,
    Connect,
    Conversation,
    Journal,
    JournalError,
    NewJob,
    NewStyle,
    Origin,
    Pick,
    RoleLimit,
    StatusMessage,
)
from engine.jobs import Job
from engine.settings import StylizeSettings

DAY = 24 * 3600.0


class Clock:
    """Wall time under the test's control."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def journal(tmp_path: Path, clock: Clock) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path / "data", clock=clock)
    yield journal
    await journal.close()


def conversation(user_id: int = 42, *, expires_at: float = 2_000_000.0) -> Conversation:
    return Conversation(
        user_id=user_id,
        guild_id=7,
        channel_id=8,
        application_id=9,
        interaction_id=10,
        interaction_token="secret-interaction-token",
        token_expires_at=expires_at,
        upload_limit=10 * 1024 * 1024,
    )


def new_job(job_id: str, user_id: int = 42, **kwargs: float) -> NewJob:
    return NewJob(
        id=job_id,
        conversation=conversation(user_id, **kwargs),
        settings={"size": 64, "seed": 5},
        seed=5,
        content=b"content-" + job_id.encode(),
        styles=(b"style-a", b"style-b"),
    )


def job_id(n: int) -> str:
    return f"{n:032x}"


async def test_a_job_and_its_inputs_are_kept_until_it_ends(
    journal: Journal, tmp_path: Path, clock: Clock
) -> None:
    await journal.add(new_job(job_id(1)))
    [record] = await journal.unfinished()
    assert (record.id, record.state, record.seed, record.style_count) == (job_id(1), "queued", 5, 2)
    assert record.conversation == conversation()
    assert record.settings == {"size": 64, "seed": 5}
    assert record.created_at == clock.now
    content, styles = await journal.inputs(job_id(1), record.style_count)
    assert (content, styles) == (b"content-" + job_id(1).encode(), (b"style-a", b"style-b"))
    assert (tmp_path / "data" / "jobs" / job_id(1) / "content").is_file()

    await journal.set_status_message(job_id(1), StatusMessage(1234, in_channel=True))
    clock.now += 5
    await journal.mark_running(job_id(1))
    [record] = await journal.unfinished()
    assert (record.state, record.runs) == ("running", 1)
    assert record.status_message == StatusMessage(1234, in_channel=True)
    assert record.started_at == clock.now

    await journal.finish(
        job_id(1), "done", outcome={"kind": "done"}, deliver="result", result=b"PNG",
        result_format="png", result_stats={"seed": 5},
    )  # fmt: skip
    assert await journal.unfinished() == []
    record = await journal.get(job_id(1))
    assert record is not None and record.state == "done" and record.result_stats == {"seed": 5}
    assert await journal.result(job_id(1), "png") == b"PNG"


async def test_the_token_stays_out_of_the_records_repr(journal: Journal) -> None:
    await journal.add(new_job(job_id(1)))
    [record] = await journal.unfinished()
    assert "secret-interaction-token" not in repr(record)


async def test_unfinished_jobs_come_back_running_first_then_in_the_queues_order(
    journal: Journal, clock: Clock
) -> None:
    for n in (1, 2, 3, 4, 5):
        await journal.add(new_job(job_id(n)))
    await journal.mark_running(job_id(3))
    await journal.finish(job_id(2), "cancelled", outcome={}, deliver="status", text="🛑")
    # Not yet ranked: by arrival.
    assert [r.id for r in await journal.unfinished()] == [
        job_id(3),
        job_id(1),
        job_id(4),
        job_id(5),
    ]
    # The fair queue put 5 (another user's first job) ahead of 1 and 4.
    await journal.set_order([job_id(5), job_id(1), job_id(4)])
    assert [r.id for r in await journal.unfinished()] == [
        job_id(3),
        job_id(5),
        job_id(1),
        job_id(4),
    ]


async def test_a_job_stopped_for_a_restart_goes_first_and_that_is_not_a_run(
    journal: Journal,
) -> None:
    for n in (1, 2, 3):
        await journal.add(new_job(job_id(n)))
    await journal.set_order([job_id(3), job_id(1), job_id(2)])
    await journal.mark_running(job_id(2))  # crashed once while running…
    await journal.mark_running(job_id(2))  # …then started again and stopped for a deploy
    await journal.requeue(job_id(2))
    await journal.requeue(job_id(3))  # a waiting job keeps its place: ahead of 1, not last
    records = await journal.unfinished()
    assert [(r.id, r.state, r.runs) for r in records] == [
        (job_id(2), "queued", 1),
        (job_id(3), "queued", 0),
        (job_id(1), "queued", 0),
    ]


async def test_the_journal_survives_reopening(tmp_path: Path, clock: Clock) -> None:
    journal = await Journal.open(tmp_path / "data", clock=clock)
    await journal.add(new_job(job_id(1)))
    await journal.close()
    reopened = await Journal.open(tmp_path / "data", clock=clock)
    try:
        assert [r.id for r in await reopened.unfinished()] == [job_id(1)]
    finally:
        await reopened.close()
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def same_thread_only(opened_on: list[str]) -> Connect:
    """The journal's connection, but with SQLite's own check that every use of it (and of its
    cursors) is on the thread that opened it: any other raises ``ProgrammingError``. The name
    of that thread goes into ``opened_on``."""

    def connect(
        database: str, *, timeout: float, isolation_level: None, check_same_thread: bool
    ) -> sqlite3.Connection:
        opened_on.append(threading.current_thread().name)
        return sqlite3.connect(
            database, timeout=timeout, isolation_level=isolation_level, check_same_thread=True
        )

    return connect


# One call of each public coroutine of Journal, in an order that gives each something to do.
EVERY_CALL: dict[str, Callable[[Journal], Awaitable[object]]] = {
    "stage_inputs": lambda j: j.stage_inputs(job_id(2), b"c", (b"s",)),
    "add": lambda j: j.add(new_job(job_id(1))),
    "set_status_message": lambda j: j.set_status_message(job_id(1), StatusMessage(5)),
    "mark_running": lambda j: j.mark_running(job_id(1)),
    "set_order": lambda j: j.set_order([job_id(1)]),
    "requeue": lambda j: j.requeue(job_id(1)),
    "unfinished": lambda j: j.unfinished(),
    "get": lambda j: j.get(job_id(1)),
    "inputs": lambda j: j.inputs(job_id(1), 2),
    "has_inputs": lambda j: j.has_inputs(job_id(1), 2),
    "link_inputs": lambda j: j.link_inputs(job_id(1), job_id(3), 2),
    "finish": lambda j: j.finish(
        job_id(1), "done", outcome={}, deliver="result", result=b"R", result_format="png"
    ),
    "result": lambda j: j.result(job_id(1), "png"),
    "link_result": lambda j: j.link_result(job_id(1), "png", job_id(3)),
    "initial": lambda j: j.initial(job_id(3)),
    "add_pick": lambda j: j.add_pick(Pick(job_id(4), 42, 7, Origin("photo", 7, 8, 9), 0.0), b"p"),
    "pick": lambda j: j.pick(job_id(4)),
    "finish_unkept": lambda j: j.finish_unkept(job_id(3), "failed", outcome={}),
    "drop_inputs": lambda j: j.drop_inputs(job_id(3)),
    "discard": lambda j: j.discard(job_id(2)),
    "outbox_pending": lambda j: j.outbox_pending(),
    "begin_attempt": lambda j: j.begin_attempt(1),
    "retry_later": lambda j: j.retry_later(1, 0.0, "HTTP 503"),
    "delivered": lambda j: j.delivered(1, 99),
    "undeliverable": lambda j: j.undeliverable(1, "gone"),
    "add_style": lambda j: j.add_style(
        NewStyle(7, "Starry", b"image", b"thumb", 1), max_count=5, max_bytes=100
    ),
    "styles": lambda j: j.styles(7),
    "style_image": lambda j: j.style_image(7, "starry"),
    "remove_style": lambda j: j.remove_style(7, "starry"),
    "policies": lambda j: j.policies(),
    "set_channels": lambda j: j.set_channels(7, frozenset({8})),
    "set_spoiler": lambda j: j.set_spoiler(7, "always"),
    "set_role_limit": lambda j: j.set_role_limit(7, RoleLimit(7, 3, None)),
    "set_blocked": lambda j: j.set_blocked(7, 42, True),
    "add_usage": lambda j: j.add_usage(7, 42, 1),
    "take_back_usage": lambda j: j.take_back_usage(7, 42, 1),
    "usage_on": lambda j: j.usage_on(1),
    "day_count": lambda j: j.day_count(7, 0.0),
    "outbox_backlog": lambda j: j.outbox_backlog(),
    "unfinished_of": lambda j: j.unfinished_of(42, None),
    "delete_result": lambda j: j.delete_result(job_id(3)),
    "forget": lambda j: j.forget(42, 7, keep_blocks=False),
    "purge": lambda j: j.purge(0),
}


def public_coroutines(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }


async def test_every_read_and_write_runs_on_the_journal_thread(
    tmp_path: Path, clock: Clock
) -> None:
    # Every public coroutine is in the table (open and close are called around it).
    assert set(EVERY_CALL) | {"open", "close"} == public_coroutines(Journal)
    opened_on: list[str] = []
    journal = await Journal.open(
        tmp_path / "data", clock=clock, connect=same_thread_only(opened_on)
    )
    try:
        for call in EVERY_CALL.values():
            await call(journal)
    finally:
        await journal.close()
    assert len(opened_on) == 1 and opened_on[0].startswith("journal")


async def test_inputs_written_ahead_then_the_row(journal: Journal) -> None:
    job = new_job(job_id(1))
    await journal.stage_inputs(job.id, job.content, job.styles)
    assert await journal.unfinished() == []  # no row yet: not a job until it is added
    await journal.add(job, inputs_staged=True)
    [record] = await journal.unfinished()
    assert await journal.inputs(job.id, record.style_count) == (job.content, job.styles)


async def test_discard_forgets_a_refused_job(journal: Journal) -> None:
    await journal.add(new_job(job_id(1)))
    await journal.discard(job_id(1))
    assert await journal.unfinished() == []
    assert not journal.job_dir(job_id(1)).exists()


# --- resuming a record ----------------------------------------------------------------------


async def test_a_record_becomes_its_engine_job_again(journal: Journal) -> None:
    settings = StylizeSettings(size=64, steps=3, style_weights=(2.0, 1.0)).resolved()
    job = new_job(job_id(1))
    await journal.add(dataclasses.replace(job, settings=settings.to_dict()))
    [record] = await journal.unfinished()
    rebuilt = await rebuild_job(journal, record, preview_interval=2.0)
    assert isinstance(rebuilt, Job)
    assert (rebuilt.id, rebuilt.content, rebuilt.styles) == (job.id, job.content, job.styles)
    assert rebuilt.settings == settings and rebuilt.preview_interval == 2.0
    assert rebuilt.max_bytes == record.conversation.upload_limit


async def test_a_record_whose_inputs_are_gone_is_not_resumed(journal: Journal) -> None:
    await journal.add(new_job(job_id(1)))
    (journal.job_dir(job_id(1)) / "style-1").unlink()
    [record] = await journal.unfinished()
    assert await rebuild_job(journal, record, preview_interval=0) == messages.later(
        messages.inputs_lost
    )


async def test_a_job_that_keeps_killing_the_bot_is_given_up(journal: Journal) -> None:
    await journal.add(new_job(job_id(1)))
    for _ in range(MAX_RUNS):  # running each time the bot died
        await journal.mark_running(job_id(1))
    [record] = await journal.unfinished()
    assert await rebuild_job(journal, record, preview_interval=0) == messages.later(
        messages.keeps_crashing
    )


# --- the outbox ---------------------------------------------------------------------------


async def test_an_end_and_its_delivery_are_recorded_together(
    journal: Journal, clock: Clock
) -> None:
    await journal.add(new_job(job_id(1)))
    await journal.finish(job_id(1), "failed", outcome={}, deliver="notice", text="❌ no")
    [item] = await journal.outbox_pending()
    assert (item.job_id, item.kind, item.text, item.attempts) == (job_id(1), "notice", "❌ no", 0)

    await journal.begin_attempt(item.id)
    await journal.retry_later(item.id, clock.now + 30, "HTTP 503, code 0")
    [item] = await journal.outbox_pending()
    assert (item.attempts, item.next_at) == (1, clock.now + 30)

    await journal.begin_attempt(item.id)
    await journal.delivered(item.id, 999)
    assert await journal.outbox_pending() == []


async def test_an_undeliverable_item_leaves_the_outbox(journal: Journal) -> None:
    await journal.add(new_job(job_id(1)))
    await journal.finish(job_id(1), "failed", outcome={}, deliver="notice", text="❌")
    [item] = await journal.outbox_pending()
    await journal.undeliverable(item.id, "the channel, a DM and the interaction all refused")
    assert await journal.outbox_pending() == []


# --- retention ----------------------------------------------------------------------------


async def test_retention_deletes_expired_jobs_and_keeps_the_rest(
    journal: Journal, clock: Clock
) -> None:
    for n in (1, 2, 3, 4):
        await journal.add(new_job(job_id(n)))
    # 1: ended long ago, delivered. 2: ended long ago, result still owed. 3: ended recently,
    # delivered. 4: still queued.
    for n in (1, 2):
        await journal.finish(
            job_id(n), "done", outcome={}, deliver="result", result=b"x", result_format="png"
        )
    [first, _] = await journal.outbox_pending()
    await journal.delivered(first.id, 1)
    clock.now += 8 * DAY
    await journal.finish(job_id(3), "failed", outcome={}, deliver="notice", text="❌")
    [_, third] = await journal.outbox_pending()
    await journal.delivered(third.id, 3)
    clock.now += DAY  # 3 ended a day ago: only its age keeps it

    assert await journal.purge(7 * DAY) == 1
    assert not journal.job_dir(job_id(1)).exists()
    assert await journal.get(job_id(1)) is None
    for n in (2, 3, 4):
        assert journal.job_dir(job_id(n)).exists() and await journal.get(job_id(n)) is not None


async def test_retention_forgets_expired_tokens_and_orphaned_folders(
    journal: Journal, clock: Clock
) -> None:
    await journal.add(new_job(job_id(1), expires_at=clock.now + 60))
    orphan = journal.job_dir(job_id(9))  # a crash between the files and the row
    orphan.mkdir()
    (orphan / "content").write_bytes(b"x")
    os.utime(orphan, (clock.now, clock.now))  # folder times are wall-clock times
    clock.now += 61
    await journal.purge(7 * DAY)
    [record] = await journal.unfinished()
    assert record.conversation.interaction_token == ""
    assert orphan.exists()  # it may be a job being written right now
    clock.now += ORPHAN_AGE + 1
    await journal.purge(7 * DAY)
    assert not orphan.exists()
    assert journal.job_dir(job_id(1)).exists()


# --- a journal that cannot be used ----------------------------------------------------------


async def write_garbage_over_the_file(data: Path) -> None:
    data.mkdir()
    (data / "jobs.sqlite3").write_bytes(b"garbage " * 1000)


async def write_garbage_over_the_tables(data: Path) -> None:
    journal = await Journal.open(data, sync_files=False)
    for n in range(50):
        await journal.add(new_job(job_id(n)))
    await journal.close()
    with open(data / "jobs.sqlite3", "r+b") as file:  # the header stays, the pages after go
        file.seek(4096)
        file.write(b"garbage " * 4096)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (write_garbage_over_the_file, "file is not a database"),
        (write_garbage_over_the_tables, "malformed"),
    ],
)
async def test_a_corrupt_journal_is_refused_in_one_line(
    tmp_path: Path, damage: Callable[[Path], Awaitable[None]], reason: str
) -> None:
    data = tmp_path / "data"
    await damage(data)
    with pytest.raises(JournalError) as caught:
        await Journal.open(data)
    message = str(caught.value)
    assert "is damaged" in message and reason in message and "move it aside" in message
    assert "\n" not in message


@pytest.mark.parametrize("journal_mode", ["delete", "wal"], ids=["new journal", "wal journal"])
async def test_a_journal_another_process_is_writing_is_busy_not_damaged(
    tmp_path: Path, journal_mode: str
) -> None:
    data = tmp_path / "data"
    journal = await Journal.open(data)
    await journal.add(new_job(job_id(1)))
    await journal.close()
    other = sqlite3.connect(data / "jobs.sqlite3", isolation_level=None)
    try:
        other.execute(f"PRAGMA journal_mode={journal_mode}")
        other.execute("BEGIN EXCLUSIVE")  # the other one's write lock, held
        with pytest.raises(JournalError) as caught:
            await Journal.open(data, busy_timeout=0.05)
    finally:
        other.close()
    message = str(caught.value)
    assert "in use by another process" in message and "another instance" in message
    assert "damaged" not in message and "move it aside" not in message
    assert "\n" not in message
    # Once the other one has let go, the queue is all there.
    journal = await Journal.open(data)
    try:
        assert [r.id for r in await journal.unfinished()] == [job_id(1)]
    finally:
        await journal.close()


def dot_file_locking(
    database: str, *, timeout: float, isolation_level: None, check_same_thread: bool
) -> sqlite3.Connection:
    """SQLite's dot-file locking, which has no shared memory (as a network file system has
    none): SQLite keeps its rollback journal when asked for WAL."""
    return sqlite3.connect(
        f"{Path(database).as_uri()}?vfs=unix-dotfile",
        uri=True,
        timeout=timeout,
        isolation_level=isolation_level,
        check_same_thread=check_same_thread,
    )


async def test_a_journal_that_cannot_use_wal_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pytest.raises(JournalError) as caught:
        await Journal.open(data, connect=dot_file_locking)
    assert str(caught.value) == (
        f"the job journal {data / 'jobs.sqlite3'} cannot use WAL mode (SQLite kept "
        f"journal_mode=delete): STYLIZE_DATA_DIR={data} must be on a local file system, not a "
        "network share"
    )


async def test_a_data_folder_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(JournalError, match="cannot create the data folder"):
        await Journal.open(tmp_path / "file" / "data")


async def test_a_journal_from_a_newer_bot_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(JournalError, match="newer stylize-bot"):
        await Journal.open(data)


# --- members' photos and tokens are the bot's alone -----------------------------------------


@pytest.fixture
def umask_0() -> Iterator[None]:
    """No umask to hide a missing mode: what is not set explicitly comes out 0777 or 0666."""
    old = os.umask(0)
    yield
    os.umask(old)


def modes_under(folder: Path) -> dict[str, tuple[bool, int]]:
    """Each entry's path (relative to ``folder``), whether it is a folder, and its mode."""
    return {
        path.relative_to(folder).as_posix(): (
            path.is_dir(),
            stat.S_IMODE(path.lstat().st_mode),
        )
        for path in folder.rglob("*")
    }


@pytest.mark.parametrize("hard_links", [True, False], ids=["linked", "copied"])
async def test_every_file_and_folder_is_readable_by_the_bot_alone(
    tmp_path: Path, clock: Clock, umask_0: None, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    if not hard_links:  # a follow-up's inputs are copies where the file system has no links

        def refuse(source: object, target: object) -> None:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "link", refuse)
    journal = await Journal.open(tmp_path / "new" / "data", clock=clock)
    try:
        await journal.add(new_job(job_id(1)))
        await journal.link_inputs(job_id(1), job_id(2), 2)
        await journal.finish(
            job_id(1), "done", outcome={}, deliver="result", result=b"PNG", result_format="png"
        )
        style = NewStyle(guild_id=7, name="Starry", image=b"image", thumbnail=b"thumb", added_by=1)
        await journal.add_style(style, max_count=5, max_bytes=1000)
        modes = modes_under(tmp_path)
    finally:
        await journal.close()
    made = {"new", "new/data", "new/data/jobs", "new/data/styles", "new/data/styles/7"}
    made |= {f"new/data/jobs/{job_id(n)}" for n in (1, 2)}
    made |= {"new/data/jobs.sqlite3", "new/data/jobs.sqlite3-wal", "new/data/jobs.sqlite3-shm"}
    made |= {f"new/data/jobs/{job_id(1)}/result.png"}
    made |= {f"new/data/jobs/{job_id(n)}/{f}" for n in (1, 2) for f in ("content", "style-1")}
    assert made <= modes.keys()
    assert {name: mode for name, (_, mode) in modes.items()} == {
        name: 0o700 if is_dir else 0o600 for name, (is_dir, _) in modes.items()
    }


async def test_an_old_journal_readable_by_others_is_made_private_on_open(
    tmp_path: Path, umask_0: None
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    sqlite3.connect(data / "jobs.sqlite3").close()  # SQLite's own mode: 0644
    assert stat.S_IMODE((data / "jobs.sqlite3").stat().st_mode) == 0o644
    journal = await Journal.open(data)
    try:
        for name in ("jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    finally:
        await journal.close()
