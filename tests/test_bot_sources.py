"""Where a menu's pictures may come from (bot.sources): Discord's storage only."""

from __future__ import annotations

import pytest

from bot.sources import DiscordStorage

STORAGE = DiscordStorage("http://127.0.0.1:8123")


@pytest.mark.parametrize(
    ("url", "held"),
    [
        ("https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1", True),
        ("https://media.discordapp.net/attachments/1/2/cat.png", True),
        ("https://CDN.discordapp.com:443/attachments/1/2/cat.png", True),
        ("http://127.0.0.1:8123/avatars/1/abc.png?size=1024", True),  # DISCORD_CDN_URL
        ("http://127.0.0.1:8124/avatars/1/abc.png", False),  # another port
        ("http://cdn.discordapp.com/attachments/1/2/cat.png", False),  # not https
        ("https://cdn.discordapp.com.evil.example/cat.png", False),
        ("https://cdn.discordapp.com@evil.example/cat.png", False),  # userinfo, then the host
        ("https://evil.example/?u=https://cdn.discordapp.com/x.png", False),
        ("https://images-ext-1.discordapp.net/external/abc/https/example.com/cat.png", False),
        ("http://169.254.169.254/latest/meta-data/", False),
        ("https://cdn.discordapp.com:99999/x.png", False),  # no such port
        ("not a url", False),
        (None, False),
    ],
)
def test_only_discords_storage_is_fetched(url: str | None, held: bool) -> None:
    assert STORAGE.holds(url) is held
