"""``hubselect rank``: rank a zoo's models for a dataset (the paper's steps 3 and 4).

1. The matching graph holds every model and dataset of the zoo; model–dataset edges come from the
   fine-tuning records, dataset–dataset edges from profile distances. The target dataset enters
   with its dataset–dataset edges only (its records are left out when it is held out or new).
2. Graph evidence per (model, dataset): by default the "record features", the graph's two-hop
   evidence computed exactly (the model's mean rank on the other datasets, weighted by their
   closeness); optionally node2vec+ embeddings (``use_graph=True``): the paper's element-wise
   product of node vectors, or basis-free proximity features from as-new embeddings.
3. A predictor learns each model's normalised rank on each dataset from
   [model features, dataset features, graph evidence], then predicts it for the target.

A zoo without records is a cold start: the paper's published average ranking is returned for
the models it covers, labelled as such.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hubselect import prior
from hubselect.errors import UserError
from hubselect.metrics import normalized_rank
from hubselect.ranker import TabularEncoder, make_predictor
from hubselect.zoo import Zoo
from hubselect.zoo_listing import plain_value

PROBE_COLUMN = re.compile(r"^(?P<probe>[A-Za-z][A-Za-z0-9-]*)_(?P<i>\d+)$")


@dataclass
class RankedModel:
    rank: int
    model: str
    score: float | None            # expected rank position, 1 = best (measured: its true position)
    confidence: float | None       # probability of the predicted rank bin; None when measured/prior
    source: str                    # "predicted" | "measured" | "prior" | "unranked"
    measured_score: float | None = None
    tflops_per_image: float | None = None
    license: str | None = None
    params_denoiser_b: float | None = None     # billions
    writers: int | None = None                 # measured: how many writers' results make the score
    average_rank: float | None = None          # mean normalised rank over the zoo's datasets (0 = best)
    evidence: list[dict] = field(default_factory=list)   # nearest known datasets and the model's rank there
    why: str | None = None


@dataclass
class Ranking:
    dataset: str
    zoo: str
    cold_start: bool
    models: list[RankedModel]
    metric: str
    higher_is_better: bool
    notes: list[str] = field(default_factory=list)
    filters: dict = field(default_factory=dict)
    filtered_out: list[str] = field(default_factory=list)
    shortlist: dict | None = None

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "zoo": self.zoo, "cold_start": self.cold_start,
                "metric": self.metric, "higher_is_better": self.higher_is_better,
                "notes": self.notes, "filters": self.filters, "filtered_out": self.filtered_out,
                "shortlist": self.shortlist, "ranking": [asdict(m) for m in self.models]}


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
    others = set(known_probe_names()) - {probe}
    keep = []
    for col in datasets.columns:
        m = PROBE_COLUMN.match(col)
        if col == "n_images" or (m and m.group("probe") in others):
            continue
        keep.append(col)
    return datasets[keep]


def known_probe_names() -> list[str]:
    try:
        from hubselect.probes import probe_names
    except ImportError:
        return []
    return list(probe_names())


def _distances_for_probe(distances: pd.DataFrame, probe: str | None) -> pd.DataFrame:
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
DEFAULT_PROBE = "clip"
# `rank` suggests fine-tuning the first k models, k the smallest that held the best model this often.
SHORTLIST_HIT_RATE = 0.9


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

    def __init__(self, predictor: str = "yetirank", prior: str = "auto", blend: float | str = "auto",
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

    def fit(self, tables: "ZooTables") -> "MatchAndChoose":
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
                from hubselect.zoo import atomic_write_json
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
        from hubselect.metrics import weighted_tau
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

    def __init__(self, owner: MatchAndChoose, tables: "ZooTables", train: pd.DataFrame,
                 new_dataset: "NewDataset | None"):
        self.owner, self.tables, self.train, self.new_dataset = owner, tables, train, new_dataset

    def fit(self) -> "_Learner":
        o, tables, train = self.owner, self.tables, self.train
        probe = tables.probe
        models = list(tables.models["model"])
        datasets_df = dataset_feature_table(tables.datasets, probe)
        distances = _distances_for_probe(tables.distances, probe)
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
        from hubselect.graph import build_matching_graph
        from hubselect.node2vec import embed
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


def has_dataset_signal(tables: "ZooTables") -> bool:
    """Whether the zoo says anything about its datasets beyond their names: a distance, or a
    dataset feature that differs between datasets."""
    if len(_distances_for_probe(tables.distances, tables.probe)):
        return True
    features = dataset_feature_table(tables.datasets, tables.probe)
    if features is None:
        return False
    return any(features[c].nunique(dropna=True) > 1 for c in features.columns if c != "dataset")


def _hadamard(emb: dict, models: list[str], datasets: list[str]) -> np.ndarray:
    from hubselect.graph import dataset_node, model_node
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
    from hubselect.graph import dataset_node, model_node
    d = emb.get(dataset_node(dataset))
    if d is None:
        return np.zeros((len(models), 3))
    M = np.vstack([emb.get(model_node(m), np.zeros_like(d)) for m in models]).astype(np.float64)
    dot = M @ d
    norms = np.linalg.norm(M, axis=1) * np.linalg.norm(d)
    cos = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    order = pd.Series(cos).rank(ascending=False).to_numpy()
    return np.column_stack([cos, (order - 1) / max(len(models) - 1, 1), dot])


def _info_lookup(info: pd.DataFrame | None) -> dict[str, dict]:
    if info is None:
        return {}
    return info.set_index("model").to_dict("index")


def cold_start_ranking(tables: ZooTables) -> list[RankedModel]:
    """The paper's published order for the models it covers, then the rest unranked."""
    models = list(tables.models["model"])
    covered = sorted((m for m in models if prior.prior_position(m) is not None), key=prior.prior_position)
    rest = [m for m in models if prior.prior_position(m) is None]
    out = [RankedModel(0, m, float(prior.prior_position(m)), None, "prior") for m in covered]
    out += [RankedModel(0, m, None, None, "unranked") for m in rest]
    return out


def rank(dataset: str, zoo: str | Path | None = None, top: int | None = None, probe: str | None = None,
         holdout: bool = False, predictor: str = "yetirank", seed: int = 0, n: int = 1000,
         image_column: str | None = None, caption_column: str | None = None, split: str | None = None,
         progress=None, method: MatchAndChoose | None = None, licenses: list[str] | None = None,
         max_tflops: float | None = None, max_params: float | None = None,
         shortlist_target: float = SHORTLIST_HIT_RATE) -> Ranking:
    """Rank the zoo's models for ``dataset`` (a dataset the zoo knows, a Hub dataset ID or a folder).

    ``licenses`` keeps only models under those licence IDs, ``max_tflops`` / ``max_params`` (denoiser,
    billions) drop costlier ones; all three apply before ``top``. Every option is checked before any
    work, on a cold start too.
    """
    z = Zoo.open(zoo)
    tables = ZooTables.load(z)
    if top is not None and top < 1:
        raise UserError("--top must be at least 1")
    for name, value in (("--max-tflops", max_tflops), ("--max-params", max_params)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise UserError(f"{name} must be a positive number, not {value}")
    filters = _filters(licenses, max_tflops, max_params)
    if method is None:
        make_predictor(predictor)       # an unknown predictor is bad input whatever the zoo holds
    if probe is not None:
        from hubselect.probes import probe_class
        probe_class(probe)          # an unknown probe is bad input whatever the dataset
    probe = probe or tables.probe or DEFAULT_PROBE
    notes: list[str] = []
    shortlist = None
    if tables.records.empty:
        # Nothing to learn from: the dataset cannot change the answer, so it is checked, not profiled.
        notes += check_dataset(dataset, tables)
        ranked = cold_start_ranking(tables)
        notes.append(f"cold start: this order is {prior.PRIOR_SOURCE}, "
                     "the same for every dataset; records from `hubselect sync` (the shared edge dataset) or "
                     "`hubselect finetune --push` make it specific to yours")
        if probe != (tables.probe or DEFAULT_PROBE) or image_column or caption_column or split:
            notes.append("cold start: the dataset is not profiled, so --probe and the column options change nothing")
        cold = True
    else:
        cold = False
        new_dataset = None
        if dataset not in tables.known_datasets():
            new_dataset = profile_new_dataset(z, dataset, probe, n=n, seed=seed, image_column=image_column,
                                              caption_column=caption_column, split=split, progress=progress)
            if new_dataset.distances.empty:
                notes.append(f"no other dataset in the zoo is profiled with probe {probe!r}: "
                             "the dataset enters the graph without dataset edges")
        elif holdout and not (tables.records["dataset"] == dataset).any():
            notes.append(f"{dataset} has no records to hold out")
        own = tables.records[tables.records["dataset"] == dataset]
        method = method or MatchAndChoose(predictor=predictor, seed=seed, cache_dir=selector_cache_dir())
        view = replace(tables.without(dataset) if holdout else tables, probe=probe)
        method.fit(view)
        predicted = method.predict(dataset, new_dataset=new_dataset)
        notes.append(method.describe())
        ranked = _merge_measured(predicted, own.iloc[0:0] if holdout else own, tables.higher_is_better)
        distances = _distances_for_probe(view.distances, probe)
        if new_dataset is not None:
            distances = pd.concat([distances, new_dataset.distances], ignore_index=True)
        _explain(ranked, method.train_, distances, dataset, tables.higher_is_better)
        shortlist = shortlist_for(replace(tables, probe=probe), method, shortlist_target)

    info = _info_lookup(tables.info)
    for r in ranked:
        meta = info.get(r.model, {})
        r.tflops_per_image = plain_value(meta.get("tflops_per_image"))
        r.license = plain_value(meta.get("license"))
        params = plain_value(meta.get("params_denoiser"))
        r.params_denoiser_b = None if params is None else round(float(params) / 1e9, 3)
        if cold:
            r.why = (f"position {int(r.score)} in the published average ranking" if r.source == "prior"
                     else "not in the published ranking")
    ranked, dropped = _apply_filters(ranked, filters)
    if dropped:
        notes.append(f"filtered out ({_describe_filters(filters)}): " + ", ".join(dropped))
    for i, r in enumerate(ranked, start=1):
        r.rank = i
    if top is not None:
        ranked = ranked[:top]
    return Ranking(dataset=dataset, zoo=str(z.path), cold_start=cold, models=ranked,
                   metric=tables.metric, higher_is_better=tables.higher_is_better, notes=notes,
                   filters=filters, filtered_out=dropped, shortlist=shortlist)


# -- filters ----------------------------------------------------------------------------------------

def _filters(licenses, max_tflops, max_params) -> dict:
    out = {}
    if licenses:
        wanted = sorted({x.strip().lower() for item in licenses for x in item.split(",") if x.strip()})
        if not wanted:
            raise UserError("--license needs at least one licence ID (e.g. apache-2.0,openrail++)")
        out["license"] = wanted
    if max_tflops is not None:
        out["max_tflops"] = float(max_tflops)
    if max_params is not None:
        out["max_params_b"] = float(max_params)
    return out


def _describe_filters(filters: dict) -> str:
    parts = []
    if "license" in filters:
        parts.append("licence " + " or ".join(filters["license"]))
    if "max_tflops" in filters:
        parts.append(f"at most {filters['max_tflops']:g} TFLOP/image")
    if "max_params_b" in filters:
        parts.append(f"at most {filters['max_params_b']:g} B denoiser parameters")
    return ", ".join(parts)


def _apply_filters(ranked: list[RankedModel], filters: dict) -> tuple[list[RankedModel], list[str]]:
    """Models that pass every filter, and the names of those that do not. A model whose licence or
    cost is unknown does not pass a filter on it: nothing guarantees it would."""
    kept, dropped = [], []
    for r in ranked:
        ok = True
        if "license" in filters:
            ok &= r.license is not None and str(r.license).lower() in filters["license"]
        if "max_tflops" in filters:
            ok &= r.tflops_per_image is not None and r.tflops_per_image <= filters["max_tflops"]
        if "max_params_b" in filters:
            ok &= r.params_denoiser_b is not None and r.params_denoiser_b <= filters["max_params_b"]
        (kept if ok else dropped).append(r if ok else r.model)
    return kept, dropped


# -- why this order -----------------------------------------------------------------------------------

EVIDENCE_NEIGHBOURS = 3


def _explain(ranked: list[RankedModel], train: pd.DataFrame, distances: pd.DataFrame, dataset: str,
             higher_is_better: bool) -> None:
    """Fill each model's average rank, its rank on the nearest known datasets and a one-line why."""
    near = {}
    for a, b, d in zip(distances["dataset_a"], distances["dataset_b"], distances["distance"]):
        if a == dataset and b != dataset:
            near[b] = float(d)
        elif b == dataset and a != dataset:
            near[a] = float(d)
    u = train.pivot_table(index="model", columns="dataset", values="u")
    n_datasets = u.shape[1]
    for r in ranked:
        if r.model not in u.index:
            r.why = "no record on any other dataset: placed by its features alone"
            continue
        row = u.loc[r.model].dropna()
        r.average_rank = round(float(row.mean()), 4)
        closest = sorted((d for d in row.index if d in near), key=lambda d: near[d])[:EVIDENCE_NEIGHBOURS]
        r.evidence = [{"dataset": d, "distance": round(near[d], 6), "normalized_rank": round(float(row[d]), 4)}
                      for d in closest]
        why = f"on average {_pct(row.mean())} over {len(row)} of {n_datasets} datasets"
        if closest:
            why += "; nearest: " + ", ".join(f"{e['dataset']} {_pct(e['normalized_rank'])}" for e in r.evidence)
        if r.source == "measured":
            why = f"measured on this dataset ({r.measured_score:.4g}); " + why
        r.why = why


def _pct(u: float) -> str:
    """A normalised rank as the share of models ahead of it: 0 = best → "top 0 %"."""
    return f"top {100 * float(u):.0f} %"


# -- how many to fine-tune ----------------------------------------------------------------------------

def shortlist_for(tables: ZooTables, fitted: MatchAndChoose, target: float = SHORTLIST_HIT_RATE) -> dict | None:
    """The smallest k such that the best model was among the first k on at least ``target`` of the
    zoo's datasets, each ranked with its own records held out by the zoo's chosen prior and blend.

    Computed once per zoo state and cached beside the selector's choice (None with under three datasets):
    never at every rank, whatever selector ranks.
    """
    datasets = sorted(set(training_rows(tables.records, list(tables.models["model"]),
                                        tables.higher_is_better)["dataset"]))
    if len(datasets) < 3:
        return None
    replay = MatchAndChoose(predictor=fitted.predictor, prior=fitted.prior_name_, blend=fitted.blend_,
                            use_features=fitted.use_features, use_graph=fitted.use_graph,
                            edge_features=fitted.edge_features, rank_features=fitted.rank_features,
                            probe_components=fitted.probe_components, epochs=fitted.epochs,
                            subsample=fitted.subsample, seed=fitted.seed)
    cache = replay.fit(tables)._cache_path_in(fitted.cache_dir or selector_cache_dir(), f"shortlist-{target}")
    if cache.is_file():
        try:
            import json
            data = json.loads(cache.read_text())
            if {"k", "hit_rate", "datasets"} <= set(data):
                return data
        except (OSError, ValueError):
            pass
    positions = []
    for d in datasets:
        predicted = replay.fit(tables.without(d)).predict(d)
        truth = tables.records[tables.records["dataset"] == d].groupby("model")["score"].mean()
        goodness = truth if tables.higher_is_better else -truth
        order = [m for m in predicted.sort_values(["score", "model"])["model"] if m in truth.index]
        best = goodness.max()
        positions.append(min(i for i, m in enumerate(order, start=1) if goodness[m] >= best - 1e-12 * abs(best)))
    positions = np.array(positions)
    k = next(k for k in range(1, positions.max() + 1) if np.mean(positions <= k) >= target)
    out = {"k": int(k), "hit_rate": round(float(np.mean(positions <= k)), 4), "datasets": len(datasets)}
    from hubselect.zoo import atomic_write_json
    atomic_write_json(cache, out)
    return out


def selector_cache_dir() -> Path:
    from huggingface_hub import constants
    return Path(constants.HF_HOME) / "hubselect" / "selector-cache"


def check_dataset(dataset: str, tables: ZooTables) -> list[str]:
    """Check DATASET without profiling it (a cold start does not need its images).

    A folder must hold images; anything else must be a Hub dataset ID that the Hub knows, asked
    with one metadata call. Bad input raises :class:`UserError`; when the Hub cannot be asked
    (offline, unreachable) the answer is a note saying the dataset was not checked.
    """
    from hubselect.errors import HubError
    from hubselect.hub import HubClient, is_repo_id
    from hubselect.images import FolderSource, dataset_hub_error
    if dataset in tables.known_datasets():
        return []
    path = Path(dataset).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{dataset} is a file; DATASET must be an image folder or a Hub dataset ID")
        FolderSource.open(path)          # raises when the folder holds no image
        return []
    canonical = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", dataset) is not None     # e.g. "mnist"
    if not (is_repo_id(dataset) or canonical):
        raise UserError(f"{dataset}: no such folder, and not a Hub dataset ID (owner/name)")
    try:
        HubClient(retries=1, backoff=0.5, timeout=10).dataset_meta(dataset)
    except HubError as exc:
        if exc.reason in ("not_found", "unauthorized", "gated"):
            raise dataset_hub_error(dataset, exc) from None
        return [f"could not check that {dataset} exists on the Hub ({exc.reason})"]
    return []


def _merge_measured(predicted: pd.DataFrame, own: pd.DataFrame, higher_is_better: bool) -> list[RankedModel]:
    """Measured models keep their measured order; predicted ones are placed among them by score.

    A measured model's position is its true rank among the measured models, stretched onto the
    scale of the whole zoo, so that both kinds sort on one axis.
    """
    n = len(predicted)
    measured = own.groupby("model")["score"].mean()          # one row per model already (aggregate_records)
    writers = own.groupby("model")["writers"].max() if "writers" in own.columns else {}
    out = []
    if len(measured):
        u = normalized_rank(measured, higher_is_better)
        for model, score in measured.items():
            if model in set(predicted["model"]):
                out.append(RankedModel(0, model, float(1 + u[model] * (n - 1)), None, "measured",
                                       measured_score=float(score),
                                       writers=int(writers[model]) if model in writers else None))
    for row in predicted.itertuples():
        if row.model not in measured.index:
            confidence = None if pd.isna(row.confidence) else float(row.confidence)   # none from the prior alone
            out.append(RankedModel(0, row.model, float(row.score), confidence, "predicted"))
    # Ties broken by measured first, then by name, so the order is stable.
    out.sort(key=lambda r: (r.score, r.source != "measured", r.model))
    return out


def profile_new_dataset(zoo: Zoo, dataset: str, probe: str, n: int, seed: int, image_column, caption_column,
                        split, progress) -> NewDataset:
    """Profile a dataset that the zoo does not know, without writing anything to the zoo."""
    from hubselect import profiles
    profile = profiles.profile_dataset(dataset, probe=probe, n=n, image_column=image_column,
                                       caption_column=caption_column, split=split, name=dataset, seed=seed,
                                       progress=progress)
    others = profiles.load_zoo_profiles(zoo, probe)
    others = [p for p in others if p.dataset != profile.dataset]
    rows = []
    if others:
        from hubselect.distance import frechet_to_many
        d = frechet_to_many(profile.mean, profile.covariance, [p.mean for p in others],
                            [p.covariance for p in others])
        rows = [{"dataset_a": dataset, "dataset_b": p.dataset, "distance": float(x), "probe": probe}
                for p, x in zip(others, d)]
    features = {f"{probe}_{i}": float(v) for i, v in enumerate(profile.mean)}
    return NewDataset(name=dataset, features=features,
                      distances=pd.DataFrame(rows, columns=["dataset_a", "dataset_b", "distance", "probe"]))
