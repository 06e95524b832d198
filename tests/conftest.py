"""Shared pytest fixtures.

Fixtures are grouped by topic; add new groups below the existing ones.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_server import HubServer, configure_hf_client, prepare_environment, reset_hf_client

# ====================================================================================================================
# Local Hugging Face Hub server (tests/hub_server/)
#
#   hub_root      an empty hub root folder (ROOT/models, ROOT/datasets)
#   hub_server    a started HubServer over hub_root; the real huggingface_hub client is pointed at it
#   fixture_hub   a started HubServer over a temporary COPY of tests/hub_fixtures
#   make_repo     (import it from tests.hub_server) writes a tiny repo into a root folder
#
# huggingface_hub reads HF_ENDPOINT, HF_HOME, its timeouts... ONCE, when it is imported (tests/hub_server/client.py
# says what and why). pytest imports this file before any test module, hence before huggingface_hub: the settings
# every test shares go into the environment here (a temporary HF_HOME, no telemetry, short timeouts so that
# "timeout" faults are quick, an endpoint on a closed local port so that a test which forgot the fixture fails
# fast); the fixtures then point the client at the server they started, for that test only.
# ====================================================================================================================

HUB_ETAG_TIMEOUT = 2  # seconds; HubServer.timeout_delay (3 s) must stay above it
HUB_DOWNLOAD_TIMEOUT = 2

prepare_environment(etag_timeout=HUB_ETAG_TIMEOUT, download_timeout=HUB_DOWNLOAD_TIMEOUT)

# Real Hub config files of the paper's pipelines, with their provenance (hub_fixtures/models/PROVENANCE.md).
HUB_FIXTURES = Path(__file__).resolve().parent / "hub_fixtures"


def _serve(root: Path, monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> Iterator[HubServer]:
    server = HubServer(root).start()
    try:
        configure_hf_client(monkeypatch, server.url, hf_home)
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
