"""The encoder: layer names, truncation, frozen weights, and where the weights come from."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from engine.errors import WeightsError
from engine.layers import LAYER_INDEX, VGG19_LAYERS
from engine.network import CONV_INDICES, IMAGENET_FILE, load_network, random_state


@pytest.fixture(scope="module")
def torchvision_features() -> nn.Sequential:
    # torchvision's own VGG19 feature extractor, built from its config "E".
    return make_layers(cfgs["E"], batch_norm=False)


def test_layer_names_match_torchvision_modules(torchvision_features: nn.Sequential) -> None:
    assert len(VGG19_LAYERS) == len(torchvision_features)
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, module in zip(VGG19_LAYERS, torchvision_features):
        assert isinstance(module, kinds[name[:4]]), name
    assert LAYER_INDEX["conv4_2"] == 21
    assert LAYER_INDEX["relu5_1"] == 29


@pytest.mark.parametrize("layer", ["conv1_1", "relu2_1", "conv4_2", "relu4_2", "relu5_1"])
def test_named_outputs_equal_torchvision_prefix(
    torchvision_features: nn.Sequential, layer: str
) -> None:
    state = random_state(3)
    torchvision_features.load_state_dict(state, strict=False)
    encoder = load_network("random:3", "cpu")
    image = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    normalised = (image - encoder.mean) / encoder.std
    with torch.no_grad():
        expected = torchvision_features[: LAYER_INDEX[layer] + 1](normalised)
        got = encoder(image, [layer])[layer]
    torch.testing.assert_close(got, expected)


def test_encoder_stops_at_relu5_1_and_is_frozen() -> None:
    encoder = load_network("random:0", "cpu")
    assert len(encoder.convs) == 13  # conv1_1 … conv5_1: nothing deeper exists
    assert all(not p.requires_grad for p in encoder.parameters())
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    out = encoder(image, ["relu5_1"])["relu5_1"]
    out.sum().backward()
    assert image.grad is not None
    assert all(p.grad is None for p in encoder.parameters())


def test_only_asked_layers_are_computed() -> None:
    encoder = load_network("random:0", "cpu")
    called: list[int] = []
    for i, conv in enumerate(encoder.convs):
        conv.register_forward_hook(lambda *_, i=i: called.append(i))
    encoder(torch.rand(1, 3, 32, 32), ["relu2_1"])
    assert called == [0, 1, 2]  # conv1_1, conv1_2, conv2_1


def test_average_pooling_changes_deep_features_only() -> None:
    encoder = load_network("random:0", "cpu")
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = encoder(image, ["relu1_1", "relu3_1"], "max")
        b = encoder(image, ["relu1_1", "relu3_1"], "avg")
    assert torch.equal(a["relu1_1"], b["relu1_1"])
    assert not torch.allclose(a["relu3_1"], b["relu3_1"])


def test_random_weights_are_seeded() -> None:
    a, b, c = random_state(1), random_state(1), random_state(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


@pytest.mark.parametrize("prefix", ["features.", ""])
def test_local_pth_full_or_features_only(tmp_path: Path, prefix: str) -> None:
    state = {f"{prefix}{k}": v for k, v in random_state(5).items()}
    if prefix:  # a full torchvision state dict also carries the classifier
        state["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    encoder = load_network(str(path), "cpu")
    torch.testing.assert_close(encoder.convs[0].weight, random_state(5)["0.weight"])


def test_wrong_weights_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"0.weight": torch.zeros(8, 3, 3, 3)}, bad)
    with pytest.raises(WeightsError, match="not VGG19's"):
        load_network(str(bad), "cpu")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable"):
        load_network(str(junk), "cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        load_network(str(tmp_path / "missing.pth"), "cpu")


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path: Path) -> None:
    # A file already in $TORCH_HOME/hub/checkpoints is used without any download.
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = {f"features.{k}": v for k, v in random_state(7).items()}
    torch.save(state, checkpoints / IMAGENET_FILE)
    code = (
        "from engine.network import load_network; import torch;"
        "from engine.network import random_state;"
        "e = load_network('imagenet', 'cpu');"
        "assert torch.equal(e.convs[0].weight, random_state(7)['0.weight']); print('ok')"
    )
    env = {**os.environ, "TORCH_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_imagenet_offline_fails_fast_with_instructions(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # Point the download at a closed local port: the same failure as a machine with no network.
    monkeypatch.setattr("engine.network.IMAGENET_URL", "http://127.0.0.1:9/vgg19.pth")
    started = time.monotonic()
    with pytest.raises(WeightsError) as info:
        load_network("imagenet", "cpu")
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / IMAGENET_FILE) in message
    assert "--weights" in message
    assert not (tmp_path / "hub" / "checkpoints" / IMAGENET_FILE).exists()
    assert CONV_INDICES[0] == 0


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_asking_for_a_missing_gpu_is_a_clear_error() -> None:
    from engine.devices import resolve_device
    from engine.errors import SettingsError

    assert resolve_device("auto").type in ("cpu", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(SettingsError, match=r"sees no CUDA GPU here\. Use --device cpu"):
        resolve_device("cuda:1")
    with pytest.raises(SettingsError, match="device: must be"):
        resolve_device("tpu")


def test_exact_matmul_turns_tf32_off_inside_and_restores_it() -> None:
    from engine.devices import exact_matmul, set_tf32

    def matmul_tf32() -> bool:
        matmul = torch.backends.cuda.matmul
        if hasattr(torch.backends.cudnn, "conv"):  # the API this torch has, as set_tf32 uses
            return matmul.fp32_precision == "tf32"
        return bool(matmul.allow_tf32)

    try:
        set_tf32(True)
        with exact_matmul():
            assert not matmul_tf32()
        assert matmul_tf32()
        with pytest.raises(RuntimeError), exact_matmul():
            raise RuntimeError("restored even when the body fails")
        assert matmul_tf32()
    finally:
        set_tf32(False)
