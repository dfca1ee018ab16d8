"""Discord API payload shapes, as Discord documents them (API v10).

Pure functions from plain values to JSON-ready dicts: no server state, no I/O, and no import of
discord.py, so the fake describes Discord rather than echoing the library under test.
"""

from __future__ import annotations

import itertools
import mimetypes
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
API_VERSION = 10

# Gateway opcodes and close codes.
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_VOICE_STATE_UPDATE = 4
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11
HEARTBEAT_INTERVAL_MS = 41_250

CLOSE_UNKNOWN_ERROR = 4000
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005

# Intents the fake looks at.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)

# Interaction, callback, component and message enums.
INTERACTION_APPLICATION_COMMAND = 2
INTERACTION_MESSAGE_COMPONENT = 3
CALLBACK_PONG = 1
CALLBACK_CHANNEL_MESSAGE = 4
CALLBACK_DEFERRED_CHANNEL_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE_MESSAGE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_AUTOCOMPLETE_RESULT = 8
CALLBACK_MODAL = 9
COMPONENT_ACTION_ROW = 1
COMPONENT_BUTTON = 2
COMPONENT_STRING_SELECT = 3

# Application command types: slash commands, and the menus on a user or a message ("Apps").
COMMAND_CHAT_INPUT = 1
COMMAND_USER = 2
COMMAND_MESSAGE = 3
MESSAGE_TYPE_DEFAULT = 0
MESSAGE_TYPE_REPLY = 19
MESSAGE_TYPE_CHAT_INPUT_COMMAND = 20
MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7
CHANNEL_GUILD_TEXT = 0

# Application command option types.
OPTION_SUB_COMMAND = 1
OPTION_SUB_COMMAND_GROUP = 2
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_BOOLEAN = 5
OPTION_USER = 6
OPTION_NUMBER = 10
OPTION_CHANNEL = 7
OPTION_ROLE = 8
OPTION_ATTACHMENT = 11

# JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_USER = 10013
UNKNOWN_MESSAGE = 10008
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
UNKNOWN_APPLICATION = 10002
REQUEST_ENTITY_TOO_LARGE = 40005
INTERACTION_ALREADY_ACKNOWLEDGED = 40060
CANNOT_EDIT_OTHER_USERS_MESSAGE = 50005
CANNOT_SEND_EMPTY_MESSAGE = 50006
INVALID_WEBHOOK_TOKEN = 50027
INVALID_FORM_BODY = 50035
MISSING_PERMISSIONS = 50013

_snowflake_increment = itertools.count()


def snowflake(at: float | None = None) -> int:
    """A fresh Discord snowflake whose timestamp is `at` (default: now), unique per process."""
    ms = int((time.time() if at is None else at) * 1000)
    return ((ms - DISCORD_EPOCH_MS) << 22) | (next(_snowflake_increment) & 0xFFF)


def iso_timestamp(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=timezone.utc)
    return moment.isoformat()


def error(code: int, message: str, errors: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Discord's JSON error body."""
    body: dict[str, Any] = {"code": code, "message": message}
    if errors is not None:
        body["errors"] = dict(errors)
    return body


def unauthorized() -> dict[str, Any]:
    return error(0, "401: Unauthorized")


def not_found() -> dict[str, Any]:
    return error(0, "404: Not Found")


def form_error(field: str, code: str, message: str) -> dict[str, Any]:
    """50035 Invalid Form Body with Discord's nested `errors` object for one field."""
    return error(
        INVALID_FORM_BODY,
        "Invalid Form Body",
        {field: {"_errors": [{"code": code, "message": message}]}},
    )


def guess_content_type(filename: str) -> str | None:
    return mimetypes.guess_type(filename)[0]


# --- users, guild, channel -------------------------------------------------------------------


def user(
    user_id: int,
    username: str,
    *,
    global_name: str | None = None,
    bot: bool = False,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(user_id),
        "username": username,
        # New usernames have no discriminator; bots keep a 4-digit one.
        "discriminator": "0001" if bot else "0",
        "global_name": global_name,
        "avatar": None,
        "avatar_decoration_data": None,
        "banner": None,
        "accent_color": None,
        "public_flags": 0,
        "flags": 0,
        "primary_guild": None,
        "collectibles": None,
    }
    if bot:
        payload["bot"] = True
    return payload


def current_user(user_id: int, username: str) -> dict[str, Any]:
    """GET /users/@me and READY.user for a bot account: the user plus its private fields."""
    return {
        **user(user_id, username, bot=True),
        "verified": True,
        "mfa_enabled": False,
        "email": None,
        "locale": "en-US",
        "premium_type": 0,
    }


def role(
    role_id: int,
    name: str,
    permissions: int,
    *,
    position: int = 0,
    managed: bool = False,
    bot_id: int | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": managed,
        "mentionable": False,
        "flags": 0,
    }
    if bot_id is not None:
        payload["tags"] = {"bot_id": str(bot_id)}
    return payload


def member(
    user_payload: Mapping[str, Any],
    role_ids: Iterable[int],
    *,
    joined_at: str,
    permissions: int | None = None,
) -> dict[str, Any]:
    """A guild member; `permissions` (theirs in the channel) appears only in interactions."""
    payload: dict[str, Any] = {
        "user": dict(user_payload),
        "nick": None,
        "avatar": None,
        "banner": None,
        "roles": [str(r) for r in role_ids],
        "joined_at": joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
        "unusual_dm_activity_until": None,
        "avatar_decoration_data": None,
    }
    if permissions is not None:
        payload["permissions"] = str(permissions)
    return payload


def text_channel(
    channel_id: int,
    guild_id: int,
    name: str,
    *,
    last_message_id: int | None = None,
    permissions: int | None = None,
    nsfw: bool = False,
    position: int = 0,
) -> dict[str, Any]:
    """A GUILD_TEXT channel; `permissions` (the invoker's) appears only in interaction payloads."""
    payload: dict[str, Any] = {
        "id": str(channel_id),
        "type": CHANNEL_GUILD_TEXT,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "topic": None,
        "nsfw": nsfw,
        "last_message_id": None if last_message_id is None else str(last_message_id),
        "rate_limit_per_user": 0,
        "parent_id": None,
        "last_pin_timestamp": None,
        "flags": 0,
    }
    if permissions is not None:
        payload["permissions"] = str(permissions)
    return payload


def guild(
    guild_id: int,
    name: str,
    *,
    owner_id: int,
    roles: list[dict[str, Any]],
    system_channel_id: int | None,
    preferred_locale: str = "en-US",
) -> dict[str, Any]:
    """The guild object (GET /guilds/{id})."""
    return {
        "id": str(guild_id),
        "name": name,
        "icon": None,
        "icon_hash": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": str(owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "widget_enabled": False,
        "widget_channel_id": None,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": roles,
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None if system_channel_id is None else str(system_channel_id),
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "max_presences": None,
        "max_members": 500_000,
        "vanity_url_code": None,
        "description": None,
        "banner": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": preferred_locale,
        "public_updates_channel_id": None,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": False,
        "safety_alerts_channel_id": None,
        "incidents_data": None,
    }


def guild_create(
    guild_payload: Mapping[str, Any],
    *,
    joined_at: str,
    channels: list[dict[str, Any]],
    members: list[dict[str, Any]],
) -> dict[str, Any]:
    """GUILD_CREATE: the guild plus the extra gateway-only fields."""
    return {
        **guild_payload,
        "joined_at": joined_at,
        "large": False,
        "unavailable": False,
        "member_count": len(members),
        "voice_states": [],
        "members": members,
        "channels": channels,
        "threads": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def application(
    application_id: int,
    name: str,
    *,
    bot_user: Mapping[str, Any],
    owner: Mapping[str, Any],
    guild_count: int = 1,
) -> dict[str, Any]:
    """GET /applications/@me (and the older /oauth2/applications/@me)."""
    return {
        "id": str(application_id),
        "name": name,
        "icon": None,
        "description": "",
        "rpc_origins": [],
        "bot_public": True,
        "bot_require_code_grant": False,
        "bot": dict(bot_user),
        "terms_of_service_url": None,
        "privacy_policy_url": None,
        "owner": dict(owner),
        "verify_key": "0" * 64,
        "team": None,
        "guild_id": None,
        "flags": APPLICATION_FLAGS,
        "tags": [],
        "install_params": {"scopes": ["applications.commands", "bot"], "permissions": "0"},
        "integration_types_config": {"0": {}},
        "custom_install_url": None,
        # Must stay null: with an endpoint URL Discord would not send interactions over the gateway.
        "interactions_endpoint_url": None,
        "role_connections_verification_url": None,
        "approximate_guild_count": guild_count,
        "approximate_user_install_count": 0,
        "redirect_uris": [],
    }


APPLICATION_FLAGS = 1 << 23  # APPLICATION_COMMAND_BADGE, as on any app with slash commands


# --- gateway ---------------------------------------------------------------------------------


def gateway_frame(op: int, d: Any = None, *, s: int | None = None, t: str | None = None) -> dict:
    return {"op": op, "d": d, "s": s, "t": t}


def hello() -> dict[str, Any]:
    return gateway_frame(OP_HELLO, {"heartbeat_interval": HEARTBEAT_INTERVAL_MS})


def heartbeat_ack() -> dict[str, Any]:
    return gateway_frame(OP_HEARTBEAT_ACK)


def invalid_session(resumable: bool) -> dict[str, Any]:
    return gateway_frame(OP_INVALID_SESSION, resumable)


def ready(
    *,
    user_payload: Mapping[str, Any],
    guild_ids: Iterable[int],
    session_id: str,
    resume_gateway_url: str,
    application_id: int,
    shard: list[int] | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "v": API_VERSION,
        "user_settings": {},
        "user": dict(user_payload),
        # Guilds start unavailable; each arrives in its own GUILD_CREATE.
        "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": resume_gateway_url,
        "application": {"id": str(application_id), "flags": APPLICATION_FLAGS},
        "private_channels": [],
        "presences": [],
        "relationships": [],
        "guild_join_requests": [],
        "auth": {},
        "_trace": ['["fake-discord",{"micros":0}]'],
    }
    if shard is not None:
        payload["shard"] = shard
    return payload


def guild_members_chunk(
    guild_id: int, members: list[dict[str, Any]], *, nonce: str | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "guild_id": str(guild_id),
        "members": members,
        "chunk_index": 0,
        "chunk_count": 1,
        "not_found": [],
    }
    if nonce is not None:
        payload["nonce"] = nonce
    return payload


# --- attachments and messages ----------------------------------------------------------------


def attachment(
    attachment_id: int,
    filename: str,
    *,
    size: int,
    url: str,
    proxy_url: str,
    content_type: str | None,
    width: int | None,
    height: int | None,
    ephemeral: bool = False,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(attachment_id),
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": proxy_url,
        "content_type": content_type,
        "width": width,
        "height": height,
        "flags": 0,
    }
    if ephemeral:
        payload["ephemeral"] = True
    return payload


_MENTION = re.compile(r"<@!?(\d+)>")


def mentioned_user_ids(content: str) -> list[int]:
    return [int(m) for m in dict.fromkeys(_MENTION.findall(content))]


def message(
    *,
    message_id: int,
    channel_id: int,
    author: Mapping[str, Any],
    content: str,
    created_at: float,
    edited_at: float | None,
    embeds: list[dict[str, Any]],
    components: list[dict[str, Any]],
    attachments: list[dict[str, Any]],
    flags: int,
    message_type: int,
    mentions: list[dict[str, Any]],
    application_id: int | None = None,
    webhook_id: int | None = None,
    interaction_metadata: dict[str, Any] | None = None,
    guild_id: int | None = None,
    member_payload: dict[str, Any] | None = None,
    sticker_items: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A message object. `guild_id`/`member_payload` are only set for gateway MESSAGE_* events."""
    payload: dict[str, Any] = {
        "id": str(message_id),
        "type": message_type,
        "channel_id": str(channel_id),
        "author": dict(author),
        "content": content,
        "timestamp": iso_timestamp(created_at),
        "edited_timestamp": None if edited_at is None else iso_timestamp(edited_at),
        "tts": False,
        "mention_everyone": False,
        "mentions": mentions,
        "mention_roles": [],
        "attachments": attachments,
        "embeds": embeds,
        "pinned": False,
        "flags": flags,
        "components": components,
    }
    if application_id is not None:
        payload["application_id"] = str(application_id)
    if webhook_id is not None:
        payload["webhook_id"] = str(webhook_id)
    if interaction_metadata is not None:
        payload["interaction_metadata"] = interaction_metadata
        # Deprecated twin of interaction_metadata that Discord still sends.
        payload["interaction"] = {
            "id": interaction_metadata["id"],
            "type": interaction_metadata["type"],
            "name": interaction_metadata.get("name", ""),
            "user": interaction_metadata["user"],
        }
    if guild_id is not None:
        payload["guild_id"] = str(guild_id)
    if member_payload is not None:
        payload["member"] = member_payload
    if sticker_items:
        payload["sticker_items"] = sticker_items
    return payload


def sticker_item(sticker_id: int, name: str) -> dict[str, Any]:
    """A sticker as a message carries it (format 1: PNG)."""
    return {"id": str(sticker_id), "name": name, "format_type": 1}


def image_embed(url: str, proxy_url: str, *, width: int | None, height: int | None) -> dict:
    """The embed Discord makes of a link to a picture: type "image", the picture as its
    thumbnail (not its image), the link as its url."""
    return {
        "type": "image",
        "url": url,
        "thumbnail": {"url": url, "proxy_url": proxy_url, "width": width, "height": height},
    }


def rich_embed_with_image(url: str, proxy_url: str, *, title: str) -> dict[str, Any]:
    """An embed a bot or webhook posts, with a picture as its image."""
    return {"type": "rich", "title": title, "image": {"url": url, "proxy_url": proxy_url}}


def message_command_data(command: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """The `data` of a message menu's interaction: the target's id and the message itself,
    resolved."""
    data: dict[str, Any] = {
        "id": command["id"],
        "name": command["name"],
        "type": COMMAND_MESSAGE,
        "target_id": target["id"],
        "resolved": {"messages": {target["id"]: dict(target)}},
    }
    if "guild_id" in command:
        data["guild_id"] = command["guild_id"]
    return data


def select_data(
    custom_id: str, values: list[str], component_id: int | None = None
) -> dict[str, Any]:
    """The `data` of a string select's interaction: the values chosen."""
    data: dict[str, Any] = {
        "custom_id": custom_id,
        "component_type": COMPONENT_STRING_SELECT,
        "values": list(values),
    }
    if component_id is not None:
        data["id"] = component_id
    return data


def interaction_metadata(
    interaction_id: int,
    interaction_type: int,
    user_payload: Mapping[str, Any],
    *,
    guild_id: int,
    name: str | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "type": interaction_type,
        "user": dict(user_payload),
        "authorizing_integration_owners": {"0": str(guild_id)},
    }
    if name is not None:
        payload["name"] = name
        payload["command_type"] = 1
    return payload


def iter_components(components: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """Every component in a tree (action rows, v2 containers and sections nest them)."""
    for component in components:
        yield component
        yield from iter_components(component.get("components", []))
        accessory = component.get("accessory")
        if accessory is not None:
            yield accessory


# --- application commands and interactions ---------------------------------------------------


def registered_command(
    command: Mapping[str, Any],
    *,
    command_id: int,
    application_id: int,
    guild_id: int | None,
) -> dict[str, Any]:
    """Echo of a command from a bulk overwrite, with the fields Discord adds."""
    payload: dict[str, Any] = {
        "type": 1,
        "description": "",
        "options": [],
        "default_member_permissions": None,
        "nsfw": False,
        "name_localizations": None,
        "description_localizations": None,
        **command,
        "id": str(command_id),
        "application_id": str(application_id),
        "version": str(snowflake()),
    }
    if guild_id is not None:
        payload["guild_id"] = str(guild_id)
        payload.pop("dm_permission", None)  # guild commands carry no DM setting
    else:
        payload.setdefault("dm_permission", True)
        payload.setdefault("contexts", None)
        payload.setdefault("integration_types", [0])
    return payload


def interaction(
    *,
    interaction_id: int,
    interaction_type: int,
    token: str,
    application_id: int,
    data: dict[str, Any],
    guild_id: int,
    channel: dict[str, Any],
    member_payload: dict[str, Any],
    app_permissions: int,
    attachment_size_limit: int,
    locale: str = "en-US",
    guild_locale: str = "en-US",
    message_payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """INTERACTION_CREATE for a guild interaction (type 2 command, type 3 component)."""
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(application_id),
        "type": interaction_type,
        "data": data,
        "guild": {"id": str(guild_id), "locale": guild_locale, "features": []},
        "guild_id": str(guild_id),
        "channel": channel,
        "channel_id": channel["id"],
        "member": member_payload,
        "token": token,
        "version": 1,
        "app_permissions": str(app_permissions),
        "locale": locale,
        "guild_locale": guild_locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "authorizing_integration_owners": {"0": str(guild_id)},
        "context": 0,  # GUILD
        "attachment_size_limit": attachment_size_limit,
    }
    if message_payload is not None:
        payload["message"] = message_payload
    return payload


def command_data(
    command: Mapping[str, Any],
    options: list[dict[str, Any]],
    resolved: dict[str, Any],
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": command["id"],
        "name": command["name"],
        "type": command.get("type", 1),
        "options": options,
    }
    if resolved:
        data["resolved"] = resolved
    if "guild_id" in command:
        data["guild_id"] = command["guild_id"]
    return data


def component_data(custom_id: str, component_type: int, component_id: int | None) -> dict:
    data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
    if component_id is not None:
        data["id"] = component_id
    return data


def callback_response(
    *,
    interaction_id: int,
    interaction_type: int,
    callback_type: int,
    message_payload: dict[str, Any] | None,
    loading: bool,
    ephemeral: bool,
) -> dict[str, Any]:
    """The InteractionCallbackResponse returned by POST .../callback?with_response=true."""
    inner: dict[str, Any] = {"id": str(interaction_id), "type": interaction_type}
    resource: dict[str, Any] = {"type": callback_type}
    if message_payload is not None:
        inner["response_message_id"] = message_payload["id"]
        inner["response_message_loading"] = loading
        inner["response_message_ephemeral"] = ephemeral
        resource["message"] = message_payload
    return {"interaction": inner, "resource": resource}


def gateway_bot(url: str) -> dict[str, Any]:
    return {
        "url": url,
        "shards": 1,
        "session_start_limit": {
            "total": 1000,
            "remaining": 999,
            "reset_after": 14_400_000,
            "max_concurrency": 1,
        },
    }


# Autocomplete: while a member types an option that has `autocomplete: true`, the client sends
# a type 4 interaction whose data is the command's, with the option being typed marked
# `focused` and its partial value always a string; the bot answers with a type 8 callback.
INTERACTION_APPLICATION_COMMAND_AUTOCOMPLETE = 4
MANAGE_GUILD = 1 << 5  # "Manage Server" in Discord's client
