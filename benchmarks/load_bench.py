"""A flood of /stylize commands against the fake Discord: does the bot keep answering?

    python benchmarks/load_bench.py --commands 200 --users 50 --seconds 10 [--policy]

The real bot (discord.py, the journal, the local engine pool with one CPU worker and random
weights) runs in this process against ``tests.fake_discord`` on 127.0.0.1, as in the
end-to-end tests. ``--commands`` commands from ``--users`` members arrive evenly spread over
``--seconds``, each with its own two small PNGs to download and decode. Reported:

- the acknowledgement time of each command (the fake's clock, from sending the interaction to
  receiving the deferral): p50, p99 and maximum;
- the event-loop lag: how late a 50 ms ticker on the bot's loop woke up (p99 and maximum);
- how many commands were queued and how many refused, and whether each got a visible answer
  (its status message shows why it was refused, the queue position, the start or the end);
- the peak RSS (``VmHWM``) of this process (the bot and the fake together: an upper bound for
  the bot) and of each engine worker;
- the acknowledgement time of one fresh command sent right after the flood.

With ``--policy`` the server has a policy set before the flood (``/stylize-admin``, through
the bot's policy book): two allowed channels, daily quotas for @everyone and three other
roles, spoilers outside NSFW channels, and every tenth member blocked; so every command
passes the policy's checks, and some are refused by them (privately, before the deferral).

The queued jobs are not run to the end: the bot shuts down after the fresh command, and they
stay in its journal (in a temporary folder, deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import platform
import statistics
import tempfile
from pathlib import Path

from PIL import Image

from bot.client import StylizeBot
from bot.config import load_settings
from bot.journal import RoleLimit
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeUser, payloads

TOKEN = "load-bench-token"


def png(width: int, height: int, seed: int) -> bytes:
    image = Image.new("RGB", (width, height), (seed % 256, 90, 160))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def peak_rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def ticker(lags: list[float], stop: asyncio.Event, period: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        expected = loop.time() + period
        await asyncio.sleep(period)
        lags.append(max(0.0, loop.time() - expected))


def answered(interaction: FakeInteraction) -> bool:
    message = interaction.original
    # A refusal, the queue position, the start, or (for the first jobs) already the end.
    return message is not None and message.content.startswith(("❌", "⏳", "🎨", "✅", "🛑"))


async def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(dir=".") as data_dir:
        async with FakeDiscord(token=TOKEN) as fake:
            settings = load_settings(
                _env_file=None,
                stylize_data_dir=Path(data_dir),
                discord_token=fake.token,
                discord_guild_id=fake.guild_id,
                discord_api_base_url=fake.api_base_url,
                discord_gateway_url=fake.gateway_url,
                stylize_weights="random:0",
                stylize_device="cpu",
                stylize_workers=1,
                stylize_max_size=64,
                stylize_steps=4,
                stylize_queue_per_user=2,
                stylize_queue_size=args.commands,
                stylize_progress_interval=1.0,
            )
            bot = StylizeBot(settings)
            running = asyncio.create_task(bot.start(TOKEN))
            await fake.wait_commands(timeout=300)
            await asyncio.wait_for(bot.wait_until_ready(), 60)
            pool = getattr(bot, "backend", None)
            users = [FakeUser(payloads.snowflake(), f"member{i}") for i in range(args.users)]
            fake.users.update({u.id: u for u in users})
            if args.policy:
                policies = bot.jobs.policies
                guild = fake.guild_id
                await policies.set_channels(guild, frozenset({fake.channel_id, 1, 2}))
                await policies.set_spoiler(guild, "outside_nsfw")
                await policies.set_role_limit(guild, RoleLimit(guild, 3, 48))
                for role_id in (fake.moderator_role_id, fake.admin_role_id, 12345):
                    await policies.set_role_limit(guild, RoleLimit(role_id, 20, None))
                for user in users[::10]:
                    await policies.set_blocked(guild, user.id, True)

            lags: list[float] = []
            stop = asyncio.Event()
            tick = asyncio.create_task(ticker(lags, stop))
            loop = asyncio.get_running_loop()
            start = loop.time()

            async def command(i: int) -> FakeInteraction:
                await asyncio.sleep(
                    max(0.0, start + i * args.seconds / args.commands - loop.time())
                )
                options = {
                    "content": fake.add_attachment(png(64, 48, i), f"photo{i}.png"),
                    "style": fake.add_attachment(png(48, 48, i + 1), f"style{i}.png"),
                    "size": 32,
                }
                return await fake.invoke("stylize", options, user=users[i % len(users)])

            interactions = await asyncio.gather(*(command(i) for i in range(args.commands)))
            sent_in = loop.time() - start
            for interaction in interactions:
                await interaction.wait_callback(timeout=30)
            await fake.wait_for(lambda: all(answered(i) for i in interactions), 120)
            stop.set()
            await tick

            fresh_user = FakeUser(payloads.snowflake(), "fresh")
            fake.users[fresh_user.id] = fresh_user
            fresh = await fake.invoke(
                "stylize",
                {"content": fake.add_attachment(png(64, 48, 7), "fresh.png"),
                 "style": fake.add_attachment(png(48, 48, 8), "fresh-style.png"), "size": 32},
                user=fresh_user,
            )  # fmt: skip
            await fresh.wait_callback(timeout=30)
            await fake.wait_for(lambda: answered(fresh), 60)

            every_answered = all(answered(i) for i in interactions)  # checked above, kept
            acks = [i.ack_latency or float("inf") for i in interactions]
            refused = [
                i for i in interactions if i.original and i.original.content.startswith("❌")
            ]
            privately = sum(1 for i in interactions if i.callbacks[0]["type"] == 4)
            worker_pids = [p for p in getattr(pool, "worker_pids", ()) if p]
            worker_rss = [peak_rss_mib(p) for p in worker_pids]
            bot_rss = peak_rss_mib()
            reasons: dict[str, int] = {}
            for i in refused:
                assert i.original is not None
                key = i.original.content.split(".")[0][:60]
                reasons[key] = reasons.get(key, 0) + 1

            await bot.close()
            await asyncio.wait_for(running, 60)

    cpus, python = os.cpu_count(), platform.python_version()
    print(f"machine: {platform.machine()}, {cpus} CPU(s), Python {python}")
    print(f"{args.commands} /stylize from {args.users} users, sent within {sent_in:.1f} s")
    print(
        f"acknowledgement: p50 {statistics.median(acks) * 1000:.1f} ms, "
        f"p99 {percentile(acks, 0.99) * 1000:.1f} ms, max {max(acks) * 1000:.1f} ms"
    )
    print(
        f"event-loop lag (50 ms ticker): p99 {percentile(lags, 0.99) * 1000:.1f} ms, "
        f"max {max(lags) * 1000:.1f} ms over {len(lags)} ticks"
    )
    print(f"policy set: {args.policy}")
    print(f"queued {len(interactions) - len(refused)}, refused {len(refused)} "
          f"({privately} privately, before the deferral); "
          f"every command answered: {every_answered}")  # fmt: skip
    for reason, count in sorted(reasons.items()):
        print(f"  refused {count}×: {reason}")
    workers = ", ".join(f"{r:.0f} MiB" for r in worker_rss) or "n/a"
    print(f"peak RSS: bot + fake {bot_rss:.0f} MiB; workers {workers}")
    print(f"fresh command right after: acknowledged in {(fresh.ack_latency or 0) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--policy", action="store_true", help="set a server policy (quotas, blocks) first"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
