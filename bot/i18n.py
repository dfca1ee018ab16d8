"""The bot's languages: gettext catalogues (``bot/locales/<lang>/LC_MESSAGES/messages.po``),
read with Babel when the bot starts, and ``Lang``, one language's words, numbers and times.

English is the source language: the catalogues are keyed by the English texts of
``bot.messages`` (and of the commands, under a ``msgctxt`` that names the place, see
``bot.translator``), and any text missing from a catalogue is shown in English. The ``.po``
files are read directly (``babel.messages.pofile.read_po``) rather than compiled to ``.mo``:
they are small, parsing them takes milliseconds once per start, and so there is no build step
and no binary file in the repository that could fall behind its source.

No Discord here: a locale is Discord's code as a string (``"ko"``, ``"en-US"``).
"""

from __future__ import annotations

import functools
import gettext
import io
import logging
import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import babel
from babel.dates import format_timedelta
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "messages"
SOURCE_LOCALE = "en-US"
"""The language the texts are written in, and the one shown when a catalogue lacks a text."""


class Lang:
    """One language: its translations of the English texts, and its way of writing numbers,
    sizes, durations and lists."""

    def __init__(self, code: str, translations: gettext.NullTranslations) -> None:
        """``code``: the catalogue's language (``"ko"``), or ``SOURCE_LOCALE``."""
        self.code = code
        self.locale = babel.Locale.parse(code, sep="-")
        self._translations = translations

    def __repr__(self) -> str:
        return f"Lang({self.code!r})"

    # Texts: the English text is the key. Arguments are named ({name}), so a translation may
    # put them in any order.

    def gettext(self, message: str, /, **args: Any) -> str:
        return _format(self._translations.gettext(message), args)

    def ngettext(self, singular: str, plural: str, n: int, /, **args: Any) -> str:
        """The form for ``n`` (Korean has one form; English two)."""
        return _format(self._translations.ngettext(singular, plural, n), args)

    def pgettext(self, context: str, message: str, /) -> str | None:
        """The translation of ``message`` in ``context``, or None if this language has none
        or keeps the English (Discord then shows the English one)."""
        translated = self._translations.pgettext(context, message)
        return None if translated == message else translated

    # Numbers, sizes, durations, lists

    def number(self, value: float) -> str:
        """A setting's value without float noise, in this language's digits: 1.0 → ``1``,
        0.3333 → ``0.333``."""
        rounded = float(f"{value:.3g}")
        return format_decimal(rounded, format="#,##0.###", locale=self.locale)

    def integer(self, value: int) -> str:
        """A count, grouped as this language groups digits (not for seeds or ids, which are
        copied)."""
        return format_decimal(value, locale=self.locale)

    def file_size(self, size: int) -> str:
        """Bytes in the units Discord's upload limits are given in (1 MB = 1024 × 1024 B)."""
        if size < 1024:
            return self.gettext("{size} B", size=self.integer(size))
        if size < 1024 * 1024:
            return self.gettext("{size} KB", size=self.integer(round(size / 1024)))
        value = size / (1024 * 1024)
        pattern = "#,##0" if value >= 100 or value.is_integer() else "#,##0.0"
        return self.gettext("{size} MB", size=format_decimal(value, pattern, locale=self.locale))

    def duration(self, seconds: float) -> str:
        """``45 sec``, ``2 min 5 sec``, ``1 hr 3 min`` (``45초``, ``2분 5초``, ``1시간 3분``):
        two units at most, exact enough for a person."""
        if seconds < 0 or math.isnan(seconds):
            seconds = 0
        if seconds < 1:
            return self.gettext("under a second")
        total = round(seconds)
        if total < 60:
            return self._unit(total, "second")
        minutes, secs = divmod(total, 60)
        if minutes < 60:
            return self._pair(minutes, "minute", secs, "second")
        hours, minutes = divmod(minutes, 60)
        return self._pair(hours, "hour", minutes, "minute")

    def _unit(self, amount: int, unit: Literal["hour", "minute", "second"]) -> str:
        delta = timedelta(**{f"{unit}s": amount})
        return format_timedelta(delta, granularity=unit, threshold=1e9, format="short",
                                locale=self.locale)  # fmt: skip

    def _pair(
        self,
        big: int,
        big_unit: Literal["hour", "minute"],
        small: int,
        small_unit: Literal["minute", "second"],
    ) -> str:
        first = self._unit(big, big_unit)
        return first if small == 0 else f"{first} {self._unit(small, small_unit)}"

    def list(self, items: list[str]) -> str:
        """``A, B and C`` as this language joins them."""
        return format_list(items, style="standard", locale=self.locale)


Words = Callable[[Lang], str]
"""A text whose reader's language is not known yet: ``bot.messages.later(...)``, or any
function of a ``Lang``. It is written out once the route to its reader is chosen."""


def _format(text: str, args: Mapping[str, Any]) -> str:
    return text.format(**args) if args else text


def _load(path: Path) -> gettext.NullTranslations:
    with path.open("rb") as po:
        catalog = read_po(po, domain=DOMAIN)
    buffer = io.BytesIO()
    # Fuzzy entries are a translator's guess: never shown, as msgfmt would not either.
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


@functools.cache
def catalogues(directory: Path = LOCALES_DIR) -> Mapping[str, Lang]:
    """Every shipped language (read once, then shared: a ``Lang`` never changes), English
    among them."""
    langs = {SOURCE_LOCALE: Lang(SOURCE_LOCALE, gettext.NullTranslations())}
    for po in sorted(directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        code = po.parent.parent.name.replace("_", "-")
        langs[code] = Lang(code, _load(po))
    return langs


def shipped() -> tuple[str, ...]:
    """The languages with a catalogue (English not counted)."""
    return tuple(code for code in catalogues() if code != SOURCE_LOCALE)


def lang(locale: object) -> Lang:
    """The language for Discord's ``locale`` (``"ko"``, ``"en-US"``, a ``discord.Locale``):
    its catalogue, else that of its language (``pt-BR`` → ``pt``), else English."""
    langs = catalogues()
    code = str(locale) if locale else SOURCE_LOCALE
    if code in langs:
        return langs[code]
    return langs.get(code.split("-")[0], langs[SOURCE_LOCALE])


def english() -> Lang:
    """For logs and for a refusal's ``str()``: logs stay in English."""
    return catalogues()[SOURCE_LOCALE]
