"""Serve the tests' fake Discord on 127.0.0.1 for a bot started by hand, e.g. the container
image (docs/deploy.md): writes the bot's Discord settings to an env file, runs /stylize with
the sample pictures once the bot has registered its commands, says what came back, and
serves until Ctrl+C or SIGTERM.

    python -m tests.serve_fake_discord --env-file /tmp/fake-discord.env [--jobs N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from pathlib import Path

from tests.fake_discord import FakeDiscord

ROOT = Path(__file__).resolve().parents[1]


async def serve(env_file: Path, jobs: int, size: int, wait: float) -> None:
    async with FakeDiscord(token="fake-token.serve-SECRET") as fake:
        env_file.write_text(
            f"DISCORD_TOKEN={fake.token}\n"
            f"DISCORD_GUILD_ID={fake.guild_id}\n"
            f"DISCORD_API_BASE_URL={fake.api_base_url}\n"
            f"DISCORD_GATEWAY_URL={fake.gateway_url}\n",
            encoding="utf-8",
        )
        print(f"fake Discord on {fake.base_url}; the bot's settings are in {env_file}", flush=True)
        commands = await fake.wait_commands(timeout=wait)
        print(f"the bot registered {sorted(c['name'] for c in commands)}", flush=True)
        for number in range(1, jobs + 1):
            content = fake.add_attachment((ROOT / "samples/content.png").read_bytes(), "photo.png")
            style = fake.add_attachment((ROOT / "samples/style.png").read_bytes(), "style.png")
            began = time.monotonic()
            interaction = await fake.invoke(
                "stylize", {"content": content, "style": style, "size": size, "seed": number}
            )
            callback = await interaction.wait_callback(timeout=5)
            await fake.wait_for(lambda i=interaction: bool(i.followups), wait)
            [result] = interaction.followups
            [(name, data)] = result.attachments
            print(
                f"/stylize #{number}: callback type {callback['type']}, result {name} "
                f"({len(data)} bytes) after {time.monotonic() - began:.1f} s: "
                f"{result.content.splitlines()[0]!r}",
                flush=True,
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("serving until Ctrl+C", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=1, help="/stylize runs (default 1)")
    parser.add_argument("--size", type=int, default=64, help="each result's size in px")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for the bot")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.env_file, args.jobs, args.size, args.wait))


if __name__ == "__main__":
    main()
