"""The follow-up rules (bot.jobs.followups): derived settings, bounds, seeds, and the buttons
made from the table, within Discord's limits; and the headlines of every kind of job
(bot.jobs.origins)."""

from __future__ import annotations

import pytest

from bot import buttons, i18n, messages
from bot.jobs import followups, origins
from bot.jobs.followups import RULES
from bot.jobs.settings import MAX_SEED, MAX_STRENGTH, MIN_STRENGTH
from bot.journal import Derivation, Origin

BASE = {"size": 48, "steps": 4, "strength": 1.0, "preserve_colors": None, "seed": 5}
JOB_ID = "0123456789abcdef0123456789abcdef"
EN = i18n.lang("en-US")
ROOMY = followups.Ceiling(size=512, steps=600)


@pytest.mark.parametrize(
    ("kind", "strength", "expected_strength"),
    [
        ("stronger", 1.0, 2.0),
        ("stronger", 6.0, MAX_STRENGTH),
        ("weaker", 1.0, 0.5),
        ("weaker", 0.15, MIN_STRENGTH),
        ("reroll", 3.0, 3.0),
    ],
)
def test_derive_changes_only_what_the_button_says(
    kind: str, strength: float, expected_strength: float
) -> None:
    derived = followups.derive({**BASE, "strength": strength}, kind, new_seed=99, ceiling=ROOMY)
    assert derived["strength"] == pytest.approx(expected_strength)
    assert derived["seed"] == (99 if kind == "reroll" else 5)
    rest = {k: v for k, v in derived.items() if k not in ("strength", "seed")}
    assert rest == {k: v for k, v in BASE.items() if k not in ("strength", "seed")}


@pytest.mark.parametrize("kind", ["reroll", "stronger", "weaker"])
@pytest.mark.parametrize(
    ("ceiling", "size", "steps", "lowered"),
    [
        (followups.Ceiling(size=48, steps=4), 48, 4, False),  # the limits the job ran under
        (followups.Ceiling(size=32, steps=8), 32, 4, True),  # STYLIZE_MAX_SIZE lowered
        (followups.Ceiling(size=64, steps=2), 48, 2, True),  # STYLIZE_STEPS lowered
        (followups.Ceiling(size=16, steps=1), 16, 1, True),
    ],
)
def test_derive_keeps_within_the_servers_current_limits(
    kind: str, ceiling: followups.Ceiling, size: int, steps: int, lowered: bool
) -> None:
    derived = followups.derive(BASE, kind, new_seed=99, ceiling=ceiling)
    assert (derived["size"], derived["steps"]) == (size, steps)
    assert followups.lowered(BASE, derived) is lowered


@pytest.mark.parametrize(
    ("size", "max_size", "bigger", "applies"),
    [
        (256, 1024, 512, True),  # twice the side
        (512, 1024, 1024, True),
        (768, 1024, 1024, True),  # up to the cap
        (1024, 1024, 1024, False),  # at the cap: nothing to do
        (1024, 512, 512, False),  # over a cap lowered since
    ],
)
def test_bigger_doubles_the_side_up_to_the_cap_and_keeps_the_rest(
    size: int, max_size: int, bigger: int, applies: bool
) -> None:
    settings = {**BASE, "size": size, "strength": 3.0}
    ceiling = followups.Ceiling(size=max_size, steps=600)
    derived = followups.derive(settings, "bigger", new_seed=99, ceiling=ceiling)
    assert derived == {**settings, "size": bigger}  # the same seed, strength and steps
    assert RULES["bigger"].applies(settings, ceiling) is applies
    assert RULES["bigger"].continues
    assert not any(rule.continues for kind, rule in RULES.items() if kind != "bigger")


def test_a_reroll_seed_is_never_the_old_one() -> None:
    # A source that draws the old seed first, twice: the guard must draw again.
    draws = iter([7, 7, 8])
    assert followups.new_seed(7, lambda: next(draws)) == 8
    assert followups.new_seed(8, iter([7]).__next__) == 7


def test_random_seeds_stay_within_what_the_seed_option_accepts() -> None:
    assert all(0 <= followups.random_seed() <= MAX_SEED for _ in range(200))


def test_result_view_is_one_row_of_the_follow_ups_then_delete_with_short_ids() -> None:
    view = buttons.result_view(JOB_ID, BASE, ROOMY, EN)
    [row] = view.to_components()
    made = row["components"]
    assert len(made) == 5  # Discord's most to a row
    assert [b["label"] for b in made] == ["Re-roll", "Stronger", "Weaker", "⤢ Bigger", "Delete"]
    assert [b.get("emoji", {}).get("name") for b in made] == ["🎲", "➕", "➖", None, "🗑️"]
    assert all(len(b["custom_id"]) <= 100 for b in made)
    assert [b["custom_id"] for b in made] == [
        f"stylize:reroll:{JOB_ID}",
        f"stylize:stronger:{JOB_ID}",
        f"stylize:weaker:{JOB_ID}",
        f"stylize:bigger:{JOB_ID}",
        f"stylize:delete:{JOB_ID}",
    ]
    assert not any(b.get("disabled") for b in made)


def test_the_buttons_pattern_is_made_from_the_table() -> None:
    pattern = buttons.FollowUpButton("reroll", JOB_ID).template
    for kind in RULES:
        match = pattern.fullmatch(f"stylize:{kind}:{JOB_ID}")
        assert match is not None and match["kind"] == kind
    assert pattern.fullmatch(f"stylize:cancel:{JOB_ID}") is None
    assert pattern.fullmatch(f"stylize:delete:{JOB_ID}") is None
    assert pattern.fullmatch(f"stylize:retry:{JOB_ID}") is None


@pytest.mark.parametrize(
    ("strength", "size", "disabled"),
    [
        (MAX_STRENGTH, 48, ["Stronger"]),
        (MIN_STRENGTH, 48, ["Weaker"]),
        (2.0, 48, []),
        (2.0, 512, ["⤢ Bigger"]),  # at STYLIZE_MAX_SIZE
    ],
)
def test_a_button_that_would_change_nothing_is_disabled(
    strength: float, size: int, disabled: list[str]
) -> None:
    settings = {**BASE, "strength": strength, "size": size}
    [row] = buttons.result_view(JOB_ID, settings, ROOMY, EN).to_components()
    assert [b["label"] for b in row["components"] if b.get("disabled")] == disabled


def test_headlines_say_what_the_job_was() -> None:
    def headline(kind: str, strength: float, size: int = 48) -> str:
        settings = {**BASE, "strength": strength, "size": size}
        return followups.headline(Derivation("ab" * 16, kind, 5), settings)(EN)

    assert headline("reroll", 1.0) == "🎲 Re-roll of the picture with seed 5"
    assert headline("stronger", 2.0).startswith("➕ Stronger, strength 2 ")
    assert headline("weaker", 0.5).startswith("➖ Weaker, strength 0.5 ")
    assert headline("bigger", 1.0, 512) == "⤢ Bigger, 512 px (from the picture with seed 5)"
    assert messages.reroll_headline(EN, 1.0, 5) == headline("reroll", 1.0)


def test_a_menu_jobs_headline_says_which_message_it_came_from() -> None:
    def headline(origin: Origin | None, derivation: Derivation | None = None) -> str | None:
        text = origins.headline(derivation=derivation, origin=origin, settings=BASE, user_id=42)
        return None if text is None else text(EN)

    link = "https://discord.com/channels/7/8/9"
    assert headline(Origin("photo", 7, 8, 9, "Waves")) == (
        f"🖼️ The photo in {link}, in the saved style **Waves**"
    )
    assert headline(Origin("avatar", 7, 8, 9)) == (
        f"🖌️ <@42>'s avatar, painted like the picture in {link}"
    )
    assert headline(None) is None
    # A follow-up of a menu's job says what the follow-up did.
    bigger = Derivation("ab" * 16, "bigger", 5)
    expected = followups.headline(bigger, BASE)(EN)
    assert headline(Origin("photo", 7, 8, 9, "Waves"), bigger) == expected
