"""The server policy's checks (``bot.jobs.policy``): pure functions, and the in-memory book
over a real journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.jobs.policy import (
    Admission,
    Allowance,
    ChannelNotAllowed,
    DailyQuotaReached,
    MemberBlocked,
    MemberContext,
    PolicyBook,
    allowance,
    check,
    gives_back,
    next_reset,
    spoiler_for,
    utc_day,
)
from bot.journal import Journal, RoleLimit, ServerPolicy
from engine.jobs import FailureKind

GUILD = 100  # @everyone's role id is the guild's
ARTIST, NEWBIE = 200, 300
DAY = 86400
NOON = 20_000 * DAY + DAY / 2  # a UTC noon


def member(**fields: object) -> MemberContext:
    defaults: dict[str, object] = dict(user_id=1, guild_id=GUILD, channel_id=10, role_ids=(GUILD,))
    return MemberContext(**{**defaults, **fields})  # type: ignore[arg-type]


def policy(**fields: object) -> ServerPolicy:
    return ServerPolicy(GUILD, **fields)  # type: ignore[arg-type]


LIMITS = (
    RoleLimit(GUILD, 2, 256),
    RoleLimit(ARTIST, 10, None),
    RoleLimit(NEWBIE, 1, 1024),
)


@pytest.mark.parametrize(
    ("limits", "roles", "expected"),
    [
        ((), (GUILD,), Allowance(None, None)),  # no policy: nothing is limited
        (LIMITS, (GUILD,), Allowance(2, 256)),  # @everyone is the default
        (LIMITS, (), Allowance(2, 256)),  # @everyone counts even if not listed
        (LIMITS, (GUILD, ARTIST), Allowance(10, None)),  # the most generous, per limit
        (LIMITS, (GUILD, NEWBIE), Allowance(2, 1024)),  # a stricter role doesn't lower it
        (LIMITS, (GUILD, ARTIST, NEWBIE), Allowance(10, None)),
        (LIMITS[1:], (GUILD, NEWBIE), Allowance(None, None)),  # @everyone unlimited wins
        (LIMITS, (GUILD, 999), Allowance(2, 256)),  # a role without limits of its own
    ],
)
def test_a_member_gets_the_most_generous_of_their_roles(
    limits: tuple[RoleLimit, ...], roles: tuple[int, ...], expected: Allowance
) -> None:
    assert allowance(policy(limits=limits), roles) == expected


def test_the_day_is_utc_and_resets_at_midnight() -> None:
    assert utc_day(NOON) == 20_000
    assert next_reset(NOON) == 20_001 * DAY
    assert next_reset(20_001 * DAY) == 20_002 * DAY  # midnight itself is the new day
    assert next_reset(20_001 * DAY - 0.5) == 20_001 * DAY


@pytest.mark.parametrize(
    ("mode", "nsfw", "spoiler"),
    [("off", False, False), ("off", True, False), ("always", False, True),
     ("always", True, True), ("outside_nsfw", False, True), ("outside_nsfw", True, False)],
)  # fmt: skip
def test_spoilers_by_mode_and_channel(mode: str, nsfw: bool, spoiler: bool) -> None:
    assert spoiler_for(mode, nsfw) is spoiler  # type: ignore[arg-type]


def test_the_default_policy_lets_everyone_through() -> None:
    assert check(policy(), member(), used_today=10**6, now=NOON) == Admission()


def test_a_blocked_member_is_refused_first() -> None:
    strict = policy(blocked=frozenset({1}), channels=frozenset({99}), limits=LIMITS)
    with pytest.raises(MemberBlocked):
        check(strict, member(), used_today=5, now=NOON)
    assert check(strict, member(user_id=2, channel_id=99), used_today=0, now=NOON)


def test_only_the_allowed_channels_and_their_threads() -> None:
    only = policy(channels=frozenset({20, 30}))
    with pytest.raises(ChannelNotAllowed) as refused:
        check(only, member(channel_id=10), used_today=0, now=NOON)
    assert refused.value.channels == (20, 30)
    assert check(only, member(channel_id=30), used_today=0, now=NOON)
    assert check(only, member(channel_id=55, parent_id=20), used_today=0, now=NOON)


def test_the_quota_says_when_it_resets() -> None:
    limited = policy(limits=LIMITS)
    assert check(limited, member(), used_today=1, now=NOON).allowance.daily == 2
    with pytest.raises(DailyQuotaReached) as refused:
        check(limited, member(), used_today=2, now=NOON)
    assert (refused.value.limit, refused.value.resets_at) == (2, 20_001 * DAY)
    assert check(limited, member(role_ids=(GUILD, ARTIST)), used_today=2, now=NOON)


def test_the_spoiler_decision_comes_with_the_admission() -> None:
    marked = policy(spoiler="outside_nsfw")
    assert check(marked, member(), used_today=0, now=NOON).spoiler
    assert not check(marked, member(nsfw=True), used_today=0, now=NOON).spoiler


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path, sync_files=False)
    yield journal
    await journal.close()


async def opened(journal: Journal, clock: Clock, *, daily: int | None = None) -> PolicyBook:
    """A book over the journal, loaded (as at start-up); ``daily``: @everyone's quota, set."""
    book = PolicyBook(journal, clock=clock)
    await book.load()
    if daily is not None:
        await book.set_role_limit(GUILD, RoleLimit(GUILD, daily, None))
    return book


async def test_the_book_counts_holds_and_starts_again_at_midnight(journal: Journal) -> None:
    clock = Clock(NOON)
    book = await opened(journal, clock, daily=2)
    who = member()
    admission = book.admit(who)
    # Two places held at once (a burst) fill the quota before either job is accepted.
    with book.hold(who, admission), book.hold(who, admission):
        with pytest.raises(DailyQuotaReached):
            book.admit(who)
        with pytest.raises(DailyQuotaReached), book.hold(who, admission):
            pass
    book.record(GUILD, who.user_id)
    book.record(GUILD, who.user_id)
    with pytest.raises(DailyQuotaReached):
        book.admit(who)
    await book.drain()
    # A new book over the same journal (a restart) knows today's count.
    again = await opened(journal, clock)
    with pytest.raises(DailyQuotaReached):
        again.admit(who)
    clock.now += DAY / 2  # midnight UTC
    assert again.admit(who).allowance.daily == 2


@pytest.mark.parametrize("kind", list(FailureKind))
def test_only_a_failure_of_the_bots_own_costs_no_job(kind: FailureKind) -> None:
    assert gives_back(kind) == (kind in {FailureKind.WORKER_CRASHED, FailureKind.INTERNAL})


async def test_a_job_given_back_frees_its_place_today_only(journal: Journal) -> None:
    clock = Clock(NOON)
    book = await opened(journal, clock, daily=1)
    who = member()
    book.record(GUILD, who.user_id)
    accepted_at = book.now()
    with pytest.raises(DailyQuotaReached):
        book.admit(who)
    book.give_back(GUILD, who.user_id, accepted_at)
    book.give_back(GUILD, who.user_id, accepted_at)  # twice: never below none
    assert book.admit(who).allowance.daily == 1
    await book.drain()
    again = await opened(journal, clock)  # a restart: the journal gave it back too
    assert again.used_today(GUILD, who.user_id) == 0
    # A job of yesterday that fails today gives nothing of today's back.
    again.record(GUILD, who.user_id)
    again.give_back(GUILD, who.user_id, accepted_at - DAY)
    with pytest.raises(DailyQuotaReached):
        again.admit(who)


async def test_changes_apply_at_once_and_are_kept(journal: Journal) -> None:
    book = await opened(journal, Clock(NOON))
    await book.set_blocked(GUILD, 1, True)
    with pytest.raises(MemberBlocked):
        book.admit(member())
    await book.set_channels(GUILD, frozenset({20}))
    await book.set_spoiler(GUILD, "always")
    await book.set_role_limit(GUILD, RoleLimit(ARTIST, None, 512))
    reloaded = await opened(journal, Clock(NOON))
    assert reloaded.policy(GUILD) == ServerPolicy(
        GUILD, frozenset({20}), (RoleLimit(ARTIST, None, 512),), frozenset({1}), "always"
    )
    await book.set_role_limit(GUILD, RoleLimit(ARTIST, None, None))  # neither: removed
    await book.set_blocked(GUILD, 1, False)
    assert book.policy(GUILD).limits == () and not book.policy(GUILD).blocked
    assert book.admit(member(channel_id=20)) == Admission(Allowance(), spoiler=True)


async def test_a_member_forgetting_themselves_keeps_their_block_and_count(
    journal: Journal,
) -> None:
    book = await opened(journal, Clock(NOON), daily=1)
    book.record(GUILD, 1)
    await book.set_blocked(GUILD, 2, True)
    book.forget(1, None, by_member=True)
    book.forget(2, None, by_member=True)
    with pytest.raises(DailyQuotaReached):
        book.admit(member(user_id=1))
    with pytest.raises(MemberBlocked):
        book.admit(member(user_id=2))
    # An admin's forget takes both.
    book.forget(1, GUILD, by_member=False)
    book.forget(2, GUILD, by_member=False)
    assert book.admit(member(user_id=1)) and book.admit(member(user_id=2))


async def test_outside_a_server_nothing_applies(journal: Journal) -> None:
    book = await opened(journal, Clock(NOON))
    await book.set_blocked(GUILD, 1, True)
    assert book.admit(member(guild_id=None)) == Admission()
