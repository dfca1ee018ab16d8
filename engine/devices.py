"""Choosing the device, and the CUDA settings that make the optimisation fast."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from engine.errors import SettingsError


def cuda_device_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise SettingsError("device: mps was asked for, but this machine has no Apple GPU.")
        return torch.device("mps")
    if name.startswith("cuda"):
        count = cuda_device_count()
        if count == 0:
            raise SettingsError(
                f"device: {name} was asked for, but PyTorch sees no CUDA GPU here. "
                "Use --device cpu, or install a CUDA build of torch."
            )
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= count:
            raise SettingsError(f"device: {name} does not exist; this machine has {count} GPU(s).")
        return torch.device("cuda", index)
    raise SettingsError("device: must be auto, cpu, cuda, cuda:N or mps.")


def configure_cuda(precision: str) -> None:
    """Process-wide CUDA flags. Worker processes own their process, so setting them is safe.

    cudnn.benchmark picks the fastest convolution algorithm per input shape; the shapes of one
    job repeat for hundreds of steps, so the one-off search pays for itself at once.
    """
    torch.backends.cudnn.benchmark = True
    set_tf32(precision in ("auto", "tf32", "bf16"))


def _cudnn_conv() -> Any:
    """``torch.backends.cudnn.conv`` (torch ≥ 2.9), or None. Looked up rather than named:
    older torch, and this torch's type stubs, have no such attribute."""
    return getattr(torch.backends.cudnn, "conv", None)


def _has_fp32_precision_api() -> bool:
    # torch ≥ 2.9 has per-backend ``fp32_precision`` and refuses to mix it with the older
    # ``allow_tf32`` flags in one process, so only one of the two is ever used.
    conv = _cudnn_conv()
    return conv is not None and hasattr(conv, "fp32_precision")


def set_tf32(enabled: bool) -> None:
    """TF32 for convolutions and matrix products, through whichever API this torch has."""
    if _has_fp32_precision_api():
        precision = "tf32" if enabled else "ieee"
        _cudnn_conv().fp32_precision = precision
        torch.backends.cuda.matmul.fp32_precision = precision
    else:
        torch.backends.cudnn.allow_tf32 = enabled
        torch.backends.cuda.matmul.allow_tf32 = enabled


@contextlib.contextmanager
def exact_matmul() -> Iterator[None]:
    """fp32 matrix products at full precision inside, whatever ``set_tf32`` chose outside.

    For small products whose accuracy matters more than their speed: TF32 keeps 10 bits of
    mantissa, and L-BFGS's inner products of two million values must not lose that much.
    Only Python-side flags change, so entering and leaving costs no GPU sync.
    """
    matmul = torch.backends.cuda.matmul
    if _has_fp32_precision_api():
        saved_precision = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = saved_precision
    else:
        saved_allow = matmul.allow_tf32
        matmul.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32 = saved_allow


def effective_precision(precision: str, device: torch.device) -> str:
    """What ``auto`` means on a device: TF32 on CUDA, fp32 elsewhere. bf16 needs CUDA."""
    if device.type != "cuda":
        return "fp32"
    return "tf32" if precision == "auto" else precision
