"""End to end: the bot's operator port (STYLIZE_METRICS_PORT) against the fake Discord.

The real bot and backend (random weights on the CPU) serve ``/metrics``, ``/healthz`` and
``/readyz``: not ready while the engine loads, ready once connected, not ready with no worker
up; one job done, then its counters and histograms read back as Prometheus reads them. With
the setting unset the bot listens on nothing, and a port in use stops ``python -m bot`` with
one line and status 2.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from bot.client import StylizeBot, build_backend
from bot.config import BotSettings
from engine.backend import Backend
from tests.bot_process import Bots
from tests.e2e_backend import HeldBackend, e2e_settings
from tests.fake_discord import FakeDiscord
from tests.pictures import png
from tests.test_jobs_service import FakeBackend

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]

TOKEN = "fake-token-OPS.e2e-SECRET"
START_TIMEOUT = 240  # the backend spawns a worker that imports torch and builds VGG19


class DrainableBackend(HeldBackend):
    """The held real backend, whose capacity a test can force to 0 (every worker down)."""

    drained = False

    @property
    def capacity(self) -> int:
        return 0 if self.drained else self.real.capacity


@dataclass
class Probe:
    status: int
    body: str


async def probe(base: str, path: str) -> Probe:
    async with aiohttp.ClientSession() as session, session.get(base + path) as response:
        return Probe(response.status, await response.text())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    got = await probe(base, "/metrics")
    assert got.status == 200
    return samples(got.body)


def at(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
       **labels: str) -> float:  # fmt: skip
    return scraped.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Ops:
    fake: FakeDiscord
    bot: StylizeBot
    backend: DrainableBackend
    base: str
    while_starting: tuple[Probe, Probe]
    """/healthz and /readyz while the engine was still loading."""

    async def idle(self) -> None:
        assert await self.bot.jobs.runner.wait_idle(30)
        assert await self.bot.jobs.outbox.wait_idle(30)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ops(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ops]:
    backends: list[DrainableBackend] = []

    def drainable(settings: BotSettings) -> Backend:
        backends.append(DrainableBackend(build_backend(settings)))
        return backends[-1]  # type: ignore[return-value]

    async with FakeDiscord(token=TOKEN) as fake:
        settings = e2e_settings(fake, tmp_path_factory.mktemp("data"), stylize_metrics_port=0)
        bot = StylizeBot(settings, backend_factory=drainable)
        running = asyncio.create_task(bot.start(TOKEN))
        # The port opens before the engine starts (its worker takes seconds to load), and
        # the gateway connects only after that.
        while bot.ops_server is None or bot.ops_server.address is None:
            assert not running.done(), running.exception()
            await asyncio.sleep(0.01)
        host, port = bot.ops_server.address
        base = f"http://{host}:{port}"
        while_starting = (await probe(base, "/healthz"), await probe(base, "/readyz"))
        ready = asyncio.create_task(fake.wait_commands(timeout=START_TIMEOUT))
        await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            ready.cancel()
            running.result()
            pytest.fail("the bot stopped during start-up")
        await ready
        await asyncio.wait_for(bot.wait_until_ready(), 30)
        yield Ops(fake, bot, backends[0], base, while_starting)
        await bot.close()
        await asyncio.wait_for(running, 30)


async def test_while_the_engine_loads_it_is_alive_but_not_ready(ops: Ops) -> None:
    healthz, readyz = ops.while_starting
    assert healthz.status == 200
    assert (readyz.status, readyz.body.strip()) == (503, "not ready: not connected to Discord")


async def test_once_connected_with_a_worker_up_it_is_ready(ops: Ops) -> None:
    assert (await probe(ops.base, "/readyz")).status == 200
    assert (await probe(ops.base, "/healthz")).status == 200


async def test_with_no_worker_up_it_is_not_ready_and_says_why(ops: Ops) -> None:
    ops.backend.drained = True
    try:
        readyz = await probe(ops.base, "/readyz")
        scraped = await scrape(ops.base)
    finally:
        ops.backend.drained = False
    assert readyz.status == 503 and "capacity 0" in readyz.body
    assert at(scraped, "stylize_engine_capacity") == 0
    assert (await probe(ops.base, "/readyz")).status == 200


async def test_one_job_done_is_counted_timed_and_its_discord_errors_too(ops: Ops) -> None:
    fake = ops.fake
    before = await scrape(ops.base)
    ops.backend.final.clear()  # the fault must be in place before the result goes out
    try:
        content = fake.add_attachment(png(64, 48), "photo.png")
        style = fake.add_attachment(png(48, 48, noise=True), "painting.png")
        interaction = await fake.invoke("stylize", {"content": content, "style": style,
                                                    "size": 32, "seed": 3})  # fmt: skip
        await interaction.wait_callback(timeout=5)
        fake.rate_limit_next("POST", f"/webhooks/*/{interaction.token}", retry_after=0.2)
    finally:
        ops.backend.final.set()
    await fake.wait_for(lambda: bool(interaction.followups), 120)
    await ops.idle()
    after = await scrape(ops.base)

    def grew(name: str, **labels: str) -> float:
        return at(after, name, **labels) - at(before, name, **labels)

    assert grew("stylize_jobs_total", outcome="done") == 1
    assert sum(grew("stylize_jobs_total", outcome=o) for o in ("cancelled", "internal")) == 0
    assert grew("stylize_job_duration_seconds_count") == 1
    assert grew("stylize_job_duration_seconds_sum") > 0
    assert grew("stylize_job_duration_seconds_bucket", le="+Inf") == 1
    assert grew("stylize_queue_wait_seconds_count") == 1
    assert grew("stylize_commands_total", command="stylize", result="ok") == 1
    assert grew("stylize_discord_http_errors_total", status="429") == 1
    assert at(after, "stylize_queue_waiting") == at(after, "stylize_jobs_running") == 0
    assert at(after, "stylize_outbox_pending") == 0
    assert at(after, "stylize_engine_capacity") == 1


async def test_a_refused_command_is_counted_as_refused(ops: Ops) -> None:
    fake = ops.fake
    before = await scrape(ops.base)
    content = fake.add_attachment(b"words", "notes.txt")
    style = fake.add_attachment(png(48, 48), "painting.png")
    interaction = await fake.invoke("stylize", {"content": content, "style": style})
    await interaction.wait_callback(timeout=5)
    await fake.wait_for(lambda: interaction.original is not None
                        and interaction.original.content.startswith("❌"), 30)  # fmt: skip
    after = await scrape(ops.base)
    refused = ("stylize_commands_total", frozenset({("command", "stylize"), ("result", "refused")}))
    assert after.get(refused, 0) - before.get(refused, 0) == 1


# --- off by default; a port in use ----------------------------------------------------------


def listening_sockets() -> set[str]:
    """The inodes of the TCP sockets this process listens on."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[len("socket:[") : -1])
    listening = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening.add(fields[9])
    return mine & listening


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc")
@pytest.mark.parametrize("port", [None, 0], ids=["unset", "set"])
async def test_without_the_setting_nothing_listens(tmp_path: Path, port: int | None) -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        before = listening_sockets()
        settings = e2e_settings(fake, tmp_path / "data", stylize_metrics_port=port)
        bot = StylizeBot(settings, backend_factory=lambda _: FakeBackend())  # type: ignore[arg-type,return-value]
        running = asyncio.create_task(bot.start(TOKEN))
        try:
            await fake.wait_ready(timeout=30)
            await asyncio.wait_for(bot.wait_until_ready(), 30)
            opened = listening_sockets() - before
        finally:
            await bot.close()
            await asyncio.wait_for(running, 30)
    if port is None:
        assert opened == set() and bot.ops_server is None
    else:  # the same check sees the port when there is one
        assert len(opened) == 1 and bot.ops_server is not None
    assert listening_sockets() - before == set()


async def test_a_port_in_use_stops_the_bot_with_one_line_and_status_2(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        async with FakeDiscord(token=TOKEN) as fake:
            bots = Bots(fake, tmp_path, STYLIZE_METRICS_PORT=str(port))
            run = await bots.spawn()
            try:
                code = await run.wait(120)
            finally:
                bots.kill_all()
    finally:
        taken.close()
    assert code == 2, run.log[-3000:]
    lines = [line for line in run.log.splitlines() if line.startswith("stylize-bot:")]
    assert lines == [
        f"stylize-bot: STYLIZE_METRICS_PORT: cannot listen on 127.0.0.1:{port} "
        "(Address already in use); pick a free port, or stop what uses it"
    ], run.log[-3000:]
    assert "Traceback" not in run.log and TOKEN not in run.log
