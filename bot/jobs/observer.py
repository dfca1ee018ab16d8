"""What the job core tells an observer as jobs go: the facts an operator counts.

The runner and the service call a ``JobObserver`` where the facts are born (a job leaves the
fair queue for the engine; a job ends for good). ``bot.metrics`` turns them into Prometheus
metrics; the core itself knows no metrics library, and without an observer it calls
``NO_OBSERVER``, which does nothing.
"""

from __future__ import annotations

import enum
from typing import Protocol

from engine.jobs import Cancelled, Done, Failed, FailureKind, FinalEvent


class JobOutcome(str, enum.Enum):
    """How a job ended for good: done, cancelled, one ``FailureKind``, or not resumed after a
    restart (its pictures gone, or it kept killing the bot). A fixed set, so a metric's label
    stays bounded."""

    DONE = "done"
    CANCELLED = "cancelled"
    BAD_INPUT = FailureKind.BAD_INPUT.value
    TIMEOUT = FailureKind.TIMEOUT.value
    OUT_OF_MEMORY = FailureKind.OUT_OF_MEMORY.value
    WORKER_CRASHED = FailureKind.WORKER_CRASHED.value
    INTERNAL = FailureKind.INTERNAL.value
    NOT_RESUMED = "not_resumed"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, event: FinalEvent, *, cancel_requested: bool) -> JobOutcome:
        """The outcome of a job's final event. A member's cancel wins over a result that
        arrived anyway (as ``bot.jobs.tracker.ending_for`` decides)."""
        if isinstance(event, Failed):
            return cls(event.kind.value)
        if isinstance(event, Cancelled) or (isinstance(event, Done) and cancel_requested):
            return cls.CANCELLED
        return cls.DONE


class JobObserver(Protocol):
    """Told of each job's course; must not block (it runs on the event loop)."""

    def job_started(self, waited: float) -> None:
        """A job left the fair queue for the engine after ``waited`` seconds in it (since it
        was queued, or queued again after a restart)."""

    def job_ended(self, outcome: JobOutcome, ran: float | None) -> None:
        """A job ended for good. ``ran``: seconds from its start (``job_started``) to its
        final event; None if it never started. A job stopped by a shutdown has not ended: it
        resumes after the restart."""


class NoObserver:
    """The observer of a core that nobody watches."""

    def job_started(self, waited: float) -> None:
        pass

    def job_ended(self, outcome: JobOutcome, ran: float | None) -> None:
        pass


NO_OBSERVER = NoObserver()
