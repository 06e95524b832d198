"""0.1's flat import paths still work for one release: each warns and yields the names at their new home."""

import importlib
import sys
import warnings

import pytest

from hubselect._compat import OLD_PATHS

# One public name of 0.1 per old module, and where it lives now.
NAMES = {
    "hubselect.select": [("rank", "hubselect.rank.api"), ("MatchAndChoose", "hubselect.rank.estimator"),
                         ("ZooTables", "hubselect.zoo.tables"), ("DEFAULT_PROBE", "hubselect.constants")],
    "hubselect.ranker": [("make_predictor", "hubselect.rank.predictors")],
    "hubselect.prior": [("prior_position", "hubselect.rank.prior")],
    "hubselect.loadable": [("loadable_counterpart", "hubselect.rank.loadable")],
    "hubselect.graph": [("build_matching_graph", "hubselect.rank.graph.matching")],
    "hubselect.node2vec": [("embed", "hubselect.rank.graph.node2vec")],
    "hubselect.images": [("open_source", "hubselect.profile.sources")],
    "hubselect.probes": [("get_probe", "hubselect.profile.probes")],
    "hubselect.profiles": [("profile_dataset", "hubselect.profile.profiles")],
    "hubselect.distance": [("frechet_to_many", "hubselect.profile.distance")],
    "hubselect.metrics": [("weighted_tau", "hubselect.evaluate.metrics")],
    "hubselect.plots": [("plot_score_heatmap", "hubselect.evaluate.plots")],
    "hubselect.synthetic": [("make_synthetic_zoo", "hubselect.evaluate.synthetic")],
    "hubselect.zoo_listing": [("list_models", "hubselect.zoo.listing")],
    "hubselect.features": [("ModelFeatureEncoder", "hubselect.zoo.features")],
    "hubselect.staging": [("staged_zoo", "hubselect.zoo.staging"),
                          ("add_profile_staged", "hubselect.profile.profiles")],
    "hubselect.edges": [("pull", "hubselect.share.sync"), ("push_records", "hubselect.share.push"),
                        ("make_record", "hubselect.share.records"), ("TrustPolicy", "hubselect.share.trust")],
    "hubselect.hf_extension": [("register", "hubselect.cli.hf_extension")],
}


def test_every_old_path_is_checked():
    assert set(NAMES) == set(OLD_PATHS)


@pytest.mark.parametrize("old", sorted(NAMES))
def test_old_path_warns_and_forwards(old):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message) for w in caught)
    for name, home in NAMES[old]:
        assert getattr(module, name) is getattr(importlib.import_module(home), name), (old, name)


def test_a_moved_module_keeps_its_own_spec():
    sys.modules.pop("hubselect.probes", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module("hubselect.probes")
    real = importlib.import_module("hubselect.profile.probes")
    assert real.__spec__.name == "hubselect.profile.probes"
    assert importlib.reload(real) is real
