"""The bot's settings, read from the environment and ``.env`` (names as in DESIGN.md).

``load_settings`` turns every problem into one line that names the setting, so the
``stylize-bot`` command can print it without a traceback. The token is a ``SecretStr``:
its value appears in no repr, log line or error message.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import SettingsError
from engine.settings import MAX_SIZE, MAX_STEPS, MIN_SIZE, StylizeSettings

DEFAULT_API_BASE_URL = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"
DEFAULT_STEPS = StylizeSettings().steps

# Editing one message more often than this trips Discord's per-route limits; discord.py
# would then queue the edits, so a faster setting only makes progress lag behind.
MIN_PROGRESS_INTERVAL = 1.0


_RAY_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}")


class ConfigError(Exception):
    """A setting is missing or invalid; ``str()`` is one line naming it."""


class BotSettings(BaseSettings):
    """Every setting of ``stylize-bot``. Field names are the environment names, lowercased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # `KEY=` in a .env copied from .env.example means "unset", not "empty string".
        env_ignore_empty=True,
        validate_default=True,
    )

    discord_token: SecretStr
    discord_guild_id: int | None = Field(default=None, gt=0)
    discord_api_base_url: str = DEFAULT_API_BASE_URL
    discord_gateway_url: str = DEFAULT_GATEWAY_URL

    stylize_weights: str = "imagenet"
    stylize_device: str = "auto"
    stylize_workers: int | None = Field(default=None, ge=1, le=64)
    stylize_max_size: int = Field(default=512, ge=MIN_SIZE, le=MAX_SIZE)
    stylize_steps: int = Field(default=DEFAULT_STEPS, ge=1, le=MAX_STEPS)
    stylize_max_input_mb: float = Field(default=10.0, gt=0, le=500)
    stylize_max_pixels: int = Field(default=40_000_000, ge=MIN_SIZE * MIN_SIZE)
    stylize_queue_per_user: int = Field(default=2, ge=1)
    stylize_queue_size: int = Field(default=100, ge=1)
    stylize_job_timeout: float = Field(default=600.0, gt=0)
    # How long the engine may take to load its network (a first start downloads 548 MB).
    stylize_start_timeout: float = Field(default=900.0, gt=0)
    stylize_progress_interval: float = Field(default=5.0, ge=MIN_PROGRESS_INTERVAL)
    # Bot-only extra: a preview image rides on every N-th progress edit; 0 sends none.
    stylize_preview_every: int = Field(default=3, ge=0)
    stylize_data_dir: Path = Path("data")
    stylize_keep_days: float = Field(default=7.0, gt=0, le=3650)
    # Each server's gallery of saved styles (/styles): at most this many, and this many MB in
    # all. 25 is also the most choices Discord shows in an autocomplete list.
    stylize_gallery_max_styles: int = Field(default=25, ge=1, le=1000)
    stylize_gallery_max_mb: float = Field(default=50.0, gt=0, le=10_000)
    stylize_backend: Literal["local", "ray"] = "local"
    stylize_ray_address: str | None = None
    # /metrics, /healthz and /readyz (bot/ops_server.py); unset: nothing listens. 0 takes any
    # free port (it is logged).
    stylize_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    stylize_metrics_host: str = Field(default="127.0.0.1", min_length=1)

    @field_validator("discord_token")
    @classmethod
    def _token_is_one_word(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        if token.lower().startswith("bot "):
            token = token[4:].strip()
        if not token or any(c.isspace() for c in token):
            raise ValueError("must be the bot token from the developer portal, with no spaces")
        return SecretStr(token)

    @field_validator("discord_api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("discord_gateway_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @field_validator("stylize_ray_address")
    @classmethod
    def _ray_address(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or _RAY_ADDRESS.fullmatch(value):
            return value
        raise ValueError("must be auto, HOST:PORT or ray://HOST:PORT (unset starts Ray here)")

    @model_validator(mode="after")
    def _ray_is_installed(self) -> BotSettings:
        if self.stylize_backend == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError(
                "STYLIZE_BACKEND: ray needs Ray installed: pip install 'stylize-bot[ray]'"
            )
        return self

    @model_validator(mode="after")
    def _engine_accepts(self) -> BotSettings:
        # Ask the engine's own validation now, so a typo fails at start-up, not on the
        # first /stylize.
        checks = {
            "STYLIZE_WEIGHTS": lambda: StylizeSettings(weights=self.stylize_weights),
            "STYLIZE_DEVICE": lambda: StylizeSettings(device=self.stylize_device),
        }
        for name, check in checks.items():
            try:
                check()
            except SettingsError as error:
                message = str(error).split(": ", 1)[-1]
                raise ValueError(f"{name}: {message}") from None
        return self

    @model_validator(mode="after")
    def _weights_file_is_here(self) -> BotSettings:
        # A path is read by the workers of this machine (the local backend, or a Ray this
        # bot starts itself): check it now, offline, not after logging in to Discord. Nodes
        # of a cluster it joins have their own disks.
        weights = self.stylize_weights
        local = self.stylize_backend == "local" or self.stylize_ray_address is None
        if weights == "imagenet" or weights.startswith("random") or not local:
            return self
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ValueError(
                f"STYLIZE_WEIGHTS: there is no file at {path}; put the VGG19 .pth file there, "
                "or use imagenet to download it once"
            )
        if not os.access(path, os.R_OK):
            raise ValueError(f"STYLIZE_WEIGHTS: {path} cannot be read by this user")
        return self

    @property
    def token(self) -> str:
        return self.discord_token.get_secret_value()

    @property
    def keep_seconds(self) -> float:
        return self.stylize_keep_days * 24 * 3600

    @property
    def gallery_max_bytes(self) -> int:
        return int(self.stylize_gallery_max_mb * 1024 * 1024)

    @property
    def max_input_bytes(self) -> int:
        return int(self.stylize_max_input_mb * 1024 * 1024)

    @property
    def default_size(self) -> int:
        """The size when the user gives none: the engine's default, within the server's cap."""
        return min(StylizeSettings().size, self.stylize_max_size)


def load_settings(**overrides: Any) -> BotSettings:
    """Read the settings; raise ``ConfigError`` with one line naming what is wrong."""
    try:
        return BotSettings(**overrides)
    except ValidationError as error:
        raise ConfigError(describe(error)) from None


def describe(error: ValidationError) -> str:
    """One line for all problems, naming each setting and never echoing a value."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        if not name:  # a model-level check, already prefixed with its setting's name
            problems.append(message)
        elif item["type"] == "missing":
            problems.append(f"{name} is not set{_MISSING_HINTS.get(name, '')}")
        else:
            problems.append(f"{name}: {message}")
    return "; ".join(problems)


_MISSING_HINTS = {
    "DISCORD_TOKEN": (
        ": put your bot's token in the environment or in .env (see .env.example and "
        "the README's 'Run it on your server')"
    ),
}
