"""The stylize command end to end, at 64 px with random weights."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from engine.cli import build_parser, main
from engine.settings import StylizeSettings
from tests.engine_fixtures import content_image, style_image


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    content, style = tmp_path / "content.jpg", tmp_path / "style.png"
    content_image().save(content)
    style_image().save(style)
    return content, style


def test_cli_writes_the_image_with_its_settings(inputs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "result.png"
    code = main([*map(str, inputs), "-o", str(out), "--size", "64", "--steps", "3",
                 "--weights", "random:0", "--device", "cpu", "--seed", "5"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr()
    assert f"Saved {out}" in printed.out and "seed 5" in printed.out and " s on cpu" in printed.out
    assert "step" in printed.err  # the tqdm bar
    with Image.open(out) as image:
        assert image.size == (64, 43)
        assert image.text["stylize:seed"] == "5"
        assert '"steps": 3' in image.text["stylize:settings"]


def test_cli_jpeg_output(inputs, tmp_path: Path) -> None:
    out = tmp_path / "result.jpg"
    assert main([*map(str, inputs), "-o", str(out), "--size", "48", "--steps", "1",
                 "--weights", "random:0", "--device", "cpu"]) == 0  # fmt: skip
    with Image.open(out) as image:
        assert image.format == "JPEG"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "5"], "size: must be"),
        (["--steps", "0"], "steps: must be"),
        (["--style-weights", "1", "2"], "one weight per style image"),
        (["--device", "gpu"], "device: must be"),
        (["--init", "zeros.png"], "Cannot read zeros.png"),
        (["--weights", "/nowhere/vgg.pth"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(
    inputs, tmp_path: Path, capsys, extra, message
) -> None:
    code = _exit_code([*map(str, inputs), "-o", str(tmp_path / "o.png"), "--device", "cpu", *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def _exit_code(argv: list[str]) -> int | str | None:
    """main()'s return value, or the code of the SystemExit that argparse raises."""
    try:
        return main(argv)
    except SystemExit as error:
        return error.code


# One value per flag, each different from the default, so a flag that went astray shows.
EVERY_FLAG: list[str] = [
    "--size", "40", "--steps", "2", "--strength", "1.5", "--style-weights", "3", "1",
    "--style-scale", "0.75", "--preserve-colors", "histogram", "--init", "style",
    "--optimizer", "adam", "--pooling", "avg", "--seed", "11", "--device", "cpu",
    "--weights", "random:3", "--precision", "fp32",
]  # fmt: skip
EVERY_SETTING = StylizeSettings(
    size=40, steps=2, strength=1.5, style_weights=(3.0, 1.0), style_scale=0.75,
    preserve_colors="histogram", init="style", optimizer="adam", pooling="avg", seed=11,
    device="cpu", weights="random:3", precision="fp32",
)  # fmt: skip


def test_every_flag_reaches_the_settings(inputs, tmp_path: Path) -> None:
    content, style = inputs
    out = tmp_path / "all.png"
    assert main([str(content), str(style), str(style), "-o", str(out), *EVERY_FLAG]) == 0
    with Image.open(out) as image:
        used = json.loads(image.text["stylize:settings"])
    assert used == EVERY_SETTING.to_dict()
    defaults = StylizeSettings().to_dict()
    flags = [arg[2:].replace("-", "_") for arg in EVERY_FLAG if arg.startswith("--")]
    assert [name for name in flags if used[name] == defaults[name]] == []
    # Every option of the command is in the table above.
    parsed = vars(build_parser().parse_args(["in.png", "style.png", "-o", "out.png"]))
    assert set(parsed) - {"content", "styles", "output"} == set(flags)


def test_every_flags_default_is_the_settings_default() -> None:
    # With no options given, argparse hands back each option's default.
    parsed = vars(build_parser().parse_args(["in.png", "style.png", "-o", "out.png"]))
    options = {name: value for name, value in parsed.items()
               if name not in ("content", "styles", "output")}  # fmt: skip
    defaults = StylizeSettings().to_dict()
    assert options.keys() <= defaults.keys()  # each option is a setting of the same name
    assert {name: defaults[name] for name in options} == options


def test_without_a_seed_the_seed_used_is_printed_and_saved(inputs, tmp_path: Path, capsys) -> None:
    # Noise: the one start the seed decides, so another seed gives another picture.
    common = [*map(str, inputs), "--size", "32", "--steps", "1", "--init", "noise",
              "--weights", "random:0", "--device", "cpu"]  # fmt: skip
    drawn = tmp_path / "drawn.png"
    assert main([*common, "-o", str(drawn)]) == 0
    found = re.search(r", seed (\d+)\)", capsys.readouterr().out)
    assert found is not None
    seed = int(found.group(1))
    with Image.open(drawn) as image:
        assert image.text["stylize:seed"] == str(seed)
        assert json.loads(image.text["stylize:settings"])["seed"] == seed
    again, other = tmp_path / "again.png", tmp_path / "other.png"
    assert main([*common, "-o", str(again), "--seed", str(seed)]) == 0
    assert main([*common, "-o", str(other), "--seed", str(seed + 1)]) == 0
    assert again.read_bytes() == drawn.read_bytes()
    with Image.open(other) as changed, Image.open(drawn) as first:
        assert changed.tobytes() != first.tobytes()


def test_bad_inputs_are_user_errors(tmp_path: Path, capsys) -> None:
    text = tmp_path / "notes.png"
    text.write_text("hello")
    assert main([str(text), str(text), "-o", str(tmp_path / "o.png")]) == 2
    assert "notes.png" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.png"), str(text), "-o", str(tmp_path / "o.png")]) == 2
    assert "Cannot read" in capsys.readouterr().err
    assert main([str(text), str(text), "-o", str(tmp_path / "o.gif")]) == 2
    assert ".png, .jpg" in capsys.readouterr().err


def test_imagenet_weights_offline_exit_2_with_instructions(inputs, tmp_path: Path) -> None:
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch-home")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", *map(str, inputs), "-o", str(tmp_path / "o.png"),
         "--weights", "imagenet", "--device", "cpu", "--size", "32", "--steps", "1"],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert result.returncode == 2
    assert "vgg19-dcbb9e9d.pth" in result.stderr and "--weights" in result.stderr
    assert str(tmp_path / "torch-home") in result.stderr
    assert "Traceback" not in result.stderr


def test_init_takes_an_image_to_continue_larger(inputs, tmp_path: Path) -> None:
    common = [*map(str, inputs), "--steps", "1", "--weights", "random:0", "--device", "cpu",
              "--seed", "3"]  # fmt: skip
    small, larger, fresh = tmp_path / "small.png", tmp_path / "larger.png", tmp_path / "fresh.png"
    assert main([*common, "-o", str(small), "--size", "32"]) == 0
    assert main([*common, "-o", str(larger), "--size", "64", "--init", str(small)]) == 0
    assert main([*common, "-o", str(fresh), "--size", "64"]) == 0
    with Image.open(larger) as continued, Image.open(fresh) as from_content:
        assert continued.size == from_content.size == (64, 43)
        assert continued.tobytes() != from_content.tobytes()
