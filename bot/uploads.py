"""Keeping a result within the upload limit that Discord reported for the interaction.

The worker already encodes under ``Job.max_bytes`` (PNG if it fits, else JPEG or WebP); this
is the bot's safety net for a result that still does not fit, e.g. when Discord refuses an
upload that the reported limit allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import engine

# Generous: the result is our own output, at most STYLIZE_MAX_SIZE on a side.
_RESULT_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class ResultFile:
    data: bytes
    format: str
    """``png``, ``jpeg`` or ``webp``."""
    reencoded: bool = False


def fit(data: bytes, fmt: str, limit: int) -> ResultFile:
    """``data`` as it is if it fits ``limit`` bytes, else re-encoded (JPEG, then WebP) to fit.

    CPU-bound when it re-encodes: call it in a thread.
    """
    if len(data) <= limit:
        return ResultFile(data, fmt)
    image = engine.load_image(data, max_pixels=_RESULT_MAX_PIXELS)
    encoded = engine.encode_image(image, max_bytes=limit, prefer="jpeg")
    return ResultFile(encoded.data, encoded.format, reencoded=True)
