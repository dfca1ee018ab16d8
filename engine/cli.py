"""The ``stylize`` command: repaint an image file in the style of others."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from PIL import Image

from engine.errors import EngineError
from engine.images import encode_image, load_image, output_format_for
from engine.progress import Progress
from engine.settings import COLOR_MODES, INITS, OPTIMIZERS, POOLINGS, PRECISIONS, StylizeSettings

USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other user error; `stylize -h` shows the full usage.
        self.exit(USER_ERROR, f"stylize: {message} (see stylize --help)\n")


def build_parser() -> argparse.ArgumentParser:
    defaults = StylizeSettings()
    p = _Parser(
        prog="stylize",
        description="Repaint CONTENT in the style of one or more STYLE images "
        "(Gatys, Ecker & Bethge's neural style transfer).",
    )
    p.add_argument("content", metavar="CONTENT", type=Path, help="the photo to repaint")
    p.add_argument(
        "styles", metavar="STYLE", type=Path, nargs="+", help="painting(s) to take the style from"
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        type=Path,
        required=True,
        help="where to save the result (.png, .jpg or .webp)",
    )
    p.add_argument(
        "--size",
        metavar="PX",
        type=int,
        default=defaults.size,
        help="longest side of the result (default %(default)s)",
    )
    p.add_argument(
        "--steps",
        metavar="N",
        type=int,
        default=defaults.steps,
        help="optimisation steps (default %(default)s)",
    )
    p.add_argument(
        "--strength",
        metavar="X",
        type=float,
        default=defaults.strength,
        help="style vs content, 1 = balanced (default %(default)s)",
    )
    p.add_argument(
        "--style-weights",
        metavar="W",
        type=float,
        nargs="+",
        help="blend weights, one per style image",
    )
    p.add_argument(
        "--style-scale",
        metavar="X",
        type=float,
        default=defaults.style_scale,
        help="style image size relative to the output (default %(default)s)",
    )
    p.add_argument("--preserve-colors", choices=COLOR_MODES, help="keep the content's colours")
    p.add_argument(
        "--init",
        metavar="{content,noise,style,PATH}",
        default=defaults.init,
        help="start from the photo, noise, the style, or an image file such as an earlier, "
        "smaller result to continue at --size (default %(default)s)",
    )
    p.add_argument(
        "--optimizer", choices=OPTIMIZERS, default=defaults.optimizer, help="(default %(default)s)"
    )
    p.add_argument(
        "--pooling", choices=POOLINGS, default=defaults.pooling, help="(default %(default)s)"
    )
    p.add_argument(
        "--seed", metavar="N", type=int, help="for a reproducible result (default: random, printed)"
    )
    p.add_argument(
        "--device",
        default=defaults.device,
        help="auto, cpu, cuda, cuda:N or mps (default %(default)s)",
    )
    p.add_argument(
        "--weights",
        default=defaults.weights,
        help="imagenet, random, random:SEED or a .pth path (default %(default)s)",
    )
    p.add_argument(
        "--precision", choices=PRECISIONS, default=defaults.precision, help="(default %(default)s)"
    )
    return p  # fmt: skip


def _settings(args: argparse.Namespace) -> StylizeSettings:
    return StylizeSettings(
        size=args.size,
        steps=args.steps,
        strength=args.strength,
        style_weights=tuple(args.style_weights) if args.style_weights else None,
        style_scale=args.style_scale,
        preserve_colors=args.preserve_colors,
        init=args.init if args.init in INITS else "content",
        optimizer=args.optimizer,
        pooling=args.pooling,
        seed=args.seed,
        device=args.device,
        weights=args.weights,
        precision=args.precision,
    ).resolved()


def _read_image(path: Path, fit: int) -> Image.Image:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise EngineError(f"Cannot read {path}: {error.strerror or error}.") from None
    try:
        return load_image(data, fit=fit)
    except EngineError as error:
        raise EngineError(f"{path}: {error}") from None


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from engine.network import load_network
    from engine.transfer import decode_sides, stylize

    fmt = output_format_for(args.output.suffix)
    if fmt is None:
        raise EngineError(f"{args.output}: the output must end in .png, .jpg, .jpeg or .webp.")
    settings = _settings(args)
    settings.check_styles(len(args.styles))
    content_side, style_side = decode_sides(settings)
    content = _read_image(args.content, content_side)
    styles = [_read_image(path, style_side) for path in args.styles]
    # Any other value of --init names an image to start from.
    initial = None if args.init in INITS else _read_image(Path(args.init), content_side)
    started = time.perf_counter()
    network = load_network(settings.weights, settings.device)
    with tqdm(total=settings.steps, unit="step", dynamic_ncols=True, file=sys.stderr) as bar:

        def on_progress(p: Progress) -> None:
            bar.set_postfix(
                content=f"{p.content_loss:.3g}", style=f"{p.style_loss:.3g}", tv=f"{p.tv_loss:.2g}",
                refresh=False,
            )  # fmt: skip
            bar.update(p.step - bar.n)

        result = stylize(
            content, styles, settings, on_progress=on_progress, network=network, initial=initial
        )
    metadata = {
        "stylize:settings": json.dumps(settings.to_dict()),
        "stylize:seed": str(settings.seed),
    }
    encoded = encode_image(result, metadata=metadata, prefer=fmt)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(encoded.data)
    except OSError as error:
        raise EngineError(f"Cannot write {args.output}: {error.strerror or error}.") from None
    elapsed = time.perf_counter() - started
    print(
        f"Saved {args.output} ({result.width}×{result.height}, seed {settings.seed}) "
        f"in {elapsed:.1f} s on {network.device}."
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except EngineError as error:
        print(f"stylize: {error}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("stylize: interrupted.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
