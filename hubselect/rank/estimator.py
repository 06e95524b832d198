"""MatchAndChoose, the estimator behind ``hubselect rank`` (the paper's steps 3 and 4).

1. The matching graph holds every model and dataset of the zoo; model–dataset edges come from the
   fine-tuning records, dataset–dataset edges from profile distances. The target dataset enters
   with its dataset–dataset edges only (its records are left out when it is held out or new).
2. Graph evidence per (model, dataset): by default the "record features", the graph's two-hop
   evidence computed exactly (the model's mean rank on the other datasets, weighted by their
   closeness); optionally node2vec+ embeddings (``use_graph=True``): the paper's element-wise
   product of node vectors, or basis-free proximity features from as-new embeddings.
3. A predictor learns each model's normalised rank on each dataset from
   [model features, dataset features, graph evidence], then predicts it for the target.

Above the learner sits the prior (a robust aggregate of the training datasets' rankings) and the
blend between them, both chosen by an inner leave-one-dataset-out over the training datasets.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hubselect.constants import DEFAULT_PREDICTOR, PROBE_NAME
from hubselect.errors import UserError
from hubselect.rank.predictors import TabularEncoder, make_predictor
from hubselect.zoo.tables import ZooTables, normalized_rank

PROBE_COLUMN = re.compile(rf"^(?P<probe>{PROBE_NAME.pattern})_(?P<i>\d+)$")     # a probe's mean, e.g. clip_0


@dataclass
class NewDataset:
    """A dataset that is not in the zoo yet: its feature row and its distances to zoo datasets."""

    name: str
    features: dict[str, float]
    distances: pd.DataFrame


def dataset_feature_table(datasets: pd.DataFrame | None, probe: str | None) -> pd.DataFrame | None:
    """Dataset features for the ranker: generic columns plus the active probe's mean vector.

    Columns ``<probe>_<i>`` of other known probes are dropped, and so is ``n_images`` (a sample
    count, not a property of the data). Other columns (any zoo's own features) are kept.
    """
    if datasets is None:
        return None
    from hubselect.profile.probes import probe_names

    others = set(probe_names()) - {probe}
    keep = []
    for col in datasets.columns:
        m = PROBE_COLUMN.match(col)
        if col == "n_images" or (m and m.group("probe") in others):
            continue
        keep.append(col)
    return datasets[keep]


def distances_for_probe(distances: pd.DataFrame, probe: str | None) -> pd.DataFrame:
    if "probe" in distances.columns and probe is not None:
        return distances[distances["probe"] == probe]
    return distances


# Robust aggregates of the training datasets' rankings: the prior the learner departs from. "mean"
# is the paper's Overall baseline; the others resist one dataset that ranks a model oddly.
PRIOR_AGGREGATES = ("mean", "median", "trimmed-mean", "mean-median")


# How far the learned ranking may move the prior (0 = the prior alone, 1 = the learner alone).
BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


# How clearly a candidate must win the inner leave-one-dataset-out, in standard errors of its paired
# gain. Aggregates are near-equal estimators of one quantity: on scores that are model quality plus
# Gaussian noise (where the mean is best) one SE still left the mean on a quarter of seeded zoos,
# two SE on one in 24. The blend keeps one SE: the learner departs from the prior only with evidence.
PRIOR_SE, BLEND_SE = 2.0, 1.0


SELECTOR_VERSION = 1          # bump when the choice's rules change: cached choices are then ignored


GRAPH_DIM, GRAPH_WALKS, GRAPH_WALK_LENGTH = 32, 10, 20


N_RANK_BINS = 10




def aggregate_ranks(U: np.ndarray, how: str) -> np.ndarray:
    """One value per row of the models × datasets normalised-rank matrix ``U`` (NaN = no record)."""
    have = ~np.isnan(U)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # rows without any record stay NaN
        if how == "mean":
            return np.nanmean(U, axis=1)
        if how == "median":
            return np.nanmedian(U, axis=1)
        if how == "mean-median":
            return 0.5 * (np.nanmean(U, axis=1) + np.nanmedian(U, axis=1))
        if how == "trimmed-mean":        # drop the lowest and highest 20 % of each model's ranks
            out = np.full(len(U), np.nan)
            for i, (row, ok) in enumerate(zip(U, have)):
                r = np.sort(row[ok])
                cut = int(0.2 * len(r))
                if len(r):
                    out[i] = r[cut:len(r) - cut].mean()
            return out
    raise ValueError(f"unknown aggregate {how!r}; choose from {', '.join(PRIOR_AGGREGATES)}")


def _positions(values: np.ndarray) -> np.ndarray:
    """Normalised positions in [0, 1] (0 = first) of ascending ``values``; NaN last."""
    s = pd.Series(values)
    if len(s) < 2:
        return np.zeros(len(s))
    return (s.rank(method="average", na_option="bottom").to_numpy() - 1) / (len(s) - 1)


def _read_choice(path: Path) -> tuple[str, float, dict] | None:
    """A cached choice, or None when absent or not what this version writes (then it is recomputed)."""
    import json
    try:
        data = json.loads(path.read_text())
        prior_name, blend = data["prior"], float(data["blend"])
        if prior_name in PRIOR_AGGREGATES and blend in BLEND_GRID and isinstance(data["scores"], dict):
            return prior_name, blend, data["scores"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _simplest_within(candidates: list, taus: dict, n_se: float) -> object:
    """The first (simplest) candidate whose held-out τ is within ``n_se`` standard errors of the best's.

    ``taus[c]`` holds candidate ``c``'s weighted τ on each inner held-out dataset. As the one-SE
    rule for a lasso's penalty: a more complex choice must beat the simpler one by more than the
    noise of the paired differences between them, so chance wins on a few datasets do not count.
    """
    arrays = {c: np.asarray(taus[c], dtype=float) for c in candidates}
    best = max(candidates, key=lambda c: np.nanmean(arrays[c]))
    for c in candidates:
        diff = arrays[best] - arrays[c]
        diff = diff[~np.isnan(diff)]
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        if len(diff) == 0 or diff.mean() <= n_se * se:
            return c
    return best


def _order(values: np.ndarray, models: list[str]) -> list[str]:
    key = np.where(np.isnan(values), np.inf, values)
    return [models[i] for i in np.lexsort((np.array(models, dtype=object).astype(str), key))]


class MatchAndChoose:
    """The selector: ``fit(tables)`` on a zoo's records, then ``predict(dataset)`` ranks every model.

    A ranking is the **prior** (a robust aggregate of the training datasets' rankings: the paper's
    Overall or a steadier statistic) moved towards the **learned ranking** of a predictor over
    [model features, dataset features, graph evidence] by a blend weight ``α``. With ``prior`` and
    ``blend`` left on ``"auto"``, both are chosen by an inner leave-one-dataset-out over the training
    datasets alone (the aggregate first, then α): the simplest choice (the plain mean, then the smallest
    α) whose held-out weighted τ is within a few standard errors of the best one's. A zoo
    whose datasets carry nothing but names (no varying dataset feature, no distance) gets α = 0:
    there no learner can know more than the aggregate of the other datasets' rankings.

    Parameters are stored as given; nothing happens in the constructor.
    """

    def __init__(self, predictor: str = DEFAULT_PREDICTOR, prior: str = "auto", blend: float | str = "auto",
                 use_features: bool = True, use_graph: bool = False, edge_features: str = "proximity",
                 rank_features: bool = True, probe_components: int | None = 16, epochs: int = 5,
                 subsample: float = 0.0, seed: int = 0, cache_dir: str | Path | None = None):
        self.predictor = predictor
        self.prior = prior
        self.blend = blend
        self.use_features = use_features
        self.use_graph = use_graph
        self.edge_features = edge_features
        # The model's record so far: its mean rank on the other datasets and the same mean weighted
        # by how close those datasets are. Computed leaving the row's own dataset out, so that
        # training rows see what a new dataset sees.
        self.rank_features = rank_features
        # A probe's mean embedding has 512-1280 dimensions and a zoo has tens of datasets: the
        # leading principal components carry what tells datasets apart, at a fraction of the
        # predictor's cost. None keeps the raw vector (the paper's).
        self.probe_components = probe_components
        # A matching graph has tens to hundreds of nodes, each frequent in the walks: word2vec's
        # frequent-word subsampling (1e-3 by default) would drop most of the corpus and one epoch
        # leaves the vectors nearly collinear; no subsampling and five epochs separate them.
        self.epochs = epochs
        self.subsample = subsample
        self.seed = seed
        # Where the inner leave-one-dataset-out's choice is kept per zoo state (``hubselect rank``
        # uses $HF_HOME/hubselect/selector-cache): ranking new datasets on one zoo repeats none of it.
        self.cache_dir = cache_dir

    # -- fit ---------------------------------------------------------------------------------------

    def fit(self, tables: ZooTables) -> "MatchAndChoose":
        """Learn from ``tables.records`` (use ``tables.without(dataset)`` to hold a dataset out)."""
        if self.edge_features not in EDGE_FEATURES:
            raise UserError(f"unknown edge features {self.edge_features!r}; choose from {', '.join(EDGE_FEATURES)}")
        if self.prior != "auto" and self.prior not in PRIOR_AGGREGATES:
            raise UserError(f"unknown prior {self.prior!r}; choose from auto, {', '.join(PRIOR_AGGREGATES)}")
        if self.blend != "auto" and not (isinstance(self.blend, (int, float)) and 0 <= self.blend <= 1):
            raise UserError("blend must be 'auto' or a number in [0, 1]")
        make_predictor(self.predictor)          # an unknown predictor is bad input before any work
        self.tables_ = tables
        self.models_ = list(tables.models["model"])
        self.train_ = training_rows(tables.records, self.models_, tables.higher_is_better)
        if self.train_.empty:
            raise UserError("the zoo has no dataset with at least two scored models to learn from")
        self.dataset_signal_ = has_dataset_signal(tables)
        U = self._rank_matrix(self.train_)
        cached = self._cache_path()
        choice = _read_choice(cached) if cached is not None else None
        if choice is None:
            choice = self._choose(U)
            if cached is not None:
                from hubselect.zoo.format import atomic_write_json
                atomic_write_json(cached, {"prior": choice[0], "blend": choice[1], "scores": choice[2]})
        self.prior_name_, self.blend_, self.inner_scores_ = choice
        self.prior_u_ = aggregate_ranks(U.to_numpy(), self.prior_name_)
        self._learners: dict = {}
        return self

    def _cache_path(self) -> Path | None:
        return None if self.cache_dir is None else self._cache_path_in(self.cache_dir, "choice")

    def _cache_path_in(self, folder: str | Path, what: str) -> Path:
        """A file named by everything the choice depends on: the training rows, the model and
        dataset tables, the distances, the probe and this selector's parameters."""
        import hashlib
        t = self.tables_
        h = hashlib.sha256(f"{SELECTOR_VERSION}|{what}|{t.probe}|{t.higher_is_better}|".encode())
        params = {k: v for k, v in vars(self).items() if not k.endswith("_") and k != "cache_dir"}
        h.update(repr(sorted(params.items())).encode())
        for frame in (self.train_[["model", "dataset", "score"]], t.models, t.datasets, t.distances):
            if frame is not None:
                h.update(frame.to_csv(index=False).encode())
        return Path(folder) / f"{h.hexdigest()[:32]}.json"

    def _rank_matrix(self, train: pd.DataFrame) -> pd.DataFrame:
        return train.pivot_table(index="model", columns="dataset", values="u").reindex(self.models_)

    def _choose(self, U: pd.DataFrame) -> tuple[str, float, dict]:
        """The aggregate and the blend weight, by leave-one-dataset-out over the training datasets."""
        fixed_blend = None if self.blend == "auto" else float(self.blend)
        if not self.dataset_signal_ and fixed_blend is None:
            fixed_blend = 0.0
        candidates = PRIOR_AGGREGATES if self.prior == "auto" else (self.prior,)
        datasets = list(U.columns)
        scores: dict = {}
        if len(datasets) < 3 or (len(candidates) == 1 and fixed_blend is not None):
            return candidates[0], (fixed_blend if fixed_blend is not None else 0.0), scores
        from hubselect.evaluate.metrics import weighted_tau
        truth = {d: self.train_[self.train_["dataset"] == d].set_index("model")["score"] for d in datasets}
        hib = self.tables_.higher_is_better
        M = U.to_numpy()
        inner_prior, taus = {}, {}
        for how in candidates:
            taus[how] = []
            for j, d in enumerate(datasets):
                inner_prior[how, d] = aggregate_ranks(np.delete(M, j, axis=1), how)
                taus[how].append(weighted_tau(truth[d], _order(inner_prior[how, d], self.models_), hib))
        prior = _simplest_within(list(candidates), taus, PRIOR_SE)
        scores.update({f"prior:{h}": float(np.nanmean(t)) for h, t in taus.items()})
        if fixed_blend is not None:
            return prior, fixed_blend, scores
        taus = {a: [] for a in BLEND_GRID}
        for d in datasets:
            inner = self._learner(self.train_[self.train_["dataset"] != d])
            learned = inner.predict(d)[0]
            p_pos, l_pos = _positions(inner_prior[prior, d]), _positions(learned)
            for a in BLEND_GRID:
                taus[a].append(weighted_tau(truth[d], _order((1 - a) * p_pos + a * l_pos, self.models_), hib))
        blend = _simplest_within(list(BLEND_GRID), taus, BLEND_SE)
        scores.update({f"blend:{a}": float(np.nanmean(t)) for a, t in taus.items()})
        return prior, blend, scores

    def _learner(self, train: pd.DataFrame, new_dataset: "NewDataset | None" = None) -> "_Learner":
        return _Learner(self, self.tables_, train, new_dataset).fit()

    # -- predict -----------------------------------------------------------------------------------

    def predict(self, dataset: str, new_dataset: "NewDataset | None" = None) -> pd.DataFrame:
        """Every model's place for ``dataset``: columns ``model``, ``expected_u`` (0 = best),
        ``score`` (expected rank position, 1 = best), ``confidence``, ``prior_u`` and ``learned_u``.

        ``new_dataset`` describes a dataset that the zoo does not know (its features and distances).
        """
        return self.predict_many([dataset], new_dataset=new_dataset)[dataset]

    def predict_many(self, datasets: list[str], new_dataset: "NewDataset | None" = None) -> dict[str, pd.DataFrame]:
        """:meth:`predict` for several datasets from one learner (``new_dataset``: the only one)."""
        if not hasattr(self, "train_"):
            raise RuntimeError("call fit() before predict()")
        if new_dataset is not None and len(datasets) != 1:
            raise ValueError("a new dataset is ranked on its own")
        n = len(self.models_)
        prior_pos = _positions(self.prior_u_)
        learner = None
        if self.blend_ > 0:
            key = None if new_dataset is None else new_dataset.name
            if key not in self._learners:        # the new dataset's profile enters encoders and graph
                self._learners = {key: self._learner(self.train_, new_dataset)}
            learner = self._learners[key]
        out = {}
        for d in datasets:
            if learner is None:
                learned, confidence = np.full(n, np.nan), np.full(n, np.nan)
                u = prior_pos
            else:
                learned, confidence = learner.predict(d)
                u = (1 - self.blend_) * prior_pos + self.blend_ * _positions(learned)
            expected_u = _positions(u)
            out[d] = pd.DataFrame({"model": self.models_, "expected_u": expected_u,
                                   "score": 1 + expected_u * (n - 1), "confidence": confidence,
                                   "prior_u": self.prior_u_, "learned_u": learned})
        return out

    def describe(self) -> str:
        """One line on what the fit chose (for notes and reports)."""
        how = "the learned ranking alone" if self.blend_ == 1 else (
            f"{self.prior_name_} rank over the training datasets" if self.blend_ == 0 else
            f"{self.prior_name_} rank moved {self.blend_:.2f} of the way to the learned ranking")
        why = "" if self.dataset_signal_ or self.blend != "auto" else " (the datasets carry no features or distances)"
        return f"selector: {how}{why}"


class _Learner:
    """The learned part of M&C: a predictor of each model's normalised rank on a dataset from
    [model features, dataset features, graph evidence], fitted on ``train``."""

    def __init__(self, owner: MatchAndChoose, tables: ZooTables, train: pd.DataFrame,
                 new_dataset: "NewDataset | None"):
        self.owner, self.tables, self.train, self.new_dataset = owner, tables, train, new_dataset

    def fit(self) -> "_Learner":
        o, tables, train = self.owner, self.tables, self.train
        probe = tables.probe
        models = list(tables.models["model"])
        datasets_df = dataset_feature_table(tables.datasets, probe)
        distances = distances_for_probe(tables.distances, probe)
        extra = [] if self.new_dataset is None else [self.new_dataset.name]
        if self.new_dataset is not None:
            distances = pd.concat([distances, self.new_dataset.distances], ignore_index=True)
            row = pd.DataFrame([{"dataset": self.new_dataset.name, **self.new_dataset.features}])
            datasets_df = row if datasets_df is None else pd.concat([datasets_df, row], ignore_index=True)
        if datasets_df is not None and o.probe_components:
            datasets_df = compress_probe_columns(datasets_df, probe, o.probe_components)
        self.models, self.datasets_df, self.distances = models, datasets_df, distances
        all_datasets = sorted(set(tables.known_datasets()) | set(extra))
        blocks_train = []
        self.target_blocks: list = []          # functions of the target dataset: a row per model
        if o.use_features:
            model_enc = TabularEncoder("model").fit(tables.models)
            data_enc = TabularEncoder("dataset").fit(datasets_df)
            blocks_train += [model_enc.transform(tables.models, list(train["model"])),
                             data_enc.transform(datasets_df, list(train["dataset"]))]
            model_block = model_enc.transform(tables.models, models)
            self.target_blocks += [lambda t: model_block,
                                   lambda t: data_enc.transform(datasets_df, [t] * len(models))]
        if o.use_graph and o.edge_features == "hadamard":
            # The paper: one graph, the edge embedding is the element-wise product of node vectors.
            emb = self._embed(train, all_datasets)
            blocks_train.append(_hadamard(emb, list(train["model"]), list(train["dataset"])))
            self.target_blocks.append(lambda t: _hadamard(emb, models, [t] * len(models)))
        elif o.use_graph:
            blocks_train.append(self._proximity_rows(all_datasets))
            emb = self._embed(train, all_datasets)
            self.target_blocks.append(lambda t: _proximity(emb, models, t))
        if o.rank_features:
            blocks_train.append(_record_features(train, distances, list(train["model"]), list(train["dataset"])))
            self.target_blocks.append(lambda t: _record_features(train, distances, models, [t] * len(models)))
        n_classes = max(2, min(N_RANK_BINS, int(train.groupby("dataset").size().max())))
        self.predictor = make_predictor(o.predictor, seed=o.seed, n_classes=n_classes)
        self.predictor.fit(np.hstack(blocks_train), train["u"].to_numpy(), train["dataset"].to_numpy())
        return self

    def predict(self, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        return self.predictor.predict(np.hstack([block(dataset) for block in self.target_blocks]))

    def _embed(self, train, datasets) -> dict:
        from hubselect.rank.graph.matching import build_matching_graph
        from hubselect.rank.graph.node2vec import embed
        graph = build_matching_graph(train[["model", "dataset", "score"]], self.distances,
                                     self.tables.higher_is_better, models=self.models, datasets=datasets)
        return embed(graph, dim=GRAPH_DIM, num_walks=GRAPH_WALKS, walk_length=GRAPH_WALK_LENGTH, p=1.0, q=1.0,
                     extend=True, seed=self.owner.seed, epochs=self.owner.epochs, sample=self.owner.subsample)

    def _proximity_rows(self, datasets) -> np.ndarray:
        """Proximity features of every training row, each dataset embedded as if it were new.

        The target dataset has no model edges when it is ranked; a training dataset that keeps
        its own would be described by different evidence. So each training dataset's rows come
        from a graph without that dataset's model edges: train and predict see the same situation.
        """
        train = self.train
        out = np.zeros((len(train), 3))
        index = {m: i for i, m in enumerate(self.models)}
        for d in train["dataset"].unique():
            rows = np.flatnonzero(train["dataset"].to_numpy() == d)
            feats = _proximity(self._embed(train[train["dataset"] != d], datasets), self.models, d)
            out[rows] = feats[[index[m] for m in train["model"].to_numpy()[rows]]]
        return out


def training_rows(records: pd.DataFrame, models: list[str], higher_is_better: bool) -> pd.DataFrame:
    """One row per (model, dataset) with its mean score and normalised rank ``u`` (0 = best),
    for datasets with at least two scored models of the zoo."""
    rec = records[records["model"].isin(models)]
    rec = rec.groupby(["model", "dataset"], as_index=False, sort=True)["score"].mean()
    rec = rec[rec.groupby("dataset")["model"].transform("size") >= 2].copy()
    rec["u"] = rec.groupby("dataset")["score"].transform(lambda s: normalized_rank(s, higher_is_better))
    return rec.reset_index(drop=True)


def has_dataset_signal(tables: ZooTables) -> bool:
    """Whether the zoo says anything about its datasets beyond their names: a distance, or a
    dataset feature that differs between datasets."""
    if len(distances_for_probe(tables.distances, tables.probe)):
        return True
    features = dataset_feature_table(tables.datasets, tables.probe)
    if features is None:
        return False
    return any(features[c].nunique(dropna=True) > 1 for c in features.columns if c != "dataset")


def _hadamard(emb: dict, models: list[str], datasets: list[str]) -> np.ndarray:
    from hubselect.rank.graph.matching import dataset_node, model_node
    zero = np.zeros(GRAPH_DIM)
    return np.vstack([emb.get(model_node(m), zero) * emb.get(dataset_node(d), zero)
                      for m, d in zip(models, datasets)])


EDGE_FEATURES = ("proximity", "hadamard")


def _closeness(distances: pd.DataFrame) -> list[dict]:
    """Pairwise closeness ``exp(-d / s)`` at two scales: ``s`` = the median distance of a dataset to
    its nearest neighbour (only close neighbours count) and ``s`` = the median of all distances
    (a broad neighbourhood). Which one carries the signal depends on the zoo, so both are given.
    """
    if not len(distances):
        return [{}, {}]
    dist = distances["distance"].to_numpy(dtype=float)
    both = pd.concat([distances[["dataset_a", "distance"]].rename(columns={"dataset_a": "d"}),
                      distances[["dataset_b", "distance"]].rename(columns={"dataset_b": "d"})])
    positive = both[both["distance"] > 0]
    nearest = positive.groupby("d")["distance"].min()
    scales = [float(nearest.median()) if len(nearest) else 1.0,
              float(positive["distance"].median()) if len(positive) else 1.0]
    out = []
    for scale in scales:
        w = np.maximum(np.exp(-dist / scale), 1e-12)
        table = {}
        for a, b, x in zip(distances["dataset_a"], distances["dataset_b"], w):
            table[(a, b)] = table[(b, a)] = x
        out.append(table)
    return out


def _record_features(train: pd.DataFrame, distances: pd.DataFrame, models: list[str],
                     datasets: list[str]) -> np.ndarray:
    """Per (model, dataset) row: the model's mean normalised rank on the *other* training datasets,
    the same mean weighted by closeness to the row's dataset at two scales (:func:`_closeness`),
    and the number of datasets behind them. Pairs without a known distance get the smallest
    weight seen, so the weighted means fall back towards the plain one.
    """
    u = train.pivot_table(index="model", columns="dataset", values="u")           # models x datasets
    cols = list(u.columns)
    col_index = {d: i for i, d in enumerate(cols)}
    U = u.to_numpy()
    have = ~np.isnan(U)
    Uz = np.where(have, U, 0.0)
    row_index = {m: i for i, m in enumerate(u.index)}
    tables = _closeness(distances)
    floors = [min(t.values()) if t else 1.0 for t in tables]
    out = np.full((len(models), 2 + len(tables)), np.nan)
    cache: dict[str, list[np.ndarray]] = {}
    for k, (m, d) in enumerate(zip(models, datasets)):
        i = row_index.get(m)
        out[k, -1] = 0
        if i is None:
            continue
        if d not in cache:
            cache[d] = []
            for table, floor in zip(tables, floors):
                weights = np.array([table.get((d, c), floor) for c in cols])
                if d in col_index:
                    weights[col_index[d]] = 0.0          # leave the row's own dataset out
                cache[d].append(weights)
        own = np.ones(len(cols))
        if d in col_index:
            own[col_index[d]] = 0.0
        mask = have[i] & (own > 0)
        n = int(mask.sum())
        out[k, -1] = n
        if n:
            out[k, 0] = Uz[i, mask].mean()
            for j, weights in enumerate(cache[d]):
                out[k, 1 + j] = (Uz[i, mask] * weights[mask]).sum() / weights[mask].sum()
    return out


def compress_probe_columns(datasets: pd.DataFrame, probe: str | None, k: int) -> pd.DataFrame:
    """Replace the ``<probe>_<i>`` columns by their first ``k`` principal components."""
    cols = [c for c in datasets.columns if (m := PROBE_COLUMN.match(c)) and m.group("probe") == probe]
    if len(cols) <= k:
        return datasets
    X = datasets[cols].to_numpy(dtype=np.float64)
    filled = np.where(np.isnan(X), np.nanmean(X, axis=0), X)
    filled = np.nan_to_num(filled)
    centred = filled - filled.mean(axis=0)
    u, sing, _ = np.linalg.svd(centred, full_matrices=False)
    n = min(k, len(sing))
    pcs = pd.DataFrame(u[:, :n] * sing[:n], columns=[f"{probe}_pc{i}" for i in range(n)], index=datasets.index)
    return pd.concat([datasets.drop(columns=cols), pcs], axis=1)


def _proximity(emb: dict, models: list[str], dataset: str) -> np.ndarray:
    """Basis-free edge features of (model, dataset) for all models: cosine, its rank, dot product.

    Node2vec vectors of two different graphs live in unrelated bases, so only quantities that
    survive a rotation (angles, lengths) can be compared across graphs.
    """
    from hubselect.rank.graph.matching import dataset_node, model_node
    d = emb.get(dataset_node(dataset))
    if d is None:
        return np.zeros((len(models), 3))
    M = np.vstack([emb.get(model_node(m), np.zeros_like(d)) for m in models]).astype(np.float64)
    dot = M @ d
    norms = np.linalg.norm(M, axis=1) * np.linalg.norm(d)
    cos = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    order = pd.Series(cos).rank(ascending=False).to_numpy()
    return np.column_stack([cos, (order - 1) / max(len(models) - 1, 1), dot])


def selector_cache_dir() -> Path:
    from hubselect.constants import hubselect_home
    return hubselect_home() / "selector-cache"
