"""The bot's ways of talking back about one job, and Discord's limits on them.

``Reply`` speaks for one job, from its journal record (``bot.journal.Conversation``), so it
works the same in the process that took the command and in one started after a restart.
While the interaction token lives (15 minutes; we stop at 14 to keep a margin) the status
message is edited and results are posted through the interaction's webhook. After that, or as
soon as Discord says the token is dead (401 / 50027), the same things go through the channel
with the bot token. A status message deleted by someone (10008) is not recreated, and once
Discord refuses an edit for good (403, 404) the status message is left alone.

Texts arrive unwritten (``bot.i18n.Words``) and are written out once the route is chosen: in
the member's language through the interaction and in a DM, in the server's language through
the channel with the bot token (everyone there reads it, and the member's interaction is over).
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

from bot import i18n
from bot.i18n import Lang, Words
from bot.journal import Conversation, StatusMessage
from bot.messages import SPOILER_PREFIX

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 14 * 60
"""Seconds we use an interaction token for. Discord's limit is 15 minutes."""

UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
INVALID_WEBHOOK_TOKEN = 50027
REQUEST_TOO_LARGE = 40005
HISTORY_LIMIT = 100
"""Recent channel messages searched for a post that an interrupted attempt may have made."""


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


def permanent(error: discord.HTTPException) -> bool:
    """Refused for good (missing access, a deleted channel or message), not for the token:
    asking again only adds to the invalid requests Discord counts towards a ban."""
    return error.status in (403, 404) and not token_dead(error)


def too_large(error: discord.HTTPException) -> bool:
    return error.status == 413 or error.code == REQUEST_TOO_LARGE


def transient(error: BaseException) -> bool:
    """Worth retrying later: rate limits, Discord's server errors, and requests lost on the
    way. Anything else Discord refused (missing access, a deleted channel) stays refused."""
    if isinstance(error, discord.HTTPException):
        return error.status == 429 or error.status >= 500
    return isinstance(error, SEND_ERRORS)


ViewFactory = Callable[[Lang], discord.ui.View]
"""A message's buttons, whose labels are in the language of the route it takes."""


class Reply:
    """The status message and the posts for one job."""

    def __init__(
        self,
        client: discord.Client,
        conversation: Conversation,
        *,
        status_message: StatusMessage | None = None,
        interaction: discord.Interaction | None = None,
        on_status_message: Callable[[StatusMessage], object] | None = None,
        webhook: discord.Webhook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``interaction``: the live one, in the process that took the command (its original
        response is the status message before its id is known). ``on_status_message`` is
        told the status message's id whenever it changes, so the journal can keep it."""
        self.conversation = conversation
        self.user_id = conversation.user_id
        self.mention = f"<@{conversation.user_id}>"
        self.upload_limit = conversation.upload_limit
        self._client = client
        self._webhook = webhook
        self._interaction = interaction
        self._on_status_message = on_status_message
        self._clock = clock
        self._token_ok = bool(conversation.interaction_token)
        self._message_id = status_message.id if status_message else None
        self._message_via_channel = status_message.in_channel if status_message else False
        self._status_gone = False
        self._view: ViewFactory | None = None
        self.member_lang = i18n.lang(conversation.locale)
        """For replies to the member: through the interaction, or in a DM."""
        self.channel_lang = i18n.lang(conversation.guild_locale or conversation.locale)
        """For posts in the channel with the bot token, which the whole server reads."""

    # Where to send

    @property
    def token_usable(self) -> bool:
        return self._token_ok and self._clock() < self.conversation.token_expires_at

    @property
    def channel(self) -> discord.PartialMessageable:
        c = self.conversation
        return self._client.get_partial_messageable(c.channel_id, guild_id=c.guild_id)

    @property
    def webhook(self) -> discord.Webhook:
        if self._webhook is None:
            c = self.conversation
            self._webhook = discord.Webhook.partial(
                c.application_id, c.interaction_token, client=self._client
            )
        return self._webhook

    @property
    def mentions(self) -> discord.AllowedMentions:
        user = discord.Object(self.user_id)
        return discord.AllowedMentions(users=[user], everyone=False, roles=False)

    def note_http_error(self, error: discord.HTTPException, what: str) -> None:
        if token_dead(error) and self._token_ok:
            log.info("interaction token no longer usable (%s); using the channel", what)
            self._token_ok = False

    def _remember(self, message_id: int, *, via_channel: bool) -> None:
        changed = (message_id, via_channel) != (self._message_id, self._message_via_channel)
        self._message_id, self._message_via_channel = message_id, via_channel
        if changed and self._on_status_message is not None:
            self._on_status_message(StatusMessage(message_id, via_channel))

    # The status message

    async def edit_status(
        self,
        content: Words,
        *,
        view: ViewFactory | None = MISSING,
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

        def edit(lang: Lang) -> dict[str, Any]:
            # Made for each route: its language, and a fresh file (one request consumes it).
            kwargs: dict[str, Any] = {"content": content(lang)}
            kwargs["view"] = view(lang) if view else view
            if preview is not None:
                kwargs["attachments"] = [discord.File(io.BytesIO(preview), "preview.jpg")]
            elif clear_preview:
                kwargs["attachments"] = []
            return kwargs

        if self.token_usable and not self._message_via_channel:
            message: discord.Message | None
            try:
                if self._message_id is not None:
                    message = await self.webhook.edit_message(
                        self._message_id, **edit(self.member_lang)
                    )
                elif self._interaction is not None:
                    message = await self._interaction.edit_original_response(
                        **edit(self.member_lang)
                    )
                else:
                    message = None
            except discord.HTTPException as error:
                if permanent(error):
                    self._status_gone = True
                    return False
                self.note_http_error(error, "status edit")
                if self._token_ok:
                    raise
            else:
                if message is not None:
                    self._remember(message.id, via_channel=False)
                    return True
        return await self._edit_with_bot_token(edit(self.channel_lang), create=create)

    async def _edit_with_bot_token(self, kwargs: dict[str, Any], *, create: bool) -> bool:
        if self._message_id is not None:
            message = self.channel.get_partial_message(self._message_id)
            try:
                await message.edit(**kwargs)
                self._remember(self._message_id, via_channel=True)
                return True
            except discord.HTTPException as error:
                if permanent(error):
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
                view=self._view(self.channel_lang) if self._view else MISSING,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as error:
            log.warning("cannot post a status message in channel %s (%s)",
                        self.conversation.channel_id, describe(error))  # fmt: skip
            if permanent(error):
                self._status_gone = True
            return False
        self._remember(message.id, via_channel=True)
        return True

    # Posts (the outbox chooses the route and retries)

    async def send_interaction(
        self,
        content: Words,
        file: discord.File | None = None,
        *,
        ephemeral: bool = False,
        view: ViewFactory | None = None,
    ) -> discord.Message:
        """A follow-up through the interaction's webhook, in the member's language; raises
        what Discord refused."""
        lang = self.member_lang
        try:
            return await self.webhook.send(
                content(lang),
                file=file or MISSING,
                allowed_mentions=self.mentions,
                ephemeral=ephemeral,
                view=view(lang) if view else MISSING,
                wait=True,
            )
        except discord.HTTPException as error:
            self.note_http_error(error, "follow-up")
            raise

    async def send_channel(
        self,
        content: Words,
        file: discord.File | None = None,
        *,
        view: ViewFactory | None = None,
    ) -> discord.Message:
        """A post in the channel with the bot token, in the server's language."""
        lang = self.channel_lang
        return await self.channel.send(
            content(lang),
            file=file or MISSING,
            allowed_mentions=self.mentions,
            view=view(lang) if view else MISSING,
        )

    async def send_dm(self, content: Words, file: discord.File | None = None) -> discord.Message:
        """A direct message, in the member's language."""
        dm = await self._client.create_dm(discord.Object(self.user_id))
        return await dm.send(content(self.member_lang), file=file or MISSING)

    async def find_posted(self, filename_prefix: str) -> discord.Message | None:
        """A message by the bot in the channel, posted since the command, with an attachment
        whose name starts so (after a spoiler's ``SPOILER_``): what an attempt cut short by a
        crash may have left. ``None`` if there is none, or if the bot may not read the
        channel's history."""
        bot_user = self._client.user
        since = discord.Object(self.conversation.interaction_id)
        try:
            async for message in self.channel.history(
                limit=HISTORY_LIMIT, after=since, oldest_first=False
            ):
                if bot_user is not None and message.author.id != bot_user.id:
                    continue
                if any(
                    a.filename.removeprefix(SPOILER_PREFIX).startswith(filename_prefix)
                    for a in message.attachments
                ):
                    return message
        except discord.HTTPException as error:
            log.warning(
                "cannot read channel %s's history to look for an earlier post (%s)",
                self.conversation.channel_id,
                describe(error),
            )
        return None


def conversation_of(interaction: discord.Interaction) -> Conversation:
    """Where a job asked for in ``interaction`` is answered. Call it as soon as the
    interaction is acknowledged: the token's clock starts then, on our side (the snowflake's
    time would trust two machines' clocks to agree)."""
    assert interaction.channel_id is not None
    return Conversation(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        application_id=interaction.application_id,
        interaction_id=interaction.id,
        interaction_token=interaction.token,
        token_expires_at=time.time() + TOKEN_LIFETIME,
        upload_limit=interaction.filesize_limit,
        locale=str(interaction.locale),
        guild_locale=None if interaction.guild_locale is None else str(interaction.guild_locale),
    )
