"""GPU benchmark: the fast path against a naive baseline, precision parity, memory, throughput.

Everything in one run, on one device, so the ratios compare like with like:
1. the default job (L-BFGS, default settings) at --size px for --steps steps: optimisation
   wall time, and job time from a 12 MP phone JPEG to an encoded PNG, as a worker runs it;
2. the same job done naively, as the well-known PyTorch tutorial does it: the whole VGG19
   feature stack, fp32, NCHW, no cudnn.benchmark, style targets recomputed every step,
   torch.optim.LBFGS;
3. achieved TFLOP/s, against the card's dense TF32 and BF16 peaks;
4. the final loss of tf32 and bf16 runs against fp32, all evaluated in fp32;
5. peak memory at growing sizes, and the largest size that fits 24 GB and 80 GB;
6. jobs per minute through the worker pool with 1, 4 and 8 jobs submitted at once, with one
   worker and with two workers sharing the GPU;
7. the host's floor: the time per step at a tiny size, where the GPU has next to nothing to
   do, against the time per step at --size; operations dispatched per step. If the floor is
   close to the real step, the job is launch-bound and CUDA graphs would pay;
8. the ceiling of batching: the network's forward and backward per image at batch 1, 4 and
   8. If batch 8 is not clearly cheaper per image, batching jobs cannot raise throughput;
9. the L-BFGS history size: time and final fp32 loss for 8, 16 and 32 pairs;
10. CUDA graphs for the Adam path: a captured step replayed against the eager step.
Weights are random (this machine may be offline): the time of a step does not depend on them.

    python benchmarks/gpu_bench.py [--device cuda] [--size 512] [--steps 500] [--out DIR]
Runs on the CPU too, at small sizes, to check the script itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.decode_bench import photo_jpeg  # noqa: E402
from benchmarks.dispatch import ops_per_step  # noqa: E402
from benchmarks.engine_bench import vgg_flops  # noqa: E402
from engine.devices import set_tf32  # noqa: E402
from engine.images import encode_image, load_image  # noqa: E402
from engine.layers import LAYER_INDEX, VGG19_LAYERS  # noqa: E402
from engine.losses import gram_matrix  # noqa: E402
from engine.network import load_network, random_state  # noqa: E402
from engine.settings import StylizeSettings  # noqa: E402
from engine.transfer import decode_sides, evaluate_loss, stylize  # noqa: E402

# Dense (no sparsity) peaks, TFLOP/s, from NVIDIA's data sheets.
PEAKS = {
    "H100 SXM": {"tf32": 494.7, "bf16": 989.4},
    "H100 PCIe": {"tf32": 378.0, "bf16": 756.0},
    "H100 NVL": {"tf32": 417.5, "bf16": 835.0},
    "H200": {"tf32": 494.7, "bf16": 989.4},
}


def peaks_for(name: str) -> dict[str, float] | None:
    if "H200" in name:
        return PEAKS["H200"]
    if "H100" in name:
        for key in ("PCIe", "NVL"):
            if key in name:
                return PEAKS[f"H100 {key}"]
        return PEAKS["H100 SXM"]
    return None


def sample_images(size: int) -> tuple[Image.Image, Image.Image]:
    from engine.samples import make_content, make_style

    return make_content(size), make_style(size)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fast_job(net, content, style, settings: StylizeSettings) -> tuple[float, Image.Image]:  # type: ignore[no-untyped-def]
    sync(net.device)
    t0 = time.perf_counter()
    out = stylize(content, [style], settings, network=net)
    sync(net.device)
    return time.perf_counter() - t0, out


def job_with_io(net, content, style, settings: StylizeSettings) -> dict:  # type: ignore[no-untyped-def]
    """Job start to result as a worker runs it, from what members upload: a 12 MP phone JPEG
    and a 1600×1200 JPEG painting, decoded at the scale the job needs, and a PNG encoded."""
    blobs = [photo_jpeg(content, (4032, 3024)), photo_jpeg(style, (1600, 1200))]
    sides = decode_sides(settings)
    t0 = time.perf_counter()
    for blob in blobs:
        load_image(blob)
    full_decode = time.perf_counter() - t0
    sync(net.device)
    t0 = time.perf_counter()
    photo, painting = (load_image(b, fit=side) for b, side in zip(blobs, sides))
    decoded = time.perf_counter() - t0
    _, out = fast_job(net, photo, painting, settings)
    encode_image(out)
    row = {
        "job_with_io_s": time.perf_counter() - t0,
        "decode_s": decoded,
        "decode_full_size_s": full_decode,
    }
    print(f"job with decode+encode: {row}", flush=True)
    return row


def naive_job(
    content: Image.Image, style: Image.Image, size: int, steps: int, device: torch.device
) -> float:
    """The tutorial's way: whole feature stack, fp32 NCHW, targets recomputed every step."""
    torch.backends.cudnn.benchmark = False
    set_tf32(False)
    layers = torch.nn.Sequential()
    state = random_state(0)
    channels = 3
    for i, name in enumerate(VGG19_LAYERS):
        if name.startswith("conv"):
            conv = torch.nn.Conv2d(channels, min(64 * 2 ** (int(name[4]) - 1), 512), 3, padding=1)
            if f"{i}.weight" in state:  # conv5_2 and later keep their default random init
                conv.weight.data.copy_(state[f"{i}.weight"])
            channels = conv.out_channels
            layers.append(conv)
        elif name.startswith("relu"):
            layers.append(torch.nn.ReLU(inplace=False))
        else:
            layers.append(torch.nn.MaxPool2d(2, 2))
    layers = layers.to(device).eval().requires_grad_(False)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    style_ids = [LAYER_INDEX[n] for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")]
    content_id = LAYER_INDEX["relu4_2"]

    def tensor(image: Image.Image) -> torch.Tensor:
        data = torch.frombuffer(bytearray(image.resize((size, size)).tobytes()), dtype=torch.uint8)
        return (
            data.view(size, size, 3).permute(2, 0, 1)[None].float().div(255).contiguous().to(device)
        )

    def feats(x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - mean) / std
        for layer in layers:  # the whole stack, as the tutorial's model copy runs
            h = layer(h)
            out.append(h)
        return out

    c, s = tensor(content), tensor(style)
    content_target = feats(c)[content_id].detach()
    x = c.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=1, history_size=100)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        with torch.no_grad():
            style_feats = feats(s)  # recomputed every step
        f = feats(x)
        loss = F.mse_loss(f[content_id], content_target)
        for i in style_ids:
            loss = loss + 1e3 * F.mse_loss(gram_matrix(f[i]), gram_matrix(style_feats[i]))
        loss.backward()
        return loss

    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
    sync(device)
    elapsed = time.perf_counter() - t0
    torch.backends.cudnn.benchmark = True
    return elapsed


def memory_sweep(net, content, style, sizes: list[int], device: torch.device) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = []
    for size in sizes:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        settings = StylizeSettings(size=size, steps=20 * max(1, len(_scales(size))), seed=0)
        try:
            seconds, _ = fast_job(net, content, style, settings)
            peak = (
                torch.cuda.max_memory_allocated(device) / 2**30
                if device.type == "cuda"
                else float("nan")
            )
            rows.append(
                {"size": size, "peak_gib": peak, "seconds": seconds, "steps": settings.steps}
            )
        except torch.OutOfMemoryError:
            rows.append({"size": size, "peak_gib": None, "oom": True})
            torch.cuda.empty_cache()
        print(f"memory {rows[-1]}", flush=True)
    return rows


def _scales(size: int) -> list[int]:
    from engine.pyramid import pyramid_sizes

    return pyramid_sizes(size, StylizeSettings().min_scale)


def largest_fit(rows: list[dict], budget_gib: float) -> int | None:
    """Extrapolates peak memory linearly in pixels from the two largest measured sizes."""
    ok = [r for r in rows if r.get("peak_gib")]
    if len(ok) < 2:
        return None
    a, b = ok[-2], ok[-1]
    per_px = (b["peak_gib"] - a["peak_gib"]) / (b["size"] ** 2 - a["size"] ** 2)
    base = b["peak_gib"] - per_px * b["size"] ** 2
    return int(((budget_gib - base) / per_px) ** 0.5) if per_px > 0 else None


def per_step(net, content, style, settings: StylizeSettings, steps: tuple[int, int]) -> float:  # type: ignore[no-untyped-def]
    """Seconds per step from two step counts, so target passes and image I/O cancel out."""
    a, _ = fast_job(net, content, style, settings.replace(steps=steps[0]))
    b, _ = fast_job(net, content, style, settings.replace(steps=steps[1]))
    return (b - a) / (steps[1] - steps[0])


def host_floor(net, settings: StylizeSettings, tiny: int, step_s: float) -> dict:  # type: ignore[no-untyped-def]
    content, style = sample_images(tiny)
    rows = {}
    for optimizer in ("lbfgs", "adam"):
        s = settings.replace(size=tiny, optimizer=optimizer)
        fast_job(net, content, style, s.replace(steps=5))  # warm-up: cudnn autotuning
        floor = per_step(net, content, style, s, (20, 120))
        rows[optimizer] = {
            "floor_ms": floor * 1e3,
            "ops_per_step": ops_per_step(net, content, style, s),
        }
    rows["lbfgs"]["step_ms_at_size"] = step_s * 1e3
    rows["lbfgs"]["floor_over_step"] = floor_ratio = rows["lbfgs"]["floor_ms"] / (step_s * 1e3)
    print(f"host floor at {tiny}px: {rows}; floor/step {floor_ratio:.2f}", flush=True)
    return rows


def _forward_backward(net, x: torch.Tensor, layers: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    feats = net(x, layers)
    loss = sum(gram_matrix(f).square().sum() for f in feats.values())
    torch.autograd.grad(loss, x)


def batch_ceiling(net, size: int, batches: list[int], settings: StylizeSettings) -> list[dict]:  # type: ignore[no-untyped-def]
    """Forward and backward of the network alone, per image, at growing batch sizes."""
    device = net.device
    layers = tuple(dict.fromkeys(settings.style_layers + settings.content_layers))
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    set_tf32(device.type == "cuda")
    rows = []
    for batch in batches:
        x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
        x.requires_grad_(True)
        for _ in range(2):
            _forward_backward(net, x, layers)
        reps = 10 if device.type == "cuda" else 2
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            _forward_backward(net, x, layers)
        sync(device)
        per_image = (time.perf_counter() - t0) / reps / batch
        rows.append({"batch": batch, "ms_per_image": per_image * 1e3})
        print(f"batch {rows[-1]}", flush=True)
        del x
    for row in rows:
        row["vs_batch_1"] = row["ms_per_image"] / rows[0]["ms_per_image"]
    return rows


def adam_graph_experiment(net, content, style, settings: StylizeSettings, steps: int) -> dict:  # type: ignore[no-untyped-def]
    """CUDA graphs for the Adam path, as an experiment: one step (forward, backward, fused
    Adam, clip) captured once and replayed, against the same step run eagerly, both from the
    content image. The engine itself runs the eager loop; this says whether capturing pays.
    On a CPU only the eager half runs (to check the code)."""
    from engine.objective import GatysObjective, prepare_inputs
    from engine.pyramid import scaled_size
    from engine.transfer import prepare_network

    s = settings.replace(optimizer="adam").resolved()
    prepare_network(net, s.precision)
    inputs = prepare_inputs(content, [style], s, scaled_size(*content.size, s.size), net.device)
    objective = GatysObjective(net, s, inputs.content, inputs.styles)
    device = net.device
    cuda = device.type == "cuda"

    def setup() -> tuple[torch.Tensor, torch.optim.Optimizer]:
        x = inputs.content.clone().requires_grad_(True)
        return x, torch.optim.Adam([x], lr=s.learning_rate, fused=cuda, capturable=cuda)

    def body(x: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        sum(objective(x)).backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)

    def final_loss(x: torch.Tensor) -> float:
        with torch.no_grad():
            return float(sum(objective(x)).item())

    x, opt = setup()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        body(x, opt)
    sync(device)
    row: dict = {"eager_ms_per_step": (time.perf_counter() - t0) / steps * 1e3}
    row["eager_loss"] = final_loss(x)
    if not cuda:
        row["graph"] = "needs CUDA"
        print(f"adam graphs {row}", flush=True)
        return row
    try:
        x, opt = setup()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture: optimiser state, cudnn search
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                body(x, opt)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):  # records the step; runs nothing
            body(x, opt)
        # 3 warm-up steps ran; the timed replays make the rest, so both runs end equal.
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps - 3):
            graph.replay()
        sync(device)
        row["graph_ms_per_step"] = (time.perf_counter() - t0) / (steps - 3) * 1e3
        row["graph_speedup"] = row["eager_ms_per_step"] / row["graph_ms_per_step"]
        row["graph_loss"] = final_loss(x)
    except Exception as error:  # an experiment: report, never stop the benchmark
        row["graph_error"] = f"{type(error).__name__}: {error}"
    print(f"adam graphs {row}", flush=True)
    return row


def scored_job(net, content, style, settings: StylizeSettings) -> dict:  # type: ignore[no-untyped-def]
    """One timed job and its final loss, evaluated in fp32 so that variants compare."""
    seconds, image = fast_job(net, content, style, settings)
    loss = evaluate_loss(image, content, [style], settings, network=net)
    return {"seconds": seconds, "loss": loss}


def history_sweep(net, content, style, settings: StylizeSettings, sizes: list[int]) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = []
    for history in sizes:
        s = settings.replace(lbfgs_history=history)
        rows.append({"history": history, **scored_job(net, content, style, s)})
        print(f"history {rows[-1]}", flush=True)
    return rows


async def pool_throughput(
    size: int, steps: int, counts: list[int], device: str, workers: int
) -> list[dict]:
    from engine.jobs import Job
    from engine.pool import EnginePool

    content, style = sample_images(size)
    data = [encode_image(im).data for im in (content, style)]
    rows = []
    # Two workers on one GPU can overlap one job's host work with the other's kernels.
    async with EnginePool(workers=workers, device=device, weights="random:0") as pool:
        warm = pool.submit(Job(data[0], (data[1],), StylizeSettings(size=size, steps=5, seed=0)))
        await warm.wait()
        for count in counts:
            t0 = time.perf_counter()
            handles = [
                pool.submit(
                    Job(data[0], (data[1],), StylizeSettings(size=size, steps=steps, seed=i))
                )
                for i in range(count)
            ]
            results = await asyncio.gather(*(h.wait() for h in handles))
            elapsed = time.perf_counter() - t0
            done = sum(type(r).__name__ == "Done" for r in results)
            rows.append(
                {
                    "workers": workers,
                    "jobs": count,
                    "done": done,
                    "seconds": elapsed,
                    "jobs_per_min": done / elapsed * 60,
                }
            )
            print(f"pool {rows[-1]}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description="GPU benchmark of the engine")
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--memory-sizes", type=int, nargs="*", default=[512, 1024, 2048, 4096])
    p.add_argument("--pool-counts", type=int, nargs="*", default=[1, 4, 8])
    p.add_argument("--pool-workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--batches", type=int, nargs="*", default=[1, 4, 8])
    p.add_argument("--histories", type=int, nargs="*", default=[8, 16, 32])
    p.add_argument("--tiny", type=int, default=64, help="size for the host-floor measurement")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["naive", "parity", "memory", "pool", "host", "batch", "history", "graphs"],
    )
    p.add_argument("--out", type=Path, default=Path("."))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    net = load_network("random:0", args.device)
    device = net.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report: dict = {
        "device": name,
        "torch": torch.__version__,
        "size": args.size,
        "steps": args.steps,
    }
    print(f"device {name}, torch {torch.__version__}", flush=True)
    content, style = sample_images(args.size)
    settings = StylizeSettings(size=args.size, steps=args.steps, seed=0)

    fast_job(net, content, style, settings.replace(steps=10))  # warm-up: cudnn autotuning
    seconds, result = fast_job(net, content, style, settings)
    report["fast_s"] = seconds
    flops = 2 * vgg_flops(*result.size) * args.steps
    report["tflops"] = flops / seconds / 1e12
    peaks = peaks_for(name)
    if peaks:
        report["fraction_of_tf32_peak"] = report["tflops"] / peaks["tf32"]
        report["fraction_of_bf16_peak"] = report["tflops"] / peaks["bf16"]
    print(
        f"fast {args.size}px {args.steps} steps: {seconds:.3f} s, {report['tflops']:.1f} TFLOP/s",
        flush=True,
    )

    report.update(job_with_io(net, content, style, settings))

    if "host" not in args.skip:
        report["host"] = host_floor(net, settings, args.tiny, seconds / args.steps)

    if "batch" not in args.skip:
        report["batch"] = batch_ceiling(net, args.size, args.batches, settings)

    if "history" not in args.skip:
        report["history"] = history_sweep(net, content, style, settings, args.histories)

    if "graphs" not in args.skip:
        report["adam_graphs"] = adam_graph_experiment(net, content, style, settings, args.steps)

    if "naive" not in args.skip:
        report["naive_s"] = naive_job(content, style, args.size, args.steps, device)
        report["speedup"] = report["naive_s"] / seconds
        print(f"naive: {report['naive_s']:.3f} s, speed-up {report['speedup']:.1f}x", flush=True)

    if "parity" not in args.skip:
        losses = {}
        for precision in ("fp32", "tf32", "bf16") if device.type == "cuda" else ("fp32",):
            s = settings.replace(precision=precision)
            fast_job(net, content, style, s)  # warm-up: this precision's cudnn search
            losses[precision] = scored_job(net, content, style, s)
            print(f"parity {precision}: {losses[precision]}", flush=True)
        for v in losses.values():
            v["vs_fp32"] = v["loss"] / losses["fp32"]["loss"] - 1
        report["parity"] = losses

    if "memory" not in args.skip:
        big_content, big_style = sample_images(max(args.memory_sizes))
        rows = memory_sweep(net, big_content, big_style, args.memory_sizes, device)
        report["memory"] = rows
        report["largest_fit_24gib"] = largest_fit(rows, 24)
        report["largest_fit_80gib"] = largest_fit(rows, 80)

    if "pool" not in args.skip:
        report["pool"] = [
            row
            for workers in args.pool_workers
            for row in asyncio.run(
                pool_throughput(args.size, args.steps, args.pool_counts, args.device, workers)
            )
        ]

    (args.out / "gpu_bench.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
