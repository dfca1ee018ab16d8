"""Runs jobs through the fair queue and the engine's backend, and tells a reporter what happens.

No Discord here: the job service hands in a ``JobReporter`` per job (it records the job's
course and shows it to its member). The runner starts a job only when a worker is free, by
the backend's live capacity, so the fair queue is the only scheduler. Every job ends in exactly one
``reporter.finished`` call, whatever goes wrong.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.jobs.observer import NO_OBSERVER, JobObserver, JobOutcome
from bot.jobs.queue import FairQueue, QueueRefusal
from engine.backend import Backend, JobHandle
from engine.jobs import (
    BackendError,
    Cancelled,
    Done,
    Failed,
    FailureKind,
    FinalEvent,
    Job,
    JobProgress,
    Started,
)

log = logging.getLogger(__name__)

RESTART = "restart"
"""``Cancelled.reason`` of jobs ended by a shutdown of the bot."""
ON_REQUEST = "request"
"""``Cancelled.reason`` of jobs cancelled with the Cancel button."""


class ShuttingDown(QueueRefusal):
    """The bot is shutting down and takes no new jobs."""


class JobReporter(Protocol):
    """What the runner tells the outside world about one job."""

    def queued(self, position: int) -> None:
        """The job waits; ``position`` 1 is next. Called again whenever it changes."""

    def progress(self, event: Started | JobProgress) -> None:
        """The job started, or made progress. Must not block."""

    def cancel_requested(self, by_user_id: int) -> None:
        """Someone pressed Cancel; the final ``Cancelled`` follows."""

    async def finished(self, event: FinalEvent) -> None:
        """The one final event: deliver the result or say what happened."""

    async def interrupted(self, *, engine_broken: bool) -> None:
        """The bot stops before the job could end: it is kept, to resume after the restart.
        Instead of ``finished``, for a job stopped or never started because of a shutdown."""


@dataclass
class Request:
    job: Job
    user_id: int
    reporter: JobReporter
    handle: JobHandle | None = None
    cancel_reason: str | None = None
    last_position: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once its end has been reported."""
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None


class JobRunner:
    def __init__(
        self,
        backend: Backend,
        *,
        per_user: int,
        max_waiting: int,
        on_engine_broken: Callable[[], None] | None = None,
        on_order: Callable[[list[str]], None] | None = None,
        observer: JobObserver = NO_OBSERVER,
    ) -> None:
        """``on_engine_broken`` is called once if the engine refuses jobs for good (it can no
        longer start workers): the job it refused is kept for after a restart. ``on_order`` is
        told the waiting jobs' ids, in the order they will start, whenever that changes.
        ``observer`` hears each job's wait, run time and outcome."""
        self._backend = backend
        self._observer = observer
        self._on_engine_broken = on_engine_broken
        self._on_order = on_order
        self._last_order: list[str] = []
        self.engine_broken = False
        self._queue: FairQueue[Request] = FairQueue(
            per_user=per_user, max_waiting=max_waiting, slots=max(1, backend.capacity)
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = True
        # Workers die and come back, and machines join or leave a cluster.
        backend.add_capacity_listener(self._capacity_changed)

    # Questions

    def check(self, user_id: int) -> None:
        """Raise the refusal that ``submit`` would raise for this user now."""
        self._queue.check(user_id)

    def active(self, user_id: int) -> int:
        """The user's jobs queued or running."""
        return self._queue.active_count(user_id)

    def owner(self, job_id: str) -> int | None:
        entry = self._queue.get(job_id)
        return entry.user_id if entry else None

    def position(self, job_id: str) -> int | None:
        return self._queue.position(job_id)

    def counts(self) -> tuple[int, int]:
        """(jobs waiting, jobs running)."""
        return len(self._queue.waiting()), len(self._queue.running())

    async def cancel_and_wait(self, job_ids: list[str], by_user_id: int, timeout: float) -> bool:
        """Cancel these jobs (those here) and wait until their ends have been reported; False
        if some had not within ``timeout`` s."""
        events = [e.payload.ended for j in job_ids if (e := self._queue.get(j)) is not None]
        for job_id in job_ids:
            self.cancel(job_id, by_user_id)
        if not events:
            return True
        _, pending = await asyncio.wait(
            [asyncio.ensure_future(event.wait()) for event in events], timeout=timeout
        )
        for task in pending:
            task.cancel()
        return not pending

    @property
    def busy(self) -> bool:
        return bool(self._tasks) or len(self._queue) > 0

    @property
    def waiting(self) -> int:
        """Jobs in the fair queue, not yet handed to the engine."""
        return len(self._queue) - self.running

    @property
    def running(self) -> int:
        """Jobs handed to the engine that have not ended yet."""
        return len(self._queue.running())

    # Changes

    def submit(
        self, job: Job, user_id: int, reporter: JobReporter, *, resumed: bool = False
    ) -> None:
        """Queue a job; raises ``bot.jobs.queue.QueueRefusal`` when the user or the queue is full.

        ``resumed`` jobs (accepted before a restart) are never refused, and keep the order
        they are submitted in: submit them in their old order.
        """
        if not self.accepting:
            raise ShuttingDown("the bot is shutting down")
        request = Request(job, user_id, reporter)
        self._queue.add(job.id, user_id, request, resumed=resumed)
        self._pump()

    def cancel(self, job_id: str, by_user_id: int) -> bool:
        """Cancel a waiting or running job. False if it is not (or no longer) here."""
        entry = self._queue.get(job_id)
        if entry is None:
            return False
        request = entry.payload
        if request.cancel_reason is not None:
            return True
        request.cancel_reason = ON_REQUEST
        request.reporter.cancel_requested(by_user_id)
        if entry.running:
            if request.handle is not None:
                request.handle.cancel()  # the engine's Cancelled ends _run
        else:
            self._queue.remove(job_id)
            self._spawn(self._finish(request, Cancelled(job_id, ON_REQUEST)))
            self._announce_positions()
        return True

    async def shutdown(self, grace: float) -> None:
        """Take no more jobs; stop the running ones; tell every user whose job was waiting or
        running that it will resume (the journal keeps them); wait up to ``grace`` s. A job
        whose cancel was already asked for still ends as cancelled."""
        self.accepting = False
        for entry in self._queue.drain():
            entry.payload.cancel_reason = RESTART
            self._spawn(self._interrupt(entry.payload))
        for entry in self._queue.running():
            if entry.payload.cancel_reason is not None:
                # A member's Cancel wins: that job ends cancelled, it does not resume.
                continue
            entry.payload.cancel_reason = RESTART
            if entry.payload.handle is not None:
                entry.payload.handle.cancel()
        await self.wait_idle(grace)

    async def abandon(self) -> None:
        """Stop whatever is still reporting (the bot is out of time): the journal already
        keeps those jobs, and their status is set right after the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every job has been reported; False if some were still busy."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            return not pending
        return True

    # Internals

    def _capacity_changed(self, capacity: int) -> None:
        if self._backend.broken:
            # No worker will come back: waiting would leave every job hanging for good.
            if not self.engine_broken:
                self._engine_broke(None, "no engine worker can be started any more")
            return
        self._pump()

    def _pump(self) -> None:
        self._queue.slots = self._backend.capacity  # live: 0 while no worker is up
        while (entry := self._queue.start_next()) is not None:
            request = entry.payload
            try:
                # Submitted here, synchronously, so that a Cancel pressed from now on always
                # finds the handle.
                request.handle = self._backend.submit(request.job)
            except BackendError as error:  # the backend is not running any more
                self._engine_broke(request, error)
                return
            except Exception as error:
                log.exception("job %s: the engine refused it", entry.job_id)
                self._queue.remove(entry.job_id)
                failed = Failed(entry.job_id, FailureKind.INTERNAL, str(error))
                self._spawn(self._finish(request, failed))
                continue
            request.started_at = time.monotonic()
            self._observer.job_started(request.started_at - request.queued_at)
            self._spawn(self._run(request, request.handle))
        self._announce_positions()

    def _announce_positions(self) -> None:
        positions = self._queue.positions()
        order = list(positions)
        if order != self._last_order:
            self._last_order = order
            if self._on_order is not None:
                self._on_order(order)
        for job_id, position in positions.items():
            entry = self._queue.get(job_id)
            assert entry is not None
            request = entry.payload
            if request.last_position != position:
                request.last_position = position
                request.reporter.queued(position)

    async def _run(self, request: Request, handle: JobHandle) -> None:
        job_id = request.job.id
        final: FinalEvent | None = None
        try:
            async for event in handle:
                if isinstance(event, (Done, Failed, Cancelled)):
                    final = event
                elif isinstance(event, (Started, JobProgress)):
                    request.reporter.progress(event)
        except Exception as error:
            log.exception("job %s: reading its events failed", job_id)
            final = Failed(job_id, FailureKind.INTERNAL, str(error))
        finally:
            self._queue.remove(job_id)
            self._pump()
        if final is None:
            final = Failed(job_id, FailureKind.INTERNAL, "The job ended without a result.")
        await self._finish(request, final)

    def _engine_broke(self, request: Request | None, error: Exception | str) -> None:
        """``request``: the job the engine just refused, kept for after the restart."""
        log.error("the engine refuses jobs for good (%s): stopping the bot", error)
        self.engine_broken = True
        self.accepting = False
        if request is not None:
            self._queue.remove(request.job.id)
            self._spawn(self._interrupt(request))
        if self._on_engine_broken is not None:
            self._on_engine_broken()

    async def _interrupt(self, request: Request) -> None:
        try:
            await request.reporter.interrupted(engine_broken=self.engine_broken)
        except Exception:
            log.exception("job %s: telling its user about the restart failed", request.job.id)

    async def _finish(self, request: Request, event: FinalEvent) -> None:
        try:
            # The backend cancels on its own only when it shuts down.
            if isinstance(event, Cancelled) and request.cancel_reason in (None, RESTART):
                await self._interrupt(request)
                return
            if isinstance(event, Cancelled) and request.cancel_reason is not None:
                event = Cancelled(event.job_id, request.cancel_reason)
            started = request.started_at
            self._observer.job_ended(
                JobOutcome.of(event, cancel_requested=request.cancel_reason == ON_REQUEST),
                None if started is None else time.monotonic() - started,
            )
            try:
                await request.reporter.finished(event)
            except Exception:
                log.exception("job %s: reporting its end failed", request.job.id)
        finally:
            request.ended.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
