"""The fake gateway: HELLO, IDENTIFY → READY, heartbeats, RESUME with replay, dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

from . import payloads

OnSent = Callable[[float], None]
HEARTBEAT_ACK_LATENCY = 0.05  # seconds


class GatewayConnection:
    """One websocket. Sends are serialised so frames (and the zlib stream) stay in order."""

    def __init__(self, ws: web.WebSocketResponse, *, zlib_stream: bool) -> None:
        self.ws = ws
        # zlib-stream: one deflate context for the whole connection, each message ending in a
        # Z_SYNC_FLUSH marker, which is what discord.py's decompressor waits for.
        self._compressor = zlib.compressobj() if zlib_stream else None
        self._lock = asyncio.Lock()
        self.session: GatewaySession | None = None

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, frame: dict[str, Any]) -> float:
        """Write one frame; returns loop.time() after it was written."""
        text = json.dumps(frame, separators=(",", ":"))
        async with self._lock:
            if self._compressor is not None:
                data = self._compressor.compress(text.encode())
                data += self._compressor.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(text)
        return asyncio.get_running_loop().time()

    async def close(self, code: int, message: str = "") -> None:
        await self.ws.close(code=code, message=message.encode())


@dataclass(eq=False)
class GatewaySession:
    """A gateway session: survives its websocket so that a RESUME can replay what was missed."""

    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    ready: bool = False  # READY and the guilds have been dispatched
    connection: GatewayConnection | None = None
    # Every dispatch in order, so a RESUME can replay those after the client's last seq.
    backlog: list[tuple[dict[str, Any], OnSent | None]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def dispatch(self, event: str, data: Any, on_sent: OnSent | None = None) -> None:
        """Send an op 0 event now, or keep it for replay if the client is disconnected."""
        async with self.lock:
            self.seq += 1
            frame = payloads.gateway_frame(payloads.OP_DISPATCH, data, s=self.seq, t=event)
            self.backlog.append((frame, on_sent))
            connection = self.connection
            if connection is None or connection.closed:
                return
            try:
                sent_at = await connection.send(frame)
            except ConnectionError:
                return  # the client is gone; the frame waits in the backlog for a RESUME
            if on_sent is not None:
                on_sent(sent_at)

    async def replay_after(self, seq: int | None, connection: GatewayConnection) -> None:
        for frame, on_sent in self.backlog:
            if seq is None or frame["s"] > seq:
                sent_at = await connection.send(frame)
                if on_sent is not None:
                    on_sent(sent_at)


@dataclass
class GatewayHooks:
    """What the gateway needs from the rest of the fake."""

    token: Callable[[], str]
    ready_payload: Callable[[GatewaySession], dict[str, Any]]
    # Events dispatched right after READY (the GUILD_CREATEs), as (name, data) pairs.
    after_ready: Callable[[], list[tuple[str, dict[str, Any]]]]
    members_chunk: Callable[[dict[str, Any]], dict[str, Any]]
    on_ready: Callable[[GatewaySession], None]
    on_resumed: Callable[[GatewaySession], None]
    on_frame: Callable[[dict[str, Any]], None]  # every frame the client sends, for the log


class Gateway:
    """Serves the websocket route and keeps the sessions."""

    def __init__(self, hooks: GatewayHooks) -> None:
        self._hooks = hooks
        self.sessions: dict[str, GatewaySession] = {}
        self.current: GatewaySession | None = None
        self.connections: list[GatewayConnection] = []
        self._acks: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        connection = GatewayConnection(
            ws, zlib_stream=request.query.get("compress") == "zlib-stream"
        )
        self.connections.append(connection)
        try:
            await connection.send(payloads.hello())
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    raw = message.data
                elif message.type is WSMsgType.BINARY:
                    raw = message.data.decode()
                else:
                    break
                await self._on_frame(connection, raw)
        except ConnectionError:
            pass  # the client vanished mid-send: same as a close
        finally:
            self.connections.remove(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
        return ws

    async def _on_frame(self, connection: GatewayConnection, raw: str) -> None:
        try:
            frame = json.loads(raw)
            op = frame["op"]
        except (ValueError, KeyError, TypeError):
            await connection.close(payloads.CLOSE_DECODE_ERROR, "Error while decoding payload.")
            return
        self._hooks.on_frame(frame)
        data = frame.get("d")
        handler = self._handlers.get(op)
        if handler is None:
            await connection.close(payloads.CLOSE_UNKNOWN_OPCODE, "Unknown opcode.")
            return
        if connection.session is None and op not in (
            payloads.OP_HEARTBEAT,
            payloads.OP_IDENTIFY,
            payloads.OP_RESUME,
        ):
            await connection.close(payloads.CLOSE_NOT_AUTHENTICATED, "Not authenticated.")
            return
        await handler(self, connection, data)

    async def _heartbeat(self, connection: GatewayConnection, data: Any) -> None:
        # Answer after a little simulated network latency: discord.py's keep-alive thread
        # notes the send time only after the loop has sent the beat, and an ACK that beats it
        # (easy on loopback) logs a spurious "Can't keep up, websocket is 41s behind".
        async def ack_later() -> None:
            await asyncio.sleep(HEARTBEAT_ACK_LATENCY)
            if not connection.closed:
                with contextlib.suppress(ConnectionError):
                    await connection.send(payloads.heartbeat_ack())

        task = asyncio.get_running_loop().create_task(ack_later())
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    def _token_ok(self, token: Any) -> bool:
        # discord.py sends the bare token; tolerate a "Bot " prefix as Discord does.
        return isinstance(token, str) and token.removeprefix("Bot ") == self._hooks.token()

    async def _identify(self, connection: GatewayConnection, data: Any) -> None:
        if connection.session is not None:
            await connection.close(payloads.CLOSE_ALREADY_AUTHENTICATED, "Already authenticated.")
            return
        if not isinstance(data, dict) or not self._token_ok(data.get("token")):
            await connection.close(payloads.CLOSE_AUTHENTICATION_FAILED, "Authentication failed.")
            return
        session = GatewaySession(
            id=uuid.uuid4().hex,
            intents=int(data.get("intents", 0)),
            shard=data.get("shard"),
            connection=connection,
        )
        connection.session = session
        self.sessions[session.id] = session
        self.current = session
        await session.dispatch("READY", self._hooks.ready_payload(session))
        for event, event_data in self._hooks.after_ready():
            await session.dispatch(event, event_data)
        session.ready = True
        self._hooks.on_ready(session)

    async def _resume(self, connection: GatewayConnection, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not self._token_ok(data.get("token")):
            # Not resumable: discord.py then re-identifies from its DEFAULT_GATEWAY.
            await connection.send(payloads.invalid_session(False))
            return
        async with session.lock:
            old = session.connection
            session.connection = connection
            connection.session = session
            if old is not None and old is not connection and not old.closed:
                await old.close(payloads.CLOSE_UNKNOWN_ERROR, "Session resumed elsewhere.")
            await session.replay_after(data.get("seq"), connection)
            session.seq += 1
            resumed = payloads.gateway_frame(payloads.OP_DISPATCH, {}, s=session.seq, t="RESUMED")
            await connection.send(resumed)
        self.current = session
        self._hooks.on_resumed(session)

    async def _request_members(self, connection: GatewayConnection, data: Any) -> None:
        assert connection.session is not None
        chunk = self._hooks.members_chunk(data if isinstance(data, dict) else {})
        await connection.session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def _ignore(self, connection: GatewayConnection, data: Any) -> None:
        """Presence and voice state updates: recorded, otherwise ignored."""

    _handlers: ClassVar[dict[int, Callable[[Gateway, GatewayConnection, Any], Awaitable[None]]]] = {
        payloads.OP_HEARTBEAT: _heartbeat,
        payloads.OP_IDENTIFY: _identify,
        payloads.OP_PRESENCE_UPDATE: _ignore,
        payloads.OP_VOICE_STATE_UPDATE: _ignore,
        payloads.OP_RESUME: _resume,
        payloads.OP_REQUEST_GUILD_MEMBERS: _request_members,
    }

    async def drop(self, code: int) -> None:
        """Close the current session's websocket without ending the session."""
        session = self.current
        if session is None or session.connection is None:
            raise RuntimeError("no gateway connection to drop")
        await session.connection.close(code, "Dropped by the test.")

    async def send_op(self, frame: dict[str, Any]) -> None:
        session = self.current
        if session is None or session.connection is None:
            raise RuntimeError("no gateway connection")
        await session.connection.send(frame)

    async def close_all(self) -> None:
        for task in list(self._acks):
            task.cancel()
        for connection in list(self.connections):
            if not connection.closed:
                await connection.close(1001, "Fake Discord is stopping.")
