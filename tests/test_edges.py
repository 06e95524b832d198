"""The shared edge dataset (hubselect.share, `hubselect sync`) against the local Hub endpoint."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hubselect.share.push import push_records
from hubselect.share.records import make_record, record_id
from hubselect.share.sync import pull
from hubselect.errors import UserError
from hubselect.hub import HubClient
from hubselect.profile.profiles import Profile
from hubselect.zoo.format import Zoo
from tests.cli_helpers import run_cli

REPO_ID = "hubselect/t2i-finetuning-records"
MODELS = ["org/sd-small", "org/sd-base", "org/sd-large", "org/pixart"]
DATASETS = ["ds/faces", "ds/cars", "ds/birds"]


def hub_files(hub_root: Path, prefix: str = "records/") -> list[str]:
    repo = hub_root / "datasets" / REPO_ID
    if not repo.is_dir():
        return []
    return sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")
                  if p.is_file() and p.relative_to(repo).as_posix().startswith(prefix))


def writer() -> HubClient:
    return HubClient(token="hf_write", retries=1, backoff=0.05)


def planted_records() -> list[dict]:
    """Model i is best on dataset i (FID-like: lower is better)."""
    out = []
    for d, dataset in enumerate(DATASETS):
        for m, model in enumerate(MODELS):
            score = 10.0 + 5 * m + (-8.0 if m == d else 0.0)
            out.append(make_record(model, dataset, score, initial_score=score + 20, model_sha="a" * 40,
                                   dataset_revision="b" * 40, steps=500, seed=0, adapter_repo=None))
    return out


def small_profile(dataset: str, shift: float) -> Profile:
    rng = np.random.default_rng(abs(hash(dataset)) % 1000)
    x = rng.normal(size=(50, 4)) + shift
    return Profile(dataset=dataset, probe="clip", n_samples=50, mean=x.mean(0), covariance=np.cov(x.T),
                   source="test", created_at="2026-01-01T00:00:00Z")


def make_zoo(path: Path) -> Zoo:
    zoo = Zoo.open(path, create=True)
    zoo.write_table("models", pd.DataFrame({"model": MODELS, "params": [1e9, 2e9, 3e9, 0.6e9],
                                            "family": ["sd", "sd", "sd", "pixart"]}))
    return zoo


def test_push_pull_round_trip_then_rank(hub_server, hub_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    records = planted_records()
    profiles = [small_profile(d, shift) for d, shift in zip(DATASETS, [0.0, 0.3, 3.0], strict=True)]
    added = push_records(records, REPO_ID, client=writer(), profiles=profiles)
    assert sorted(added) == sorted(record_id(r) for r in records)
    assert len(hub_files(hub_root)) == len(records)
    assert len(hub_files(hub_root, "profiles/")) == 3
    card = (hub_root / "datasets" / REPO_ID / "README.md").read_text()
    assert "data_files: records/**/*.json" in card and card.startswith("---\n")

    zoo_dir = tmp_path / "zoo"
    zoo = make_zoo(zoo_dir)
    local = pd.DataFrame({"model": ["org/sd-base"], "dataset": ["ds/mine"], "score": [1.0]})
    zoo.write_table("records", local)

    result = run_cli("sync", "--repo", REPO_ID, "--zoo", str(zoo_dir), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records_added"] == 12 and summary["records_total"] == 13 and summary["profiles_added"] == 3
    table = zoo.read_table("records")
    assert {"initial_score", "record_id", "model_sha", "dataset_revision", "source"} <= set(table.columns)
    assert (table["dataset"] == "ds/mine").sum() == 1          # the local row is kept
    assert len(zoo.read_table("dataset_distances")) == 3        # from the pulled profiles

    again = pull(REPO_ID, zoo)                                   # a second sync adds nothing
    assert again["records_added"] == 0 and again["records_total"] == 13 and again["profiles_added"] == 0

    ranked = run_cli("rank", "ds/faces", "--zoo", str(zoo_dir), "--holdout", "--json")
    assert ranked.returncode == 0, ranked.stderr
    out = json.loads(ranked.stdout)
    assert out["cold_start"] is False
    assert sorted(m["model"] for m in out["ranking"]) == sorted(MODELS)
    assert {m["source"] for m in out["ranking"]} == {"predicted"}


def test_pushing_twice_adds_nothing(hub_server, hub_root, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    records = planted_records()[:5]
    assert len(push_records(records, REPO_ID, client=writer())) == 5
    sha = hub_server.repo_sha(REPO_ID) if hasattr(hub_server, "repo_sha") else None
    assert push_records(records, REPO_ID, client=writer()) == []
    sixth = planted_records()[5]        # made once: created_at may tick between two calls
    assert push_records(records[:2] + [sixth], REPO_ID, client=writer()) == [record_id(sixth)]
    assert len(hub_files(hub_root)) == 6
    if sha is not None:
        assert hub_server.repo_sha(REPO_ID) != sha


def test_concurrent_pushers_lose_nothing(hub_server, hub_root, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    errors: list[BaseException] = []

    def contributor(k: int) -> None:
        try:
            recs = [make_record(f"org/model-{k}", f"ds/set-{i}", float(k * 100 + i), steps=10, seed=k)
                    for i in range(25)]
            assert len(push_records(recs, REPO_ID, client=writer())) == 25
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=contributor, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(hub_files(hub_root)) == 200


@pytest.mark.parametrize("token", [None, "hf_read"], ids=["no-token", "read-token"])
def test_push_without_write_access_is_refused(hub_server, hub_root, monkeypatch, token):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(UserError, match="no write access") as info:
        push_records(planted_records()[:3], REPO_ID, client=HubClient(token=token, retries=0))
    assert "\n" not in str(info.value)
    assert hub_files(hub_root, "") == []


def test_invalid_records_fail_before_any_request(hub_server, hub_root, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    bad = planted_records()[:2]
    bad[1] = {**bad[1], "score": float("nan")}
    with pytest.raises(UserError, match="finite"):
        push_records(bad, REPO_ID, client=writer())
    missing = {k: v for k, v in planted_records()[0].items() if k != "dataset_revision"}
    with pytest.raises(UserError, match="dataset_revision"):
        push_records([missing], REPO_ID, client=writer())
    assert hub_files(hub_root, "") == []


def test_sync_bad_input_is_one_line_exit_2(hub_server, tmp_path):
    zoo_dir = tmp_path / "zoo"
    make_zoo(zoo_dir)
    for repo in ("not a repo id", "nobody/no-such-records"):
        result = run_cli("sync", "--repo", repo, "--zoo", str(zoo_dir))
        assert result.returncode == 2, (repo, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert Zoo(zoo_dir).read_table("records") is None
