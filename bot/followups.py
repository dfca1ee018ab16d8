"""The follow-up buttons on a result: Re-roll, Stronger and Weaker.

Each button is a ``DynamicItem`` whose ``custom_id`` carries the action and the job id
(``stylize:stronger:<32 hex>``, 49 characters, well under Discord's 100), so a click on a
message posted before a restart still routes. The click itself is handled by the feature that
owns the jobs (``FollowUpHandler``, the stylize cog); this module holds the buttons, the rule
that derives the new job's settings, and nothing else.
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import discord

from bot import errors, messages

log = logging.getLogger(__name__)

PREFIX = "stylize:"
MIN_STRENGTH = 0.1
MAX_STRENGTH = 10.0
"""The bounds of ``/stylize``'s ``strength`` option: Stronger and Weaker stay inside them."""
MAX_SEED = 2**53 - 1
"""Discord's integer options stop at 2**53, so a re-rolled seed can be typed back in."""


class FollowUp(enum.Enum):
    REROLL = "reroll"
    STRONGER = "stronger"
    WEAKER = "weaker"


LABELS: dict[FollowUp, tuple[str, str]] = {
    FollowUp.REROLL: ("Re-roll", "🎲"),
    FollowUp.STRONGER: ("Stronger", "➕"),
    FollowUp.WEAKER: ("Weaker", "➖"),
}


def custom_id(kind: FollowUp, job_id: str) -> str:
    return f"{PREFIX}{kind.value}:{job_id}"


@dataclass(frozen=True)
class Ceiling:
    """The most a follow-up may ask for: what ``/stylize`` could ask for under the server's
    settings now, which may be lower than when the earlier job ran."""

    size: int
    """``STYLIZE_MAX_SIZE``."""
    steps: int
    """The steps of ``quality: high`` at the current ``STYLIZE_STEPS``."""


def derive(
    settings: dict[str, Any], kind: FollowUp, *, new_seed: int, ceiling: Ceiling
) -> dict[str, Any]:
    """The new job's settings (``StylizeSettings.to_dict()`` form) from the earlier job's.

    Re-roll keeps everything but the seed; Stronger and Weaker keep the seed, so that only the
    strength differs from the picture the member is looking at. Size and steps are kept
    unless they are over the ``ceiling``."""
    derived = dict(settings)
    strength = float(settings.get("strength", 1.0))
    if kind is FollowUp.REROLL:
        derived["seed"] = new_seed
    elif kind is FollowUp.STRONGER:
        derived["strength"] = min(MAX_STRENGTH, strength * 2)
    else:
        derived["strength"] = max(MIN_STRENGTH, strength / 2)
    derived["size"] = min(int(settings["size"]), ceiling.size)
    derived["steps"] = min(int(settings["steps"]), ceiling.steps)
    return derived


def lowered(settings: dict[str, Any], derived: dict[str, Any]) -> bool:
    """Whether ``derive`` had to lower the size or the steps to the server's ceiling."""
    return any(int(derived[k]) < int(settings[k]) for k in ("size", "steps"))


def new_seed(old: int) -> int:
    """A seed for a re-roll, never the old one."""
    while True:
        seed = secrets.randbelow(MAX_SEED + 1)
        if seed != old:
            return seed


def can_apply(kind: FollowUp, strength: float) -> bool:
    """False where the button would change nothing (strength already at its bound)."""
    if kind is FollowUp.STRONGER:
        return strength < MAX_STRENGTH
    if kind is FollowUp.WEAKER:
        return strength > MIN_STRENGTH
    return True


@runtime_checkable
class FollowUpHandler(Protocol):
    """The feature that queues a follow-up job for a click."""

    async def follow_up(
        self, interaction: discord.Interaction, job_id: str, kind: FollowUp
    ) -> None: ...


class FollowUpButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.escape(PREFIX) + r"(?P<kind>reroll|stronger|weaker):(?P<job_id>[0-9a-f]{32})",
):
    """One follow-up button; a click goes to whichever loaded cog is a ``FollowUpHandler``."""

    def __init__(self, kind: FollowUp, job_id: str, *, disabled: bool = False) -> None:
        label, emoji = LABELS[kind]
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=custom_id(kind, job_id),
                disabled=disabled,
            )
        )
        self.kind = kind
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button,
        match: re.Match[str],
        /,
    ) -> FollowUpButton:
        return cls(FollowUp(match["kind"]), match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        client: Any = interaction.client
        handler = next(
            (cog for cog in client.cogs.values() if isinstance(cog, FollowUpHandler)), None
        )
        if handler is None:
            await interaction.response.send_message(errors.stale_button(), ephemeral=True)
            return
        try:
            await handler.follow_up(interaction, self.job_id, self.kind)
        except Exception as error:
            await answer_error(interaction, error, what=f"{self.kind.value} of {self.job_id}")


def result_view(job_id: str, strength: float) -> discord.ui.View:
    """The buttons under a result: one row of three (Discord allows five to a row)."""
    view = discord.ui.View(timeout=None)
    for kind in FollowUp:
        view.add_item(FollowUpButton(kind, job_id, disabled=not can_apply(kind, strength)))
    return view


async def answer_error(interaction: discord.Interaction, error: Exception, *, what: str) -> None:
    """A click's failure, in words, to the clicker alone."""
    if errors.is_expected(error):
        log.info("follow-up %s refused for user %s: %s", what, interaction.user.id, error)
    else:
        log.error("follow-up %s failed for user %s", what, interaction.user.id, exc_info=error)
    text = messages.clip(f"❌ {errors.user_message(error)}")
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text, view=None, attachments=[])
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as http_error:
        log.info("cannot tell user %s why (%s)", interaction.user.id, http_error.code)
