"""Colour preservation (Gatys, Bethge, Hertzmann & Shechtman 2017, "Preserving color").

Two ways to keep the photo's colours:
- luminance: transfer on luminance only, then put back the photo's chroma;
- histogram: recolour the style image to the photo's colour statistics before the transfer.

Images are tensors (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

import torch

# YIQ, as in the paper. Its Y is the same luma as YCbCr's, and I, Q depend only on R−Y and
# B−Y, so keeping I and Q keeps the chroma in any such space.
_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ]
)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(image), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    return _apply(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return _apply(torch.linalg.inv(_RGB_TO_YIQ), image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB → (N, 1, H, W) luma."""
    return rgb_to_yiq(image)[:, :1]


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Matches the style luminance to the content's mean and std (eq. 1 of the paper)."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp_min(1e-5)
    c_mean, c_std = content_y.mean(), content_y.std()
    return ((style_y - s_mean) / s_std * c_std + c_mean).clamp(0, 1)


def combine_luminance(y: torch.Tensor, chroma_source: torch.Tensor) -> torch.Tensor:
    """Puts the luminance ``y`` (N, 1, H, W) with ``chroma_source``'s I and Q; returns RGB."""
    iq = rgb_to_yiq(chroma_source)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 1)


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(1e-8)
    power = -0.5 if inverse else 0.5
    return vectors @ torch.diag(values.pow(power)) @ vectors.T


def match_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Linear colour transfer: gives ``style`` the mean and covariance of ``content``'s colours.

    x' = Σc^½ Σs^-½ (x − μs) + μc, with symmetric matrix square roots (the paper's
    "image analogies" variant, which keeps the style's colour axes the least rotated).
    """
    s = style[0].reshape(3, -1).double()
    c = content[0].reshape(3, -1).double()
    s_mean, c_mean = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    s_cov = torch.cov(s) + 1e-5 * torch.eye(3, dtype=s.dtype)
    c_cov = torch.cov(c) + 1e-5 * torch.eye(3, dtype=s.dtype)
    transform = _sqrtm(c_cov) @ _sqrtm(s_cov, inverse=True)
    matched = transform @ (s - s_mean) + c_mean
    return matched.reshape_as(style[0]).unsqueeze(0).to(style.dtype).clamp(0, 1)
