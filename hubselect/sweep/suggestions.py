"""Active learning for ``hubselect sweep --suggest``: the pending pairs whose results would most
reduce the ranking's uncertainty.

An ensemble of Match & Choose predictors, each trained on a random half of the zoo's datasets with
its own seed, predicts every pending pair's normalised rank; a pair scores by the members'
disagreement (standard deviation), weighted up to twice when they place the model among the
dataset's top few (uncertainty that can change the choice). A zoo that cannot learn yet falls back
to a rule (:func:`cold_start_suggestions`). (The module is not called ``suggest``: that name is the
function, which ``hubselect.sweep`` forwards.)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from hubselect.constants import DEFAULT_PREDICTOR, hf_offline
from hubselect.errors import UserError
from hubselect.hub import HubClient, is_repo_id
from hubselect.sweep.pairs import Pair, measured_pairs, resolve_datasets, resolve_models


@dataclass
class Suggestion:
    """A pending pair worth measuring next."""

    model: str                       # names as the zoo and the records spell them
    dataset: str
    score: float | None              # disagreement x relevance (None: cold start)
    std: float | None                # members' std of the normalised rank (0 = best)
    p_top: float | None              # share of members placing it in the top few
    predicted_rank: float | None     # the members' mean predicted position (1 = best)
    reason: str = "disagreement"
    model_source: str | None = None  # as given on the command line, when it differs
    dataset_source: str | None = None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("model_source", "dataset_source"):
            if out[key] is None:
                del out[key]
        return out


def suggested_pairs(result: dict) -> list[Pair]:
    """The pairs of a :func:`suggest` result, for :func:`sweep` (``pairs=``)."""
    return [Pair(s.get("model_source") or s["model"],
                 s.get("dataset_source") or s["dataset"], s["model"], s["dataset"])
            for s in result["suggestions"]]


def suggest(k: int, *, zoo=None, models: Iterable[str] | None = None,
            datasets: Iterable[str] | None = None, edges_repo: str | None = None,
            read_edges: bool = True, ensemble: int = 8, top: int = 3, seed: int = 0,
            predictor: str = DEFAULT_PREDICTOR, client: HubClient | None = None) -> dict:
    """The ``k`` pending pairs whose results would most reduce the ranking's
    uncertainty.

    Candidates: ``models`` × ``datasets`` (default: the zoo's models × the datasets it
    has features, distances or records of), less the pairs with a record in the zoo or
    the edge dataset. Each of the ``ensemble`` members is Match & Choose trained, with
    seed ``seed + member``, on a random half of the datasets that have two or more
    scored models (half-sampling: the bootstrap's spread without duplicated datasets);
    it predicts each candidate's normalised rank among the zoo's models. A candidate
    scores the members' standard deviation times ``(1 + p_top) / 2``, ``p_top`` being
    the share of members that place the model within the dataset's ``top`` best; ties
    go to the larger spread, then by name. Same zoo and seed, same suggestions.
    Datasets the zoo cannot place (no profile) are left out with a note; a zoo with
    fewer than two scored datasets follows :func:`cold_start_suggestions`.
    """
    from hubselect.zoo.format import Zoo
    from hubselect.zoo.tables import ZooTables

    if not isinstance(k, int) or k < 1:
        raise UserError(f"--suggest must be a positive integer, got {k!r}")
    if ensemble < 2:
        raise UserError(f"--ensemble must be at least 2, got {ensemble}")
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    tables = ZooTables.load(zoo)
    notes: list[str] = []
    zoo_models = [str(m) for m in tables.models["model"]]
    cold = _scored_datasets(tables, zoo_models) < 2
    source_of: dict[str, str] = {}

    cand_models = zoo_models
    if models:
        cand_models = []
        for given, name in resolve_models(models, verify=False).items():
            if name not in zoo_models:
                notes.append(f"{name} is not in the zoo's models (crawl it first): "
                             "its pairs cannot be placed")
                continue
            cand_models.append(name)
            source_of[name] = given
    placeable = {str(d) for d in tables.known_datasets()}
    if datasets:
        cand_datasets = []
        for given, name in resolve_datasets(datasets, verify=False).items():
            if name not in placeable and not cold:
                notes.append(f"{name} has no profile in the zoo (run `hubselect "
                             f"profile {given} --zoo {zoo.path}`): its pairs cannot "
                             "be placed")
                continue
            cand_datasets.append(name)
            source_of.setdefault(name, given)
    else:
        # Names the user did not type come from the zoo, records and profiles others pushed
        # included: only Hub dataset IDs that are not also a path here may become a run.
        cand_datasets = sorted(d for d in placeable if is_repo_id(d) and not Path(d).expanduser().exists())
        left_out = len(placeable) - len(cand_datasets)
        if left_out:
            notes.append(f"{left_out} dataset(s) of the zoo left out: their names are not Hub dataset IDs "
                         "(or are also a path here); pass your own folders with --datasets")
        if not cand_datasets:
            raise UserError(f"zoo {zoo.path} knows no Hub dataset: pass --datasets")

    done = measured_pairs(zoo, read_edges=False)
    if read_edges and hf_offline():
        notes.append("HF_HUB_OFFLINE is set: the edge dataset was not read, so pairs "
                     "that others measured may be suggested")
    elif read_edges:
        done |= measured_pairs(zoo, edges_repo=edges_repo, client=client)
    candidates = [(m, d) for d in cand_datasets for m in cand_models
                  if (m, d) not in done]
    result = {"zoo": str(zoo.path), "metric": tables.metric, "k": k, "seed": seed,
              "method": "cold-start" if cold else "ensemble",
              "ensemble": None if cold else ensemble, "top": top,
              "candidates": len(candidates), "notes": notes, "suggestions": []}
    if not candidates:
        notes.append("every requested pair already has a record" if cand_models
                     and cand_datasets else "no model or dataset left to place")
        return result
    if cold:
        notes.append("cold start: fewer than two datasets have two or more scored "
                     "models, so nothing can be learnt yet; the cold-start rule picks")
        chosen = cold_start_suggestions(candidates, done, k)
    else:
        chosen = _ensemble_suggestions(tables, candidates, k, ensemble=ensemble,
                                       top=top, seed=seed, predictor=predictor)
    for s in chosen:
        if source_of.get(s.model, s.model) != s.model:
            s.model_source = source_of[s.model]
        if source_of.get(s.dataset, s.dataset) != s.dataset:
            s.dataset_source = source_of[s.dataset]
    result["suggestions"] = [{"rank": i, **s.to_dict()}
                             for i, s in enumerate(chosen, 1)]
    return result


def _scored_datasets(tables, models: list[str]) -> int:
    """How many datasets have two or more scored models (what predictors learn from)."""
    rec = tables.records[tables.records["model"].isin(models)]
    return int((rec.groupby("dataset")["model"].nunique() >= 2).sum())


def _ensemble_suggestions(tables, candidates: list[tuple[str, str]], k: int, *,
                          ensemble: int, top: int, seed: int,
                          predictor: str) -> list[Suggestion]:
    models = [str(m) for m in tables.models["model"]]
    rec = tables.records[tables.records["model"].isin(models)]
    counts = rec.groupby("dataset")["model"].nunique()
    scored = sorted(str(d) for d in counts[counts >= 2].index)
    size = min(len(scored), max(2, math.ceil(len(scored) / 2)))
    targets = sorted({d for _, d in candidates})
    rng = np.random.default_rng(seed)
    members = []
    for b in range(ensemble):
        subset = {str(d) for d in rng.choice(scored, size=size, replace=False)}
        train = rec[rec["dataset"].astype(str).isin(subset)]
        members.append(member_predictions(tables, train, targets, seed=seed + b,
                                          predictor=predictor))
    index = {m: i for i, m in enumerate(models)}
    n = len(models)
    out = []
    for m, d in candidates:
        u = np.array([member[d][index[m]] for member in members])
        std = float(u.std())
        p_top = float(np.mean(u * (n - 1) + 1 <= top + 1e-9))
        out.append(Suggestion(m, d, score=std * (1 + p_top) / 2, std=std, p_top=p_top,
                              predicted_rank=float(1 + u.mean() * (n - 1))))
    out.sort(key=lambda s: (-round(s.score, 12), -round(s.std, 12), s.model, s.dataset))
    for s in out:
        s.score, s.std = round(s.score, 6), round(s.std, 6)
        s.p_top, s.predicted_rank = round(s.p_top, 4), round(s.predicted_rank, 3)
    return out[:k]


def member_predictions(tables, train: pd.DataFrame, targets: list[str], *,
                       seed: int = 0,
                       predictor: str = DEFAULT_PREDICTOR) -> dict[str, np.ndarray]:
    """Normalised rank (0 = best) of every zoo model on each target, from ONE fit of the
    default Match & Choose (``MatchAndChoose.predict_many``)."""
    from hubselect.rank.estimator import MatchAndChoose

    # The learned ranking alone (blend 1): its disagreement across seeds is what the ensemble measures.
    member = MatchAndChoose(predictor=predictor, seed=seed, blend=1.0)
    ranked = member.fit(tables.with_records(train)).predict_many(targets)
    return {t: np.asarray(frame["learned_u"], dtype=float) for t, frame in ranked.items()}


def cold_start_suggestions(candidates: list[tuple[str, str]],
                           measured: set[tuple[str, str]],
                           k: int) -> list[Suggestion]:
    """The rule for a zoo that cannot learn yet. First every dataset without a record
    gets the best pending model of the paper's published ranking (models it does not
    cover come after it, by name); then the dataset with the fewest records gets the
    pending model with the fewest records (ties: published order, then name), which
    spreads the records over models and datasets.
    """
    from hubselect.rank import prior

    def prior_key(model: str) -> tuple:
        pos = prior.prior_position(model)
        return (pos is None, pos or 0, model)

    per_dataset = Counter(d for _, d in measured)
    per_model = Counter(m for m, _ in measured)
    order = {d: i for i, d in enumerate(dict.fromkeys(d for _, d in candidates))}
    remaining = list(candidates)
    out = []
    while remaining and len(out) < k:
        d = min({d for _, d in remaining}, key=lambda x: (per_dataset[x], order[x]))
        options = [m for m, dd in remaining if dd == d]
        if per_dataset[d] == 0:
            m, reason = min(options, key=prior_key), "first record of the dataset"
        else:
            m = min(options, key=lambda x: (per_model[x], prior_key(x)))
            reason = "spread over models"
        remaining.remove((m, d))
        per_dataset[d] += 1
        per_model[m] += 1
        out.append(Suggestion(m, d, score=None, std=None, p_top=None,
                              predicted_rank=None, reason=reason))
    return out
