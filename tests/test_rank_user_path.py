"""`hubselect rank` as a user meets it: bad input on a cold start, the cold start said plainly,
licence and cost filters, why each model is placed where it is, how many to fine-tune, and a
download that fails after the ranking is printed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hubselect import rank as api_rank
from hubselect.rank.estimator import MatchAndChoose
from hubselect.zoo.tables import ZooTables
from hubselect.rank.api import shortlist_for
from hubselect.evaluate.synthetic import make_synthetic_zoo
from hubselect.zoo.format import Zoo
from tests.cli_helpers import run_cli
from tests.hub_server import make_repo

REPO = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def shipped_zoo(tmp_path) -> Path:
    zoo = tmp_path / "zoo"
    shutil.copytree(REPO / "zoo_cache", zoo)
    return zoo


@pytest.fixture
def planted_zoo(tmp_path) -> Path:
    """A planted zoo whose models carry licence, TFLOPs and denoiser parameters."""
    zoo = tmp_path / "planted"
    planted = make_synthetic_zoo(n_models=6, n_datasets=8, seed=2)
    planted.write(zoo)
    models = list(planted.models["model"])
    pd.DataFrame({"model": models,
                  "license": ["apache-2.0", "openrail++", "other", "apache-2.0", None, "mit"],
                  "tflops_per_image": [10.0, 50.0, 200.0, 400.0, 30.0, None],
                  "params_denoiser": [0.5e9, 1.0e9, 2.6e9, 12e9, 0.9e9, 0.8e9]}).to_csv(zoo / "model_info.csv",
                                                                                        index=False)
    return zoo


def test_cold_start_checks_its_dataset_and_options(shipped_zoo, tmp_path, hub_server):
    make_repo(hub_server.root, "someone/real-images", {"data/a.txt": "x"}, repo_type="dataset")
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "no-images"
    no_images.mkdir()
    (no_images / "notes.txt").write_text("nothing to see")
    before = _snapshot(shipped_zoo)
    for args, needle in (([str(tmp_path / "missing" / "folder")], "no such folder"),
                         ([str(empty)], "no image"),
                         ([str(no_images)], "no image"),
                         (["not a dataset!"], "not a Hub dataset ID"),
                         (["someone/no-such-dataset"], "not found"),
                         (["someone/real-images", "--predictor", "bogus"], "unknown predictor"),
                         (["someone/real-images", "--probe", "bogus"], "probe"),
                         (["someone/real-images", "--max-params", "0"], "--max-params")):
        res = run_cli("rank", *args, "--zoo", str(shipped_zoo), env={"HUBSELECT_HUB_RETRIES": "0"})
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], (args, res.stderr)
    assert _snapshot(shipped_zoo) == before
    ok = run_cli("rank", "someone/real-images", "--zoo", str(shipped_zoo), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["cold_start"] is True


def test_cold_start_offline_says_it_could_not_check(shipped_zoo):
    res = run_cli("rank", "someone/anything", "--zoo", str(shipped_zoo), "--json", env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    notes = json.loads(res.stdout)["notes"]
    assert any("could not check" in n and "someone/anything" in n for n in notes)


def test_cold_start_is_said_plainly(shipped_zoo):
    res = run_cli("rank", str(REPO / "examples" / "photos"), "--zoo", str(shipped_zoo), "--probe", "efficientnet")
    assert res.returncode == 0, res.stderr
    assert "the same for every dataset" in res.stderr and "hubselect sync" in res.stderr
    assert "hubselect finetune --push" in res.stderr and "--probe" in res.stderr     # not silently ignored
    assert "published position" in res.stdout and "predicted rank" not in res.stdout


def test_filters_apply_before_top_and_are_echoed(planted_zoo):
    res = run_cli("rank", "kind0/ds00", "--zoo", str(planted_zoo), "--holdout", "--json",
                  "--license", "apache-2.0,openrail++", "--max-tflops", "100", "--top", "2")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["filters"] == {"license": ["apache-2.0", "openrail++"], "max_tflops": 100.0}
    kept = {"org/model-00", "org/model-01"}        # licence and cost known and within the filters
    assert {r["model"] for r in out["ranking"]} == kept and [r["rank"] for r in out["ranking"]] == [1, 2]
    assert set(out["filtered_out"]) == {"org/model-02", "org/model-03", "org/model-04", "org/model-05"}
    assert any(n.startswith("filtered out") and "org/model-04" in n for n in out["notes"])
    by_params = api_rank("kind0/ds00", zoo=planted_zoo, holdout=True, max_params=1.0)
    assert {m.model for m in by_params.models} == {"org/model-00", "org/model-01", "org/model-04", "org/model-05"}
    assert all(m.params_denoiser_b <= 1.0 for m in by_params.models)


def test_explain_gives_the_nearest_datasets_and_average_rank(planted_zoo):
    target = "kind0/ds00"
    ranking = api_rank(target, zoo=planted_zoo, holdout=True)
    tables = ZooTables.load(Zoo.open(planted_zoo))
    held = tables.without(target).records
    held = held.assign(u=held.groupby("dataset")["score"].rank(ascending=False).sub(1)
                       / (held.groupby("dataset")["score"].transform("size") - 1))
    dist = tables.distances
    near = dist[(dist.dataset_a == target) | (dist.dataset_b == target)].copy()
    near["other"] = np.where(near.dataset_a == target, near.dataset_b, near.dataset_a)
    closest = list(near.sort_values("distance")["other"][:3])
    for m in ranking.models:
        own = held[held.model == m.model].set_index("dataset")["u"]
        assert m.average_rank == pytest.approx(own.mean(), abs=1e-4)
        assert [e["dataset"] for e in m.evidence] == closest
        for e in m.evidence:
            assert e["normalized_rank"] == pytest.approx(own[e["dataset"]], abs=1e-4)
        assert m.why and "nearest" in m.why
    res = run_cli("rank", target, "--zoo", str(planted_zoo), "--holdout", "--explain")
    assert res.returncode == 0 and "why" in res.stdout and closest[0] in res.stdout


def test_shortlist_is_the_smallest_k_that_held_the_best_model(planted_zoo, tmp_path):
    tables = ZooTables.load(Zoo.open(planted_zoo))
    cache = tmp_path / "cache"
    fitted = MatchAndChoose(cache_dir=cache).fit(tables)
    first = shortlist_for(tables, fitted)
    # by hand: each dataset ranked with its records held out, where the best model landed
    replay = MatchAndChoose(prior=fitted.prior_name_, blend=fitted.blend_)
    positions = []
    for d in sorted(set(tables.records["dataset"])):
        order = list(replay.fit(tables.without(d)).predict(d).sort_values(["score", "model"])["model"])
        best = tables.records[tables.records.dataset == d].set_index("model")["score"].idxmax()
        positions.append(order.index(best) + 1)
    k = min(k for k in range(1, 7) if np.mean(np.array(positions) <= k) >= 0.9)
    assert first == {"k": k, "hit_rate": round(float(np.mean(np.array(positions) <= k)), 4),
                     "datasets": len(positions)}
    cached = sorted(cache.glob("*.json"))
    assert cached                                           # the choice and the shortlist are kept
    for path in cached:
        path.write_text(path.read_text().replace(f'"k": {k}', '"k": 99'))
    assert shortlist_for(tables, fitted)["k"] == 99        # read back, not recomputed
    changed = tables.with_records(tables.records.iloc[:-3])  # new records: a new zoo state
    assert shortlist_for(changed, MatchAndChoose(cache_dir=cache).fit(changed))["k"] != 99
    res = run_cli("rank", "kind0/ds00", "--zoo", str(planted_zoo), "--json")
    assert json.loads(res.stdout)["shortlist"]["k"] >= 1
    human = run_cli("rank", "kind0/ds00", "--zoo", str(planted_zoo))
    assert "fine-tune the first" in human.stdout


def test_a_failed_download_comes_after_the_ranking(shipped_zoo, tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HUBSELECT_HUB_RETRIES": "0"}
    res = run_cli("rank", str(REPO / "examples" / "photos"), "--zoo", str(shipped_zoo), "--download",
                  str(tmp_path / "pipe"), env=env)
    assert res.returncode == 2
    assert "stabilityai/stable-diffusion-xl-base-1.0" in res.stdout            # the ranking came first
    errors = [line for line in res.stderr.splitlines() if line.startswith("hubselect: error")]
    assert len(errors) == 1 and "download" in errors[0]
    as_json = run_cli("rank", str(REPO / "examples" / "photos"), "--zoo", str(shipped_zoo), "--download",
                      str(tmp_path / "pipe"), "--json", env=env)
    assert as_json.returncode == 2
    out = json.loads(as_json.stdout)
    assert out["ranking"] and "error" in out["download"]


@pytest.mark.parametrize("score,needle", [("abc", "is not a number"), ("inf", "is not finite"),
                                          ("-1e308", "exceeds"), ("nan", None)])
def test_a_bad_score_in_the_users_records_is_one_line(tmp_path, score, needle):
    zoo = tmp_path / "zoo"
    make_synthetic_zoo(n_models=4, n_datasets=5, seed=1).write(zoo)
    records = pd.read_csv(zoo / "records.csv", dtype={"score": str})
    records.loc[3, "score"] = score
    records.to_csv(zoo / "records.csv", index=False)
    before = _snapshot(zoo)
    res = run_cli("rank", "kind0/ds00", "--zoo", str(zoo), "--json")
    if needle is None:               # an empty score is no record, as in any table
        assert res.returncode == 0, res.stderr
        assert "NaN" not in res.stdout and "Infinity" not in res.stdout
    else:
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert "records.csv" in lines[0] and needle in lines[0] and "row 5" in lines[0]
        assert run_cli("evaluate", "--zoo", str(zoo)).returncode == 2
    assert _snapshot(zoo) == before


def test_one_writer_is_one_vote(tmp_path):
    zoo = tmp_path / "zoo"
    planted = make_synthetic_zoo(n_models=4, n_datasets=5, seed=1)
    planted.write(zoo)
    records = planted.records.assign(writer="alice")
    honest = records[(records.dataset == "kind0/ds00")]
    best = honest.loc[honest.score.idxmax(), "model"]
    second_opinion = honest.assign(writer="bob")
    flood = pd.DataFrame([{"model": best, "dataset": "kind0/ds00", "score": -1000.0, "writer": "mallory"}] * 500)
    pd.concat([records, second_opinion, flood]).to_csv(zoo / "records.csv", index=False)
    out = json.loads(run_cli("rank", "kind0/ds00", "--zoo", str(zoo), "--json").stdout)
    top = out["ranking"][0]
    assert top["model"] == best and top["source"] == "measured" and top["writers"] == 3
    assert top["measured_score"] == pytest.approx(honest.score.max())   # the median of three writers' votes


@pytest.mark.parametrize("content,needle", [("[1, 2]", "JSON object"), ('{"format": 99}', "format 99"),
                                            ("{not json", "unreadable"), (b"\xff\xfe{}", "unreadable"),
                                            ('{"higher_is_better": "yes"}', "higher_is_better"),
                                            ('{"probe": "../../evil"}', "probe")])
def test_a_bad_zoo_json_stops_every_command(shipped_zoo, content, needle):
    path = shipped_zoo / "zoo.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = _snapshot(shipped_zoo)
    for args in (["zoo"], ["rank", str(REPO / "examples" / "photos")], ["evaluate"]):
        res = run_cli(*args, "--zoo", str(shipped_zoo))
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, (args, res.stderr)
        assert needle in lines[0] and "zoo.json" in lines[0], (args, res.stderr)
    assert _snapshot(shipped_zoo) == before
