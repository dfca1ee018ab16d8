"""Coarse-to-fine: the sizes a job is optimised at, and how its steps are shared among them.

Gatys et al. (2017) showed that high-resolution results keep their large-scale structure
only if optimised at a low resolution first; each larger scale starts from the upsampled
result of the one before. Scales grow by √2, as in crowsonkb's style-transfer-pytorch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pyramid_sizes(size: int, min_scale: int, enabled: bool = True) -> list[int]:
    """Longest sides from coarse to fine, ending at ``size``."""
    if not enabled or size <= min_scale:
        return [size]
    sizes = [size]
    while (smaller := round(sizes[-1] / math.sqrt(2))) >= min_scale:
        sizes.append(smaller)
    return sizes[::-1]


def split_steps(total: int, scales: int) -> list[int]:
    """Shares ``total`` steps among the scales: equal parts, the remainder to the finest.

    The pyramid is cut from the coarse end when there are fewer steps than scales, so the
    returned list may be shorter than ``scales``; every entry is at least 1.
    """
    scales = max(1, min(scales, total))
    base, extra = divmod(total, scales)
    return [base] * (scales - 1) + [base + extra]


# VGG19 halves the image four times before relu5_1: a side below 16 px vanishes.
MIN_SIDE = 16


def scaled_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) with the longest side set to ``longest``, keeping the aspect ratio."""
    factor = longest / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def at_least_min_side(width: int, height: int, longest: int) -> tuple[int, int]:
    """Like ``scaled_size``, but enlarged if needed so that the short side is ``MIN_SIDE``.

    The enlarged long side never passes ``max(longest, MIN_SIDE)``: a very thin picture is
    squashed along it instead. Without that bound a 1,000,000 × 1 px style would become a
    16,000,000 × 16 px tensor, tens of GiB per layer output.
    """
    w, h = scaled_size(width, height, longest)
    if min(w, h) >= MIN_SIDE:
        return w, h
    factor = MIN_SIDE / min(width, height)
    cap = max(longest, MIN_SIDE)
    return (
        min(cap, max(MIN_SIDE, round(width * factor))),
        min(cap, max(MIN_SIDE, round(height * factor))),
    )


def upsample(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The start of a finer scale: the coarser result, bicubic-upsampled, clipped to [0, 1]."""
    larger = F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False)
    # Bicubic overshoots at sharp edges; the optimisers expect a start inside the box.
    return larger.clamp(0, 1)
