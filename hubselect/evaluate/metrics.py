"""Selection metrics: the paper's §5.1 / Table 3 (OSR, Kendall's weighted τ, O2B, O2O) plus
weighted τ under scipy's averaged weighting, the top-3 hit rate and the normalised regret.

Every metric is computed per held-out dataset (one row per dataset and method, keys
:data:`ROW_KEYS`), then aggregated per method with :func:`summarize`.

Inputs for one dataset
----------------------
``true``
    ``pd.Series`` indexed by model: the measured score of every model that has a score on the
    dataset (NaN entries are dropped, as unscored).
``predicted_order``
    a method's ranking of models, best first. It may name models without a score on the
    dataset: they are dropped and the order of the rest is kept (repeated names count at their
    first position). Scored models the method does not rank at all are placed after all ranked
    ones, tied with each other (this matters for τ, and they are never among a top 3; the
    selection is the first scored model of ``predicted_order``, and a ranking with no scored
    model at all is an error).
``higher_is_better``
    ``True`` for accuracy-like scores, ``False`` for FID-like ones (the paper's CLIP-FID).

Sign conventions
----------------
* ``goodness = score`` when higher is better, ``goodness = -score`` when lower is better. All
  metrics are written in goodness, so they do not depend on the direction: accuracies
  {a: .9, b: .8, c: .7} and FIDs {a: 10, b: 20, c: 30} give the same hit, top3, τ and regret for
  any ordering, and O2O/O2B with the same sign that differ only by the scale of the scores (×100
  here);
  scores s with ``higher_is_better=True`` and -s with ``False`` give identical rows.
* **hit / OSR** (higher is better): hit when the selected model (the first scored model of the
  predicted order) has the dataset's best score; ties are hits (any model within a relative
  1e-12 of the best). OSR is the mean of hit over datasets.
* **top3** (higher is better): hit when a best model (ties count, as for hit) is among the first
  three scored models of the predicted order (all of them when fewer than three are ranked;
  scored models the order leaves out are never among them). Its mean over datasets is the top-3
  hit rate. With three or fewer scored models, ranking all of them is always a top-3 hit.
* **weighted τ** (higher is better, in [-1, 1]): 1 for the true order, -1 for the reversed one.
  ``weighted_tau`` weights pairs by the true ranking, ``weighted_tau_avg`` by scipy's default
  average of the true and predicted rankings (see below).
* **O2O** (loss orientation, lower is better, ≥ 0, 0 is perfect):
  ``goodness(best) - goodness(selected)``; for FID that is ``FID(selected) - FID(best)``, for
  accuracy ``acc(best) - acc(selected)``. O2O is exactly 0 iff hit.
* **O2B** (loss orientation, lower is better, may be negative):
  ``goodness(reference) - goodness(selected)`` where the reference is the single
  best-on-average model (:func:`best_on_average`); for FID ``FID(selected) - FID(reference)``.
  Negative means the selection beats always picking the reference model; a method that always
  selects the reference gets exactly 0 (the paper's "Overall" row). NaN when the reference
  model has no score on the dataset.
* **regret** (loss orientation, lower is better, in [0, 1]): the O2O divided by the dataset's
  spread, ``(goodness(best) - goodness(selected)) / (goodness(best) - goodness(worst))``: 0 when
  the selection is a best model, 1 when it is a worst one. Unlike O2O it has no unit, so it can be
  averaged across datasets and zoos of different score scales. 0 when all scored models tie.

Weighted τ: which ranking carries the weights
---------------------------------------------
``scipy.stats.weightedtau(x, y, rank=None)`` with ``x = goodness`` (true) and
``y = -position`` in the predicted order, and the default hyperbolic weigher ``1 / (r + 1)``.
A pair of models (i, j) that the two rankings order differently costs ``w(r_i) + w(r_j)``
where ``r`` is the rank (0 = best) in the *true* goodness order (``rank=None`` is scipy's
decreasing lexicographic rank by (x, y): true goodness first, the prediction only breaking true
ties). So mistakes among the truly best models cost most, e.g. swapping the true #1 and #2 costs
more than swapping the true #4 and #5, whichever order the method proposed. scipy's default
``rank=True`` would instead average this with the value obtained by weighting by the
*predicted* ranking, which makes τ also punish the method for whatever it ranks highly;
``weighted_tau(..., rank_by="average")`` gives that variant (the row key ``weighted_tau_avg``;
presumably what papers that call scipy with its defaults report) and ``rank_by="predicted"`` the
other half, for comparison.

Random baseline: :func:`random_expectation` gives the expected row of a uniformly random
ranking (exact for hit, top3, O2O, O2B and regret; both τ averaged over all permutations when
there are at most ``n_draws`` of them, otherwise over ``n_draws`` seeded random permutations).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from hubselect.zoo.tables import goodness, normalized_rank  # noqa: F401  (the zoo's scale; 0.1 imported it from here)

__all__ = [
    "ROW_KEYS",
    "REQUIRED_ROW_KEYS",
    "goodness",
    "normalized_rank",
    "top_hit",
    "top3_hit",
    "weighted_tau",
    "o2o",
    "o2b",
    "regret",
    "evaluate",
    "mean_normalized_rank",
    "average_ranking",
    "best_on_average",
    "random_expectation",
    "summarize",
]

#: metric keys of one (dataset, method) row, as returned by :func:`evaluate` and
#: :func:`random_expectation` and read by :func:`summarize`
ROW_KEYS = ("hit", "top3", "weighted_tau", "weighted_tau_avg", "o2o", "o2b", "regret")

#: the keys :func:`summarize` cannot do without (rows written before the others existed have
#: only these; a missing optional key summarises as NaN)
REQUIRED_ROW_KEYS = ("hit", "weighted_tau", "o2o", "o2b")

#: how many of the first scored models :func:`top3_hit` looks at
TOP_K = 3

TIE_RTOL = 1e-12

RankBy = Literal["true", "predicted", "average"]


# -- direction ----------------------------------------------------------------------------------

# -- one dataset --------------------------------------------------------------------------------

def _prepare(true: pd.Series, predicted_order: Iterable, higher_is_better: bool
             ) -> tuple[pd.Series, list, list]:
    """(goodness of scored models, scored models in predicted order, scored models unranked)."""
    if not isinstance(true, pd.Series):
        true = pd.Series(true)
    true = true.dropna()
    if true.index.has_duplicates:
        dup = sorted(map(str, true.index[true.index.duplicated()].unique()))
        raise ValueError(f"true scores name a model more than once: {dup}")
    if len(true) == 0:
        raise ValueError("no model has a score on this dataset")
    g = goodness(true, higher_is_better)
    if isinstance(predicted_order, (str, bytes)):
        raise TypeError("predicted_order must be a sequence of model names, not a string")
    scored = set(g.index)
    order: list = []
    seen: set = set()
    for m in predicted_order:
        if m in scored and m not in seen:
            order.append(m)
            seen.add(m)
    unranked = [m for m in g.index if m not in seen]
    return g, order, unranked


def _selected(order: list):
    if not order:
        raise ValueError("predicted_order ranks none of the models scored on this dataset")
    return order[0]


def _is_best(value: float, best: float) -> bool:
    return value >= best or abs(best - value) <= TIE_RTOL * max(abs(best), abs(value))


def _hit(g: pd.Series, selected) -> bool:
    return _is_best(float(g[selected]), float(g.max()))


def top_hit(true: pd.Series, predicted_order: Sequence, higher_is_better: bool) -> bool:
    """True when the predicted top model (first scored model of the order) is a best model."""
    g, order, _ = _prepare(true, predicted_order, higher_is_better)
    return _hit(g, _selected(order))


def _top_k_hit(g: pd.Series, order: list, k: int = TOP_K) -> bool:
    best = float(g.max())
    return any(_is_best(float(g[m]), best) for m in order[:k])


def top3_hit(true: pd.Series, predicted_order: Sequence, higher_is_better: bool) -> bool:
    """True when a best model (ties count) is among the first three scored models of the order."""
    g, order, _ = _prepare(true, predicted_order, higher_is_better)
    _selected(order)
    return _top_k_hit(g, order)


def _tau_from(g: pd.Series, order: list, unranked: list, rank_by: RankBy) -> float:
    models = order + unranked
    if len(models) < 2:
        return float("nan")
    x = g[models].to_numpy(dtype=float)
    # predicted ranking as scores: -position (best = 0); unranked models tied after all ranked
    y = -np.concatenate([np.arange(len(order), dtype=float),
                         np.full(len(unranked), float(len(order)))])
    from scipy.stats import weightedtau  # scipy.stats takes a second to import: only when τ is wanted
    with np.errstate(divide="ignore", invalid="ignore"):
        if rank_by == "true":
            res = weightedtau(x, y, rank=None)
        elif rank_by == "predicted":
            res = weightedtau(y, x, rank=None)
        elif rank_by == "average":
            res = weightedtau(x, y, rank=True)
        else:
            raise ValueError(f"rank_by must be 'true', 'predicted' or 'average', not {rank_by!r}")
    return float(res[0])


def weighted_tau(true: pd.Series, predicted_order: Sequence, higher_is_better: bool,
                 rank_by: RankBy = "true") -> float:
    """Kendall's weighted τ between true goodness and the predicted ranking.

    ``scipy.stats.weightedtau`` with the hyperbolic weigher 1/(r+1); by default (``rank_by=
    "true"``) r is the rank in the true goodness order, so disagreements among the truly best
    models weigh most (see the module docstring). NaN with fewer than two scored models or when
    all scored models tie.
    """
    g, order, unranked = _prepare(true, predicted_order, higher_is_better)
    if len(g) >= 2:
        _selected(order)
    return _tau_from(g, order, unranked, rank_by)


def _o2o(g: pd.Series, selected) -> float:
    if _hit(g, selected):
        return 0.0
    return float(g.max() - g[selected])


def o2o(true: pd.Series, predicted_order: Sequence, higher_is_better: bool) -> float:
    """Outscore to Optimal: goodness(best) - goodness(selected); ≥ 0, exactly 0 iff hit."""
    g, order, _ = _prepare(true, predicted_order, higher_is_better)
    return _o2o(g, _selected(order))


def _o2b(g: pd.Series, selected, reference_model) -> float:
    if reference_model is None or reference_model not in g.index:
        return float("nan")
    return float(g[reference_model] - g[selected])


def o2b(true: pd.Series, predicted_order: Sequence, reference_model, higher_is_better: bool) -> float:
    """Outscore to Best: goodness(reference) - goodness(selected); negative = beats the reference.

    NaN when the reference model has no score on this dataset.
    """
    g, order, _ = _prepare(true, predicted_order, higher_is_better)
    return _o2b(g, _selected(order), reference_model)


def _spread(g: pd.Series) -> float:
    return float(g.max() - g.min())


def _regret(g: pd.Series, selected) -> float:
    loss = _o2o(g, selected)
    spread = _spread(g)
    return 0.0 if loss == 0.0 or spread <= 0.0 else min(1.0, loss / spread)


def regret(true: pd.Series, predicted_order: Sequence, higher_is_better: bool) -> float:
    """Normalised regret of the selection: O2O / (goodness(best) - goodness(worst)), in [0, 1].

    0 when the selected model is a best one (or all scored models tie), 1 when it is a worst one.
    """
    g, order, _ = _prepare(true, predicted_order, higher_is_better)
    return _regret(g, _selected(order))


def evaluate(true: pd.Series, predicted_order: Sequence, higher_is_better: bool,
             reference_model=None, rank_by: RankBy = "true") -> dict:
    """All metrics of one (dataset, method) pair, keys :data:`ROW_KEYS`.

    ``weighted_tau`` is computed with ``rank_by`` (default: weights by the true ranking);
    ``weighted_tau_avg`` always with scipy's averaged weighting (``rank_by="average"``).
    """
    g, order, unranked = _prepare(true, predicted_order, higher_is_better)
    sel = _selected(order)
    return {
        "hit": _hit(g, sel),
        "top3": _top_k_hit(g, order),
        "weighted_tau": _tau_from(g, order, unranked, rank_by),
        "weighted_tau_avg": _tau_from(g, order, unranked, "average"),
        "o2o": _o2o(g, sel),
        "o2b": _o2b(g, sel, reference_model),
        "regret": _regret(g, sel),
    }


# -- the reference model ------------------------------------------------------------------------

def _check_records(records: pd.DataFrame) -> pd.DataFrame:
    missing = {"model", "dataset", "score"} - set(records.columns)
    if missing:
        raise ValueError(f"records lack column(s) {sorted(missing)}")
    rec = records.loc[records["score"].notna(), ["model", "dataset", "score"]]
    # a (model, dataset) pair recorded more than once counts with its mean score
    return rec.groupby(["model", "dataset"], as_index=False, sort=True)["score"].mean()


def mean_normalized_rank(records: pd.DataFrame, higher_is_better: bool) -> pd.Series:
    """Mean over datasets of each model's normalised rank (0 = best), sorted best first.

    Per dataset, ranks are scaled to [0, 1] (:func:`normalized_rank`), so datasets with
    different score scales and different numbers of scored models weigh the same. Datasets with
    a single scored model carry no ranking information and are skipped; a model scored only
    there gets NaN and is listed last. Ties are broken by model name.
    """
    rec = _check_records(records)
    counts = rec.groupby("dataset")["model"].transform("size")
    informative = rec.loc[counts >= 2]
    u = informative.groupby("dataset", group_keys=False)["score"].transform(
        lambda s: normalized_rank(s, higher_is_better))
    mean_u = u.groupby(informative["model"]).mean()
    mean_u = mean_u.reindex(pd.Index(rec["model"].unique(), name="model"))
    frame = pd.DataFrame({"model": mean_u.index, "u": mean_u.to_numpy(dtype=float)})
    frame["key"] = frame["model"].astype(str)
    frame = frame.sort_values(["u", "key"], na_position="last", kind="mergesort")
    return pd.Series(frame["u"].to_numpy(), index=pd.Index(frame["model"], name="model"),
                     name="mean_normalized_rank")


def average_ranking(records: pd.DataFrame, higher_is_better: bool) -> list:
    """All models ordered by mean normalised rank, best first (the paper's "Overall" baseline)."""
    return list(mean_normalized_rank(records, higher_is_better).index)


def best_on_average(records: pd.DataFrame, higher_is_better: bool) -> str:
    """The model with the best (lowest) mean normalised rank over the datasets; ties by name.

    ``records`` has columns ``model, dataset, score``. The paper's reference for O2B is the best
    model over all datasets (SDXL in its zoo); in a leave-one-dataset-out evaluation pass the
    records the evaluation may use. Raises ``ValueError`` when no dataset has two scored models.
    """
    ranking = mean_normalized_rank(records, higher_is_better).dropna()
    if ranking.empty:
        raise ValueError("no dataset has two or more scored models: best-on-average is undefined")
    return ranking.index[0]


# -- random baseline ----------------------------------------------------------------------------

def random_expectation(true: pd.Series, higher_is_better: bool, reference_model=None,
                       n_draws: int = 200, seed: int = 0) -> dict:
    """Expected metrics of a uniformly random ranking of the scored models.

    * ``hit``: exact probability, #models tied with the best / n;
    * ``top3``: exact probability that one of the b models tied with the best is among the first
      k = min(3, n) positions, ``1 - C(n - b, k) / C(n, k)``;
    * ``o2o``: exact, mean over models m of goodness(best) - goodness(m) (0 for tied bests);
    * ``o2b``: exact, mean over models m of goodness(reference) - goodness(m) (NaN as in
      :func:`o2b`);
    * ``regret``: exact, the mean O2O divided by the spread goodness(best) - goodness(worst)
      (0 when all tie);
    * ``weighted_tau`` and ``weighted_tau_avg``: mean over all n! permutations when n! ≤
      ``n_draws``, else over the same ``n_draws`` random permutations from
      ``numpy.random.default_rng(seed)`` for both; NaN when n < 2.

    Returns the same keys as :func:`evaluate`.
    """
    g, _, _ = _prepare(true, [], higher_is_better)
    models = list(g.index)
    n = len(models)
    best = float(g.max())
    is_best = np.array([_is_best(float(v), best) for v in g.to_numpy()])
    gaps = np.where(is_best, 0.0, best - g.to_numpy(dtype=float))
    if reference_model is not None and reference_model in g.index:
        e_o2b = float(np.mean(float(g[reference_model]) - g.to_numpy(dtype=float)))
    else:
        e_o2b = float("nan")

    if n < 2:
        e_tau = e_tau_avg = float("nan")
    else:
        if math.factorial(n) <= n_draws:
            perms: Iterable = itertools.permutations(range(n))
        else:
            rng = np.random.default_rng(seed)
            perms = (rng.permutation(n) for _ in range(n_draws))
        taus, taus_avg = [], []
        for p in perms:
            order = [models[i] for i in p]
            taus.append(_tau_from(g, order, [], "true"))
            taus_avg.append(_tau_from(g, order, [], "average"))
        e_tau, e_tau_avg = _nanmean(taus), _nanmean(taus_avg)

    b = int(is_best.sum())
    k = min(TOP_K, n)
    spread = _spread(g)
    return {
        "hit": float(b / n),
        "top3": float(1.0 - math.comb(n - b, k) / math.comb(n, k)),
        "weighted_tau": e_tau,
        "weighted_tau_avg": e_tau_avg,
        "o2o": float(gaps.mean()),
        "o2b": e_o2b,
        "regret": float(gaps.mean() / spread) if spread > 0 else 0.0,
    }


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float("nan") if np.all(np.isnan(arr)) else float(np.nanmean(arr))


# -- aggregation --------------------------------------------------------------------------------

def summarize(per_dataset: pd.DataFrame) -> pd.DataFrame:
    """Per method: ``osr`` (mean hit), ``top3`` (top-3 hit rate), ``weighted_tau``,
    ``weighted_tau_avg``, ``regret``, ``o2b``, ``o2o`` (NaN-skipping means), ``n_datasets``
    (distinct datasets, or rows when there is no ``dataset`` column).

    ``per_dataset`` has one row per (dataset, method) with columns ``method`` and the
    :data:`ROW_KEYS` (``hit`` and ``top3`` may be probabilities, as from
    :func:`random_expectation`). ``hit, weighted_tau, o2o, o2b`` are required; a missing
    ``top3``, ``weighted_tau_avg`` or ``regret`` column gives NaN. Methods keep their order of
    first appearance; returns columns
    ``method, osr, top3, weighted_tau, weighted_tau_avg, regret, o2b, o2o, n_datasets``.
    """
    missing = {"method", *REQUIRED_ROW_KEYS} - set(per_dataset.columns)
    if missing:
        raise ValueError(f"per_dataset lacks column(s) {sorted(missing)}")
    df = per_dataset.copy()
    for col in ROW_KEYS:
        if col not in df.columns:
            df[col] = np.nan
        df[col] = pd.to_numeric(df[col].astype(object).where(df[col].notna(), np.nan),
                                errors="coerce").astype(float)
    grouped = df.groupby("method", sort=False)
    means = grouped[list(ROW_KEYS)].mean()     # pandas means skip NaN
    if "dataset" in df.columns:
        n = grouped["dataset"].nunique()
    else:
        n = grouped.size()
    out = pd.DataFrame({
        "method": means.index,
        "osr": means["hit"].to_numpy(),
        "top3": means["top3"].to_numpy(),
        "weighted_tau": means["weighted_tau"].to_numpy(),
        "weighted_tau_avg": means["weighted_tau_avg"].to_numpy(),
        "regret": means["regret"].to_numpy(),
        "o2b": means["o2b"].to_numpy(),
        "o2o": means["o2o"].to_numpy(),
        "n_datasets": n.reindex(means.index).to_numpy(dtype=int),
    })
    return out.reset_index(drop=True)
