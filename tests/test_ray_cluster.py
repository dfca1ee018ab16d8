"""The Ray backend across machines, simulated on this one with ``ray.cluster_utils.Cluster``:
a head node and a second node of one CPU each, one CPU actor per node. Nodes are removed and
added while the backend runs; it must follow them. The cluster requires a fresh token, and is
no default for other processes: ``Cluster`` records its address in Ray's temp folder, where a
plain ``ray.init()`` would find it (or, once it is gone, fail on the stale record); the record
is removed at once.

Also the placement rule (``actors_per_node``), which needs no cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from engine.jobs import Cancelled, Done, Failed, FailureKind, Started
from tests.backend_fixtures import LONG, WEIGHTS, collect, first_progress, job, until_capacity

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
from ray._common.utils import get_ray_address_file  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from engine.ray_backend import NodeInfo, RayBackend, actors_per_node, token_auth  # noqa: E402

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


# ----- placement ----------------------------------------------------------------------------

HEAD = NodeInfo("head", "10.0.0.1", gpus=0, cpus=8)
GPU2 = NodeInfo("gpu2", "10.0.0.2", gpus=2, cpus=16)
GPU1 = NodeInfo("gpu1", "10.0.0.3", gpus=1, cpus=8)
CPU = NodeInfo("cpu", "10.0.0.4", gpus=0, cpus=4)


@pytest.mark.parametrize(
    ("nodes", "device", "workers", "expected"),
    [
        ([HEAD, GPU2, GPU1], "auto", None, {"gpu2": 2, "gpu1": 1}),  # the head runs the bot
        ([HEAD, GPU2], "cuda", 1, {"gpu2": 1}),
        ([HEAD, GPU2], "cpu", None, {"head": 1, "gpu2": 1}),  # asked for the CPU
        ([HEAD, CPU], "auto", None, {"head": 1, "cpu": 1}),  # no GPU anywhere: CPU actors
        ([HEAD, CPU], "auto", 2, {"head": 2, "cpu": 2}),
        ([], "auto", None, {}),
    ],
)
async def test_one_actor_per_gpu_or_cpu_actors_without_one(
    nodes: list[NodeInfo], device: str, workers: int | None, expected: dict[str, int]
) -> None:
    assert actors_per_node(nodes, device=device, workers=workers) == expected


# ----- two nodes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with token_auth():
        started = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
        )
        record = Path(get_ray_address_file(None))
        if record.exists() and record.read_text() == started.address:
            record.unlink()
        started.add_node(num_cpus=1)
        ray.init(address=started.address, log_to_driver=False)
        yield started
        ray.shutdown()
        started.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend(cluster: Cluster) -> AsyncIterator[RayBackend]:
    running = RayBackend(device="cpu", weights=WEIGHTS, threads=1, poll_interval=0.3)
    await running.start()
    yield running
    await running.close()


async def test_jobs_run_on_both_nodes(backend: RayBackend) -> None:
    assert backend.capacity == 2
    assert len(set(backend.nodes)) == 2
    handles = [backend.submit(job(seed=s)) for s in (1, 2)]
    streams = await asyncio.gather(*(collect(h) for h in handles))
    assert all(isinstance(events[-1], Done) for events in streams)
    workers = [e.worker for events in streams for e in events if isinstance(e, Started)]
    assert {backend.worker_nodes[w] for w in workers} == set(backend.nodes)


async def test_node_removed_mid_job_fails_its_job_and_capacity_follows(
    cluster: Cluster, backend: RayBackend
) -> None:
    [second] = cluster.worker_nodes
    handles = [backend.submit(job(steps=LONG, seed=s)) for s in (1, 2)]
    started = [await first_progress(aiter(h)) for h in handles]
    where = {
        backend.worker_nodes[next(e.worker for e in seen if isinstance(e, Started))]: handle
        for seen, handle in zip(started, handles, strict=True)
    }
    on_second, on_head = where[second.node_id], where[cluster.head_node.node_id]

    cluster.remove_node(second)
    final = await on_second.wait()
    assert isinstance(final, Failed) and final.kind is FailureKind.WORKER_CRASHED, final
    await until_capacity(backend, 1, timeout=90)
    assert set(backend.nodes) == {cluster.head_node.node_id}
    assert not on_head.done  # the other node's job is unaffected
    on_head.cancel()
    assert isinstance(await on_head.wait(), Cancelled)

    # A node that joins gets an actor, and takes jobs.
    joined = cluster.add_node(num_cpus=1)
    await until_capacity(backend, 2, timeout=90)
    assert joined.node_id in backend.nodes
    streams = await asyncio.gather(*(collect(backend.submit(job(seed=s))) for s in (3, 4)))
    assert all(isinstance(events[-1], Done) for events in streams)
