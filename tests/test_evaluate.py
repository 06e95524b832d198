"""`hubselect evaluate`: leave-one-dataset-out, baselines, studies, report files, both metric directions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hubselect.evaluate.protocol import evaluate, leave_one_dataset_out, sparsity_study
from hubselect.rank.estimator import MatchAndChoose
from hubselect.zoo.tables import ZooTables
from hubselect.evaluate.synthetic import make_synthetic_zoo
from hubselect.zoo.format import Zoo
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


# -- any valid zoo: no dataset features, no distances, few models, sparse or repeated records -------

def _names_only_zoo(path, n_models=5, n_datasets=4, seed=1, datasets_table=True):
    """A planted zoo stripped to what the names-only real zoos have: no features, no distances."""
    zoo = make_synthetic_zoo(n_models=n_models, n_datasets=n_datasets, seed=seed)
    zoo.datasets = zoo.datasets[["dataset"]]
    zoo.write(path)
    (path / "dataset_distances.csv").unlink()
    if not datasets_table:
        (path / "datasets.csv").unlink()
    return zoo


def test_names_only_zoo_runs_and_notes_the_direct_baseline(tmp_path):
    _names_only_zoo(tmp_path / "names")
    result = evaluate(tmp_path / "names")
    methods = set(result.summary["method"])
    assert {"mc", "mc-paper", "overall", "random"} <= methods
    assert not methods & {"direct", "initial", "popularity"}
    assert any(n.startswith("direct left out") and "no feature columns" in n for n in result.notes)
    assert any(n.startswith("popularity left out") for n in result.notes)
    assert (result.summary["n_datasets"] == 4).all()
    # the new metrics are reported for every method, the random baseline's as expectations
    summary = result.summary.set_index("method")
    for col in ("top3", "weighted_tau_avg", "regret"):
        assert summary[col].notna().all(), col
    assert summary.loc["random", "top3"] == pytest.approx(3 / 5)          # 5 models, no ties
    assert ((summary["regret"] >= 0) & (summary["regret"] <= 1)).all()
    out = result.to_dict()
    assert out["notes"] == result.notes
    assert set(out["methods"]["mc"]) >= {"osr", "top3", "weighted_tau", "weighted_tau_avg", "regret", "o2b", "o2o"}
    random_row = next(r for r in out["per_dataset"] if r["method"] == "random")
    assert random_row["hit"] == pytest.approx(1 / 5) and random_row["top3"] == pytest.approx(3 / 5)
    mc_row = next(r for r in out["per_dataset"] if r["method"] == "mc")
    assert isinstance(mc_row["hit"], bool) and isinstance(mc_row["top3"], bool)


def test_zoo_without_datasets_table_cli_prints_notes(tmp_path):
    _names_only_zoo(tmp_path / "bare", datasets_table=False)
    res = run_cli("evaluate", "--zoo", str(tmp_path / "bare"))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "| top-3 ↑ | τ true ↑ | τ avg ↑ | regret ↓ |" in res.stdout
    assert "Notes:" in res.stdout and "- direct left out: the zoo has no datasets table" in res.stdout
    res = run_cli("evaluate", "--zoo", str(tmp_path / "bare"), "--json")
    assert res.returncode == 0, res.stderr
    assert "direct left out: the zoo has no datasets table" in json.loads(res.stdout)["notes"]


def test_repeated_records_count_with_their_mean(tmp_path):
    zoo = make_synthetic_zoo(n_models=5, n_datasets=6, seed=2)
    zoo.write(tmp_path / "mean")
    # each pair twice, the mean of the two runs equal to the first zoo's score
    runs = pd.concat([zoo.records.assign(score=zoo.records["score"] + 0.3),
                      zoo.records.assign(score=zoo.records["score"] - 0.3)], ignore_index=True)
    zoo.records = runs.sample(frac=1.0, random_state=0).reset_index(drop=True)
    zoo.write(tmp_path / "runs")
    methods = {"mc": MatchAndChoose(seed=0)}
    per = {name: leave_one_dataset_out(ZooTables.load(Zoo.open(tmp_path / name)), methods).set_index(
        ["dataset", "method"]).sort_index() for name in ("mean", "runs")}
    assert len(per["runs"]) == len(per["mean"]) and per["runs"].index.equals(per["mean"].index)
    assert set(per["runs"].index.get_level_values("method")) >= {"mc", "overall", "direct", "random"}
    pd.testing.assert_frame_equal(per["runs"], per["mean"], check_exact=False, rtol=1e-9, atol=1e-12)


def test_five_models_sparse_records_and_unknown_models(tmp_path):
    zoo = make_synthetic_zoo(n_models=5, n_datasets=8, density=0.6, seed=3)
    # a model with records but no row in the models table, and a dataset with a single record
    extra = pd.DataFrame({"model": "org/unlisted", "dataset": zoo.records["dataset"].unique()[:3], "score": 9.0})
    single = pd.DataFrame({"model": ["org/model-00"], "dataset": ["lonely"], "score": [0.5]})
    zoo.records = pd.concat([zoo.records, extra, single], ignore_index=True)
    zoo.write(tmp_path / "sparse")
    tables = ZooTables.load(Zoo.open(tmp_path / "sparse"))
    per = leave_one_dataset_out(tables, {"mc": MatchAndChoose(seed=0)})
    assert "lonely" not in set(per["dataset"])                  # one scored model: nothing to rank
    assert {"mc", "overall", "direct", "random"} <= set(per["method"])
    assert per[["hit", "top3", "weighted_tau_avg", "regret"]].notna().all().all()
    assert per["regret"].between(0, 1).all()
    assert isinstance(per.attrs["notes"], list)
    # the unlisted model is the best wherever it has records, and the baselines can select it
    overall = per[per.method == "overall"].set_index("dataset")
    for d in extra["dataset"]:
        assert overall.loc[d, "top_model"] == "org/unlisted" and overall.loc[d, "hit"]
