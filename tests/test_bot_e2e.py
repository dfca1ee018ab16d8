"""End to end: the real bot (discord.py, the local backend, random weights on the CPU) against a
fake Discord on 127.0.0.1 (tests/fake_discord) that speaks REST, the gateway and the CDN.

One bot and one fake serve the whole module; every test leaves the queue empty. The backend is
the real one, wrapped in ``HeldBackend`` so that a test can keep a job "running" for as long
as it needs (it holds the job's events back, as a slow job would) and so the tests do not
depend on the machine's speed. The last test runs the real ``python -m bot``;
tests/test_bot_durability.py stops, kills and restarts it.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yarl
from PIL import Image

from bot.client import EXIT_ENGINE_BROKEN, StylizeBot, build_backend
from bot.config import BotSettings
from engine.backend import Backend
from engine.jobs import Cancelled, Done, JobProgress
from tests.e2e_backend import INTERVAL, HeldBackend, e2e_settings
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage, FakeUser, payloads
from tests.pictures import png

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "fake-token-XYZ.e2e-SECRET-do-not-log"
EPHEMERAL = 1 << 6
CANCEL_ID = re.compile(r"^stylize:cancel:[0-9a-f]{32}$")
START_TIMEOUT = 240  # the backend spawns a worker that imports torch and builds VGG19


# --- the harness ----------------------------------------------------------------------------


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Harness:
    fake: FakeDiscord
    bot: StylizeBot
    backend: HeldBackend
    logs: LogCapture
    running: asyncio.Task[None]
    data_dir: Path
    latencies: list[float] = field(default_factory=list)

    async def stylize(
        self,
        *,
        user: FakeUser | None = None,
        content: dict[str, Any] | None = None,
        style: dict[str, Any] | None = None,
        locale: str = "en-US",
        **options: object,
    ) -> FakeInteraction:
        """Run /stylize (in the member's ``locale``); returns once the bot has acknowledged it
        (checked within 3 s)."""
        content = content or self.fake.add_attachment(png(64, 48), "photo.png")
        style = style or self.fake.add_attachment(png(48, 48, noise=True), "painting.png")
        interaction = await self.fake.invoke(
            "stylize", {"content": content, "style": style, **options}, user=user, locale=locale
        )
        callback = await interaction.wait_callback(timeout=5)
        assert callback["type"] == 5, callback  # deferred "thinking"
        latency = interaction.ack_latency
        assert latency is not None and latency < 3.0
        self.latencies.append(latency)
        return interaction

    async def status(
        self, interaction: FakeInteraction, predicate: Callable[[str], bool], timeout: float = 30
    ) -> FakeMessage:
        """Wait until the interaction's status message text satisfies ``predicate``."""
        await self.fake.wait_for(
            lambda: interaction.original is not None and predicate(interaction.original.content),
            timeout,
        )
        assert interaction.original is not None
        return interaction.original

    async def click_cancel(self, interaction: FakeInteraction, user: FakeUser) -> FakeInteraction:
        message = interaction.original
        assert message is not None
        [custom_id] = [c for c in message.custom_ids if CANCEL_ID.match(c)]
        click = await self.fake.click(message, custom_id, user=user)
        await click.wait_callback(timeout=5)
        return click

    async def idle(self) -> None:
        jobs = self.bot.jobs
        assert await jobs.runner.wait_idle(30), "jobs still running after the test"
        assert await jobs.outbox.wait_idle(30), "results still undelivered after the test"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    logs = LogCapture()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)
    backends: list[HeldBackend] = []

    def held_backend(settings: BotSettings) -> Backend:
        backends.append(HeldBackend(build_backend(settings)))
        return backends[-1]  # type: ignore[return-value]

    try:
        async with FakeDiscord(token=TOKEN) as fake:
            data_dir = tmp_path_factory.mktemp("data")
            bot = StylizeBot(e2e_settings(fake, data_dir), backend_factory=held_backend)
            running = asyncio.create_task(bot.start(TOKEN))
            ready = asyncio.create_task(fake.wait_commands(timeout=START_TIMEOUT))
            await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                ready.cancel()
                running.result()  # raises what stopped the bot
                pytest.fail("the bot stopped during start-up")
            await ready
            await asyncio.wait_for(bot.wait_until_ready(), 30)
            harness = Harness(fake, bot, backends[0], logs, running, data_dir)
            yield harness
            await bot.close()
            await asyncio.wait_for(running, 30)
    finally:
        root.removeHandler(logs)
        root.setLevel(previous_level)


# --- start-up -------------------------------------------------------------------------------


async def test_command_is_registered_to_the_guild_with_its_options(h: Harness) -> None:
    [command] = [c for c in h.fake.commands if c["name"] == "stylize"]
    synced = [r for r in h.fake.requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert synced and all(f"/guilds/{h.fake.guild_id}/" in r.path for r in synced)
    options = {o["name"]: o for o in command["options"]}
    assert list(options) == [
        "content",
        "style",
        "saved_style",
        "strength",
        "size",
        "quality",
        "preserve_colors",
        "seed",
    ]
    assert options["content"]["type"] == options["style"]["type"] == 11  # attachment
    assert options["content"]["required"] and not options["style"].get("required")
    assert (options["saved_style"]["type"], options["saved_style"]["autocomplete"]) == (3, True)
    assert (options["strength"]["type"], options["strength"]["min_value"]) == (10, 0.1)
    assert options["strength"]["max_value"] == 10
    assert (options["size"]["type"], options["size"]["max_value"]) == (4, 64)  # STYLIZE_MAX_SIZE
    assert [c["value"] for c in options["quality"]["choices"]] == ["draft", "standard", "high"]
    assert options["preserve_colors"]["type"] == 5
    assert (options["seed"]["type"], options["seed"]["min_value"]) == (4, 0)
    assert not any(o.get("required") for n, o in options.items() if n != "content")


async def test_rest_and_gateway_go_to_the_configured_urls(h: Harness) -> None:
    # Every REST call so far reached the fake, with the bot token where Discord wants it.
    assert any(r.path == "/users/@me" for r in h.fake.requests)
    assert h.bot.ws is not None
    assert str(h.bot.ws.gateway).startswith(h.fake.gateway_url)


async def test_resumes_stay_on_the_configured_gateway(h: Harness) -> None:
    ws = h.bot.ws
    assert ws is not None
    # What READY from the real Discord leaves there: a resume would go around a proxy.
    ws.gateway = yarl.URL("wss://gateway-us-east1-b.discord.gg")
    h.bot.dispatch("connect")  # as discord.py does while it parses READY
    assert str(ws.gateway) == h.fake.gateway_url


async def test_commands_still_arrive_after_the_connection_drops(h: Harness) -> None:
    await h.fake.drop_connection()
    await h.fake.wait_resumed(timeout=60)
    interaction = await h.stylize(content=h.fake.add_attachment(b"words", "notes.txt"))
    await h.status(interaction, lambda text: text.startswith("❌"))


async def test_commands_still_arrive_after_the_session_is_invalidated(h: Harness) -> None:
    identifies = h.fake.identifies
    await h.fake.invalidate_session(resumable=False)  # discord.py IDENTIFYs again, anew
    await h.fake.wait_for(lambda: h.fake.identifies > identifies, 60)
    interaction = await h.stylize(content=h.fake.add_attachment(b"words", "notes.txt"))
    await h.status(interaction, lambda text: text.startswith("❌"))


# --- the happy path -------------------------------------------------------------------------


async def test_happy_path_defers_shows_progress_and_posts_the_result(h: Harness) -> None:
    fake = h.fake
    h.backend.final.clear()  # hold the end until the progress has been seen
    h.backend.preview_interval = 1e-6  # the engine renders a preview at every step
    try:
        interaction = await h.stylize(size=48, seed=7, quality="high")
        status = await h.status(interaction, lambda text: "step 8/8 (100%)" in text, timeout=120)
    finally:
        h.backend.final.set()
        h.backend.preview_interval = None
    await fake.wait_for(lambda: bool(interaction.followups), 60)
    await h.status(interaction, lambda text: text.startswith("✅"))
    await h.idle()

    # The result: mentions the user, states the settings, and is a decodable PNG.
    [result] = interaction.followups
    assert result.content.startswith(f"<@{fake.requester.id}>")
    for part in ("48×36 px", "8 steps", "strength 1", "seed 7", "took", "PNG"):
        assert part in result.content, result.content
    [(filename, data)] = result.attachments
    assert re.fullmatch(r"stylized-[0-9a-f]{12}\.png", filename), filename
    assert Image.open(io.BytesIO(data)).size == (48, 36)
    assert [m["id"] for m in result.mentions] == [str(fake.requester.id)]

    # The status message: a Cancel button from the first edit, position or start, then
    # progress; throttled to the interval; "done" with a link to the result and no button.
    first = status.edits[0]
    assert first["content"].startswith(("⏳", "🎨"))
    assert any(CANCEL_ID.match(c.get("custom_id", "")) for c in _components(first))
    updates = [
        t
        for body, t in zip(status.edits, status.edit_times, strict=True)
        if body.get("content", "").startswith(("⏳", "🎨"))
    ]
    gaps = [later - earlier for earlier, later in itertools.pairwise(updates)]
    assert gaps and min(gaps) >= INTERVAL, gaps
    assert re.search(r"step \d+/8 \(\d+%\)", "\n".join(b.get("content", "") for b in status.edits))
    assert status.content.startswith("✅ Done") and "http" in status.content
    assert status.components == [] and status.attachments == []

    # A preview rode on a progress edit whenever the worker sent one.
    job_id = CANCEL_ID.match(_custom_ids(first)[0]).group(0).rsplit(":", 1)[1]  # type: ignore[union-attr]
    previews = [e for e in h.backend.events[job_id] if isinstance(e, JobProgress) and e.preview]
    uploaded = [
        f
        for r in fake.requests
        if r.method == "PATCH" and interaction.token in r.path
        for f in r.files
        if f[0] == "preview.jpg"
    ]
    assert previews  # the engine rendered previews (its progress events are throttled)...
    assert uploaded  # ...and the status edits carried them, as small JPEGs
    for _, _, data in uploaded:
        preview = Image.open(io.BytesIO(data))
        assert preview.format == "JPEG" and max(preview.size) <= 256


def _components(body: dict[str, Any]) -> list[dict[str, Any]]:
    rows = body.get("components") or []
    return [c for row in rows for c in row.get("components", [])]


def _custom_ids(body: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for c in _components(body) if "custom_id" in c]


# --- refusals -------------------------------------------------------------------------------

MB = 1024 * 1024


@pytest.mark.parametrize(
    ("case", "expected", "downloaded"),
    [
        ("text file", "photo (content) isn't an image", False),
        ("bytes that are no image", "isn't an image we can read", True),
        ("declared too large", "the limit is 1 MB", False),
        ("too large, size understated", "the limit is 1 MB", True),
        ("decompression bomb", "the limit is", True),
    ],
)
async def test_bad_uploads_are_refused_with_a_message(
    h: Harness, case: str, expected: str, downloaded: bool
) -> None:
    fake = h.fake
    attachments = {
        "text file": lambda: fake.add_attachment(b"just words", "notes.txt"),
        "bytes that are no image": lambda: fake.add_attachment(
            b"not a picture at all", "photo.png", content_type="image/png"
        ),
        "declared too large": lambda: fake.add_attachment(
            png(64, 48), "photo.png", declared_size=2 * MB
        ),
        "too large, size understated": lambda: fake.add_attachment(
            png(700, 700, noise=True), "photo.png", declared_size=50_000
        ),
        "decompression bomb": lambda: fake.add_attachment(png(3000, 3000), "photo.png"),
    }
    content = attachments[case]()
    folders = sorted((h.data_dir / "jobs").iterdir())
    interaction = await h.stylize(content=content)
    status = await h.status(interaction, lambda text: text.startswith("❌"))
    assert sorted((h.data_dir / "jobs").iterdir()) == folders  # nothing of it kept on disk
    assert expected in status.content, status.content
    fetched = [r for r in fake.cdn_requests if str(content["id"]) in r.path]
    assert bool(fetched) == downloaded
    assert not status.components and not interaction.followups
    assert not h.bot.is_closed()


# --- the queue: limits, fair order, positions, Cancel ---------------------------------------


async def test_queue_limit_fair_order_positions_and_cancel(h: Harness) -> None:
    fake = h.fake
    requester, other, moderator = fake.requester, fake.other_user, fake.moderator
    h.backend.progress.clear()  # the first job keeps the only worker busy
    try:
        first = await h.stylize(user=requester, size=32)
        await h.status(first, lambda text: text.startswith("🎨 Starting"))
        second = await h.stylize(user=requester, size=32)
        await h.status(second, lambda text: "you're next" in text)

        # Another user's first job goes before the requester's second, and both are told.
        others = await h.stylize(user=other, size=32)
        await h.status(others, lambda text: "you're next" in text)
        await h.status(second, lambda text: "position **2**" in text)

        # A third job is refused: the requester has two queued or running.
        third = await h.stylize(user=requester, size=32)
        refusal = await h.status(third, lambda text: text.startswith("❌"))
        assert "You already have 2 jobs" in refusal.content

        # Someone else's press on the requester's button: an ephemeral "not yours".
        click = await h.click_cancel(second, other)
        assert click.callbacks[0]["type"] == 4
        assert click.callbacks[0]["data"]["flags"] & EPHEMERAL
        assert "not yours" in click.callbacks[0]["data"]["content"]

        # A moderator (Manage Messages) may cancel anyone's; the queue moves up.
        click = await h.click_cancel(others, moderator)
        assert click.callbacks[0]["type"] == 6  # acknowledged; the status says the rest
        await h.status(others, lambda text: text == f"🛑 Cancelled by <@{moderator.id}>.")
        await h.status(second, lambda text: "you're next" in text)

        # The requester cancels their queued job, then their running one.
        await h.click_cancel(second, requester)
        await h.status(second, lambda text: text == "🛑 Cancelled.")
        await h.click_cancel(first, requester)
        await h.status(first, lambda text: text == "🛑 Cancelled.")
    finally:
        h.backend.progress.set()
    await h.idle()
    for interaction in (first, second, others):
        assert interaction.original is not None and interaction.original.components == []
        assert not interaction.followups  # no result for a cancelled job


def _old_message(fake: FakeDiscord, custom_id: str) -> FakeMessage:
    """A status message with one button, left by an earlier run (or version) of the bot."""
    message = FakeMessage(
        id=payloads.snowflake(),
        channel_id=fake.channel_id,
        author_id=fake.bot_user_id,
        author=fake.bot_user.payload(),
        kind="channel",
        created_at=time.time(),
        content="🎨 Painting: step 3/10 (30%).",
        components=[
            {
                "type": 1,
                "components": [{"type": 2, "style": 4, "label": "Cancel", "custom_id": custom_id}],
            }
        ],
    )
    fake.add_message(message)
    return message


async def test_stale_cancel_button_gets_a_clear_answer(h: Harness) -> None:
    fake = h.fake
    # A status message left by a run of the bot before a restart.
    custom_id = "stylize:cancel:" + "0" * 32
    click = await fake.click(_old_message(fake, custom_id), custom_id, user=fake.requester)
    callback = await click.wait_callback(timeout=5)
    assert callback["type"] == 4
    assert callback["data"]["flags"] & EPHEMERAL
    assert "isn't running any more" in callback["data"]["content"]


@pytest.mark.parametrize(
    "custom_id",
    ["stylize:cancel:" + "0" * 12, "cancel-7f3a", "stylize:retry:" + "0" * 32, "x" * 100],
)
async def test_a_click_on_a_button_no_item_knows_is_answered_privately(
    h: Harness, custom_id: str
) -> None:
    fake = h.fake
    click = await fake.click(_old_message(fake, custom_id), custom_id, user=fake.requester)
    callback = await click.wait_callback(timeout=5)
    assert callback["type"] == 4 and callback["data"]["flags"] & EPHEMERAL, callback
    assert "This button no longer works" in callback["data"]["content"]


async def test_a_click_on_a_known_button_is_answered_once(h: Harness) -> None:
    fake = h.fake
    custom_id = "stylize:cancel:" + "1" * 32
    click = await fake.click(_old_message(fake, custom_id), custom_id, user=fake.requester)
    await click.wait_callback(timeout=5)
    # Answered after every handler of the first click has had its turn.
    unknown = "cancel-7f3a"
    later = await fake.click(_old_message(fake, unknown), unknown, user=fake.requester)
    await later.wait_callback(timeout=5)
    assert len(click.callbacks) == 1
    answers = [r for r in fake.requests if r.path.startswith(f"/interactions/{click.id}/")]
    assert len(answers) == 1 and answers[0].status < 300, [r.response for r in answers]


# --- Discord's limits -----------------------------------------------------------------------


async def test_result_after_the_token_expired_goes_through_the_channel(h: Harness) -> None:
    fake = h.fake
    h.backend.progress.clear()
    try:
        interaction = await h.stylize(size=32, seed=3)
        await h.status(interaction, lambda text: text.startswith("🎨 Starting"))
        fake.expire_token(interaction)  # 15 minutes have passed: 401 50027 from now on
    finally:
        h.backend.progress.set()
    await fake.wait_for(
        lambda: any(m.attachments and "seed 3" in m.content for m in fake.channel_messages()), 120
    )
    await h.idle()
    [result] = [m for m in fake.channel_messages() if "seed 3" in m.content]
    assert result.content.startswith(f"<@{fake.requester.id}>")
    [(_, data)] = result.attachments
    assert Image.open(io.BytesIO(data)).size == (32, 24)
    refused = [r for r in fake.requests if interaction.token in r.path and r.status == 401]
    assert refused, "the bot never tried the expired token"
    posted = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert posted[-1].headers["Authorization"] == f"Bot {TOKEN}"
    assert not interaction.followups


async def test_deleted_status_message_does_not_lose_the_result(h: Harness) -> None:
    fake = h.fake
    h.backend.progress.clear()
    try:
        interaction = await h.stylize(size=32, seed=5)
        status = await h.status(interaction, lambda text: text.startswith("🎨 Starting"))
        fake.delete_message(status.id)
    finally:
        h.backend.progress.set()
    await fake.wait_for(lambda: bool(interaction.followups), 120)
    await h.idle()
    [result] = interaction.followups
    assert "seed 5" in result.content and result.attachments
    gone = [r for r in fake.requests if interaction.token in r.path and r.status == 404]
    assert gone and gone[-1].response["code"] == 10008


# --- abuse and faults -----------------------------------------------------------------------


def _job_id(interaction: FakeInteraction) -> str:
    assert interaction.original is not None
    [custom_id] = [c for c in interaction.original.custom_ids if CANCEL_ID.match(c)]
    return custom_id.rsplit(":", 1)[1]


async def test_a_channel_where_the_bot_may_not_post_is_refused_at_once(h: Harness) -> None:
    fake = h.fake
    saved = dict(fake.role_permissions)
    for role in (fake.guild_id, fake.bot_role_id):
        fake.role_permissions[role] &= ~payloads.ATTACH_FILES
    try:
        content = fake.add_attachment(png(64, 48), "photo.png")
        interaction = await fake.invoke(
            "stylize", {"content": content, "style": fake.add_attachment(png(8, 8), "s.png")}
        )
        callback = await interaction.wait_callback(timeout=5)
    finally:
        fake.role_permissions.update(saved)
    assert callback["type"] == 4 and callback["data"]["flags"] & EPHEMERAL
    assert "Attach Files" in callback["data"]["content"], callback
    assert "Send Messages" not in callback["data"]["content"]
    assert not [r for r in fake.cdn_requests if str(content["id"]) in r.path]


async def test_a_burst_from_one_user_downloads_only_what_the_limit_allows(h: Harness) -> None:
    fake = h.fake
    contents = [fake.add_attachment(png(64, 48), f"photo{i}.png") for i in range(5)]
    h.backend.progress.clear()
    try:
        interactions = await asyncio.gather(
            *(
                fake.invoke(
                    "stylize",
                    {"content": c, "style": fake.add_attachment(png(48, 48), "s.png"),
                     "size": 32},
                    user=fake.other_user,
                )
                for c in contents
            )
        )  # fmt: skip
        for interaction in interactions:
            await h.status(interaction, lambda text: text.startswith(("❌", "⏳", "🎨")))
        refused = [i for i in interactions if i.original and i.original.content.startswith("❌")]
        assert len(refused) == 3  # STYLIZE_QUEUE_PER_USER=2
        assert all("You already have 2 jobs" in i.original.content for i in refused)  # type: ignore[union-attr]
        fetched = {
            str(c["id"]) for c in contents for r in fake.cdn_requests if str(c["id"]) in r.path
        }
        assert len(fetched) == 2, fetched  # the refused ones were never downloaded
    finally:
        h.backend.progress.set()
    for interaction in interactions:
        if interaction not in refused:  # both accepted jobs run to the end, one after the other
            await h.status(interaction, lambda text: text.startswith("✅"), timeout=120)
    await h.idle()


async def test_a_cancel_whose_acknowledgement_fails_still_cancels(h: Harness) -> None:
    fake = h.fake
    h.backend.progress.clear()
    try:
        interaction = await h.stylize(size=32)
        status = await h.status(
            interaction, lambda text: text.startswith(("🎨", "⏳")) and "Cancelling" not in text
        )
        await fake.wait_for(lambda: any(CANCEL_ID.match(c) for c in status.custom_ids), 30)
        fake.fail_next("POST", "/interactions/*", 404, payloads.error(10062, "Unknown interaction"))
        [custom_id] = [c for c in status.custom_ids if CANCEL_ID.match(c)]
        await fake.click(status, custom_id, user=fake.requester)
        await h.status(interaction, lambda text: text == "🛑 Cancelled.")
    finally:
        h.backend.progress.set()
    await h.idle()
    assert not interaction.followups


async def test_a_cancel_while_the_result_is_encoded_posts_nothing(h: Harness) -> None:
    fake = h.fake
    h.backend.final.clear()  # the worker has finished; its Done waits, as during the encode
    try:
        interaction = await h.stylize(size=32)
        await h.status(interaction, lambda text: text.startswith(("🎨", "⏳")))
        await fake.wait_for(lambda: interaction.original is not None and bool(
            [c for c in interaction.original.custom_ids if CANCEL_ID.match(c)]), 60)  # fmt: skip
        job_id = _job_id(interaction)
        await fake.wait_for(lambda: isinstance(h.backend.final_event(job_id), Done), 120)
        await h.click_cancel(interaction, fake.requester)
        await h.status(interaction, lambda text: text == "🛑 Cancelled.")
    finally:
        h.backend.final.set()
    await h.idle()
    assert not interaction.followups
    assert not [m for m in fake.channel_messages() if m.attachments and job_id[:12] in str(
        m.attachments)]  # fmt: skip


async def test_the_engine_hears_a_cancel_of_a_running_job(h: Harness) -> None:
    h.backend.progress.clear()
    h.backend.steps = 100_000  # far longer than the test: only the cancel can end it
    try:
        interaction = await h.stylize(size=64, quality="high")
        await h.status(interaction, lambda text: text.startswith("🎨 Starting"))
        job_id = _job_id(interaction)
        await h.click_cancel(interaction, h.fake.requester)
        await h.status(interaction, lambda text: text == "🛑 Cancelled.", timeout=120)
    finally:
        h.backend.progress.set()
        h.backend.steps = None
    await h.idle()
    # The end came from the engine itself, which stopped the job within a step.
    assert isinstance(h.backend.final_event(job_id), Cancelled)
    assert not interaction.followups


async def test_a_status_message_refused_for_good_is_not_edited_again(h: Harness) -> None:
    fake = h.fake
    h.backend.final.clear()
    try:
        interaction = await h.stylize(size=48, quality="high", seed=11)
        await h.status(interaction, lambda text: text.startswith("🎨"))
        fake.fail_next(
            "PATCH", f"/webhooks/*/{interaction.token}/*", 403,
            payloads.error(50013, "Missing Permissions"), times=1000,
        )  # fmt: skip
        await fake.wait_for(
            lambda: bool(h.backend.events) and any(
                r.status == 403 for r in fake.requests if interaction.token in r.path), 120,
        )  # fmt: skip
        job_id = _job_id(interaction)
        await fake.wait_for(lambda: isinstance(h.backend.final_event(job_id), Done), 120)
    finally:
        h.backend.final.set()
        fake.clear_failures()
    await h.idle()
    refused = [r for r in fake.requests if interaction.token in r.path and r.status == 403]
    assert len(refused) == 1, [r.path for r in refused]
    assert [m for m in interaction.followups if "seed 11" in m.content]  # the result still came


async def test_a_result_upload_refused_429_then_5xx_still_arrives(h: Harness) -> None:
    fake = h.fake
    h.backend.final.clear()  # the faults must be in place before the result goes out
    try:
        interaction = await h.stylize(size=32, seed=23)
        followup = f"/webhooks/*/{interaction.token}"
        fake.rate_limit_next("POST", followup, retry_after=0.2)
        fake.fail_next("POST", followup, 502)
    finally:
        h.backend.final.set()
    await fake.wait_for(lambda: bool(interaction.followups), 120)
    await h.idle()
    posts = [r.status for r in fake.requests if r.method == "POST" and interaction.token in r.path
             and not r.path.endswith("/callback")]  # fmt: skip
    assert posts == [429, 502, 200], posts
    [result] = interaction.followups
    assert "seed 23" in result.content and result.attachments


async def test_a_result_over_the_upload_limit_arrives_re_encoded_below_it(h: Harness) -> None:
    fake = h.fake
    limit = 6_000  # the PNG of a noisy 64 × 48 px picture is larger; the interaction says so
    saved = fake.upload_limit
    fake.upload_limit = limit
    try:
        interaction = await h.stylize(
            size=64,
            seed=29,
            content=fake.add_attachment(png(64, 48, noise=True), "noisy.png"),
            style=fake.add_attachment(png(64, 64, noise=True), "noise.png"),
        )
        await fake.wait_for(lambda: bool(interaction.followups), 120)
    finally:
        fake.upload_limit = saved
    await h.idle()
    [result] = interaction.followups
    [(filename, data)] = result.attachments
    assert len(data) <= limit
    assert not filename.endswith(".png"), filename  # re-encoded to fit
    assert Image.open(io.BytesIO(data)).size == (64, 48)
    uploads = [f for r in fake.requests if interaction.token in r.path for f in r.files
               if f[0].startswith("stylized-")]  # fmt: skip
    assert all(len(f[2]) <= limit for f in uploads)  # never one Discord would refuse


async def test_a_result_refused_as_too_large_is_sent_again(h: Harness) -> None:
    fake = h.fake
    h.backend.final.clear()
    try:
        interaction = await h.stylize(
            size=64, seed=31, style=fake.add_attachment(png(64, 64, noise=True), "noise.png")
        )
        fake.fail_next(
            "POST", f"/webhooks/*/{interaction.token}", 413,
            payloads.error(40005, "Request entity too large"),
        )  # fmt: skip
    finally:
        h.backend.final.set()
    await fake.wait_for(lambda: bool(interaction.followups), 120)
    await h.idle()
    attempts = [
        (r.status, len(f[2]))
        for r in fake.requests
        if r.method == "POST" and interaction.token in r.path
        for f in r.files
        if f[0].startswith("stylized-")
    ]
    assert [status for status, _ in attempts] == [413, 200], attempts
    assert attempts[1][1] <= 0.8 * h.fake.upload_limit  # the second try aims lower
    [result] = interaction.followups
    assert "seed 31" in result.content


async def test_a_result_refused_as_too_large_twice_is_reported_lost(h: Harness) -> None:
    fake = h.fake
    h.backend.final.clear()
    try:
        interaction = await h.stylize(size=32, seed=37)
        fake.fail_next(
            "POST", f"/webhooks/*/{interaction.token}", 413,
            payloads.error(40005, "Request entity too large"), times=2,
        )  # fmt: skip
    finally:
        h.backend.final.set()
    status = await h.status(interaction, lambda text: "couldn't post it here" in text, timeout=120)
    await h.idle()
    assert status.content.startswith(f"<@{fake.requester.id}>")
    assert not interaction.followups and not status.components
    refused = [r.status for r in fake.requests if r.method == "POST"
               and interaction.token in r.path and r.files]  # fmt: skip
    assert refused == [413, 413]


async def test_a_result_with_nowhere_to_go_in_the_channel_goes_by_dm(h: Harness) -> None:
    fake = h.fake
    saved = dict(fake.role_permissions)
    h.backend.progress.clear()
    try:
        interaction = await h.stylize(size=32, seed=41)
        await h.status(interaction, lambda text: text.startswith("🎨 Starting"))
        # The token has run out and the bot lost Send Messages in the channel meanwhile.
        fake.expire_token(interaction)
        for role in (fake.guild_id, fake.bot_role_id):
            fake.role_permissions[role] &= ~payloads.SEND_MESSAGES
        h.backend.progress.set()
        await fake.wait_for(lambda: any(m.attachments for m in fake.dm_messages(fake.requester)),
                            120)  # fmt: skip
    finally:
        h.backend.progress.set()
        fake.role_permissions.update(saved)
    await h.idle()
    [result] = [m for m in fake.dm_messages(fake.requester) if m.attachments]
    assert "seed 41" in result.content
    [(_, data)] = result.attachments
    assert Image.open(io.BytesIO(data)).size == (32, 24)
    refused = [r for r in fake.requests if r.method == "POST" and r.status == 403
               and r.path == f"/channels/{fake.channel_id}/messages"]  # fmt: skip
    assert refused and refused[-1].response["code"] == 50013
    assert not interaction.followups


# --- the token and the acknowledgement latency ----------------------------------------------


# --- languages: a Korean and an English member side by side ---------------------------------


async def test_the_commands_reach_discord_in_korean_too(h: Harness) -> None:
    # The fake refuses a localised name Discord would refuse: these passed its checks.
    stylize = h.fake.registry.find("stylize", h.fake.guild_id)
    assert stylize["name_localizations"]["ko"] == "화풍변환"
    assert stylize["description_localizations"]["ko"] == "사진을 그림의 화풍으로 다시 그려요"
    options = {o["name"]: o for o in stylize["options"]}
    assert options["saved_style"]["name_localizations"]["ko"] == "저장된화풍"
    assert options["size"]["description_localizations"]["ko"] == (
        "결과 그림의 긴 변, 픽셀 단위 (최대 64)"
    )
    quality = {c["value"]: c["name_localizations"]["ko"] for c in options["quality"]["choices"]}
    assert quality == {"draft": "초안", "standard": "보통", "high": "높음"}
    styles = h.fake.registry.find("styles", h.fake.guild_id)
    assert styles["name_localizations"]["ko"] == "화풍"
    assert {o["name_localizations"]["ko"] for o in styles["options"]} == {"추가", "삭제", "목록"}


def _labels(message: FakeMessage) -> list[str]:
    return [c.get("label", "") for row in message.components for c in row.get("components", [])]


async def test_each_member_follows_their_job_in_their_own_language(h: Harness) -> None:
    fake = h.fake
    korean, english = fake.other_user, fake.requester
    h.backend.final.clear()  # both jobs stay unfinished until each status has been seen
    try:
        ko = await h.stylize(user=korean, locale="ko", size=32, seed=11)
        en = await h.stylize(user=english, locale="en-US", size=32, seed=12)
        ko_status = await h.status(ko, lambda t: t.startswith(("⏳ 대기 중", "🎨 ")), 60)
        en_status = await h.status(en, lambda t: t.startswith(("⏳ Queued", "🎨 ")), 60)
        assert _labels(ko_status) == ["취소"] and _labels(en_status) == ["Cancel"]
    finally:
        h.backend.final.set()
    await fake.wait_for(lambda: bool(ko.followups and en.followups), 120)
    await h.status(ko, lambda t: t.startswith("✅"))
    await h.status(en, lambda t: t.startswith("✅"))
    await h.idle()
    [ko_result], [en_result] = ko.followups, en.followups
    assert ko_result.content.startswith(f"<@{korean.id}> 님, 그림이 완성됐어요: 32×24 px, ")
    assert "시드 11" in ko_result.content and "걸림 (PNG, " in ko_result.content
    assert en_result.content.startswith(f"<@{english.id}>, here is your picture: 32×24 px, ")
    assert "seed 12" in en_result.content
    assert _labels(ko_result) == ["다시 그리기", "더 강하게", "더 약하게", "⤢ 더 크게", "삭제"]
    assert _labels(en_result) == ["Re-roll", "Stronger", "Weaker", "⤢ Bigger", "Delete"]
    assert ko.original is not None and "만에 완성했어요: http" in ko.original.content
    assert en.original is not None and en.original.content.startswith("✅ Done in ")


async def test_each_member_is_refused_in_their_own_language(h: Harness) -> None:
    fake = h.fake
    text_file = fake.add_attachment(b"just words", "notes.txt")
    ko = await h.stylize(user=fake.other_user, locale="ko", content=text_file)
    en = await h.stylize(user=fake.requester, locale="en-GB", content=text_file)
    ko_status = await h.status(ko, lambda t: t.startswith("❌"))
    en_status = await h.status(en, lambda t: t.startswith("❌"))
    assert ko_status.content == (
        "❌ 사진 파일이 이미지가 아니에요. PNG, JPEG, WebP 이미지를 첨부해 주세요."
    )
    assert en_status.content == (
        "❌ The photo (content) isn't an image. Attach a PNG, JPEG or WebP picture."
    )
    # A click's private answer, likewise.
    custom_id = "stylize:cancel:" + "0" * 32
    for locale, expected in (("ko", "더 이상 진행 중이 아니에요"), ("en-US", "isn't running")):
        click = await fake.click(_old_message(fake, custom_id), custom_id, locale=locale)
        callback = await click.wait_callback(timeout=5)
        assert callback["data"]["flags"] & EPHEMERAL and expected in callback["data"]["content"]


@pytest.mark.parametrize(
    ("member", "server", "expected", "labels"),
    [
        (
            "ko",
            "en-US",
            ", here is your picture: ",
            ["Re-roll", "Stronger", "Weaker", "⤢ Bigger", "Delete"],
        ),
        (
            "en-US",
            "ko",
            " 님, 그림이 완성됐어요: ",
            ["다시 그리기", "더 강하게", "더 약하게", "⤢ 더 크게", "삭제"],
        ),
    ],
)
async def test_a_post_after_the_token_expired_speaks_the_servers_language(
    h: Harness, member: str, server: str, expected: str, labels: list[str]
) -> None:
    fake = h.fake
    before = {m.id for m in fake.channel_messages()}
    h.backend.progress.clear()
    fake.guild_locale = server
    try:
        interaction = await h.stylize(locale=member, size=32, seed=21)
        await h.status(interaction, lambda t: t.startswith("🎨 "))
        fake.expire_token(interaction)  # the rest goes through the channel, for everyone
    finally:
        h.backend.progress.set()
        fake.guild_locale = "en-US"

    def result() -> FakeMessage | None:
        new = [m for m in fake.channel_messages() if m.id not in before and m.attachments]
        return new[0] if new else None

    await fake.wait_for(lambda: result() is not None, 120)
    await h.idle()
    message = result()
    assert message is not None and not interaction.followups
    assert message.content.startswith(f"<@{fake.requester.id}>{expected}"), message.content
    assert _labels(message) == labels


async def test_token_never_appears_in_the_logs(h: Harness) -> None:
    assert len(h.logs.lines) > 50  # the capture works: discord.py logs plenty at DEBUG
    assert not [line for line in h.logs.lines if TOKEN in line]


async def test_acknowledgement_latency(h: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    # Its own commands (refused without a download, so they end at once), so that the test
    # means the same when it runs alone; the figures include every command the module sent.
    for _ in range(10):
        interaction = await h.stylize(content=h.fake.add_attachment(b"words", "notes.txt"))
        await h.status(interaction, lambda text: text.startswith("❌"))
    latencies = sorted(h.latencies)
    assert len(latencies) >= 10
    assert latencies[-1] < 3.0
    with capsys.disabled():
        print(
            f"\n/stylize acknowledgement latency over {len(latencies)} commands: "
            f"median {statistics.median(latencies) * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms"
        )


# --- a broken engine (the last test on the shared bot: it stops it) -----------------------


async def test_a_broken_engine_keeps_the_job_tells_the_user_and_stops_the_bot(h: Harness) -> None:
    h.backend.broken = True  # the engine's workers can no longer be started
    interaction = await h.stylize(size=32, seed=9)
    await h.status(interaction, lambda text: "painters stopped working" in text)
    await asyncio.wait_for(asyncio.shield(h.running), 30)
    assert h.bot.exit_code == EXIT_ENGINE_BROKEN
    with sqlite3.connect(h.data_dir / "jobs.sqlite3") as db:
        states = db.execute("SELECT state FROM jobs ORDER BY seq DESC LIMIT 1").fetchall()
    assert states == [("queued",)]  # it resumes once the bot is back


# --- the real command ------------------------------------------------------------------------


async def test_refused_token_gives_one_line_and_exit_status_1(tmp_path: Path) -> None:
    wrong = "wrong-token.SECRET-123"
    async with FakeDiscord(token="the-right-token") as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "STYLIZE_"))}
        env.update(
            PYTHONPATH=str(ROOT),
            DISCORD_TOKEN=wrong,
            DISCORD_API_BASE_URL=fake.api_base_url,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            STYLIZE_WEIGHTS="random:0",
            STYLIZE_DEVICE="cpu",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    text = (out + err).decode(errors="replace")
    assert process.returncode == 1, text
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("stylize-bot: DISCORD_TOKEN was refused by Discord"), text
    assert "Traceback" not in text
    assert wrong not in text
