"""``/stylize-admin``: the server decides where the bot works, who may use it and how much,
and can see how it is doing. A thin adapter to the job service's policy book
(``bot.jobs.policy``), which writes every change to the journal and applies it at once.

Discord sets default permissions on a top-level command only, so ``default_permissions``
(Manage Server) is on the group; every command checks Manage Server again when it runs, since
admins may open the group to others in the server's Integrations settings. Every answer is
private: it is for the admin who asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional, Union

import discord
from discord import app_commands
from discord.ext import commands

from bot import i18n, messages
from bot.errors import Refusal
from bot.jobs.policy import PolicyBook
from bot.journal import RoleLimit, SpoilerMode
from engine.settings import MIN_SIZE

if TYPE_CHECKING:
    from bot.client import StylizeBot

MAX_DAILY = 10_000


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(
    commands.GroupCog,
    group_name="stylize-admin",
    group_description="Where the bot works here, who may use it and how much",
):
    def __init__(self, bot: StylizeBot) -> None:
        self.bot = bot
        super().__init__()

    @property
    def policies(self) -> PolicyBook:
        return self.bot.jobs.policies

    @app_commands.command(name="channels", description="Choose the channels the bot works in")
    @app_commands.describe(
        add="Let the bot work in this channel too",
        remove="Stop the bot working in this channel",
        everywhere="True: let the bot work in every channel again",
    )
    async def channels(
        self,
        interaction: discord.Interaction,
        add: Optional[Union[discord.TextChannel, discord.ForumChannel]] = None,  # noqa: UP007, UP045
        remove: Optional[Union[discord.TextChannel, discord.ForumChannel]] = None,  # noqa: UP007, UP045
        everywhere: Optional[bool] = None,  # noqa: UP045
    ) -> None:
        guild_id = _manager_guild(interaction)
        current = set(self.policies.policy(guild_id).channels)
        if everywhere:
            current = set()
        if add is not None:
            current.add(add.id)
        if remove is not None:
            current.discard(remove.id)
        if add is None and remove is None and not everywhere:
            raise Refusal(messages.later(messages.channels_usage))
        policy = await self.policies.set_channels(guild_id, frozenset(current))
        lang = i18n.lang(interaction.locale)
        text = (
            messages.channels_set(lang, sorted(policy.channels))
            if policy.channels
            else messages.channels_everywhere(lang)
        )
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="limits", description="Set a role's daily pictures and size")
    @app_commands.describe(
        role="The role (@everyone: every member's default)",
        daily="Pictures a member may ask for per day (UTC); leave out for no limit",
        max_size="Longest side of a result in pixels; leave out for the bot's own limit",
    )
    async def limits(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        daily: Optional[app_commands.Range[int, 0, MAX_DAILY]] = None,  # noqa: UP045
        max_size: Optional[app_commands.Range[int, MIN_SIZE, 16384]] = None,  # noqa: UP045
    ) -> None:
        guild_id = _manager_guild(interaction)
        policy = await self.policies.set_role_limit(guild_id, RoleLimit(role.id, daily, max_size))
        name = messages.role_mention(role.id, guild_id)
        lang = i18n.lang(interaction.locale)
        if daily is None and max_size is None:
            text = messages.limits_removed(lang, name)
        else:
            everyone = policy.limit_of(guild_id)
            text = messages.limits_set(
                lang, name, daily, max_size, everyone_limited=everyone is not None
            )
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="block", description="Stop a member from using the bot here")
    @app_commands.describe(member="The member to block")
    async def block(self, interaction: discord.Interaction, member: discord.Member) -> None:
        guild_id = _manager_guild(interaction)
        await self.policies.set_blocked(guild_id, member.id, True)
        await interaction.response.send_message(
            messages.member_blocked_now(i18n.lang(interaction.locale), member.mention),
            ephemeral=True,
        )

    @app_commands.command(name="unblock", description="Let a blocked member use the bot again")
    @app_commands.describe(member="The member to unblock")
    async def unblock(self, interaction: discord.Interaction, member: discord.Member) -> None:
        guild_id = _manager_guild(interaction)
        await self.policies.set_blocked(guild_id, member.id, False)
        await interaction.response.send_message(
            messages.member_unblocked(i18n.lang(interaction.locale), member.mention), ephemeral=True
        )

    @app_commands.command(name="spoiler", description="Post results as spoilers")
    @app_commands.describe(mode="off, always, or outside age-restricted (NSFW) channels")
    async def spoiler(
        self,
        interaction: discord.Interaction,
        mode: Literal["off", "always", "outside_nsfw"],
    ) -> None:
        guild_id = _manager_guild(interaction)
        chosen: SpoilerMode = mode
        await self.policies.set_spoiler(guild_id, chosen)
        await interaction.response.send_message(
            messages.spoiler_set(i18n.lang(interaction.locale), mode), ephemeral=True
        )

    @app_commands.command(name="status", description="The queue, the engine and today's jobs")
    async def status(self, interaction: discord.Interaction) -> None:
        guild_id = _manager_guild(interaction)
        status = await self.bot.jobs.status(guild_id)
        text = messages.service_status(
            i18n.lang(interaction.locale),
            waiting=status.waiting,
            running=status.running,
            capacity=status.capacity,
            devices=list(status.devices),
            outbox_backlog=status.outbox_backlog,
            jobs_today=status.today.jobs,
            failures_today=status.today.failures,
        )
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="forget", description="Delete what the bot keeps about a member")
    @app_commands.describe(member="The member whose pictures and records to delete")
    async def forget(self, interaction: discord.Interaction, member: discord.User) -> None:
        guild_id = _manager_guild(interaction)
        # Cancelling their jobs may take a moment (a running one stops at its next step).
        await interaction.response.defer(ephemeral=True, thinking=True)
        forgotten = await self.bot.jobs.forget(member.id, guild_id, by_member=False)
        text = messages.forgotten(
            i18n.lang(interaction.locale),
            forgotten.jobs,
            forgotten.files,
            forgotten.bytes,
            forgotten.styles,
            who=member.mention,
        )
        await interaction.edit_original_response(content=text)

    @app_commands.command(name="show", description="Show how the bot is set up in this server")
    async def show(self, interaction: discord.Interaction) -> None:
        guild_id = _manager_guild(interaction)
        policy = self.policies.policy(guild_id)
        text = messages.server_policy(
            i18n.lang(interaction.locale),
            guild_id,
            sorted(policy.channels),
            [(limit.role_id, limit.daily, limit.max_size) for limit in policy.limits],
            sorted(policy.blocked),
            policy.spoiler,
        )
        await interaction.response.send_message(text, ephemeral=True)


def _manager_guild(interaction: discord.Interaction) -> int:
    """The guild id, once the member is known to hold Manage Server (checked here as well as
    by Discord, since admins may open the group to everyone)."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    if not interaction.permissions.manage_guild:
        raise Refusal(messages.later(messages.admin_needs_manage_server))
    return interaction.guild_id


async def setup(bot: StylizeBot) -> None:
    await bot.add_cog(Admin(bot))
