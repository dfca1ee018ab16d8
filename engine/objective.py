"""Gatys et al.'s objective at one scale: targets computed once, then the losses of any image.

This is the criterion, as pystiche calls it; ``engine.optimize`` is the loop that minimises
it, and ``engine.transfer`` runs both over the scales of a job. The maths of each loss lives
in ``engine.losses``; here it is wired to the network and the settings:

    content = content_weight · mean over content layers of ‖F − P‖² / ‖P‖²
    style   = style_weight · strength · mean over style layers of ‖G(F) − A‖² / ‖A‖²
    tv      = tv_weight · total_variation(image)

where F are the image's features, P the content's, G the Gram matrix and A the blend of the
styles' Gram matrices, weighted by ``style_weights``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from PIL import Image

from engine import colors, losses
from engine.devices import effective_precision
from engine.network import VGGEncoder
from engine.pyramid import at_least_min_side
from engine.settings import StylizeSettings
from engine.tensors import image_to_tensor

STYLE_SIDE_CAP = 4096
"""Longest side a style image is resized to, unless the output itself is larger."""


def style_side(longest: int, style_scale: float) -> int:
    """The longest side of the style images when the output's is ``longest``."""
    # Capped so a large style scale at a large size cannot ask for gigapixels.
    return min(round(longest * style_scale), max(longest, STYLE_SIDE_CAP))


@dataclass(frozen=True)
class ObjectiveInputs:
    """The photo and the styles at one scale, as the objective compares them."""

    content_rgb: torch.Tensor
    """The photo in RGB: the chroma that luminance mode puts back."""
    content: torch.Tensor
    """What the content loss compares with: the photo, or its luminance in luminance mode."""
    styles: tuple[torch.Tensor, ...]
    """Each style resized for ``style_scale``, its colours matched as ``preserve_colors`` asks."""


def prepare_inputs(
    content: Image.Image,
    styles: Sequence[Image.Image],
    settings: StylizeSettings,
    size: tuple[int, int],
    device: torch.device,
) -> ObjectiveInputs:
    """The RGB ``content`` at ``size`` (width, height) and the RGB ``styles`` to go with it."""
    content_rgb = image_to_tensor(content, device, size)
    luminance_only = settings.preserve_colors == "luminance"
    side = style_side(max(size), settings.style_scale)
    prepared = []
    for style in styles:
        tensor = image_to_tensor(style, device, at_least_min_side(*style.size, side))
        if settings.preserve_colors == "histogram":
            tensor = colors.match_histogram(tensor, content_rgb)
        if luminance_only:
            tensor = colors.match_luminance(colors.luminance(tensor), colors.luminance(content_rgb))
        prepared.append(tensor)
    content_t = colors.luminance(content_rgb) if luminance_only else content_rgb
    return ObjectiveInputs(content_rgb, content_t, tuple(prepared))


class LossParts(NamedTuple):
    """The weighted losses of one image, as 0-dim tensors (still on the device)."""

    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        """The objective the optimisation minimises: content + style + total variation."""
        return self.content + self.style + self.tv


class GatysObjective:
    """Content + style + total variation of an image, against targets computed once.

    A single-channel image (luminance mode) is seen by the network as grey RGB. On CUDA the
    network runs channels-last, under bf16 autocast when the settings ask for bf16; Gram
    matrices and losses are fp32 whatever the precision.
    """

    def __init__(
        self,
        network: VGGEncoder,
        settings: StylizeSettings,
        content: torch.Tensor,
        styles: Sequence[torch.Tensor],
    ) -> None:
        self.network = network
        self.content_layers = settings.content_layers
        self.style_layers = settings.style_layers
        self.pooling = settings.pooling
        self.bf16 = effective_precision(settings.precision, network.device) == "bf16"
        self.channels_last = network.device.type == "cuda"
        # One pass of the network serves every loss: the union of the layers, in order.
        self.layers = tuple(dict.fromkeys(self.content_layers + self.style_layers))
        weights = settings.style_weights or (1.0,) * len(styles)
        self.content_targets, self.style_targets = self._targets(content, styles, weights)
        # Each part is the mean over its layers, so adding a layer does not shift the balance.
        self.content_weight = settings.content_weight / len(self.content_targets)
        self.style_weight = settings.style_weight * settings.strength / len(self.style_targets)
        self.tv_weight = settings.tv_weight

    def features(self, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """The network's responses to ``image`` at ``layers``."""
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        )
        with autocast:
            return self.network(image, layers, self.pooling)

    @torch.no_grad()
    def _targets(
        self, content: torch.Tensor, styles: Sequence[torch.Tensor], weights: Sequence[float]
    ) -> tuple[dict[str, _Target], dict[str, _Target]]:
        content_feats = self.features(content, self.content_layers)
        content_targets = {k: _Target.of(v.detach().float()) for k, v in content_feats.items()}
        # A style with weight 0 is never even run through the network.
        live = [(style, weight) for style, weight in zip(styles, weights) if weight > 0]
        grams = []
        for style, _ in live:
            feats = self.features(style, self.style_layers)
            grams.append({k: losses.gram_matrix(v) for k, v in feats.items()})
        live_weights = [weight for _, weight in live]
        style_targets = {
            layer: _Target.of(losses.blend_grams([g[layer] for g in grams], live_weights))
            for layer in self.style_layers
        }
        return content_targets, style_targets

    def __call__(self, image: torch.Tensor) -> LossParts:
        feats = self.features(image, self.layers)
        content_parts = [
            losses.content_loss(feats[k], *target) for k, target in self.content_targets.items()
        ]
        style_parts = [
            losses.style_loss(feats[k], *target) for k, target in self.style_targets.items()
        ]
        content = torch.stack(content_parts).sum() * self.content_weight
        style = torch.stack(style_parts).sum() * self.style_weight
        tv = losses.total_variation(image) * self.tv_weight
        return LossParts(content, style, tv)


class _Target(NamedTuple):
    """A layer's target and its squared norm, the denominator of its relative error."""

    value: torch.Tensor
    norm: torch.Tensor

    @classmethod
    def of(cls, value: torch.Tensor) -> _Target:
        return cls(value, losses.squared_norm(value))
