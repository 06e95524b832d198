"""hubselect as an ``hf`` CLI extension: ``hf hubselect rank ...``.

huggingface_hub's ``hf`` runs ``hf <name> ARGS`` as the executable that an installed extension's
manifest names (``~/.local/share/hf/extensions/hf-<name>/manifest.json``). ``hf extensions install
OWNER/hf-hubselect`` would pip-install from GitHub into a fresh venv; for a hubselect that is
already installed (``pip install hubselect``), :func:`register` writes that manifest pointing at
this installation's ``hf-hubselect`` console script, so nothing is downloaded or installed twice.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from hubselect.errors import UserError

SHORT_NAME = "hubselect"
EXECUTABLE = f"hf-{SHORT_NAME}"


def extension_dir() -> Path:
    """Where ``hf`` looks for the extension (the same path huggingface_hub's CLI uses)."""
    return Path("~/.local/share/hf/extensions").expanduser() / EXECUTABLE


def find_executable() -> Path:
    """This installation's ``hf-hubselect`` script: beside the running interpreter, else on PATH."""
    beside = Path(sys.executable).parent / EXECUTABLE
    if beside.is_file():
        return beside
    found = shutil.which(EXECUTABLE)
    if found:
        return Path(found)
    raise UserError(f"no {EXECUTABLE} executable found; reinstall hubselect (pip install hubselect)")


def register(force: bool = False) -> Path:
    """Write the extension manifest; returns its path. Refuses to overwrite another install unless ``force``."""
    import hubselect

    folder = extension_dir()
    manifest = folder / "manifest.json"
    executable = find_executable()
    if manifest.is_file() and not force:
        current = json.loads(manifest.read_text() or "{}").get("executable_path")
        if current and Path(current).expanduser() != executable:
            raise UserError(f"an hf-hubselect extension is already installed ({current}); pass --force to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    data = {"owner": "hubselect", "repo": EXECUTABLE, "repo_id": f"hubselect/{EXECUTABLE}",
            "short_name": SHORT_NAME, "executable_path": str(executable), "type": "binary",
            "installed_at": datetime.now(timezone.utc).isoformat(),
            "description": "Which pretrained text-to-image pipeline should you fine-tune? "
                           f"(hubselect {getattr(hubselect, '__version__', '')}, registered locally)",
            "commit_sha": None}
    tmp = manifest.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, manifest)
    return manifest


def unregister() -> bool:
    """Remove the extension's manifest folder; False when there was none."""
    folder = extension_dir()
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True
