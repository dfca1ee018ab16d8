"""The local backend's start-up when it does not go well: a weights download that hangs, and a
close (a signal) that arrives while the workers are still loading.

A download that hangs is made real: the ImageNet weights are not in a fresh ``TORCH_HOME``, and
``https_proxy`` points at a local server that accepts the connection and never answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from engine.jobs import BackendError
from engine.pool import EnginePool
from tests.backend_fixtures import children, job

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]


@pytest_asyncio.fixture
async def hung_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Workers spawned now find no weights and wait on a download that never comes."""
    peers: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)  # kept open, never answered

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield
    for writer in peers:
        writer.close()
    server.close()


async def until_launched(pool: EnginePool) -> None:
    while not any(pool.worker_pids):
        await asyncio.sleep(0.05)


@pytest.mark.usefixtures("hung_download")
async def test_a_worker_that_never_loads_fails_the_start_within_its_timeout() -> None:
    before = children()
    pool = EnginePool(workers=1, device="cpu", weights="imagenet", start_timeout=4)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(BackendError, match="within 4 s"):
        await pool.start()
    assert loop.time() - began < 10
    assert children() <= before, "the loading worker was left running"


@pytest.mark.usefixtures("hung_download")
async def test_close_during_start_ends_the_loading_workers_at_once() -> None:
    before = children()
    pool = EnginePool(workers=2, device="cpu", weights="imagenet", threads=1)
    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(until_launched(pool), 30)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(pool.close(grace=1), 10)
    assert loop.time() - began < 5
    with pytest.raises(BackendError):
        await starting
    assert children() <= before, "a loading worker was left running"
    with pytest.raises(BackendError):
        pool.submit(job())
    await pool.close()  # a second close after that returns at once


async def test_start_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EnginePool(weights="random:0", start_timeout=0)
