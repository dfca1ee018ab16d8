"""Application commands: what the bot registered, and invocations built from it.

Options are built and checked the way Discord's client does before it sends a command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import payloads
from .models import FakeChannel, FakeRole, FakeUser

# A user option resolves to the user and their member object (without "user").
ResolveMember = Callable[[FakeUser], dict[str, Any]]

_PYTHON_TYPES: dict[int, tuple[type, ...]] = {
    payloads.OPTION_STRING: (str,),
    payloads.OPTION_INTEGER: (int,),
    payloads.OPTION_BOOLEAN: (bool,),
    payloads.OPTION_NUMBER: (int, float),
    payloads.OPTION_USER: (FakeUser,),
    payloads.OPTION_CHANNEL: (FakeChannel,),
    payloads.OPTION_ROLE: (FakeRole,),
    payloads.OPTION_ATTACHMENT: (Mapping,),
}


@dataclass
class CommandRegistry:
    """Registered commands per scope (None = global), echoed as Discord stores them."""

    application_id: int
    scopes: dict[int | None, list[dict[str, Any]]] = field(default_factory=dict)
    syncs: int = 0  # bulk overwrites received

    @property
    def all(self) -> list[dict[str, Any]]:
        """Global commands first, then guild ones."""
        ordered = sorted(self.scopes.items(), key=lambda item: item[0] is not None)
        return [command for _, commands in ordered for command in commands]

    def in_scope(self, guild_id: int | None) -> list[dict[str, Any]]:
        return self.scopes.get(guild_id, [])

    def overwrite(self, guild_id: int | None, commands: Iterable[dict[str, Any]]) -> list[dict]:
        registered = [self._echo(guild_id, c) for c in commands]
        self.scopes[guild_id] = registered
        self.syncs += 1
        return registered

    def upsert(self, guild_id: int | None, command: dict[str, Any]) -> dict[str, Any]:
        registered = self._echo(guild_id, command)
        others = [c for c in self.in_scope(guild_id) if c["id"] != registered["id"]]
        self.scopes[guild_id] = [*others, registered]
        return registered

    def find(
        self, name: str, guild_id: int, command_type: int = payloads.COMMAND_CHAT_INPUT
    ) -> dict[str, Any]:
        """The command of this type (chat-input unless said) a member of the guild sees:
        guild ones shadow global ones."""
        for command in [*self.in_scope(guild_id), *self.in_scope(None)]:
            if command["name"] == name and command.get("type", 1) == command_type:
                return command
        known = sorted({(c["name"], c.get("type", 1)) for c in self.all})
        raise LookupError(
            f"{name!r} (type {command_type}) is not registered (registered: {known}); sync first"
        )

    def _echo(self, guild_id: int | None, command: dict[str, Any]) -> dict[str, Any]:
        previous = next(
            (
                c
                for c in self.in_scope(guild_id)
                if c["name"] == command["name"] and c.get("type", 1) == command.get("type", 1)
            ),
            None,
        )
        # Overwriting a command keeps its id, as on Discord.
        command_id = int(previous["id"]) if previous else payloads.snowflake()
        return payloads.registered_command(
            command, command_id=command_id, application_id=self.application_id, guild_id=guild_id
        )


def command_data(
    command: dict[str, Any],
    path: list[str],
    values: Mapping[str, object],
    *,
    validate: bool,
    resolve_member: ResolveMember,
) -> dict[str, Any]:
    """The `data` of a type 2 interaction: options (nested under subcommands) and `resolved`."""
    schema: list[dict[str, Any]] = command.get("options", [])
    for part in path:
        sub = next(
            (
                o
                for o in schema
                if o["name"] == part
                and o["type"] in (payloads.OPTION_SUB_COMMAND, payloads.OPTION_SUB_COMMAND_GROUP)
            ),
            None,
        )
        if sub is None:
            raise LookupError(f"/{command['name']} has no subcommand {part!r}")
        schema = sub.get("options", [])
    resolved: dict[str, Any] = {}
    options = _build(schema, values, resolved, validate=validate, resolve_member=resolve_member)
    # Wrap the leaf's options in their subcommand, and that in its group, if any.
    for depth, part in reversed(list(enumerate(path))):
        leaf = depth == len(path) - 1
        sub_type = payloads.OPTION_SUB_COMMAND if leaf else payloads.OPTION_SUB_COMMAND_GROUP
        options = [{"name": part, "type": sub_type, "options": options}]
    return payloads.command_data(command, options, resolved)


def _build(
    schema: list[dict[str, Any]],
    values: Mapping[str, object],
    resolved: dict[str, Any],
    *,
    validate: bool,
    resolve_member: ResolveMember,
) -> list[dict[str, Any]]:
    by_name = {o["name"]: o for o in schema}
    if validate:
        unknown = set(values) - set(by_name)
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}; known: {sorted(by_name)}")
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
        if missing:
            raise ValueError(f"required options missing: {missing}")
    built = []
    for name, value in values.items():
        option_schema = by_name.get(name, {"name": name})
        option_type = option_schema.get("type") or _infer_type(value)
        if validate:
            check(option_schema, option_type, value)
        built.append(
            {
                "name": name,
                "type": option_type,
                "value": _wire_value(value, resolved, resolve_member),
            }
        )
    return built


def _wire_value(value: object, resolved: dict[str, Any], resolve_member: ResolveMember) -> object:
    """Attachments and users travel as ids, with their objects under `resolved`."""
    if isinstance(value, Mapping) and "filename" in value:
        resolved.setdefault("attachments", {})[value["id"]] = dict(value)
        return value["id"]
    if isinstance(value, FakeUser):
        resolved.setdefault("users", {})[str(value.id)] = value.payload()
        resolved.setdefault("members", {})[str(value.id)] = resolve_member(value)
        return str(value.id)
    if isinstance(value, FakeRole):
        resolved.setdefault("roles", {})[str(value.id)] = dict(value.payload)
        return str(value.id)
    if isinstance(value, FakeChannel):
        resolved.setdefault("channels", {})[str(value.id)] = dict(value.payload)
        return str(value.id)
    return value


def _infer_type(value: object) -> int:
    if isinstance(value, bool):
        return payloads.OPTION_BOOLEAN
    if isinstance(value, int):
        return payloads.OPTION_INTEGER
    if isinstance(value, float):
        return payloads.OPTION_NUMBER
    if isinstance(value, FakeUser):
        return payloads.OPTION_USER
    if isinstance(value, FakeRole):
        return payloads.OPTION_ROLE
    if isinstance(value, FakeChannel):
        return payloads.OPTION_CHANNEL
    if isinstance(value, Mapping):
        return payloads.OPTION_ATTACHMENT
    return payloads.OPTION_STRING


def check(schema: Mapping[str, Any], option_type: int, value: object) -> None:
    """Refuse what Discord's client would not let a user send."""
    name = schema.get("name", "?")
    kinds = _PYTHON_TYPES.get(option_type)
    if kinds is None:
        raise ValueError(f"option {name!r}: type {option_type} is not supported by the fake")
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"option {name!r} (type {option_type}) cannot take {value!r}")
    choices = schema.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise ValueError(
            f"option {name!r}: {value!r} is not one of {[c['value'] for c in choices]}"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "min_value" in schema and value < schema["min_value"]:
            raise ValueError(f"option {name!r}: {value} < min_value {schema['min_value']}")
        if "max_value" in schema and value > schema["max_value"]:
            raise ValueError(f"option {name!r}: {value} > max_value {schema['max_value']}")
    if isinstance(value, str) and not (
        schema.get("min_length", 0) <= len(value) <= schema.get("max_length", 6000)
    ):
        raise ValueError(f"option {name!r}: length {len(value)} out of range")


def autocomplete_data(
    command: dict[str, Any],
    path: list[str],
    values: Mapping[str, object],
    focused: str,
    typed: str,
) -> dict[str, Any]:
    """The `data` of a type 4 interaction: the options filled in so far (as in `command_data`,
    unvalidated: the member is still typing), plus the focused one with its partial text."""
    schema: list[dict[str, Any]] = command.get("options", [])
    for part in path:
        schema = next(o for o in schema if o["name"] == part).get("options", [])
    option = next((o for o in schema if o["name"] == focused), None)
    if option is None or not option.get("autocomplete"):
        raise ValueError(f"option {focused!r} of /{command['name']} has no autocomplete")
    data = command_data(command, path, values, validate=False, resolve_member=lambda user: {})
    leaf = data["options"]
    for _ in path:
        leaf = leaf[0]["options"]
    leaf.append({"name": focused, "type": option["type"], "value": typed, "focused": True})
    return data
