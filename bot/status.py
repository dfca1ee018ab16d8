"""The bot's two ways of talking back about one command, and Discord's limits on them.

``Reply`` wraps the interaction. While its token lives (15 minutes; we stop at 14 to keep a
margin) the status message is edited and the result posted through the interaction. After
that, or as soon as Discord says the token is dead (401 / 50027), the same things go through
the channel with the bot token. A status message deleted by someone (10008) is not
recreated; the result is still posted.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
from discord.utils import MISSING

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 14 * 60
"""Seconds we use an interaction token for. Discord's limit is 15 minutes."""

UNKNOWN_MESSAGE = 10008
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
INVALID_WEBHOOK_TOKEN = 50027
REQUEST_TOO_LARGE = 40005


# Ways a request to Discord can fail: refused (HTTPException) or lost on the way.
SEND_ERRORS: tuple[type[BaseException], ...] = (
    discord.HTTPException,
    aiohttp.ClientError,
    OSError,
    asyncio.TimeoutError,
)


def describe(error: BaseException) -> str:
    """For logs: status and code, or the error's type. Never its text, which may carry a
    webhook URL with the interaction token."""
    if isinstance(error, discord.HTTPException):
        return f"HTTP {error.status}, code {error.code}"
    return type(error).__name__


def token_dead(error: discord.HTTPException) -> bool:
    """Whether Discord refused the interaction token itself (expired or unknown)."""
    return error.status == 401 or error.code in (
        INVALID_WEBHOOK_TOKEN,
        UNKNOWN_WEBHOOK,
        UNKNOWN_INTERACTION,
    )


def message_gone(error: discord.HTTPException) -> bool:
    return error.code == UNKNOWN_MESSAGE


def too_large(error: discord.HTTPException) -> bool:
    return error.status == 413 or error.code == REQUEST_TOO_LARGE


class Reply:
    """The status message and result delivery for one ``/stylize``."""

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        token_lifetime: float = TOKEN_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interaction = interaction
        self.user = interaction.user
        self.upload_limit: int = interaction.filesize_limit
        self._channel_id = interaction.channel_id
        self._client = interaction.client
        # Our own clock, from when the command reached us: the snowflake's timestamp would
        # trust the two machines' clocks to agree.
        self._deadline = clock() + token_lifetime
        self._clock = clock
        self._token_ok = True
        self._message_id: int | None = None
        self._status_gone = False
        self._view: discord.ui.View | None = None

    # Where to send

    @property
    def token_usable(self) -> bool:
        return self._token_ok and self._clock() < self._deadline

    @property
    def channel(self) -> discord.abc.Messageable:
        channel = self.interaction.channel
        if isinstance(channel, discord.abc.Messageable):
            return channel
        assert self._channel_id is not None
        return self._client.get_partial_messageable(self._channel_id)

    def _note_http_error(self, error: discord.HTTPException, what: str) -> None:
        if token_dead(error):
            log.info("interaction token no longer usable (%s); using the channel", what)
            self._token_ok = False

    # The status message

    async def edit_status(
        self,
        content: str,
        *,
        view: discord.ui.View | None = MISSING,
        preview: bytes | None = None,
        clear_preview: bool = False,
        create: bool = True,
    ) -> bool:
        """Show ``content`` on the status message; False if it was not shown.

        When the status message can no longer be edited (token expired, and the bot token
        may not edit an interaction's message), a new one is posted in the channel, unless
        ``create`` is false. A status message someone deleted is left deleted.
        """
        if self._status_gone:
            return False
        if view is not MISSING:
            self._view = view
        kwargs: dict[str, Any] = {"content": content, "view": view}
        if preview is not None:
            kwargs["attachments"] = [discord.File(io.BytesIO(preview), "preview.jpg")]
        elif clear_preview:
            kwargs["attachments"] = []
        if self.token_usable:
            try:
                message = await self.interaction.edit_original_response(**kwargs)
            except discord.HTTPException as error:
                if message_gone(error):
                    self._status_gone = True
                    return False
                self._note_http_error(error, "status edit")
                if self._token_ok:
                    raise
            else:
                self._message_id = message.id
                return True
        return await self._edit_with_bot_token(kwargs, create=create)

    async def _edit_with_bot_token(self, kwargs: dict[str, Any], *, create: bool) -> bool:
        if self._message_id is not None:
            message = self.channel.get_partial_message(self._message_id)  # type: ignore[attr-defined]
            try:
                await message.edit(**kwargs)
                return True
            except discord.HTTPException as error:
                if message_gone(error):
                    self._status_gone = True
                    return False
                log.info("cannot edit the status message with the bot token (%s)", error.code)
        if not create:
            return False
        # We never learned its id, or the bot may not edit it: carry on in a new message,
        # with the Cancel button if the old one had it.
        try:
            message = await self.channel.send(
                kwargs["content"],
                view=self._view,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException:
            log.warning("cannot post a status message in channel %s", self._channel_id)
            return False
        self._message_id = message.id
        return True

    # The result

    async def post(self, content: str, file: bytes | None = None, filename: str = "") -> str | None:
        """Post a message that pings the requester; returns its link, or None if all failed.

        Tries the interaction's webhook, then the channel with the bot token, then a DM.
        """
        mention = discord.AllowedMentions(users=[self.user], everyone=False, roles=False)

        def attachment() -> discord.File | None:
            return discord.File(io.BytesIO(file), filename) if file is not None else None

        if self.token_usable:
            try:
                sent = await self.interaction.followup.send(
                    content, file=attachment() or MISSING, allowed_mentions=mention, wait=True
                )
                return sent.jump_url
            except discord.HTTPException as error:
                self._note_http_error(error, "follow-up")
                if too_large(error):
                    raise
                if self._token_ok:
                    log.warning("follow-up failed (%s); using the channel", error.code)
            except SEND_ERRORS as error:  # lost on the way: better twice than never
                log.warning("follow-up failed (%s); using the channel", describe(error))
        try:
            sent = await self.channel.send(content, file=attachment(), allowed_mentions=mention)
            return sent.jump_url
        except discord.HTTPException as error:
            if too_large(error):
                raise
            log.warning("cannot post in channel %s (%s); trying a DM", self._channel_id, error.code)
        except SEND_ERRORS as error:
            log.warning("cannot post in channel %s (%s); trying a DM", self._channel_id,
                        describe(error))  # fmt: skip
        try:
            sent = await self.user.send(content, file=attachment())
            return sent.jump_url
        except SEND_ERRORS:
            log.error("could not deliver to user %s by any route", self.user.id)
            return None
