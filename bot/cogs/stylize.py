"""The /stylize feature: a thin adapter from Discord to ``bot.intake`` and ``bot.runner``, and
the owner of the feature's state: the job journal, the runner and the outbox.

At start-up (``start_jobs``) every job the journal holds unfinished resumes in its old order,
and the outbox delivers what is still owed. On shutdown (``stop_jobs``) the running jobs stop
and go back to the journal's queue, and their users are told they will resume.

No ``from __future__ import annotations`` here: the command's option bounds depend on the
server's settings (``STYLIZE_MAX_SIZE``), so its signature is built at run time and discord.py
must see real annotation objects, not strings.
"""

import asyncio
import logging
import re
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal, Optional

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors, followups, gallery, intake, messages, permissions
from bot.client import EXIT_ENGINE_BROKEN
from bot.cogs.styles import Styles, choices
from bot.delivery import Delivery
from bot.followups import FollowUp, FollowUpButton
from bot.job_settings import build_settings, steps_for
from bot.journal import Conversation, Derivation, JobRecord, Journal, NewJob, StatusMessage
from bot.outbox import Outbox
from bot.queue import QueueRefusal
from bot.reply import TOKEN_LIFETIME, Reply, describe
from bot.reporter import DiscordReporter
from bot.runner import JobRunner, ShuttingDown
from engine.backend import Backend
from engine.jobs import Job, new_job_id
from engine.settings import MIN_SIZE, StylizeSettings

if TYPE_CHECKING:
    from bot.client import StylizeBot

log = logging.getLogger(__name__)

# Discord's integer options stop at 2**53 (JavaScript's safe integers).
MAX_SEED_OPTION = 2**53 - 1
CANCEL_PREFIX = "stylize:cancel:"
MAX_RUNS = 3
"""A job that was running when the bot died this many times is given up, not resumed again."""
RETENTION_EVERY = 3600.0
"""Seconds between two sweeps of expired jobs (one also runs at every start)."""


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.escape(CANCEL_PREFIX) + r"(?P<job_id>[0-9a-f]{32})",
):
    """The Cancel button. Its ``custom_id`` carries the job id, so a press is understood
    even on a message from before a restart."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                style=discord.ButtonStyle.danger,
                custom_id=f"{CANCEL_PREFIX}{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button,
        match: re.Match[str],
        /,
    ) -> "CancelButton":
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog(Stylize.__cog_name__)  # type: ignore[attr-defined]
        runner = cog.runner if isinstance(cog, Stylize) else None
        owner = runner.owner(self.job_id) if runner is not None else None
        if runner is None or owner is None:
            await interaction.response.send_message(errors.stale_button(), ephemeral=True)
            return
        is_moderator = interaction.permissions.manage_messages
        if interaction.user.id != owner and not is_moderator:
            await interaction.response.send_message(errors.not_yours(), ephemeral=True)
            return
        # Cancel first: an acknowledgement that fails (a slow or lost callback) must not
        # leave the job running.
        runner.cancel(self.job_id, interaction.user.id)
        log.info("job %s: cancelled by user %s", self.job_id, interaction.user.id)
        # Acknowledge without touching the message: the job's reporter owns the status edits.
        await interaction.response.defer()


def has_handler(
    client: discord.Client, component_type: int, custom_id: str, message_id: int | None
) -> bool:
    """Whether discord.py hands this click to an item: the test its view store's dispatch
    makes (a registered ``DynamicItem`` template matches the whole ``custom_id``, or a view
    listens for that component on that message or on any). discord.py has no public way to
    ask; if its internals change, say yes: better no answer than a second one."""
    try:
        store = client._connection._view_store
        patterns = list(store._dynamic_items)
        views = store._views
    except AttributeError:
        return True
    if any(pattern.fullmatch(custom_id) for pattern in patterns):
        return True
    key = (component_type, custom_id)
    return any(key in views.get(entity, {}) for entity in (message_id, None))


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


class Stylize(commands.Cog):
    """Repaint a photo in the style of a painting."""

    def __init__(self, bot: "StylizeBot", journal: Journal) -> None:
        self.bot = bot
        self.journal = journal
        self.runner: JobRunner | None = None
        self.delivery = Delivery(journal, self.reply_for, result_view=self._result_view)
        self.outbox = Outbox(journal, self.delivery)
        self.command = self._build_command(bot.settings.stylize_max_size)
        self._writes: set[asyncio.Task[Any]] = set()
        self.reservations = intake.Reservations(bot.settings.stylize_queue_per_user)
        self.intake_gate = intake.Gate()
        self._retention: asyncio.Task[None] | None = None
        self._closed = False

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)
        self.bot.add_dynamic_items(CancelButton, FollowUpButton)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)
        self.bot.remove_dynamic_items(CancelButton, FollowUpButton)
        await self.close_jobs(0)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A click on a button that no item answers to (an older format, or garbage):
        discord.py drops it silently, and Discord would show "This interaction failed"."""
        if interaction.type is not discord.InteractionType.component:
            return
        data: Any = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        component_type = int(data.get("component_type", 0))
        message_id = interaction.message.id if interaction.message is not None else None
        if has_handler(self.bot, component_type, custom_id, message_id):
            return
        log.info("user %s clicked an unknown button %r", interaction.user.id,
                 messages.echo(custom_id))  # fmt: skip
        try:
            await interaction.response.send_message(errors.unknown_button(), ephemeral=True)
        except discord.HTTPException as error:
            log.info("cannot answer a click on an unknown button (%s)", describe(error))

    # The bot's JobsFeature: start-up and shutdown

    async def start_jobs(self, pool: Backend) -> None:
        config = self.bot.settings
        self.runner = JobRunner(
            pool,
            per_user=config.stylize_queue_per_user,
            max_waiting=config.stylize_queue_size,
            on_engine_broken=self._engine_broken,
            on_order=lambda job_ids: self._spawn(self.journal.set_order(job_ids)),
        )
        purged = await self.journal.purge(config.keep_seconds)
        if purged:
            log.info("retention: deleted %d job(s) older than %g day(s)", purged,
                     config.stylize_keep_days)  # fmt: skip
        await self.resume()
        self.outbox.start()
        self._retention = asyncio.get_running_loop().create_task(self._retention_loop())

    async def resume(self) -> int:
        """Queue again every job the journal holds unfinished, in its old order."""
        assert self.runner is not None
        started = time.perf_counter()
        records = await self.journal.unfinished()
        resumed = 0
        for record in records:
            if not self.runner.accepting:  # a signal came while resuming: the rest stay kept
                break
            job = await self._rebuild(record)
            if job is None:
                continue
            reporter = self._reporter(
                self.reply_for(record), job.id, resumed=True, headline=_headline(record)
            )
            self.runner.submit(job, record.conversation.user_id, reporter, resumed=True)
            resumed += 1
        if records:
            log.info("resumed %d job(s) from the journal in %.0f ms", resumed,
                     (time.perf_counter() - started) * 1000)  # fmt: skip
        return resumed

    async def _rebuild(self, record: JobRecord) -> Job | None:
        """The engine job of a journal record; None (the user told why) if it can't be run."""
        config = self.bot.settings
        preview_interval = config.stylize_progress_interval * config.stylize_preview_every
        rebuilt = await rebuild_job(self.journal, record, preview_interval=preview_interval)
        if isinstance(rebuilt, Job):
            return rebuilt
        await self.journal.finish(
            record.id, "failed", outcome={"kind": "not_resumed"}, deliver="notice", text=rebuilt
        )
        self.outbox.kick()
        return None

    async def stop_jobs(self, grace: float) -> None:
        if self.runner is not None:
            await self.runner.shutdown(grace)

    async def close_jobs(self, limit: float) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        runner = self.runner
        if runner is not None and not await runner.wait_idle(max(0.0, deadline - loop.time())):
            log.info("out of time for some 'restarting' notices: sent at the next start")
            await runner.abandon()
        # Results that were just done go out now if they can; the rest after the next start.
        await self.outbox.wait_idle(max(0.0, deadline - loop.time()))
        await self.outbox.stop()
        self.intake_gate.close()
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
        # Writes already asked for still land: the journal finishes them before it closes.
        await asyncio.gather(*self._writes, return_exceptions=True)
        await self.journal.close()

    def _engine_broken(self) -> None:
        self.bot.request_exit(EXIT_ENGINE_BROKEN)

    async def _retention_loop(self) -> None:
        keep = self.bot.settings.keep_seconds
        while True:
            await asyncio.sleep(RETENTION_EVERY)
            try:
                purged = await self.journal.purge(keep)
            except Exception:
                log.exception("retention: the sweep failed")
                continue
            if purged:
                log.info("retention: deleted %d expired job(s)", purged)

    # Talking to users

    def reply_for(self, record: JobRecord) -> Reply:
        return self._reply(record.id, record.conversation, record.status_message, None)

    def _reply(
        self,
        job_id: str,
        conversation: Conversation,
        status_message: StatusMessage | None,
        interaction: discord.Interaction | None,
    ) -> Reply:
        return Reply(
            self.bot,
            conversation,
            status_message=status_message,
            interaction=interaction,
            on_status_message=lambda message: self._spawn(
                self.journal.set_status_message(job_id, message)
            ),
        )

    def _reporter(
        self, reply: Reply, job_id: str, *, resumed: bool, headline: str | None = None
    ) -> DiscordReporter:
        config = self.bot.settings
        return DiscordReporter(
            reply,
            job_id=job_id,
            journal=self.journal,
            outbox=self.outbox,
            delivery=self.delivery,
            interval=config.stylize_progress_interval,
            job_timeout=config.stylize_job_timeout,
            make_view=lambda: cancel_view(job_id),
            resumed=resumed,
            headline=headline,
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # The command

    def _build_command(self, max_size: int) -> app_commands.Command:
        @app_commands.describe(
            content="The photo to repaint",
            style="The painting whose style to take (or pick a saved_style)",
            saved_style="One of this server's saved styles (see /styles list)",
            strength="Style against content: 1 is the default balance, higher is more style",
            size=f"Longest side of the result in pixels (at most {max_size})",
            quality="Fewer or more optimisation steps: draft is quick, high is finest",
            preserve_colors="Keep the photo's colours (take only the brushwork)",
            seed="For a reproducible result; the result always shows the seed used",
        )
        @app_commands.guild_only()
        async def stylize(
            interaction: discord.Interaction,
            content: discord.Attachment,
            style: Optional[discord.Attachment] = None,  # noqa: UP045
            saved_style: Optional[str] = None,  # noqa: UP045
            strength: Optional[app_commands.Range[float, 0.1, 10.0]] = None,  # noqa: UP045
            size: Optional[app_commands.Range[int, MIN_SIZE, max_size]] = None,  # noqa: UP045
            quality: Optional[Literal["draft", "standard", "high"]] = None,  # noqa: UP045
            preserve_colors: Optional[bool] = None,  # noqa: UP045
            seed: Optional[app_commands.Range[int, 0, MAX_SEED_OPTION]] = None,  # noqa: UP045
        ) -> None:
            await self.stylize(
                interaction,
                content,
                style,
                saved_style=saved_style,
                strength=strength,
                size=size,
                quality=quality,
                preserve_colors=preserve_colors,
                seed=seed,
            )

        command = app_commands.Command(
            name="stylize",
            description="Repaint a photo in the style of a painting",
            callback=stylize,
        )
        command.autocomplete("saved_style")(self._saved_style_choices)
        return command

    async def _saved_style_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await choices(self.journal, interaction, current)

    async def stylize(
        self,
        interaction: discord.Interaction,
        content: discord.Attachment,
        style: Optional[discord.Attachment],  # noqa: UP045
        *,
        saved_style: Optional[str] = None,  # noqa: UP045
        strength: Optional[float],  # noqa: UP045
        size: Optional[int],  # noqa: UP045
        quality: Optional[str],  # noqa: UP045
        preserve_colors: Optional[bool],  # noqa: UP045
        seed: Optional[int],  # noqa: UP045
    ) -> None:
        if (style is None) == (saved_style is None):  # refused at once, to the user alone
            raise errors.Refusal(messages.style_one_or_other())
        # Refused before anything else (and in the interaction's answer, which needs no
        # channel permission) when the result could not be posted here.
        lacking = permissions.missing(
            interaction.app_permissions, in_thread=permissions.in_thread(interaction.channel)
        )
        if lacking:
            raise errors.missing_permissions(lacking)
        # Acknowledge first, always: Discord drops an interaction not answered within 3 s.
        await interaction.response.defer(thinking=True)
        # The token's clock starts now, on our side: the snowflake's time would trust the
        # two machines' clocks to agree.
        token_expires_at = time.time() + TOKEN_LIFETIME
        runner = self.runner
        if runner is None or not runner.accepting:
            raise ShuttingDown("not accepting jobs")
        user_id = interaction.user.id
        runner.check(user_id)
        # The user's place is held from here, before any download: a burst of commands
        # can't all download and decode before all but a few are refused.
        with self.reservations.reserve(user_id, runner.active(user_id)):
            await self._take(interaction, content, style, token_expires_at,
                             saved_style=saved_style, size=size, quality=quality,
                             strength=strength, preserve_colors=preserve_colors,
                             seed=seed)  # fmt: skip

    async def _take(
        self,
        interaction: discord.Interaction,
        content: discord.Attachment,
        style: Optional[discord.Attachment],  # noqa: UP045
        token_expires_at: float,
        *,
        saved_style: Optional[str],  # noqa: UP045
        strength: Optional[float],  # noqa: UP045
        size: Optional[int],  # noqa: UP045
        quality: Optional[str],  # noqa: UP045
        preserve_colors: Optional[bool],  # noqa: UP045
        seed: Optional[int],  # noqa: UP045
    ) -> None:
        """Download, check, record and queue one command's job."""
        config = self.bot.settings
        runner = self.runner
        assert runner is not None

        # The inputs go to disk while they are decoded, so that writing the job's record
        # after the checks costs only its row.
        job_id = new_job_id()
        staging: list[asyncio.Task[None]] = []

        kept: list[tuple[str, bytes]] = []
        if saved_style is not None:
            assert interaction.guild_id is not None  # the command is guild-only
            saved = await gallery.image_for(self.journal, interaction.guild_id, saved_style)
            kept.append(("saved style", saved))
        uploads = [_ref("photo (content)", content)]
        if style is not None:
            uploads.append(_ref("style image", style))

        def stage(bodies: list[bytes]) -> None:
            staged = self.journal.stage_inputs(job_id, bodies[0], tuple(bodies[1:]))
            staging.append(asyncio.get_running_loop().create_task(staged))

        try:
            # The saved style is decoded inside the gate like an upload: a burst of commands
            # naming a large one must not decode it many times at once.
            pictures = await intake.receive(
                self.bot.http_session,
                uploads,
                max_bytes=config.max_input_bytes,
                max_pixels=config.stylize_max_pixels,
                kept=kept,
                on_downloaded=stage,
                gate=self.intake_gate,
            )
            for task in staging:
                await task
        except BaseException:
            if staging:
                await asyncio.gather(*staging, return_exceptions=True)
                await self.journal.discard(job_id)
            raise
        # The seed is fixed now, so a job resumed after a restart paints the same picture.
        settings = build_settings(
            standard_steps=config.stylize_steps,
            default_size=config.default_size,
            max_size=config.stylize_max_size,
            size=size,
            quality=quality,
            strength=strength,
            preserve_colors=preserve_colors,
            seed=seed,
        ).resolved()
        assert settings.seed is not None
        job = await self._enqueue(
            interaction, job_id, pictures[0].data, (pictures[1].data,), settings,
            token_expires_at=token_expires_at, inputs_staged=True,
        )  # fmt: skip
        log.info(
            "job %s: queued for user %s (%d×%d, style %d×%d, size %d, %d steps)",
            job.id,
            interaction.user.id,
            pictures[0].width,
            pictures[0].height,
            pictures[1].width,
            pictures[1].height,
            settings.size,
            settings.steps,
        )

    async def _enqueue(
        self,
        interaction: discord.Interaction,
        job_id: str,
        content: bytes,
        styles: tuple[bytes, ...],
        settings: StylizeSettings,
        *,
        token_expires_at: float,
        inputs_staged: bool,
        derivation: Derivation | None = None,
        note: str | None = None,
    ) -> Job:
        """Journal the job (its inputs already on disk) and queue it for the interaction's user.
        ``note``: a line for its status, under the headline."""
        config = self.bot.settings
        runner = self.runner
        assert runner is not None and settings.seed is not None
        assert interaction.channel_id is not None
        conversation = Conversation(
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            application_id=interaction.application_id,
            interaction_id=interaction.id,
            interaction_token=interaction.token,
            token_expires_at=token_expires_at,
            upload_limit=interaction.filesize_limit,
        )
        job = Job(
            content=content,
            styles=styles,
            settings=settings,
            max_bytes=conversation.upload_limit,
            preview_interval=config.stylize_progress_interval * config.stylize_preview_every,
            id=job_id,
        )
        # Durable before the user hears it is queued.
        await self.journal.add(
            NewJob(job.id, conversation, settings.to_dict(), settings.seed, job.content,
                   job.styles, derivation),
            inputs_staged=inputs_staged,
        )  # fmt: skip
        reply = self._reply(job.id, conversation, None, interaction)
        headline = None if derivation is None else _describe(derivation, settings.strength)
        if note is not None:
            headline = note if headline is None else f"{headline}\n{note}"
        reporter = self._reporter(reply, job.id, resumed=False, headline=headline)
        try:
            runner.submit(job, interaction.user.id, reporter)
        except QueueRefusal:
            await self.journal.discard(job.id)
            raise
        return job

    # The follow-up buttons (bot.followups): a click queues a new job for whoever clicked

    def _result_view(self, record: JobRecord) -> discord.ui.View:
        return followups.result_view(record.id, float(record.settings.get("strength", 1.0)))

    async def follow_up(
        self, interaction: discord.Interaction, job_id: str, kind: FollowUp
    ) -> None:
        """A follow-up button was clicked: queue the derived job under the clicker's limit."""
        config = self.bot.settings
        runner = self.runner
        if runner is None or not runner.accepting:
            raise ShuttingDown("not accepting jobs")
        # As /stylize: a job whose result could not be posted here is refused up front.
        lacking = permissions.missing(
            interaction.app_permissions, in_thread=permissions.in_thread(interaction.channel)
        )
        if lacking:
            raise errors.missing_permissions(lacking)
        # Answered before the 3 s deadline: one row and a stat of the files, then the refusal
        # or the "thinking" acknowledgement.
        parent = await self.journal.get(job_id)
        if parent is None or not await self.journal.has_inputs(job_id, parent.style_count):
            await interaction.response.send_message(
                messages.follow_up_expired(config.stylize_keep_days), ephemeral=True
            )
            return
        user_id = interaction.user.id
        runner.check(user_id)
        # Held like a command's place, so a click can't slip past the limit while another
        # command of the same user is still downloading.
        with self.reservations.reserve(user_id, runner.active(user_id)):
            await self._queue_follow_up(interaction, job_id, kind, parent)

    async def _queue_follow_up(
        self, interaction: discord.Interaction, job_id: str, kind: FollowUp, parent: JobRecord
    ) -> None:
        config = self.bot.settings
        await interaction.response.defer(thinking=True)
        token_expires_at = time.time() + TOKEN_LIFETIME
        new_id = new_job_id()
        try:
            await self.journal.link_inputs(job_id, new_id, parent.style_count)
            content, styles = await self.journal.inputs(new_id, parent.style_count)
        except OSError:  # purged between the check and the copy
            await self.journal.discard(new_id)
            await interaction.edit_original_response(
                content=messages.follow_up_expired(config.stylize_keep_days)
            )
            return
        # The server's limits now, not those of when the earlier job ran.
        ceiling = followups.Ceiling(
            size=config.stylize_max_size, steps=steps_for("high", config.stylize_steps)
        )
        derived = followups.derive(
            parent.settings, kind, new_seed=followups.new_seed(parent.seed), ceiling=ceiling
        )
        settings = StylizeSettings.from_dict(derived)
        assert settings.seed is not None
        derivation = Derivation(job_id, kind.value, parent.seed)
        note = None
        if followups.lowered(parent.settings, derived):
            note = messages.follow_up_lowered(settings.size, settings.steps)
        try:
            job = await self._enqueue(
                interaction, new_id, content, styles, settings,
                token_expires_at=token_expires_at, inputs_staged=True, derivation=derivation,
                note=note,
            )  # fmt: skip
        except BaseException:
            await self.journal.discard(new_id)
            raise
        log.info("job %s: %s of job %s, queued for user %s", job.id, kind.value, job_id,
                 interaction.user.id)  # fmt: skip


async def rebuild_job(journal: Journal, record: JobRecord, *, preview_interval: float) -> Job | str:
    """The engine job of an unfinished journal record, or why it can't run again (words for
    its user): its inputs are gone, or the bot died while running it too often."""
    if record.runs >= MAX_RUNS:
        log.error("job %s: the bot died %d times while running it; giving up", record.id,
                  record.runs)  # fmt: skip
        return errors.keeps_crashing()
    try:
        content, styles = await journal.inputs(record.id, record.style_count)
        return Job(
            content=content,
            styles=styles,
            settings=StylizeSettings.from_dict(record.settings),
            max_bytes=record.conversation.upload_limit,
            preview_interval=preview_interval,
            id=record.id,
        )
    except (OSError, ValueError, TypeError) as error:  # EngineError is a ValueError
        log.error("job %s: cannot be resumed (%s)", record.id, type(error).__name__)
        return errors.inputs_lost()


def _describe(derivation: Derivation, strength: float) -> str:
    return messages.follow_up_headline(derivation.kind, strength, derivation.parent_seed)


def _headline(record: JobRecord) -> str | None:
    if record.derivation is None:
        return None
    return _describe(record.derivation, float(record.settings.get("strength", 1.0)))


def _ref(label: str, attachment: discord.Attachment) -> intake.AttachmentRef:
    return intake.AttachmentRef(label, attachment.url, attachment.size, attachment.content_type)


async def setup(bot: "StylizeBot") -> None:
    # Opened here so a journal that can't be used stops the bot before anything else starts.
    journal = await Journal.open(bot.settings.stylize_data_dir)
    try:
        stylize = Stylize(bot, journal)
        await bot.add_cog(stylize)
        # The gallery lives in the same journal, so the same extension loads it.
        await bot.add_cog(Styles(bot, journal, stylize.intake_gate))
    except BaseException:
        await journal.close()
        raise
