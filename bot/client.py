"""``StylizeBot``: start-up, endpoints and shutdown. The feature itself is in ``bot.cogs``.

As in discord.py's ``examples/advanced_startup.py``, everything the bot needs is created in
``setup_hook`` (before the gateway connects) and closed in ``close``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import aiohttp
import discord
import yarl
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot import errors
from bot.config import DEFAULT_GATEWAY_URL, BotSettings
from engine.backend import Backend
from engine.pool import EnginePool

log = logging.getLogger(__name__)

EXTENSIONS = ("bot.cogs.stylize",)

# Shutdown budget (SIGTERM to exit within 15 s): tell users, stop workers, close sessions.
NOTIFY_GRACE = 4.0
POOL_GRACE = 1.0
POOL_CLOSE_LIMIT = 6.0
DRAIN_LIMIT = 2.0

EXIT_ENGINE_BROKEN = 3
"""Exit status when the engine can no longer start workers (a service manager restarts us)."""


class StartupError(Exception):
    """Start-up cannot go on; ``str()`` is one line saying what to fix."""


@runtime_checkable
class JobsFeature(Protocol):
    """A cog that owns jobs: the bot hands it the started engine, and stops it first."""

    async def start_jobs(self, pool: Backend) -> None:
        """The engine is running: resume the jobs kept from before and take new ones."""

    async def stop_jobs(self, grace: float) -> None:
        """Take no new jobs, stop the running ones, tell their users; within ``grace`` s."""

    async def close_jobs(self, limit: float) -> None:
        """After the engine closed: finish what can be within ``limit`` s, then let go."""


def point_at(api_base_url: str, gateway_url: str) -> tuple[str, yarl.URL]:
    """Send discord.py's REST and gateway traffic to these URLs; returns the previous ones.

    discord.py keeps both in class attributes, read at the moment of use:
    * ``discord.http.Route.BASE``: every REST route is built from it, the bot-token calls and
      the interaction webhooks (``/interactions/…/callback``, ``/webhooks/…``) alike.
    * ``DiscordWebSocket.DEFAULT_GATEWAY``: the first connection, and every re-IDENTIFY after
      Discord invalidates a session. Resumes use ``ws.gateway`` instead; see
      ``StylizeBot.dispatch``.
    """
    previous = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    Route.BASE = api_base_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    return previous


def make_pool(settings: BotSettings) -> Backend:
    """The backend that ``STYLIZE_BACKEND`` names."""
    if settings.stylize_backend == "ray":
        from engine.ray_backend import RayBackend  # ray is an optional extra: imported only here

        return RayBackend(
            address=settings.stylize_ray_address,
            workers=settings.stylize_workers,
            device=settings.stylize_device,
            weights=settings.stylize_weights,
            job_timeout=settings.stylize_job_timeout,
        )
    return EnginePool(
        workers=settings.stylize_workers,
        device=settings.stylize_device,
        weights=settings.stylize_weights,
        job_timeout=settings.stylize_job_timeout,
        start_timeout=settings.stylize_start_timeout,
    )


# The bot never joins voice: silence discord.py's start-up warnings about voice libraries.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class StylizeBot(commands.Bot):
    def __init__(
        self,
        settings: BotSettings,
        *,
        pool_factory: Callable[[BotSettings], Backend] = make_pool,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and our own permissions arrive with GUILD_CREATE
        super().__init__(
            command_prefix=commands.when_mentioned,  # slash commands only; no message intent
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            max_messages=None,
        )
        self.settings = settings
        self._pool_factory = pool_factory
        self.http_session: aiohttp.ClientSession | None = None
        self.pool: Backend | None = None
        self.exit_code = 0
        """Non-zero when the bot stopped because it cannot go on (``request_exit``)."""
        self._custom_gateway = settings.discord_gateway_url != DEFAULT_GATEWAY_URL
        self._previous_endpoints: tuple[str, yarl.URL] | None = None
        self._shutdown: asyncio.Task[None] | None = None

    # Start-up

    async def login(self, token: str) -> None:
        self._previous_endpoints = point_at(
            self.settings.discord_api_base_url, self.settings.discord_gateway_url
        )
        await super().login(token)

    async def setup_hook(self) -> None:
        config = self.settings
        self.http_session = aiohttp.ClientSession(headers={"User-Agent": "stylize-bot"})
        self.tree.error(errors.on_app_command_error)
        # Features first: a journal that cannot be opened stops us before the engine starts.
        for extension in EXTENSIONS:
            try:
                await self.load_extension(extension)
            except commands.ExtensionFailed as failure:
                raise failure.original from None
        self.pool = self._pool_factory(config)
        log.info("starting the engine (weights %s, device %s)", config.stylize_weights,
                 config.stylize_device)  # fmt: skip
        try:
            await self.pool.start()
        except Exception as error:
            if self.shutting_down:  # a signal ended the start: that is no failure
                await self._closed()
                return
            if isinstance(error, OSError):
                # Not Discord's: say it is the engine's (e.g. Ray's ConnectionError).
                raise StartupError(f"the engine could not start: {error}") from None
            raise
        if "cpu" in self.pool.devices:
            # Not an error (small pictures work), but the defaults are sized for a GPU.
            log.warning(
                "the engine runs on the CPU: a %d px picture with %d steps may take many "
                "minutes (STYLIZE_JOB_TIMEOUT is %g s); consider a smaller STYLIZE_MAX_SIZE "
                "and STYLIZE_STEPS",
                config.stylize_max_size, config.stylize_steps, config.stylize_job_timeout,
            )  # fmt: skip
        if self.shutting_down:  # a signal arrived while the workers were starting
            await self._closed()
            return
        for feature in self._jobs_features():
            await feature.start_jobs(self.pool)
        await self._sync_commands()

    def _jobs_features(self) -> list[JobsFeature]:
        return [cog for cog in self.cogs.values() if isinstance(cog, JobsFeature)]

    async def _sync_commands(self) -> None:
        guild_id = self.settings.discord_guild_id
        if guild_id is None:
            synced = await self.tree.sync()
            log.info("synced %d command(s) globally (may take a while to appear)", len(synced))
            return
        # Guild commands appear at once, which is what development wants.
        guild = discord.Object(id=guild_id)
        self.tree.copy_global_to(guild=guild)
        try:
            synced = await self.tree.sync(guild=guild)
        except discord.Forbidden:
            raise StartupError(
                f"cannot register /stylize in the server DISCORD_GUILD_ID={guild_id}: invite the "
                "bot there with the applications.commands scope, or fix the ID."
            ) from None
        log.info("synced %d command(s) to guild %s", len(synced), guild_id)

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("ready as %s (id %s) in %d guild(s)", self.user, self.user.id, len(self.guilds))

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        # READY has just stored Discord's resume_gateway_url in ws.gateway, and a resume
        # would go there, around a proxy or emulator. Keep resumes on the configured gateway.
        # ('connect' is dispatched synchronously while READY is parsed, before any resume.)
        if event_name == "connect" and self._custom_gateway and self.ws is not None:
            self.ws.gateway = DiscordWebSocket.DEFAULT_GATEWAY
        super().dispatch(event_name, *args, **kwargs)

    # Shutdown

    @property
    def shutting_down(self) -> bool:
        return self._shutdown is not None

    def request_exit(self, code: int) -> None:
        """Stop the bot (as a signal would), and have ``stylize-bot`` exit with ``code``."""
        self.exit_code = code
        loop = asyncio.get_running_loop()
        if self._shutdown is None:
            self._shutdown = loop.create_task(self._close())

    async def _closed(self) -> None:
        """Wait for a shutdown under way, so that discord.py connects nowhere after it."""
        if self._shutdown is not None:
            await asyncio.shield(self._shutdown)

    async def close(self) -> None:
        # Idempotent: a signal, `async with` and discord.py itself may each call close().
        if self._shutdown is None:
            self._shutdown = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._shutdown)

    async def _close(self) -> None:
        log.info("shutting down")
        features = self._jobs_features()
        try:
            for feature in features:
                # No new jobs; running ones stop and go back to the journal's queue.
                await feature.stop_jobs(NOTIFY_GRACE)
            if self.pool is not None:
                await _bounded(self.pool.close(grace=POOL_GRACE), POOL_CLOSE_LIMIT, "engine pool")
            for feature in features:
                await feature.close_jobs(DRAIN_LIMIT)
        except Exception:
            log.exception("error while stopping the jobs")
        finally:
            if self.http_session is not None:
                await self.http_session.close()
            await super().close()
            if self._previous_endpoints is not None:
                Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._previous_endpoints
                self._previous_endpoints = None
            log.info("shut down")


async def _bounded(coro: Any, limit: float, what: str) -> None:
    try:
        await asyncio.wait_for(coro, limit)
    except asyncio.TimeoutError:
        log.warning("%s did not close within %g s", what, limit)
