"""Decoding uploads as a worker does: a phone photo shrunk to the job's size, with and without
``load_image(..., fit=...)`` (JPEG decoded at 1/2, 1/4 or 1/8 scale in the DCT domain).

    python benchmarks/decode_bench.py [--size 512] [--repeats 7]
Prints the best of --repeats for each case: decode alone, and decode plus the engine's resize.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageChops

from engine.images import fit_within, load_image
from engine.samples import make_content
from engine.settings import StylizeSettings
from engine.transfer import decode_sides


def photo_jpeg(scene: Image.Image, size: tuple[int, int], quality: int = 90) -> bytes:
    """``scene`` at ``size`` with sensor-like grain, so it compresses about as a photo does."""
    scene = scene.resize(size, Image.Resampling.BICUBIC)
    grain = Image.effect_noise(size, 24).convert("RGB")
    image = ImageChops.add(scene, grain, scale=1.0, offset=-48)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    side = decode_sides(StylizeSettings(size=args.size))[0]
    header = f"decode, fit={side}"
    print(f"| upload | bytes | decode, full | {header} | + resize, full | + resize, fit |")
    print("|---|---|---|---|---|---|")
    scene = make_content(400)
    for size in ((4032, 3024), (1600, 1200)):
        data = photo_jpeg(scene, size)
        full = best(lambda d=data: load_image(d), args.repeats)
        fit = best(lambda d=data: load_image(d, fit=side), args.repeats)
        full_r = best(lambda d=data: fit_within(load_image(d), side), args.repeats)
        fit_r = best(lambda d=data: fit_within(load_image(d, fit=side), side), args.repeats)
        print(
            f"| {size[0]}×{size[1]} JPEG | {len(data) / 1e6:.1f} MB | {full * 1e3:.0f} ms "
            f"| {fit * 1e3:.0f} ms | {full_r * 1e3:.0f} ms | {fit_r * 1e3:.0f} ms |"
        )


if __name__ == "__main__":
    main()
