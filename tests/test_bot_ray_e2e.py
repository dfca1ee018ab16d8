"""End to end with ``STYLIZE_BACKEND=ray``: the real bot against the fake Discord, its jobs on
a Ray actor. ``STYLIZE_RAY_ADDRESS`` is unset, so the bot starts a private Ray on this machine
itself, with a fresh auth token that it never logs, and must stop it again (no process left
behind, the token gone from its environment) when it closes.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from bot.client import StylizeBot
from bot.config import load_settings
from tests.backend_fixtures import children, picture
from tests.fake_discord import FakeDiscord

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]

TOKEN = "fake-token-XYZ.ray-e2e-SECRET-do-not-log"


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def logs() -> Iterator[LogLines]:
    handler = LogLines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


async def test_the_bot_runs_its_jobs_on_ray(logs: LogLines, tmp_path: Path) -> None:
    assert not ray.is_initialized() and "RAY_AUTH_TOKEN" not in os.environ
    before = children()
    async with FakeDiscord(token=TOKEN) as fake:
        settings = load_settings(
            _env_file=None,
            stylize_data_dir=tmp_path / "data",
            discord_token=fake.token,
            discord_guild_id=fake.guild_id,
            discord_api_base_url=fake.api_base_url,
            discord_gateway_url=fake.gateway_url,
            stylize_backend="ray",
            stylize_weights="random:0",
            stylize_device="cpu",
            stylize_max_size=64,
            stylize_steps=4,
            stylize_progress_interval=1.0,
        )
        bot = StylizeBot(settings)
        running = asyncio.create_task(bot.start(TOKEN))
        try:
            await fake.wait_commands(timeout=240)
            ray_token = os.environ.get("RAY_AUTH_TOKEN")
            assert ray_token  # the bot's private Ray admits only clients with it
            content = fake.add_attachment(picture(1, (64, 48)), "photo.png")
            style = fake.add_attachment(picture(2, (48, 48)), "painting.png")
            interaction = await fake.invoke(
                "stylize", {"content": content, "style": style, "size": 48, "seed": 3}
            )
            await fake.wait_for(lambda: bool(interaction.followups), 120)
            [result] = interaction.followups
            [(filename, data)] = result.attachments
            assert filename.startswith("stylized") and filename.endswith(".png")
            assert Image.open(io.BytesIO(data)).size == (48, 36)
            assert "seed 3" in result.content
        finally:
            await bot.close()
            await asyncio.wait_for(running, 60)
    # The cluster as the operator sees it in the log, and Ray stopped with the bot.
    started = "ray backend started: 1 actor(s) on 1 node(s)"
    assert any(line.startswith(started) for line in logs.lines), logs.lines
    assert not ray.is_initialized()
    assert children() <= before
    assert not any(TOKEN in line or ray_token in line for line in logs.lines)
    assert "RAY_AUTH_TOKEN" not in os.environ
