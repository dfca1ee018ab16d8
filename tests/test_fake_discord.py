"""The fake Discord against the real discord.py client (a minimal bot defined here)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from tests.fake_discord import FakeDiscord, FakeInteraction, payloads

pytestmark = pytest.mark.timeout(20)

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5"
    "6f8e0b0000000049454e44ae426082"
)


class CancelView(discord.ui.View):
    """A button only the requester or a member with Manage Messages may use."""

    def __init__(self, requester_id: int) -> None:
        super().__init__(timeout=None)
        self.requester_id = requester_id

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.danger, custom_id="job:cancel")
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        allowed = (
            interaction.user.id == self.requester_id or interaction.permissions.manage_messages
        )
        if not allowed:
            await interaction.response.send_message("Not your job.", ephemeral=True)
            return
        await interaction.response.edit_message(content="Cancelled.", view=None)


class MiniBot(commands.Bot):
    """Just enough bot to drive every path of the fake."""

    def __init__(self, guild_id: int) -> None:
        # A short guild_ready_timeout: on_ready otherwise waits 2 s after the last GUILD_CREATE.
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
        )
        self.guild_id = guild_id
        self.seen: asyncio.Queue[tuple[discord.Interaction, dict[str, Any]]] = asyncio.Queue()
        self.hold = asyncio.Event()  # /paint waits for it before its final edit
        self.hold.set()
        self.errors: asyncio.Queue[BaseException] = asyncio.Queue()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before each re-IDENTIFY (Discord's rate limit); not here."""

    async def setup_hook(self) -> None:
        bot = self

        @app_commands.command(description="Repaint a photo")
        @app_commands.describe(photo="the photo", strength="style strength")
        async def paint(
            interaction: discord.Interaction,
            photo: discord.Attachment,
            strength: app_commands.Range[float, 0.1, 10.0] = 1.0,
        ) -> None:
            await interaction.response.defer(thinking=True)
            data = await photo.read()
            await bot.seen.put((interaction, {"photo": photo, "bytes": data, "strength": strength}))
            await bot.hold.wait()
            await interaction.edit_original_response(
                content=f"Working on {photo.filename}", view=CancelView(interaction.user.id)
            )
            assert isinstance(interaction.channel, discord.TextChannel)
            await interaction.channel.send(
                content=f"{interaction.user.mention} here you go",
                file=discord.File(io.BytesIO(data), "result.png"),
            )

        @self.tree.error
        async def on_error(
            interaction: discord.Interaction, error: app_commands.AppCommandError
        ) -> None:
            await bot.errors.put(getattr(error, "original", error))

        # A group for Manage Server with a subcommand group, taking a role, a channel and a
        # member: what the fake resolves for such options, and whom it lets run them.
        settings = app_commands.Group(
            name="settings",
            description="Server settings",
            default_permissions=discord.Permissions(manage_guild=True),
        )
        per_role = app_commands.Group(name="role", description="Per role", parent=settings)

        @per_role.command(name="limit", description="A role's limit")
        async def limit(
            interaction: discord.Interaction,
            role: discord.Role,
            channel: discord.TextChannel,
            member: discord.Member,
        ) -> None:
            await bot.seen.put((interaction, {"role": role, "channel": channel, "member": member}))
            await interaction.response.send_message("ok", ephemeral=True)

        guild = discord.Object(self.guild_id)
        self.tree.add_command(paint, guild=guild)
        self.tree.add_command(settings, guild=guild)
        await self.tree.sync(guild=guild)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def discord_at_fake(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> FakeDiscord:
    """Point discord.py's REST base and gateway at the fake (process-wide class attributes)."""
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base_url)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
    )
    return fake


@pytest.fixture
async def bot(discord_at_fake: FakeDiscord) -> AsyncIterator[MiniBot]:
    fake = discord_at_fake
    bot = MiniBot(fake.guild_id)
    runner = asyncio.create_task(bot.start(fake.token))
    try:
        await fake.wait_ready()
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def run_paint(fake: FakeDiscord, bot: MiniBot) -> tuple[FakeInteraction, discord.Interaction]:
    photo = fake.add_attachment(PNG_1x1, "photo.png")
    invoked = await fake.invoke("paint", {"photo": photo, "strength": 2.5})
    interaction, _ = await asyncio.wait_for(bot.seen.get(), 5)
    return invoked, interaction


async def test_login_connect_and_sync(fake: FakeDiscord, bot: MiniBot) -> None:
    commands_ = await fake.wait_commands()

    assert bot.user is not None and bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.application_id
    assert fake.find_requests("GET", "/users/@me")[0].authorization == f"Bot {fake.token}"
    identify = next(f for f in fake.gateway_frames if f["op"] == 2)
    assert identify["d"]["token"] == fake.token
    assert [c["name"] for c in commands_] == ["paint", "settings"]
    options = {o["name"]: o for o in commands_[0]["options"]}
    assert options["photo"]["type"] == 11 and options["photo"]["required"]
    assert options["strength"]["type"] == 10
    assert commands_[0]["guild_id"] == str(fake.guild_id)
    guild = bot.get_guild(fake.guild_id)
    assert guild is not None and guild.get_channel(fake.channel_id) is not None
    assert guild.me is not None and guild.member_count == len(fake.users)
    await asyncio.wait_for(bot.wait_until_ready(), 5)


async def test_slash_command_defer_edit_and_channel_file(fake: FakeDiscord, bot: MiniBot) -> None:
    photo = fake.add_attachment(PNG_1x1, "photo.png", declared_size=123)
    invoked = await fake.invoke("paint", {"photo": photo, "strength": 2.5})
    interaction, seen = await asyncio.wait_for(bot.seen.get(), 5)

    assert (await invoked.wait_callback())["type"] == 5
    assert invoked.ack_latency is not None and 0 <= invoked.ack_latency < 3
    assert seen["bytes"] == PNG_1x1 and seen["strength"] == 2.5
    assert (seen["photo"].size, seen["photo"].width, seen["photo"].content_type) == (
        123,
        1,
        "image/png",
    )
    assert interaction.filesize_limit == fake.upload_limit
    assert interaction.user.id == fake.requester.id
    assert len(fake.cdn_requests) == 1

    await fake.wait_for(lambda: len(fake.channel_messages()) == 1, timeout=5)
    assert invoked.original is not None
    assert invoked.original.content == "Working on photo.png"
    assert not invoked.original.loading
    assert invoked.original.custom_ids == ["job:cancel"]
    assert len(invoked.original.edits) == 1
    posted = fake.channel_messages()[0]
    assert posted.content == f"{fake.requester.mention} here you go"
    assert posted.attachments == [("result.png", PNG_1x1)]
    assert posted.attachment_payloads[0]["content_type"] == "image/png"
    assert posted.mentions[0]["id"] == str(fake.requester.id)
    upload = fake.find_requests("POST", f"/channels/{fake.channel_id}/messages")[0]
    assert upload.files[0][0] == "result.png" and upload.json["attachments"][0]["id"] == 0


@pytest.mark.parametrize(
    ("clicker", "expected_type", "expected_content"),
    [
        ("requester", 7, "Cancelled."),
        ("moderator", 7, "Cancelled."),
        ("other_user", 4, "Working on photo.png"),
    ],
)
async def test_component_click(
    fake: FakeDiscord, bot: MiniBot, clicker: str, expected_type: int, expected_content: str
) -> None:
    invoked, _ = await run_paint(fake, bot)
    await fake.wait_for(lambda: invoked.original is not None and invoked.original.edits != [], 5)
    assert invoked.original is not None

    click = await fake.click(invoked.original, "job:cancel", user=getattr(fake, clicker))
    callback = await click.wait_callback()

    assert callback["type"] == expected_type
    assert invoked.original.content == expected_content
    if expected_type == 7:
        assert invoked.original.components == [] and click.original is invoked.original
    else:
        assert click.original is not None and click.original.ephemeral


async def test_expired_token_raises_50027(fake: FakeDiscord, bot: MiniBot) -> None:
    bot.hold.clear()
    invoked, interaction = await run_paint(fake, bot)
    await invoked.wait_callback()

    fake.expire_token(invoked)
    with pytest.raises(discord.HTTPException) as raised:
        await interaction.edit_original_response(content="too late")
    assert (raised.value.status, raised.value.code) == (401, 50027)
    with pytest.raises(discord.HTTPException) as raised:
        await interaction.followup.send("too late")
    assert (raised.value.status, raised.value.code) == (401, 50027)


async def test_deleted_message_raises_10008(fake: FakeDiscord, bot: MiniBot) -> None:
    bot.hold.clear()
    invoked, interaction = await run_paint(fake, bot)
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    status = await channel.send("status")
    assert invoked.original is not None

    fake.delete_message(status.id)
    fake.delete_message(invoked.original.id)
    with pytest.raises(discord.NotFound) as raised:
        await status.edit(content="step 2")
    assert raised.value.code == 10008
    with pytest.raises(discord.NotFound) as raised:
        await interaction.edit_original_response(content="step 2")
    assert raised.value.code == 10008
    assert fake.messages[status.id].deleted and fake.messages[status.id].edits == []


async def test_followups_and_original_response(fake: FakeDiscord, bot: MiniBot) -> None:
    bot.hold.clear()
    invoked, interaction = await run_paint(fake, bot)
    assert invoked.original is not None and invoked.original.loading

    first = await interaction.followup.send("first", wait=True)
    second = await interaction.followup.send(
        "second", file=discord.File(io.BytesIO(PNG_1x1), "preview.png"), wait=True
    )
    fetched = await interaction.original_response()
    await interaction.edit_original_response(attachments=[])
    await interaction.delete_original_response()

    # Discord turns the first followup after a "thinking" defer into the deferred message.
    assert first.id == invoked.original.id == fetched.id and fetched.content == "first"
    assert [m.id for m in invoked.followups] == [first.id, second.id]
    assert invoked.followups[1].attachments == [("preview.png", PNG_1x1)]
    assert second.attachments[0].width == 1
    assert invoked.original.deleted and len(invoked.original.edits) == 2


async def test_injected_errors_and_expired_attachments(fake: FakeDiscord, bot: MiniBot) -> None:
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    fake.fail_next(
        "POST", "/channels/*/messages", 403, {"code": 50013, "message": "Missing Permissions"}
    )
    with pytest.raises(discord.Forbidden) as raised:
        await channel.send("first try")
    assert raised.value.code == 50013
    assert (await channel.send("second try")).content == "second try"

    photo = fake.add_attachment(PNG_1x1, "photo.png")
    fake.expire_attachment(photo)
    await fake.invoke("paint", {"photo": photo})
    error = await asyncio.wait_for(bot.errors.get(), 5)
    assert isinstance(error, discord.NotFound) and fake.cdn_requests[-1].status == 404


async def test_resume_replays_missed_interactions(fake: FakeDiscord, bot: MiniBot) -> None:
    session_before = fake.gateway.current

    await fake.drop_connection()
    invoked = await fake.invoke("paint", {"photo": fake.add_attachment(PNG_1x1, "p.png")})
    await fake.wait_resumed()

    assert (await invoked.wait_callback())["type"] == 5
    assert fake.gateway.current is session_before and fake.identifies == 1
    assert [f["op"] for f in fake.gateway_frames].count(6) == 1

    await fake.send_reconnect()
    await fake.wait_resumed()
    assert fake.resumes == 2 and fake.identifies == 1


async def test_invalid_session_reidentifies(fake: FakeDiscord, bot: MiniBot) -> None:
    await fake.invalidate_session(resumable=False)
    await fake.wait_for(lambda: fake.identifies == 2, timeout=10)
    invoked, _ = await run_paint(fake, bot)
    assert (await invoked.wait_callback())["type"] == 5


async def test_late_ack_gets_unknown_interaction(fake: FakeDiscord, bot: MiniBot) -> None:
    fake.ack_deadline = 0.0
    await fake.invoke("paint", {"photo": fake.add_attachment(PNG_1x1, "p.png")})
    error = await asyncio.wait_for(bot.errors.get(), 5)
    assert isinstance(error, discord.NotFound) and error.code == 10062


async def test_bad_token_is_a_login_failure(discord_at_fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.none())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()
    assert discord_at_fake.requests[-1].status == 401


async def test_invoke_checks_options_against_the_schema(fake: FakeDiscord, bot: MiniBot) -> None:
    await fake.wait_commands()
    photo = fake.add_attachment(PNG_1x1, "p.png")
    with pytest.raises(ValueError, match="required"):
        await fake.invoke("paint", {"strength": 1.0})
    with pytest.raises(ValueError, match="max_value"):
        await fake.invoke("paint", {"photo": photo, "strength": 11.0})
    with pytest.raises(LookupError, match="not registered"):
        await fake.invoke("draw", {})


async def test_subcommand_groups_roles_channels_and_default_permissions(
    fake: FakeDiscord, bot: MiniBot
) -> None:
    commands_ = {c["name"]: c for c in await fake.wait_commands()}
    assert int(commands_["settings"]["default_member_permissions"]) == payloads.MANAGE_GUILD
    options = {
        "role": fake.role_option(fake.artist_role_id),
        "channel": fake.channel_option(fake.other_channel_id),
        "member": fake.artist,
    }
    # Discord's client hides the command from a member without Manage Server...
    with pytest.raises(PermissionError):
        await fake.invoke("settings role limit", options, user=fake.requester)
    # ...unless the server's admins opened it to everyone.
    await fake.invoke("settings role limit", options, user=fake.requester, opened_to_everyone=True)
    interaction, _ = await asyncio.wait_for(bot.seen.get(), 5)
    assert not interaction.permissions.manage_guild
    await fake.invoke("settings role limit", options, user=fake.admin)
    interaction, seen = await asyncio.wait_for(bot.seen.get(), 5)
    assert interaction.permissions.manage_guild
    assert seen["role"].id == fake.artist_role_id and seen["role"].name == "Artist"
    assert seen["channel"].id == fake.other_channel_id and seen["channel"].name == "gallery"
    assert seen["member"].id == fake.artist.id
    assert fake.artist_role_id in [r.id for r in seen["member"].roles]
    user = interaction.user
    assert isinstance(user, discord.Member)
    assert [r.id for r in user.roles] == [fake.guild_id, fake.admin_role_id]
    # The channel's age-restricted flag, as the bot's cache has it.
    assert isinstance(interaction.channel, discord.TextChannel)
    assert not interaction.channel.is_nsfw()
    await fake.set_channel_nsfw(True)
    await fake.invoke("settings role limit", options, user=fake.admin)
    interaction, _ = await asyncio.wait_for(bot.seen.get(), 5)
    assert isinstance(interaction.channel, discord.TextChannel)
    assert interaction.channel.is_nsfw()


# --- the raw protocol, without discord.py's client-side checks -----------------------------


async def test_raw_rest_errors(fake: FakeDiscord, bot: MiniBot) -> None:
    bot.hold.clear()
    invoked, _ = await run_paint(fake, bot)
    api = fake.api_base_url
    auth = {"Authorization": f"Bot {fake.token}"}
    messages_url = f"{api}/channels/{fake.channel_id}/messages"
    too_big = aiohttp.FormData()
    too_big.add_field("payload_json", json.dumps({"attachments": [{"id": 0, "filename": "x"}]}))
    too_big.add_field("files[0]", b"x" * (fake.upload_limit + 1), filename="x.png")
    cases: list[tuple[str, str, dict[str, str], Any, int, int]] = [
        ("POST", messages_url, {}, {"content": "hi"}, 401, 0),
        ("POST", messages_url, auth, {"content": ""}, 400, 50006),
        ("POST", messages_url, auth, too_big, 413, 40005),
        ("GET", f"{api}/no/such/route", auth, None, 404, 0),
        (
            "POST",
            f"{api}/interactions/{invoked.id}/{invoked.token}/callback",
            {},
            {"type": 5},
            400,
            40060,
        ),
        (
            "PATCH",
            f"{api}/webhooks/{fake.application_id}/bogus/messages/@original",
            {},
            {},
            401,
            50027,
        ),
    ]
    async with aiohttp.ClientSession() as session:
        for method, url, headers, body, status, code in cases:
            kwargs: dict[str, Any] = (
                {"data": body} if isinstance(body, aiohttp.FormData) else {"json": body}
            )
            async with session.request(method, url, headers=headers, **kwargs) as response:
                assert (response.status, (await response.json())["code"]) == (status, code), url
    assert fake.requests[-3].path == "/no/such/route" and fake.requests[-3].status == 404


async def test_gateway_speaks_zlib_stream(fake: FakeDiscord) -> None:
    """discord.py asks for compress=zlib-stream; frames end in the Z_SYNC_FLUSH marker."""
    inflate = zlib.decompressobj()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{fake.gateway_url}?v=10&encoding=json&compress=zlib-stream") as ws,
    ):
        hello = await ws.receive_bytes()
        assert hello.endswith(b"\x00\x00\xff\xff")
        assert json.loads(inflate.decompress(hello))["d"]["heartbeat_interval"] > 0
        await ws.send_json({"op": 1, "d": None})
        ack = json.loads(inflate.decompress(await ws.receive_bytes()))
        assert ack["op"] == 11
        await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 0, "properties": {}}})
        closed = await ws.receive()
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4004


async def test_gateway_raw_identify_chunk_and_bad_resume(fake: FakeDiscord) -> None:
    """Without compress=, frames are plain text, which discord.py accepts as well."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{fake.gateway_url}?v=10&encoding=json") as ws:
            assert (await ws.receive_json())["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 3}})
            ready, guild = await ws.receive_json(), await ws.receive_json()
            await ws.send_json({"op": 8, "d": {"guild_id": str(fake.guild_id), "query": "mod"}})
            chunk = await ws.receive_json()
        async with session.ws_connect(f"{fake.gateway_url}?v=10&encoding=json") as ws:
            await ws.receive_json()
            await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": "x", "seq": 1}})
            invalid = await ws.receive_json()

    assert (ready["t"], ready["s"], guild["t"], guild["s"]) == ("READY", 1, "GUILD_CREATE", 2)
    assert ready["d"]["resume_gateway_url"] == fake.gateway_url
    assert guild["d"]["member_count"] == len(guild["d"]["members"]) == len(fake.users)
    members = chunk["d"]["members"]
    assert chunk["t"] == "GUILD_MEMBERS_CHUNK"
    assert [m["user"]["id"] for m in members] == [str(fake.moderator.id)]
    assert members[0]["roles"] == [str(fake.moderator_role_id)]
    assert (invalid["op"], invalid["d"]) == (9, False)


async def test_tokens_expire_on_the_fakes_clock(fake: FakeDiscord, bot: MiniBot) -> None:
    now = [1000.0]
    fake.clock = lambda: now[0]
    bot.hold.clear()
    invoked, interaction = await run_paint(fake, bot)
    await invoked.wait_callback()
    now[0] += fake.token_lifetime - 1
    await interaction.edit_original_response(content="still in time")
    now[0] += 1
    with pytest.raises(discord.HTTPException) as raised:
        await interaction.followup.send("too late")
    assert (raised.value.status, raised.value.code) == (401, 50027)


async def test_channel_history_pages_before_and_after(fake: FakeDiscord, bot: MiniBot) -> None:
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    sent = [await channel.send(f"message {n}") for n in range(5)]
    after = [m.id async for m in channel.history(limit=2, after=sent[1], oldest_first=True)]
    assert after == [sent[2].id, sent[3].id]
    before = [m.id async for m in channel.history(limit=2, before=sent[3])]
    assert before == [sent[2].id, sent[1].id]
    newest = [m.id async for m in channel.history(limit=2, after=sent[0], oldest_first=False)]
    assert newest == [sent[4].id, sent[3].id]


async def test_on_request_runs_before_the_answer_goes_back(fake: FakeDiscord, bot: MiniBot) -> None:
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    seen: list[str] = []

    def hook(request: Any) -> None:
        if request.method == "POST" and request.path.endswith("/messages"):
            # The message already exists in the fake: a bot killed now has posted it.
            assert any(m.content == "hello" for m in fake.channel_messages())
            seen.append("hook")

    fake.on_request = hook
    await channel.send("hello")
    seen.append("answered")
    assert seen == ["hook", "answered"]


async def test_strict_payload_checks_and_faults(fake: FakeDiscord, bot: MiniBot) -> None:
    api = fake.api_base_url
    auth = {"Authorization": f"Bot {fake.token}"}
    url = f"{api}/channels/{fake.channel_id}/messages"

    def button(custom_id: str) -> dict[str, Any]:
        return {"type": 2, "style": 1, "label": "b", "custom_id": custom_id}

    def too_long(limit: int) -> dict[str, Any]:
        return {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                             "message": f"Must be {limit} or fewer in length."}]}  # fmt: skip

    def rows(*rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"type": 1, "components": row} for row in rows]

    six_buttons = [button(str(i)) for i in range(6)]
    cases: list[tuple[dict[str, Any], int, Any]] = [
        ({"content": "x" * 2001}, 400, {"content": too_long(2000)}),
        ({"content": "x", "components": rows(*[[button("ok")]] * 6)}, 400,
         {"components": too_long(5)}),
        ({"content": "x", "components": rows(six_buttons)}, 400,
         {"components": {"0": {"components": too_long(5)}}}),
        ({"content": "x", "components": rows([button("c" * 101)])}, 400,
         {"components": {"0": {"components": {"0": {"custom_id": too_long(100)}}}}}),
        ({"content": "x", "components": rows(*[[button("ok")]] * 5)}, 200, None),
        ({"content": "y" * 2000, "components": rows([button("c" * 100)] * 5)}, 200, None),
    ]  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for body, status, tree in cases:
            async with session.post(url, headers=auth, json=body) as response:
                answer = await response.json()
                assert response.status == status, answer
                if tree is not None:
                    assert (answer["code"], answer["errors"]) == (50035, tree)

        # allowed_mentions decides who is pinged, not the text.
        ping = f"<@{fake.requester.id}> <@{fake.other_user.id}>"
        for allowed, pinged in [
            (None, {fake.requester.id, fake.other_user.id}),
            ({"parse": []}, set()),
            ({"parse": [], "users": [str(fake.requester.id)]}, {fake.requester.id}),
            ({"parse": ["users"]}, {fake.requester.id, fake.other_user.id}),
        ]:
            body = {"content": ping} | ({"allowed_mentions": allowed} if allowed else {})
            async with session.post(url, headers=auth, json=body) as response:
                mentions = {int(m["id"]) for m in (await response.json())["mentions"]}
                assert mentions == pinged, allowed

        # 403 50013 where the bot's permissions don't allow the post.
        saved = dict(fake.role_permissions)
        for role in (fake.guild_id, fake.bot_role_id):
            fake.role_permissions[role] &= ~payloads.SEND_MESSAGES
        try:
            async with session.post(url, headers=auth, json={"content": "hi"}) as response:
                assert (response.status, (await response.json())["code"]) == (403, 50013)
        finally:
            fake.role_permissions.update(saved)

        # 429 with Discord's body and headers, and 5xx on demand.
        fake.rate_limit_next("POST", "/channels/*/messages", retry_after=0.5)
        async with session.post(url, headers=auth, json={"content": "hi"}) as response:
            answer = await response.json()
            assert response.status == 429 and answer["retry_after"] == 0.5
            assert answer["global"] is False
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert float(response.headers["X-RateLimit-Reset-After"]) == 0.5
            assert response.headers["X-RateLimit-Scope"] == "user"
            assert "X-RateLimit-Bucket" in response.headers and "Via" in response.headers
        fake.fail_next("POST", "/channels/*/messages", 503)
        async with session.post(url, headers=auth, json={"content": "hi"}) as response:
            assert response.status == 503

    # discord.py waits out the 429 and sends again: the message arrives.
    channel = bot.get_partial_messageable(fake.channel_id)
    fake.rate_limit_next("POST", "/channels/*/messages", retry_after=0.1)
    sent = await channel.send("after a rate limit")
    statuses = [r.status for r in fake.requests if r.method == "POST" and r.path.endswith(
        "/messages")][-2:]  # fmt: skip
    assert statuses == [429, 200] and sent.content == "after a rate limit"


async def test_command_registration_is_checked_as_discord_does(fake: FakeDiscord) -> None:
    url = f"{fake.api_base_url}/applications/{fake.application_id}/guilds/{fake.guild_id}/commands"
    auth = {"Authorization": f"Bot {fake.token}"}

    def option(**fields: Any) -> dict[str, Any]:
        return {"type": 3, "name": "text", "description": "Some text"} | fields

    def bad_length(low: int, high: int) -> dict[str, Any]:
        message = f"Must be between {low} and {high} in length."
        return {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": message}]}

    invalid_name = {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME",
                                 "message": "Command name is invalid"}]}  # fmt: skip
    good = {"name": "paint", "description": "Paint", "options": [option()]}
    cases: list[tuple[dict[str, Any], Any]] = [
        (good, None),
        (good | {"name": "n" * 33}, {"name": bad_length(1, 32)}),
        (good | {"description": "d" * 101}, {"description": bad_length(1, 100)}),
        (good | {"description": ""}, {"description": bad_length(1, 100)}),
        (good | {"options": [option(description="d" * 101)]},
         {"options": {"0": {"description": bad_length(1, 100)}}}),
        (good | {"options": [option(name=f"o{i}") for i in range(26)]},
         {"options": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                   "message": "Must be 25 or fewer in length."}]}}),
        (good | {"options": [option(choices=[{"name": "c" * 101, "value": "v"}])]},
         {"options": {"0": {"choices": {"0": {"name": bad_length(1, 100)}}}}}),
        # Names in every language follow the rule; a context menu's name is free text.
        (good | {"name": "Paint"}, {"name": invalid_name}),
        (good | {"name_localizations": {"ko": "그리기", "fr": "peindre"},
                 "description_localizations": {"ko": "그려요"}}, None),
        (good | {"name_localizations": {"ko": "다시 그리기"}},
         {"name_localizations": {"ko": invalid_name}}),
        (good | {"name_localizations": {"de": "Malen"}},
         {"name_localizations": {"de": invalid_name}}),
        (good | {"name_localizations": {"ko": "그" * 33}},
         {"name_localizations": {"ko": bad_length(1, 32)}}),
        (good | {"name_localizations": {"kr": "그리기"}},
         {"name_localizations": {"kr": {"_errors": [
             {"code": "ENUM_TYPE_COERCE", "message": 'Value "kr" is not a valid enum value.'}]}}}),
        (good | {"description_localizations": {"ko": "설" * 101}},
         {"description_localizations": {"ko": bad_length(1, 100)}}),
        (good | {"options": [option(name_localizations={"ko": "글 자"})]},
         {"options": {"0": {"name_localizations": {"ko": invalid_name}}}}),
        (good | {"options": [option(choices=[
            {"name": "c", "value": "v", "name_localizations": {"ko": "초" * 101}}])]},
         {"options": {"0": {"choices": {"0": {
             "name_localizations": {"ko": bad_length(1, 100)}}}}}}),
        ({"type": 3, "name": "Paint this photo", "name_localizations": {"ko": "이 사진 그리기"}},
         None),
    ]  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for command, tree in cases:
            async with session.put(url, headers=auth, json=[command]) as response:
                answer = await response.json()
                if tree is None:
                    assert response.status == 200, answer
                else:
                    assert response.status == 400, command
                    assert (answer["code"], answer["errors"]) == (50035, {"0": tree})


async def test_menus_are_registered_as_discord_checks_them(fake: FakeDiscord) -> None:
    url = f"{fake.api_base_url}/applications/{fake.application_id}/guilds/{fake.guild_id}/commands"
    auth = {"Authorization": f"Bot {fake.token}"}

    def menu(name: str, **fields: Any) -> dict[str, Any]:
        return {"type": payloads.COMMAND_MESSAGE, "name": name} | fields

    slash = {"name": "paint", "description": "Paint"}
    async with aiohttp.ClientSession() as session:

        async def put(commands_: list[dict[str, Any]]) -> tuple[int, Any]:
            async with session.put(url, headers=auth, json=commands_) as response:
                return response.status, await response.json()

        # A menu's name may have capitals and spaces; a slash command's may not.
        status, answer = await put([slash, menu("Stylize this photo")])
        assert status == 200, answer
        assert [c["type"] for c in fake.commands] == [1, payloads.COMMAND_MESSAGE]
        status, answer = await put([slash | {"name": "Paint it"}])
        assert (status, answer["errors"]["0"]["name"]["_errors"][0]["code"]) == (
            400, "APPLICATION_COMMAND_INVALID_NAME",
        )  # fmt: skip
        # No description and no options on a menu; names of 1 to 32 characters.
        for bad, field in [
            (menu("Paint", description="Paints"), "description"),
            (menu("Paint", options=[{"type": 3, "name": "x", "description": "x"}]), "options"),
            (menu("P" * 33), "name"),
        ]:
            status, answer = await put([bad])
            assert status == 400 and field in answer["errors"]["0"], (bad, answer)
        status, answer = await put([menu("")])
        assert status == 400 and "name" in answer["errors"]
        # At most five message menus.
        status, answer = await put([menu(f"Menu {i}") for i in range(5)])
        assert status == 200, answer
        status, answer = await put([menu(f"Menu {i}") for i in range(6)])
        assert status == 400 and "_root" in answer["errors"]


async def test_a_message_menu_and_a_select(fake: FakeDiscord, discord_at_fake: FakeDiscord) -> None:
    seen: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    class MenuBot(MiniBot):
        async def setup_hook(self) -> None:
            @app_commands.context_menu(name="Look at this")
            async def look(interaction: discord.Interaction, message: discord.Message) -> None:
                await seen.put(("menu", message))
                select = discord.ui.Select(
                    custom_id="look:pick",
                    options=[discord.SelectOption(label=n, value=n) for n in ("a", "b")],
                )

                async def picked(interaction: discord.Interaction) -> None:
                    await seen.put(("select", select.values))
                    await interaction.response.defer(thinking=True)

                select.callback = picked  # type: ignore[method-assign]
                view = discord.ui.View(timeout=None)
                view.add_item(select)
                await interaction.response.send_message("Pick", view=view, ephemeral=True)

            guild = discord.Object(self.guild_id)
            self.tree.add_command(look, guild=guild)
            await self.tree.sync(guild=guild)

    bot = MenuBot(fake.guild_id)
    runner = asyncio.create_task(bot.start(fake.token))
    try:
        await fake.wait_commands()
        picture = fake.store_picture(PNG_1x1, "linked.png")
        posted = fake.post(
            fake.other_user,
            "look",
            attachments=[(PNG_1x1, "cat.png")],
            embeds=[payloads.image_embed(picture["url"], picture["proxy_url"], width=1, height=1)],
            stickers=["wave"],
        )
        invoked = await fake.invoke_menu("Look at this", posted)
        assert invoked.payload["data"]["type"] == payloads.COMMAND_MESSAGE
        assert invoked.payload["data"]["target_id"] == str(posted.id)
        kind, message = await asyncio.wait_for(seen.get(), 5)
        assert (
            kind == "menu" and message.id == posted.id and message.author.id == fake.other_user.id
        )
        assert [a.filename for a in message.attachments] == ["cat.png"]
        assert message.embeds[0].thumbnail.url == picture["url"]
        assert [s.name for s in message.stickers] == ["wave"]
        assert await message.attachments[0].read() == PNG_1x1
        await invoked.wait_callback()
        assert invoked.original is not None and invoked.original.ephemeral
        [select] = invoked.original.selects
        assert [o["value"] for o in select["options"]] == ["a", "b"]
        with pytest.raises(ValueError):
            await fake.select(invoked.original, "look:pick", ["c"])
        with pytest.raises(ValueError):
            await fake.select(invoked.original, "look:pick", ["a"], user=fake.other_user)
        chosen = await fake.select(invoked.original, "look:pick", ["b"])
        assert await asyncio.wait_for(seen.get(), 5) == ("select", ["b"])
        assert (await chosen.wait_callback())["type"] == payloads.CALLBACK_DEFERRED_CHANNEL_MESSAGE
        with pytest.raises(LookupError):
            await fake.invoke_menu("Not registered", posted)
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_the_cdn_serves_avatars(fake: FakeDiscord) -> None:
    avatar_hash = fake.set_avatar(fake.requester, PNG_1x1)
    assert fake.member_payload(fake.requester)["user"]["avatar"] == avatar_hash
    async with aiohttp.ClientSession() as session:
        base = fake.base_url
        async with session.get(
            f"{base}/avatars/{fake.requester.id}/{avatar_hash}.png?size=1024"
        ) as r:
            assert r.status == 200 and await r.read() == PNG_1x1
        async with session.get(f"{base}/embed/avatars/3.png") as r:
            assert r.status == 200 and (await r.read()).startswith(b"\x89PNG")
        async with session.get(f"{base}/avatars/{fake.other_user.id}/{avatar_hash}.png") as r:
            assert r.status == 404
