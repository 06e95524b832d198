"""``hubselect evaluate``: the paper's §5 protocol on any zoo, whatever its metric direction.

Leave-one-dataset-out: for every dataset with at least two scored models, that dataset's records
are removed from the graph and from the training rows, and its ranking is predicted exactly as
``hubselect rank --holdout`` would. Each method's ranking is scored against the measured one with
the metrics of :mod:`hubselect.evaluate.metrics` (OSR, top-3 hit rate, weighted Kendall τ under both
weightings, regret, O2B, O2O).

Any valid zoo can be evaluated: without dataset features or distances, with 5 or 500 models, with
sparse records or with a (model, dataset) pair recorded more than once (its runs count with their
mean score, for the truth and for training alike). A baseline that cannot apply to the zoo, or to
one held-out dataset, is left out there and says why in the evaluation's notes.

Methods
    mc          Match & Choose as hubselect implements it (defaults of :class:`MatchAndChoose`): model and
                dataset features plus the matching graph's record features, YetiRank
    mc-node2vec the same plus node2vec+ proximity features (ablation study)
    mc-paper    the paper's configuration: node2vec+ with pecanpy's word2vec defaults (one epoch,
                subsampling 1e-3), the element-wise product as edge embedding, raw probe vectors,
                CatBoost classifier over ranks
    overall     mean normalised rank over the other datasets (the paper's "Overall")
    initial     the score before fine-tuning, when records carry ``initial_score``
    direct      multi-output random forest on dataset features only (the paper's "Direct classifier"),
                when the datasets table has feature columns
    popularity  Hub downloads, when the zoo has them
    random      the expectation over random orderings
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from hubselect.errors import UserError
from hubselect.evaluate import metrics
from hubselect.rank.estimator import MatchAndChoose, dataset_feature_table
from hubselect.rank.predictors import TabularEncoder
from hubselect.zoo.format import Zoo
from hubselect.zoo.tables import ZooTables, normalized_rank

PAPER_PRESET = dict(prior="mean", blend=1.0, use_graph=True, rank_features=False, edge_features="hadamard",
                    probe_components=None, epochs=1, subsample=1e-3, predictor="catboost")
NODE2VEC_PRESET = dict(use_graph=True)
LEARNER_ONLY = dict(blend=1.0)      # the learned ranking alone, for the studies of its parts
STUDIES = ("sparsity", "ablation", "predictors", "metrics")


def eligible_datasets(records: pd.DataFrame) -> list[str]:
    counts = records.dropna(subset=["score"]).groupby("dataset")["model"].nunique()
    return sorted(counts[counts >= 2].index)


def one_record_per_pair(records: pd.DataFrame) -> pd.DataFrame:
    """Records with each (model, dataset) pair once: repeated runs count with their mean score
    (and mean ``initial_score``, when recorded). Returned unchanged when no pair repeats."""
    if not records.duplicated(["model", "dataset"]).any():
        return records
    values = [c for c in ("score", "initial_score") if c in records.columns]
    return records.groupby(["model", "dataset"], as_index=False, sort=False)[values].mean()


class NotApplicable(Exception):
    """A baseline cannot rank on this zoo or for this held-out dataset; the message says why."""


class _Notes:
    """Why methods were left out, collected over the held-out datasets and reported once each."""

    def __init__(self):
        self._where: dict[tuple[str, str], list[str]] = {}

    def add(self, method: str, dataset: str, reason: str) -> None:
        self._where.setdefault((method, reason), []).append(dataset)

    def lines(self, n_datasets: int) -> list[str]:
        out = []
        for (method, reason), datasets in self._where.items():
            if len(datasets) >= n_datasets:
                out.append(f"{method} left out: {reason}")
            else:
                shown = ", ".join(map(str, datasets[:5])) + (", ..." if len(datasets) > 5 else "")
                out.append(f"{method} left out on {len(datasets)} of {n_datasets} held-out datasets "
                           f"({shown}): {reason}")
        return out


# -- baselines --------------------------------------------------------------------------------------
# Each returns the models best first, or raises NotApplicable with the reason.

def overall_order(train: pd.DataFrame, models: list[str], higher_is_better: bool) -> list[str]:
    """Models by mean normalised rank on the training datasets; unseen models last."""
    if train.empty:
        raise NotApplicable("no other dataset has records")
    t = train.copy()
    t["u"] = t.groupby("dataset")["score"].transform(lambda s: normalized_rank(s, higher_is_better))
    mean_u = t.groupby("model")["u"].mean()
    return sorted(models, key=lambda m: (mean_u.get(m, np.inf), m))


def initial_order(own: pd.DataFrame, models: list[str], higher_is_better: bool) -> list[str]:
    """Models by their score before fine-tuning on the held-out dataset; unscored models last."""
    if "initial_score" not in own.columns:
        raise NotApplicable("the records carry no initial_score (score before fine-tuning)")
    if own["initial_score"].isna().all():
        raise NotApplicable("no initial_score recorded on the dataset")
    init = own.set_index("model")["initial_score"].dropna()
    sign = -1 if higher_is_better else 1
    return sorted(models, key=lambda m: (sign * init[m] if m in init.index else np.inf, m))


def popularity_order(tables: ZooTables, models: list[str]) -> list[str]:
    """Models by Hub downloads, most first; models without a count last."""
    for table in (tables.info, tables.models):
        if table is not None and "downloads" in table.columns and table["downloads"].notna().any():
            downloads = table.drop_duplicates("model").set_index("model")["downloads"]
            downloads = pd.to_numeric(downloads, errors="coerce")
            return sorted(models, key=lambda m: (-(downloads.get(m) if pd.notna(downloads.get(m)) else -1), m))
    raise NotApplicable("the zoo has no download counts")


def direct_order(tables: ZooTables, train: pd.DataFrame, target: str, models: list[str],
                 higher_is_better: bool, seed: int) -> list[str]:
    """Multi-output random forest from dataset features to every model's normalised rank."""
    from sklearn.ensemble import RandomForestRegressor
    features = dataset_feature_table(tables.datasets, tables.probe)
    if features is None or "dataset" not in features.columns:
        raise NotApplicable("the zoo has no datasets table")
    enc = TabularEncoder("dataset").fit(features)
    if not enc.names:
        raise NotApplicable("the datasets table has no feature columns (dataset names only)")
    if target not in set(features["dataset"]):
        raise NotApplicable("the dataset has no row in the datasets table")
    t = train.copy()
    t["u"] = t.groupby("dataset")["score"].transform(lambda s: normalized_rank(s, higher_is_better))
    Y = t.pivot_table(index="dataset", columns="model", values="u").reindex(columns=models).fillna(0.5)
    if len(Y) < 2:
        raise NotApplicable("fewer than two other datasets have records to learn from")
    X = np.nan_to_num(enc.transform(features, list(Y.index)))
    rf = RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=-1).fit(X, Y.to_numpy())
    pred = rf.predict(np.nan_to_num(enc.transform(features, [target])))[0]
    return [m for _, m in sorted(zip(pred, models))]


# -- the protocol -----------------------------------------------------------------------------------

@dataclass
class Evaluation:
    metric: str
    higher_is_better: bool
    datasets: list[str]
    per_dataset: pd.DataFrame
    summary: pd.DataFrame
    seconds: float
    studies: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)     # methods left out, and why

    def to_dict(self) -> dict:
        methods = {row.method: {"osr": _f(row.osr), "top3": _f(row.top3), "weighted_tau": _f(row.weighted_tau),
                                "weighted_tau_avg": _f(row.weighted_tau_avg), "regret": _f(row.regret),
                                "o2b": _f(row.o2b), "o2o": _f(row.o2o), "n_datasets": int(row.n_datasets)}
                   for row in self.summary.itertuples()}
        per = [{"dataset": r.dataset, "method": r.method, "top_model": r.top_model, "hit": _hit(r.hit),
                "top3": _hit(r.top3), "weighted_tau": _f(r.weighted_tau),
                "weighted_tau_avg": _f(r.weighted_tau_avg), "regret": _f(r.regret), "o2o": _f(r.o2o),
                "o2b": _f(r.o2b)}
               for r in self.per_dataset.itertuples()]
        out = {"metric": self.metric, "higher_is_better": self.higher_is_better, "datasets": self.datasets,
               "methods": methods, "per_dataset": per, "notes": list(self.notes),
               "seconds": round(self.seconds, 2)}
        if self.studies:
            out["studies"] = {k: v.to_dict("records") for k, v in self.studies.items()}
        return out


def _f(x) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def _hit(x) -> bool | float | None:
    """A method's hit is a bool; the random baseline's is a probability."""
    return bool(x) if isinstance(x, (bool, np.bool_)) else _f(x)


def leave_one_dataset_out(tables: ZooTables, methods: dict[str, MatchAndChoose | None] | None = None,
                          baselines: bool = True, records: pd.DataFrame | None = None,
                          datasets: list[str] | None = None, seed: int = 0,
                          progress: Callable[[int, int, str], None] | None = None) -> pd.DataFrame:
    """One row per (held-out dataset, method): top model and :data:`hubselect.evaluate.metrics.ROW_KEYS`.

    ``records`` is the knowledge available for training (defaults to the zoo's); the held-out
    dataset's true scores always come from the zoo's full records. A (model, dataset) pair recorded
    more than once counts with its mean score. Methods and baselines that give no ranking for a
    held-out dataset have no row there; why is in ``result.attrs["notes"]`` (a list of lines).
    """
    truth = one_record_per_pair(tables.records)
    knowledge = truth if records is None else one_record_per_pair(records)
    listed = list(tables.models["model"])
    models = listed + sorted(set(truth["model"]) - set(listed), key=str)   # baselines rank every scored model
    hib = tables.higher_is_better
    try:
        reference = metrics.best_on_average(truth, hib)
    except ValueError:
        reference = None                   # O2B is then NaN
    methods = {"mc": MatchAndChoose(seed=seed)} if methods is None else methods
    targets = eligible_datasets(truth) if datasets is None else datasets
    notes = _Notes()
    rows = []
    for i, d in enumerate(targets):
        if progress:
            progress(i, len(targets), d)
        own = truth[truth["dataset"] == d]
        true_scores = own.groupby("model")["score"].mean()
        if true_scores.empty:
            notes.add("every method", d, "the dataset has no scored model")
            continue
        train = knowledge[knowledge["dataset"] != d]
        orders: dict[str, list[str] | None] = {}
        for name, method in methods.items():
            try:
                predicted = method.fit(tables.with_records(train)).predict(d)
                orders[name] = list(predicted.sort_values(["score", "model"])["model"])
            except UserError as exc:   # e.g. no training dataset left at high sparsity
                notes.add(name, d, f"no ranking: {exc}")
        if baselines:
            for name, make_order in (("overall", lambda: overall_order(train, models, hib)),
                                     ("initial", lambda: initial_order(own, models, hib)),
                                     ("direct", lambda: direct_order(tables, train, d, models, hib, seed)),
                                     ("popularity", lambda: popularity_order(tables, models))):
                try:
                    orders[name] = make_order()
                except NotApplicable as exc:
                    notes.add(name, d, str(exc))
        for name, order in orders.items():
            if order is None:
                continue
            if not any(m in true_scores.index for m in order):
                notes.add(name, d, "it ranks none of the models scored on the dataset")
            else:
                rows.append(_score_row(d, name, true_scores, order, reference, hib))
        if baselines:
            exp = metrics.random_expectation(true_scores, hib, reference, seed=seed)
            rows.append({"dataset": d, "method": "random", "top_model": None, **exp})
    if progress:
        progress(len(targets), len(targets), None)
    result = pd.DataFrame(rows, columns=["dataset", "method", "top_model", *metrics.ROW_KEYS])
    result.attrs["notes"] = notes.lines(len(targets))
    return result


def _score_row(dataset, method, true_scores, order, reference, hib) -> dict:
    scored = [m for m in order if m in true_scores.index]
    return {"dataset": dataset, "method": method, "top_model": scored[0],
            **metrics.evaluate(true_scores, order, hib, reference_model=reference)}


def main_methods(seed: int = 0) -> dict[str, MatchAndChoose]:
    return {"mc": MatchAndChoose(seed=seed), "mc-paper": MatchAndChoose(seed=seed, **PAPER_PRESET)}


def evaluate(zoo: str | None = None, studies: tuple[str, ...] = (), seed: int = 0,
             sparsity_levels: tuple[float, ...] = tuple(np.round(np.arange(0, 1.0, 0.1), 1)),
             sparsity_seeds: int = 5, progress=None) -> Evaluation:
    """The main table (M&C, the paper's preset and every baseline) plus the requested studies."""
    unknown = [s for s in studies if s not in STUDIES]
    if unknown:
        raise UserError(f"unknown study {unknown[0]!r}; choose from {', '.join(STUDIES)}")
    tables = ZooTables.load(Zoo.open(zoo))
    targets = eligible_datasets(tables.records)
    if len(targets) < 2:
        raise UserError("evaluation needs at least two datasets with two or more scored models each")
    start = time.perf_counter()
    per = leave_one_dataset_out(tables, main_methods(seed), seed=seed, progress=progress)
    result = Evaluation(metric=tables.metric, higher_is_better=tables.higher_is_better, datasets=targets,
                        per_dataset=per, summary=metrics.summarize(per), seconds=0.0,
                        notes=list(per.attrs.get("notes", [])))
    for study in studies:
        result.studies[study] = STUDY_RUNNERS[study](tables, seed=seed, levels=sparsity_levels,
                                                     n_seeds=sparsity_seeds, progress=progress)
    result.seconds = time.perf_counter() - start
    return result


# -- studies ----------------------------------------------------------------------------------------

def sparsity_study(tables: ZooTables, seed: int = 0, levels=(0.0, 0.3, 0.6, 0.9), n_seeds: int = 5,
                   progress=None, **_) -> pd.DataFrame:
    """Fig. 6: remove a fraction of the model–dataset edges at random, several seeds."""
    rows = []
    # The random baseline does not depend on what is removed: one expectation per dataset.
    hib = tables.higher_is_better
    reference = metrics.best_on_average(tables.records, hib)
    rand = pd.DataFrame([{"dataset": d, "method": "random", **metrics.random_expectation(
        tables.records[tables.records.dataset == d].groupby("model")["score"].mean(), hib, reference, seed=seed)}
        for d in eligible_datasets(tables.records)])
    rand_summary = metrics.summarize(rand).iloc[0]
    done, total = 0, len(levels) * n_seeds
    for level in levels:
        for s in range(n_seeds):
            rng = np.random.default_rng(seed * 1000 + s)
            keep = rng.random(len(tables.records)) >= level
            per = leave_one_dataset_out(tables, {"mc": MatchAndChoose(seed=s)}, baselines=False,
                                        records=tables.records[keep], seed=s)
            summ = metrics.summarize(per)
            row = summ.iloc[0] if len(summ) else None
            rows.append({"removed_fraction": float(level), "seed": s, "method": "mc",
                         "osr": float(row.osr) if row is not None else np.nan,
                         "weighted_tau": float(row.weighted_tau) if row is not None else np.nan,
                         "n_datasets": int(row.n_datasets) if row is not None else 0})
            rows.append({"removed_fraction": float(level), "seed": s, "method": "random",
                         "osr": float(rand_summary.osr), "weighted_tau": float(rand_summary.weighted_tau),
                         "n_datasets": int(rand_summary.n_datasets)})
            done += 1
            if progress:
                progress(done, total, f"sparsity {level:.1f}")
    return pd.DataFrame(rows)


def ablation_study(tables: ZooTables, seed: int = 0, **_) -> pd.DataFrame:
    """Table 4: model/dataset features only, graph embeddings only, both."""
    methods = {"features only": MatchAndChoose(seed=seed, rank_features=False, **LEARNER_ONLY),
               "graph only": MatchAndChoose(seed=seed, use_features=False, **NODE2VEC_PRESET, **LEARNER_ONLY),
               "both": MatchAndChoose(seed=seed, **NODE2VEC_PRESET, **LEARNER_ONLY),
               "features + record features": MatchAndChoose(seed=seed, **LEARNER_ONLY),
               "default (prior + learned departure)": MatchAndChoose(seed=seed),
               "paper": MatchAndChoose(seed=seed, **PAPER_PRESET)}
    return metrics.summarize(leave_one_dataset_out(tables, methods, baselines=False, seed=seed))


def predictor_study(tables: ZooTables, seed: int = 0, **_) -> pd.DataFrame:
    """Table 7: the predictor swapped under the same inputs."""
    from hubselect.rank.predictors import PREDICTORS
    methods = {name: MatchAndChoose(seed=seed, predictor=name, **LEARNER_ONLY) for name in PREDICTORS}
    return metrics.summarize(leave_one_dataset_out(tables, methods, baselines=False, seed=seed))


def metric_study(tables: ZooTables, seed: int = 0, **_) -> pd.DataFrame:
    """Table 5: the same protocol once per quality metric, for records that carry several.

    Records name their metric in a ``metric`` column; each metric is evaluated on its own rows.
    """
    if "metric" not in tables.records.columns or tables.records["metric"].nunique() < 2:
        return pd.DataFrame(columns=["metric", "method", "osr", "top3", "weighted_tau", "weighted_tau_avg",
                                     "regret", "o2b", "o2o", "n_datasets"])
    out = []
    for name, recs in tables.records.groupby("metric"):
        sub = ZooTables(**{**tables.__dict__, "records": recs.drop(columns=["metric"])})
        summ = metrics.summarize(leave_one_dataset_out(sub, {"mc": MatchAndChoose(seed=seed)}, baselines=False,
                                                       seed=seed))
        summ.insert(0, "metric", name)
        out.append(summ)
    return pd.concat(out, ignore_index=True)


STUDY_RUNNERS = {"sparsity": sparsity_study, "ablation": ablation_study, "predictors": predictor_study,
                 "metrics": metric_study}


# -- report -----------------------------------------------------------------------------------------

def markdown_table(summary: pd.DataFrame, title: str | None = None) -> str:
    """A table like the paper's Table 3, with the top-3 hit rate, τ under both weightings
    (by the true ranking; scipy's average) and the regret of the top pick."""
    lines = [f"**{title}**", ""] if title else []
    lines += ["| method | OSR ↑ | top-3 ↑ | τ true ↑ | τ avg ↑ | regret ↓ | O2B ↓ | O2O ↓ | datasets |",
              "|---|---|---|---|---|---|---|---|---|"]

    def num(r, key, fmt, scale=1.0, suffix=""):
        v = getattr(r, key, float("nan"))
        return "–" if v is None or pd.isna(v) else f"{scale * float(v):{fmt}}{suffix}"

    for r in summary.itertuples():
        lines.append(f"| {r.method} | {num(r, 'osr', '.1f', 100, ' %')} | {num(r, 'top3', '.1f', 100, ' %')} "
                     f"| {num(r, 'weighted_tau', '.3f')} | {num(r, 'weighted_tau_avg', '.3f')} "
                     f"| {num(r, 'regret', '.3f')} | {num(r, 'o2b', '.4g')} | {num(r, 'o2o', '.4g')} "
                     f"| {int(r.n_datasets)} |")
    return "\n".join(lines)


def frame_to_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def sparsity_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per removed fraction and method."""
    agg = table.groupby(["removed_fraction", "method"]).agg(
        osr_mean=("osr", "mean"), osr_std=("osr", "std"), tau_mean=("weighted_tau", "mean"),
        tau_std=("weighted_tau", "std"), seeds=("seed", "nunique")).reset_index()
    return agg


def write_report(result: Evaluation, folder, zoo_dir=None) -> list:
    """CSV files, a markdown report and PNG plots of an evaluation."""
    from pathlib import Path

    from hubselect.evaluate import plots
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    result.per_dataset.to_csv(folder / "per_dataset.csv", index=False)
    result.summary.to_csv(folder / "summary.csv", index=False)
    written += [folder / "per_dataset.csv", folder / "summary.csv"]
    report = [markdown_table(result.summary, f"Leave-one-dataset-out over {len(result.datasets)} datasets "
                                             f"({result.metric})")]
    if result.notes:
        report.append("Notes:\n\n" + "\n".join(f"- {line}" for line in result.notes))
    for name, table in result.studies.items():
        table.to_csv(folder / f"study_{name}.csv", index=False)
        written.append(folder / f"study_{name}.csv")
        if name == "sparsity":
            report.append(f"**sparsity**\n\n{frame_to_markdown(sparsity_table(table))}")
            written.append(plots.plot_sparsity(table, folder / "sparsity.png"))
        elif len(table):
            report.append(markdown_table(table, name) if "metric" not in table.columns
                          else f"**{name}**\n\n{frame_to_markdown(table)}")
    (folder / "report.md").write_text("\n\n".join(report) + "\n")
    written.append(folder / "report.md")
    tables = ZooTables.load(Zoo.open(zoo_dir))
    written.append(plots.plot_score_heatmap(tables.records, tables.higher_is_better, folder / "scores_heatmap.png"))
    written.append(plots.plot_method_bars(result.summary, folder / "methods.png"))
    return written
