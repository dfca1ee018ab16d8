"""The outbox: results and final notices, delivered from the journal with retries.

A job's end is recorded in the journal together with an outbox item, in one transaction; this
loop delivers the items in order. Before each attempt it records that the attempt began, so
that after a crash the next attempt first looks for what the interrupted one may have posted
(the deliverer does the looking). The deliverer says how an attempt failed with the two
exceptions below, so the loop knows nothing of Discord: ``Retry`` (a 429, a 5xx, a timeout, a
lost connection) is tried again later with exponential backoff, across restarts since the
schedule is in the journal; ``Undeliverable`` (no route left) is recorded as such and logged,
and so is any other error, which is a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from bot.journal import Journal, OutboxItem

log = logging.getLogger(__name__)

BASE_DELAY = 2.0
MAX_DELAY = 600.0
MAX_ATTEMPTS = 60
"""Then an item is given up: with the delays capped at 10 minutes, about 8 hours of trying."""


class Retry(Exception):
    """This attempt failed, and a later one may get through; ``str()`` says why, for the log
    (never a token or a URL)."""


class Undeliverable(Exception):
    """Every route was refused for good; ``str()`` says why, for the log."""


Deliver = Callable[[OutboxItem], Awaitable[int | None]]
"""Deliver one item; returns the posted message's id, if there is one. Raises ``Retry`` or
``Undeliverable``."""


def backoff(attempts: int, *, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Seconds before attempt ``attempts + 1``: doubling, capped, with a little jitter so that
    many items that failed together do not all come back at once."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.9, 1.1)


class Outbox:
    def __init__(
        self,
        journal: Journal,
        deliver: Deliver,
        *,
        clock: Callable[[], float] = time.time,
        base_delay: float = BASE_DELAY,
    ) -> None:
        self._journal = journal
        self._deliver = deliver
        self._clock = clock
        self._base_delay = base_delay
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending = 0

    @property
    def pending(self) -> int:
        """Items not delivered (nor given up) when the loop last looked, less those it has
        delivered since: what is due now and what waits for a retry."""
        return self._pending

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox")

    def kick(self) -> None:
        """Something new is in the journal's outbox: look now."""
        self._idle.clear()
        self._wake.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is due (delivered, or waiting for a retry); False on timeout."""
        if self._task is None:  # never started (start-up failed) or already stopped
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop now. An attempt cut short is found (or made again) after the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._idle.clear()
            try:
                next_due = await self._deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox: reading the journal failed; trying again shortly")
                next_due = self._clock() + self._base_delay
            if not self._wake.is_set():
                self._idle.set()
            timeout = None if next_due is None else max(0.0, next_due - self._clock())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _deliver_due(self) -> float | None:
        """Deliver every item that is due, in order; returns when the next one is due."""
        next_due: float | None = None
        items = await self._journal.outbox_pending()
        self._pending = len(items)
        for item in items:
            if item.next_at > self._clock():
                next_due = item.next_at if next_due is None else min(next_due, item.next_at)
                continue
            retry_at = await self._attempt(item)
            if retry_at is None:
                self._pending -= 1
            else:
                next_due = retry_at if next_due is None else min(next_due, retry_at)
        return next_due

    async def _attempt(self, item: OutboxItem) -> float | None:
        if item.attempts >= MAX_ATTEMPTS:
            log.error("job %s: giving up on the %s after %d attempts", item.job_id, item.kind,
                      item.attempts)  # fmt: skip
            await self._journal.undeliverable(item.id, f"gave up after {item.attempts} attempts")
            return None
        await self._journal.begin_attempt(item.id)
        try:
            message_id = await self._deliver(item)
        except asyncio.CancelledError:
            raise
        except Retry as error:
            retry_at = self._clock() + backoff(item.attempts + 1, base=self._base_delay)
            log.warning(
                "job %s: delivering the %s failed (%s); retrying in %.0f s",
                item.job_id, item.kind, error, retry_at - self._clock(),
            )  # fmt: skip
            await self._journal.retry_later(item.id, retry_at, str(error))
            return retry_at
        except Undeliverable as error:
            log.error("job %s: %s undeliverable: %s", item.job_id, item.kind, error)
            await self._journal.undeliverable(item.id, str(error))
        except Exception as error:
            log.exception("job %s: delivering the %s failed", item.job_id, item.kind)
            await self._journal.undeliverable(item.id, type(error).__name__)
        else:
            await self._journal.delivered(item.id, message_id)
        return None
