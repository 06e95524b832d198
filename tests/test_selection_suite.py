"""benchmarks/selection_suite.py: zoos found recursively, one table, the mean over zoos, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hubselect.evaluate.synthetic import make_synthetic_zoo

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "selection_suite.py"


@pytest.fixture(scope="module")
def zoo_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    make_synthetic_zoo(n_models=5, n_datasets=6, seed=1).write(root / "planted")
    names_only = make_synthetic_zoo(n_models=6, n_datasets=4, seed=2)
    names_only.datasets = names_only.datasets[["dataset"]]
    names_only.write(root / "deeper" / "names-only")
    (root / "deeper" / "names-only" / "dataset_distances.csv").unlink()
    (root / "not-a-zoo").mkdir()
    return root


def run_suite(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def test_suite_table_means_and_json(zoo_tree, tmp_path):
    out = tmp_path / "suite.json"
    res = run_suite(zoo_tree, "--no-paper", "--methods", "mc,mc-paper,overall,direct,random", "--json", out)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "| zoo | method | OSR ↑ | top-3 ↑ | τ true ↑ | τ avg ↑ | regret ↓ | O2B ↓ | O2O ↓ | datasets |" in text
    for zoo in ("planted", "deeper/names-only"):
        assert f"| {zoo} | mc |" in text and f"| {zoo} | overall |" in text and f"| {zoo} | random |" in text
    assert "| planted | direct |" in text and "| deeper/names-only | direct |" not in text
    assert "mc-paper" not in text                                    # --no-paper wins over --methods
    assert "deeper/names-only: direct left out" in text
    assert "**Mean over zoos**" in text
    assert "mc ahead of overall (τ by true ranking) on " in text and " of 2 zoos; mean mc − overall = " in text
    # progress with seconds on stderr
    assert "[1/2] deeper/names-only" in res.stderr and "[2/2] planted:" in res.stderr and " s" in res.stderr

    figures = json.loads(out.read_text())
    assert set(figures["zoos"]) == {"planted", "deeper/names-only"}
    planted = figures["zoos"]["planted"]
    assert set(planted["methods"]) == {"mc", "overall", "direct", "random"}
    assert set(planted["methods"]["mc"]) >= {"osr", "top3", "weighted_tau", "weighted_tau_avg", "regret", "o2b",
                                             "o2o", "n_datasets"}
    assert figures["mean"]["mc"]["zoos"] == 2 and figures["mean"]["direct"]["zoos"] == 1
    versus = figures["mc_vs_overall"]["weighted_tau"]
    taus = [z["methods"]["mc"]["weighted_tau"] - z["methods"]["overall"]["weighted_tau"]
            for z in figures["zoos"].values()]
    assert versus["zoos"] == 2 and versus["ahead"] == sum(d > 0 for d in taus)
    assert versus["mean_difference"] == pytest.approx(sum(taus) / 2)
    # the planted zoo carries dataset features and distances: mc must use them
    assert planted["methods"]["mc"]["weighted_tau"] > planted["methods"]["overall"]["weighted_tau"]


def test_suite_rejects_unknown_methods_and_empty_folders(tmp_path):
    res = run_suite(tmp_path, "--methods", "mc,nope")
    assert res.returncode == 2 and "unknown method" in res.stderr
    res = run_suite(tmp_path)
    assert res.returncode != 0 and "no zoo" in res.stderr
