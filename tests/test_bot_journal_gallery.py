"""The journal's schema 2 and 3: follow-up derivations, linked inputs, and saved styles."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import errors, gallery
from bot.journal import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Conversation,
    Derivation,
    Journal,
    NewJob,
    NewStyle,
    StatusMessage,
    StyleAdded,
)

CONVERSATION = Conversation(
    user_id=42,
    guild_id=7,
    channel_id=8,
    application_id=9,
    interaction_id=10,
    interaction_token="tok",
    token_expires_at=2e9,
    upload_limit=1024,
)
PARENT = "a" * 32
CHILD = "b" * 32


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path, sync_files=False)
    yield journal
    await journal.close()


def new_job(job_id: str, derivation: Derivation | None = None) -> NewJob:
    return NewJob(job_id, CONVERSATION, {"seed": 5}, 5, b"photo", (b"style",), derivation)


# Rows as the first bot wrote them: only the version-1 columns, one job in each state that
# matters (waiting, running, done with its result still owed).
VERSION_1_ROWS = """
INSERT INTO jobs (seq, id, user_id, guild_id, channel_id, application_id, interaction_id,
    interaction_token, token_expires_at, status_message_id, status_in_channel, upload_limit,
    settings, seed, style_count, state, queue_rank, runs, created_at, started_at, finished_at,
    updated_at, result_format, result_stats, outcome)
VALUES
    (1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1', 42, 7, 8, 9, 10, 'tok', 2e9, NULL, 0, 1024,
     '{"seed": 5}', 5, 1, 'queued', 2, 0, 100.0, NULL, NULL, 100.0, NULL, NULL, NULL),
    (2, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2', 43, NULL, 18, 19, 20, 'tok2', 2e9, 555, 1, 2048,
     '{"seed": 6, "size": 64}', 6, 2, 'running', NULL, 1, 101.0, 150.0, NULL, 150.0, NULL,
     NULL, NULL),
    (3, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3', 42, 7, 8, 9, 11, '', 0.0, 556, 0, 1024,
     '{"seed": 7}', 7, 1, 'done', NULL, 1, 102.0, 160.0, 170.0, 170.0, 'png',
     '{"seconds": 9.5}', '{"kind": "done"}'),
    (4, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa4', 42, 7, 8, 9, 12, 'tok4', 2e9, NULL, 0, 1024,
     '{"seed": 8}', 8, 1, 'queued', 1, 0, 103.0, NULL, NULL, 103.0, NULL, NULL, NULL);
INSERT INTO outbox (id, job_id, kind, text, state, attempts, next_at, message_id, last_error,
    created_at, updated_at)
VALUES (1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3', 'result', '', 'pending', 2, 180.0, NULL,
        'HTTP 503', 170.0, 175.0);
"""


async def test_a_version_1_journal_is_migrated_and_keeps_its_jobs(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.executescript(MIGRATIONS[0])
        db.executescript(VERSION_1_ROWS)
        db.execute("PRAGMA user_version=1")
    old = await Journal.open(tmp_path, sync_files=False)
    try:
        # Running first, then the waiting ones by their rank: the order is kept too.
        unfinished = await old.unfinished()
        assert [(r.seq, r.state, r.runs) for r in unfinished] == [
            (2, "running", 1),
            (4, "queued", 0),
            (1, "queued", 0),
        ]
        running = unfinished[0]
        assert running.conversation == Conversation(
            user_id=43, guild_id=None, channel_id=18, application_id=19, interaction_id=20,
            interaction_token="tok2", token_expires_at=2e9, upload_limit=2048,
        )  # fmt: skip
        assert running.status_message == StatusMessage(555, in_channel=True)
        assert (running.settings, running.seed, running.style_count) == (
            {"seed": 6, "size": 64}, 6, 2,
        )  # fmt: skip
        assert (running.created_at, running.started_at, running.finished_at) == (
            101.0, 150.0, None,
        )  # fmt: skip
        done = await old.get("a" * 31 + "3")
        assert done is not None and done.derivation is None
        assert (done.state, done.result_format, done.result_stats, done.finished_at) == (
            "done", "png", {"seconds": 9.5}, 170.0,
        )  # fmt: skip
        # The result still owed is still owed, with its attempts.
        [item] = await old.outbox_pending()
        assert (item.job_id, item.kind, item.attempts) == (done.id, "result", 2)
        assert item.next_at == 180.0
        # And the new columns work on the old file.
        await old.add(new_job(PARENT))
        record = await old.get(PARENT)
        assert record is not None and record.derivation is None and record.seq == 5
    finally:
        await old.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_a_follow_up_records_its_derivation_and_owns_its_inputs(journal: Journal) -> None:
    await journal.add(new_job(PARENT))
    await journal.link_inputs(PARENT, CHILD, 1)
    derivation = Derivation(PARENT, "stronger", 5)
    await journal.add(new_job(CHILD, derivation), inputs_staged=True)
    record = await journal.get(CHILD)
    assert record is not None and record.derivation == derivation
    # The parent's files can go (retention) without taking the child's.
    await journal.discard(PARENT)
    assert await journal.inputs(CHILD, 1) == (b"photo", (b"style",))
    assert not await journal.has_inputs(PARENT, 1)
    with pytest.raises(FileNotFoundError):
        await journal.link_inputs(PARENT, "c" * 32, 1)


def style(name: str, size: int = 10, guild_id: int = 7) -> NewStyle:
    return NewStyle(guild_id, name, b"x" * size, b"thumb", 1)


@pytest.mark.parametrize(
    ("second", "max_count", "max_bytes", "expected"),
    [
        (style("waves"), 5, 100, StyleAdded.ADDED),
        (style("  STARRY "), 5, 100, StyleAdded.NAME_TAKEN),
        (style("waves"), 1, 100, StyleAdded.TOO_MANY),
        (style("waves", size=91), 5, 100, StyleAdded.TOO_LARGE),
        (style("starry", guild_id=99), 1, 10, StyleAdded.ADDED),  # another server's gallery
    ],
)
async def test_style_limits(
    journal: Journal, second: NewStyle, max_count: int, max_bytes: int, expected: StyleAdded
) -> None:
    assert await journal.add_style(style("Starry"), max_count=5, max_bytes=100) is StyleAdded.ADDED
    assert await journal.add_style(second, max_count=max_count, max_bytes=max_bytes) is expected
    names = [s.name for s in await journal.styles(second.guild_id)]
    assert (second.name in names) == (expected is StyleAdded.ADDED)
    folder = journal.data_dir / "styles" / str(second.guild_id)
    assert len(list(folder.iterdir())) == 2 * len(names)  # refused images leave no files


async def test_styles_are_found_without_regard_to_case_and_removed(journal: Journal) -> None:
    await journal.add_style(style("Starry Night"), max_count=5, max_bytes=100)
    assert await journal.style_image(7, "starry  night") == b"x" * 10
    assert await journal.style_image(7, "STARRY NIGHT", thumbnail=True) == b"thumb"
    assert await journal.style_image(8, "Starry Night") is None
    assert await gallery.suggestions(journal, 7, "night") == ["Starry Night"]
    assert await gallery.suggestions(journal, 7, "waves") == []
    assert await journal.remove_style(7, "starry night")
    assert not await journal.remove_style(7, "starry night")
    with pytest.raises(errors.Refusal, match="no saved style called"):
        await gallery.image_for(journal, 7, "Starry Night")


@pytest.mark.parametrize("name", ["", "   ", "x" * (gallery.MAX_NAME + 1)])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(errors.Refusal, match="name of 1 to"):
        gallery.clean_name(name)


def test_pages_hold_five_and_clamp() -> None:
    styles = list(range(12))
    assert gallery.page_of(styles, 1) == ([0, 1, 2, 3, 4], 1, 3)  # type: ignore[arg-type]
    assert gallery.page_of(styles, 9) == ([10, 11], 3, 3)  # type: ignore[arg-type]
