"""The fair queue in front of the engine's backend: per-user limits, a global bound, fair
order; and the places a user's commands hold in the per-user limit before they are queued.

Plain data structures, no asyncio, no Discord: the caller adds jobs, asks which to start when
a worker slot is free, and reports them finished. Jobs only leave for the backend when a slot
is free, so the backend keeps no queue and the order here is the order that runs.

Fair order is by *round*: a user's job is served in round r when r of that user's jobs run or
wait ahead of it. A user with nothing queued or running joins the current round, so their job
goes before anyone's second job, and behind first jobs that came earlier. When a user's last
running job ends, their next waiting job is treated as a new first job (it rejoins the current
round, at the back), so second jobs cannot starve while first jobs keep arriving.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueRefusal(Exception):
    """The queue refused a job; ``str()`` is for logs, the bot words it for users."""


class UserLimitReached(QueueRefusal):
    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"user has {active} job(s) queued or running; the limit is {limit}")
        self.active = active
        self.limit = limit


class QueueFull(QueueRefusal):
    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} jobs are waiting; the queue is full")
        self.waiting = waiting


@dataclass
class Entry(Generic[T]):
    job_id: str
    user_id: int
    payload: T
    round: int
    seq: int
    running: bool = False

    @property
    def key(self) -> tuple[int, int]:
        return (self.round, self.seq)


@dataclass
class FairQueue(Generic[T]):
    """Jobs waiting or running, at most ``per_user`` per user and ``max_waiting`` waiting.

    ``slots`` is how many jobs may run at once (the backend's capacity).
    """

    per_user: int
    max_waiting: int
    slots: int = 1
    _entries: dict[str, Entry[T]] = field(default_factory=dict, init=False)
    _seq: Iterator[int] = field(default_factory=itertools.count, init=False)
    _round: int = field(default=0, init=False)
    """The round of the job started last: rounds of waiting jobs are never below it."""

    def __post_init__(self) -> None:
        if self.per_user < 1 or self.max_waiting < 1 or self.slots < 1:
            raise ValueError("per_user, max_waiting and slots must be at least 1")

    # Questions

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, job_id: str) -> Entry[T] | None:
        return self._entries.get(job_id)

    def active_count(self, user_id: int) -> int:
        """Jobs of ``user_id`` queued or running."""
        return sum(1 for e in self._entries.values() if e.user_id == user_id)

    def waiting(self) -> list[Entry[T]]:
        """Waiting jobs in the order they will start."""
        return sorted((e for e in self._entries.values() if not e.running), key=lambda e: e.key)

    def running(self) -> list[Entry[T]]:
        return [e for e in self._entries.values() if e.running]

    def positions(self) -> dict[str, int]:
        """Job id → position among waiting jobs, 1 being the next to start."""
        return {e.job_id: i for i, e in enumerate(self.waiting(), start=1)}

    def position(self, job_id: str) -> int | None:
        """1 = next to start; ``None`` if the job runs or is unknown."""
        return self.positions().get(job_id)

    def check(self, user_id: int) -> None:
        """Raise the refusal ``add`` would raise for this user now, without adding anything.

        The bot asks before downloading attachments, so a refused user wastes no bandwidth.
        """
        active = self.active_count(user_id)
        if active >= self.per_user:
            raise UserLimitReached(active, self.per_user)
        waiting = len(self._entries) - len(self.running())
        if waiting >= self.max_waiting:
            raise QueueFull(waiting)

    # Changes

    def add(self, job_id: str, user_id: int, payload: T, *, resumed: bool = False) -> Entry[T]:
        """Queue a job; raise ``UserLimitReached`` or ``QueueFull`` if it may not wait.

        A ``resumed`` job (accepted before a restart, and added back in the order it had) is
        never refused and keeps that order: it joins the current round, behind the jobs added
        before it, so jobs sent after the restart go behind all of them."""
        if job_id in self._entries:
            raise ValueError(f"job {job_id} is already queued")
        if resumed:
            entry = Entry(job_id, user_id, payload, self._round, next(self._seq))
            self._entries[job_id] = entry
            return entry
        self.check(user_id)
        mine = [e for e in self._entries.values() if e.user_id == user_id]
        round_ = max((e.round + 1 for e in mine), default=self._round)
        entry = Entry(job_id, user_id, payload, max(round_, self._round), next(self._seq))
        self._entries[job_id] = entry
        return entry

    def start_next(self) -> Entry[T] | None:
        """Mark the next waiting job running and return it, if a slot is free."""
        if len(self.running()) >= self.slots:
            return None
        waiting = self.waiting()
        if not waiting:
            return None
        entry = waiting[0]
        entry.running = True
        self._round = max(self._round, entry.round)
        return entry

    def remove(self, job_id: str) -> Entry[T] | None:
        """Forget a job, waiting or running (finished, failed or cancelled)."""
        entry = self._entries.pop(job_id, None)
        if entry is not None and entry.running:
            self._promote(entry.user_id)
        return entry

    def drain(self) -> list[Entry[T]]:
        """Remove and return every waiting job, in order (shutdown)."""
        waiting = self.waiting()
        for entry in waiting:
            del self._entries[entry.job_id]
        return waiting

    def _promote(self, user_id: int) -> None:
        mine = sorted(
            (e for e in self._entries.values() if e.user_id == user_id), key=lambda e: e.key
        )
        if not mine or any(e.running for e in mine):
            return
        # The user has nothing running any more: re-rank their waiting jobs as if sent now,
        # never worse than before.
        for rank, entry in enumerate(mine):
            new_round = self._round + rank
            if new_round < entry.round:
                entry.round = new_round
                entry.seq = next(self._seq)


class Reservations:
    """Commands of each user between their acknowledgement and their job's queueing.

    They count towards the per-user limit from the first moment, so N commands sent at once
    by one user cost one refusal each, not N downloads and decodes. Use from one event loop.
    """

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._pending: Counter[int] = Counter()

    def pending(self, user_id: int) -> int:
        return self._pending[user_id]

    @contextlib.contextmanager
    def reserve(self, user_id: int, active: int) -> Iterator[None]:
        """Hold a place for the user, who has ``active`` jobs queued or running; raises
        ``UserLimitReached`` when that and the places already held reach the limit."""
        taken = active + self._pending[user_id]
        if taken >= self.per_user:
            raise UserLimitReached(taken, self.per_user)
        self._pending[user_id] += 1
        try:
            yield
        finally:
            self._pending[user_id] -= 1
            if self._pending[user_id] <= 0:
                del self._pending[user_id]
