"""``StylizeBot``: start-up, endpoints and shutdown; the owner of the bot's resources.

As in discord.py's ``examples/advanced_startup.py``, everything the bot needs is created in
``setup_hook`` (before the gateway connects) and closed in ``close``: the HTTP session, the job
journal, the engine's backend and the one job service (``bot.jobs``) over them. The cogs
(``bot.cogs``) borrow them from the bot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import discord
import yarl
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot import errors, intake
from bot.config import DEFAULT_GATEWAY_URL, BotSettings
from bot.jobs.service import JobPolicy, JobService
from bot.journal import Journal
from bot.metrics import BotMetrics
from bot.ops_server import OpsServer
from bot.reporter import DiscordFrontend
from bot.translator import CatalogueTranslator
from engine.backend import Backend
from engine.backends import BackendOptions, create_backend

log = logging.getLogger(__name__)

T = TypeVar("T")

EXTENSIONS = (
    "bot.cogs.stylize",
    "bot.cogs.styles",
    "bot.cogs.menus",
    "bot.cogs.admin",
    "bot.cogs.data",
)

# Shutdown budget (SIGTERM to exit within 15 s): tell users, stop workers, close sessions.
NOTIFY_GRACE = 4.0
BACKEND_GRACE = 1.0
BACKEND_CLOSE_LIMIT = 6.0
DRAIN_LIMIT = 2.0

EXIT_ENGINE_BROKEN = 3
"""Exit status when the engine can no longer start workers (a service manager restarts us)."""


class StartupError(Exception):
    """Start-up cannot go on; ``str()`` is one line saying what to fix."""


Endpoints = tuple[str, yarl.URL, str]


def point_at(api_base_url: str, gateway_url: str, cdn_url: str) -> Endpoints:
    """Send discord.py's REST and gateway traffic to these URLs, and build its asset URLs
    (avatars) on this CDN; returns the previous ones.

    discord.py keeps both in class attributes, read at the moment of use:
    * ``discord.http.Route.BASE``: every REST route is built from it, the bot-token calls and
      the interaction webhooks (``/interactions/…/callback``, ``/webhooks/…``) alike.
    * ``DiscordWebSocket.DEFAULT_GATEWAY``: the first connection, and every re-IDENTIFY after
      Discord invalidates a session. Resumes use ``ws.gateway`` instead; see
      ``StylizeBot.dispatch``.
    * ``discord.Asset.BASE``: the start of every asset URL it builds, such as a member's
      avatar, which "Paint my avatar like this" downloads.
    """
    previous = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, discord.Asset.BASE)
    Route.BASE = api_base_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    discord.Asset.BASE = cdn_url.rstrip("/")
    return previous


def build_backend(settings: BotSettings) -> Backend:
    """The backend that ``STYLIZE_BACKEND`` names, not started."""
    options = BackendOptions(
        workers=settings.stylize_workers,
        device=settings.stylize_device,
        weights=settings.stylize_weights,
        job_timeout=settings.stylize_job_timeout,
        start_timeout=settings.stylize_start_timeout,
        ray_address=settings.stylize_ray_address,
    )
    return create_backend(settings.stylize_backend, options)


def job_policy(settings: BotSettings) -> JobPolicy:
    return JobPolicy(
        per_user=settings.stylize_queue_per_user,
        max_waiting=settings.stylize_queue_size,
        job_timeout=settings.stylize_job_timeout,
        keep_seconds=settings.keep_seconds,
        preview_interval=settings.stylize_progress_interval * settings.stylize_preview_every,
        max_size=settings.stylize_max_size,
        standard_steps=settings.stylize_steps,
    )


# The bot never joins voice: silence discord.py's start-up warnings about voice libraries.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class StylizeBot(commands.Bot):
    def __init__(
        self,
        settings: BotSettings,
        *,
        backend_factory: Callable[[BotSettings], Backend] = build_backend,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and our own permissions arrive with GUILD_CREATE
        self.metrics = BotMetrics()
        super().__init__(
            command_prefix=commands.when_mentioned,  # slash commands only; no message intent
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            max_messages=None,
            http_trace=self.metrics.discord_http_trace(),
        )
        self.settings = settings
        self._backend_factory = backend_factory
        # Made in setup_hook, closed in close(); the properties below hand them out.
        self._http_session: aiohttp.ClientSession | None = None
        self._journal: Journal | None = None
        self._backend: Backend | None = None
        self._intake_gate: intake.Gate | None = None
        self._frontend: DiscordFrontend | None = None
        self._jobs: JobService | None = None
        self.ops_server: OpsServer | None = None
        """Serving /metrics, /healthz and /readyz, when STYLIZE_METRICS_PORT is set."""
        self.exit_code = 0
        """Non-zero when the bot stopped because it cannot go on (``request_exit``)."""
        self._custom_gateway = settings.discord_gateway_url != DEFAULT_GATEWAY_URL
        self._previous_endpoints: Endpoints | None = None
        self._shutdown: asyncio.Task[None] | None = None

    # What the cogs borrow (from setup_hook on)

    @property
    def http_session(self) -> aiohttp.ClientSession:
        return _made(self._http_session, "HTTP session")

    @property
    def journal(self) -> Journal:
        return _made(self._journal, "journal")

    @property
    def backend(self) -> Backend:
        return _made(self._backend, "backend")

    @property
    def intake_gate(self) -> intake.Gate:
        """Every download and decode of a picture goes through it (commands and styles)."""
        return _made(self._intake_gate, "intake gate")

    @property
    def frontend(self) -> DiscordFrontend:
        return _made(self._frontend, "front end")

    @property
    def jobs(self) -> JobService:
        return _made(self._jobs, "job service")

    # Start-up

    async def login(self, token: str) -> None:
        config = self.settings
        self._previous_endpoints = point_at(
            config.discord_api_base_url, config.discord_gateway_url, config.discord_cdn_url
        )
        await super().login(token)

    async def setup_hook(self) -> None:
        config = self.settings
        self._http_session = aiohttp.ClientSession(headers={"User-Agent": "stylize-bot"})
        self.tree.error(self._command_failed)
        if config.stylize_metrics_port is not None:
            # First, so that a port in use stops us at once, and /healthz answers while the
            # engine loads (/readyz says what is missing).
            ops_server = OpsServer(self.metrics.exposition, self.not_ready)
            await ops_server.start(config.stylize_metrics_host, config.stylize_metrics_port)
            self.ops_server = ops_server
        # Before any sync: the commands go to Discord with their names in every language.
        await self.tree.set_translator(CatalogueTranslator())
        # The journal first: one that cannot be opened stops us before the engine starts.
        journal = self._journal = await Journal.open(config.stylize_data_dir)
        backend = self._backend = self._backend_factory(config)
        self._intake_gate = intake.Gate()
        frontend = self._frontend = DiscordFrontend(
            self,
            journal,
            interval=config.stylize_progress_interval,
            ceiling=lambda: self.jobs.ceiling(),
        )
        self._jobs = JobService(
            journal,
            backend,
            frontend,
            job_policy(config),
            on_engine_broken=lambda: self.request_exit(EXIT_ENGINE_BROKEN),
            observer=self.metrics,
        )
        self.metrics.follow(self._jobs, backend)
        for extension in EXTENSIONS:
            try:
                await self.load_extension(extension)
            except commands.ExtensionFailed as failure:
                raise failure.original from None
        log.info("starting the engine (weights %s, device %s)", config.stylize_weights,
                 config.stylize_device)  # fmt: skip
        try:
            await backend.start()
        except Exception as error:
            if self.shutting_down:  # a signal ended the start: that is no failure
                await self._closed()
                return
            if isinstance(error, OSError):
                # Not Discord's: say it is the engine's (e.g. Ray's ConnectionError).
                raise StartupError(f"the engine could not start: {error}") from None
            raise
        if "cpu" in backend.devices:
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
        await self._jobs.start()
        await self._sync_commands()

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

    def not_ready(self) -> str | None:
        """Why the bot can't take jobs now (``/readyz``), or None when it can."""
        if self.shutting_down:
            return "shutting down"
        if not self.is_ready() or self.is_closed() or self.ws is None or not self.ws.open:
            return "not connected to Discord"
        if self._backend is None or self._backend.capacity <= 0:
            return "the engine has no worker up (capacity 0)"
        return None

    # Commands: counted, then errors worded (bot.errors)

    async def on_app_command_completion(
        self,
        interaction: discord.Interaction,
        command: discord.app_commands.Command[Any, ..., Any] | discord.app_commands.ContextMenu,
    ) -> None:
        self.metrics.command_ran(command.qualified_name, "ok")

    async def _command_failed(
        self, interaction: discord.Interaction, error: discord.app_commands.AppCommandError
    ) -> None:
        command = interaction.command
        name = command.qualified_name if command is not None else "unknown"
        self.metrics.command_ran(name, "refused" if errors.is_expected(error) else "error")
        await errors.on_app_command_error(interaction, error)

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
        try:
            if self._jobs is not None:
                # No new jobs; running ones stop and go back to the journal's queue.
                await self._jobs.stop(NOTIFY_GRACE)
            if self._backend is not None:
                await _bounded(self._backend.close(grace=BACKEND_GRACE), BACKEND_CLOSE_LIMIT,
                               "engine backend")  # fmt: skip
            if self._jobs is not None:
                await self._jobs.close(DRAIN_LIMIT)
        except Exception:
            log.exception("error while stopping the jobs")
        finally:
            if self._intake_gate is not None:
                self._intake_gate.close()
            if self._journal is not None:
                # Writes already asked for have landed: the service waited for them.
                await self._journal.close()
            if self._http_session is not None:
                await self._http_session.close()
            await super().close()
            if self.ops_server is not None:  # last: /healthz answers while we stop
                await self.ops_server.close()
            if self._previous_endpoints is not None:
                Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, discord.Asset.BASE = (
                    self._previous_endpoints
                )
                self._previous_endpoints = None
            log.info("shut down")


def _made(resource: T | None, what: str) -> T:
    if resource is None:
        raise RuntimeError(f"the bot's {what} is made in setup_hook")
    return resource


async def _bounded(coro: Any, limit: float, what: str) -> None:
    try:
        await asyncio.wait_for(coro, limit)
    except asyncio.TimeoutError:
        log.warning("%s did not close within %g s", what, limit)
