"""StylizeSettings: defaults, validation messages, round trips."""

from __future__ import annotations

import pytest

from engine.errors import SettingsError
from engine.settings import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, StylizeSettings


def test_defaults_are_the_documented_method() -> None:
    s = StylizeSettings()
    assert (s.size, s.steps, s.strength, s.optimizer, s.init) == (512, 500, 1.0, "lbfgs", "content")
    assert s.weights == "imagenet" and s.device == "auto"
    assert DEFAULT_CONTENT_LAYERS == ("relu4_2",)
    assert DEFAULT_STYLE_LAYERS == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"size": 8}, "size: must be a whole number of pixels from 16"),
        ({"size": 100_000}, "size"),
        ({"steps": 0}, "steps: must be a whole number from 1"),
        ({"strength": 0}, "strength: must be above 0"),
        ({"strength": -1}, "strength"),
        ({"style_weights": (1.0, -1.0)}, "style weights: must be zero or positive"),
        ({"style_weights": (0.0, 0.0)}, "at least one must be above zero"),
        ({"style_scale": 0.0}, "style scale"),
        ({"init": "random"}, "init: must be one of content, noise, style"),
        ({"optimizer": "sgd"}, "optimizer: must be one of lbfgs, adam"),
        ({"pooling": "min"}, "pooling"),
        ({"preserve_colors": "yes"}, "preserve colors"),
        ({"seed": -1}, "seed"),
        ({"device": "gpu"}, "device: must be auto, cpu, cuda, cuda:N or mps"),
        ({"weights": "random:abc"}, "random:SEED"),
        ({"weights": " "}, "weights"),
        ({"content_layers": ("conv6_1",)}, "unknown layer 'conv6_1'"),
        ({"style_layers": ("relu5_2",)}, "unknown layer 'relu5_2'"),
        ({"style_layers": ()}, "name at least one layer"),
        ({"content_weight": 0.0, "style_weight": 0.0}, "cannot both be zero"),
        ({"lbfgs_history": 0}, "L-BFGS history"),
        ({"preview_every": -1}, "preview every"),
    ],
)
def test_invalid_settings_say_what_is_wrong(changes: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        StylizeSettings(**changes)


def test_resolved_draws_a_seed_once_and_keeps_a_given_one() -> None:
    drawn = StylizeSettings().resolved()
    assert drawn.seed is not None and drawn.resolved() is drawn
    assert StylizeSettings(seed=7).resolved().seed == 7


def test_dict_round_trip_and_lists_become_tuples() -> None:
    s = StylizeSettings(style_weights=[1.0, 2.0], seed=3)  # type: ignore[arg-type]
    assert s.style_weights == (1.0, 2.0)
    assert StylizeSettings.from_dict(s.to_dict()) == s
    with pytest.raises(SettingsError, match="Unknown setting 'colour'"):
        StylizeSettings.from_dict({"colour": "red"})


def test_settings_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import engine, engine.settings, sys; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
