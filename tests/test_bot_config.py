"""Settings (bot.config): names and defaults as in DESIGN.md, one-line errors, a secret token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import BotSettings, ConfigError, load_settings
from engine.settings import StylizeSettings

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "MTIz.secret-token-value.XYZ"
NAMES = [name.upper() for name in BotSettings.model_fields]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the developer's environment or .env leaks into a test."""
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settings_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> BotSettings:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_every_design_setting_exists() -> None:
    assert set(NAMES) >= {
        "DISCORD_TOKEN",
        "DISCORD_GUILD_ID",
        "DISCORD_API_BASE_URL",
        "DISCORD_GATEWAY_URL",
        "DISCORD_CDN_URL",
        "STYLIZE_WEIGHTS",
        "STYLIZE_DEVICE",
        "STYLIZE_WORKERS",
        "STYLIZE_MAX_SIZE",
        "STYLIZE_STEPS",
        "STYLIZE_MAX_INPUT_MB",
        "STYLIZE_MAX_PIXELS",
        "STYLIZE_QUEUE_PER_USER",
        "STYLIZE_QUEUE_SIZE",
        "STYLIZE_JOB_TIMEOUT",
        "STYLIZE_PROGRESS_INTERVAL",
        "STYLIZE_DATA_DIR",
        "STYLIZE_KEEP_DAYS",
    }


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(monkeypatch)
    assert settings.token == TOKEN
    assert settings.discord_guild_id is None
    assert settings.discord_api_base_url == "https://discord.com/api/v10"
    assert settings.discord_gateway_url == "wss://gateway.discord.gg/"
    assert settings.discord_cdn_url == "https://cdn.discordapp.com"
    assert settings.stylize_weights == "imagenet"
    assert settings.stylize_device == "auto"
    assert settings.stylize_workers is None  # the pool: one per GPU, else 1
    assert settings.stylize_max_size == 1024  # Bigger goes up to it
    assert settings.default_size == 512  # a result is 512 px unless asked
    assert settings.stylize_steps == StylizeSettings().steps
    assert settings.stylize_max_input_mb == 10
    assert settings.max_input_bytes == 10 * 1024 * 1024
    assert settings.stylize_max_pixels == 40_000_000
    assert settings.stylize_queue_per_user == 2
    assert settings.stylize_queue_size == 100
    assert settings.stylize_job_timeout == 600
    assert settings.stylize_progress_interval == 5
    assert settings.stylize_data_dir == Path("data")  # relative to the working directory
    assert settings.stylize_keep_days == 7
    assert settings.keep_seconds == 7 * 24 * 3600


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(
        monkeypatch,
        DISCORD_GUILD_ID="123456789012345678",
        DISCORD_API_BASE_URL="http://127.0.0.1:8080/api/v10/",
        STYLIZE_WEIGHTS="random:0",
        STYLIZE_DEVICE="cuda:1",
        STYLIZE_WORKERS="2",
        STYLIZE_MAX_SIZE="1024",
        STYLIZE_MAX_INPUT_MB="2.5",
        STYLIZE_QUEUE_PER_USER="3",
        STYLIZE_DATA_DIR="/var/lib/stylize",
        STYLIZE_KEEP_DAYS="0.5",
    )
    assert settings.discord_guild_id == 123456789012345678
    assert settings.discord_api_base_url == "http://127.0.0.1:8080/api/v10"
    assert (settings.stylize_weights, settings.stylize_device) == ("random:0", "cuda:1")
    assert (settings.stylize_workers, settings.stylize_max_size) == (2, 1024)
    assert settings.max_input_bytes == int(2.5 * 1024 * 1024)
    assert settings.stylize_queue_per_user == 3
    assert settings.stylize_data_dir == Path("/var/lib/stylize")
    assert settings.keep_seconds == 12 * 3600
    assert settings.default_size == 512  # the engine's default, within the cap


def test_default_size_never_exceeds_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_with(monkeypatch, STYLIZE_MAX_SIZE="64").default_size == 64


def test_dotenv_file_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        f"DISCORD_TOKEN={TOKEN}\nDISCORD_GUILD_ID=\nSTYLIZE_QUEUE_SIZE=7\n", encoding="utf-8"
    )
    settings = load_settings()
    assert settings.token == TOKEN
    assert settings.discord_guild_id is None  # "KEY=" as copied from .env.example means unset
    assert settings.stylize_queue_size == 7


def test_bot_prefix_and_spaces_around_the_token_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", f"  Bot {TOKEN} ")
    assert load_settings().token == TOKEN


def test_missing_token_names_the_setting() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith("DISCORD_TOKEN is not set")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISCORD_GUILD_ID", "my-server"),
        ("DISCORD_API_BASE_URL", "discord.com/api"),
        ("DISCORD_GATEWAY_URL", "https://gateway.discord.gg"),
        ("DISCORD_CDN_URL", "cdn.discordapp.com"),
        ("STYLIZE_WEIGHTS", "random:abc"),
        ("STYLIZE_DEVICE", "gpu"),
        ("STYLIZE_WORKERS", "0"),
        ("STYLIZE_MAX_SIZE", "9"),
        ("STYLIZE_MAX_SIZE", "100000"),
        ("STYLIZE_STEPS", "0"),
        ("STYLIZE_MAX_INPUT_MB", "-1"),
        ("STYLIZE_MAX_PIXELS", "ten"),
        ("STYLIZE_QUEUE_PER_USER", "0"),
        ("STYLIZE_QUEUE_SIZE", "0"),
        ("STYLIZE_JOB_TIMEOUT", "0"),
        ("STYLIZE_PROGRESS_INTERVAL", "0.1"),
        ("STYLIZE_KEEP_DAYS", "0"),
        ("STYLIZE_KEEP_DAYS", "a week"),
    ],
)
def test_invalid_value_gives_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    with pytest.raises(ConfigError) as error:
        settings_with(monkeypatch, **{name: value})
    message = str(error.value)
    assert message.startswith(f"{name}:")
    assert "\n" not in message
    assert TOKEN not in message


@pytest.mark.parametrize("token", ["two words", "   "])
def test_malformed_token_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", token)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith("DISCORD_TOKEN")
    assert "two words" not in str(error.value)


def test_token_is_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(monkeypatch)
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.model_dump())


def _run_bot(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_command_without_token_says_what_is_missing(clean_env: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    result = _run_bot(env, clean_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DISCORD_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr


def test_command_with_bad_setting_prints_one_line_without_the_token(clean_env: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    env.update(DISCORD_TOKEN=TOKEN, STYLIZE_QUEUE_SIZE="lots")
    result = _run_bot(env, clean_env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "STYLIZE_QUEUE_SIZE" in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_bot_process_never_imports_torch() -> None:
    code = (
        "import sys, bot.client, bot.cogs.stylize, bot.__main__\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_env_example_lists_every_setting_with_a_comment() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    for name in NAMES:
        [index] = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
        assert lines[index - 1].startswith("#"), f"{name} has no comment above it"


def test_env_example_copied_as_is_gives_the_defaults(clean_env: Path) -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    (clean_env / ".env").write_text(
        example.replace("\nDISCORD_TOKEN=\n", f"\nDISCORD_TOKEN={TOKEN}\n"), encoding="utf-8"
    )
    assert load_settings() == BotSettings(discord_token=TOKEN, _env_file=None)
