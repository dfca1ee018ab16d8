"""The follow-up buttons' rules: derived settings, bounds, and payloads within Discord's limits."""

from __future__ import annotations

import pytest

from bot import followups, messages
from bot.followups import MAX_STRENGTH, MIN_STRENGTH, FollowUp

BASE = {"size": 48, "steps": 4, "strength": 1.0, "preserve_colors": None, "seed": 5}
JOB_ID = "0123456789abcdef0123456789abcdef"
ROOMY = followups.Ceiling(size=512, steps=600)


@pytest.mark.parametrize(
    ("kind", "strength", "expected_strength"),
    [
        (FollowUp.STRONGER, 1.0, 2.0),
        (FollowUp.STRONGER, 6.0, MAX_STRENGTH),
        (FollowUp.WEAKER, 1.0, 0.5),
        (FollowUp.WEAKER, 0.15, MIN_STRENGTH),
        (FollowUp.REROLL, 3.0, 3.0),
    ],
)
def test_derive_changes_only_what_the_button_says(
    kind: FollowUp, strength: float, expected_strength: float
) -> None:
    derived = followups.derive({**BASE, "strength": strength}, kind, new_seed=99, ceiling=ROOMY)
    assert derived["strength"] == pytest.approx(expected_strength)
    assert derived["seed"] == (99 if kind is FollowUp.REROLL else 5)
    rest = {k: v for k, v in derived.items() if k not in ("strength", "seed")}
    assert rest == {k: v for k, v in BASE.items() if k not in ("strength", "seed")}


@pytest.mark.parametrize("kind", list(FollowUp))
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
    kind: FollowUp, ceiling: followups.Ceiling, size: int, steps: int, lowered: bool
) -> None:
    derived = followups.derive(BASE, kind, new_seed=99, ceiling=ceiling)
    assert (derived["size"], derived["steps"]) == (size, steps)
    assert followups.lowered(BASE, derived) is lowered


def test_a_reroll_seed_is_never_the_old_one() -> None:
    assert all(followups.new_seed(0) != 0 for _ in range(200))
    assert all(0 <= followups.new_seed(7) <= followups.MAX_SEED for _ in range(200))


def test_result_view_is_one_row_of_three_with_short_ids() -> None:
    view = followups.result_view(JOB_ID, 1.0)
    [row] = view.to_components()
    buttons = row["components"]
    assert len(buttons) == 3 <= 5
    assert [b["label"] for b in buttons] == ["Re-roll", "Stronger", "Weaker"]
    assert all(len(b["custom_id"]) <= 100 for b in buttons)
    assert [b["custom_id"] for b in buttons] == [
        f"stylize:reroll:{JOB_ID}",
        f"stylize:stronger:{JOB_ID}",
        f"stylize:weaker:{JOB_ID}",
    ]
    assert not any(b.get("disabled") for b in buttons)


@pytest.mark.parametrize(
    ("strength", "disabled"),
    [(MAX_STRENGTH, ["Stronger"]), (MIN_STRENGTH, ["Weaker"]), (2.0, [])],
)
def test_a_button_that_would_change_nothing_is_disabled(
    strength: float, disabled: list[str]
) -> None:
    [row] = followups.result_view(JOB_ID, strength).to_components()
    assert [b["label"] for b in row["components"] if b.get("disabled")] == disabled


def test_headlines_say_what_the_job_was() -> None:
    assert messages.follow_up_headline("reroll", 1.0, 5) == "🎲 Re-roll of the picture with seed 5"
    assert messages.follow_up_headline("stronger", 2.0, 5).startswith("➕ Stronger, strength 2 ")
    assert messages.follow_up_headline("weaker", 0.5, 5).startswith("➖ Weaker, strength 0.5 ")
