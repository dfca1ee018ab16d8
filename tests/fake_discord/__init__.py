"""A fake Discord for end-to-end tests: REST, gateway and CDN on 127.0.0.1, driven by tests.

Import it as `tests.fake_discord` (like `tests.engine_fixtures`), always the same way: two
import paths would make two copies of every class. Usage, with the real discord.py client::

    async with FakeDiscord() as fake:
        discord.http.Route.BASE = fake.api_base_url              # restore both afterwards
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
        task = asyncio.create_task(bot.start(fake.token))
        await fake.wait_ready()
        await fake.wait_commands()
        photo = fake.add_attachment(png_bytes, "photo.png")
        interaction = await fake.invoke("stylize", {"content": photo, "style": photo})
        assert (await interaction.wait_callback())["type"] == 5   # deferred
        await fake.wait_for(lambda: bool(interaction.followups or fake.channel_messages()))
        await bot.close()  # before the fake stops, or discord.py keeps reconnecting

Modules: `payloads` (Discord's JSON shapes), `server` (FakeDiscord), `gateway` (websocket
sessions), `rest` (REST routes and message semantics), `commands` (registered commands and
invocation options), `cdn` (attachment downloads), `models` (what the fake records).
"""

from .models import (
    FakeChannel,
    FakeInteraction,
    FakeMessage,
    FakeRole,
    FakeUser,
    RecordedRequest,
)
from .server import FakeDiscord

__all__ = [
    "FakeChannel",
    "FakeDiscord",
    "FakeInteraction",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "RecordedRequest",
]
