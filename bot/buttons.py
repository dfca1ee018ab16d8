"""The buttons on a job's messages: Cancel on its status, and the follow-ups (Re-roll,
Stronger, Weaker, Bigger) and Delete on its result; and the confirmation of
``/stylize-data forget``.

Each is a ``DynamicItem`` whose ``custom_id`` carries the job id (``stylize:cancel:<32 hex>``,
``stylize:stronger:<32 hex>``, ``stylize:delete:<32 hex>``: well under Discord's 100
characters) or the member's id (``stylize:forget:<id>``), so a click on a message posted
before a restart still routes. The follow-up buttons, and the pattern of their ids, are
made from the follow-up table (``bot.jobs.followups.RULES``). A click becomes a call to the
bot's job service.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any, cast

import discord

from bot import errors, i18n, messages, permissions
from bot.errors import Refusal
from bot.i18n import Lang
from bot.jobs.followups import RULES, Ceiling
from bot.jobs.runner import ShuttingDown
from bot.reply import conversation_of

if TYPE_CHECKING:
    from bot.client import StylizeBot

log = logging.getLogger(__name__)

CANCEL_PREFIX = "stylize:cancel:"
DELETE_PREFIX = "stylize:delete:"
FORGET_PREFIX = "stylize:forget:"
FOLLOW_UP_PREFIX = "stylize:"
JOB_ID = r"(?P<job_id>[0-9a-f]{32})"
USER_ID = r"(?P<user_id>[0-9]{1,20})"


def _bot(interaction: discord.Interaction) -> StylizeBot:
    # Every interaction this bot hears comes through its own client.
    return cast("StylizeBot", interaction.client)


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.escape(CANCEL_PREFIX) + JOB_ID,
):
    """The Cancel button: its requester, or a moderator (Manage Messages), stops the job."""

    def __init__(self, job_id: str, lang: Lang | None = None) -> None:
        """``lang``: the language of the label (a click needs none: its item is rebuilt from
        the ``custom_id`` only to route it)."""
        super().__init__(
            discord.ui.Button(
                label=messages.cancel_label(lang or i18n.english()),
                style=discord.ButtonStyle.danger,
                custom_id=f"{CANCEL_PREFIX}{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> CancelButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        jobs = _bot(interaction).jobs
        owner = jobs.owner(self.job_id)
        lang = i18n.lang(interaction.locale)
        if owner is None:
            await interaction.response.send_message(messages.stale_button(lang), ephemeral=True)
            return
        is_moderator = interaction.permissions.manage_messages
        if interaction.user.id != owner and not is_moderator:
            await interaction.response.send_message(messages.not_yours(lang), ephemeral=True)
            return
        # Cancel first: an acknowledgement that fails (a slow or lost callback) must not
        # leave the job running.
        jobs.cancel(self.job_id, interaction.user.id)
        log.info("job %s: cancelled by user %s", self.job_id, interaction.user.id)
        # Acknowledge without touching the message: the job's reporter owns the status edits.
        await interaction.response.defer()


def cancel_view(job_id: str, lang: Lang) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id, lang))
    return view


class FollowUpButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.escape(FOLLOW_UP_PREFIX) + f"(?P<kind>{'|'.join(map(re.escape, RULES))}):" + JOB_ID,
):
    """One follow-up button: a click queues the derived job for whoever clicked, under their
    own limit."""

    def __init__(
        self, kind: str, job_id: str, *, disabled: bool = False, lang: Lang | None = None
    ) -> None:
        rule = RULES[kind]
        super().__init__(
            discord.ui.Button(
                label=rule.label(lang or i18n.english()),
                emoji=rule.emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"{FOLLOW_UP_PREFIX}{kind}:{job_id}",
                disabled=disabled,
            )
        )
        self.kind = kind
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> FollowUpButton:
        return cls(match["kind"], match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self._follow_up(interaction)
        except Exception as error:
            what = f"follow-up {self.kind} of {self.job_id}"
            await errors.on_click_error(interaction, error, what=what)

    async def _follow_up(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        jobs = bot.jobs
        if not jobs.accepting:
            raise ShuttingDown("not accepting jobs")
        # As /stylize: a job whose result could not be posted here is refused up front.
        permissions.require(interaction)
        # Answered before the 3 s deadline: one row and a stat of the files, then the refusal
        # or the "thinking" acknowledgement.
        # The server's policy, for the clicker: before anything else, and privately.
        member = permissions.member_of(interaction)
        admission = jobs.admit(member)
        expired = messages.follow_up_expired(
            i18n.lang(interaction.locale), bot.settings.stylize_keep_days
        )
        parent = await jobs.parent(self.job_id)
        if parent is None:
            await interaction.response.send_message(expired, ephemeral=True)
            return
        if not jobs.applies(parent, self.kind, admission):  # the limits changed since
            text = messages.follow_up_at_limit(i18n.lang(interaction.locale), self.kind)
            await interaction.response.send_message(text, ephemeral=True)
            return
        # The clicker's place is held like a command's, so a click can't slip past the limit
        # (or their daily quota) while another command of theirs is still downloading.
        with jobs.place(interaction.user.id, member=member, admission=admission):
            await interaction.response.defer(thinking=True)
            conversation = conversation_of(interaction)
            statuses = bot.frontend.live(interaction, conversation)
            job = await jobs.follow_up(parent, self.kind, conversation, statuses, admission)
        if job is None:
            await interaction.edit_original_response(content=expired)


class DeleteButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.escape(DELETE_PREFIX) + JOB_ID,
):
    """Delete: its requester, or a moderator (Manage Messages), removes the result message
    and the pictures the bot keeps for the job."""

    def __init__(self, job_id: str, lang: Lang | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=messages.delete_label(lang or i18n.english()),
                emoji=messages.DELETE_EMOJI,
                style=discord.ButtonStyle.secondary,
                custom_id=f"{DELETE_PREFIX}{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> DeleteButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self._delete(interaction)
        except Exception as error:
            await errors.on_click_error(interaction, error, what=f"delete of {self.job_id}")

    async def _delete(self, interaction: discord.Interaction) -> None:
        jobs = _bot(interaction).jobs
        record = await jobs.journal.get(self.job_id)
        # A job the journal no longer holds (expired, forgotten) is a moderator's to remove.
        owner = record.conversation.user_id if record is not None else None
        if interaction.user.id != owner and not interaction.permissions.manage_messages:
            raise Refusal(messages.later(messages.not_yours_to_delete))
        # The pictures first: a message that is already gone must not keep them.
        await jobs.delete_result(self.job_id)
        await interaction.response.defer()
        # After a component's deferral, the "original response" is the message it is on.
        with contextlib.suppress(discord.NotFound):  # someone deleted it meanwhile
            await interaction.delete_original_response()
        await interaction.followup.send(
            messages.result_deleted_now(i18n.lang(interaction.locale)), ephemeral=True
        )
        log.info("job %s: result deleted by user %s", self.job_id, interaction.user.id)


class ForgetButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.escape(FORGET_PREFIX) + USER_ID,
):
    """The confirmation of ``/stylize-data forget``: only the member it names may press it."""

    def __init__(self, user_id: int, lang: Lang | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=messages.forget_confirm_label(lang or i18n.english()),
                style=discord.ButtonStyle.danger,
                custom_id=f"{FORGET_PREFIX}{user_id}",
            )
        )
        self.user_id = user_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ForgetButton:
        return cls(int(match["user_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self._forget(interaction)
        except Exception as error:
            await errors.on_click_error(interaction, error, what="forget")

    async def _forget(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.user_id:
            raise Refusal(messages.later(messages.forget_not_yours))
        # An update of the confirmation itself: the button goes, the answer takes its place.
        await interaction.response.defer()
        jobs = _bot(interaction).jobs
        forgotten = await jobs.forget(self.user_id, None, by_member=True)
        text = messages.forgotten(
            i18n.lang(interaction.locale),
            forgotten.jobs,
            forgotten.files,
            forgotten.bytes,
            forgotten.styles,
            who=None,
        )
        await interaction.edit_original_response(content=text, view=None)


def forget_view(user_id: int, lang: Lang) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton(user_id, lang))
    return view


def result_view(
    job_id: str, settings: dict[str, Any], ceiling: Ceiling, lang: Lang
) -> discord.ui.View:
    """The buttons under a result of these settings: one row (Discord allows five to a row),
    one per follow-up kind, those that would change nothing under ``ceiling`` disabled, then
    Delete; labelled in ``lang``."""
    view = discord.ui.View(timeout=None)
    for kind, rule in RULES.items():
        applies = rule.applies(settings, ceiling)
        view.add_item(FollowUpButton(kind, job_id, disabled=not applies, lang=lang))
    view.add_item(DeleteButton(job_id, lang))
    return view


def has_handler(
    client: discord.Client, component_type: int, custom_id: str, message_id: int | None
) -> bool:
    """Whether discord.py hands this click to an item: the test its view store's dispatch
    makes (a registered ``DynamicItem`` template matches the whole ``custom_id``, or a view
    listens for that component on that message or on any). discord.py has no public way to
    ask; if its internals change, say yes: better no answer than a second one."""
    try:
        store = client._connection._view_store
        patterns = list(store._dynamic_items)
        views = store._views
    except AttributeError:
        return True
    if any(pattern.fullmatch(custom_id) for pattern in patterns):
        return True
    key = (component_type, custom_id)
    return any(key in views.get(entity, {}) for entity in (message_id, None))
