"""What every backend does the same way from ``start`` to ``close``: ``BackendLifecycle``.

Both backends (``engine.pool.EnginePool``, ``engine.ray_backend.RayBackend``) subclass it. It
owns the backend's state, the ``RunBook`` of its jobs, its capacity listeners, ``start`` (racing
a close and a timeout), ``submit`` and ``close``, whose meaning ``engine.backend.Backend``
states. A backend supplies its particulars: how its workers start (``_start_workers``) and end
(``_end_workers``), how jobs reach them (``_dispatch``), its ``capacity`` and ``devices``, and
how long its close may take beyond the grace (``close_margin``, ``stop_wait``).

States::

    new ──start──▶ starting ──▶ running ──▶ closing ──▶ closed
     │                 │           └─▶ broken ─┘          ▲
     │                 └── close, a failure or the timeout ┤
     └──────────────────────── close ──────────────────────┘

This module must not import torch or ray: the bot process imports it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import ClassVar, Literal, TypeVar

from engine.backend import CapacityListener, CapacityListeners, JobHandle
from engine.jobs import BackendError, Cancelled, Failed, FailureKind, FinalEvent, Job
from engine.runs import BROKEN, SHUTDOWN, Run, RunBook

log = logging.getLogger(__name__)

LifecycleState = Literal["new", "starting", "running", "broken", "closing", "closed"]

START_TIMEOUT = 900.0
"""Default seconds ``start`` waits for the workers: the first start on a machine may download
the ImageNet weights (548 MB); a worker that never loads is a stalled download, a GPU that does
not start, or a cluster that lacks the resources an actor asks for."""

_Self = TypeVar("_Self", bound="BackendLifecycle")


class BackendLifecycle(abc.ABC):
    """The shared half of a backend (see the module's docstring). Use it from one asyncio
    event loop."""

    name: ClassVar[str]
    """What refusals and logs call the backend: ``engine pool``, ``Ray backend``."""
    close_margin: ClassVar[float | None] = None
    """Seconds ``close`` may take beyond its grace, all in all; ``None``: no bound, it takes
    what the stop path and ``_end_workers`` need."""
    stop_wait: ClassVar[float | None] = None
    """Seconds ``close`` waits, after the grace, for the jobs it asked to stop; ``None``: until
    each has ended (the stop path kills a worker that ignores the request after
    ``stop_grace``)."""

    def __init__(
        self,
        *,
        job_timeout: float,
        stop_grace: float,
        retry_crashed: bool,
        start_timeout: float,
    ) -> None:
        if start_timeout <= 0:
            raise ValueError("start_timeout must be positive.")
        self._start_timeout = start_timeout
        self._book = RunBook(
            job_timeout=job_timeout,
            stop_grace=stop_grace,
            retry_crashed=retry_crashed,
            on_waiting=self._dispatch,
        )
        self._state: LifecycleState = "new"
        self._closing = asyncio.Event()
        """Set when ``close`` begins: whatever waits (a start, a back-off) stops waiting."""
        self._closed = asyncio.Event()
        self._close_deadline: float | None = None
        self._listeners = CapacityListeners()

    # ----- what a backend supplies ------------------------------------------------------------

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """Workers that are up, busy or not."""

    @property
    @abc.abstractmethod
    def devices(self) -> tuple[str, ...]:
        """The device of each worker that is up."""

    @abc.abstractmethod
    async def _start_workers(self) -> None:
        """Starts the workers; returns once they have loaded their network, or raises. It is
        cancelled when a close or the timeout comes first; ``_end_workers`` then ends what it
        started."""

    @abc.abstractmethod
    async def _end_workers(self, budget: float | None) -> None:
        """Ends every worker (and whatever else the backend started) within about ``budget``
        seconds (``None``: as long as it takes). Called once, after a failed or aborted start
        or at the end of ``close``, when every job already has its final event."""

    @abc.abstractmethod
    def _dispatch(self) -> None:
        """Hands waiting jobs (``self._book.waiting``) to free workers, while running."""

    @abc.abstractmethod
    def _start_timed_out(self, seconds: float) -> BackendError:
        """The error ``start`` raises when the workers did not load within ``seconds``."""

    @abc.abstractmethod
    def _on_running(self) -> None:
        """Called once ``start`` has succeeded (the state is ``running``)."""

    # ----- what callers see -------------------------------------------------------------------

    @property
    def state(self) -> LifecycleState:
        return self._state

    @property
    def broken(self) -> bool:
        return self._state == "broken"

    def add_capacity_listener(self, listener: CapacityListener) -> None:
        self._listeners.add(listener)

    async def __aenter__(self: _Self) -> _Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Starts the workers; see ``engine.backend.Backend.start``. A start that fails, times
        out or is aborted by ``close`` ends what it started before it raises."""
        if self._state != "new":
            raise BackendError(self._refusal())
        self._state = "starting"
        starting = asyncio.ensure_future(self._start_workers())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            # A signal during start-up must not wait for the workers (the first start may
            # download 550 MB of weights), nor may a hung download or GPU keep us silent.
            await asyncio.wait(
                {starting, closing},
                timeout=self._start_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self._closing.is_set():  # even if the workers were ready just now
                raise BackendError(SHUTDOWN)
            if not starting.done():
                raise self._start_timed_out(self._start_timeout)
            starting.result()
        except BaseException:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            try:
                await self._end_workers(self._end_budget(hurry=False))
            finally:
                self._now_closed()
            raise
        finally:
            closing.cancel()
        self._state = "running"
        self._capacity_changed()
        self._on_running()

    def submit(self, job: Job) -> JobHandle:
        """Runs ``job`` on a free worker, or on the next one to free up."""
        if self._state != "running":
            raise BackendError(self._refusal())
        return self._book.add(job).stream.handle

    async def close(self, grace: float = 10.0) -> None:
        """Stops taking jobs, ends each job (see ``engine.backend.Backend.close``) and ends the
        workers. Before ``start``: nothing to do. During ``start``: aborts it. While another
        close runs, or after one: waits for it."""
        if self._state == "new":
            self._now_closed()
            return
        if self._state in ("closing", "closed"):
            await self._closed.wait()
            return
        grace = max(0.0, grace)
        if self.close_margin is not None:
            self._close_deadline = asyncio.get_running_loop().time() + grace + self.close_margin
        aborting = self._state == "starting"
        self._state = "closing"
        self._closing.set()
        if aborting:
            # start() sees this, cancels what it is doing, ends what it started and raises.
            await self._closed.wait()
            return
        book = self._book
        hurry = True
        try:
            for run in list(book.waiting):
                book.stop(run, "shutdown")  # ends at once: it has no worker
            await _until_ended(book.runs.values(), grace)
            # Past the grace, the stop path: asked, then killed if it does not stop.
            book.stop_all("shutdown")
            await _until_ended(book.runs.values(), self.stop_wait)
            hurry = False
        finally:
            # Nothing may end without its final event.
            book.finish_all(lambda run: Cancelled(run.job.id, SHUTDOWN))
            try:
                await self._end_workers(self._end_budget(hurry=hurry))
            finally:
                self._now_closed()

    # ----- for the backends -------------------------------------------------------------------

    def _capacity_changed(self) -> bool:
        """Tells the listeners the capacity (0 unless running); True if it changed."""
        return self._listeners.update(self.capacity if self._state == "running" else 0)

    def _break(self) -> None:
        """No worker can start any more: fail what waits and refuse new jobs."""
        self._state = "broken"
        self._book.finish_all(lambda run: Failed(run.job.id, FailureKind.INTERNAL, BROKEN))
        if not self._listeners.update(0):
            self._listeners.tell()  # it was 0 already: say it again, now that it stays there

    def _lose(self, run: Run) -> None:
        """``run``'s worker died; after ``close`` began, that is the job's stop by shutdown."""
        if self._state != "running" and run.stop_reason is None:
            run.stop_reason = "shutdown"
        self._book.lost(run)

    def _refusal(self) -> str:
        """Why the backend takes no job (or no second start) in its present state."""
        return {
            "new": f"The {self.name} has not been started.",
            "starting": f"The {self.name} is still starting.",
            "running": f"The {self.name} was already started.",
            "broken": BROKEN,
            "closing": SHUTDOWN,
            "closed": f"The {self.name} is closed.",
        }[self._state]

    def _end_budget(self, *, hurry: bool) -> float | None:
        """Seconds ``_end_workers`` may take: what is left of the close's bound (grace plus
        ``close_margin``), or ``close_margin`` after a start that failed on its own. Without a
        margin, as long as it needs, unless ``hurry`` (the close was cancelled): then none."""
        if self.close_margin is None:
            return 0.0 if hurry else None
        if self._close_deadline is None:
            return self.close_margin
        return max(0.0, self._close_deadline - asyncio.get_running_loop().time())

    def _now_closed(self) -> None:
        self._state = "closed"
        self._closed.set()
        self._capacity_changed()
        log.info("%s closed", self.name)


async def _until_ended(runs: Iterable[Run], timeout: float | None) -> None:
    """Waits until each of ``runs`` has its final event, or ``timeout`` seconds."""
    finals: list[asyncio.Future[FinalEvent]] = [run.stream.final for run in runs]
    if finals and (timeout is None or timeout > 0):
        await asyncio.wait(finals, timeout=timeout)


__all__ = ["START_TIMEOUT", "BackendLifecycle", "LifecycleState"]
