"""The bot's languages: the catalogues are complete and consistent with the code, every text a
member reads comes from them, the commands' localised names pass Discord's rules, and a job
keeps its languages in the journal (bot.i18n, bot.messages, bot.translator, schema 4).

The end-to-end side (a Korean and an English member side by side against the fake Discord)
is in tests/test_bot_e2e.py.
"""

from __future__ import annotations

import ast
import configparser
import gettext
import inspect
import re
import sqlite3
import string
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from bot import i18n, messages
from bot.i18n import Lang
from bot.journal import MIGRATIONS, SCHEMA_VERSION, Conversation, Journal, NewJob
from bot.translator import CatalogueTranslator, command_strings, offline_tree, valid_name
from engine import images
from tests.pictures import png

ROOT = Path(__file__).resolve().parents[1]
EN = i18n.lang("en-US")
KO = i18n.lang("ko")
SHIPPED = i18n.shipped()


def catalogue(code: str) -> Catalog:
    with (i18n.LOCALES_DIR / code.replace("-", "_") / "LC_MESSAGES/messages.po").open("rb") as po:
        return read_po(po)


def extracted_from_code() -> Iterator[tuple[str | None, str | tuple[str, ...]]]:
    """(context, message) of every text ``pybabel extract`` finds with babel.cfg now."""
    config = configparser.ConfigParser()
    config.read(ROOT / "babel.cfg")
    for section in config.sections():
        method, pattern = (part.strip() for part in section.split(":", 1))
        for path in sorted(ROOT.glob(pattern)):
            for _line, message, _comments, context in extract_from_file(method, str(path)):
                yield context, message


def key(message: str | tuple[str, ...]) -> str:
    return message[0] if isinstance(message, tuple) else message


# --- the catalogues -------------------------------------------------------------------------


def test_the_bot_ships_korean_and_falls_back_to_english() -> None:
    assert "ko" in SHIPPED
    assert i18n.lang("ko") is KO and i18n.lang(None) is EN
    for english_or_unknown in ("en-US", "en-GB", "fr", "pt-BR", ""):
        assert i18n.lang(english_or_unknown) is EN
    assert KO.gettext("🛑 Cancelled.") == "🛑 취소했어요."
    # A text no catalogue has (a newer one than the translation) is shown in English.
    assert (
        KO.gettext("A sentence nobody translated, {n}.", n=3) == "A sentence nobody translated, 3."
    )


@pytest.mark.parametrize("code", SHIPPED)
async def test_every_text_and_command_string_is_translated(code: str) -> None:
    """The guard for every new text: one in bot/messages.py (or a new command, option or
    choice) without its translation here fails, naming it."""
    translated = {
        (m.context, key(m.id))
        for m in catalogue(code)
        if m.id and "fuzzy" not in m.flags and all(m.string if isinstance(m.string, tuple)
                                                   else (m.string,))
    }  # fmt: skip
    needed = {(context, key(message)) for context, message in extracted_from_code()}
    tree = await offline_tree()
    needed |= set(await command_strings(tree, tree.get_commands()))
    assert len(needed) > 100
    missing = sorted(needed - translated, key=str)
    assert not missing, f"{code}: no translation for {missing} (see README, Languages)"


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def shape(text: str) -> tuple[Any, ...]:
    """What a translation keeps of the English: its emoji and symbols, bold, code and lines."""
    symbols = sorted(c for c in text if unicodedata.category(c) == "So")
    return symbols, text.count("**"), text.count("`"), text.count("\n")


@pytest.mark.parametrize("code", SHIPPED)
def test_translations_keep_the_placeholders_emoji_and_layout(code: str) -> None:
    entries = [m for m in catalogue(code) if m.id and m.string]
    assert entries
    for m in entries:
        english = m.id if isinstance(m.id, tuple) else (m.id,)
        translations = m.string if isinstance(m.string, tuple) else (m.string,)
        wanted = set().union(*(fields(e) for e in english))
        for translation in translations:
            assert fields(translation) == wanted, (m.id, translation)
            assert shape(translation) == shape(english[0]), (m.id, translation)
            translation.format(**dict.fromkeys(wanted, "x"))  # and it formats


def test_placeholder_check_catches_a_dropped_or_renamed_one() -> None:
    assert fields("⏳ **{position}**번째예요 (앞에 작업 {ahead}개).") == {"position", "ahead"}
    assert fields("⏳ **{position}**번째예요.") != {"position", "ahead"}
    assert shape("🛑 {mention} 님이 취소했어요.") != shape("{mention} cancelled it.")


def test_the_engine_refusals_in_the_catalogue_are_still_the_engines_words() -> None:
    # The fixed ones; those with values in them reach members in English.
    fixed = {
        images._MSG_EMPTY, images._MSG_NOT_IMAGE, images._MSG_HEIF, images._MSG_DAMAGED,
        images._MSG_UNSUPPORTED, images._MSG_OUT_OF_MEMORY,
    }  # fmt: skip
    assert set(messages.engine_texts(EN)) == fixed
    assert all(KO.gettext(text) != text for text in fixed)
    assert messages.bad_image(KO, "content", images._MSG_DAMAGED).startswith("사진: 이미지 파일이")


@pytest.mark.parametrize(
    ("data", "max_pixels", "korean"),
    [
        (b"%PDF-1.7\n1 0 obj", 10**7, "이 파일은 그림이 아니에요 (PDF 문서)."),
        (b"<?xml version='1.0'?><svg xmlns='x'/>", 10**7, "(SVG 벡터 그림)"),
        (png(120, 100), 10_000, "이미지 크기(120×100 픽셀)가 한도(10,000픽셀)를 넘어요."),
        (png(1200, 1000), 1_000_000, "크기(1200×1000 픽셀, 1.2메가픽셀)가 한도(1메가픽셀)를"),
    ],
)
def test_the_engines_refusals_with_values_are_said_in_each_language(
    data: bytes, max_pixels: int, korean: str
) -> None:
    with pytest.raises(images.ImageError) as refused:
        images.load_image(data, max_pixels=max_pixels)
    error = refused.value
    assert error.reason
    # In English, the bot says what the engine says (the engine's words are the template).
    said = messages.engine_words(EN, str(error), error.reason, dict(error.details))
    assert said == str(error)
    assert korean in messages.engine_words(KO, str(error), error.reason, dict(error.details))


# --- every text a member reads is the catalogue's ---------------------------------------------


def mark(template: str) -> str:
    """A catalogue text with its words marked and its placeholders left to fill in (what they
    are filled with must be marked on its own)."""
    marked = ""
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if literal:
            marked += "⟦" + literal.replace("{", "{{").replace("}", "}}") + "⟧"
        if field is not None:
            marked += "{" + field + (f"!{conversion}" if conversion else "")
            marked += (f":{spec}" if spec else "") + "}"
    return marked


class Pseudo(Lang):
    """A language whose every word is marked, as translators' pseudo-localisation does:
    whatever a text shows outside the marks was never looked up in a catalogue."""

    def __init__(self) -> None:
        super().__init__(i18n.SOURCE_LOCALE, gettext.NullTranslations())

    def gettext(self, message: str, /, **args: Any) -> str:
        return super().gettext(mark(message), **args)

    def ngettext(self, singular: str, plural: str, n: int, /, **args: Any) -> str:
        return super().ngettext(mark(singular), mark(plural), n, **args)

    def duration(self, seconds: float) -> str:
        return "⟦" + super().duration(seconds) + "⟧"

    def list(self, items: list[str]) -> str:
        return "⟦" + super().list(items) + "⟧"


SAMPLES: dict[str, tuple[Any, ...]] = {
    "kind": ("timeout", "out_of_memory", "worker_crashed", "internal", "bad_input"),
    "flags": (["send_messages", "attach_files"], ["manage_guild"]),
    "info": (
        messages.ResultInfo(512, 384, 300, 2.0, 1234, 83.0, "jpeg", 10_000, True, True),
        messages.ResultInfo(512, 384, 1, 1.0, 1234, 0.5, "png", 10_000, False, False),
    ),
    "label": ("content", "style", "saved_style"),
    "which": ("content", "style", "saved_style", "photo", "avatar"),
    "button": ("reroll", "stronger", "weaker", "bigger"),
    "flag": ("send_messages", "attach_files", "manage_guild"),
    "mention": ("<@1>",),
    "by_mention": ("<@1>", None),
    "added_by": ("<@1>",),
    "result_url": ("<#1>", None),
    "refusal": ("too_big", "no_pixels", "vector", "too_big", ""),
    "details": (
        {"width": 3000, "height": 3000, "pixels": 9_000_000, "limit": 4_000_000},
        {"width": 0, "height": 5},
        {"kind": "pdf"},
        {"pixels": 0, "limit": 10_000},
        None,
    ),
    "channel_ids": ([5], [5, 6], [5, 6, 7]),
    "blocked": ([], [7], [7, 8]),
    # Roles other than @everyone (``<@&id>``; Discord writes "@everyone" the same everywhere).
    "guild_id": (1,),
    "limits": ([], [(9, 3, None)], [(9, None, 512), (10, 0, 256)]),
    # The engine's devices are named as they are (cuda:0): not words to translate.
    "devices": ([],),
    "mode": ("off", "always", "outside_nsfw"),
    "spoiler": ("off", "always", "outside_nsfw"),
    "who": ("<@5>", None),
    "member": ("<@5>",),
    "role": ("<@&9>",),
}
VARIANTS = 5
"""Each text is written with this many sets of arguments, so that each of its branches is."""


def sample_arguments(function: Any, variant: int) -> dict[str, Any]:
    """Arguments for ``function``: by name from ``SAMPLES``, else by type, with counts that
    differ in each variant (1 or many, before or at the end)."""
    hints = get_type_hints(function, vars(messages))
    arguments = {}
    for index, name in enumerate(list(inspect.signature(function).parameters)[1:]):
        if name in SAMPLES:
            values = SAMPLES[name]
            arguments[name] = values[variant % len(values)]
            continue
        hint = hints[name]
        options = [a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)]
        by_type = {
            int: (1, index + 2, 3, 3, 1)[variant],
            float: (1.0, 2.5, 0.3, 3600.0 + 61, 0.0)[variant],
            bool: variant % 2 == 0,
            str: "42",
        }
        value = next((by_type[o] for o in options if o in by_type), None)
        assert value is not None, f"add a sample {name!r} for messages.{function.__name__}"
        arguments[name] = value
    return arguments


LETTERS = re.compile(r"[^\W\d_]")
ALLOWED_OUTSIDE = ("PNG", "JPEG", "WebP", "px")
"""Words a text may show as they are in every language: file formats, a unit."""


def unmarked(text: str) -> str:
    while "⟦" in text:
        text = re.sub(r"⟦[^⟦⟧]*⟧", "", text)
    for word in ALLOWED_OUTSIDE:
        text = text.replace(word, "")
    # Discord's timestamps (<t:1700000000:R>): each reader's Discord writes them in its language.
    return re.sub(r"<t:\d+(:[tTdDfFR])?>", "", text)


TEXTS = sorted(
    name
    for name, value in vars(messages).items()
    if inspect.isfunction(value)
    and value.__module__ == messages.__name__
    and next(iter(inspect.signature(value).parameters), None) == "lang"
)


@pytest.mark.parametrize("name", TEXTS)
def test_every_text_is_written_from_the_catalogue(name: str) -> None:
    """Each function of bot.messages, in a pseudo-language: no word of it bypasses the
    catalogue (a new text written as a plain f-string fails here)."""
    function = getattr(messages, name)
    if name == "verbatim":  # words written elsewhere, by design
        return
    for variant in range(VARIANTS):
        shown = function(Pseudo(), **sample_arguments(function, variant))
        for text in shown if isinstance(shown, tuple) else (shown,):
            assert not LETTERS.search(unmarked(text)), f"messages.{name}: {text!r}"


def test_the_pseudo_language_sees_a_text_outside_the_catalogue() -> None:
    def sneaky(lang: Lang, size: int) -> str:
        return lang.gettext("Too big.") + f" The limit is {size} MB."

    assert LETTERS.search(unmarked(sneaky(Pseudo(), 3)))
    assert not LETTERS.search(unmarked(messages.queued(Pseudo(), 3)))


# The Discord layer: a text literal in one of these calls is sent to members as it is.
DISCORD_LAYER = [
    *sorted((ROOT / "bot/cogs").glob("*.py")),
    *(ROOT / "bot" / name for name in ("buttons.py", "reply.py", "reporter.py", "delivery.py",
                                       "errors.py", "client.py", "gallery.py", "intake.py",
                                       "permissions.py", "sources.py")),
]  # fmt: skip
SENDING_CALLS = frozenset(
    {
        "send", "send_message", "edit", "edit_message", "edit_original_response", "respond",
        "reply", "followup", "Refusal", "Embed", "Button", "Select", "SelectOption",
        "TextInput", "Modal", "add_field", "set_footer", "set_author", "notice", "post",
        "edit_status", "send_interaction", "send_channel", "send_dm", "StatusUpdate",
    }
)  # fmt: skip
TEXT_KEYWORDS = frozenset(
    {"content", "label", "placeholder", "description", "title", "text", "name", "value"}
)
COMMAND_DEFINITIONS = frozenset(
    {"describe", "Command", "command", "Group", "ContextMenu", "rename", "Choice", "command_text"}
)
"""The commands' own strings: translated through ``bot.translator``, not sent as they are."""


def literal_words(node: ast.AST, named: dict[str, str]) -> str:
    """The words a literal argument carries (an f-string's fixed parts, what a lambda returns,
    or the literal a local name was given), or ""."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(literal_words(v, named) for v in node.values)
    if isinstance(node, ast.Lambda):
        return literal_words(node.body, named)
    if isinstance(node, ast.Name):
        return named.get(node.id, "")
    return ""


def sent_literals(source: str) -> list[tuple[int, str]]:
    """(line, words) of every text literal handed to Discord in ``source``."""
    tree = ast.parse(source)
    named: dict[str, str] = {}  # names given a literal text (text = "…"; send(text))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and (words := literal_words(node.value, {})):
            named.update((t.id, words) for t in node.targets if isinstance(t, ast.Name))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in COMMAND_DEFINITIONS:
            continue
        candidates = [k.value for k in node.keywords if k.arg in TEXT_KEYWORDS]
        if name in SENDING_CALLS:
            candidates += node.args
        for argument in candidates:
            words = literal_words(argument, named)
            if LETTERS.search(words):
                found.append((argument.lineno, words))
    return sorted(found)


def test_the_scan_finds_a_text_sent_outside_the_catalogue() -> None:
    source = (
        "async def f(interaction, x):\n"
        "    await interaction.response.send_message('Hello there', ephemeral=True)\n"
        "    await interaction.edit_original_response(content=f'Done {x}')\n"
        "    raise Refusal(f'No {x}')\n"
        "    button = discord.ui.Button(label='Go')\n"
        "    await channel.send(f'{x}\\n{x}')\n"  # layout only: no words
        "    await interaction.response.send_message(messages.queued(lang, 2))\n"
        "    app_commands.describe(size='Longest side')\n"  # a command's, translated
        "    text = 'Plain words'\n"
        "    await interaction.response.send_message(text)\n"
        "    raise Refusal(lambda lang: 'Only admins.')\n"
    )
    assert [line for line, _ in sent_literals(source)] == [2, 3, 4, 5, 10, 11]


@pytest.mark.parametrize("path", DISCORD_LAYER, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_text_reaches_members_from_outside_the_catalogue(path: Path) -> None:
    found = sent_literals(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name}: texts not in bot.messages: {found}"


# --- the commands ------------------------------------------------------------------------------


async def translated_payloads() -> list[dict[str, Any]]:
    tree = await offline_tree()
    translator = CatalogueTranslator()
    return [await c.get_translated_payload(tree, translator) for c in tree.get_commands()]


@pytest.mark.parametrize("code", SHIPPED)
async def test_every_command_is_localised_within_discords_rules(code: str) -> None:
    payloads = await translated_payloads()
    assert {p["name"] for p in payloads} >= {"stylize", "styles"}
    for payload in payloads:
        chat_input = payload.get("type", 1) == 1
        translation = (payload.get("name_localizations") or {}).get(code)
        assert translation, payload["name"]
        assert valid_name(translation) if chat_input else 1 <= len(translation) <= 32
        if chat_input:
            assert 1 <= len(payload["description_localizations"][code]) <= 100
        for option in _options(payload):
            assert valid_name(option["name_localizations"][code]), option["name"]
            assert 1 <= len(option["description_localizations"][code]) <= 100, option["name"]
            for choice in option.get("choices", []):
                assert 1 <= len(choice["name_localizations"][code]) <= 100, choice["name"]


def _options(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for option in node.get("options", []):
        yield option
        yield from _options(option)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("화풍변환", True),
        ("저장된화풍", True),
        ("saved_style", True),
        ("x-y", True),
        ("हिन्दी", True),
        ("다시 그리기", False),
        ("Stylize", False),
        ("", False),
        ("그" * 33, False),
        ("a.b", False),
    ],
)
def test_discords_name_rule(name: str, valid: bool) -> None:
    assert valid_name(name) is valid


async def test_a_text_with_a_value_is_translated_from_its_template() -> None:
    payloads = {p["name"]: p for p in await translated_payloads()}
    size = next(o for o in payloads["stylize"]["options"] if o["name"] == "size")
    assert size["description"].startswith("Longest side of the result in pixels (at most ")
    max_size = size["max_value"]
    assert (
        size["description_localizations"]["ko"] == f"결과 그림의 긴 변, 픽셀 단위 (최대 {max_size})"
    )


# --- texts that wait for their reader ----------------------------------------------------------


def test_a_text_kept_for_later_is_written_in_each_readers_language() -> None:
    text = messages.later(messages.failure, "timeout", "", timeout=600)
    kept = messages.Text.loads(text.dumps())
    assert kept == text
    assert kept(EN) == messages.failure(EN, "timeout", "", timeout=600)
    assert "10분" in kept(KO)
    assert messages.later(messages.verbatim, "❌ Old words")(KO) == "❌ Old words"
    for broken in ("❌ Old words", "[1]", '{"text": "no_such_text", "args": {}}'):
        with pytest.raises(ValueError):
            messages.Text.loads(broken)
    with pytest.raises(ValueError, match="not a text"):
        messages.later(str.upper, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        messages.later(messages.cancelled, object(), own=True)  # type: ignore[arg-type]


# --- the journal keeps a job's languages (schema 4) --------------------------------------------


VERSION_3_ROWS = """
INSERT INTO jobs (id, user_id, guild_id, channel_id, application_id, interaction_id,
    interaction_token, token_expires_at, upload_limit, settings, seed, style_count, state,
    runs, created_at, updated_at, finished_at, outcome)
VALUES ('{job}', 43, 7, 18, 19, 20, 'tok', 2e9, 2048, '{{"seed": 6}}', 6, 1, 'failed',
    1, 100.0, 170.0, 170.0, '{{"kind": "timeout"}}');
INSERT INTO outbox (job_id, kind, text, state, attempts, next_at, created_at, updated_at)
VALUES ('{job}', 'notice', '❌ This picture took longer than the 10 min 00 s limit.',
    'pending', 1, 180.0, 170.0, 175.0);
INSERT INTO outbox (job_id, kind, text, state, attempts, next_at, created_at, updated_at)
VALUES ('{job}', 'result', '', 'pending', 0, 180.0, 170.0, 175.0);
"""


async def test_a_version_3_journal_gets_languages_and_keeps_its_notices(tmp_path: Path) -> None:
    job = "c" * 32
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        for script in MIGRATIONS[:3]:
            db.executescript(script)
        db.executescript(VERSION_3_ROWS.format(job=job))
        db.execute("PRAGMA user_version=3")
    journal = await Journal.open(tmp_path, sync_files=False)
    try:
        record = await journal.get(job)
        assert record is not None
        # Jobs from before spoke English, and knew no server language.
        assert (record.conversation.locale, record.conversation.guild_locale) == ("en-US", None)
        notice, result = await journal.outbox_pending()
        assert messages.Text.loads(notice.text)(KO) == (
            "❌ This picture took longer than the 10 min 00 s limit."
        )
        assert (notice.attempts, notice.next_at) == (1, 180.0)
        assert result.text == ""
        # And a new job keeps both languages.
        conversation = Conversation(1, 7, 8, 9, 10, "tok", 2e9, 2048, "ko", "en-US")
        await journal.add(NewJob("d" * 32, conversation, {"seed": 1}, 1, b"c", (b"s",)))
        kept = await journal.get("d" * 32)
        assert kept is not None and kept.conversation == conversation
    finally:
        await journal.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
