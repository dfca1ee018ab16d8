"""End to end: the server's say over the bot (``/stylize-admin``), the Delete button, and a
member's ``/stylize-data forget``, with the real bot (discord.py, the local backend, random
weights on the CPU) against the fake Discord.

One fake and one data folder serve the module; each test leaves the server's policy as it
found it (everything allowed). The bot is restarted once, to show that a day's count holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.client import StylizeBot, build_backend
from bot.config import BotSettings
from bot.jobs.policy import next_reset
from bot.journal import NewStyle
from engine.backend import Backend
from tests.e2e_backend import HeldBackend, e2e_settings
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage, FakeUser, payloads
from tests.pictures import png

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(900)]

TOKEN = "fake-token-XYZ.policy-SECRET"
EPHEMERAL = 1 << 6
START_TIMEOUT = 240
RESULT_TIMEOUT = 120
PHOTO_MENU = "Stylize this photo"
AVATAR_MENU = "Paint my avatar like this"
SUBCOMMANDS = ["channels", "limits", "block", "unblock", "spoiler", "status", "forget", "show"]


@dataclass
class Running:
    bot: StylizeBot
    backend: HeldBackend
    task: asyncio.Task[None]


class Harness:
    def __init__(self, fake: FakeDiscord, data_dir: Path) -> None:
        self.fake = fake
        self.data_dir = data_dir
        self.run: Running | None = None
        self.last: FakeInteraction | None = None
        """The last /stylize whose result came."""

    @property
    def bot(self) -> StylizeBot:
        assert self.run is not None
        return self.run.bot

    @property
    def backend(self) -> HeldBackend:
        assert self.run is not None
        return self.run.backend

    async def start(self) -> None:
        backends: list[HeldBackend] = []

        def held_backend(settings: BotSettings) -> Backend:
            backends.append(HeldBackend(build_backend(settings)))
            return backends[-1]  # type: ignore[return-value]

        identifies = self.fake.identifies
        settings = e2e_settings(self.fake, self.data_dir, stylize_queue_per_user=2)
        bot = StylizeBot(settings, backend_factory=held_backend)
        task = asyncio.create_task(bot.start(TOKEN))
        connected = asyncio.create_task(
            self.fake.wait_for(lambda: self.fake.identifies > identifies, START_TIMEOUT)
        )
        await asyncio.wait({task, connected}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            connected.cancel()
            task.result()
            pytest.fail("the bot stopped during start-up")
        await connected
        await asyncio.wait_for(bot.wait_until_ready(), 30)
        self.run = Running(bot, backends[0], task)

    async def stop(self) -> None:
        assert self.run is not None
        await self.run.bot.close()
        await asyncio.wait_for(self.run.task, 30)
        self.run = None

    async def idle(self) -> None:
        assert await self.bot.jobs.runner.wait_idle(60), "jobs still running after the test"
        assert await self.bot.jobs.outbox.wait_idle(60), "results still undelivered"

    async def stylize(self, user: FakeUser, **options: object) -> FakeInteraction:
        """Run /stylize; returns once the bot has answered (deferred, or refused)."""
        interaction = await self.fake.invoke(
            "stylize",
            {
                "content": self.fake.add_attachment(png(48, 36), "photo.png"),
                "style": self.fake.add_attachment(png(32, 32, noise=True), "painting.png"),
                **options,
            },
            user=user,
        )
        await interaction.wait_callback(timeout=5)
        assert interaction.ack_latency is not None and interaction.ack_latency < 3.0
        return interaction

    async def result(self, user: FakeUser, **options: object) -> FakeMessage:
        """Run /stylize and return its posted result."""
        interaction = await self.stylize(user, **options)
        assert interaction.callbacks[0]["type"] == 5, interaction.callbacks[0]
        await self.fake.wait_for(lambda: bool(interaction.followups), RESULT_TIMEOUT)
        await self.idle()
        self.last = interaction
        [result] = interaction.followups
        return result

    async def admin(self, sub: str, user: FakeUser | None = None, **options: object) -> str:
        """Run ``/stylize-admin sub`` (as the admin by default); returns the private answer."""
        interaction = await self.fake.invoke(
            f"stylize-admin {sub}", options, user=user or self.fake.admin,
            opened_to_everyone=user is not None,
        )  # fmt: skip
        callback = await interaction.wait_callback(timeout=5)
        if callback["type"] == 5:  # deferred (forget): the answer follows
            assert callback["data"]["flags"] & EPHEMERAL
            await self.fake.wait_for(
                lambda: interaction.original is not None and bool(interaction.original.edits), 60
            )
            assert interaction.original is not None
            return interaction.original.content
        return private(callback)

    async def menu(self, name: str, message: FakeMessage, user: FakeUser) -> FakeInteraction:
        """Open the message menu ``name`` (Apps) on ``message``; returns once it is answered."""
        interaction = await self.fake.invoke_menu(name, message, user=user)
        await interaction.wait_callback(timeout=5)
        assert interaction.ack_latency is not None and interaction.ack_latency < 3.0
        return interaction

    async def click(self, message: FakeMessage, prefix: str, user: FakeUser) -> FakeInteraction:
        [custom_id] = [c for c in message.custom_ids if c.startswith(prefix)]
        click = await self.fake.click(message, custom_id, user=user)
        await click.wait_callback(timeout=5)
        assert click.ack_latency is not None and click.ack_latency < 3.0
        return click


def private(callback: dict[str, Any]) -> str:
    assert callback["type"] == 4 and callback["data"]["flags"] & EPHEMERAL, callback
    return str(callback["data"]["content"])


def job_id_of(result: FakeMessage) -> str:
    return result.custom_ids[0].rsplit(":", 1)[1]


def rows(data_dir: Path, query: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        return db.execute(query, args).fetchall()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    async with FakeDiscord(token=TOKEN) as fake:
        harness = Harness(fake, tmp_path_factory.mktemp("data"))
        await harness.start()
        try:
            yield harness
        finally:
            if harness.run is not None:
                await harness.stop()


async def test_the_admin_group_is_for_manage_server_and_data_for_everyone(h: Harness) -> None:
    commands = {c["name"]: c for c in h.fake.commands}
    admin = commands["stylize-admin"]
    assert int(admin["default_member_permissions"]) == payloads.MANAGE_GUILD
    assert [o["name"] for o in admin["options"]] == SUBCOMMANDS
    data = commands["stylize-data"]
    assert data["default_member_permissions"] is None
    assert [o["name"] for o in data["options"]] == ["forget"]


async def test_a_member_without_manage_server_is_refused(h: Harness) -> None:
    fake = h.fake
    # Discord's client hides the group from them...
    with pytest.raises(PermissionError):
        await fake.invoke("stylize-admin show", {}, user=fake.requester)
    # ...and where the admins opened it to everyone, the bot checks again.
    for sub, options in [
        ("show", {}),
        ("block", {"member": fake.other_user}),
        ("spoiler", {"mode": "always"}),
        ("forget", {"member": fake.other_user}),
    ]:
        answer = await h.admin(sub, fake.requester, **options)
        assert "Manage Server" in answer, (sub, answer)
    policy = h.bot.jobs.policies.policy(fake.guild_id)
    assert not policy.blocked and policy.spoiler == "off"


async def test_a_channel_not_allowed_is_refused_with_the_channels_to_use(h: Harness) -> None:
    fake = h.fake
    earlier = await h.result(fake.requester)
    answer = await h.admin("channels", add=fake.channel_option(fake.other_channel_id))
    assert f"<#{fake.other_channel_id}>" in answer
    downloads = len(fake.cdn_requests)
    try:
        refused = await h.stylize(fake.requester)
        text = private(refused.callbacks[0])
        assert f"<#{fake.other_channel_id}>" in text and "Try it there" in text
        assert len(fake.cdn_requests) == downloads  # refused before any download
        # The follow-ups too.
        click = await h.click(earlier, "stylize:reroll:", fake.requester)
        assert f"<#{fake.other_channel_id}>" in private(click.callbacks[0])
        # Allowing this channel as well lets the command through at once.
        await h.admin("channels", add=fake.channel_option(fake.channel_id))
        assert (await h.result(fake.requester)).attachments
    finally:
        answer = await h.admin("channels", everywhere=True)
    assert "every channel" in answer
    assert not h.bot.jobs.policies.policy(fake.guild_id).channels


async def test_a_blocked_member_is_refused_for_commands_and_clicks(h: Harness) -> None:
    fake = h.fake
    earlier = await h.result(fake.requester)
    assert fake.requester.mention in await h.admin("block", member=fake.requester)
    try:
        downloads = len(fake.cdn_requests)
        refused = await h.stylize(fake.requester)
        assert "stopped you from using the bot" in private(refused.callbacks[0])
        assert len(fake.cdn_requests) == downloads
        click = await h.click(earlier, "stylize:stronger:", fake.requester)
        assert "stopped you from using the bot" in private(click.callbacks[0])
        # Others are not affected.
        other = await h.click(earlier, "stylize:stronger:", fake.other_user)
        assert other.callbacks[0]["type"] == 5
        await h.idle()
    finally:
        assert "again" in await h.admin("unblock", member=fake.requester)
    assert (await h.result(fake.requester)).attachments


async def test_the_daily_quota_says_when_it_resets_and_survives_a_restart(h: Harness) -> None:
    fake = h.fake
    everyone = fake.role_option(fake.guild_id)
    used = h.bot.jobs.policies.used_today(fake.guild_id, fake.other_user.id)
    answer = await h.admin("limits", role=everyone, daily=used + 1)
    assert f"@everyone: {used + 1} a day" in answer
    try:
        earlier = await h.result(fake.other_user)
        refused = await h.stylize(fake.other_user)
        text = private(refused.callbacks[0])
        reset = next_reset(time.time())
        assert f"<t:{reset}:R>" in text, text
        assert "higher limit" in text
        # A follow-up counts against the clicker's quota: theirs is spent...
        click = await h.click(earlier, "stylize:reroll:", fake.other_user)
        assert f"<t:{reset}:R>" in private(click.callbacks[0])
        # ...and the count is in the journal: it holds across a restart.
        [(count,)] = rows(
            h.data_dir,
            "SELECT jobs FROM daily_usage WHERE guild_id = ? AND user_id = ?",
            fake.guild_id,
            fake.other_user.id,
        )
        assert count == used + 1
        await h.stop()
        await h.start()
        again = await h.stylize(fake.other_user)
        assert f"<t:{reset}:R>" in private(again.callbacks[0])
    finally:
        await h.admin("limits", role=everyone)
    assert (await h.result(fake.other_user)).attachments


async def test_a_role_with_a_higher_quota_gets_the_more_generous_limit(h: Harness) -> None:
    fake = h.fake
    everyone = fake.role_option(fake.guild_id)
    artists = fake.role_option(fake.artist_role_id)
    policies = h.bot.jobs.policies
    base = policies.used_today(fake.guild_id, fake.requester.id)
    artist_base = policies.used_today(fake.guild_id, fake.artist.id)
    # The requester is spent; the artist role allows one more picture, and a larger one.
    await h.admin("limits", role=everyone, daily=base, max_size=32)
    answer = await h.admin("limits", role=artists, daily=artist_base + 1, max_size=48)
    assert f"{artist_base + 1} a day, up to 48 px" in answer and "Note" not in answer
    try:
        refused = await h.stylize(fake.requester)
        assert "<t:" in private(refused.callbacks[0])
        # @everyone's limit is lower: theirs counts.
        result = await h.result(fake.artist, size=64)
        # The artist role's size cap applies to them (the bot's own is 64 px), and says so.
        assert "48×36 px" in result.content, result.content
        assert h.last is not None and h.last.original is not None
        shown = [edit.get("content") or "" for edit in h.last.original.edits]
        assert any("allow pictures up to 48 px" in text for text in shown), shown
        show = await h.admin("show")
        assert f"<@&{fake.artist_role_id}>: {artist_base + 1} a day, up to 48 px" in show
        assert f"@everyone: {base} a day, up to 32 px" in show
    finally:
        await h.admin("limits", role=everyone)
        await h.admin("limits", role=artists)
    assert "Limits: none" in await h.admin("show")


async def test_the_message_menus_and_their_choice_follow_the_policy(h: Harness) -> None:
    fake = h.fake
    member = fake.requester
    everyone = fake.role_option(fake.guild_id)
    await h.bot.journal.add_style(
        NewStyle(fake.guild_id, "Waves", png(32, 32, noise=True), b"thumb", fake.admin.id),
        max_count=25,
        max_bytes=10**6,
    )
    photo = fake.post(fake.other_user, "look", attachments=[(png(48, 36), "photo.png")])
    try:
        # Blocked: both menus are refused privately, before anything is fetched.
        await h.admin("block", member=member)
        downloads = len(fake.cdn_requests)
        for name in (PHOTO_MENU, AVATAR_MENU):
            refused = await h.menu(name, photo, member)
            assert "stopped you from using the bot" in private(refused.callbacks[0])
        assert len(fake.cdn_requests) == downloads
        await h.admin("unblock", member=member)
        # A channel the bot does not work in: the menus name the ones it does.
        await h.admin("channels", add=fake.channel_option(fake.other_channel_id))
        refused = await h.menu(AVATAR_MENU, photo, member)
        assert f"<#{fake.other_channel_id}>" in private(refused.callbacks[0])
        await h.admin("channels", everywhere=True)
        # The photo is taken while the member may still paint; by the time they choose the
        # style, their day's quota is spent: the choice is refused, with the reset time.
        picking = await h.menu(PHOTO_MENU, photo, member)
        await fake.wait_for(
            lambda: picking.original is not None and bool(picking.original.selects), 60
        )
        used = h.bot.jobs.policies.used_today(fake.guild_id, member.id)
        await h.admin("limits", role=everyone, daily=used)
        assert picking.original is not None
        [select] = picking.original.selects
        chosen = await fake.select(picking.original, select["custom_id"], ["Waves"], user=member)
        text = private(await chosen.wait_callback(timeout=5))
        assert f"<t:{next_reset(time.time())}:R>" in text, text
        assert h.bot.jobs.runner.active(member.id) == 0
        # With room again, the same choice paints, under the server's spoiler mode.
        await h.admin("limits", role=everyone)
        await h.admin("spoiler", mode="always")
        again = await fake.select(picking.original, select["custom_id"], ["Waves"], user=member)
        assert (await again.wait_callback(timeout=5))["type"] == 5
        await fake.wait_for(lambda: bool(again.followups), RESULT_TIMEOUT)
        await h.idle()
        [(name, _)] = again.followups[0].attachments
        assert name.startswith("SPOILER_stylized-"), name
    finally:
        await h.admin("unblock", member=member)
        await h.admin("channels", everywhere=True)
        await h.admin("limits", role=everyone)
        await h.admin("spoiler", mode="off")
        await h.bot.journal.remove_style(fake.guild_id, "Waves")


async def test_bigger_stops_at_the_size_the_clickers_roles_allow(h: Harness) -> None:
    fake = h.fake
    everyone = fake.role_option(fake.guild_id)
    result = await h.result(fake.requester, size=32)
    await h.admin("limits", role=everyone, max_size=32)
    try:
        # The button was drawn under the bot's own limit (64 px), but @everyone may now have
        # no more than 32 px: the click says so, and queues nothing.
        click = await h.click(result, "stylize:bigger:", fake.requester)
        text = private(click.callbacks[0])
        assert "**⤢ Bigger** can't change this picture any more" in text, text
        assert h.bot.jobs.runner.active(fake.requester.id) == 0
        # The artist role allows more: for them, the same button makes it 64 px.
        await h.admin("limits", role=fake.role_option(fake.artist_role_id), max_size=64)
        bigger = await h.click(result, "stylize:bigger:", fake.artist)
        assert bigger.callbacks[0]["type"] == 5
        await fake.wait_for(lambda: bool(bigger.followups), RESULT_TIMEOUT)
        await h.idle()
        assert "64×48 px" in bigger.followups[0].content, bigger.followups[0].content
    finally:
        await h.admin("limits", role=everyone)
        await h.admin("limits", role=fake.role_option(fake.artist_role_id))


@pytest.mark.parametrize(
    ("mode", "nsfw", "spoiler"),
    [("off", False, False), ("always", True, True), ("outside_nsfw", False, True),
     ("outside_nsfw", True, False)],
)  # fmt: skip
async def test_each_spoiler_mode(h: Harness, mode: str, nsfw: bool, spoiler: bool) -> None:
    fake = h.fake
    await fake.set_channel_nsfw(nsfw)
    try:
        assert "results are" in await h.admin("spoiler", mode=mode)
        result = await h.result(fake.requester)
        [(name, _)] = result.attachments
        assert name.startswith("SPOILER_stylized-") == spoiler, name
        assert name.removeprefix("SPOILER_").startswith("stylized-")
    finally:
        await fake.set_channel_nsfw(False)
        await h.admin("spoiler", mode="off")


async def test_delete_by_the_requester_removes_the_post_and_the_pictures(h: Harness) -> None:
    fake = h.fake
    result = await h.result(fake.requester)
    job_id = job_id_of(result)
    assert (h.data_dir / "jobs" / job_id).is_dir()
    click = await h.click(result, "stylize:delete:", fake.requester)
    assert click.callbacks[0]["type"] == 6
    await fake.wait_for(lambda: result.deleted and bool(click.followups), 10)
    assert click.followups[0].ephemeral and "Deleted" in click.followups[0].content
    assert not (h.data_dir / "jobs" / job_id).exists()
    [(deleted_at,)] = rows(h.data_dir, "SELECT deleted_at FROM jobs WHERE id = ?", job_id)
    assert deleted_at is not None
    # A member whose client still shows the message clicks a follow-up: it says so.
    stale = dataclasses.replace(result, id=payloads.snowflake(), deleted=False)
    fake.add_message(stale)
    again = await h.click(stale, "stylize:reroll:", fake.other_user)
    assert "was deleted" in private(again.callbacks[0])


async def test_delete_by_a_moderator_and_refused_to_others(h: Harness) -> None:
    fake = h.fake
    result = await h.result(fake.requester)
    job_id = job_id_of(result)
    refused = await h.click(result, "stylize:delete:", fake.other_user)
    assert "Only the person who asked" in private(refused.callbacks[0])
    assert not result.deleted and (h.data_dir / "jobs" / job_id).is_dir()
    by_moderator = await h.click(result, "stylize:delete:", fake.moderator)
    assert by_moderator.callbacks[0]["type"] == 6
    await fake.wait_for(lambda: result.deleted, 10)
    assert not (h.data_dir / "jobs" / job_id).exists()


async def test_status_shows_the_queue_the_engine_and_today(h: Harness) -> None:
    text = await h.admin("status")
    assert "Waiting: 0 · Running: 0" in text
    assert "Engine capacity: 1 at once (cpu)" in text
    assert "still to deliver: 0" in text
    [(jobs, failed)] = rows(
        h.data_dir,
        "SELECT COUNT(*), COALESCE(SUM(state = 'failed'), 0) FROM jobs WHERE guild_id = ? "
        "AND created_at >= ?",
        h.fake.guild_id,
        next_reset(time.time()) - 86400,
    )
    assert f"{jobs} pictures asked for, {failed} failed" in text


def leftovers(data_dir: Path, user: FakeUser, tokens: list[str]) -> list[str]:
    """Whatever the data folder still holds of a member: rows with their id, files of their
    jobs, and their interaction tokens anywhere in the journal's bytes."""
    found = []
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        for table, column in [("jobs", "user_id"), ("daily_usage", "user_id"),
                              ("blocked_members", "user_id"), ("styles", "added_by"),
                              ("picks", "user_id")]:  # fmt: skip
            count = db.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (user.id,))
            if count.fetchone()[0]:
                found.append(f"a row in {table}")
    raw = b"".join(path.read_bytes() for path in data_dir.glob("jobs.sqlite3*") if path.is_file())
    found += [f"token {token[:12]}…" for token in tokens if token.encode() in raw]
    return found


async def test_forget_member_leaves_nothing_of_them(h: Harness) -> None:
    fake = h.fake
    member = fake.other_user
    done = await h.result(member)
    kept = [job_id_of(done)]
    await h.bot.journal.add_style(
        NewStyle(fake.guild_id, "Theirs", b"image", b"thumb", member.id),
        max_count=25,
        max_bytes=10**6,
    )
    await h.admin("block", member=member)
    # A photo they took from a message, still waiting for its style.
    await h.admin("unblock", member=member)
    posted = fake.post(fake.requester, "look", attachments=[(png(40, 30), "photo.png")])
    picking = await h.menu(PHOTO_MENU, posted, member)
    await fake.wait_for(lambda: picking.original is not None and bool(picking.original.edits), 60)
    [(pick_id,)] = rows(h.data_dir, "SELECT id FROM picks WHERE user_id = ?", member.id)
    waiting = h.data_dir / "picks" / f"{pick_id}.photo"
    assert waiting.is_file()
    await h.admin("block", member=member)
    tokens = [i.token for i in fake.interactions.values() if i.user.id == member.id]
    assert leftovers(h.data_dir, member, tokens)  # there is something to forget
    answer = await h.admin("forget", member=member)
    assert "Deleted" in answer and member.mention in answer and "a former member" in answer
    assert leftovers(h.data_dir, member, tokens) == []
    assert not any((h.data_dir / "jobs" / job_id).exists() for job_id in kept)
    assert not waiting.exists()  # the photo waiting for its style too
    [style] = await h.bot.journal.styles(fake.guild_id)
    assert style.added_by == 0
    await h.bot.journal.remove_style(fake.guild_id, "Theirs")
    # Forgotten by an admin, the block went too: they can paint again.
    assert (await h.result(member)).attachments


async def test_stylize_data_forget_cancels_then_deletes_after_a_confirmation(h: Harness) -> None:
    fake = h.fake
    member = fake.requester
    await h.result(member)
    h.backend.progress.clear()  # their next picture stays running
    try:
        running = await h.stylize(member)
        await fake.wait_for(lambda: bool(h.bot.jobs.runner.counts()[1]), 60)
        ask = await fake.invoke("stylize-data forget", {}, user=member)
        text = private(await ask.wait_callback(timeout=5))
        assert "can't be undone" in text
        assert ask.original is not None
        [custom_id] = ask.original.custom_ids
        assert custom_id == f"stylize:forget:{member.id}"
        # Nothing is deleted before the confirmation.
        assert rows(h.data_dir, "SELECT 1 FROM jobs WHERE user_id = ?", member.id)
        confirm = await fake.click(ask.original, custom_id, user=member)
        assert (await confirm.wait_callback(timeout=5))["type"] == 6
        await fake.wait_for(lambda: "Deleted your" in ask.original.content, 60)  # type: ignore[union-attr]
    finally:
        h.backend.progress.set()
    assert ask.original.custom_ids == []
    await h.idle()
    assert running.original is not None and "Cancelled" in running.original.content
    tokens = [i.token for i in fake.interactions.values() if i.user.id == member.id]
    assert leftovers(h.data_dir, member, tokens) == []
    assert not [p for p in (h.data_dir / "jobs").iterdir() if p.is_dir()
                and not rows(h.data_dir, "SELECT 1 FROM jobs WHERE id = ?", p.name)]  # fmt: skip
