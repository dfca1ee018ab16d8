"""The local backend's own behaviour, with real spawned workers on the CPU and random weights,
and the job body (``engine.execution.run_job``) in this process with a stand-in optimisation.

What every backend must do (results, cancel, timeout, crashes, close) is in test_backends.py;
this file keeps what is particular to worker processes. Tests share a module-scoped pool and
leave it idle.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
import torch
from PIL import Image

import engine
from engine import execution
from engine.errors import WeightsError
from engine.jobs import (
    BackendError,
    Cancelled,
    Done,
    Failed,
    FailureKind,
    Job,
    JobProgress,
)
from engine.pool import EnginePool
from engine.progress import Losses, Progress
from engine.settings import StylizeSettings
from tests.backend_fixtures import CONTENT, LONG, STYLE, WEIGHTS, children, collect, job

# One loop for the module, so that tests can share pools; a hang fails in a minute.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[EnginePool]:
    async with EnginePool(workers=2, device="cpu", weights=WEIGHTS, threads=1) as started:
        yield started


# ----- no processes ---------------------------------------------------------------------------


async def test_pool_side_imports_no_torch() -> None:
    code = (
        "import sys, engine.pool, engine.jobs, engine.backend, engine.runs, engine.lifecycle, "
        "engine.backends; "
        "torch_side = ('engine.worker', 'engine.execution', 'engine.network', "
        "'engine.transfer', 'engine.devices'); "
        "bad = sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('torch', 'ray') or m in torch_side); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()


async def test_unstarted_pool_refuses_jobs() -> None:
    with pytest.raises(BackendError):
        EnginePool(weights=WEIGHTS).submit(job())


@pytest.mark.parametrize(
    "kwargs",
    [{"workers": 0}, {"stop_grace": -1}, {"job_timeout": 0}, {"threads": 0}],
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


PREVIEW_SIDE = StylizeSettings().preview_size  # 160 px
PREVIEW_BYTES = 25_000  # a 160 px JPEG of this noise is about 15 kB; at 256 px, twice that


async def test_previews_are_small_jpegs(pool: EnginePool) -> None:
    # The result is larger than a preview may be, so a preview of the whole image would fail.
    handle = pool.submit(job(size=256, steps=3, preview_interval=1e-9))
    events = await collect(handle)
    previews = [e.preview for e in events if isinstance(e, JobProgress) and e.preview]
    assert previews
    for preview in previews:
        image = Image.open(io.BytesIO(preview))
        assert image.format == "JPEG"
        assert max(image.size) <= PREVIEW_SIDE, image.size
        assert len(preview) <= PREVIEW_BYTES, len(preview)
    done = events[-1]
    assert isinstance(done, Done)
    assert max(Image.open(io.BytesIO(done.image)).size) == 256


async def test_no_previews_unless_asked(pool: EnginePool) -> None:
    events = await collect(pool.submit(job(steps=3)))
    assert [e for e in events if isinstance(e, JobProgress) and e.preview] == []


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
    assert pool.running == pool.waiting == 0
    assert pool.capacity == pool.free_workers == 2


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
        initial: Image.Image | None = None,
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
    final = execution.run_job(
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
    assert final.stats.settings["size"] == execution.smaller_size(64) == 44
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
    final, _ = run_fake(fake_stylize(error=engine.StopRequested()))
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


async def test_a_pool_whose_workers_cannot_restart_breaks_and_says_so(tmp_path: Path) -> None:
    """A worker dies and its replacements can't load the weights any more (the file is gone):
    after the last try the pool is ``broken``, refuses jobs, and its listeners hear of it, so
    that the bot can stop instead of leaving jobs waiting for a worker that never comes."""
    from engine.network import random_state

    weights = tmp_path / "vgg19.pth"
    torch.save(random_state(0), weights)
    pool = EnginePool(workers=1, device="cpu", weights=str(weights), threads=1)
    await pool.start()
    heard: list[tuple[int, bool]] = []
    broke = asyncio.Event()

    def listener(capacity: int) -> None:
        heard.append((capacity, pool.broken))
        if pool.broken:
            broke.set()

    pool.add_capacity_listener(listener)
    try:
        assert not pool.broken
        weights.unlink()
        (pid,) = pool.worker_pids
        assert pid is not None
        os.kill(pid, 9)
        await asyncio.wait_for(broke.wait(), 120)
        assert heard[-1] == (0, True) and pool.capacity == 0
        with pytest.raises(BackendError):
            pool.submit(job())
    finally:
        await pool.close(grace=0)


async def test_a_jobs_initial_image_is_decoded_and_handed_to_stylize() -> None:
    handed: list[Image.Image | None] = []
    run = fake_stylize()

    def spying(*args: object, initial: Image.Image | None = None, **kwargs: object) -> Image.Image:
        handed.append(initial)
        return run(*args, **kwargs)  # type: ignore[arg-type]

    earlier = io.BytesIO()
    Image.new("RGB", (200, 150), "red").save(earlier, "PNG")
    plain = job(size=64, steps=1)
    final, _ = run_fake(spying, plain)
    assert isinstance(final, Done) and handed == [None]
    final, _ = run_fake(spying, Job(plain.content, plain.styles, plain.settings,
                                    initial=earlier.getvalue()))  # fmt: skip
    assert isinstance(final, Done)
    given = handed[-1]
    assert given is not None and (given.mode, given.size) == ("RGB", (200, 150))
