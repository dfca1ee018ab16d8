"""Each server's gallery of saved styles: the rules around the journal's ``styles`` table.

Names are unique per server without regard to case; a server holds at most
``STYLIZE_GALLERY_MAX_STYLES`` styles and ``STYLIZE_GALLERY_MAX_MB`` of images. A style is
checked like any upload when it is saved (size, type, decodable, pixel count) and stored with a
small JPEG thumbnail for ``/styles list``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from bot import errors, messages
from bot.intake import Gate
from bot.journal import Journal, NewStyle, SavedStyle, StyleAdded

MAX_NAME = 32
THUMBNAIL_SIDE = 160
PER_PAGE = 5
"""Styles on one page of ``/styles list``: one embed each, with its thumbnail."""
MAX_SUGGESTIONS = 25
"""Discord shows at most 25 autocomplete choices."""


@dataclass(frozen=True)
class Limits:
    max_styles: int
    max_bytes: int


def clean_name(name: str) -> str:
    """The name as it is stored and shown: inner runs of spaces made one; refuses empty or
    over-long names."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise errors.Refusal(messages.later(messages.gallery_bad_name, MAX_NAME))
    if len(cleaned) > MAX_NAME:
        raise errors.Refusal(messages.later(messages.gallery_bad_name, MAX_NAME))
    return cleaned


def make_thumbnail(data: bytes) -> bytes:
    """A JPEG no larger than ``THUMBNAIL_SIDE`` on its longest side (runs in a thread)."""
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


async def add(
    journal: Journal,
    guild_id: int,
    name: str,
    image: bytes,
    added_by: int,
    limits: Limits,
    *,
    gate: Gate,
) -> str:
    """Save a style (already checked as an image); returns its stored name or raises a
    ``Refusal`` that says why not. The thumbnail is made in ``gate``'s decoding thread."""
    cleaned = clean_name(name)
    thumbnail = await gate.run(make_thumbnail, image)
    outcome = await journal.add_style(
        NewStyle(guild_id, cleaned, image, thumbnail, added_by),
        max_count=limits.max_styles,
        max_bytes=limits.max_bytes,
    )
    if outcome is StyleAdded.NAME_TAKEN:
        raise errors.Refusal(messages.later(messages.gallery_name_taken, cleaned))
    if outcome is StyleAdded.TOO_MANY:
        raise errors.Refusal(messages.later(messages.gallery_full, limits.max_styles))
    if outcome is StyleAdded.TOO_LARGE:
        raise errors.Refusal(messages.later(messages.gallery_too_large, limits.max_bytes))
    return cleaned


async def image_for(journal: Journal, guild_id: int, name: str) -> bytes:
    """The saved style's image, or a ``Refusal`` naming the missing style."""
    data = await journal.style_image(guild_id, name)
    if data is None:
        raise errors.Refusal(messages.later(messages.gallery_no_such_style, name))
    return data


async def suggestions(journal: Journal, guild_id: int, typed: str) -> list[str]:
    """Names for ``saved_style``'s autocomplete: those containing what was typed so far."""
    wanted = typed.casefold().strip()
    names = [s.name for s in await journal.styles(guild_id)]
    return [n for n in names if wanted in n.casefold()][:MAX_SUGGESTIONS]


def page_of(styles: list[SavedStyle], page: int) -> tuple[list[SavedStyle], int, int]:
    """(the styles on ``page``, clamped to the pages there are; that page; how many pages)."""
    pages = max(1, -(-len(styles) // PER_PAGE))
    page = min(max(1, page), pages)
    start = (page - 1) * PER_PAGE
    return styles[start : start + PER_PAGE], page, pages
