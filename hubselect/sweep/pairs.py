"""``hubselect sweep``: fine-tune the (model, dataset) pairs the edge dataset lacks.

1. :func:`pending_pairs` crosses the models with the datasets and drops every pair
   that already has a record for the zoo's metric, in the shared edge dataset on the
   Hub or in the local zoo (whatever its steps, seed or revision: the ranking needs
   one measured result per pair).
2. A backend runs what is left. ``local`` (:func:`run_local`) trains the pairs one
   after another on this machine with :func:`hubselect.finetune.run.finetune` and
   pushes adapter and record; with more than one GPU visible, each pair runs as
   ``accelerate launch --multi_gpu -m hubselect.cli finetune ...`` over all of them.
   ``hf-jobs`` (:func:`submit_jobs`) submits one Hugging Face Job per pair, which
   installs hubselect and runs ``hubselect finetune ... --push`` on the Hub's
   machines; the token reaches a Job only as its secret ``HF_TOKEN``.
   :func:`wait_jobs` polls the Jobs to the end.
3. :func:`suggest` names the pending pairs whose results would most reduce the
   ranking's uncertainty (active learning): an ensemble of Match & Choose predictors,
   each trained on a random half of the zoo's datasets with its own seed, predicts
   every pending pair's normalised rank; a pair scores by the members' disagreement
   (standard deviation), weighted up to twice when they place the model among the
   dataset's top few (uncertainty that can change the choice). A zoo that cannot
   learn yet falls back to a rule (:func:`cold_start_suggestions`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from hubselect.errors import HubError, UserError
from hubselect.hub import HubClient, is_offline, is_repo_id
from hubselect.profile.sources import dataset_hub_error

log = logging.getLogger(__name__)

Progress = Callable[[int, int, "str | None"], None]

BACKENDS = ("local", "hf-jobs")
JOB_IMAGE = "pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime"   # public: CUDA + PyTorch
JOB_FLAVOR = "a10g-small"
JOB_TIMEOUT = "8h"
JOB_ZOO = "/tmp/hubselect-zoo"          # the zoo a Job writes into, thrown away after
TERMINAL_STAGES = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
SETTINGS = ("steps", "batch_size", "lr", "rank", "seed", "resolution", "val_size",
            "max_samples", "sample_steps", "guidance_scale", "mixed_precision",
            "gradient_checkpointing")
_TIMEOUT_RE = re.compile(r"^\d+(\.\d+)?[smhd]?$")


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
    from hubselect.share.records import _RECORD_PATH, BadFile, _check_repo_id, check_record_file, default_edges_repo

    repo_id = _check_repo_id(repo_id or default_edges_repo())
    client = client or HubClient()
    try:
        info = client.dataset_meta(repo_id)
    except HubError as exc:
        if getattr(exc, "reason", "") == "not_found":
            return []
        raise UserError(f"cannot read the edge dataset {repo_id}: {exc}") from None
    paths = sorted(s.rfilename for s in (info.siblings or [])
                   if _RECORD_PATH.match(s.rfilename))

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

def check_settings(settings: dict | None, probe: str | None) -> dict:
    """The fine-tuning settings (FinetuneConfig fields), checked before any run."""
    from hubselect.finetune.trainer import FinetuneConfig

    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise UserError(f"unknown fine-tuning setting(s): {', '.join(unknown)}")
    FinetuneConfig(model="-", dataset="-", probe=probe or "clip", **settings).check()
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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- local backend -------------------------------------------------------------------

def gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:   # no CUDA runtime at all
        return 0


def run_local(pairs: list[Pair], *, zoo=None, settings: dict | None = None,
              edges_repo: str | None = None, launcher: str = "auto",
              progress: Progress | None = None,
              client: HubClient | None = None) -> list[dict]:
    """Fine-tune the pairs on this machine one after another; push adapter and record.

    ``launcher``: ``inprocess`` (this process, one device), ``accelerate`` (per pair a
    subprocess ``accelerate launch --multi_gpu -m hubselect.cli finetune ...``, data
    parallel over every visible GPU) or ``auto`` (accelerate with more than one GPU).
    Write access is checked once, before the first run. A pair that fails is logged
    and returned with ``status: failed``, and the sweep goes on.
    """
    from hubselect.share.records import _check_repo_id, default_edges_repo
    from hubselect.finetune.publish import check_push_access
    from hubselect.finetune.run import _zoo_probe
    from hubselect.zoo.format import Zoo

    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo, write=bool(pairs))   # never the shipped zoo
    settings = check_settings(settings, _zoo_probe(zoo, None))
    edges_repo = _check_repo_id(edges_repo or default_edges_repo())
    if launcher not in ("auto", "inprocess", "accelerate"):
        raise UserError(f"unknown launcher {launcher!r}: auto, inprocess or accelerate")
    n_gpus = gpu_count()
    if launcher == "auto":
        launcher = "accelerate" if n_gpus > 1 else "inprocess"
    if pairs:
        check_push_access(client or HubClient(), None, pairs[0].model_name,
                          pairs[0].dataset_name)
    results = []
    for i, pair in enumerate(pairs):
        label = f"{pair.model_name} on {pair.dataset_name}"
        if progress:
            progress(i, len(pairs), label)
        started = time.monotonic()
        try:
            if launcher == "accelerate":
                out = _run_accelerate(pair, settings, zoo=str(zoo.path),
                                      edges_repo=edges_repo, processes=max(n_gpus, 1))
            else:
                out = _run_inprocess(pair, settings, zoo=zoo, edges_repo=edges_repo,
                                     progress=progress, done=i, total=len(pairs))
        except KeyboardInterrupt:
            raise
        except Exception as exc:   # a failed pair never stops the sweep
            log.warning("%s failed: %s", label, _one_line(exc))
            results.append({**pair.to_dict(), "status": "failed",
                            "error": _one_line(exc),
                            "seconds": round(time.monotonic() - started, 1)})
            continue
        finally:
            _free_memory()
        rec = out["record"]
        results.append({**pair.to_dict(), "status": "done",
                        "record_id": out["record_id"], "score": rec["score"],
                        "initial_score": rec["initial_score"], "metric": rec["metric"],
                        "adapter_repo": out.get("adapter_repo"),
                        "seconds": round(time.monotonic() - started, 1)})
    if progress:
        progress(len(pairs), len(pairs), None)
    return results


def _run_inprocess(pair: Pair, settings: dict, *, zoo, edges_repo: str, progress,
                   done: int, total: int) -> dict:
    from hubselect.finetune.run import finetune
    from hubselect.finetune.trainer import FinetuneConfig

    config = FinetuneConfig(model=pair.model, dataset=pair.dataset, probe=None,
                            **settings)

    def on_progress(step: int, steps: int, loss: float) -> None:
        if progress:
            progress(done, total, f"{pair.model_name} on {pair.dataset_name}: "
                                  f"step {step}/{steps}")
    return finetune(config, zoo=zoo, push=True, edges_repo=edges_repo,
                    progress=on_progress)


def accelerate_command(pair: Pair, settings: dict, *, zoo: str, edges_repo: str,
                       processes: int) -> list[str]:
    """``accelerate launch`` of ``hubselect finetune`` for one pair on N GPUs."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", str(processes), "-m", "hubselect.cli", "finetune",
            *finetune_args(pair, settings, zoo=zoo, edges_repo=edges_repo)]


def _run_accelerate(pair: Pair, settings: dict, *, zoo: str, edges_repo: str,
                    processes: int) -> dict:
    cmd = accelerate_command(pair, settings, zoo=zoo, edges_repo=edges_repo,
                             processes=processes)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    tail: deque[str] = deque(maxlen=20)

    def relay() -> None:       # the run's progress stays visible; its last lines kept
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line.strip())
    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    stdout = proc.stdout.read()
    proc.wait()
    relay_thread.join(timeout=5)
    if proc.returncode != 0:
        errors = [t for t in tail if t.startswith("hubselect: error:")]
        last = errors[-1] if errors else next((t for t in reversed(tail) if t), "")
        raise RuntimeError(f"exit code {proc.returncode}: {last}")
    try:
        return json.JSONDecoder().raw_decode(stdout[stdout.find("{"):])[0]
    except ValueError:
        raise RuntimeError("the run printed no result") from None


def _free_memory() -> None:
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:   # best effort
        pass


# -- Hugging Face Jobs backend -------------------------------------------------------

def pair_label(pair: Pair, metric: str) -> str:
    """A label value naming the pair (labels allow letters, digits, '-' and '_' only)."""
    key = json.dumps([pair.model_name, pair.dataset_name, metric])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _job_name(pair: Pair) -> str:
    """A Job name the Hub accepts (letters, digits, '-', '_'), short and readable."""
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]+", "-", text.split("/")[-1]).strip("-")[:30]
    return f"hubselect-{slug(pair.model_name)}-{slug(pair.dataset_name)}"


def job_command(pair: Pair, settings: dict, *, edges_repo: str, zoo_info: dict,
                install: str = "hubselect") -> list[str]:
    """A Job's command: install hubselect, make an empty zoo with the local zoo's
    metric and probe, fine-tune and push. It never holds a secret."""
    args = ["hubselect", "finetune",
            *finetune_args(pair, settings, zoo=JOB_ZOO, edges_repo=edges_repo)]
    zoo_json = json.dumps(zoo_info, sort_keys=True)
    script = " && ".join([
        f"pip install --quiet {shlex.quote(install)}",
        f"mkdir -p {JOB_ZOO}",
        f"printf '%s\\n' {shlex.quote(zoo_json)} > {JOB_ZOO}/zoo.json",
        shlex.join(args)])
    return ["bash", "-c", script]


def check_job_options(flavor: str, timeout: str | int | None) -> str | int | None:
    """Checks the flavor; returns the timeout as the Jobs API takes it ("8h", 3600)."""
    from huggingface_hub import JobHardware

    flavors = [h.value for h in JobHardware]
    if flavor not in flavors:
        raise UserError(f"unknown --flavor {flavor!r} (one of {', '.join(flavors)})")
    if timeout is None:
        return None
    if not _TIMEOUT_RE.match(str(timeout)):
        raise UserError(f"--timeout {timeout!r}: seconds, or a number with s, m, h or "
                        "d (e.g. 8h)")
    return int(float(timeout)) if str(timeout)[-1].isdigit() else str(timeout)


def submit_jobs(pairs: list[Pair], *, zoo=None, settings: dict | None = None,
                edges_repo: str | None = None, image: str = JOB_IMAGE,
                flavor: str = JOB_FLAVOR, timeout: str | int | None = JOB_TIMEOUT,
                namespace: str | None = None, install: str = "hubselect",
                dry_run: bool = False, progress: Progress | None = None,
                client: HubClient | None = None) -> list[dict]:
    """One Hugging Face Job per pair; returns what was submitted (never the token).

    Each Job runs :func:`job_command` in ``image`` on ``flavor`` hardware for at most
    ``timeout``; the token reaches it only as the secret ``HF_TOKEN``. Jobs carry the
    labels ``hubselect=sweep`` and ``hubselect-pair=<hash of model, dataset, metric>``:
    a pair whose Job is still scheduled or running is not submitted again (its record
    only appears when the Job ends) and comes back with ``status: running``. A
    submission that fails is reported and the others go on; it is never retried (the
    Job might have started). ``dry_run`` returns the Jobs without submitting anything.
    """
    from hubselect.share.records import _check_repo_id, default_edges_repo
    from hubselect.finetune.run import _zoo_probe
    from hubselect.zoo.format import Zoo

    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    probe = _zoo_probe(zoo, None)
    settings = check_settings(settings, probe)
    edges_repo = _check_repo_id(edges_repo or default_edges_repo())
    timeout = check_job_options(flavor, timeout)
    for pair in pairs:
        if not (is_repo_id(pair.model) and is_repo_id(pair.dataset)):
            raise UserError(f"{pair.model} on {pair.dataset}: --backend hf-jobs needs "
                            "Hub model and dataset IDs")
    zoo_info = {**zoo.info.to_dict(), "probe": probe}
    jobs = [{**pair.to_dict(), "name": _job_name(pair), "image": image,
             "flavor": flavor, "timeout": timeout, "secrets": ["HF_TOKEN"],
             "labels": {"hubselect": "sweep",
                        "hubselect-pair": pair_label(pair, zoo_info["metric"])},
             "command": job_command(pair, settings, edges_repo=edges_repo,
                                    zoo_info=zoo_info, install=install)}
            for pair in pairs]
    if dry_run or not jobs:
        return [{**job, "status": "dry-run"} for job in jobs]
    client = client or HubClient()
    namespace = _job_namespace(client, namespace)
    running = _running_jobs(client, namespace)
    out = []
    for i, job in enumerate(jobs):
        if progress:
            progress(i, len(jobs), f"{job['model']} on {job['dataset']}")
        live = running.get(job["labels"]["hubselect-pair"])
        if live is not None:
            out.append({**job, "status": "running", "job_id": live.id, "url": live.url,
                        "namespace": namespace, "stage": _stage(live)})
            continue
        try:
            info = client.run_job(image=image, command=job["command"], flavor=flavor,
                                  timeout=timeout, namespace=namespace,
                                  env={"PYTHONUNBUFFERED": "1"},
                                  secrets={"HF_TOKEN": client.token},
                                  labels=job["labels"], name=job["name"])
        except HubError as exc:
            log.warning("%s on %s: Job not submitted: %s", job["model"],
                        job["dataset"], _one_line(exc))
            out.append({**job, "status": "failed", "error": _one_line(exc)})
            continue
        out.append({**job, "status": "submitted", "job_id": info.id, "url": info.url,
                    "namespace": namespace, "stage": _stage(info)})
    if progress:
        progress(len(jobs), len(jobs), None)
    return out


def _stage(info) -> str:
    """A JobInfo's stage as a plain string (``JobStage`` members are str enums)."""
    stage = info.status.stage
    return str(getattr(stage, "value", stage))


def _running_jobs(client: HubClient, namespace: str) -> dict:
    """{pair label: JobInfo} of the sweep's Jobs that are still scheduled or running."""
    try:
        jobs = client.list_jobs(namespace, stages=["SCHEDULING", "RUNNING"],
                                labels={"hubselect": "sweep"})
    except HubError as exc:
        raise UserError(f"cannot list the Jobs of {namespace}: {exc}") from None
    return {(job.labels or {}).get("hubselect-pair"): job for job in jobs}


def _job_namespace(client: HubClient, namespace: str | None) -> str:
    """The namespace to run Jobs in (default: the token's user); checks the token."""
    from hubselect.finetune.publish import require_write_token

    user = require_write_token(client, "--backend hf-jobs")     # the Jobs push their results
    if namespace is not None and not is_repo_id(f"{namespace}/x"):
        raise UserError(f"invalid --namespace {namespace!r}")
    return namespace or user


def wait_jobs(jobs: list[dict], *, client: HubClient | None = None,
              poll_interval: float = 30.0, timeout: float | None = None,
              progress: Progress | None = None) -> list[dict]:
    """Poll submitted Jobs until each reaches a final stage (or ``timeout`` s pass).

    Returns the Jobs with their last ``stage`` and ``message``; a Job that ended
    without completing also carries the last lines of its log (``log_tail``).
    """
    client = client or HubClient()
    jobs = [dict(job) for job in jobs]
    live = [job for job in jobs if job.get("job_id")]
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for job in live:
            if job["stage"] in TERMINAL_STAGES:
                continue
            try:
                info = client.inspect_job(job["job_id"], job["namespace"])
            except HubError as exc:
                log.warning("Job %s: %s", job["job_id"], _one_line(exc))
                continue
            job["stage"], job["message"] = _stage(info), info.status.message
            if job["stage"] in TERMINAL_STAGES and job["stage"] != "COMPLETED":
                job["log_tail"] = _log_tail(client, job)
        finished = sum(job["stage"] in TERMINAL_STAGES for job in live)
        if progress:
            progress(finished, len(live), None)
        if finished == len(live):
            return jobs
        if deadline is not None and time.monotonic() >= deadline:
            log.warning("%d Job(s) still running after %.0f s", len(live) - finished,
                        timeout)
            return jobs
        time.sleep(poll_interval)


def _log_tail(client: HubClient, job: dict, lines: int = 5) -> list[str]:
    try:
        return client.job_logs(job["job_id"], job["namespace"], tail=lines)
    except HubError:
        return []


def cancel_jobs(jobs: list[dict], client: HubClient | None = None) -> None:
    """Cancel the submitted Jobs that have not finished."""
    client = client or HubClient()
    for job in jobs:
        if job.get("job_id") and job.get("stage") not in TERMINAL_STAGES:
            client.cancel_job(job["job_id"], job["namespace"])


# -- the sweep -----------------------------------------------------------------------

def sweep(models: Iterable[str], datasets: Iterable[str], *, backend: str = "local",
          zoo=None, settings: dict | None = None, edges_repo: str | None = None,
          pairs: list[Pair] | None = None, dry_run: bool = False,
          wait: bool = False, poll_interval: float = 30.0,
          wait_timeout: float | None = None, image: str = JOB_IMAGE,
          flavor: str = JOB_FLAVOR, timeout: str | int | None = JOB_TIMEOUT,
          namespace: str | None = None, install: str = "hubselect",
          launcher: str = "auto", progress: Progress | None = None,
          wait_progress: Progress | None = None,
          client: HubClient | None = None) -> dict:
    """Run the pending pairs of ``models`` × ``datasets`` (or exactly ``pairs``) on
    ``backend``; returns the report that ``hubselect sweep --json`` prints.

    ``failed`` counts the pairs that did not produce a record: local runs that
    failed, Jobs that could not be submitted or (with ``wait``) did not complete.
    Given ``pairs`` are checked as ``models`` and ``datasets`` would be.
    """
    from hubselect.share.records import _check_repo_id, default_edges_repo
    from hubselect.finetune.run import _zoo_probe
    from hubselect.zoo.format import Zoo

    if backend not in BACKENDS:
        raise UserError(f"unknown --backend {backend!r}: local or hf-jobs")
    named_zoo = zoo
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    edges_repo = _check_repo_id(edges_repo or default_edges_repo())
    check_settings(settings, _zoo_probe(zoo, None))     # bad input before any Hub call
    if backend == "hf-jobs":
        check_job_options(flavor, timeout)
    client = client or HubClient()
    hub_only = backend == "hf-jobs"
    requested = None
    if pairs is None:
        models, datasets = split_names(models), split_names(datasets)
        requested = len(models) * len(datasets)
        pairs = pending_pairs(models, datasets, zoo=zoo, edges_repo=edges_repo,
                              hub_only=hub_only, client=client)
    else:
        resolve_models([p.model for p in pairs], hub_only=hub_only, client=client)
        resolve_datasets([p.dataset for p in pairs], hub_only=hub_only, client=client)
    report = {"backend": backend, "zoo": str(zoo.path), "edges_repo": edges_repo,
              "metric": zoo.info.metric, "requested": requested,
              "pending": [p.to_dict() for p in pairs], "dry_run": dry_run, "runs": []}
    if backend == "local" and not dry_run:
        if named_zoo is None and pairs:   # no zoo named: results go to the user's zoo, never the shipped one
            zoo = Zoo.open(None, write=True)
            report["zoo"] = str(zoo.path)
        report["runs"] = run_local(pairs, zoo=zoo, settings=settings,
                                   edges_repo=edges_repo, launcher=launcher,
                                   progress=progress, client=client)
    elif backend == "hf-jobs":
        runs = submit_jobs(pairs, zoo=zoo, settings=settings, edges_repo=edges_repo,
                           image=image, flavor=flavor, timeout=timeout,
                           namespace=namespace, install=install, dry_run=dry_run,
                           progress=progress, client=client)
        if wait and not dry_run:
            runs = wait_jobs(runs, client=client, poll_interval=poll_interval,
                             timeout=wait_timeout, progress=wait_progress)
        report["runs"] = runs
    report["failed"] = sum(_failed(r, wait) for r in report["runs"])
    return report


def _failed(run: dict, waited: bool) -> bool:
    if run["status"] == "failed":
        return True
    return waited and "stage" in run and run["stage"] != "COMPLETED"


# -- active learning -----------------------------------------------------------------

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
            predictor: str = "yetirank", client: HubClient | None = None) -> dict:
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
    from hubselect.zoo.tables import ZooTables
    from hubselect.zoo.format import Zoo

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
    if read_edges and is_offline():
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
                       predictor: str = "yetirank") -> dict[str, np.ndarray]:
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
