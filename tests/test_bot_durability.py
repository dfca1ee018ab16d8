"""Jobs survive the bot: the real ``python -m bot`` against the fake Discord, killed, stopped and
restarted on one data folder, while the fake keeps every message it was sent.

Each test starts the bot several times (each start spawns a worker that imports torch), so
these are the slowest bot tests; they use random weights and tiny pictures on the CPU.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.bot_process import START_TIMEOUT, Bots
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage, FakeUser
from tests.fake_discord.models import RecordedRequest
from tests.pictures import png

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(900)]

RESULT_TIMEOUT = 240


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token="fake-token.durability-SECRET") as fake:
        yield fake


@pytest.fixture
async def bots(fake: FakeDiscord, tmp_path: Path) -> AsyncIterator[Bots]:
    bots = Bots(fake, tmp_path)
    try:
        yield bots
    finally:
        bots.kill_all()
        for run in bots.runs:
            await run.process.wait()
    for run in bots.runs:
        assert fake.token not in run.log
        assert "Traceback" not in run.log, run.log


async def stylize(fake: FakeDiscord, user: FakeUser, seed: int, quality: str) -> FakeInteraction:
    options = {
        "content": fake.add_attachment(png(48, 36), "photo.png"),
        "style": fake.add_attachment(png(32, 32, noise=True), "painting.png"),
        "seed": seed,
        "quality": quality,
    }
    interaction = await fake.invoke("stylize", options, user=user)
    assert (await interaction.wait_callback(timeout=10))["type"] == 5
    return interaction


def shows(interaction: FakeInteraction, *marks: str) -> Callable[[], bool]:
    return lambda: (
        interaction.original is not None
        and any(mark in interaction.original.content for mark in marks)
    )


def results(fake: FakeDiscord, seed: int) -> list[FakeMessage]:
    """Every live message with a picture for the job with this seed, by any route."""
    return [
        m
        for m in fake.messages.values()
        if not m.deleted and m.attachments and f"seed {seed}," in m.content
    ]


def result_posts(fake: FakeDiscord) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == "POST" and _posts_result(r)]


def _posts_result(request: RecordedRequest) -> bool:
    return any(name.startswith("stylized-") for name, _, _ in request.files)


def job_folders(bots: Bots) -> list[Path]:
    folder = bots.data_dir / "jobs"
    return sorted(folder.iterdir()) if folder.exists() else []


def journal_rows(bots: Bots) -> list[tuple[str, str]]:
    with sqlite3.connect(bots.data_dir / "jobs.sqlite3") as db:
        return db.execute("SELECT id, state FROM jobs ORDER BY seq").fetchall()


async def test_kill_9_mid_job_then_every_result_exactly_once_in_order(
    fake: FakeDiscord, bots: Bots
) -> None:
    requester, other, third_user = fake.requester, fake.other_user, fake.moderator
    seeds = (1, 2, 3, 4)

    # 1. Four jobs from three users; the first is painting when the whole group is killed.
    #    They were sent as a1, a4, b2, c3; the fair order is a1, b2, c3, a4 (seeds 1 to 4).
    first = await bots.start()
    a1 = await stylize(fake, requester, seed=1, quality="high")
    await fake.wait_for(shows(a1, "🎨 Painting"), RESULT_TIMEOUT)
    a4 = await stylize(fake, requester, seed=4, quality="draft")
    b2 = await stylize(fake, other, seed=2, quality="draft")
    c3 = await stylize(fake, third_user, seed=3, quality="draft")
    await fake.wait_for(shows(b2, "you're next"), 30)
    await fake.wait_for(shows(c3, "position **2**"), 30)
    await fake.wait_for(shows(a4, "position **3**"), 30)
    assert not results(fake, 1), "the first job ended before the kill; raise STEPS"
    first.kill_group()
    assert await first.wait() == -signal.SIGKILL
    assert not any(results(fake, seed) for seed in seeds)
    assert [state for _, state in journal_rows(bots)] == ["running", "queued", "queued", "queued"]

    # 2. After a restart the jobs resume; the bot dies again the moment the first result
    #    lands, before it can record that it was delivered.
    def kill_on_first_result(request: RecordedRequest) -> None:
        if _posts_result(request) and request.status == 200:
            fake.on_request = None
            bots.runs[-1].kill_group()

    fake.on_request = kill_on_first_result
    second = await bots.start()
    # The restart loads the network before it resumes anything: allow a busy machine's time.
    await fake.wait_for(shows(a4, "🔄 Back after a restart"), RESULT_TIMEOUT)
    assert await second.wait(RESULT_TIMEOUT) == -signal.SIGKILL
    assert [len(results(fake, seed)) for seed in seeds] == [1, 0, 0, 0]

    # 3. The next start finds that post instead of making another, and delivers the rest.
    third = await bots.start()
    await fake.wait_for(lambda: all(results(fake, seed) for seed in seeds), RESULT_TIMEOUT)
    for interaction in (a1, b2, c3, a4):
        await fake.wait_for(shows(interaction, "✅ Done"), 30)
    await bots.stop(third)
    posted = {seed: results(fake, seed) for seed in seeds}
    assert {seed: len(found) for seed, found in posted.items()} == dict.fromkeys(seeds, 1)
    ids = [posted[seed][0].id for seed in seeds]
    assert ids == sorted(ids), "results out of their old order (a1, b2, c3, then a4)"
    for seed, user in zip(seeds, (requester, other, third_user, requester), strict=True):
        assert posted[seed][0].content.startswith(user.mention)
    assert len(result_posts(fake)) == 4
    assert "was already posted" in third.log

    # 4. A restart after everything was delivered delivers nothing again; a retention of
    #    almost nothing deletes the finished jobs' files and rows at start-up.
    assert len(job_folders(bots)) == 4
    fourth = await bots.start(STYLIZE_KEEP_DAYS="0.000000001")
    await bots.stop(fourth)
    assert len(result_posts(fake)) == 4
    assert "retention: deleted 4 job(s)" in fourth.log
    assert job_folders(bots) == [] and journal_rows(bots) == []


async def test_sigterm_keeps_jobs_and_results_arrive_through_the_channel_once_tokens_expired(
    fake: FakeDiscord, bots: Bots, capsys: pytest.CaptureFixture[str]
) -> None:
    requester, other = fake.requester, fake.other_user
    first = await bots.start()
    running = await stylize(fake, requester, seed=11, quality="high")
    await fake.wait_for(shows(running, "🎨 Painting"), RESULT_TIMEOUT)
    waiting = await stylize(fake, other, seed=12, quality="draft")
    await fake.wait_for(shows(waiting, "⏳"), 30)

    took = await bots.stop(first)
    assert took < 15, f"took {took:.1f} s to exit"
    with capsys.disabled():
        print(f"\nSIGTERM to exit: {took:.1f} s, with one job running and one queued")
    for interaction in (running, waiting):
        assert interaction.original is not None
        assert "restarting: your picture will resume" in interaction.original.content
        assert interaction.original.components == []  # no Cancel while the bot is away
    assert not results(fake, 11) and not results(fake, 12)
    assert sorted(state for _, state in journal_rows(bots)) == ["queued", "queued"]

    # The bot stays down past the interactions' 15 minutes.
    fake.token_lifetime = 0
    second = await bots.start()
    await fake.wait_for(lambda: bool(results(fake, 11) and results(fake, 12)), RESULT_TIMEOUT)
    await bots.stop(second)
    for seed, user, interaction in ((11, requester, running), (12, other, waiting)):
        [message] = results(fake, seed)
        assert message.kind == "channel"  # posted with the bot token, not the interaction's
        assert message.content.startswith(user.mention)
        assert [m["id"] for m in message.mentions] == [str(user.id)]
        assert not interaction.followups
    refused = [r for r in fake.requests if running.token in r.path and r.status == 401]
    assert refused, "the bot never tried the expired token"


@pytest.mark.parametrize("problem", ["corrupt", "unwritable"])
async def test_a_journal_that_cannot_be_used_stops_the_bot_with_one_line_and_status_2(
    fake: FakeDiscord, bots: Bots, problem: str
) -> None:
    if problem == "corrupt":
        bots.data_dir.mkdir()
        (bots.data_dir / "jobs.sqlite3").write_bytes(b"not a database, " * 512)
        expected = "stylize-bot: the job journal"
    else:
        blocker = bots.workdir / "a-file"
        blocker.write_text("a file where the data folder's parent should be")
        bots.data_dir = blocker / "data"
        expected = "stylize-bot: STYLIZE_DATA_DIR="
    run = await bots.spawn()
    assert await run.wait(START_TIMEOUT) == 2, run.log[-3000:]
    last = run.log.strip().splitlines()[-1]
    assert last.startswith(expected), run.log[-3000:]
    assert "STYLIZE_DATA_DIR" in last or "move it aside" in last
    assert "engine pool started" not in run.log  # refused before the workers were started
