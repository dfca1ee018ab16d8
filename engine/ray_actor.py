"""The Ray backend's actor: a network loaded once on one GPU (or the CPU), running one job at
a time with ``engine.execution``'s job body, the same code as a local worker process.

A job's events stream back as a Ray streaming generator: ``run`` yields each ``JobProgress``
as the optimisation makes it, then the final event. Images cross as the bytes inside ``Job``
and ``Done``, through Ray's object store.

The actor is threaded, with two concurrency groups: ``run`` (one at a time, the default group)
and ``control`` (``cancel``, ``info``), so that a cancel reaches a running job at once. As in
a local worker, cancelling is a number written into the actor and read by the job's cancel
check on every step.

Importing this module imports ray but not torch: the driver (the bot) names the class, and
only the actor's process loads torch, in ``__init__``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray
from ray.actor import ActorClass

from engine.errors import EngineError
from engine.jobs import Cancelled, Done, Failed, Job, JobProgress, WorkerConfig

log = logging.getLogger(__name__)

CONTROL = "control"
"""The concurrency group of the calls that must not wait behind a running job."""


@dataclass(frozen=True)
class ActorInfo:
    """What an actor says about itself once its network is loaded, or why it could not load."""

    pid: int
    node_id: str
    device: str = ""
    threads: int = 0
    error: str = ""
    """Empty when loaded; else the engine error's class name (``WeightsError``…) or
    ``internal``."""
    message: str = ""


class StylizeActor:
    """One engine worker in a Ray cluster: the body of ``StylizeActorClass``."""

    def __init__(self, config: WorkerConfig) -> None:
        # Imported here, not at the top: the driver imports this module without torch.
        from engine.execution import load_worker

        self._config = config
        self._cancel_seq = 0
        self._loaded = None
        node_id = ray.get_runtime_context().get_node_id()
        try:
            self._loaded = load_worker(config)
        except EngineError as error:
            # Kept, not raised: the backend reads it from info() and raises the same error
            # type at start, as a local worker's WorkerStartFailed does.
            self._info = ActorInfo(os.getpid(), node_id, error=type(error).__name__,
                                   message=str(error))  # fmt: skip
            return
        except Exception as error:
            log.exception("engine actor %d could not start", config.index)
            message = f"The engine worker could not start: {error}"
            self._info = ActorInfo(os.getpid(), node_id, error="internal", message=message)
            return
        self._info = ActorInfo(os.getpid(), node_id, self._loaded.device, self._loaded.threads)

    @ray.method(concurrency_group=CONTROL)
    def info(self) -> ActorInfo:
        return self._info

    @ray.method(concurrency_group=CONTROL)
    def cancel(self, seq: int) -> None:
        """Stop the run ``seq``: at its next step if it runs, at once if it starts later."""
        # One aligned int store, read by the run's thread: no lock needed, as with the
        # local worker's shared integer.
        self._cancel_seq = seq

    def run(self, job: Job, seq: int) -> Iterator[JobProgress | Done | Failed | Cancelled]:
        """Runs ``job``, yielding its progress as it comes and then its final event."""
        from engine.execution import run_job

        loaded = self._loaded
        assert loaded is not None, "run() on an actor that failed to start"
        # The engine reports progress through a callback on its own thread; the generator
        # hands each event to Ray as it arrives.
        events: queue.SimpleQueue[JobProgress | Done | Failed | Cancelled] = queue.SimpleQueue()

        def body() -> None:
            final = run_job(
                job,
                loaded.network,
                weights=self._config.weights,
                emit=events.put,
                cancel=lambda: self._cancel_seq == seq,
            )
            events.put(final)

        worker = threading.Thread(target=body, name=f"stylize-job-{seq}", daemon=True)
        worker.start()
        while True:
            event = events.get()
            yield event
            if not isinstance(event, JobProgress):
                break
        worker.join()


# Ray's stub of ray.remote(**options) lists the options of tasks and actors but omits
# concurrency_groups, which Ray accepts (and documents) for actor classes: the stub is wrong.
_with_control_group: Any = ray.remote(concurrency_groups={CONTROL: 1})  # type: ignore[call-overload]
StylizeActorClass: ActorClass[StylizeActor] = _with_control_group(StylizeActor)
"""The Ray actor class that the backend creates its actors from."""

__all__ = ["CONTROL", "ActorInfo", "StylizeActor", "StylizeActorClass"]
