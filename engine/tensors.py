"""PIL images ↔ image tensors: (1, C, H, W), float32, values in [0, 1]."""

from __future__ import annotations

import torch
from PIL import Image


def image_to_tensor(
    image: Image.Image, device: torch.device, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """An RGB image as (1, 3, H, W) on ``device``, resized to ``size`` (width, height) first."""
    if size is not None and image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    tensor = data.view(image.height, image.width, 3).permute(2, 0, 1).unsqueeze(0)
    return tensor.to(device, torch.float32).contiguous() / 255.0


def tensor_to_image(rgb: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) in [0, 1] (values outside are clipped) as an 8-bit RGB image."""
    pixels = (rgb[0].float().clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).contiguous().cpu().numpy()
    return Image.fromarray(array, "RGB")
