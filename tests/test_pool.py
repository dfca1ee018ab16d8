"""The engine's worker pool, with real spawned workers on the CPU and random weights.

Pools take a couple of seconds to start, so tests share module-scoped pools where sharing
doesn't make them depend on each other: each test leaves its pool idle. Workers use one torch
thread, and the in-process reference runs with one thread too: L-BFGS amplifies the rounding
differences that another thread count gives, so only equal thread counts give equal pixels.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import torch
from PIL import Image

import engine
from engine import worker
from engine.errors import WeightsError
from engine.images import load_image
from engine.jobs import (
    Cancelled,
    Done,
    Event,
    Failed,
    FailureKind,
    Job,
    JobProgress,
    PoolError,
    Queued,
    QueueFull,
    Started,
)
from engine.pool import EnginePool, JobHandle
from engine.progress import Losses, Progress
from engine.settings import StylizeSettings

# One loop for the module, so that tests can share pools; a hang fails in a minute.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

WEIGHTS = "random:0"
LONG = 100_000  # steps: a job that runs until it is stopped


def picture(seed: int, size: tuple[int, int]) -> bytes:
    noise = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, noise).save(buffer, "PNG")
    return buffer.getvalue()


CONTENT = picture(1, (64, 48))
STYLE = picture(2, (40, 40))


def job(size: int = 48, steps: int = 5, seed: int = 7, **kwargs: object) -> Job:
    settings = StylizeSettings(size=size, steps=steps, seed=seed)
    return Job(CONTENT, (STYLE,), settings, **kwargs)  # type: ignore[arg-type]


def check_stream(events: list[Event], job_id: str) -> None:
    """Queued (positions only improving), Started, progress with rising steps, one final."""
    assert events, "no events"
    assert all(event.job_id == job_id for event in events)
    finals = [e for e in events if isinstance(e, Done | Failed | Cancelled)]
    assert len(finals) == 1 and events[-1] is finals[0], events
    assert isinstance(events[0], Queued)
    body = events[:-1]
    # A crash retry requeues a job: each attempt is Queued…, Started, JobProgress…
    attempts: list[list[Event]] = []
    for event in body:
        if isinstance(event, Queued) and (not attempts or not isinstance(attempts[-1][-1], Queued)):
            attempts.append([])
        attempts[-1].append(event)
    for attempt in attempts:
        queued = [e.position for e in attempt if isinstance(e, Queued)]
        assert queued == sorted(queued, reverse=True) and all(p >= 1 for p in queued)
        rest = attempt[len(queued) :]
        if rest:
            assert isinstance(rest[0], Started), attempt
            steps = [e.step for e in rest[1:]]
            assert all(isinstance(e, JobProgress) for e in rest[1:]), attempt
            assert steps == sorted(set(steps)), steps


async def collect(handle: JobHandle, at_progress: Callable[[], None] | None = None) -> list[Event]:
    """The whole checked stream; ``at_progress`` runs at each attempt's first progress event."""
    events: list[Event] = []
    fresh = False
    async for event in handle:
        events.append(event)
        if isinstance(event, Started):
            fresh = True
        elif isinstance(event, JobProgress) and fresh:
            fresh = False
            if at_progress is not None:
                at_progress()
    check_stream(events, handle.job_id)
    assert await handle.wait() is events[-1]
    return events


async def first_progress(events: AsyncIterator[Event]) -> list[Event]:
    seen = []
    async for event in events:
        seen.append(event)
        if isinstance(event, JobProgress):
            return seen
    raise AssertionError(f"the job ended before any progress: {seen}")


def children() -> set[int]:
    """Live or unreaped child processes of this process, but Python's resource tracker.

    The tracker is multiprocessing's one helper per interpreter (spawn starts it on first use);
    it is not the pool's and exits with this process.
    """
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"resource_tracker" not in cmdline:
            found.add(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[EnginePool]:
    async with EnginePool(
        workers=2, device="cpu", weights=WEIGHTS, threads=1, queue_size=2
    ) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def timeout_pool() -> AsyncIterator[EnginePool]:
    async with EnginePool(
        workers=1, device="cpu", weights=WEIGHTS, threads=1, job_timeout=1.0, stop_grace=0.5
    ) as started:
        yield started


# ----- no processes ---------------------------------------------------------------------------


async def test_pool_side_imports_no_torch() -> None:
    code = (
        "import sys, engine.pool, engine.jobs; "
        "torch_side = ('engine.worker', 'engine.network', 'engine.transfer', 'engine.devices'); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m in torch_side); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()


async def test_unstarted_pool_refuses_jobs() -> None:
    with pytest.raises(PoolError):
        EnginePool(weights=WEIGHTS).submit(job())


@pytest.mark.parametrize(
    "kwargs",
    [{"workers": 0}, {"queue_size": -1}, {"job_timeout": 0}, {"threads": 0}],
)
async def test_bad_arguments_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        EnginePool(weights=WEIGHTS, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "styles", "kwargs", "error"),
    [
        (CONTENT, (), {}, engine.SettingsError),  # no style image
        (b"", (STYLE,), {}, ValueError),
        (CONTENT, (b"",), {}, ValueError),
        (CONTENT, (STYLE,), {"max_bytes": 0}, ValueError),
        (CONTENT, (STYLE,), {"preview_interval": -1.0}, ValueError),
    ],
)
async def test_job_refuses_bad_fields(
    content: bytes, styles: tuple[bytes, ...], kwargs: dict[str, float], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Job(content, styles, StylizeSettings(), **kwargs)  # type: ignore[arg-type]


async def test_job_refuses_blend_weights_that_do_not_match_its_styles() -> None:
    with pytest.raises(engine.SettingsError, match="one weight per style"):
        Job(CONTENT, (STYLE,), StylizeSettings(style_weights=(1.0, 2.0)))


async def test_bad_device_name_is_refused_before_spawning() -> None:
    with pytest.raises(engine.SettingsError):
        EnginePool(device="gpu0", weights=WEIGHTS)


# ----- a shared pool of two workers ---------------------------------------------------------


async def test_jobs_complete_and_equal_in_process_results(
    pool: EnginePool, one_thread: None
) -> None:
    assert pool.devices == ("cpu", "cpu")
    jobs = [job(size=48, seed=1), job(size=56, seed=2), job(size=64, seed=3, steps=4)]
    handles = [pool.submit(j) for j in jobs]
    streams = await asyncio.gather(*(collect(h) for h in handles))
    for submitted, events in zip(jobs, streams, strict=True):
        done = events[-1]
        assert isinstance(done, Done), done
        assert done.format == "png"
        image = Image.open(io.BytesIO(done.image))
        assert max(image.size) == submitted.settings.size
        assert (done.stats.width, done.stats.height) == image.size
        assert done.stats.seed == submitted.settings.seed
        assert done.stats.steps == submitted.settings.steps
        assert done.stats.settings["weights"] == WEIGHTS
        assert image.text["stylize:seed"] == str(submitted.settings.seed)
        expected = engine.stylize(
            load_image(CONTENT),
            [load_image(STYLE)],
            submitted.settings.replace(device="cpu", weights=WEIGHTS),
        )
        assert image.convert("RGB").tobytes() == expected.tobytes()
    # Two workers, three jobs: one of them waited for a worker.
    assert any(isinstance(e, Queued) for e in streams[2])
    assert sorted({e.worker for s in streams for e in s if isinstance(e, Started)}) == [0, 1]


async def test_previews_are_small_jpegs(pool: EnginePool) -> None:
    handle = pool.submit(job(steps=8, preview_interval=1e-9))
    events = await collect(handle)
    previews = [e.preview for e in events if isinstance(e, JobProgress) and e.preview]
    assert previews
    image = Image.open(io.BytesIO(previews[0]))
    assert image.format == "JPEG"
    assert isinstance(events[-1], Done)


async def test_no_previews_unless_asked(pool: EnginePool) -> None:
    events = await collect(pool.submit(job(steps=3)))
    assert [e for e in events if isinstance(e, JobProgress) and e.preview] == []


async def test_bad_input_fails_with_its_message(pool: EnginePool) -> None:
    bad = Job(b"this is not an image", (STYLE,), StylizeSettings(size=48, steps=2))
    final = (await collect(pool.submit(bad)))[-1]
    assert isinstance(final, Failed) and final.kind is FailureKind.BAD_INPUT
    assert "image" in final.message


async def test_cancel_queued_then_running_and_reuse_the_worker(pool: EnginePool) -> None:
    first, second = pool.submit(job(steps=LONG)), pool.submit(job(steps=LONG))
    waiting = pool.submit(job())
    waiting_events = aiter(waiting)
    assert await anext(waiting_events) == Queued(waiting.job_id, 1)
    waiting.cancel()
    assert waiting.done  # at once, without a round trip to a worker
    assert isinstance(await anext(waiting_events), Cancelled)
    assert pool.queued == 0

    seen = await first_progress(aiter(first))
    worker = next(e.worker for e in seen if isinstance(e, Started))
    pid = pool.worker_pids[worker]
    asked = time.monotonic()
    first.cancel()
    final = await first.wait()
    assert time.monotonic() - asked < 1.0
    assert isinstance(final, Cancelled)

    # The other worker is still busy, so the next job must go to the same, still warm, one.
    again = await collect(pool.submit(job()))
    assert isinstance(again[-1], Done)
    assert [e.worker for e in again if isinstance(e, Started)] == [worker]
    assert pool.worker_pids[worker] == pid

    second.cancel()
    assert isinstance(await second.wait(), Cancelled)


async def test_full_queue_rejects_at_once(pool: EnginePool) -> None:
    running = [pool.submit(job(steps=LONG)) for _ in range(2)]
    waiting = [pool.submit(job()) for _ in range(2)]
    asked = time.monotonic()
    with pytest.raises(QueueFull):
        pool.submit(job())
    assert time.monotonic() - asked < 0.05
    for handle in waiting + running:
        handle.cancel()
    finals = await asyncio.gather(*(h.wait() for h in running + waiting))
    assert all(isinstance(f, Cancelled) for f in finals)


async def test_every_job_ends_exactly_once_in_a_busy_pool(pool: EnginePool) -> None:
    handles = [pool.submit(job(steps=s, seed=s)) for s in (3, LONG, 4, 5)]
    handles[3].cancel()  # still queued
    results = await asyncio.gather(
        collect(handles[0]),
        collect(handles[1], at_progress=handles[1].cancel),
        collect(handles[2]),
        collect(handles[3]),
    )
    assert [type(events[-1]) for events in results] == [Done, Cancelled, Done, Cancelled]
    assert pool.running == pool.queued == 0


async def test_event_loop_stays_responsive(pool: EnginePool) -> None:
    loop = asyncio.get_running_loop()
    handles = [pool.submit(job(size=64, steps=25, seed=s, preview_interval=0.05)) for s in (1, 2)]
    finished = asyncio.gather(*(collect(h) for h in handles))
    interval, worst, ticks = 0.005, 0.0, 0
    while not finished.done():
        before = loop.time()
        await asyncio.sleep(interval)
        worst = max(worst, loop.time() - before - interval)
        ticks += 1
    assert all(isinstance(s[-1], Done) for s in await finished)
    assert ticks > 20
    assert worst < 0.05, f"the loop stalled for {worst * 1000:.0f} ms"


async def test_killed_worker_fails_its_job_and_is_replaced(pool: EnginePool) -> None:
    handle = pool.submit(job(steps=LONG))
    seen = await first_progress(aiter(handle))
    worker = next(e.worker for e in seen if isinstance(e, Started))
    pid = pool.worker_pids[worker]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    final = await handle.wait()
    assert isinstance(final, Failed) and final.kind is FailureKind.WORKER_CRASHED
    # Keep the other worker busy, so that the next job can only run on the replacement.
    busy = pool.submit(job(steps=LONG))
    assert [type(e) for e in await first_progress(aiter(busy))][-2:] == [Started, JobProgress]
    later = await collect(pool.submit(job()))
    assert isinstance(later[-1], Done)
    assert [e.worker for e in later if isinstance(e, Started)] == [worker]
    busy.cancel()
    assert isinstance(await busy.wait(), Cancelled)
    assert pool.worker_pids[worker] not in (None, pid)


# ----- timeouts -----------------------------------------------------------------------------

TINY = {"size": 32, "steps": 2}  # well inside the 1 s timeout, even on a busy machine


async def test_timeout_fails_the_job_and_keeps_the_worker(timeout_pool: EnginePool) -> None:
    pid = timeout_pool.worker_pids[0]
    started = time.monotonic()
    final = (await collect(timeout_pool.submit(job(steps=LONG))))[-1]
    assert isinstance(final, Failed) and final.kind is FailureKind.TIMEOUT, final
    assert 1.0 <= time.monotonic() - started < 3.0
    assert "1 s" in final.message
    assert isinstance((await collect(timeout_pool.submit(job(**TINY))))[-1], Done)
    assert timeout_pool.worker_pids[0] == pid  # it stopped by itself, so it was kept


async def test_hung_worker_is_killed_at_timeout_and_replaced(timeout_pool: EnginePool) -> None:
    handle = timeout_pool.submit(job(steps=LONG))
    await first_progress(aiter(handle))
    pid = timeout_pool.worker_pids[0]
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # it can no longer see the cancel flag
    try:
        final = await handle.wait()
    finally:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert isinstance(final, Failed) and final.kind is FailureKind.TIMEOUT, final
    assert isinstance((await collect(timeout_pool.submit(job(**TINY))))[-1], Done)
    assert timeout_pool.worker_pids[0] not in (None, pid)


# ----- pools of their own -------------------------------------------------------------------


async def test_crashed_job_is_retried_once_when_asked() -> None:
    async with EnginePool(
        workers=1, device="cpu", weights=WEIGHTS, threads=1, retry_crashed=True
    ) as pool:

        def kill_worker() -> None:
            os.kill(pool.worker_pids[0] or 0, signal.SIGKILL)

        def kill_first_attempt() -> None:
            if not killed:
                killed.append(True)
                kill_worker()

        killed: list[bool] = []
        events = await collect(pool.submit(job(steps=20)), at_progress=kill_first_attempt)
        assert isinstance(events[-1], Done), events[-1]
        assert len([e for e in events if isinstance(e, Started)]) == 2

        # A second crash of the same job is final.
        events = await collect(pool.submit(job(steps=LONG)), at_progress=kill_worker)
        assert len([e for e in events if isinstance(e, Started)]) == 2
        final = events[-1]
        assert isinstance(final, Failed) and final.kind is FailureKind.WORKER_CRASHED


async def test_close_finishes_running_jobs_within_grace_and_ends_workers() -> None:
    before = children()
    pool = EnginePool(workers=2, device="cpu", weights=WEIGHTS, threads=1, queue_size=5)
    await pool.start()
    pids = set(pool.worker_pids)
    assert pids <= children()
    short = pool.submit(job(steps=5))
    long = pool.submit(job(steps=LONG))
    queued = pool.submit(job())
    await first_progress(aiter(long))
    await pool.close(grace=2.0)
    assert isinstance(short.result, Done)
    assert long.result == Cancelled(long.job_id, "The engine is shutting down.")
    assert isinstance(queued.result, Cancelled)
    assert children() <= before
    with pytest.raises(PoolError):
        pool.submit(job())
    await pool.close()  # a second close is harmless


async def test_weights_failure_surfaces_at_start(tmp_path: Path) -> None:
    before = children()
    pool = EnginePool(workers=1, device="cpu", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError):
        await pool.start()
    assert children() <= before


async def test_workers_exit_when_the_bot_process_dies() -> None:
    """A SIGKILLed bot can't close its pool: its workers must notice and exit on their own."""
    script = (
        "import asyncio\n"
        "from engine.jobs import Job, JobProgress\n"
        "from engine.pool import EnginePool\n"
        "from engine.settings import StylizeSettings\n"
        "async def main():\n"
        "    pool = EnginePool(workers=2, device='cpu', weights='random:0', threads=1)\n"
        "    await pool.start()\n"
        f"    job = Job({CONTENT!r}, ({STYLE!r},), StylizeSettings(size=48, steps={LONG}))\n"
        "    async for event in pool.submit(job):\n"  # one worker busy, one idle
        "        if isinstance(event, JobProgress):\n"
        "            break\n"
        "    print(*pool.worker_pids, flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert bot.stdout is not None
        pids = [int(pid) for pid in (await bot.stdout.readline()).split()]
        assert len(pids) == 2, pids
        exits = [os.pidfd_open(pid) for pid in pids]  # readable once that process has exited
    finally:
        bot.kill()
        await bot.wait()
    loop = asyncio.get_running_loop()
    try:
        for fd in exits:
            exited = loop.create_future()
            loop.add_reader(fd, exited.set_result, None)
            try:
                await asyncio.wait_for(exited, 10)
            finally:
                loop.remove_reader(fd)
    finally:
        for fd in exits:
            os.close(fd)


# ----- run_job in this process, with a stand-in for the optimisation ------------------------


class FakeNetwork:
    device = "cpu"


def fake_stylize(
    *, fits: int = 10_000, error: BaseException | None = None
) -> Callable[..., Image.Image]:
    """Runs ``settings.steps`` progress callbacks; out of memory above ``fits`` px."""

    def run(
        content: Image.Image,
        styles: list[Image.Image],
        settings: StylizeSettings,
        *,
        on_progress: Callable[[Progress], None],
        cancel: Callable[[], bool],
        network: object,
    ) -> Image.Image:
        if error is not None:
            raise error
        if settings.size > fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        size = (settings.size, settings.size * 3 // 4)
        for step in range(1, settings.steps + 1):
            on_progress(
                Progress(
                    step, settings.steps, 0, 1, size, 0.0,
                    read_losses=lambda: Losses(1.0, 1.0, 0.0, 2.0),
                    render_preview=lambda side: Image.new("RGB", (side, side)),
                )
            )  # fmt: skip
        return Image.new("RGB", size, "teal")

    return run


class FakeClock:
    """Time moves 10 ms each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


def run_fake(
    stylize_fn: Callable[..., Image.Image], submitted: Job | None = None
) -> tuple[Done | Failed | Cancelled, list[JobProgress]]:
    sent: list[JobProgress] = []
    final = worker.run_job(
        submitted or job(size=64, steps=3),
        FakeNetwork(),  # type: ignore[arg-type]
        weights=WEIGHTS,
        emit=sent.append,
        cancel=lambda: False,
        stylize_fn=stylize_fn,
        clock=FakeClock(),
    )
    return final, sent


async def test_out_of_memory_is_retried_once_at_a_smaller_size() -> None:
    final, _ = run_fake(fake_stylize(fits=50))
    assert isinstance(final, Done), final
    assert final.stats.settings["size"] == worker.smaller_size(64) == 44
    assert (final.stats.width, final.stats.height) == (44, 33)


async def test_out_of_memory_twice_suggests_a_smaller_size() -> None:
    final, _ = run_fake(fake_stylize(fits=20))
    assert isinstance(final, Failed) and final.kind is FailureKind.OUT_OF_MEMORY
    assert "44 px" in final.message and "e.g. 30 px" in final.message


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (engine.ImageError("That file is damaged."), FailureKind.BAD_INPUT, "damaged"),
        (engine.SettingsError("size: too big."), FailureKind.BAD_INPUT, "too big"),
        (RuntimeError("secret internals"), FailureKind.INTERNAL, "went wrong"),
        (RuntimeError("CUDA error: illegal memory access"), FailureKind.WORKER_CRASHED, "GPU"),
    ],
)
async def test_errors_become_failures(error: Exception, kind: FailureKind, message: str) -> None:
    final, _ = run_fake(fake_stylize(error=error))
    assert isinstance(final, Failed) and final.kind is kind
    assert message in final.message and "secret" not in final.message


async def test_a_cancelled_run_ends_cancelled() -> None:
    final, _ = run_fake(fake_stylize(error=engine.Cancelled()))
    assert isinstance(final, Cancelled)


async def test_progress_is_throttled_and_previews_spaced() -> None:
    # 200 steps, 10 ms apart on the fake clock: 2 s in all.
    final, sent = run_fake(fake_stylize(), job(steps=200, preview_interval=0.5))
    assert isinstance(final, Done)
    steps = [event.step for event in sent]
    assert steps[0] == 1 and steps[-1] == 200
    assert 10 <= len(steps) <= 12  # about 5 a second, plus the first and the last
    previews = [event for event in sent if event.preview]
    assert len(previews) == 3
    gaps = [b.elapsed - a.elapsed for a, b in itertools.pairwise(previews)]
    assert min(gaps) >= 0.5
    assert Image.open(io.BytesIO(previews[0].preview or b"")).format == "JPEG"


async def test_the_worker_decodes_big_jpegs_only_as_large_as_the_job_needs() -> None:
    # A phone photo is shrunk to the job's size anyway; decoding it at 1/2, 1/4 or 1/8 scale
    # first is several times faster. The style may be asked for larger (style_scale).
    def jpeg(size: tuple[int, int]) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", size, "orange").save(out, "JPEG")
        return out.getvalue()

    seen: list[tuple[int, int]] = []

    def record(content: Image.Image, styles: list[Image.Image], *args, **kwargs) -> Image.Image:  # type: ignore[no-untyped-def]
        seen.extend([content.size, *(style.size for style in styles)])
        return Image.new("RGB", (64, 48), "teal")

    settings = StylizeSettings(size=64, steps=3, seed=0, style_scale=2.0)
    final, _ = run_fake(record, Job(jpeg((2048, 1536)), (jpeg((2048, 2048)),), settings))
    assert isinstance(final, Done), final
    assert seen == [(256, 192), (256, 256)]  # 1/8 keeps ≥ 64 px; the style needs ≥ 128
