"""Where a menu's pictures may come from (bot.sources): Discord's storage only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from bot import i18n, messages
from bot.errors import Refusal
from bot.i18n import Lang
from bot.sources import DiscordStorage, message_picture

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


# --- which picture of a message a menu takes ---------------------------------------------------

CDN = "https://cdn.discordapp.com/attachments/1/2"


@dataclass(frozen=True)
class Attachment:
    url: str
    size: int = 1000
    content_type: str | None = "image/png"


@dataclass(frozen=True)
class Media:
    url: str | None = None


@dataclass(frozen=True)
class Embed:
    type: str = "rich"
    image: Media = Media()
    thumbnail: Media = Media()


@dataclass(frozen=True)
class Message:
    attachments: tuple[Attachment, ...] = ()
    embeds: tuple[Embed, ...] = ()
    stickers: tuple[object, ...] = ()


@pytest.mark.parametrize(
    ("message", "url"),
    [
        # The first image attachment, passing over a file that is none.
        (Message((Attachment(f"{CDN}/a.txt", content_type="text/plain"),
                  Attachment(f"{CDN}/cat.png"))), f"{CDN}/cat.png"),
        (Message(embeds=(Embed(image=Media(f"{CDN}/art.png")),)), f"{CDN}/art.png"),
        # A picture linked in the text: Discord embeds it as the thumbnail of an image embed.
        (Message(embeds=(Embed("image", thumbnail=Media(f"{CDN}/link.png")),)), f"{CDN}/link.png"),
    ],
)  # fmt: skip
def test_the_menu_takes_the_messages_picture(message: Message, url: str) -> None:
    picture = message_picture(message, "photo", STORAGE)
    assert (picture.label, picture.url) == ("photo", url)


@pytest.mark.parametrize(
    ("message", "refusal"),
    [
        (Message(), messages.no_picture_in_message),
        (Message(stickers=(object(),)), messages.sticker_is_no_picture),
        # A rich embed's thumbnail is decoration (a site's logo), not the picture.
        (Message(embeds=(Embed(thumbnail=Media(f"{CDN}/logo.png")),)),
         messages.no_picture_in_message),
        (Message((Attachment("https://evil.example/cat.png"),)), messages.picture_elsewhere),
        (Message(embeds=(Embed(image=Media("https://example.com/art.png")),)),
         messages.picture_elsewhere),
    ],
)  # fmt: skip
def test_a_message_the_menu_cant_use_is_refused_with_why(
    message: Message, refusal: Callable[[Lang], str]
) -> None:
    with pytest.raises(Refusal) as raised:
        message_picture(message, "photo", STORAGE)
    english = i18n.english()
    assert raised.value.words(english) == refusal(english)
