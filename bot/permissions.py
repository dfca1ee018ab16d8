"""What the bot must be allowed in a channel to carry a /stylize job through.

Checked on ``interaction.app_permissions`` when the command arrives: a job accepted where the
bot may not post would run for minutes, then have nowhere to go, and every progress edit on
the way would be one more refused request counted towards Discord's ban on invalid ones.
"""

from __future__ import annotations

import discord

from bot import messages
from bot.errors import Refusal
from bot.jobs.policy import MemberContext

NEEDED: tuple[str, ...] = ("send_messages", "attach_files")
"""Permission flags (``bot.messages.permission_name`` names them as Discord's settings do).
The result and the previews are attachments; the bot sends no embeds, so Embed Links is not
asked for. Past the interaction token's 15 minutes, everything goes through the channel with
the bot's own permissions."""

IN_THREADS = "send_messages_in_threads"
"""In a thread, Discord checks this one instead of Send Messages."""

THREAD_TYPES = frozenset(
    {
        discord.ChannelType.public_thread,
        discord.ChannelType.private_thread,
        discord.ChannelType.news_thread,
    }
)


def missing(permissions: discord.Permissions, *, in_thread: bool) -> list[str]:
    """The flags of the permissions the bot lacks."""
    needed = [IN_THREADS if in_thread and flag == "send_messages" else flag for flag in NEEDED]
    return [flag for flag in needed if not getattr(permissions, flag)]


def in_thread(channel: object) -> bool:
    return getattr(channel, "type", None) in THREAD_TYPES


def require(interaction: discord.Interaction) -> None:
    """Refuse a job whose result could not be posted where it was asked for: before anything
    else, and in the interaction's answer, which needs no channel permission."""
    lacking = missing(interaction.app_permissions, in_thread=in_thread(interaction.channel))
    if lacking:
        raise Refusal(messages.later(messages.missing_permissions, lacking))


def member_of(interaction: discord.Interaction) -> MemberContext:
    """Who asks and where, for the server's policy: their roles (from the bot's cache of the
    server, @everyone included) and whether the channel is age-restricted."""
    assert interaction.channel_id is not None
    user = interaction.user
    roles = tuple(role.id for role in user.roles) if isinstance(user, discord.Member) else ()
    is_nsfw = getattr(interaction.channel, "is_nsfw", None)
    return MemberContext(
        user_id=user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        role_ids=roles,
        nsfw=bool(is_nsfw()) if callable(is_nsfw) else False,
        parent_id=getattr(interaction.channel, "parent_id", None),
    )
