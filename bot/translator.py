"""The commands in every shipped language: discord.py's ``app_commands.Translator`` over the
bot's catalogues (``bot.i18n``).

discord.py hands every command's, group's and context menu's name and description, each
option's name and description, and each choice's name to ``translate`` when the tree is synced,
once per Discord locale; what it returns goes to Discord as ``name_localizations`` and
``description_localizations``, and each member sees the commands in their own language.

In the catalogues these strings are keyed by their English text under a ``msgctxt`` that names
the place (``command_name``, ``parameter_description``, …: ``TranslationContextLocation``'s
names), so that a name and a sentence that happen to read alike in English may differ in a
translation. They are collected from the command tree itself (``command_strings``), since
most of them (option names, choices) are Python identifiers and ``Literal`` values that no
extractor sees: ``python -m bot.translator FILE.pot`` adds them to a template.

A text whose English carries a value known only at run time (``STYLIZE_MAX_SIZE``) is a
``locale_str`` with the English written out, the template under ``template`` and the values
as further extras: ``command_text(...)``.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import discord
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po
from discord import app_commands
from discord.app_commands import (
    TranslationContextLocation,
    TranslationContextTypes,
    Translator,
    locale_str,
)

from bot import i18n

NAME_RULE = re.compile(r"^[-\w\u0900-\u097f\u0e00-\u0e7f]{1,32}$")
"""Discord's rule for a slash command's or an option's name, localised ones included
(``^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``), and they must be lower case where the
script has cases. Python's ``\\w`` is letters, digits and ``_``."""

NAME_LOCATIONS = frozenset(
    {
        TranslationContextLocation.command_name,
        TranslationContextLocation.group_name,
        TranslationContextLocation.parameter_name,
    }
)
"""Places whose text is a name under ``NAME_RULE`` (a context menu's name is free text)."""

DESCRIPTION_LIMIT = 100
"""Characters in a description or a choice's name."""


def valid_name(name: str) -> bool:
    """Whether Discord accepts ``name`` as a slash command's, group's or option's name."""
    return bool(NAME_RULE.fullmatch(name)) and name == name.lower()


def command_text(template: str, **values: Any) -> locale_str:
    """A command's text with values known at run time: the English written out (what Discord
    shows by default) and the template, which the catalogues translate."""
    return locale_str(template.format(**values), template=template, **values)


class CatalogueTranslator(Translator):
    """Translates the commands from the catalogues; English is their own text."""

    async def translate(
        self, string: locale_str, locale: discord.Locale, context: TranslationContextTypes
    ) -> str | None:
        lang = i18n.catalogues().get(locale.value)
        if lang is None or lang.code == i18n.SOURCE_LOCALE:
            return None
        extras = dict(string.extras)
        template = str(extras.pop("template", string.message))
        translated = lang.pgettext(context.location.name, template)
        if translated is None:
            return None
        return translated.format(**extras) if extras else translated


class _Recorder(Translator):
    """Notes every string the tree asks to translate, with its place."""

    def __init__(self) -> None:
        super().__init__()
        self.strings: dict[tuple[str, str], None] = {}

    async def translate(
        self, string: locale_str, locale: discord.Locale, context: TranslationContextTypes
    ) -> str | None:
        template = str(string.extras.get("template", string.message))
        self.strings[(context.location.name, template)] = None
        return None


async def command_strings(
    tree: app_commands.CommandTree[Any],
    commands: Iterable[app_commands.Command[Any, ..., Any] | app_commands.Group | Any],
) -> list[tuple[str, str]]:
    """(place, English text) of every string of ``commands`` that Discord would show, in
    order, each once."""
    recorder = _Recorder()
    for command in commands:
        await command.get_translated_payload(tree, recorder)
    return list(recorder.strings)


async def offline_tree() -> app_commands.CommandTree[Any]:
    """The bot's command tree as its extensions build it, without connecting or starting
    anything."""
    from bot.client import EXTENSIONS, StylizeBot
    from bot.config import BotSettings

    bot = StylizeBot(BotSettings(discord_token="extract.commands.offline"))  # type: ignore[arg-type]
    for extension in EXTENSIONS:
        await bot.load_extension(extension)
    return bot.tree


async def add_to_template(path: Path) -> int:
    """Add the commands' strings to the ``.pot`` at ``path`` (made by ``pybabel extract``);
    returns how many there are."""
    tree = await offline_tree()
    strings = await command_strings(tree, tree.get_commands())
    with path.open("rb") as file:
        template: Catalog = read_po(file)
    for location, message in strings:
        template.add(message, context=location, auto_comments=["Discord: " + location])
    with path.open("wb") as file:
        write_po(file, template, width=0, sort_output=True, include_lineno=False)
    return len(strings)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bot.translator TEMPLATE.pot", file=sys.stderr)
        return 2
    count = asyncio.run(add_to_template(Path(args[0])))
    print(f"added {count} command strings to {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
