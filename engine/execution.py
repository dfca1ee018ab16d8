"""Running one job on a loaded network: the code that every backend's worker runs.

A local worker process (``engine.worker``) and a Ray actor (``engine.ray_actor``) both load
the network once with ``load_worker`` and then call ``run_job`` for each job. ``run_job``
reports progress through a callback, checks a cancel callback on every step, and returns the
job's final event; it never raises. How a cancel request reaches the ``cancel`` callback is
the backend's business (a shared integer, an actor method): the job body only polls it.

Batching several same-size Adam jobs into one optimisation would fit here: ``run_job`` would
take several jobs and return one final event per job.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image

from engine.devices import cuda_device_count, resolve_device
from engine.errors import EngineError, ImageError, SettingsError, StopRequested
from engine.images import encode_image, load_image
from engine.jobs import (
    Cancelled,
    Done,
    Failed,
    FailureKind,
    Job,
    JobProgress,
    JobStats,
    WorkerConfig,
)
from engine.network import VGGEncoder, load_network
from engine.progress import Progress
from engine.settings import MIN_SIZE, StylizeSettings
from engine.transfer import decode_sides, stylize

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.2
"""Seconds between progress messages of one job: at most ~5 a second cross to the bot."""
OOM_SHRINK = 0.7
"""An out-of-memory job is retried once with its longest side scaled by this (about half the
pixels)."""


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
        initial: Image.Image | None = ...,
    ) -> Image.Image: ...


@dataclass(frozen=True)
class LoadedWorker:
    """A worker's network on its device, ready for ``run_job``."""

    network: VGGEncoder
    device: str
    cuda_devices: int
    threads: int


def load_worker(config: WorkerConfig) -> LoadedWorker:
    """Picks the device, sets torch's threads and loads the network: once per worker."""
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
    return LoadedWorker(network, str(device), cuda_devices, torch.get_num_threads())


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


def is_device_failure(error: BaseException) -> bool:
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

    A ``Cancelled`` result carries no reason: the backend knows why it asked (a user, the
    timeout, a shutdown) and words the final event itself. A ``worker_crashed`` failure means
    the device is unusable: the caller must end this worker so that it is replaced.
    """
    started = clock()
    try:
        settings = job.settings.replace(
            device=str(network.device), weights=weights, preview_every=0
        ).resolved()
        content_side, style_side = decode_sides(settings)
        content = load_image(job.content, fit=content_side)
        styles = [load_image(data, fit=style_side) for data in job.styles]
        initial = None if job.initial is None else load_image(job.initial, fit=content_side)
        relay = _ProgressRelay(job, settings, emit, started, clock)

        def run(attempt: StylizeSettings) -> Image.Image:
            return stylize_fn(
                content, styles, attempt, on_progress=relay, cancel=cancel, network=network,
                initial=initial,
            )  # fmt: skip

        image, used = stylize_with_oom_retry(run, settings, _free_device_memory)
        encoded = encode_image(image, max_bytes=job.max_bytes, metadata=_metadata(used))
        # The encoder may have downscaled to meet max_bytes: report what the user gets.
        with Image.open(io.BytesIO(encoded.data)) as delivered:
            width, height = delivered.size
    except StopRequested:
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
        if is_device_failure(error):
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
