"""Predictors over [model features, dataset features, edge embedding] (the paper's §4.3–4.4).

The target of a training row (model m, dataset d) is m's rank among the models scored on d,
normalised to u = (rank − 1) / (n_d − 1) in [0, 1] (0 = best), so datasets with different numbers
of scored models share one scale. The paper classifies over ranks; with ten models every rank is
a class. Here u is cut into ``n_classes`` equal bins (ten by default, so a ten-model zoo is
exactly the paper's setting and a 164-model zoo is ranked by deciles). A classifier's class
probabilities give an expected rank position and a confidence (the probability of the most
likely bin).

Every predictor has ``fit(X, u, groups)`` and ``predict(X) -> (expected_u, confidence)``; no work
happens in constructors. ``PREDICTORS`` maps names to factories; the evaluation compares them.
``xgboost`` needs the ``studies`` extra (``pip install 'hubselect[studies]'``); without it, choosing it is a
one-line error that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd


# -- tabular features -------------------------------------------------------------------------------

class TabularEncoder:
    """Numbers pass through (NaN kept: tree models handle it), everything else is one-hot."""

    def __init__(self, id_column: str):
        self.id_column = id_column
        self.numeric: list[str] = []
        self.categories: dict[str, list[str]] = {}

    def fit(self, df: pd.DataFrame | None) -> "TabularEncoder":
        self.numeric, self.categories = [], {}
        if df is None:
            return self
        for col in df.columns:
            if col == self.id_column:
                continue
            series = df[col]
            if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
                self.numeric.append(col)
            else:
                self.categories[col] = sorted({str(v) for v in series.dropna()})
        return self

    @property
    def names(self) -> list[str]:
        return self.numeric + [f"{c}={v}" for c, vals in self.categories.items() for v in vals]

    def transform(self, df: pd.DataFrame | None, ids: list[str]) -> np.ndarray:
        """Rows for ``ids`` in that order; an id missing from ``df`` gets NaN numbers, zero one-hots."""
        if df is None:
            frame = pd.DataFrame(index=pd.Index(ids))
        else:
            frame = df.drop_duplicates(self.id_column).set_index(self.id_column).reindex(ids)
        cols = []
        for col in self.numeric:
            cols.append(pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
                        if col in frame else np.full(len(ids), np.nan))
        for col, values in self.categories.items():
            text = frame[col].astype(str).to_numpy() if col in frame else np.full(len(ids), "")
            cols += [(text == v).astype(np.float64) for v in values]
        return np.column_stack(cols) if cols else np.zeros((len(ids), 0))


# -- predictors -------------------------------------------------------------------------------------

def _bins(u: np.ndarray, n_classes: int) -> np.ndarray:
    return np.minimum((np.asarray(u) * n_classes).astype(int), n_classes - 1)


class BinClassifier:
    """Any classifier with predict_proba over rank bins (the paper's formulation)."""

    def __init__(self, make: Callable[[], object], n_classes: int = 10, impute: bool = False):
        self.make = make
        self.n_classes = n_classes
        self.impute = impute

    def _prep(self, X: np.ndarray) -> np.ndarray:
        if not self.impute:
            return X
        X = np.where(np.isnan(X), self.fill_, X)
        return (X - self.mean_) / self.scale_

    def fit(self, X: np.ndarray, u: np.ndarray, groups: np.ndarray | None = None) -> "BinClassifier":
        if self.impute:   # models without native NaN handling get the column means and unit scale
            self.fill_ = np.nan_to_num(np.nanmean(np.where(np.isfinite(X), X, np.nan), axis=0))
            Xf = np.where(np.isnan(X), self.fill_, X)
            self.mean_, self.scale_ = Xf.mean(axis=0), Xf.std(axis=0)
            self.scale_[self.scale_ == 0] = 1.0
        y = _bins(u, self.n_classes)
        self.classes_present_ = np.unique(y)
        self.model_ = self.make()
        if len(self.classes_present_) == 1:
            self.constant_ = int(self.classes_present_[0])
            return self
        self.constant_ = None
        # Some rank bins may be empty: classes are encoded 0..k-1 (XGBoost insists) and mapped back.
        self.model_.fit(self._prep(X), np.searchsorted(self.classes_present_, y))
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centers = (np.arange(self.n_classes) + 0.5) / self.n_classes
        if self.constant_ is not None:
            return np.full(len(X), centers[self.constant_]), np.ones(len(X))
        proba = np.asarray(self.model_.predict_proba(self._prep(X)))
        classes = self.classes_present_[np.asarray(self.model_.classes_).astype(int).ravel()]
        expected = proba @ centers[classes]
        return expected, proba.max(axis=1)


def _catboost_classifier(seed: int, iterations: int = 300):
    from catboost import CatBoostClassifier
    # 300 trees as in the paper. 64 feature borders instead of 254: a zoo has hundreds to a few
    # thousand rows, where finer borders cost about 3x the time and add nothing.
    return lambda: CatBoostClassifier(iterations=iterations, loss_function="MultiClass", random_seed=seed,
                                      border_count=64, verbose=False, thread_count=-1, allow_writing_files=False)


class CatBoostRankObjective:
    """CatBoost on the normalised rank directly: YetiRank (a ranking loss over each dataset's
    models) or RMSE regression. One output instead of one per rank class: measured on 1300 rows,
    300 trees take 0.8 s (YetiRank) and 0.23 s (RMSE) against 1.4 s for the classifier. The
    confidence is how far the prediction sits from the middle of the zoo, |2u - 1|.
    """

    def __init__(self, loss: str, seed: int, iterations: int = 300):
        self.loss = loss
        self.seed = seed
        self.iterations = iterations

    def fit(self, X: np.ndarray, u: np.ndarray, groups: np.ndarray | None = None) -> "CatBoostRankObjective":
        from catboost import CatBoostRanker, CatBoostRegressor, Pool
        common = dict(iterations=self.iterations, random_seed=self.seed, border_count=64, verbose=False,
                      thread_count=-1, allow_writing_files=False)
        if self.loss == "YetiRank":
            order = np.argsort(groups, kind="stable")          # CatBoost wants each group contiguous
            _, group_id = np.unique(groups[order], return_inverse=True)
            self.model_ = CatBoostRanker(loss_function="YetiRank", **common)
            self.model_.fit(Pool(X[order], label=1.0 - u[order], group_id=group_id))
        else:
            self.model_ = CatBoostRegressor(loss_function="RMSE", **common)
            self.model_.fit(X, u)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = np.asarray(self.model_.predict(X), dtype=np.float64)
        if self.loss == "YetiRank":
            # Ranker scores have no scale: map them onto [0, 1] by their order among the candidates.
            order = pd.Series(-raw).rank(method="average").to_numpy()
            u = (order - 1) / max(len(raw) - 1, 1)
        else:
            u = np.clip(raw, 0.0, 1.0)
        return u, np.abs(u - 0.5) * 2


def _xgboost_classifier(seed: int):
    try:
        from xgboost import XGBClassifier
    except ImportError:   # an optional dependency: only this predictor and the studies use it
        from hubselect.errors import UserError
        raise UserError("the xgboost predictor needs the studies extra: pip install 'hubselect[studies]'") from None
    return lambda: XGBClassifier(n_estimators=300, random_state=seed, n_jobs=-1, verbosity=0)


def _sklearn(name: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC
    return {
        "rf": lambda: RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=-1),
        "mlp": lambda: MLPClassifier(hidden_layer_sizes=(256,), max_iter=500, random_state=seed),
        "svc": lambda: SVC(kernel="rbf", probability=True, random_state=seed),
    }[name]


@dataclass(frozen=True)
class PredictorSpec:
    name: str
    description: str
    factory: Callable[[int, int], object]


PREDICTORS: dict[str, PredictorSpec] = {
    "catboost": PredictorSpec("catboost", "CatBoost classifier over rank bins, 300 trees (the paper's)",
                              lambda seed, k: BinClassifier(_catboost_classifier(seed), k)),
    "yetirank": PredictorSpec("yetirank", "CatBoost ranker (YetiRank loss) on the normalised rank, 300 trees",
                              lambda seed, k: CatBoostRankObjective("YetiRank", seed)),
    "regressor": PredictorSpec("regressor", "CatBoost regressor (RMSE) on the normalised rank, 300 trees",
                               lambda seed, k: CatBoostRankObjective("RMSE", seed)),
    "xgboost": PredictorSpec("xgboost", "XGBoost classifier over rank bins, 300 trees",
                             lambda seed, k: BinClassifier(_xgboost_classifier(seed), k)),
    "rf": PredictorSpec("rf", "random forest classifier over rank bins, 300 trees",
                        lambda seed, k: BinClassifier(_sklearn("rf", seed), k, impute=True)),
    "mlp": PredictorSpec("mlp", "MLP classifier (256 hidden) over rank bins",
                         lambda seed, k: BinClassifier(_sklearn("mlp", seed), k, impute=True)),
    "svc": PredictorSpec("svc", "RBF SVC over rank bins",
                         lambda seed, k: BinClassifier(_sklearn("svc", seed), k, impute=True)),
}


def make_predictor(name: str, seed: int = 0, n_classes: int = 10):
    from hubselect.errors import UserError
    if name not in PREDICTORS:
        raise UserError(f"unknown predictor {name!r}; choose from {', '.join(PREDICTORS)}")
    return PREDICTORS[name].factory(seed, n_classes)
