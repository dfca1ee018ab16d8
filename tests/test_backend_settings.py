"""Choosing a backend: ``STYLIZE_BACKEND`` and ``STYLIZE_RAY_ADDRESS`` (what they accept, and
one-line refusals), and the registry, ``engine.backends``, that builds the backend a name calls
for from ``BackendOptions`` (not started)."""

from __future__ import annotations

import dataclasses
import importlib.util
import typing
from typing import Any

import pytest

import engine.pool
from bot.config import BotSettings, ConfigError, load_settings
from engine.backends import BACKENDS, BackendOptions, create_backend
from engine.pool import EnginePool

TOKEN = "MTIz.secret-token-value.XYZ"

# No value equals its default: a factory that drops one is caught.
OPTIONS = BackendOptions(
    workers=3,
    device="cpu",
    weights="random:7",
    job_timeout=42.0,
    start_timeout=17.0,
    ray_address="10.0.0.1:6379",
)


def settings(**values: Any) -> BotSettings:
    return load_settings(_env_file=None, discord_token=TOKEN, **values)


def recording(module: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replaces the backend class ``module.name`` with a subclass that records the arguments
    it is built with; returns them."""
    received: dict[str, Any] = {}
    real = getattr(module, name)

    class Recording(real):
        def __init__(self, **kwargs: Any) -> None:
            received.update(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(module, name, Recording)
    return received


def test_the_default_backend_is_local_worker_processes() -> None:
    chosen = settings()
    assert (chosen.stylize_backend, chosen.stylize_ray_address) == ("local", None)
    assert isinstance(create_backend(chosen.stylize_backend, BackendOptions()), EnginePool)


def test_every_backend_the_setting_accepts_is_registered() -> None:
    accepted = typing.get_args(BotSettings.model_fields["stylize_backend"].annotation)
    assert set(accepted) == set(BACKENDS)


def test_local_gets_every_option_it_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    received = recording(engine.pool, "EnginePool", monkeypatch)
    backend = create_backend("local", OPTIONS)
    assert isinstance(backend, EnginePool)
    assert received == {
        "workers": 3,
        "device": "cpu",
        "weights": "random:7",
        "job_timeout": 42.0,
        "start_timeout": 17.0,
    }


@pytest.mark.parametrize("address", [None, "auto", "10.0.0.1:6379", "ray://head.lan:10001"])
def test_ray_builds_the_ray_backend(address: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    import engine.ray_backend

    chosen = settings(stylize_backend="ray", stylize_ray_address=address)
    assert chosen.stylize_ray_address == address
    received = recording(engine.ray_backend, "RayBackend", monkeypatch)
    backend = create_backend(
        chosen.stylize_backend, dataclasses.replace(OPTIONS, ray_address=address)
    )
    assert isinstance(backend, engine.ray_backend.RayBackend)
    assert received == {
        "address": address,
        "workers": 3,
        "device": "cpu",
        "weights": "random:7",
        "job_timeout": 42.0,
        "start_timeout": 17.0,
    }


def test_an_unknown_backend_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match=r"'k8s'.*local, ray"):
        create_backend("k8s", OPTIONS)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"stylize_backend": "k8s"}, "STYLIZE_BACKEND"),
        ({"stylize_ray_address": "head.lan"}, "STYLIZE_RAY_ADDRESS"),
        ({"stylize_ray_address": "http://head.lan:6379"}, "STYLIZE_RAY_ADDRESS"),
    ],
)
def test_bad_values_are_refused_in_one_line(values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings(**values)
    message = str(refused.value)
    assert message.startswith(named) and "\n" not in message and TOKEN not in message


def test_ray_without_ray_installed_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def no_ray(name: str, *args: Any) -> Any:
        return None if name == "ray" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_ray)
    with pytest.raises(ConfigError, match=r"pip install 'stylize-bot\[ray\]'"):
        settings(stylize_backend="ray")
    assert settings().stylize_backend == "local"  # the local backend needs no Ray
