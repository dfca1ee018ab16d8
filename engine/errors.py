"""Every error the engine raises on purpose, each with a message a user can act on.

Callers (the CLI, the backends, the bot) show ``str(error)`` to people as it is, so
messages are one plain sentence or two, with no internals in them.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of the engine's user-facing errors."""


class ImageError(EngineError, ValueError):
    """An input image was refused: not an image, corrupt, too large, or of an unsupported kind.

    The refusals whose words carry values also name themselves in ``reason`` (``too_big``,
    ``no_pixels``, ``vector``) and keep the values, as plain numbers and keys, in ``details``:
    a caller that speaks another language can say the same from them. The others have neither.
    """

    def __init__(self, message: str, *, reason: str = "", **details: int | str) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = details


class SettingsError(EngineError, ValueError):
    """A setting is out of range or unknown."""


class WeightsError(EngineError):
    """The network weights could not be loaded (missing, offline, or not a VGG19 state dict)."""


class ClusterError(EngineError):
    """The Ray cluster could not be joined or started. The message names Ray, the address and
    the likely cause (unreachable, token missing or wrong, version mismatch)."""


class StopRequested(EngineError):
    """The caller's cancel check asked the optimisation to stop."""

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)
