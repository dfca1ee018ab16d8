"""The /stylize feature: a thin adapter from Discord to ``bot.intake`` and ``bot.runner``.

No ``from __future__ import annotations`` here: the command's option bounds depend on the
server's settings (``STYLIZE_MAX_SIZE``), so its signature is built at run time and discord.py
must see real annotation objects, not strings.
"""

import logging
import re
from typing import TYPE_CHECKING, Literal, Optional, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors, intake
from bot.job_settings import build_settings
from bot.reporter import DiscordReporter
from bot.runner import ShuttingDown
from bot.status import Reply
from engine.jobs import Job
from engine.settings import MIN_SIZE

if TYPE_CHECKING:
    from bot.client import StylizeBot

log = logging.getLogger(__name__)

# Discord's integer options stop at 2**53 (JavaScript's safe integers).
MAX_SEED_OPTION = 2**53 - 1
CANCEL_PREFIX = "stylize:cancel:"


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.escape(CANCEL_PREFIX) + r"(?P<job_id>[0-9a-f]{32})",
):
    """The Cancel button. Its ``custom_id`` carries the job id, so a press is understood
    even on a message from before a restart (it then gets a clear answer)."""

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
        bot = cast("StylizeBot", interaction.client)
        runner = bot.runner
        owner = runner.owner(self.job_id) if runner is not None else None
        if runner is None or owner is None:
            await interaction.response.send_message(errors.stale_button(), ephemeral=True)
            return
        is_moderator = interaction.permissions.manage_messages
        if interaction.user.id != owner and not is_moderator:
            await interaction.response.send_message(errors.not_yours(), ephemeral=True)
            return
        # Acknowledge without touching the message: the job's reporter owns the status edits.
        await interaction.response.defer()
        runner.cancel(self.job_id, interaction.user.id)
        log.info("job %s: cancelled by user %s", self.job_id, interaction.user.id)


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


class Stylize(commands.Cog):
    """Repaint a photo in the style of a painting."""

    def __init__(self, bot: "StylizeBot") -> None:
        self.bot = bot
        self.command = self._build_command(bot.settings.stylize_max_size)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)
        self.bot.add_dynamic_items(CancelButton)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)
        self.bot.remove_dynamic_items(CancelButton)

    def _build_command(self, max_size: int) -> app_commands.Command:
        @app_commands.describe(
            content="The photo to repaint",
            style="The painting whose style to take",
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
            style: discord.Attachment,
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
                strength=strength,
                size=size,
                quality=quality,
                preserve_colors=preserve_colors,
                seed=seed,
            )

        return app_commands.Command(
            name="stylize",
            description="Repaint a photo in the style of a painting",
            callback=stylize,
        )

    async def stylize(
        self,
        interaction: discord.Interaction,
        content: discord.Attachment,
        style: discord.Attachment,
        *,
        strength: Optional[float],  # noqa: UP045
        size: Optional[int],  # noqa: UP045
        quality: Optional[str],  # noqa: UP045
        preserve_colors: Optional[bool],  # noqa: UP045
        seed: Optional[int],  # noqa: UP045
    ) -> None:
        # Acknowledge first, always: Discord drops an interaction not answered within 3 s.
        await interaction.response.defer(thinking=True)
        reply = Reply(interaction)
        config = self.bot.settings
        runner = self.bot.runner
        if runner is None or not runner.accepting:
            raise ShuttingDown("not accepting jobs")
        runner.check(interaction.user.id)  # before any download

        pictures = await intake.receive(
            self.bot.http_session,
            [_ref("photo (content)", content), _ref("style image", style)],
            max_bytes=config.max_input_bytes,
            max_pixels=config.stylize_max_pixels,
        )
        settings = build_settings(
            standard_steps=config.stylize_steps,
            default_size=config.default_size,
            max_size=config.stylize_max_size,
            size=size,
            quality=quality,
            strength=strength,
            preserve_colors=preserve_colors,
            seed=seed,
        )
        job = Job(
            content=pictures[0].data,
            styles=(pictures[1].data,),
            settings=settings,
            max_bytes=reply.upload_limit,
            preview_interval=config.stylize_progress_interval * config.stylize_preview_every,
        )
        reporter = DiscordReporter(
            reply,
            job_id=job.id,
            interval=config.stylize_progress_interval,
            job_timeout=config.stylize_job_timeout,
            make_view=lambda: cancel_view(job.id),
        )
        runner.submit(job, interaction.user.id, reporter)
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


def _ref(label: str, attachment: discord.Attachment) -> intake.AttachmentRef:
    return intake.AttachmentRef(label, attachment.url, attachment.size, attachment.content_type)


async def setup(bot: "StylizeBot") -> None:
    await bot.add_cog(Stylize(bot))
