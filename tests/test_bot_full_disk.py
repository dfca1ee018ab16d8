"""A full disk as a job ends (``bot.jobs.tracker`` over a real journal): its picture still
reaches its member from memory, and the job is never painted again, even when the journal can
write nothing at all. tests/test_bot_followups_e2e.py shows the same end to end, with a
restart."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import messages
from bot.jobs.outbox import Outbox
from bot.jobs.service import rebuild_job
from bot.jobs.tracker import JobTracker
from bot.journal import Conversation, JobRecord, Journal, NewJob, OutboxItem
from engine.jobs import Done, JobProgress, JobStats, Started

JOB = "cd" * 16


def full_disk(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


class StubStatus:
    """The front end's ``JobStatus``: records what the member is shown and sent."""

    def __init__(self) -> None:
        self.posted: list[tuple[JobRecord, bytes]] = []
        self.notices: list[str] = []

    def queued(self, position: int) -> None:
        pass

    def progress(self, event: Started | JobProgress) -> None:
        pass

    def cancel_requested(self, by_user_id: int) -> None:
        pass

    async def settle(self) -> None:
        pass

    async def notice(self, text: str, *, tell: bool) -> None:
        self.notices.append(text)

    async def post_result(self, record: JobRecord, image: bytes) -> None:
        self.posted.append((record, image))


async def nothing_to_deliver(item: OutboxItem) -> int | None:
    raise AssertionError("nothing was put in the outbox")


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path / "data")
    conversation = Conversation(42, 7, 8, 9, 10, "token", 0.0, 1024)
    settings = {"size": 16, "steps": 1, "strength": 1.0, "seed": 3}
    await journal.add(NewJob(JOB, conversation, settings, 3, b"content", (b"style",)))
    await journal.mark_running(JOB)
    yield journal
    await journal.close()


async def end(journal: Journal) -> StubStatus:
    """The job ends with its picture; returns what its member was shown and sent."""
    status = StubStatus()
    tracker = JobTracker(
        status,
        job_id=JOB,
        user_id=42,
        journal=journal,
        outbox=Outbox(journal, nothing_to_deliver),  # never started: kicks go nowhere
        job_timeout=60.0,
    )
    await tracker.finished(Done(JOB, b"picture", "png", JobStats(1.0, 1, 16, 12, 3, {})))
    assert await journal.outbox_pending() == []
    return status


@pytest.mark.parametrize("failing_ends", [0, 1], ids=["the row fits", "the row fits once room"])
async def test_a_result_the_disk_cannot_keep_is_posted_from_memory(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, failing_ends: int
) -> None:
    monkeypatch.setattr(journal, "finish", full_disk)
    finish_unkept = journal.finish_unkept
    fails = [failing_ends]

    async def end_unkept(*args: Any, **kwargs: Any) -> None:
        if fails[0] > 0:
            fails[0] -= 1
            full_disk()
        await finish_unkept(*args, **kwargs)

    monkeypatch.setattr(journal, "finish_unkept", end_unkept)
    status = await end(journal)

    [(record, image)] = status.posted
    assert image == b"picture" and record.result_format == "png"
    assert record.result_stats is not None and record.result_stats["width"] == 16
    stored = await journal.get(JOB)
    assert stored is not None and stored.state == "done"
    assert await journal.unfinished() == []  # a restart does not paint it again
    # Room was made by deleting the pictures only when the row didn't fit otherwise.
    assert await journal.has_inputs(JOB, 1) is (failing_ends == 0)


async def test_when_the_journal_takes_nothing_the_job_is_reported_lost_not_repainted(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "finish", full_disk)
    monkeypatch.setattr(journal, "finish_unkept", full_disk)
    status = await end(journal)

    assert [image for _, image in status.posted] == [b"picture"]  # the member has it
    assert status.notices == []
    [record] = await journal.unfinished()  # the row could not be changed…
    rebuilt = await rebuild_job(journal, record, preview_interval=0.0)
    assert rebuilt == messages.later(
        messages.inputs_lost
    )  # …but without its pictures it is not run again
