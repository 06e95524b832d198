"""Running the real `hubselect` command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`hubselect ARGS...` in a fresh interpreter, with the test's environment plus ``env``."""
    return subprocess.run([sys.executable, "-m", "hubselect.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
