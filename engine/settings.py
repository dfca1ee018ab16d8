"""The settings of one stylisation job: a frozen, validated dataclass with good defaults.

It imports no torch, so the bot can build and check settings in its own process and send
them to a worker as a plain dataclass.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import SettingsError
from engine.layers import SELECTABLE_LAYERS

Init = Literal["content", "noise", "style"]
Optimizer = Literal["lbfgs", "adam"]
Pooling = Literal["max", "avg"]
ColorMode = Literal["luminance", "histogram"]
Precision = Literal["auto", "fp32", "tf32", "bf16"]

INITS: tuple[str, ...] = ("content", "noise", "style")
OPTIMIZERS: tuple[str, ...] = ("lbfgs", "adam")
POOLINGS: tuple[str, ...] = ("max", "avg")
COLOR_MODES: tuple[str, ...] = ("luminance", "histogram")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "tf32", "bf16")

MIN_SIZE = 16
MAX_SIZE = 8192
MAX_STEPS = 100_000
MAX_SEED = 2**63 - 1

# Gatys et al. used the rectified responses: in their Caffe network ReLU runs in place, so
# the blob they call "conv4_2" holds relu4_2's output. We name layers exactly as torchvision
# computes them, so the faithful defaults are the relu layers.
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_RANDOM_WEIGHTS_RE = re.compile(r"^random(:\d+)?$")


def _fail(name: str, message: str) -> None:
    raise SettingsError(f"{name}: {message}")


@dataclass(frozen=True)
class StylizeSettings:
    """Everything that decides how one image is repainted.

    Losses are normalised (see ``engine.losses``), so the defaults give a balanced picture
    at any size, and ``strength`` is the one knob most users need.
    """

    size: int = 512
    """Longest side of the result, in pixels."""
    steps: int = 500
    """Optimisation steps in all, over every scale of the pyramid."""
    strength: float = 1.0
    """Style against content: 1 is the balanced default, 2 twice the style weight."""
    style_weights: tuple[float, ...] | None = None
    """Blend weights, one per style image; ``None`` weighs them equally."""
    style_scale: float = 1.0
    """Size of the style image relative to the output: below 1 gives larger brush strokes."""
    init: Init = "content"
    optimizer: Optimizer = "lbfgs"
    pooling: Pooling = "max"
    preserve_colors: ColorMode | None = None
    seed: int | None = None
    """``None`` draws one; ``resolved()`` fixes it so that results can be reproduced."""
    device: str = "auto"
    weights: str = "imagenet"
    precision: Precision = "auto"
    """``auto`` is TF32 on CUDA and fp32 elsewhere; ``bf16`` autocasts the convolutions."""
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    content_weight: float = 1.0
    style_weight: float = 5.0
    tv_weight: float = 1e-3
    min_scale: int = 512
    """Coarse-to-fine: outputs larger than this start at this size and grow by sqrt(2)."""
    coarse_to_fine: bool = True
    lbfgs_history: int = 16
    """L-BFGS memory: each pair of vectors costs two images' worth of memory."""
    learning_rate: float = 0.02
    """Adam's step, in pixel units (pixels are in [0, 1])."""
    preview_every: int = 0
    """Attach a small preview to every N-th progress event; 0 never does."""
    preview_size: int = 160

    def __post_init__(self) -> None:
        # Accept lists from JSON or argparse, but store tuples so the dataclass stays hashable.
        for name in ("content_layers", "style_layers", "style_weights"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.size, int) or not MIN_SIZE <= self.size <= MAX_SIZE:
            _fail("size", f"must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}.")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            _fail("steps", f"must be a whole number from 1 to {MAX_STEPS}.")
        if not 0 < self.strength <= 100:
            _fail("strength", "must be above 0 and at most 100 (1 is the default balance).")
        if self.style_weights is not None:
            if not self.style_weights or any(w < 0 for w in self.style_weights):
                _fail("style weights", "must be zero or positive, one per style image.")
            if sum(self.style_weights) <= 0:
                _fail("style weights", "at least one must be above zero.")
        if not 0.05 <= self.style_scale <= 8:
            _fail("style scale", "must be from 0.05 to 8 (1 keeps the style at the output's size).")
        if self.init not in INITS:
            _fail("init", f"must be one of {', '.join(INITS)}.")
        if self.optimizer not in OPTIMIZERS:
            _fail("optimizer", f"must be one of {', '.join(OPTIMIZERS)}.")
        if self.pooling not in POOLINGS:
            _fail("pooling", f"must be one of {', '.join(POOLINGS)}.")
        if self.preserve_colors is not None and self.preserve_colors not in COLOR_MODES:
            _fail("preserve colors", f"must be one of {', '.join(COLOR_MODES)}, or off.")
        if self.seed is not None and (
            not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED
        ):
            _fail("seed", f"must be a whole number from 0 to {MAX_SEED}.")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            _fail("device", "must be auto, cpu, cuda, cuda:N or mps.")
        if not isinstance(self.weights, str) or not self.weights.strip():
            _fail("weights", "must be imagenet, random, random:SEED or a path to a .pth file.")
        if self.weights.startswith("random") and not _RANDOM_WEIGHTS_RE.match(self.weights):
            _fail("weights", "random weights are written random or random:SEED, e.g. random:0.")
        if self.precision not in PRECISIONS:
            _fail("precision", f"must be one of {', '.join(PRECISIONS)}.")
        for name in ("content_layers", "style_layers"):
            layers = getattr(self, name)
            if not layers:
                _fail(name.replace("_", " "), "name at least one layer.")
            unknown = [layer for layer in layers if layer not in SELECTABLE_LAYERS]
            if unknown:
                _fail(
                    name.replace("_", " "),
                    f"unknown layer {unknown[0]!r}; choose from conv1_1 … relu5_1.",
                )
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) < 0:
                _fail(name.replace("_", " "), "must be zero or positive.")
        if self.content_weight == 0 and self.style_weight == 0:
            _fail("weights of the losses", "content and style weight cannot both be zero.")
        if not isinstance(self.min_scale, int) or self.min_scale < MIN_SIZE:
            _fail("min scale", f"must be at least {MIN_SIZE} pixels.")
        if not isinstance(self.lbfgs_history, int) or not 1 <= self.lbfgs_history <= 100:
            _fail("L-BFGS history", "must be from 1 to 100.")
        if not 0 < self.learning_rate <= 1:
            _fail("learning rate", "must be above 0 and at most 1.")
        if not isinstance(self.preview_every, int) or self.preview_every < 0:
            _fail("preview every", "must be 0 (off) or a positive number of steps.")
        if not isinstance(self.preview_size, int) or not 16 <= self.preview_size <= 1024:
            _fail("preview size", "must be from 16 to 1024 pixels.")

    def replace(self, **changes: Any) -> StylizeSettings:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes)

    def resolved(self) -> StylizeSettings:
        """A copy whose seed is fixed, drawing one if it was left unset."""
        if self.seed is not None:
            return self
        return self.replace(seed=secrets.randbelow(2**31))

    def check_styles(self, count: int) -> None:
        """Refuse blend weights that do not match the number of style images."""
        if count < 1:
            raise SettingsError("Give at least one style image.")
        if self.style_weights is not None and len(self.style_weights) != count:
            raise SettingsError(
                f"style weights: got {len(self.style_weights)} for {count} style image(s); "
                "give one weight per style image."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values, for metadata and logs."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StylizeSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"Unknown setting {unknown[0]!r}.")
        return cls(**data)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


__all__ = ["StylizeSettings"]
