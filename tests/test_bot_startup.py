"""Start-up as an operator meets it: the real ``python -m bot``, against the fake Discord or
against no Discord at all.

* Settings that can be checked offline (the data folder, a weights file) are refused before the
  bot tries to connect anywhere, with exit status 2 and one line naming the setting.
* A second bot on the same data folder exits at once.
* A signal at any moment of start-up ends the process quickly, even while the engine's worker
  is still waiting on a weights download; a download that never ends fails the start.

The download that never ends is real: the ImageNet weights are not in a fresh ``TORCH_HOME``
and ``https_proxy`` points at a local server that accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bot_process import BotRun, Bots
from tests.fake_discord import FakeDiscord

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = {
    # Nothing listens on port 9 (discard) here: a bot that tried Discord would say so.
    "DISCORD_API_BASE_URL": "http://127.0.0.1:9/api/v10",
    "DISCORD_GATEWAY_URL": "ws://127.0.0.1:9/",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token="fake-token.startup-SECRET") as fake:
        yield fake


@pytest.fixture
async def silent_proxy() -> AsyncIterator[str]:
    peers: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)  # kept open, never answered

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for writer in peers:
        writer.close()
    server.close()


@pytest.fixture
async def bots(fake: FakeDiscord, tmp_path: Path, silent_proxy: str) -> AsyncIterator[Bots]:
    """Bots whose engine waits forever for the ImageNet weights."""
    bots = Bots(
        fake,
        tmp_path,
        STYLIZE_WEIGHTS="imagenet",
        TORCH_HOME=str(tmp_path / "torch"),
        https_proxy=silent_proxy,
        HTTPS_PROXY=silent_proxy,
        no_proxy="",
        NO_PROXY="",
    )
    try:
        yield bots
    finally:
        bots.kill_all()
        for run in bots.runs:
            await run.process.wait()
    for run in bots.runs:
        assert fake.token not in run.log
        assert "Traceback" not in run.log, run.log


async def until_logged(run: BotRun, text: str, timeout: float = 60) -> None:
    async def poll() -> None:
        while text not in run.log:
            if run.process.returncode is not None:
                pytest.fail(f"the bot exited before logging {text!r}:\n{run.log[-3000:]}")
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout)


def group_alive(run: BotRun) -> bool:
    try:
        os.killpg(run.process.pid, 0)
    except ProcessLookupError:
        return False
    return True


async def until_group_gone(run: BotRun, timeout: float) -> None:
    async def poll() -> None:
        while group_alive(run):
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout)


# ----- offline checks -------------------------------------------------------------------------


def run_offline(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "STYLIZE_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        DISCORD_TOKEN="offline-token.SECRET",
        STYLIZE_DEVICE="cpu",
        STYLIZE_DATA_DIR=str(tmp_path / "data"),
        **UNREACHABLE,
    )
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("stylize-bot:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot reach Discord" not in result.stderr
    return lines[0]


def test_a_missing_weights_file_is_named_before_connecting(tmp_path: Path) -> None:
    result = run_offline(tmp_path, STYLIZE_WEIGHTS=str(tmp_path / "nonexistent.pth"))
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert "STYLIZE_WEIGHTS" in line and "nonexistent.pth" in line


@pytest.mark.parametrize("case", ["a file", "under a file"])
def test_a_bad_data_folder_is_named_before_connecting(tmp_path: Path, case: str) -> None:
    (tmp_path / "file").write_text("not a folder")
    target = tmp_path / "file" if case == "a file" else tmp_path / "file" / "data"
    result = run_offline(tmp_path, STYLIZE_WEIGHTS="random:0", STYLIZE_DATA_DIR=str(target))
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert "STYLIZE_DATA_DIR" in line and str(target) in line


# ----- one bot per data folder, and signals during start-up ----------------------------------


async def test_a_second_bot_on_the_same_data_folder_exits_at_once(bots: Bots) -> None:
    first = await bots.spawn()
    await until_logged(first, "starting the engine")
    second = await bots.spawn()
    code = await second.wait(30)
    assert code != 0
    lines = [line for line in second.log.splitlines() if line.startswith("stylize-bot:")]
    assert len(lines) == 1, second.log
    assert "another instance" in lines[0] and str(bots.data_dir) in lines[0]
    assert "logging in" not in second.log, "the second bot went on to Discord"
    # The first one is untouched by it.
    assert first.process.returncode is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_while_the_engine_starts_ends_the_bot_quickly(
    bots: Bots, signum: signal.Signals
) -> None:
    run = await bots.spawn()
    await until_logged(run, "starting the engine")
    await asyncio.sleep(1.0)  # the worker is up and waiting on the download
    loop = asyncio.get_running_loop()
    began = loop.time()
    run.process.send_signal(signum)
    code = await run.wait(20)
    took = loop.time() - began
    assert took < 15, f"took {took:.1f} s"
    assert code == 0, run.log[-3000:]
    await until_group_gone(run, 5)  # its worker too


async def test_an_engine_that_never_loads_stops_the_bot_with_a_clear_line(bots: Bots) -> None:
    run = await bots.spawn(STYLIZE_START_TIMEOUT="3")
    code = await run.wait(60)
    assert code not in (0, None)
    lines = [line for line in run.log.splitlines() if line.startswith("stylize-bot:")]
    assert len(lines) == 1, run.log[-3000:]
    assert "within 3 s" in lines[0] and "engine" in lines[0]
    await until_group_gone(run, 5)
