"""A worker process of the local backend: loads the network once, then runs jobs one at a time.

``engine.pool`` spawns this module's ``worker_main`` (through a torch-free trampoline) and
talks to it over two one-way pipes: ``RunJob`` messages in, ``WorkerReady`` /
``WorkerStartFailed`` / ``WorkerEvent`` messages out. The job body is ``engine.execution``'s,
the same one the Ray actors run. Cancelling needs no round trip: the pool writes the number of
the run to stop into a shared integer, which the job's cancel check reads on every step.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Protocol

from engine.errors import EngineError
from engine.execution import load_worker, run_job
from engine.jobs import (
    Failed,
    FailureKind,
    JobProgress,
    RunJob,
    WorkerConfig,
    WorkerEvent,
    WorkerReady,
    WorkerStartFailed,
)

log = logging.getLogger(__name__)

EXIT_DEVICE_FAILED = 3
"""Exit status of a worker whose device failed: its CUDA context is unusable, so it must be
replaced rather than reused."""


class SharedInt(Protocol):
    """A ``multiprocessing`` shared integer, as seen by the worker."""

    value: int


def worker_main(
    config: WorkerConfig, tasks: Connection, events: Connection, cancel_seq: SharedInt
) -> None:
    """The worker process's whole life: start, then serve ``RunJob`` messages until EOF."""
    # Ctrl-C in a terminal and systemd's stop reach the whole process group; the pool
    # decides when workers stop, so a signal must not kill a job half-way (its user would
    # read "crashed" instead of "restarting"). The spawn trampoline ignores them already.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        loaded = load_worker(config)
    except EngineError as error:
        events.send(WorkerStartFailed(type(error).__name__, str(error)))
        return
    except Exception as error:
        log.exception("engine worker %d could not start", config.index)
        events.send(WorkerStartFailed("internal", f"The engine worker could not start: {error}"))
        return
    parent = multiprocessing.parent_process()
    parent_gone = False

    def send(message: object) -> None:
        nonlocal parent_gone
        try:
            events.send(message)
        except OSError:  # the pool's process is gone: finish quietly, nobody is listening
            parent_gone = True

    send(WorkerReady(os.getpid(), loaded.device, loaded.cuda_devices, loaded.threads))
    while not parent_gone:
        try:
            message: RunJob | None = tasks.recv()
        except (EOFError, OSError):
            return  # the pool closed our pipe, or its process is gone
        if message is None:
            return
        seq = message.seq

        def cancel(seq: int = seq) -> bool:
            # A dead parent can't receive the result: stop rather than compute for no one.
            return (
                cancel_seq.value == seq
                or parent_gone
                or (parent is not None and not parent.is_alive())
            )

        def emit(event: JobProgress, seq: int = seq) -> None:
            send(WorkerEvent(seq, event))

        final = run_job(
            message.job, loaded.network, weights=config.weights, emit=emit, cancel=cancel
        )
        send(WorkerEvent(seq, final))
        if isinstance(final, Failed) and final.kind is FailureKind.WORKER_CRASHED:
            sys.exit(EXIT_DEVICE_FAILED)
