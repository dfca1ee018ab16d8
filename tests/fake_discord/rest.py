"""Discord's REST API as the fake answers it: routing, request bodies, message semantics.

Handlers take the FakeDiscord (the state) and a parsed Call, and return the JSON body for
200, NO_CONTENT for 204, or raise ApiError with Discord's status and error body.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web
from multidict import CIMultiDictProxy

from . import payloads
from .models import FakeInteraction, FakeMessage, MessageKind

if TYPE_CHECKING:
    from .server import FakeDiscord

API_PREFIX = re.compile(r"^/api/v(?:9|10)(?=/)")
NO_CONTENT = object()  # a handler's answer for 204 No Content
_TRUE = {"1", "true", "True"}  # how query flags like wait= and with_response= arrive
_MAX_CONTENT = 2000
_MAX_EMBEDS = 10
_MAX_ROWS = 5  # action rows per message
_MAX_ROW_ITEMS = 5  # buttons per action row
_MAX_CUSTOM_ID = 100
_MAX_SELECT_OPTIONS = 25
# Flags a bot may set when creating a message: SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS,
# IS_COMPONENTS_V2; interaction responses may also be EPHEMERAL.
_CREATE_FLAGS = (1 << 2) | (1 << 12) | (1 << 15)
_EDIT_FLAGS = 1 << 2  # only SUPPRESS_EMBEDS can change on edit

Files = list[tuple[str, str, bytes]]  # (filename, content_type, data) per files[n] part


class ApiError(Exception):
    """Answer with a Discord error: status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _unknown_message() -> ApiError:
    return ApiError(404, payloads.error(payloads.UNKNOWN_MESSAGE, "Unknown Message"))


@dataclass
class Call:
    """A parsed REST request, as route handlers see it."""

    method: str
    path: str  # relative to the API base
    query: Mapping[str, str]
    headers: CIMultiDictProxy[str]
    json: Any  # JSON body, or the decoded payload_json part
    files: Files
    params: dict[str, str]  # the route's {placeholders}

    def int_param(self, name: str) -> int:
        value = self.params[name]
        if not value.isdigit():
            raise ApiError(404, payloads.not_found())
        return int(value)


Handler = Callable[["FakeDiscord", Call], Awaitable[Any]]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    bot_auth: bool  # requires "Authorization: Bot <token>"


class _Router:
    def __init__(self) -> None:
        self.routes: list[_Route] = []

    def add(self, method: str, template: str, *, bot_auth: bool = True) -> Callable:
        # A "{name}" matches one path segment (a snowflake, a token, "@original").
        pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")

        def register(handler: Handler) -> Handler:
            self.routes.append(_Route(method, pattern, handler, bot_auth))
            return handler

        return register


_routes = _Router()


async def read_body(request: web.Request) -> tuple[Any, Files]:
    """JSON body, or multipart `payload_json` + `files[n]`. Raises ValueError on bad JSON."""
    if not request.content_type.startswith("multipart/"):
        raw = await request.read()
        return (json.loads(raw) if raw else None), []
    body: Any = None
    indexed: list[tuple[int, tuple[str, str, bytes]]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue  # nested multipart: Discord does not use it
        data = await part.read(decode=False)
        if part.name == "payload_json":
            body = json.loads(data)
        elif (index := re.fullmatch(r"files\[(\d+)\]", part.name or "")) is not None:
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            indexed.append((int(index[1]), (part.filename or "", content_type, bytes(data))))
    return body, [file for _, file in sorted(indexed)]


async def dispatch(fake: FakeDiscord, call: Call) -> tuple[int, Any]:
    """Route a call: (status, body). Unknown paths get 404, known paths 405 on other methods."""
    path_known = False
    for route in _routes.routes:
        found = route.pattern.match(call.path)
        if found is None:
            continue
        path_known = True
        if route.method != call.method:
            continue
        if route.bot_auth and call.headers.get("Authorization") != f"Bot {fake.token}":
            return 401, payloads.unauthorized()
        call.params = found.groupdict()
        try:
            body = await route.handler(fake, call)
        except ApiError as exc:
            return exc.status, exc.body
        return (204, None) if body is NO_CONTENT else (200, body)
    if path_known:
        return 405, payloads.error(0, "405: Method Not Allowed")
    return 404, payloads.not_found()


# --- message semantics -----------------------------------------------------------------------


def _make_message(
    fake: FakeDiscord, *, kind: MessageKind, interaction: FakeInteraction | None, flags: int
) -> FakeMessage:
    """An empty message by the bot (not yet in fake.messages)."""
    message = FakeMessage(
        id=payloads.snowflake(),
        channel_id=fake.channel_id,
        author_id=fake.bot_user_id,
        author=fake.bot_user.payload(),
        kind=kind,
        created_at=time.time(),
        flags=flags,
    )
    if interaction is not None:
        command = interaction.type == payloads.INTERACTION_APPLICATION_COMMAND
        message.message_type = (
            payloads.MESSAGE_TYPE_CHAT_INPUT_COMMAND if command else payloads.MESSAGE_TYPE_DEFAULT
        )
        message.interaction_id = interaction.id
        # Interaction responses are sent by the application's webhook.
        message.application_id = fake.application_id
        message.webhook_id = fake.application_id
        message.interaction_metadata = payloads.interaction_metadata(
            interaction.id,
            interaction.type,
            interaction.user.payload(),
            guild_id=fake.guild_id,
            name=interaction.name if command else None,
        )
        if interaction.source_message is not None:
            message.interaction_metadata["interacted_message_id"] = str(
                interaction.source_message.id
            )
    return message


def _new_message(
    fake: FakeDiscord, call: Call, *, kind: MessageKind, interaction: FakeInteraction | None
) -> FakeMessage:
    body = call.json if isinstance(call.json, dict) else {}
    allowed = _CREATE_FLAGS | (payloads.MESSAGE_FLAG_EPHEMERAL if interaction else 0)
    message = _make_message(
        fake, kind=kind, interaction=interaction, flags=int(body.get("flags") or 0) & allowed
    )
    _apply_body(fake, message, call, creating=True)  # raises before the message exists
    fake.add_message(message)
    return message


def _apply_body(fake: FakeDiscord, message: FakeMessage, call: Call, *, creating: bool) -> None:
    """Apply a create or edit body to a message; raise ApiError (changing nothing) if refused."""
    body = call.json if isinstance(call.json, dict) else {}
    if any(len(data) > fake.upload_limit for _, _, data in call.files):
        raise ApiError(
            413, payloads.error(payloads.REQUEST_ENTITY_TOO_LARGE, "Request entity too large")
        )
    content = message.content
    if "content" in body:
        content = "" if body["content"] is None else str(body["content"])
    if len(content) > _MAX_CONTENT:
        raise ApiError(
            400,
            payloads.form_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {_MAX_CONTENT} or fewer in length."
            ),
        )
    embeds = (body["embeds"] or []) if "embeds" in body else message.embeds
    if len(embeds) > _MAX_EMBEDS:
        raise ApiError(
            400,
            payloads.form_error(
                "embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {_MAX_EMBEDS} or fewer in length."
            ),
        )
    components = (body["components"] or []) if "components" in body else message.components
    if "components" in body:
        _check_components(components)
    # `attachments`, when present, is the complete list: existing ones by id, new ones by
    # their files[n] index. Without it, uploads are added to what the message has.
    existing = list(zip(message.attachments, message.attachment_payloads, strict=True))
    if "attachments" in body:
        keep = {str(a.get("id")) for a in body["attachments"] or [] if isinstance(a, dict)}
        existing = [(pair, att) for pair, att in existing if att["id"] in keep]
    has_sticker_or_poll = body.get("sticker_ids") or body.get("poll")
    if not (content or embeds or components or existing or call.files or has_sticker_or_poll):
        raise ApiError(
            400, payloads.error(payloads.CANNOT_SEND_EMPTY_MESSAGE, "Cannot send an empty message")
        )

    attachments = existing + _store_uploads(fake, call.files, body.get("attachments"))
    message.content = content
    message.embeds = list(embeds)
    message.components = list(components)
    message.attachments = [pair for pair, _ in attachments]
    message.attachment_payloads = [att for _, att in attachments]
    allowed = _allowed_user_ids(body.get("allowed_mentions"), content)
    message.mentions = [
        fake.users[uid].payload()
        for uid in payloads.mentioned_user_ids(content)
        if uid in fake.users and uid in allowed
    ]
    if not creating:
        if body.get("flags") is not None:
            message.flags = (message.flags & ~_EDIT_FLAGS) | (int(body["flags"]) & _EDIT_FLAGS)
        message.flags &= ~payloads.MESSAGE_FLAG_LOADING  # the first edit ends "thinking"
        message.edited_at = time.time()
        message.edits.append(dict(body))
        message.edit_times.append(asyncio.get_running_loop().time())


def _allowed_user_ids(allowed_mentions: Any, content: str) -> set[int]:
    """The users a message pings, as Discord decides from ``allowed_mentions``: without it,
    everyone named in the content; with it, those its ``parse`` or ``users`` allow."""
    named = set(payloads.mentioned_user_ids(content))
    if not isinstance(allowed_mentions, dict):
        return named
    if "users" in (allowed_mentions.get("parse") or []):
        return named
    return named & {int(u) for u in allowed_mentions.get("users") or []}


def _check_components(rows: list[Any]) -> None:
    """Discord's limits on message components, answered as 400 50035 with its error tree."""
    errors: dict[str, Any] = {}
    if len(rows) > _MAX_ROWS:
        errors["_errors"] = [_max_length(_MAX_ROWS)]
    for r, row in enumerate(rows):
        items = (row.get("components") or []) if isinstance(row, dict) else []
        row_errors: dict[str, Any] = {}
        if len(items) > _MAX_ROW_ITEMS:
            row_errors["_errors"] = [_max_length(_MAX_ROW_ITEMS)]
        for i, item in enumerate(items):
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if custom_id is not None and len(str(custom_id)) > _MAX_CUSTOM_ID:
                row_errors[str(i)] = {"custom_id": {"_errors": [_max_length(_MAX_CUSTOM_ID)]}}
            if isinstance(item, dict) and item.get("type") == payloads.COMPONENT_STRING_SELECT:
                options = item.get("options") or []
                if not 1 <= len(options) <= _MAX_SELECT_OPTIONS:
                    too_many = _max_length(_MAX_SELECT_OPTIONS)
                    row_errors[str(i)] = {"options": {"_errors": [too_many]}}
                elif any(len(str(o.get("value", ""))) > 100 or not o.get("label")
                         for o in options):  # fmt: skip
                    row_errors[str(i)] = {"options": {"_errors": [_max_length(100)]}}
        if row_errors:
            errors[str(r)] = {"components": row_errors}
    if errors:
        raise ApiError(
            400,
            payloads.error(payloads.INVALID_FORM_BODY, "Invalid Form Body", {"components": errors}),
        )


def _max_length(limit: int) -> dict[str, str]:
    return {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}


def _check_post_permissions(fake: FakeDiscord, call: Call) -> None:
    """403 50013, as Discord answers a post the bot's channel permissions don't allow."""
    granted = fake.permissions_of(fake.bot_user)
    needed = payloads.SEND_MESSAGES | (payloads.ATTACH_FILES if call.files else 0)
    if granted & needed != needed:
        raise ApiError(403, payloads.error(payloads.MISSING_PERMISSIONS, "Missing Permissions"))


def _store_uploads(
    fake: FakeDiscord, files: Files, attachments: Any
) -> list[tuple[tuple[str, bytes], dict[str, Any]]]:
    # The body names each new file by its files[n] index, with an optional filename and
    # description; the filename shown comes from there, else from the part.
    described = {str(a.get("id")): a for a in attachments or [] if isinstance(a, dict)}
    stored = []
    for index, (part_filename, _content_type, data) in enumerate(files):
        meta = described.get(str(index), {})
        filename = meta.get("filename") or part_filename
        # Discord sniffs the type from the name; discord.py sends every part as octet-stream.
        att = fake.cdn.store(
            data,
            filename,
            channel_id=fake.channel_id,
            content_type=payloads.guess_content_type(filename),
        )
        if meta.get("description"):
            att["description"] = meta["description"]
        stored.append(((filename, data), att))
    return stored


def _check_channel(fake: FakeDiscord, call: Call) -> None:
    if call.int_param("channel_id") != fake.channel_id:
        raise ApiError(404, payloads.error(payloads.UNKNOWN_CHANNEL, "Unknown Channel"))


def _check_guild(fake: FakeDiscord, call: Call) -> None:
    if call.params["guild_id"] != str(fake.guild_id):
        raise ApiError(404, payloads.error(payloads.UNKNOWN_GUILD, "Unknown Guild"))


def _channel_message(fake: FakeDiscord, call: Call) -> FakeMessage:
    _check_channel(fake, call)
    message = fake.messages.get(call.int_param("message_id"))
    # Ephemeral messages exist only for their user: the channel API cannot see them.
    if message is None or message.deleted or message.ephemeral:
        raise _unknown_message()
    return message


def _webhook_interaction(fake: FakeDiscord, call: Call) -> FakeInteraction:
    """The interaction behind /webhooks/{application_id}/{token}, if its token still works."""
    if call.params["application_id"] != str(fake.application_id):
        raise ApiError(404, payloads.error(payloads.UNKNOWN_WEBHOOK, "Unknown Webhook"))
    interaction = fake.interaction_by_token(call.params["token"])
    if interaction is None or fake.token_expired(interaction):
        raise ApiError(401, payloads.error(payloads.INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token"))
    if not interaction.acknowledged:
        # The interaction's webhook only comes to exist with its first callback.
        raise ApiError(404, payloads.error(payloads.UNKNOWN_WEBHOOK, "Unknown Webhook"))
    return interaction


def _webhook_message(fake: FakeDiscord, call: Call, interaction: FakeInteraction) -> FakeMessage:
    wanted = call.params["message_id"]
    candidates = [interaction.original, *interaction.followups]
    if wanted == "@original":
        message = interaction.original
    else:
        message = next((m for m in candidates if m is not None and str(m.id) == wanted), None)
    if message is None or message.deleted:
        raise _unknown_message()
    return message


# --- routes ----------------------------------------------------------------------------------
# Handlers return the JSON body for 200, NO_CONTENT for 204, or raise ApiError.


@_routes.add("GET", "/users/@me")
async def _get_me(fake: FakeDiscord, call: Call) -> Any:
    return payloads.current_user(fake.bot_user.id, fake.bot_user.username)


@_routes.add("GET", "/users/{user_id}")
async def _get_user(fake: FakeDiscord, call: Call) -> Any:
    user = fake.users.get(call.int_param("user_id"))
    if user is None:
        raise ApiError(404, payloads.error(payloads.UNKNOWN_USER, "Unknown User"))
    return user.payload()


@_routes.add("GET", "/gateway", bot_auth=False)
async def _get_gateway(fake: FakeDiscord, call: Call) -> Any:
    return {"url": fake.gateway_url}


@_routes.add("GET", "/gateway/bot")
async def _get_gateway_bot(fake: FakeDiscord, call: Call) -> Any:
    return payloads.gateway_bot(fake.gateway_url)


@_routes.add("GET", "/applications/@me")
@_routes.add("GET", "/oauth2/applications/@me")
async def _get_application(fake: FakeDiscord, call: Call) -> Any:
    return payloads.application(
        fake.application_id,
        fake.bot_user.username,
        bot_user=fake.bot_user.payload(),
        owner=fake.owner.payload(),
    )


def _command_scope(fake: FakeDiscord, call: Call) -> int | None:
    """None for global commands, else the guild id; 404 for another app or guild."""
    if call.params["application_id"] != str(fake.application_id):
        raise ApiError(404, payloads.error(payloads.UNKNOWN_APPLICATION, "Unknown Application"))
    if "guild_id" not in call.params:
        return None
    _check_guild(fake, call)
    return fake.guild_id


def _check_command(command: Any, index: int | None = None) -> dict[str, Any]:
    """Refuse a command Discord would refuse, with its error tree (under the command's index
    in a bulk overwrite)."""
    if not isinstance(command, dict) or not command.get("name"):
        raise ApiError(
            400, payloads.form_error("name", "BASE_TYPE_REQUIRED", "This field is required")
        )
    tree = _command_errors(command)
    if tree:
        tree = {str(index): tree} if index is not None else tree
        raise ApiError(400, payloads.error(payloads.INVALID_FORM_BODY, "Invalid Form Body", tree))
    return command


# Discord's limits on a chat-input command: name 1-32, description 1-100, 25 options, and
# 25 choices per option (each named 1-100). A menu (user or message command) has any 1-32
# characters as its name, spaces and capitals included, an empty description and no options;
# an application has at most 5 message menus and 5 user menus.
_NAME, _DESCRIPTION, _MANY, _MENUS = 32, 100, 25, 5
# A chat-input command's or an option's name, in any language: Discord's
# ^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$ (Python's \w is letters, digits and _), in
# lower case where the script has cases.
_NAME_RULE = re.compile(r"^[-\w\u0900-\u097f\u0e00-\u0e7f]{1,32}$")
LOCALES = frozenset(
    {
        "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu",
        "nl", "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk",
        "hi", "th", "zh-CN", "ja", "zh-TW", "ko",
    }
)  # fmt: skip
"""The locales Discord accepts as keys of ``name_localizations`` and
``description_localizations``."""


def _length_error(value: Any, low: int, high: int) -> dict[str, Any] | None:
    if low <= len(str(value or "")) <= high:
        return None
    message = f"Must be between {low} and {high} in length."
    return {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": message}]}


def _invalid(what: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": f"APPLICATION_COMMAND_INVALID_{what}", "message": message}]}


def _name_error(name: Any, *, ruled: bool) -> dict[str, Any] | None:
    """A name's error: its length, and for a chat-input command or an option (``ruled``)
    Discord's name rule."""
    if (bad := _length_error(name, 1, _NAME)) is not None:
        return bad
    text = str(name)
    if ruled and not (_NAME_RULE.fullmatch(text) and text == text.lower()):
        invalid = {"code": "APPLICATION_COMMAND_INVALID_NAME", "message": "Command name is invalid"}
        return {"_errors": [invalid]}
    return None


def _localization_errors(
    localizations: Any, check: Callable[[Any], dict[str, Any] | None]
) -> dict[str, Any] | None:
    """Errors of a ``*_localizations`` map: unknown locales, and each value by ``check``."""
    if localizations is None:
        return None
    if not isinstance(localizations, dict):
        return {
            "_errors": [{"code": "DICT_TYPE_CONVERT", "message": "Only dictionaries may be used"}]
        }
    errors: dict[str, Any] = {}
    for locale, value in localizations.items():
        if locale not in LOCALES:
            invalid = {
                "code": "ENUM_TYPE_COERCE",
                "message": f'Value "{locale}" is not a valid enum value.',
            }
            errors[str(locale)] = {"_errors": [invalid]}
        elif (bad := check(value)) is not None:
            errors[str(locale)] = bad
    return errors or None


def _command_errors(node: dict[str, Any], *, top: bool = True) -> dict[str, Any]:
    """Discord's error tree for a command (``top``) or one of its options; empty if valid."""
    errors: dict[str, Any] = {}
    menu = top and node.get("type", 1) in (payloads.COMMAND_USER, payloads.COMMAND_MESSAGE)
    if menu:
        if node.get("description"):
            errors["description"] = _invalid("DESCRIPTION", "A menu cannot have a description")
        if node.get("options"):
            errors["options"] = _invalid("OPTIONS", "A menu cannot have options")
    ruled = not top or node.get("type", 1) == 1  # a context menu's name is free text
    if (bad := _name_error(node.get("name"), ruled=ruled)) is not None:
        errors["name"] = bad
    names = _localization_errors(node.get("name_localizations"),
                                 lambda name: _name_error(name, ruled=ruled))  # fmt: skip
    if names is not None:
        errors["name_localizations"] = names
    # Options always have a description; of commands, only chat-input ones (type 1).
    described = not top or node.get("type", 1) == 1
    if described and (bad := _length_error(node.get("description"), 1, _DESCRIPTION)):
        errors["description"] = bad
    descriptions = _localization_errors(
        node.get("description_localizations"), lambda text: _length_error(text, 1, _DESCRIPTION)
    )
    if descriptions is not None:
        errors["description_localizations"] = descriptions
    for key, limit in (("options", _MANY), ("choices", _MANY)):
        items = node.get(key) or []
        if len(items) > limit:
            errors[key] = {"_errors": [_max_length(limit)]}
            continue
        inner: dict[str, Any] = {}
        for i, item in enumerate(items):
            if key == "choices" and isinstance(item, dict):
                choice: dict[str, Any] = {}
                if (bad := _length_error(item.get("name"), 1, 100)) is not None:
                    choice["name"] = bad
                names = _localization_errors(item.get("name_localizations"),
                                             lambda name: _length_error(name, 1, 100))  # fmt: skip
                if names is not None:
                    choice["name_localizations"] = names
                if choice:
                    inner[str(i)] = choice
            elif isinstance(item, dict) and (sub := _command_errors(item, top=False)):
                inner[str(i)] = sub
        if inner:
            errors[key] = inner
    return errors


@_routes.add("GET", "/applications/{application_id}/commands")
@_routes.add("GET", "/applications/{application_id}/guilds/{guild_id}/commands")
async def _get_commands(fake: FakeDiscord, call: Call) -> Any:
    return fake.registry.in_scope(_command_scope(fake, call))


@_routes.add("PUT", "/applications/{application_id}/commands")
@_routes.add("PUT", "/applications/{application_id}/guilds/{guild_id}/commands")
async def _bulk_overwrite_commands(fake: FakeDiscord, call: Call) -> Any:
    guild_id = _command_scope(fake, call)
    if not isinstance(call.json, list):
        raise ApiError(400, payloads.form_error("_root", "LIST_TYPE_CONVERT", "Must be an array."))
    commands = [_check_command(c, i) for i, c in enumerate(call.json)]
    keys = [(c["name"], c.get("type", 1)) for c in commands]
    if len(keys) != len(set(keys)):
        raise ApiError(
            400,
            payloads.form_error("_root", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Duplicate names"),
        )
    for menu_type in (payloads.COMMAND_USER, payloads.COMMAND_MESSAGE):
        if sum(1 for _, t in keys if t == menu_type) > _MENUS:
            raise ApiError(
                400,
                payloads.form_error("_root", "APPLICATION_COMMANDS_TOO_MANY",
                                    f"Maximum number of type {menu_type} commands reached "
                                    f"({_MENUS})"),
            )  # fmt: skip
    return fake.registry.overwrite(guild_id, commands)


@_routes.add("POST", "/applications/{application_id}/commands")
@_routes.add("POST", "/applications/{application_id}/guilds/{guild_id}/commands")
async def _upsert_command(fake: FakeDiscord, call: Call) -> Any:
    return fake.registry.upsert(_command_scope(fake, call), _check_command(call.json))


def _callback_type_invalid() -> ApiError:
    return ApiError(
        400,
        payloads.form_error("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid callback type"),
    )


@_routes.add("POST", "/interactions/{interaction_id}/{token}/callback", bot_auth=False)
async def _interaction_callback(fake: FakeDiscord, call: Call) -> Any:
    received_at = asyncio.get_running_loop().time()
    unknown = ApiError(404, payloads.error(payloads.UNKNOWN_INTERACTION, "Unknown interaction"))
    interaction = fake.interactions.get(call.int_param("interaction_id"))
    if interaction is None or interaction.token != call.params["token"] or interaction.expired:
        raise unknown
    if interaction.acknowledged:
        raise ApiError(
            400,
            payloads.error(
                payloads.INTERACTION_ALREADY_ACKNOWLEDGED,
                "Interaction has already been acknowledged.",
            ),
        )
    sent_at = interaction.sent_at if interaction.sent_at is not None else received_at
    if fake.ack_deadline is not None and received_at - sent_at > fake.ack_deadline:
        raise unknown  # too late: the user already saw "The application did not respond"

    body = call.json if isinstance(call.json, dict) else {}
    callback_type = body.get("type")
    data = body.get("data") or {}
    # The message part of a callback (type 4 and 7) is a message body like any other.
    message_call = Call(call.method, call.path, call.query, call.headers, data, call.files, {})
    message: FakeMessage | None = None
    event: str | None = None
    if callback_type == payloads.CALLBACK_CHANNEL_MESSAGE:
        message = _new_message(fake, message_call, kind="interaction", interaction=interaction)
        event = "MESSAGE_CREATE"
    elif callback_type == payloads.CALLBACK_DEFERRED_CHANNEL_MESSAGE:
        # The "thinking" placeholder: empty, and LOADING until its first edit.
        flags = int(data.get("flags") or 0) & payloads.MESSAGE_FLAG_EPHEMERAL
        message = _make_message(
            fake,
            kind="interaction",
            interaction=interaction,
            flags=flags | payloads.MESSAGE_FLAG_LOADING,
        )
        fake.add_message(message)
        event = "MESSAGE_CREATE"
    elif callback_type in (
        payloads.CALLBACK_DEFERRED_UPDATE_MESSAGE,
        payloads.CALLBACK_UPDATE_MESSAGE,
    ):
        # Only component interactions have a message to update.
        message = interaction.source_message
        if message is None:
            raise _callback_type_invalid()
        if message.deleted:
            raise _unknown_message()
        if callback_type == payloads.CALLBACK_UPDATE_MESSAGE:
            _apply_body(fake, message, message_call, creating=False)
            event = "MESSAGE_UPDATE"
    elif callback_type not in (payloads.CALLBACK_AUTOCOMPLETE_RESULT, payloads.CALLBACK_MODAL):
        raise _callback_type_invalid()

    if message is not None:
        interaction.original = message  # what .../messages/@original now refers to
    interaction.record_callback(
        {
            "type": callback_type,
            "data": body.get("data"),
            "files": [(filename, content) for filename, _, content in call.files],
            "received_at": received_at,
            "sent_at": interaction.sent_at,
        }
    )
    if message is not None and event is not None:
        await fake.dispatch_message_event(event, message)

    if call.query.get("with_response") not in _TRUE:
        return NO_CONTENT
    shows_message = callback_type in (
        payloads.CALLBACK_CHANNEL_MESSAGE,
        payloads.CALLBACK_DEFERRED_CHANNEL_MESSAGE,
        payloads.CALLBACK_UPDATE_MESSAGE,
    )
    return payloads.callback_response(
        interaction_id=interaction.id,
        interaction_type=interaction.type,
        callback_type=callback_type,
        message_payload=message.payload() if message is not None and shows_message else None,
        loading=message is not None and message.loading,
        ephemeral=message is not None and message.ephemeral,
    )


@_routes.add("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", bot_auth=False)
async def _get_webhook_message(fake: FakeDiscord, call: Call) -> Any:
    interaction = _webhook_interaction(fake, call)
    return _webhook_message(fake, call, interaction).payload()


@_routes.add("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", bot_auth=False)
async def _edit_webhook_message(fake: FakeDiscord, call: Call) -> Any:
    interaction = _webhook_interaction(fake, call)
    message = _webhook_message(fake, call, interaction)
    _apply_body(fake, message, call, creating=False)
    await fake.dispatch_message_event("MESSAGE_UPDATE", message)
    return message.payload()


@_routes.add("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", bot_auth=False)
async def _delete_webhook_message(fake: FakeDiscord, call: Call) -> Any:
    interaction = _webhook_interaction(fake, call)
    message = _webhook_message(fake, call, interaction)
    message.deleted = True
    await fake.dispatch_message_event("MESSAGE_DELETE", message)
    return NO_CONTENT


@_routes.add("POST", "/webhooks/{application_id}/{token}", bot_auth=False)
async def _followup(fake: FakeDiscord, call: Call) -> Any:
    interaction = _webhook_interaction(fake, call)
    original = interaction.original
    if (
        original is not None
        and original.loading
        and not original.deleted
        and not interaction.followups
    ):
        # Discord turns the first followup after a "thinking" defer into that message.
        _apply_body(fake, original, call, creating=False)
        message = original
        await fake.dispatch_message_event("MESSAGE_UPDATE", message)
    else:
        message = _new_message(fake, call, kind="followup", interaction=interaction)
        await fake.dispatch_message_event("MESSAGE_CREATE", message)
    interaction.followups.append(message)
    return message.payload() if call.query.get("wait") in _TRUE else NO_CONTENT


@_routes.add("GET", "/channels/{channel_id}")
async def _get_channel(fake: FakeDiscord, call: Call) -> Any:
    _check_channel(fake, call)
    return fake.channel_payload()


@_routes.add("POST", "/channels/{channel_id}/typing")
async def _typing(fake: FakeDiscord, call: Call) -> Any:
    _check_channel(fake, call)
    return NO_CONTENT


@_routes.add("GET", "/channels/{channel_id}/messages")
async def _list_messages(fake: FakeDiscord, call: Call) -> Any:
    _check_channel(fake, call)
    limit = int(call.query.get("limit", 50))
    before = int(call.query.get("before", 0)) or None
    after = int(call.query.get("after", 0)) or None
    visible = [
        m
        for m in fake.messages.values()
        if m.channel_id == fake.channel_id
        and not m.deleted
        and not m.ephemeral
        and (before is None or m.id < before)
        and (after is None or m.id > after)
    ]
    newest_first = sorted(visible, key=lambda m: m.id, reverse=True)
    # As Discord: newest first, and with `after`, the oldest `limit` of those after it.
    chosen = newest_first[-limit:] if after is not None and before is None else newest_first[:limit]
    return [m.payload() for m in chosen]


@_routes.add("POST", "/users/@me/channels")
async def _create_dm(fake: FakeDiscord, call: Call) -> Any:
    body = call.json if isinstance(call.json, dict) else {}
    user = fake.users.get(int(body.get("recipient_id") or 0))
    if user is None:
        raise ApiError(400, payloads.form_error("recipient_id", "NUMBER_TYPE_COERCE",
                                                "Value is not snowflake."))  # fmt: skip
    channel_id = next((c for c, u in fake.dm_channels.items() if u == user.id), None)
    if channel_id is None:
        channel_id = payloads.snowflake()
        fake.dm_channels[channel_id] = user.id
    return {"id": str(channel_id), "type": 1, "recipients": [user.payload()],
            "last_message_id": None, "flags": 0}  # fmt: skip


@_routes.add("POST", "/channels/{channel_id}/messages")
async def _create_message(fake: FakeDiscord, call: Call) -> Any:
    dm_user = fake.dm_channels.get(call.int_param("channel_id"))
    if dm_user is not None:
        if dm_user in fake.closed_dms:
            raise ApiError(403, payloads.error(50007, "Cannot send messages to this user"))
        message = _new_message(fake, call, kind="channel", interaction=None)
        message.channel_id = call.int_param("channel_id")
        return message.payload()
    _check_channel(fake, call)
    _check_post_permissions(fake, call)
    message = _new_message(fake, call, kind="channel", interaction=None)
    await fake.dispatch_message_event("MESSAGE_CREATE", message)
    return message.payload()


@_routes.add("GET", "/channels/{channel_id}/messages/{message_id}")
async def _get_message(fake: FakeDiscord, call: Call) -> Any:
    return _channel_message(fake, call).payload()


@_routes.add("PATCH", "/channels/{channel_id}/messages/{message_id}")
async def _edit_message(fake: FakeDiscord, call: Call) -> Any:
    message = _channel_message(fake, call)
    if message.kind != "channel" or message.author_id != fake.bot_user_id:
        # Interaction responses belong to the application's webhook, not to the bot user.
        raise ApiError(
            403,
            payloads.error(
                payloads.CANNOT_EDIT_OTHER_USERS_MESSAGE,
                "Cannot edit a message authored by another user",
            ),
        )
    _apply_body(fake, message, call, creating=False)
    await fake.dispatch_message_event("MESSAGE_UPDATE", message)
    return message.payload()


@_routes.add("DELETE", "/channels/{channel_id}/messages/{message_id}")
async def _delete_message(fake: FakeDiscord, call: Call) -> Any:
    message = _channel_message(fake, call)
    message.deleted = True
    await fake.dispatch_message_event("MESSAGE_DELETE", message)
    return NO_CONTENT


@_routes.add("GET", "/guilds/{guild_id}")
async def _get_guild(fake: FakeDiscord, call: Call) -> Any:
    _check_guild(fake, call)
    return fake.guild_payload()


@_routes.add("GET", "/guilds/{guild_id}/channels")
async def _get_guild_channels(fake: FakeDiscord, call: Call) -> Any:
    _check_guild(fake, call)
    return fake.channels_payload()


@_routes.add("GET", "/guilds/{guild_id}/roles")
async def _get_roles(fake: FakeDiscord, call: Call) -> Any:
    _check_guild(fake, call)
    return fake.roles_payload()


@_routes.add("GET", "/guilds/{guild_id}/members/{user_id}")
async def _get_member(fake: FakeDiscord, call: Call) -> Any:
    _check_guild(fake, call)
    user = fake.users.get(call.int_param("user_id"))
    if user is None:
        raise ApiError(404, payloads.error(payloads.UNKNOWN_MEMBER, "Unknown Member"))
    return fake.member_payload(user)
