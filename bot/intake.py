"""Fetching and checking the uploaded pictures, before a job is queued.

Attachment URLs expire, so both files are downloaded when the command arrives. The size cap is
checked on the size Discord declares, then enforced on the bytes actually read: a server that
lies about ``Content-Length`` cannot make the bot buffer more than the cap. Decoding runs in a
thread, never on the event loop.

A flood must not cost memory: a user's command takes its place in the per-user limit
(``bot.jobs.queue.Reservations``) before anything is downloaded, and a ``Gate`` lets only a
few commands download and decode at once, decoding in threads of its own (a 40-megapixel
PNG costs about 500 MB and seconds of CPU, and must not hold up the executor that starts
workers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

import engine
from bot import messages
from bot.errors import Refusal

T = TypeVar("T")

CHUNK = 64 * 1024
MAX_ASPECT_RATIO = 16
"""The longest side may be at most this many times the shortest. The network needs 16 px
on the short side, so a thinner picture would have to be enlarged out of all proportion
(the engine squashes it instead) or would leave nothing of the photo: refused up front."""


@dataclass(frozen=True)
class AttachmentRef:
    """What the bot knows of one attachment before downloading it."""

    label: str
    """Which picture it is: ``"content"``, ``"style"`` (or ``"saved_style"`` for a kept one);
    ``bot.messages.input_label`` names it in the reader's language."""
    url: str
    size: int
    content_type: str | None = None


@dataclass(frozen=True)
class Picture:
    label: str
    data: bytes
    width: int
    height: int


class Gate:
    """At most ``concurrent`` commands download and decode at a time; the decodes run in
    ``decoders`` threads of their own."""

    def __init__(self, concurrent: int = 2, decoders: int = 1) -> None:
        if concurrent < 1 or decoders < 1:
            raise ValueError("a gate needs at least one place and one decoder")
        self.concurrent = concurrent
        self._places = asyncio.Semaphore(concurrent)
        self._executor = ThreadPoolExecutor(decoders, thread_name_prefix="stylize-decode")
        self.inside = 0
        """Commands downloading or decoding now (for tests and the load benchmark)."""

    @contextlib.asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        async with self._places:
            self.inside += 1
            try:
                yield
            finally:
                self.inside -= 1

    async def decode(self, data: bytes, max_pixels: int) -> tuple[int, int]:
        """The decoded size of ``data`` (``engine.load_image``'s checks), in a gate thread."""
        return await self.run(_decoded_size, data, max_pixels)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Any other work that decodes a picture (a thumbnail, say), in a gate thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _decoded_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    with engine.load_image(data, max_pixels=max_pixels) as image:
        return image.size


class TooLarge(Exception):
    def __init__(self, size: int | None) -> None:
        super().__init__(f"more than the cap ({size} bytes)")
        self.size = size


def check_declared(upload: AttachmentRef, max_bytes: int) -> None:
    """Refuse by what Discord declares, before spending bandwidth."""
    if upload.size > max_bytes:
        raise Refusal(messages.later(messages.file_too_large, upload.label, upload.size, max_bytes))
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    # No content type is not a refusal (Discord leaves it out for odd extensions): the
    # decoder decides. A declared non-image one is.
    if content_type and not content_type.startswith("image/"):
        raise Refusal(messages.later(messages.not_an_image, upload.label))


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
        raise Refusal(
            messages.later(messages.file_too_large, upload.label, error.size, max_bytes)
        ) from None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        raise Refusal(messages.later(messages.download_failed, upload.label)) from None
    if not data:
        raise Refusal(messages.later(messages.empty_file, upload.label))
    return data


async def inspect(label: str, data: bytes, max_pixels: int, gate: Gate | None = None) -> Picture:
    """Decode in a thread with ``engine.load_image``: refuses non-images, bombs and pictures
    too thin to paint. The gate's threads when given, else the loop's default executor."""
    try:
        if gate is not None:
            width, height = await gate.decode(data, max_pixels)
        else:
            width, height = await asyncio.to_thread(_decoded_size, data, max_pixels)
    except engine.ImageError as error:
        refused = messages.later(
            messages.bad_image, label, str(error), error.reason, dict(error.details)
        )
        raise Refusal(refused) from None
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise Refusal(messages.later(messages.too_thin, label, width, height, MAX_ASPECT_RATIO))
    return Picture(label, data, width, height)


async def receive(
    session: aiohttp.ClientSession,
    uploads: list[AttachmentRef],
    *,
    max_bytes: int,
    max_pixels: int,
    kept: Sequence[tuple[str, bytes]] = (),
    on_downloaded: Callable[[list[bytes]], object] | None = None,
    gate: Gate | None = None,
) -> list[Picture]:
    """Check, download (concurrently) and decode every upload, then decode each ``kept``
    picture, (label, bytes) the bot already holds (a saved style); in that order, and
    inside ``gate`` when one is given.

    ``on_downloaded`` gets the bodies (the kept ones last) once all have arrived, before
    decoding starts: the cog writes them to the journal meanwhile."""
    for upload in uploads:
        check_declared(upload, max_bytes)
    if gate is None:
        return await _receive(session, uploads, kept, max_bytes, max_pixels, on_downloaded, None)
    async with gate.place():
        return await _receive(session, uploads, kept, max_bytes, max_pixels, on_downloaded, gate)


async def _receive(
    session: aiohttp.ClientSession,
    uploads: list[AttachmentRef],
    kept: Sequence[tuple[str, bytes]],
    max_bytes: int,
    max_pixels: int,
    on_downloaded: Callable[[list[bytes]], object] | None,
    gate: Gate | None,
) -> list[Picture]:
    results = await asyncio.gather(
        *(fetch(session, u, max_bytes) for u in uploads), return_exceptions=True
    )
    named: list[tuple[str, bytes]] = []
    for upload, result in zip(uploads, results, strict=True):
        if isinstance(result, BaseException):
            raise result
        named.append((upload.label, result))
    named.extend(kept)
    if on_downloaded is not None:
        on_downloaded([body for _, body in named])
    # One at a time: decoding two 40-megapixel images at once doubles the peak memory.
    return [await inspect(label, body, max_pixels, gate) for label, body in named]
