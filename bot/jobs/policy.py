"""Server policy: what each server's admins decided the bot may do there, and the checks that
every command and follow-up click passes before anything is downloaded.

Pure functions decide (``allowance``, ``check``, ``spoiler_for``, ``next_reset``); ``PolicyBook``
holds every server's policy and today's counts in memory, so that a check costs no disk read
on the command path, and writes each change to the journal first, so that it holds across
restarts and applies at once. No Discord here: a member is their ids and roles
(``MemberContext``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from bot.journal import DAY_SECONDS, Journal, RoleLimit, ServerPolicy, SpoilerMode
from engine.jobs import FailureKind


class PolicyRefusal(Exception):
    """A server's policy turned a member down; ``bot.errors`` words it for them."""


class ChannelNotAllowed(PolicyRefusal):
    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__(f"not in one of the allowed channels {channels}")
        self.channels = channels


class DailyQuotaReached(PolicyRefusal):
    def __init__(self, limit: int, resets_at: int) -> None:
        super().__init__(f"{limit} job(s) today already; resets at {resets_at}")
        self.limit = limit
        self.resets_at = resets_at
        """Unix time of the next UTC midnight."""


class MemberBlocked(PolicyRefusal):
    def __init__(self) -> None:
        super().__init__("blocked in this server")


@dataclass(frozen=True)
class MemberContext:
    """Who asks, and where: what the checks need to know of an interaction."""

    user_id: int
    guild_id: int | None
    channel_id: int
    role_ids: tuple[int, ...] = ()
    """Their roles in the server (@everyone's id is the server's; it is always counted)."""
    nsfw: bool = False
    """Whether the channel is age-restricted."""
    parent_id: int | None = None
    """A thread's channel (or a forum's): a thread of an allowed channel is allowed."""


@dataclass(frozen=True)
class Allowance:
    """What a member may do, from the most generous of their roles; None: no limit."""

    daily: int | None = None
    max_size: int | None = None


@dataclass(frozen=True)
class Admission:
    """A member let through: their allowance, and whether their result is a spoiler."""

    allowance: Allowance = Allowance()
    spoiler: bool = False


def utc_day(now: float) -> int:
    """Days since the epoch, in UTC: the quota's day."""
    return int(now // DAY_SECONDS)


def next_reset(now: float) -> int:
    """Unix time of the next UTC midnight, when every daily count starts again."""
    return (utc_day(now) + 1) * DAY_SECONDS


def day_start(now: float) -> float:
    return float(utc_day(now) * DAY_SECONDS)


def _most(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else max(v for v in values if v is not None)


def allowance(policy: ServerPolicy, role_ids: tuple[int, ...]) -> Allowance:
    """The most generous of the member's roles, each limit on its own. @everyone (whose id is
    the server's) is always one of them; with no limits set for it, nothing is limited."""
    everyone = policy.limit_of(policy.guild_id) or RoleLimit(policy.guild_id, None, None)
    limits = [everyone]
    for role_id in role_ids:
        limit = policy.limit_of(role_id)
        if limit is not None and role_id != policy.guild_id:
            limits.append(limit)
    return Allowance(
        daily=_most([limit.daily for limit in limits]),
        max_size=_most([limit.max_size for limit in limits]),
    )


def spoiler_for(mode: SpoilerMode, nsfw: bool) -> bool:
    return mode == "always" or (mode == "outside_nsfw" and not nsfw)


def gives_back(kind: FailureKind) -> bool:
    """Whether a job that failed this way gives its place in the day's quota back: a crash or
    an internal error is the bot's doing, and the "please try again" it answers must not cost
    a job. A picture that could not be read, or that ran out of time or memory, counts: its
    member is told to ask for less, and the quota is what rations the GPU's time (given back,
    a member could spend it on jobs that always time out)."""
    return kind in (FailureKind.WORKER_CRASHED, FailureKind.INTERNAL)


def check(policy: ServerPolicy, member: MemberContext, used_today: int, now: float) -> Admission:
    """Let the member through, or raise the refusal that says what they can do: blocked
    first (nothing else would help), then the channel, then the day's quota."""
    if member.user_id in policy.blocked:
        raise MemberBlocked()
    if policy.channels and not {member.channel_id, member.parent_id} & policy.channels:
        raise ChannelNotAllowed(tuple(sorted(policy.channels)))
    granted = allowance(policy, member.role_ids)
    if granted.daily is not None and used_today >= granted.daily:
        raise DailyQuotaReached(granted.daily, next_reset(now))
    return Admission(granted, spoiler_for(policy.spoiler, member.nsfw))


class PolicyBook:
    """Every server's policy and today's counts, in memory, written through to the journal.

    Use from one event loop. ``load`` at start-up; then ``admit`` (no I/O) before anything is
    downloaded, ``hold`` a place in the day's quota while the job is prepared, and ``record``
    the job once it is accepted.
    """

    def __init__(self, journal: Journal, *, clock: Callable[[], float] = time.time) -> None:
        self._journal = journal
        self._clock = clock
        self._policies: dict[int, ServerPolicy] = {}
        self._day = utc_day(clock())
        self._used: Counter[tuple[int, int]] = Counter()
        self._held: Counter[tuple[int, int]] = Counter()
        self._writes: set[asyncio.Task[Any]] = set()

    async def load(self) -> None:
        self._policies = {p.guild_id: p for p in await self._journal.policies()}
        self._day = utc_day(self._clock())
        self._used = Counter(await self._journal.usage_on(self._day))

    def now(self) -> float:
        """The time by the book's clock (wall-clock: the quota's days are UTC days)."""
        return self._clock()

    def policy(self, guild_id: int) -> ServerPolicy:
        return self._policies.get(guild_id) or ServerPolicy(guild_id)

    def used_today(self, guild_id: int, user_id: int) -> int:
        self._roll()
        return self._used[(guild_id, user_id)]

    def admit(self, member: MemberContext) -> Admission:
        """Check the member against their server's policy; raises a ``PolicyRefusal``. A
        place held by a command still being prepared counts as a job."""
        if member.guild_id is None:
            return Admission()
        key = (member.guild_id, member.user_id)
        used = self.used_today(*key) + self._held[key]
        return check(self.policy(member.guild_id), member, used, self._clock())

    @contextlib.contextmanager
    def hold(self, member: MemberContext, admission: Admission) -> Iterator[None]:
        """Hold one job of the member's daily quota while it is prepared (checked again, with
        the places already held, so a burst can't pass the quota)."""
        daily = admission.allowance.daily
        if member.guild_id is None or daily is None:
            yield
            return
        key = (member.guild_id, member.user_id)
        if self.used_today(*key) + self._held[key] >= daily:
            raise DailyQuotaReached(daily, next_reset(self._clock()))
        self._held[key] += 1
        try:
            yield
        finally:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]

    def record(self, guild_id: int | None, user_id: int) -> None:
        """Count an accepted job against the member's quota (journaled in the background)."""
        if guild_id is None:
            return
        self._roll()
        self._used[(guild_id, user_id)] += 1
        self._spawn(self._journal.add_usage(guild_id, user_id, self._day))

    def give_back(self, guild_id: int | None, user_id: int, accepted_at: float) -> None:
        """Take back one job counted at ``accepted_at`` (a job that failed through no fault
        of the member's). A job of an earlier day changes nothing: that day's count is over."""
        if guild_id is None:
            return
        self._roll()
        day = utc_day(accepted_at)
        key = (guild_id, user_id)
        if day != self._day or self._used[key] <= 0:
            return
        self._used[key] -= 1
        self._spawn(self._journal.take_back_usage(guild_id, user_id, day))

    def forget(self, user_id: int, guild_id: int | None, *, by_member: bool) -> None:
        """What ``Journal.forget`` deleted, in memory. ``by_member`` (they asked themselves):
        their blocks stay, and so does the day's count, in memory until a restart, so that
        forgetting oneself is no way around a block or the quota."""
        for key in list(self._policies):
            if guild_id is None or key == guild_id:
                policy = self._policies[key]
                if not by_member and user_id in policy.blocked:
                    self._policies[key] = _replace_blocked(policy, policy.blocked - {user_id})
        if not by_member:
            for used in [k for k in self._used if k[1] == user_id]:
                if guild_id is None or used[0] == guild_id:
                    del self._used[used]

    # Changes (the journal first: a change the journal refused is not applied)

    async def set_channels(self, guild_id: int, channels: frozenset[int]) -> ServerPolicy:
        return self._keep(await self._journal.set_channels(guild_id, channels))

    async def set_spoiler(self, guild_id: int, mode: SpoilerMode) -> ServerPolicy:
        return self._keep(await self._journal.set_spoiler(guild_id, mode))

    async def set_role_limit(self, guild_id: int, limit: RoleLimit) -> ServerPolicy:
        return self._keep(await self._journal.set_role_limit(guild_id, limit))

    async def set_blocked(self, guild_id: int, user_id: int, blocked: bool) -> ServerPolicy:
        return self._keep(await self._journal.set_blocked(guild_id, user_id, blocked))

    async def drain(self) -> None:
        """Wait for the counts being written."""
        await asyncio.gather(*self._writes, return_exceptions=True)

    def _keep(self, policy: ServerPolicy) -> ServerPolicy:
        self._policies[policy.guild_id] = policy
        return policy

    def _roll(self) -> None:
        day = utc_day(self._clock())
        if day != self._day:  # midnight UTC: every count starts again
            self._day = day
            self._used.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)


def _replace_blocked(policy: ServerPolicy, blocked: frozenset[int]) -> ServerPolicy:
    return ServerPolicy(policy.guild_id, policy.channels, policy.limits, blocked, policy.spoiler)
