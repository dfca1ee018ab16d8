"""The backends by name: ``local`` (``engine.pool.EnginePool``) and ``ray``
(``engine.ray_backend.RayBackend``), built from one ``BackendOptions``.

A new backend is one entry in ``BACKENDS``. Each factory imports its backend when called: the
bot process imports this module, and must load neither torch nor ray (an optional extra)
unless it is asked for that backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.backend import Backend
from engine.lifecycle import START_TIMEOUT


@dataclass(frozen=True)
class BackendOptions:
    """What every backend is built from."""

    workers: int | None = None
    """Workers (local) or actors per node (Ray); ``None``: one per GPU, or one without a GPU."""
    device: str = "auto"
    weights: str = "imagenet"
    job_timeout: float = 600.0
    """Seconds a job may run, from its start."""
    start_timeout: float = START_TIMEOUT
    """Seconds ``start`` may take."""
    ray_address: str | None = None
    """The Ray cluster to join; ``None`` starts a private Ray on this machine. Ray only."""


def _local(options: BackendOptions) -> Backend:
    from engine.pool import EnginePool

    return EnginePool(
        workers=options.workers,
        device=options.device,
        weights=options.weights,
        job_timeout=options.job_timeout,
        start_timeout=options.start_timeout,
    )


def _ray(options: BackendOptions) -> Backend:
    from engine.ray_backend import RayBackend  # ray is an optional extra

    return RayBackend(
        address=options.ray_address,
        workers=options.workers,
        device=options.device,
        weights=options.weights,
        job_timeout=options.job_timeout,
        start_timeout=options.start_timeout,
    )


BACKENDS: dict[str, Callable[[BackendOptions], Backend]] = {
    "local": _local,
    "ray": _ray,
}
"""Each backend's name (``STYLIZE_BACKEND``) and the factory that builds it, not started."""


def create_backend(name: str, options: BackendOptions) -> Backend:
    """The backend called ``name``, built from ``options`` and not started. Raises
    ``ValueError`` for an unknown name, ``engine.SettingsError`` for a bad device or weights
    name, and ``ImportError`` for ``ray`` without the ``ray`` extra installed."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"Unknown backend {name!r}: choose one of {known}.") from None
    return factory(options)


__all__ = ["BACKENDS", "BackendOptions", "create_backend"]
