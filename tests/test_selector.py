"""The selector against the obvious choice: it degrades to Overall without dataset-side signal and
uses that signal when a zoo has it (leave-one-dataset-out on synthetic zoos, real CatBoost)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hubselect.evaluate import metrics
from hubselect.evaluate.protocol import leave_one_dataset_out, overall_order
from hubselect.rank.estimator import MatchAndChoose, aggregate_ranks, has_dataset_signal
from hubselect.zoo.tables import ZooTables
from hubselect.evaluate.synthetic import make_synthetic_zoo


def _tables(zoo, datasets=True, distances=True) -> ZooTables:
    return ZooTables(models=zoo.models, records=zoo.records,
                     datasets=zoo.datasets if datasets else zoo.datasets[["dataset"]],
                     distances=zoo.distances if distances else pd.DataFrame(columns=["dataset_a", "dataset_b",
                                                                                     "distance"]),
                     info=None, higher_is_better=zoo.higher_is_better, metric=zoo.metric, probe=None)


def _mean_tau(tables: ZooTables, method: MatchAndChoose) -> tuple[float, float]:
    """Mean weighted τ (by true ranking) of ``method`` and of Overall, leave one dataset out."""
    per = leave_one_dataset_out(tables, {"mc": method}, baselines=False)
    models = list(tables.models["model"])
    overall = []
    for d in per["dataset"]:
        true = tables.records[tables.records["dataset"] == d].groupby("model")["score"].mean()
        order = overall_order(tables.without(d).records, models, tables.higher_is_better)
        overall.append(metrics.weighted_tau(true, order, tables.higher_is_better))
    return float(per["weighted_tau"].mean()), float(np.mean(overall))


def _quality_plus_noise(zoo, seed: int, noise_sd: float = 0.6):
    """Replace a synthetic zoo's scores by model quality plus noise: no dataset-specific structure."""
    rng = np.random.default_rng(seed)
    quality = dict(zip(zoo.models["model"], rng.normal(0, 1, len(zoo.models))))
    zoo.records["score"] = [quality[m] + noise_sd * rng.normal() for m in zoo.records["model"]]
    return zoo


def test_names_only_zoo_ranks_like_overall():
    # Scores are model quality plus noise, and the datasets carry nothing but their names.
    zoo = _quality_plus_noise(make_synthetic_zoo(n_models=12, n_datasets=10, seed=4), seed=4)
    tables = _tables(zoo, datasets=False, distances=False)
    assert not has_dataset_signal(tables)
    fitted = MatchAndChoose().fit(tables)
    assert fitted.blend_ == 0.0                  # no learner where there is nothing to learn
    mc, overall = _mean_tau(tables, MatchAndChoose())
    assert abs(mc - overall) <= 0.01, (mc, overall)


def test_uninformative_dataset_features_stay_near_overall():
    # Dataset features and distances exist but say nothing about the scores.
    zoo = _quality_plus_noise(make_synthetic_zoo(n_models=12, n_datasets=10, seed=6), seed=6)
    tables = _tables(zoo)
    assert has_dataset_signal(tables)
    mc, overall = _mean_tau(tables, MatchAndChoose())
    assert mc >= overall - 0.01, (mc, overall)


def test_planted_structure_puts_mc_clearly_ahead():
    # Which model is best depends on the dataset's kind, which features and distances reveal.
    zoo = make_synthetic_zoo(n_models=10, n_datasets=12, n_kinds=2, noise_sd=0.2, seed=8)
    tables = _tables(zoo)
    mc, overall = _mean_tau(tables, MatchAndChoose())
    assert mc >= overall + 0.2, (mc, overall)
    assert MatchAndChoose().fit(tables).blend_ > 0


def test_estimator_stores_parameters_and_predicts_after_fit():
    method = MatchAndChoose(prior="median", blend=0.5, seed=3)
    assert (method.prior, method.blend, method.seed) == ("median", 0.5, 3)
    assert not hasattr(method, "train_")
    with pytest.raises(RuntimeError):
        method.predict("kind0/ds00")
    zoo = make_synthetic_zoo(n_models=6, n_datasets=6, seed=1)
    tables = _tables(zoo)
    out = method.fit(tables.without("kind0/ds00")).predict("kind0/ds00")
    assert sorted(out["model"]) == sorted(zoo.models["model"])
    assert out["expected_u"].between(0, 1).all() and out["score"].min() == 1
    assert method.prior_name_ == "median" and method.blend_ == 0.5
    # the held-out view drops only the dataset's records, not its features or distances
    held = tables.without("kind0/ds00")
    assert "kind0/ds00" not in set(held.records["dataset"])
    assert "kind0/ds00" in set(held.datasets["dataset"]) and len(held.distances) == len(tables.distances)


def test_aggregates_resist_one_odd_dataset():
    U = np.array([[0.0, 0.0, 0.0, 1.0, 0.1],
                  [0.2, 0.3, 0.2, 0.0, 0.2],
                  [np.nan, np.nan, np.nan, np.nan, np.nan]])
    assert np.allclose(aggregate_ranks(U, "mean")[:2], [0.22, 0.18])
    assert np.allclose(aggregate_ranks(U, "median")[:2], [0.0, 0.2])
    assert np.allclose(aggregate_ranks(U, "trimmed-mean")[:2], [(0.0 + 0.0 + 0.1) / 3, 0.2])
    assert np.isnan(aggregate_ranks(U, "mean")[2])
    with pytest.raises(ValueError):
        aggregate_ranks(U, "mode")
