"""A full disk as a job ends (``bot.reporter`` over a real journal): its picture still reaches
its member from memory, and the job is never painted again, even when the journal can write
nothing at all. tests/test_bot_followups_e2e.py shows the same end to end, with a restart."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from bot import errors
from bot.cogs.stylize import rebuild_job
from bot.journal import Conversation, JobRecord, Journal, NewJob
from bot.reporter import DiscordReporter
from engine.jobs import Done, JobStats

JOB = "cd" * 16


def full_disk(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


class StubReply:
    user_id = 42
    mention = "<@42>"

    def __init__(self) -> None:
        self.statuses: list[str] = []

    async def edit_status(self, content: str, **kwargs: Any) -> bool:
        self.statuses.append(content)
        return True


class StubDelivery:
    def __init__(self) -> None:
        self.posted: list[tuple[JobRecord, bytes]] = []
        self.notices: list[str] = []

    async def post_result(self, record: JobRecord, reply: Any, image: bytes) -> int:
        self.posted.append((record, image))
        return 1

    async def notice(self, reply: Any, text: str, *, tell: bool) -> None:
        self.notices.append(text)


class StubOutbox:
    def kick(self) -> None:
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


async def end(journal: Journal) -> StubDelivery:
    """The job ends with its picture; returns what was delivered."""
    delivery = StubDelivery()
    reporter = DiscordReporter(
        cast(Any, StubReply()),
        job_id=JOB,
        journal=journal,
        outbox=cast(Any, StubOutbox()),
        delivery=cast(Any, delivery),
        interval=1.0,
        job_timeout=60.0,
        make_view=lambda: cast(Any, None),
    )
    await reporter.finished(Done(JOB, b"picture", "png", JobStats(1.0, 1, 16, 12, 3, {})))
    return delivery


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
    delivery = await end(journal)

    [(record, image)] = delivery.posted
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
    delivery = await end(journal)

    assert [image for _, image in delivery.posted] == [b"picture"]  # the member has it
    [record] = await journal.unfinished()  # the row could not be changed…
    rebuilt = await rebuild_job(journal, record, preview_interval=0.0)
    assert rebuilt == errors.inputs_lost()  # …but without its pictures it is not run again
