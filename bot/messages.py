"""Every text the bot shows its members, as pure functions of a language (``bot.i18n.Lang``)
and plain values: the statuses and results, the follow-up buttons' words, the refusals and
the failures.

Each text is written here in English, inside ``lang.gettext(...)`` (or ``ngettext``), which
marks it for the catalogues (``pybabel extract``) and looks up its translation; arguments are
named (``{position}``) so that a translation may reorder them. Whoever sends a text picks the
language: the member's for a reply to them, the server's for a post in its channel after
their interaction expired (``bot.reply.Reply`` does, route by route). A text whose reader is
not known yet (the job core's notices, a refusal raised deep in a check) is ``later(fn,
...)``: the function's name and its arguments, written out once the route is chosen; the
outbox keeps it as JSON.

``bot.errors`` decides which of these an error gets. No Discord here (a mention is plain
``<@id>`` text).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

from bot.i18n import Lang
from engine.images import format_extension, format_label
from engine.jobs import FailureKind

P = ParamSpec("P")

# Discord's own cap on message content.
MAX_CONTENT = 2000
MAX_ECHO = 100
"""Characters of something a member typed that a message repeats back (or a log records)."""


def mention(user_id: int) -> str:
    """How a message names a member (Discord turns it into their name)."""
    return f"<@{user_id}>"


def percent(step: int, total: int) -> int:
    if total <= 0:
        return 0
    return max(0, min(100, math.floor(100 * step / total)))


def clip(text: str) -> str:
    """Keep a message within Discord's content limit."""
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"


def echo(typed: str, limit: int = MAX_ECHO) -> str:
    """Something a member typed, as a message repeats it: runs of spaces made one, and cut
    to ``limit`` characters (a name may be thousands long; Discord refuses a message over
    2000)."""
    text = " ".join(typed.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Words that other texts use


def input_label(lang: Lang, which: str) -> str:
    """What a refusal calls one of a command's pictures (``bot.intake.AttachmentRef.label``)."""
    if which == "content":
        return lang.gettext("photo (content)")
    if which == "style":
        return lang.gettext("style image")
    if which == "saved_style":
        return lang.gettext("saved style")
    if which == "photo":
        return lang.gettext("photo")
    if which == "avatar":
        return lang.gettext("avatar")
    return which


def permission_name(lang: Lang, flag: str) -> str:
    """A permission as Discord's settings name it in this language (``send_messages``)."""
    names = {
        "send_messages": lang.gettext("Send Messages"),
        "send_messages_in_threads": lang.gettext("Send Messages in Threads"),
        "attach_files": lang.gettext("Attach Files"),
        "embed_links": lang.gettext("Embed Links"),
        "manage_messages": lang.gettext("Manage Messages"),
        "manage_guild": lang.gettext("Manage Server"),
        "read_message_history": lang.gettext("Read Message History"),
        "view_channel": lang.gettext("View Channel"),
    }
    return names.get(flag, flag.replace("_", " ").title())


def permission_names(lang: Lang, flags: list[str]) -> str:
    return lang.list([f"**{permission_name(lang, flag)}**" for flag in flags])


# Status message


def queued(lang: Lang, position: int) -> str:
    if position <= 1:
        return lang.gettext("⏳ Queued: you're next. I'll start as soon as a painter is free.")
    ahead = position - 1
    return lang.ngettext(
        "⏳ Queued: position **{position}** ({ahead} job ahead of yours).",
        "⏳ Queued: position **{position}** ({ahead} jobs ahead of yours).",
        ahead,
        position=lang.integer(position),
        ahead=lang.integer(ahead),
    )


def starting(lang: Lang) -> str:
    return lang.gettext("🎨 Starting: preparing your pictures…")


def progress(lang: Lang, step: int, total: int, eta: float) -> str:
    args = {"step": step, "total": total, "percent": percent(step, total)}
    if step < total and eta > 0:
        return lang.gettext(
            "🎨 Painting: step {step}/{total} ({percent}%), about {eta} left.",
            eta=lang.duration(eta),
            **args,
        )
    return lang.gettext("🎨 Painting: step {step}/{total} ({percent}%).", **args)


def cancelling(lang: Lang) -> str:
    return lang.gettext("🛑 Cancelling…")


def cancelled(lang: Lang, by_mention: str | None, *, own: bool) -> str:
    if by_mention is None or own:
        return lang.gettext("🛑 Cancelled.")
    return lang.gettext("🛑 Cancelled by {mention}.", mention=by_mention)


def restarting(lang: Lang, *, engine_broken: bool = False) -> str:
    if engine_broken:
        return lang.gettext(
            "🔄 The painters stopped working, so the bot is restarting: your picture will "
            "resume as soon as it is back."
        )
    return lang.gettext("🔄 The bot is restarting: your picture will resume as soon as it is back.")


def resumed(lang: Lang, text: str) -> str:
    """The first status after a restart: say so, then the usual state."""
    return lang.gettext("🔄 Back after a restart, your picture resumes.") + "\n" + text


def done_status(lang: Lang, seconds: float, result_url: str | None) -> str:
    if result_url:
        return lang.gettext("✅ Done in {time}: {url}", time=lang.duration(seconds), url=result_url)
    return lang.gettext("✅ Done in {time}, the picture is posted below.",
                        time=lang.duration(seconds))  # fmt: skip


# Result message


@dataclass(frozen=True)
class ResultInfo:
    """What the result message states: from ``engine.jobs.JobStats`` and the upload."""

    width: int
    height: int
    steps: int
    strength: float
    seed: int
    seconds: float
    format: str
    size_bytes: int
    preserve_colors: bool = False
    reencoded_to_fit: bool = False

    @classmethod
    def from_stats(cls, stats: Any, fmt: str, size_bytes: int, *, refit: bool) -> ResultInfo:
        return cls.from_dict(dataclasses.asdict(stats), fmt, size_bytes, refit=refit)

    @classmethod
    def from_dict(
        cls, stats: dict[str, Any], fmt: str, size_bytes: int, *, refit: bool
    ) -> ResultInfo:
        """From ``JobStats`` as the journal keeps it (``dataclasses.asdict``)."""
        settings = stats.get("settings") or {}
        return cls(
            width=int(stats["width"]),
            height=int(stats["height"]),
            steps=int(stats["steps"]),
            strength=float(settings.get("strength", 1.0)),
            seed=int(stats["seed"]),
            seconds=float(stats["seconds"]),
            format=fmt,
            size_bytes=size_bytes,
            preserve_colors=bool(settings.get("preserve_colors")),
            reencoded_to_fit=refit or fmt != "png",
        )


def result_stem(job_id: str) -> str:
    """``stylized-<first 12 of the job id>``: the id lets a retry find its own post."""
    return f"stylized-{job_id[:12]}"


def result_filename(fmt: str, job_id: str, *, spoiler: bool = False) -> str:
    """``spoiler``: Discord blurs an attachment whose name starts with ``SPOILER_``."""
    prefix = SPOILER_PREFIX if spoiler else ""
    return f"{prefix}{result_stem(job_id)}.{format_extension(fmt)}"


def result(lang: Lang, mention: str, info: ResultInfo, *, upload_limit: int) -> str:
    parts = [
        f"{info.width}×{info.height} px",
        lang.ngettext("{steps} step", "{steps} steps", info.steps, steps=lang.integer(info.steps)),
        lang.gettext("strength {strength}", strength=lang.number(info.strength)),
    ]
    if info.preserve_colors:
        parts.append(lang.gettext("photo's colours kept"))
    parts += [
        lang.gettext("seed {seed}", seed=info.seed),
        lang.gettext("took {time}", time=lang.duration(info.seconds)),
    ]
    label = format_label(info.format)
    size = lang.file_size(info.size_bytes)
    if info.reencoded_to_fit:
        file_note = lang.gettext(
            "{format}, {size}: PNG would not fit the {limit} upload limit",
            format=label, size=size, limit=lang.file_size(upload_limit),
        )  # fmt: skip
    else:
        file_note = lang.gettext("{format}, {size}", format=label, size=size)
    return lang.gettext(
        "{mention}, here is your picture: {details} ({file}).",
        mention=mention, details=", ".join(parts), file=file_note,
    )  # fmt: skip


def cancel_label(lang: Lang) -> str:
    return lang.gettext("Cancel")


# Follow-ups on a result (Re-roll, Stronger, Weaker, Bigger)


REROLL_EMOJI = "🎲"
STRONGER_EMOJI = "➕"
WEAKER_EMOJI = "➖"
# "⤢" is no emoji Discord knows (a button's emoji must be one), so it leads the label instead.
BIGGER_MARK = "⤢"
BIGGER_EMOJI = None


def reroll_label(lang: Lang) -> str:
    return lang.gettext("Re-roll")


def stronger_label(lang: Lang) -> str:
    return lang.gettext("Stronger")


def weaker_label(lang: Lang) -> str:
    return lang.gettext("Weaker")


def reroll_headline(lang: Lang, strength: float, parent_seed: int) -> str:
    """What a Re-roll job is, on its status and its result."""
    return lang.gettext("🎲 Re-roll of the picture with seed {seed}", seed=parent_seed)


def stronger_headline(lang: Lang, strength: float, parent_seed: int) -> str:
    return lang.gettext(
        "➕ Stronger, strength {strength} (from the picture with seed {seed})",
        strength=lang.number(strength), seed=parent_seed,
    )  # fmt: skip


def weaker_headline(lang: Lang, strength: float, parent_seed: int) -> str:
    return lang.gettext(
        "➖ Weaker, strength {strength} (from the picture with seed {seed})",
        strength=lang.number(strength), seed=parent_seed,
    )  # fmt: skip


def bigger_label(lang: Lang) -> str:
    return lang.gettext("⤢ Bigger")


def bigger_headline(lang: Lang, size: int, parent_seed: int) -> str:
    return lang.gettext(
        "⤢ Bigger, {size} px (from the picture with seed {seed})", size=size, seed=parent_seed
    )


def follow_up_label(lang: Lang, button: str) -> str:
    """A follow-up button's label, by its kind (``bot.jobs.followups.RULES``' keys)."""
    labels = {"reroll": reroll_label, "stronger": stronger_label, "weaker": weaker_label,
              "bigger": bigger_label}  # fmt: skip
    return labels[button](lang) if button in labels else button


def follow_up_at_limit(lang: Lang, button: str) -> str:
    """A follow-up (``button``: its kind) that would change nothing under the server's limits
    now."""
    return lang.gettext(
        "**{label}** can't change this picture any more: it is already at this server's "
        "limit. Run `/stylize` for another one.",
        label=follow_up_label(lang, button),
    )


def follow_up_lowered(lang: Lang, size: int, steps: int) -> str:
    """A follow-up whose size or steps the server's current limits lowered."""
    return lang.gettext(
        "📏 This server's limits are lower than when the first picture was made: this one "
        "is {size} px and {steps} steps at most.",
        size=size, steps=lang.integer(steps),
    )  # fmt: skip


def follow_up_expired(lang: Lang, keep_days: float) -> str:
    return lang.ngettext(
        "These pictures are no longer kept (the bot keeps them {days} day), so this button "
        "can't make another version. Run `/stylize` again with them.",
        "These pictures are no longer kept (the bot keeps them {days} days), so this button "
        "can't make another version. Run `/stylize` again with them.",
        1 if keep_days == 1 else 2,
        days=lang.number(keep_days),
    )


# The message menus (right-click a message → Apps): "Stylize this photo", "Paint my avatar like
# this"

PHOTO_MENU = "Stylize this photo"
AVATAR_MENU = "Paint my avatar like this"


def pick_placeholder(lang: Lang) -> str:
    return lang.gettext("Choose a saved style")


def pick_a_style(lang: Lang, count: int) -> str:
    return lang.ngettext(
        "🖼️ Pick one of this server's {count} saved style for this photo: I'll paint it "
        "in the channel. (To use a painting of your own, run `/stylize`.)",
        "🖼️ Pick one of this server's {count} saved styles for this photo: I'll paint it "
        "in the channel. (To use a painting of your own, run `/stylize`.)",
        count,
        count=lang.integer(count),
    )


def menu_gallery_empty(lang: Lang) -> str:
    return lang.gettext(
        "This server has no saved styles yet, so there is none to pick for this photo. A "
        "member with Manage Server can add one with `/styles add`; or run `/stylize` with a "
        "painting of your own as `style`."
    )


def no_picture_in_message(lang: Lang) -> str:
    return lang.gettext(
        "This message has no picture I can use. Use the menu on a message with an attached "
        "PNG, JPEG or WebP image."
    )


def sticker_is_no_picture(lang: Lang) -> str:
    return lang.gettext(
        "Stickers can't be painted. Use the menu on a message with an attached PNG, JPEG or "
        "WebP image."
    )


def picture_elsewhere(lang: Lang) -> str:
    return lang.gettext(
        "This picture is a link to another site, and I only take pictures stored on Discord. "
        "Save it, attach it to a message, and use the menu on that one."
    )


def pick_expired(lang: Lang, keep_days: float) -> str:
    return lang.ngettext(
        # The menu's name as Discord shows it in this language (its msgctxt "command_name").
        "This photo is no longer kept (the bot keeps it {days} day). Use **Stylize this "
        "photo** on the message again.",
        "This photo is no longer kept (the bot keeps it {days} days). Use **Stylize this "
        "photo** on the message again.",
        1 if keep_days == 1 else 2,
        days=lang.number(keep_days),
    )


def pick_not_yours(lang: Lang) -> str:
    return lang.gettext(
        "This menu is someone else's. Use **Stylize this photo** on the message yourself."
    )


def message_link(guild_id: int | None, channel_id: int, message_id: int) -> str:
    """A link that opens the message in Discord."""
    where = "@me" if guild_id is None else str(guild_id)
    return f"https://discord.com/channels/{where}/{channel_id}/{message_id}"


def photo_menu_headline(lang: Lang, style: str, link: str) -> str:
    """What a job from "Stylize this photo" is, on its status and its result."""
    return lang.gettext(
        "🖼️ The photo in {link}, in the saved style **{style}**", link=link, style=style
    )


def avatar_menu_headline(lang: Lang, user_mention: str, link: str) -> str:
    """What a job from "Paint my avatar like this" is."""
    return lang.gettext(
        "🖌️ {mention}'s avatar, painted like the picture in {link}",
        mention=user_mention, link=link,
    )  # fmt: skip


# The servers' galleries of saved styles (/styles)


def gallery_bad_name(lang: Lang, max_length: int) -> str:
    return lang.gettext("Give the style a name of 1 to {max} characters.", max=max_length)


def gallery_name_taken(lang: Lang, name: str) -> str:
    return lang.gettext(
        "This server already has a style called **{name}**. Pick another name, or remove "
        "that one first with `/styles remove name:{name}`.",
        name=name,
    )


def gallery_full(lang: Lang, max_styles: int) -> str:
    return lang.gettext(
        "This server's gallery is full: it holds at most {max} styles. Remove one "
        "with `/styles remove` first.",
        max=lang.integer(max_styles),
    )


def gallery_too_large(lang: Lang, max_bytes: int) -> str:
    return lang.gettext(
        "This style would take the server's gallery past its {limit} limit. "
        "Remove a style with `/styles remove`, or save a smaller image.",
        limit=lang.file_size(max_bytes),
    )


def gallery_no_such_style(lang: Lang, name: str) -> str:
    return lang.gettext(
        "This server has no saved style called **{name}**. See them with `/styles list`.",
        name=echo(name),
    )


def gallery_needs_manage_server(lang: Lang) -> str:
    return lang.gettext(
        "Only members with the **Manage Server** permission can change this server's styles."
    )


def gallery_added(lang: Lang, name: str) -> str:
    return lang.gettext(
        "🖼️ Saved the style **{name}**. Use it with `/stylize saved_style:{name}`.", name=name
    )


def gallery_removed(lang: Lang, name: str) -> str:
    return lang.gettext("🗑️ Removed the style **{name}**.", name=name)


def gallery_empty(lang: Lang) -> str:
    return lang.gettext(
        "This server has no saved styles yet. A member with Manage Server can add one with "
        "`/styles add`."
    )


def gallery_page(lang: Lang, page: int, pages: int, total: int) -> str:
    text = lang.ngettext(
        "🖼️ This server's gallery: {total} style, page {page} of {pages}.",
        "🖼️ This server's gallery: {total} styles, page {page} of {pages}.",
        total,
        total=lang.integer(total), page=page, pages=pages,
    )  # fmt: skip
    if page < pages:
        text += " " + lang.gettext("Next: `/styles list page:{next}`.", next=page + 1)
    return text + " " + lang.gettext("Use one with `/stylize saved_style:<name>`.")


def gallery_entry(lang: Lang, added_by: str, size: int) -> str:
    """A saved style's line in ``/styles list``."""
    return lang.gettext("Added by {mention}, {size}", mention=added_by, size=lang.file_size(size))


def style_one_or_other(lang: Lang) -> str:
    return lang.gettext(
        "Give a style: either attach one as `style`, or pick one of this server's with "
        "`saved_style`, not both."
    )


# Refusals: a request turned down for a reason the member can fix


def file_too_large(lang: Lang, label: str, size: int | None, limit: int) -> str:
    """``label``: which picture (see ``input_label``)."""
    if size is None:
        return lang.gettext(
            "The {label} is too large; the limit is {limit}. Send a smaller file.",
            label=input_label(lang, label), limit=lang.file_size(limit),
        )  # fmt: skip
    return lang.gettext(
        "The {label} is {size}; the limit is {limit}. Send a smaller file.",
        label=input_label(lang, label), size=lang.file_size(size), limit=lang.file_size(limit),
    )  # fmt: skip


def not_an_image(lang: Lang, label: str) -> str:
    return lang.gettext(
        "The {label} isn't an image. Attach a PNG, JPEG or WebP picture.",
        label=input_label(lang, label),
    )


def download_failed(lang: Lang, label: str) -> str:
    return lang.gettext(
        "I couldn't download the {label} from Discord. Please send it again.",
        label=input_label(lang, label),
    )


def empty_file(lang: Lang, label: str) -> str:
    return lang.gettext("The {label}: the file is empty.", label=input_label(lang, label))


def bad_image(
    lang: Lang,
    label: str,
    reason: str,
    refusal: str = "",
    details: dict[str, Any] | None = None,
) -> str:
    """``reason``, ``refusal``, ``details``: the engine's words for what is wrong with the
    picture, and its ``ImageError.reason`` and ``.details`` (see ``engine_words``)."""
    words = engine_words(lang, reason, refusal, details)
    return lang.gettext("The {label}: {reason}", label=input_label(lang, label), reason=words)


def engine_words(
    lang: Lang, text: str, refusal: str = "", details: dict[str, Any] | None = None
) -> str:
    """An engine refusal (``engine.ImageError``) in ``lang``: said anew from its ``reason``
    (``refusal``) and ``details`` when it carries values, looked up when it is one of the
    fixed ones (``engine_texts``), else as the engine wrote it (``text``)."""
    values = details or {}
    if refusal == "too_big" and "limit" in values:
        limit = pixel_count(lang, int(values["limit"]))
        if "width" in values and "height" in values:
            size = lang.gettext("{width}×{height} pixels", width=values["width"],
                                height=values["height"])  # fmt: skip
            if int(values.get("pixels", 0)) >= 1_000_000:
                size = lang.gettext("{size} ({count})", size=size,
                                    count=pixel_count(lang, int(values["pixels"])))  # fmt: skip
        elif values.get("pixels"):
            size = pixel_count(lang, int(values["pixels"]))
        else:
            return lang.gettext(
                "This image is too large; the limit is {limit}. Send a smaller image.",
                limit=limit,
            )
        return lang.gettext(
            "This image is {size}; the limit is {limit}. Send a smaller image.",
            size=size, limit=limit,
        )  # fmt: skip
    if refusal == "no_pixels" and "width" in values and "height" in values:
        return lang.gettext(
            "This image has no pixels ({width}×{height}). Send a real picture.",
            width=values["width"], height=values["height"],
        )  # fmt: skip
    if refusal == "vector":
        kinds = {
            "postscript": lang.gettext("a PostScript/vector file (EPS or PS)"),
            "pdf": lang.gettext("a PDF document"),
            "svg": lang.gettext("an SVG vector drawing"),
        }
        if values.get("kind") in kinds:
            return lang.gettext(
                "That file is {kind}, not a picture: export it as PNG or JPEG.",
                kind=kinds[str(values["kind"])],
            )
    return lang.gettext(text) if text else text


def pixel_count(lang: Lang, pixels: int) -> str:
    """``9 megapixels``, ``10,000 pixels``."""
    if pixels >= 1_000_000:
        return lang.gettext("{count} megapixels", count=lang.number(pixels / 1_000_000))
    return lang.gettext("{count} pixels", count=lang.integer(pixels))


def engine_texts(lang: Lang) -> tuple[str, ...]:
    """The engine's fixed refusals of a picture (``engine.images``), written here so that the
    catalogues carry them (a test checks that they are still the engine's words)."""
    return (
        lang.gettext("The file is empty. Send a PNG, JPEG, WebP, GIF, BMP or TIFF image."),
        lang.gettext(
            "That file isn't an image we can read. Send a PNG, JPEG, WebP, GIF, BMP or TIFF."
        ),
        lang.gettext(
            "That looks like a HEIC or AVIF photo, which we can't read. Send it as JPEG or PNG."
        ),
        lang.gettext(
            "The image file is damaged or incomplete. Save it again, or send another copy."
        ),
        lang.gettext(
            "That image uses a feature we can't decode. Save it as PNG or JPEG and retry."
        ),
        lang.gettext("This image is too large for us to open. Send a smaller image."),
    )


def missing_permissions(lang: Lang, flags: list[str]) -> str:
    return lang.gettext(
        "I can't post your picture in this channel: I need the {permissions} permission "
        "here. Ask the server's admins, or use me in another channel.",
        permissions=permission_names(lang, flags),
    )


def too_thin(lang: Lang, label: str, width: int, height: int, limit: int) -> str:
    return lang.gettext(
        "The {label} is {width}×{height} px: one side is more than {limit} times the other, "
        "too long and thin to paint with. Crop it closer to a square and send it again.",
        label=input_label(lang, label), width=width, height=height, limit=limit,
    )  # fmt: skip


def shutting_down(lang: Lang) -> str:
    return lang.gettext("I'm restarting and not taking new pictures. Try again in a minute.")


def user_limit_reached(lang: Lang, active: int, limit: int) -> str:
    return lang.ngettext(
        "You already have {active} job queued or running, the most allowed here is "
        "{limit}. Wait for one to finish, or cancel one.",
        "You already have {active} jobs queued or running, the most allowed here is "
        "{limit}. Wait for one to finish, or cancel one.",
        active,
        active=lang.integer(active), limit=lang.integer(limit),
    )  # fmt: skip


def queue_full(lang: Lang, waiting: int) -> str:
    return lang.gettext(
        "The queue is full ({waiting} pictures waiting). Please try again in a few minutes.",
        waiting=lang.integer(waiting),
    )


def engine_unavailable(lang: Lang) -> str:
    return lang.gettext(
        "The painters are not available right now. Please try again in a few minutes."
    )


def slow_down(lang: Lang, retry_after: float) -> str:
    return lang.gettext("Slow down: try again in {time}.", time=lang.duration(retry_after))


def servers_only(lang: Lang) -> str:
    return lang.gettext("This command works in servers only.")


def bot_missing_permissions(lang: Lang, flags: list[str]) -> str:
    return lang.gettext(
        "I need these permissions here: {permissions}.", permissions=permission_names(lang, flags)
    )


def member_missing_permissions(lang: Lang, flags: list[str]) -> str:
    return lang.gettext(
        "You need these permissions here: {permissions}.",
        permissions=permission_names(lang, flags),
    )


def bad_option(lang: Lang) -> str:
    return lang.gettext("One of the options isn't valid. Check them and try again.")


def may_not_post(lang: Lang) -> str:
    return lang.gettext(
        "I'm not allowed to post here. I need Send Messages, Attach Files and Embed Links "
        "in this channel."
    )


def refused(lang: Lang, text: str) -> str:
    """How a refusal or a failure is shown in answer to a command or a click."""
    return clip(lang.gettext("❌ {text}", text=text))


def stale_button(lang: Lang) -> str:
    return lang.gettext(
        "This job isn't running any more: it finished, or the bot restarted since. "
        "Run `/stylize` again if you still want it."
    )


def unknown_button(lang: Lang) -> str:
    return lang.gettext(
        "This button no longer works: it is from an older version of the bot. "
        "Run `/stylize` again if you want a new picture."
    )


def not_yours(lang: Lang) -> str:
    return lang.gettext(
        "That's not yours: only the person who asked, or a moderator, can cancel it."
    )


# Failures: a job that could not be painted or delivered


def generic(lang: Lang) -> str:
    return lang.gettext(
        "Something went wrong on my side. Please try again; if it keeps happening, tell the "
        "server's admins."
    )


def failure(lang: Lang, kind: FailureKind | str, message: str, *, timeout: float) -> str:
    """Words for a job the engine gave up on. Only a bad input's ``message`` is the engine's
    words for the member; any other may be a traceback, which must not reach them."""
    kind = FailureKind(kind)
    if kind is FailureKind.BAD_INPUT:
        return lang.gettext("❌ {text}", text=engine_words(lang, message))
    if kind is FailureKind.TIMEOUT:
        return lang.gettext(
            "❌ This picture took longer than the {limit} limit and was stopped. Try a "
            "smaller size or quality: draft.",
            limit=lang.duration(timeout),
        )
    if kind is FailureKind.OUT_OF_MEMORY:
        return lang.gettext("❌ The server ran out of memory on this picture. Try a smaller size.")
    if kind is FailureKind.WORKER_CRASHED:
        return lang.gettext(
            "❌ The painter crashed while working on your picture. Please try again."
        )
    return lang.gettext("❌ {text}", text=generic(lang))


def cannot_post(lang: Lang) -> str:
    return lang.gettext(
        "❌ Your picture is ready, but I may not post in that channel and couldn't DM you. "
        "Ask the server's admins to let me send messages and attach files there."
    )


def inputs_lost(lang: Lang) -> str:
    return lang.gettext(
        "❌ Your pictures were lost while the bot restarted. Please run `/stylize` again."
    )


def keeps_crashing(lang: Lang) -> str:
    return lang.gettext(
        "❌ The bot stopped several times while painting this picture, so it gave up on it. "
        "Try a smaller size or quality: draft."
    )


def result_lost(lang: Lang, mention: str) -> str:
    return lang.gettext(
        "{mention}, your picture was made but I couldn't post it here. Please try again.",
        mention=mention,
    )


def verbatim(lang: Lang, text: str) -> str:
    """A text already written (an outbox item kept before texts waited for their reader)."""
    return text


# Server policy (/stylize-admin), the Delete button, and forgetting a member

DELETE_EMOJI = "🗑️"
SPOILER_PREFIX = "SPOILER_"
"""Discord shows an attachment whose file name starts so as a spoiler."""


def delete_label(lang: Lang) -> str:
    return lang.gettext("Delete")


def forget_confirm_label(lang: Lang) -> str:
    return lang.gettext("Yes, delete everything")


def former_member(lang: Lang) -> str:
    return lang.gettext("a former member")


def channel_mention(channel_id: int) -> str:
    return f"<#{channel_id}>"


def role_mention(role_id: int, guild_id: int) -> str:
    """@everyone's id is the server's; Discord shows ``<@&guild id>`` oddly, so name it."""
    return "@everyone" if role_id == guild_id else f"<@&{role_id}>"


def timestamp(unix: int, style: str = "R") -> str:
    """A Discord timestamp: each member sees it in their own time zone (``R``: "in 3 hours")."""
    return f"<t:{unix}:{style}>"


def added_by(lang: Lang, user_id: int) -> str:
    """Who saved a style: a mention, or "a former member" once they asked to be forgotten."""
    return former_member(lang) if user_id == 0 else mention(user_id)


def style_entry(lang: Lang, user_id: int, size: int) -> str:
    return gallery_entry(lang, added_by(lang, user_id), size)


def channel_not_allowed(lang: Lang, channel_ids: list[int]) -> str:
    where = lang.list([channel_mention(c) for c in channel_ids])
    return lang.gettext(
        "In this server, the bot paints only in {channels}. Try it there.", channels=where
    )


def daily_quota_reached(lang: Lang, limit: int, resets_at: int) -> str:
    if limit == 0:
        return lang.gettext(
            "Your roles in this server don't include any pictures a day. Ask the server's "
            "moderators if you think they should."
        )
    return lang.ngettext(
        "You've had your {limit} picture for today in this server. You can ask again "
        "{when} (at {time}), or ask the server's moderators for a role with a higher limit.",
        "You've had your {limit} pictures for today in this server. You can ask again "
        "{when} (at {time}), or ask the server's moderators for a role with a higher limit.",
        limit,
        limit=lang.integer(limit),
        when=timestamp(resets_at),
        time=timestamp(resets_at, "t"),
    )


def member_blocked(lang: Lang) -> str:
    return lang.gettext(
        "The moderators of this server have stopped you from using the bot here. Ask them "
        "if you think that's a mistake."
    )


def size_lowered(lang: Lang, max_size: int) -> str:
    return lang.gettext(
        "📏 Your roles here allow pictures up to {size} px: this one is that size.",
        size=max_size,
    )


def admin_needs_manage_server(lang: Lang) -> str:
    return lang.gettext(
        "Only members with the **Manage Server** permission can change the bot's settings here."
    )


def channels_everywhere(lang: Lang) -> str:
    return lang.gettext("📍 The bot now works in every channel of this server.")


def channels_set(lang: Lang, channel_ids: list[int]) -> str:
    where = lang.list([channel_mention(c) for c in channel_ids])
    return lang.gettext(
        "📍 The bot now works only in {channels}. Add more with `/stylize-admin channels "
        "add:`, or allow every channel again with `everywhere:True`.",
        channels=where,
    )


def channels_usage(lang: Lang) -> str:
    return lang.gettext(
        "Name a channel to `add` or `remove`, or set `everywhere:True` to allow every channel."
    )


def limit_text(lang: Lang, daily: int | None, max_size: int | None) -> str:
    per_day = (
        lang.gettext("no daily limit")
        if daily is None
        else lang.gettext("{daily} a day", daily=lang.integer(daily))
    )
    size = (
        lang.gettext("any size")
        if max_size is None
        else lang.gettext("up to {size} px", size=max_size)
    )
    return lang.gettext("{per_day}, {size}", per_day=per_day, size=size)


def limits_set(
    lang: Lang, role: str, daily: int | None, max_size: int | None, *, everyone_limited: bool
) -> str:
    text = lang.gettext("📏 {role}: {limits}.", role=role, limits=limit_text(lang, daily, max_size))
    if not everyone_limited:
        text += " " + lang.gettext(
            "Note: @everyone has no limits, and a member gets the most generous of their "
            "roles, so this binds only once @everyone has limits too "
            "(`/stylize-admin limits role:@everyone`)."
        )
    return text


def limits_removed(lang: Lang, role: str) -> str:
    return lang.gettext("📏 {role} no longer has limits of its own.", role=role)


def member_blocked_now(lang: Lang, member: str) -> str:
    return lang.gettext(
        "⛔ {member} can no longer use the bot in this server (commands and buttons).",
        member=member,
    )


def member_unblocked(lang: Lang, member: str) -> str:
    return lang.gettext("✅ {member} can use the bot in this server again.", member=member)


def spoiler_words(lang: Lang, mode: str) -> str:
    if mode == "off":
        return lang.gettext("never posted as spoilers")
    if mode == "always":
        return lang.gettext("always posted as spoilers")
    if mode == "outside_nsfw":
        return lang.gettext("posted as spoilers outside age-restricted channels")
    return mode


def spoiler_set(lang: Lang, mode: str) -> str:
    return lang.gettext(
        "🙈 From now on, results are {spoilers}.", spoilers=spoiler_words(lang, mode)
    )


def server_policy(
    lang: Lang,
    guild_id: int,
    channel_ids: list[int],
    limits: list[tuple[int, int | None, int | None]],
    blocked: list[int],
    spoiler: str,
) -> str:
    """``/stylize-admin show``; ``limits``: (role id, daily, max size)."""
    where = (
        lang.gettext("every channel")
        if not channel_ids
        else lang.list([channel_mention(c) for c in channel_ids])
    )
    lines = [
        lang.gettext("⚙️ **The bot in this server**"),
        lang.gettext("Channels: {channels}", channels=where),
    ]
    if limits:
        lines.append(lang.gettext("Limits per role (a member gets the most generous of theirs):"))
        lines += [f"• {role_mention(r, guild_id)}: {limit_text(lang, d, s)}" for r, d, s in limits]
    else:
        lines.append(lang.gettext("Limits: none (anyone may paint as often as the queue allows)"))
    who = lang.list([mention(u) for u in blocked]) if blocked else lang.gettext("nobody")
    lines.append(lang.gettext("Blocked: {members}", members=who))
    lines.append(
        lang.gettext("Spoilers: results are {spoilers}", spoilers=spoiler_words(lang, spoiler))
    )
    return clip("\n".join(lines))


def service_status(
    lang: Lang,
    *,
    waiting: int,
    running: int,
    capacity: int,
    devices: list[str],
    outbox_backlog: int,
    jobs_today: int,
    failures_today: int,
) -> str:
    painters = ", ".join(devices) if devices else lang.gettext("none up")
    return "\n".join(
        [
            lang.gettext("📊 **The bot now**"),
            lang.gettext(
                "Waiting: {waiting} · Running: {running}",
                waiting=lang.integer(waiting),
                running=lang.integer(running),
            ),
            lang.gettext(
                "Engine capacity: {capacity} at once ({painters})",
                capacity=lang.integer(capacity),
                painters=painters,
            ),
            lang.gettext(
                "Results and notices still to deliver: {backlog}",
                backlog=lang.integer(outbox_backlog),
            ),
            lang.gettext(
                "This server today (UTC): {jobs} pictures asked for, {failures} failed",
                jobs=lang.integer(jobs_today),
                failures=lang.integer(failures_today),
            ),
        ]
    )


def forgotten(lang: Lang, jobs: int, files: int, size: int, styles: int, *, who: str | None) -> str:
    """What forgetting a member deleted; ``who``: the member (an admin's request), None for
    the member themselves."""
    records = lang.ngettext(
        "{jobs} job record", "{jobs} job records", jobs, jobs=lang.integer(jobs)
    )
    pictures = lang.ngettext(
        "{files} picture", "{files} pictures", files, files=lang.integer(files)
    )
    if who is None:
        text = lang.gettext(
            "🧹 Deleted your {records} (with their interaction tokens) and {pictures} ({size}).",
            records=records,
            pictures=pictures,
            size=lang.file_size(size),
        )
    else:
        text = lang.gettext(
            "🧹 Deleted {member}'s {records} (with their interaction tokens) and {pictures} "
            "({size}).",
            member=who,
            records=records,
            pictures=pictures,
            size=lang.file_size(size),
        )
    if styles:
        text += " " + lang.ngettext(
            "{styles} saved style stays in the gallery, now credited to {former}.",
            "{styles} saved styles stay in the gallery, now credited to {former}.",
            styles,
            styles=lang.integer(styles),
            former=former_member(lang),
        )
    return text


def forget_confirm(lang: Lang) -> str:
    return lang.gettext(
        "This deletes what the bot keeps about you in every server: your pictures, results "
        "and job records, and cancels your pictures still waiting. Styles you saved stay in "
        "their server's gallery, credited to {former}. This can't be undone.",
        former=former_member(lang),
    )


def forget_not_yours(lang: Lang) -> str:
    return lang.gettext(
        "Only the member who asked can confirm this. Use `/stylize-data forget` yourself."
    )


def result_deleted_now(lang: Lang) -> str:
    return lang.gettext("🗑️ Deleted the picture, and the photos the bot kept for it.")


def not_yours_to_delete(lang: Lang) -> str:
    return lang.gettext(
        "Only the person who asked for this picture, or a moderator (Manage Messages), can "
        "delete it."
    )


def result_was_deleted(lang: Lang) -> str:
    return lang.gettext(
        "This picture was deleted, with the photos it was made from, so this button can't "
        "make another version. Run `/stylize` again with them."
    )


# Texts that wait for their reader


@dataclass(frozen=True)
class Text:
    """A text of this module whose reader is not known yet: a function's name and its
    arguments (plain JSON values). Call it with a ``Lang`` to write it out; ``dumps`` and
    ``loads`` keep it in the journal's outbox."""

    name: str
    args: Mapping[str, Any]

    def __call__(self, lang: Lang) -> str:
        return _DEFERRABLE[self.name](lang, **self.args)

    def dumps(self) -> str:
        return json.dumps({"text": self.name, "args": dict(self.args)}, ensure_ascii=False)

    @staticmethod
    def loads(stored: str) -> Text:
        """From ``dumps`` (the journal's migration 4 wrapped the texts kept before as
        ``verbatim``); raises ``ValueError`` for anything else."""
        try:
            fields = json.loads(stored)
            text = Text(str(fields["text"]), dict(fields["args"]))
        except (TypeError, KeyError) as error:
            raise ValueError(f"not a kept text: {type(error).__name__}") from None
        if text.name not in _DEFERRABLE:
            raise ValueError(f"no text called {text.name!r}")
        return text


def later(fn: Callable[Concatenate[Lang, P], str], *args: P.args, **kwargs: P.kwargs) -> Text:
    """``fn``'s text (a function of this module), to be written in its reader's language
    once known: ``later(messages.queue_full, 12)``."""
    if _DEFERRABLE.get(fn.__name__) is not fn:
        raise ValueError(f"{fn.__name__} is not a text of bot.messages")
    bound = inspect.signature(fn).bind(None, *args, **kwargs)
    arguments = {k: v for k, v in bound.arguments.items() if k != "lang"}
    json.dumps(arguments)  # plain values only: the outbox keeps them
    return Text(fn.__name__, arguments)


_DEFERRABLE: dict[str, Callable[..., str]] = {
    name: value
    for name, value in dict(globals()).items()
    if inspect.isfunction(value)
    and value.__module__ == __name__
    and next(iter(inspect.signature(value).parameters), None) == "lang"
    and value is not engine_texts
}
