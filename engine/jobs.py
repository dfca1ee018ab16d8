"""Jobs and the events they produce: plain dataclasses shared by the backends and their callers.

Everything here crosses the process (or machine) boundary between the bot and the engine's
workers, so it is bytes, numbers, strings and frozen dataclasses. It imports no torch.

A job's event stream is ``Started``, ``JobProgress``…, then exactly one final event: ``Done``,
``Failed`` or ``Cancelled``. Queue positions are the bot's: backends do not queue.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from engine.errors import EngineError
from engine.settings import StylizeSettings


class BackendError(EngineError):
    """The backend cannot take jobs: not started, shutting down, or its workers failed to
    start."""


class FailureKind(str, enum.Enum):
    """Why a job failed; the bot chooses its wording and whether to suggest a retry from it."""

    BAD_INPUT = "bad_input"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    WORKER_CRASHED = "worker_crashed"
    INTERNAL = "internal"

    def __str__(self) -> str:
        return self.value


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Job:
    """One stylisation request: encoded images as uploaded, and the settings to apply."""

    content: bytes
    styles: tuple[bytes, ...]
    settings: StylizeSettings
    """The backend's weights and device replace the ones given here."""
    max_bytes: int | None = None
    """Byte budget of the encoded result (the upload limit); ``None`` always gives PNG."""
    preview_interval: float = 0.0
    """Seconds between small previews attached to ``JobProgress``; 0 sends none."""
    id: str = field(default_factory=new_job_id)
    initial: bytes | None = None
    """An encoded image to start from instead of ``settings.init``: an earlier, smaller result
    of the same inputs and settings, which this job continues at its larger size."""

    def __post_init__(self) -> None:
        if isinstance(self.styles, list):
            object.__setattr__(self, "styles", tuple(self.styles))
        if not isinstance(self.content, bytes) or not self.content:
            raise ValueError("Job.content must be the non-empty encoded bytes of an image.")
        if not all(isinstance(style, bytes) and style for style in self.styles):
            raise ValueError("Job.styles must hold the non-empty encoded bytes of images.")
        if self.initial is not None and (not isinstance(self.initial, bytes) or not self.initial):
            raise ValueError("Job.initial must be None or the non-empty encoded bytes of an image.")
        if not isinstance(self.settings, StylizeSettings):
            raise TypeError("Job.settings must be a StylizeSettings.")
        # A user error (no style, or blend weights that don't match) is refused at submit,
        # in the caller's process, rather than after a trip through the queue.
        self.settings.check_styles(len(self.styles))
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError("Job.max_bytes must be positive, or None for no limit.")
        if self.preview_interval < 0:
            raise ValueError("Job.preview_interval must be zero (no previews) or positive.")


@dataclass(frozen=True)
class Started:
    job_id: str
    worker: int
    """Index of the worker slot, from 0; a replacement worker keeps its slot's index."""


@dataclass(frozen=True)
class JobProgress:
    job_id: str
    step: int
    total: int
    elapsed: float
    """Seconds since the worker took the job."""
    eta: float
    """Seconds left, extrapolated from the pace so far."""
    preview: bytes | None = None
    """A small JPEG of the current image, at most every ``Job.preview_interval`` seconds."""


@dataclass(frozen=True)
class JobStats:
    seconds: float
    """Wall time in the worker: decoding, optimisation and encoding."""
    steps: int
    width: int
    height: int
    seed: int
    settings: dict[str, Any]
    """The settings actually used (``StylizeSettings.to_dict()``), with the backend's device
    and weights, the seed drawn, and the reduced size after an out-of-memory retry."""


@dataclass(frozen=True)
class Done:
    job_id: str
    image: bytes
    format: str
    """``png``, ``jpeg`` or ``webp``."""
    stats: JobStats


@dataclass(frozen=True)
class Failed:
    job_id: str
    kind: FailureKind
    message: str
    """One or two plain sentences that can be shown to the user as they are."""


@dataclass(frozen=True)
class Cancelled:
    job_id: str
    reason: str


Event: TypeAlias = Started | JobProgress | Done | Failed | Cancelled
FinalEvent: TypeAlias = Done | Failed | Cancelled
FINAL_EVENTS: tuple[type[Done], type[Failed], type[Cancelled]] = (Done, Failed, Cancelled)
"""For ``isinstance(event, FINAL_EVENTS)``, which narrows ``event`` to a ``FinalEvent``."""


# The local backend's worker protocol: messages between ``EnginePool`` and a worker process.
# Callers never see them. ``WorkerConfig`` is also what a Ray actor starts from.


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs to start: sent once, as its spawn argument."""

    index: int
    device: str
    """As configured for the backend (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    weights: str
    workers: int
    """How many workers the backend runs on this machine: ``auto`` pins worker i to
    ``cuda:{i % gpus}``, and CPU workers share the cores between them."""
    threads: int | None = None
    """Torch CPU threads; ``None`` divides torch's default among the workers."""


@dataclass(frozen=True)
class RunJob:
    """Pool → worker: run this job. ``seq`` names this run for the shared cancel flag."""

    seq: int
    job: Job


@dataclass(frozen=True)
class WorkerReady:
    """Worker → pool: the network is loaded and the worker takes jobs."""

    pid: int
    device: str
    cuda_devices: int
    threads: int


@dataclass(frozen=True)
class WorkerStartFailed:
    """Worker → pool: the worker could not load its network; it exits after sending this."""

    error: str
    """The engine error's class name (``WeightsError``, ``SettingsError``…) or ``internal``."""
    message: str


@dataclass(frozen=True)
class WorkerEvent:
    """Worker → pool: an event of the run ``seq``; a final event means the worker is idle."""

    seq: int
    event: JobProgress | Done | Failed | Cancelled


__all__ = [
    "FINAL_EVENTS",
    "BackendError",
    "Cancelled",
    "Done",
    "Event",
    "Failed",
    "FailureKind",
    "FinalEvent",
    "Job",
    "JobProgress",
    "JobStats",
    "Started",
]
