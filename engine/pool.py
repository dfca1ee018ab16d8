"""``EnginePool``: the local backend, worker processes on this machine.

The bot never runs an optimisation in its own process: a job takes seconds on a GPU and
minutes on a CPU, and would stall the Discord gateway's heartbeat. It submits ``Job``s here
and reads each job's events from its ``JobHandle`` (``engine.backend``).

How it works:

* Each worker is a process started with ``spawn`` (safe with CUDA) that loads the network
  once and then runs one job at a time (``engine.worker``, with ``engine.execution``'s job
  body). By default there is one worker per CUDA device, each pinned to its device, or a
  single worker without a GPU.
* Every worker has two one-way pipes. A writer thread sends it jobs, and a reader thread
  receives its events and hands them to the event loop with ``call_soon_threadsafe``: the loop
  never blocks on a pipe, however large an image is.
* Stopping a job (cancel, timeout, shutdown) goes through ``engine.runs.RunBook``, as in every
  backend. Here the cooperative request writes the run's number into an integer shared with
  the worker, which the engine checks on every step; a worker that doesn't stop within
  ``stop_grace`` seconds is killed and replaced, as is one that dies.
* The pool does not schedule: its caller submits a job while ``capacity`` says a worker is
  free. A job submitted when none is (a race with a dying worker) waits for the next one.
* Start, ``submit`` and close follow ``engine.lifecycle.BackendLifecycle``, as in every
  backend. The pool's own part: a close during start kills the workers still loading (they
  would see their closed pipe only once loaded); a loaded worker exits when its pipe closes.

This module must not import torch, directly or indirectly: the bot process imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.backend import JobHandle
from engine.errors import SettingsError, WeightsError
from engine.jobs import (
    BackendError,
    JobProgress,
    RunJob,
    WorkerConfig,
    WorkerEvent,
    WorkerReady,
    WorkerStartFailed,
)
from engine.lifecycle import START_TIMEOUT, BackendLifecycle
from engine.runs import Run
from engine.settings import StylizeSettings

log = logging.getLogger(__name__)

MAX_START_FAILURES = 3
"""A worker slot whose replacement fails to start this many times in a row is given up."""
SHUTDOWN_WAIT = 10.0
"""Seconds ``close`` waits for an idle worker to exit before killing it."""

_START_ERRORS: dict[str, type[Exception]] = {
    "WeightsError": WeightsError,
    "SettingsError": SettingsError,
}
_CLOSE_PIPE = object()
"""Put in a worker's outbox: the writer thread closes the task pipe, so the worker exits."""


def _worker_entry(*args: Any) -> None:
    """Spawn target. It lives here, not in ``engine.worker``, so that the parent can name it
    without importing torch; the child imports the real worker.

    SIGINT and SIGTERM are ignored from the first moment, before torch loads: Ctrl-C in a
    terminal and systemd's stop (``KillMode=control-group``) reach the whole process group,
    and the pool, not the signal, decides when a worker stops. It closes the worker's pipe
    on shutdown and kills one that does not exit; a worker whose parent died stops on its
    own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from engine.worker import worker_main

    worker_main(*args)


class _WorkerProcess:
    """One worker process, its pipes and the two threads that move messages for it."""

    def __init__(
        self,
        context: Any,
        config: WorkerConfig,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[_WorkerProcess, object], None],
        on_exit: Callable[[_WorkerProcess, int | None], None],
    ) -> None:
        self.config = config
        self._loop = loop
        self._on_message = on_message
        self._on_exit = on_exit
        # Shared without a lock: one aligned 64-bit write by the pool, reads by the worker.
        self.cancel_seq = context.RawValue("q", 0)
        self._task_reader, self._task_writer = context.Pipe(duplex=False)
        self._event_reader, self._event_writer = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_worker_entry,
            args=(config, self._task_reader, self._event_writer, self.cancel_seq),
            name=f"stylize-worker-{config.index}",
            daemon=True,
        )
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.ready: asyncio.Future[WorkerReady] = loop.create_future()
        self.exited: asyncio.Future[int | None] = loop.create_future()
        self.start_error: WorkerStartFailed | None = None
        self.pid: int | None = None
        self.launched: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Blocking (it forks and execs): call it in a thread."""
        try:
            self.process.start()
        except BaseException:
            for end in (
                self._task_reader,
                self._task_writer,
                self._event_reader,
                self._event_writer,
            ):
                end.close()
            self._post(self._on_exit, self, None)
            raise
        self.pid = self.process.pid
        # The child has its own copies now. Closing ours is what lets the reader see EOF the
        # moment the child dies, however it dies.
        self._task_reader.close()
        self._event_writer.close()
        name = self.process.name
        threading.Thread(target=self._read, name=f"{name}-reader", daemon=True).start()
        threading.Thread(target=self._write, name=f"{name}-writer", daemon=True).start()

    def send(self, message: RunJob) -> None:
        self._outbox.put(message)

    def close_pipe(self) -> None:
        """Ask the worker to exit once it is idle (it sees EOF on its task pipe)."""
        self._outbox.put(_CLOSE_PIPE)

    def cancel(self, seq: int) -> None:
        self.cancel_seq.value = seq

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, ValueError, AttributeError):
            self.process.kill()

    def _read(self) -> None:
        while True:
            try:
                message = self._event_reader.recv()
            except (EOFError, OSError):
                break
            except Exception:  # an unpicklable message; the stream itself is still in step
                log.exception("unreadable message from %s", self.process.name)
                continue
            self._post(self._on_message, self, message)
        self._event_reader.close()
        self._outbox.put(_CLOSE_PIPE)  # ends the writer thread, if it is still waiting
        # EOF means the child has closed its end, so it is exiting: reap it here, off the loop.
        self.process.join()
        self._post(self._on_exit, self, self.process.exitcode)

    def _write(self) -> None:
        while True:
            message = self._outbox.get()
            if message is _CLOSE_PIPE:
                break
            try:
                self._task_writer.send(message)
            except (OSError, ValueError):
                break  # the worker is gone; the reader reports its exit
        self._task_writer.close()

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)


@dataclass(eq=False)
class _Slot:
    """A worker position. Its process changes when a worker is replaced; its index stays."""

    index: int
    proc: _WorkerProcess | None = None
    ready: bool = False
    run: Run | None = None
    start_failures: int = 0
    given_up: bool = False
    device: str = ""
    """The device its worker reported when ready, e.g. ``cuda:0`` or ``cpu``."""

    @property
    def idle(self) -> bool:
        return self.ready and self.proc is not None and self.run is None

    # engine.runs.Worker

    def request_stop(self, run: Run) -> None:
        if self.proc is not None:
            self.proc.cancel(run.seq)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


class EnginePool(BackendLifecycle):
    """Worker processes that run stylisation jobs: the ``local`` backend. Use it from one
    asyncio event loop. Its start, close and ``submit`` are ``BackendLifecycle``'s.

    ``workers=None`` runs one worker per CUDA device (each pinned to its device), or one
    without a GPU. ``threads`` sets torch's CPU threads per worker; ``None`` divides torch's
    default among CPU workers. ``job_timeout`` counts from a job's start. A job whose worker
    dies is failed as ``worker_crashed``, or retried once with ``retry_crashed``.
    ``stop_grace`` is how long a job asked to stop (timeout, shutdown) may take before its
    worker is killed and replaced. ``start_timeout`` bounds ``start``.

    A close during ``start`` kills the workers that are still loading. Past its grace, close
    waits for every job it asked to stop (at most ``stop_grace``, then the kill).
    """

    name = "engine pool"

    def __init__(
        self,
        *,
        workers: int | None = None,
        device: str = "auto",
        weights: str = "imagenet",
        job_timeout: float = 600.0,
        retry_crashed: bool = False,
        threads: int | None = None,
        stop_grace: float = 5.0,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        StylizeSettings(device=device, weights=weights)  # refuse bad names before spawning
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1, or None for one per GPU.")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1, or None.")
        super().__init__(
            job_timeout=job_timeout,
            stop_grace=stop_grace,
            retry_crashed=retry_crashed,
            start_timeout=start_timeout,
        )
        self._workers = workers
        self._device = device
        self._weights = weights
        self._threads = threads
        self._context = multiprocessing.get_context("spawn")
        self._slots: list[_Slot] = []
        self._spawns: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ----- what callers see -------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Workers that are up (loaded), busy or not: how many jobs can run at once now."""
        return sum(slot.ready for slot in self._slots)

    @property
    def size(self) -> int:
        """Number of worker slots, up or not (0 before ``start``)."""
        return len(self._slots)

    @property
    def free_workers(self) -> int:
        """Workers that are loaded and idle: a job submitted now starts at once."""
        return sum(slot.idle for slot in self._slots)

    @property
    def waiting(self) -> int:
        """Jobs submitted while no worker was free, waiting for one."""
        return len(self._book.waiting)

    @property
    def running(self) -> int:
        return sum(slot.run is not None for slot in self._slots)

    @property
    def devices(self) -> tuple[str, ...]:
        """The device of each worker that is up, as it reported when it loaded its network."""
        return tuple(slot.device for slot in self._slots if slot.ready)

    @property
    def worker_pids(self) -> tuple[int | None, ...]:
        """Process id of each slot's worker; ``None`` while a slot has none."""
        return tuple(slot.proc.pid if slot.proc else None for slot in self._slots)

    # ----- start and end (BackendLifecycle) -------------------------------------------------

    def _start_timed_out(self, seconds: float) -> BackendError:
        return BackendError(
            f"The engine's workers did not load their network within {seconds:g} s (a "
            "stalled weights download, or a GPU that does not start?)."
        )

    def _on_running(self) -> None:
        log.info("engine pool started: %d worker(s)", len(self._slots))

    async def _start_workers(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._workers is None:
            # The parent imports no torch, so the first worker counts the GPUs.
            self._slots = [_Slot(0)]
            first = await self._start_slot(self._slots[0], workers=1)
            spread = self._device in ("auto", "cuda") and first.device.startswith("cuda")
            count = max(1, first.cuda_devices) if spread else 1
        else:
            count = self._workers
        self._slots += [_Slot(index) for index in range(len(self._slots), count)]
        results = await asyncio.gather(
            *(self._start_slot(slot, count) for slot in self._slots if slot.proc is None),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # ----- workers ------------------------------------------------------------------------

    def _config(self, index: int, workers: int) -> WorkerConfig:
        return WorkerConfig(index, self._device, self._weights, workers, self._threads)

    async def _launch(self, slot: _Slot, workers: int) -> _WorkerProcess:
        """Starts a worker process in ``slot``; its ``ready`` future says when it is loaded."""
        assert self._loop is not None
        proc = _WorkerProcess(
            self._context,
            self._config(slot.index, workers),
            self._loop,
            self._on_message,
            self._on_exit,
        )
        slot.proc = proc
        # Not to_thread: a cancelled caller must not lose track of a process that the thread
        # goes on to start, so _end_workers can wait for proc.launched.
        proc.launched = self._loop.run_in_executor(None, proc.start)
        await asyncio.shield(proc.launched)
        return proc

    async def _start_slot(self, slot: _Slot, workers: int) -> WorkerReady:
        proc = await self._launch(slot, workers)
        return await proc.ready

    async def _replace(self, slot: _Slot) -> None:
        """Starts a new worker in ``slot``, after a back-off when starts keep failing.

        It does not wait for the network to load: ``WorkerReady`` makes the slot take jobs,
        and a failure comes back through ``_on_exit``.
        """
        assert self._closing is not None
        if slot.start_failures:
            delay = min(30.0, 2.0 ** (slot.start_failures - 1))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        if self._state != "running":
            return
        log.info("starting a replacement for engine worker %d", slot.index)
        with contextlib.suppress(Exception):  # reported through _on_exit
            await self._launch(slot, len(self._slots))

    def _schedule_replacement(self, slot: _Slot) -> None:
        assert self._loop is not None
        if self._state != "running":
            return
        if slot.start_failures >= MAX_START_FAILURES:
            slot.given_up = True
            log.error("engine worker %d failed to start %d times; giving up on it",
                      slot.index, slot.start_failures)  # fmt: skip
            if all(s.given_up for s in self._slots):
                self._break()
            return
        task = self._loop.create_task(self._replace(slot))
        self._spawns.add(task)
        task.add_done_callback(self._spawns.discard)

    def _on_message(self, proc: _WorkerProcess, message: object) -> None:
        slot = self._slots[proc.config.index] if proc.config.index < len(self._slots) else None
        if slot is None or slot.proc is not proc:
            return  # from a worker that was already replaced
        if isinstance(message, WorkerReady):
            proc.pid = message.pid
            slot.device = message.device
            slot.ready = True
            slot.start_failures = 0
            log.info("engine worker %d ready: pid %d on %s, %d thread(s)",
                     slot.index, message.pid, message.device, message.threads)  # fmt: skip
            if not proc.ready.done():
                proc.ready.set_result(message)
            self._capacity_changed()
            self._dispatch()
        elif isinstance(message, WorkerStartFailed):
            proc.start_error = message
        elif isinstance(message, WorkerEvent):
            run = slot.run
            if run is None or run.seq != message.seq:
                return  # a late event of a job that already ended
            event = message.event
            if isinstance(event, JobProgress):
                self._book.progress(run, event)
                return
            slot.run = None
            self._book.ended(run, event)
            self._dispatch()

    def _on_exit(self, proc: _WorkerProcess, exitcode: int | None) -> None:
        if not proc.exited.done():
            proc.exited.set_result(exitcode)
        slot = self._slots[proc.config.index] if proc.config.index < len(self._slots) else None
        if not proc.ready.done():
            proc.ready.set_exception(self._start_exception(proc, exitcode))
            # Nobody awaits a failed replacement's start: don't let asyncio warn about it.
            proc.ready.exception()
        if slot is None or slot.proc is not proc:
            return
        was_ready = slot.ready
        slot.proc = None
        slot.ready = False
        run, slot.run = slot.run, None
        if was_ready:
            if self._state == "running":
                log.warning("engine worker %d (pid %s) exited with code %s",
                            slot.index, proc.pid, exitcode)  # fmt: skip
        else:
            slot.start_failures += 1
            log.error("engine worker %d failed to start: %s",
                      slot.index, self._start_exception(proc, exitcode))  # fmt: skip
        self._capacity_changed()
        if run is not None:
            self._lose(run)
        self._schedule_replacement(slot)
        self._dispatch()

    @staticmethod
    def _start_exception(proc: _WorkerProcess, exitcode: int | None) -> Exception:
        failure = proc.start_error
        if failure is None:
            return BackendError(
                f"Engine worker {proc.config.index} exited while starting (exit code {exitcode})."
            )
        return _START_ERRORS.get(failure.error, BackendError)(failure.message)

    async def _end_workers(self, budget: float | None) -> None:
        """Ends every worker process and waits until each is reaped: a loading one is killed
        at once, a loaded one sees its pipe close and exits, or is killed after
        ``SHUTDOWN_WAIT`` seconds (or ``budget``, if less)."""
        if self._spawns:
            await asyncio.gather(*self._spawns, return_exceptions=True)
        procs = [slot.proc for slot in self._slots if slot.proc is not None]
        launches = [proc.launched for proc in procs if proc.launched is not None]
        await asyncio.gather(*launches, return_exceptions=True)
        for proc in procs:
            if _loaded(proc):
                proc.close_pipe()
            else:
                # Still loading (a download, CUDA init): nothing to finish, and it would only
                # see its closed pipe once loaded, which may be never.
                proc.kill()
        exits = [proc.exited for proc in procs if proc.pid is not None]
        if not exits:
            return
        wait = SHUTDOWN_WAIT if budget is None else min(budget, SHUTDOWN_WAIT)
        _, late = await asyncio.wait(exits, timeout=wait)
        for proc in procs:
            if proc.exited in late:
                log.warning("engine worker %d did not exit; killing it", proc.config.index)
                proc.kill()
        if late:
            await asyncio.wait(late)

    # ----- jobs ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self._state != "running":
            return
        waiting = self._book.waiting
        for slot in self._slots:
            if not waiting:
                break
            if slot.idle:
                assert slot.proc is not None
                run = waiting.popleft()
                slot.run = run
                seq = self._book.started(run, slot)
                slot.proc.send(RunJob(seq, run.job))


def _loaded(proc: _WorkerProcess) -> bool:
    return proc.ready.done() and not proc.ready.cancelled() and proc.ready.exception() is None


__all__ = ["EnginePool", "JobHandle"]
