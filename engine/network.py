"""VGG19 as a multi-layer encoder, and where its weights come from.

Only the convolutions up to conv5_1 are kept: style transfer never evaluates anything
beyond relu5_1, and the dropped layers (and the classifier) are most of VGG19's memory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.devices import resolve_device
from engine.errors import WeightsError
from engine.layers import DEEPEST_ALLOWED, LAYER_INDEX, VGG19_LAYERS

# torchvision's VGG19_Weights.IMAGENET1K_V1: same URL and file name, so a file downloaded
# by torchvision itself is found in the same cache and the other way round.
IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
IMAGENET_FILE = "vgg19-dcbb9e9d.pth"
IMAGENET_SHA256_PREFIX = "dcbb9e9d"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT_S = 20.0

# (out, in) channels of each convolution up to DEEPEST_ALLOWED, keyed by its index in
# torchvision's vgg19().features, which is how state dicts name them.
_ENCODER_LAYERS = VGG19_LAYERS[: LAYER_INDEX[DEEPEST_ALLOWED] + 1]
CONV_INDICES: tuple[int, ...] = tuple(
    i for i, name in enumerate(_ENCODER_LAYERS) if name.startswith("conv")
)


def _conv_channels() -> list[tuple[int, int]]:
    channels, width = [], 3
    for name in _ENCODER_LAYERS:
        if name.startswith("conv"):
            block = int(name[4])
            out = min(64 * 2 ** (block - 1), 512)
            channels.append((out, width))
            width = out
    return channels


CONV_CHANNELS = _conv_channels()


class VGGEncoder(nn.Module):
    """Runs VGG19 once and returns the named layers' outputs.

    The weights are frozen; gradients flow only to the input image. Pooling is chosen per
    call because it has no weights: one loaded network serves max- and average-pooling jobs.
    """

    # Buffers, registered in __init__: declared here because nn.Module's __getattr__, which
    # finds them, can only say "a tensor or a module".
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, convs: list[nn.Conv2d]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def forward(
        self, image: torch.Tensor, layers: Collection[str], pooling: str = "max"
    ) -> dict[str, torch.Tensor]:
        """``image`` is RGB in [0, 1], shape (N, 3, H, W). Stops at the deepest asked layer."""
        wanted = set(layers)
        deepest = max(LAYER_INDEX[name] for name in wanted)
        pool = F.max_pool2d if pooling == "max" else F.avg_pool2d
        x = (image - self.mean) / self.std
        outputs: dict[str, torch.Tensor] = {}
        conv = iter(self.convs)
        for name in VGG19_LAYERS[: deepest + 1]:
            kind = name[:4]
            if kind == "conv":
                x = next(conv)(x)
            elif kind == "relu":
                x = F.relu(x)
            else:
                x = pool(x, kernel_size=2, stride=2)
            if name in wanted:
                outputs[name] = x
        return outputs


def load_network(weights: str = "imagenet", device: str | torch.device = "auto") -> VGGEncoder:
    """Builds the frozen encoder from ``imagenet``, ``random[:SEED]`` or a ``.pth`` path."""
    target = resolve_device(device) if isinstance(device, str) else device
    if weights == "imagenet":
        state = _load_state_file(_imagenet_file())
    elif weights == "random" or weights.startswith("random:"):
        seed = int(weights.split(":", 1)[1]) if ":" in weights else 0
        state = random_state(seed)
    else:
        state = _load_state_file(Path(weights).expanduser())
    encoder = VGGEncoder(_build_convs(state))
    return encoder.to(target)


def random_state(seed: int) -> dict[str, torch.Tensor]:
    """Untrained weights, initialised as torchvision initialises VGG, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for index, (out, inp) in zip(CONV_INDICES, CONV_CHANNELS):
        weight = torch.empty(out, inp, 3, 3)
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=generator)
        state[f"{index}.weight"] = weight
        state[f"{index}.bias"] = torch.zeros(out)
    return state


def imagenet_cache_path() -> Path:
    """Where torch keeps downloads: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def _imagenet_file() -> Path:
    path = imagenet_cache_path()
    if path.is_file():
        return path
    try:
        _download(IMAGENET_URL, path)
    except Exception as error:  # any network or disk failure gets the same way out
        raise WeightsError(
            f"The VGG19 ImageNet weights are not on this machine and could not be downloaded "
            f"({_reason(error)}). Download {IMAGENET_URL} and save it as {path}, "
            "or pass the file's path with --weights /path/to/vgg19.pth (STYLIZE_WEIGHTS)."
        ) from None
    return path


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error
    return str(reason).strip() or type(error).__name__


def _download(url: str, path: Path) -> None:
    """Downloads to a temporary file, checks the hash, then moves it in place atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp,
    ):
        try:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                tmp.write(chunk)
        except BaseException:
            os.unlink(tmp.name)
            raise
    if not digest.hexdigest().startswith(IMAGENET_SHA256_PREFIX):
        os.unlink(tmp.name)
        raise OSError("the download was corrupt (hash mismatch)")
    os.replace(tmp.name, path)


def _load_state_file(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(
            f"Weights file {path} does not exist. Use imagenet, random, random:SEED "
            "or the path of a VGG19 .pth file."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path} is not a readable PyTorch weights file ({error}).") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path} does not hold a state dict.")
    # A full torchvision VGG19 names the convolutions "features.N"; a features-only one "N".
    features = {
        k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")
    }
    return features


def _build_convs(state: Mapping[str, torch.Tensor]) -> list[nn.Conv2d]:
    convs = []
    for index, (out, inp) in zip(CONV_INDICES, CONV_CHANNELS):
        weight, bias = state.get(f"{index}.weight"), state.get(f"{index}.bias")
        if weight is None or bias is None or tuple(weight.shape) != (out, inp, 3, 3):
            raise WeightsError(
                "These weights are not VGG19's: the convolution "
                f"{VGG19_LAYERS[index]} (features.{index}) is missing or has the wrong shape."
            )
        conv = nn.Conv2d(inp, out, kernel_size=3, padding=1)
        assert conv.bias is not None  # Conv2d has a bias unless built with bias=False
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        convs.append(conv)
    return convs
