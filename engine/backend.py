"""The seam between the bot and whatever runs its jobs: the ``Backend`` Protocol and
``JobHandle``.

Two backends implement it: ``engine.pool.EnginePool`` (spawned worker processes on this
machine) and ``engine.ray_backend.RayBackend`` (one Ray actor per GPU in a Ray cluster). Both
get their start, ``submit`` and close from ``engine.lifecycle.BackendLifecycle``, and
``engine.backends.create_backend`` builds either by name.
Neither schedules: the caller (the bot's fair queue) decides the order and submits a job only
while ``capacity`` says a worker is free. A job submitted when none is, which can only happen
in a race (a worker lost a moment ago), waits for the next free worker.

A job's event stream is ``Started``, ``JobProgress``…, then exactly one final event:
``Done``, ``Failed`` or ``Cancelled``. A job that never started ends with its final event
alone.

This module must not import torch or ray: the bot process imports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from engine.jobs import FINAL_EVENTS, Event, FinalEvent, Job

log = logging.getLogger(__name__)

CapacityListener = Callable[[int], None]
"""Called on the event loop with the new capacity whenever it changes."""


class JobHandle:
    """A submitted job as its caller sees it: its events, its outcome, and a way to cancel it.

    Backends build one with ``JobStream`` and feed it through the stream; callers only read.
    """

    def __init__(
        self,
        job_id: str,
        events: asyncio.Queue[Event],
        final: asyncio.Future[FinalEvent],
        cancel: Callable[[], None],
    ) -> None:
        self.job_id = job_id
        self._events = events
        self._final = final
        self._cancel = cancel

    def __repr__(self) -> str:
        return f"<JobHandle {self.job_id} {'done' if self.done else 'pending'}>"

    @property
    def done(self) -> bool:
        """True once the final event has been produced (whether or not it was read)."""
        return self._final.done()

    @property
    def result(self) -> FinalEvent | None:
        return self._final.result() if self._final.done() else None

    async def __aiter__(self) -> AsyncIterator[Event]:
        """Every event of the job in order, ending with the final one. One reader."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, FINAL_EVENTS):
                return

    def cancel(self) -> None:
        """Ask to stop the job: one that hasn't started ends at once, a running one within a
        step of the optimisation."""
        if not self.done:
            self._cancel()

    async def wait(self) -> FinalEvent:
        """The final event. Does not consume the event stream."""
        return await asyncio.shield(self._final)


class JobStream:
    """The backend's end of a ``JobHandle``: events go in here and come out of the handle."""

    def __init__(self, job_id: str, cancel: Callable[[], None]) -> None:
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._final: asyncio.Future[FinalEvent] = asyncio.get_running_loop().create_future()
        self.handle = JobHandle(job_id, self._events, self._final, cancel)

    @property
    def ended(self) -> bool:
        return self._final.done()

    @property
    def final(self) -> asyncio.Future[FinalEvent]:
        """Resolves with the final event (for a backend that waits for its jobs to end)."""
        return self._final

    def emit(self, event: Event) -> None:
        """Hands ``event`` to the reader; after the final event, nothing more is accepted."""
        if self._final.done():
            log.error("job %s: dropped %r after its final event", self.handle.job_id, event)
            return
        self._events.put_nowait(event)
        if isinstance(event, FINAL_EVENTS):
            self._final.set_result(event)


class CapacityListeners:
    """A backend's capacity listeners, told only when the capacity really changes."""

    def __init__(self) -> None:
        self._listeners: list[CapacityListener] = []
        self.capacity = 0

    def add(self, listener: CapacityListener) -> None:
        self._listeners.append(listener)

    def update(self, capacity: int) -> bool:
        """Record ``capacity``; tells every listener and returns True if it changed."""
        if capacity == self.capacity:
            return False
        self.capacity = capacity
        self.tell()
        return True

    def tell(self) -> None:
        """Tell every listener the capacity now, changed or not (e.g. the backend broke)."""
        for listener in list(self._listeners):
            listener(self.capacity)


class Backend(Protocol):
    """Runs jobs somewhere: worker processes here, or actors in a Ray cluster.

    Use it from one asyncio event loop; nothing here blocks that loop. Its life:
    ``new → starting → running (→ broken) → closing → closed``; ``start`` once, ``close`` any
    number of times, from any state.
    """

    async def start(self) -> None:
        """Returns when the workers have loaded their network (those the machine or cluster
        has room for). Raises ``engine.WeightsError`` / ``SettingsError`` (as a worker
        reported it), ``engine.ClusterError`` (Ray could not be joined or started) or
        ``BackendError``: when no worker was ready within the backend's start timeout, when
        ``close`` was called meanwhile (the start is aborted at once, even with workers still
        loading), or on a second start. Whatever a failed start started, it has ended before
        it raises."""

    async def close(self, grace: float = 10.0) -> None:
        """Ends the backend. In order:

        1. from now on ``submit`` raises ``BackendError``;
        2. jobs still waiting for a worker end ``Cancelled`` at once;
        3. running jobs get ``grace`` seconds to finish;
        4. then each is asked to stop (the stop path: a request, then a kill), and close waits
           for their final events (a backend may bound that wait, e.g. Ray's ``close`` ends
           within ``grace`` + ``CLOSE_MARGIN`` seconds);
        5. every job left gets ``Cancelled``: no job ends without its one final event;
        6. every worker (and whatever else it started, e.g. a private Ray) is ended.

        Before ``start``, close does nothing but make the backend closed. During ``start``,
        it aborts the start (which raises ``BackendError``) and returns once what the start
        had begun has ended. A second close, concurrent or later, waits for the first to
        finish and returns; it never raises."""

    @property
    def capacity(self) -> int:
        """How many jobs can run at once right now: workers that are up. It changes as
        workers die and come back, and as machines join or leave a cluster."""

    @property
    def devices(self) -> tuple[str, ...]:
        """The device of each worker that is up, e.g. ``("cuda:0", "cuda:0")`` or ``("cpu",)``."""

    @property
    def broken(self) -> bool:
        """True once no worker can ever start again (every start failed): the caller should
        stop and let its service manager restart it. Capacity listeners hear of it."""

    def add_capacity_listener(self, listener: CapacityListener) -> None:
        """Call ``listener(capacity)`` on the event loop whenever ``capacity`` changes, and
        once more when the backend becomes ``broken``."""

    def submit(self, job: Job) -> JobHandle:
        """Runs ``job`` on a free worker (or the next one to free up); raises ``BackendError``
        unless the backend is running: before ``start`` completes, once it is broken, and
        from the moment ``close`` is called."""


__all__ = ["Backend", "CapacityListener", "CapacityListeners", "JobHandle", "JobStream"]
