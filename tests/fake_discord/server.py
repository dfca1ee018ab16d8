"""FakeDiscord: Discord's REST API, gateway and CDN served on 127.0.0.1 by aiohttp.

It holds one guild with one text channel, the bot and four human members, and answers the
real discord.py client the way Discord does, errors included: expired interaction tokens,
deleted messages, late or double acknowledgements, oversized uploads, bad tokens. Tests
drive it with `invoke` and `click` and inspect what the bot did through `requests`,
`messages` and the FakeInteraction that `invoke` returns.

Point discord.py at it (both are process-wide class attributes in discord.py 2.x):

    discord.http.Route.BASE = fake.api_base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

RESUME goes to READY's `resume_gateway_url`, which is the fake's gateway URL as well.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from . import payloads, rest
from .cdn import Cdn
from .commands import CommandRegistry, autocomplete_data, command_data
from .gateway import Gateway, GatewayHooks, GatewaySession
from .models import FakeChannel, FakeInteraction, FakeMessage, FakeRole, FakeUser, RecordedRequest


@dataclass
class _InjectedError:
    method: str
    path: str  # fnmatch pattern on the API-relative path
    status: int
    body: Any
    headers: dict[str, str]
    times: int


class FakeDiscord:
    """A fake Discord for end-to-end tests. Async context manager: starts on enter, stops on exit.

    upload_limit: the per-file limit, reported to the bot as `attachment_size_limit` on every
    interaction and enforced on uploads (413, code 40005).
    ack_deadline: seconds the bot has to answer an interaction; a later callback gets 404
    10062 "Unknown interaction", as on Discord (3 s). None turns the check off.
    token_lifetime: seconds an interaction token works, from when the interaction was sent, on
    `clock`; later calls with it get 401 50027, as on Discord (15 minutes). Tests shorten it
    (it may be changed at any time) or move the clock.
    on_request: called with each REST request once it is handled, before the answer goes
    back: a test can act at that exact moment (e.g. kill the bot once a post has landed).
    """

    def __init__(
        self,
        *,
        token: str = "fake-token-XYZ",
        upload_limit: int = 10 * 1024 * 1024,
        ack_deadline: float | None = 3.0,
        token_lifetime: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.upload_limit = upload_limit
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.on_request: Callable[[RecordedRequest], object] | None = None

        # Modern applications share their id with their bot user.
        self.application_id = payloads.snowflake()
        self.bot_user_id = self.application_id
        self.guild_id = payloads.snowflake()
        self.channel_id = payloads.snowflake()
        self.guild_name = "Fake Guild"
        self.guild_locale = "en-US"
        """The server's language (its "preferred_locale"), in every interaction's
        ``guild_locale``; a test may change it at any time."""
        self.channel_name = "stylize"
        self.moderator_role_id = payloads.snowflake()
        self.bot_role_id = payloads.snowflake()
        self.admin_role_id = payloads.snowflake()
        self.artist_role_id = payloads.snowflake()
        self.role_permissions: dict[int, int] = {
            self.guild_id: payloads.EVERYONE_PERMISSIONS,  # @everyone's id is the guild's
            self.moderator_role_id: payloads.EVERYONE_PERMISSIONS | payloads.MANAGE_MESSAGES,
            self.bot_role_id: payloads.EVERYONE_PERMISSIONS,
            self.admin_role_id: payloads.EVERYONE_PERMISSIONS | payloads.MANAGE_GUILD,
            self.artist_role_id: payloads.EVERYONE_PERMISSIONS,  # a role for quotas only
        }
        # A second text channel, for channel options and /stylize-admin channels.
        self.other_channel_id = payloads.snowflake()
        self.other_channel_name = "gallery"
        self.channel_nsfw = False
        """The age-restricted flag of the main channel (see `set_channel_nsfw`)."""

        self.bot_user = FakeUser(
            self.bot_user_id, "stylize-bot", role_ids=(self.bot_role_id,), bot=True
        )
        # An owner passes every permission check, so none of the users tests act as is one.
        self.owner = FakeUser(payloads.snowflake(), "guild-owner", global_name="Owner")
        self.requester = FakeUser(payloads.snowflake(), "requester", global_name="Requester")
        self.other_user = FakeUser(payloads.snowflake(), "other-user", global_name="Other")
        self.moderator = FakeUser(
            payloads.snowflake(),
            "moderator",
            role_ids=(self.moderator_role_id,),
            global_name="Moderator",
        )
        # Manage Server, without being the owner (who passes every check anyway).
        self.admin = FakeUser(
            payloads.snowflake(), "admin", role_ids=(self.admin_role_id,), global_name="Admin"
        )
        self.artist = FakeUser(
            payloads.snowflake(), "artist", role_ids=(self.artist_role_id,), global_name="Artist"
        )
        self.users: dict[int, FakeUser] = {
            u.id: u
            for u in (
                self.bot_user,
                self.owner,
                self.requester,
                self.other_user,
                self.moderator,
                self.admin,
                self.artist,
            )
        }
        self._joined_at = payloads.iso_timestamp()

        self.requests: list[RecordedRequest] = []
        self.gateway_frames: list[dict[str, Any]] = []  # every frame the client sent
        self.messages: dict[int, FakeMessage] = {}
        self.dm_channels: dict[int, int] = {}  # DM channel id -> the user's id
        self.closed_dms: set[int] = set()
        """Users who accept no DMs from the bot: a post gets 403 50007, as on Discord."""
        self.interactions: dict[int, FakeInteraction] = {}
        self.avatars: dict[int, str] = {}
        """Members' custom avatars (user id → hash); the others have a default one."""
        self.identifies = 0
        self.resumes = 0
        self.registry = CommandRegistry(self.application_id)
        self.cdn = Cdn(lambda: self.base_url, on_request=self._notify)
        self.gateway = Gateway(
            GatewayHooks(
                token=lambda: self.token,
                ready_payload=self._ready_payload,
                after_ready=lambda: [("GUILD_CREATE", self._guild_create_payload())],
                members_chunk=self._members_chunk,
                on_ready=self._on_identified,
                on_resumed=self._on_resumed,
                on_frame=self._on_gateway_frame,
            )
        )

        self._by_token: dict[str, FakeInteraction] = {}
        self._injected: list[_InjectedError] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._resumes_at_drop = 0
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        # Room for oversized uploads, so they reach the handler and get Discord's JSON 413.
        app = web.Application(client_max_size=max(4 * self.upload_limit, 64 * 1024 * 1024))
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", "/{tail:.*}", self._handle_http)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self.gateway.close_all()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeDiscord is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base_url(self) -> str:
        return f"{self.base_url}/api/v{payloads.API_VERSION}"

    @property
    def gateway_url(self) -> str:
        return f"{self.base_url.replace('http://', 'ws://')}/gateway"

    # --- waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30) -> None:
        """Wait until predicate() holds, re-checking it whenever the fake records something
        (a REST or CDN request, a gateway frame, a READY or RESUMED, a test control)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n  ".join(
                    f"{r.method} {r.path} -> {r.status}" for r in self.requests[-10:]
                )
                raise TimeoutError(
                    f"condition not met within {timeout}s; last requests:\n  {recent or '(none)'}"
                )
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                pass  # the loop re-checks once more, then reports
            finally:
                self._waiters.discard(waiter)

    async def wait_ready(self, timeout: float = 10) -> None:
        """The client identified and was sent READY and GUILD_CREATE."""
        await self.wait_for(lambda: self._ready_session() is not None, timeout)

    async def wait_commands(self, timeout: float = 10) -> list[dict[str, Any]]:
        """The registered commands, once the bot has bulk-overwritten them at least once."""
        await self.wait_for(lambda: self.registry.syncs > 0, timeout)
        return self.commands

    async def wait_resumed(self, timeout: float = 10) -> None:
        """The client RESUMEd after the last drop_connection() or send_reconnect()."""
        await self.wait_for(lambda: self.resumes > self._resumes_at_drop, timeout)

    # --- inspecting ------------------------------------------------------------------------

    @property
    def commands(self) -> list[dict[str, Any]]:
        """Registered application commands as Discord echoed them (global, then guild)."""
        return self.registry.all

    @property
    def cdn_requests(self) -> list[RecordedRequest]:
        """Attachment downloads (kept apart from the REST calls in `requests`)."""
        return self.cdn.requests

    def channel_messages(self) -> list[FakeMessage]:
        """Live messages the bot posted in the channel with its bot token, oldest first."""
        return [
            m
            for m in self.messages.values()
            if m.kind == "channel" and m.channel_id == self.channel_id and not m.deleted
        ]

    def find_requests(self, method: str | None = None, path: str = "*") -> list[RecordedRequest]:
        """Recorded REST calls matching a method and an fnmatch pattern on the path."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and fnmatch.fnmatch(r.path, path)
        ]

    def dm_messages(self, user: FakeUser) -> list[FakeMessage]:
        """Live messages the bot sent to ``user`` in a DM, oldest first."""
        return [
            m
            for m in self.messages.values()
            if self.dm_channels.get(m.channel_id) == user.id and not m.deleted
        ]

    def permissions_of(self, user: FakeUser) -> int:
        """The user's permissions in the channel: their roles' (there are no overwrites)."""
        if user.id == self.owner.id:
            return payloads.ALL_PERMISSIONS
        value = 0
        for role_id in (self.guild_id, *user.role_ids):
            value |= self.role_permissions.get(role_id, 0)
        return payloads.ALL_PERMISSIONS if value & payloads.ADMINISTRATOR else value

    # --- test controls ---------------------------------------------------------------------

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        *,
        content_type: str | None = None,
        declared_size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> dict[str, Any]:
        """A user's upload for an attachment option, served by the fake CDN.

        content_type defaults to a guess from the filename, width/height to the image's
        (Pillow permitting); declared_size lets a test lie about the size.
        """
        return self.cdn.store(
            data,
            filename,
            channel_id=self.channel_id,
            content_type=content_type or payloads.guess_content_type(filename),
            size=declared_size,
            width=width,
            height=height,
            ephemeral=True,
        )

    def expire_attachment(self, attachment: Mapping[str, Any]) -> None:
        """Later downloads of this attachment get 404, as when a CDN link has expired."""
        self.cdn.expire(int(attachment["id"]))

    def expire_token(self, interaction: FakeInteraction) -> None:
        """15 minutes have passed: later calls with its token get 401 {"code": 50027}."""
        interaction.expired = True
        self._notify()

    def token_expired(self, interaction: FakeInteraction) -> bool:
        """Whether the interaction's token no longer works: expired by a test, or older than
        `token_lifetime` on `clock`."""
        if interaction.expired:
            return True
        created = interaction.created_at
        return created is not None and self.clock() - created >= self.token_lifetime

    def delete_message(self, message_id: int) -> None:
        """A user deleted the message: later edits get 404 {"code": 10008}."""
        message = self.messages[message_id]
        message.deleted = True
        self._spawn(self.dispatch_message_event("MESSAGE_DELETE", message))
        self._notify()

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        body: Any = None,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `times` matching REST calls with this error, without handling them.

        path is an fnmatch pattern on the API-relative path, e.g. "/channels/*/messages".
        Note that discord.py retries 500/502/504 itself, sleeping 1 + 2n seconds in between.
        """
        if body is None:
            body = payloads.error(0, f"{status}: injected by the test")
        self._injected.append(
            _InjectedError(method.upper(), path, status, body, dict(headers or {}), times)
        )

    def rate_limit_next(
        self, method: str, path: str, *, retry_after: float = 0.25, times: int = 1
    ) -> None:
        """Answer the next `times` matching calls 429, with Discord's body and headers (a
        per-route limit of the user scope, not the global one)."""
        reset_after = f"{retry_after:.3f}"
        headers = {
            "Retry-After": str(max(1, round(retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": reset_after,
            "X-RateLimit-Bucket": "fake-bucket-" + path.strip("/*").replace("/", "-"),
            "X-RateLimit-Scope": "user",
            # Discord's API answers through Google's front end; discord.py takes a 429
            # without it for a Cloudflare ban and gives up instead of waiting.
            "Via": "1.1 google",
        }
        body = {"message": "You are being rate limited.", "retry_after": retry_after,
                "global": False}  # fmt: skip
        self.fail_next(method, path, 429, body, times=times, headers=headers)

    def clear_failures(self) -> None:
        """Forget every error ``fail_next`` set up and no request has used yet."""
        self._injected.clear()

    async def drop_connection(self, *, code: int = payloads.CLOSE_UNKNOWN_ERROR) -> None:
        """Close the gateway websocket; the session stays resumable, so discord.py RESUMEs.

        Events dispatched meanwhile (by invoke() or click()) are replayed after the RESUME.
        """
        self._resumes_at_drop = self.resumes
        await self.gateway.drop(code)

    async def send_reconnect(self) -> None:
        """Op 7 RECONNECT: the client reconnects and RESUMEs."""
        self._resumes_at_drop = self.resumes
        await self.gateway.send_op(payloads.gateway_frame(payloads.OP_RECONNECT))

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Op 9 INVALID_SESSION. With resumable=False the client IDENTIFYs again, after the
        5 s that discord.py's Client.before_identify_hook waits on every re-identify."""
        await self.gateway.send_op(payloads.invalid_session(resumable))

    def set_avatar(self, user: FakeUser, data: bytes) -> str:
        """Give a member a custom avatar, served by the fake CDN; returns its hash."""
        self.avatars[user.id] = self.cdn.store_avatar(user.id, data)
        return self.avatars[user.id]

    def store_picture(self, data: bytes, filename: str) -> dict[str, Any]:
        """A picture on the fake CDN that no message carries as its attachment (one an embed
        links to); returns its attachment object, for its url and proxy_url."""
        return self.cdn.store(
            data, filename, channel_id=self.channel_id,
            content_type=payloads.guess_content_type(filename),
        )  # fmt: skip

    def post(
        self,
        author: FakeUser,
        content: str = "",
        *,
        attachments: list[tuple[bytes, str]] = (),  # type: ignore[assignment]
        embeds: list[dict[str, Any]] = (),  # type: ignore[assignment]
        stickers: list[str] = (),  # type: ignore[assignment]
    ) -> FakeMessage:
        """A member's message in the channel: text, uploads (bytes, filename), embeds (as
        `payloads.image_embed` makes them) and stickers (by name). The bot hears of it only
        through a menu on it (it asks for no message events)."""
        stored = [
            self.cdn.store(
                data, filename, channel_id=self.channel_id,
                content_type=payloads.guess_content_type(filename),
            )
            for data, filename in attachments
        ]  # fmt: skip
        message = FakeMessage(
            id=payloads.snowflake(),
            channel_id=self.channel_id,
            author_id=author.id,
            author=self.user_payload(author),
            kind="member",
            created_at=time.time(),
            content=content,
            embeds=list(embeds),
            attachments=[(filename, data) for data, filename in attachments],
            attachment_payloads=stored,
            sticker_items=[payloads.sticker_item(payloads.snowflake(), name) for name in stickers],
        )
        self.add_message(message)
        return message

    # --- interactions ----------------------------------------------------------------------

    async def invoke(
        self,
        name: str,
        options: Mapping[str, object],
        *,
        user: FakeUser | None = None,
        locale: str = "en-US",
        validate: bool = True,
        opened_to_everyone: bool = False,
    ) -> FakeInteraction:
        """A member runs a registered slash command: "name", or "group sub" for subcommands
        ("group sub sub" for a subcommand group's).

        options: plain values; an attachment dict from add_attachment; a FakeUser for user
        options; a FakeRole or FakeChannel (from `role_option`, `channel_option`). With
        validate, they are checked against the registered schema (names, types, required,
        choices, ranges), as Discord's client does.
        As on Discord, a member without the command's `default_member_permissions` can't run
        it (PermissionError), unless the server's admins opened it to everyone in their
        Integrations settings (`opened_to_everyone`).
        Returns once the interaction is sent (or queued for replay while disconnected).
        """
        await self.wait_ready()
        top, *path = name.split()
        command = self.registry.find(top, self.guild_id)
        required = command.get("default_member_permissions")
        if required is not None and not opened_to_everyone:
            needed = int(required)
            if self.permissions_of(user or self.requester) & needed != needed:
                raise PermissionError(f"/{top} is hidden from members without {needed:#x}")
        data = command_data(
            command,
            path,
            options,
            validate=validate,
            resolve_member=self._resolved_member,
        )
        return await self._send_interaction(
            payloads.INTERACTION_APPLICATION_COMMAND,
            data,
            user or self.requester,
            locale=locale,
            name=name,
        )

    async def click(
        self,
        message: FakeMessage | Mapping[str, Any],
        custom_id: str,
        *,
        user: FakeUser | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A member clicks the button `custom_id` on a message (a FakeMessage or its payload).

        Raises if Discord's client would not let them: no such button, a disabled one, a
        deleted message, or someone else's ephemeral message.
        """
        await self.wait_ready()
        user = user or self.requester
        target = (
            message if isinstance(message, FakeMessage) else self.messages.get(int(message["id"]))
        )
        if target is None:
            raise LookupError(f"no message {message['id']} in the fake")  # type: ignore[index]
        if target.deleted:
            raise LookupError(f"message {target.id} is deleted; nobody can click on it")
        component = next(
            (
                c
                for c in payloads.iter_components(target.components)
                if c.get("custom_id") == custom_id
            ),
            None,
        )
        if component is None:
            raise LookupError(
                f"message {target.id} has no component {custom_id!r}: {target.custom_ids}"
            )
        if component.get("disabled"):
            raise ValueError(f"button {custom_id!r} is disabled; Discord's client cannot click it")
        metadata = target.interaction_metadata
        if target.ephemeral and metadata is not None and int(metadata["user"]["id"]) != user.id:
            raise ValueError("only the invoking user sees (and can click) an ephemeral message")
        data = payloads.component_data(custom_id, component["type"], component.get("id"))
        return await self._send_interaction(
            payloads.INTERACTION_MESSAGE_COMPONENT,
            data,
            user,
            locale=locale,
            custom_id=custom_id,
            source_message=target,
        )

    async def invoke_menu(
        self,
        name: str,
        message: FakeMessage,
        *,
        user: FakeUser | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A member picks the registered message menu `name` (Apps) on `message`: a type 2
        interaction whose data is type 3, with `target_id` and the message under
        `resolved.messages`."""
        await self.wait_ready()
        if message.deleted:
            raise LookupError(f"message {message.id} is deleted; nobody can open its menu")
        command = self.registry.find(name, self.guild_id, payloads.COMMAND_MESSAGE)
        member = self.member_payload(self.users[message.author_id])
        del member["user"]
        data = payloads.message_command_data(
            command, message.payload(guild_id=self.guild_id, member=member)
        )
        return await self._send_interaction(
            payloads.INTERACTION_APPLICATION_COMMAND,
            data,
            user or self.requester,
            locale=locale,
            name=name,
        )

    async def select(
        self,
        message: FakeMessage,
        custom_id: str,
        values: list[str],
        *,
        user: FakeUser | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A member chooses `values` in the string select `custom_id` on a message. Raises if
        Discord's client would not let them (as `click`, and values that are not the select's
        options, or too few or too many)."""
        await self.wait_ready()
        user = user or self.requester
        if message.deleted:
            raise LookupError(f"message {message.id} is deleted; nobody can use it")
        component = next(
            (
                c
                for c in payloads.iter_components(message.components)
                if c.get("custom_id") == custom_id
                and c.get("type") == payloads.COMPONENT_STRING_SELECT
            ),
            None,
        )
        if component is None:
            raise LookupError(f"message {message.id} has no select {custom_id!r}")
        if component.get("disabled"):
            raise ValueError(f"select {custom_id!r} is disabled")
        offered = [o["value"] for o in component.get("options") or []]
        if not set(values) <= set(offered):
            raise ValueError(f"{values} are not all among the options {offered}")
        if not component.get("min_values", 1) <= len(values) <= component.get("max_values", 1):
            raise ValueError(f"{len(values)} values chosen; the select allows another number")
        metadata = message.interaction_metadata
        if message.ephemeral and metadata is not None and int(metadata["user"]["id"]) != user.id:
            raise ValueError("only the invoking user sees (and can use) an ephemeral message")
        data = payloads.select_data(custom_id, values, component.get("id"))
        return await self._send_interaction(
            payloads.INTERACTION_MESSAGE_COMPONENT,
            data,
            user,
            locale=locale,
            custom_id=custom_id,
            source_message=message,
        )

    async def autocomplete(
        self,
        name: str,
        focused: str,
        typed: str,
        options: Mapping[str, object] | None = None,
        *,
        user: FakeUser | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A member types `typed` into the autocomplete option `focused` of a registered
        command ("name" or "group sub"); the bot's choices arrive as a type 8 callback."""
        await self.wait_ready()
        top, *path = name.split()
        data = autocomplete_data(
            self.registry.find(top, self.guild_id), path, options or {}, focused, typed
        )
        return await self._send_interaction(
            payloads.INTERACTION_APPLICATION_COMMAND_AUTOCOMPLETE,
            data,
            user or self.requester,
            locale=locale,
            name=name,
        )

    async def _send_interaction(
        self,
        interaction_type: int,
        data: dict[str, Any],
        user: FakeUser,
        *,
        locale: str,
        name: str | None = None,
        custom_id: str | None = None,
        source_message: FakeMessage | None = None,
    ) -> FakeInteraction:
        session = self._ready_session()
        assert session is not None, "wait_ready() first"
        interaction_id = payloads.snowflake()
        token = f"aW50ZXJhY3Rpb246{interaction_id}:fake-interaction-token"
        permissions = self.permissions_of(user)
        payload = payloads.interaction(
            interaction_id=interaction_id,
            interaction_type=interaction_type,
            token=token,
            application_id=self.application_id,
            data=data,
            guild_id=self.guild_id,
            channel=self.channel_payload(permissions=permissions),
            member_payload=self.member_payload(user, permissions=permissions),
            app_permissions=self.permissions_of(self.bot_user),
            attachment_size_limit=self.upload_limit,
            locale=locale,
            guild_locale=self.guild_locale,
            message_payload=None if source_message is None else source_message.payload(),
        )
        interaction = FakeInteraction(
            id=interaction_id,
            created_at=self.clock(),
            token=token,
            user=user,
            type=interaction_type,
            payload=payload,
            name=name,
            custom_id=custom_id,
            source_message=source_message,
        )
        self.interactions[interaction.id] = interaction
        self._by_token[interaction.token] = interaction

        def on_sent(at: float) -> None:
            if interaction.sent_at is None:
                interaction.sent_at = at
            self._notify()

        await session.dispatch("INTERACTION_CREATE", interaction.payload, on_sent)
        return interaction

    def interaction_by_token(self, token: str) -> FakeInteraction | None:
        return self._by_token.get(token)

    # --- the guild as payloads -------------------------------------------------------------

    def roles_payload(self) -> list[dict[str, Any]]:
        return [
            payloads.role(self.guild_id, "@everyone", self.role_permissions[self.guild_id]),
            payloads.role(
                self.moderator_role_id,
                "Moderator",
                self.role_permissions[self.moderator_role_id],
                position=1,
            ),
            payloads.role(
                self.bot_role_id,
                self.bot_user.username,
                self.role_permissions[self.bot_role_id],
                position=2,
                managed=True,
                bot_id=self.bot_user_id,
            ),
            payloads.role(
                self.admin_role_id, "Admin", self.role_permissions[self.admin_role_id], position=3
            ),
            payloads.role(
                self.artist_role_id,
                "Artist",
                self.role_permissions[self.artist_role_id],
                position=4,
            ),
        ]

    def user_payload(self, user: FakeUser) -> dict[str, Any]:
        """The user object, with their custom avatar if they have one."""
        payload = user.payload()
        payload["avatar"] = self.avatars.get(user.id)
        return payload

    def role_option(self, role_id: int) -> FakeRole:
        """A role, as the value of a role option."""
        payload = next(r for r in self.roles_payload() if int(r["id"]) == role_id)
        return FakeRole(role_id, payload)

    def channel_option(self, channel_id: int) -> FakeChannel:
        """A channel, as the value of a channel option (with the invoker's permissions)."""
        payload = next(c for c in self.channels_payload() if int(c["id"]) == channel_id)
        payload = {**payload, "permissions": str(payloads.ALL_PERMISSIONS)}
        return FakeChannel(channel_id, payload)

    async def set_channel_nsfw(self, nsfw: bool) -> None:
        """An admin marks the main channel age-restricted (or not): CHANNEL_UPDATE, which the
        bot has read before any interaction sent after this returns."""
        self.channel_nsfw = nsfw
        session = self._ready_session()
        assert session is not None, "wait_ready() first"
        await session.dispatch("CHANNEL_UPDATE", self.channel_payload())

    def channels_payload(self) -> list[dict[str, Any]]:
        other = payloads.text_channel(
            self.other_channel_id, self.guild_id, self.other_channel_name, position=1
        )
        return [self.channel_payload(), other]

    def member_payload(self, user: FakeUser, *, permissions: int | None = None) -> dict:
        return payloads.member(
            self.user_payload(user), user.role_ids, joined_at=self._joined_at,
            permissions=permissions,
        )  # fmt: skip

    def channel_payload(self, *, permissions: int | None = None) -> dict[str, Any]:
        last = max((m.id for m in self.messages.values() if not m.ephemeral), default=None)
        return payloads.text_channel(
            self.channel_id,
            self.guild_id,
            self.channel_name,
            last_message_id=last,
            permissions=permissions,
            nsfw=self.channel_nsfw,
        )

    def guild_payload(self) -> dict[str, Any]:
        return payloads.guild(
            self.guild_id,
            self.guild_name,
            owner_id=self.owner.id,
            roles=self.roles_payload(),
            system_channel_id=self.channel_id,
            preferred_locale=self.guild_locale,
        )

    def _guild_create_payload(self) -> dict[str, Any]:
        return payloads.guild_create(
            self.guild_payload(),
            joined_at=self._joined_at,
            channels=self.channels_payload(),
            members=[self.member_payload(u) for u in self.users.values()],
        )

    def _resolved_member(self, user: FakeUser) -> dict[str, Any]:
        member = self.member_payload(user, permissions=self.permissions_of(user))
        del member["user"]  # resolved members come without it; the user is under "users"
        return member

    def _members_chunk(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted = request.get("user_ids")
        if isinstance(wanted, (str, int)):
            wanted = [wanted]
        query = str(request.get("query") or "").lower()
        members = [
            self.member_payload(u)
            for u in self.users.values()
            if (wanted is None or str(u.id) in {str(w) for w in wanted})
            and u.username.lower().startswith(query)
        ]
        return payloads.guild_members_chunk(self.guild_id, members, nonce=request.get("nonce"))

    # --- gateway ---------------------------------------------------------------------------

    def _ready_session(self) -> GatewaySession | None:
        session = self.gateway.current
        return session if session is not None and session.ready else None

    def _ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        return payloads.ready(
            user_payload=payloads.current_user(self.bot_user_id, self.bot_user.username),
            guild_ids=[self.guild_id],
            session_id=session.id,
            resume_gateway_url=self.gateway_url,
            application_id=self.application_id,
            shard=session.shard,
        )

    def _on_identified(self, session: GatewaySession) -> None:
        self.identifies += 1
        self._notify()

    def _on_resumed(self, session: GatewaySession) -> None:
        self.resumes += 1
        self._notify()

    def _on_gateway_frame(self, frame: dict[str, Any]) -> None:
        self.gateway_frames.append(frame)
        self._notify()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add_message(self, message: FakeMessage) -> None:
        """Make a message exist, e.g. one a previous run of the bot left in the channel."""
        self.messages[message.id] = message

    async def dispatch_message_event(self, event: str, message: FakeMessage) -> None:
        """MESSAGE_CREATE/UPDATE/DELETE, if the client asked for guild message events."""
        session = self.gateway.current
        if session is None or message.ephemeral:
            return  # ephemeral messages never reach the gateway
        if not session.intents & payloads.INTENT_GUILD_MESSAGES:
            return
        if event == "MESSAGE_DELETE":
            data = {
                "id": str(message.id),
                "channel_id": str(message.channel_id),
                "guild_id": str(self.guild_id),
            }
        else:
            member = self.member_payload(self.users[message.author_id])
            del member["user"]  # the author is already there
            data = message.payload(guild_id=self.guild_id, member=member)
        await session.dispatch(event, data)

    # --- HTTP ------------------------------------------------------------------------------

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        prefix = rest.API_PREFIX.match(request.path)
        if prefix is None:
            return await self.cdn.handle(request)
        path = request.path[prefix.end() :]
        try:
            body, files = await rest.read_body(request)
        except ValueError:
            body, files = None, []
            status, answer = 400, payloads.error(50109, "The request body contains invalid JSON.")
            headers: dict[str, str] = {}
        else:
            call = rest.Call(request.method, path, request.query, request.headers, body, files, {})
            status, answer, headers = await self._answer(call)
        recorded = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            json=body,
            files=files,
            status=status,
            response=answer,
            time=asyncio.get_running_loop().time(),
        )
        self.requests.append(recorded)
        self._notify()
        if self.on_request is not None:
            outcome = self.on_request(recorded)
            if asyncio.iscoroutine(outcome):
                await outcome
        if status == 204:
            return web.Response(status=204, headers=headers)
        # Exactly "application/json": discord.py's json_or_text compares the header verbatim.
        return web.Response(
            body=json.dumps(answer).encode(),
            status=status,
            headers={**headers, "Content-Type": "application/json"},
        )

    async def _answer(self, call: rest.Call) -> tuple[int, Any, dict[str, str]]:
        for injected in self._injected:
            if injected.method == call.method and fnmatch.fnmatch(call.path, injected.path):
                injected.times -= 1
                if injected.times <= 0:
                    self._injected.remove(injected)
                return injected.status, injected.body, injected.headers
        status, answer = await rest.dispatch(self, call)
        return status, answer, {}
