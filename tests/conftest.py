"""Shared pytest fixtures.

Fixtures are grouped by topic; add new groups below the existing ones.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# ====================================================================================================================
# Local Hugging Face Hub server (tests/hub_server.py)
#
#   hub_root      an empty hub root folder (ROOT/models, ROOT/datasets)
#   hub_server    a started HubServer over hub_root; the real huggingface_hub client is pointed at it
#   fixture_hub   a started HubServer over a temporary COPY of tests/hub_fixtures
#   make_repo     (import it from tests.hub_server) writes a tiny repo into a root folder
#
# How huggingface_hub reads its endpoint: `huggingface_hub.constants` reads HF_ENDPOINT, HF_HOME (and the cache/token
# paths derived from it), HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT, HF_HUB_DISABLE_TELEMETRY... ONCE, when it is
# imported. Some values are frozen even further: `get_hf_file_metadata(timeout=constants.HF_HUB_ETAG_TIMEOUT)` binds
# the timeout as a default argument, and `huggingface_hub.hf_api.api = HfApi()` (the object behind the module-level
# `huggingface_hub.model_info`, `list_models`, ...) copies ENDPOINT at import. The server port is only known once a
# fixture starts it, so:
#   1. here, at conftest import (pytest imports conftest before any test module, hence before huggingface_hub),
#      safe defaults go into the environment: no telemetry, short timeouts (so "timeout" faults are quick), and an
#      endpoint on a closed local port, so that a test which forgot the fixture fails fast instead of trying to reach
#      huggingface.co. Values already set in the environment are kept.
#   2. the fixtures set HF_ENDPOINT / HF_HOME / ... for the started server (inherited by subprocesses, which read
#      them at their own import) AND patch the already-imported values (`configure_hf_client`), undone at teardown.
# ====================================================================================================================

HUB_ETAG_TIMEOUT = 2  # seconds; HubServer.timeout_delay (3 s) must stay above it
HUB_DOWNLOAD_TIMEOUT = 2

if "huggingface_hub" not in sys.modules:
    # Tests never read or write the user's Hub cache (downloads, the selector's cached choices).
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hubselect-tests-hf-home-")
    os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(HUB_ETAG_TIMEOUT))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(HUB_DOWNLOAD_TIMEOUT))

from tests.hub_server import HubServer, configure_hf_client, reset_hf_client  # noqa: E402


# Real Hub config files of the paper's pipelines, with their provenance (hub_fixtures/models/PROVENANCE.md).
HUB_FIXTURES = Path(__file__).resolve().parent / "hub_fixtures"



def _serve(root: Path, monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> Iterator[HubServer]:
    server = HubServer(root).start()
    try:
        configure_hf_client(
            monkeypatch,
            server.url,
            hf_home,
            etag_timeout=HUB_ETAG_TIMEOUT,
            download_timeout=HUB_DOWNLOAD_TIMEOUT,
        )
        yield server
    finally:
        server.stop()
        reset_hf_client()


@pytest.fixture
def hub_root(tmp_path: Path) -> Path:
    """An empty hub root folder."""
    root = tmp_path / "hub"
    (root / "models").mkdir(parents=True)
    (root / "datasets").mkdir()
    return root


@pytest.fixture
def hub_server(hub_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A HubServer over `hub_root`; HF_ENDPOINT points at it, HF_HOME is a temporary folder, no HF_TOKEN."""
    yield from _serve(hub_root, monkeypatch, tmp_path / "hf_home")


@pytest.fixture
def fixture_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A HubServer over a writable temporary copy of tests/hub_fixtures."""
    src = HUB_FIXTURES
    root = tmp_path / "fixture_hub"
    shutil.copytree(src, root, copy_function=shutil.copyfile)
    for dirpath, _dirnames, filenames in os.walk(root):  # the fixtures may be read-only; copytree copies dir modes
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    yield from _serve(root, monkeypatch, tmp_path / "hf_home")


# ====================================================================================================================
# (other fixture groups go below)
# ====================================================================================================================
