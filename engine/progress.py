"""What the optimisation reports while it runs, and how callers ask it to stop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

from PIL import Image

if TYPE_CHECKING:  # the bot imports this module and never loads torch
    import torch


class Losses(NamedTuple):
    """The weighted losses of one step."""

    content: float
    style: float
    tv: float
    total: float


@dataclass(frozen=True)
class Progress:
    """One optimisation step, as seen by a progress callback.

    The losses are read from the device only when asked for (``content_loss`` and the
    others): on a GPU each read is a host sync, and a caller that only wants the step count
    (a worker throttling its updates) should not stall the pipeline on every step.
    """

    step: int
    """1-based, counted over every scale of the pyramid."""
    total: int
    scale: int
    """0-based index of the current pyramid scale."""
    scales: int
    size: tuple[int, int]
    """(width, height) being optimised at this scale."""
    elapsed: float
    """Seconds since the job started, target computation included."""
    read_losses: Callable[[], Losses] = field(compare=False, repr=False)
    """Reads this step's losses. Valid only while the callback runs; use ``losses``."""
    preview: Image.Image | None = None
    """Set on every ``settings.preview_every``-th step."""
    render_preview: Callable[[int], Image.Image] | None = field(
        default=None, compare=False, repr=False
    )
    """Renders the current image, longest side at most the given px, on demand. Valid only
    while the callback runs: callers that throttle previews by time use it."""
    read_image: Callable[[], torch.Tensor] | None = field(default=None, compare=False, repr=False)
    """A copy of the image being optimised, (1, C, H, W) in [0, 1], C = 1 in luminance mode:
    all its precision, for tools and tests that need more than a preview's 8 bits. Valid only
    while the callback runs."""

    @cached_property
    def losses(self) -> Losses:
        return self.read_losses()

    @property
    def content_loss(self) -> float:
        return self.losses.content

    @property
    def style_loss(self) -> float:
        return self.losses.style

    @property
    def tv_loss(self) -> float:
        return self.losses.tv

    @property
    def total_loss(self) -> float:
        return self.losses.total

    @property
    def fraction(self) -> float:
        return self.step / self.total

    @property
    def eta(self) -> float:
        """Seconds left, extrapolated from the pace so far."""
        return self.elapsed / self.step * (self.total - self.step) if self.step else 0.0


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]
