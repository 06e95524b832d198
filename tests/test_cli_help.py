"""What a user reads before running anything: help text on every option, clean usage lines, a sane progress rate."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import pytest
import typer
from typer.testing import CliRunner

from hubselect.cli.root import app, progress_bar
from hubselect.errors import UserError

COMMAND = typer.main.get_command(app)
COMMANDS = sorted(COMMAND.commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_has_help(name):
    command = COMMAND.commands[name]
    missing = [p.name for p in command.params if not (getattr(p, "help", None) or "").strip()]
    assert missing == [], f"hubselect {name}: no help text for {missing}"
    assert (command.help or "").strip(), f"hubselect {name} has no description"


@pytest.mark.parametrize("name", COMMANDS)
def test_usage_line_reads_cleanly(name):
    res = CliRunner().invoke(app, [name, "--help"], prog_name="hubselect", terminal_width=200)
    assert res.exit_code == 0, res.output
    usage = next(line for line in res.output.splitlines() if line.startswith("Usage:"))
    assert "[[" not in usage and "]]" not in usage and " or " not in usage, usage
    assert re.fullmatch(r"Usage: hubselect [\w-]+ \[OPTIONS\]( [\[{]?[A-Z_]+[\]}]?(\.\.\.)?)*", usage), usage


def test_crawl_usage_names_its_repeatable_argument_once():
    res = CliRunner().invoke(app, ["crawl", "--help"], prog_name="hubselect", terminal_width=200)
    assert "Usage: hubselect crawl [OPTIONS] [REPO_ID_OR_PATH]..." in res.output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:       # tqdm draws only on a terminal
        return True


def _rates(text: str) -> list[str]:
    return re.findall(r"(\?|[\d.]+)(?:[kM])?img/s", text)


def test_progress_rate_is_sane_from_the_first_tick(monkeypatch):
    """Units done before the first report (a batch, a warm-up) are not counted as done in no time."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress_bar("profile", "img")
    time.sleep(0.05)
    bar(32, 96, None)                # the first report comes after a whole batch
    first = _rates(terminal.getvalue())
    time.sleep(0.2)
    bar(64, 96, None)
    time.sleep(0.2)
    bar(96, 96, None)
    text = terminal.getvalue()
    assert first and set(first) == {"?"}, text.replace("\r", "\n")      # no rate before a unit is timed
    measured = [float(r) for r in _rates(text) if r != "?"]
    assert measured and max(measured) < 1000, text.replace("\r", "\n")   # 32 images per 0.2 s: about 160/s
    assert "Mimg/s" not in text and "kimg/s" not in text


# -- help built from the registries, training options from FinetuneConfig ----------------------------------------

def _help(*args: str) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], prog_name="hubselect", terminal_width=400)
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())     # one line: option help wraps anywhere


def test_choices_in_help_come_from_the_registries():
    from hubselect.evaluate.protocol import STUDIES
    from hubselect.profile.probes import PROBES, probe_names
    from hubselect.rank.predictors import PREDICTORS
    from hubselect.sweep import BACKENDS

    rank_help = _help("rank")
    assert f"The learned ranker: {', '.join(PREDICTORS)}." in rank_help
    for name in probe_names():
        assert name in rank_help and name in _help("profile")
    image_probes = [name for name, cls in PROBES.items() if cls.modality == "image"]
    assert f"Probe for FID/KID/CMMD: {', '.join(image_probes)} (default" in _help("finetune")
    assert " or ".join(BACKENDS) in _help("sweep")
    assert f"Also run a study: {', '.join(STUDIES)} (repeatable)." in _help("evaluate")


@pytest.mark.parametrize("name", COMMANDS)
def test_help_leaves_no_choice_unworded(name):
    assert not re.search(r"\{[a-z_]+\}", _help(name))   # {DATASET} is a usage line's required argument


def test_the_cli_starts_without_the_heavy_libraries():
    """Registries and FinetuneConfig are read when a command needs them: `hubselect --help` waits for none."""
    code = ("import sys, hubselect.cli; "
            "print(sorted(m for m in ('torch', 'pandas', 'huggingface_hub') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout


def test_training_options_are_finetune_configs_fields():
    import dataclasses
    import typing

    from hubselect.finetune.settings import TRAINING_SETTINGS
    from hubselect.finetune.trainer import FinetuneConfig

    hints = typing.get_type_hints(FinetuneConfig)
    fields = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
    for name, (kind, _) in TRAINING_SETTINGS.items():
        assert name in fields and hints[name] == kind, name
    for command in ("finetune", "sweep"):       # the defaults shown are FinetuneConfig's own
        text = _help(command)
        assert "Training steps" in text and f"[default: {fields['steps'].default}]" in text
        assert f"LoRA rank (alpha = rank). [default: {fields['rank'].default}]" in text


@pytest.mark.parametrize("command", ["finetune", "sweep"])
def test_lora_rank_is_shown_and_rank_is_a_hidden_alias(command):
    text = _help(command)
    assert "--lora-rank" in text
    assert not re.search(r"(?<![\w-])--rank\b", text), text


def _finetune_config(monkeypatch, *args: str):
    import hubselect.finetune.run as run

    seen = []
    monkeypatch.setattr(run, "finetune", lambda config, **kwargs: seen.append(config) or {"ok": True})
    res = CliRunner().invoke(app, ["finetune", "--model", "m", "--dataset", "d", *args, "--json"])
    assert res.exit_code == 0, res.output
    return seen[0]


def test_finetune_takes_lora_rank_and_the_old_rank(monkeypatch):
    from hubselect.finetune.trainer import FinetuneConfig

    assert _finetune_config(monkeypatch, "--rank", "4", "--steps", "7").rank == 4
    assert _finetune_config(monkeypatch, "--lora-rank", "16").rank == 16
    default = _finetune_config(monkeypatch)
    assert default == FinetuneConfig(model="m", dataset="d", probe=None)     # every default is FinetuneConfig's


def test_rank_and_lora_rank_together_are_refused():
    res = CliRunner().invoke(app, ["finetune", "--model", "m", "--dataset", "d", "--rank", "4", "--lora-rank", "8"])
    assert res.exit_code != 0 and isinstance(res.exception, UserError)
    assert "give only one of them" in str(res.exception)


def test_sweep_takes_lora_rank_and_the_old_rank(monkeypatch):
    import hubselect.sweep
    from hubselect.finetune.trainer import FinetuneConfig

    seen = []

    def fake_sweep(models, datasets, **kwargs):
        seen.append(kwargs["settings"])
        return {"pending": [], "requested": None, "dry_run": True, "runs": [], "failed": 0}

    monkeypatch.setattr(hubselect.sweep, "sweep", fake_sweep, raising=False)
    for flag, value in (("--rank", 4), ("--lora-rank", 8)):
        res = CliRunner().invoke(app, ["sweep", "--models", "m", "--datasets", "d", flag, str(value), "--json"])
        assert res.exit_code == 0, res.output
        assert seen[-1]["rank"] == value and seen[-1]["steps"] == FinetuneConfig.steps
