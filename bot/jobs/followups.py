"""The follow-up rules: what Re-roll, Stronger, Weaker and Bigger make of an earlier job, as one
table.

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
class Ceiling:
    """The most a follow-up may ask for: what ``/stylize`` could ask for under the server's
    settings now, which may be lower than when the earlier job ran."""

    size: int
    """``STYLIZE_MAX_SIZE``."""
    steps: int
    """The steps of ``quality: high`` at the current ``STYLIZE_STEPS``."""


@dataclass(frozen=True)
class FollowUpRule:
    label: Callable[[Lang], str]
    emoji: str | None
    derive: Callable[[dict[str, Any], int], dict[str, Any]]
    """(the earlier job's settings, a new seed) → the settings this kind changes."""
    applies: Callable[[dict[str, Any], Ceiling], bool]
    """Whether the button would change anything for a job of these settings, under the
    server's ceiling now."""
    headline: Callable[[dict[str, Any], int], messages.Text]
    """(the new job's settings, the earlier job's seed) → what the new job is, written out
    in its reader's language once known (``messages.later``)."""
    continues: bool = False
    """The new job starts from the earlier job's result (its ``initial`` image), not from
    the photo."""


def strength_of(settings: dict[str, Any]) -> float:
    return float(settings.get("strength", 1.0))


def size_of(settings: dict[str, Any]) -> int:
    return int(settings["size"])


RULES: dict[str, FollowUpRule] = {
    # Re-roll keeps everything but the seed; Stronger, Weaker and Bigger keep the seed, so
    # that only the strength (or the size) differs from the picture the member is looking at.
    "reroll": FollowUpRule(
        messages.reroll_label,
        messages.REROLL_EMOJI,
        derive=lambda settings, seed: {"seed": seed},
        applies=lambda settings, ceiling: True,
        headline=lambda settings, seed: messages.later(
            messages.reroll_headline, strength_of(settings), seed
        ),
    ),
    "stronger": FollowUpRule(
        messages.stronger_label,
        messages.STRONGER_EMOJI,
        derive=lambda settings, seed: {"strength": min(MAX_STRENGTH, strength_of(settings) * 2)},
        applies=lambda settings, ceiling: strength_of(settings) < MAX_STRENGTH,
        headline=lambda settings, seed: messages.later(
            messages.stronger_headline, strength_of(settings), seed
        ),
    ),
    "weaker": FollowUpRule(
        messages.weaker_label,
        messages.WEAKER_EMOJI,
        derive=lambda settings, seed: {"strength": max(MIN_STRENGTH, strength_of(settings) / 2)},
        applies=lambda settings, ceiling: strength_of(settings) > MIN_STRENGTH,
        headline=lambda settings, seed: messages.later(
            messages.weaker_headline, strength_of(settings), seed
        ),
    ),
    # Gatys et al.'s coarse-to-fine, one step at a time: the same job at twice the side (up
    # to STYLIZE_MAX_SIZE), starting from the result upsampled.
    "bigger": FollowUpRule(
        messages.bigger_label,
        messages.BIGGER_EMOJI,
        derive=lambda settings, seed: {"size": size_of(settings) * 2},
        applies=lambda settings, ceiling: size_of(settings) < ceiling.size,
        headline=lambda settings, seed: messages.later(
            messages.bigger_headline, size_of(settings), seed
        ),
        continues=True,
    ),
}


def derive(
    settings: dict[str, Any], kind: str, *, new_seed: int, ceiling: Ceiling
) -> dict[str, Any]:
    """The new job's settings (``StylizeSettings.to_dict()`` form) from the earlier job's, by
    the ``kind``'s rule. Size and steps are kept (or as the rule says) unless they are over
    the ``ceiling``."""
    derived = {**settings, **RULES[kind].derive(settings, new_seed)}
    derived["size"] = min(int(derived["size"]), ceiling.size)
    derived["steps"] = min(int(derived["steps"]), ceiling.steps)
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


def headline(derivation: Derivation, settings: dict[str, Any]) -> messages.Text:
    """What a follow-up job (of these settings) is, on its status and its result."""
    return RULES[derivation.kind].headline(settings, derivation.parent_seed)
