"""What both backends do the same way with a submitted job: its handle, its timeout, how it
is stopped, and which final event it ends with.

A backend owns its workers and tells the ``RunBook`` what happens to them: a job started on
a worker, made progress, ended, or lost its worker. The book turns a cancel, a timeout or a
shutdown into one backend-neutral stop: first a cooperative request (``Worker.request_stop``,
seen by the job within a step), then, if the job hasn't ended ``stop_grace`` seconds later,
``Worker.kill``; the backend replaces a killed worker.

This module must not import torch or ray: the bot process imports it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from engine.backend import JobStream
from engine.jobs import Cancelled, Failed, FailureKind, FinalEvent, Job, JobProgress, Started

log = logging.getLogger(__name__)

StopReason = Literal["cancel", "timeout", "shutdown"]


class Worker(Protocol):
    """One worker of a backend, as far as stopping its current job goes."""

    index: int
    """Shown in ``Started.worker``; a replacement keeps its predecessor's index."""

    def request_stop(self, run: Run) -> None:
        """Ask the worker to stop ``run``; the job ends ``Cancelled`` within a step."""

    def kill(self) -> None:
        """End the worker now (it ignored the request, or hangs); its job is then lost."""


@dataclass(eq=False)
class Run:
    """A submitted job, from its submission to its final event."""

    job: Job
    stream: JobStream
    seq: int = 0
    """Numbers each attempt, so that late messages of an earlier attempt can be told apart."""
    worker: Worker | None = None
    """The worker running it; ``None`` while it waits for one."""
    attempts: int = 0
    stop_reason: StopReason | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.stream.ended

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


class RunBook:
    """Every job of one backend that has not ended yet, and the jobs waiting for a worker."""

    def __init__(
        self,
        *,
        job_timeout: float,
        stop_grace: float,
        retry_crashed: bool,
        on_waiting: Callable[[], None],
    ) -> None:
        """``on_waiting`` is called when a job starts waiting (the backend then looks for a
        free worker)."""
        if job_timeout <= 0 or stop_grace < 0:
            raise ValueError("job_timeout must be positive and stop_grace zero or more.")
        self.job_timeout = job_timeout
        self.stop_grace = stop_grace
        self.retry_crashed = retry_crashed
        self._on_waiting = on_waiting
        self.waiting: deque[Run] = deque()
        self.runs: dict[str, Run] = {}
        self._seq = itertools.count(1)

    def add(self, job: Job) -> Run:
        """A new job, waiting for a worker."""
        if job.id in self.runs:
            raise ValueError(f"job {job.id} was already submitted")
        run = Run(job, JobStream(job.id, lambda: self.stop(run, "cancel")))
        self.runs[job.id] = run
        self.waiting.append(run)
        self._on_waiting()
        return run

    def started(self, run: Run, worker: Worker) -> int:
        """``run`` goes to ``worker`` now; returns the attempt's ``seq``."""
        loop = asyncio.get_running_loop()
        run.seq = next(self._seq)
        run.worker = worker
        run.attempts += 1
        run.stream.emit(Started(run.job.id, worker.index))
        run.timers.append(loop.call_later(self.job_timeout, self._on_timeout, run, run.seq))
        return run.seq

    def progress(self, run: Run, event: JobProgress) -> None:
        run.stream.emit(event)

    def ended(self, run: Run, event: FinalEvent) -> None:
        """The worker reported the job's end. A ``Cancelled`` one is worded by why it was
        asked to stop."""
        if isinstance(event, Cancelled):
            event = self.stopped_event(run)
        self.finish(run, event)

    def lost(self, run: Run) -> bool:
        """The worker died while running ``run``. Returns True when the job waits again, to
        be retried once on the next free worker."""
        if run.ended:
            return False
        run.cancel_timers()
        run.worker = None
        if run.stop_reason is not None:
            self.finish(run, self.stopped_event(run))
            return False
        if self.retry_crashed and run.attempts < 2:
            log.warning("job %s: its worker died; retrying it once", run.job.id)
            self.waiting.appendleft(run)
            self._on_waiting()
            return True
        self.finish(run, Failed(run.job.id, FailureKind.WORKER_CRASHED, CRASHED))
        return False

    def stop(self, run: Run, reason: StopReason) -> None:
        """Stops a job: one that waits ends at once; a running one is asked to stop, and its
        worker is killed if it hasn't within ``stop_grace``."""
        if run.ended or run.stop_reason is not None:
            return
        run.stop_reason = reason
        if run.worker is None:
            self.waiting.remove(run)
            self.finish(run, self.stopped_event(run))
            return
        run.worker.request_stop(run)
        loop = asyncio.get_running_loop()
        run.timers.append(loop.call_later(self.stop_grace, self._kill_if_running, run, run.seq))

    def stop_all(self, reason: StopReason) -> None:
        for run in list(self.runs.values()):
            self.stop(run, reason)

    def finish_all(self, event: Callable[[Run], FinalEvent]) -> None:
        """Ends every job left with ``event(run)``: nothing may end without its final event."""
        for run in list(self.runs.values()):
            if run in self.waiting:
                self.waiting.remove(run)
            self.finish(run, event(run))

    def finish(self, run: Run, event: FinalEvent) -> None:
        """Delivers a job's one final event (its ``job_id`` is filled in)."""
        if self.runs.pop(run.job.id, None) is None:
            return
        run.cancel_timers()
        if event.job_id != run.job.id:
            event = dataclasses.replace(event, job_id=run.job.id)
        run.stream.emit(event)

    def stopped_event(self, run: Run) -> FinalEvent:
        if run.stop_reason == "timeout":
            return Failed(run.job.id, FailureKind.TIMEOUT, timeout_message(self.job_timeout))
        if run.stop_reason == "shutdown":
            return Cancelled(run.job.id, SHUTDOWN)
        return Cancelled(run.job.id, CANCELLED)

    def _on_timeout(self, run: Run, seq: int) -> None:
        if run.seq == seq and run.worker is not None and not run.ended:
            log.warning("job %s: timed out after %g s", run.job.id, self.job_timeout)
            self.stop(run, "timeout")

    def _kill_if_running(self, run: Run, seq: int) -> None:
        if run.seq == seq and run.worker is not None and not run.ended:
            log.warning("job %s: worker %d did not stop within %g s; killing it",
                        run.job.id, run.worker.index, self.stop_grace)  # fmt: skip
            run.worker.kill()


def timeout_message(seconds: float) -> str:
    return (
        f"The job took longer than {seconds:g} s and was stopped. "
        "Try a smaller size or a lower quality."
    )


CANCELLED = "Cancelled on request."
SHUTDOWN = "The engine is shutting down."
CRASHED = "The engine's worker stopped unexpectedly while running this job. Please try again."
BROKEN = "The engine's workers could not be restarted. Please tell the bot's operator."

__all__ = ["Run", "RunBook", "StopReason", "Worker"]
