"""Decoding untrusted uploads safely, and encoding results under a byte budget.

The bot process calls ``load_image`` on every attachment before a job is queued, so this
module must not import torch, and every way an upload can be wrong must end in one
``ImageError`` whose message a Discord user can act on.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import struct
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from engine.errors import ImageError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest decoded input accepted by default (about 120 MB as 8-bit RGB)."""


@dataclass(frozen=True)
class _Format:
    pillow: str
    """Pillow's name for the format, as ``Image.open(formats=...)`` and ``save`` take it."""
    label: str
    """The name people know it by, for messages."""
    mime: str
    extension: str
    signature: re.Pattern[bytes]
    """Magic bytes at the start of a file, to tell "damaged" from "not an image at all"."""
    writable: bool


# The one table of formats: what we read, what we write, and how each is named.
_FORMATS: dict[str, _Format] = {
    "png": _Format("PNG", "PNG", "image/png", "png", re.compile(rb"\x89PNG\r\n\x1a\n"), True),
    "jpeg": _Format("JPEG", "JPEG", "image/jpeg", "jpg", re.compile(rb"\xff\xd8\xff"), True),
    "webp": _Format("WEBP", "WebP", "image/webp", "webp", re.compile(rb"RIFF.{4}WEBP", re.S), True),
    "gif": _Format("GIF", "GIF", "image/gif", "gif", re.compile(rb"GIF8[79]a"), False),
    "bmp": _Format("BMP", "BMP", "image/bmp", "bmp", re.compile(rb"BM"), False),
    "tiff": _Format(
        "TIFF", "TIFF", "image/tiff", "tiff", re.compile(rb"II[*+]\x00|MM\x00[*+]"), False
    ),
}

# Pillow is only ever asked to try these, so it never hands a file to a plugin that runs an
# external program (EPS runs Ghostscript) or parses an exotic format.
_READ_FORMATS = tuple(f.pillow for f in _FORMATS.values())
_LABELS = [f.label for f in _FORMATS.values()]
_READABLE_LABELS = f"{', '.join(_LABELS[:-1])} or {_LABELS[-1]}"

# Files people send by mistake that look like pictures to them, with what to do instead.
_SVG = re.compile(
    rb"(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!DOCTYPE svg[^>]*>\s*)?<svg", re.S | re.I
)
_NOT_RASTER: tuple[tuple[re.Pattern[bytes], str, str], ...] = (
    (re.compile(rb"%!PS|\xc5\xd0\xd3\xc6"), "postscript", "a PostScript/vector file (EPS or PS)"),
    (re.compile(rb"%PDF-"), "pdf", "a PDF document"),
    (_SVG, "svg", "an SVG vector drawing"),
)
_ISO_MEDIA = re.compile(rb".{4}ftyp(?:hei[cxms]|hev[cxms]|mif1|msf1|avif|avis)", re.S)

# How Pillow words "no decoder for this" as opposed to "the data is bad".
_CODEC_MISSING = re.compile(r"not available|unsupported|not supported|unknown", re.I)

_MSG_EMPTY = f"The file is empty. Send a {_READABLE_LABELS} image."
_MSG_NOT_IMAGE = f"That file isn't an image we can read. Send a {_READABLE_LABELS}."
_MSG_VECTOR = "That file is {kind}, not a picture: export it as PNG or JPEG."
_MSG_HEIF = "That looks like a HEIC or AVIF photo, which we can't read. Send it as JPEG or PNG."
_MSG_DAMAGED = "The image file is damaged or incomplete. Save it again, or send another copy."
_MSG_UNSUPPORTED = "That image uses a feature we can't decode. Save it as PNG or JPEG and retry."
_MSG_TOO_BIG = "This image is {size}; the limit is {limit}. Send a smaller image."
_MSG_OUT_OF_MEMORY = "This image is too large for us to open. Send a smaller image."
_MSG_NO_PIXELS = "This image has no pixels ({width}×{height}). Send a real picture."


def load_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, fit: int | None = None
) -> Image.Image:
    """Decode an uploaded image into an 8-bit sRGB ``RGB`` image, or raise ``ImageError``.

    Only PNG, JPEG, WebP, GIF, BMP and TIFF are tried; animated files give their first frame.
    The pixel count is checked from the header, before any pixel is decoded, against
    ``max_pixels`` (and against Pillow's own ``Image.MAX_IMAGE_PIXELS`` when that is lower).
    EXIF orientation is applied, transparency is composited onto white, and greyscale,
    16-bit, float, palette, CMYK, LAB and ICC-tagged images are converted to sRGB. The result
    carries no metadata (its ``info`` is empty), so saving it never writes a stale profile.

    ``fit`` is the longest side the caller will shrink the image to. A JPEG is then decoded at
    1/2, 1/4 or 1/8 scale (in the DCT domain, as ``Image.thumbnail`` does) where both sides
    stay at least ``fit``: a 12 MP phone photo decodes and shrinks about 4x faster.
    """
    if not data:
        raise ImageError(_MSG_EMPTY)
    limit = _pixel_limit(max_pixels)
    try:
        # Past Pillow's limit we refuse anyway (with a better message), so its warning would
        # only be noise. Before Python 3.14 catch_warnings swaps one process-wide filter list,
        # so a concurrent thread may see this harmless filter, or keep it once we are done.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            source = Image.open(io.BytesIO(data), formats=_READ_FORMATS)
            try:
                _check_size(source.size, limit)
                if fit is not None and source.format == "JPEG":
                    source.draft(None, (fit, fit))
                source.load()  # decode everything here, so damage surfaces as ImageError
                _check_size(source.size, limit)  # a GIF frame can grow the canvas on load
                return _to_srgb(source)
            finally:
                source.close()
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        # Pillow refuses past twice its limit before we see the size; its message has the count.
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = _pixels_in_words(int(found[1])) if found else "too large"
        message = _MSG_TOO_BIG.format(size=size, limit=_pixels_in_words(limit))
        pixels = int(found[1]) if found else 0
        raise ImageError(message, reason="too_big", pixels=pixels, limit=limit) from error
    except UnidentifiedImageError as error:
        raise _unidentified(data) from error
    except MemoryError as error:
        raise ImageError(_MSG_OUT_OF_MEMORY) from error
    except (OSError, EOFError, SyntaxError, struct.error, zlib.error) as error:
        # Pillow reports both damage and missing codecs as OSError; only the words differ.
        unsupported = _CODEC_MISSING.search(str(error))
        logger.debug("refused an image: %r", error)
        raise ImageError(_MSG_UNSUPPORTED if unsupported else _MSG_DAMAGED) from error
    except Exception as error:
        # Anything else from a decoder is still the file's fault as far as the user can tell.
        logger.debug("refused an image: %r", error)
        raise ImageError(_MSG_UNSUPPORTED) from error


def _pixel_limit(max_pixels: int) -> int:
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, not {max_pixels}")
    # Pillow warns past MAX_IMAGE_PIXELS (an operator may lower it): we refuse there too.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return min(max_pixels, pillow_limit) if pillow_limit else max_pixels


def _check_size(size: tuple[int, int], limit: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        message = _MSG_NO_PIXELS.format(width=width, height=height)
        raise ImageError(message, reason="no_pixels", width=width, height=height)
    if width * height > limit:
        words = f"{width}×{height} pixels"
        if width * height >= 1_000_000:
            words += f" ({_pixels_in_words(width * height)})"
        message = _MSG_TOO_BIG.format(size=words, limit=_pixels_in_words(limit))
        raise ImageError(message, reason="too_big", width=width, height=height,
                         pixels=width * height, limit=limit)  # fmt: skip


def _pixels_in_words(pixels: int) -> str:
    if pixels >= 1_000_000:
        return f"{pixels / 1_000_000:.3g} megapixels"
    return f"{pixels:,} pixels"


def _unidentified(data: bytes) -> ImageError:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")  # a BOM or blank lines before a text format
    for pattern, kind, words in _NOT_RASTER:
        if pattern.match(head):
            return ImageError(_MSG_VECTOR.format(kind=words), reason="vector", kind=kind)
    if _ISO_MEDIA.match(data):
        return ImageError(_MSG_HEIF)
    if any(f.signature.match(data) for f in _FORMATS.values()):
        # Pillow gives up on a header it can't parse (cut short, or zero-sized) without saying
        # why, but the magic bytes say it was meant to be one of ours.
        return ImageError(_MSG_DAMAGED)
    return ImageError(_MSG_NOT_IMAGE)


def _to_srgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    _apply_exif_orientation(image)
    converted = _to_8bit(image)
    converted = _flatten_alpha(converted)
    if converted.mode == "LAB":
        # Pillow's LAB -> RGB "conversion" only relabels the bands; lcms does the real maths.
        srgb = ImageCms.profileToProfile(
            converted,
            ImageCms.createProfile("LAB"),
            ImageCms.createProfile("sRGB"),
            outputMode="RGB",
        )
        assert srgb is not None  # None only with inPlace=True
        converted = srgb
    elif converted.mode not in ("L", "RGB", "CMYK"):
        converted = converted.convert("L" if converted.mode == "1" else "RGB")
    if icc:
        converted = _apply_icc(converted, icc)
    result = converted.convert("RGB")  # a copy even when already RGB: never the file object
    result.info = {}
    return result


def _apply_exif_orientation(image: Image.Image) -> None:
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            ImageOps.exif_transpose(image, in_place=True)
    except Exception as error:
        # Broken EXIF is common (editors, messengers); the pixels are still fine upright or not.
        logger.debug("ignored unreadable EXIF orientation: %r", error)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit and float greyscale to ``L``: a plain convert would clip them."""
    if image.mode.startswith("I;16"):
        low, high = 0.0, 65535.0  # the file's full range, whatever this picture uses
    elif image.mode in ("I", "F"):
        low, high = _band_range(image)
        if image.mode == "F" and low >= 0 and high <= 1:
            low, high = 0.0, 1.0  # float images are usually 0..1
        elif low >= 0 and high <= 255:
            low, high = 0.0, 255.0
        elif low >= 0 and high <= 65535:
            low, high = 0.0, 65535.0
        # else: an unknown range, so stretch what is there to 0..255
    else:
        return image
    scale = 255 / (high - low) if high > low else 0.0
    offset = 0.5 - low * scale  # F -> L truncates, so +0.5 rounds to nearest
    return image.convert("F").point(lambda value: value * scale + offset).convert("L")


def _band_range(image: Image.Image) -> tuple[float, float]:
    """The smallest and the largest value in a one-band image."""
    low, high = image.getextrema()  # one band: (min, max); several: a pair per band
    if isinstance(low, tuple) or isinstance(high, tuple):
        raise ValueError(f"a {image.mode} image has more than one band")
    return float(low), float(high)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite anything transparent onto white, keeping greyscale as ``L``.

    Runs after ``_to_8bit``, so a 16-bit tRNS key colour is already gone (rare, and ignored).
    """
    if not image.has_transparency_data:
        return image
    grey = image.mode in ("L", "LA", "La")
    with_alpha = image.convert("LA" if grey else "RGBA")  # also applies palette/tRNS alpha
    background = Image.new("L" if grey else "RGB", image.size, "white")
    background.paste(with_alpha, mask=with_alpha.getchannel("A"))
    return background


def _apply_icc(image: Image.Image, icc: bytes) -> Image.Image:
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError) as error:
        # A broken or mismatched profile is the uploader's tool's fault; the pixels are
        # usually close to sRGB already, so showing them as they are beats refusing.
        logger.debug("ignored an unusable ICC profile: %r", error)
        return image
    assert converted is not None  # profileToProfile returns None only when inPlace=True
    return converted


@dataclass(frozen=True)
class EncodedImage:
    """An image as bytes ready to upload, with the format it was written in."""

    data: bytes
    format: str
    """``"png"``, ``"jpeg"`` or ``"webp"``."""

    def __post_init__(self) -> None:
        if self.format not in _FORMATS or not _FORMATS[self.format].writable:
            raise ValueError(f"unknown output format {self.format!r}")

    @property
    def mime(self) -> str:
        return _FORMATS[self.format].mime

    @property
    def extension(self) -> str:
        """Without the dot: ``"png"``, ``"jpg"`` or ``"webp"``."""
        return _FORMATS[self.format].extension


def format_extension(name: str) -> str:
    """A format's usual file extension (``"jpeg"`` → ``"jpg"``); an unknown name as it is."""
    known = _FORMATS.get(name)
    return known.extension if known else name


def format_label(name: str) -> str:
    """How people name a format (``"webp"`` → ``"WebP"``); an unknown name upper-cased."""
    known = _FORMATS.get(name)
    return known.label if known else name.upper()


def output_format_for(suffix: str) -> str | None:
    """The output format a file suffix asks for (``".jpg"`` → ``"jpeg"``), or ``None``."""
    wanted = suffix.lower().lstrip(".")
    for name, fmt in _FORMATS.items():
        if fmt.writable and wanted in (name, fmt.extension):
            return name
    return None


_JPEG_QUALITIES = (95, 90, 85, 80, 75, 70, 65, 60)
_WEBP_QUALITIES = (90, 80, 70, 60, 50)
_JPEG = tuple(("jpeg", q) for q in _JPEG_QUALITIES)
_WEBP = tuple(("webp", q) for q in _WEBP_QUALITIES)
# What to try, in order, for each preferred format: lossless first, then smaller and smaller.
_LADDERS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "png": (("png", None), *_JPEG, *_WEBP),
    "jpeg": (*_JPEG, *_WEBP),
    "webp": _WEBP,  # JPEG is never smaller than WebP at these qualities
}
_MIN_SIDE = 16
"""Downscaling stops here: a smaller picture is no use to anyone."""


def encode_image(
    image: Image.Image,
    *,
    max_bytes: int | None = None,
    metadata: Mapping[str, str] | None = None,
    prefer: str = "png",
) -> EncodedImage:
    """Encode ``image`` as ``prefer``, falling back to smaller encodings to fit ``max_bytes``.

    With ``prefer="png"`` the order is PNG, JPEG at quality 95 down to 60, then WebP at 90
    down to 50; ``"jpeg"`` skips PNG and ``"webp"`` tries only WebP. If nothing fits, the
    image is downscaled until the smallest encoding fits. ``metadata`` goes into PNG text
    chunks (readable back from ``Image.open(...).text``) and the JPEG comment as JSON; WebP
    output carries none. Raises ``ValueError`` for an unknown format or a budget so small that
    even a tiny picture does not fit.
    """
    if prefer not in _LADDERS:
        raise ValueError(f"prefer must be one of {', '.join(_LADDERS)}, not {prefer!r}")
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, not {max_bytes}")
    text = dict(metadata or {})
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")

    smallest: tuple[EncodedImage, str, int | None] | None = None
    for fmt, quality in _LADDERS[prefer]:
        encoded = _encode_once(image, fmt, quality, text)
        if max_bytes is None or len(encoded.data) <= max_bytes:
            return encoded
        if smallest is None or len(encoded.data) < len(smallest[0].data):
            smallest = (encoded, fmt, quality)
    assert smallest is not None and max_bytes is not None

    # Last resort: shrink, keeping whichever setting gave the smallest file. File size goes
    # roughly with the pixel count, so aim straight for the budget with a little margin.
    best, fmt, quality = smallest
    while True:
        longest = max(image.size)
        if longest <= _MIN_SIDE:
            raise ValueError(
                f"cannot encode the image in {max_bytes} bytes "
                f"(the smallest try took {len(best.data)} bytes)"
            )
        factor = min(0.9, math.sqrt(max_bytes / len(best.data)) * 0.9)
        image = fit_within(image, max(_MIN_SIDE, int(longest * factor)))
        best = _encode_once(image, fmt, quality, text)
        if len(best.data) <= max_bytes:
            return best


def _encode_once(
    image: Image.Image, fmt: str, quality: int | None, text: Mapping[str, str]
) -> EncodedImage:
    buffer = io.BytesIO()
    if fmt == "png":
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)  # becomes iTXt by itself when the value isn't Latin-1
        image.save(buffer, "PNG", pnginfo=info)
    elif fmt == "jpeg":
        assert quality is not None
        opaque = _flatten_alpha(image)
        extra = {"comment": json.dumps(text, ensure_ascii=False)} if text else {}
        opaque.save(buffer, "JPEG", quality=quality, optimize=True, **extra)
    else:
        assert quality is not None
        image.save(buffer, "WEBP", quality=quality)
    return EncodedImage(buffer.getvalue(), fmt)


def fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale (Lanczos) so the longest side is at most ``max_side``; never upscale.

    Returns ``image`` itself when it already fits.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, not {max_side}")
    width, height = image.size
    longest = max(width, height)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap lets Pillow shrink by whole factors first: much faster on big photos,
    # with no visible difference at 3x.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
