"""The objective's inputs at one scale, and the objective as a unit.

Its values against an independent reference are in test_reference.py; here are the inputs
the reference cannot see (resizing for the style scale, colour matching) and its contract.
"""

from __future__ import annotations

import pytest
import torch

from engine.network import VGGEncoder
from engine.objective import STYLE_SIDE_CAP, GatysObjective, prepare_inputs, style_side
from engine.settings import StylizeSettings
from tests.engine_fixtures import content_image, style_image

CPU = torch.device("cpu")


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.0, 1.5, 2.0])
@pytest.mark.parametrize(("width", "height"), [(64, 64), (120, 60), (50, 90)])
def test_style_scale_sets_the_style_side_exactly(scale: float, width: int, height: int) -> None:
    style = style_image(128).resize((width, height))
    inputs = prepare_inputs(
        content_image(), [style], StylizeSettings(style_scale=scale), (64, 43), CPU
    )
    (tensor,) = inputs.styles
    assert max(tensor.shape[-2:]) == round(64 * scale)
    # The aspect ratio is kept, to the pixel.
    assert tensor.shape[-1] / tensor.shape[-2] == pytest.approx(width / height, abs=0.05)


def test_the_style_side_is_capped_unless_the_output_is_larger() -> None:
    assert style_side(1000, 8.0) == STYLE_SIDE_CAP
    assert style_side(6000, 2.0) == 6000
    assert style_side(100, 0.5) == 50


def test_inputs_in_each_colour_mode() -> None:
    content, style = content_image(), style_image(palette="warm")
    size = (64, 43)
    plain = prepare_inputs(content, [style], StylizeSettings(), size, CPU)
    assert plain.content.shape == (1, 3, 43, 64) and torch.equal(plain.content, plain.content_rgb)
    assert plain.content.min() >= 0 and plain.content.max() <= 1
    grey = prepare_inputs(content, [style], StylizeSettings(preserve_colors="luminance"), size, CPU)
    assert grey.content.shape == (1, 1, 43, 64) and grey.styles[0].shape == (1, 1, 64, 64)
    # The style's luminance takes the photo's mean and spread.
    assert grey.styles[0].mean().item() == pytest.approx(grey.content.mean().item(), abs=0.01)
    assert grey.styles[0].std().item() == pytest.approx(grey.content.std().item(), abs=0.01)
    matched = prepare_inputs(
        content, [style], StylizeSettings(preserve_colors="histogram"), size, CPU
    )
    photo_mean = plain.content.mean((0, 2, 3))
    before = (plain.styles[0].mean((0, 2, 3)) - photo_mean).norm()
    after = (matched.styles[0].mean((0, 2, 3)) - photo_mean).norm()
    assert after < 0.1 * before


def test_the_objective_is_zero_at_its_targets_and_positive_elsewhere(net: VGGEncoder) -> None:
    s = StylizeSettings(tv_weight=0.0)
    inputs = prepare_inputs(content_image(), [style_image()], s, (64, 43), CPU)
    objective = GatysObjective(net, s, inputs.content, inputs.styles)
    with torch.no_grad():
        at_content = objective(inputs.content)
        elsewhere = objective(torch.full_like(inputs.content, 0.5))
    assert at_content.content.item() == 0 and at_content.style.item() > 0
    assert elsewhere.content.item() > 0 and at_content.tv.item() == 0


def test_a_style_of_weight_zero_changes_nothing(net: VGGEncoder) -> None:
    s = StylizeSettings()
    inputs = prepare_inputs(content_image(), [style_image()], s, (64, 43), CPU)
    other = prepare_inputs(content_image(), [style_image(seed=5, palette="warm")], s, (64, 43), CPU)
    one = GatysObjective(net, s, inputs.content, inputs.styles)
    two = GatysObjective(
        net, s.replace(style_weights=(1.0, 0.0)), inputs.content, inputs.styles + other.styles
    )
    with torch.no_grad():
        assert torch.equal(torch.stack(one(inputs.content)), torch.stack(two(inputs.content)))
