"""Tells one Discord user how their job goes, and writes its course to the journal: the
runner's ``JobReporter`` for Discord.

Progress goes through a ``Throttle`` (one status edit per STYLIZE_PROGRESS_INTERVAL at most).
A job's end is written to the journal with what must be delivered for it (the result, or a
final notice), and the outbox delivers it, with retries, even after a restart. A job stopped
by a shutdown is put back in the journal's queue, and its user is told it will resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import discord
from discord.utils import MISSING

from bot import errors, messages
from bot.journal import Journal
from bot.outbox import Outbox
from bot.status import SEND_ERRORS, Reply, describe
from bot.throttle import Throttle
from engine.jobs import Cancelled, Done, Failed, FinalEvent, JobProgress, Started

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusUpdate:
    text: str
    preview: bytes | None = None

    @staticmethod
    def merge(older: StatusUpdate, newer: StatusUpdate) -> StatusUpdate:
        # A preview waiting to go out is kept even when newer text replaces the old.
        return StatusUpdate(newer.text, newer.preview or older.preview)


class DiscordReporter:
    def __init__(
        self,
        reply: Reply,
        *,
        job_id: str,
        journal: Journal,
        outbox: Outbox,
        interval: float,
        job_timeout: float,
        make_view: Callable[[], discord.ui.View],
        resumed: bool = False,
        headline: str | None = None,
    ) -> None:
        """``headline``: a first line kept on every status (what a follow-up job derives
        from)."""
        self.reply = reply
        self.job_id = job_id
        self._journal = journal
        self._outbox = outbox
        self._job_timeout = job_timeout
        self._make_view = make_view
        self._view_shown = False
        self._resumed = resumed
        self._headline = headline
        self._cancelled_by: int | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._throttle: Throttle[StatusUpdate] = Throttle(
            self._show, interval, merge=StatusUpdate.merge
        )

    # JobReporter: updates (non-blocking)

    def queued(self, position: int) -> None:
        if self._cancelled_by is None:
            self._throttle.push(StatusUpdate(messages.queued(position)))

    def progress(self, event: Started | JobProgress) -> None:
        if isinstance(event, Started):
            self._write(self._journal.mark_running(self.job_id))
        if self._cancelled_by is not None:
            return
        if isinstance(event, Started):
            self._throttle.push(StatusUpdate(messages.starting()))
        else:
            text = messages.progress(event.step, event.total, event.eta)
            self._throttle.push(StatusUpdate(text, event.preview))

    def cancel_requested(self, by_user_id: int) -> None:
        self._cancelled_by = by_user_id
        self._throttle.push(StatusUpdate(messages.cancelling()))

    async def _show(self, update: StatusUpdate) -> None:
        # The Cancel button goes on with the first edit; later edits leave it in place.
        view = MISSING if self._view_shown else self._make_view()
        text = update.text
        if self._resumed and not self._view_shown:
            text = messages.resumed(text)
        if self._headline:
            text = f"{self._headline}\n{text}"
        if await self.reply.edit_status(text, view=view, preview=update.preview):
            self._view_shown = True

    def _write(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _writes_done(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    # JobReporter: the end

    async def finished(self, event: FinalEvent) -> None:
        await self._throttle.close()
        await self._writes_done()
        try:
            await self._record_end(event)
        except Exception:
            # The journal can't take it (a full disk?): the user still hears the job ended.
            log.exception("job %s: recording its end failed", self.job_id)
            text = f"❌ {errors.GENERIC}"
            with contextlib.suppress(*SEND_ERRORS):
                await self.reply.edit_status(text, view=None, clear_preview=True, create=True)
            return
        self._outbox.kick()

    async def _record_end(self, event: FinalEvent) -> None:
        """The end, and what to deliver for it, into the journal; the outbox does the rest."""
        # A cancel that came while the worker was encoding the result still wins: the
        # result is dropped, not posted.
        if isinstance(event, Done) and self._cancelled_by is None:
            await self._journal.finish(
                self.job_id,
                "done",
                outcome={"kind": "done"},
                deliver="result",
                result=event.image,
                result_format=event.format,
                result_stats=dataclasses.asdict(event.stats),
            )
        elif isinstance(event, Failed):
            text = errors.failure_message(event.kind, event.message, timeout=self._job_timeout)
            await self._journal.finish(
                self.job_id,
                "failed",
                outcome={"kind": str(event.kind)},
                deliver="notice",
                text=text,
            )
        else:
            by = self._cancelled_by
            own = by is None or by == self.reply.user_id
            mention = f"<@{by}>" if by is not None else None
            reason = event.reason if isinstance(event, Cancelled) else "request"
            await self._journal.finish(
                self.job_id,
                "cancelled",
                outcome={"kind": "cancelled", "by": by, "reason": reason},
                deliver="status",
                text=messages.cancelled(mention, own=own),
            )

    async def interrupted(self, *, engine_broken: bool) -> None:
        await self._throttle.close()
        await self._writes_done()
        await self._journal.requeue(self.job_id)
        text = messages.restarting(engine_broken=engine_broken)
        try:
            await self.reply.edit_status(text, view=None, clear_preview=True, create=False)
        except SEND_ERRORS as error:
            # The status is set right when the job resumes.
            log.info("job %s: 'restarting' status edit failed (%s)", self.job_id, describe(error))
