"""The losses of Gatys et al., as pure functions of tensors.

Each loss is a *relative* squared error: divided by the squared norm of its target. That
makes every layer count about equally whatever its activation scale, and makes the balance
independent of the image size and of the weights (ImageNet or random), so one set of
default weights gives a good picture everywhere. The paper's per-layer 1/(4 N² M²) factors
serve the same purpose for one fixed network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Feature correlations (N, C, H, W) → (N, C, C), averaged over positions.

    Averaging (rather than summing) over the H·W positions keeps the Gram of a texture the
    same at any resolution, so style targets computed at one size fit another. Computed in
    fp32 even under bf16 autocast: the sums are long and their precision matters.
    """
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w).float()
    return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)


def squared_norm(target: torch.Tensor) -> torch.Tensor:
    """‖target‖², the denominator of ``relative_mse``: computed once per target and reused."""
    return target.float().pow(2).sum()


def relative_mse(
    value: torch.Tensor, target: torch.Tensor, target_norm: torch.Tensor | None = None
) -> torch.Tensor:
    """‖value − target‖² / ‖target‖²: 0 when equal, 1 when ``value`` is zero."""
    norm = squared_norm(target) if target_norm is None else target_norm
    # mse_loss is one fused kernel each way; the spelled-out version is four.
    return F.mse_loss(value.float(), target.float(), reduction="sum") / (norm + EPS)


def content_loss(
    features: torch.Tensor, target: torch.Tensor, target_norm: torch.Tensor | None = None
) -> torch.Tensor:
    """Feature reconstruction loss at one layer."""
    return relative_mse(features, target, target_norm)


def style_loss(
    features: torch.Tensor, target_gram: torch.Tensor, target_norm: torch.Tensor | None = None
) -> torch.Tensor:
    """Gram-matrix loss at one layer against a (possibly blended) target Gram."""
    return relative_mse(gram_matrix(features), target_gram, target_norm)


def blend_grams(grams: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """The target Gram of several styles: their weighted mean."""
    total = float(sum(weights))
    blended = sum(
        (g * (w / total) for g, w in zip(grams, weights) if w > 0), torch.zeros_like(grams[0])
    )
    return blended


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels: a smoothness prior against noise."""
    image = image.float()
    dy = F.mse_loss(image[..., 1:, :], image[..., :-1, :])
    dx = F.mse_loss(image[..., :, 1:], image[..., :, :-1])
    return dy + dx
