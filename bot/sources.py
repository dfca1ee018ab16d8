"""Where a message menu's pictures come from: the image in the message a member right-clicked
(an attachment, else an embed's image), and the member's own avatar.

Only pictures stored on Discord are fetched: Discord's CDN hosts, or the one ``DISCORD_CDN_URL``
names. An embed may point anywhere (a link to any site, an address inside the bot's own
network), and fetching it would let anyone make the bot request what they like; such a
picture is refused with words that say why. What is fetched then goes through
``bot.intake`` like a command's attachment (size cap, decoding, the gate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from bot import messages
from bot.errors import Refusal
from bot.intake import AttachmentRef

DISCORD_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
"""Where Discord stores uploads (and serves them resized). Its proxy for pictures on other
sites (``images-ext-*.discordapp.net``) is not here: those are links elsewhere."""
AVATAR_SIZE = 1024
"""Pixels asked of the CDN for an avatar: room for Bigger up to the default cap."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


Origin = tuple[str, str, int]
"""(scheme, host, port)."""


def _origin(url: str) -> Origin | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme, 0)


class DiscordStorage:
    """The hosts pictures may be fetched from: Discord's, and ``DISCORD_CDN_URL``'s."""

    def __init__(self, cdn_url: str) -> None:
        self._origins = {("https", host, 443) for host in DISCORD_HOSTS}
        configured = _origin(cdn_url)
        if configured is not None:
            self._origins.add(configured)

    def holds(self, url: str | None) -> bool:
        return url is not None and _origin(url) in self._origins


# What the bot reads of a message; discord.py's Message, Attachment and Embed fit.


class _Attachment(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def content_type(self) -> str | None: ...


class _EmbedMedia(Protocol):
    @property
    def url(self) -> str | None: ...


class _Embed(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def image(self) -> _EmbedMedia: ...
    @property
    def thumbnail(self) -> _EmbedMedia: ...


class _Message(Protocol):
    @property
    def attachments(self) -> Sequence[_Attachment]: ...
    @property
    def embeds(self) -> Sequence[_Embed]: ...
    @property
    def stickers(self) -> Sequence[object]: ...


@dataclass(frozen=True)
class _Found:
    url: str
    size: int
    content_type: str | None


def message_picture(message: _Message, label: str, storage: DiscordStorage) -> AttachmentRef:
    """The picture a menu on ``message`` takes, named ``label`` in refusals: its first image
    attachment, else its first embed's image (a picture linked in the text is embedded as the
    embed's thumbnail). Raises a ``Refusal`` that says what is wrong: no picture, a sticker,
    a picture stored elsewhere, or an attachment that is no image."""
    found = _first_image(message)
    if found is None:
        if message.attachments:  # a file, but no image: the intake's words for it
            first = message.attachments[0]
            found = _Found(first.url, first.size, first.content_type)
        elif message.stickers:
            raise Refusal(messages.sticker_is_no_picture)
        else:
            raise Refusal(messages.no_picture_in_message)
    if not storage.holds(found.url):
        raise Refusal(messages.picture_elsewhere)
    return AttachmentRef(label, found.url, found.size, found.content_type)


def _first_image(message: _Message) -> _Found | None:
    for attachment in message.attachments:
        content_type = (attachment.content_type or "").lower()
        if content_type.startswith("image/"):
            return _Found(attachment.url, attachment.size, attachment.content_type)
    for embed in message.embeds:
        for media in (embed.image, embed.thumbnail if embed.type == "image" else None):
            url = None if media is None else media.url
            if url:
                # The size is unknown until the download, which enforces the cap.
                return _Found(url, 0, None)
    return None


def avatar_picture(url: str, storage: DiscordStorage) -> AttachmentRef:
    """The member's avatar at ``url`` (discord.py builds it on ``DISCORD_CDN_URL``)."""
    if not storage.holds(url):  # the URL and the setting disagree: fetch nothing
        raise Refusal(messages.picture_elsewhere)
    return AttachmentRef("avatar", url, 0, None)
