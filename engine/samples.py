"""Sample content and style images, drawn in code so the project ships no downloaded art.

``make_content`` paints a small landscape (sky, sun, hills, a house and a tree) whose shapes
stay recognisable after stylisation; ``make_style`` paints bold swirling brush strokes in a
strong palette, for a style with obvious texture. Both are deterministic for a given size
and seed. Run ``python -m engine.samples OUTDIR`` to write ``content.png`` and ``style.png``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

Colour = tuple[int, int, int]
_At = Callable[[float, float], tuple[float, float]]
"""Maps fractions of the side to canvas coordinates, so shapes read the same at any size."""

_SUPERSAMPLE = 2
"""Shapes are drawn at twice the size and shrunk with Lanczos: soft edges, no jaggies."""


def make_content(size: int = 512, *, seed: int = 1) -> Image.Image:
    """A photo-like landscape, ``size`` × ``size`` RGB: sky, sun, hills, a house and a tree."""
    _check_size(size)
    rng = random.Random(seed)
    side = size * _SUPERSAMPLE

    def at(x: float, y: float) -> tuple[float, float]:
        return (x * side, y * side)

    # Sky: deep blue overhead, warm near the horizon, as in late afternoon.
    canvas = _vertical_gradient(side, (38, 86, 168), (250, 206, 160), 0.0, 0.62)
    _glow(canvas, at(0.76, 0.22), 0.30 * side, (255, 226, 160), strength=0.75)
    _fill(canvas, "ellipse", [at(0.715, 0.165), at(0.805, 0.255)], (255, 246, 214))
    for cx, cy, w in ((0.22, 0.16, 0.20), (0.40, 0.10, 0.14), (0.55, 0.30, 0.16)):
        _cloud(canvas, at(cx, cy), w * side, rng)

    # Three rows of hills, hazier and bluer the further away (aerial perspective).
    hills = (
        (0.56, 0.030, (126, 150, 178), (150, 168, 186)),
        (0.64, 0.045, (86, 138, 78), (58, 104, 56)),
        (0.80, 0.025, (74, 134, 56), (36, 86, 34)),
    )
    for level, amplitude, top, bottom in hills:
        ridge = _ridge(side, level, amplitude, rng)
        fill = _vertical_gradient(side, top, bottom, level - amplitude, 1.0)
        canvas.paste(fill, mask=_mask(side, _below(ridge, side)))

    # A path from the door down to the viewer, widening with perspective.
    path = [at(0.30, 0.80), at(0.34, 0.80), at(0.52, 1.0), at(0.30, 1.0)]
    _fill(canvas, "polygon", path, (196, 170, 120))

    _house(canvas, at, side)
    _tree(canvas, at, side, rng)

    # A little film grain, so it reads as a photograph rather than a drawing.
    image = canvas.resize((size, size), Image.Resampling.LANCZOS)
    return _add_grain(image, rng, amplitude=3)


def make_style(size: int = 512, *, seed: int = 2) -> Image.Image:
    """A painting-like texture, ``size`` × ``size`` RGB: swirling strokes around bright stars."""
    _check_size(size)
    rng = random.Random(seed)
    side = size * _SUPERSAMPLE
    canvas = _vertical_gradient(side, (18, 34, 92), (30, 62, 120), 0.0, 1.0)
    draw = ImageDraw.Draw(canvas)

    # Vortices pull the strokes into spirals; bright "stars" sit at their centres.
    vortices = [
        (
            rng.uniform(0.15, 0.85) * side,
            rng.uniform(0.15, 0.85) * side,
            rng.choice((-1, 1)) * rng.uniform(0.8, 1.4),
        )
        for _ in range(5)
    ]
    blues = [(24, 52, 140), (40, 84, 180), (64, 120, 200), (20, 34, 96), (92, 150, 214)]
    warms = [(246, 206, 62), (236, 168, 40), (252, 236, 150)]
    pale = [(226, 236, 240), (150, 200, 214)]

    def flow(x: float, y: float) -> float:
        """Stroke direction at a point: a gentle wave plus the pull of every vortex."""
        dx = dy = 0.0
        for vx, vy, spin in vortices:
            ox, oy = x - vx, y - vy
            falloff = math.exp(-(ox * ox + oy * oy) / (2 * (0.16 * side) ** 2))
            dx += -oy * spin * falloff / (0.05 * side)
            dy += ox * spin * falloff / (0.05 * side)
        dx += 1.0
        dy += 0.5 * math.sin(x / side * 7 + y / side * 3)
        return math.atan2(dy, dx)

    def nearest_vortex(x: float, y: float) -> float:
        return min(math.hypot(x - vx, y - vy) for vx, vy, _ in vortices) / side

    strokes = 2600 * side * side // (1024 * 1024)
    for _ in range(strokes):
        x, y = rng.uniform(0, side), rng.uniform(0, side)
        if nearest_vortex(x, y) < 0.09 and rng.random() < 0.8:
            palette = warms
        elif rng.random() < 0.08:
            palette = pale
        else:
            palette = blues
        colour = _jitter(rng.choice(palette), rng, 14)
        width = rng.uniform(0.008, 0.018) * side
        points = [(x, y)]
        for _ in range(rng.randint(6, 12)):
            angle = flow(x, y)
            x += math.cos(angle) * 0.012 * side
            y += math.sin(angle) * 0.012 * side
            points.append((x, y))
        # A darker, wider pass under a lighter one reads as paint with a ridge of its own.
        draw.line(points, fill=_shade(colour, 0.7), width=round(width * 1.3), joint="curve")
        draw.line(points, fill=colour, width=round(width), joint="curve")
        draw.line(points, fill=_shade(colour, 1.25), width=max(1, round(width * 0.25)))

    for vx, vy, _ in vortices:
        _glow(canvas, (vx, vy), 0.07 * side, (255, 240, 170), strength=0.8)
    image = canvas.resize((size, size), Image.Resampling.LANCZOS)
    # A box of 256 paints looks the same here, and lets the PNG be saved indexed (a third of
    # the bytes). No grain: the strokes are texture enough.
    return image.quantize(256, dither=Image.Dither.NONE).convert("RGB")


def _check_size(size: int) -> None:
    if size < 16:
        raise ValueError(f"size must be at least 16 px, not {size}")


def _vertical_gradient(
    side: int, top: Colour, bottom: Colour, start: float, end: float
) -> Image.Image:
    """``top`` above ``start`` and ``bottom`` below ``end`` (fractions of the side), blended."""
    span = max(end - start, 1e-6)
    column = bytes(
        round(255 * min(1.0, max(0.0, (row / side - start) / span))) for row in range(side)
    )
    mask = Image.frombytes("L", (1, side), column).resize((side, side), Image.Resampling.NEAREST)
    return Image.composite(
        Image.new("RGB", mask.size, bottom), Image.new("RGB", mask.size, top), mask
    )


def _mask(side: int, shape: Callable[[ImageDraw.ImageDraw], None]) -> Image.Image:
    mask = Image.new("L", (side, side), 0)
    shape(ImageDraw.Draw(mask))
    return mask


def _below(ridge: list[tuple[float, float]], side: int) -> Callable[[ImageDraw.ImageDraw], None]:
    """Draws the area under ``ridge``, down to the bottom of the picture."""

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.polygon([*ridge, (side, side), (0, side)], fill=255)

    return draw


def _fill(
    canvas: Image.Image,
    kind: str,
    points: list[tuple[float, float]],
    colour: Colour,
    *,
    blur: float = 0.0,
    opacity: float = 1.0,
) -> None:
    """Fill an ImageDraw shape (``"polygon"``, ``"rectangle"`` or ``"ellipse"``) with ``colour``."""
    _paint(canvas, lambda d: getattr(d, kind)(points, fill=255), colour, blur=blur, opacity=opacity)


def _paint(
    canvas: Image.Image,
    shape: Callable[[ImageDraw.ImageDraw], None],
    colour: Colour,
    *,
    blur: float = 0.0,
    opacity: float = 1.0,
) -> None:
    """Fill ``shape`` (drawn in white on a mask) with ``colour``, optionally soft-edged."""
    mask = _mask(canvas.width, shape)
    if blur:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    if opacity < 1.0:
        mask = mask.point(lambda value: round(value * opacity))
    canvas.paste(Image.new("RGB", canvas.size, colour), mask=mask)


def _glow(
    canvas: Image.Image, centre: tuple[float, float], radius: float, colour: Colour, strength: float
) -> None:
    """A soft radial light: full ``strength`` at the centre fading to nothing at ``radius``."""
    diameter = max(2, round(radius * 2))
    falloff = Image.radial_gradient("L").resize((diameter, diameter), Image.Resampling.BILINEAR)
    falloff = falloff.point(lambda value: round(max(0.0, 1 - value / 128) ** 2 * 255 * strength))
    mask = Image.new("L", canvas.size, 0)
    mask.paste(falloff, (round(centre[0] - radius), round(centre[1] - radius)))
    canvas.paste(Image.new("RGB", canvas.size, colour), mask=mask)


def _cloud(
    canvas: Image.Image, centre: tuple[float, float], width: float, rng: random.Random
) -> None:
    cx, cy = centre

    def puffs(draw: ImageDraw.ImageDraw) -> None:
        for _ in range(7):
            x = cx + rng.uniform(-0.5, 0.5) * width
            y = cy + rng.uniform(-0.08, 0.08) * width
            r = rng.uniform(0.12, 0.22) * width
            draw.ellipse((x - r, y - r * 0.7, x + r, y + r * 0.7), fill=255)

    _paint(canvas, puffs, (248, 244, 240), blur=width * 0.06, opacity=0.85)


def _ridge(
    side: int, level: float, amplitude: float, rng: random.Random
) -> list[tuple[float, float]]:
    """A hill line: a few sines of random phase, so each row of hills has its own shape."""
    waves = [
        (rng.uniform(1.0, 3.5), rng.uniform(0, math.tau), rng.uniform(0.4, 1.0)) for _ in range(3)
    ]
    total = sum(weight for _, _, weight in waves)
    points = []
    for step in range(129):
        u = step / 128
        height = sum(w * math.sin(u * f * math.tau + p) for f, p, w in waves) / total
        points.append((u * side, (level - amplitude * height) * side))
    return points


def _house(canvas: Image.Image, at: _At, side: int) -> None:
    # Sun on the right: the shadow falls left, and the left wall and roof slope are darker.
    _fill(
        canvas,
        "polygon",
        [at(0.17, 0.785), at(0.36, 0.785), at(0.30, 0.815), at(0.10, 0.815)],
        (30, 70, 28),
        blur=side * 0.006,
        opacity=0.6,
    )
    wall, window_frame, glass = (238, 224, 194), (250, 246, 236), (58, 92, 132)
    shapes: list[tuple[str, list[tuple[float, float]], Colour]] = [
        (
            "polygon",
            [at(0.17, 0.66), at(0.22, 0.64), at(0.22, 0.77), at(0.17, 0.785)],
            (184, 164, 134),
        ),
        ("rectangle", [at(0.22, 0.64), at(0.38, 0.77)], wall),
        ("polygon", [at(0.20, 0.64), at(0.30, 0.53), at(0.40, 0.64)], (176, 54, 42)),
        (
            "polygon",
            [at(0.16, 0.665), at(0.25, 0.545), at(0.30, 0.53), at(0.20, 0.64)],
            (124, 36, 30),
        ),
        ("rectangle", [at(0.335, 0.55), at(0.36, 0.60)], (120, 70, 60)),  # chimney
        ("rectangle", [at(0.285, 0.69), at(0.315, 0.77)], (96, 60, 40)),  # door
    ]
    for left in (0.235, 0.33):
        shapes.append(("rectangle", [at(left, 0.665), at(left + 0.035, 0.705)], window_frame))
        shapes.append(("rectangle", [at(left + 0.004, 0.669), at(left + 0.031, 0.701)], glass))
    for kind, points, colour in shapes:
        _fill(canvas, kind, points, colour)


def _tree(canvas: Image.Image, at: _At, side: int, rng: random.Random) -> None:
    _fill(
        canvas,
        "ellipse",
        [at(0.55, 0.835), at(0.70, 0.865)],
        (28, 66, 26),
        blur=side * 0.008,
        opacity=0.7,
    )
    _fill(
        canvas,
        "polygon",
        [at(0.655, 0.85), at(0.675, 0.66), at(0.69, 0.66), at(0.71, 0.85)],
        (88, 58, 36),
    )
    # The crown: dark clusters first, then smaller, lighter ones shifted towards the sun.
    clusters = [
        (0.68 + rng.uniform(-0.08, 0.08), 0.62 + rng.uniform(-0.07, 0.05), rng.uniform(0.045, 0.07))
        for _ in range(11)
    ]
    for shift, colour in ((0.0, (34, 82, 36)), (0.012, (62, 118, 46)), (0.022, (108, 158, 66))):
        for x, y, radius in clusters:
            r = radius * (1 - shift * 20)
            _fill(
                canvas,
                "ellipse",
                [at(x + shift - r, y - shift - r), at(x + shift + r, y - shift + r)],
                colour,
            )


def _add_grain(image: Image.Image, rng: random.Random, amplitude: int) -> Image.Image:
    """Add soft, deterministic noise of about ±``amplitude`` levels to every channel."""
    width, height = image.size
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    grain = grain.filter(ImageFilter.GaussianBlur(0.6))  # clumps, like film grain, not pixels
    # After the blur the noise has a standard deviation of about 39 levels around 128.
    grain = grain.point(lambda value: round(128 + (value - 128) * amplitude / 39))
    return ImageChops.add(image, Image.merge("RGB", [grain] * 3), offset=-128)


def _jitter(colour: Colour, rng: random.Random, amount: int) -> Colour:
    r, g, b = (min(255, max(0, c + rng.randint(-amount, amount))) for c in colour)
    return (r, g, b)


def _shade(colour: Colour, factor: float) -> Colour:
    r, g, b = (min(255, round(c * factor)) for c in colour)
    return (r, g, b)


def _save_png(image: Image.Image, path: Path) -> None:
    """Save as PNG, indexed when the image has at most 256 colours (exact, and far smaller)."""
    if image.getcolors(256) is not None:
        image = image.quantize(256, dither=Image.Dither.NONE)
    image.save(path, optimize=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.samples",
        description="Write the sample content.png and style.png into a folder.",
    )
    parser.add_argument("outdir", type=Path, help="folder to write into (created if missing)")
    parser.add_argument("--size", type=int, default=512, help="side of each image in px")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    for name, make in (("content.png", make_content), ("style.png", make_style)):
        path = args.outdir / name
        _save_png(make(args.size), path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
