"""STYLIZE_BACKEND and STYLIZE_RAY_ADDRESS: what they accept, one-line refusals, and the
backend that ``bot.client.make_pool`` builds from them (not started)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from bot.client import make_pool
from bot.config import BotSettings, ConfigError, load_settings
from engine.pool import EnginePool
from engine.ray_backend import RayBackend

TOKEN = "MTIz.secret-token-value.XYZ"


def settings(**values: Any) -> BotSettings:
    return load_settings(_env_file=None, discord_token=TOKEN, **values)


def test_the_default_backend_is_local_worker_processes() -> None:
    chosen = settings()
    assert (chosen.stylize_backend, chosen.stylize_ray_address) == ("local", None)
    assert isinstance(make_pool(chosen), EnginePool)


@pytest.mark.parametrize("address", [None, "auto", "10.0.0.1:6379", "ray://head.lan:10001"])
def test_ray_builds_the_ray_backend(address: str | None) -> None:
    chosen = settings(stylize_backend="ray", stylize_ray_address=address)
    assert chosen.stylize_ray_address == address
    assert isinstance(make_pool(chosen), RayBackend)


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
