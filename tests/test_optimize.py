"""The optimisation's pieces: starting images, the optimisers the settings name, the loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.errors import StopRequested
from engine.lbfgs import LBFGS
from engine.objective import LossParts
from engine.optimize import (
    NOISE_MEAN,
    NOISE_STD,
    ClippedAdam,
    initial_image,
    optimize_image,
    optimizer_for,
)
from engine.settings import StylizeSettings


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 40, 60, generator=g), torch.rand(1, 3, 50, 70, generator=g)


def test_content_init_is_a_copy_of_the_content() -> None:
    content, style = _images()
    start = initial_image("content", content, style, seed=0)
    assert torch.equal(start, content)
    start.add_(1)
    assert not torch.equal(start, content)


def test_style_init_is_the_style_resized_to_the_content() -> None:
    content, style = _images()
    start = initial_image("style", content, style, seed=0)
    expected = F.interpolate(style, size=(40, 60), mode="bilinear", align_corners=False)
    assert torch.equal(start, expected)
    # A style already at the content's size is the start as it is.
    same = initial_image("style", content, style[..., :40, :60], seed=0)
    torch.testing.assert_close(same, style[..., :40, :60], rtol=0, atol=1e-6)


def test_noise_init_has_the_documented_mean_and_spread_and_follows_the_seed() -> None:
    content = torch.zeros(1, 3, 128, 128)
    start = initial_image("noise", content, content, seed=7)
    assert start.shape == content.shape
    assert start.min() >= 0 and start.max() <= 1
    assert start.mean().item() == pytest.approx(NOISE_MEAN, abs=0.005)
    assert start.std().item() == pytest.approx(NOISE_STD, abs=0.005)
    assert (NOISE_MEAN, NOISE_STD) == (0.5, 0.15)  # what the settings' docs promise
    assert torch.equal(start, initial_image("noise", content, content, seed=7))
    assert not torch.equal(start, initial_image("noise", content, content, seed=8))
    grey = initial_image("noise", content[:, :1], content, seed=7)
    assert grey.shape == (1, 1, 128, 128)


def test_the_settings_choose_the_optimiser_and_its_parameters() -> None:
    x = torch.zeros(10, requires_grad=True)
    lbfgs = optimizer_for(StylizeSettings(lbfgs_history=3))(x)
    assert isinstance(lbfgs, LBFGS) and lbfgs.history == 3
    assert lbfgs.bounds == (0.0, 1.0)
    adam = optimizer_for(StylizeSettings(optimizer="adam", learning_rate=0.3))(x)
    assert isinstance(adam, ClippedAdam)
    assert adam.adam.param_groups[0]["lr"] == 0.3


class _Quadratic:
    """‖x − target‖² with its minimum outside the box: the optimisers must stop at the wall."""

    def __init__(self, target: torch.Tensor) -> None:
        self.target = target
        self.calls = 0

    def __call__(self, image: torch.Tensor) -> LossParts:
        self.calls += 1
        zero = image.new_zeros(())
        return LossParts((image - self.target).square().sum(), zero, zero)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_loop_minimises_inside_the_box(optimizer: str) -> None:
    target = torch.linspace(-0.5, 1.5, 24).view(1, 1, 4, 6)
    objective = _Quadratic(target)
    seen: list[float] = []
    start = torch.full_like(target, 0.5)
    settings = StylizeSettings(optimizer=optimizer, learning_rate=0.2)
    result = optimize_image(
        start, objective, optimizer_for(settings), 40,
        on_step=lambda x, parts, total: seen.append(total.item()),
    )  # fmt: skip
    assert objective.calls == 40 and len(seen) == 40
    assert torch.equal(start, torch.full_like(target, 0.5))  # the input is left alone
    torch.testing.assert_close(result, target.clamp(0, 1), rtol=0, atol=0.02)
    assert seen[-1] < seen[0]


def test_the_loop_stops_within_one_step_of_cancel() -> None:
    objective = _Quadratic(torch.zeros(1, 1, 2, 2))
    checks = iter([False, False, True])
    with pytest.raises(StopRequested):
        optimize_image(
            torch.ones(1, 1, 2, 2), objective, optimizer_for(StylizeSettings()), 10,
            cancel=lambda: next(checks),
        )  # fmt: skip
    assert objective.calls == 2


@pytest.mark.parametrize("init", ["content", "noise", "style"])
def test_a_start_image_replaces_init_resized_to_the_content(init: str) -> None:
    content, style = _images()
    earlier = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(1))
    start = initial_image(init, content, style, seed=0, start=earlier)
    expected = F.interpolate(earlier, size=(40, 60), mode="bicubic", align_corners=False)
    assert torch.equal(start, expected.clamp(0, 1))
    assert start.min() >= 0 and start.max() <= 1
