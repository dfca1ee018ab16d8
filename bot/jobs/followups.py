"""The follow-up rules: what Re-roll, Stronger and Weaker make of an earlier job, as one table.

Each entry of ``RULES`` is one kind of follow-up: its button's words, how it derives the new
job's settings, when it applies, and the headline its job shows. A new kind is one entry: the
buttons (``bot.buttons``) are made from this table, and their ``custom_id`` pattern from its
keys. The kind (the key) is what the journal keeps in ``Derivation.kind``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot import messages
from bot.i18n import Lang
from bot.jobs.settings import MAX_SEED, MAX_STRENGTH, MIN_STRENGTH
from bot.journal import Derivation

SeedSource = Callable[[], int]
"""Draws a seed in ``[0, MAX_SEED]``."""


@dataclass(frozen=True)
class FollowUpRule:
    label: Callable[[Lang], str]
    emoji: str
    derive: Callable[[dict[str, Any], int], dict[str, Any]]
    """(the earlier job's settings, a new seed) → the settings this kind changes."""
    applies: Callable[[float], bool]
    """Whether the button would change anything for a job of this strength."""
    headline: Callable[[Lang, float, int], str]
    """(a language, the new job's strength, the earlier job's seed) → what the new job is: a
    function of ``bot.messages``."""


def strength_of(settings: dict[str, Any]) -> float:
    return float(settings.get("strength", 1.0))


RULES: dict[str, FollowUpRule] = {
    # Re-roll keeps everything but the seed; Stronger and Weaker keep the seed, so that only
    # the strength differs from the picture the member is looking at.
    "reroll": FollowUpRule(
        messages.reroll_label,
        messages.REROLL_EMOJI,
        derive=lambda settings, seed: {"seed": seed},
        applies=lambda strength: True,
        headline=messages.reroll_headline,
    ),
    "stronger": FollowUpRule(
        messages.stronger_label,
        messages.STRONGER_EMOJI,
        derive=lambda settings, seed: {"strength": min(MAX_STRENGTH, strength_of(settings) * 2)},
        applies=lambda strength: strength < MAX_STRENGTH,
        headline=messages.stronger_headline,
    ),
    "weaker": FollowUpRule(
        messages.weaker_label,
        messages.WEAKER_EMOJI,
        derive=lambda settings, seed: {"strength": max(MIN_STRENGTH, strength_of(settings) / 2)},
        applies=lambda strength: strength > MIN_STRENGTH,
        headline=messages.weaker_headline,
    ),
}


@dataclass(frozen=True)
class Ceiling:
    """The most a follow-up may ask for: what ``/stylize`` could ask for under the server's
    settings now, which may be lower than when the earlier job ran."""

    size: int
    """``STYLIZE_MAX_SIZE``."""
    steps: int
    """The steps of ``quality: high`` at the current ``STYLIZE_STEPS``."""


def derive(
    settings: dict[str, Any], kind: str, *, new_seed: int, ceiling: Ceiling
) -> dict[str, Any]:
    """The new job's settings (``StylizeSettings.to_dict()`` form) from the earlier job's, by
    the ``kind``'s rule. Size and steps are kept unless they are over the ``ceiling``."""
    derived = {**settings, **RULES[kind].derive(settings, new_seed)}
    derived["size"] = min(int(settings["size"]), ceiling.size)
    derived["steps"] = min(int(settings["steps"]), ceiling.steps)
    return derived


def lowered(settings: dict[str, Any], derived: dict[str, Any]) -> bool:
    """Whether ``derive`` had to lower the size or the steps to the server's ceiling."""
    return any(int(derived[k]) < int(settings[k]) for k in ("size", "steps"))


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def new_seed(old: int, source: SeedSource = random_seed) -> int:
    """A seed for a re-roll, never the old one."""
    while True:
        seed = source()
        if seed != old:
            return seed


def headline(derivation: Derivation, strength: float) -> messages.Text:
    """What a follow-up job is, on its status and its result."""
    rule = RULES[derivation.kind]
    return messages.later(rule.headline, strength, derivation.parent_seed)
