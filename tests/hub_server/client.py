"""Pointing the real huggingface_hub client at a HubServer: in the test process and in the subprocesses it starts.

huggingface_hub reads its settings from the environment ONCE, when ``huggingface_hub.constants`` is imported, and
freezes some further (``get_hf_file_metadata(timeout=constants.HF_HUB_ETAG_TIMEOUT)`` binds the timeout as a default
argument at import). So the set-up is done in two steps, and relies on the environment wherever it can:

1. :func:`prepare_environment`, BEFORE huggingface_hub is imported (tests/conftest.py calls it at its own import,
   which pytest does before importing any test module): what every test shares goes into the environment, and
   huggingface_hub reads it itself: no telemetry, short timeouts (so that "timeout" faults are quick), online mode,
   no staging, a temporary HF_HOME (tests never read or write the user's Hub cache or token; the cache and token
   paths follow HF_HOME), and an endpoint on a closed local port, so that a test which forgot the fixture fails
   fast instead of reaching huggingface.co.
2. :func:`configure_hf_client`, once a server has started (its port is only known then): HF_ENDPOINT and HF_HOME
   for the subprocesses (they read them at their own import), and, in this process, the few values that
   huggingface_hub derived from them at import: ``constants.ENDPOINT``, ``constants.HUGGINGFACE_CO_URL_TEMPLATE``,
   ``constants.HF_HOME``, ``constants.HF_HUB_CACHE``, ``constants.HF_TOKEN_PATH``, ``constants.HF_STORED_TOKENS_PATH``
   (read when used), plus one private object (below). Everything is undone by pytest's ``monkeypatch``.

Left alone on purpose: ``constants.HF_URL_HOSTS`` and the redirect origins of ``huggingface_hub.utils._http`` already
hold 127.0.0.1 (the host of the import-time endpoint; a HubServer listens there too, and never redirects);
``HF_ASSETS_CACHE``/``HF_XET_CACHE`` are not read in-process by anything the tests run (subprocesses derive them from
HF_HOME).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

CLOSED_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens there, connections are refused at once

# Settings of the user's environment that would change what huggingface_hub does in tests, or where it writes.
_CLIENT_SETTINGS = (
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_IMPLICIT_TOKEN", "HUGGINGFACE_CO_STAGING",
    "HF_TOKEN_PATH", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HUGGINGFACE_ASSETS_CACHE",
    "HF_XET_CACHE",
)
# The user's token: kept for tests without a server (as before), removed by the fixtures for theirs.
_TOKEN_SETTINGS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE")


def prepare_environment(*, etag_timeout: int, download_timeout: int) -> None:
    """The environment every test shares; must run before huggingface_hub is imported (it reads it only then)."""
    if "huggingface_hub" in sys.modules:
        raise RuntimeError("prepare_environment() must run before huggingface_hub is imported: huggingface_hub reads "
                           "HF_ENDPOINT, HF_HOME and its timeouts once, at import")
    for var in _CLIENT_SETTINGS:
        os.environ.pop(var, None)
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hubselect-tests-hf-home-")
    os.environ["HF_ENDPOINT"] = CLOSED_ENDPOINT
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_ETAG_TIMEOUT"] = str(etag_timeout)
    os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = str(download_timeout)


def configure_hf_client(monkeypatch: Any, endpoint: str, hf_home: str | os.PathLike) -> None:
    """Point huggingface_hub at ``endpoint`` with a HF_HOME of its own, without a token, using a pytest
    ``monkeypatch`` (undone at teardown)."""
    from huggingface_hub import constants, hf_api

    endpoint = endpoint.rstrip("/")
    hf_home = Path(hf_home)
    for var in (*_CLIENT_SETTINGS, *_TOKEN_SETTINGS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(hf_home))

    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    # Private: huggingface_hub.model_info, list_models, ... are methods of this HfApi, which copied ENDPOINT at import.
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    reset_hf_client()  # no keep-alive connection to, nor file system cached for, a previous server


def reset_hf_client() -> None:
    """Close huggingface_hub's shared HTTP session and cached HfFileSystem instances (after a server stops)."""
    import huggingface_hub

    huggingface_hub.close_session()
    huggingface_hub.HfFileSystem.clear_instance_cache()  # fsspec keeps instances, with the endpoint they were made with
