"""Jobs, event checks and process helpers shared by the backend tests (local and Ray)."""

from __future__ import annotations

import asyncio
import io
import os
import random
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from PIL import Image

from engine.backend import Backend, JobHandle
from engine.jobs import FINAL_EVENTS, Event, Job, JobProgress, Started
from engine.settings import StylizeSettings

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
    """Per attempt: Started, then progress with rising steps; one final event, last.

    A job retried after a crash starts again (a second ``Started``); a job stopped before it
    started has only its final event.
    """
    assert events, "no events"
    assert all(event.job_id == job_id for event in events)
    finals = [e for e in events if isinstance(e, FINAL_EVENTS)]
    assert len(finals) == 1 and events[-1] is finals[0], events
    body = events[:-1]
    assert not body or isinstance(body[0], Started), events
    attempts: list[list[Event]] = []
    for event in body:
        if isinstance(event, Started):
            attempts.append([])
        else:
            assert isinstance(event, JobProgress), event
            attempts[-1].append(event)
    for attempt in attempts:
        steps = [e.step for e in attempt if isinstance(e, JobProgress)]
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


async def until_exited(pids: Iterable[int], timeout: float = 30) -> None:
    """Returns once every process in ``pids`` has exited (each one's pidfd turns readable)."""
    loop = asyncio.get_running_loop()
    fds = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                continue  # already gone
        for fd in fds:
            exited = loop.create_future()
            loop.add_reader(fd, exited.set_result, None)
            try:
                await asyncio.wait_for(exited, timeout)
            finally:
                loop.remove_reader(fd)
    finally:
        for fd in fds:
            os.close(fd)


async def until_capacity(backend: Backend, wanted: int, *, timeout: float = 60) -> None:
    """Wait until the backend's capacity listeners report ``wanted`` (now or later)."""
    if backend.capacity == wanted:
        return
    reached = asyncio.get_running_loop().create_future()

    def listen(capacity: int) -> None:
        if capacity == wanted and not reached.done():
            reached.set_result(None)

    backend.add_capacity_listener(listen)
    await asyncio.wait_for(reached, timeout)
