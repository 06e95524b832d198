"""The public ranking API (``hubselect.rank(...)``, ``hubselect rank``): a zoo's models ranked
for a dataset, with the cold start, filters, explanations and the shortlist.

A zoo without records is a cold start: the paper's published average ranking is returned for
the models it covers, labelled as such.
"""


from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hubselect.constants import DEFAULT_PREDICTOR
from hubselect.errors import UserError
from hubselect.rank import prior
from hubselect.rank.estimator import (
    MatchAndChoose,
    NewDataset,
    distances_for_probe,
    selector_cache_dir,
    training_rows,
)
from hubselect.rank.predictors import make_predictor
from hubselect.zoo.format import Zoo
from hubselect.zoo.listing import plain_value
from hubselect.zoo.tables import ZooTables, normalized_rank


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


# `rank` suggests fine-tuning the first k models, k the smallest that held the best model this often.
SHORTLIST_HIT_RATE = 0.9


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
         holdout: bool = False, predictor: str = DEFAULT_PREDICTOR, seed: int = 0, n: int = 1000,
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
    from hubselect.profile.probes import resolve_probe
    probe = resolve_probe(probe, tables.probe)
    notes: list[str] = []
    shortlist = None
    if tables.records.empty:
        # Nothing to learn from: the dataset cannot change the answer, so it is checked, not profiled.
        notes += check_dataset(dataset, tables)
        ranked = cold_start_ranking(tables)
        notes.append(f"cold start: this order is {prior.PRIOR_SOURCE}, "
                     "the same for every dataset; records from `hubselect sync` (the shared edge dataset) or "
                     "`hubselect finetune --push` make it specific to yours")
        if probe != resolve_probe(None, tables.probe) or image_column or caption_column or split:
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
        distances = distances_for_probe(view.distances, probe)
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
    from hubselect.zoo.format import atomic_write_json
    atomic_write_json(cache, out)
    return out


def check_dataset(dataset: str, tables: ZooTables) -> list[str]:
    """Check DATASET without profiling it (a cold start does not need its images).

    A folder must hold images; anything else must be a Hub dataset ID that the Hub knows, asked
    with one metadata call. Bad input raises :class:`UserError`; when the Hub cannot be asked
    (offline, unreachable) the answer is a note saying the dataset was not checked.
    """
    from hubselect.errors import HubError, HubGated, HubNotFound, HubUnauthorized
    from hubselect.hub import HubClient, is_repo_id
    from hubselect.profile.sources import FolderSource, dataset_hub_error
    if dataset in tables.known_datasets():
        return []
    path = Path(dataset).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{dataset} is a file; DATASET must be an image folder or a Hub dataset ID")
        FolderSource.open(path)          # raises when the folder holds no image
        return []
    if not is_repo_id(dataset, owner=False):          # canonical datasets ("mnist") have no owner
        raise UserError(f"{dataset}: no such folder, and not a Hub dataset ID (owner/name)")
    try:
        HubClient(retries=1, backoff=0.5, timeout=10).dataset_meta(dataset)
    except HubError as exc:
        if isinstance(exc, (HubNotFound, HubUnauthorized, HubGated)):
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
    from hubselect.profile.profiles import distances_to_zoo, profile_dataset
    profile = profile_dataset(dataset, probe=probe, n=n, image_column=image_column, caption_column=caption_column,
                              split=split, name=dataset, seed=seed, progress=progress)
    rows = [{"dataset_a": dataset, "dataset_b": other, "distance": d, "probe": probe}
            for other, d in distances_to_zoo(zoo, profile).items()]
    features = {f"{probe}_{i}": float(v) for i, v in enumerate(profile.mean)}
    return NewDataset(name=dataset, features=features,
                      distances=pd.DataFrame(rows, columns=["dataset_a", "dataset_b", "distance", "probe"]))
