"""The end-to-end tests' shared pieces: their settings, a real backend whose jobs a test can
keep running (``HeldBackend``), and a ``Harness`` that runs the bot in the test's loop against
a fake Discord, stopped and started again on one data folder."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.client import StylizeBot, build_backend
from bot.config import BotSettings, load_settings
from engine.backend import Backend, JobHandle
from engine.jobs import FINAL_EVENTS, BackendError, Event, Job, JobProgress
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage, FakeUser
from tests.pictures import png

INTERVAL = 1.0  # STYLIZE_PROGRESS_INTERVAL: the smallest the settings allow
STEPS = 4
START_TIMEOUT = 240  # the backend spawns a worker that imports torch and builds VGG19
RESULT_TIMEOUT = 120


def e2e_settings(fake: FakeDiscord, data_dir: Path, **overrides: Any) -> BotSettings:
    """The end-to-end tests' settings: tiny CPU jobs on random weights, short intervals."""
    defaults: dict[str, Any] = dict(
        stylize_data_dir=data_dir,
        discord_token=fake.token,
        discord_guild_id=fake.guild_id,
        discord_api_base_url=fake.api_base_url,
        discord_gateway_url=fake.gateway_url,
        discord_cdn_url=fake.base_url,
        stylize_weights="random:0",
        stylize_device="cpu",
        stylize_workers=1,
        stylize_max_size=64,
        stylize_steps=STEPS,
        stylize_max_input_mb=1,
        stylize_max_pixels=1_000_000,
        stylize_queue_per_user=2,
        stylize_queue_size=10,
        stylize_job_timeout=300,
        stylize_progress_interval=INTERVAL,
        stylize_preview_every=1,
    )
    return load_settings(_env_file=None, **{**defaults, **overrides})


# --- a real backend whose jobs a test can keep running --------------------------------------


class HeldBackend:
    """The real backend with two gates. With ``progress`` closed, a job shows as started and
    nothing more arrives (as in a long job); with ``final`` closed, only its end is held.
    Cancelling a held job reaches the real engine, and what the engine then sends ends it:
    ``Cancelled`` from a job still running, the held ``Done`` from one that had finished (as
    when a cancel lands while the worker encodes the result)."""

    def __init__(self, real: Backend) -> None:
        self.real = real
        self.progress = asyncio.Event()
        self.final = asyncio.Event()
        self.progress.set()
        self.final.set()
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.broken = False
        """As the real backend once its workers can no longer be started: it refuses every
        job."""
        self.preview_interval: float | None = None
        """Set: jobs ask the real engine for previews this often (a tiny job ends sooner than
        the bot's own interval, and would never show one)."""
        self.steps: int | None = None
        """Set: jobs run this many steps (a long job, still running when a test stops it)."""

    @property
    def capacity(self) -> int:
        return self.real.capacity

    def add_capacity_listener(self, listener: Callable[[int], None]) -> None:
        self.real.add_capacity_listener(listener)

    def final_event(self, job_id: str) -> Event | None:
        return next((e for e in self.events[job_id] if isinstance(e, FINAL_EVENTS)), None)

    @property
    def devices(self) -> tuple[str, ...]:
        return self.real.devices

    async def start(self) -> None:
        await self.real.start()

    async def close(self, grace: float = 10.0) -> None:
        self.progress.set()
        self.final.set()
        await self.real.close(grace)

    def submit(self, job: Job) -> HeldHandle:
        if self.broken:
            raise BackendError("The engine's workers could not be restarted.")
        if self.preview_interval is not None:
            job = dataclasses.replace(job, preview_interval=self.preview_interval)
        if self.steps is not None:
            job = dataclasses.replace(
                job, settings=dataclasses.replace(job.settings, steps=self.steps)
            )
        return HeldHandle(self, self.real.submit(job))

    def gate(self, event: Event) -> asyncio.Event | None:
        if isinstance(event, JobProgress):
            return self.progress
        if isinstance(event, FINAL_EVENTS):
            return self.progress if not self.progress.is_set() else self.final
        return None


class HeldHandle:
    def __init__(self, owner: HeldBackend, real: JobHandle) -> None:
        self.job_id = real.job_id
        self._owner = owner
        self._real = real
        self._cancel = asyncio.Event()

    def cancel(self) -> None:
        self._cancel.set()
        self._real.cancel()

    async def __aiter__(self) -> AsyncIterator[Event]:
        async for event in self._real:
            self._owner.events[self.job_id].append(event)
            gate = self._owner.gate(event)
            if gate is not None and not gate.is_set():
                await _first(gate.wait(), self._cancel.wait())
                if not gate.is_set() and not isinstance(event, FINAL_EVENTS):
                    # Cancelled while held: the rest of the real job's events are what the
                    # engine made of the cancel; only its end is passed on.
                    async for later in self._real:
                        self._owner.events[self.job_id].append(later)
                        if isinstance(later, FINAL_EVENTS):
                            yield later
                    return
            yield event


async def _first(*waits: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


# --- the bot in the test's loop ---------------------------------------------------------------


@dataclasses.dataclass
class Running:
    bot: StylizeBot
    backend: HeldBackend
    task: asyncio.Task[None]


class Harness:
    """The real bot (discord.py, the local backend, random weights on the CPU) against a fake
    Discord, with the settings ``settings_for`` makes; started and stopped by the test."""

    def __init__(
        self,
        fake: FakeDiscord,
        data_dir: Path,
        settings_for: Callable[[FakeDiscord, Path], BotSettings],
    ) -> None:
        self.fake = fake
        self.data_dir = data_dir
        self.settings_for = settings_for
        self.run: Running | None = None

    @property
    def backend(self) -> HeldBackend:
        assert self.run is not None
        return self.run.backend

    @property
    def bot(self) -> StylizeBot:
        assert self.run is not None
        return self.run.bot

    async def start(self) -> None:
        backends: list[HeldBackend] = []

        def held_backend(settings: BotSettings) -> Backend:
            backends.append(HeldBackend(build_backend(settings)))
            return backends[-1]  # type: ignore[return-value]

        identifies = self.fake.identifies
        bot = StylizeBot(self.settings_for(self.fake, self.data_dir), backend_factory=held_backend)
        task = asyncio.create_task(bot.start(self.fake.token))
        connected = asyncio.create_task(
            self.fake.wait_for(lambda: self.fake.identifies > identifies, START_TIMEOUT)
        )
        await asyncio.wait({task, connected}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            connected.cancel()
            task.result()
            pytest.fail("the bot stopped during start-up")
        await connected
        await asyncio.wait_for(bot.wait_until_ready(), 30)
        self.run = Running(bot, backends[0], task)

    async def stop(self) -> None:
        assert self.run is not None
        await self.run.bot.close()
        await asyncio.wait_for(self.run.task, 30)
        self.run = None

    async def idle(self) -> None:
        assert await self.bot.jobs.runner.wait_idle(30), "jobs still running after the test"
        assert await self.bot.jobs.outbox.wait_idle(30), "results still undelivered after the test"

    async def result_of_command(self, user: FakeUser, **options: object) -> FakeMessage:
        """Run /stylize and return its posted result."""
        interaction = await self.fake.invoke(
            "stylize",
            {
                "content": self.fake.add_attachment(png(48, 36), "photo.png"),
                "style": self.fake.add_attachment(png(32, 32, noise=True), "painting.png"),
                **options,
            },
            user=user,
        )
        assert (await interaction.wait_callback(timeout=5))["type"] == 5
        return await self.result_of(interaction)

    async def result_of(self, interaction: FakeInteraction) -> FakeMessage:
        await self.fake.wait_for(lambda: bool(interaction.followups), RESULT_TIMEOUT)
        [result] = interaction.followups
        return result

    async def click(self, message: FakeMessage, kind: str, user: FakeUser) -> FakeInteraction:
        [custom_id] = [c for c in message.custom_ids if c.startswith(f"stylize:{kind}:")]
        click = await self.fake.click(message, custom_id, user=user)
        await click.wait_callback(timeout=5)
        assert click.ack_latency is not None and click.ack_latency < 3.0
        return click
