"""The scheduled zoo refresh (hubselect.refresh, `hubselect refresh`) against the local Hub endpoint, as the
workflow runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hubselect.refresh import DEFAULT_TOLERANCE, guard, load_config
from tests.cli_helpers import run_cli
from tests.conftest import HUB_FIXTURES
from tests.hub_server import make_repo
from tests.tiny_pipelines import build_pipeline

REPO = Path(__file__).resolve().parents[1]
FAST_HUB = {"HUBSELECT_HUB_RETRIES": "1", "HUBSELECT_HUB_BACKOFF": "0.01", "HUBSELECT_HUB_TIMEOUT": "10"}
DERIVED = {"model_info.csv", "models.csv", "feature_schema.json"}   # rebuilt from crawl/ by every crawl


def run_refresh(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`hubselect refresh ARGS...` in a fresh interpreter, as the workflow runs it."""
    return run_cli("refresh", *map(str, args), env={**FAST_HUB, **(env or {})}, timeout=300)


def refresh_main(monkeypatch, *args: str) -> int:
    """`hubselect refresh ARGS...` in this process (its output in capsys); returns the exit code."""
    from hubselect.cli.root import main

    monkeypatch.setattr(sys, "argv", ["hubselect", "refresh", *map(str, args)])
    try:
        main()
    except SystemExit as exc:
        return exc.code
    return 0


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_config(path: Path, **config) -> Path:
    path.write_text(json.dumps(config))
    return path


def zoo_records(zoo: Path) -> pd.DataFrame:
    from hubselect.zoo.format import Zoo
    return Zoo(zoo).read_table("records")


# -- the acceptance test: a new repo on the Hub, a copy of the shipped zoo -------------------------------------

def serve_shipped_models(hub_root: Path, zoo: Path) -> list[str]:
    """Serve the shipped zoo's repos (tests/hub_fixtures), with the Hub metadata recorded when it was crawled.

    Returns their IDs.
    """
    shutil.copytree(HUB_FIXTURES / "models", hub_root / "models", dirs_exist_ok=True)
    for dirpath, _dirs, files in os.walk(hub_root):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    served = []
    for path in sorted((zoo / "crawl").glob("*.json")):
        rec = json.loads(path.read_text())
        if (hub_root / "models" / rec["model"]).is_dir():
            hub = rec["hub"]   # upstream unchanged since the zoo was built: same sha, same metadata
            make_repo(hub_root, rec["model"], {}, meta={"downloads": hub["downloads"], "likes": hub["likes"],
                                                         "last_modified": hub["last_modified"]})
            served.append(rec["model"])
    return served


def test_refresh_adds_a_new_repo_to_a_copy_of_zoo_cache_and_leaves_the_rest_intact(hub_server, hub_root, tmp_path):
    zoo = tmp_path / "zoo_cache"
    shutil.copytree(REPO / "zoo_cache", zoo)
    shipped = sorted(json.loads(p.read_text())["model"] for p in (zoo / "crawl").glob("*.json"))
    served = serve_shipped_models(hub_root, zoo)
    build_pipeline("sd", hub_root / "models" / "newcomer" / "tiny-sd-pipe")
    make_repo(hub_root, "newcomer/tiny-sd-pipe", {}, meta={"downloads": 10**6, "likes": 3})
    config = write_config(tmp_path / "refresh.json", datasets=[], limit=20, pinned=False)
    before = snapshot(zoo)

    # A (read) token in the environment, as the workflow passes it: it must never be printed.
    res = run_refresh("--zoo", zoo, "--config", config, "--json", env={"HF_TOKEN": "hf_read"})
    assert res.returncode == 0, res.stderr
    assert "hf_read" not in res.stdout + res.stderr
    out = json.loads(res.stdout)
    # every shipped repo the Hub lists as a diffusers text-to-image model is found unchanged (a card may name
    # another library: Sana 1.6B's says `library_name: sana`, so a diffusers listing leaves it out)
    from huggingface_hub import HfApi
    listed = {m.id for m in HfApi(endpoint=hub_server.url).list_models(filter="diffusers",
                                                                       pipeline_tag="text-to-image")}
    assert out["models"] == {"added": ["newcomer/tiny-sd-pipe"], "updated": [],
                             "unchanged": [m for m in served if m in listed], "skipped": {}}
    assert out["sync"]["records_added"] == 0 and "not found" in out["sync"]["warning"]
    assert out["guard"]["passed"] and out["guard"]["status"] == "nothing to compare"
    assert out["zoo_updated"] is True

    after = snapshot(zoo)
    new_record = "crawl/newcomer--tiny-sd-pipe.json"
    assert set(after) - set(before) == {new_record} and set(before) <= set(after)
    assert sorted(out["changed_files"]) == sorted(DERIVED | {new_record})
    for rel in set(before) - DERIVED:          # every crawl record, records.csv, zoo.json: byte for byte
        assert after[rel] == before[rel], rel
    assert json.loads(after[new_record])["sha"] == hub_server.repo_sha("newcomer/tiny-sd-pipe")
    assert not (zoo / "evaluation.json").exists()       # no figures on a cold start: nothing to record

    # model_info: the shipped models' rows unchanged, row for row; one new row.
    old_rows = before["model_info.csv"].decode().splitlines()
    new_rows = after["model_info.csv"].decode().splitlines()
    assert new_rows[0] == old_rows[0] and len(new_rows) == len(old_rows) + 1
    assert set(old_rows) <= set(new_rows)
    assert [r for r in new_rows if r not in old_rows][0].startswith("newcomer/tiny-sd-pipe,hub,")

    # models: refitted on the whole zoo (as `hubselect crawl --refit-features`), every model present.
    from hubselect.crawlers.crawl import load_records
    from hubselect.zoo import features
    from hubselect.zoo.format import Zoo
    records = [r for r in load_records(Zoo(zoo)) if r.get("status") == "ok"]
    expected = features.ModelFeatureEncoder().fit(records).transform(records)
    models = Zoo(zoo).read_table("models")
    assert sorted(models["model"]) == sorted(shipped + ["newcomer/tiny-sd-pipe"])
    pd.testing.assert_frame_equal(models.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_dtype=False, rtol=1e-9)


# -- records: the guard's first figures, a download, an unchanged rerun, then a refused update ------------------

@pytest.fixture
def zoo_with_records(hub_server, hub_root, tmp_path, monkeypatch):
    """Two tiny pipelines on the Hub, an edge dataset where tiny-sd beats tiny-sd2v on three datasets, an empty zoo."""
    for env, value in FAST_HUB.items():
        monkeypatch.setenv(env, value)
    for name, downloads in (("sd", 20), ("sd2v", 10)):
        build_pipeline(name, hub_root / "models" / "acme" / f"tiny-{name}")
        make_repo(hub_root, f"acme/tiny-{name}", {}, meta={"downloads": downloads})
    push(hub_server, {f"acme/ds-{i}": {"acme/tiny-sd": 10.0 + i, "acme/tiny-sd2v": 20.0 + i} for i in range(3)})
    from hubselect.zoo.format import Zoo
    return Zoo.open(tmp_path / "zoo", create=True).path     # clip-fid: lower is better


def push(server, scores: dict[str, dict[str, float]]) -> None:
    from hubselect.share.push import push_records
    from hubselect.share.records import make_record
    from hubselect.hub import HubClient
    client = HubClient(endpoint=server.url, token="hf_write", retries=1, backoff=0.01)
    push_records([make_record(m, d, s) for d, by_model in scores.items() for m, s in by_model.items()],
                 "acme/records", client=client)


def test_guard_records_figures_downloads_the_top_pipeline_and_refuses_a_worse_zoo(zoo_with_records, tmp_path,
                                                                                    hub_server, capsys, monkeypatch):
    zoo = zoo_with_records
    downloads = tmp_path / "pipelines"
    config = write_config(tmp_path / "refresh.json", datasets=["acme/ds-0"], limit=5, pinned=False,
                          edges_repo="acme/records")
    args = ["--zoo", str(zoo), "--config", str(config), "--download-dir", str(downloads), "--json"]

    gh_output = tmp_path / "github_output"
    assert refresh_main(monkeypatch, *args, "--github-output", gh_output) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["models"]["added"] == ["acme/tiny-sd", "acme/tiny-sd2v"]
    assert first["sync"]["records_added"] == 6
    assert first["guard"]["status"] == "first figures" and first["guard"]["passed"]
    committed = json.loads((zoo / "evaluation.json").read_text())
    assert committed["method"] == "mc" and committed["n_datasets"] == 3
    assert committed["osr"] == 1.0 and committed["weighted_tau"] == 1.0
    assert len(zoo_records(zoo)) == 6
    (entry,) = first["downloads"]
    assert entry["model"] == "acme/tiny-sd" and entry["source"] == "measured"
    assert entry["sha"] == hub_server.repo_sha("acme/tiny-sd")
    fetched = {p.relative_to(downloads / "acme--tiny-sd").as_posix() for p in (downloads / "acme--tiny-sd").rglob("*")
               if p.is_file() and ".cache" not in p.parts}
    assert "unet/diffusion_pytorch_model.safetensors" in fetched and "model_index.json" in fetched
    manifest = json.loads((downloads / "manifest.json").read_text())
    assert manifest["pipelines"]["acme/tiny-sd"]["datasets"] == ["acme/ds-0"]
    key = first["cache_key"]
    assert key.startswith("hubselect-pipelines-")
    assert gh_output.read_text().splitlines()[:2] == ["changed=true", f"cache_key={key}"]

    # Nothing new upstream: nothing to write, the guard compares equal figures, the same cache key, and the
    # weights already in the download folder (what the Actions cache restores) are not fetched again.
    weights = [p for _, p in hub_server.resolved_files() if p.endswith(".safetensors")]
    before = snapshot(zoo)
    assert refresh_main(monkeypatch, *args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["models"]["unchanged"] == ["acme/tiny-sd", "acme/tiny-sd2v"] and second["changed_files"] == []
    assert second["guard"]["status"] == "passed" and second["cache_key"] == key
    assert snapshot(zoo) == before
    assert [p for _, p in hub_server.resolved_files() if p.endswith(".safetensors")] == weights

    # Two new datasets where the order flips: M&C cannot predict them from the others, OSR and τ drop.
    push(hub_server, {f"acme/ds-{i}": {"acme/tiny-sd": 30.0, "acme/tiny-sd2v": 5.0} for i in (3, 4)})
    assert refresh_main(monkeypatch, *args) == 1
    captured = capsys.readouterr()
    third = json.loads(captured.out)
    assert third["sync"]["records_added"] == 4 and not third["guard"]["passed"]
    assert third["guard"]["current"]["osr"] < committed["osr"] and third["zoo_updated"] is False
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("hubselect: guard failed, zoo left untouched: OSR fell to")
    assert snapshot(zoo) == before            # records, evaluation.json, everything: untouched


def test_dry_run_writes_nothing(zoo_with_records, tmp_path, capsys, monkeypatch):
    zoo = zoo_with_records
    before = snapshot(zoo)
    assert refresh_main(monkeypatch, "--zoo", zoo, "--edges-repo", "acme/records", "--no-pinned", "--limit", "5",
                        "--dry-run") == 0
    text = capsys.readouterr().out
    assert "models: 2 added, 0 updated, 0 unchanged, 0 skipped" in text
    assert "(dry run: zoo left as it was)" in text
    assert snapshot(zoo) == before


# -- bad input: one line, exit 2, nothing touched ---------------------------------------------------------------

BAD_CONFIGS = [
    ('{"limit": 5,', "not valid JSON"),
    ('["acme/ds"]', "expected a JSON object"),
    ('{"limits": 5}', "unknown key(s) limits"),
    ('{"limit": 0}', "limit must be a positive integer"),
    ('{"limit": true}', "limit must be a positive integer"),
    ('{"datasets": "acme/ds"}', "datasets must be a list"),
    ('{"datasets": ["not a dataset!"]}', "neither a Hub dataset ID"),
    ('{"datasets": ["acme/ds", "acme/ds"]}', "listed twice"),
    ('{"pinned": "yes"}', "pinned must be true or false"),
    ('{"edges_repo": "no-owner"}', "edges_repo must be a Hub repo ID"),
    ('{"tolerance": {"osr": 2}}', "tolerance osr must be a number between 0 and 1"),
    ('{"tolerance": {"tau": 0.1}}', "tolerance must be an object with keys osr and weighted_tau"),
]


@pytest.mark.parametrize("text,needle", BAD_CONFIGS, ids=[n for _, n in BAD_CONFIGS])
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, text, needle):
    zoo = tmp_path / "zoo"
    shutil.copytree(REPO / "zoo_cache", zoo)
    before = snapshot(zoo)
    config = tmp_path / "refresh.json"
    config.write_text(text)
    assert refresh_main(monkeypatch, "--zoo", zoo, "--config", config) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and needle in lines[0], captured.err
    assert lines[0].startswith(f"hubselect: error: config {config}")
    assert snapshot(zoo) == before


@pytest.mark.parametrize("args,needle", [
    (["--config", "/nonexistent/refresh.json"], "no such file"),
    (["--limit", "0"], "Invalid value for '--limit'"),
    (["--edges-repo", "bad"], "--edges-repo"),
    (["--bogus"], "No such option: --bogus"),
    (["--zoo", "/nonexistent/zoo"], "no zoo at /nonexistent/zoo"),
])
def test_bad_options_are_one_line_and_exit_2(capsys, monkeypatch, args, needle):
    assert refresh_main(monkeypatch, *args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("hubselect: error:")


def test_bad_config_from_the_command_line(tmp_path):
    config = tmp_path / "refresh.json"
    config.write_text('{"datasets": [1]}')
    res = run_refresh("--zoo", REPO / "zoo_cache", "--config", config)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        f"hubselect: error: config {config}: datasets must be a list of dataset IDs (strings)"]


def test_shipped_workflow_config_is_valid():
    cfg = load_config(REPO / ".github" / "refresh-zoo.json")
    assert cfg.limit >= 1 and cfg.pinned


# -- the guard's rule ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("committed,current,passed,status", [
    (None, None, True, "nothing to compare"),
    (None, {"osr": 0.5, "weighted_tau": 0.4}, True, "first figures"),
    ({"osr": 0.5, "weighted_tau": 0.4}, {"osr": 0.5, "weighted_tau": 0.395}, True, "passed"),      # within 0.01
    ({"osr": 0.5, "weighted_tau": 0.4}, {"osr": 0.6, "weighted_tau": 0.38}, False, "failed"),      # τ dropped
    ({"osr": 0.5, "weighted_tau": 0.4}, {"osr": 0.4, "weighted_tau": 0.9}, False, "failed"),       # OSR dropped
    ({"osr": 0.5, "weighted_tau": 0.4}, {"osr": 0.5, "weighted_tau": None}, False, "failed"),      # τ lost
    ({"osr": 0.5, "weighted_tau": 0.4}, None, False, "failed"),                                    # no evaluation
])
def test_guard_rule(committed, current, passed, status):
    verdict = guard(committed, current, dict(DEFAULT_TOLERANCE))
    assert verdict["passed"] is passed and verdict["status"] == status
    assert "\n" not in verdict["reason"]
