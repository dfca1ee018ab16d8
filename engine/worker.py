"""A worker process of the engine pool: loads the network once, then runs jobs one at a time.

``engine.pool`` spawns this module's ``worker_main`` (through a torch-free trampoline) and
talks to it over two one-way pipes: ``RunJob`` messages in, ``WorkerReady`` /
``WorkerStartFailed`` / ``WorkerEvent`` messages out. Cancelling needs no round trip: the pool
writes the number of the run to stop into a shared integer, which ``stylize``'s cancel check
reads on every step.

Batching several same-size Adam jobs into one optimisation would fit here: ``RunJob`` would
carry several jobs, and ``run_job`` would emit one final event per job.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

import torch
from PIL import Image

from engine.devices import cuda_device_count, resolve_device
from engine.errors import Cancelled as EngineCancelled
from engine.errors import EngineError, ImageError, SettingsError
from engine.images import encode_image, load_image
from engine.jobs import (
    Cancelled,
    Done,
    Failed,
    FailureKind,
    Job,
    JobProgress,
    JobStats,
    RunJob,
    WorkerConfig,
    WorkerEvent,
    WorkerReady,
    WorkerStartFailed,
)
from engine.network import VGGEncoder, load_network
from engine.progress import Progress
from engine.settings import MIN_SIZE, StylizeSettings
from engine.transfer import decode_sides, stylize

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.2
"""Seconds between progress messages of one job: the pipe carries at most ~5 a second."""
OOM_SHRINK = 0.7
"""An out-of-memory job is retried once with its longest side scaled by this (about half the
pixels)."""
EXIT_DEVICE_FAILED = 3
"""Exit status of a worker whose device failed: its CUDA context is unusable, so it must be
replaced rather than reused."""


class StylizeFunction(Protocol):
    def __call__(
        self,
        content: Image.Image,
        styles: Sequence[Image.Image],
        settings: StylizeSettings,
        *,
        on_progress: Callable[[Progress], None] | None = ...,
        cancel: Callable[[], bool] | None = ...,
        network: VGGEncoder | None = ...,
    ) -> Image.Image: ...


class SharedInt(Protocol):
    """A ``multiprocessing`` shared integer, as seen by the worker."""

    value: int


def worker_main(
    config: WorkerConfig, tasks: Connection, events: Connection, cancel_seq: SharedInt
) -> None:
    """The worker process's whole life: start, then serve ``RunJob`` messages until EOF."""
    # Ctrl-C in a terminal reaches the whole process group; the pool decides when workers
    # stop, so an interrupt must not kill a job half-way with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        network, device, cuda_devices, threads = _load(config)
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

    send(WorkerReady(os.getpid(), device, cuda_devices, threads))
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

        final = run_job(message.job, network, weights=config.weights, emit=emit, cancel=cancel)
        send(WorkerEvent(seq, final))
        if isinstance(final, Failed) and final.kind is FailureKind.WORKER_CRASHED:
            sys.exit(EXIT_DEVICE_FAILED)


def _load(config: WorkerConfig) -> tuple[VGGEncoder, str, int, int]:
    cuda_devices = cuda_device_count()
    name = config.device
    if name in ("auto", "cuda") and cuda_devices > 0:
        name = f"cuda:{config.index % cuda_devices}"
    device = resolve_device(name)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    elif device.type == "cpu":
        # CPU workers share the cores; each taking them all would oversubscribe them.
        torch.set_num_threads(max(1, torch.get_num_threads() // config.workers))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    network = load_network(config.weights, device)
    return network, str(device), cuda_devices, torch.get_num_threads()


class _ProgressRelay:
    """Turns the engine's per-step callback into throttled ``JobProgress`` messages."""

    def __init__(
        self,
        job: Job,
        settings: StylizeSettings,
        emit: Callable[[JobProgress], None],
        started: float,
        clock: Callable[[], float],
    ) -> None:
        self.job = job
        self.settings = settings
        self.emit = emit
        self.started = started
        self.clock = clock
        self.last_sent: float | None = None
        self.last_preview = started
        self.total = 0

    def __call__(self, progress: Progress) -> None:
        now = self.clock()
        self.total = progress.total
        final_step = progress.step == progress.total
        if (
            self.last_sent is not None
            and not final_step
            and now - self.last_sent < PROGRESS_INTERVAL
        ):
            return
        self.last_sent = now
        preview = None
        interval = self.job.preview_interval
        render = progress.render_preview
        if interval > 0 and render is not None and now - self.last_preview >= interval:
            self.last_preview = now
            preview = encode_image(render(self.settings.preview_size), prefer="jpeg").data
        self.emit(
            JobProgress(
                job_id=self.job.id,
                step=progress.step,
                total=progress.total,
                elapsed=now - self.started,
                eta=progress.eta,
                preview=preview,
            )
        )


def smaller_size(size: int) -> int:
    """The size an out-of-memory job is retried at, and the one suggested after that fails."""
    return max(MIN_SIZE, int(size * OOM_SHRINK))


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    # CPU and MPS allocators raise plain RuntimeErrors.
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "not enough memory" in text or "MPS backend out of memory" in text
    )


def _is_device_failure(error: BaseException) -> bool:
    """A CUDA error other than OOM leaves the context unusable for every later job."""
    accelerator_error = getattr(torch, "AcceleratorError", ())
    return isinstance(error, accelerator_error) or (
        isinstance(error, RuntimeError) and "CUDA error" in str(error)
    )


class OutOfMemory(Exception):
    """Raised by ``stylize_with_oom_retry`` when the smaller retry ran out of memory too."""

    def __init__(self, size: int) -> None:
        super().__init__(f"out of memory at {size} px")
        self.size = size


def stylize_with_oom_retry(
    run: Callable[[StylizeSettings], Image.Image],
    settings: StylizeSettings,
    free_memory: Callable[[], None] | None = None,
) -> tuple[Image.Image, StylizeSettings]:
    """``run(settings)``; on out-of-memory, once more at ``smaller_size``.

    Returns the image and the settings that made it; raises ``OutOfMemory`` with the last
    size tried when memory runs out for good.
    """
    try:
        return run(settings), settings
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        if settings.size <= MIN_SIZE:
            raise OutOfMemory(settings.size) from None
    # Retry outside the except block: the traceback holds the failed run's tensors.
    if free_memory is not None:
        free_memory()
    retry = settings.replace(size=smaller_size(settings.size))
    try:
        return run(retry), retry
    except Exception as error:
        if is_out_of_memory(error):
            raise OutOfMemory(retry.size) from None
        raise


def _free_device_memory() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def run_job(
    job: Job,
    network: VGGEncoder,
    *,
    weights: str,
    emit: Callable[[JobProgress], None],
    cancel: Callable[[], bool],
    stylize_fn: StylizeFunction = stylize,
    clock: Callable[[], float] = time.perf_counter,
) -> Done | Failed | Cancelled:
    """Runs one job on a loaded network and returns its final event; never raises.

    A ``Cancelled`` result carries no reason: the pool knows why it asked (a user, the
    timeout, a shutdown) and words the final event itself.
    """
    started = clock()
    try:
        settings = job.settings.replace(
            device=str(network.device), weights=weights, preview_every=0
        ).resolved()
        content_side, style_side = decode_sides(settings)
        content = load_image(job.content, fit=content_side)
        styles = [load_image(data, fit=style_side) for data in job.styles]
        relay = _ProgressRelay(job, settings, emit, started, clock)

        def run(attempt: StylizeSettings) -> Image.Image:
            return stylize_fn(
                content, styles, attempt, on_progress=relay, cancel=cancel, network=network
            )

        image, used = stylize_with_oom_retry(run, settings, _free_device_memory)
        encoded = encode_image(image, max_bytes=job.max_bytes, metadata=_metadata(used))
        # The encoder may have downscaled to meet max_bytes: report what the user gets.
        with Image.open(io.BytesIO(encoded.data)) as delivered:
            width, height = delivered.size
    except EngineCancelled:
        return Cancelled(job.id, reason="")
    except (ImageError, SettingsError) as error:
        return Failed(job.id, FailureKind.BAD_INPUT, str(error))
    except OutOfMemory as error:
        return Failed(
            job.id,
            FailureKind.OUT_OF_MEMORY,
            f"The engine ran out of memory for an image this large ({error.size} px). "
            f"Try a smaller size, e.g. {smaller_size(error.size)} px.",
        )
    except EngineError as error:
        return Failed(job.id, FailureKind.INTERNAL, str(error))
    except Exception as error:
        if _is_device_failure(error):
            log.exception("job %s: the device failed; this worker will be replaced", job.id)
            return Failed(
                job.id,
                FailureKind.WORKER_CRASHED,
                "The GPU failed while running this job, and its worker was restarted. "
                "Please try again.",
            )
        log.exception("job %s failed", job.id)
        return Failed(
            job.id,
            FailureKind.INTERNAL,
            "Something went wrong while repainting this image. Please try again.",
        )
    stats = JobStats(
        seconds=clock() - started,
        steps=relay.total or used.steps,
        width=width,
        height=height,
        seed=used.seed if used.seed is not None else 0,
        settings=used.to_dict(),
    )
    return Done(job.id, encoded.data, encoded.format, stats)


def _metadata(settings: StylizeSettings) -> dict[str, Any]:
    return {
        "stylize:seed": str(settings.seed),
        "stylize:settings": json.dumps(settings.to_dict(), sort_keys=True),
    }
