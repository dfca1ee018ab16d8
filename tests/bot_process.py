"""The real ``python -m bot`` as a test drives it: started against the fake Discord on one data
folder, signalled, killed and started again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fake_discord import FakeDiscord

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 240  # a worker imports torch and builds VGG19
STEPS = 60  # "high" doubles it, "draft" takes 0.4×: the first job runs long enough to be hit


@dataclass
class BotRun:
    """One ``python -m bot`` process, the leader of its own process group (its workers too)."""

    process: asyncio.subprocess.Process
    log_path: Path
    output: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_group(self) -> None:
        """``kill -9`` of the bot and its workers at once, as an OOM killer or a power cut."""
        os.killpg(self.process.pid, signal.SIGKILL)

    async def wait(self, timeout: float = 30) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)


class Bots:
    """Starts the bot on one data folder against one fake, as often as a test needs."""

    def __init__(self, fake: FakeDiscord, workdir: Path, **env: str) -> None:
        self.fake = fake
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.env = env
        self.runs: list[BotRun] = []

    def environment(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "STYLIZE_"))}
        env.update(
            PYTHONPATH=str(ROOT),
            DISCORD_TOKEN=self.fake.token,
            DISCORD_GUILD_ID=str(self.fake.guild_id),
            DISCORD_API_BASE_URL=self.fake.api_base_url,
            DISCORD_GATEWAY_URL=self.fake.gateway_url,
            DISCORD_CDN_URL=self.fake.base_url,
            STYLIZE_WEIGHTS="random:0",
            STYLIZE_DEVICE="cpu",
            STYLIZE_WORKERS="1",
            STYLIZE_MAX_SIZE="48",
            STYLIZE_STEPS=str(STEPS),
            STYLIZE_PROGRESS_INTERVAL="1",
            STYLIZE_DATA_DIR=str(self.data_dir),
        )
        env.update(self.env)
        env.update(extra)
        return env

    async def spawn(self, **extra: str) -> BotRun:
        log_path = self.workdir / f"bot-{len(self.runs) + 1}.log"
        with open(log_path, "wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=self.workdir,
                env=self.environment(**extra),
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group, workers included
            )
        run = BotRun(process, log_path)
        self.runs.append(run)
        return run

    async def start(self, **extra: str) -> BotRun:
        """Start the bot; return once it has connected (after it resumed the journal's jobs)."""
        identifies = self.fake.identifies
        run = await self.spawn(**extra)
        exited = asyncio.create_task(run.process.wait())
        connected = asyncio.create_task(
            self.fake.wait_for(lambda: self.fake.identifies > identifies, START_TIMEOUT)
        )
        await asyncio.wait({exited, connected}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            connected.cancel()
            pytest.fail(f"the bot exited during start-up:\n{run.log[-3000:]}")
        exited.cancel()
        await connected
        await self.fake.wait_ready()
        return run

    async def stop(self, run: BotRun) -> float:
        """SIGTERM; returns the seconds it took to exit, after checking it exited with 0."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        run.process.send_signal(signal.SIGTERM)
        code = await run.wait(20)
        took = loop.time() - began
        assert code == 0, run.log[-3000:]
        return took

    def kill_all(self) -> None:
        for run in self.runs:
            if run.process.returncode is None:
                os.killpg(run.process.pid, signal.SIGKILL)
