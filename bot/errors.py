"""The one place where errors become what a Discord user reads: which words of
``bot.messages`` an error gets.

The cogs and buttons raise; ``tree.on_error`` (see ``bot.client``) and ``on_click_error`` (the
follow-up buttons) call ``user_message``. Every text is short and says what to do next.
"""

from __future__ import annotations

import logging

import discord
from discord import Forbidden, app_commands

from bot import i18n, messages
from bot.i18n import Lang, Words
from bot.jobs.policy import ChannelNotAllowed, DailyQuotaReached, MemberBlocked, PolicyRefusal
from bot.jobs.queue import QueueFull, UserLimitReached
from bot.jobs.runner import ShuttingDown
from bot.jobs.service import ResultDeleted
from engine.errors import ImageError, SettingsError
from engine.jobs import BackendError

log = logging.getLogger(__name__)


class Refusal(Exception):
    """A request turned down for a reason the user can fix. ``words`` (a text of
    ``bot.messages``, usually ``messages.later(...)``) are written in the language of whoever
    reads them; ``str()`` is the English, for the logs."""

    def __init__(self, words: Words) -> None:
        super().__init__(words(i18n.english()))
        self.words = words


def user_message(lang: Lang, error: BaseException) -> str:
    """The text for any error raised while handling an interaction, in ``lang``."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, Refusal):
        return error.words(lang)
    if isinstance(error, ImageError):
        return messages.engine_words(lang, str(error), error.reason, dict(error.details))
    if isinstance(error, SettingsError):
        return messages.engine_words(lang, str(error))
    if isinstance(error, ShuttingDown):
        return messages.shutting_down(lang)
    if isinstance(error, MemberBlocked):
        return messages.member_blocked(lang)
    if isinstance(error, ChannelNotAllowed):
        return messages.channel_not_allowed(lang, list(error.channels))
    if isinstance(error, DailyQuotaReached):
        return messages.daily_quota_reached(lang, error.limit, error.resets_at)
    if isinstance(error, ResultDeleted):
        return messages.result_was_deleted(lang)
    if isinstance(error, UserLimitReached):
        return messages.user_limit_reached(lang, error.active, error.limit)
    if isinstance(error, QueueFull):
        return messages.queue_full(lang, error.waiting)
    if isinstance(error, BackendError):
        return messages.engine_unavailable(lang)
    if isinstance(error, app_commands.CommandOnCooldown):
        return messages.slow_down(lang, error.retry_after)
    if isinstance(error, app_commands.NoPrivateMessage):
        return messages.servers_only(lang)
    if isinstance(error, app_commands.BotMissingPermissions):
        return messages.bot_missing_permissions(lang, error.missing_permissions)
    if isinstance(error, app_commands.MissingPermissions):
        return messages.member_missing_permissions(lang, error.missing_permissions)
    if isinstance(error, app_commands.TransformerError):
        return messages.bad_option(lang)
    if isinstance(error, Forbidden):
        return messages.may_not_post(lang)
    return messages.generic(lang)


def is_expected(error: BaseException) -> bool:
    """Whether an error is an ordinary refusal (logged briefly) rather than a bug."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    expected = (Refusal, ImageError, SettingsError, UserLimitReached, QueueFull, ShuttingDown,
                PolicyRefusal, ResultDeleted)  # fmt: skip
    return isinstance(error, (*expected, app_commands.AppCommandError))


async def on_app_command_error(
    interaction: discord.Interaction, error: app_commands.AppCommandError
) -> None:
    """``tree.on_error``: log, then tell the user in the interaction, else in the channel."""
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    name = interaction.command.name if interaction.command else "?"
    if is_expected(error):
        log.info("/%s refused for user %s: %s", name, interaction.user.id, original)
    else:
        log.error("/%s failed for user %s", name, interaction.user.id, exc_info=original)
    # Clipped: a refusal that repeats what the member typed must still fit in a message.
    lang = i18n.lang(interaction.locale)
    text = messages.refused(lang, user_message(lang, error))
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text, view=None, attachments=[])
        else:
            await interaction.response.send_message(text, ephemeral=True)
        return
    except discord.HTTPException as http_error:
        log.info("cannot answer in the interaction (%s); using the channel", http_error.code)
    channel = interaction.channel
    if isinstance(channel, discord.abc.Messageable):
        # Posted in the channel, for the whole server: in the server's language.
        lang = i18n.lang(interaction.guild_locale or interaction.locale)
        text = messages.refused(lang, user_message(lang, error))
        try:
            await channel.send(
                messages.clip(f"{interaction.user.mention} {text}"),
                allowed_mentions=discord.AllowedMentions(users=[interaction.user]),
            )
        except discord.HTTPException:
            log.warning("cannot tell user %s why /%s failed", interaction.user.id, name)


async def on_click_error(interaction: discord.Interaction, error: Exception, *, what: str) -> None:
    """A button click's failure, in words, to the clicker alone."""
    if is_expected(error):
        log.info("%s refused for user %s: %s", what, interaction.user.id, error)
    else:
        log.error("%s failed for user %s", what, interaction.user.id, exc_info=error)
    lang = i18n.lang(interaction.locale)
    text = messages.refused(lang, user_message(lang, error))
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text, view=None, attachments=[])
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as http_error:
        log.info("cannot tell user %s why (%s)", interaction.user.id, http_error.code)
