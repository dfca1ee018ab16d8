"""Draw docs/result-message.png: a result message as Discord shows it, from the bot's own text
(``bot.messages.result``) and button payload (``bot.buttons.result_view``).

    PYTHONPATH=. python docs/render_result_message.py

The picture on it is the result panel of docs/demo-random-weights.png. Discord's own fonts and
emoji are not drawn: DejaVu Sans stands in, and the buttons show their labels.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from bot import buttons, i18n, messages
from bot.jobs.followups import Ceiling

HERE = Path(__file__).resolve().parent
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
BACKGROUND = (49, 51, 56)
TEXT = (219, 222, 225)
MENTION = (201, 205, 251)
MENTION_BG = (60, 66, 112)
BUTTON = (78, 80, 88)
WIDTH = 760


def result_payload() -> tuple[str, list[dict[str, Any]]]:
    info = messages.ResultInfo(
        width=512, height=512, steps=500, strength=1.0, seed=1234567, seconds=41.0,
        format="png", size_bytes=412_000,
    )  # fmt: skip
    english = i18n.english()
    content = messages.result(english, "@Requester", info, upload_limit=10 * 1024 * 1024)
    settings = {"size": info.width, "steps": info.steps, "strength": info.strength}
    view = buttons.result_view(
        "0123456789abcdef0123456789abcdef", settings, Ceiling(size=1024, steps=1000), english
    )
    return content, view.to_components()


def render(out: Path) -> None:
    content, components = result_payload()
    font, bold, small = (ImageFont.truetype(FONT, 15), ImageFont.truetype(BOLD, 15),
                         ImageFont.truetype(FONT, 12))  # fmt: skip
    demo = Image.open(HERE / "demo-random-weights.png").convert("RGB")
    panel = demo.width // 3
    picture = demo.crop((2 * panel, 0, demo.width, demo.height)).resize((256, 256))
    lines = textwrap.wrap(content, 78)
    height = 60 + 22 * len(lines) + picture.height + 70
    canvas = Image.new("RGB", (WIDTH, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((16, 16, 56, 56), fill=(88, 101, 242))
    draw.text((72, 16), "stylize-bot", font=bold, fill=(255, 255, 255))
    draw.rounded_rectangle((170, 18, 204, 34), 3, fill=(88, 101, 242))
    draw.text((175, 19), "APP", font=small, fill=(255, 255, 255))
    draw.text((214, 19), "Today at 14:05", font=small, fill=(148, 155, 164))
    y = 42
    for index, line in enumerate(lines):
        x = 72
        if index == 0 and line.startswith("@Requester"):
            width = draw.textlength("@Requester", font=font)
            draw.rounded_rectangle((x - 2, y, x + width + 2, y + 19), 3, fill=MENTION_BG)
            draw.text((x, y), "@Requester", font=font, fill=MENTION)
            x += width
            line = line.removeprefix("@Requester")
        draw.text((x, y), line, font=font, fill=TEXT)
        y += 22
    y += 6
    canvas.paste(picture, (72, y))
    y += picture.height + 10
    x = 72
    for row in components:
        for button in row["components"]:
            label = button["label"].removeprefix("⤢ ")  # a symbol DejaVu Sans lacks
            width = int(draw.textlength(label, font=font)) + 32
            fill = BUTTON if not button.get("disabled") else (60, 62, 68)
            draw.rounded_rectangle((x, y, x + width, y + 32), 4, fill=fill)
            draw.text((x + 16, y + 7), label, font=font, fill=(255, 255, 255))
            x += width + 8
    canvas.save(out, optimize=True)


if __name__ == "__main__":
    render(HERE / "result-message.png")
