"""What the bot says and how it sizes things: bot.messages, bot.errors, bot.throttle,
bot.uploads, bot.jobs.settings and bot.intake's size caps. No Discord connection here."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import types
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from discord import app_commands
from PIL import Image

from bot import errors, i18n, intake, messages, uploads
from bot.jobs.policy import ChannelNotAllowed, DailyQuotaReached, MemberBlocked
from bot.jobs.queue import QueueFull, UserLimitReached
from bot.jobs.runner import ShuttingDown
from bot.jobs.service import ResultDeleted
from bot.jobs.settings import build_settings, steps_for
from bot.journal import Conversation, StatusMessage
from bot.reply import TOKEN_LIFETIME, Reply
from bot.reporter import StatusUpdate
from bot.throttle import Throttle
from engine.errors import ImageError
from engine.jobs import FailureKind, JobStats
from tests.pictures import png

MB = 1024 * 1024
EN = i18n.lang("en-US")
KO = i18n.lang("ko")


# --- texts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "under a second"),
        (1, "1 sec"),
        (59.4, "59 sec"),
        (60, "1 min"),
        (125, "2 min 5 sec"),
        (3600 + 180, "1 hr 3 min"),
        (-5, "under a second"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert EN.duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "1초 미만"), (59.4, "59초"), (125, "2분 5초"), (3600 + 180, "1시간 3분")],
)
def test_duration_in_korean(seconds: float, text: str) -> None:
    assert KO.duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (512, "512 B"),
        (2048, "2 KB"),
        (10 * MB, "10 MB"),
        (int(1.25 * MB), "1.2 MB"),
        (25 * MB, "25 MB"),
    ],
)
def test_file_size(size: int, text: str) -> None:
    assert EN.file_size(size) == text


@pytest.mark.parametrize(("value", "text"), [(1.0, "1"), (2.5, "2.5"), (1 / 3, "0.333")])
def test_number(value: float, text: str) -> None:
    assert EN.number(value) == text


def test_queued_shows_the_position() -> None:
    assert "next" in messages.queued(EN, 1)
    assert "position **3**" in messages.queued(EN, 3)
    assert "2 jobs ahead" in messages.queued(EN, 3)
    assert "1 job ahead" in messages.queued(EN, 2)


@pytest.mark.parametrize(
    ("step", "total", "eta", "expected"),
    [
        (12, 50, 70.0, "step 12/50 (24%), about 1 min 10 sec left"),
        (50, 50, 0.0, "step 50/50 (100%)."),
        (1, 3, 0.0, "step 1/3 (33%)."),
    ],
)
def test_progress_shows_step_percent_and_eta(
    step: int, total: int, eta: float, expected: str
) -> None:
    assert expected in messages.progress(EN, step, total, eta)


def test_cancelled_names_the_moderator_but_not_the_requester() -> None:
    assert messages.cancelled(EN, "<@9>", own=False) == "🛑 Cancelled by <@9>."
    assert messages.cancelled(EN, "<@1>", own=True) == "🛑 Cancelled."


def result_info(fmt: str = "png", *, refit: bool = False) -> messages.ResultInfo:
    stats = JobStats(
        seconds=83.2,
        steps=300,
        width=512,
        height=384,
        seed=1234,
        settings={"strength": 2.0, "preserve_colors": "luminance"},
    )
    return messages.ResultInfo.from_stats(stats, fmt, int(1.5 * MB), refit=refit)


def test_result_states_size_steps_strength_seed_and_time() -> None:
    text = messages.result(EN, "<@42>", result_info(), upload_limit=10 * MB)
    assert text.startswith("<@42>")
    for part in ("512×384 px", "300 steps", "strength 2", "seed 1234", "1 min 23 sec", "PNG"):
        assert part in text
    assert "colours kept" in text
    assert "upload limit" not in text


def test_result_says_why_it_is_not_png() -> None:
    text = messages.result(EN, "<@42>", result_info("jpeg"), upload_limit=8 * MB)
    assert "JPEG" in text and "8 MB upload limit" in text
    job_id = "0123456789ab" + "f" * 20
    assert messages.result_filename("jpeg", job_id) == "stylized-0123456789ab.jpg"
    assert messages.result_filename("webp", job_id) == "stylized-0123456789ab.webp"


def test_result_info_reads_the_stats_as_the_journal_keeps_them() -> None:
    stats = JobStats(83.2, 300, 512, 384, 1234, {"strength": 2.0, "preserve_colors": "luminance"})
    kept = dataclasses.asdict(stats)
    assert messages.ResultInfo.from_dict(kept, "png", 10, refit=False) == (
        messages.ResultInfo.from_stats(stats, "png", 10, refit=False)
    )


def test_done_status_links_the_result() -> None:
    assert "https://x/y" in messages.done_status(EN, 5, "https://x/y")


def test_clip_respects_discords_limit() -> None:
    assert len(messages.clip("x" * 5000)) == messages.MAX_CONTENT
    assert messages.clip("short") == "short"


# --- errors → words -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (UserLimitReached(2, 2), "You already have 2 jobs"),
        (UserLimitReached(1, 1), "1 job queued"),
        (QueueFull(100), "queue is full"),
        (ShuttingDown("x"), "restarting"),
        (ImageError("That file isn't an image we can read."), "isn't an image"),
        (
            errors.Refusal(messages.later(messages.file_too_large, "style", 12 * MB, 10 * MB)),
            "style image is 12 MB; the limit is 10 MB",
        ),
        (
            errors.Refusal(messages.later(messages.not_an_image, "content")),
            "photo (content) isn't an image",
        ),
        (MemberBlocked(), "stopped you from using the bot here. Ask them"),
        (ChannelNotAllowed((5, 6)), "only in <#5> and <#6>. Try it there."),
        (DailyQuotaReached(3, 1_700_006_400), "your 3 pictures for today"),
        (DailyQuotaReached(3, 1_700_006_400), "again <t:1700006400:R> (at <t:1700006400:t>)"),
        (DailyQuotaReached(1, 1_700_006_400), "your 1 picture for today"),
        (DailyQuotaReached(0, 1_700_006_400), "don't include any pictures a day. Ask"),
        (ResultDeleted("x"), "was deleted"),
        (RuntimeError("boom: internal detail"), "Something went wrong"),
    ],
)
def test_user_message(error: Exception, expected: str) -> None:
    text = errors.user_message(EN, error)
    assert expected in text
    assert "internal detail" not in text


def test_policy_refusals_are_expected_not_bugs() -> None:
    assert errors.is_expected(MemberBlocked())
    assert errors.is_expected(DailyQuotaReached(1, 2))
    assert errors.is_expected(ResultDeleted("x"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (messages.forgotten(EN, 3, 7, 3 * 1024 * 1024, 0, who=None), "Deleted your 3 job records"),
        (messages.forgotten(EN, 1, 1, 10, 2, who="<@5>"), "<@5>'s 1 job record"),
        (messages.forgotten(EN, 1, 1, 10, 2, who="<@5>"), "2 saved styles stay"),
        (messages.forgotten(EN, 0, 0, 0, 0, who=None), "0 pictures (0 B)"),
        (messages.style_entry(EN, 0, 2048), "Added by a former member, 2 KB"),
        (messages.style_entry(EN, 9, 2048), "Added by <@9>"),
        (messages.result_filename("png", "ab" * 16, spoiler=True), "SPOILER_stylized-abab"),
        (messages.server_policy(EN, 1, [], [], [], "off"), "Limits: none"),
        (messages.server_policy(EN, 1, [2], [(1, 3, None)], [4], "always"), "• @everyone: 3 a day"),
        (messages.limits_set(EN, "<@&2>", 3, 256, everyone_limited=False), "binds only once"),
    ],
)
def test_policy_texts(text: str, expected: str) -> None:
    assert expected in text
    assert len(text) <= messages.MAX_CONTENT


def test_user_message_unwraps_command_invoke_errors() -> None:
    command = app_commands.Command(name="x", description="x", callback=_noop)
    wrapped = app_commands.CommandInvokeError(command, UserLimitReached(2, 2))
    assert "You already have 2 jobs" in errors.user_message(EN, wrapped)
    assert errors.is_expected(wrapped)
    assert not errors.is_expected(RuntimeError())


async def _noop(interaction) -> None:  # type: ignore[no-untyped-def]
    pass


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (FailureKind.TIMEOUT, "longer than the 10 min limit"),
        (FailureKind.OUT_OF_MEMORY, "ran out of memory"),
        (FailureKind.WORKER_CRASHED, "crashed"),
        (FailureKind.INTERNAL, "Something went wrong"),
        (FailureKind.BAD_INPUT, "The image file is damaged"),
    ],
)
def test_failure_messages_are_plain_words(kind: FailureKind, expected: str) -> None:
    # Only a bad input's message is the engine's words for the user; any other failure's
    # may be a traceback with paths in it, which must not reach the user.
    message = (
        "The image file is damaged."
        if kind is FailureKind.BAD_INPUT
        else 'Traceback (most recent call last):\n  File "/srv/stylize/engine/x.py", line 1'
    )
    text = messages.failure(EN, kind, message, timeout=600)
    assert expected in text
    assert "Traceback" not in text and "/srv/stylize" not in text


# --- job settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quality", "steps"), [(None, 300), ("standard", 300), ("draft", 120), ("high", 600)]
)
def test_quality_scales_the_standard_steps(quality: str | None, steps: int) -> None:
    assert steps_for(quality, 300) == steps


def test_draft_of_a_tiny_step_count_keeps_one_step() -> None:
    assert steps_for("draft", 1) == 1


def test_build_settings_from_options() -> None:
    settings = build_settings(
        standard_steps=4,
        default_size=64,
        max_size=64,
        size=None,
        quality="high",
        strength=2.5,
        preserve_colors=True,
        seed=7,
    )
    assert (settings.size, settings.steps, settings.strength) == (64, 8, 2.5)
    assert (settings.preserve_colors, settings.seed) == ("luminance", 7)
    plain = build_settings(standard_steps=4, default_size=32, max_size=64, size=999)
    assert plain.size == 64 and plain.preserve_colors is None and plain.seed is None


# --- the result within the upload limit ---------------------------------------------------


def test_result_that_fits_is_sent_as_it_is() -> None:
    data = png(48, 32)
    result = uploads.fit(data, "png", len(data))
    assert result == uploads.ResultFile(data, "png")


def test_result_over_the_limit_is_reencoded_under_it() -> None:
    data = png(256, 256, noise=True)
    limit = len(data) // 4
    result = uploads.fit(data, "png", limit)
    assert len(result.data) <= limit
    assert result.format in ("jpeg", "webp") and result.reencoded
    assert Image.open(io.BytesIO(result.data)).size[0] > 16


def _text(words: str) -> messages.Text:
    return messages.later(messages.verbatim, words)


# --- throttling status edits --------------------------------------------------------------


class Recorder:
    """A send coroutine that records what it got, and when, and lets a test await a count."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, object]] = []
        self._changed = asyncio.Event()

    async def __call__(self, update: object) -> None:
        self.sent.append((asyncio.get_running_loop().time(), update))
        self._changed.set()

    async def wait(self, count: int) -> None:
        while len(self.sent) < count:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 5)

    @property
    def updates(self) -> list[object]:
        return [update for _, update in self.sent]


async def test_throttle_sends_at_most_once_per_interval_and_keeps_the_latest() -> None:
    recorder = Recorder()
    throttle: Throttle[str] = Throttle(recorder, interval=0.2)
    throttle.push("queued")
    await recorder.wait(1)  # the first update goes out at once
    for i in range(10):
        throttle.push(f"step {i}")
    await recorder.wait(2)
    await throttle.close()
    assert recorder.updates == ["queued", "step 9"]
    assert recorder.sent[1][0] - recorder.sent[0][0] >= 0.2


async def test_throttle_merge_keeps_a_waiting_preview() -> None:
    recorder = Recorder()

    throttle: Throttle[StatusUpdate] = Throttle(recorder, interval=0.1, merge=StatusUpdate.merge)
    a, b, c = messages.starting, messages.cancelling, messages.stale_button
    throttle.push(StatusUpdate(a))
    await recorder.wait(1)
    throttle.push(StatusUpdate(b, b"preview"))
    throttle.push(StatusUpdate(c))
    await recorder.wait(2)
    await throttle.close()
    assert recorder.updates == [StatusUpdate(a), StatusUpdate(c, b"preview")]


async def test_throttle_close_drops_what_waits() -> None:
    recorder = Recorder()
    throttle: Throttle[str] = Throttle(recorder, interval=60)
    throttle.push("first")
    await recorder.wait(1)
    throttle.push("second")  # would wait a minute
    await throttle.close()
    throttle.push("after close")
    assert recorder.updates == ["first"]


# --- downloads: the cap holds on the bytes actually read ----------------------------------


@pytest.fixture
async def cdn() -> AsyncIterator[str]:
    """A tiny server: /honest/N sends N bytes; /liar/N declares none and streams N bytes."""

    async def honest(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["n"]))

    async def liar(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        remaining = int(request.match_info["n"])
        while remaining > 0:
            chunk = min(remaining, 16 * 1024)
            await response.write(b"x" * chunk)
            remaining -= chunk
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/honest/{n}", honest)
    app.router.add_get("/liar/{n}", liar)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_download_within_the_cap(cdn: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        assert await intake.download(session, f"{cdn}/honest/1000", 1000) == b"x" * 1000
        assert len(await intake.download(session, f"{cdn}/liar/1000", 1000)) == 1000


@pytest.mark.parametrize("kind", ["honest", "liar"])
async def test_download_stops_past_the_cap(cdn: str, kind: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        with pytest.raises(intake.TooLarge):
            await intake.download(session, f"{cdn}/{kind}/{300 * 1024}", 100 * 1024)


@pytest.mark.parametrize(
    ("size", "content_type", "expected"),
    [
        (11 * MB, "image/png", "11 MB; the limit is 10 MB"),
        (1000, "application/pdf", "isn't an image"),
        (1000, "text/plain; charset=utf-8", "isn't an image"),
    ],
)
def test_declared_size_and_type_are_checked_first(
    size: int, content_type: str, expected: str
) -> None:
    ref = intake.AttachmentRef("style", "http://unused", size, content_type)
    with pytest.raises(errors.Refusal, match=expected):
        intake.check_declared(ref, 10 * MB)


@pytest.mark.parametrize("content_type", [None, "image/jpeg", "IMAGE/PNG"])
def test_declared_image_or_unknown_type_passes(content_type: str | None) -> None:
    intake.check_declared(intake.AttachmentRef("x", "http://unused", 10, content_type), 10 * MB)


async def test_inspect_reports_the_picture_and_refuses_a_bomb() -> None:
    picture = await intake.inspect("content", png(48, 32), max_pixels=10_000)
    assert (picture.width, picture.height) == (48, 32)
    with pytest.raises(errors.Refusal, match="photo"):
        await intake.inspect("content", png(200, 200), max_pixels=10_000)


# --- the interaction token's lifetime -----------------------------------------------------


class StubClient:
    """Just what ``Reply`` reads and calls; records which route each edit took."""

    def __init__(self) -> None:
        self.routes: list[str] = []

    def get_partial_messageable(self, channel_id: int, guild_id: int | None = None) -> StubClient:
        return self

    async def edit_original_response(self, **kwargs: object) -> types.SimpleNamespace:
        self.routes.append("interaction")
        return types.SimpleNamespace(id=99)

    async def edit_message(self, message_id: int, **kwargs: object) -> types.SimpleNamespace:
        self.routes.append(f"interaction token, message {message_id}")
        return types.SimpleNamespace(id=message_id)

    def get_partial_message(self, message_id: int) -> types.SimpleNamespace:
        async def edit(**kwargs: object) -> None:
            self.routes.append(f"bot token, message {message_id}")

        return types.SimpleNamespace(edit=edit)


def conversation(expires_at: float) -> Conversation:
    return Conversation(42, 1, 7, 2, 3, "interaction-token", expires_at, 10 * MB)


async def test_after_14_minutes_status_edits_use_the_bot_token() -> None:
    now = [1000.0]
    client = StubClient()
    reply = Reply(
        client,  # type: ignore[arg-type]
        conversation(now[0] + TOKEN_LIFETIME),
        interaction=client,  # type: ignore[arg-type]
        webhook=client,  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    assert await reply.edit_status(_text("⏳ Queued"))
    now[0] += 14 * 60 - 1
    assert reply.token_usable
    assert await reply.edit_status(_text("🎨 Painting"))
    now[0] += 2  # Discord's 15 minutes are close: stop using the interaction token
    assert not reply.token_usable
    assert await reply.edit_status(_text("🎨 Painting more"))
    assert client.routes == [
        "interaction",
        "interaction token, message 99",
        "bot token, message 99",
    ]


async def test_a_reply_rebuilt_after_a_restart_edits_the_same_status_message() -> None:
    client = StubClient()
    saved: list[int] = []
    reply = Reply(
        client,  # type: ignore[arg-type]
        conversation(2000.0),
        status_message=StatusMessage(77),
        on_status_message=saved.append,
        webhook=client,  # type: ignore[arg-type]
        clock=lambda: 1000.0,
    )
    assert await reply.edit_status(_text("🔄 Back"))
    assert client.routes == ["interaction token, message 77"]
    assert saved == []  # the journal already has it


async def test_a_status_message_posted_in_the_channel_is_edited_with_the_bot_token() -> None:
    # The token died in an earlier run, so the status went on in a channel message: the
    # interaction's webhook can't see that one, even with the token still counted as alive.
    client = StubClient()
    saved: list[StatusMessage] = []
    reply = Reply(
        client,  # type: ignore[arg-type]
        conversation(2000.0),
        status_message=StatusMessage(88, in_channel=True),
        on_status_message=saved.append,
        webhook=client,  # type: ignore[arg-type]
        clock=lambda: 1000.0,
    )
    assert await reply.edit_status(_text("🔄 Back"))
    assert client.routes == ["bot token, message 88"]
    assert saved == []


async def test_the_journal_learns_where_the_status_message_went() -> None:
    now = [1000.0]
    client = StubClient()
    saved: list[StatusMessage] = []
    reply = Reply(
        client,  # type: ignore[arg-type]
        conversation(now[0] + TOKEN_LIFETIME),
        interaction=client,  # type: ignore[arg-type]
        on_status_message=saved.append,
        webhook=client,  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    assert await reply.edit_status(_text("⏳ Queued"))
    now[0] += TOKEN_LIFETIME
    assert await reply.edit_status(_text("🎨 Painting"))  # the bot token may edit it: same message
    assert saved == [StatusMessage(99), StatusMessage(99, in_channel=True)]
