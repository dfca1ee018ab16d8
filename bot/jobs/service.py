"""The job service: one object that runs the lifecycle of every job, over the journal and the
engine's backend, with no Discord in it.

* **Accept**: a member's job is journaled (its inputs already staged), then queued.
* **Follow-up**: a button's job reads its parent's record, links its inputs (and, for a job
  that continues the parent's picture, its result), derives its settings by the follow-up
  table (``bot.jobs.followups``), and is accepted like any other.
* **Resume**: at start-up every job the journal holds unfinished is queued again, in its old
  order; one that can't run again (its pictures gone, or it kept killing the bot) is ended
  with a notice.
* **Retention**: expired jobs are purged at start-up, then every hour.
* **Shutdown**: ``stop`` takes no more jobs and stops the running ones (they go back to the
  journal's queue); ``close`` lets what is due be delivered, within a limit.

The bot (``bot.client``) owns the journal and the backend and hands them in; the front end
(``bot.jobs.frontend``) shows members their jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from bot import messages
from bot.i18n import Words
from bot.jobs import followups, origins
from bot.jobs.followups import Ceiling, SeedSource
from bot.jobs.frontend import Frontend, JobStatus, StatusContext, StatusFactory
from bot.jobs.observer import NO_OBSERVER, JobObserver, JobOutcome
from bot.jobs.outbox import Outbox
from bot.jobs.policy import Admission, MemberContext, PolicyBook, day_start, gives_back
from bot.jobs.queue import QueueRefusal, Reservations
from bot.jobs.runner import JobRunner, ShuttingDown
from bot.jobs.settings import steps_for
from bot.jobs.tracker import JobTracker
from bot.journal import (
    Conversation,
    DayCount,
    Derivation,
    Forgotten,
    JobRecord,
    Journal,
    NewJob,
    Origin,
)
from engine.backend import Backend
from engine.jobs import Failed, Job, new_job_id
from engine.settings import StylizeSettings

log = logging.getLogger(__name__)

MAX_RUNS = 3
"""A job that was running when the bot died this many times is given up, not resumed again."""
DAY = 86400.0
RETENTION_EVERY = 3600.0
"""Seconds between two sweeps of expired jobs (one also runs at every start)."""


@dataclass(frozen=True)
class JobPolicy:
    """The bot's settings that the job lifecycle follows."""

    per_user: int
    """Jobs a member may have queued or running (``STYLIZE_QUEUE_PER_USER``)."""
    max_waiting: int
    """Jobs that may wait (``STYLIZE_QUEUE_SIZE``)."""
    job_timeout: float
    keep_seconds: float
    """How long a finished job is kept (``STYLIZE_KEEP_DAYS``)."""
    preview_interval: float
    """Seconds between previews a job asks the engine for; 0: none."""
    max_size: int
    """``STYLIZE_MAX_SIZE``: a follow-up asks for no more."""
    standard_steps: int
    """``STYLIZE_STEPS``: a follow-up asks for no more than ``quality: high`` would."""
    retention_every: float = RETENTION_EVERY


@dataclass(frozen=True)
class Submission:
    """A job a member asked for, its inputs already staged in the journal."""

    job_id: str
    conversation: Conversation
    content: bytes
    styles: tuple[bytes, ...]
    settings: StylizeSettings
    """Resolved: its seed is fixed, so a job resumed after a restart paints the same picture."""
    derivation: Derivation | None = None
    note: Words | None = None
    """A line for its status, under the headline."""
    origin: Origin | None = None
    """The message menu whose picture it paints, if one did."""
    initial: bytes | None = None
    """The image it starts from (an earlier result, continued larger), already staged."""
    spoiler: bool = False
    """Post its result as a spoiler (``Admission.spoiler``)."""


class ResultDeleted(Exception):
    """A follow-up of a result that was deleted with its Delete button."""


@dataclass(frozen=True)
class ServiceStatus:
    """What ``/stylize-admin status`` shows."""

    waiting: int
    running: int
    capacity: int
    devices: tuple[str, ...]
    outbox_backlog: int
    today: DayCount
    """The server's jobs and failures since UTC midnight."""


async def rebuild_job(
    journal: Journal, record: JobRecord, *, preview_interval: float
) -> Job | messages.Text:
    """The engine job of an unfinished journal record, or why it can't run again (words for
    its user): its inputs are gone, or the bot died while running it too often."""
    if record.runs >= MAX_RUNS:
        log.error("job %s: the bot died %d times while running it; giving up", record.id,
                  record.runs)  # fmt: skip
        return messages.later(messages.keeps_crashing)
    try:
        content, styles = await journal.inputs(record.id, record.style_count)
        initial = await journal.initial(record.id) if record.has_initial else None
        return Job(
            content=content,
            styles=styles,
            settings=StylizeSettings.from_dict(record.settings),
            max_bytes=record.conversation.upload_limit,
            preview_interval=preview_interval,
            id=record.id,
            initial=initial,
        )
    except (OSError, ValueError, TypeError) as error:  # EngineError is a ValueError
        log.error("job %s: cannot be resumed (%s)", record.id, type(error).__name__)
        return messages.later(messages.inputs_lost)


class JobService:
    def __init__(
        self,
        journal: Journal,
        backend: Backend,
        frontend: Frontend,
        policy: JobPolicy,
        *,
        on_engine_broken: Callable[[], None] | None = None,
        seeds: SeedSource = followups.random_seed,
        policies: PolicyBook | None = None,
        observer: JobObserver = NO_OBSERVER,
    ) -> None:
        """``on_engine_broken``: called once if the backend refuses jobs for good (the bot
        must stop; the jobs are kept). ``seeds``: where re-rolls draw their seeds.
        ``policies``: the servers' policies (by default, the journal's). ``observer``: hears
        each job's wait, run time and outcome (``bot.metrics``)."""
        self.journal = journal
        self.backend = backend
        self.policies = policies if policies is not None else PolicyBook(journal)
        self._observer = observer
        self.frontend = frontend
        self.policy = policy
        self._seeds = seeds
        self.runner = JobRunner(
            backend,
            per_user=policy.per_user,
            max_waiting=policy.max_waiting,
            on_engine_broken=on_engine_broken,
            on_order=lambda job_ids: self._spawn(self.journal.set_order(job_ids)),
            observer=observer,
        )
        self.outbox = Outbox(journal, frontend.deliver)
        self.reservations = Reservations(policy.per_user)
        self._writes: set[asyncio.Task[Any]] = set()
        self._retention: asyncio.Task[None] | None = None
        self._closed = False

    # Start-up

    async def start(self) -> None:
        """The backend is running: purge what expired, resume the journal's unfinished jobs,
        and start delivering and sweeping."""
        await self.policies.load()
        await self.purge()
        await self.resume()
        self.outbox.start()
        self._retention = asyncio.get_running_loop().create_task(self._retention_loop())

    async def resume(self) -> int:
        """Queue again every job the journal holds unfinished, in its old order; returns how
        many were."""
        started = time.perf_counter()
        records = await self.journal.unfinished()
        resumed = 0
        for record in records:
            if not self.runner.accepting:  # a signal came while resuming: the rest stay kept
                break
            rebuilt = await rebuild_job(
                self.journal, record, preview_interval=self.policy.preview_interval
            )
            if isinstance(rebuilt, messages.Text):
                await self.journal.finish(
                    record.id, "failed", outcome={"kind": "not_resumed"}, deliver="notice",
                    text=rebuilt.dumps(),
                )  # fmt: skip
                self._observer.job_ended(JobOutcome.NOT_RESUMED, None)
                self.policies.give_back(record.conversation.guild_id,
                                        record.conversation.user_id, record.created_at)  # fmt: skip
                self.outbox.kick()
                continue
            context = self._context(rebuilt.id, origins.headline_of(record))
            status = self.frontend.status(record, context)
            tracker = self._tracker(rebuilt.id, record.conversation, record.created_at, status)
            self.runner.submit(rebuilt, record.conversation.user_id, tracker, resumed=True)
            resumed += 1
        if records:
            log.info("resumed %d job(s) from the journal in %.0f ms", resumed,
                     (time.perf_counter() - started) * 1000)  # fmt: skip
        return resumed

    async def purge(self) -> int:
        """Delete the jobs kept longer than the policy says; returns how many went."""
        purged = await self.journal.purge(self.policy.keep_seconds)
        if purged:
            log.info("retention: deleted %d job(s) older than %g day(s)", purged,
                     self.policy.keep_seconds / DAY)  # fmt: skip
        return purged

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.policy.retention_every)
            try:
                await self.purge()
            except Exception:
                log.exception("retention: the sweep failed")

    # Taking jobs

    @property
    def accepting(self) -> bool:
        return self.runner.accepting

    def admit(self, member: MemberContext) -> Admission:
        """Check a member against their server's policy (in memory: call it before the
        acknowledgement, so a refusal can be private); raises a ``PolicyRefusal``."""
        return self.policies.admit(member)

    @contextlib.contextmanager
    def place(
        self, user_id: int, *, member: MemberContext | None = None,
        admission: Admission | None = None,
    ) -> Iterator[None]:  # fmt: skip
        """Hold the member's place in the per-user limit (and, with ``member`` and the
        ``admission`` it got, in their daily quota) while their job is prepared (before any
        download), so a burst of commands can't all download before all but a few are
        refused. Raises ``ShuttingDown``, ``UserLimitReached``, ``QueueFull`` or
        ``DailyQuotaReached``."""
        if not self.runner.accepting:
            raise ShuttingDown("not accepting jobs")
        self.runner.check(user_id)
        with contextlib.ExitStack() as stack:
            if member is not None and admission is not None:
                stack.enter_context(self.policies.hold(member, admission))
            stack.enter_context(self.reservations.reserve(user_id, self.runner.active(user_id)))
            yield

    @contextlib.asynccontextmanager
    async def staging(self, job_id: str) -> AsyncIterator[Callable[[list[bytes]], None]]:
        """Write a job's inputs to the journal while they are checked: yields ``stage``, to
        call with the bodies (content first) once they have arrived. On leaving, the writes
        have landed; if the block failed, what they wrote is removed."""
        writes: list[asyncio.Task[None]] = []

        def stage(bodies: list[bytes]) -> None:
            staged = self.journal.stage_inputs(job_id, bodies[0], tuple(bodies[1:]))
            writes.append(asyncio.get_running_loop().create_task(staged))

        try:
            yield stage
            for task in writes:
                await task
        except BaseException:
            if writes:
                await asyncio.gather(*writes, return_exceptions=True)
                await self.journal.discard(job_id)
            raise

    async def accept(self, submission: Submission, make_status: StatusFactory) -> Job:
        """Journal the job, then queue it; raises a ``QueueRefusal`` (the job forgotten)."""
        settings = submission.settings
        assert settings.seed is not None
        conversation = submission.conversation
        job = Job(
            content=submission.content,
            styles=submission.styles,
            settings=settings,
            max_bytes=conversation.upload_limit,
            preview_interval=self.policy.preview_interval,
            id=submission.job_id,
            initial=submission.initial,
        )
        # Durable before the member hears it is queued.
        await self.journal.add(
            NewJob(job.id, conversation, settings.to_dict(), settings.seed, job.content,
                   job.styles, submission.derivation, submission.spoiler,
                   submission.origin, initial=job.initial is not None),
            inputs_staged=True,
        )  # fmt: skip
        headline: Words | None = origins.headline(
            derivation=submission.derivation, origin=submission.origin,
            settings=settings.to_dict(), user_id=conversation.user_id,
        )  # fmt: skip
        if submission.note is not None:
            headline = _lines(headline, submission.note)
        status = make_status(self._context(job.id, headline))
        tracker = self._tracker(job.id, conversation, self.policies.now(), status)
        try:
            self.runner.submit(job, conversation.user_id, tracker)
        except QueueRefusal:
            await self.journal.discard(job.id)
            raise
        self.policies.record(conversation.guild_id, conversation.user_id)
        return job

    def ceiling(self, admission: Admission | None = None) -> Ceiling:
        """The most a follow-up may ask for under the policy now: the server's limits, and
        the size that the clicker's roles allow (``admission``) if known."""
        size = self.policy.max_size
        if admission is not None and admission.allowance.max_size:
            size = min(size, admission.allowance.max_size)
        return Ceiling(size=size, steps=steps_for("high", self.policy.standard_steps))

    def applies(self, parent: JobRecord, kind: str, admission: Admission | None = None) -> bool:
        """Whether a ``kind`` follow-up of ``parent`` would change anything under the policy
        now (its button may have been drawn under another), for a clicker of ``admission``."""
        return followups.RULES[kind].applies(parent.settings, self.ceiling(admission))

    async def parent(self, job_id: str) -> JobRecord | None:
        """The earlier job a follow-up derives from, if its pictures are still kept; raises
        ``ResultDeleted`` if its result was deleted."""
        record = await self.journal.get(job_id)
        if record is not None and record.deleted:
            raise ResultDeleted(job_id)
        if record is None or not await self.journal.has_inputs(job_id, record.style_count):
            return None
        return record

    async def follow_up(
        self,
        parent: JobRecord,
        kind: str,
        conversation: Conversation,
        make_status: StatusFactory,
        admission: Admission | None = None,
    ) -> Job | None:
        """Queue the job that a ``kind`` button (a key of ``followups.RULES``) makes of
        ``parent``, within the clicker's ``admission`` (their size cap; a spoiler or not);
        None if the parent's pictures (or its result, for a kind that continues it) went
        meanwhile."""
        admission = admission or Admission()
        job_id = new_job_id()
        initial = None
        try:
            await self.journal.link_inputs(parent.id, job_id, parent.style_count)
            content, styles = await self.journal.inputs(job_id, parent.style_count)
            if followups.RULES[kind].continues:
                if parent.result_format is None:  # never kept (a full disk)
                    raise FileNotFoundError(f"job {parent.id} kept no result")
                await self.journal.link_result(parent.id, parent.result_format, job_id)
                initial = await self.journal.initial(job_id)
        except OSError:  # purged between the check and the copy
            await self.journal.discard(job_id)
            return None
        # The server's limits now, not those of when the earlier job ran.
        seed = followups.new_seed(parent.seed, self._seeds)
        derived = followups.derive(
            parent.settings, kind, new_seed=seed, ceiling=self.ceiling(admission)
        )
        settings = StylizeSettings.from_dict(derived)
        note = None
        if followups.lowered(parent.settings, derived):
            note = messages.later(messages.follow_up_lowered, settings.size, settings.steps)
        submission = Submission(job_id, conversation, content, styles, settings,
                                Derivation(parent.id, kind, parent.seed), note,
                                spoiler=admission.spoiler, initial=initial)  # fmt: skip
        try:
            job = await self.accept(submission, make_status)
        except BaseException:
            await self.journal.discard(job_id)
            raise
        log.info("job %s: %s of job %s, queued for user %s", job.id, kind, parent.id,
                 conversation.user_id)  # fmt: skip
        return job

    # Running jobs

    def owner(self, job_id: str) -> int | None:
        """The member whose job it is, while it waits or runs."""
        return self.runner.owner(job_id)

    def cancel(self, job_id: str, by_user_id: int) -> bool:
        """Cancel a waiting or running job; False if it is not (or no longer) here."""
        return self.runner.cancel(job_id, by_user_id)

    async def delete_result(self, job_id: str) -> bool:
        """The Delete button: the job's files go, and its row says it was deleted."""
        deleted = await self.journal.delete_result(job_id)
        if deleted:
            log.info("job %s: result deleted", job_id)
        return deleted

    async def forget(
        self, user_id: int, guild_id: int | None, *, by_member: bool, limit: float = 10.0
    ) -> Forgotten:
        """Delete what the bot keeps about a member (in ``guild_id``; None: everywhere).
        Their unfinished jobs (and follow-ups of them) are cancelled first, and their ends
        awaited for up to ``limit`` s, so that nothing writes a row of theirs afterwards.
        ``by_member``: they asked themselves (blocks and today's count stay)."""
        unfinished = await self.journal.unfinished_of(user_id, guild_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        await self.runner.cancel_and_wait(unfinished, user_id, limit)
        if unfinished:  # their "cancelled" statuses go out before the rows that hold them go
            await self.outbox.wait_idle(max(0.0, deadline - loop.time()))
        await self.policies.drain()
        await asyncio.gather(*self._writes, return_exceptions=True)
        forgotten = await self.journal.forget(user_id, guild_id, keep_blocks=by_member)
        self.policies.forget(user_id, guild_id, by_member=by_member)
        log.info("forgot user %s (%s): %d job(s), %d file(s), %d style(s) reattributed",
                 user_id, "every server" if guild_id is None else f"server {guild_id}",
                 forgotten.jobs, forgotten.files, forgotten.styles)  # fmt: skip
        return forgotten

    async def status(self, guild_id: int) -> ServiceStatus:
        waiting, running = self.runner.counts()
        return ServiceStatus(
            waiting=waiting,
            running=running,
            capacity=self.backend.capacity,
            devices=tuple(self.backend.devices),
            outbox_backlog=await self.journal.outbox_backlog(),
            today=await self.journal.day_count(guild_id, day_start(time.time())),
        )

    # Shutdown

    async def stop(self, grace: float) -> None:
        """Take no new jobs; stop the running ones (back to the journal's queue) and tell
        their members they will resume; within ``grace`` s. A cancel asked for still wins."""
        await self.runner.shutdown(grace)

    async def close(self, limit: float) -> None:
        """After the backend closed: deliver what is due within ``limit`` s, then stop. The
        journal's writes asked for have landed when this returns; the journal stays open."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        if not await self.runner.wait_idle(max(0.0, deadline - loop.time())):
            log.info("out of time for some 'restarting' notices: sent at the next start")
            await self.runner.abandon()
        # Results that were just done go out now if they can; the rest after the next start.
        await self.outbox.wait_idle(max(0.0, deadline - loop.time()))
        await self.outbox.stop()
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)

    # Internals

    def _context(self, job_id: str, headline: Words | None) -> StatusContext:
        return StatusContext(
            job_id,
            headline,
            keep_message=lambda message: self._spawn(
                self.journal.set_status_message(job_id, message)
            ),
        )

    def _tracker(
        self, job_id: str, conversation: Conversation, accepted_at: float, status: JobStatus
    ) -> JobTracker:
        def failed(event: Failed) -> None:
            if gives_back(event.kind):
                self.policies.give_back(conversation.guild_id, conversation.user_id, accepted_at)

        return JobTracker(
            status,
            job_id=job_id,
            user_id=conversation.user_id,
            journal=self.journal,
            outbox=self.outbox,
            job_timeout=self.policy.job_timeout,
            on_failed=failed,
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)


def _lines(first: Words | None, second: Words) -> Words:
    if first is None:
        return second
    return lambda lang: f"{first(lang)}\n{second(lang)}"
