"""engine.images: every input a user can send decodes to a right-looking RGB image or one
ImageError with a message they can act on; results encode under a byte budget.

All inputs are built here in code, so the table doubles as a list of what was considered.
"""

from __future__ import annotations

import functools
import io
import json
import random
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms, ImageDraw, ImageFile, ImageFilter

from engine.errors import ImageError
from engine.images import (
    DEFAULT_MAX_PIXELS,
    EncodedImage,
    encode_image,
    fit_within,
    load_image,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """Soft random content: big enough files to cut or squeeze, and the same on every run."""
    raw = random.Random(seed).randbytes(size[0] * size[1] * 3)
    return Image.frombytes("RGB", size, raw).filter(ImageFilter.GaussianBlur(1))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, depth: int, colour_type: int, rows: bytes | None) -> bytes:
    """A PNG written by hand: ``rows=None`` gives a header with an empty IDAT, no pixels."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    pixels = zlib.compress(rows) if rows is not None else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def rows_16bit(width: int, height: int, *samples: int) -> bytes:
    row = b"\x00" + struct.pack(f">{len(samples)}H", *samples) * width  # filter byte 0: none
    return row * height


def animated(fmt: str, **options: object) -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE, GREEN)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, **options)


def palette_with_transparency(fmt: str) -> bytes:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([*RED, *BLUE] + [0] * 762)
    ImageDraw.Draw(image).rectangle((8, 0, 15, 15), fill=1)  # right half blue, left half index 0
    return encode(image, fmt, transparency=0)


def rgba_halves() -> bytes:
    image = Image.new("RGBA", (16, 16), (*RED, 0))  # fully transparent red: must become white
    ImageDraw.Draw(image).rectangle((8, 0, 15, 7), fill=(*GREEN, 255))
    ImageDraw.Draw(image).rectangle((8, 8, 15, 15), fill=(0, 0, 0, 128))
    return encode(image, "PNG")


def exif_rotated(orientation: int) -> bytes:
    """40 wide by 24 tall as stored, with a red block in the stored top-left corner."""
    image = Image.new("RGB", (40, 24), WHITE)
    ImageDraw.Draw(image).rectangle((0, 0, 7, 7), fill=RED)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return encode(image, "JPEG", exif=exif, quality=95)


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def linear_rgb_profile() -> bytes:
    """An ICC v2 profile written by hand: sRGB's primaries with gamma 1.0 (linear light).

    Pillow can only create sRGB, LAB and XYZ profiles, and a real conversion needs a source
    space that differs from sRGB: linear 128 is sRGB 188, so the change is easy to see.
    """

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    gamma_1 = b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0100) + bytes(2)
    d50 = (0.9642, 1.0, 0.8249)
    tags = [
        (b"wtpt", xyz(*d50)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", gamma_1),
        (b"gTRC", gamma_1),
        (b"bTRC", gamma_1),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", offset + len(body))
        + bytes(4)
        + struct.pack(">I", 0x02100000)  # version 2.1
        + b"mntrRGB XYZ "  # a display profile, RGB data, XYZ connection space
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + xyz(*d50)[8:]  # the illuminant
        + bytes(48)
    )
    return header + struct.pack(">I", len(tags)) + table + body


def lab_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


def one_colour(mode: str, colour: object, size: tuple[int, int] = (16, 16)) -> Image.Image:
    return Image.new(mode, size, colour)  # type: ignore[arg-type]


# (id, input, expected size, {point: colour}, tolerance per channel)
Case = tuple[str, Callable[[], bytes], tuple[int, int], dict[tuple[int, int], tuple[int, ...]], int]
GOOD: list[Case] = [
    ("png rgb", lambda: encode(one_colour("RGB", (200, 100, 50)), "PNG"),
     (16, 16), {(3, 3): (200, 100, 50)}, 0),
    ("1x1 png", lambda: encode(one_colour("RGB", BLUE, (1, 1)), "PNG"), (1, 1), {(0, 0): BLUE}, 0),
    ("jpeg greyscale", lambda: encode(one_colour("L", 90), "JPEG"),
     (16, 16), {(3, 3): (90,) * 3}, 2),
    ("webp lossless", lambda: encode(one_colour("RGB", GREEN), "WEBP", lossless=True),
     (16, 16), {(3, 3): GREEN}, 0),
    ("bmp 1-bit", lambda: encode(one_colour("1", 1), "BMP"), (16, 16), {(3, 3): WHITE}, 0),
    ("tiff rgb", lambda: encode(one_colour("RGB", RED), "TIFF"), (16, 16), {(3, 3): RED}, 0),
    ("gif animated: first frame", lambda: animated("GIF"), (16, 16), {(3, 3): RED}, 0),
    ("png animated: first frame", lambda: animated("PNG"), (16, 16), {(3, 3): RED}, 0),
    ("webp animated: first frame", lambda: animated("WEBP", lossless=True),
     (16, 16), {(3, 3): RED}, 0),
    ("cmyk jpeg", lambda: encode(one_colour("CMYK", (0, 255, 255, 0)), "JPEG"),
     (16, 16), {(3, 3): RED}, 40),
    ("cmyk jpeg, broken icc", lambda: encode(one_colour("CMYK", (255, 255, 0, 0)), "JPEG",
     icc_profile=b"not a profile"), (16, 16), {(3, 3): BLUE}, 40),
    ("cmyk tiff", lambda: encode(one_colour("CMYK", (255, 0, 255, 0)), "TIFF"),
     (16, 16), {(3, 3): GREEN}, 40),
    # A plain convert clips 16-bit grey to white; 32768 of 65535 is mid-grey.
    ("png 16-bit grey", lambda: encode(one_colour("I;16", 32768), "PNG"),
     (16, 16), {(3, 3): (128,) * 3}, 1),
    ("png 16-bit grey by hand", lambda: raw_png(4, 4, 16, 0, rows_16bit(4, 4, 16384)),
     (4, 4), {(1, 1): (64,) * 3}, 1),
    ("png 16-bit rgb", lambda: raw_png(4, 4, 16, 2, rows_16bit(4, 4, 65535, 32768, 0)),
     (4, 4), {(1, 1): (255, 128, 0)}, 1),
    ("png 16-bit grey+alpha, transparent", lambda: raw_png(4, 4, 16, 4, rows_16bit(4, 4, 0, 0)),
     (4, 4), {(1, 1): WHITE}, 0),
    ("tiff 16-bit grey", lambda: encode(one_colour("I;16", 65535), "TIFF"),
     (16, 16), {(3, 3): WHITE}, 0),
    ("tiff float 0..1", lambda: encode(one_colour("F", 0.5), "TIFF"),
     (16, 16), {(3, 3): (128,) * 3}, 1),
    ("tiff lab mid-grey", lambda: encode(one_colour("LAB", (128, 128, 128)), "TIFF"),
     (16, 16), {(3, 3): (119,) * 3}, 4),
    ("png palette + tRNS", lambda: palette_with_transparency("PNG"),
     (16, 16), {(2, 2): WHITE, (12, 2): BLUE}, 0),
    ("gif palette + transparency", lambda: palette_with_transparency("GIF"),
     (16, 16), {(2, 2): WHITE, (12, 2): BLUE}, 0),
    ("png rgba", rgba_halves, (16, 16), {(2, 2): WHITE, (12, 2): GREEN, (12, 12): (127,) * 3}, 1),
    ("png la", lambda: encode(one_colour("LA", (0, 0)), "PNG"), (16, 16), {(3, 3): WHITE}, 0),
    # Orientation 6: shown turned 90° clockwise, so stored top-left lands at the top right.
    ("jpeg exif orientation 6", lambda: exif_rotated(6),
     (24, 40), {(20, 3): RED, (3, 3): WHITE}, 40),
    # Orientation 8: turned 90° anticlockwise, so stored top-left lands at the bottom left.
    ("jpeg exif orientation 8", lambda: exif_rotated(8),
     (24, 40), {(3, 36): RED, (3, 3): WHITE}, 40),
    ("jpeg srgb icc", lambda: encode(one_colour("RGB", (200, 100, 50)), "JPEG", quality=95,
     icc_profile=srgb_profile()), (16, 16), {(3, 3): (200, 100, 50)}, 4),
    ("png linear-light icc: converted", lambda: encode(one_colour("RGB", (128, 128, 0)), "PNG",
     icc_profile=linear_rgb_profile()), (16, 16), {(3, 3): (188, 188, 0)}, 2),
    ("jpeg linear-light icc: converted", lambda: encode(one_colour("RGB", (128, 128, 128)), "JPEG",
     quality=95, icc_profile=linear_rgb_profile()), (16, 16), {(3, 3): (188, 188, 188)}, 3),
    ("png broken icc: pixels as they are", lambda: encode(one_colour("RGB", (10, 20, 30)), "PNG",
     icc_profile=b"garbage"), (16, 16), {(3, 3): (10, 20, 30)}, 0),
    ("png lab icc on rgb: pixels as they are", lambda: encode(one_colour("RGB", (10, 20, 30)),
     "PNG", icc_profile=lab_profile()), (16, 16), {(3, 3): (10, 20, 30)}, 0),
]  # fmt: skip


@pytest.mark.parametrize(("data", "size", "colours", "tolerance"),
                         [pytest.param(*case[1:], id=case[0]) for case in GOOD])  # fmt: skip
def test_load_image_decodes(
    data: Callable[[], bytes],
    size: tuple[int, int],
    colours: dict[tuple[int, int], tuple[int, ...]],
    tolerance: int,
) -> None:
    image = load_image(data())
    assert (image.mode, image.size) == ("RGB", size)
    # A plain image with no metadata: saving it must not write a stale profile or EXIF.
    assert type(image) is Image.Image
    assert image.info == {}
    for point, expected in colours.items():
        actual = image.getpixel(point)
        assert isinstance(actual, tuple)
        assert max(abs(a - e) for a, e in zip(actual, expected, strict=True)) <= tolerance, (
            f"{point}: {actual} != {expected}"
        )


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nnewpath 0 0 moveto showpage\n"
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
PNG_BYTES = encode(noise(), "PNG")
JPEG_BYTES = encode(noise(), "JPEG")
NOT_IMAGE = r"^That file isn't an image we can read\. Send a PNG, JPEG, WebP, GIF, BMP or TIFF\.$"
DAMAGED = r"^The image file is damaged or incomplete\."
VECTOR = r", not a picture: export it as PNG or JPEG\.$"
POSTSCRIPT = r"a PostScript/vector file \(EPS or PS\)" + VECTOR

BAD: list[tuple[str, bytes, str]] = [
    ("empty", b"", r"^The file is empty\."),
    ("text", b"hello, this is a note and not a picture\n", NOT_IMAGE),
    ("html", b"<!DOCTYPE html><html><body><img src='x.png'></body></html>", NOT_IMAGE),
    ("zip", b"PK\x03\x04" + bytes(100), NOT_IMAGE),
    ("truncated png", PNG_BYTES[: len(PNG_BYTES) // 2], DAMAGED),
    ("png signature only", PNG_BYTES[:20], DAMAGED),
    ("truncated jpeg", JPEG_BYTES[: len(JPEG_BYTES) // 2], DAMAGED),
    ("jpeg header only", JPEG_BYTES[:40], DAMAGED),
    ("zero-width png", raw_png(0, 10, 8, 2, b""), DAMAGED),
    ("eps", EPS, r"^That file is " + POSTSCRIPT),
    ("postscript", b"%!PS-Adobe-3.0\n/Times findfont\n", POSTSCRIPT),
    ("dos eps", b"\xc5\xd0\xd3\xc6" + bytes(28) + EPS, POSTSCRIPT),
    ("pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", r"a PDF document" + VECTOR),
    ("svg", SVG, r"an SVG vector drawing" + VECTOR),
    ("svg, bare", b"\n  <svg viewBox='0 0 1 1'></svg>", r"an SVG vector drawing" + VECTOR),
    ("heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), r"HEIC or AVIF"),
    # Declares 30000×30000 with no pixel data at all: only a check of the header can catch it
    # (decoding would fail as "damaged" instead). Past twice Pillow's limit Pillow raises first.
    ("png 30000x30000 header", raw_png(30000, 30000, 8, 2, None),
     r"^This image is 900 megapixels; the limit is 40 megapixels\. Send a smaller image\.$"),
    ("png 8000x6000 header", raw_png(8000, 6000, 8, 2, None),
     r"^This image is 8000×6000 pixels \(48 megapixels\); the limit is 40 megapixels\."),
]  # fmt: skip


@pytest.mark.parametrize(("data", "message"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_load_image_refuses(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_small_max_pixels_refuses_a_legal_image() -> None:
    data = encode(one_colour("RGB", RED, (200, 150)), "PNG")
    with pytest.raises(ImageError, match=r"200×150 pixels; the limit is 10,000 pixels"):
        load_image(data, max_pixels=10_000)
    assert load_image(data, max_pixels=30_000).size == (200, 150)


def test_pillow_limit_also_applies_and_never_warns(
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    # An operator may lower Pillow's global limit: past it Pillow would warn; we refuse.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(ImageError, match=r"1500×1000 pixels \(1.5 megapixels\).* 1 megapixels"):
        load_image(raw_png(1500, 1000, 8, 2, None), max_pixels=DEFAULT_MAX_PIXELS)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_pillow_global_state_untouched() -> None:
    before = (Image.MAX_IMAGE_PIXELS, list(warnings.filters))
    with pytest.raises(ImageError):
        load_image(raw_png(30000, 30000, 8, 2, None))
    load_image(PNG_BYTES)
    assert (Image.MAX_IMAGE_PIXELS, list(warnings.filters)) == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_refusal_keeps_pillow_error_as_cause() -> None:
    with pytest.raises(ImageError) as caught:
        load_image(PNG_BYTES[:-100])
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value.__cause__, OSError)


def test_max_pixels_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(PNG_BYTES, max_pixels=0)


# encode_image


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return noise((128, 128))


def test_png_round_trip_with_metadata(picture: Image.Image) -> None:
    settings = json.dumps({"strength": 1.0, "steps": 300})
    metadata = {"stylize:settings": settings, "stylize:seed": "123", "stylize:note": "ok ✓"}
    encoded = encode_image(picture, metadata=metadata)
    assert (encoded.format, encoded.mime, encoded.extension) == ("png", "image/png", "png")
    with Image.open(io.BytesIO(encoded.data)) as reopened:
        assert reopened.format == "PNG"
        assert reopened.text == metadata  # type: ignore[attr-defined]
        assert reopened.convert("RGB").tobytes() == picture.tobytes()


@pytest.mark.parametrize("fraction", [0.5, 0.15, 0.02])
def test_falls_back_under_budget(picture: Image.Image, fraction: float) -> None:
    png_size = len(encode_image(picture).data)
    budget = int(png_size * fraction)
    encoded = encode_image(picture, max_bytes=budget, metadata={"stylize:seed": "7"})
    assert encoded.format in ("jpeg", "webp")
    assert len(encoded.data) <= budget
    decoded = load_image(encoded.data)
    if fraction >= 0.15:
        assert decoded.size == picture.size  # lossy is enough; shrinking only as a last resort
    else:
        assert max(decoded.size) < max(picture.size)


def test_jpeg_keeps_metadata_in_comment(picture: Image.Image) -> None:
    encoded = encode_image(picture, prefer="jpeg", metadata={"stylize:seed": "5"})
    with Image.open(io.BytesIO(encoded.data)) as reopened:
        assert json.loads(reopened.info["comment"]) == {"stylize:seed": "5"}


def test_impossible_budget_raises(picture: Image.Image) -> None:
    with pytest.raises(ValueError, match="cannot encode the image in 10 bytes"):
        encode_image(picture, max_bytes=10)


@pytest.mark.parametrize(
    ("prefer", "mime", "extension"),
    [("png", "image/png", "png"), ("jpeg", "image/jpeg", "jpg"), ("webp", "image/webp", "webp")],
)
def test_prefer(picture: Image.Image, prefer: str, mime: str, extension: str) -> None:
    encoded = encode_image(picture, prefer=prefer)
    assert (encoded.format, encoded.mime, encoded.extension) == (prefer, mime, extension)
    assert load_image(encoded.data).size == picture.size


def test_transparent_input_becomes_white_in_jpeg() -> None:
    encoded = encode_image(one_colour("RGBA", (0, 0, 0, 0)), prefer="jpeg")
    assert load_image(encoded.data).getpixel((3, 3)) == WHITE


def test_bad_arguments() -> None:
    image = one_colour("RGB", RED)
    with pytest.raises(ValueError, match="prefer"):
        encode_image(image, prefer="gif")
    with pytest.raises(ValueError, match="max_bytes"):
        encode_image(image, max_bytes=0)
    with pytest.raises(ValueError, match="format"):
        EncodedImage(b"", "gif")


def test_fit_within() -> None:
    image = one_colour("RGB", RED, (400, 100))
    assert fit_within(image, 100).size == (100, 25)
    assert fit_within(image, 400) is image  # never upscale, never copy for nothing
    assert fit_within(image, 1000) is image


# engine.samples: the shipped sample pictures are drawn in code


def test_samples_are_deterministic_and_load(tmp_path: Path) -> None:
    from engine import samples

    content, style = samples.make_content(64), samples.make_style(64)
    assert content.mode == style.mode == "RGB"
    assert content.size == style.size == (64, 64)
    assert samples.make_content(64).tobytes() == content.tobytes()
    assert samples.make_style(64).tobytes() == style.tobytes()
    assert samples.make_style(64, seed=3).tobytes() != style.tobytes()

    assert samples.main([str(tmp_path), "--size", "64"]) == 0
    assert load_image((tmp_path / "content.png").read_bytes()).tobytes() == content.tobytes()
    assert load_image((tmp_path / "style.png").read_bytes()).tobytes() == style.tobytes()


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        (".png", "png"),
        (".JPG", "jpeg"),
        (".jpeg", "jpeg"),
        (".webp", "webp"),
        (".gif", None),
        ("", None),
    ],
)
def test_output_format_for_suffix(suffix: str, expected: str | None) -> None:
    from engine.images import output_format_for

    assert output_format_for(suffix) == expected


def test_format_names_come_from_the_one_table() -> None:
    from engine.images import format_extension, format_label

    assert (format_extension("jpeg"), format_label("webp")) == ("jpg", "WebP")
    assert (format_extension("avif"), format_label("avif")) == ("avif", "AVIF")


# ----- decoding large JPEGs at a reduced scale ----------------------------------------------


@functools.cache
def _photo(size: tuple[int, int]) -> Image.Image:
    from engine.samples import make_content

    return make_content(400).resize(size, Image.Resampling.BICUBIC)


def test_fit_decodes_a_big_jpeg_at_a_reduced_scale_and_looks_the_same() -> None:
    data = encode(_photo((2000, 1500)), "JPEG", quality=92)
    small = load_image(data, fit=256)
    assert small.size == (500, 375)  # 1/4: the smallest scale that keeps both sides ≥ 256
    full = load_image(data)
    assert full.size == (2000, 1500)
    a = small.resize((256, 192), Image.Resampling.LANCZOS).tobytes()
    b = full.resize((256, 192), Image.Resampling.LANCZOS, reducing_gap=3.0).tobytes()
    assert sum(abs(x - y) for x, y in zip(a, b)) / len(a) < 2.0  # under 2 of 255 levels


@pytest.mark.parametrize(
    ("fmt", "fit", "expected"),
    [
        ("JPEG", 1600, (2000, 1500)),  # already near the size asked: decoded whole
        ("JPEG", 700, (1000, 750)),
        ("PNG", 64, (2000, 1500)),  # only JPEG can decode at a reduced scale
    ],
)
def test_fit_never_goes_below_the_size_asked(fmt: str, fit: int, expected: tuple[int, int]) -> None:
    assert load_image(encode(_photo((2000, 1500)), fmt), fit=fit).size == expected


def test_fit_applies_before_exif_rotation() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    data = encode(_photo((1600, 800)), "JPEG", exif=exif, quality=90)
    assert load_image(data, fit=100).size == (100, 200)  # 1/8, then turned upright
