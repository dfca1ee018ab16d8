"""The job journal's cost: the write on the /stylize command path, and recovery at start-up.

    python benchmarks/journal_bench.py --jobs 300 --recover 100

1. **Command path.** As the cog does before it tells the user the job is queued: the input
   files are written and fsynced on the journal's thread while both uploads are decoded and
   checked, then the row is committed (``synchronous=FULL``). The journal's cost is what the
   command then still waits for: p50 and p99 over ``--command-jobs`` jobs, for photo-like
   JPEGs. For comparison, ``Journal.add`` writing the files itself, over ``--jobs`` jobs, with
   and without the fsyncs, while a ticker measures how long the event loop was held up.
2. **Recovery.** A journal holding ``--recover`` unfinished jobs is closed and reopened, then
   everything the bot does before its first status edit is timed: open (integrity check and
   migrations), list the unfinished jobs, read each job's inputs, rebuild its engine ``Job``
   and queue it in the runner (over a stand-in pool that accepts everything). The status
   edits that follow go out on the network, throttled, and are not part of it.

Runs in a temporary folder on the current directory's disk (the journal's disk matters: it
fsyncs), or ``--dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.decode_bench import photo_jpeg
from bot import intake
from bot.jobs.runner import JobRunner
from bot.journal import Conversation, Journal, NewJob
from engine.jobs import Cancelled, Job, new_job_id
from engine.samples import make_content
from engine.settings import StylizeSettings

MB = 1024 * 1024
SIZES = {
    "small (200 KB + 100 KB)": (200 * 1024, 100 * 1024),
    "large (4 MB + 2 MB)": (4 * MB, 2 * MB),
}


def conversation(user_id: int) -> Conversation:
    return Conversation(
        user_id=user_id,
        guild_id=1,
        channel_id=2,
        application_id=3,
        interaction_id=4,
        interaction_token="t" * 200,
        token_expires_at=time.time() + 840,
        upload_limit=10 * MB,
    )


def new_job(content_bytes: int, style_bytes: int, user_id: int) -> NewJob:
    settings = StylizeSettings(size=512, steps=500).resolved()
    assert settings.seed is not None
    return NewJob(
        id=new_job_id(),
        conversation=conversation(user_id),
        settings=settings.to_dict(),
        seed=settings.seed,
        content=os.urandom(content_bytes),
        styles=(os.urandom(style_bytes),),
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def loop_lag(stop: asyncio.Event, lags: list[float], every: float = 0.001) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(every)
        lags.append(loop.time() - before - every)


async def idle_lag(seconds: float) -> None:
    """The event loop's hold-ups with nothing else in the process: the machine's own noise."""
    stop, lags = asyncio.Event(), []
    ticker = asyncio.create_task(loop_lag(stop, lags))
    await asyncio.sleep(seconds)
    stop.set()
    await ticker
    print(f"idle event loop, {seconds:g} s: held up {lag_summary(lags)}")


async def journal_add(folder: Path, jobs: int, *, sync_files: bool) -> None:
    """``Journal.add`` with the files, one job after another."""
    journal = await Journal.open(folder / f"write-{sync_files}", sync_files=sync_files)
    how = "files fsynced" if sync_files else "files not fsynced (row only)"
    try:
        for label, (content_bytes, style_bytes) in SIZES.items():
            prepared = [new_job(content_bytes, style_bytes, n % 20) for n in range(jobs)]
            stop, lags = asyncio.Event(), []
            ticker = asyncio.create_task(loop_lag(stop, lags))
            times = []
            for job in prepared:
                began = time.perf_counter()
                await journal.add(job)
                times.append(time.perf_counter() - began)
            stop.set()
            await ticker
            print(
                f"journal.add with the files, {how}, {label}, {jobs} jobs: "
                f"{summary(times)}; event loop held up: {lag_summary(lags)}"
            )
    finally:
        await journal.close()


async def command_path(folder: Path, jobs: int) -> None:
    """As the cog does it: the inputs are staged (written and fsynced) while both uploads are
    decoded and checked (``bot.intake.inspect``), then the row is added. The journal's cost on
    the command path is what the command waits for after the checks."""
    journal = await Journal.open(folder / "command")
    scene = make_content(400)
    uploads = {
        "phone photo 4032×3024 + painting 1600×1200": (
            photo_jpeg(scene, (4032, 3024)),
            photo_jpeg(scene, (1600, 1200)),
        ),
        "photo 1600×1200 + painting 800×600": (
            photo_jpeg(scene, (1600, 1200)),
            photo_jpeg(scene, (800, 600)),
        ),
    }
    try:
        for label, (content, style) in uploads.items():
            waits, stages, decodes = [], [], []
            for n in range(jobs):
                job = NewJob(new_job_id(), conversation(n % 20), {}, n, content, (style,))
                began = time.perf_counter()
                staged = asyncio.create_task(
                    _timed(journal.stage_inputs(job.id, content, (style,)))
                )
                await intake.inspect("photo (content)", content, 40_000_000)
                await intake.inspect("style image", style, 40_000_000)
                checked = time.perf_counter()
                stages.append(await staged)
                await journal.add(job, inputs_staged=True)
                waits.append(time.perf_counter() - checked)
                decodes.append(checked - began)
            sizes = f"{len(content) / MB:.1f} MB + {len(style) / MB:.1f} MB"
            print(
                f"command path, {label} ({sizes}), {jobs} jobs: journal wait after the checks "
                f"{summary(waits)}; staging the files {summary(stages)}, alongside decoding "
                f"{summary(decodes)}"
            )
    finally:
        await journal.close()


async def _timed(coro: Awaitable[None]) -> float:
    began = time.perf_counter()
    await coro
    return time.perf_counter() - began


def summary(times: list[float]) -> str:
    p50 = statistics.median(times) * 1e3
    return f"p50 {p50:.2f} ms, p99 {percentile(times, 0.99) * 1e3:.2f} ms"


def lag_summary(lags: list[float]) -> str:
    return f"p99 {percentile(lags, 0.99) * 1e3:.2f} ms, max {max(lags) * 1e3:.2f} ms"


class IdleHandle:
    """A job that never makes progress until it is cancelled."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._cancelled = asyncio.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    async def __aiter__(self) -> AsyncIterator[Cancelled]:
        await self._cancelled.wait()
        yield Cancelled(self.job_id, "stopped")


@dataclass
class AcceptAll:
    """A stand-in pool: accepts every job, runs none."""

    size: int = 1
    submitted: list[str] = field(default_factory=list)

    def submit(self, job: Job) -> IdleHandle:
        self.submitted.append(job.id)
        return IdleHandle(job.id)


class QuietReporter:
    def queued(self, position: int) -> None: ...
    def progress(self, event: object) -> None: ...
    def cancel_requested(self, by_user_id: int) -> None: ...
    async def finished(self, event: object) -> None: ...
    async def interrupted(self, *, engine_broken: bool) -> None: ...


async def recovery(folder: Path, count: int, rounds: int) -> None:
    where = folder / "recover"
    journal = await Journal.open(where)
    for n in range(count):
        await journal.add(new_job(300 * 1024, 150 * 1024, n % 30))
    await journal.close()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        journal = await Journal.open(where)
        records = await journal.unfinished()
        runner = JobRunner(AcceptAll(), per_user=2, max_waiting=100)  # type: ignore[arg-type]
        for record in records:
            content, styles = await journal.inputs(record.id, record.style_count)
            job = Job(
                content,
                styles,
                StylizeSettings.from_dict(record.settings),
                max_bytes=record.conversation.upload_limit,
                id=record.id,
            )
            runner.submit(job, record.conversation.user_id, QuietReporter(), resumed=True)
        times.append(time.perf_counter() - began)
        assert len(records) == count
        await runner.shutdown(grace=5)
        await journal.close()
    print(
        f"recovery of {count} unfinished jobs (300 KB + 150 KB inputs each), {rounds} rounds: "
        f"median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--command-jobs", type=int, default=40)
    parser.add_argument("--recover", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, journal on {args.dir}")  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="journal-bench-") as tmp:
        await idle_lag(5.0)
        await command_path(Path(tmp), args.command_jobs)
        await journal_add(Path(tmp), args.jobs, sync_files=True)
        await journal_add(Path(tmp), args.jobs, sync_files=False)
        await recovery(Path(tmp), args.recover, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
