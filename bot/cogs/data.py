"""``/stylize-data forget``: any member erases what the bot keeps about them, in every server,
after pressing a confirmation button (``bot.buttons.ForgetButton``, which does the work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import i18n, messages
from bot.buttons import forget_view

if TYPE_CHECKING:
    from bot.client import StylizeBot


class Data(
    commands.GroupCog,
    group_name="stylize-data",
    group_description="What the bot keeps about you",
):
    def __init__(self, bot: StylizeBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(
        name="forget", description="Delete your pictures and records, in every server"
    )
    async def forget(self, interaction: discord.Interaction) -> None:
        # Nothing is deleted yet: the member confirms with the button, which only they see.
        lang = i18n.lang(interaction.locale)
        await interaction.response.send_message(
            messages.forget_confirm(lang),
            view=forget_view(interaction.user.id, lang),
            ephemeral=True,
        )


async def setup(bot: StylizeBot) -> None:
    await bot.add_cog(Data(bot))
