"""Defaults and environment variables: the one place that names them and reads the environment.

Hub variables follow huggingface_hub (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HOME``, ``HF_HUB_OFFLINE``) and
are read when asked, not at import, so a script or a test may set them late. hubselect's own variables
start with ``HUBSELECT_``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# -- defaults ----------------------------------------------------------------------------------------
DEFAULT_PROBE = "clip"                                   # the probe of the shipped zoo and of the paper
DEFAULT_PREDICTOR = "yetirank"                           # see README, "Choosing the defaults"
DEFAULT_EDGES_REPO = "hubselect/t2i-finetuning-records"  # the shared edge dataset
# A probe name is also a folder name and a column prefix (``clip_0``): letters, digits, dashes.
PROBE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")

# -- environment variables ---------------------------------------------------------------------------
ENV_ZOO = "HUBSELECT_ZOO"                    # the zoo used when --zoo is not given (read and write)
ENV_EDGES_REPO = "HUBSELECT_EDGES_REPO"      # the shared edge dataset's repo ID
ENV_HUB_RETRIES = "HUBSELECT_HUB_RETRIES"    # Hub calls: retries of transient failures (default 4)
ENV_HUB_BACKOFF = "HUBSELECT_HUB_BACKOFF"    # ... first backoff in seconds, doubled each retry (default 1.0)
ENV_HUB_TIMEOUT = "HUBSELECT_HUB_TIMEOUT"    # ... per-request timeout in seconds (default 30)
ENV_PROFILE_WORKERS = "HUBSELECT_PROFILE_WORKERS"   # image-decoding worker processes of `profile`
ENV_WORKER_NICE = "HUBSELECT_WORKER_NICE"    # their niceness (default 10)


def env(name: str, default: str | None = None) -> str | None:
    """An environment variable, stripped; ``default`` when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_number(name: str, default: float, kind: type = float):
    """A numeric environment variable (``kind`` int or float); ``default`` when unset."""
    from hubselect.errors import UserError
    value = env(name)
    if value is None:
        return kind(default)
    try:
        return kind(value)
    except ValueError:
        raise UserError(f"{name}={value!r} is not a number") from None


def probe_name_ok(name: object) -> bool:
    return isinstance(name, str) and PROBE_NAME.fullmatch(name) is not None


def hf_endpoint() -> str:
    import huggingface_hub
    return (env("HF_ENDPOINT") or huggingface_hub.constants.ENDPOINT).rstrip("/")


def hf_token() -> str | None:
    """The token from ``HF_TOKEN`` or the one saved by ``hf auth login``; never printed."""
    import huggingface_hub
    return env("HF_TOKEN") or huggingface_hub.get_token()


def hf_offline() -> bool:
    return (env("HF_HUB_OFFLINE") or "").upper() in {"1", "ON", "YES", "TRUE"}


def hf_home() -> Path:
    from huggingface_hub import constants
    return Path(constants.HF_HOME)


def in_github_actions() -> bool:
    """Set by GitHub Actions in every step: warnings become workflow annotations."""
    return env("GITHUB_ACTIONS") == "true"


def hubselect_home() -> Path:
    """``$HF_HOME/hubselect``: the user's zoo, the selector cache, downloaded pipelines, training runs."""
    return hf_home() / "hubselect"


def edges_repo() -> str:
    return env(ENV_EDGES_REPO) or DEFAULT_EDGES_REPO
