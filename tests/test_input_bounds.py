"""Pictures of any shape: every tensor the engine makes stays bounded, and the bot refuses,
with words a user can act on, what can't be made sensible."""

from __future__ import annotations

import asyncio

import pytest
import torch
from PIL import Image

from bot import errors, intake
from engine.objective import prepare_inputs
from engine.pyramid import MIN_SIDE, at_least_min_side
from engine.settings import StylizeSettings
from tests.pictures import png


@pytest.mark.parametrize(
    ("width", "height", "longest"),
    [(1_000_000, 1, 512), (1, 1_000_000, 512), (40_000, 3, 256), (5, 9, 8), (2, 70_000, 16)],
)
def test_a_style_of_any_shape_is_bounded_by_the_side_asked_for(
    width: int, height: int, longest: int
) -> None:
    w, h = at_least_min_side(width, height, longest)
    assert min(w, h) >= MIN_SIDE  # the network still has something to look at
    assert max(w, h) <= max(longest, MIN_SIDE)


def test_an_ordinary_style_keeps_its_shape() -> None:
    assert at_least_min_side(800, 600, 400) == (400, 300)
    assert at_least_min_side(100, 10, 200) == (200, 20)


def test_a_thin_style_makes_no_huge_tensor() -> None:
    # 20,000 × 1 px used to become 320,000 × 16 px: 61 MB for the input alone, and a
    # 1,000,000 × 1 px one tens of GiB per layer output.
    settings = StylizeSettings(size=64, steps=1, style_scale=1.0)
    content = Image.new("RGB", (64, 48))
    style = Image.new("RGB", (20_000, 1), (10, 200, 30))
    inputs = prepare_inputs(content, [style], settings, (64, 48), torch.device("cpu"))
    [tensor] = inputs.styles
    assert max(tensor.shape[-2:]) <= 64
    assert min(tensor.shape[-2:]) >= MIN_SIDE


@pytest.mark.parametrize(("width", "height"), [(3000, 10), (10, 3000), (1_000_000 // 64, 1)])
def test_intake_refuses_a_picture_too_thin_to_paint(width: int, height: int) -> None:
    with pytest.raises(errors.Refusal) as refused:
        asyncio.run(intake.inspect("style", png(width, height), max_pixels=10_000_000))
    text = str(refused.value)
    assert "style image" in text and f"{width}×{height}" in text and "Crop" in text


def test_intake_takes_a_panorama() -> None:
    picture = asyncio.run(intake.inspect("content", png(1600, 200), max_pixels=10**7))
    assert (picture.width, picture.height) == (1600, 200)
