"""Coalescing updates to one message: at most one send per interval, the latest state wins.

No Discord here: the bot hands it a coroutine that edits the status message. An update that
arrives within the interval waits for it and replaces any update still waiting, so a burst of
progress events costs one edit, and the last state is never lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

U = TypeVar("U")
log = logging.getLogger(__name__)


class Throttle(Generic[U]):
    def __init__(
        self,
        send: Callable[[U], Awaitable[object]],
        interval: float,
        *,
        merge: Callable[[U, U], U] | None = None,
    ) -> None:
        """``merge(older, newer)`` combines a waiting update with a newer one (default: newer)."""
        self._send = send
        self._interval = interval
        self._merge = merge
        self._pending: U | None = None
        self._last = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._closed = False
        self.sent = 0

    def push(self, update: U) -> None:
        """Queue ``update``; it is sent now if the interval has passed, else when it has."""
        if self._closed:
            return
        if self._pending is not None and self._merge is not None:
            update = self._merge(self._pending, update)
        self._pending = update
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def close(self) -> None:
        """Drop whatever waits and let an edit in flight finish, so a final edit lands last."""
        self._closed = True
        self._pending = None
        task = self._task
        if task is None or task.done():
            return
        if not self._sending:
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending is not None and not self._closed:
            delay = self._last + self._interval - loop.time()
            if delay > 0:
                # The product's progress interval, not a rate-limit guess: discord.py still
                # handles 429s for every edit that goes out.
                await asyncio.sleep(delay)
            update, self._pending = self._pending, None
            if update is None:
                continue
            self._sending = True
            try:
                await self._send(update)
                self.sent += 1
            except Exception:
                log.exception("status update failed")
            finally:
                self._sending = False
                # Counted from the end of a send, so that Discord too sees the edits at least
                # an interval apart, however long each request took.
                self._last = loop.time()
