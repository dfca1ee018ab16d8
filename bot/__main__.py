"""``stylize-bot`` (also ``python -m bot``): read the settings, run the bot until a signal.

Every start-up problem ends in one line on stderr that says what to fix, with no traceback,
and never with the token in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from typing import NoReturn

import aiohttp
import discord

from bot.client import EXIT_ENGINE_BROKEN, StartupError, StylizeBot
from bot.config import BotSettings, ConfigError, load_settings
from bot.datadir import DataDirError, prepare_data_dir
from bot.journal import JournalError
from bot.ops_server import OpsServerError
from engine.errors import EngineError

log = logging.getLogger("bot")


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as error:
        _fail(str(error), code=2)
    discord.utils.setup_logging(level=logging.INFO, root=True)
    # Members' photos and the journal's interaction tokens are for this user alone.
    os.umask(0o077)
    # Offline checks first: a bad data folder or a second instance on it is said at once,
    # not after logging in to Discord (and the lock is held until the process ends).
    try:
        data_lock = prepare_data_dir(settings.stylize_data_dir)
    except DataDirError as error:
        _fail(str(error), code=2)
    try:
        code = asyncio.run(run(settings))
    except (JournalError, OpsServerError) as error:
        _fail(str(error), code=2)
    except discord.LoginFailure:
        _fail("DISCORD_TOKEN was refused by Discord: copy the bot's token again from the "
              "developer portal (Bot → Reset Token).")  # fmt: skip
    except StartupError as error:
        _fail(str(error))
    except EngineError as error:
        _fail(f"the engine could not start: {error}")
    except discord.HTTPException as error:
        _fail(f"Discord refused a start-up request ({error.status}, code {error.code}).")
    except (aiohttp.ClientError, OSError) as error:
        _fail(
            f"cannot reach Discord at {settings.discord_api_base_url} or "
            f"{settings.discord_gateway_url} ({type(error).__name__}). Check the network and "
            "DISCORD_API_BASE_URL / DISCORD_GATEWAY_URL."
        )
    except KeyboardInterrupt:  # a second Ctrl+C during shutdown
        return
    finally:
        _end_stray_workers()
        data_lock.release()
    if code == EXIT_ENGINE_BROKEN:
        _fail(
            "the engine can no longer start its workers; the jobs are kept and resume at the "
            "next start (see the log above for why the workers failed)",
            code=code,
        )
    if code:
        raise SystemExit(code)


async def run(settings: BotSettings) -> int:
    """Run the bot until a signal or a fatal error; returns the exit status."""
    bot = StylizeBot(settings)
    loop = asyncio.get_running_loop()
    closing: set[asyncio.Task[None]] = set()
    signalled = False

    def request_close(name: str) -> None:
        nonlocal signalled
        signalled = True
        log.info("received %s", name)
        task = loop.create_task(bot.close())
        closing.add(task)
        task.add_done_callback(closing.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, where Ctrl+C still ends the bot through KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_close, sig.name)
    async with bot:
        try:
            await bot.start(settings.token)
        except Exception as error:
            if not signalled:
                raise
            # Whatever the signal cut short (a login, the engine's start) is no failure.
            log.info("start-up stopped by the signal (%s)", type(error).__name__)
    return bot.exit_code


def _end_stray_workers() -> None:
    """Kill worker processes that a shutdown cut short could not end: they ignore SIGTERM,
    and multiprocessing would otherwise wait for them at exit, forever."""
    for child in multiprocessing.active_children():
        log.warning("killing engine worker %s (pid %s) left at exit", child.name, child.pid)
        child.kill()
        child.join(5)


def _fail(message: str, *, code: int = 1) -> NoReturn:
    print(f"stylize-bot: {message}", file=sys.stderr)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
