"""What a job is, in one line above its status and its result: the follow-up that made it
(``bot.jobs.followups``), or the message menu whose picture it paints (``ORIGINS``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import messages
from bot.jobs import followups
from bot.journal import Derivation, JobRecord, Origin


def _link(origin: Origin) -> str:
    return messages.message_link(origin.guild_id, origin.channel_id, origin.message_id)


ORIGINS: dict[str, Callable[[Origin, int], messages.Text]] = {
    # (where the pictures came from, the member whose job it is) → the headline, written out
    # in its reader's language once known.
    "photo": lambda origin, user_id: messages.later(
        messages.photo_menu_headline, origin.style or "", _link(origin)
    ),
    "avatar": lambda origin, user_id: messages.later(
        messages.avatar_menu_headline, messages.mention(user_id), _link(origin)
    ),
}


def headline(
    *,
    derivation: Derivation | None,
    origin: Origin | None,
    settings: dict[str, Any],
    user_id: int,
) -> messages.Text | None:
    """The first line of a job's status and result, or None for a plain ``/stylize``."""
    if derivation is not None:
        return followups.headline(derivation, settings)
    if origin is not None and origin.kind in ORIGINS:
        return ORIGINS[origin.kind](origin, user_id)
    return None


def headline_of(record: JobRecord) -> messages.Text | None:
    """The headline of a journaled job."""
    return headline(
        derivation=record.derivation, origin=record.origin, settings=record.settings,
        user_id=record.conversation.user_id,
    )  # fmt: skip
