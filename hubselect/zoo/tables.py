"""A zoo's tables as the ranking and the evaluation read them: checked numbers, one
aggregated score per (model, dataset)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from hubselect.errors import UserError
from hubselect.zoo.format import Zoo


@dataclass
class ZooTables:
    """A zoo's tables as the ranker needs them."""

    models: pd.DataFrame
    records: pd.DataFrame
    datasets: pd.DataFrame | None
    distances: pd.DataFrame
    info: pd.DataFrame | None
    higher_is_better: bool
    metric: str
    probe: str | None

    @classmethod
    def load(cls, zoo: Zoo) -> "ZooTables":
        meta = zoo.info
        models = zoo.read_table("models")
        if models is None:
            raise UserError(f"zoo {zoo.path} has no models table")
        records = zoo.read_table("records")
        if records is None:
            records = pd.DataFrame(columns=["model", "dataset", "score"])
        records = checked_numbers(records, ["score", "initial_score"], zoo.table_path("records"))
        records = records.dropna(subset=["score"])
        if "metric" in records.columns:     # results measured with another metric are not comparable
            records = records[records["metric"].isna() | (records["metric"] == meta.metric)]
        records = aggregate_records(records)
        distances = zoo.read_table("dataset_distances")
        if distances is None:
            distances = pd.DataFrame(columns=["dataset_a", "dataset_b", "distance"])
        distances = checked_numbers(distances, ["distance"], zoo.table_path("dataset_distances"), non_negative=True)
        return cls(models=models, records=records, datasets=zoo.read_table("datasets"), distances=distances,
                   info=zoo.read_table("model_info"), higher_is_better=meta.higher_is_better,
                   metric=meta.metric, probe=meta.probe)

    def without(self, dataset: str) -> "ZooTables":
        """The zoo as it looks to a dataset's own ranking when that dataset is held out: its records
        removed; its features, profile and distances kept (they are known before any fine-tuning)."""
        return self.with_records(self.records[self.records["dataset"] != dataset])

    def with_records(self, records: pd.DataFrame) -> "ZooTables":
        """The same zoo with other training records (a held-out or thinned view)."""
        return replace(self, records=records)

    def known_datasets(self) -> set[str]:
        known = set(self.records["dataset"])
        if self.datasets is not None:
            known |= set(self.datasets["dataset"])
        known |= set(self.distances["dataset_a"]) | set(self.distances["dataset_b"])
        return known


# No metric hubselect knows comes near this magnitude: a larger score is a typo or a forgery.
SCORE_CAP = 1e9


def checked_numbers(table: pd.DataFrame, columns: list[str], path, non_negative: bool = False) -> pd.DataFrame:
    """``table`` with ``columns`` as floats, or :class:`UserError` naming the file, the row and the value
    when one is text, infinite, larger than :data:`SCORE_CAP` in magnitude, or negative where it cannot be."""
    table = table.copy()
    for col in columns:
        if col not in table.columns:
            continue
        raw = table[col]
        values = pd.to_numeric(raw, errors="coerce")
        problems = (("is not a number", raw.notna() & values.isna()),
                    ("is not finite", values.notna() & ~np.isfinite(values.to_numpy(dtype=float, na_value=0.0))),
                    (f"exceeds {SCORE_CAP:g} in magnitude", values.abs() > SCORE_CAP),
                    ("is negative", (values < 0) if non_negative else values.isna() & False))
        for what, mask in problems:
            if mask.any():
                row = int(np.flatnonzero(mask.to_numpy())[0])
                raise UserError(f"{path}: {col} {raw.iloc[row]!r} in row {row + 2} {what}")
        table[col] = values.astype(float)
    return table


def aggregate_records(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset): each writer's median score, then the median across writers.

    One writer counts once however many records it pushed (the shared edge dataset records the Hub
    commit author of each file in ``writer``); rows without a writer are the zoo owner's ("local").
    ``writers`` is the number of writers behind the score.
    """
    if records.empty:
        return pd.DataFrame(columns=["model", "dataset", "score", "writers"])
    rec = records.copy()
    rec["writer"] = rec["writer"].fillna("local").astype(str) if "writer" in rec.columns else "local"
    values = ["score"] + (["initial_score"] if "initial_score" in rec.columns else [])
    per_writer = rec.groupby(["model", "dataset", "writer"], as_index=False, sort=True)[values].median()
    out = per_writer.groupby(["model", "dataset"], as_index=False, sort=True)[values].median()
    out["writers"] = per_writer.groupby(["model", "dataset"], sort=True)["writer"].nunique().to_numpy()
    return out


def goodness(scores, higher_is_better: bool):
    """Scores as "higher is better": unchanged when higher is better, negated otherwise.

    Accepts a scalar (returns float), a ``pd.Series`` (returns a float Series, same index) or
    anything array-like (returns a float ndarray).
    """
    sign = 1.0 if higher_is_better else -1.0
    if isinstance(scores, pd.Series):
        return sign * scores.astype(float)
    arr = np.asarray(scores, dtype=float)
    if arr.ndim == 0:
        return float(sign * arr)
    return sign * arr


def normalized_rank(scores: pd.Series, higher_is_better: bool) -> pd.Series:
    """Rank of each model on one dataset scaled to [0, 1], 0 = best, 1 = worst.

    ``(rank - 1) / (n - 1)`` with ties sharing their average rank; a single model gets 0. This is
    the scale the predictors learn (:mod:`hubselect.rank.estimator`): datasets with different score scales
    and different numbers of scored models count equally.
    """
    g = goodness(pd.Series(scores).dropna(), higher_is_better)
    n = len(g)
    if n <= 1:
        return g * 0.0
    return (g.rank(ascending=False, method="average") - 1.0) / (n - 1)
