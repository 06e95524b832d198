"""What a user reads before running anything: help text on every option, clean usage lines, a sane progress rate."""

from __future__ import annotations

import io
import re
import sys
import time

import pytest
import typer
from typer.testing import CliRunner

from hubselect.cli.root import _progress_bar, app

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
    bar = _progress_bar("profile", "img")
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
