"""End to end: the follow-up buttons on a result (Re-roll, Stronger, Weaker) and the server's
gallery of saved styles (/styles, /stylize saved_style), with the real bot (discord.py, the
local backend, random weights on the CPU) against the fake Discord.

One fake and one data folder serve the module; the bot is restarted in the middle, on the same
journal, to show that a result posted before a restart keeps working buttons.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot import journal as journal_module
from bot.config import BotSettings
from tests.e2e_backend import RESULT_TIMEOUT, Harness, e2e_settings
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage, FakeUser, payloads
from tests.pictures import png

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(900)]

TOKEN = "fake-token-XYZ.followups-SECRET"
EPHEMERAL = 1 << 6
GALLERY_MAX = 2
# The buttons under a result: the follow-ups, then Delete.
FOLLOW_UP_ID = re.compile(r"^stylize:(reroll|stronger|weaker|bigger|delete):([0-9a-f]{32})$")


def settings_for(fake: FakeDiscord, data_dir: Path) -> BotSettings:
    return e2e_settings(
        fake,
        data_dir,
        stylize_queue_per_user=1,
        stylize_keep_days=1,
        stylize_gallery_max_styles=GALLERY_MAX,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    async with FakeDiscord(token=TOKEN) as fake:
        harness = Harness(fake, tmp_path_factory.mktemp("data"), settings_for)
        await harness.start()
        try:
            yield harness
        finally:
            if harness.run is not None:
                await harness.stop()


def settings_of(content: str) -> dict[str, str]:
    """The settings a result message states: ``{"strength": "2", "seed": "5", ...}``."""
    found = dict(re.findall(r"(strength|seed) (\d+(?:\.\d+)?)", content.split("\n")[-1]))
    found["size"] = re.search(r"\d+×\d+ px", content).group(0)  # type: ignore[union-attr]
    found["steps"] = re.search(r"(\d+) steps", content).group(1)  # type: ignore[union-attr]
    return found


def derivation(data_dir: Path, job_id: str) -> tuple[str | None, str | None]:
    """(the parent's id, the derivation) the journal holds for a job."""
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        row = db.execute(
            "SELECT parent_id, derivation FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


async def test_a_result_carries_the_four_follow_ups_and_delete(h: Harness) -> None:
    result = await h.result_of_command(h.fake.requester, seed=5)
    await h.idle()
    [row] = result.components
    labels = [b["label"] for b in row["components"]]
    assert labels == ["Re-roll", "Stronger", "Weaker", "⤢ Bigger", "Delete"]
    ids = [FOLLOW_UP_ID.match(c) for c in result.custom_ids]
    assert all(ids) and len({m.group(2) for m in ids if m}) == 1
    assert all(len(c) <= 100 for c in result.custom_ids)


@pytest.mark.parametrize(
    ("kind", "headline", "strength"),
    [
        ("reroll", "🎲 Re-roll of the picture with seed 5", "1"),
        ("stronger", "➕ Stronger, strength 2", "2"),
        ("weaker", "➖ Weaker, strength 0.5", "0.5"),
    ],
)
async def test_each_button_gives_a_new_result(
    h: Harness, kind: str, headline: str, strength: str
) -> None:
    fake = h.fake
    original = await h.result_of_command(fake.requester, seed=5)
    click = await h.click(original, kind, fake.requester)
    assert click.callbacks[0]["type"] == 5  # "thinking": a new status message

    # Its status shows what it derives from.
    await fake.wait_for(lambda: click.original is not None and bool(click.original.edits), 60)
    assert click.original is not None
    assert click.original.edits[0]["content"].startswith(headline)

    result = await h.result_of(click)
    await h.idle()
    assert result.content.startswith(headline), result.content
    assert result.attachments and result.attachments[0][0].startswith("stylized-")
    before, after = settings_of(original.content), settings_of(result.content)
    assert after["strength"] == strength
    assert after["size"] == before["size"] and after["steps"] == before["steps"]
    if kind == "reroll":
        assert after["seed"] != before["seed"]
    else:
        assert after["seed"] == before["seed"]
    # The new result has buttons of its own, for its own job.
    [own_id] = {c.rsplit(":", 1)[1] for c in result.custom_ids}
    [parent_id] = {c.rsplit(":", 1)[1] for c in original.custom_ids}
    assert own_id != parent_id
    # The journal records the derivation, and the job has its own copy of the inputs.
    recorded_parent, text = derivation(h.data_dir, own_id)
    assert recorded_parent == parent_id and text is not None and kind in text
    assert (h.data_dir / "jobs" / own_id / "content").is_file()


async def test_a_click_by_another_member_runs_under_their_own_limit(h: Harness) -> None:
    fake = h.fake
    original = await h.result_of_command(fake.requester, seed=11)
    await h.idle()
    h.backend.progress.clear()  # the requester's next job stays running: they are at their limit
    try:
        held = await fake.invoke(
            "stylize",
            {
                "content": fake.add_attachment(png(48, 36), "photo.png"),
                "style": fake.add_attachment(png(32, 32, noise=True), "painting.png"),
            },
            user=fake.requester,
        )
        await held.wait_callback(timeout=5)
        await fake.wait_for(lambda: held.original is not None and bool(held.original.edits), 60)

        own = await h.click(original, "stronger", fake.requester)
        assert own.callbacks[0]["type"] == 4
        assert own.callbacks[0]["data"]["flags"] & EPHEMERAL
        assert "the most allowed here is 1" in own.callbacks[0]["data"]["content"]

        other = await h.click(original, "stronger", fake.other_user)
        assert other.callbacks[0]["type"] == 5
    finally:
        h.backend.progress.set()
    result = await h.result_of(other)
    await h.idle()
    assert result.content.split("\n")[1].startswith(fake.other_user.mention)
    assert [m["id"] for m in result.mentions] == [str(fake.other_user.id)]
    assert "strength 2" in result.content


async def test_a_click_after_a_restart_works(h: Harness) -> None:
    fake = h.fake
    original = await h.result_of_command(fake.requester, seed=21)
    await h.idle()
    await h.stop()
    await h.start()
    click = await h.click(original, "weaker", fake.requester)
    assert click.callbacks[0]["type"] == 5
    result = await h.result_of(click)
    await h.idle()
    assert "strength 0.5" in result.content and "seed 21" in result.content


async def test_a_click_on_expired_inputs_gets_a_clear_answer(h: Harness) -> None:
    fake = h.fake
    original = await h.result_of_command(fake.requester, seed=31)
    await h.idle()
    # Pictures removed from the disk while the job's row stays (by hand, or a failed sweep).
    cleared = await h.result_of_command(fake.requester, seed=32)
    await h.idle()
    [cleared_id] = {FOLLOW_UP_ID.match(c).group(2) for c in cleared.custom_ids}  # type: ignore[union-attr]
    shutil.rmtree(h.data_dir / "jobs" / cleared_id)
    click = await h.click(cleared, "stronger", fake.requester)
    assert "no longer kept" in refusal(click.callbacks[0])
    # The retention sweep, as it runs once the kept days have passed.
    assert await h.bot.journal.purge(0) >= 1
    click = await h.click(original, "reroll", fake.requester)
    callback = click.callbacks[0]
    assert callback["type"] == 4 and callback["data"]["flags"] & EPHEMERAL
    assert "no longer kept" in callback["data"]["content"]
    assert "1 day" in callback["data"]["content"]


async def test_a_follow_up_keeps_within_the_servers_current_limits(h: Harness) -> None:
    fake = h.fake
    original = await h.result_of_command(fake.requester, seed=61, size=48)
    await h.idle()
    assert (settings_of(original.content)["size"], settings_of(original.content)["steps"]) == (
        "48×36 px",
        "4",
    )
    jobs = h.bot.jobs
    saved = jobs.policy
    # The admins lowered the limits since (as after a restart with new settings): quality
    # "high" now means 2 steps.
    jobs.policy = dataclasses.replace(saved, max_size=32, standard_steps=1)
    try:
        click = await h.click(original, "stronger", fake.requester)
        assert click.callbacks[0]["type"] == 5
        result = await h.result_of(click)
    finally:
        jobs.policy = saved
    await h.idle()
    after = settings_of(result.content)
    assert (after["size"], after["steps"], after["strength"]) == ("32×24 px", "2", "2")
    assert click.original is not None
    assert any("limits are lower" in e.get("content", "") for e in click.original.edits)


async def test_a_follow_up_where_the_bot_may_not_post_is_refused(h: Harness) -> None:
    fake = h.fake
    original = await h.result_of_command(fake.requester, seed=63)
    await h.idle()
    saved = dict(fake.role_permissions)
    for role in (fake.guild_id, fake.bot_role_id):
        fake.role_permissions[role] &= ~payloads.ATTACH_FILES
    try:
        click = await h.click(original, "reroll", fake.requester)
    finally:
        fake.role_permissions.update(saved)
    assert "Attach Files" in refusal(click.callbacks[0])
    assert h.bot.jobs.runner.active(fake.requester.id) == 0  # nothing was queued


async def test_a_result_the_disk_cannot_keep_is_posted_and_never_painted_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = h.fake
    write = journal_module._write

    def full_disk(path: Path, data: bytes, *, sync: bool) -> None:
        if path.name.startswith("result."):
            write(path, data[:16], sync=sync)  # what fit before the disk filled up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        write(path, data, sync=sync)

    monkeypatch.setattr(journal_module, "_write", full_disk)
    interaction = await fake.invoke(
        "stylize",
        {
            "content": fake.add_attachment(png(48, 36), "photo.png"),
            "style": fake.add_attachment(png(32, 32, noise=True), "painting.png"),
            "seed": 71,
        },
    )
    assert (await interaction.wait_callback(timeout=5))["type"] == 5
    await fake.wait_for(
        lambda: (
            bool(interaction.followups)
            or (interaction.original is not None and interaction.original.content.startswith("❌"))
        ),
        RESULT_TIMEOUT,
    )
    assert interaction.original is not None
    assert interaction.followups, interaction.original.content
    [result] = interaction.followups
    assert "seed 71" in result.content and result.attachments
    await fake.wait_for(lambda: interaction.original.content.startswith("✅ Done"), 30)  # type: ignore[union-attr]
    await h.idle()
    monkeypatch.undo()
    [job_id] = {FOLLOW_UP_ID.match(c).group(2) for c in result.custom_ids}  # type: ignore[union-attr]
    with sqlite3.connect(h.data_dir / "jobs.sqlite3") as db:
        [(state,)] = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchall()
    assert state == "done"
    assert not list((h.data_dir / "jobs" / job_id).glob("result.*"))  # the partial file went

    await h.stop()
    await h.start()
    assert h.bot.jobs.runner.owner(job_id) is None  # not resumed
    await h.idle()
    posted = [m for m in fake.messages.values() if m.attachments and "seed 71," in m.content]
    assert len(posted) == 1


# --- the gallery of saved styles ------------------------------------------------------------


async def styles(
    h: Harness, sub: str, user: FakeUser, **options: object
) -> tuple[FakeInteraction, dict[str, Any]]:
    """Run ``/styles sub``; returns the interaction and its first callback."""
    # Admins may open the group to everyone (Integrations settings): the bot checks again.
    interaction = await h.fake.invoke(f"styles {sub}", options, user=user, opened_to_everyone=True)
    callback = await interaction.wait_callback(timeout=5)
    assert interaction.ack_latency is not None and interaction.ack_latency < 3.0
    return interaction, callback


async def answer(h: Harness, interaction: FakeInteraction) -> FakeMessage:
    """The deferred response once the bot has filled it in."""
    await h.fake.wait_for(
        lambda: interaction.original is not None and bool(interaction.original.edits), 60
    )
    assert interaction.original is not None
    return interaction.original


def refusal(callback: dict[str, Any]) -> str:
    assert callback["type"] == 4 and callback["data"]["flags"] & EPHEMERAL, callback
    return str(callback["data"]["content"])


async def test_styles_is_a_group_for_manage_server(h: Harness) -> None:
    [command] = [c for c in h.fake.commands if c["name"] == "styles"]
    assert int(command["default_member_permissions"]) == payloads.MANAGE_GUILD
    subs = {o["name"]: o for o in command["options"]}
    assert list(subs) == ["add", "remove", "list"]
    assert [o["name"] for o in subs["add"]["options"]] == ["name", "image"]
    assert [o["name"] for o in subs["remove"]["options"]] == ["name"]


async def test_a_member_without_manage_server_is_refused(h: Harness) -> None:
    fake = h.fake
    image = fake.add_attachment(png(32, 32, noise=True), "painting.png")
    _, callback = await styles(h, "add", fake.requester, name="Mine", image=image)
    assert "Manage Server" in refusal(callback)
    _, callback = await styles(h, "remove", fake.requester, name="Mine")
    assert "Manage Server" in refusal(callback)
    assert await h.bot.journal.styles(fake.guild_id) == []


async def test_styles_are_added_listed_used_and_removed(h: Harness) -> None:
    fake = h.fake
    manager = fake.moderator
    fake.role_permissions[fake.moderator_role_id] |= payloads.MANAGE_GUILD
    starry = png(40, 30, noise=True)

    added, callback = await styles(
        h, "add", manager, name="Starry  Night", image=fake.add_attachment(starry, "s.png")
    )
    assert callback["type"] == 5
    assert "Saved the style **Starry Night**" in (await answer(h, added)).content

    # Names are unique without regard to case; the count limit holds.
    again, _ = await styles(
        h, "add", manager, name="starry night", image=fake.add_attachment(png(8, 8), "x.png")
    )
    assert "already has a style called **starry night**" in (await answer(h, again)).content
    waves, _ = await styles(
        h, "add", manager, name="Waves", image=fake.add_attachment(png(24, 24), "w.png")
    )
    assert "Saved the style **Waves**" in (await answer(h, waves)).content
    third, _ = await styles(
        h, "add", manager, name="Third", image=fake.add_attachment(png(8, 8), "t.png")
    )
    assert f"at most {GALLERY_MAX} styles" in (await answer(h, third)).content

    # Listed, with a thumbnail each.
    listed, _ = await styles(h, "list", fake.requester)
    page = await answer(h, listed)
    assert "2 styles, page 1 of 1" in page.content
    assert [e["title"] for e in page.embeds] == ["Starry Night", "Waves"]
    assert [e["thumbnail"]["url"] for e in page.embeds] == [
        "attachment://style-0.jpg",
        "attachment://style-1.jpg",
    ]
    assert sorted(name for name, _ in page.attachments) == ["style-0.jpg", "style-1.jpg"]

    # Offered as saved_style while a member types.
    typed = await fake.autocomplete("stylize", "saved_style", "sta")
    callback = await typed.wait_callback(timeout=5)
    assert callback["type"] == payloads.CALLBACK_AUTOCOMPLETE_RESULT
    assert callback["data"]["choices"] == [{"name": "Starry Night", "value": "Starry Night"}]

    # Used: the job paints with the saved image.
    photo = fake.add_attachment(png(48, 36), "photo.png")
    used = await fake.invoke(
        "stylize", {"content": photo, "saved_style": "starry night", "seed": 41}
    )
    assert (await used.wait_callback(timeout=5))["type"] == 5
    result = await h.result_of(used)
    await h.idle()
    assert "seed 41" in result.content and result.attachments
    [job_id] = {FOLLOW_UP_ID.match(c).group(2) for c in result.custom_ids}  # type: ignore[union-attr]
    assert (h.data_dir / "jobs" / job_id / "style-0").read_bytes() == starry

    # Removed: gone from the list and from use.
    _, callback = await styles(h, "remove", manager, name="Starry Night")
    assert callback["type"] == 4 and "Removed the style **Starry Night**" in str(callback["data"])
    assert [s.name for s in await h.bot.journal.styles(fake.guild_id)] == ["Waves"]
    gone = await fake.invoke(
        "stylize",
        {"content": fake.add_attachment(png(48, 36), "p.png"), "saved_style": "Starry Night"},
    )
    await gone.wait_callback(timeout=5)
    assert "no saved style called **Starry Night**" in (await answer(h, gone)).content


@pytest.mark.parametrize("given", ["neither", "both"])
async def test_stylize_wants_exactly_one_style(h: Harness, given: str) -> None:
    fake = h.fake
    options: dict[str, object] = {"content": fake.add_attachment(png(48, 36), "photo.png")}
    if given == "both":
        options["style"] = fake.add_attachment(png(32, 32), "painting.png")
        options["saved_style"] = "Waves"
    interaction = await fake.invoke("stylize", options)
    callback = await interaction.wait_callback(timeout=5)
    assert "either attach one as `style`" in refusal(callback)


async def test_an_unknown_saved_style_of_any_length_is_answered(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = h.fake
    name = "Starry " + "x" * 4993  # 5000 characters: Discord allows 6000 in an option
    interaction = await fake.invoke(
        "stylize", {"content": fake.add_attachment(png(48, 36), "photo.png"), "saved_style": name}
    )
    assert (await interaction.wait_callback(timeout=5))["type"] == 5
    await fake.wait_for(
        lambda: interaction.original is not None and bool(interaction.original.edits), 15
    )
    assert interaction.original is not None
    text = interaction.original.content
    assert "no saved style called **Starry xxx" in text and "x…**" in text, text
    assert len(text) < 300
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("bot")]
    assert logged and not [line for line in logged if "x" * 200 in line]


async def test_every_decode_goes_through_the_intake_gate(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = h.fake
    gate = h.bot.intake_gate
    decoded: list[tuple[str, bytes]] = []
    run = gate.run

    async def spying(work: Any, data: bytes, *args: Any) -> Any:
        decoded.append((work.__name__, data))
        return await run(work, data, *args)

    monkeypatch.setattr(gate, "run", spying)
    saved = dict(fake.role_permissions)
    fake.role_permissions[fake.moderator_role_id] |= payloads.MANAGE_GUILD
    style = png(24, 20, noise=True)
    try:
        added, _ = await styles(
            h, "add", fake.moderator, name="Gated", image=fake.add_attachment(style, "g.png")
        )
        assert "Saved the style **Gated**" in (await answer(h, added)).content
        # Checked, then a thumbnail made, in the gate's thread.
        assert [work for work, data in decoded if data == style] == [
            "_decoded_size",
            "make_thumbnail",
        ]
        used = await fake.invoke(
            "stylize",
            {"content": fake.add_attachment(png(48, 36), "photo.png"), "saved_style": "Gated"},
        )
        assert (await used.wait_callback(timeout=5))["type"] == 5
        await h.result_of(used)
        await h.idle()
    finally:
        fake.role_permissions.update(saved)
        await h.bot.journal.remove_style(fake.guild_id, "Gated")
    assert [work for work, data in decoded if data == style] == [
        "_decoded_size",
        "make_thumbnail",
        "_decoded_size",  # the saved style, decoded for the job like an upload
    ]
