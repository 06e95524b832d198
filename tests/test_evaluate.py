"""`hubselect evaluate`: leave-one-dataset-out, baselines, studies, report files, both metric directions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hubselect.evaluate import evaluate, leave_one_dataset_out, sparsity_study
from hubselect.select import MatchAndChoose, ZooTables
from hubselect.synthetic import make_synthetic_zoo
from hubselect.zoo import Zoo
from tests.cli_helpers import run_cli




@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalzoo")
    zoo = make_synthetic_zoo(n_models=6, n_datasets=10, noise_sd=0.01, seed=4)
    zoo.records["initial_score"] = zoo.records["score"] * 0.0 + np.random.default_rng(0).random(len(zoo.records))
    zoo.models["downloads"] = np.arange(len(zoo.models))[::-1] * 100
    zoo.write(root / "acc")
    flipped = make_synthetic_zoo(n_models=6, n_datasets=10, noise_sd=0.01, seed=4, higher_is_better=False)
    flipped.models["downloads"] = zoo.models["downloads"]
    flipped.write(root / "fid")
    return root, zoo


def test_mc_recovers_planted_structure_and_beats_overall_and_random(planted):
    root, zoo = planted
    result = evaluate(root / "acc")
    summary = result.summary.set_index("method")
    assert set(summary.index) >= {"mc", "mc-paper", "overall", "initial", "direct", "popularity", "random"}
    assert summary.loc["mc", "osr"] >= 0.7
    assert summary.loc["mc", "osr"] > summary.loc["overall", "osr"]
    assert summary.loc["mc", "weighted_tau"] > summary.loc["random", "weighted_tau"] + 0.3
    assert summary.loc["mc", "o2o"] < summary.loc["random", "o2o"]
    assert (summary["n_datasets"] == 10).all()
    # every held-out dataset is scored once per method, and hits mean zero loss
    per = result.per_dataset
    assert per.groupby("method").size().eq(10).all()
    chosen = per[per.method != "random"]          # random's rows are expectations, not one choice
    assert ((chosen["o2o"] == 0) == chosen["hit"].astype(bool)).all()


def test_metric_direction_does_not_change_the_conclusions(planted):
    root, _ = planted
    acc = evaluate(root / "acc").summary.set_index("method")
    fid = evaluate(root / "fid").summary.set_index("method")
    for method in ("mc", "overall", "direct", "popularity", "random"):
        assert acc.loc[method, "osr"] == pytest.approx(fid.loc[method, "osr"])
        assert acc.loc[method, "weighted_tau"] == pytest.approx(fid.loc[method, "weighted_tau"], abs=1e-9)


def test_held_out_records_never_reach_the_predictor(planted):
    """Scrambling a held-out dataset's records must not change its prediction."""
    root, zoo = planted
    tables = ZooTables.load(Zoo.open(root / "acc"))
    target = "kind0/ds00"
    method = {"mc": MatchAndChoose(seed=0)}
    before = leave_one_dataset_out(tables, method, baselines=False, datasets=[target])
    scrambled = tables.records.copy()
    mask = scrambled.dataset == target
    scrambled.loc[mask, "score"] = scrambled.loc[mask, "score"].to_numpy()[::-1]
    after = leave_one_dataset_out(tables, method, baselines=False, datasets=[target], records=scrambled)
    assert before["top_model"].tolist() == after["top_model"].tolist()


def test_studies_run_and_sparsity_degrades(planted):
    root, _ = planted
    tables = ZooTables.load(Zoo.open(root / "acc"))
    sparse = sparsity_study(tables, levels=(0.0, 0.8), n_seeds=2)
    assert set(sparse["method"]) == {"mc", "random"} and len(sparse) == 8
    mean = sparse[sparse.method == "mc"].groupby("removed_fraction")["weighted_tau"].mean()
    assert mean[0.0] > mean[0.8]
    result = evaluate(root / "acc", studies=("ablation", "predictors"))
    assert list(result.studies["ablation"]["method"])[:3] == ["features only", "graph only", "both"]
    assert {"catboost", "yetirank", "rf", "xgboost", "svc", "mlp"} <= set(result.studies["predictors"]["method"])


def test_cli_json_and_report_files(planted, tmp_path):
    root, _ = planted
    out_dir = tmp_path / "report"
    res = run_cli("evaluate", "--zoo", str(root / "acc"), "--json", "--plots", str(out_dir))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["metric"] == "synthetic-score" and out["higher_is_better"] is True and len(out["datasets"]) == 10
    assert {"mc", "overall", "direct", "random"} <= set(out["methods"])
    assert set(out["methods"]["mc"]) >= {"osr", "weighted_tau", "o2b", "o2o"}
    row = out["per_dataset"][0]
    assert set(row) >= {"dataset", "method", "top_model", "hit", "weighted_tau", "o2o"}
    for name in ("per_dataset.csv", "summary.csv", "report.md", "scores_heatmap.png", "methods.png"):
        assert (out_dir / name).is_file(), name
    assert pd.read_csv(out_dir / "summary.csv")["method"].tolist()[0] == "mc"
    with Image.open(out_dir / "scores_heatmap.png") as im:
        assert im.format == "PNG" and im.size[0] > 200
    assert "| mc |" in (out_dir / "report.md").read_text()


@pytest.mark.parametrize("args,needle", [
    (["--study", "nope"], "unknown study"),
    (["--sparsity-seeds", "0"], "--sparsity-seeds"),
])
def test_bad_input_exit_2(planted, args, needle):
    root, _ = planted
    res = run_cli("evaluate", "--zoo", str(root / "acc"), *args)
    assert res.returncode == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_zoo_without_enough_records_is_a_clear_error(tmp_path):
    zoo = make_synthetic_zoo(n_models=3, n_datasets=2)
    zoo.records = zoo.records[zoo.records.dataset == "kind0/ds00"]
    zoo.write(tmp_path / "z")
    res = run_cli("evaluate", "--zoo", str(tmp_path / "z"))
    assert res.returncode == 2 and "at least two datasets" in res.stderr
