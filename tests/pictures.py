"""Encoded pictures for the tests that hand the bot bytes, as a member's upload would be."""

from __future__ import annotations

import io
import os

from PIL import Image

PLAIN = (30, 120, 200)


def png(width: int, height: int, *, noise: bool = False) -> bytes:
    """A ``width`` × ``height`` PNG: one plain colour, or random pixels with ``noise`` (which
    PNG cannot compress, so its file is about ``3 × width × height`` bytes)."""
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), PLAIN)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
