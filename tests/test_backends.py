"""The backend contract, run over both backends: ``local`` (spawned worker processes) and
``ray`` (actors in a real Ray session on this machine, CPU actors: a private
``ray.init(address="local", num_cpus=2)`` that requires a fresh token, as the backend starts
its own). Without the ``ray`` extra, the ``ray`` cases skip and the ``local`` ones still run.

The lifecycle (start, submit, close) is ``engine.lifecycle.BackendLifecycle``'s in both; the
tests at the end pin what ``engine.backend.Backend`` promises of it: a close before start, during
start, two at once, and after another.

Each kind gets two module-scoped backends: ``backend`` (two workers) and ``special`` (one
worker, a 3 s job timeout and ``retry_crashed``). Every test leaves them idle. Workers use
one torch thread, and so does the in-process reference: only equal thread counts give equal
pixels after L-BFGS.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import torch
from PIL import Image

import engine
from engine.backend import Backend
from engine.errors import ImageError, WeightsError
from engine.images import load_image
from engine.jobs import BackendError, Cancelled, Done, Failed, FailureKind, Job, Started
from engine.lifecycle import BackendLifecycle
from engine.pool import EnginePool
from engine.runs import SHUTDOWN
from tests.backend_fixtures import (
    CONTENT,
    LONG,
    STYLE,
    WEIGHTS,
    children,
    collect,
    first_progress,
    job,
    until_capacity,
    until_exited,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

KINDS = ["local", "ray"]
TIMEOUT = 3.0  # the special backends' job timeout
TINY = {"size": 32, "steps": 3}  # well inside TIMEOUT, even on a busy machine


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """Skips the test (only the ``ray`` case) when the ``ray`` extra is not installed."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from engine.ray_backend import token_auth

    # "local": never a Ray that runs on this machine already, nor a dead one that a stale
    # record in Ray's temp folder still names.
    with token_auth():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


def needs(kind: str, request: pytest.FixtureRequest) -> None:
    """What a backend of ``kind`` needs before it is made: Ray's session, for ``ray``."""
    if kind == "ray":
        request.getfixturevalue("ray_session")


def make(kind: str, **kwargs: Any) -> BackendLifecycle:
    common: dict[str, Any] = {"device": "cpu", "weights": WEIGHTS, "threads": 1}
    common.update(kwargs)
    if kind == "local":
        return EnginePool(**common)
    from engine.ray_backend import RayBackend

    # Half a CPU each, so that the module's backends all fit in ray.init(num_cpus=2).
    return RayBackend(actor_cpus=0.5, poll_interval=0.5, **common)


async def started(request: pytest.FixtureRequest, **kwargs: Any) -> Backend:
    kind = request.param
    needs(kind, request)
    backend = make(kind, **kwargs)
    await backend.start()
    return backend


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=KINDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    running = await started(request, workers=2)
    yield running
    await running.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=KINDS)
async def special(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    running = await started(
        request, workers=1, job_timeout=TIMEOUT, stop_grace=0.5, retry_crashed=True
    )
    yield running
    await running.close()


def pids(backend: Backend) -> dict[int, int | None]:
    """Process id of each worker by ``Started.worker``."""
    found = backend.worker_pids  # type: ignore[attr-defined]
    return dict(enumerate(found)) if isinstance(found, tuple) else dict(found)


# ----- results and events -------------------------------------------------------------------


async def test_results_equal_in_process_stylize(backend: Backend, one_thread: None) -> None:
    assert backend.capacity == 2 and backend.devices == ("cpu", "cpu")
    jobs = [job(size=48, seed=1), job(size=56, seed=2), job(size=64, seed=3, steps=4)]
    handles = [backend.submit(j) for j in jobs]  # the third waits for a free worker
    streams = await asyncio.gather(*(collect(h) for h in handles))
    for submitted, events in zip(jobs, streams, strict=True):
        done = events[-1]
        assert isinstance(done, Done), done
        image = Image.open(io.BytesIO(done.image))
        assert done.format == "png" and max(image.size) == submitted.settings.size
        assert done.stats.seed == submitted.settings.seed
        assert done.stats.steps == submitted.settings.steps
        expected = engine.stylize(
            load_image(CONTENT),
            [load_image(STYLE)],
            submitted.settings.replace(device="cpu", weights=WEIGHTS),
        )
        assert image.convert("RGB").tobytes() == expected.tobytes()
    workers = {e.worker for s in streams for e in s if isinstance(e, Started)}
    assert len(workers) == 2  # both workers ran jobs


async def test_bad_input_fails_with_its_message(backend: Backend) -> None:
    content = b"this is not an image"
    with pytest.raises(ImageError) as refused:
        load_image(content)
    bad = Job(content, (STYLE,), engine.StylizeSettings(size=48, steps=2))
    final = (await collect(backend.submit(bad)))[-1]
    assert isinstance(final, Failed) and final.kind is FailureKind.BAD_INPUT
    # The decoder's own words reach the caller, as they are.
    assert final.message == str(refused.value), final.message


async def test_ray_is_never_waited_on_from_the_event_loop(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    if isinstance(backend, EnginePool):
        pytest.skip("about the Ray backend")
    import ray

    loop_thread = threading.get_ident()
    blocking: list[str] = []

    def guard(name: str) -> Any:
        real = getattr(ray, name)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == loop_thread:
                blocking.append(name)
            return real(*args, **kwargs)

        return guarded

    for name in ("get", "wait", "kill", "nodes"):
        monkeypatch.setattr(ray, name, guard(name))
    running = backend.submit(job(steps=LONG))
    done = backend.submit(job(preview_interval=1e-9))
    await first_progress(aiter(running))
    running.cancel()
    assert isinstance(await running.wait(), Cancelled)
    assert isinstance((await collect(done))[-1], Done)
    assert blocking == []


async def test_the_ray_backend_imports_no_torch() -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    code = (
        "import sys, engine.ray_backend; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' "
        "or m in ('engine.execution', 'engine.network', 'engine.transfer')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()


# ----- cancel -------------------------------------------------------------------------------


async def test_cancel_waiting_then_running_and_reuse_the_worker(backend: Backend) -> None:
    first, second = backend.submit(job(steps=LONG)), backend.submit(job(steps=LONG))
    waiting = backend.submit(job())  # no worker is free: it waits
    waiting.cancel()
    assert waiting.done  # at once, without a round trip to a worker
    assert [type(e) for e in await collect(waiting)] == [Cancelled]

    seen = await first_progress(aiter(first))
    worker = next(e.worker for e in seen if isinstance(e, Started))
    pid = pids(backend)[worker]
    first.cancel()
    assert isinstance(await first.wait(), Cancelled)

    # The other worker is still busy, so the next job must go to the same, still warm, one.
    again = await collect(backend.submit(job()))
    assert isinstance(again[-1], Done)
    assert [e.worker for e in again if isinstance(e, Started)] == [worker]
    assert pids(backend)[worker] == pid

    second.cancel()
    assert isinstance(await second.wait(), Cancelled)


async def test_cancel_right_after_submit(backend: Backend) -> None:
    handle = backend.submit(job(steps=LONG))
    handle.cancel()
    events = await collect(handle)
    assert isinstance(events[-1], Cancelled)


# ----- failures -----------------------------------------------------------------------------


async def test_killed_worker_fails_its_job_and_comes_back(backend: Backend) -> None:
    handle = backend.submit(job(steps=LONG))
    seen = await first_progress(aiter(handle))
    worker = next(e.worker for e in seen if isinstance(e, Started))
    pid = pids(backend)[worker]
    assert pid
    os.kill(pid, signal.SIGKILL)
    final = await handle.wait()
    assert isinstance(final, Failed) and final.kind is FailureKind.WORKER_CRASHED, final
    await until_capacity(backend, 2)
    assert pids(backend)[worker] not in (None, pid)
    results = await asyncio.gather(*(collect(backend.submit(job(seed=s))) for s in (1, 2)))
    assert all(isinstance(events[-1], Done) for events in results)


async def test_timeout_fails_the_job_and_keeps_the_worker(special: Backend) -> None:
    pid = pids(special)
    final = (await collect(special.submit(job(steps=LONG))))[-1]
    assert isinstance(final, Failed) and final.kind is FailureKind.TIMEOUT, final
    assert f"{TIMEOUT:g} s" in final.message
    assert isinstance((await collect(special.submit(job(**TINY))))[-1], Done)
    assert pids(special) == pid  # it stopped by itself, so it was kept


async def test_hung_worker_is_killed_at_timeout_and_replaced(special: Backend) -> None:
    handle = special.submit(job(steps=LONG))
    await first_progress(aiter(handle))
    [pid] = pids(special).values()
    assert pid
    os.kill(pid, signal.SIGSTOP)  # it can no longer see the stop request
    try:
        final = await handle.wait()
    finally:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert isinstance(final, Failed) and final.kind is FailureKind.TIMEOUT, final
    await until_capacity(special, 1)
    assert isinstance((await collect(special.submit(job(**TINY))))[-1], Done)
    assert list(pids(special).values()) != [pid]


async def test_crashed_job_is_retried_once_when_asked(special: Backend) -> None:
    killed: list[int] = []

    def kill_first_attempt() -> None:
        if not killed:
            [pid] = pids(special).values()
            killed.append(pid or 0)
            os.kill(pid or 0, signal.SIGKILL)

    events = await collect(special.submit(job(**TINY)), at_progress=kill_first_attempt)
    assert isinstance(events[-1], Done), events[-1]
    assert len([e for e in events if isinstance(e, Started)]) == 2

    def kill_worker() -> None:
        [pid] = pids(special).values()
        os.kill(pid or 0, signal.SIGKILL)

    # A second crash of the same job is final.
    await until_capacity(special, 1)
    events = await collect(special.submit(job(steps=LONG)), at_progress=kill_worker)
    assert len([e for e in events if isinstance(e, Started)]) == 2
    final = events[-1]
    assert isinstance(final, Failed) and final.kind is FailureKind.WORKER_CRASHED
    await until_capacity(special, 1)


# ----- start and close: the lifecycle both backends share ----------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_weights_failure_surfaces_at_start(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    needs(kind, request)
    backend = make(kind, workers=1, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError):
        await backend.start()
    assert backend.capacity == 0
    with pytest.raises(BackendError):
        backend.submit(job())


@pytest.mark.parametrize("kind", KINDS)
async def test_close_ends_every_job_and_leaves_no_process(
    kind: str, request: pytest.FixtureRequest
) -> None:
    needs(kind, request)
    before = children()
    backend = make(kind, workers=1)
    await backend.start()
    workers = [pid for pid in pids(backend).values() if pid]
    assert workers
    running = backend.submit(job(steps=LONG))
    waiting = backend.submit(job())
    await first_progress(aiter(running))
    loop = asyncio.get_running_loop()
    began = loop.time()
    first = asyncio.create_task(backend.close(grace=0.5))
    await asyncio.sleep(0)  # the close begins: from now on, no new job
    assert backend.state == "closing"
    with pytest.raises(BackendError, match=SHUTDOWN):
        backend.submit(job())
    assert isinstance(waiting.result, Cancelled)  # a job without a worker ends at once
    second = asyncio.create_task(backend.close(grace=0.5))
    await second  # returns only once the first close has finished, and does not raise
    assert first.done() and first.exception() is None
    assert loop.time() - began >= 0.5  # the running job had its grace
    assert running.result == Cancelled(running.job_id, SHUTDOWN)
    assert backend.state == "closed" and backend.capacity == 0
    await until_exited(workers)
    assert children() <= before
    with pytest.raises(BackendError):
        backend.submit(job())
    await asyncio.wait_for(backend.close(), 1)  # a later close returns at once


@pytest.mark.parametrize("kind", KINDS)
async def test_close_before_start_does_nothing_and_refuses_jobs(
    kind: str, request: pytest.FixtureRequest
) -> None:
    needs(kind, request)
    backend = make(kind, workers=1)
    await backend.close()
    await backend.close()
    assert backend.state == "closed" and backend.capacity == 0
    with pytest.raises(BackendError):
        backend.submit(job())
    with pytest.raises(BackendError, match="closed"):
        await backend.start()  # a closed backend stays closed


@pytest.mark.parametrize("kind", KINDS)
async def test_close_during_start_aborts_it(kind: str, request: pytest.FixtureRequest) -> None:
    needs(kind, request)
    before = children()
    backend = make(kind, workers=1)
    starting = asyncio.create_task(backend.start())
    await asyncio.sleep(0)  # start() runs until it waits for its workers
    assert backend.state == "starting"
    await asyncio.wait_for(backend.close(grace=10.0), 30)
    assert starting.done()  # close returned after the start had ended what it began
    with pytest.raises(BackendError, match=SHUTDOWN):
        await starting
    assert backend.state == "closed" and backend.capacity == 0
    assert children() <= before  # no worker left loading
    with pytest.raises(BackendError):
        backend.submit(job())
    await asyncio.wait_for(backend.close(), 1)
