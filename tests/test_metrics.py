"""Metrics and health (bot.metrics, bot.ops_server, bot.jobs.observer): what the job core tells
its observer, the metrics as Prometheus reads them, the three endpoints on a real socket, and
Discord's error statuses as discord.py's HTTP session sees them.

The bot against the fake Discord, with these endpoints, is tests/test_bot_ops_e2e.py.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.config import ConfigError, load_settings
from bot.jobs.observer import JobOutcome
from bot.jobs.outbox import Retry
from bot.journal import Journal
from bot.metrics import BotMetrics
from bot.ops_server import OpsServer, OpsServerError
from engine.jobs import Cancelled, Done, Failed, FailureKind, JobStats
from tests.test_jobs_service import (  # the job core's doubles and helpers
    OTHER,
    ROOT,
    World,
    accept,
    make_world,
    settled,
    started,
)

# --- reading metrics back -------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition: (name, labels) → value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, frozenset(labels.items()))]


def exposed(metrics: BotMetrics) -> str:
    return metrics.exposition().decode()


# --- the outcome of a final event -----------------------------------------------------------

STATS = JobStats(1.0, 1, 16, 12, 5, {})


@pytest.mark.parametrize(
    ("event", "cancel_requested", "outcome"),
    [
        (Done("j", b"", "png", STATS), False, JobOutcome.DONE),
        (Done("j", b"", "png", STATS), True, JobOutcome.CANCELLED),  # the cancel wins
        (Cancelled("j", "request"), True, JobOutcome.CANCELLED),
        *[(Failed("j", kind, "x"), False, JobOutcome(kind.value)) for kind in FailureKind],
    ],
)
def test_a_final_event_has_one_outcome(
    event: Any, cancel_requested: bool, outcome: JobOutcome
) -> None:
    assert JobOutcome.of(event, cancel_requested=cancel_requested) is outcome


# --- the job core tells its observer --------------------------------------------------------


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path / "data", sync_files=False)
    yield journal
    await journal.close()


class Recorder:
    def __init__(self) -> None:
        self.started: list[float] = []
        self.ended: list[tuple[JobOutcome, float | None]] = []

    def job_started(self, waited: float) -> None:
        self.started.append(waited)

    def job_ended(self, outcome: JobOutcome, ran: float | None) -> None:
        self.ended.append((outcome, ran))


@pytest.fixture
async def watched(journal: Journal) -> AsyncIterator[tuple[World, Recorder]]:
    recorder = Recorder()
    async with started(make_world(journal, observer=recorder)) as world:
        yield world, recorder


async def test_a_job_done_is_observed_with_its_wait_and_run_time(
    watched: tuple[World, Recorder],
) -> None:
    world, seen = watched
    first = await accept(world, seed=1)
    second = await accept(world, user_id=OTHER, seed=2)  # waits behind the first
    assert (world.service.runner.waiting, world.service.runner.running) == (1, 1)
    assert len(seen.started) == 1 and seen.ended == []
    await asyncio.sleep(0.05)
    world.backend.run(first.id)
    world.backend.done(first.id)
    await settled(world)
    assert len(seen.started) == 2 and seen.started[1] >= 0.05  # the second one's wait
    [(outcome, ran)] = seen.ended
    assert outcome is JobOutcome.DONE and ran is not None and ran >= 0.05
    world.backend.done(second.id)
    await settled(world)
    assert [o for o, _ in seen.ended] == [JobOutcome.DONE, JobOutcome.DONE]
    assert (world.service.runner.waiting, world.service.runner.running) == (0, 0)


async def test_a_job_cancelled_while_waiting_never_ran(watched: tuple[World, Recorder]) -> None:
    world, seen = watched
    await accept(world, seed=1)
    waiting = await accept(world, user_id=OTHER, seed=2)
    assert world.service.cancel(waiting.id, OTHER)
    for _ in range(5):  # the runner ends it in a task of its own
        await asyncio.sleep(0)
    assert seen.ended == [(JobOutcome.CANCELLED, None)]
    assert len(seen.started) == 1


async def test_a_job_stopped_by_a_shutdown_has_not_ended(journal: Journal) -> None:
    recorder = Recorder()
    world = make_world(journal, observer=recorder)
    async with started(world):
        job = await accept(world, seed=1)
        world.backend.run(job.id)
    # started() stopped the service: the job went back to the journal's queue, to resume.
    assert recorder.started and recorder.ended == []


async def test_the_outbox_counts_what_it_has_not_delivered(watched: tuple[World, Recorder]) -> None:
    world, _ = watched
    outbox = world.service.outbox
    job = await accept(world, seed=1)
    world.backend.done(job.id)
    await settled(world)
    assert world.frontend.delivered and outbox.pending == 0
    world.frontend.script = [Retry("502")]
    job = await accept(world, seed=2)
    world.backend.done(job.id)
    await settled(world)
    assert outbox.pending == 1  # waiting for its retry


# --- the metrics as Prometheus reads them ---------------------------------------------------


def test_jobs_count_by_outcome_and_time_into_histograms() -> None:
    metrics = BotMetrics()
    metrics.job_started(0.2)
    metrics.job_ended(JobOutcome.DONE, 12.0)
    metrics.job_ended(JobOutcome.TIMEOUT, 600.0)
    metrics.job_ended(JobOutcome.CANCELLED, None)  # cancelled while waiting: no run time
    text = exposed(metrics)
    assert value(text, "stylize_jobs_total", outcome="done") == 1
    assert value(text, "stylize_jobs_total", outcome="timeout") == 1
    assert value(text, "stylize_jobs_total", outcome="cancelled") == 1
    assert value(text, "stylize_jobs_total", outcome="out_of_memory") == 0  # there from the start
    assert value(text, "stylize_job_duration_seconds_count") == 2
    assert value(text, "stylize_job_duration_seconds_sum") == 612.0
    assert value(text, "stylize_job_duration_seconds_bucket", le="20.0") == 1
    assert value(text, "stylize_queue_wait_seconds_count") == 1
    assert value(text, "stylize_queue_wait_seconds_bucket", le="0.25") == 1


def test_two_bots_count_apart() -> None:
    one, two = BotMetrics(), BotMetrics()
    one.job_ended(JobOutcome.DONE, 1.0)
    assert value(exposed(two), "stylize_jobs_total", outcome="done") == 0


async def test_gauges_are_read_when_scraped(journal: Journal) -> None:
    metrics = BotMetrics()
    world = make_world(journal, capacity=2)
    metrics.follow(world.service, world.backend)
    text = exposed(metrics)
    assert value(text, "stylize_engine_capacity") == 2
    assert value(text, "stylize_queue_waiting") == value(text, "stylize_jobs_running") == 0
    assert value(text, "stylize_outbox_pending") == 0
    world.backend.resize(0)
    assert value(exposed(metrics), "stylize_engine_capacity") == 0


def test_commands_and_http_errors_have_bounded_labels() -> None:
    metrics = BotMetrics()
    metrics.command_ran("stylize", "ok")
    metrics.command_ran("styles add", "refused")
    metrics.discord_http_error(429)
    metrics.discord_http_error(1234)
    text = exposed(metrics)
    assert value(text, "stylize_commands_total", command="stylize", result="ok") == 1
    assert value(text, "stylize_commands_total", command="styles add", result="refused") == 1
    assert value(text, "stylize_discord_http_errors_total", status="429") == 1
    assert value(text, "stylize_discord_http_errors_total", status="other") == 1


def test_every_metric_of_the_design_is_exposed_under_its_name() -> None:
    names = {family.name for family in text_string_to_metric_families(exposed(BotMetrics()))}
    # The parser gives counters without their _total, as the OpenMetrics families are named.
    assert names >= {
        "stylize_jobs", "stylize_job_duration_seconds", "stylize_queue_wait_seconds",
        "stylize_queue_waiting", "stylize_jobs_running", "stylize_engine_capacity",
        "stylize_outbox_pending", "stylize_discord_http_errors", "stylize_commands",
    }  # fmt: skip


async def test_discord_http_error_statuses_are_counted_from_the_session() -> None:
    statuses = iter([200, 429, 502, 404, 204])

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=next(statuses))

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    metrics = BotMetrics()
    try:
        async with aiohttp.ClientSession(trace_configs=[metrics.discord_http_trace()]) as session:
            for _ in range(5):
                async with session.get(f"http://127.0.0.1:{port}/") as response:
                    await response.read()
    finally:
        await runner.cleanup()
    text = exposed(metrics)
    counted = {
        dict(labels)["status"]: v
        for (name, labels), v in samples(text).items()
        if name == "stylize_discord_http_errors_total"
    }
    assert counted == {"429": 1, "502": 1, "404": 1}


# --- the endpoints --------------------------------------------------------------------------


class Ready:
    reason: str | None = "not connected to Discord"

    def __call__(self) -> str | None:
        return self.reason


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, BotMetrics, Ready]]:
    metrics, ready = BotMetrics(), Ready()
    server = OpsServer(metrics.exposition, ready)
    await server.start("127.0.0.1", 0)
    assert server.address is not None
    host, port = server.address
    try:
        yield f"http://{host}:{port}", metrics, ready
    finally:
        await server.close()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_healthz_answers_while_the_loop_runs(served: tuple[str, BotMetrics, Ready]) -> None:
    base, _, _ = served
    assert (await get(f"{base}/healthz"))[0] == 200


async def test_readyz_is_503_with_the_reason_until_ready(
    served: tuple[str, BotMetrics, Ready],
) -> None:
    base, _, ready = served
    status, _, body = await get(f"{base}/readyz")
    assert (status, body.strip()) == (503, "not ready: not connected to Discord")
    ready.reason = None
    status, _, body = await get(f"{base}/readyz")
    assert (status, body.strip()) == (200, "ready")


async def test_metrics_are_served_in_prometheus_text_format(
    served: tuple[str, BotMetrics, Ready],
) -> None:
    base, metrics, _ = served
    metrics.job_ended(JobOutcome.DONE, 3.0)
    status, content_type, body = await get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert value(body, "stylize_jobs_total", outcome="done") == 1


async def test_a_port_in_use_is_one_line_naming_the_setting() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        server = OpsServer(BotMetrics().exposition, Ready())
        with pytest.raises(OpsServerError, match=rf"^STYLIZE_METRICS_PORT: .*127\.0\.0\.1:{port}"):
            await server.start("127.0.0.1", port)
        await server.close()
    finally:
        taken.close()


async def test_a_host_that_is_no_address_names_the_setting() -> None:
    server = OpsServer(BotMetrics().exposition, Ready())
    with pytest.raises(OpsServerError, match=r"^STYLIZE_METRICS_HOST: "):
        await server.start("no-such-host.invalid", 0)
    await server.close()


# --- the settings ---------------------------------------------------------------------------


def test_metrics_are_off_by_default_and_bind_to_localhost() -> None:
    settings = load_settings(_env_file=None, discord_token="t.o.k")
    assert settings.stylize_metrics_port is None
    assert settings.stylize_metrics_host == "127.0.0.1"


def test_a_port_out_of_range_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="STYLIZE_METRICS_PORT"):
        load_settings(_env_file=None, discord_token="t.o.k", stylize_metrics_port=70000)


def test_the_job_core_imports_no_metrics_library() -> None:
    code = (
        "import sys, bot.jobs.service, bot.jobs.observer\n"
        "assert 'prometheus_client' not in sys.modules, 'prometheus_client'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
