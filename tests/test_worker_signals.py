"""Worker processes under systemd's stop: SIGTERM to the whole process group.

systemd's default ``KillMode=control-group`` signals every process of the service at once. The
workers must leave their shutdown to the pool: the job ends as stopped by the shutdown (its
user reads "restarting"), not as a crash, and no replacement worker starts meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from tests.backend_fixtures import CONTENT, LONG, STYLE

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

SCRIPT = (
    "import asyncio, logging, signal\n"
    "from engine.jobs import Job, JobProgress\n"
    "from engine.pool import EnginePool\n"
    "from engine.settings import StylizeSettings\n"
    "async def main():\n"
    "    logging.basicConfig(level=logging.INFO)\n"
    "    pool = EnginePool(workers=1, device='cpu', weights='random:0', threads=1)\n"
    "    await pool.start()\n"
    "    stop = asyncio.Event()\n"
    "    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)\n"
    f"    job = Job({CONTENT!r}, ({STYLE!r},), StylizeSettings(size=48, steps={LONG}))\n"
    "    events = asyncio.Queue()\n"
    "    async def pump():\n"
    "        async for event in pool.submit(job):\n"
    "            events.put_nowait(event)\n"
    "    task = asyncio.create_task(pump())\n"
    "    while not isinstance(await events.get(), JobProgress):\n"
    "        pass\n"
    "    print('running', flush=True)\n"
    "    await stop.wait()\n"
    # A worker killed by the signal ends the job at once; give that the time to show.
    "    done, _ = await asyncio.wait({task}, timeout=3)\n"
    "    await pool.close(5)\n"
    "    await task\n"
    "    final = None\n"
    "    while not events.empty():\n"
    "        final = events.get_nowait()\n"
    "    print(type(final).__name__, getattr(final, 'kind', ''), flush=True)\n"
    "if __name__ == '__main__':\n"
    "    asyncio.run(main())\n"
)


async def test_sigterm_to_the_process_group_leaves_the_shutdown_to_the_pool() -> None:
    bot = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, as a systemd service has
    )
    try:
        assert bot.stdout is not None
        assert (await bot.stdout.readline()).strip() == b"running"
        os.killpg(bot.pid, signal.SIGTERM)
        out, err = await bot.communicate()
    finally:
        if bot.returncode is None:
            os.killpg(bot.pid, signal.SIGKILL)
            await bot.wait()
    assert bot.returncode == 0, err.decode()[-2000:]
    assert out.decode().split()[0] == "Cancelled", out.decode() + err.decode()[-2000:]
    assert b"starting a replacement" not in err
    assert b"exited with code" not in err
