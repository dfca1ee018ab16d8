"""``RayBackend``: the ``ray`` backend, one actor per GPU anywhere in a Ray cluster.

A server that outgrows one GPU machine adds machines with ``ray start --address=...``; this
backend notices them and puts actors on their GPUs. How it works:

* **Actors.** ``engine.ray_actor.StylizeActor`` loads the network once in ``__init__``. Each
  actor is pinned to its node (hard node affinity) and holds one GPU (``num_gpus=1``). When
  the cluster has no GPU at all, every node gets ``workers`` CPU actors (default 1) instead;
  a CPU-only head node in a cluster with GPUs runs no jobs, only the bot.
* **Capacity follows the cluster.** Every ``poll_interval`` seconds the backend reads the
  node table (``ray.nodes()``, in a thread) and starts actors on nodes that joined; actors on
  nodes that left are dropped. ``capacity`` counts the actors that are up, and listeners hear
  of each change.
* **Streaming.** ``run`` is a Ray streaming generator: the backend awaits each ObjectRef it
  yields, so nothing blocks the event loop (no ``ray.get`` on it; blocking calls such as
  ``ray.init`` and ``ray.nodes`` run in a thread).
* **Stopping.** Cancel, timeout and shutdown go through ``engine.runs.RunBook`` as in the
  local backend: ``actor.cancel`` (its own concurrency group, so it does not wait behind the
  job) makes the job stop within a step; an actor that hasn't stopped ``stop_grace`` seconds
  later is killed with ``ray.kill`` and restarts.
* **Failures.** ``max_restarts=MAX_RESTARTS``: an actor whose process dies (a CUDA fault, the
  OOM killer) comes back on its node with a fresh CUDA context; beyond that, or when its node
  is gone, it is dead and the node table decides whether to start another. ``max_task_retries
  =0``: Ray never re-runs a job on its own, because its progress has already reached the
  user; the job fails ``worker_crashed``, or runs once more with ``retry_crashed``, exactly as
  with the local backend.

Nothing here imports torch; ray is imported by this module, which the bot loads only for
``STYLIZE_BACKEND=ray``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from engine.backend import CapacityListener, CapacityListeners, JobHandle
from engine.errors import EngineError, SettingsError, WeightsError
from engine.jobs import (
    Cancelled,
    Done,
    Failed,
    FailureKind,
    Job,
    JobProgress,
    PoolError,
    WorkerConfig,
)
from engine.ray_actor import ActorInfo, StylizeActor
from engine.runs import SHUTDOWN, Run, RunBook
from engine.settings import StylizeSettings

log = logging.getLogger(__name__)

MAX_RESTARTS = 2
"""Restarts of one actor by Ray, on its own node, before it counts as dead."""
MAX_TASK_RETRIES = 0
"""Ray never replays a job: the backend's ``retry_crashed`` decides, as for local workers."""
START_TIMEOUT = 900.0
"""Seconds ``start`` waits for its first actors: the first start on a node may download the
ImageNet weights; an actor that never loads means the cluster lacks the resources it asks."""
MAX_START_FAILURES = 3
"""An actor position (node, slot) that fails to start this many times in a row is given up."""

_START_ERRORS: dict[str, type[Exception]] = {
    "WeightsError": WeightsError,
    "SettingsError": SettingsError,
}

BackendState = Literal["new", "starting", "running", "closing", "closed"]
ActorKey = tuple[str, int]
"""(node id, slot on that node)."""


@dataclass(eq=False)
class _Actor:
    """One actor of the backend, from its creation until it is dropped."""

    index: int
    key: ActorKey
    handle: Any
    node_ip: str
    device: str = ""
    pid: int = 0
    ready: bool = False
    run: Run | None = None

    # engine.runs.Worker

    def request_stop(self, run: Run) -> None:
        self.handle.cancel.remote(run.seq)

    def kill(self) -> None:
        # Ray restarts it (MAX_RESTARTS); the job's stream then fails and the job is lost.
        _kill_later(self.handle, no_restart=False)


@dataclass
class _Position:
    """Start failures of one actor position, so that a broken GPU isn't retried forever."""

    failures: int = 0
    given_up: bool = False
    retry_at: float = 0.0


@dataclass(frozen=True)
class NodeInfo:
    """A live node of the cluster, as the node table describes it."""

    node_id: str
    ip: str
    gpus: int
    cpus: int


def actors_per_node(
    nodes: Iterable[NodeInfo], *, device: str, workers: int | None
) -> dict[str, int]:
    """How many actors each node should run.

    With a GPU anywhere in the cluster (and a device other than ``cpu``), only GPU nodes run
    actors, one per GPU (at most ``workers``): a CPU-only head node runs the bot, not jobs.
    Without one, every node runs ``workers`` CPU actors (default 1).
    """
    nodes = list(nodes)
    use_gpus = device != "cpu" and any(node.gpus for node in nodes)
    if use_gpus:
        return {
            node.node_id: node.gpus if workers is None else min(workers, node.gpus)
            for node in nodes
            if node.gpus
        }
    return {node.node_id: workers or 1 for node in nodes}


class RayBackend:
    """Ray actors that run stylisation jobs. Use it from one asyncio event loop.

    ``address``: ``None`` starts Ray on this machine (and stops it on ``close``); ``auto``,
    ``HOST:PORT`` or ``ray://HOST:PORT`` joins that cluster. When Ray is already initialised
    in this process, that session is used and left running. ``workers``: actors per node,
    ``None`` for one per GPU (or one per node when the cluster has no GPU). ``threads``: torch
    CPU threads per actor; ``actor_cpus`` the CPUs that Ray reserves for each actor when it
    places them. ``init_options`` go to ``ray.init`` when this backend starts Ray.
    The other arguments mean what they mean for ``EnginePool``.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        device: str = "auto",
        weights: str = "imagenet",
        job_timeout: float = 600.0,
        retry_crashed: bool = False,
        threads: int | None = None,
        stop_grace: float = 5.0,
        poll_interval: float = 2.0,
        actor_cpus: float = 1.0,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        StylizeSettings(device=device, weights=weights)  # refuse bad names before starting
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1, or None for one per GPU.")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1, or None.")
        if poll_interval <= 0 or actor_cpus <= 0:
            raise ValueError("poll_interval and actor_cpus must be positive.")
        self._book = RunBook(
            job_timeout=job_timeout,
            stop_grace=stop_grace,
            retry_crashed=retry_crashed,
            on_waiting=self._dispatch,
        )
        self._address = address
        self._workers = workers
        self._device = device
        self._weights = weights
        self._threads = threads
        self._poll_interval = poll_interval
        self._actor_cpus = actor_cpus
        self._init_options = dict(init_options or {})
        self._state: BackendState = "new"
        self._owns_ray = False
        self._actors: dict[ActorKey, _Actor] = {}
        self._positions: dict[ActorKey, _Position] = {}
        self._nodes: dict[str, NodeInfo] = {}
        self._indices: dict[ActorKey, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners = CapacityListeners()
        self._poller: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # ----- what callers see -------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Actors that are up, busy or not: how many jobs can run at once now."""
        return sum(actor.ready for actor in self._actors.values())

    @property
    def broken(self) -> bool:
        # A cluster can always gain a node that starts an actor: never given up on.
        return False

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(actor.device for actor in self._actors.values() if actor.ready)

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node id of each actor that is up."""
        return tuple(actor.key[0] for actor in self._actors.values() if actor.ready)

    @property
    def worker_nodes(self) -> dict[int, str]:
        """The node id of each actor that is up, by ``Started.worker``."""
        return {actor.index: actor.key[0] for actor in self._actors.values() if actor.ready}

    @property
    def worker_pids(self) -> dict[int, int]:
        """Process id (on its own node) of each actor that is up, by ``Started.worker``."""
        return {actor.index: actor.pid for actor in self._actors.values() if actor.ready}

    @property
    def running(self) -> int:
        return sum(actor.run is not None for actor in self._actors.values())

    def add_capacity_listener(self, listener: CapacityListener) -> None:
        self._listeners.add(listener)

    async def __aenter__(self) -> RayBackend:
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
        """Joins or starts Ray and starts an actor per GPU (or CPU actors); returns when every
        actor the cluster has room for has loaded its network."""
        if self._state != "new":
            raise PoolError("The Ray backend was already started.")
        self._state = "starting"
        try:
            if not ray.is_initialized():
                await asyncio.to_thread(self._init_ray)
            starts = await self._reconcile()
            try:
                results = await asyncio.wait_for(
                    asyncio.gather(*starts, return_exceptions=True), START_TIMEOUT
                )
            except asyncio.TimeoutError:
                raise PoolError(
                    f"The Ray cluster's engine actors did not start within {START_TIMEOUT:g} s: "
                    "check that its nodes have the GPUs (or CPUs) they need free."
                ) from None
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            if not self._actors:
                raise PoolError(
                    "The Ray cluster has no node that can run an engine actor. "
                    "Start one with `ray start --address=...`."
                )
        except BaseException:
            await self._drop_all_actors()
            await self._stop_ray()
            self._state = "closed"
            raise
        self._state = "running"
        self._capacity_changed()
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        log.info("ray backend started: %d actor(s) on %d node(s): %s", self.capacity,
                 len(set(self.nodes)), ", ".join(sorted(set(self.devices))))  # fmt: skip

    def submit(self, job: Job) -> JobHandle:
        """Runs ``job`` on a free actor, or on the next one to free up."""
        if self._state != "running":
            raise PoolError(_NOT_RUNNING[self._state])
        return self._book.add(job).stream.handle

    async def close(self, grace: float = 10.0) -> None:
        """Stops taking jobs, gives running ones ``grace`` seconds, cancels the rest, ends
        every actor, and stops Ray if this backend started it."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        if self._state == "closing":
            raise PoolError("The Ray backend is already closing.")
        self._state = "closing"
        book = self._book
        try:
            if self._poller is not None:
                self._poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._poller
            for run in list(book.waiting):
                book.stop(run, "shutdown")
            running = [run.stream.final for run in book.runs.values()]
            if running:
                await asyncio.wait(running, timeout=max(0.0, grace))
            book.stop_all("shutdown")
            pending = [run.stream.final for run in book.runs.values()]
            if pending:
                await asyncio.wait(pending)
            await self._drop_all_actors()
        finally:
            book.finish_all(lambda run: Cancelled(run.job.id, SHUTDOWN))
            await self._stop_ray()
            self._state = "closed"
            self._capacity_changed()
            log.info("ray backend closed")

    # ----- the cluster ----------------------------------------------------------------------

    def _init_ray(self) -> None:
        """Blocking: run in a thread."""
        options: dict[str, Any] = {"log_to_driver": False}
        if self._address is None:
            options.update(include_dashboard=False)
            self._owns_ray = True
        else:
            options["address"] = self._address
        options.update(self._init_options)
        context = ray.init(**options)
        where = "started on this machine" if self._owns_ray else f"joined {self._address}"
        log.info("ray %s: %s (gcs %s)", ray.__version__, where,
                 getattr(context, "address_info", {}).get("gcs_address", "?"))  # fmt: skip

    async def _stop_ray(self) -> None:
        if self._owns_ray and ray.is_initialized():
            await asyncio.to_thread(ray.shutdown)
            self._owns_ray = False

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ray backend: reading the cluster failed")

    def refresh(self) -> None:
        """Read the cluster's node table now rather than at the next poll."""
        self._wake.set()

    async def _read_nodes(self) -> dict[str, NodeInfo]:
        table = await asyncio.to_thread(ray.nodes)
        nodes = {}
        for row in table:
            if not row.get("Alive"):
                continue
            resources = row.get("Resources", {})
            node = NodeInfo(
                row["NodeID"],
                row.get("NodeManagerAddress", "?"),
                int(resources.get("GPU", 0)),
                int(resources.get("CPU", 0)),
            )
            nodes[node.node_id] = node
        return nodes

    def _wanted(self, nodes: dict[str, NodeInfo]) -> dict[ActorKey, NodeInfo]:
        counts = actors_per_node(nodes.values(), device=self._device, workers=self._workers)
        return {
            (node_id, slot): nodes[node_id]
            for node_id, count in counts.items()
            for slot in range(count)
        }

    async def _reconcile(self) -> list[asyncio.Task[None]]:
        """Starts actors on nodes that joined and drops those of nodes that left; returns the
        starts, which run on their own (an actor may wait long for its node's resources)."""
        nodes = await self._read_nodes()
        self._log_membership(nodes)
        wanted = self._wanted(nodes)
        for key in [key for key in self._actors if key not in wanted]:
            self._drop(self._actors[key], "its node left the cluster")
        now = asyncio.get_running_loop().time()
        starts = []
        for key, node in wanted.items():
            position = self._positions.setdefault(key, _Position())
            if key in self._actors or position.given_up or now < position.retry_at:
                continue
            per_node = sum(1 for other in wanted if other[0] == key[0])
            starts.append(self._spawn(self._start_actor(key, node, per_node)))
        self._capacity_changed()
        self._dispatch()
        return starts

    def _log_membership(self, nodes: dict[str, NodeInfo]) -> None:
        known = self._nodes
        for node_id, node in nodes.items():
            if node_id not in known:
                log.info("ray node joined: %s (%s), %d GPU(s), %d CPU(s)",
                         node.ip, node_id[:12], node.gpus, node.cpus)  # fmt: skip
        for node_id, node in known.items():
            if node_id not in nodes:
                log.warning("ray node left: %s (%s)", node.ip, node_id[:12])
        self._nodes = nodes

    def _config(self, key: ActorKey, per_node: int) -> WorkerConfig:
        index = self._indices.setdefault(key, len(self._indices))
        # Ray shows a GPU actor only its own GPU (CUDA_VISIBLE_DEVICES): it is cuda:0 there.
        device = "cuda" if self._uses_gpus() else self._device
        return WorkerConfig(index, device, self._weights, per_node, self._threads)

    def _uses_gpus(self) -> bool:
        return self._device != "cpu" and any(n.gpus for n in self._nodes.values())

    async def _start_actor(self, key: ActorKey, node: NodeInfo, per_node: int) -> None:
        if self._state not in ("starting", "running"):
            return  # spawned by a poll just before close()
        gpus = self._uses_gpus()
        config = self._config(key, per_node)
        handle = StylizeActor.options(  # type: ignore[attr-defined]
            num_gpus=1 if gpus else 0,
            num_cpus=self._actor_cpus,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_TASK_RETRIES,
            scheduling_strategy=NodeAffinitySchedulingStrategy(key[0], soft=False),
        ).remote(config)
        actor = _Actor(config.index, key, handle, node.ip)
        self._actors[key] = actor
        try:
            info: ActorInfo = await handle.info.remote()
            if info.error:
                raise _START_ERRORS.get(info.error, PoolError)(info.message)
        except asyncio.CancelledError:
            if self._actors.get(key) is actor:
                del self._actors[key]
            await _kill_later(handle, no_restart=True)
            raise
        except BaseException as error:
            self._start_failed(actor, error)
            raise
        self._positions[key] = _Position()
        actor.pid, actor.device, actor.ready = info.pid, info.device, True
        log.info("ray actor %d ready on %s: %s, pid %d, %d thread(s)",
                 actor.index, node.ip, info.device, info.pid, info.threads)  # fmt: skip
        self._capacity_changed()
        self._dispatch()

    def _start_failed(self, actor: _Actor, error: BaseException) -> None:
        position = self._positions.setdefault(actor.key, _Position())
        position.failures += 1
        position.retry_at = asyncio.get_running_loop().time() + min(
            30.0, 2.0 ** (position.failures - 1)
        )
        if position.failures >= MAX_START_FAILURES:
            position.given_up = True
        log.error("ray actor %d on %s failed to start: %s%s", actor.index, actor.node_ip,
                  error, "; giving up on it" if position.given_up else "")  # fmt: skip
        if self._actors.get(actor.key) is actor:
            del self._actors[actor.key]
        _kill_later(actor.handle, no_restart=True)

    def _drop(self, actor: _Actor, why: str) -> None:
        """Forgets an actor (its node left, or it is dead); its job, if any, is lost."""
        if self._actors.get(actor.key) is not actor:
            return
        del self._actors[actor.key]
        log.warning("ray actor %d on %s dropped: %s", actor.index, actor.node_ip, why)
        _kill_later(actor.handle, no_restart=True)
        run, actor.run = actor.run, None
        if run is not None:
            self._lose(run)
        self._capacity_changed()

    async def _drop_all_actors(self) -> None:
        actors = list(self._actors.values())
        self._actors.clear()
        await asyncio.gather(*(_kill_later(actor.handle, no_restart=True) for actor in actors))
        # Wait until Ray reports each one dead, so that no actor process outlives close().
        await asyncio.gather(*(self._until_dead(actor) for actor in actors))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @staticmethod
    async def _until_dead(actor: _Actor) -> None:
        # A call may still reach the actor just after ray.kill: ask until Ray says it's dead.
        for _ in range(300):
            try:
                await asyncio.wait_for(actor.handle.info.remote(), 10)
            except (RayError, asyncio.TimeoutError):
                return
            await asyncio.sleep(0.1)

    def _capacity_changed(self) -> None:
        capacity = self.capacity if self._state == "running" else 0
        if self._listeners.update(capacity):
            log.info("engine capacity: %d actor(s) on %d node(s)", capacity, len(set(self.nodes)))

    # ----- jobs ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self._state != "running":
            return
        waiting = self._book.waiting
        for actor in list(self._actors.values()):
            if not waiting:
                break
            if actor.ready and actor.run is None:
                run = waiting.popleft()
                actor.run = run
                seq = self._book.started(run, actor)
                self._spawn(self._stream(actor, run, seq))

    async def _stream(self, actor: _Actor, run: Run, seq: int) -> None:
        """Relays one run's events from the actor's streaming generator."""
        final: Done | Failed | Cancelled | None = None
        try:
            stream = actor.handle.run.remote(run.job, seq)
            async for ref in stream:
                event = await ref
                if isinstance(event, JobProgress):
                    if actor.run is run and run.seq == seq:
                        self._book.progress(run, event)
                else:
                    final = event
        except RayError as error:
            if actor.run is run:
                log.warning("ray actor %d on %s lost job %s: %s", actor.index,
                            actor.node_ip, run.job.id, type(error).__name__)  # fmt: skip
                actor.run = None
                actor.ready = False
                self._capacity_changed()
                self._lose(run)
                self._spawn(self._recover(actor))
            return
        if actor.run is not run:
            return  # dropped meanwhile: the job was already handled
        actor.run = None
        if final is None:
            final = Failed(run.job.id, FailureKind.INTERNAL, "The job ended without a result.")
        if isinstance(final, Failed) and final.kind is FailureKind.WORKER_CRASHED:
            # The device failed and its context is unusable: restart the actor's process.
            actor.ready = False
            self._capacity_changed()
            actor.kill()
            self._spawn(self._recover(actor))
        self._book.ended(run, final)
        self._dispatch()

    def _lose(self, run: Run) -> None:
        if self._state != "running" and run.stop_reason is None:
            run.stop_reason = "shutdown"
        self._book.lost(run)

    async def _recover(self, actor: _Actor) -> None:
        """Waits for Ray to restart a failed actor; drops it if it is dead for good."""
        try:
            info: ActorInfo = await actor.handle.info.remote()
        except RayError:
            self._drop(actor, "it died and Ray could not restart it")
            self.refresh()
            return
        if self._actors.get(actor.key) is not actor:
            return
        actor.pid, actor.device, actor.ready = info.pid, info.device, True
        log.info("ray actor %d on %s restarted: pid %d", actor.index, actor.node_ip, info.pid)
        self._capacity_changed()
        self._dispatch()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # a failed start was logged where it failed
        if error is not None and not isinstance(error, (EngineError, RayError)):
            log.error("ray backend: a background task failed", exc_info=error)


def _kill(handle: Any, no_restart: bool) -> None:
    with contextlib.suppress(RayError, ValueError):
        ray.kill(handle, no_restart=no_restart)


def _kill_later(handle: Any, *, no_restart: bool) -> asyncio.Future[None]:
    """``ray.kill`` in a thread: it waits for the cluster's control store, not for the loop."""
    return asyncio.get_running_loop().run_in_executor(None, _kill, handle, no_restart)


_NOT_RUNNING: dict[str, str] = {
    "new": "The Ray backend has not been started.",
    "starting": "The Ray backend is still starting.",
    "closing": SHUTDOWN,
    "closed": "The Ray backend is closed.",
}

__all__ = ["MAX_RESTARTS", "MAX_TASK_RETRIES", "NodeInfo", "RayBackend", "actors_per_node"]
