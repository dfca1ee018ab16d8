"""The bot's own limits under abuse: places held per user before any download, few
downloads and decodes at once in threads of their own, permissions checked up front, and no
more edits once Discord refused the status message for good."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot import i18n, intake, messages, permissions
from bot.jobs.queue import Reservations, UserLimitReached
from bot.journal import Conversation, StatusMessage
from bot.reply import Reply
from tests.pictures import png


def test_places_count_towards_the_limit_until_released() -> None:
    places = Reservations(per_user=2)
    with places.reserve(1, active=0), places.reserve(1, active=0):
        with pytest.raises(UserLimitReached) as refused, places.reserve(1, active=0):
            pass
        assert (refused.value.active, refused.value.limit) == (2, 2)
        with places.reserve(2, active=1):  # another user is not affected
            pass
    assert places.pending(1) == 0
    with (
        places.reserve(1, active=1),  # one job queued and one place held
        pytest.raises(UserLimitReached),
        places.reserve(1, active=1),
    ):
        pass


def test_a_place_is_released_when_the_intake_fails() -> None:
    places = Reservations(per_user=1)
    with pytest.raises(RuntimeError), places.reserve(7, active=0):
        raise RuntimeError("download failed")
    with places.reserve(7, active=0):
        assert places.pending(7) == 1


async def test_the_gate_lets_few_in_and_decodes_in_its_own_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded_in: list[str] = []
    real_decode = intake._decoded_size

    def recorded(data: bytes, max_pixels: int) -> tuple[int, int]:
        decoded_in.append(threading.current_thread().name)
        return real_decode(data, max_pixels)

    monkeypatch.setattr(intake, "_decoded_size", recorded)
    gate = intake.Gate(concurrent=2)
    release = asyncio.Event()
    most = 0

    async def command() -> None:
        nonlocal most
        async with gate.place():
            most = max(most, gate.inside)
            await release.wait()

    tasks = [asyncio.create_task(command()) for _ in range(6)]
    while gate.inside < 2:
        await asyncio.sleep(0)
    assert gate.inside == 2  # the other four wait, holding no bytes
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2

    try:
        picture = await intake.inspect("content", png(40, 30), 10**6, gate)
    finally:
        gate.close()
    assert (picture.width, picture.height) == (40, 30)
    # Not the loop's thread, nor the default executor that also starts engine workers.
    assert len(decoded_in) == 1 and decoded_in[0].startswith("stylize-decode"), decoded_in


@pytest.mark.parametrize(
    ("granted", "thread", "missing"),
    [
        (["send_messages", "attach_files"], False, []),
        (["send_messages"], False, ["Attach Files"]),
        (["attach_files"], False, ["Send Messages"]),
        ([], False, ["Send Messages", "Attach Files"]),
        (["send_messages", "attach_files"], True, ["Send Messages in Threads"]),
        (["send_messages_in_threads", "attach_files"], True, []),
    ],
)
def test_missing_permissions_are_named_as_discord_shows_them(
    granted: list[str], thread: bool, missing: list[str]
) -> None:
    perms = discord.Permissions(**dict.fromkeys(granted, True))
    english = i18n.lang("en-US")
    flags = permissions.missing(perms, in_thread=thread)
    assert [messages.permission_name(english, flag) for flag in flags] == missing


def test_threads_are_told_apart() -> None:
    assert permissions.in_thread(SimpleNamespace(type=discord.ChannelType.public_thread))
    assert not permissions.in_thread(SimpleNamespace(type=discord.ChannelType.text))
    assert not permissions.in_thread(None)


class RefusingWebhook:
    """Answers every edit as Discord does where the bot lost access to the channel."""

    def __init__(self, status: int, code: int) -> None:
        self.status, self.code, self.edits = status, code, 0

    async def edit_message(self, message_id: int, **kwargs: Any) -> None:
        self.edits += 1
        response = SimpleNamespace(status=self.status, reason="refused")
        error = discord.NotFound if self.status == 404 else discord.Forbidden
        raise error(response, {"code": self.code, "message": "refused"})  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "code"), [(403, 50001), (403, 50013), (404, 10003)])
async def test_no_more_edits_after_a_permanent_refusal(status: int, code: int) -> None:
    webhook = RefusingWebhook(status, code)
    conversation = Conversation(
        user_id=1, guild_id=2, channel_id=3, application_id=4, interaction_id=5,
        interaction_token="t", token_expires_at=float("inf"), upload_limit=10_000_000,
    )  # fmt: skip
    reply = Reply(
        SimpleNamespace(),  # type: ignore[arg-type]  # never reached: no channel fallback
        conversation,
        status_message=StatusMessage(99, False),
        webhook=webhook,  # type: ignore[arg-type]
    )
    for step in range(5):
        assert await reply.edit_status(messages.later(messages.verbatim, f"step {step}")) is False
    assert webhook.edits == 1
