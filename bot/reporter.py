"""Tells one Discord user how their job goes: the runner's ``JobReporter`` for Discord.

Progress goes through a ``Throttle`` (one status edit per STYLIZE_PROGRESS_INTERVAL at most);
final states are shown at once. The result is always posted, whatever happened to the status
message or the interaction token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import discord
from discord.utils import MISSING

from bot import errors, messages, uploads
from bot.runner import RESTART
from bot.status import SEND_ERRORS, Reply, describe, too_large
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
        interval: float,
        job_timeout: float,
        make_view: Callable[[], discord.ui.View],
    ) -> None:
        self.reply = reply
        self.job_id = job_id
        self._job_timeout = job_timeout
        self._make_view = make_view
        self._view_shown = False
        self._cancelled_by: int | None = None
        self._throttle: Throttle[StatusUpdate] = Throttle(
            self._show, interval, merge=StatusUpdate.merge
        )

    # JobReporter: updates (non-blocking)

    def queued(self, position: int) -> None:
        if self._cancelled_by is None:
            self._throttle.push(StatusUpdate(messages.queued(position)))

    def progress(self, event: Started | JobProgress) -> None:
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
        if await self.reply.edit_status(update.text, view=view, preview=update.preview):
            self._view_shown = True

    # JobReporter: the end

    async def finished(self, event: FinalEvent) -> None:
        await self._throttle.close()
        try:
            await self._finish(event)
        except Exception:
            # Whatever broke, the user hears that the job ended.
            log.exception("job %s: reporting its end failed", self.job_id)
            await self._final_status(f"❌ {errors.GENERIC}", tell=True)

    async def _finish(self, event: FinalEvent) -> None:
        if isinstance(event, Done):
            await self._deliver(event)
        elif isinstance(event, Failed):
            text = errors.failure_message(event.kind, event.message, timeout=self._job_timeout)
            await self._final_status(text, tell=True)
        elif isinstance(event, Cancelled):
            if event.reason == RESTART:
                await self._final_status(messages.restarting(), tell=True)
            else:
                by = self._cancelled_by
                own = by is None or by == self.reply.user.id
                mention = f"<@{by}>" if by is not None else None
                await self._final_status(messages.cancelled(mention, own=own), tell=False)

    async def _final_status(self, text: str, *, tell: bool) -> None:
        """Show a final state; if the status message is gone, say it in the channel instead."""
        shown = False
        try:
            shown = await self.reply.edit_status(text, view=None, clear_preview=True, create=False)
        except SEND_ERRORS as error:
            log.warning("job %s: final status edit failed (%s)", self.job_id, describe(error))
        if not shown and tell:
            await self.reply.post(f"{self.reply.user.mention} {text}")

    async def _deliver(self, done: Done) -> None:
        limit = self.reply.upload_limit
        url: str | None = None
        for budget in (limit, int(limit * 0.8)):
            result = await asyncio.to_thread(uploads.fit, done.image, done.format, budget)
            info = messages.ResultInfo.from_stats(
                done.stats, result.format, len(result.data), refit=result.reencoded
            )
            content = messages.result(self.reply.user.mention, info, upload_limit=limit)
            filename = messages.result_filename(result.format)
            try:
                url = await self.reply.post(content, result.data, filename)
                break
            except discord.HTTPException as error:
                if not too_large(error):
                    raise
                size = len(result.data)
                log.warning("job %s: Discord refused %d bytes as too large", self.job_id, size)
        if url is None:
            await self._final_status(errors.result_lost(self.reply.user.mention), tell=False)
            return
        try:
            text = messages.done_status(done.stats.seconds, url)
            await self.reply.edit_status(text, view=None, clear_preview=True, create=False)
        except SEND_ERRORS as error:
            log.info("job %s: 'done' status edit failed (%s)", self.job_id, describe(error))
