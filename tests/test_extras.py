"""The optional extras (pyproject.toml): without one, what needs it is a one-line error that names the extra.

A missing package is simulated by a ``None`` entry in ``sys.modules``, which makes ``import`` raise ImportError.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

from hubselect.errors import UserError
from hubselect.evaluate.protocol import PAPER_PRESET, leave_one_dataset_out
from hubselect.evaluate.synthetic import make_synthetic_zoo
from hubselect.rank.estimator import MatchAndChoose
from hubselect.rank.predictors import make_predictor
from hubselect.zoo.tables import ZooTables

GRAPH_ERROR = "node2vec+ needs the graph extra: pip install 'hubselect[graph]'"
STUDIES_ERROR = "the xgboost predictor needs the studies extra: pip install 'hubselect[studies]'"


@pytest.fixture
def without_numba(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "hubselect.rank.graph.node2vec", raising=False)


@pytest.fixture
def without_xgboost(monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost", None)


def _tables(seed: int = 1) -> ZooTables:
    zoo = make_synthetic_zoo(n_models=6, n_datasets=4, seed=seed)
    return ZooTables(models=zoo.models, records=zoo.records, datasets=zoo.datasets, distances=zoo.distances,
                     info=None, higher_is_better=zoo.higher_is_better, metric=zoo.metric, probe=None)


def test_the_default_selector_needs_no_extra(without_numba, without_xgboost, monkeypatch):
    for reference_only in ("pecanpy", "gensim"):
        monkeypatch.setitem(sys.modules, reference_only, None)
    tables = _tables()
    held_out = sorted(set(tables.records["dataset"]))[0]
    ranking = MatchAndChoose(seed=0).fit(tables.without(held_out)).predict(held_out)
    assert sorted(ranking["model"]) == sorted(tables.models["model"])


def test_node2vec_without_numba_is_one_line_naming_the_graph_extra(without_numba):
    with pytest.raises(UserError) as exc:
        importlib.import_module("hubselect.rank.graph.node2vec")
    assert str(exc.value) == GRAPH_ERROR


def test_graph_selector_without_numba_is_one_line_and_evaluate_notes_it(without_numba):
    tables = _tables()
    held_out = sorted(set(tables.records["dataset"]))[0]
    with pytest.raises(UserError) as exc:
        MatchAndChoose(seed=0, **PAPER_PRESET).fit(tables.without(held_out)).predict(held_out)
    assert str(exc.value) == GRAPH_ERROR
    # `hubselect evaluate` leaves the paper's preset out, saying why, and still scores the others
    per = leave_one_dataset_out(tables, {"mc-paper": MatchAndChoose(seed=0, **PAPER_PRESET)})
    assert "mc-paper" not in set(per["method"]) and "overall" in set(per["method"])
    assert any(GRAPH_ERROR in line for line in per.attrs["notes"])


def test_xgboost_predictor_without_xgboost_is_one_line_naming_the_studies_extra(without_xgboost):
    with pytest.raises(UserError) as exc:
        make_predictor("xgboost", seed=0)
    assert str(exc.value) == STUDIES_ERROR
    make_predictor("yetirank", seed=0).fit(np.eye(4), np.linspace(0, 1, 4), np.zeros(4))   # the default needs none


def test_rank_command_without_xgboost_prints_one_line_and_exits_2(tmp_path):
    code = ("import sys\n"
            "sys.modules['xgboost'] = None\n"
            "from hubselect.cli import main\n"
            f"sys.argv = ['hubselect', 'rank', 'kind0/ds00', '--zoo', {str(tmp_path / 'zoo')!r}, '--holdout',\n"
            "            '--predictor', 'xgboost']\n"
            "main()\n")
    make_synthetic_zoo(n_models=6, n_datasets=4, seed=1).write(tmp_path / "zoo")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("hubselect: ") and line.endswith(STUDIES_ERROR)
