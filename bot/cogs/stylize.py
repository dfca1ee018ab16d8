"""The /stylize feature on Discord: the command (and its saved-style autocomplete), the
buttons' registration, and the answer to clicks no button knows. A thin adapter: it checks
what only Discord can tell (permissions, who clicked), downloads the pictures, and turns the
rest into calls to the bot's job service (``bot.jobs``).

No ``from __future__ import annotations`` here: the command's option bounds depend on the
server's settings (``STYLIZE_MAX_SIZE``), so its signature is built at run time and discord.py
must see real annotation objects, not strings.
"""

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Optional

import discord
from discord import app_commands
from discord.ext import commands

from bot import gallery, i18n, intake, messages, permissions
from bot.buttons import CancelButton, DeleteButton, FollowUpButton, ForgetButton, has_handler
from bot.cogs.styles import choices
from bot.errors import Refusal
from bot.jobs.policy import Admission
from bot.jobs.service import Submission
from bot.jobs.settings import MAX_SEED, MAX_STRENGTH, MIN_STRENGTH, build_settings
from bot.journal import Origin
from bot.reply import conversation_of, describe
from bot.translator import command_text
from engine.jobs import new_job_id
from engine.settings import MIN_SIZE

if TYPE_CHECKING:
    from bot.client import StylizeBot

log = logging.getLogger(__name__)

BUTTONS = (CancelButton, FollowUpButton, DeleteButton, ForgetButton)


class Stylize(commands.Cog):
    """Repaint a photo in the style of a painting."""

    def __init__(self, bot: "StylizeBot") -> None:
        self.bot = bot
        self.command = self._build_command(bot.settings.stylize_max_size)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.command)
        self.bot.add_dynamic_items(*BUTTONS)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.command.name)
        self.bot.remove_dynamic_items(*BUTTONS)

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
            text = messages.unknown_button(i18n.lang(interaction.locale))
            await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as error:
            log.info("cannot answer a click on an unknown button (%s)", describe(error))

    # The command

    def _build_command(self, max_size: int) -> app_commands.Command[Any, Any, None]:
        @app_commands.describe(
            content="The photo to repaint",
            style="The painting whose style to take (or pick a saved_style)",
            saved_style="One of this server's saved styles (see /styles list)",
            strength="Style against content: 1 is the default balance, higher is more style",
            size=command_text(
                "Longest side of the result in pixels (at most {max_size})", max_size=max_size
            ),
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
            strength: Optional[app_commands.Range[float, MIN_STRENGTH, MAX_STRENGTH]] = None,  # noqa: UP045
            size: Optional[app_commands.Range[int, MIN_SIZE, max_size]] = None,  # noqa: UP045
            quality: Optional[Literal["draft", "standard", "high"]] = None,  # noqa: UP045
            preserve_colors: Optional[bool] = None,  # noqa: UP045
            seed: Optional[app_commands.Range[int, 0, MAX_SEED]] = None,  # noqa: UP045
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

        command: app_commands.Command[Any, Any, None] = app_commands.Command(
            name="stylize",
            description="Repaint a photo in the style of a painting",
            callback=stylize,
        )
        command.autocomplete("saved_style")(self._saved_style_choices)
        return command

    async def _saved_style_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await choices(self.bot.journal, interaction, current)

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
            raise Refusal(messages.style_one_or_other)
        permissions.require(interaction)
        jobs = self.bot.jobs
        # The server's policy (blocked, channel, daily quota) is in memory: checked before
        # the acknowledgement, so that its refusal is private.
        member = permissions.member_of(interaction)
        admission = jobs.admit(member)
        # Acknowledge first, always: Discord drops an interaction not answered within 3 s.
        await interaction.response.defer(thinking=True)
        # The member's place is held from here, before any download: a burst of commands
        # can't all download and decode before all but a few are refused.
        with jobs.place(interaction.user.id, member=member, admission=admission):
            kept: list[tuple[str, bytes]] = []
            if saved_style is not None:
                assert interaction.guild_id is not None  # the command is guild-only
                image = await gallery.image_for(self.bot.journal, interaction.guild_id,
                                                saved_style)  # fmt: skip
                kept.append(("saved_style", image))
            uploads = [_ref("content", content)]
            if style is not None:
                uploads.append(_ref("style", style))
            await queue_job(
                self.bot, interaction, uploads, kept, admission=admission, size=size,
                quality=quality, strength=strength, preserve_colors=preserve_colors, seed=seed,
            )  # fmt: skip


async def queue_job(
    bot: "StylizeBot",
    interaction: discord.Interaction,
    uploads: list[intake.AttachmentRef],
    kept: Sequence[tuple[str, bytes]] = (),
    *,
    admission: Admission,
    origin: Optional[Origin] = None,  # noqa: UP045
    size: Optional[int] = None,  # noqa: UP045
    quality: Optional[str] = None,  # noqa: UP045
    strength: Optional[float] = None,  # noqa: UP045
    preserve_colors: Optional[bool] = None,  # noqa: UP045
    seed: Optional[int] = None,  # noqa: UP045
) -> None:
    """The path every way to a picture shares (``/stylize``, the message menus): download
    and check the pictures (the photo first, then the style: ``uploads``, then the ``kept``
    pictures the bot already holds), then journal and queue the job, within the member's
    ``admission`` (their size cap; a spoiler or not). For an interaction acknowledged with
    "thinking" (its response becomes the status), while its member's place is held
    (``jobs.place``)."""
    config = bot.settings
    jobs = bot.jobs
    conversation = conversation_of(interaction)
    max_size = config.stylize_max_size
    if admission.allowance.max_size is not None:
        max_size = min(max_size, admission.allowance.max_size)
    job_id = new_job_id()
    # The inputs go to disk while they are decoded, so that writing the job's record after
    # the checks costs only its row. A kept picture (a saved style) is decoded inside the gate
    # like an upload: a burst of commands naming a large one must not decode it many times at
    # once.
    async with jobs.staging(job_id) as stage:
        pictures = await intake.receive(
            bot.http_session,
            uploads,
            max_bytes=config.max_input_bytes,
            max_pixels=config.stylize_max_pixels,
            kept=kept,
            on_downloaded=stage,
            gate=bot.intake_gate,
        )
    # The seed is fixed now, so a job resumed after a restart paints the same picture.
    settings = build_settings(
        standard_steps=config.stylize_steps,
        default_size=config.default_size,
        max_size=max_size,
        size=size,
        quality=quality,
        strength=strength,
        preserve_colors=preserve_colors,
        seed=seed,
    ).resolved()
    # Lowered by the member's roles: say so (a default size above the cap is quietly the cap,
    # as the default is no request).
    note = None
    if size is not None and size > max_size:
        note = messages.later(messages.size_lowered, max_size)
    content_picture, style_picture = pictures
    submission = Submission(job_id, conversation, content_picture.data, (style_picture.data,),
                            settings, note=note, origin=origin,
                            spoiler=admission.spoiler)  # fmt: skip
    await jobs.accept(submission, bot.frontend.live(interaction, conversation))
    log.info(
        "job %s: queued for user %s%s (%d×%d, style %d×%d, size %d, %d steps)",
        job_id,
        interaction.user.id,
        "" if origin is None else f" from the {origin.kind} menu",
        content_picture.width,
        content_picture.height,
        style_picture.width,
        style_picture.height,
        settings.size,
        settings.steps,
    )


def _ref(label: str, attachment: discord.Attachment) -> intake.AttachmentRef:
    return intake.AttachmentRef(label, attachment.url, attachment.size, attachment.content_type)


async def setup(bot: "StylizeBot") -> None:
    await bot.add_cog(Stylize(bot))
