"""Small deterministic images and a shared random-weights network for engine tests."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

NET_SEED = 0
"""The seed of the ``net`` fixture's random VGG19 weights (``random:0``, see conftest.py)."""


def content_image(width: int = 96, height: int = 64) -> Image.Image:
    image = Image.new("RGB", (width, height), (40, 110, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.2, height * 0.15, width * 0.55, height * 0.7), fill=(250, 200, 40))
    draw.rectangle((width * 0.6, height * 0.5, width * 0.9, height), fill=(120, 50, 20))
    return image


def style_image(size: int = 64, seed: int = 0, palette: str = "cool") -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (10, 10, 30))
    draw = ImageDraw.Draw(image)
    for _ in range(size * 3):
        x, y = rng.randrange(size), rng.randrange(size)
        dx, dy = rng.randint(-size // 6, size // 6), rng.randint(-size // 6, size // 6)
        if palette == "cool":
            colour = (rng.randint(0, 90), rng.randint(0, 200), rng.randint(150, 255))
        else:
            colour = (rng.randint(180, 255), rng.randint(60, 160), rng.randint(0, 40))
        draw.line((x, y, x + dx, y + dy), fill=colour, width=2)
    return image
