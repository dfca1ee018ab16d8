"""Engine benchmark: seconds per step, peak memory and overhead over bare VGG19.

For each size and optimiser it times ``stylize`` per step, and in the same run the bare
network forward + backward (to the input) at the same size: the ratio is the engine's own
overhead (losses, optimiser, clamping), which should be close to 1.0. The objective alone
(``engine.objective.GatysObjective``, forward + backward, no optimiser) is timed too, which
splits that overhead between the losses and the optimiser. Each measurement runs
in its own process so that peak memory (CUDA allocator peak, or the CPU's peak RSS) belongs
to that case alone. Weights are random: timing does not depend on their values.

    python benchmarks/engine_bench.py [--device auto] [--sizes 128 256 512] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def vgg_flops(width: int, height: int) -> float:
    """Forward FLOPs of VGG19 up to relu5_1 (conv multiply-adds × 2)."""
    from engine.layers import VGG19_LAYERS
    from engine.network import CONV_CHANNELS, CONV_INDICES

    flops, w, h = 0.0, width, height
    convs = iter(CONV_CHANNELS)
    for name in VGG19_LAYERS[: CONV_INDICES[-1] + 1]:
        if name.startswith("conv"):
            out, inp = next(convs)
            flops += 2 * out * inp * 9 * w * h
        elif name.startswith("pool"):
            w, h = w // 2, h // 2
    return flops


def _sync(device) -> None:  # type: ignore[no-untyped-def]
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(size: int, optimizer: str, steps: int, device_name: str) -> dict:
    """One case, in this process: stylize's time per step and the bare network's."""
    import torch
    from PIL import Image

    from engine.network import load_network
    from engine.objective import GatysObjective, prepare_inputs
    from engine.settings import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, StylizeSettings
    from engine.transfer import prepare_network, stylize

    net = load_network("random:0", device_name)
    device = net.device
    content = Image.effect_noise((size, size), 60).convert("RGB")
    style = Image.effect_noise((size, size), 90).convert("RGB")
    settings = StylizeSettings(
        size=size, steps=steps, optimizer=optimizer, seed=0, device=device_name
    )
    stylize(content, [style], settings.replace(steps=2), network=net)  # warm-up (cudnn search)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    stylize(content, [style], settings, network=net)
    _sync(device)
    per_step = (time.perf_counter() - t0) / steps

    # The floor: the same network forward and backward to the input, nothing else.
    layers = DEFAULT_CONTENT_LAYERS + DEFAULT_STYLE_LAYERS
    x = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    if device.type == "cuda":
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    for i in range(steps + 2):
        if i == 2:
            _sync(device)
            t0 = time.perf_counter()
        feats = net(x, layers)
        torch.autograd.grad(sum(f.float().square().mean() for f in feats.values()), x)
    _sync(device)
    bare = (time.perf_counter() - t0) / steps

    # The objective alone: the network plus the losses, forward and backward, no optimiser.
    prepare_network(net, settings.precision)
    inputs = prepare_inputs(content, [style], settings, (size, size), device)
    objective = GatysObjective(net, settings, inputs.content, inputs.styles)
    x = inputs.content.clone().requires_grad_(True)
    for i in range(steps + 2):
        if i == 2:
            _sync(device)
            t0 = time.perf_counter()
        torch.autograd.grad(sum(objective(x)), x)
    _sync(device)
    objective_s = (time.perf_counter() - t0) / steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # ru_maxrss is KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    flops = 2 * vgg_flops(size, size)  # forward + backward to the input
    return {
        "size": size,
        "optimizer": optimizer,
        "device": str(device),
        "s_per_step": per_step,
        "bare_s_per_step": bare,
        "objective_s_per_step": objective_s,
        "overhead": per_step / bare,
        "peak_mib": peak,
        "tflops": flops / per_step / 1e12,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--optimizers", nargs="+", default=["lbfgs", "adam"])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)  # size optimizer, in a child
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(int(args.case[0]), args.case[1], args.steps, args.device)))
        return

    import torch

    cuda = (args.device == "auto" and torch.cuda.is_available()) or args.device.startswith("cuda")
    sizes = args.sizes or ([128, 256, 512, 1024, 2048] if cuda else [128, 256, 512])
    rows = []
    for size in sizes:
        for optimizer in args.optimizers:
            out = subprocess.run(
                [sys.executable, __file__, "--case", str(size), optimizer,
                 "--steps", str(args.steps), "--device", args.device],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(_row(rows[-1]), flush=True)
    machine = (
        torch.cuda.get_device_name()
        if cuda
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"\n{machine}; torch {torch.__version__}; {args.steps} steps per case")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "torch": torch.__version__, "rows": rows}, indent=2)
        )


def _row(r: dict) -> str:
    return (
        f"| {r['size']} | {r['optimizer']} | {r['s_per_step'] * 1000:.1f} ms | "
        f"{r['objective_s_per_step'] * 1000:.1f} ms | {r['bare_s_per_step'] * 1000:.1f} ms | "
        f"{r['overhead']:.2f} | {r['peak_mib']:.0f} MiB | {r['tflops']:.2f} |"
    )


if __name__ == "__main__":
    main()
