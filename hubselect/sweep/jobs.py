"""The ``hf-jobs`` sweep backend: one Hugging Face Job per pair, on the Hub's machines.

:func:`submit_jobs` submits the Jobs: each installs hubselect and runs ``hubselect finetune ...
--push`` (:func:`job_command`); the token reaches a Job only as its secret ``HF_TOKEN``.
:func:`wait_jobs` polls them to the end (with the last log lines of those that fail),
:func:`cancel_jobs` stops those still running.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import time

from hubselect.errors import HubError, UserError, hub_user_error
from hubselect.hub import HubClient, is_repo_id
from hubselect.errors import first_line
from hubselect.sweep.pairs import Pair, Progress, check_settings, finetune_args, zoo_probe

log = logging.getLogger(__name__)

JOB_IMAGE = "pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime"   # public: CUDA + PyTorch
JOB_FLAVOR = "a10g-small"
JOB_TIMEOUT = "8h"
JOB_ZOO = "/tmp/hubselect-zoo"          # the zoo a Job writes into, thrown away after
JOB_TOKEN_SECRET = "HF_TOKEN"           # the only way the token reaches a Job: as this secret
TERMINAL_STAGES = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
_TIMEOUT_RE = re.compile(r"^\d+(\.\d+)?[smhd]?$")


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
    from hubselect.share.records import edges_repo as checked_edges_repo
    from hubselect.zoo.format import Zoo

    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    probe = zoo_probe(zoo)
    settings = check_settings(settings, probe)
    edges_repo = checked_edges_repo(edges_repo)
    timeout = check_job_options(flavor, timeout)
    for pair in pairs:
        if not (is_repo_id(pair.model) and is_repo_id(pair.dataset)):
            raise UserError(f"{pair.model} on {pair.dataset}: --backend hf-jobs needs "
                            "Hub model and dataset IDs")
    zoo_info = {**zoo.info.to_dict(), "probe": probe}
    jobs = [{**pair.to_dict(), "name": _job_name(pair), "image": image,
             "flavor": flavor, "timeout": timeout, "secrets": [JOB_TOKEN_SECRET],
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
                                  secrets={JOB_TOKEN_SECRET: client.token},
                                  labels=job["labels"], name=job["name"])
        except HubError as exc:
            log.warning("%s on %s: Job not submitted: %s", job["model"],
                        job["dataset"], first_line(exc))
            out.append({**job, "status": "failed", "error": first_line(exc)})
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
        raise hub_user_error(exc, f"the Jobs of {namespace}") from None
    return {(job.labels or {}).get("hubselect-pair"): job for job in jobs}


def _job_namespace(client: HubClient, namespace: str | None) -> str:
    """The namespace to run Jobs in (default: the token's user); checks the token."""
    from hubselect.finetune.publish import require_write_token

    user = require_write_token(client, "--backend hf-jobs")     # the Jobs push their results
    if namespace is not None and not is_repo_id(f"{namespace}/x"):   # a valid owner of a repo ID
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
                log.warning("Job %s: %s", job["job_id"], first_line(exc))
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
