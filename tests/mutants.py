"""Proves that the engine's tests catch bugs in the method: one-line mutants, each must fail.

Each mutant is a one-line bug a real change could bring into ``engine/``. The script copies
the repository to a temporary folder, applies one mutant at a time there (the working tree
is never touched), runs the engine tests with ``-x`` and prints which test failed first.
A mutant that no test kills is a hole in the tests, and the script exits 1.

    python tests/mutants.py                 # every mutant, the default test files
    python tests/mutants.py -k bounds tv    # only mutants whose name contains a word
    python tests/mutants.py --list          # the mutants, without running anything

It is not collected by pytest (its name does not start with ``test_``). Run it after every
change to the engine: a mutant whose line no longer exists is reported as stale, so the
list keeps up with the code.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Fast and decisive first: with -x the first failure ends a run.
TEST_FILES = (
    "tests/test_reference.py",
    "tests/test_objective.py",
    "tests/test_optimize.py",
    "tests/test_losses.py",
    "tests/test_lbfgs.py",
    "tests/test_transfer.py",
    "tests/test_cli.py",
    "tests/test_network.py",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    before: str
    """Must occur exactly once in the file."""
    after: str


MUTANTS = (
    Mutant(
        "content layer hard-wired to relu1_1", "engine/objective.py",
        "self.content_layers = settings.content_layers",
        'self.content_layers = ("relu1_1",)',
    ),
    Mutant(
        "strength ignored", "engine/objective.py",
        "settings.style_weight * settings.strength / len(self.style_targets)",
        "settings.style_weight / len(self.style_targets)",
    ),
    Mutant(
        "pooling ignored", "engine/objective.py",
        "return self.network(image, layers, self.pooling)",
        "return self.network(image, layers)",
    ),
    Mutant(
        "target norm stored as ‖t‖, not ‖t‖²", "engine/objective.py",
        "return cls(value, losses.squared_norm(value))",
        "return cls(value, losses.squared_norm(value).sqrt())",
    ),
    Mutant(
        "L-BFGS without its [0, 1] bounds", "engine/optimize.py",
        "bounds=(0.0, 1.0))", "bounds=None)",
    ),
    Mutant(
        "each scale restarts from the initial image", "engine/transfer.py",
        "x = upsample(x, *inputs.content.shape[-2:])",
        "x = initial_image(settings.init, inputs.content, inputs.styles[0], settings.seed or 0)",
    ),
    Mutant(
        "a blend of styles uses only the first", "engine/objective.py",
        "losses.blend_grams([g[layer] for g in grams], live_weights)", "grams[0][layer]",
    ),
    Mutant(
        'init="style" starts from the content', "engine/optimize.py",
        'if init == "content":', 'if init in ("content", "style"):',
    ),
    Mutant(
        "the result reports a seed it did not use", "engine/transfer.py",
        'result.info["stylize:seed"] = str(settings.seed)',
        'result.info["stylize:seed"] = str(settings.seed + 1)',
    ),
    Mutant(
        "Gram matrix over positions, not channels", "engine/losses.py",
        "torch.bmm(flat, flat.transpose(1, 2))", "torch.bmm(flat.transpose(1, 2), flat)",
    ),
    Mutant(
        "layer names: relu3_1 and relu3_2 swapped", "engine/layers.py",
        '"conv3_1", "relu3_1", "conv3_2", "relu3_2",',
        '"conv3_1", "relu3_2", "conv3_2", "relu3_1",',
    ),
    Mutant(
        "relative error: mean instead of sum", "engine/losses.py",
        'F.mse_loss(value.float(), target.float(), reduction="sum")',
        'F.mse_loss(value.float(), target.float(), reduction="mean")',
    ),
    Mutant(
        "luminance mode: chroma taken as Y and I", "engine/colors.py",
        "iq = rgb_to_yiq(chroma_source)[:, 1:]", "iq = rgb_to_yiq(chroma_source)[:, :2]",
    ),
    Mutant(
        "total variation with the wrong sign", "engine/objective.py",
        "tv = losses.total_variation(image) * self.tv_weight",
        "tv = losses.total_variation(image) * -self.tv_weight",
    ),
    Mutant(
        "L-BFGS history setting ignored", "engine/optimize.py",
        "history=settings.lbfgs_history", "history=16",
    ),
    Mutant(
        "L-BFGS history read in the wrong order once full", "engine/lbfgs.py",
        "order = self._orders[self._stored % m if self._stored >= m else 0]",
        "order = self._orders[0]",
    ),
    Mutant(
        "ImageNet normalisation multiplies by the std", "engine/network.py",
        "x = (image - self.mean) / self.std", "x = (image - self.mean) * self.std",
    ),
    Mutant(
        "max and average pooling swapped", "engine/network.py",
        'pool = F.max_pool2d if pooling == "max" else F.avg_pool2d',
        'pool = F.avg_pool2d if pooling == "max" else F.max_pool2d',
    ),
    Mutant(
        "Adam clips to the wrong box", "engine/optimize.py",
        "self.image.clamp_(0, 1)", "self.image.clamp_(-1, 2)",
    ),
    Mutant(
        "luminance mode: the style's spread not matched", "engine/colors.py",
        "((style_y - s_mean) / s_std * c_std + c_mean)", "((style_y - s_mean) + c_mean)",
    ),
    Mutant(
        "histogram mode never applied", "engine/objective.py",
        'if settings.preserve_colors == "histogram":', 'if settings.preserve_colors == "hist":',
    ),
    Mutant(
        "style scale ignored", "engine/objective.py",
        "side = style_side(max(size), settings.style_scale)", "side = style_side(max(size), 1.0)",
    ),
    Mutant(
        "blend weights not normalised", "engine/losses.py",
        "g * (w / total)", "g * w",
    ),
    Mutant(
        "style loss summed over layers, not averaged", "engine/objective.py",
        "settings.style_weight * settings.strength / len(self.style_targets)",
        "settings.style_weight * settings.strength",
    ),
    Mutant(
        "content loss summed over layers, not averaged", "engine/objective.py",
        "self.content_weight = settings.content_weight / len(self.content_targets)",
        "self.content_weight = settings.content_weight",
    ),
    Mutant(
        "content targets taken from the first style", "engine/objective.py",
        "content_feats = self.features(content, self.content_layers)",
        "content_feats = self.features(styles[0], self.content_layers)",
    ),
    Mutant(
        "upsampled start not clipped to [0, 1]", "engine/pyramid.py",
        "return larger.clamp(0, 1)", "return larger",
    ),
    Mutant(
        "uniform noise instead of normal", "engine/optimize.py",
        "torch.randn(content.shape, generator=generator)",
        "torch.rand(content.shape, generator=generator)",
    ),
    Mutant(
        "noise ignores the seed", "engine/optimize.py",
        "torch.Generator().manual_seed(seed)", "torch.Generator().manual_seed(0)",
    ),
    Mutant(
        "total variation: one direction twice", "engine/losses.py",
        "return dy + dx", "return dy + dy",
    ),
    Mutant(
        "--style-scale dropped by the CLI", "engine/cli.py",
        "style_scale=args.style_scale,", "style_scale=1.0,",
    ),
)  # fmt: skip


def run_tests(tree: Path, files: tuple[str, ...], timeout: float) -> tuple[str | None, float]:
    """The first failing test's id (None if all pass) and the seconds the run took."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE",
             "--no-header", *files],
            cwd=tree, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "(timed out)", time.perf_counter() - started
    seconds = time.perf_counter() - started
    if result.returncode == 0:
        return None, seconds
    found = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - |$)", result.stdout, re.MULTILINE)
    return (found.group(1) if found else f"(pytest exit {result.returncode})"), seconds


def copy_tree(destination: Path) -> None:
    for name in ("engine", "tests", "benchmarks", "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, destination / name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", nargs="+", default=[], help="only mutants whose name has a word")
    parser.add_argument("--files", nargs="+", default=list(TEST_FILES), help="test files")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.k or any(w in m.name for w in args.k)]
    if args.list:
        for m in chosen:
            print(f"{m.path}: {m.name}\n    - {m.before}\n    + {m.after}")
        return 0
    files = tuple(args.files)
    survived = stale = 0
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        failing, seconds = run_tests(tree, files, args.timeout)
        if failing is not None:
            print(f"The tests fail without any mutant ({failing}); fix that first.")
            return 2
        print(f"Unmutated: all pass ({seconds:.0f} s). {len(chosen)} mutants.\n")
        print("| # | mutant | file | killed by | s |")
        print("|---|---|---|---|---|")
        for number, mutant in enumerate(chosen, start=1):
            target = tree / mutant.path
            original = target.read_text()
            if original.count(mutant.before) != 1:
                stale += 1
                verdict, seconds = "STALE: the line is not in the file exactly once", 0.0
            else:
                target.write_text(original.replace(mutant.before, mutant.after))
                try:
                    killer, seconds = run_tests(tree, files, args.timeout)
                finally:
                    target.write_text(original)
                if killer is None:
                    survived += 1
                verdict = "**SURVIVED**" if killer is None else f"`{killer}`"
            print(
                f"| {number} | {mutant.name} | `{mutant.path}` | {verdict} | {seconds:.0f} |",
                flush=True,
            )
    killed = len(chosen) - survived - stale
    print(f"\n{killed} of {len(chosen)} killed, {survived} survived, {stale} stale.")
    return 1 if survived or stale else 0


if __name__ == "__main__":
    sys.exit(main())
