"""The bot's Prometheus metrics, in a registry of its own (never the process-wide default, so
two bots in one process, as in the tests, count apart).

The facts come from where they are born: the job core tells ``BotMetrics`` (its
``JobObserver``) when a job leaves the queue and when it ends; the gauges read the job
service and the backend when Prometheus scrapes; discord.py's HTTP session reports each
response (``discord_http_trace``); the command tree reports each command's result. Every
label has a bounded set of values: outcomes from ``JobOutcome``, HTTP status codes, command
names and three results.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Literal

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.jobs.observer import JobOutcome

if TYPE_CHECKING:
    from bot.jobs.service import JobService
    from engine.backend import Backend

CommandResult = Literal["ok", "refused", "error"]
"""``ok``: the command ran; ``refused``: a refusal the member can act on (a limit, a bad
upload, a missing permission); ``error``: anything else (a bug, Discord down)."""
COMMAND_RESULTS: tuple[CommandResult, ...] = ("ok", "refused", "error")

# A picture takes seconds on a GPU and minutes on a CPU; STYLIZE_JOB_TIMEOUT is 600 s.
JOB_SECONDS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)
# A free worker takes a job at once; a busy server makes members wait minutes.
WAIT_SECONDS = (0.05, 0.25, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class BotMetrics:
    """The metric objects of one bot, and the ``JobObserver`` that feeds the job ones."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            "stylize_jobs",  # exposed as stylize_jobs_total
            "Jobs that ended for good, by outcome (done, cancelled, a failure kind, "
            "not_resumed). A job stopped by a shutdown ends after the restart.",
            ["outcome"],
            registry=registry,
        )
        self.job_duration = Histogram(
            "stylize_job_duration_seconds",
            "Seconds from a job's start on the engine to its final event.",
            buckets=JOB_SECONDS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "stylize_queue_wait_seconds",
            "Seconds a job waited in the fair queue before the engine took it.",
            buckets=WAIT_SECONDS,
            registry=registry,
        )
        self.queue_waiting = Gauge(
            "stylize_queue_waiting", "Jobs waiting in the fair queue.", registry=registry
        )
        self.jobs_running = Gauge(
            "stylize_jobs_running", "Jobs running on the engine.", registry=registry
        )
        self.engine_capacity = Gauge(
            "stylize_engine_capacity",
            "Jobs the engine can run at once now (its workers that are up).",
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "stylize_outbox_pending",
            "Results and notices not yet delivered to Discord (due, or waiting for a retry).",
            registry=registry,
        )
        self.discord_http_errors = Counter(
            "stylize_discord_http_errors",  # exposed as stylize_discord_http_errors_total
            "Discord API responses with an error status (429 included), by status code.",
            ["status"],
            registry=registry,
        )
        self.commands = Counter(
            "stylize_commands",  # exposed as stylize_commands_total
            "Application commands handled, by command and result (ok, refused, error).",
            ["command", "result"],
            registry=registry,
        )
        # Every outcome is a series from the start, so a rate() over it never misses the first.
        for outcome in JobOutcome:
            self.jobs.labels(outcome=outcome.value)

    # The job core's JobObserver

    def job_started(self, waited: float) -> None:
        self.queue_wait.observe(max(0.0, waited))

    def job_ended(self, outcome: JobOutcome, ran: float | None) -> None:
        self.jobs.labels(outcome=outcome.value).inc()
        if ran is not None:
            self.job_duration.observe(max(0.0, ran))

    # The gauges, read at each scrape

    def follow(self, jobs: JobService, backend: Backend) -> None:
        """Read the queue, the engine and the outbox from now on."""
        self.queue_waiting.set_function(lambda: jobs.runner.waiting)
        self.jobs_running.set_function(lambda: jobs.runner.running)
        self.engine_capacity.set_function(lambda: backend.capacity)
        self.outbox_pending.set_function(lambda: jobs.outbox.pending)

    # The Discord side

    def command_ran(self, command: str, result: CommandResult) -> None:
        self.commands.labels(command=command, result=result).inc()

    def discord_http_error(self, status: int) -> None:
        # Bounded: an HTTP status is three digits; anything else would be a broken proxy.
        label = str(status) if 100 <= status <= 599 else "other"
        self.discord_http_errors.labels(status=label).inc()

    def discord_http_trace(self) -> aiohttp.TraceConfig:
        """For discord.py's ``http_trace``: every request the library makes with its session
        (the bot token's REST calls and the interactions' webhooks alike) is seen here."""
        trace = aiohttp.TraceConfig()

        async def ended(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            if params.response.status >= 400:
                self.discord_http_error(params.response.status)

        trace.on_request_end.append(ended)
        return trace

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
