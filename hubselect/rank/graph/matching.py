"""The matching graph (the paper's §4.3): models and datasets as nodes, fine-tuning results and dataset similarity as
weighted edges, ready for node2vec+ (``hubselect.rank.graph.node2vec``).

Nodes
    ``"model:<name>"`` and ``"dataset:<name>"`` (:func:`model_node`, :func:`dataset_node`), so a model and a dataset
    may share a name. Every node carries ``kind`` (``"model"`` or ``"dataset"``) and ``name`` attributes;
    :func:`node_kind` and :func:`node_name` split an ID without the graph. The prefix is everything up to the FIRST
    colon, so names may themselves contain colons and slashes (``"model:org/repo:v2"``).

Edges (undirected, attribute ``weight`` > 0, larger = closer; node2vec+ walks follow large weights)
    * model–dataset (``kind="performance"``): the model was fine-tuned on the dataset. ``score`` keeps the raw
      metric; ``weight`` is :func:`score_to_weight` of the scores of that one dataset.
    * dataset–dataset (``kind="similarity"``): ``distance`` keeps the raw profile distance (e.g. FID between the
      datasets); ``weight`` is :func:`distance_to_weight`. Optionally pruned to each dataset's ``knn`` nearest.
    * no model–model edges (the paper discards them).

Both edge kinds end up on the same (0, 1] scale: 1 is "as close as it gets" (the dataset's best model, an identical
dataset). The paper uses raw FID as the weight of both kinds; raw FID cannot be used as-is because node2vec's walk
prefers LARGE weights while FID is smaller-is-better, and FIDs of different datasets are not on one scale.

The paper's step 4 (a new dataset whose fine-tuning results are unknown) is a graph built from records that exclude
that dataset while the distances include it: the dataset becomes a node with dataset–dataset edges only. Pass it in
``datasets`` (or let it come from ``distances``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import networkx as nx
import numpy as np
import pandas as pd

MODEL = "model"
DATASET = "dataset"
PERFORMANCE = "performance"
SIMILARITY = "similarity"

#: Weight of the worst model of a dataset (:func:`score_to_weight`).
SCORE_WEIGHT_FLOOR = 0.05


# ----------------------------------------------------------------------------------------------------------------------
# Node IDs
# ----------------------------------------------------------------------------------------------------------------------


def model_node(name: str) -> str:
    """Node ID of a model: ``"model:<name>"``."""
    return f"{MODEL}:{name}"


def dataset_node(name: str) -> str:
    """Node ID of a dataset: ``"dataset:<name>"``."""
    return f"{DATASET}:{name}"


def node_kind(node: str) -> str:
    """``"model"`` or ``"dataset"`` (the part before the first colon)."""
    kind, sep, _ = str(node).partition(":")
    if not sep or kind not in (MODEL, DATASET):
        raise ValueError(f"not a matching-graph node ID: {node!r}")
    return kind


def node_name(node: str) -> str:
    """The model or dataset name (everything after the first colon)."""
    node_kind(node)
    return str(node).partition(":")[2]


# ----------------------------------------------------------------------------------------------------------------------
# Weight transforms
# ----------------------------------------------------------------------------------------------------------------------


def _as_float_array(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite (got NaN or inf); drop missing results before building the graph")
    return arr


def _like_input(values, out: np.ndarray):
    if isinstance(values, pd.Series):
        return pd.Series(out, index=values.index, name=values.name)
    return out


def score_to_weight(scores, higher_is_better: bool, *, floor: float = SCORE_WEIGHT_FLOOR,
                    method: Literal["minmax", "rank"] = "minmax"):
    """Edge weights in ``[floor, 1]`` for the fine-tuning scores of ONE dataset (one score per model).

    ``minmax`` (default): ``goodness = (s - worst) / (best - worst)`` where best/worst are the max/min score when
    ``higher_is_better`` (accuracy, CLIP score) and the min/max when not (FID); ``weight = floor + (1 - floor) *
    goodness``. The dataset's best model gets 1, its worst gets ``floor``, the rest lie linearly in between.
    ``rank``: the same with ``goodness`` taken from the rank instead of the value (ties get their average rank), so
    one catastrophic run does not squash the others towards 1.

    If all scores are equal (or there is one), every model is "the best": all weights are 1.

    Why per dataset: raw scores of different datasets are not comparable (an FID of 20 is excellent on one dataset
    and poor on another), and node2vec's transition probabilities at a dataset node only depend on the RELATIVE
    weights of its edges, which this transform keeps monotone. Why a floor: node2vec+ needs strictly positive weights
    (a zero-weight edge is not an edge for pecanpy), and the worst model's edge still says "this result is known".

    ``scores``: a 1-D array-like or a ``pandas.Series`` (the result is then a Series with the same index). Must be
    finite. Returns float64 values.
    """
    if not 0 < floor <= 1:
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    arr = _as_float_array(scores, "scores")
    if arr.size == 0:
        return _like_input(scores, arr.copy())
    if method == "minmax":
        lo, hi = arr.min(), arr.max()
        if hi == lo:
            goodness = np.ones_like(arr)
        else:
            goodness = (arr - lo) / (hi - lo) if higher_is_better else (hi - arr) / (hi - lo)
    elif method == "rank":
        ranks = pd.Series(arr).rank(method="average").to_numpy()  # 1 = smallest
        if arr.size == 1 or ranks.max() == ranks.min():
            goodness = np.ones_like(arr)
        else:
            goodness = (ranks - ranks.min()) / (ranks.max() - ranks.min())
            if not higher_is_better:
                goodness = 1.0 - goodness
    else:
        raise ValueError(f"unknown method {method!r} (minmax or rank)")
    return _like_input(scores, floor + (1.0 - floor) * goodness)


def distance_scale(distances) -> float:
    """The default scale of :func:`distance_to_weight`: the median of the positive distances (1.0 if none)."""
    arr = _as_float_array(distances, "distances")
    pos = arr[arr > 0]
    return float(np.median(pos)) if pos.size else 1.0


def distance_to_weight(distances, *, scale: float | None = None):
    """Edge weights ``exp(-d / scale)`` in ``(0, 1]`` for dataset–dataset distances ``d >= 0``.

    Decreasing in ``d``: identical datasets get 1, a pair at the typical distance gets ``exp(-1) ≈ 0.37``, far pairs
    approach 0 without reaching it (node2vec+ needs positive weights). ``scale`` defaults to the median of the
    positive distances given (:func:`distance_scale`), which makes the transform invariant to the unit of the
    distance (FID vs FID², CLIP vs Inception features): only distances relative to the typical one matter. Pass a
    fixed ``scale`` to make weights of different graphs directly comparable.

    ``distances``: a 1-D array-like or a ``pandas.Series`` (the result is then a Series with the same index).
    """
    arr = _as_float_array(distances, "distances")
    if np.any(arr < 0):
        raise ValueError("distances must be non-negative")
    if scale is None:
        scale = distance_scale(arr) if arr.size else 1.0
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale}")
    out = np.exp(-arr / scale)
    # exp underflows to 0 beyond ~745 scales; keep the edge positive
    out = np.maximum(out, np.finfo(np.float64).tiny)
    return _like_input(distances, out)


# ----------------------------------------------------------------------------------------------------------------------
# Graph
# ----------------------------------------------------------------------------------------------------------------------


def _unique(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _check_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(df.columns)}")


def _knn_keep(pairs: pd.DataFrame, k: int) -> np.ndarray:
    """Mask of the pairs that are among the ``k`` nearest neighbours of at least one of their two endpoints."""
    both = pd.concat([
        pd.DataFrame({"node": pairs["a"], "other": pairs["b"], "d": pairs["distance"], "i": pairs.index}),
        pd.DataFrame({"node": pairs["b"], "other": pairs["a"], "d": pairs["distance"], "i": pairs.index}),
    ], ignore_index=True)
    # ties broken by the neighbour's name, so the result does not depend on row order
    both = both.sort_values(["node", "d", "other"], kind="mergesort")
    kept = both[both.groupby("node", sort=False).cumcount() < k]["i"]
    return pairs.index.isin(kept).astype(bool)


def build_matching_graph(records: pd.DataFrame, distances: pd.DataFrame | None, higher_is_better: bool,
                         models: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                         knn: int | None = None, *, floor: float = SCORE_WEIGHT_FLOOR,
                         score_method: Literal["minmax", "rank"] = "minmax",
                         scale: float | None = None) -> nx.Graph:
    """Build the matching graph.

    ``records``: columns ``model, dataset, score`` (one fine-tuning result per row; repeated (model, dataset) rows
    are averaged; rows with a missing score are dropped). ``distances``: columns ``dataset_a, dataset_b, distance``
    (symmetric; a pair given in both orders is averaged; self pairs are ignored); may be ``None`` or empty.
    ``higher_is_better``: direction of ``score`` (False for FID).

    ``models`` / ``datasets``: the node sets. Every listed name is a node, with or without edges; records and
    distances that mention a name outside the lists are ignored (so a sub-graph is one call). ``None``: every model
    of ``records``; every dataset of ``records`` or ``distances``.

    ``knn``: keep a dataset–dataset edge only if it is among the ``knn`` nearest neighbours (smallest distance, ties
    by name) of at least one of its endpoints (the symmetric kNN graph); ``None`` keeps all pairs. The distance
    weights are computed before pruning, so a pair's weight does not depend on ``knn``.

    ``floor``, ``score_method``: passed to :func:`score_to_weight` (applied per dataset). ``scale``: passed to
    :func:`distance_to_weight` (default: median of the positive distances among the listed datasets).

    Node order (what node2vec sees): models, then datasets, each in the order given (or sorted when derived).
    Graph attributes: ``higher_is_better``, ``distance_scale``, ``knn``.
    """
    _check_columns(records, ["model", "dataset", "score"], "records")
    recs = records[["model", "dataset", "score"]].dropna(subset=["score"])
    recs = recs.astype({"model": str, "dataset": str})
    recs = recs.groupby(["model", "dataset"], as_index=False, sort=True)["score"].mean()

    if distances is None:
        distances = pd.DataFrame(columns=["dataset_a", "dataset_b", "distance"])
    _check_columns(distances, ["dataset_a", "dataset_b", "distance"], "distances")
    dist = distances[["dataset_a", "dataset_b", "distance"]].dropna(subset=["distance"])
    dist = dist.astype({"dataset_a": str, "dataset_b": str})

    model_list = _unique(map(str, models)) if models is not None else sorted(recs["model"].unique())
    if datasets is not None:
        dataset_list = _unique(map(str, datasets))
    else:
        dataset_list = sorted(set(recs["dataset"]) | set(dist["dataset_a"]) | set(dist["dataset_b"]))
    if knn is not None and knn < 1:
        raise ValueError(f"knn must be >= 1 or None, got {knn}")

    g = nx.Graph(higher_is_better=bool(higher_is_better), knn=knn)
    for m in model_list:
        g.add_node(model_node(m), kind=MODEL, name=m)
    for d in dataset_list:
        g.add_node(dataset_node(d), kind=DATASET, name=d)

    # model–dataset edges, weights per dataset
    mset, dset = set(model_list), set(dataset_list)
    recs = recs[recs["model"].isin(mset) & recs["dataset"].isin(dset)]
    for dname, grp in recs.groupby("dataset", sort=True):
        weights = score_to_weight(grp["score"].to_numpy(), higher_is_better, floor=floor, method=score_method)
        for m, s, w in zip(grp["model"], grp["score"], weights):
            g.add_edge(model_node(m), dataset_node(dname), weight=float(w), score=float(s), kind=PERFORMANCE)

    # dataset–dataset edges
    dist = dist[dist["dataset_a"].isin(dset) & dist["dataset_b"].isin(dset) & (dist["dataset_a"] != dist["dataset_b"])]
    a = np.where(dist["dataset_a"] <= dist["dataset_b"], dist["dataset_a"], dist["dataset_b"])
    b = np.where(dist["dataset_a"] <= dist["dataset_b"], dist["dataset_b"], dist["dataset_a"])
    pairs = pd.DataFrame({"a": a, "b": b, "distance": dist["distance"].to_numpy(dtype=np.float64)})
    pairs = pairs.groupby(["a", "b"], as_index=False, sort=True)["distance"].mean()
    used_scale = scale if scale is not None else (distance_scale(pairs["distance"]) if len(pairs) else 1.0)
    g.graph["distance_scale"] = float(used_scale)
    if len(pairs):
        pairs["weight"] = distance_to_weight(pairs["distance"].to_numpy(), scale=used_scale)
        if knn is not None:
            pairs = pairs[_knn_keep(pairs, knn)]
        for x, y, d, w in zip(pairs["a"], pairs["b"], pairs["distance"], pairs["weight"]):
            g.add_edge(dataset_node(x), dataset_node(y), weight=float(w), distance=float(d), kind=SIMILARITY)
    return g


def models_of(graph: nx.Graph) -> list[str]:
    """Model node IDs of a matching graph, in node order."""
    return [n for n, k in graph.nodes(data="kind") if k == MODEL]


def datasets_of(graph: nx.Graph) -> list[str]:
    """Dataset node IDs of a matching graph, in node order."""
    return [n for n, k in graph.nodes(data="kind") if k == DATASET]
