"""The CUDA fast paths against the fp32 reference. Skipped on machines without CUDA."""

from __future__ import annotations

import pytest
import torch

from engine.devices import set_tf32
from engine.lbfgs import LBFGS
from engine.network import load_network
from engine.settings import StylizeSettings
from engine.transfer import evaluate_loss, stylize
from tests.engine_fixtures import content_image, style_image

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")


def _settings(**changes: object) -> StylizeSettings:
    base = {"size": 96, "steps": 40, "seed": 0, "weights": "random:0"}
    return StylizeSettings(**{**base, **changes})  # type: ignore[arg-type]


def test_channels_last_features_equal_nchw() -> None:
    net = load_network("random:0", "cuda")
    x = torch.rand(1, 3, 64, 64, device="cuda")
    set_tf32(False)
    with torch.no_grad():
        a = net(x, LAYERS)
        net.to(memory_format=torch.channels_last)
        b = net(x.contiguous(memory_format=torch.channels_last), LAYERS)
    for layer in LAYERS:
        torch.testing.assert_close(a[layer], b[layer], rtol=1e-4, atol=1e-4)


def test_lbfgs_on_cuda_matches_the_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, generator=g, dtype=torch.float64)
    q, b = (
        a @ a.T + torch.eye(16, dtype=torch.float64),
        torch.randn(16, generator=g, dtype=torch.float64),
    )
    results = []
    for device in ("cpu", "cuda"):
        x = torch.zeros(16, dtype=torch.float64, device=device, requires_grad=True)
        opt = LBFGS(x, history=4)
        qd, bd = q.to(device), b.to(device)
        for _ in range(20):
            (grad,) = torch.autograd.grad(0.5 * x @ qd @ x - bd @ x, x)
            opt.step(grad)
        results.append(x.detach().cpu())
    torch.testing.assert_close(results[0], results[1], rtol=1e-8, atol=1e-10)


def _final_fp32_loss(image, settings: StylizeSettings) -> float:  # type: ignore[no-untyped-def]
    net = load_network("random:0", "cuda")
    return evaluate_loss(image, content_image(), [style_image()], settings, network=net)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_fast_precisions_reach_the_fp32_loss(precision: str) -> None:
    reference = stylize(content_image(), [style_image()], _settings(precision="fp32"))
    fast = stylize(content_image(), [style_image()], _settings(precision=precision))
    ref_loss = _final_fp32_loss(reference, _settings())
    fast_loss = _final_fp32_loss(fast, _settings())
    assert fast_loss <= ref_loss * 1.05, (precision, fast_loss, ref_loss)


def test_cuda_result_is_close_to_the_cpu_result() -> None:
    cpu = stylize(content_image(), [style_image()], _settings(steps=5, device="cpu"))
    gpu = stylize(
        content_image(), [style_image()], _settings(steps=5, device="cuda", precision="fp32")
    )
    diff = [abs(a - b) for a, b in zip(cpu.tobytes(), gpu.tobytes())]
    assert sum(diff) / len(diff) < 2.0  # mean difference under 2 of 255 levels


def test_peak_memory_is_bounded_at_1024px() -> None:
    torch.cuda.reset_peak_memory_stats()
    stylize(content_image(), [style_image()], _settings(size=1024, steps=40, device="cuda"))
    assert torch.cuda.max_memory_allocated() < 6 * 2**30


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_step_loop_never_waits_for_the_gpu(optimizer: str) -> None:
    # Any GPU→CPU sync inside the loop raises under sync debug mode "error". The progress
    # callback turns it on after step 2 (cudnn's autotuning may sync on first use) and off
    # before the last step's result is copied back.
    steps = 12
    seen: list[int] = []

    def watch(progress) -> None:  # type: ignore[no-untyped-def]
        seen.append(progress.step)
        torch.cuda.set_sync_debug_mode("error" if 2 <= progress.step < steps else "default")

    try:
        stylize(
            content_image(),
            [style_image()],
            _settings(steps=steps, optimizer=optimizer, preview_every=0),
            on_progress=watch,
        )
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert seen == list(range(1, steps + 1))


def test_lbfgs_moves_are_the_same_with_tf32_on() -> None:
    # TF32 is on for the network; L-BFGS's own products must stay at full fp32 precision.
    g = torch.Generator(device="cuda").manual_seed(0)
    n = 1 << 20
    d = torch.rand(n, device="cuda", generator=g) * 10 + 0.1
    target = torch.rand(n, device="cuda", generator=g)
    results = []
    for tf32 in (False, True):
        set_tf32(tf32)
        x = torch.zeros(n, device="cuda", requires_grad=True)
        opt = LBFGS(x, history=8)
        for _ in range(30):
            (grad,) = torch.autograd.grad(0.5 * (d * (x - target) ** 2).sum(), x)
            opt.step(grad)
        results.append(x.detach())
    set_tf32(False)
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)
