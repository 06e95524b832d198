"""The matching graph: weight transforms (both metric directions), nodes, edges, kNN pruning, the step-4 graph."""

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from hubselect.rank.graph.matching import (
    SCORE_WEIGHT_FLOOR,
    build_matching_graph,
    dataset_node,
    datasets_of,
    distance_to_weight,
    model_node,
    models_of,
    node_kind,
    node_name,
    score_to_weight,
)


# ----------------------------------------------------------------------------------------------------------------------
# weight transforms
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["minmax", "rank"])
def test_score_to_weight_higher_is_better(method):
    acc = np.array([0.70, 0.90, 0.80, 0.75])
    w = score_to_weight(acc, higher_is_better=True, method=method)
    assert w[1] == 1.0 and w[0] == pytest.approx(SCORE_WEIGHT_FLOOR)
    assert list(np.argsort(w)) == list(np.argsort(acc))           # better accuracy, larger weight
    assert np.all((w > 0) & (w <= 1))


@pytest.mark.parametrize("method", ["minmax", "rank"])
def test_score_to_weight_lower_is_better(method):
    fid = np.array([30.0, 12.0, 55.0, 20.0])
    w = score_to_weight(fid, higher_is_better=False, method=method)
    assert w[1] == 1.0 and w[2] == pytest.approx(SCORE_WEIGHT_FLOOR)
    assert list(np.argsort(w)) == list(np.argsort(-fid))          # lower FID, larger weight
    assert np.all((w > 0) & (w <= 1))


def test_score_to_weight_minmax_is_linear_and_keeps_series_index():
    s = pd.Series([10.0, 20.0, 30.0], index=["a", "b", "c"])
    w = score_to_weight(s, higher_is_better=False, floor=0.1)
    assert isinstance(w, pd.Series) and list(w.index) == ["a", "b", "c"]
    assert w.tolist() == pytest.approx([1.0, 0.55, 0.1])


def test_score_to_weight_degenerate_and_bad_input():
    assert score_to_weight([3.0], True).tolist() == [1.0]
    assert score_to_weight([5.0, 5.0], False).tolist() == [1.0, 1.0]   # all tied: all are the best
    assert score_to_weight([], True).size == 0
    with pytest.raises(ValueError):
        score_to_weight([1.0, float("nan")], True)
    with pytest.raises(ValueError):
        score_to_weight([1.0, 2.0], True, floor=0.0)


def test_score_to_weight_rank_ignores_outlier_magnitude():
    fid = [10.0, 11.0, 12.0, 500.0]
    minmax = score_to_weight(fid, False)
    rank = score_to_weight(fid, False, method="rank")
    assert minmax[2] > 0.95                  # the outlier squashes the others towards 1
    assert rank[1] == pytest.approx(SCORE_WEIGHT_FLOOR + (1 - SCORE_WEIGHT_FLOOR) * 2 / 3)


def test_distance_to_weight():
    d = np.array([0.0, 1.0, 2.0, 4.0])
    w = distance_to_weight(d)                # scale = median of positive distances = 2
    assert w[0] == 1.0
    assert w[2] == pytest.approx(math.exp(-1))
    assert np.all(np.diff(w) < 0) and np.all(w > 0)
    assert distance_to_weight(d, scale=4.0)[3] == pytest.approx(math.exp(-1))
    assert distance_to_weight([1e6], scale=1.0)[0] > 0  # never 0, even far beyond the scale
    # unit-free: FID vs the same distances times 100
    assert distance_to_weight(d * 100) == pytest.approx(w)
    with pytest.raises(ValueError):
        distance_to_weight([-1.0, 2.0])


def test_node_ids():
    assert model_node("org/repo:v2") == "model:org/repo:v2"
    assert node_kind("model:org/repo:v2") == "model" and node_name("model:org/repo:v2") == "org/repo:v2"
    assert node_kind(dataset_node("pokemon")) == "dataset"
    with pytest.raises(ValueError):
        node_kind("pokemon")


# ----------------------------------------------------------------------------------------------------------------------
# graph
# ----------------------------------------------------------------------------------------------------------------------


def _records(higher_is_better: bool) -> pd.DataFrame:
    good, bad = (0.9, 0.5) if higher_is_better else (10.0, 50.0)
    mid = (good + bad) / 2
    rows = [("m1", "d1", good), ("m2", "d1", bad), ("m3", "d1", mid),
            ("m1", "d2", bad), ("m2", "d2", good),
            ("m1", "d3", mid), ("m2", "d3", mid)]
    return pd.DataFrame(rows, columns=["model", "dataset", "score"])


DISTANCES = pd.DataFrame([("d1", "d2", 10.0), ("d1", "d3", 40.0), ("d2", "d3", 20.0), ("d1", "d4", 5.0),
                          ("d4", "d2", 80.0)], columns=["dataset_a", "dataset_b", "distance"])


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_better_model_gets_larger_weight(higher_is_better):
    g = build_matching_graph(_records(higher_is_better), DISTANCES, higher_is_better)
    w = lambda m, d: g[model_node(m)][dataset_node(d)]["weight"]  # noqa: E731
    assert w("m1", "d1") == 1.0 and w("m2", "d1") == pytest.approx(SCORE_WEIGHT_FLOOR)
    assert w("m1", "d1") > w("m3", "d1") > w("m2", "d1")
    assert w("m2", "d2") > w("m1", "d2")
    assert w("m1", "d3") == w("m2", "d3") == 1.0                     # a tie: both best
    e = g[model_node("m1")][dataset_node("d1")]
    assert e["kind"] == "performance" and e["score"] == _records(higher_is_better)["score"][0]
    assert g.graph["higher_is_better"] is higher_is_better


def test_closer_datasets_get_larger_weight():
    g = build_matching_graph(_records(False), DISTANCES, False)
    w = lambda a, b: g[dataset_node(a)][dataset_node(b)]["weight"]  # noqa: E731
    assert w("d1", "d4") > w("d1", "d2") > w("d2", "d3") > w("d1", "d3") > w("d2", "d4") > 0
    assert g[dataset_node("d2")][dataset_node("d4")]["distance"] == 80.0    # given as (d4, d2)
    assert g.graph["distance_scale"] == 20.0                                 # median of 5, 10, 20, 40, 80
    assert not any(node_kind(u) == node_kind(v) == "model" for u, v in g.edges)


def test_nodes_kinds_and_isolated_nodes():
    g = build_matching_graph(_records(True), DISTANCES, True, models=["m1", "m2", "m3", "m_new"],
                             datasets=["d1", "d2", "d3", "d4", "d_alone"])
    assert models_of(g) == [model_node(m) for m in ["m1", "m2", "m3", "m_new"]]
    assert datasets_of(g) == [dataset_node(d) for d in ["d1", "d2", "d3", "d4", "d_alone"]]
    assert g.nodes[model_node("m_new")] == {"kind": "model", "name": "m_new"}
    assert g.degree(model_node("m_new")) == 0 and g.degree(dataset_node("d_alone")) == 0
    assert all(d["weight"] > 0 for _, _, d in g.edges(data=True))


def test_derived_node_sets_include_datasets_known_only_by_distance():
    g = build_matching_graph(_records(True), DISTANCES, True)
    assert set(datasets_of(g)) == {dataset_node(d) for d in ["d1", "d2", "d3", "d4"]}
    assert set(models_of(g)) == {model_node(m) for m in ["m1", "m2", "m3"]}
    assert build_matching_graph(_records(True), None, True).number_of_nodes() == 6


def test_new_dataset_has_only_dataset_edges():
    """The paper's step 4: the target's fine-tuning results are unknown, its distances are not."""
    recs = _records(False)
    target = "d2"
    g = build_matching_graph(recs[recs["dataset"] != target], DISTANCES, False, models=["m1", "m2", "m3"],
                             datasets=["d1", "d2", "d3", "d4"])
    nbrs = list(g.neighbors(dataset_node(target)))
    assert nbrs and all(node_kind(n) == "dataset" for n in nbrs)
    assert {node_name(n) for n in nbrs} == {"d1", "d3", "d4"}
    assert g.has_edge(model_node("m1"), dataset_node("d1"))


def test_records_and_distances_outside_the_lists_are_ignored():
    g = build_matching_graph(_records(True), DISTANCES, True, models=["m1"], datasets=["d1", "d2"])
    assert sorted(g.nodes) == [dataset_node("d1"), dataset_node("d2"), model_node("m1")]
    assert g.number_of_edges() == 3  # m1-d1, m1-d2, d1-d2
    # the weights are computed among the listed models: m1 alone on d1 is the best there
    assert g[model_node("m1")][dataset_node("d2")]["weight"] == 1.0


def test_duplicates_are_averaged_and_missing_scores_dropped():
    recs = pd.DataFrame([("a", "x", 10.0), ("a", "x", 20.0), ("b", "x", 12.0), ("c", "x", None)],
                        columns=["model", "dataset", "score"])
    g = build_matching_graph(recs, None, False, models=["a", "b", "c"])
    assert g[model_node("a")][dataset_node("x")]["score"] == 15.0
    assert g[model_node("b")][dataset_node("x")]["weight"] == 1.0
    assert g.degree(model_node("c")) == 0


def test_knn_pruning():
    names = [f"d{i}" for i in range(6)]
    pos = {n: float(i) ** 1.5 for i, n in enumerate(names)}  # datasets on a line, unevenly spaced
    dist = pd.DataFrame([(a, b, abs(pos[a] - pos[b])) for i, a in enumerate(names) for b in names[i + 1:]],
                        columns=["dataset_a", "dataset_b", "distance"])
    recs = pd.DataFrame(columns=["model", "dataset", "score"])
    full = build_matching_graph(recs, dist, True, datasets=names)
    assert full.number_of_edges() == 15
    g1 = build_matching_graph(recs, dist, True, datasets=names, knn=1)
    # each dataset keeps (at least) the edge to its nearest neighbour; nothing else survives
    nearest = {a: min((b for b in names if b != a), key=lambda b: abs(pos[a] - pos[b])) for a in names}
    expected = {frozenset((a, b)) for a, b in nearest.items()}
    assert {frozenset((node_name(u), node_name(v))) for u, v in g1.edges} == expected
    g2 = build_matching_graph(recs, dist, True, datasets=names, knn=2)
    for a in names:
        kept = {node_name(n) for n in g2.neighbors(dataset_node(a))}
        two_nearest = sorted((b for b in names if b != a), key=lambda b: abs(pos[a] - pos[b]))[:2]
        assert set(two_nearest) <= kept
    assert g2.number_of_edges() < 15
    # pruning does not change the weights of the kept edges
    for u, v, w in g2.edges(data="weight"):
        assert w == full[u][v]["weight"]
    with pytest.raises(ValueError):
        build_matching_graph(recs, dist, True, knn=0)


def test_graph_is_a_plain_weighted_networkx_graph():
    g = build_matching_graph(_records(False), DISTANCES, False)
    assert isinstance(g, nx.Graph) and not g.is_directed()
    assert set(nx.get_node_attributes(g, "kind").values()) == {"model", "dataset"}
    assert all(0 < w <= 1 for _, _, w in g.edges(data="weight"))


def test_missing_columns_are_reported():
    with pytest.raises(ValueError, match="score"):
        build_matching_graph(pd.DataFrame({"model": ["a"], "dataset": ["x"]}), None, True)
