"""The image optimisation: a starting image, an optimiser, and the loop that runs them.

``optimize_image(image, objective, optimizer, steps)`` has the shape of pystiche's
``image_optimization(input_image, criterion, optimizer, num_steps)``: it knows nothing of
VGG, pyramids or progress bars, only how to move an image down an objective's gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

from engine.errors import StopRequested
from engine.lbfgs import LBFGS
from engine.objective import LossParts
from engine.progress import CancelCheck
from engine.pyramid import upsample
from engine.settings import StylizeSettings

NOISE_MEAN = 0.5
NOISE_STD = 0.15
"""``init="noise"`` starts from N(NOISE_MEAN, NOISE_STD²) per pixel, clipped to [0, 1]."""


class Objective(Protocol):
    """What the loop minimises: the weighted losses of an image."""

    def __call__(self, image: torch.Tensor) -> LossParts: ...


class ImageOptimizer(Protocol):
    """Moves the one image it was made for, given the objective's gradient there.

    Every implementation keeps the pixels in [0, 1].
    """

    def step(self, grad: torch.Tensor) -> None: ...


OptimizerFactory = Callable[[torch.Tensor], ImageOptimizer]
StepCallback = Callable[[torch.Tensor, LossParts, torch.Tensor], None]
"""Called after each step with the image (already moved), the losses that step minimised
(those of the image before the move) and their total."""


class ClippedAdam:
    """Adam on the image, clipped back into [0, 1] after every step."""

    def __init__(self, image: torch.Tensor, lr: float) -> None:
        self.image = image
        # The fused kernel does the whole update in one launch on CUDA.
        self.adam = torch.optim.Adam([image], lr=lr, fused=image.is_cuda)

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        self.image.grad = grad
        self.adam.step()
        self.image.clamp_(0, 1)


def optimizer_for(settings: StylizeSettings) -> OptimizerFactory:
    """The optimiser the settings name, with their history or learning rate."""
    if settings.optimizer == "lbfgs":
        # Bounded: L-BFGS clips its own steps, so its history describes the moves it made.
        return lambda image: LBFGS(image, history=settings.lbfgs_history, bounds=(0.0, 1.0))
    return lambda image: ClippedAdam(image, settings.learning_rate)


def initial_image(
    init: str,
    content: torch.Tensor,
    style: torch.Tensor,
    seed: int,
    *,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Where the optimisation starts: the content, the first style resized to it, or noise.

    Noise is drawn on the CPU from ``seed``, so a seed gives the same start on every device.
    A ``start`` image (an earlier result, continued larger) replaces ``init``: it is resized
    to the content's size as a finer scale of the pyramid starts from a coarser one.
    """
    if start is not None:
        return upsample(start.to(content.device, content.dtype), *content.shape[-2:])
    if init == "content":
        return content.clone()
    if init == "style":
        return F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(content.shape, generator=generator) * NOISE_STD + NOISE_MEAN
    return noise.clamp(0, 1).to(content.device)


def optimize_image(
    image: torch.Tensor,
    objective: Objective,
    optimizer: OptimizerFactory,
    steps: int,
    *,
    on_step: StepCallback | None = None,
    cancel: CancelCheck | None = None,
) -> torch.Tensor:
    """Runs ``steps`` steps of ``optimizer`` on a copy of ``image``; returns the result.

    Raises ``StopRequested`` within one step of ``cancel()`` turning true.
    """
    # A plain contiguous tensor, so the optimiser can treat it as one flat vector.
    x = image.detach().contiguous().clone().requires_grad_(True)
    opt = optimizer(x)
    for _ in range(steps):
        if cancel is not None and cancel():
            raise StopRequested()
        parts = objective(x)
        total = parts.total
        (grad,) = torch.autograd.grad(total, x)
        with torch.no_grad():
            opt.step(grad)
        if on_step is not None:
            on_step(x, parts, total)
    return x.detach()
