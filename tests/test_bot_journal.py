"""The job journal (bot.journal): durable rows and files, order, the outbox, retention, schema."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import errors
from bot.cogs.stylize import MAX_RUNS, rebuild_job
from bot.journal import (
    ORPHAN_AGE,
    SCHEMA_VERSION,
    Conversation,
    Journal,
    JournalError,
    NewJob,
    StatusMessage,
)
from engine.jobs import Job
from engine.settings import StylizeSettings

DAY = 24 * 3600.0


class Clock:
    """Wall time under the test's control; records which threads read it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.threads: set[str] = set()

    def __call__(self) -> float:
        self.threads.add(threading.current_thread().name)
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
    for n in (1, 2):
        await journal.add(new_job(job_id(n)))
    await journal.set_order([job_id(1), job_id(2)])
    await journal.mark_running(job_id(2))  # crashed once while running…
    await journal.mark_running(job_id(2))  # …then started again and stopped for a deploy
    await journal.requeue(job_id(2))
    await journal.requeue(job_id(1))  # a waiting job keeps its place
    records = await journal.unfinished()
    assert [(r.id, r.state, r.runs) for r in records] == [
        (job_id(2), "queued", 1),
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


async def test_every_read_and_write_runs_on_the_journal_thread(
    journal: Journal, clock: Clock
) -> None:
    await journal.add(new_job(job_id(1)))
    await journal.mark_running(job_id(1))
    assert clock.threads and all(name.startswith("journal") for name in clock.threads)


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
    assert await rebuild_job(journal, record, preview_interval=0) == errors.inputs_lost()


async def test_a_job_that_keeps_killing_the_bot_is_given_up(journal: Journal) -> None:
    await journal.add(new_job(job_id(1)))
    for _ in range(MAX_RUNS):  # running each time the bot died
        await journal.mark_running(job_id(1))
    [record] = await journal.unfinished()
    assert await rebuild_job(journal, record, preview_interval=0) == errors.keeps_crashing()


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
    # 1: ended long ago, delivered. 2: ended long ago, result still owed. 3: ended recently.
    # 4: still queued.
    for n in (1, 2):
        await journal.finish(
            job_id(n), "done", outcome={}, deliver="result", result=b"x", result_format="png"
        )
    [first, _] = await journal.outbox_pending()
    await journal.delivered(first.id, 1)
    clock.now += 8 * DAY
    await journal.finish(job_id(3), "failed", outcome={}, deliver="notice", text="❌")

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


async def test_a_corrupt_journal_is_refused_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "jobs.sqlite3").write_bytes(b"garbage " * 1000)
    with pytest.raises(JournalError, match="is damaged") as caught:
        await Journal.open(data)
    assert "\n" not in str(caught.value)


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
