"""The deployment files agree with the bot and with each other: compose.yaml (parsed as YAML),
the Dockerfile, the systemd unit and the Grafana dashboard. Building and running the image is
recorded in docs/deploy.md; CI builds no image."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import yaml

from bot.metrics import BotMetrics

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def image_env() -> dict[str, str]:
    """The runtime stage's ENV settings."""
    runtime = dockerfile().rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", runtime, flags=re.M):
        for name, value in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[name] = value
    return env


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((ROOT / "deploy/stylize-bot.service").read_text(encoding="utf-8"))
    return parser


def test_compose_runs_the_bot_with_env_file_volume_restarts_and_a_gpu() -> None:
    service = compose()["services"]["bot"]
    assert service["env_file"] == ".env"
    assert service["restart"] == "unless-stopped"
    volumes = dict(v.split(":", 1) for v in service["volumes"])
    assert volumes["data"] == service["environment"]["STYLIZE_DATA_DIR"] == "/data"
    assert "data" in compose()["volumes"]  # a named volume, not a folder of the host
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_compose_publishes_the_metrics_port_to_this_host_only() -> None:
    service = compose()["services"]["bot"]
    port = service["environment"]["STYLIZE_METRICS_PORT"]
    assert port == image_env()["STYLIZE_METRICS_PORT"]
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_the_image_keeps_its_data_on_a_volume_runs_unprivileged_and_is_checked() -> None:
    text = dockerfile()
    env = image_env()
    assert env["STYLIZE_DATA_DIR"] == "/data" and 'VOLUME ["/data"]' in text
    assert env["STYLIZE_METRICS_PORT"] and env["STYLIZE_METRICS_HOST"] == "0.0.0.0"
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, flags=re.M)
    assert re.search(r'^ENTRYPOINT \["tini", "--"\]$', text, flags=re.M)
    assert re.search(r"^ARG TORCH_INDEX_URL=\S*/whl/cpu$", text, flags=re.M)  # CPU by default


def test_the_image_gets_only_what_it_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert lines[lines.index("*")] == "*"  # .env and data/ never reach the build
    copied = set(re.findall(r"^COPY (?!--)(\S+)", dockerfile(), flags=re.M))
    assert copied == {"pyproject.toml", "engine", "bot"}
    assert {f"!{name}/" for name in ("engine", "bot")} <= set(lines)


def test_the_systemd_unit_restarts_on_failure_and_stops_the_whole_group() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["KillMode"] == "control-group"
    assert service["RestartPreventExitStatus"] == "2"  # a setting to fix, not a crash
    assert int(service["TimeoutStopSec"]) > 15  # the bot exits within 15 s


def test_the_systemd_unit_is_hardened_with_the_data_folder_writable() -> None:
    service = unit()["Service"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    environment = (ROOT / "deploy/stylize-bot.service").read_text(encoding="utf-8")
    data_dir = re.search(r"^Environment=STYLIZE_DATA_DIR=(\S+)$", environment, flags=re.M)
    assert data_dir is not None
    assert data_dir.group(1) in service["ReadWritePaths"].split()


def test_the_dashboard_shows_only_metrics_the_bot_has() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bstylize_\w+", expr)}
    metrics = BotMetrics()
    metrics.command_ran("stylize", "ok")  # a series for each labelled metric
    metrics.discord_http_error(429)
    exposed = metrics.exposition().decode()
    known = set(re.findall(r"^(stylize_\w+?)(?:\{| )", exposed, flags=re.M))
    assert used and used <= known, used - known
    design = {
        "stylize_jobs_total", "stylize_job_duration_seconds_bucket",
        "stylize_queue_wait_seconds_bucket", "stylize_queue_waiting", "stylize_jobs_running",
        "stylize_engine_capacity", "stylize_outbox_pending",
        "stylize_discord_http_errors_total", "stylize_commands_total",
    }  # fmt: skip
    assert design <= used, design - used
