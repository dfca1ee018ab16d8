"""The local and Ray backends side by side, in one run: throughput, per-job overhead, latency.

    python benchmarks/backend_bench.py --size 128 --steps 50 --jobs 4 --workers 1 2

For each backend (``local``: spawned worker processes; ``ray``: actors in a Ray session that
this script starts on this machine with ``ray.init(num_cpus=CPUS)``) and each worker count, it
starts the backend with one torch thread per worker, runs one warm-up job per worker, then
submits ``--jobs`` jobs at once and times them to the last result: jobs per minute.

Then, with one worker, ``--probes`` jobs one after another, each timed from submit to
* the first ``JobProgress`` (how soon a user sees the job move), and
* its ``Done``, less the time the job body itself reported (``JobStats.seconds``): what the
  backend adds per job (dispatch, moving the images and events, the result's way back).

Weights default to ``random:0``: the same arithmetic as ImageNet weights, without a download.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image

from engine.backend import Backend
from engine.jobs import Done, Job, JobProgress
from engine.pool import EnginePool
from engine.settings import StylizeSettings


def picture(seed: int, size: tuple[int, int]) -> bytes:
    noise = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, noise).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Throughput:
    kind: str
    workers: int
    jobs: int
    seconds: float

    @property
    def jobs_per_minute(self) -> float:
        return self.jobs / self.seconds * 60


@dataclass(frozen=True)
class Probe:
    first_progress: float
    overhead: float
    """Submit → Done, less the job body's own time."""
    total: float


def make(kind: str, workers: int, args: argparse.Namespace) -> Backend:
    common: dict[str, Any] = {
        "workers": workers,
        "device": "cpu",
        "weights": args.weights,
        "threads": 1,
    }
    if kind == "local":
        return EnginePool(**common)
    from engine.ray_backend import RayBackend

    return RayBackend(**common)


class Jobs:
    def __init__(self, args: argparse.Namespace) -> None:
        self.content, self.style = picture(1, (160, 120)), picture(2, (128, 128))
        self.args = args

    def __call__(self, seed: int) -> Job:
        settings = StylizeSettings(size=self.args.size, steps=self.args.steps, seed=seed)
        return Job(self.content, (self.style,), settings)


async def throughput(kind: str, workers: int, args: argparse.Namespace) -> Throughput:
    job = Jobs(args)
    backend = make(kind, workers, args)
    await backend.start()
    try:
        await asyncio.gather(*(backend.submit(job(seed)).wait() for seed in range(workers)))
        started = time.perf_counter()
        finals = await asyncio.gather(*(backend.submit(job(s)).wait() for s in range(args.jobs)))
        seconds = time.perf_counter() - started
    finally:
        await backend.close()
    if not all(isinstance(final, Done) for final in finals):
        raise RuntimeError(f"a job did not finish: {finals}")
    return Throughput(kind, workers, args.jobs, seconds)


async def probes(kind: str, args: argparse.Namespace) -> list[Probe]:
    job = Jobs(args)
    backend = make(kind, 1, args)
    await backend.start()
    found = []
    try:
        await backend.submit(job(0)).wait()  # warm-up
        for seed in range(args.probes):
            started = time.perf_counter()
            first = None
            handle = backend.submit(job(seed))
            async for event in handle:
                if isinstance(event, JobProgress) and first is None:
                    first = time.perf_counter() - started
            total = time.perf_counter() - started
            final = await handle.wait()
            if not isinstance(final, Done) or first is None:
                raise RuntimeError(f"the probe did not finish: {final}")
            found.append(Probe(first, total - final.stats.seconds, total))
    finally:
        await backend.close()
    return found


def ms(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1000:.0f} ms "
        f"({min(values) * 1000:.0f}–{max(values) * 1000:.0f})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["local", "ray"])
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--probes", type=int, default=3, help="sequential jobs per backend")
    parser.add_argument("--cpus", type=int, default=2, help="ray.init(num_cpus=...)")
    args = parser.parse_args()

    if "ray" in args.backends:
        import ray

        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        print(f"ray {ray.__version__}, ray.init(num_cpus={args.cpus})")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    print(f"{args.size} px, {args.steps} steps (L-BFGS), weights {args.weights}, CPU, "
          f"1 torch thread per worker, {args.jobs} jobs at once after a warm-up\n")  # fmt: skip

    print("| backend | workers | jobs | wall s | jobs/min | s/job |")
    print("|---|---|---|---|---|---|")
    results: dict[tuple[str, int], Throughput] = {}
    for kind in args.backends:
        for workers in args.workers:
            r = await throughput(kind, workers, args)
            results[(kind, workers)] = r
            print(f"| {kind} | {workers} | {r.jobs} | {r.seconds:.1f} | "
                  f"{r.jobs_per_minute:.2f} | {r.seconds / r.jobs:.1f} |", flush=True)  # fmt: skip

    print()
    for kind in args.backends:
        if (kind, 1) in results and (kind, 2) in results:
            gain = results[(kind, 2)].jobs_per_minute / results[(kind, 1)].jobs_per_minute
            print(f"{kind}: 2 workers / 1 worker = {gain:.2f}×")
    if "local" in args.backends and "ray" in args.backends:
        for workers in args.workers:
            local, on_ray = results[("local", workers)], results[("ray", workers)]
            cost = local.jobs_per_minute / on_ray.jobs_per_minute - 1
            print(f"{workers} worker(s): ray's time per job vs local: {cost * 100:+.1f}%")

    print("\n| backend | submit → first progress, median (min–max) | "
          "per-job overhead (submit → Done − job body) | submit → Done |")  # fmt: skip
    print("|---|---|---|---|")
    for kind in args.backends:
        found = await probes(kind, args)
        print(f"| {kind} | {ms([p.first_progress for p in found])} | "
              f"{ms([p.overhead for p in found])} | {ms([p.total for p in found])} |",
              flush=True)  # fmt: skip
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    asyncio.run(main())
