"""End to end: more ways to a picture. The message menus ("Stylize this photo", "Paint my
avatar like this") on attachments and embed images, the pictures they can't use, and the
Bigger button, with the real bot (discord.py, the local backend, random weights on the CPU)
against the fake Discord; the last test restarts the bot in the middle of each.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot import gallery
from bot.config import BotSettings
from tests.e2e_backend import Harness, e2e_settings
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage, FakeUser, payloads
from tests.pictures import png

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(900)]

PHOTO_MENU = "Stylize this photo"
AVATAR_MENU = "Paint my avatar like this"
EPHEMERAL = 1 << 6
MAX_SIZE = 64  # STYLIZE_MAX_SIZE here: Bigger reaches it from 32 px in one click
JOB_ID = re.compile(r"^stylize:(?:reroll|stronger|weaker|bigger):([0-9a-f]{32})$")
PICK_ID = re.compile(r"^stylize:pick:[0-9a-f]{32}$")


def settings_for(fake: FakeDiscord, data_dir: Path) -> BotSettings:
    return e2e_settings(fake, data_dir, stylize_max_size=MAX_SIZE, stylize_keep_days=1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    async with FakeDiscord() as fake:
        harness = Harness(fake, tmp_path_factory.mktemp("data"), settings_for)
        await harness.start()
        try:
            yield harness
        finally:
            if harness.run is not None:
                await harness.stop()


async def open_menu(
    h: Harness, name: str, message: FakeMessage, user: FakeUser | None = None
) -> FakeInteraction:
    interaction = await h.fake.invoke_menu(name, message, user=user or h.fake.requester)
    await interaction.wait_callback(timeout=5)
    assert interaction.ack_latency is not None and interaction.ack_latency < 3.0
    return interaction


async def private_answer(h: Harness, interaction: FakeInteraction) -> str:
    """What the member alone was told: a private message, or a private "thinking" filled in."""
    callback = interaction.callbacks[0]
    assert callback["data"] and callback["data"].get("flags", 0) & EPHEMERAL, callback
    if callback["type"] == payloads.CALLBACK_CHANNEL_MESSAGE:
        return str(callback["data"]["content"])
    assert callback["type"] == payloads.CALLBACK_DEFERRED_CHANNEL_MESSAGE
    await h.fake.wait_for(
        lambda: interaction.original is not None and bool(interaction.original.edits), 60
    )
    assert interaction.original is not None and interaction.original.ephemeral
    return interaction.original.content


def job_id_of(result: FakeMessage) -> str:
    [job_id] = {m.group(1) for c in result.custom_ids if (m := JOB_ID.match(c))}
    return job_id


def link_to(h: Harness, message: FakeMessage) -> str:
    return f"https://discord.com/channels/{h.fake.guild_id}/{h.fake.channel_id}/{message.id}"


def post_picture(
    h: Harness, data: bytes, where: str, author: FakeUser | None = None
) -> FakeMessage:
    """A member's message with the picture as an attachment, or as a link to it on Discord
    (an image embed), or in a bot's rich embed."""
    fake = h.fake
    author = author or fake.other_user
    if where == "attachment":
        return fake.post(author, "look", attachments=[(data, "picture.png")])
    stored = fake.store_picture(data, "picture.png")
    if where == "embed":
        embed = payloads.image_embed(stored["url"], stored["proxy_url"], width=None, height=None)
    else:
        embed = payloads.rich_embed_with_image(stored["url"], stored["proxy_url"], title="Art")
    return fake.post(author, stored["url"] if where == "embed" else "", embeds=[embed])


async def save_style(h: Harness, name: str, image: bytes) -> None:
    await gallery.add(h.bot.journal, h.fake.guild_id, name, image, h.fake.moderator.id,
                      gallery.Limits(25, 50 * 1024 * 1024), gate=h.bot.intake_gate)  # fmt: skip


async def pick(h: Harness, menu: FakeInteraction, style: str) -> FakeInteraction:
    """Choose ``style`` in the private select the photo menu answered with."""
    assert menu.original is not None
    [select] = menu.original.selects
    assert PICK_ID.match(select["custom_id"])
    chosen = await h.fake.select(menu.original, select["custom_id"], [style], user=menu.user)
    await chosen.wait_callback(timeout=5)
    assert chosen.ack_latency is not None and chosen.ack_latency < 3.0
    return chosen


def job_file(h: Harness, job_id: str, name: str) -> bytes:
    return (h.data_dir / "jobs" / job_id / name).read_bytes()


# --- registration ------------------------------------------------------------------------------


async def test_the_two_menus_are_registered_beside_the_slash_commands(h: Harness) -> None:
    commands = h.fake.commands
    menus = [c for c in commands if c["type"] == payloads.COMMAND_MESSAGE]
    assert sorted(c["name"] for c in menus) == [AVATAR_MENU, PHOTO_MENU]
    assert all(not c.get("description") and not c.get("options") for c in menus)
    assert {"stylize", "styles"} <= {c["name"] for c in commands if c["type"] == 1}


# --- what a menu can't use ----------------------------------------------------------------------


async def test_with_an_empty_gallery_the_photo_menu_says_how_to_add_a_style(h: Harness) -> None:
    assert await h.bot.journal.styles(h.fake.guild_id) == []
    menu = await open_menu(h, PHOTO_MENU, post_picture(h, png(48, 36), "attachment"))
    text = await private_answer(h, menu)
    assert "no saved styles yet" in text and "`/styles add`" in text, text
    assert h.bot.jobs.runner.active(h.fake.requester.id) == 0


@pytest.mark.parametrize("name", [PHOTO_MENU, AVATAR_MENU])
@pytest.mark.parametrize(
    ("what", "answer"),
    [
        ("text only", "has no picture I can use"),
        ("a sticker", "Stickers can't be painted"),
        ("a link to another site", "a link to another site"),
        ("an address inside the network", "a link to another site"),
        ("a file that is no image", "isn't an image"),
        ("a picture too large", "the limit is 1 MB"),
    ],
)
async def test_a_picture_the_menu_cannot_use_gets_a_private_clear_answer(
    h: Harness, name: str, what: str, answer: str
) -> None:
    fake = h.fake
    await save_style(h, "Unused", png(24, 24))
    try:
        author = fake.other_user
        if what == "text only":
            message = fake.post(author, "just words, https://example.com/page")
        elif what == "a sticker":
            message = fake.post(author, stickers=["wave"])
        elif what in ("a link to another site", "an address inside the network"):
            url = ("https://example.com/cat.png" if what == "a link to another site"
                   else "http://169.254.169.254/latest/meta-data/x.png")  # fmt: skip
            proxy = "https://images-ext-1.discordapp.net/external/abc/https/example.com/cat.png"
            message = fake.post(author, url, embeds=[payloads.image_embed(url, proxy, width=8,
                                                                          height=8)])  # fmt: skip
        elif what == "a file that is no image":
            message = fake.post(author, attachments=[(b"%PDF-1.4 notes", "notes.pdf")])
        else:
            message = fake.post(author, attachments=[(png(700, 700, noise=True), "big.png")])
        downloads = len(fake.cdn_requests)
        menu = await open_menu(h, name, message)
        assert answer in await private_answer(h, menu)
        assert len(fake.cdn_requests) == downloads  # nothing was fetched
        assert h.bot.jobs.runner.active(fake.requester.id) == 0
    finally:
        await h.bot.journal.remove_style(fake.guild_id, "Unused")


# --- Stylize this photo ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["attachment", "embed", "rich embed"])
async def test_stylize_this_photo_paints_the_messages_image_in_a_saved_style(
    h: Harness, where: str
) -> None:
    fake = h.fake
    waves, stars = png(32, 32, noise=True), png(28, 28, noise=True)
    await save_style(h, "Waves", waves)
    await save_style(h, "Stars", stars)
    try:
        photo = png(48, 36)
        message = post_picture(h, photo, where)
        menu = await open_menu(h, PHOTO_MENU, message)
        text = await private_answer(h, menu)
        assert "Pick one of this server's 2 saved styles" in text
        assert menu.original is not None
        [select] = menu.original.selects
        assert [o["value"] for o in select["options"]] == ["Stars", "Waves"]

        chosen = await pick(h, menu, "Waves")
        # As /stylize: "thinking" in the channel, which becomes the status, then the result.
        callback = chosen.callbacks[0]
        assert callback["type"] == payloads.CALLBACK_DEFERRED_CHANNEL_MESSAGE
        assert not (callback["data"] or {}).get("flags", 0) & EPHEMERAL
        result = await h.result_of(chosen)
        await h.idle()
        headline = f"🖼️ The photo in {link_to(h, message)}, in the saved style **Waves**"
        assert result.content.startswith(headline + "\n"), result.content
        assert result.content.split("\n")[1].startswith(fake.requester.mention)
        assert result.attachments and result.attachments[0][0].startswith("stylized-")
        assert chosen.original is not None and chosen.original.edits
        assert chosen.original.edits[0]["content"].startswith(headline)
        job_id = job_id_of(result)
        assert job_file(h, job_id, "content") == photo
        assert job_file(h, job_id, "style-0") == waves
        record = await h.bot.journal.get(job_id)
        assert record is not None and record.origin is not None
        assert (record.origin.kind, record.origin.message_id) == ("photo", message.id)
    finally:
        for name in ("Waves", "Stars"):
            await h.bot.journal.remove_style(fake.guild_id, name)


async def test_a_style_removed_before_the_choice_is_answered(h: Harness) -> None:
    await save_style(h, "Fleeting", png(24, 24))
    menu = await open_menu(h, PHOTO_MENU, post_picture(h, png(48, 36), "attachment"))
    await private_answer(h, menu)
    await h.bot.journal.remove_style(h.fake.guild_id, "Fleeting")
    chosen = await pick(h, menu, "Fleeting")
    assert "no saved style called **Fleeting**" in await private_answer(h, chosen)
    assert h.bot.jobs.runner.active(h.fake.requester.id) == 0


# --- Paint my avatar like this ------------------------------------------------------------------


@pytest.mark.parametrize(("where", "custom"), [("attachment", True), ("embed", False)])
async def test_paint_my_avatar_takes_the_avatar_as_photo_and_the_image_as_style(
    h: Harness, where: str, custom: bool
) -> None:
    fake = h.fake
    user = fake.requester if custom else fake.moderator
    avatar = png(40, 40, noise=True)
    if custom:
        avatar_hash = fake.set_avatar(user, avatar)
    painting = png(30, 30, noise=True)
    message = post_picture(h, painting, where)
    menu = await open_menu(h, AVATAR_MENU, message, user)
    assert menu.callbacks[0]["type"] == payloads.CALLBACK_DEFERRED_CHANNEL_MESSAGE
    result = await h.result_of(menu)
    await h.idle()
    headline = f"🖌️ {user.mention}'s avatar, painted like the picture in {link_to(h, message)}"
    assert result.content.startswith(headline + "\n"), result.content
    job_id = job_id_of(result)
    assert job_file(h, job_id, "style-0") == painting
    fetched = [r.path for r in fake.cdn_requests if "avatars/" in r.path]
    if custom:
        assert job_file(h, job_id, "content") == avatar
        assert fetched[-1] == f"/avatars/{user.id}/{avatar_hash}.png"
    else:  # no avatar of their own: Discord's default one
        assert fetched[-1] == f"/embed/avatars/{(user.id >> 22) % 6}.png"
        assert job_file(h, job_id, "content").startswith(b"\x89PNG")


# --- Bigger -----------------------------------------------------------------------------------


async def test_bigger_continues_a_result_at_twice_the_side_then_is_disabled_at_the_cap(
    h: Harness,
) -> None:
    fake = h.fake
    small = await h.result_of_command(fake.requester, size=32, seed=9, strength=2)
    await h.idle()
    assert "32×24 px" in small.content
    [bigger_button] = [b for b in small.buttons if b["custom_id"].startswith("stylize:bigger:")]
    assert bigger_button["label"] == "⤢ Bigger" and not bigger_button.get("disabled")
    click = await h.click(small, "bigger", fake.requester)
    assert click.callbacks[0]["type"] == payloads.CALLBACK_DEFERRED_CHANNEL_MESSAGE
    larger = await h.result_of(click)
    await h.idle()
    assert larger.content.startswith("⤢ Bigger, 64 px (from the picture with seed 9)\n")
    assert "64×48 px" in larger.content and "seed 9" in larger.content
    assert "strength 2" in larger.content
    # It started from the small result, and painted the same inputs.
    parent_id, job_id = job_id_of(small), job_id_of(larger)
    [small_result] = (h.data_dir / "jobs" / parent_id).glob("result.*")
    assert job_file(h, job_id, "initial") == small_result.read_bytes()
    assert job_file(h, job_id, "content") == job_file(h, parent_id, "content")
    # At STYLIZE_MAX_SIZE: disabled, and Discord's client can't click it.
    [at_cap] = [b for b in larger.buttons if b["custom_id"].startswith("stylize:bigger:")]
    assert at_cap.get("disabled") is True
    with pytest.raises(ValueError, match="disabled"):
        await fake.click(larger, at_cap["custom_id"])


# --- after a restart ----------------------------------------------------------------------------


async def test_each_way_works_across_a_restart(h: Harness) -> None:
    fake = h.fake
    waves = png(32, 32, noise=True)
    await save_style(h, "Waves", waves)
    # Before: a photo waiting for its style, a small result, and an avatar job running.
    photo = png(48, 36)
    photo_message = post_picture(h, photo, "embed")
    menu = await open_menu(h, PHOTO_MENU, photo_message)
    await private_answer(h, menu)
    small = await h.result_of_command(fake.requester, size=32, seed=13)
    await h.idle()
    style_message = post_picture(h, png(30, 30, noise=True), "attachment")
    h.backend.progress.clear()  # the avatar job stays running until the bot stops
    avatar_job = await open_menu(h, AVATAR_MENU, style_message, fake.other_user)
    await fake.wait_for(
        lambda: avatar_job.original is not None and bool(avatar_job.original.edits), 60
    )
    await h.stop()
    # Every photo the bot holds for a pick lives in the journal's folder.
    assert list((h.data_dir / "picks").glob("*.photo"))

    await h.start()
    # The avatar job resumes and posts, still saying where it came from.
    resumed = await h.result_of(avatar_job)
    link = link_to(h, style_message)
    assert resumed.content.startswith(
        f"🖌️ {fake.other_user.mention}'s avatar, painted like the picture in {link}\n"
    ), resumed.content
    # The style picked after the restart queues the job.
    chosen = await pick(h, menu, "Waves")
    result = await h.result_of(chosen)
    assert result.content.startswith(f"🖼️ The photo in {link_to(h, photo_message)}, in the")
    assert job_file(h, job_id_of(result), "content") == photo
    # Bigger on a result posted before the restart.
    click = await h.click(small, "bigger", fake.requester)
    larger = await h.result_of(click)
    await h.idle()
    assert "64×48 px" in larger.content and "seed 13" in larger.content
    await h.bot.journal.remove_style(fake.guild_id, "Waves")


async def test_a_pick_kept_past_its_days_is_answered(h: Harness) -> None:
    await save_style(h, "Late", png(24, 24))
    menu = await open_menu(h, PHOTO_MENU, post_picture(h, png(48, 36), "attachment"))
    await private_answer(h, menu)
    # The retention sweep, as it runs once the kept days have passed.
    await h.bot.journal.purge(-1)
    chosen = await pick(h, menu, "Late")
    assert "no longer kept" in await private_answer(h, chosen)
    await h.bot.journal.remove_style(h.fake.guild_id, "Late")
