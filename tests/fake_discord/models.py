"""What the fake remembers: users, messages, interactions and the REST calls it answered."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from . import payloads


@dataclass(frozen=True)
class FakeUser:
    """A guild member who can run commands and click buttons."""

    id: int
    username: str
    role_ids: tuple[int, ...] = ()
    global_name: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        return payloads.user(self.id, self.username, global_name=self.global_name, bot=self.bot)


@dataclass(frozen=True)
class FakeRole:
    """A role of the guild, as a value for a role option (its payload goes under `resolved`)."""

    id: int
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class FakeChannel:
    """A channel of the guild, as a value for a channel option (resolved like a role)."""

    id: int
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class RecordedRequest:
    """One REST (or CDN) call as the fake received and answered it."""

    method: str
    path: str  # relative to the API base, e.g. "/channels/1/messages"; raw path outside it
    query: Mapping[str, str]
    headers: Mapping[str, str]  # case-insensitive; Authorization is kept on purpose
    json: Any  # the JSON body, or the decoded `payload_json` part of a multipart body
    files: list[tuple[str, str, bytes]]  # (filename, content_type, data) from `files[n]` parts
    status: int
    response: Any
    time: float  # loop.time() when it was answered

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


MessageKind = Literal["channel", "interaction", "followup", "member"]


@dataclass(eq=False)
class FakeMessage:
    """A message that exists (or existed) in the fake guild.

    kind: "channel" (POST /channels/{id}/messages with the bot token), "interaction" (the
    @original response of an interaction), "followup" (POST /webhooks/{app}/{token}) or
    "member" (a member's own post: `FakeDiscord.post`).
    """

    id: int
    channel_id: int
    author_id: int
    author: dict[str, Any]
    kind: MessageKind
    created_at: float  # wall-clock seconds, for Discord timestamps
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[tuple[str, bytes]] = field(default_factory=list)
    attachment_payloads: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    edits: list[dict[str, Any]] = field(default_factory=list)  # each edit's request body, in order
    edit_times: list[float] = field(default_factory=list)  # loop.time() of each edit
    deleted: bool = False
    message_type: int = payloads.MESSAGE_TYPE_DEFAULT
    interaction_id: int | None = None
    application_id: int | None = None
    webhook_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    edited_at: float | None = None
    mentions: list[dict[str, Any]] = field(default_factory=list)
    sticker_items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & payloads.MESSAGE_FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while a deferred "thinking" response has not been edited yet."""
        return bool(self.flags & payloads.MESSAGE_FLAG_LOADING)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [
            dict(c)
            for c in payloads.iter_components(self.components)
            if c.get("type") == payloads.COMPONENT_BUTTON
        ]

    @property
    def selects(self) -> list[dict[str, Any]]:
        return [
            dict(c)
            for c in payloads.iter_components(self.components)
            if c.get("type") == payloads.COMPONENT_STRING_SELECT
        ]

    @property
    def custom_ids(self) -> list[str]:
        return [
            c["custom_id"] for c in payloads.iter_components(self.components) if "custom_id" in c
        ]

    def payload(self, *, guild_id: int | None = None, member: dict | None = None) -> dict:
        """The Discord message object; guild_id/member are added for gateway events."""
        return payloads.message(
            message_id=self.id,
            channel_id=self.channel_id,
            author=self.author,
            content=self.content,
            created_at=self.created_at,
            edited_at=self.edited_at,
            embeds=self.embeds,
            components=self.components,
            attachments=self.attachment_payloads,
            flags=self.flags,
            message_type=self.message_type,
            mentions=self.mentions,
            application_id=self.application_id,
            webhook_id=self.webhook_id,
            interaction_metadata=self.interaction_metadata,
            guild_id=guild_id,
            member_payload=member,
            sticker_items=self.sticker_items,
        )


@dataclass(eq=False)
class FakeInteraction:
    """An interaction the fake sent to the bot, and everything the bot answered to it.

    original: what .../messages/@original refers to: the message a type 4 or 5 callback
    created, or, after a type 6 or 7 callback, the message the clicked component is on.
    followups: messages sent with POST /webhooks/{app}/{token}. As on Discord, the first
    followup after a "thinking" defer (type 5) fills in that deferred message instead of
    creating one, so it is then both `original` and `followups[0]`.
    """

    id: int
    token: str
    user: FakeUser
    type: int
    payload: dict[str, Any]  # the INTERACTION_CREATE `d`
    created_at: float | None = None  # FakeDiscord.clock() when it was sent: the token's age
    name: str | None = None  # command name for type 2
    custom_id: str | None = None  # for type 3
    source_message: FakeMessage | None = None  # the message a clicked component is on
    sent_at: float | None = None  # loop.time() when the gateway frame was written
    # Accepted callbacks: {"type", "data", "files", "received_at", "sent_at"}.
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    expired: bool = False
    _acked: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def ack_latency(self) -> float | None:
        """Seconds from sending the interaction to receiving its first callback."""
        if not self.callbacks or self.sent_at is None:
            return None
        return self.callbacks[0]["received_at"] - self.sent_at

    def record_callback(self, callback: dict[str, Any]) -> None:
        self.callbacks.append(callback)
        self._acked.set()

    async def wait_callback(self, timeout: float = 5) -> dict[str, Any]:
        """The first callback, once the bot has sent it."""
        try:
            await asyncio.wait_for(self._acked.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"interaction {self.id} ({self.name or self.custom_id}) got no callback "
                f"within {timeout}s"
            ) from None
        return self.callbacks[0]
