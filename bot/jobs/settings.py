"""From the slash command's options to the engine's ``StylizeSettings``, and the bounds those
options share with the follow-up buttons."""

from __future__ import annotations

from typing import Literal

from engine.settings import MAX_STEPS, StylizeSettings

Quality = Literal["draft", "standard", "high"]

MIN_STRENGTH = 0.1
MAX_STRENGTH = 10.0
"""The bounds of ``/stylize``'s ``strength`` option: Stronger and Weaker stay inside them."""
MAX_SEED = 2**53 - 1
"""Discord's integer options stop at 2**53 (JavaScript's safe integers): the bound of the
``seed`` option, and of a re-rolled seed, so that it can be typed back in."""

# Steps relative to STYLIZE_STEPS ("standard"): a draft is a quick look, "high" converges
# further on fine texture.
QUALITY_FACTORS: dict[str, float] = {"draft": 0.4, "standard": 1.0, "high": 2.0}


def steps_for(quality: str | None, standard: int) -> int:
    factor = QUALITY_FACTORS[quality or "standard"]
    return max(1, min(MAX_STEPS, round(standard * factor)))


def build_settings(
    *,
    standard_steps: int,
    default_size: int,
    max_size: int,
    size: int | None = None,
    quality: str | None = None,
    strength: float | None = None,
    preserve_colors: bool | None = None,
    seed: int | None = None,
) -> StylizeSettings:
    """The job's settings; the backend supplies device and weights.

    Raises ``engine.SettingsError`` (a user-facing message) for a value out of range, which
    Discord's own option bounds should already have stopped.
    """
    return StylizeSettings(
        size=min(size or default_size, max_size),
        steps=steps_for(quality, standard_steps),
        strength=1.0 if strength is None else float(strength),
        preserve_colors="luminance" if preserve_colors else None,
        seed=seed,
    )
