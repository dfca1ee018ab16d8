"""What the outbox sends for each item: a job's result, or its final notice.

Results go to the interaction while its token lives, else to the channel mentioning the user;
if the channel refuses for good (missing access, deleted channel), to a DM; if that fails too,
an ephemeral note in the interaction where the token still allows one. Before a retry, the
channel's recent messages are searched for the result file this job would have posted, so a
crash between the post and its record does not post it twice.

The outbox (``bot.jobs.outbox``) knows nothing of Discord: what Discord or the network refused
is handed to it as ``Retry`` (worth another try later) or ``Undeliverable``.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable

import discord

from bot import messages, uploads
from bot.i18n import Lang, Words
from bot.jobs.origins import headline_of
from bot.jobs.outbox import Retry, Undeliverable
from bot.journal import JobRecord, Journal, OutboxItem
from bot.reply import SEND_ERRORS, Reply, ViewFactory, describe, token_dead, too_large, transient

log = logging.getLogger(__name__)

RESULT_BUDGETS = (1.0, 0.8)
"""Fractions of the upload limit to fit the result under: Discord's own count of a request
can exceed the file's size, so a refused upload is tried once more, smaller."""


def classify(error: BaseException) -> Retry | Undeliverable:
    """What a refusal from Discord, or a request lost on the way, means to the outbox."""
    if transient(error):
        return Retry(describe(error))
    return Undeliverable(describe(error))


class Delivery:
    """The outbox's ``Deliver``: one call per item attempt."""

    def __init__(
        self,
        journal: Journal,
        make_reply: Callable[[JobRecord], Reply],
        *,
        result_view: Callable[[JobRecord], ViewFactory | None] = lambda record: None,
    ) -> None:
        """``result_view``: the buttons the result is posted with (the follow-ups)."""
        self._journal = journal
        self._make_reply = make_reply
        self._result_view = result_view

    async def __call__(self, item: OutboxItem) -> int | None:
        try:
            return await self._deliver(item)
        except SEND_ERRORS as error:
            raise classify(error) from error

    async def _deliver(self, item: OutboxItem) -> int | None:
        record = await self._journal.get(item.job_id)
        if record is None:  # expired and purged meanwhile
            return None
        reply = self._make_reply(record)
        if item.kind == "result":
            return await self._result(record, reply, item)
        await self.notice(reply, messages.Text.loads(item.text), tell=item.kind == "notice")
        return None

    async def _result(self, record: JobRecord, reply: Reply, item: OutboxItem) -> int | None:
        assert record.result_format is not None and record.result_stats is not None
        if item.attempts > 0:
            earlier = await reply.find_posted(messages.result_stem(record.id) + ".")
            if earlier is not None:
                log.info("job %s: its result was already posted (message %s)", record.id,
                         earlier.id)  # fmt: skip
                await self._done_status(reply, record, earlier.jump_url)
                return earlier.id
        image = await self._journal.result(record.id, record.result_format)
        return await self.post_result(record, reply, image)

    async def post_result(self, record: JobRecord, reply: Reply, image: bytes) -> int:
        """Post a job's result (``image``, in ``record.result_format``) with its text and
        buttons, then show "done" on its status; returns the message id. Raises a transient
        error to retry, or ``Undeliverable`` (the user told) when Discord refuses it for good.
        For the outbox's items, and for a result the journal could not keep (a full disk),
        posted from memory."""
        assert record.result_format is not None and record.result_stats is not None
        limit = reply.upload_limit
        for fraction in RESULT_BUDGETS:
            fitted = await asyncio.to_thread(
                uploads.fit, image, record.result_format, int(limit * fraction)
            )
            info = messages.ResultInfo.from_dict(
                record.result_stats, fitted.format, len(fitted.data), refit=fitted.reencoded
            )
            content = _result_words(record, reply.mention, info, limit)
            name = messages.result_filename(fitted.format, record.id, spoiler=record.spoiler)
            try:
                message = await post(
                    reply, content, (name, fitted.data), record.id, self._result_view(record)
                )
            except discord.HTTPException as error:
                if not too_large(error):
                    raise
                log.warning("job %s: Discord refused %d bytes as too large", record.id,
                            len(fitted.data))  # fmt: skip
                continue
            await self._done_status(reply, record, message.jump_url)
            return message.id
        await self.notice(reply, messages.later(messages.result_lost, reply.mention), tell=True)
        raise Undeliverable("the result is larger than Discord accepts, even re-encoded")

    async def _done_status(self, reply: Reply, record: JobRecord, url: str | None) -> None:
        seconds = float((record.result_stats or {}).get("seconds", 0.0))
        try:
            await reply.edit_status(
                messages.later(messages.done_status, seconds, url),
                view=None, clear_preview=True, create=False,
            )  # fmt: skip
        except SEND_ERRORS as error:
            log.info("job %s: 'done' status edit failed (%s)", record.id, describe(error))

    async def notice(self, reply: Reply, text: Words, *, tell: bool) -> None:
        """Show a final state on the status message; if it is gone and ``tell``, post it."""
        try:
            shown = await reply.edit_status(text, view=None, clear_preview=True, create=False)
        except discord.HTTPException as error:
            if transient(error):
                raise
            shown = False
        if not shown and tell:
            await post(reply, lambda lang: f"{reply.mention} {text(lang)}", None, None)


def _result_words(record: JobRecord, mention: str, info: messages.ResultInfo, limit: int) -> Words:
    """The result's text (under the headline of a follow-up or a menu's job), in the language
    of its route."""
    headline = headline_of(record)

    def words(lang: Lang) -> str:
        content = messages.result(lang, mention, info, upload_limit=limit)
        if headline is None:
            return content
        return messages.clip(f"{headline(lang)}\n{content}")

    return words


async def post(
    reply: Reply,
    content: Words,
    attachment: tuple[str, bytes] | None,
    job_id: str | None,
    view: ViewFactory | None = None,
) -> discord.Message:
    """Post by the best route left; raises a transient error to be retried, a too-large
    refusal for the caller to shrink, or ``Undeliverable`` when every route refused."""

    def make_file() -> discord.File | None:
        # A File is consumed by one request: a fresh one for each route.
        if attachment is None:
            return None
        return discord.File(io.BytesIO(attachment[1]), attachment[0])

    if reply.token_usable:
        try:
            return await reply.send_interaction(content, make_file(), view=view)
        except discord.HTTPException as error:
            if too_large(error) or (transient(error) and not token_dead(error)):
                raise
            log.info("job %s: follow-up refused (%s); using the channel", job_id,
                     describe(error))  # fmt: skip
    try:
        return await reply.send_channel(content, make_file(), view=view)
    except discord.HTTPException as error:
        if too_large(error) or transient(error):
            raise
        log.warning("job %s: cannot post in channel %s (%s); trying a DM", job_id,
                    reply.conversation.channel_id, describe(error))  # fmt: skip
    try:
        return await reply.send_dm(content, make_file())
    except discord.HTTPException as error:
        if transient(error):
            raise
        log.warning("job %s: cannot DM user %s (%s)", job_id, reply.user_id, describe(error))
    if reply.token_usable:
        try:
            await reply.send_interaction(messages.cannot_post, ephemeral=True)
        except discord.HTTPException as error:
            log.warning("job %s: the ephemeral notice failed too (%s)", job_id, describe(error))
    raise Undeliverable("the channel, a DM and the interaction all refused")
