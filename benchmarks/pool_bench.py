"""Throughput of the engine pool, and how soon a warm pool reports a job's first progress.

    python benchmarks/pool_bench.py --size 128 --steps 50 --jobs 4 --workers 1 2

For each worker count it starts a pool, runs one warm-up job per worker, then submits
``--jobs`` jobs at once and times them to the last result: jobs per minute. It then times
submit → first ``JobProgress`` for single jobs on the idle, warm pool. Weights default to
``random:0``: the same arithmetic as ImageNet weights, without a download.
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

from PIL import Image

from engine.jobs import Done, Job, JobProgress
from engine.pool import EnginePool
from engine.settings import StylizeSettings


def picture(seed: int, size: tuple[int, int]) -> bytes:
    noise = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, noise).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Result:
    workers: int
    threads: int | None
    jobs: int
    seconds: float
    first_progress: list[float]

    @property
    def jobs_per_minute(self) -> float:
        return self.jobs / self.seconds * 60


async def first_progress(pool: EnginePool, job: Job) -> float:
    started = time.perf_counter()
    handle = pool.submit(job)
    async for event in handle:
        if isinstance(event, JobProgress):
            elapsed = time.perf_counter() - started
            handle.cancel()
            await handle.wait()
            return elapsed
    raise RuntimeError(f"the job ended without progress: {handle.result}")


async def measure(args: argparse.Namespace, workers: int) -> Result:
    content, style = picture(1, (160, 120)), picture(2, (128, 128))

    def job(seed: int) -> Job:
        settings = StylizeSettings(size=args.size, steps=args.steps, seed=seed)
        return Job(content, (style,), settings)

    async with EnginePool(
        workers=workers,
        device=args.device,
        weights=args.weights,
        threads=args.threads,
    ) as pool:
        await asyncio.gather(*(pool.submit(job(seed)).wait() for seed in range(workers)))
        started = time.perf_counter()
        finals = await asyncio.gather(*(pool.submit(job(s)).wait() for s in range(args.jobs)))
        seconds = time.perf_counter() - started
        if not all(isinstance(final, Done) for final in finals):
            raise RuntimeError(f"a job did not finish: {finals}")
        firsts = [await first_progress(pool, job(s)) for s in range(args.probes)]
    return Result(workers, args.threads, args.jobs, seconds, firsts)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--probes", type=int, default=5, help="submit → first progress runs")
    args = parser.parse_args()

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    print(f"{args.size} px, {args.steps} steps (L-BFGS), weights {args.weights}, "
          f"device {args.device}, {args.jobs} jobs at once after a warm-up\n")  # fmt: skip
    columns = "workers | threads each | jobs | wall s | jobs/min | s/job"
    print(f"| {columns} | submit→first progress, median (min–max) |")
    print("|---|---|---|---|---|---|---|")
    for workers in args.workers:
        r = await measure(args, workers)
        firsts = r.first_progress
        print(
            f"| {workers} | {r.threads or 'auto'} | {r.jobs} | {r.seconds:.1f} | "
            f"{r.jobs_per_minute:.2f} | {r.seconds / r.jobs:.1f} | "
            f"{statistics.median(firsts) * 1000:.0f} ms ({min(firsts) * 1000:.0f}–"
            f"{max(firsts) * 1000:.0f}) |",
            flush=True,
        )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    asyncio.run(main())
