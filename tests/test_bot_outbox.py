"""The outbox (bot.jobs.outbox) over a real journal; how the Discord side words a failed
delivery for it (bot.delivery.classify); and the delivery routes (bot.delivery.post)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import discord
import pytest

from bot.delivery import classify, post
from bot.jobs.outbox import MAX_ATTEMPTS, MAX_DELAY, Outbox, Retry, Undeliverable, backoff
from bot.journal import Conversation, Journal, NewJob, OutboxItem
from bot.reply import Reply

JOB = "ab" * 16


def http_error(status: int, code: int = 0) -> discord.HTTPException:
    response = types.SimpleNamespace(status=status, reason="refused")
    kind = {403: discord.Forbidden, 404: discord.NotFound}.get(status, discord.HTTPException)
    if status >= 500:
        kind = discord.DiscordServerError
    return kind(cast(Any, response), {"code": code, "message": "refused"})


def outbox_rows(journal: Journal) -> list[tuple[str, str, int | None, str | None]]:
    """Each outbox item's (job id, state, posted message id, last error), as stored."""
    with sqlite3.connect(journal.path) as db:
        return db.execute(
            "SELECT job_id, state, message_id, last_error FROM outbox ORDER BY id"
        ).fetchall()


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path / "data")
    conversation = Conversation(42, 7, 8, 9, 10, "token", 0.0, 1024)
    await journal.add(NewJob(JOB, conversation, {}, 1, b"c", (b"s",)))
    await journal.finish(JOB, "failed", outcome={}, deliver="notice", text="❌ no")
    yield journal
    await journal.close()


class ScriptedDeliver:
    """Fails with the scripted errors in turn, then succeeds; records each attempt."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.attempts: list[int] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def __call__(self, item: OutboxItem) -> int | None:
        self.attempts.append(item.attempts)
        if self.errors:
            error = self.errors.pop(0)
            if not isinstance(error, Retry):  # the outbox gives up on it: nothing more will come
                self.done.set_result(None)
            raise error
        self.done.set_result(None)
        return 555


async def run_until_done(journal: Journal, deliver: ScriptedDeliver) -> None:
    outbox = Outbox(journal, deliver, base_delay=0.01)
    outbox.start()
    try:
        await asyncio.wait_for(deliver.done, 30)
        assert await outbox.wait_idle(30)
    finally:
        await outbox.stop()


async def test_an_attempt_to_retry_is_retried_with_backoff(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    deliver = ScriptedDeliver(Retry("HTTP 503, code 0"), Retry("TimeoutError"))
    with caplog.at_level(logging.WARNING, "bot.jobs.outbox"):
        await run_until_done(journal, deliver)
    # Each attempt knows how many began before it: a retry looks for an earlier post first.
    assert deliver.attempts == [0, 1, 2]
    assert await journal.outbox_pending() == []
    assert outbox_rows(journal) == [(JOB, "delivered", 555, "TimeoutError")]
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and all(JOB in line for line in retries)


@pytest.mark.parametrize(
    ("error", "recorded"),
    [
        (Undeliverable("the channel, a DM and the interaction all refused"),
         "the channel, a DM and the interaction all refused"),
        (RuntimeError("a bug"), "RuntimeError"),  # not a refusal: a bug, not tried again
    ],
)  # fmt: skip
async def test_an_undeliverable_item_is_recorded_so_and_logged_with_the_job_id(
    journal: Journal, caplog: pytest.LogCaptureFixture, error: BaseException, recorded: str
) -> None:
    deliver = ScriptedDeliver(error)
    with caplog.at_level(logging.ERROR, "bot.jobs.outbox"):
        await run_until_done(journal, deliver)
    assert deliver.attempts == [0]
    assert await journal.outbox_pending() == []
    assert outbox_rows(journal) == [(JOB, "failed", None, recorded)]
    assert any(JOB in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


async def test_an_item_that_never_gets_through_is_given_up(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    [item] = await journal.outbox_pending()
    for _ in range(MAX_ATTEMPTS):  # as if every earlier attempt had failed and been retried
        await journal.begin_attempt(item.id)
    deliver = ScriptedDeliver()
    outbox = Outbox(journal, deliver, base_delay=0.01)
    with caplog.at_level(logging.ERROR, "bot.jobs.outbox"):
        outbox.start()
        try:
            assert await outbox.wait_idle(30)
        finally:
            await outbox.stop()
    assert deliver.attempts == [] and await journal.outbox_pending() == []
    [(_, state, _, _)] = outbox_rows(journal)
    assert state == "failed"
    assert any("giving up" in r.getMessage() and JOB in r.getMessage() for r in caplog.records)


def test_backoff_doubles_up_to_a_cap() -> None:
    delays = [backoff(n, base=2.0) for n in (1, 2, 3, 4)]
    for delay, expected in zip(delays, (2, 4, 8, 16), strict=True):
        assert 0.9 * expected <= delay <= 1.1 * expected
    assert backoff(50) <= 1.1 * MAX_DELAY


@pytest.mark.parametrize(
    ("error", "outcome", "words"),
    [
        (http_error(503), Retry, "HTTP 503, code 0"),
        (http_error(429), Retry, "HTTP 429, code 0"),
        (asyncio.TimeoutError(), Retry, "TimeoutError"),
        (aiohttp.ClientConnectionError("https://discord.test/api/webhooks/1/SECRET"), Retry,
         "ClientConnectionError"),
        (http_error(403, 50013), Undeliverable, "HTTP 403, code 50013"),
        (http_error(404, 10003), Undeliverable, "HTTP 404, code 10003"),
    ],
)  # fmt: skip
def test_discords_refusals_reach_the_outbox_as_retry_or_undeliverable(
    error: BaseException, outcome: type[Exception], words: str
) -> None:
    classified = classify(error)
    assert type(classified) is outcome
    assert str(classified) == words  # never the error's text, which may carry a token


# --- routes ---------------------------------------------------------------------------------


class StubReply:
    """What ``post`` uses of a ``Reply``; each route fails as scripted, or posts."""

    def __init__(self, *, token_usable: bool, fail: dict[str, BaseException]) -> None:
        self.token_usable = token_usable
        self.fail = fail
        self.routes: list[str] = []
        self.user_id = 42
        self.conversation = types.SimpleNamespace(channel_id=8)

    async def _send(self, route: str) -> Any:
        self.routes.append(route)
        if route in self.fail:
            raise self.fail[route]
        return types.SimpleNamespace(id=1, jump_url="https://discord.test/1")

    async def send_interaction(
        self, content: str, file: object = None, *, ephemeral: bool = False, view: object = None
    ) -> Any:
        return await self._send("ephemeral" if ephemeral else "interaction")

    async def send_channel(self, content: str, file: object = None, *, view: object = None) -> Any:
        return await self._send("channel")

    async def send_dm(self, content: str, file: object = None) -> Any:
        return await self._send("dm")


@pytest.mark.parametrize(
    ("token_usable", "fail", "routes", "outcome"),
    [
        (True, {}, ["interaction"], "posted"),
        (True, {"interaction": http_error(401, 50027)}, ["interaction", "channel"], "posted"),
        (False, {"channel": http_error(403, 50001)}, ["channel", "dm"], "posted"),
        (False, {"channel": http_error(404, 10003)}, ["channel", "dm"], "posted"),
        (False, {"channel": http_error(503)}, ["channel"], "retry"),
        (True, {"interaction": http_error(429)}, ["interaction"], "retry"),
        (
            False,
            {"channel": http_error(403, 50013), "dm": http_error(403, 50007)},
            ["channel", "dm"],
            "undeliverable",
        ),
        (
            True,
            {
                "interaction": http_error(403, 50001),
                "channel": http_error(403, 50013),
                "dm": http_error(403, 50007),
            },
            ["interaction", "channel", "dm", "ephemeral"],
            "undeliverable",
        ),
    ],
)
async def test_post_takes_the_best_route_left(
    token_usable: bool, fail: dict[str, BaseException], routes: list[str], outcome: str
) -> None:
    reply = StubReply(token_usable=token_usable, fail=fail)
    if outcome == "posted":
        await post(cast(Reply, reply), "<@42> here", ("stylized-x.png", b"png"), JOB)
    elif outcome == "retry":
        with pytest.raises(discord.HTTPException):
            await post(cast(Reply, reply), "<@42> here", ("stylized-x.png", b"png"), JOB)
    else:
        with pytest.raises(Undeliverable):
            await post(cast(Reply, reply), "<@42> here", ("stylized-x.png", b"png"), JOB)
    assert reply.routes == routes
