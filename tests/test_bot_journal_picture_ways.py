"""The journal's migration "more ways to a picture" (schema 6): where a menu's job came
from, the image a Bigger job starts from, and the photos waiting for a saved style."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.journal import (
    MIGRATIONS,
    ORPHAN_AGE,
    SCHEMA_VERSION,
    Conversation,
    Derivation,
    Journal,
    NewJob,
    Origin,
    Pick,
)

CONVERSATION = Conversation(
    user_id=42, guild_id=7, channel_id=8, application_id=9, interaction_id=10,
    interaction_token="tok", token_expires_at=2e9, upload_limit=1024,
)  # fmt: skip
PARENT = "a" * 32
CHILD = "b" * 32
PICK = "c" * 32
ORIGIN = Origin("photo", 7, 8, 99, style="Waves")
DAY = 86400.0


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
    journal = await Journal.open(tmp_path, sync_files=False, clock=clock)
    yield journal
    await journal.close()


@pytest.mark.parametrize("version", [3, 4, 5])
async def test_an_older_journal_is_migrated_and_keeps_its_jobs(
    tmp_path: Path, version: int
) -> None:
    """From a schema before this one's migration (3: saved styles; 4: languages; 5: server
    policy) with a job in it, up to the latest ``SCHEMA_VERSION``, whatever number that is
    now."""
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        for script in MIGRATIONS[:version]:
            db.executescript(script)
        db.execute(
            "INSERT INTO jobs (id, user_id, guild_id, channel_id, application_id, interaction_id,"
            " interaction_token, token_expires_at, upload_limit, settings, seed, style_count,"
            " state, created_at, updated_at, parent_id, derivation) VALUES (?, 42, 7, 8, 9, 10,"
            " 'tok', 2e9, 1024, '{\"seed\": 5}', 5, 1, 'queued', 1.0, 1.0, ?, ?)",
            (CHILD, PARENT, '{"kind": "stronger", "parent_seed": 5}'),
        )
        if version >= 4:
            db.execute("UPDATE jobs SET locale = 'ko', guild_locale = 'en-US'")
        db.execute(f"PRAGMA user_version={version}")
    old = await Journal.open(tmp_path, sync_files=False)
    try:
        [record] = await old.unfinished()
        assert record.id == CHILD and record.derivation == Derivation(PARENT, "stronger", 5)
        assert record.origin is None and not record.has_initial
        locales = ("ko", "en-US") if version >= 4 else ("en-US", None)
        assert (record.conversation.locale, record.conversation.guild_locale) == locales
        await old.add_pick(Pick(PICK, 42, 7, ORIGIN, 1.0), b"photo")
        assert await old.pick(PICK) == (Pick(PICK, 42, 7, ORIGIN, 1.0), b"photo")
    finally:
        await old.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert version < SCHEMA_VERSION


async def test_a_job_keeps_its_origin(journal: Journal) -> None:
    await journal.add(NewJob(PARENT, CONVERSATION, {"seed": 5}, 5, b"photo", (b"style",),
                             origin=ORIGIN))  # fmt: skip
    record = await journal.get(PARENT)
    assert record is not None and record.origin == ORIGIN and not record.has_initial
    assert Origin.from_json(ORIGIN.to_json()) == ORIGIN


async def test_a_bigger_job_starts_from_the_earlier_result_as_a_file_of_its_own(
    journal: Journal,
) -> None:
    await journal.add(NewJob(PARENT, CONVERSATION, {"seed": 5}, 5, b"photo", (b"style",)))
    await journal.finish(PARENT, "done", outcome={}, deliver="result", result=b"small-result",
                         result_format="png", result_stats={})  # fmt: skip
    await journal.link_inputs(PARENT, CHILD, 1)
    await journal.link_result(PARENT, "png", CHILD)
    await journal.add(
        NewJob(CHILD, CONVERSATION, {"seed": 5, "size": 64}, 5, b"photo", (b"style",),
               Derivation(PARENT, "bigger", 5), initial=True),
        inputs_staged=True,
    )  # fmt: skip
    record = await journal.get(CHILD)
    assert record is not None and record.has_initial
    assert await journal.initial(CHILD) == b"small-result"
    # Its own: the earlier job's retention does not take it away.
    os.unlink(journal.job_dir(PARENT) / "result.png")
    assert await journal.initial(CHILD) == b"small-result"
    with pytest.raises(FileNotFoundError):
        await journal.link_result(PARENT, "png", "d" * 32)
    # A row that claims an initial image must have one.
    with pytest.raises(FileNotFoundError):
        await journal.add(
            NewJob("e" * 32, CONVERSATION, {"seed": 5}, 5, b"photo", (b"style",), initial=True)
        )


async def test_picks_are_kept_as_long_as_jobs_and_then_purged(
    journal: Journal, clock: Clock, tmp_path: Path
) -> None:
    await journal.add_pick(Pick(PICK, 42, 7, ORIGIN, clock.now), b"photo")
    photo = tmp_path / "picks" / f"{PICK}.photo"
    assert photo.is_file() and oct(photo.stat().st_mode & 0o777) == "0o600"
    assert await journal.pick("f" * 32) is None
    clock.now += DAY
    await journal.purge(2 * DAY)
    assert await journal.pick(PICK) is not None
    clock.now += 2 * DAY
    await journal.purge(2 * DAY)
    assert await journal.pick(PICK) is None and not photo.exists()


async def test_a_pick_file_without_a_row_goes_after_an_hour(
    journal: Journal, clock: Clock, tmp_path: Path
) -> None:
    orphan = tmp_path / "picks" / f"{PICK}.photo"
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"photo")
    os.utime(orphan, (clock.now, clock.now))
    await journal.purge(DAY)
    assert orphan.exists()
    clock.now += ORPHAN_AGE + 1
    await journal.purge(DAY)
    assert not orphan.exists()


@pytest.mark.parametrize(("guild_id", "gone"), [(7, True), (None, True), (8, False)])
async def test_forgetting_a_member_deletes_their_waiting_photos(
    journal: Journal, tmp_path: Path, guild_id: int | None, gone: bool
) -> None:
    """In the server forgotten in (an admin's ``forget``) or in all (the member's own)."""
    await journal.add_pick(Pick(PICK, 42, 7, ORIGIN, 1.0), b"photo")
    await journal.add_pick(Pick("d" * 32, 43, 7, ORIGIN, 1.0), b"another's")
    forgotten = await journal.forget(42, guild_id, keep_blocks=True)
    assert (await journal.pick(PICK) is None) == gone
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        left = db.execute("SELECT COUNT(*) FROM picks WHERE user_id = 42").fetchone()[0]
    assert left == (0 if gone else 1)  # the row (who took which message) too
    assert (tmp_path / "picks" / f"{PICK}.photo").exists() != gone
    assert (forgotten.files, forgotten.bytes) == ((1, len(b"photo")) if gone else (0, 0))
    assert await journal.pick("d" * 32) is not None  # someone else's stays
