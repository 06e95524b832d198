"""The sweep itself (:func:`sweep`): check everything, find the pending pairs, run them on a backend,
and report what ``hubselect sweep --json`` prints."""

from __future__ import annotations

from collections.abc import Iterable

from hubselect.errors import UserError
from hubselect.hub import HubClient
from hubselect.sweep.jobs import JOB_FLAVOR, JOB_IMAGE, JOB_TIMEOUT, check_job_options, submit_jobs, wait_jobs
from hubselect.sweep.local import run_local
from hubselect.sweep.pairs import (Pair, Progress, check_settings, pending_pairs, resolve_datasets,
                                   resolve_models, split_names, zoo_probe)

BACKENDS = ("local", "hf-jobs")


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
    from hubselect.share.records import edges_repo as checked_edges_repo
    from hubselect.zoo.format import Zoo

    if backend not in BACKENDS:
        raise UserError(f"unknown --backend {backend!r}: {' or '.join(BACKENDS)}")
    named_zoo = zoo
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    edges_repo = checked_edges_repo(edges_repo)
    check_settings(settings, zoo_probe(zoo))     # bad input before any Hub call
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
