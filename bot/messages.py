"""Every text the bot shows its users, as constants and pure functions of plain values: the
statuses and results, the follow-up buttons' words, the refusals and the failures.

``bot.errors`` decides which of these an error gets; a later localisation replaces this module's
words and nothing else. No Discord here (a mention is plain ``<@id>`` text).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from engine.images import format_extension, format_label
from engine.jobs import FailureKind

# Discord's own cap on message content.
MAX_CONTENT = 2000
MAX_ECHO = 100
"""Characters of something a member typed that a message repeats back (or a log records)."""


def duration(seconds: float) -> str:
    """``"45 s"``, ``"2 min 05 s"``, ``"1 h 03 min"``: short, and exact enough for a person."""
    if seconds < 0 or math.isnan(seconds):
        seconds = 0
    if seconds < 1:
        return "under a second"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def file_size(size: int) -> str:
    """Bytes in the units Discord's upload limits are given in (1 MB = 1024 × 1024 B)."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    value = size / (1024 * 1024)
    return f"{value:.0f} MB" if value >= 100 or value.is_integer() else f"{value:.1f} MB"


def number(value: float) -> str:
    """A setting's value without float noise: 1.0 → ``"1"``, 0.3333 → ``"0.33"``."""
    return f"{value:.3g}"


def mention(user_id: int) -> str:
    """How a message names a member (Discord turns it into their name)."""
    return f"<@{user_id}>"


def percent(step: int, total: int) -> int:
    if total <= 0:
        return 0
    return max(0, min(100, math.floor(100 * step / total)))


# Status message


def queued(position: int) -> str:
    if position <= 1:
        return "⏳ Queued: you're next. I'll start as soon as a painter is free."
    ahead = position - 1
    jobs = "job" if ahead == 1 else "jobs"
    return f"⏳ Queued: position **{position}** ({ahead} {jobs} ahead of yours)."


def starting() -> str:
    return "🎨 Starting: preparing your pictures…"


def progress(step: int, total: int, eta: float) -> str:
    text = f"🎨 Painting: step {step}/{total} ({percent(step, total)}%)"
    if step < total and eta > 0:
        text += f", about {duration(eta)} left"
    return text + "."


def cancelling() -> str:
    return "🛑 Cancelling…"


def cancelled(by_mention: str | None, *, own: bool) -> str:
    if by_mention is None or own:
        return "🛑 Cancelled."
    return f"🛑 Cancelled by {by_mention}."


def restarting(*, engine_broken: bool = False) -> str:
    why = "The painters stopped working, so the bot" if engine_broken else "The bot"
    return f"🔄 {why} is restarting: your picture will resume as soon as it is back."


def resumed(text: str) -> str:
    """The first status after a restart: say so, then the usual state."""
    return f"🔄 Back after a restart, your picture resumes.\n{text}"


def done_status(seconds: float, result_url: str | None) -> str:
    where = f": {result_url}" if result_url else ", the picture is posted below."
    return f"✅ Done in {duration(seconds)}{where}"


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


def result(mention: str, info: ResultInfo, *, upload_limit: int) -> str:
    parts = [
        f"{info.width}×{info.height} px",
        f"{info.steps} steps",
        f"strength {number(info.strength)}",
    ]
    if info.preserve_colors:
        parts.append("photo's colours kept")
    parts += [f"seed {info.seed}", f"took {duration(info.seconds)}"]
    label = format_label(info.format)
    file_note = f"{label}, {file_size(info.size_bytes)}"
    if info.reencoded_to_fit:
        file_note += f": PNG would not fit the {file_size(upload_limit)} upload limit"
    return f"{mention}, here is your picture: {', '.join(parts)} ({file_note})."


def clip(text: str) -> str:
    """Keep a message within Discord's content limit."""
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"


def echo(typed: str, limit: int = MAX_ECHO) -> str:
    """Something a member typed, as a message repeats it: runs of spaces made one, and cut
    to ``limit`` characters (a name may be thousands long; Discord refuses a message over
    2000)."""
    text = " ".join(typed.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


CANCEL_LABEL = "Cancel"


# Follow-ups on a result (Re-roll, Stronger, Weaker)


REROLL_LABEL = "Re-roll"
REROLL_EMOJI = "🎲"
STRONGER_LABEL = "Stronger"
STRONGER_EMOJI = "➕"
WEAKER_LABEL = "Weaker"
WEAKER_EMOJI = "➖"


def reroll_headline(strength: float, parent_seed: int) -> str:
    """What a Re-roll job is, on its status and its result."""
    return f"{REROLL_EMOJI} Re-roll of the picture with seed {parent_seed}"


def stronger_headline(strength: float, parent_seed: int) -> str:
    return (
        f"{STRONGER_EMOJI} Stronger, strength {number(strength)} (from the picture with seed "
        f"{parent_seed})"
    )


def weaker_headline(strength: float, parent_seed: int) -> str:
    return (
        f"{WEAKER_EMOJI} Weaker, strength {number(strength)} (from the picture with seed "
        f"{parent_seed})"
    )


def follow_up_lowered(size: int, steps: int) -> str:
    """A follow-up whose size or steps the server's current limits lowered."""
    return (
        f"📏 This server's limits are lower than when the first picture was made: this one "
        f"is {size} px and {steps} steps at most."
    )


def follow_up_expired(keep_days: float) -> str:
    days = "day" if keep_days == 1 else "days"
    return (
        f"These pictures are no longer kept (the bot keeps them {number(keep_days)} {days}), "
        "so this button can't make another version. Run `/stylize` again with them."
    )


# The servers' galleries of saved styles (/styles)


def gallery_bad_name(max_length: int) -> str:
    return f"Give the style a name of 1 to {max_length} characters."


def gallery_name_taken(name: str) -> str:
    return (
        f"This server already has a style called **{name}**. Pick another name, or remove "
        f"that one first with `/styles remove name:{name}`."
    )


def gallery_full(max_styles: int) -> str:
    return (
        f"This server's gallery is full: it holds at most {max_styles} styles. Remove one "
        "with `/styles remove` first."
    )


def gallery_too_large(max_bytes: int) -> str:
    return (
        f"This style would take the server's gallery past its {file_size(max_bytes)} limit. "
        "Remove a style with `/styles remove`, or save a smaller image."
    )


def gallery_no_such_style(name: str) -> str:
    return f"This server has no saved style called **{echo(name)}**. See them with `/styles list`."


def gallery_needs_manage_server() -> str:
    return "Only members with the **Manage Server** permission can change this server's styles."


def gallery_added(name: str) -> str:
    return f"🖼️ Saved the style **{name}**. Use it with `/stylize saved_style:{name}`."


def gallery_removed(name: str) -> str:
    return f"🗑️ Removed the style **{name}**."


def gallery_empty() -> str:
    return (
        "This server has no saved styles yet. A member with Manage Server can add one with "
        "`/styles add`."
    )


def gallery_page(page: int, pages: int, total: int) -> str:
    styles = "style" if total == 1 else "styles"
    text = f"🖼️ This server's gallery: {total} {styles}, page {page} of {pages}."
    if page < pages:
        text += f" Next: `/styles list page:{page + 1}`."
    return text + " Use one with `/stylize saved_style:<name>`."


def style_one_or_other() -> str:
    return (
        "Give a style: either attach one as `style`, or pick one of this server's with "
        "`saved_style`, not both."
    )


# Refusals: a request turned down for a reason the member can fix


def file_too_large(label: str, size: int | None, limit: int) -> str:
    got = f" is {file_size(size)}" if size is not None else " is too large"
    return f"The {label}{got}; the limit is {file_size(limit)}. Send a smaller file."


def not_an_image(label: str) -> str:
    return f"The {label} isn't an image. Attach a PNG, JPEG or WebP picture."


def download_failed(label: str) -> str:
    return f"I couldn't download the {label} from Discord. Please send it again."


def empty_file() -> str:
    return "The file is empty."


def bad_image(label: str, reason: str) -> str:
    """``reason``: the engine's words for what is wrong with the picture."""
    return f"The {label}: {reason}"


def missing_permissions(names: list[str]) -> str:
    return (
        f"I can't post your picture in this channel: I need the {', '.join(names)} "
        "permission here. Ask the server's admins, or use me in another channel."
    )


def too_thin(label: str, width: int, height: int, limit: int) -> str:
    return (
        f"The {label} is {width}×{height} px: one side is more than {limit} times the other, "
        "too long and thin to paint with. Crop it closer to a square and send it again."
    )


def shutting_down() -> str:
    return "I'm restarting and not taking new pictures. Try again in a minute."


def user_limit_reached(active: int, limit: int) -> str:
    jobs = "job" if active == 1 else "jobs"
    return (
        f"You already have {active} {jobs} queued or running, the most allowed here is "
        f"{limit}. Wait for one to finish, or cancel one."
    )


def queue_full(waiting: int) -> str:
    return f"The queue is full ({waiting} pictures waiting). Please try again in a few minutes."


def engine_unavailable() -> str:
    return "The painters are not available right now. Please try again in a few minutes."


def slow_down(retry_after: float) -> str:
    return f"Slow down: try again in {duration(retry_after)}."


def servers_only() -> str:
    return "This command works in servers only."


def bot_missing_permissions(names: list[str]) -> str:
    return f"I need these permissions here: {', '.join(names)}."


def member_missing_permissions(names: list[str]) -> str:
    return f"You need these permissions here: {', '.join(names)}."


def bad_option() -> str:
    return "One of the options isn't valid. Check them and try again."


def may_not_post() -> str:
    return (
        "I'm not allowed to post here. I need Send Messages, Attach Files and Embed Links "
        "in this channel."
    )


def refused(text: str) -> str:
    """How a refusal or a failure is shown in answer to a command or a click."""
    return clip(f"❌ {text}")


def stale_button() -> str:
    return (
        "This job isn't running any more: it finished, or the bot restarted since. "
        "Run `/stylize` again if you still want it."
    )


def unknown_button() -> str:
    return (
        "This button no longer works: it is from an older version of the bot. "
        "Run `/stylize` again if you want a new picture."
    )


def not_yours() -> str:
    return "That's not yours: only the person who asked, or a moderator, can cancel it."


# Failures: a job that could not be painted or delivered

GENERIC = (
    "Something went wrong on my side. Please try again; if it keeps happening, tell the "
    "server's admins."
)


def failure(kind: FailureKind | str, message: str, *, timeout: float) -> str:
    """Words for a job the engine gave up on. Only a bad input's ``message`` is the engine's
    words for the member; any other may be a traceback, which must not reach them."""
    kind = FailureKind(kind)
    if kind is FailureKind.BAD_INPUT:
        return f"❌ {message}"
    if kind is FailureKind.TIMEOUT:
        return (
            f"❌ This picture took longer than the {duration(timeout)} limit and was "
            "stopped. Try a smaller size or quality: draft."
        )
    if kind is FailureKind.OUT_OF_MEMORY:
        return "❌ The server ran out of memory on this picture. Try a smaller size."
    if kind is FailureKind.WORKER_CRASHED:
        return "❌ The painter crashed while working on your picture. Please try again."
    return f"❌ {GENERIC}"


def cannot_post() -> str:
    return (
        "❌ Your picture is ready, but I may not post in that channel and couldn't DM you. "
        "Ask the server's admins to let me send messages and attach files there."
    )


def inputs_lost() -> str:
    return "❌ Your pictures were lost while the bot restarted. Please run `/stylize` again."


def keeps_crashing() -> str:
    return (
        "❌ The bot stopped several times while painting this picture, so it gave up on it. "
        "Try a smaller size or quality: draft."
    )


def result_lost(mention: str) -> str:
    return f"{mention}, your picture was made but I couldn't post it here. Please try again."


# Server policy (/stylize-admin), the Delete button, and forgetting a member

DELETE_LABEL = "Delete"
DELETE_EMOJI = "🗑️"
FORGET_CONFIRM_LABEL = "Yes, delete everything"
SPOILER_PREFIX = "SPOILER_"
"""Discord shows an attachment whose file name starts so as a spoiler."""
FORMER_MEMBER = "a former member"


def channel_mention(channel_id: int) -> str:
    return f"<#{channel_id}>"


def role_mention(role_id: int, guild_id: int) -> str:
    """@everyone's id is the server's; Discord shows ``<@&guild id>`` oddly, so name it."""
    return "@everyone" if role_id == guild_id else f"<@&{role_id}>"


def timestamp(unix: int, style: str = "R") -> str:
    """A Discord timestamp: each member sees it in their own time zone (``R``: "in 3 hours")."""
    return f"<t:{unix}:{style}>"


def added_by(user_id: int) -> str:
    """Who saved a style: a mention, or "a former member" once they asked to be forgotten."""
    return FORMER_MEMBER if user_id == 0 else mention(user_id)


def style_entry(user_id: int, size: int) -> str:
    return f"Added by {added_by(user_id)}, {file_size(size)}"


def channel_not_allowed(channel_ids: list[int]) -> str:
    where = ", ".join(channel_mention(c) for c in channel_ids)
    return f"In this server, the bot paints only in {where}. Try it there."


def daily_quota_reached(limit: int, resets_at: int) -> str:
    if limit == 0:
        return (
            "Your roles in this server don't include any pictures a day. Ask the server's "
            "moderators if you think they should."
        )
    pictures = "picture" if limit == 1 else "pictures"
    return (
        f"You've had your {limit} {pictures} for today in this server. You can ask again "
        f"{timestamp(resets_at)} (at {timestamp(resets_at, 't')}), or ask the server's "
        "moderators for a role with a higher limit."
    )


def member_blocked() -> str:
    return (
        "The moderators of this server have stopped you from using the bot here. Ask them "
        "if you think that's a mistake."
    )


def size_lowered(max_size: int) -> str:
    return f"📏 Your roles here allow pictures up to {max_size} px: this one is that size."


def admin_needs_manage_server() -> str:
    return "Only members with the **Manage Server** permission can change the bot's settings here."


def channels_everywhere() -> str:
    return "📍 The bot now works in every channel of this server."


def channels_set(channel_ids: list[int]) -> str:
    where = ", ".join(channel_mention(c) for c in channel_ids)
    return (
        f"📍 The bot now works only in {where}. Add more with `/stylize-admin channels add:`, "
        "or allow every channel again with `everywhere:True`."
    )


def channels_usage() -> str:
    return "Name a channel to `add` or `remove`, or set `everywhere:True` to allow every channel."


def limit_text(daily: int | None, max_size: int | None) -> str:
    per_day = "no daily limit" if daily is None else f"{daily} a day"
    size = "any size" if max_size is None else f"up to {max_size} px"
    return f"{per_day}, {size}"


def limits_set(
    role: str, daily: int | None, max_size: int | None, *, everyone_limited: bool
) -> str:
    text = f"📏 {role}: {limit_text(daily, max_size)}."
    if not everyone_limited:
        text += (
            " Note: @everyone has no limits, and a member gets the most generous of their "
            "roles, so this binds only once @everyone has limits too "
            "(`/stylize-admin limits role:@everyone`)."
        )
    return text


def limits_removed(role: str) -> str:
    return f"📏 {role} no longer has limits of its own."


def member_blocked_now(member: str) -> str:
    return f"⛔ {member} can no longer use the bot in this server (commands and buttons)."


def member_unblocked(member: str) -> str:
    return f"✅ {member} can use the bot in this server again."


SPOILER_WORDS = {
    "off": "never posted as spoilers",
    "always": "always posted as spoilers",
    "outside_nsfw": "posted as spoilers outside age-restricted channels",
}


def spoiler_set(mode: str) -> str:
    return f"🙈 From now on, results are {SPOILER_WORDS.get(mode, mode)}."


def server_policy(
    guild_id: int,
    channel_ids: list[int],
    limits: list[tuple[int, int | None, int | None]],
    blocked: list[int],
    spoiler: str,
) -> str:
    """``/stylize-admin show``; ``limits``: (role id, daily, max size)."""
    where = (
        "every channel" if not channel_ids else ", ".join(channel_mention(c) for c in channel_ids)
    )
    lines = ["⚙️ **The bot in this server**", f"Channels: {where}"]
    if limits:
        lines.append("Limits per role (a member gets the most generous of theirs):")
        lines += [f"• {role_mention(r, guild_id)}: {limit_text(d, s)}" for r, d, s in limits]
    else:
        lines.append("Limits: none (anyone may paint as often as the queue allows)")
    lines.append("Blocked: " + (", ".join(mention(u) for u in blocked) if blocked else "nobody"))
    lines.append(f"Spoilers: results are {SPOILER_WORDS.get(spoiler, spoiler)}")
    return clip("\n".join(lines))


def service_status(
    *,
    waiting: int,
    running: int,
    capacity: int,
    devices: list[str],
    outbox_backlog: int,
    jobs_today: int,
    failures_today: int,
) -> str:
    painters = ", ".join(devices) if devices else "none up"
    return "\n".join(
        [
            "📊 **The bot now**",
            f"Waiting: {waiting} · Running: {running}",
            f"Engine capacity: {capacity} at once ({painters})",
            f"Results and notices still to deliver: {outbox_backlog}",
            f"This server today (UTC): {jobs_today} pictures asked for, {failures_today} failed",
        ]
    )


def forgotten(jobs: int, files: int, size: int, styles: int, *, who: str | None) -> str:
    """What forgetting a member deleted; ``who``: the member (an admin's request), None for
    the member themselves."""
    subject = "your" if who is None else f"{who}'s"
    pictures = "picture" if files == 1 else "pictures"
    records = "record" if jobs == 1 else "records"
    text = (
        f"🧹 Deleted {subject} {jobs} job {records} (with their interaction tokens) and "
        f"{files} {pictures} ({file_size(size)})."
    )
    if styles:
        saved = "style stays" if styles == 1 else "styles stay"
        text += f" {styles} saved {saved} in the gallery, now credited to {FORMER_MEMBER}."
    return text


def forget_confirm() -> str:
    return (
        "This deletes what the bot keeps about you in every server: your pictures, results "
        "and job records, and cancels your pictures still waiting. Styles you saved stay in "
        f"their server's gallery, credited to {FORMER_MEMBER}. This can't be undone."
    )


def forget_not_yours() -> str:
    return "Only the member who asked can confirm this. Use `/stylize-data forget` yourself."


def result_deleted_now() -> str:
    return "🗑️ Deleted the picture, and the photos the bot kept for it."


def not_yours_to_delete() -> str:
    return (
        "Only the person who asked for this picture, or a moderator (Manage Messages), can "
        "delete it."
    )


def result_was_deleted() -> str:
    return (
        "This picture was deleted, with the photos it was made from, so this button can't "
        "make another version. Run `/stylize` again with them."
    )
