"""The pairs of a sweep: which (model, dataset) fine-tuning runs are still to do, and their settings.

:func:`pending_pairs` crosses the models with the datasets and drops every pair that already has a
record for the zoo's metric, in the shared edge dataset on the Hub or in the local zoo (whatever its
steps, seed or revision: the ranking needs one measured result per pair). Models are Hub model IDs or
pipeline folders, datasets Hub dataset IDs or image folders; both backends (:mod:`hubselect.sweep.local`,
:mod:`hubselect.sweep.jobs`) take their settings from :func:`check_settings` and their command line
from :func:`finetune_args`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hubselect.errors import HubError, HubNotFound, UserError, hub_user_error
from hubselect.finetune.settings import TRAINING_SETTINGS
from hubselect.hub import HubClient, is_repo_id
from hubselect.profile.sources import dataset_hub_error

log = logging.getLogger(__name__)

# progress(done, total, what is running now or None at the end)
Progress = Callable[[int, int, "str | None"], None]

SETTINGS = tuple(TRAINING_SETTINGS)        # the FinetuneConfig fields a sweep passes on to each run


# -- the pairs -----------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """One (model, dataset) fine-tuning run."""

    model: str            # as given: a Hub model ID or a local pipeline folder
    dataset: str          # as given: a Hub dataset ID or a local image folder
    model_name: str       # as records name it: the repo ID, or the folder's name
    dataset_name: str

    def to_dict(self) -> dict:
        out = {"model": self.model_name, "dataset": self.dataset_name}
        if self.model != self.model_name:
            out["model_source"] = self.model
        if self.dataset != self.dataset_name:
            out["dataset_source"] = self.dataset
        return out


def split_names(values: Iterable[str] | None) -> list[str]:
    """Comma-separated and repeated values as one list, in order, without duplicates."""
    out: list[str] = []
    for value in values or ():
        for item in str(value).split(","):
            item = item.strip()
            if item and item not in out:
                out.append(item)
    return out


def resolve_models(models: Iterable[str], *, hub_only: bool = False,
                   verify: bool = True,
                   client: HubClient | None = None) -> dict[str, str]:
    """{as given: name in records} for pipeline folders and Hub model IDs.

    With ``verify`` a Hub ID must name an existing diffusers pipeline repo;
    ``hub_only`` refuses local folders (a Job on the Hub cannot see them).
    """
    from hubselect.finetune.trainer import resolve_model

    out: dict[str, str] = {}
    for model in split_names(models):
        local = Path(model).expanduser().exists()
        if local and hub_only:
            raise UserError(f"{model} is a local folder; --backend hf-jobs needs "
                            "Hub model IDs (push the pipeline to the Hub first)")
        if local or verify:
            # what `finetune` itself checks first: model_index.json and a known family
            out[model] = resolve_model(model, client=client).name
        elif not is_repo_id(model):
            raise UserError(f"{model}: no such folder, and not a Hub model ID (owner/name)")
        else:
            out[model] = model
    _check_unique(out, "models")
    return out


def resolve_datasets(datasets: Iterable[str], *, hub_only: bool = False,
                     verify: bool = True,
                     client: HubClient | None = None) -> dict[str, str]:
    """{as given: name in records} for image folders and Hub dataset IDs."""
    out: dict[str, str] = {}
    for dataset in split_names(datasets):
        path = Path(dataset).expanduser()
        if path.exists():
            if hub_only:
                raise UserError(f"{dataset} is a local folder; --backend hf-jobs needs "
                                "Hub dataset IDs (push the dataset to the Hub first)")
            if not path.is_dir():
                raise UserError(f"{dataset} is a file: a dataset is an image folder "
                                "or a Hub dataset ID")
            out[dataset] = path.resolve().name
            continue
        if not is_repo_id(dataset):
            raise UserError(f"{dataset}: no such folder, and not a Hub dataset ID "
                            "(owner/name)")
        if verify:
            client = client or HubClient()
            try:
                client.dataset_meta(dataset)
            except HubError as exc:
                raise dataset_hub_error(dataset, exc) from None
        out[dataset] = dataset
    _check_unique(out, "datasets")
    return out


def _check_unique(names: dict[str, str], what: str) -> None:
    seen: dict[str, str] = {}
    for given, name in names.items():
        if name in seen:
            raise UserError(f"--{what} {seen[name]} and {given} would both be recorded "
                            f"as {name!r}; rename one folder")
        seen[name] = given


def edge_records(repo_id: str | None = None, client: HubClient | None = None,
                 workers: int = 8) -> list[dict]:
    """Every record of the edge dataset that passes a sync's checks (``[]`` while the repo does not
    exist yet): a file that is not valid JSON, fails :func:`hubselect.share.records.check_record_file`
    (tampered, out of bounds, paths for names...) is skipped (``hubselect sync`` counts them).
    """
    from hubselect.share.records import BadFile, check_record_file, edges_repo, is_record_path

    repo_id = edges_repo(repo_id)
    client = client or HubClient()
    try:
        info = client.dataset_meta(repo_id)
    except HubNotFound:
        return []
    except HubError as exc:
        raise hub_user_error(exc, f"edge dataset {repo_id}") from None
    paths = sorted(s.rfilename for s in (info.siblings or []) if is_record_path(s.rfilename))

    def fetch(path: str) -> dict | None:
        try:
            data = client.fetch_bytes(repo_id, path, revision=info.sha,
                                      repo_type="dataset")
            return check_record_file(path, data)
        except (HubError, BadFile) as exc:
            log.info("%s/%s: skipped (%s)", repo_id, path, exc)
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [r for r in pool.map(fetch, paths) if r is not None]


def measured_pairs(zoo, metric: str | None = None, edges_repo: str | None = None,
                   read_edges: bool = True,
                   client: HubClient | None = None) -> set[tuple[str, str]]:
    """(model, dataset) pairs with a record for ``metric`` (default: the zoo's), in the
    zoo's records table or (when ``read_edges``) in the edge dataset."""
    metric = metric or zoo.info.metric
    done: set[tuple[str, str]] = set()
    local = zoo.read_table("records")
    if local is not None and len(local):
        if "metric" in local.columns:
            local = local[local["metric"].isna() | (local["metric"] == metric)]
        done |= set(zip(local["model"].astype(str), local["dataset"].astype(str)))
    if read_edges:
        for r in edge_records(edges_repo, client=client):
            model, dataset = r.get("model"), r.get("dataset")
            if r.get("metric") == metric and isinstance(model, str) \
                    and isinstance(dataset, str):
                done.add((model, dataset))
    return done


def pending_pairs(models: Iterable[str], datasets: Iterable[str], *, zoo=None,
                  metric: str | None = None, edges_repo: str | None = None,
                  hub_only: bool = False, verify: bool = True,
                  client: HubClient | None = None) -> list[Pair]:
    """The pairs of ``models`` × ``datasets`` without a record yet, dataset by dataset.

    Models are Hub model IDs or pipeline folders, datasets Hub dataset IDs or image
    folders (a folder is recorded under its name). A pair counts as measured when the
    edge dataset or the zoo's records table holds a record of it for ``metric``
    (default: the zoo's). Raises :class:`UserError` for input that is neither.
    """
    from hubselect.zoo.format import Zoo

    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    client = client or HubClient()
    model_names = resolve_models(models, hub_only=hub_only, verify=verify,
                                 client=client)
    dataset_names = resolve_datasets(datasets, hub_only=hub_only, verify=verify,
                                     client=client)
    if not model_names or not dataset_names:
        raise UserError("a sweep needs at least one model (--models) and one dataset "
                        "(--datasets)")
    done = measured_pairs(zoo, metric=metric, edges_repo=edges_repo, client=client)
    return [Pair(m, d, mn, dn) for d, dn in dataset_names.items()
            for m, mn in model_names.items() if (mn, dn) not in done]


# -- settings shared by both backends ------------------------------------------------

def zoo_probe(zoo) -> str:
    """The probe the runs score with: the zoo's (all its records are in one metric); a
    :class:`UserError` when the zoo's metric is not that probe's."""
    # finetune.run owns the rule; imported here, late, because it loads torch and diffusers
    from hubselect.finetune.run import zoo_probe as finetune_zoo_probe

    return finetune_zoo_probe(zoo)


def check_settings(settings: dict | None, probe: str | None) -> dict:
    """The fine-tuning settings (FinetuneConfig fields), checked before any run."""
    from hubselect.finetune.trainer import FinetuneConfig
    from hubselect.profile.probes import resolve_probe

    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise UserError(f"unknown fine-tuning setting(s): {', '.join(unknown)}")
    FinetuneConfig(model="-", dataset="-", probe=resolve_probe(probe), **settings).check()
    return settings


def finetune_args(pair: Pair, settings: dict, *, zoo: str,
                  edges_repo: str) -> list[str]:
    """``hubselect finetune`` arguments for one pair, publishing adapter and record."""
    args = ["--model", pair.model, "--dataset", pair.dataset, "--push",
            "--edges-repo", edges_repo, "--zoo", zoo, "--json"]
    for name in SETTINGS:
        value = settings.get(name)
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args += [flag] if value else []
        elif value is not None:
            args += [flag, str(value)]
    return args



