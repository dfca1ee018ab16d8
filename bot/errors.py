"""The one place where errors become what a Discord user reads.

The cog raises; ``tree.on_error`` (see ``bot.client``) calls ``user_message``. Job failures
reported by the engine pool are worded by ``failure_message``. Every text is short and says
what to do next.
"""

from __future__ import annotations

import logging

import discord
from discord import Forbidden, app_commands

from bot import messages
from bot.queue import QueueFull, UserLimitReached
from bot.runner import ShuttingDown
from engine.errors import ImageError, SettingsError
from engine.jobs import BackendError, FailureKind

log = logging.getLogger(__name__)

GENERIC = (
    "Something went wrong on my side. Please try again; if it keeps happening, tell the "
    "server's admins."
)


class Refusal(Exception):
    """A request turned down for a reason the user can fix; ``str()`` is shown as it is."""


def too_large(label: str, size: int | None, limit: int) -> Refusal:
    got = f" is {messages.file_size(size)}" if size is not None else " is too large"
    return Refusal(
        f"The {label}{got}; the limit is {messages.file_size(limit)}. Send a smaller file."
    )


def not_an_image(label: str) -> Refusal:
    return Refusal(f"The {label} isn't an image. Attach a PNG, JPEG or WebP picture.")


def download_failed(label: str) -> Refusal:
    return Refusal(f"I couldn't download the {label} from Discord. Please send it again.")


def bad_image(label: str, error: ImageError) -> Refusal:
    return Refusal(f"The {label}: {error}")


def missing_permissions(names: list[str]) -> Refusal:
    return Refusal(
        f"I can't post your picture in this channel: I need the {', '.join(names)} "
        "permission here. Ask the server's admins, or use me in another channel."
    )


def too_thin(label: str, width: int, height: int, limit: int) -> Refusal:
    return Refusal(
        f"The {label} is {width}×{height} px: one side is more than {limit} times the other, "
        "too long and thin to paint with. Crop it closer to a square and send it again."
    )


def user_message(error: BaseException) -> str:
    """The text for any error raised while handling an interaction."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, (Refusal, ImageError, SettingsError)):
        return str(error)
    if isinstance(error, ShuttingDown):
        return "I'm restarting and not taking new pictures. Try again in a minute."
    if isinstance(error, UserLimitReached):
        jobs = "job" if error.active == 1 else "jobs"
        return (
            f"You already have {error.active} {jobs} queued or running, the most allowed "
            f"here is {error.limit}. Wait for one to finish, or cancel one."
        )
    if isinstance(error, QueueFull):
        return (
            f"The queue is full ({error.waiting} pictures waiting). Please try again in a few "
            "minutes."
        )
    if isinstance(error, BackendError):
        return "The painters are not available right now. Please try again in a few minutes."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {messages.duration(error.retry_after)}."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works in servers only."
    if isinstance(error, app_commands.BotMissingPermissions):
        return f"I need these permissions here: {', '.join(error.missing_permissions)}."
    if isinstance(error, app_commands.MissingPermissions):
        return f"You need these permissions here: {', '.join(error.missing_permissions)}."
    if isinstance(error, app_commands.TransformerError):
        return "One of the options isn't valid. Check them and try again."
    if isinstance(error, Forbidden):
        return (
            "I'm not allowed to post here. I need Send Messages, Attach Files and Embed Links "
            "in this channel."
        )
    return GENERIC


def is_expected(error: BaseException) -> bool:
    """Whether an error is an ordinary refusal (logged briefly) rather than a bug."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    expected = (Refusal, ImageError, SettingsError, UserLimitReached, QueueFull, ShuttingDown)
    return isinstance(error, (*expected, app_commands.AppCommandError))


def failure_message(kind: FailureKind | str, message: str, *, timeout: float) -> str:
    """Words for a job the engine gave up on."""
    kind = FailureKind(kind)
    if kind is FailureKind.BAD_INPUT:
        return f"❌ {message}"
    if kind is FailureKind.TIMEOUT:
        return (
            f"❌ This picture took longer than the {messages.duration(timeout)} limit and was "
            "stopped. Try a smaller size or quality: draft."
        )
    if kind is FailureKind.OUT_OF_MEMORY:
        return "❌ The server ran out of memory on this picture. Try a smaller size."
    if kind is FailureKind.WORKER_CRASHED:
        return "❌ The painter crashed while working on your picture. Please try again."
    return f"❌ {GENERIC}"


def stale_button() -> str:
    return (
        "This job isn't running any more: it finished, or the bot restarted since. "
        "Run `/stylize` again if you still want it."
    )


def unknown_button() -> str:
    return (
        "This button no longer works: it is from an older version of the bot. "
        "Run `/stylize` again if you want a new picture."
    )


def not_yours() -> str:
    return "That's not yours: only the person who asked, or a moderator, can cancel it."


def cannot_post() -> str:
    return (
        "❌ Your picture is ready, but I may not post in that channel and couldn't DM you. "
        "Ask the server's admins to let me send messages and attach files there."
    )


def inputs_lost() -> str:
    return "❌ Your pictures were lost while the bot restarted. Please run `/stylize` again."


def keeps_crashing() -> str:
    return (
        "❌ The bot stopped several times while painting this picture, so it gave up on it. "
        "Try a smaller size or quality: draft."
    )


def result_lost(mention: str) -> str:
    return f"{mention}, your picture was made but I couldn't post it here. Please try again."


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
    text = messages.clip(f"❌ {user_message(error)}")
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
        try:
            await channel.send(
                messages.clip(f"{interaction.user.mention} {text}"),
                allowed_mentions=discord.AllowedMentions(users=[interaction.user]),
            )
        except discord.HTTPException:
            log.warning("cannot tell user %s why /%s failed", interaction.user.id, name)
