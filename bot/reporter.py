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
from typing import Any, Literal

import discord
from discord.utils import MISSING

from bot import errors, messages
from bot.delivery import Delivery
from bot.journal import Journal
from bot.outbox import Outbox, Undeliverable, backoff
from bot.reply import SEND_ERRORS, Reply, describe, transient
from bot.throttle import Throttle
from engine.jobs import Cancelled, Done, Failed, FinalEvent, JobProgress, Started

log = logging.getLogger(__name__)


UNKEPT_ATTEMPTS = 3
"""Tries to post a result that the journal could not keep (it is in memory only)."""


@dataclass(frozen=True)
class Ending:
    """How a job ended: its journal state and outcome, and what its member is owed: the
    result (``deliver`` "result"), a notice, or a final status."""

    state: Literal["done", "failed", "cancelled"]
    outcome: dict[str, Any]
    deliver: Literal["result", "notice", "status"]
    text: str = ""
    result: Done | None = None


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
        delivery: Delivery,
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
        self._delivery = delivery
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
        ending = self._ending(event)
        try:
            await self._journal.finish(
                self.job_id,
                ending.state,
                outcome=ending.outcome,
                deliver=ending.deliver,
                text=ending.text,
                result=ending.result.image if ending.result else None,
                result_format=ending.result.format if ending.result else None,
                result_stats=dataclasses.asdict(ending.result.stats) if ending.result else None,
            )
        except Exception as error:
            # The journal can't take it (a full disk?). The job must neither be lost nor run
            # again after a restart: its end is recorded without the result, and what its
            # member is owed goes out from here.
            log.error("job %s: recording its end failed (%s: %s)", self.job_id,
                      type(error).__name__, error)  # fmt: skip
            await self._record_unkept(ending)
            await self._deliver_unkept(ending)
            return
        self._outbox.kick()

    def _ending(self, event: FinalEvent) -> Ending:
        """How the job ended, for the journal, and what its member is owed."""
        # A cancel that came while the worker was encoding the result still wins: the
        # result is dropped, not posted.
        if isinstance(event, Done) and self._cancelled_by is None:
            return Ending("done", {"kind": "done"}, "result", result=event)
        if isinstance(event, Failed):
            text = errors.failure_message(event.kind, event.message, timeout=self._job_timeout)
            return Ending("failed", {"kind": str(event.kind)}, "notice", text)
        by = self._cancelled_by
        own = by is None or by == self.reply.user_id
        mention = f"<@{by}>" if by is not None else None
        reason = event.reason if isinstance(event, Cancelled) else "request"
        outcome = {"kind": "cancelled", "by": by, "reason": reason}
        return Ending("cancelled", outcome, "status", messages.cancelled(mention, own=own))

    async def _record_unkept(self, ending: Ending) -> None:
        """The end, without the result file and the outbox item that ``finish`` could not
        write; failing that, the job's pictures go (which gives space back, and a job without
        pictures is never painted again) and the end is tried once more."""
        stats = dataclasses.asdict(ending.result.stats) if ending.result else None
        try:
            await self._journal.finish_unkept(
                self.job_id, ending.state, outcome=ending.outcome, result_stats=stats
            )
            return
        except Exception as error:
            log.error("job %s: recording its end without the result failed too (%s); "
                      "deleting its pictures to make room", self.job_id,
                      type(error).__name__)  # fmt: skip
        try:
            await self._journal.drop_inputs(self.job_id)
            await self._journal.finish_unkept(
                self.job_id, ending.state, outcome=ending.outcome, result_stats=stats
            )
        except Exception as error:
            log.error("job %s: its end cannot be recorded (%s); if its pictures are gone, a "
                      "restart reports it lost instead of painting it again", self.job_id,
                      type(error).__name__)  # fmt: skip

    async def _deliver_unkept(self, ending: Ending) -> None:
        """What the outbox would have delivered, from memory, with a few tries."""
        if ending.result is None:
            with contextlib.suppress(*SEND_ERRORS):
                await self._delivery.notice(
                    self.reply, ending.text, tell=ending.deliver == "notice"
                )
            return
        try:
            record = await self._journal.get(self.job_id)
        except Exception:
            record = None
        if record is not None:
            done = ending.result
            record = dataclasses.replace(
                record, result_format=done.format, result_stats=dataclasses.asdict(done.stats)
            )
            for attempt in range(1, UNKEPT_ATTEMPTS + 1):
                try:
                    await self._delivery.post_result(record, self.reply, done.image)
                    log.info("job %s: result posted from memory (the journal kept no copy)",
                             self.job_id)  # fmt: skip
                    return
                except Undeliverable as error:  # the member was told
                    log.error("job %s: result undeliverable: %s", self.job_id, error)
                    return
                except Exception as error:
                    log.warning("job %s: posting the result from memory failed (%s)",
                                self.job_id, describe(error))  # fmt: skip
                    if not transient(error) or attempt == UNKEPT_ATTEMPTS:
                        break
                    await asyncio.sleep(backoff(attempt))
        with contextlib.suppress(*SEND_ERRORS):
            await self._delivery.notice(self.reply, errors.result_lost(self.reply.mention),
                                        tell=True)  # fmt: skip

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
