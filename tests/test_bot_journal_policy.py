"""The journal's schema 5: server policies, daily counts, deleted results, and forgetting a
member (rows, files and tokens)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.journal import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Conversation,
    Derivation,
    Journal,
    NewJob,
    NewStyle,
    RoleLimit,
    ServerPolicy,
)

GUILD, OTHER_GUILD = 7, 17
MEMBER, OTHER = 42, 43


def conversation(user_id: int, guild_id: int, token: str) -> Conversation:
    return Conversation(
        user_id=user_id, guild_id=guild_id, channel_id=8, application_id=9, interaction_id=10,
        interaction_token=token, token_expires_at=2e9, upload_limit=1024,
    )  # fmt: skip


def job_id(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path, sync_files=False)
    yield journal
    await journal.close()


# A version-3 journal as the bot wrote it: a finished follow-up and its parent, a waiting job,
# an outbox item and a saved style.
VERSION_3_ROWS = """
INSERT INTO jobs (seq, id, user_id, guild_id, channel_id, application_id, interaction_id,
    interaction_token, token_expires_at, status_message_id, status_in_channel, upload_limit,
    settings, seed, style_count, state, queue_rank, runs, created_at, started_at, finished_at,
    updated_at, result_format, result_stats, outcome, parent_id, derivation)
VALUES
    (1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1', 42, 7, 8, 9, 10, '', 0.0, 556, 0, 1024,
     '{"seed": 7}', 7, 1, 'done', NULL, 1, 102.0, 160.0, 170.0, 170.0, 'png',
     '{"seconds": 9.5}', '{"kind": "done"}', NULL, NULL),
    (2, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2', 43, 7, 8, 9, 11, 'tok2', 2e9, NULL, 0, 1024,
     '{"seed": 8}', 8, 1, 'done', NULL, 1, 103.0, 161.0, 171.0, 171.0, 'png',
     '{"seconds": 3.0}', '{"kind": "done"}', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1',
     '{"kind": "stronger", "parent_seed": 7}'),
    (3, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3', 42, 7, 8, 9, 12, 'tok3', 2e9, NULL, 0, 1024,
     '{"seed": 9}', 9, 1, 'queued', 1, 0, 104.0, NULL, NULL, 104.0, NULL, NULL, NULL, NULL,
     NULL);
INSERT INTO outbox (id, job_id, kind, text, state, attempts, next_at, message_id, last_error,
    created_at, updated_at)
VALUES (1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2', 'result', '', 'pending', 1, 180.0, NULL,
        'HTTP 503', 171.0, 175.0);
INSERT INTO styles (guild_id, name, name_key, file, size, added_by, created_at)
VALUES (7, 'Starry', 'starry', 'f00d', 5, 42, 99.0);
"""


async def test_a_version_3_journal_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        for script in MIGRATIONS[:3]:
            db.executescript(script)
        db.executescript(VERSION_3_ROWS)
        db.execute("PRAGMA user_version=3")
    old = await Journal.open(tmp_path, sync_files=False)
    try:
        [waiting] = await old.unfinished()
        assert (waiting.seq, waiting.state, waiting.spoiler, waiting.deleted) == (
            3, "queued", False, False,
        )  # fmt: skip
        child = await old.get("a" * 31 + "2")
        assert child is not None and not child.spoiler and not child.deleted
        assert child.derivation == Derivation("a" * 31 + "1", "stronger", 7)
        [item] = await old.outbox_pending()
        assert (item.job_id, item.attempts) == (child.id, 1)
        [style] = await old.styles(GUILD)
        assert (style.name, style.added_by) == ("Starry", MEMBER)
        # The new tables work on the old file, and no server has a policy yet.
        assert await old.policies() == []
        await old.set_blocked(GUILD, OTHER, True)
        assert await old.policies() == [ServerPolicy(GUILD, blocked=frozenset({OTHER}))]
        await old.add_usage(GUILD, MEMBER, 5)
        assert await old.usage_on(5) == {(GUILD, MEMBER): 1}
        assert await old.delete_result(child.id)
        record = await old.get(child.id)
        assert record is not None and record.deleted
    finally:
        await old.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


# A version-4 journal (the languages): a member's job in Korean, in a server in English, with a
# notice kept as a text that waits for its reader.
VERSION_4_ROWS = """
INSERT INTO jobs (seq, id, user_id, guild_id, channel_id, application_id, interaction_id,
    interaction_token, token_expires_at, status_message_id, status_in_channel, upload_limit,
    settings, seed, style_count, state, queue_rank, runs, created_at, started_at, finished_at,
    updated_at, result_format, result_stats, outcome, parent_id, derivation, locale,
    guild_locale)
VALUES
    (1, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb1', 42, 7, 8, 9, 10, 'tok1', 2e9, NULL, 0, 1024,
     '{"seed": 7}', 7, 1, 'queued', 1, 0, 104.0, NULL, NULL, 104.0, NULL, NULL, NULL, NULL,
     NULL, 'ko', 'en-US');
INSERT INTO outbox (id, job_id, kind, text, state, attempts, next_at, message_id, last_error,
    created_at, updated_at)
VALUES (1, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb1', 'notice',
        '{"text": "inputs_lost", "args": {}}', 'pending', 0, 180.0, NULL, NULL, 171.0, 175.0);
"""


async def test_a_version_4_journal_is_migrated_and_keeps_its_languages(tmp_path: Path) -> None:
    assert SCHEMA_VERSION >= 5  # migrated through 5 (the policy), to the latest
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        for script in MIGRATIONS[:4]:
            db.executescript(script)
        db.executescript(VERSION_4_ROWS)
        db.execute("PRAGMA user_version=4")
    old = await Journal.open(tmp_path, sync_files=False)
    try:
        [waiting] = await old.unfinished()
        assert (waiting.conversation.locale, waiting.conversation.guild_locale) == ("ko", "en-US")
        assert (waiting.spoiler, waiting.deleted) == (False, False)
        [item] = await old.outbox_pending()
        assert (item.job_id, item.text) == (waiting.id, '{"text": "inputs_lost", "args": {}}')
        assert await old.policies() == []
        await old.set_spoiler(GUILD, "always")
        assert await old.policies() == [ServerPolicy(GUILD, spoiler="always")]
    finally:
        await old.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_policies_are_per_server(journal: Journal) -> None:
    await journal.set_channels(GUILD, frozenset({3, 1}))
    await journal.set_spoiler(GUILD, "outside_nsfw")
    await journal.set_role_limit(OTHER_GUILD, RoleLimit(5, 2, None))
    await journal.set_role_limit(OTHER_GUILD, RoleLimit(5, 3, 256))  # replaced
    assert await journal.policies() == [
        ServerPolicy(GUILD, channels=frozenset({1, 3}), spoiler="outside_nsfw"),
        ServerPolicy(OTHER_GUILD, limits=(RoleLimit(5, 3, 256),)),
    ]
    await journal.set_channels(GUILD, frozenset())
    [first, _] = await journal.policies()
    assert first.channels == frozenset() and first.spoiler == "outside_nsfw"


async def test_counts_add_up_per_day_and_old_days_are_swept(journal: Journal) -> None:
    for _ in range(3):
        await journal.add_usage(GUILD, MEMBER, 1)
    await journal.add_usage(GUILD, MEMBER, 2)
    await journal.add_usage(OTHER_GUILD, MEMBER, 2)
    assert await journal.usage_on(1) == {(GUILD, MEMBER): 3}
    assert await journal.usage_on(2) == {(GUILD, MEMBER): 1, (OTHER_GUILD, MEMBER): 1}
    await journal.purge(0)  # today (by the real clock) is long after day 2
    assert await journal.usage_on(1) == {} and await journal.usage_on(2) == {}


async def test_a_count_given_back_goes_down_to_none_and_no_further(journal: Journal) -> None:
    await journal.add_usage(GUILD, MEMBER, 1)
    await journal.add_usage(GUILD, MEMBER, 1)
    await journal.add_usage(OTHER_GUILD, MEMBER, 1)
    await journal.take_back_usage(GUILD, MEMBER, 1)
    assert await journal.usage_on(1) == {(GUILD, MEMBER): 1, (OTHER_GUILD, MEMBER): 1}
    for _ in range(2):
        await journal.take_back_usage(GUILD, MEMBER, 1)
    await journal.take_back_usage(GUILD, MEMBER, 2)  # a day with no count: nothing happens
    assert await journal.usage_on(1) == {(GUILD, MEMBER): 0, (OTHER_GUILD, MEMBER): 1}
    assert await journal.usage_on(2) == {}


async def add(journal: Journal, n: int, user_id: int, guild_id: int, token: str,
              parent: int | None = None) -> str:  # fmt: skip
    derivation = None if parent is None else Derivation(job_id(parent), "reroll", 1)
    where = conversation(user_id, guild_id, token)
    await journal.add(NewJob(job_id(n), where, {"seed": 1}, 1, b"photo" * 10, (b"style",),
                             derivation))  # fmt: skip
    return job_id(n)


async def test_forget_in_one_server_takes_the_member_and_what_was_made_of_theirs(
    journal: Journal,
) -> None:
    mine = await add(journal, 1, MEMBER, GUILD, "token-of-mine-1")
    elsewhere = await add(journal, 2, MEMBER, OTHER_GUILD, "token-of-mine-2")
    theirs = await add(journal, 3, OTHER, GUILD, "token-of-theirs", parent=1)  # from mine
    await journal.finish(mine, "done", outcome={}, deliver="result", result=b"R",
                         result_format="png")  # fmt: skip
    await journal.add_usage(GUILD, MEMBER, 1)
    await journal.set_blocked(GUILD, MEMBER, True)
    await journal.add_style(NewStyle(GUILD, "Mine", b"i", b"t", MEMBER), max_count=5,
                            max_bytes=100)  # fmt: skip
    forgotten = await journal.forget(MEMBER, GUILD, keep_blocks=False)
    # Their job (its result, its outbox item), and the files of the other member's re-roll.
    assert (forgotten.jobs, forgotten.files, forgotten.styles) == (1, 5, 1)
    assert forgotten.bytes == 2 * (50 + 5) + 1
    assert await journal.get(mine) is None and await journal.outbox_pending() == []
    assert not journal.job_dir(mine).exists() and not journal.job_dir(theirs).exists()
    kept = await journal.get(theirs)
    assert kept is not None and kept.conversation.user_id == OTHER
    assert not await journal.has_inputs(theirs, 1)
    # Only this server: their job elsewhere stays.
    assert await journal.get(elsewhere) is not None
    assert await journal.usage_on(1) == {}
    assert await journal.policies() == []
    [style] = await journal.styles(GUILD)
    assert style.added_by == 0


async def test_a_member_forgetting_themselves_keeps_the_servers_blocks(journal: Journal) -> None:
    await add(journal, 1, MEMBER, GUILD, "t1")
    await add(journal, 2, MEMBER, OTHER_GUILD, "t2")
    await journal.set_blocked(GUILD, MEMBER, True)
    forgotten = await journal.forget(MEMBER, None, keep_blocks=True)
    assert forgotten.jobs == 2 and await journal.unfinished() == []
    assert (await journal.policies())[0].blocked == frozenset({MEMBER})


async def test_unfinished_of_lists_theirs_and_follow_ups_of_theirs(journal: Journal) -> None:
    mine = await add(journal, 1, MEMBER, GUILD, "t1")
    await add(journal, 2, MEMBER, OTHER_GUILD, "t2")
    theirs = await add(journal, 3, OTHER, GUILD, "t3", parent=1)
    await add(journal, 4, OTHER, GUILD, "t4")
    assert sorted(await journal.unfinished_of(MEMBER, GUILD)) == [mine, theirs]
    assert len(await journal.unfinished_of(MEMBER, None)) == 3


def insecure_connect(
    database: str, *, timeout: float, isolation_level: None, check_same_thread: bool
) -> sqlite3.Connection:
    """SQLite as some builds ship it: deleted rows' bytes left in the file."""
    db = sqlite3.connect(database, timeout=timeout, isolation_level=isolation_level,
                         check_same_thread=check_same_thread)  # fmt: skip
    db.execute("PRAGMA secure_delete=OFF")
    return db


async def test_a_forgotten_token_is_nowhere_in_the_files(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path, sync_files=False, connect=insecure_connect)
    try:
        secret = "forget-me-token-0123456789"
        for n in range(20):
            await add(journal, n + 1, MEMBER if n % 2 else OTHER, GUILD, f"{secret}{n:02d}"
                      if n % 2 else "keep")  # fmt: skip
        await journal.forget(MEMBER, GUILD, keep_blocks=False)
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("jobs.sqlite3*"))
        assert secret.encode() not in raw
        assert b"keep" in raw
    finally:
        await journal.close()
