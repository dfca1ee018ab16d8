"""The fair queue (bot.jobs.queue) on its own, and the runner (bot.jobs.runner) over a scripted
backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from bot.jobs.queue import FairQueue, QueueFull, UserLimitReached
from bot.jobs.runner import ON_REQUEST, JobRunner, ShuttingDown
from engine.jobs import (
    BackendError,
    Cancelled,
    Done,
    Failed,
    FailureKind,
    Job,
    JobProgress,
    JobStats,
    Started,
)
from engine.settings import StylizeSettings

A, B, C, D = 1, 2, 3, 4


def order(queue: FairQueue[str]) -> list[str]:
    return [entry.job_id for entry in queue.waiting()]


def make_queue(per_user: int = 2, max_waiting: int = 100, slots: int = 1) -> FairQueue[str]:
    return FairQueue(per_user=per_user, max_waiting=max_waiting, slots=slots)


# --- limits -------------------------------------------------------------------------------


def test_per_user_limit_counts_queued_and_running() -> None:
    queue = make_queue(per_user=2)
    queue.add("a1", A, "")
    assert queue.start_next() is not None
    queue.add("a2", A, "")
    with pytest.raises(UserLimitReached) as refused:
        queue.add("a3", A, "")
    assert (refused.value.active, refused.value.limit) == (2, 2)
    queue.add("b1", B, "")  # other users are not affected


def test_per_user_limit_frees_a_place_when_a_job_ends() -> None:
    queue = make_queue(per_user=1)
    queue.add("a1", A, "")
    with pytest.raises(UserLimitReached):
        queue.check(A)
    queue.remove("a1")
    queue.check(A)
    queue.add("a2", A, "")


def test_global_bound_counts_waiting_jobs_only() -> None:
    queue = make_queue(per_user=5, max_waiting=2, slots=1)
    queue.add("a1", A, "")
    queue.start_next()  # running: does not take a waiting place
    queue.add("b1", B, "")
    queue.add("c1", C, "")
    with pytest.raises(QueueFull) as refused:
        queue.add("d1", D, "")
    assert refused.value.waiting == 2
    assert "d1" not in queue


def test_check_refuses_like_add_without_adding() -> None:
    queue = make_queue(per_user=1, max_waiting=1)
    queue.add("a1", A, "")
    with pytest.raises(UserLimitReached):
        queue.check(A)
    with pytest.raises(QueueFull):
        queue.check(B)
    assert len(queue) == 1


def test_duplicate_job_id_is_a_bug() -> None:
    queue = make_queue()
    queue.add("a1", A, "")
    with pytest.raises(ValueError):
        queue.add("a1", B, "")


@pytest.mark.parametrize("bad", [{"per_user": 0}, {"max_waiting": 0}, {"slots": 0}])
def test_limits_must_be_positive(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        FairQueue(**{"per_user": 1, "max_waiting": 1, "slots": 1, **bad})


# --- fairness -----------------------------------------------------------------------------


def test_first_jobs_go_before_second_jobs() -> None:
    queue = make_queue()
    queue.add("a1", A, "")
    queue.add("a2", A, "")
    queue.add("b1", B, "")
    queue.add("b2", B, "")
    queue.add("c1", C, "")
    assert order(queue) == ["a1", "b1", "c1", "a2", "b2"]


def test_new_user_overtakes_a_running_users_second_job() -> None:
    queue = make_queue()
    queue.add("a1", A, "")
    assert queue.start_next().job_id == "a1"  # type: ignore[union-attr]
    queue.add("a2", A, "")
    queue.add("b1", B, "")
    assert order(queue) == ["b1", "a2"]
    assert queue.position("b1") == 1
    assert queue.position("a2") == 2


def test_order_shown_is_the_order_that_runs() -> None:
    queue = make_queue()
    queue.add("a1", A, "")
    queue.start_next()
    queue.add("a2", A, "")
    queue.add("b1", B, "")
    shown = order(queue)
    queue.remove("a1")  # a1 ends: A has nothing running, but b1 was promised first
    started = []
    while (entry := queue.start_next()) is not None:
        started.append(entry.job_id)
        queue.remove(entry.job_id)
    assert started == shown == ["b1", "a2"]


def test_second_job_is_not_starved_by_later_first_jobs() -> None:
    queue = make_queue()
    queue.add("a1", A, "")
    queue.start_next()
    queue.add("a2", A, "")
    queue.add("b1", B, "")
    queue.remove("a1")  # a2 now waits as A's first job, behind b1 only
    queue.add("c1", C, "")
    queue.add("d1", D, "")
    assert order(queue) == ["b1", "a2", "c1", "d1"]


def test_slots_limit_how_many_run() -> None:
    queue = make_queue(slots=2)
    for job, user in [("a1", A), ("b1", B), ("c1", C)]:
        queue.add(job, user, "")
    assert queue.start_next().job_id == "a1"  # type: ignore[union-attr]
    assert queue.start_next().job_id == "b1"  # type: ignore[union-attr]
    assert queue.start_next() is None
    assert [e.job_id for e in queue.running()] == ["a1", "b1"]
    queue.remove("a1")
    assert queue.start_next().job_id == "c1"  # type: ignore[union-attr]


# --- positions and cancel ------------------------------------------------------------------


def test_positions_move_up_as_jobs_leave() -> None:
    queue = make_queue()
    for job, user in [("a1", A), ("b1", B), ("c1", C), ("d1", D)]:
        queue.add(job, user, "")
    assert queue.positions() == {"a1": 1, "b1": 2, "c1": 3, "d1": 4}
    queue.start_next()
    assert queue.positions() == {"b1": 1, "c1": 2, "d1": 3}
    assert queue.position("a1") is None  # running
    queue.remove("c1")  # cancelled while waiting
    assert queue.positions() == {"b1": 1, "d1": 2}


def test_cancel_unknown_job_is_harmless() -> None:
    queue = make_queue()
    assert queue.remove("nope") is None


def test_drain_empties_the_waiting_jobs_in_order() -> None:
    queue = make_queue()
    for job, user in [("a1", A), ("a2", A), ("b1", B)]:
        queue.add(job, user, "")
    queue.start_next()
    drained = [entry.job_id for entry in queue.drain()]
    assert drained == ["b1", "a2"]
    assert [e.job_id for e in queue.running()] == ["a1"]


# --- the runner over a scripted backend ---------------------------------------------------


class ScriptedHandle:
    """A JobHandle whose events the test pushes."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.events: asyncio.Queue[object] = asyncio.Queue()
        self.cancelled = False

    def push(self, event: object) -> None:
        self.events.put_nowait(event)

    def cancel(self) -> None:
        self.cancelled = True
        self.push(Cancelled(self.job_id, "Cancelled on request."))

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        while True:
            event = await self.events.get()
            yield event
            if isinstance(event, (Done, Failed, Cancelled)):
                return


@dataclass
class ScriptedBackend:
    capacity: int = 1
    handles: dict[str, ScriptedHandle] = field(default_factory=dict)
    submitted: list[str] = field(default_factory=list)
    broken: bool = False
    """As the local backend once its workers can't be restarted: it refuses every job."""

    def add_capacity_listener(self, listener: object) -> None:
        pass

    def submit(self, job: Job) -> ScriptedHandle:
        if self.broken:
            raise BackendError("The engine's workers could not be restarted.")
        handle = ScriptedHandle(job.id)
        self.handles[job.id] = handle
        self.submitted.append(job.id)
        return handle


@dataclass
class RecordingReporter:
    positions: list[int] = field(default_factory=list)
    progress_events: list[object] = field(default_factory=list)
    cancel_requests: list[int] = field(default_factory=list)
    final: asyncio.Future[object] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def queued(self, position: int) -> None:
        self.positions.append(position)

    def progress(self, event: object) -> None:
        self.progress_events.append(event)

    def cancel_requested(self, by_user_id: int) -> None:
        self.cancel_requests.append(by_user_id)

    async def finished(self, event: object) -> None:
        self.final.set_result(event)

    async def interrupted(self, *, engine_broken: bool) -> None:
        self.final.set_result(Interrupted(engine_broken))


@dataclass(frozen=True)
class Interrupted:
    """What a reporter was told instead of an end: the job is kept for after a restart."""

    engine_broken: bool


Runner = tuple[ScriptedBackend, JobRunner]


@pytest.fixture
async def backend_and_runner() -> AsyncIterator[Runner]:
    backend = ScriptedBackend(capacity=1)
    runner = JobRunner(backend, per_user=2, max_waiting=10)  # type: ignore[arg-type]
    yield backend, runner
    await runner.shutdown(grace=5)  # ends every job still running, so no task outlives the test
    assert not runner.busy


def job(job_id: str) -> Job:
    return Job(b"content", (b"style",), StylizeSettings(size=16, steps=1), id=job_id)


def done(job_id: str) -> Done:
    return Done(job_id, b"png", "png", JobStats(1.0, 1, 16, 16, 7, {}))


async def test_runner_starts_jobs_on_free_workers_in_fair_order(backend_and_runner: Runner) -> None:
    backend, runner = backend_and_runner
    reporters = {name: RecordingReporter() for name in ("a1", "a2", "b1")}
    runner.submit(job("a1"), A, reporters["a1"])
    runner.submit(job("a2"), A, reporters["a2"])
    runner.submit(job("b1"), B, reporters["b1"])
    assert backend.submitted == ["a1"]  # the backend's own queue stays empty
    assert reporters["b1"].positions == [1]
    assert reporters["a2"].positions == [1, 2]  # overtaken by b1, a first job

    backend.handles["a1"].push(Started("a1", 0))
    backend.handles["a1"].push(JobProgress("a1", 1, 1, 0.1, 0.0))
    backend.handles["a1"].push(done("a1"))
    assert isinstance(await reporters["a1"].final, Done)
    assert [type(e) for e in reporters["a1"].progress_events] == [Started, JobProgress]
    # The next job starts before the finished one is reported.
    assert backend.submitted == ["a1", "b1"]
    assert reporters["a2"].positions == [1, 2, 1]


async def test_runner_cancel_waiting_and_running(backend_and_runner: Runner) -> None:
    backend, runner = backend_and_runner
    running, waiting = RecordingReporter(), RecordingReporter()
    runner.submit(job("a1"), A, running)
    runner.submit(job("b1"), B, waiting)

    assert runner.cancel("b1", by_user_id=B)
    event = await waiting.final
    assert isinstance(event, Cancelled) and event.reason == ON_REQUEST
    assert "b1" not in backend.submitted
    assert runner.owner("b1") is None

    assert runner.cancel("a1", by_user_id=D)
    assert backend.handles["a1"].cancelled
    event = await running.final
    assert isinstance(event, Cancelled) and event.reason == ON_REQUEST
    assert running.cancel_requests == [D]
    assert not runner.cancel("a1", by_user_id=A)  # gone: a stale button


async def test_runner_failure_reaches_the_reporter(backend_and_runner: Runner) -> None:
    backend, runner = backend_and_runner
    reporter = RecordingReporter()
    runner.submit(job("a1"), A, reporter)
    backend.handles["a1"].push(Failed("a1", FailureKind.OUT_OF_MEMORY, "oom"))
    event = await reporter.final
    assert isinstance(event, Failed) and event.kind is FailureKind.OUT_OF_MEMORY


async def test_runner_shutdown_keeps_every_job_tells_it_and_refuses_more(
    backend_and_runner: Runner,
) -> None:
    backend, runner = backend_and_runner
    running, waiting = RecordingReporter(), RecordingReporter()
    runner.submit(job("a1"), A, running)
    runner.submit(job("b1"), B, waiting)
    await runner.shutdown(grace=5)
    assert backend.handles["a1"].cancelled  # the running job was stopped…
    for reporter in (running, waiting):  # …and neither job ended: both resume after a restart
        assert reporter.final.result() == Interrupted(engine_broken=False)
    with pytest.raises(ShuttingDown):
        runner.submit(job("c1"), C, RecordingReporter())


async def test_a_cancel_before_a_shutdown_still_ends_cancelled(backend_and_runner: Runner) -> None:
    backend, runner = backend_and_runner
    reporter = RecordingReporter()
    runner.submit(job("a1"), A, reporter)
    # The engine takes its time to stop the job: the shutdown comes before its final event.
    handle = backend.handles["a1"]
    handle.cancel = lambda: setattr(handle, "cancelled", True)  # type: ignore[method-assign]
    assert runner.cancel("a1", by_user_id=A)
    stopping = asyncio.create_task(runner.shutdown(grace=5))
    await asyncio.sleep(0)  # the shutdown runs up to its wait
    assert not runner.accepting
    handle.push(Cancelled("a1", "Cancelled on request."))
    await stopping
    event = await reporter.final
    assert isinstance(event, Cancelled) and event.reason == ON_REQUEST  # not kept to resume


async def test_reporting_that_outlasts_the_shutdown_is_abandoned_quietly(
    backend_and_runner: Runner,
) -> None:
    _, runner = backend_and_runner
    stuck = asyncio.Event()  # a status edit that never returns (a rate-limited channel)

    class SlowReporter(RecordingReporter):
        async def interrupted(self, *, engine_broken: bool) -> None:
            await stuck.wait()

    runner.submit(job("a1"), A, RecordingReporter())
    runner.submit(job("b1"), B, SlowReporter())
    await runner.shutdown(grace=0.01)
    assert runner.busy
    await runner.abandon()
    assert not runner.busy


async def test_resumed_jobs_are_never_refused_and_keep_their_old_order(
    backend_and_runner: Runner,
) -> None:
    backend, runner = backend_and_runner
    reporters = {name: RecordingReporter() for name in ("a1", "b1", "a2", "a3", "c1")}
    # Before the restart the fair queue had them in this order; A's three jobs are more than
    # the limit allows now.
    for name, user in (("a1", A), ("b1", B), ("a2", A), ("a3", A)):
        runner.submit(job(name), user, reporters[name], resumed=True)
    assert backend.submitted == ["a1"]
    assert [reporters[n].positions[-1] for n in ("b1", "a2", "a3")] == [1, 2, 3]
    with pytest.raises(UserLimitReached):
        runner.submit(job("a4"), A, RecordingReporter())
    # A first job sent after the restart goes behind every resumed one.
    runner.submit(job("c1"), C, reporters["c1"])
    assert reporters["c1"].positions == [4]


async def test_the_runner_reports_the_order_jobs_will_start_in() -> None:
    backend = ScriptedBackend(capacity=1)
    orders: list[list[str]] = []
    runner = JobRunner(backend, per_user=2, max_waiting=10, on_order=orders.append)  # type: ignore[arg-type]
    for name, user in (("a1", A), ("a2", A), ("b1", B)):
        runner.submit(job(name), user, RecordingReporter())
    # b1, a first job, overtook a2: the order differs from the order of arrival.
    assert orders == [["a2"], ["b1", "a2"]]
    backend.handles["a1"].push(done("a1"))
    await runner.wait_idle(5)
    assert orders[-1] == ["a2"]
    await runner.shutdown(grace=5)


async def test_a_broken_engine_keeps_the_job_and_stops_the_bot() -> None:
    backend = ScriptedBackend(capacity=1)
    calls: list[str] = []
    runner = JobRunner(
        backend,  # type: ignore[arg-type]
        per_user=2,
        max_waiting=10,
        on_engine_broken=lambda: calls.append("broken"),
    )
    first, second = RecordingReporter(), RecordingReporter()
    runner.submit(job("a1"), A, first)
    runner.submit(job("b1"), B, second)
    backend.broken = True  # a1's worker died and could not be replaced
    backend.handles["a1"].push(Failed("a1", FailureKind.WORKER_CRASHED, "crashed"))
    assert isinstance(await first.final, Failed)
    # b1 was refused by the engine: not failed, kept for after the restart, and its user told.
    assert await second.final == Interrupted(engine_broken=True)
    assert calls == ["broken"]
    assert runner.engine_broken and not runner.accepting
    await runner.shutdown(grace=5)
    assert calls == ["broken"]
