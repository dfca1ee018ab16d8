"""Proves that the tests catch bugs: one-line mutants, each must make a test fail.

Each mutant is a one-line bug a real change could bring into ``engine/`` (the method) or
``bot/journal.py`` (the job journal), with the test files that must kill it. The script copies
the repository to a temporary folder, applies one mutant at a time there (the working tree
is never touched), runs the mutant's test files with ``-x`` and prints which test failed
first. A mutant that no test kills is a hole in the tests, and the script exits 1.

    python tests/mutants.py                 # every mutant, each with its own test files
    python tests/mutants.py -k journal      # only mutants whose name or file has a word
    python tests/mutants.py --list          # the mutants, without running anything

It is not collected by pytest (its name does not start with ``test_``). Run it after every
change to the engine or the journal: a mutant whose line no longer exists is reported as
stale, so the list keeps up with the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Fast and decisive first: with -x the first failure ends a run.
ENGINE_TESTS = (
    "tests/test_reference.py",
    "tests/test_objective.py",
    "tests/test_optimize.py",
    "tests/test_losses.py",
    "tests/test_lbfgs.py",
    "tests/test_transfer.py",
    "tests/test_cli.py",
    "tests/test_network.py",
)
JOURNAL_TESTS = (
    "tests/test_bot_journal.py",
    "tests/test_bot_journal_gallery.py",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    before: str
    """Must occur exactly once in the file."""
    after: str
    tests: tuple[str, ...] = ENGINE_TESTS
    """The test files that must kill it."""


ENGINE_MUTANTS = (
    Mutant(
        "content layer hard-wired to relu1_1", "engine/objective.py",
        "self.content_layers = settings.content_layers",
        'self.content_layers = ("relu1_1",)',
    ),
    Mutant(
        "strength ignored", "engine/objective.py",
        "settings.style_weight * settings.strength / len(self.style_targets)",
        "settings.style_weight / len(self.style_targets)",
    ),
    Mutant(
        "pooling ignored", "engine/objective.py",
        "return self.network(image, layers, self.pooling)",
        "return self.network(image, layers)",
    ),
    Mutant(
        "target norm stored as ‖t‖, not ‖t‖²", "engine/objective.py",
        "return cls(value, losses.squared_norm(value))",
        "return cls(value, losses.squared_norm(value).sqrt())",
    ),
    Mutant(
        "L-BFGS without its [0, 1] bounds", "engine/optimize.py",
        "bounds=(0.0, 1.0))", "bounds=None)",
    ),
    Mutant(
        "each scale restarts from the initial image", "engine/transfer.py",
        "x = upsample(x, *inputs.content.shape[-2:])",
        "x = initial_image(settings.init, inputs.content, inputs.styles[0], settings.seed or 0)",
    ),
    Mutant(
        "a blend of styles uses only the first", "engine/objective.py",
        "losses.blend_grams([g[layer] for g in grams], live_weights)", "grams[0][layer]",
    ),
    Mutant(
        'init="style" starts from the content', "engine/optimize.py",
        'if init == "content":', 'if init in ("content", "style"):',
    ),
    Mutant(
        "the result reports a seed it did not use", "engine/transfer.py",
        'result.info["stylize:seed"] = str(settings.seed)',
        'result.info["stylize:seed"] = str(settings.seed + 1)',
    ),
    Mutant(
        "Gram matrix over positions, not channels", "engine/losses.py",
        "torch.bmm(flat, flat.transpose(1, 2))", "torch.bmm(flat.transpose(1, 2), flat)",
    ),
    Mutant(
        "layer names: relu3_1 and relu3_2 swapped", "engine/layers.py",
        '"conv3_1", "relu3_1", "conv3_2", "relu3_2",',
        '"conv3_1", "relu3_2", "conv3_2", "relu3_1",',
    ),
    Mutant(
        "relative error: mean instead of sum", "engine/losses.py",
        'F.mse_loss(value.float(), target.float(), reduction="sum")',
        'F.mse_loss(value.float(), target.float(), reduction="mean")',
    ),
    Mutant(
        "luminance mode: chroma taken as Y and I", "engine/colors.py",
        "iq = rgb_to_yiq(chroma_source)[:, 1:]", "iq = rgb_to_yiq(chroma_source)[:, :2]",
    ),
    Mutant(
        "total variation with the wrong sign", "engine/objective.py",
        "tv = losses.total_variation(image) * self.tv_weight",
        "tv = losses.total_variation(image) * -self.tv_weight",
    ),
    Mutant(
        "L-BFGS history setting ignored", "engine/optimize.py",
        "history=settings.lbfgs_history", "history=16",
    ),
    Mutant(
        "L-BFGS history read in the wrong order once full", "engine/lbfgs.py",
        "order = self._orders[self._stored % m if self._stored >= m else 0]",
        "order = self._orders[0]",
    ),
    Mutant(
        "ImageNet normalisation multiplies by the std", "engine/network.py",
        "x = (image - self.mean) / self.std", "x = (image - self.mean) * self.std",
    ),
    Mutant(
        "max and average pooling swapped", "engine/network.py",
        'pool = F.max_pool2d if pooling == "max" else F.avg_pool2d',
        'pool = F.avg_pool2d if pooling == "max" else F.max_pool2d',
    ),
    Mutant(
        "Adam clips to the wrong box", "engine/optimize.py",
        "self.image.clamp_(0, 1)", "self.image.clamp_(-1, 2)",
    ),
    Mutant(
        "luminance mode: the style's spread not matched", "engine/colors.py",
        "((style_y - s_mean) / s_std * c_std + c_mean)", "((style_y - s_mean) + c_mean)",
    ),
    Mutant(
        "histogram mode never applied", "engine/objective.py",
        'if settings.preserve_colors == "histogram":', 'if settings.preserve_colors == "hist":',
    ),
    Mutant(
        "style scale ignored", "engine/objective.py",
        "side = style_side(max(size), settings.style_scale)", "side = style_side(max(size), 1.0)",
    ),
    Mutant(
        "blend weights not normalised", "engine/losses.py",
        "g * (w / total)", "g * w",
    ),
    Mutant(
        "style loss summed over layers, not averaged", "engine/objective.py",
        "settings.style_weight * settings.strength / len(self.style_targets)",
        "settings.style_weight * settings.strength",
    ),
    Mutant(
        "content loss summed over layers, not averaged", "engine/objective.py",
        "self.content_weight = settings.content_weight / len(self.content_targets)",
        "self.content_weight = settings.content_weight",
    ),
    Mutant(
        "content targets taken from the first style", "engine/objective.py",
        "content_feats = self.features(content, self.content_layers)",
        "content_feats = self.features(styles[0], self.content_layers)",
    ),
    Mutant(
        "upsampled start not clipped to [0, 1]", "engine/pyramid.py",
        "return larger.clamp(0, 1)", "return larger",
    ),
    Mutant(
        "uniform noise instead of normal", "engine/optimize.py",
        "torch.randn(content.shape, generator=generator)",
        "torch.rand(content.shape, generator=generator)",
    ),
    Mutant(
        "noise ignores the seed", "engine/optimize.py",
        "torch.Generator().manual_seed(seed)", "torch.Generator().manual_seed(0)",
    ),
    Mutant(
        "total variation: one direction twice", "engine/losses.py",
        "return dy + dx", "return dy + dy",
    ),
    Mutant(
        "--style-scale dropped by the CLI", "engine/cli.py",
        "style_scale=args.style_scale,", "style_scale=1.0,",
    ),
    Mutant(
        "fewer steps than scales: the fine end of the pyramid cut", "engine/transfer.py",
        "sizes = sizes[len(sizes) - len(steps) :]", "sizes = sizes[: len(steps)]",
    ),
    Mutant(
        "a CLI default drifts from the settings' default", "engine/cli.py",
        "default=defaults.steps,", "default=300,",
    ),
    Mutant(
        "the CLI prints and saves no seed when none is given", "engine/cli.py",
        "    ).resolved()", "    )",
    ),
    Mutant(
        "an initial image is ignored: Bigger starts again from the photo", "engine/transfer.py",
        "settings.init, inputs.content, inputs.styles[0], settings.seed or 0, start=start",
        "settings.init, inputs.content, inputs.styles[0], settings.seed or 0",
    ),
    Mutant(
        "an initial image: the scales it covers are painted again", "engine/transfer.py",
        "sizes = [size for size in sizes if size > max(initial.size)] or sizes[-1:]",
        "sizes = sizes",
    ),
    Mutant(
        "--init PATH ignored by the CLI", "engine/cli.py",
        "initial = None if args.init in INITS else _read_image(Path(args.init), content_side)",
        "initial = None",
    ),
)  # fmt: skip

JOURNAL_MUTANTS = tuple(
    Mutant(name, "bot/journal.py", before, after, JOURNAL_TESTS)
    for name, before, after in (
        (
            "journal: migration 2 drops the version-1 rows",
            "ALTER TABLE jobs ADD COLUMN derivation TEXT;",
            "ALTER TABLE jobs ADD COLUMN derivation TEXT; DELETE FROM jobs;",
        ),
        (
            "journal: a migration does not record the schema version",
            'db.execute(f"PRAGMA user_version={target}")',
            'db.execute(f"PRAGMA user_version={version}")',
        ),
        (
            "journal: unfinished() ignores the queue's order",
            "\"state = 'running' DESC, queue_rank IS NULL, queue_rank, started_at, seq\"",
            "\"state = 'running' DESC, seq\"",
        ),
        (
            "journal: unfinished() does not put the running jobs first",
            "\"state = 'running' DESC, queue_rank IS NULL, queue_rank, started_at, seq\"",
            '"queue_rank IS NULL, queue_rank, started_at, seq"',
        ),
        (
            "journal: unfinished() reads on the event loop's thread",
            "return await self._call(self._unfinished)",
            "return self._unfinished()",
        ),
        (
            "journal: a record's start time is its creation time",
            'started_at=r["started_at"],',
            'started_at=r["created_at"],',
        ),
        (
            "journal: a status message forgets it was posted in the channel",
            'else StatusMessage(r["status_message_id"], bool(r["status_in_channel"])),',
            'else StatusMessage(r["status_message_id"]),',
        ),
        (
            "journal: requeue loses a stopped job's place at the front",
            "\"ELSE runs END, queue_rank = CASE WHEN state = 'running' THEN 0 \"",
            "\"ELSE runs END, queue_rank = CASE WHEN state = 'running' THEN NULL \"",
        ),
        (
            "journal: requeue loses a waiting job's rank",
            "\"ELSE queue_rank END, state = 'queued', updated_at = ? WHERE id = ?\"",
            "\"ELSE NULL END, state = 'queued', updated_at = ? WHERE id = ?\"",
        ),
        (
            "journal: an orderly stop counts as a run",
            "THEN MAX(runs - 1, 0) ",
            "THEN runs ",
        ),
        (
            "journal: finish writes its outbox item as delivered",
            "\"VALUES (?, ?, ?, 'pending', ?, ?, ?)\"",
            "\"VALUES (?, ?, ?, 'delivered', ?, ?, ?)\"",
        ),
        (
            "journal: purge deletes jobs that ended within the retention",
            "cutoff = now - keep_seconds",
            "cutoff = now",
        ),
        (
            "journal: purge deletes jobs whose delivery is still owed",
            "\"WHERE outbox.job_id = jobs.id AND outbox.state = 'pending')\"",
            "\"WHERE outbox.job_id = jobs.id AND outbox.state = 'delivered')\"",
        ),
        (
            "journal: purge keeps expired tokens",
            "\"UPDATE jobs SET interaction_token = '' WHERE token_expires_at < ? \"",
            "\"UPDATE jobs SET interaction_token = '' WHERE token_expires_at > ? \"",
        ),
        (
            "journal: discard keeps the row",
            'db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))',
            'db.execute("DELETE FROM jobs WHERE id = ? AND 0", (job_id,))',
        ),
    )
)

FOLLOWUP_TESTS = ("tests/test_followups.py", "tests/test_jobs_service.py")
FOLLOWUP_MUTANTS = tuple(
    Mutant(name, "bot/jobs/followups.py", before, after, FOLLOWUP_TESTS)
    for name, before, after in (
        (
            "stronger triples the strength",
            "min(MAX_STRENGTH, strength_of(settings) * 2)",
            "min(MAX_STRENGTH, strength_of(settings) * 3)",
        ),
        (
            "stronger ignores the upper bound",
            "min(MAX_STRENGTH, strength_of(settings) * 2)",
            "strength_of(settings) * 2",
        ),
        (
            "weaker ignores the lower bound",
            "max(MIN_STRENGTH, strength_of(settings) / 2)",
            "strength_of(settings) / 2",
        ),
        (
            "weaker halves nothing",
            "max(MIN_STRENGTH, strength_of(settings) / 2)",
            "max(MIN_STRENGTH, strength_of(settings))",
        ),
        (
            "re-roll keeps the old seed",
            'derive=lambda settings, seed: {"seed": seed},',
            "derive=lambda settings, seed: {},",
        ),
        (
            "stronger applies at the bound",
            "applies=lambda settings, ceiling: strength_of(settings) < MAX_STRENGTH,",
            "applies=lambda settings, ceiling: True,",
        ),
        (
            "weaker applies at the bound",
            "applies=lambda settings, ceiling: strength_of(settings) > MIN_STRENGTH,",
            "applies=lambda settings, ceiling: strength_of(settings) >= MIN_STRENGTH,",
        ),
        (
            "the size ceiling is ignored",
            'derived["size"] = min(int(derived["size"]), ceiling.size)',
            'derived["size"] = int(derived["size"])',
        ),
        (
            "the steps ceiling is ignored",
            'derived["steps"] = min(int(derived["steps"]), ceiling.steps)',
            'derived["steps"] = int(derived["steps"])',
        ),
        ("a re-roll may repeat the seed", "        if seed != old:", "        if True:"),
        (
            "the headline of another kind",
            "return RULES[derivation.kind].headline(settings, derivation.parent_seed)",
            'return RULES["reroll"].headline(settings, derivation.parent_seed)',
        ),
    )
)

I18N_TESTS = ("tests/test_bot_i18n.py",)
KOREAN = "bot/locales/ko/LC_MESSAGES/messages.po"
I18N_MUTANTS = tuple(
    Mutant(name, path, before, after, I18N_TESTS)
    for name, path, before, after in (
        ("a text left untranslated", KOREAN, 'msgstr "🛑 취소했어요."', 'msgstr ""'),
        (
            "a translation renames a placeholder",
            KOREAN,
            'msgstr "🛑 {mention} 님이 취소했어요."',
            'msgstr "🛑 {user} 님이 취소했어요."',
        ),
        (
            "a translation drops the emoji",
            KOREAN,
            'msgstr "🛑 취소하는 중…"',
            'msgstr "취소하는 중…"',
        ),
        ("a command name with a space", KOREAN, 'msgstr "화풍변환"', 'msgstr "화풍 변환"'),
        ("an option name in capitals", KOREAN, 'msgstr "시드"', 'msgstr "Seed"'),
        (
            "a text bypasses the catalogue",
            "bot/messages.py",
            'return lang.gettext("🛑 Cancelled.")',
            'return "🛑 Cancelled."',
        ),
        (
            "a time in English words",
            "bot/messages.py",
            "eta=lang.duration(eta),",
            'eta=f"{eta:.0f} seconds",',
        ),
        (
            "a reply written in the code",
            "bot/cogs/stylize.py",
            "text = messages.unknown_button(i18n.lang(interaction.locale))",
            'text = "This button no longer works."',
        ),
        (
            "a refusal written in the code",
            "bot/cogs/styles.py",
            "raise Refusal(messages.gallery_needs_manage_server)",
            'raise Refusal(lambda lang: "Only admins.")',
        ),
        (
            "a template's value not filled in",
            "bot/translator.py",
            "return translated.format(**extras) if extras else translated",
            "return translated",
        ),
        (
            "old notices not carried over",
            "bot/journal.py",
            "WHERE text != '';",
            "WHERE 0;",
        ),
        (
            "a job forgets its member's language",
            "bot/journal.py",
            "c.locale, c.guild_locale,",
            "'en-US', c.guild_locale,",
        ),
    )
)

POLICY_TESTS = ("tests/test_policy.py", "tests/test_bot_journal_policy.py")
PICTURE_WAYS_TESTS = (
    "tests/test_bot_journal_picture_ways.py",
    "tests/test_bot_sources.py",
    "tests/test_followups.py",
)
POLICY_MUTANTS = tuple(
    Mutant(name, path, before, after, tests)
    for name, path, before, after, tests in (
        (
            "policy: a blocked member let through",
            "bot/jobs/policy.py",
            "if member.user_id in policy.blocked:",
            "if member.user_id in policy.blocked and False:",
            POLICY_TESTS,
        ),
        (
            "policy: a thread of an allowed channel refused",
            "bot/jobs/policy.py",
            "not {member.channel_id, member.parent_id} & policy.channels",
            "not {member.channel_id} & policy.channels",
            POLICY_TESTS,
        ),
        (
            "policy: the quota off by one",
            "bot/jobs/policy.py",
            "if granted.daily is not None and used_today >= granted.daily:",
            "if granted.daily is not None and used_today > granted.daily:",
            POLICY_TESTS,
        ),
        (
            "policy: the least generous role wins",
            "bot/jobs/policy.py",
            "else max(v for v in values if v is not None)",
            "else min(v for v in values if v is not None)",
            POLICY_TESTS,
        ),
        (
            "policy: places held don't count",
            "bot/jobs/policy.py",
            "used = self.used_today(*key) + self._held[key]",
            "used = self.used_today(*key)",
            POLICY_TESTS,
        ),
        (
            "policy: the count never starts again at midnight",
            "bot/jobs/policy.py",
            "            self._used.clear()",
            "            pass",
            POLICY_TESTS,
        ),
        (
            "policy: spoilers inside age-restricted channels too",
            "bot/jobs/policy.py",
            'return mode == "always" or (mode == "outside_nsfw" and not nsfw)',
            'return mode != "off"',
            POLICY_TESTS,
        ),
        (
            "policy: a crashed job still costs its member a job",
            "bot/jobs/policy.py",
            "return kind in (FailureKind.WORKER_CRASHED, FailureKind.INTERNAL)",
            "return False",
            POLICY_TESTS,
        ),
        (
            "policy: a job that ran out of time is given back",
            "bot/jobs/policy.py",
            "return kind in (FailureKind.WORKER_CRASHED, FailureKind.INTERNAL)",
            "return kind is not FailureKind.BAD_INPUT",
            POLICY_TESTS,
        ),
        (
            "policy: a job of yesterday given back from today's count",
            "bot/jobs/policy.py",
            "if day != self._day or self._used[key] <= 0:",
            "if self._used[key] <= 0:",
            POLICY_TESTS,
        ),
        (
            "journal: forget keeps the member's jobs",
            "bot/journal.py",
            'db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in own])',
            "pass",
            POLICY_TESTS,
        ),
        (
            "journal: forget leaves the old pages in the log",
            "bot/journal.py",
            'self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")',
            "pass",
            POLICY_TESTS,
        ),
        (
            "journal: forget keeps the photos waiting for a style",
            "bot/journal.py",
            'db.executemany("DELETE FROM picks WHERE id = ?", [(p,) for p in picks])',
            "pass",
            PICTURE_WAYS_TESTS,
        ),
        (
            "menus: a picture stored anywhere is fetched",
            "bot/sources.py",
            "if not storage.holds(found.url):",
            "if False:",
            PICTURE_WAYS_TESTS,
        ),
        (
            "menus: a link's thumbnail not taken",
            "bot/sources.py",
            'for media in (embed.image, embed.thumbnail if embed.type == "image" else None):',
            "for media in (embed.image,):",
            PICTURE_WAYS_TESTS,
        ),
        (
            "bigger: enabled at the cap",
            "bot/jobs/followups.py",
            "applies=lambda settings, ceiling: size_of(settings) < ceiling.size,",
            "applies=lambda settings, ceiling: True,",
            PICTURE_WAYS_TESTS,
        ),
        (
            "bigger: starts from the photo, not the earlier result",
            "bot/journal.py",
            'result = self._job_dir(source_id) / f"result.{result_format}"',
            'result = self._job_dir(source_id) / "content"',
            PICTURE_WAYS_TESTS,
        ),
    )
)

MUTANTS = ENGINE_MUTANTS + JOURNAL_MUTANTS + FOLLOWUP_MUTANTS + I18N_MUTANTS + POLICY_MUTANTS


def run_tests(tree: Path, files: tuple[str, ...], timeout: float) -> tuple[str | None, float]:
    """The first failing test's id (None if all pass) and the seconds the run took."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE",
             "--no-header", *files],
            cwd=tree, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "(timed out)", time.perf_counter() - started
    seconds = time.perf_counter() - started
    if result.returncode == 0:
        return None, seconds
    found = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - |$)", result.stdout, re.MULTILINE)
    return (found.group(1) if found else f"(pytest exit {result.returncode})"), seconds


def copy_tree(destination: Path) -> None:
    for name in ("engine", "bot", "tests", "benchmarks", "pyproject.toml", "babel.cfg"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, destination / name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-k", nargs="+", default=[], help="only mutants whose name or file has a word"
    )
    parser.add_argument("--files", nargs="+", help="these test files for every mutant")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.k or any(w in m.name or w in m.path for w in args.k)]
    if args.files:
        chosen = [dataclasses.replace(m, tests=tuple(args.files)) for m in chosen]
    if args.list:
        for m in chosen:
            print(f"{m.path}: {m.name}\n    - {m.before}\n    + {m.after}")
            print(f"    killed by one of: {' '.join(m.tests)}")
        return 0
    survived = stale = 0
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        for files in dict.fromkeys(m.tests for m in chosen):
            failing, seconds = run_tests(tree, files, args.timeout)
            if failing is not None:
                print(f"The tests fail without any mutant ({failing}); fix that first.")
                return 2
            print(f"Unmutated: {' '.join(files)} pass ({seconds:.0f} s).")
        print(f"{len(chosen)} mutants.\n")
        print("| # | mutant | file | killed by | s |")
        print("|---|---|---|---|---|")
        for number, mutant in enumerate(chosen, start=1):
            target = tree / mutant.path
            original = target.read_text()
            if original.count(mutant.before) != 1:
                stale += 1
                verdict, seconds = "STALE: the line is not in the file exactly once", 0.0
            else:
                target.write_text(original.replace(mutant.before, mutant.after))
                try:
                    killer, seconds = run_tests(tree, mutant.tests, args.timeout)
                finally:
                    target.write_text(original)
                if killer is None:
                    survived += 1
                verdict = "**SURVIVED**" if killer is None else f"`{killer}`"
            print(
                f"| {number} | {mutant.name} | `{mutant.path}` | {verdict} | {seconds:.0f} |",
                flush=True,
            )
    killed = len(chosen) - survived - stale
    print(f"\n{killed} of {len(chosen)} killed, {survived} survived, {stale} stale.")
    return 1 if survived or stale else 0


if __name__ == "__main__":
    sys.exit(main())
