"""The job service (bot.jobs) over a real journal in a temporary folder, a backend double and a
front end double: accept, follow-ups, resume, retention, shutdown and the outbox, in
milliseconds, with no Discord and no engine."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot import i18n, messages
from bot.i18n import Words
from bot.jobs.followups import RULES
from bot.jobs.frontend import StatusContext
from bot.jobs.outbox import Retry, Undeliverable
from bot.jobs.policy import PolicyBook, utc_day
from bot.jobs.queue import UserLimitReached
from bot.jobs.runner import ShuttingDown
from bot.jobs.service import MAX_RUNS, JobPolicy, JobService, Submission, rebuild_job
from bot.journal import Conversation, Derivation, JobRecord, Journal, NewJob, OutboxItem
from engine.backend import JobHandle, JobStream
from engine.jobs import (
    Cancelled,
    Done,
    Failed,
    FailureKind,
    Job,
    JobProgress,
    JobStats,
    Started,
    new_job_id,
)
from engine.settings import StylizeSettings

ROOT = Path(__file__).resolve().parents[1]
OWNER, OTHER = 42, 43
EN = i18n.lang("en-US")
POLICY = JobPolicy(
    per_user=2,
    max_waiting=10,
    job_timeout=60.0,
    keep_seconds=3600.0,
    preview_interval=2.0,
    max_size=64,
    standard_steps=4,
)


# --- doubles --------------------------------------------------------------------------------


class FakeBackend:
    """A backend whose jobs end when the test says; it records what it is given and asked."""

    def __init__(self, capacity: int = 1, *, hold_cancels: bool = False) -> None:
        """``hold_cancels``: a cancelled job ends only when the test says (as a job stops at
        its next step); else at once."""
        self._capacity = capacity
        self._hold_cancels = hold_cancels
        self._listeners: list[Callable[[int], None]] = []
        self.streams: dict[str, JobStream] = {}
        self.jobs: dict[str, Job] = {}
        self.cancels: list[str] = []
        self.devices: tuple[str, ...] = ("cpu",)
        self.broken = False

    @property
    def capacity(self) -> int:
        return self._capacity

    def resize(self, capacity: int) -> None:
        self._capacity = capacity
        for listener in self._listeners:
            listener(capacity)

    def add_capacity_listener(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        pass

    async def close(self, grace: float = 10.0) -> None:
        pass

    def submit(self, job: Job) -> JobHandle:
        def cancel() -> None:
            self.cancels.append(job.id)
            if not self._hold_cancels:
                self.stopped(job.id)

        stream = JobStream(job.id, cancel)
        self.streams[job.id] = stream
        self.jobs[job.id] = job
        return stream.handle

    def run(self, job_id: str) -> None:
        self.streams[job_id].emit(Started(job_id, 0))

    def done(self, job_id: str) -> None:
        stats = JobStats(1.0, 1, 16, 12, self.jobs[job_id].settings.seed or 0, {})
        self.streams[job_id].emit(Done(job_id, b"picture", "png", stats))

    def fail(self, job_id: str, kind: FailureKind) -> None:
        self.streams[job_id].emit(Failed(job_id, kind, "it went wrong"))

    def stopped(self, job_id: str) -> None:
        if not self.streams[job_id].ended:
            self.streams[job_id].emit(Cancelled(job_id, "stopped by the engine"))


class FakeStatus:
    """One job's ``JobStatus``: records what its member would see."""

    def __init__(self, context: StatusContext, *, resumed: bool) -> None:
        self.context = context
        self.resumed = resumed
        self.shown: list[object] = []
        self.notices: list[tuple[str, bool]] = []

    def queued(self, position: int) -> None:
        self.shown.append(position)

    def progress(self, event: Started | JobProgress) -> None:
        self.shown.append(event)

    def cancel_requested(self, by_user_id: int) -> None:
        self.shown.append(("cancel", by_user_id))

    async def settle(self) -> None:
        pass

    async def notice(self, text: Words, *, tell: bool) -> None:
        self.notices.append((text(EN), tell))

    async def post_result(self, record: JobRecord, image: bytes) -> None:
        raise AssertionError("the journal keeps results here: the outbox posts them")


class FakeFrontend:
    """Makes ``FakeStatus``es and delivers outbox items as scripted (default: posted)."""

    def __init__(self) -> None:
        self.statuses: dict[str, FakeStatus] = {}
        self.resumed: list[str] = []
        self.delivered: list[OutboxItem] = []
        self.script: list[BaseException | int] = []
        self.delivering = asyncio.Event()

    def status(self, record: JobRecord, context: StatusContext) -> FakeStatus:
        self.resumed.append(record.id)
        return self._made(context, resumed=True)

    def live(self, context: StatusContext) -> FakeStatus:
        return self._made(context, resumed=False)

    def _made(self, context: StatusContext, *, resumed: bool) -> FakeStatus:
        status = self.statuses[context.job_id] = FakeStatus(context, resumed=resumed)
        return status

    async def deliver(self, item: OutboxItem) -> int | None:
        self.delivered.append(item)
        self.delivering.set()
        outcome = self.script.pop(0) if self.script else 1000 + len(self.delivered)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


# --- fixtures and helpers -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def journal(tmp_path: Path, clock: Clock) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path / "data", clock=clock, sync_files=False)
    yield journal
    await journal.close()


@dataclasses.dataclass
class World:
    service: JobService
    backend: FakeBackend
    frontend: FakeFrontend
    journal: Journal


def make_world(
    journal: Journal,
    *,
    capacity: int = 1,
    hold_cancels: bool = False,
    policy: JobPolicy = POLICY,
    **options: Any,
) -> World:
    backend, frontend = FakeBackend(capacity, hold_cancels=hold_cancels), FakeFrontend()
    service = JobService(journal, backend, frontend, policy, **options)
    return World(service, backend, frontend, journal)


@contextlib.asynccontextmanager
async def started(world: World) -> AsyncIterator[World]:
    await world.service.start()
    try:
        yield world
    finally:
        await world.service.stop(grace=1)
        await world.service.close(limit=1)


@pytest.fixture
async def world(journal: Journal) -> AsyncIterator[World]:
    async with started(make_world(journal)) as world:
        yield world


async def state_of(journal: Journal, job_id: str) -> str | None:
    record = await journal.get(job_id)
    return None if record is None else record.state


def conversation(user_id: int = OWNER) -> Conversation:
    return Conversation(user_id, 7, 8, 9, 10, "token", 1e12, 1024)


def settings(**changes: Any) -> StylizeSettings:
    return dataclasses.replace(StylizeSettings(size=48, steps=4, strength=1.0, seed=5), **changes)


async def accept(world: World, user_id: int = OWNER, **changes: Any) -> Job:
    """A job as /stylize sends it: its inputs staged, then accepted."""
    job_id = new_job_id()
    async with world.service.staging(job_id) as stage:
        stage([b"content-" + job_id.encode(), b"style"])
    submission = Submission(
        job_id, conversation(user_id), b"content-" + job_id.encode(), (b"style",),
        settings(**changes),
    )  # fmt: skip
    return await world.service.accept(submission, world.frontend.live)


def outbox_rows(journal: Journal) -> list[tuple[str, str, str, str, int | None, str | None]]:
    """Each outbox item's (job id, kind, text, state, posted message id, last error)."""
    with sqlite3.connect(journal.path) as db:
        return db.execute(
            "SELECT job_id, kind, text, state, message_id, last_error FROM outbox ORDER BY id"
        ).fetchall()


async def settled(world: World) -> None:
    """Every job reported, and the outbox has nothing due."""
    assert await world.service.runner.wait_idle(5)
    assert await world.service.outbox.wait_idle(5)


# --- the core imports no Discord ------------------------------------------------------------


def test_the_job_core_imports_no_discord() -> None:
    code = (
        "import sys, bot.jobs.service, bot.jobs.tracker, bot.jobs.followups\n"
        "assert 'discord' not in sys.modules, 'discord'\n"
        "assert 'torch' not in sys.modules, 'torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- accept ---------------------------------------------------------------------------------


async def test_a_job_is_journaled_then_queued_and_its_result_delivered(world: World) -> None:
    job = await accept(world, seed=11)
    record = await world.journal.get(job.id)
    assert record is not None and record.state == "queued" and record.seed == 11
    assert record.conversation == conversation()
    assert await world.journal.inputs(job.id, 1) == (b"content-" + job.id.encode(), (b"style",))
    # Queued on the backend with the policy's preview interval and the upload limit.
    submitted = world.backend.jobs[job.id]
    assert (submitted.preview_interval, submitted.max_bytes) == (2.0, 1024)
    status = world.frontend.statuses[job.id]
    assert status.context.headline is None and not status.resumed

    world.backend.run(job.id)
    world.backend.done(job.id)
    await settled(world)
    record = await world.journal.get(job.id)
    assert record is not None and record.state == "done" and record.runs == 1
    assert await world.journal.result(job.id, "png") == b"picture"
    [item] = world.frontend.delivered
    assert (item.job_id, item.kind) == (job.id, "result")
    assert outbox_rows(world.journal) == [(job.id, "result", "", "delivered", 1001, None)]


async def test_a_refused_job_is_forgotten_and_places_count(world: World) -> None:
    for _ in range(POLICY.per_user):
        await accept(world)
    with pytest.raises(UserLimitReached):
        await accept(world)
    assert len(await world.journal.unfinished()) == POLICY.per_user  # the refused one is gone
    with pytest.raises(UserLimitReached), world.service.place(OWNER):
        pass
    # Places held while downloading count like queued jobs.
    with (
        world.service.place(OTHER),
        world.service.place(OTHER),
        pytest.raises(UserLimitReached),
        world.service.place(OTHER),
    ):
        pass


@pytest.mark.parametrize(
    "counted", [FailureKind.BAD_INPUT, FailureKind.TIMEOUT, FailureKind.OUT_OF_MEMORY]
)
async def test_a_job_that_fails_through_no_fault_of_its_member_is_not_counted(
    journal: Journal, clock: Clock, counted: FailureKind
) -> None:
    guild = conversation().guild_id
    assert guild is not None
    book = PolicyBook(journal, clock=clock)
    async with started(make_world(journal, policies=book)) as world:
        crashed, bad = await accept(world), await accept(world)
        assert book.used_today(guild, OWNER) == 2
        world.backend.run(crashed.id)
        world.backend.fail(crashed.id, FailureKind.WORKER_CRASHED)
        await settled(world)
        assert book.used_today(guild, OWNER) == 1  # "try again" costs no job
        world.backend.run(bad.id)
        world.backend.fail(bad.id, counted)  # the member is told to ask for less
        await settled(world)
        assert book.used_today(guild, OWNER) == 1
        await book.drain()
    again = PolicyBook(journal, clock=clock)  # after a restart, too
    await again.load()
    assert again.used_today(guild, OWNER) == 1


async def test_staged_inputs_of_a_failed_intake_are_removed(world: World) -> None:
    job_id = new_job_id()
    with pytest.raises(RuntimeError):
        async with world.service.staging(job_id) as stage:
            stage([b"content", b"style"])
            raise RuntimeError("the style is not an image")
    assert not world.journal.job_dir(job_id).exists()


# --- follow-ups -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(RULES))
async def test_a_follow_up_of_each_kind(journal: Journal, kind: str) -> None:
    # The seed source draws the parent's seed first: a re-roll must not take it.
    draws = iter([5, 77])
    async with started(make_world(journal, seeds=lambda: next(draws))) as world:
        parent_job = await accept(world, seed=5, strength=2.0)
        world.backend.done(parent_job.id)
        await settled(world)
        parent = await world.service.parent(parent_job.id)
        assert parent is not None
        job = await world.service.follow_up(parent, kind, conversation(OTHER), world.frontend.live)
        assert job is not None and job.id != parent.id
        record = await journal.get(job.id)
        assert record is not None
        assert record.derivation == Derivation(parent.id, kind, 5)
        assert record.conversation.user_id == OTHER  # whoever clicked owns it
        expected = {"reroll": (2.0, 77), "stronger": (4.0, 5), "weaker": (1.0, 5),
                    "bigger": (2.0, 5)}[kind]  # fmt: skip
        assert (job.settings.strength, job.settings.seed) == expected
        # Bigger: twice the side, up to the cap (64 here).
        assert (job.settings.size, job.settings.steps) == (64 if kind == "bigger" else 48, 4)
        # Its own copy of the parent's pictures, queued on the backend.
        assert await journal.inputs(job.id, 1) == (parent_job.content, parent_job.styles)
        assert world.backend.jobs[job.id].content == parent_job.content
        # Bigger starts from the parent's result; the others from the photo.
        started_from = b"picture" if kind == "bigger" else None
        assert world.backend.jobs[job.id].initial == started_from
        assert record.has_initial is (started_from is not None)
        headline = world.frontend.statuses[job.id].context.headline
        assert headline is not None
        assert headline(EN) == RULES[kind].headline(job.settings.to_dict(), 5)(EN)


async def test_a_follow_up_keeps_within_the_limits_of_now_and_says_so(
    journal: Journal,
) -> None:
    world = make_world(journal, policy=dataclasses.replace(POLICY, max_size=32))
    async with started(world):
        parent_job = await accept(world, size=48)
        parent = await world.service.parent(parent_job.id)
        assert parent is not None
        job = await world.service.follow_up(parent, "weaker", conversation(), world.frontend.live)
        assert job is not None and job.settings.size == 32
        headline = world.frontend.statuses[job.id].context.headline
        assert headline is not None
        assert headline(EN).splitlines() == [
            messages.weaker_headline(EN, 0.5, 5),
            messages.follow_up_lowered(EN, 32, 4),
        ]


async def test_bigger_continues_a_256_px_result_at_512_then_stops_at_the_cap(
    journal: Journal,
) -> None:
    world = make_world(journal, policy=dataclasses.replace(POLICY, max_size=512))
    async with started(world):
        first = await accept(world, size=256, strength=3.0)
        world.backend.done(first.id)
        await settled(world)
        parent = await world.service.parent(first.id)
        assert parent is not None and world.service.applies(parent, "bigger")
        job = await world.service.follow_up(parent, "bigger", conversation(), world.frontend.live)
        assert job is not None
        assert (job.settings.size, job.settings.strength, job.settings.seed) == (512, 3.0, 5)
        assert (job.content, job.styles, job.initial) == (first.content, first.styles, b"picture")
        headline = world.frontend.statuses[job.id].context.headline
        assert headline is not None and headline(EN) == messages.bigger_headline(EN, 512, 5)
        # The 512 px result is at the cap: no Bigger of it.
        world.backend.done(job.id)
        await settled(world)
        at_cap = await world.service.parent(job.id)
        assert at_cap is not None and not world.service.applies(at_cap, "bigger")
        assert world.service.applies(at_cap, "reroll")


async def test_a_bigger_job_resumes_from_its_kept_start(journal: Journal) -> None:
    world = make_world(journal)
    async with started(world):
        first = await accept(world)
        world.backend.done(first.id)
        await settled(world)
        parent = await world.service.parent(first.id)
        assert parent is not None
        job = await world.service.follow_up(parent, "bigger", conversation(), world.frontend.live)
        assert job is not None
    # The bot restarted with the Bigger job still queued: it resumes from the same start.
    async with started(make_world(journal)) as again:
        assert again.backend.jobs[job.id].initial == b"picture"
        headline = again.frontend.statuses[job.id].context.headline
        assert headline is not None and headline(EN) == messages.bigger_headline(EN, 64, 5)
        # Without its start (lost from the disk), it is ended with a notice, not painted
        # from the photo.
    await journal.add(NewJob(new_job_id(), conversation(), settings().to_dict(), 5, b"c",
                             (b"s",), Derivation(first.id, "bigger", 5)))  # fmt: skip
    [lost] = [r for r in await journal.unfinished() if not r.has_initial]
    stub = dataclasses.replace(lost, has_initial=True)
    assert await rebuild_job(journal, stub, preview_interval=0) == messages.later(
        messages.inputs_lost
    )


async def test_bigger_of_a_job_whose_result_was_never_kept_makes_nothing(world: World) -> None:
    first = await accept(world)
    world.backend.done(first.id)
    await settled(world)
    parent = await world.service.parent(first.id)
    assert parent is not None
    for leftover in world.journal.job_dir(first.id).glob("result.*"):
        leftover.unlink()
    assert await world.service.follow_up(parent, "bigger", conversation(),
                                         world.frontend.live) is None  # fmt: skip
    unkept = dataclasses.replace(parent, result_format=None)
    assert await world.service.follow_up(unkept, "bigger", conversation(),
                                         world.frontend.live) is None  # fmt: skip


async def test_a_follow_up_of_a_job_whose_pictures_went_makes_nothing(world: World) -> None:
    parent_job = await accept(world)
    parent = await world.service.parent(parent_job.id)
    assert parent is not None
    shutil.rmtree(world.journal.job_dir(parent_job.id))  # purged between the click and now
    assert await world.service.parent(parent_job.id) is None
    job = await world.service.follow_up(parent, "reroll", conversation(), world.frontend.live)
    assert job is None
    assert [r.id for r in await world.journal.unfinished()] == [parent_job.id]


# --- resume ---------------------------------------------------------------------------------


async def add(journal: Journal, job_id: str, *, derivation: Derivation | None = None) -> None:
    job_settings = settings().to_dict()
    await journal.add(NewJob(job_id, conversation(), job_settings, 5, b"content", (b"style",),
                             derivation))  # fmt: skip


async def test_unfinished_jobs_resume_in_their_old_order(journal: Journal) -> None:
    a, b, c = (f"{n:032x}" for n in (0xA, 0xB, 0xC))
    for job_id in (a, b, c):
        await add(journal, job_id, derivation=Derivation(a, "stronger", 5) if job_id == c else None)
    await journal.set_order([c, a, b])
    await journal.mark_running(b)  # b was running when the bot stopped
    # No worker yet (capacity 0): the order is the queue's.
    async with started(make_world(journal, capacity=0)) as world:
        assert world.frontend.resumed == [b, c, a]
        assert [world.service.runner.position(j) for j in (b, c, a)] == [1, 2, 3]
        world.backend.resize(3)
        assert list(world.backend.jobs) == [b, c, a]
        assert all(world.frontend.statuses[j].resumed for j in (a, b, c))
        headline = world.frontend.statuses[c].context.headline
        assert headline is not None and headline(EN) == messages.stronger_headline(EN, 1.0, 5)


@pytest.mark.parametrize("why", ["crashed too often", "pictures lost"])
async def test_a_job_that_cannot_run_again_is_given_up_with_a_notice(
    journal: Journal, clock: Clock, why: str
) -> None:
    kept, lost = f"{1:032x}", f"{2:032x}"
    guild = conversation().guild_id
    assert guild is not None
    for job_id in (lost, kept):  # both counted against the member's quota when accepted
        await add(journal, job_id)
        await journal.add_usage(guild, OWNER, utc_day(clock.now))
    if why == "crashed too often":
        for _ in range(MAX_RUNS):  # each time the bot died while running it
            await journal.mark_running(lost)
        words = messages.later(messages.keeps_crashing).dumps()
    else:
        shutil.rmtree(journal.job_dir(lost))
        words = messages.later(messages.inputs_lost).dumps()
    book = PolicyBook(journal, clock=clock)
    async with started(make_world(journal, policies=book)) as world:
        assert await world.service.outbox.wait_idle(5)
        assert list(world.backend.jobs) == [kept]
        assert await state_of(journal, lost) == "failed"
        assert outbox_rows(journal) == [(lost, "notice", words, "delivered", 1001, None)]
        assert book.used_today(guild, OWNER) == 1  # the lost one is given back


# --- retention ------------------------------------------------------------------------------


async def test_expired_jobs_are_purged_at_start_and_then_every_sweep(
    journal: Journal, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, recent = f"{1:032x}", f"{2:032x}"
    for job_id in (old, recent):
        await add(journal, job_id)
        await journal.finish(job_id, "failed", outcome={}, deliver="notice", text="❌")
        for item in await journal.outbox_pending():  # a job is kept until it is delivered
            await journal.delivered(item.id, 1)
        clock.now += 3000
    sweeps: list[int] = []
    swept = asyncio.Event()
    purge = journal.purge

    async def counted(keep_seconds: float) -> int:
        purged = await purge(keep_seconds)
        sweeps.append(purged)
        swept.set()
        return purged

    monkeypatch.setattr(journal, "purge", counted)
    world = make_world(journal, policy=dataclasses.replace(POLICY, retention_every=0.01))
    # At the start, old ended 6000 s ago and recent 3000 s ago; jobs are kept 3600 s.
    async with started(world):
        assert sweeps == [1]
        assert await state_of(journal, old) is None
        assert await state_of(journal, recent) == "failed"
        clock.now += 1000

        async def until_recent_is_gone() -> None:
            while await journal.get(recent) is not None:
                swept.clear()
                await swept.wait()

        await asyncio.wait_for(until_recent_is_gone(), 5)
    assert sum(sweeps) == 2 and len(sweeps) >= 2


# --- shutdown -------------------------------------------------------------------------------


async def test_a_shutdown_keeps_running_jobs_but_a_cancel_asked_for_wins(
    journal: Journal,
) -> None:
    world = make_world(journal, capacity=2, hold_cancels=True)
    await world.service.start()
    cancelled = await accept(world, user_id=OWNER)
    kept = await accept(world, user_id=OTHER)
    waiting = await accept(world, user_id=OTHER)
    for job_id in (cancelled.id, kept.id):
        world.backend.run(job_id)
    assert world.service.owner(cancelled.id) == OWNER
    assert world.service.cancel(cancelled.id, OTHER)  # a moderator; the engine stops it soon
    stopping = asyncio.create_task(world.service.stop(grace=5))
    await asyncio.sleep(0)  # the shutdown has asked the engine to stop the other one
    assert world.backend.cancels == [cancelled.id, kept.id]
    with pytest.raises(ShuttingDown), world.service.place(OWNER):
        pass
    for job_id in (cancelled.id, kept.id, waiting.id):
        if job_id in world.backend.streams:
            world.backend.stopped(job_id)
    await stopping
    await world.service.close(limit=1)

    states = [await state_of(journal, j.id) for j in (cancelled, kept, waiting)]
    assert states == ["cancelled", "queued", "queued"]
    by_moderator = messages.later(messages.cancelled, messages.mention(OTHER), own=False).dumps()
    assert outbox_rows(journal) == [(cancelled.id, "status", by_moderator, "delivered", 1001, None)]
    restarting = (messages.restarting(EN, engine_broken=False), False)
    assert world.frontend.statuses[kept.id].notices == [restarting]
    assert world.frontend.statuses[waiting.id].notices == [restarting]
    assert world.frontend.statuses[cancelled.id].notices == []
    # Back first after the restart: the job that was running.
    assert [r.id for r in await journal.unfinished()] == [kept.id, waiting.id]


# --- the outbox -----------------------------------------------------------------------------


async def test_an_item_to_retry_waits_and_an_undeliverable_one_is_recorded_so(
    world: World,
) -> None:
    world.frontend.script = [Retry("HTTP 503, code 0"), Undeliverable("every route refused")]
    first, second = await accept(world, user_id=OWNER), await accept(world, user_id=OTHER)
    world.backend.done(first.id)
    await settled(world)
    world.backend.done(second.id)
    await settled(world)
    [retried] = await world.journal.outbox_pending()
    assert (retried.job_id, retried.attempts) == (first.id, 1)
    assert retried.next_at > 0  # its next try is scheduled, in the journal
    assert outbox_rows(world.journal)[1] == (
        second.id, "result", "", "failed", None, "every route refused"
    )  # fmt: skip
    assert [i.job_id for i in world.frontend.delivered] == [first.id, second.id]


# --- server policy: quotas, deletion, forgetting a member --------------------------------------


async def test_accepted_jobs_count_against_the_days_quota(world: World) -> None:
    from bot.jobs.policy import DailyQuotaReached, MemberContext
    from bot.journal import RoleLimit

    member = MemberContext(OWNER, 7, 8, (7,))
    await world.service.policies.set_role_limit(7, RoleLimit(7, 1, None))
    admission = world.service.admit(member)
    with world.service.place(OWNER, member=member, admission=admission):
        # While this one is prepared, another command of theirs can't take the same place.
        with (
            pytest.raises(DailyQuotaReached),
            world.service.place(OWNER, member=member, admission=admission),
        ):
            pass
        await accept(world)
    with pytest.raises(DailyQuotaReached):
        world.service.admit(member)
    # Another member, and the same member in another server, are not affected.
    assert world.service.admit(dataclasses.replace(member, user_id=OTHER))
    assert world.service.admit(dataclasses.replace(member, guild_id=70))


async def test_a_deleted_result_refuses_its_follow_ups(world: World) -> None:
    from bot.jobs.service import ResultDeleted

    job = await accept(world)
    world.backend.done(job.id)
    await settled(world)
    assert await world.service.parent(job.id) is not None
    assert await world.service.delete_result(job.id)
    assert not world.journal.job_dir(job.id).exists()
    with pytest.raises(ResultDeleted):
        await world.service.parent(job.id)
    assert not await world.service.delete_result(new_job_id())


async def test_forget_cancels_the_members_jobs_before_deleting_them(journal: Journal) -> None:
    async with started(make_world(journal, hold_cancels=True)) as world:
        running = await accept(world)
        waiting = await accept(world)
        others = await accept(world, OTHER)
        world.backend.run(running.id)
        forgetting = asyncio.create_task(world.service.forget(OWNER, 7, by_member=True))
        await asyncio.sleep(0)
        # The running job stops at its next step: until then, nothing is deleted.
        await asyncio.wait_for(_until(lambda: running.id in world.backend.cancels), 5)
        assert not forgetting.done() and await journal.get(running.id) is not None
        world.backend.stopped(running.id)
        forgotten = await asyncio.wait_for(forgetting, 5)
        assert forgotten.jobs == 2
        for job in (running, waiting):
            assert await journal.get(job.id) is None
            assert not journal.job_dir(job.id).exists()
        # Their "cancelled" statuses went out before the rows that hold them.
        assert {item.job_id for item in world.frontend.delivered} == {running.id, waiting.id}
        assert world.service.owner(others.id) == OTHER  # another member's job goes on
        world.service.cancel(others.id, OTHER)
        world.backend.stopped(others.id)
        await settled(world)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)
