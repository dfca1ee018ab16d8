"""``stylize-bot`` (also ``python -m bot``): read the settings, run the bot until a signal.

Every start-up problem ends in one line on stderr that says what to fix, with no traceback,
and never with the token in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import NoReturn

import aiohttp
import discord

from bot.client import EXIT_ENGINE_BROKEN, StartupError, StylizeBot
from bot.config import BotSettings, ConfigError, load_settings
from bot.journal import JournalError
from engine.errors import EngineError

log = logging.getLogger("bot")


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as error:
        _fail(str(error), code=2)
    discord.utils.setup_logging(level=logging.INFO, root=True)
    try:
        code = asyncio.run(run(settings))
    except JournalError as error:
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

    def request_close(name: str) -> None:
        log.info("received %s", name)
        task = loop.create_task(bot.close())
        closing.add(task)
        task.add_done_callback(closing.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, where Ctrl+C still ends the bot through KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_close, sig.name)
    async with bot:
        await bot.start(settings.token)
    return bot.exit_code


def _fail(message: str, *, code: int = 1) -> NoReturn:
    print(f"stylize-bot: {message}", file=sys.stderr)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
