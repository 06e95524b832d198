"""`hf hubselect ...`: hubselect registered as an hf CLI extension runs the same commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

BIN = Path(sys.executable).parent


def _env(home: Path) -> dict:
    # a private HOME: the extension manifest lives under ~/.local/share/hf/extensions
    return {**os.environ, "HOME": str(home), "HF_HUB_DISABLE_UPDATE_CHECK": "1"}


@pytest.fixture
def hf() -> str:
    found = BIN / "hf"
    if not found.is_file():
        found = Path(shutil.which("hf") or "")
    if not found.is_file():
        pytest.skip("huggingface_hub's `hf` command is not installed")
    return str(found)


def test_console_script_is_installed():
    assert (BIN / "hf-hubselect").is_file(), "pip install -e . should install the hf-hubselect console script"


def test_hf_hubselect_runs_the_same_commands(hf, tmp_path):
    env = _env(tmp_path)
    reg = run_cli("register-hf-extension", env=env)
    assert reg.returncode == 0, reg.stderr
    manifest = json.loads((tmp_path / ".local/share/hf/extensions/hf-hubselect/manifest.json").read_text())
    assert manifest["short_name"] == "hubselect" and Path(manifest["executable_path"]).name == "hf-hubselect"

    via_hf = subprocess.run([hf, "hubselect", "zoo", "--json"], capture_output=True, text=True, env=env, timeout=300)
    direct = run_cli("zoo", "--json", env=env)
    assert via_hf.returncode == 0, via_hf.stderr
    assert json.loads(via_hf.stdout) == json.loads(direct.stdout) and json.loads(direct.stdout)

    helped = subprocess.run([hf, "hubselect", "--help"], capture_output=True, text=True, env=env, timeout=300)
    assert helped.returncode == 0 and "Usage: hf hubselect" in helped.stdout
    bad = subprocess.run([hf, "hubselect", "rank", "not a dataset!!"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("hubselect: error: ")

    again = run_cli("register-hf-extension", "--remove", env=env)
    assert again.returncode == 0
    assert not (tmp_path / ".local/share/hf/extensions/hf-hubselect").exists()
    gone = subprocess.run([hf, "hubselect", "zoo"], capture_output=True, text=True, env=env, timeout=300)
    assert gone.returncode != 0


def test_registration_does_not_replace_another_install(tmp_path):
    folder = tmp_path / ".local/share/hf/extensions/hf-hubselect"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"executable_path": "/opt/other/hf-hubselect"}))
    refused = run_cli("register-hf-extension", env=_env(tmp_path))
    assert refused.returncode == 2 and "already installed" in refused.stderr
    assert json.loads((folder / "manifest.json").read_text())["executable_path"] == "/opt/other/hf-hubselect"
    forced = run_cli("register-hf-extension", "--force", env=_env(tmp_path))
    assert forced.returncode == 0
