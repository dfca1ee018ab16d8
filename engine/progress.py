"""What the optimisation reports while it runs, and how callers ask it to stop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image


@dataclass(frozen=True)
class Progress:
    """One optimisation step, as seen by a progress callback. Losses are weighted values."""

    step: int
    """1-based, counted over every scale of the pyramid."""
    total: int
    scale: int
    """0-based index of the current pyramid scale."""
    scales: int
    size: tuple[int, int]
    """(width, height) being optimised at this scale."""
    content_loss: float
    style_loss: float
    tv_loss: float
    total_loss: float
    elapsed: float
    """Seconds since the job started, target computation included."""
    preview: Image.Image | None = None
    """Set on every ``settings.preview_every``-th step."""
    render_preview: Callable[[int], Image.Image] | None = field(
        default=None, compare=False, repr=False
    )
    """Renders the current image, longest side at most the given px, on demand. Valid only
    while the callback runs: callers that throttle previews by time use it."""

    @property
    def fraction(self) -> float:
        return self.step / self.total

    @property
    def eta(self) -> float:
        """Seconds left, extrapolated from the pace so far."""
        return self.elapsed / self.step * (self.total - self.step) if self.step else 0.0


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]
