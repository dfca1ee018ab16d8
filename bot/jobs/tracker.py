"""One job's course in the journal: the runner's ``JobReporter`` on the core's side.

The tracker writes what the runner tells it to the journal (running, the end, back in the
queue on a shutdown) and hands the member's view of it to the front end's ``JobStatus``. A
job's end is written together with what its member is owed (the result, a notice or a final
status), which the outbox then delivers, with retries, even after a restart. When the journal
cannot take the end (a full disk), the job is still never painted twice, and what its member
is owed goes out from memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from bot import messages
from bot.jobs.frontend import JobStatus
from bot.jobs.outbox import Outbox, Retry, Undeliverable, backoff
from bot.jobs.runner import ON_REQUEST
from bot.journal import Journal, OutboxKind
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
    deliver: OutboxKind
    text: messages.Text | None = None
    """The notice or final status, written out in its reader's language when delivered."""
    result: Done | None = None


def ending_for(
    event: FinalEvent, *, user_id: int, cancelled_by: int | None, job_timeout: float
) -> Ending:
    """How a job of ``user_id`` ended, for the journal, and what its member is owed."""
    # A cancel that came while the worker was encoding the result still wins: the result is
    # dropped, not posted.
    if isinstance(event, Done) and cancelled_by is None:
        return Ending("done", {"kind": "done"}, "result", result=event)
    if isinstance(event, Failed):
        text = messages.later(messages.failure, str(event.kind), event.message,
                              timeout=job_timeout)  # fmt: skip
        return Ending("failed", {"kind": str(event.kind)}, "notice", text)
    own = cancelled_by is None or cancelled_by == user_id
    by = None if cancelled_by is None else messages.mention(cancelled_by)
    reason = event.reason if isinstance(event, Cancelled) else ON_REQUEST
    outcome = {"kind": "cancelled", "by": cancelled_by, "reason": reason}
    return Ending("cancelled", outcome, "status", messages.later(messages.cancelled, by, own=own))


class JobTracker:
    def __init__(
        self,
        status: JobStatus,
        *,
        job_id: str,
        user_id: int,
        journal: Journal,
        outbox: Outbox,
        job_timeout: float,
        on_failed: Callable[[Failed], None] | None = None,
    ) -> None:
        """``on_failed``: told of a failure as it ends the job (the quota gives it back)."""
        self.status = status
        self.job_id = job_id
        self.user_id = user_id
        self._journal = journal
        self._outbox = outbox
        self._job_timeout = job_timeout
        self._on_failed = on_failed
        self._cancelled_by: int | None = None
        self._writes: set[asyncio.Task[None]] = set()

    # JobReporter: updates (non-blocking)

    def queued(self, position: int) -> None:
        self.status.queued(position)

    def progress(self, event: Started | JobProgress) -> None:
        if isinstance(event, Started):
            self._write(self._journal.mark_running(self.job_id))
        self.status.progress(event)

    def cancel_requested(self, by_user_id: int) -> None:
        self._cancelled_by = by_user_id
        self.status.cancel_requested(by_user_id)

    def _write(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _settle(self) -> None:
        await self.status.settle()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    # JobReporter: the end

    async def finished(self, event: FinalEvent) -> None:
        await self._settle()
        ending = ending_for(
            event,
            user_id=self.user_id,
            cancelled_by=self._cancelled_by,
            job_timeout=self._job_timeout,
        )
        done = ending.result
        if isinstance(event, Failed) and self._on_failed is not None:
            self._on_failed(event)
        try:
            await self._journal.finish(
                self.job_id,
                ending.state,
                outcome=ending.outcome,
                deliver=ending.deliver,
                text=ending.text.dumps() if ending.text else "",
                result=done.image if done else None,
                result_format=done.format if done else None,
                result_stats=dataclasses.asdict(done.stats) if done else None,
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

    async def interrupted(self, *, engine_broken: bool) -> None:
        await self._settle()
        await self._journal.requeue(self.job_id)
        try:
            await self.status.notice(
                messages.later(messages.restarting, engine_broken=engine_broken), tell=False
            )
        except (Retry, Undeliverable) as error:
            # The status is set right when the job resumes.
            log.info("job %s: 'restarting' status edit failed (%s)", self.job_id, error)

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
            if ending.text is not None:
                await self._notice(ending.text, tell=ending.deliver == "notice")
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
                    await self.status.post_result(record, done.image)
                    log.info("job %s: result posted from memory (the journal kept no copy)",
                             self.job_id)  # fmt: skip
                    return
                except Undeliverable as error:  # the member was told
                    log.error("job %s: result undeliverable: %s", self.job_id, error)
                    return
                except Retry as error:
                    log.warning("job %s: posting the result from memory failed (%s)",
                                self.job_id, error)  # fmt: skip
                    if attempt == UNKEPT_ATTEMPTS:
                        break
                    await asyncio.sleep(backoff(attempt))
                except Exception:
                    log.exception("job %s: posting the result from memory failed", self.job_id)
                    break
        lost = messages.later(messages.result_lost, messages.mention(self.user_id))
        await self._notice(lost, tell=True)

    async def _notice(self, text: messages.Text, *, tell: bool) -> None:
        try:
            await self.status.notice(text, tell=tell)
        except (Retry, Undeliverable) as error:
            log.warning("job %s: its final notice failed (%s)", self.job_id, error)
