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
* **Joining.** ``ray.init`` runs in a daemon thread (``RaySession``): a join that hangs (Ray
  retries an unreachable address for minutes) is given up after ``connect_timeout`` seconds,
  and every failure to join or start Ray is a ``ClusterError`` that names the likely cause.
  Without an address the backend starts a private Ray (``address="local"``: never one that
  happens to run on the machine, nor a dead one named by a stale record) that requires a
  fresh random token of each client.
* **Closing.** Start and close are ``engine.lifecycle.BackendLifecycle``'s, as for every
  backend: ``close(grace)`` gives running jobs ``grace`` seconds, asks them to stop and gives
  them ``STOP_WAIT`` seconds more, then kills the actors and stops the private Ray, all within
  ``CLOSE_MARGIN`` seconds of the grace. A close during ``start`` cancels the start.
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
import os
import re
import secrets
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from engine.errors import ClusterError, EngineError, SettingsError, WeightsError
from engine.jobs import (
    BackendError,
    Cancelled,
    Done,
    Failed,
    FailureKind,
    JobProgress,
    WorkerConfig,
)
from engine.lifecycle import START_TIMEOUT, BackendLifecycle
from engine.ray_actor import ActorInfo, StylizeActorClass
from engine.runs import Run
from engine.settings import StylizeSettings

log = logging.getLogger(__name__)

MAX_RESTARTS = 2
"""Restarts of one actor by Ray, on its own node, before it counts as dead."""
MAX_TASK_RETRIES = 0
"""Ray never replays a job: the backend's ``retry_crashed`` decides, as for local workers."""
MAX_START_FAILURES = 3
"""An actor position (node, slot) that fails to start this many times in a row is given up."""
CONNECT_TIMEOUT = 30.0
"""Default seconds to join a cluster or start the private Ray before giving up."""
CLOSE_MARGIN = 4.0
"""Seconds ``close`` takes, after the grace, to stop the jobs, end the actors and stop the
private Ray: the bot gives the whole close ``grace + 5`` seconds."""
STOP_WAIT = 1.0
"""Seconds of ``CLOSE_MARGIN`` that jobs asked to stop by ``close`` get before their actors are
killed (a job sees the request within a step)."""

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


_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_AUTH_REFUSED = re.compile(r"InvalidAuthToken|Unauthenticated|AuthenticationError|auth\w* token",
                           re.IGNORECASE)  # fmt: skip
_VERSIONS = re.compile(r"Ray: (\S+)\s+Python: (\S+)")
_UNREACHABLE = (
    "it is unreachable or not running (check the address, the firewall, and that the head "
    "node runs `ray start --head`)"
)


def cluster_error(
    address: str | None, error: BaseException | None = None, *, waited: float | None = None
) -> ClusterError:
    """The one-line ``ClusterError`` for a failure to join the cluster at ``address``, or to
    start the private Ray (``address=None``), from what Ray raised. ``waited``: the join was
    given up after that many seconds."""
    if address is None:
        reason = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        return ClusterError(
            f"Ray could not start on this machine: {reason or type(error).__name__}"
        )
    text = "\n".join(_chain(error))
    where = f"Could not join the Ray cluster at {address}"
    if "Version mismatch" in text:
        found = _VERSIONS.findall(text)
        ours = f"Ray {ray.__version__} on Python {'.'.join(map(str, sys.version_info[:3]))}"
        theirs = f"Ray {found[0][0]} on Python {found[0][1]}" if found else "other versions"
        return ClusterError(
            f"{where}: Ray/Python version mismatch (the cluster runs {theirs}, this bot "
            f"{ours}); install the cluster's versions here."
        )
    if _AUTH_REFUSED.search(text):
        return ClusterError(
            f"{where}: it refused this bot's Ray auth token (missing or wrong); set "
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or the file RAY_AUTH_TOKEN_PATH, "
            "by default ~/.ray/auth_token) to the cluster's token."
        )
    if waited is not None:
        return ClusterError(f"{where} within {waited:g} s: {_UNREACHABLE}.")
    return ClusterError(f"{where}: {_UNREACHABLE}.")


def _chain(error: BaseException | None) -> Iterator[str]:
    """Each exception in ``error``'s chain: Ray wraps the real cause (as text, too)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield f"{type(error).__name__}: {error}"
        error = error.__cause__ or error.__context__


@contextlib.contextmanager
def token_auth() -> Iterator[str]:
    """Ray's token authentication, with a fresh random token, for the Ray that this process
    starts while inside (its processes inherit the environment) and for its own connections.

    Sets ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (Ray ≥ 2.59), and restores the
    environment on exit. The token (yielded) lives in this process's environment only: no
    file, no log.
    """
    saved = {name: os.environ.get(name) for name in _AUTH_ENV}
    token = secrets.token_urlsafe(32)
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = token
    _reload_auth_config()
    try:
        yield token
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _reload_auth_config()


def _reload_auth_config() -> None:
    # Ray reads its settings and the token once per process and caches them; this makes it
    # read the environment again, as Ray's own `ray.init` does when it turns token mode on.
    # The compiled ray._raylet has both classes; its stub (_raylet.pyi) declares only the ids
    # and ObjectRef, hence the ignore.
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


class RaySession:
    """This process's Ray: the cluster at ``address`` joined, or for ``None`` a private Ray
    started on this machine (``address="local"``, token authentication with a fresh token,
    no dashboard), ended again by ``close``. ``options`` go to ``ray.init``.

    The session lives in a daemon thread of its own, from ``ray.init`` to ``ray.shutdown``:
    Ray's calls hang from every thread once the thread that called ``ray.init`` has exited.
    A join that hangs (Ray retries an unreachable address for minutes) is given up after
    ``connect_timeout`` seconds; it neither blocks the event loop nor keeps the process alive,
    and its thread ends soon after (one connection attempt), undoing whatever it started late.
    Every failure to join or start is a ``ClusterError``.
    """

    def __init__(
        self,
        address: str | None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        options: dict[str, Any] | None = None,
    ) -> None:
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive.")
        self.address = address
        self._connect_timeout = connect_timeout
        self._options = dict(options or {})
        self._stop = threading.Event()  # set before ray.init returns: end it once it does
        self._given_up = False
        self._opened: asyncio.Future[None] | None = None
        self._ended: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """Joins the cluster, or starts the private Ray; raises ``ClusterError``."""
        if self._opened is not None:
            raise BackendError("This Ray session was already opened.")
        loop = asyncio.get_running_loop()
        self._opened, self._ended = loop.create_future(), loop.create_future()
        for future in (self._opened, self._ended):
            # Read even when nobody waits any more (a join given up): no "never retrieved".
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
        thread = threading.Thread(target=self._run, args=(loop,), name="ray-session", daemon=True)
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(self._opened), self._connect_timeout)
        except asyncio.TimeoutError:
            self._stop.set()
            self._given_up = True  # close() doesn't wait for it either
            raise cluster_error(self.address, waited=self._connect_timeout) from None

    async def close(self, timeout: float) -> None:
        """Ends the session (stopping the private Ray) within ``timeout`` seconds; one that is
        still starting then ends on its own once ``ray.init`` returns."""
        self._stop.set()
        if self._ended is None or self._given_up:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._ended), timeout)
        except asyncio.TimeoutError:
            log.warning("ray did not stop within %g s; it goes on stopping", timeout)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        """The session's thread."""
        assert self._opened is not None and self._ended is not None
        auth = contextlib.ExitStack()
        token = ""
        try:
            options: dict[str, Any] = {"log_to_driver": False}
            if self.address is None:
                # "local": a new Ray, never one found running here or named by a stale
                # record. Ray ≥ 2.60 binds its servers to every interface whatever
                # _node_ip_address says (it turns 127.0.0.1 into the routable address): the
                # token is what keeps strangers out.
                options.update(address="local", include_dashboard=False)
                token = auth.enter_context(token_auth())
            else:
                options["address"] = self.address
            options.update(self._options)
            with _one_connection_attempt(self.address is not None):
                context = ray.init(**options)
        except Exception as error:
            auth.close()
            failure = cluster_error(self.address, error)
            if token and token in str(failure):
                failure = ClusterError(str(failure).replace(token, "[token]"))
            failure.__cause__ = error
            _settle(loop, self._opened, failure)
            _settle(loop, self._ended, None)
            return
        try:
            where = f"joined {self.address}" if self.address else "started on this machine"
            log.info("ray %s: %s (gcs %s)", ray.__version__, where,
                     getattr(context, "address_info", {}).get("gcs_address", "?"))  # fmt: skip
            _settle(loop, self._opened, None)
            self._stop.wait()
        finally:
            try:
                ray.shutdown()
            finally:
                auth.close()
                _settle(loop, self._ended, None)


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], error: BaseException | None
) -> None:
    """Resolves ``future`` from another thread; nothing happens once its loop is closed."""

    def settle() -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)


@contextlib.contextmanager
def _one_connection_attempt(joining: bool) -> Iterator[None]:
    """A join makes one attempt (about 40 s at most with Ray's timeouts) instead of Ray's 20:
    the thread of a join that was given up ends soon, and a refused token fails at once."""
    name = "RAY_gcs_server_port_wait_time_s"  # read by ray.init for each join
    if not joining or name in os.environ:
        yield
        return
    os.environ[name] = "1"
    try:
        yield
    finally:
        os.environ.pop(name, None)


class RayBackend(BackendLifecycle):
    """Ray actors that run stylisation jobs. Use it from one asyncio event loop. Its start,
    close and ``submit`` are ``BackendLifecycle``'s.

    ``address``: ``None`` starts a private Ray on this machine (and stops it on ``close``);
    ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` joins that cluster, within
    ``connect_timeout`` seconds (see ``RaySession``). When Ray is already initialised in this
    process, that session is used and left running. ``workers``: actors per node,
    ``None`` for one per GPU (or one per node when the cluster has no GPU). ``threads``: torch
    CPU threads per actor; ``actor_cpus`` the CPUs that Ray reserves for each actor when it
    places them. ``init_options`` go to ``ray.init`` when this backend starts Ray.
    ``start_timeout`` bounds the whole start: joining, then the actors loading.
    The other arguments mean what they mean for ``EnginePool``.

    Closing takes at most ``grace + CLOSE_MARGIN`` seconds: past the grace, jobs asked to stop
    get ``STOP_WAIT`` seconds, then the actors are killed and the private Ray stopped. It is
    never ``broken``: a cluster can always gain a node that starts an actor.
    """

    name = "Ray backend"
    close_margin = CLOSE_MARGIN
    stop_wait = STOP_WAIT

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
        start_timeout: float = START_TIMEOUT,
        poll_interval: float = 2.0,
        actor_cpus: float = 1.0,
        init_options: dict[str, Any] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        StylizeSettings(device=device, weights=weights)  # refuse bad names before starting
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1, or None for one per GPU.")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1, or None.")
        if poll_interval <= 0 or actor_cpus <= 0:
            raise ValueError("poll_interval and actor_cpus must be positive.")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive.")
        super().__init__(
            job_timeout=job_timeout,
            stop_grace=stop_grace,
            retry_crashed=retry_crashed,
            start_timeout=start_timeout,
        )
        self._address = address
        self._workers = workers
        self._device = device
        self._weights = weights
        self._threads = threads
        self._poll_interval = poll_interval
        self._actor_cpus = actor_cpus
        self._init_options = dict(init_options or {})
        self._connect_timeout = connect_timeout
        self._session: RaySession | None = None
        self._actors: dict[ActorKey, _Actor] = {}
        self._positions: dict[ActorKey, _Position] = {}
        self._nodes: dict[str, NodeInfo] = {}
        self._indices: dict[ActorKey, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # ----- what callers see -------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Actors that are up, busy or not: how many jobs can run at once now."""
        return sum(actor.ready for actor in self._actors.values())

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

    # ----- start and end (BackendLifecycle) -------------------------------------------------

    def _start_timed_out(self, seconds: float) -> BackendError:
        return BackendError(
            f"The Ray backend did not start within {seconds:g} s: check that the cluster's "
            "nodes have the GPUs (or CPUs) its engine actors need free."
        )

    def _on_running(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        log.info("ray backend started: %d actor(s) on %d node(s): %s", self.capacity,
                 len(set(self.nodes)), ", ".join(sorted(set(self.devices))))  # fmt: skip

    async def _start_workers(self) -> None:
        """Joins or starts Ray (unless this process has it already), then starts an actor per
        GPU (or CPU actors) and waits until each the cluster has room for has loaded."""
        if not ray.is_initialized():
            self._session = RaySession(
                self._address, connect_timeout=self._connect_timeout, options=self._init_options
            )
            await self._session.open()
        starts = await self._reconcile()
        results = await asyncio.gather(*starts, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if not self._actors:
            raise BackendError(
                "The Ray cluster has no node that can run an engine actor. "
                "Start one with `ray start --address=...`."
            )

    async def _end_workers(self, budget: float | None) -> None:
        await self._end(self.close_margin if budget is None else budget)

    # ----- the cluster ----------------------------------------------------------------------

    async def _end(self, budget: float) -> None:
        """Ends every actor and task, and the Ray session if this backend opened one, within
        about ``budget`` seconds: half for the actors, the rest for Ray."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        actors = list(self._actors.values())
        self._actors.clear()
        for actor in actors:
            actor.run = None  # their jobs have ended: late events are not theirs any more
        tasks = [task for task in (self._poller, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        ending = asyncio.gather(
            *tasks, *(self._end_actor(actor) for actor in actors), return_exceptions=True
        )
        try:
            await asyncio.wait_for(ending, budget / 2)
        except asyncio.TimeoutError:
            log.warning("ray backend: %d actor(s) not seen dead within %g s",
                        len(actors), budget / 2)  # fmt: skip
        if self._session is not None:
            await self._session.close(max(0.0, deadline - loop.time()))

    @classmethod
    async def _end_actor(cls, actor: _Actor) -> None:
        await _kill_later(actor.handle, no_restart=True)
        # Wait until Ray reports it dead, so that no actor process outlives close().
        await cls._until_dead(actor)

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
        handle = StylizeActorClass.options(
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
                raise _START_ERRORS.get(info.error, BackendError)(info.message)
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

    @staticmethod
    async def _until_dead(actor: _Actor) -> None:
        # A call may still reach the actor just after ray.kill: ask until Ray says it's dead.
        for _ in range(300):
            try:
                await asyncio.wait_for(actor.handle.info.remote(), 10)
            except (RayError, asyncio.TimeoutError):
                return
            await asyncio.sleep(0.1)

    def _capacity_changed(self) -> bool:
        changed = super()._capacity_changed()
        if changed:
            log.info("engine capacity: %d actor(s) on %d node(s)", self._listeners.capacity,
                     len(set(self.nodes)))  # fmt: skip
        return changed

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


__all__ = ["MAX_RESTARTS", "MAX_TASK_RETRIES", "NodeInfo", "RayBackend", "actors_per_node"]
