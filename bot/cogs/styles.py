"""``/styles add|remove|list``: the server's gallery of saved styles, a thin adapter to
``bot.gallery``. The styles live in the bot's journal, and their pictures are decoded
through the bot's intake gate, like a command's.

Discord sets default permissions on a top-level command only, so ``default_permissions``
(Manage Server) is on the group: admins can open it to others in the server's Integrations
settings. ``add`` and ``remove`` check Manage Server again when they run, so opening the group
up shares the gallery's ``list`` and nothing more.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Optional

import discord
from discord import app_commands
from discord.ext import commands

from bot import gallery, i18n, intake, messages
from bot.errors import Refusal
from bot.journal import Journal

if TYPE_CHECKING:
    from bot.client import StylizeBot


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Styles(commands.GroupCog, group_name="styles", group_description="Saved styles"):
    def __init__(self, bot: StylizeBot) -> None:
        self.bot = bot
        config = bot.settings
        self.limits = gallery.Limits(config.stylize_gallery_max_styles, config.gallery_max_bytes)
        super().__init__()

    # Borrowed from the bot when used (the tree can be built before they exist).

    @property
    def journal(self) -> Journal:
        return self.bot.journal

    @property
    def gate(self) -> intake.Gate:
        return self.bot.intake_gate

    @app_commands.command(name="add", description="Save a painting as one of this server's styles")
    @app_commands.describe(
        name="What members will pick it by", image="The painting whose style to keep"
    )
    async def add(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, gallery.MAX_NAME],
        image: discord.Attachment,
    ) -> None:
        guild_id = _manager_guild(interaction)
        gallery.clean_name(name)  # a bad name is refused before the download
        await interaction.response.defer(thinking=True)
        config = self.bot.settings
        [picture] = await intake.receive(
            self.bot.http_session,
            [intake.AttachmentRef("style", image.url, image.size, image.content_type)],
            max_bytes=config.max_input_bytes,
            max_pixels=config.stylize_max_pixels,
            gate=self.gate,
        )
        saved = await gallery.add(
            self.journal,
            guild_id,
            name,
            picture.data,
            interaction.user.id,
            self.limits,
            gate=self.gate,
        )
        lang = i18n.lang(interaction.locale)
        await interaction.edit_original_response(content=messages.gallery_added(lang, saved))

    @app_commands.command(name="remove", description="Remove one of this server's styles")
    @app_commands.describe(name="The style to remove")
    async def remove(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 100]
    ) -> None:
        guild_id = _manager_guild(interaction)
        if not await self.journal.remove_style(guild_id, name):
            raise Refusal(messages.later(messages.gallery_no_such_style, name))
        text = messages.gallery_removed(i18n.lang(interaction.locale), messages.echo(name))
        await interaction.response.send_message(text)

    @remove.autocomplete("name")
    async def remove_name(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await choices(self.journal, interaction, current)

    @app_commands.command(name="list", description="Show this server's saved styles")
    @app_commands.describe(page="Which page (five styles to a page)")
    async def list_styles(
        self,
        interaction: discord.Interaction,
        page: Optional[app_commands.Range[int, 1, 1000]] = None,  # noqa: UP045
    ) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(thinking=True)
        styles = await self.journal.styles(interaction.guild_id)
        lang = i18n.lang(interaction.locale)
        if not styles:
            await interaction.edit_original_response(content=messages.gallery_empty(lang))
            return
        shown, page, pages = gallery.page_of(styles, page or 1)
        embeds, files = [], []
        for index, style in enumerate(shown):
            thumbnail = await self.journal.style_image(
                interaction.guild_id, style.name, thumbnail=True
            )
            embed = discord.Embed(
                title=style.name,
                description=messages.style_entry(lang, style.added_by, style.size),
            )
            if thumbnail is not None:
                filename = f"style-{index}.jpg"
                files.append(discord.File(io.BytesIO(thumbnail), filename))
                embed.set_thumbnail(url=f"attachment://{filename}")
            embeds.append(embed)
        await interaction.edit_original_response(
            content=messages.gallery_page(lang, page, pages, len(styles)), embeds=embeds,
            attachments=files,
        )  # fmt: skip


def _manager_guild(interaction: discord.Interaction) -> int:
    """The guild id, once the member is known to hold Manage Server (checked here as well as by
    Discord, since admins may open the group to everyone)."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    if not interaction.permissions.manage_guild:
        raise Refusal(messages.gallery_needs_manage_server)
    return interaction.guild_id


async def choices(
    journal: Journal, interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Autocomplete from the server's gallery."""
    if interaction.guild_id is None:
        return []
    names = await gallery.suggestions(journal, interaction.guild_id, current)
    return [app_commands.Choice(name=n, value=n) for n in names]


async def setup(bot: StylizeBot) -> None:
    await bot.add_cog(Styles(bot))
