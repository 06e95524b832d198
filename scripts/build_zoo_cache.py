"""Rebuild the shipped zoo_cache/ offline: crawl tests/hub_fixtures through the local Hub endpoint.

    python scripts/build_zoo_cache.py [--fixtures tests/hub_fixtures] [--zoo zoo_cache] [--refit-features]

The fixture folder holds real Hub config files of the paper's pipelines (see its PROVENANCE.md).
They are served over HTTP by tests/hub_server/ and crawled with `hubselect crawl` exactly as the
real Hub would be, so the zoo's model IDs are the real repo IDs. Gated fixtures (cards with
extra_gated_* keys) are read with the endpoint's read token, as the refresh reads the real gated repos
with an HF_TOKEN that has access.
On a machine that reaches the Hub, the scheduled refresh crawls the real repos (plus
crawlers/pinned.txt) instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.hub_server import HubServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=REPO / "tests" / "hub_fixtures")
    parser.add_argument("--zoo", type=Path, default=REPO / "zoo_cache")
    parser.add_argument("--refit-features", action="store_true",
                        help="Refit the model feature schema (after the crawler's description of models changed).")
    args = parser.parse_args()
    if not (args.fixtures / "models").is_dir():
        print(f"no fixture repos under {args.fixtures}/models", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "hub"
        shutil.copytree(args.fixtures, root)
        repos = sorted(f"{p.parent.name}/{p.name}" for p in (root / "models").glob("*/*") if p.is_dir())
        with HubServer(root) as server:
            read_token = next(tok for tok, role in server.tokens.items() if role == "read")
            env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(Path(tmp) / "hf_home"),
                   "HF_TOKEN": read_token}
            cmd = [sys.executable, "-m", "hubselect.cli", "crawl", *repos, "--zoo", str(args.zoo),
                   *(["--refit-features"] if args.refit_features else [])]
            return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
