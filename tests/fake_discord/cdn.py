"""The fake CDN: serves user uploads, the bot's attachments and members' avatars from loopback
URLs."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from . import payloads
from .models import RecordedRequest

# Both CDN paths (cdn.discordapp.com and the media proxy) carry the attachment id.
_PATH = re.compile(r"^(?:/media)?/(?:ephemeral-)?attachments/\d+/(?P<id>\d+)/[^/]+$")
# A custom avatar by its hash (any format and size), and the default ones by their index.
_AVATAR = re.compile(r"^/avatars/(?P<user>\d+)/(?P<hash>a?_?[0-9a-f]+)\.(?:png|jpg|jpeg|webp|gif)$")
_DEFAULT_AVATAR = re.compile(r"^/embed/avatars/(?P<index>[0-5])\.png$")


@dataclass
class _StoredFile:
    data: bytes
    content_type: str | None
    expired: bool = False


class Cdn:
    def __init__(self, base_url: Callable[[], str], on_request: Callable[[], None]) -> None:
        self._base_url = base_url
        self._on_request = on_request
        self._files: dict[int, _StoredFile] = {}
        self._avatars: dict[tuple[int, str], _StoredFile] = {}
        self.requests: list[RecordedRequest] = []

    def store(
        self,
        data: bytes,
        filename: str,
        *,
        channel_id: int,
        content_type: str | None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
        ephemeral: bool = False,
    ) -> dict[str, Any]:
        """Keep the bytes and return the attachment object that links to them."""
        if width is None and height is None:
            width, height = image_size(data)
        attachment_id = payloads.snowflake()
        self._files[attachment_id] = _StoredFile(data, content_type)
        folder = "ephemeral-attachments" if ephemeral else "attachments"
        path = f"{folder}/{channel_id}/{attachment_id}/{quote(filename)}"
        # Real CDN links carry expiry and signature parameters; nothing checks them here.
        signed = f"?ex={attachment_id % 16**8:08x}&is={attachment_id % 16**8:08x}&hm={'0' * 64}&"
        return payloads.attachment(
            attachment_id,
            filename,
            size=len(data) if size is None else size,
            url=f"{self._base_url()}/{path}{signed}",
            proxy_url=f"{self._base_url()}/media/{path}{signed}",
            content_type=content_type,
            width=width,
            height=height,
            ephemeral=ephemeral,
        )

    def expire(self, attachment_id: int) -> None:
        self._files[attachment_id].expired = True

    def store_avatar(self, user_id: int, data: bytes) -> str:
        """Keep a member's avatar; returns its hash, as the user object carries it."""
        avatar_hash = payloads.snowflake().to_bytes(8, "big").hex() * 2
        self._avatars[(user_id, avatar_hash)] = _StoredFile(data, "image/png")
        return avatar_hash

    def _find(self, path: str) -> _StoredFile | None:
        if found := _PATH.match(path):
            return self._files.get(int(found["id"]))
        if found := _AVATAR.match(path):
            return self._avatars.get((int(found["user"]), found["hash"]))
        if found := _DEFAULT_AVATAR.match(path):
            return _StoredFile(default_avatar(int(found["index"])), "image/png")
        return None

    async def handle(self, request: web.Request) -> web.Response:
        stored = self._find(request.path)
        if request.method not in ("GET", "HEAD") or stored is None or stored.expired:
            stored = None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=CIMultiDict(request.headers),
                json=None,
                files=[],
                status=404 if stored is None else 200,
                response=None,
                time=asyncio.get_running_loop().time(),
            )
        )
        self._on_request()
        if stored is None:
            # The CDN answers expired or unknown links in plain text, not JSON.
            return web.Response(status=404, text="This content is no longer available.")
        return web.Response(
            body=stored.data, content_type=stored.content_type or "application/octet-stream"
        )


def default_avatar(index: int) -> bytes:
    """One of Discord's six default avatars: a plain square of its colour (Pillow permitting)."""
    from PIL import Image

    colours = [(88, 101, 242), (117, 126, 138), (59, 165, 93), (250, 166, 26), (237, 66, 69),
               (235, 69, 158)]  # fmt: skip
    buffer = io.BytesIO()
    Image.new("RGB", (128, 128), colours[index]).save(buffer, "PNG")
    return buffer.getvalue()


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height, which Discord reports for images; (None, None) for anything else."""
    try:
        from PIL import Image
    except ImportError:  # Pillow is optional for the fake
        return None, None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width, image.height
    except Exception:  # not an image Pillow knows: Discord reports no size either
        return None, None
