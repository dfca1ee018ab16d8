"""The job core's front end on Discord (``bot.jobs.frontend``): each job's status message, and
the outbox's deliveries.

``DiscordReporter`` is one job's ``JobStatus``: progress goes through a ``Throttle`` (one status
edit per STYLIZE_PROGRESS_INTERVAL at most), the Cancel button goes on with the first edit,
and a follow-up job's headline stays on top. It writes nothing to the journal: the core
records the job's course, and hands it the end to show. ``DiscordFrontend`` makes the reporters
(for a command's live interaction, or for a job taken back from the journal) and delivers the
outbox's items through ``bot.delivery``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import discord
from discord.utils import MISSING

from bot import messages
from bot.buttons import cancel_view, result_view
from bot.delivery import Delivery, classify
from bot.i18n import Lang, Words
from bot.jobs.frontend import StatusContext, StatusFactory
from bot.journal import Conversation, JobRecord, Journal, OutboxItem
from bot.reply import SEND_ERRORS, Reply, ViewFactory
from bot.throttle import Throttle
from engine.jobs import JobProgress, Started

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusUpdate:
    text: Words
    preview: bytes | None = None

    @staticmethod
    def merge(older: StatusUpdate, newer: StatusUpdate) -> StatusUpdate:
        # A preview waiting to go out is kept even when newer text replaces the old.
        return StatusUpdate(newer.text, newer.preview or older.preview)


class DiscordReporter:
    def __init__(
        self,
        reply: Reply,
        delivery: Delivery,
        *,
        job_id: str,
        interval: float,
        make_view: ViewFactory,
        resumed: bool = False,
        headline: Words | None = None,
    ) -> None:
        """``headline``: a first line kept on every status (what a follow-up job derives
        from)."""
        self.reply = reply
        self.job_id = job_id
        self._delivery = delivery
        self._make_view = make_view
        self._view_shown = False
        self._resumed = resumed
        self._headline = headline
        self._cancelling = False
        self._throttle: Throttle[StatusUpdate] = Throttle(
            self._show, interval, merge=StatusUpdate.merge
        )

    # Updates (non-blocking)

    def queued(self, position: int) -> None:
        if not self._cancelling:
            self._throttle.push(StatusUpdate(messages.later(messages.queued, position)))

    def progress(self, event: Started | JobProgress) -> None:
        if self._cancelling:
            return
        if isinstance(event, Started):
            self._throttle.push(StatusUpdate(messages.starting))
        else:
            text = messages.later(messages.progress, event.step, event.total, event.eta)
            self._throttle.push(StatusUpdate(text, event.preview))

    def cancel_requested(self, by_user_id: int) -> None:
        self._cancelling = True
        self._throttle.push(StatusUpdate(messages.cancelling))

    async def _show(self, update: StatusUpdate) -> None:
        # The Cancel button goes on with the first edit; later edits leave it in place.
        view = MISSING if self._view_shown else self._make_view
        resumed = self._resumed and not self._view_shown
        headline = self._headline

        def text(lang: Lang) -> str:
            words = update.text(lang)
            if resumed:
                words = messages.resumed(lang, words)
            return words if headline is None else f"{headline(lang)}\n{words}"

        if await self.reply.edit_status(text, view=view, preview=update.preview):
            self._view_shown = True

    # The end, as the core hands it over

    async def settle(self) -> None:
        await self._throttle.close()

    async def notice(self, text: Words, *, tell: bool) -> None:
        try:
            await self._delivery.notice(self.reply, text, tell=tell)
        except SEND_ERRORS as error:
            raise classify(error) from error

    async def post_result(self, record: JobRecord, image: bytes) -> None:
        try:
            await self._delivery.post_result(record, self.reply, image)
        except SEND_ERRORS as error:
            raise classify(error) from error


class DiscordFrontend:
    """``bot.jobs.frontend.Frontend`` on Discord."""

    def __init__(self, client: discord.Client, journal: Journal, *, interval: float) -> None:
        """``interval``: the least time between two edits of a status (seconds)."""
        self._client = client
        self._interval = interval
        self.delivery = Delivery(
            journal,
            lambda record: Reply(client, record.conversation, status_message=record.status_message),
            result_view=lambda record: (
                lambda lang: result_view(
                    record.id, float(record.settings.get("strength", 1.0)), lang
                )
            ),
        )

    def live(self, interaction: discord.Interaction, conversation: Conversation) -> StatusFactory:
        """The statuses of a job asked for in ``interaction`` (its original response is the
        status message, before its id is known)."""

        def make(context: StatusContext) -> DiscordReporter:
            reply = Reply(self._client, conversation, interaction=interaction,
                          on_status_message=context.keep_message)  # fmt: skip
            return self._reporter(reply, context, resumed=False)

        return make

    def status(self, record: JobRecord, context: StatusContext) -> DiscordReporter:
        reply = Reply(self._client, record.conversation, status_message=record.status_message,
                      on_status_message=context.keep_message)  # fmt: skip
        return self._reporter(reply, context, resumed=True)

    async def deliver(self, item: OutboxItem) -> int | None:
        return await self.delivery(item)

    def _reporter(self, reply: Reply, context: StatusContext, *, resumed: bool) -> DiscordReporter:
        return DiscordReporter(
            reply,
            self.delivery,
            job_id=context.job_id,
            interval=self._interval,
            make_view=lambda lang: cancel_view(context.job_id, lang),
            resumed=resumed,
            headline=context.headline,
        )
