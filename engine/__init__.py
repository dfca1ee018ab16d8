"""The style-transfer engine: Gatys, Ecker and Bethge's method, with no Discord in it.

Importing ``engine`` does not import torch: the bot process uses ``load_image``, the
settings and a backend (``engine.backends``), and only worker processes pay for torch. The
names that need torch are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import EngineError, ImageError, SettingsError, StopRequested, WeightsError
from engine.images import EncodedImage, encode_image, load_image
from engine.progress import Progress
from engine.settings import StylizeSettings

if TYPE_CHECKING:
    from engine.network import VGGEncoder, load_network
    from engine.transfer import stylize

_LAZY = {
    "stylize": ("engine.transfer", "stylize"),
    "load_network": ("engine.network", "load_network"),
    "VGGEncoder": ("engine.network", "VGGEncoder"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = [
    "EncodedImage",
    "EngineError",
    "ImageError",
    "Progress",
    "SettingsError",
    "StopRequested",
    "StylizeSettings",
    "VGGEncoder",
    "WeightsError",
    "encode_image",
    "load_image",
    "load_network",
    "stylize",
]
