"""The message menus (right-click a message → Apps): "Stylize this photo" and "Paint my avatar
like this". A thin adapter, like the ``/stylize`` cog: the picture is found in the message
(``bot.sources``, Discord's storage only), and the job takes ``/stylize``'s own path
(``queue_job``: the member's place, the intake, the journal, the queue).

"Stylize this photo" answers privately with a select menu of the server's saved styles. The
photo is downloaded and checked at once (attachment links expire) and kept in the journal as a
``Pick``; the select's ``custom_id`` carries the pick's id, so a choice made after a restart,
for as long as finished jobs are kept, still queues the job.

No ``from __future__ import annotations``: discord.py reads the menus' callbacks' annotations
to know they take a message.
"""

import logging
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors, gallery, i18n, intake, messages, permissions, sources
from bot.cogs.stylize import queue_job
from bot.jobs.runner import ShuttingDown
from bot.journal import Origin, Pick
from engine.jobs import new_job_id

if TYPE_CHECKING:
    from bot.client import StylizeBot

log = logging.getLogger(__name__)

PICK_PREFIX = "stylize:pick:"
MAX_OPTIONS = 25
"""Discord's limit on a select menu's options (and the gallery's default size)."""


def _bot(interaction: discord.Interaction) -> "StylizeBot":
    return cast("StylizeBot", interaction.client)


class Menus(commands.Cog):
    """More ways to a picture: a message's image, painted."""

    def __init__(self, bot: "StylizeBot") -> None:
        self.bot = bot
        self.storage = sources.DiscordStorage(bot.settings.discord_cdn_url)
        self.menus = self._build_menus()

    async def cog_load(self) -> None:
        for menu in self.menus:
            self.bot.tree.add_command(menu)
        self.bot.add_dynamic_items(PickStyleSelect)

    async def cog_unload(self) -> None:
        for menu in self.menus:
            self.bot.tree.remove_command(menu.name, type=discord.AppCommandType.message)
        self.bot.remove_dynamic_items(PickStyleSelect)

    def _build_menus(self) -> tuple[app_commands.ContextMenu, ...]:
        # Closures, not methods: discord.py's decorators mark the function they are given.
        @app_commands.guild_only()
        async def stylize_photo(interaction: discord.Interaction, message: discord.Message) -> None:
            await self.stylize_photo(interaction, message)

        @app_commands.guild_only()
        async def paint_avatar(interaction: discord.Interaction, message: discord.Message) -> None:
            await self.paint_avatar(interaction, message)

        return (
            app_commands.ContextMenu(
                name=app_commands.locale_str(messages.PHOTO_MENU), callback=stylize_photo
            ),
            app_commands.ContextMenu(
                name=app_commands.locale_str(messages.AVATAR_MENU), callback=paint_avatar
            ),
        )

    async def stylize_photo(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        """The message's image is the photo; the member picks a saved style for it."""
        jobs = self.bot.jobs
        if not jobs.accepting:
            raise ShuttingDown("not accepting jobs")
        permissions.require(interaction)
        # The server's policy first (in memory), so a blocked member or a closed channel is
        # refused before anything is fetched; the quota is checked again at the choice.
        member = permissions.member_of(interaction)
        admission = jobs.admit(member)
        config = self.bot.settings
        picture = sources.message_picture(message, "photo", self.storage)
        intake.check_declared(picture, config.max_input_bytes)  # refused privately, at once
        guild_id = interaction.guild_id
        assert guild_id is not None  # the menu is guild-only
        styles = await self.bot.journal.styles(guild_id)
        if not styles:
            text = messages.menu_gallery_empty(i18n.lang(interaction.locale))
            await interaction.response.send_message(text, ephemeral=True)
            return
        # As /stylize: the member's place is held before the download.
        with jobs.place(interaction.user.id, member=member, admission=admission):
            await interaction.response.defer(ephemeral=True, thinking=True)
            [photo] = await intake.receive(
                self.bot.http_session,
                [picture],
                max_bytes=config.max_input_bytes,
                max_pixels=config.stylize_max_pixels,
                gate=self.bot.intake_gate,
            )
        origin = Origin("photo", guild_id, message.channel.id, message.id)
        pick = Pick(new_job_id(), interaction.user.id, guild_id, origin, time.time())
        await self.bot.journal.add_pick(pick, photo.data)
        names = [style.name for style in styles][:MAX_OPTIONS]
        lang = i18n.lang(interaction.locale)
        view = discord.ui.View(timeout=None)
        view.add_item(PickStyleSelect(pick.id, names, lang))
        await interaction.edit_original_response(
            content=messages.pick_a_style(lang, len(names)), view=view
        )
        log.info("pick %s: a photo (%d×%d) from message %s waits for user %s", pick.id,
                 photo.width, photo.height, message.id, interaction.user.id)  # fmt: skip

    async def paint_avatar(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        """The member's avatar is the photo; the message's image is the style."""
        jobs = self.bot.jobs
        if not jobs.accepting:
            raise ShuttingDown("not accepting jobs")
        permissions.require(interaction)
        member = permissions.member_of(interaction)
        admission = jobs.admit(member)  # before the acknowledgement: a refusal is private
        style = sources.message_picture(message, "style", self.storage)
        intake.check_declared(style, self.bot.settings.max_input_bytes)  # refused privately
        asset = interaction.user.display_avatar.replace(size=sources.AVATAR_SIZE, format="png")
        avatar = sources.avatar_picture(asset.url, self.storage)
        origin = Origin("avatar", interaction.guild_id, message.channel.id, message.id)
        # As /stylize: acknowledged at once, the place held before any download.
        await interaction.response.defer(thinking=True)
        with jobs.place(interaction.user.id, member=member, admission=admission):
            await queue_job(
                self.bot, interaction, [avatar, style], admission=admission, origin=origin
            )


class PickStyleSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=re.escape(PICK_PREFIX) + r"(?P<pick_id>[0-9a-f]{32})",
):
    """The saved styles offered for a picked photo: a choice queues the job."""

    def __init__(
        self, pick_id: str, names: list[str] | None = None, lang: i18n.Lang | None = None
    ) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"{PICK_PREFIX}{pick_id}",
                placeholder=messages.pick_placeholder(lang or i18n.english()),
                options=[discord.SelectOption(label=name, value=name) for name in names or ()],
            )
        )
        self.pick_id = pick_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: "re.Match[str]",
        /,
    ) -> "PickStyleSelect":
        return cls(match["pick_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self._picked(interaction)
        except Exception as error:
            await errors.on_click_error(interaction, error, what=f"pick {self.pick_id}")

    async def _picked(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        jobs = bot.jobs
        if not jobs.accepting:
            raise ShuttingDown("not accepting jobs")
        permissions.require(interaction)
        lang = i18n.lang(interaction.locale)
        found = await bot.journal.pick(self.pick_id)
        if found is None:
            text = messages.pick_expired(lang, bot.settings.stylize_keep_days)
            await interaction.response.send_message(text, ephemeral=True)
            return
        pick, photo = found
        if pick.user_id != interaction.user.id:
            await interaction.response.send_message(messages.pick_not_yours(lang), ephemeral=True)
            return
        [name] = self.item.values
        assert pick.guild_id is not None  # the menu is guild-only
        # The policy now, not at the menu: the member may have been blocked, or used their
        # quota, since.
        member = permissions.member_of(interaction)
        admission = jobs.admit(member)
        style = await gallery.image_for(bot.journal, pick.guild_id, name)  # removed since?
        with jobs.place(interaction.user.id, member=member, admission=admission):
            # "Thinking" in the channel: that message becomes the job's status, as /stylize's.
            await interaction.response.defer(thinking=True)
            kept = [("photo", photo), ("saved_style", style)]
            await queue_job(bot, interaction, [], kept, admission=admission,
                            origin=replace(pick.origin, style=name))  # fmt: skip


async def setup(bot: "StylizeBot") -> None:
    await bot.add_cog(Menus(bot))
