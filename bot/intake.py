"""Fetching and checking the uploaded pictures, before a job is queued.

Attachment URLs expire, so both files are downloaded when the command arrives. The size cap is
checked on the size Discord declares, then enforced on the bytes actually read: a server that
lies about ``Content-Length`` cannot make the bot buffer more than the cap. Decoding runs in a
thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

import engine
from bot import errors

CHUNK = 64 * 1024
MAX_ASPECT_RATIO = 16
"""The longest side may be at most this many times the shortest. The network needs 16 px
on the short side, so a thinner picture would have to be enlarged out of all proportion
(the engine squashes it instead) or would leave nothing of the photo: refused up front."""


@dataclass(frozen=True)
class AttachmentRef:
    """What the bot knows of one attachment before downloading it."""

    label: str
    """How messages name it: ``"photo (content)"``, ``"style image"``."""
    url: str
    size: int
    content_type: str | None = None


@dataclass(frozen=True)
class Picture:
    label: str
    data: bytes
    width: int
    height: int


class TooLarge(Exception):
    def __init__(self, size: int | None) -> None:
        super().__init__(f"more than the cap ({size} bytes)")
        self.size = size


def check_declared(upload: AttachmentRef, max_bytes: int) -> None:
    """Refuse by what Discord declares, before spending bandwidth."""
    if upload.size > max_bytes:
        raise errors.too_large(upload.label, upload.size, max_bytes)
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    # No content type is not a refusal (Discord leaves it out for odd extensions): the
    # decoder decides. A declared non-image one is.
    if content_type and not content_type.startswith("image/"):
        raise errors.not_an_image(upload.label)


async def download(session: aiohttp.ClientSession, url: str, max_bytes: int) -> bytes:
    """The body at ``url``; raises ``TooLarge`` as soon as more than ``max_bytes`` arrive."""
    timeout = aiohttp.ClientTimeout(total=60, sock_read=20)
    async with session.get(url, timeout=timeout) as response:
        response.raise_for_status()
        if response.content_length is not None and response.content_length > max_bytes:
            raise TooLarge(response.content_length)
        body = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise TooLarge(None)
        return bytes(body)


async def fetch(session: aiohttp.ClientSession, upload: AttachmentRef, max_bytes: int) -> bytes:
    """``download``, with failures turned into refusals that name the attachment."""
    try:
        data = await download(session, upload.url, max_bytes)
    except TooLarge as error:
        raise errors.too_large(upload.label, error.size, max_bytes) from None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        raise errors.download_failed(upload.label) from None
    if not data:
        raise errors.bad_image(upload.label, engine.ImageError("The file is empty."))
    return data


async def inspect(label: str, data: bytes, max_pixels: int) -> Picture:
    """Decode in a thread with ``engine.load_image``: refuses non-images and bombs."""
    try:
        image = await asyncio.to_thread(engine.load_image, data, max_pixels=max_pixels)
    except engine.ImageError as error:
        raise errors.bad_image(label, error) from None
    width, height = image.size
    image.close()
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise errors.too_thin(label, width, height, MAX_ASPECT_RATIO)
    return Picture(label, data, width, height)


async def receive(
    session: aiohttp.ClientSession,
    uploads: list[AttachmentRef],
    *,
    max_bytes: int,
    max_pixels: int,
    on_downloaded: Callable[[list[bytes]], object] | None = None,
) -> list[Picture]:
    """Check, download (concurrently) and decode every upload, in the order given.

    ``on_downloaded`` gets the bodies once all have arrived, before decoding starts: the cog
    writes them to the journal meanwhile."""
    for upload in uploads:
        check_declared(upload, max_bytes)
    results = await asyncio.gather(
        *(fetch(session, u, max_bytes) for u in uploads), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    bodies: list[bytes] = results  # type: ignore[assignment]
    if on_downloaded is not None:
        on_downloaded(bodies)
    # One at a time: decoding two 40-megapixel images at once doubles the peak memory.
    return [
        await inspect(u.label, body, max_pixels) for u, body in zip(uploads, bodies, strict=True)
    ]
