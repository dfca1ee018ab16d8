"""The runner reads the backend's capacity live: it starts as many jobs as there are workers up
now, and more as soon as the backend says that capacity grew. No Discord, no engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.jobs.runner import JobRunner
from engine.backend import JobHandle, JobStream
from engine.jobs import Cancelled, Done, FinalEvent, Job, JobStats
from engine.settings import StylizeSettings


class ElasticBackend:
    """A backend double whose capacity the test sets; it only records what it is given."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._listeners: list[Callable[[int], None]] = []
        self.streams: dict[str, JobStream] = {}
        self.devices: tuple[str, ...] = ()
        self.broken = False

    @property
    def capacity(self) -> int:
        return self._capacity

    def resize(self, capacity: int) -> None:
        self._capacity = capacity
        for listener in self._listeners:
            listener(capacity)

    def break_down(self) -> None:
        """As the local backend once no worker can be started any more."""
        self.broken = True
        self.resize(0)

    def add_capacity_listener(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        pass

    async def close(self, grace: float = 10.0) -> None:
        pass

    def submit(self, job: Job) -> JobHandle:
        stream = JobStream(job.id, lambda: stream.emit(Cancelled(job.id, "Cancelled on request.")))
        self.streams[job.id] = stream
        return stream.handle

    def finish(self, job_id: str) -> None:
        self.streams[job_id].emit(Done(job_id, b"png", "png", JobStats(1.0, 1, 16, 16, 7, {})))


class Reporter:
    def __init__(self) -> None:
        self.final: asyncio.Future[FinalEvent] = asyncio.get_running_loop().create_future()
        self.kept = False

    def queued(self, position: int) -> None:
        pass

    def progress(self, event: object) -> None:
        pass

    def cancel_requested(self, by_user_id: int) -> None:
        pass

    async def finished(self, event: FinalEvent) -> None:
        self.final.set_result(event)

    async def interrupted(self, *, engine_broken: bool) -> None:
        self.kept = True  # a shutdown stopped it: it resumes after the restart


def job(job_id: str) -> Job:
    return Job(b"content", (b"style",), StylizeSettings(size=16, steps=1), id=job_id)


async def test_jobs_start_as_capacity_grows_and_wait_while_it_is_zero() -> None:
    backend = ElasticBackend(capacity=1)
    runner = JobRunner(backend, per_user=5, max_waiting=10)
    reporters = {name: Reporter() for name in ("a", "b", "c")}
    for name, reporter in reporters.items():
        runner.submit(job(name), user_id=1, reporter=reporter)
    assert list(backend.streams) == ["a"]

    backend.resize(3)  # two machines joined
    assert list(backend.streams) == ["a", "b", "c"]

    backend.resize(0)  # every worker lost: nothing new may start
    late = Reporter()
    runner.submit(job("d"), user_id=2, reporter=late)
    for name in ("a", "b", "c"):
        backend.finish(name)
        await reporters[name].final
    assert "d" not in backend.streams

    backend.resize(1)
    assert "d" in backend.streams
    await runner.shutdown(grace=5)
    assert not runner.busy
    assert late.kept and not late.final.done()  # stopped by the shutdown: kept, not ended


async def test_a_backend_that_breaks_while_jobs_wait_stops_the_bot_once() -> None:
    # Capacity 0 alone means "wait"; a broken backend means no worker will ever come back,
    # so the runner must not leave the waiting job hanging.
    backend = ElasticBackend(capacity=1)
    calls: list[str] = []
    runner = JobRunner(
        backend, per_user=5, max_waiting=10, on_engine_broken=lambda: calls.append("broken")
    )
    runner.submit(job("a"), user_id=1, reporter=Reporter())
    runner.submit(job("b"), user_id=2, reporter=Reporter())
    assert list(backend.streams) == ["a"]
    backend.break_down()
    backend.resize(0)  # a later notice changes nothing
    assert calls == ["broken"]
    assert runner.engine_broken and not runner.accepting
    assert "b" not in backend.streams
