"""Gatys et al.'s objective written a second time, against the losses stylize() reports.

Nothing here calls the engine's network, loss or colour code: the reference is torchvision's
own VGG19 ``features`` holding the engine's weights, and the objective as the paper and the
README define it, computed in float64. stylize() reports, at step 1, the losses of its
starting image: the content, or the first style resized to it. Each case runs one step at
48 px, so the whole table takes a second or two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from engine.network import VGGEncoder, random_state
from engine.progress import Losses, Progress
from engine.settings import StylizeSettings
from engine.transfer import stylize
from tests.engine_fixtures import NET_SEED, content_image, style_image

TOLERANCE = 1e-4  # relative

# The paper's names for VGG19's layers: five blocks of 2, 2, 4, 4, 4 convolutions, each
# followed by its ReLU, and a pool closing each block.
NAMES: list[str] = []
for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
    for i in range(1, convs + 1):
        NAMES += [f"conv{block}_{i}", f"relu{block}_{i}"]
    NAMES.append(f"pool{block}")

# torchvision's ImageNet statistics, which VGG19 was trained with.
MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def vgg() -> nn.Sequential:
    # make_layers(cfgs["E"]) is exactly vgg19().features, without building the classifier.
    features = make_layers(cfgs["E"])[: NAMES.index("relu5_1") + 1]
    features.load_state_dict(random_state(NET_SEED))  # the weights of conftest's `net`
    for module in features:
        if isinstance(module, nn.ReLU):
            module.inplace = False  # each layer's output is kept, so nothing may overwrite it
    return features.double().eval().requires_grad_(False)


def as_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float64) / 255
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """Y of YIQ (the paper's colour space): 0.299 R + 0.587 G + 0.114 B."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype).view(1, 3, 1, 1)
    return (rgb * weights).sum(1, keepdim=True)


def match_mean_and_std(y: torch.Tensor, to: torch.Tensor) -> torch.Tensor:
    """Eq. 1 of Gatys et al. 2017: the style's luminance given the photo's mean and spread."""
    return ((y - y.mean()) / y.std() * to.std() + to.mean()).clamp(0, 1)


def features(vgg: nn.Sequential, image: torch.Tensor, pooling: str) -> dict[str, torch.Tensor]:
    x = (image.expand(-1, 3, -1, -1) - MEAN) / STD  # a grey image is seen as grey RGB
    out = {}
    for name, module in zip(NAMES, vgg):
        if name.startswith("pool") and pooling == "avg":
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
        else:
            x = module(x)
        out[name] = x
    return out


def gram(f: torch.Tensor) -> torch.Tensor:
    """Channel correlations averaged over the positions: C × C."""
    m = f[0].reshape(f.shape[1], -1)
    return m @ m.T / m.shape[1]


def relative_error(value: torch.Tensor, target: torch.Tensor) -> float:
    return float(((value - target) ** 2).sum() / (target**2).sum())


def total_variation(x: torch.Tensor) -> float:
    dy = x[..., 1:, :] - x[..., :-1, :]
    dx = x[..., :, 1:] - x[..., :, :-1]
    return float((dy**2).mean() + (dx**2).mean())


def reference_losses(
    vgg: nn.Sequential, content: Image.Image, styles: Sequence[Image.Image], s: StylizeSettings
) -> Losses:
    """The weighted losses of the starting image, from the paper's definitions."""
    photo = as_tensor(content)
    style_ts = [as_tensor(style) for style in styles]
    if s.preserve_colors == "luminance":
        photo = luma(photo)
        style_ts = [match_mean_and_std(luma(style), photo) for style in style_ts]
    if s.init == "content":
        start = photo
    else:
        start = F.interpolate(style_ts[0], size=photo.shape[-2:], mode="bilinear")
    x = features(vgg, start, s.pooling)
    p = features(vgg, photo, s.pooling)
    content = sum(relative_error(x[k], p[k]) for k in s.content_layers) / len(s.content_layers)
    weights = s.style_weights or (1.0,) * len(styles)
    style_feats = [features(vgg, style, s.pooling) for style in style_ts]
    style = 0.0
    for layer in s.style_layers:
        target = sum(w * gram(f[layer]) for w, f in zip(weights, style_feats)) / sum(weights)
        style += relative_error(gram(x[layer]), target) / len(s.style_layers)
    parts = (
        s.content_weight * content,
        s.style_weight * s.strength * style,
        s.tv_weight * total_variation(start),
    )
    return Losses(*parts, sum(parts))


def reported_losses(
    net: VGGEncoder, content: Image.Image, styles: Sequence[Image.Image], s: StylizeSettings
) -> Losses:
    seen: list[Progress] = []
    stylize(content, styles, s, on_progress=seen.append, network=net)
    return seen[0].losses


# 48 × 32 px, so stylize() resizes nothing: the reference needs no resampling of its own.
CONTENT = content_image(48, 32)
STYLE_A = style_image(48, seed=1)
STYLE_B = style_image(48, seed=2, palette="warm")
BASE: dict[str, Any] = {"size": 48, "steps": 1, "seed": 0, "weights": "random:0", "device": "cpu"}

CASES: dict[str, tuple[dict[str, Any], int]] = {
    # name: (settings changed from the defaults, number of styles)
    "defaults": ({}, 1),
    "strength-2": ({"strength": 2.0}, 1),
    "another-content-layer": ({"content_layers": ("relu3_2",)}, 1),
    "two-content-layers": ({"content_layers": ("conv2_2", "relu4_2")}, 1),
    "other-style-layers": ({"style_layers": ("conv1_2", "relu2_2", "relu3_4")}, 1),
    "blend-3:1": ({"style_weights": (3.0, 1.0)}, 2),
    "avg-pooling": ({"pooling": "avg"}, 1),
    "luminance": ({"preserve_colors": "luminance"}, 1),
    "tv-weight": ({"tv_weight": 0.5}, 1),
    "all-weights": ({"content_weight": 2.0, "style_weight": 3.0, "strength": 0.5}, 2),
}


# Starting from the first style makes every part non-zero; the true defaults start from the
# photo, where the content part is exactly zero.
RUNS = [("defaults", "content"), *((case, "style") for case in CASES)]


@pytest.mark.parametrize(("case", "init"), RUNS)
def test_reported_losses_equal_the_reference(
    vgg: nn.Sequential, net: VGGEncoder, case: str, init: str
) -> None:
    changes, n_styles = CASES[case]
    s = StylizeSettings(**{**BASE, **changes, "init": init})
    styles = [STYLE_A, STYLE_B][:n_styles]
    expected = reference_losses(vgg, CONTENT, styles, s)
    got = reported_losses(net, CONTENT, styles, s)
    for name, value in expected._asdict().items():
        # Starting from the content, its loss is exactly zero on both sides.
        assert getattr(got, name) == pytest.approx(value, rel=TOLERANCE, abs=1e-12), name
    assert expected.style > 0 and expected.tv > 0
    if init == "style":
        assert expected.content > 0


def test_strength_2_exactly_doubles_the_style_part(net: VGGEncoder) -> None:
    s = StylizeSettings(**BASE, init="style")
    once = reported_losses(net, CONTENT, [STYLE_A], s)
    twice = reported_losses(net, CONTENT, [STYLE_A], s.replace(strength=2.0))
    assert twice.style == 2 * once.style
    assert (twice.content, twice.tv) == (once.content, once.tv)
