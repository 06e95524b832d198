"""Pushing to the edge dataset: records and profiles in one commit, the dataset card, the checks before a run.

A push is ONE commit with the repo's head as parent commit: when someone else committed in between,
the Hub answers 412, and the push re-lists the repo and tries again (with backoff), skipping whatever
has appeared meanwhile. Everything is checked as a sync would check it before any network call.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable

from hubselect.errors import HubError, UserError, hub_user_error
from hubselect.hub import HubClient
from hubselect.share.profiles import shared_profile_files
from hubselect.share.records import check_repo_like, edges_repo, record_bytes, record_id, record_path, validate_record

log = logging.getLogger(__name__)

PUSH_ATTEMPTS = 12


def dataset_card(repo_id: str) -> str:
    """The README.md of the edge dataset: YAML front matter for the Hub's dataset viewer, then prose."""
    return f"""---
license: cc-by-4.0
pretty_name: hubselect text-to-image fine-tuning records
tags:
- hubselect
- text-to-image
- model-selection
- fine-tuning
configs:
- config_name: default
  data_files: records/**/*.json
---

# hubselect fine-tuning records

Shared results of fine-tuning text-to-image pipelines on datasets, used by
[hubselect](https://github.com/) to rank pipelines for a new dataset (Match & Choose).
`hubselect sync --repo {repo_id}` pulls them into a local zoo.

* `records/<id[:2]>/<id>.json`: one record per file (model, model_sha, dataset, dataset_revision,
  metric, probe, score, initial_score, steps, seed, adapter_repo, versions, created_at, and the
  run's hyperparameters). The id is a SHA-256 of the whole record, score included: a file whose
  content does not match its name is ignored. Files are never rewritten, so pushes never conflict.
* `profiles/<probe>/<dataset>.safetensors`: dataset profiles (mean and covariance of probe
  embeddings; safetensors, no pickle).

Who wrote a record is what the Hub's commit history says (the author of the last commit that
changed the file), and a sync counts one vote per writer.
"""


def check_pushable(model: str, dataset: str) -> None:
    """:class:`UserError` when a record of ``model`` on ``dataset`` could not be pushed (names that are not
    valid Hub repo IDs: a folder named with spaces, say); checked before a fine-tuning run starts."""
    for value, what in ((model, "model"), (dataset, "dataset")):
        try:
            check_repo_like(value, what)
        except UserError as exc:
            raise UserError(f"--push: the record's {exc}; the edge dataset only takes names that are valid "
                            "Hub repo IDs (rename the folder, or profile it under --name)") from None


def push_records(records: Iterable[dict], repo_id: str | None = None, client: HubClient | None = None,
                 profiles: Iterable = (), attempts: int = PUSH_ATTEMPTS,
                 bounds: tuple[float, float] | None = None) -> list[str]:
    """Push records (and profiles) to the edge dataset in one commit; returns the ids of the records added.

    Every record is validated (:func:`hubselect.share.records.validate_record`, with ``bounds`` or its metric's default
    range) and every profile checked as a sync checks it, before any network call. The repo is
    created when missing. Records (and profiles) already on the Hub are skipped, so pushing twice
    is harmless. A commit refused because someone else committed first (412) is retried against
    the new head, with backoff. Raises :class:`UserError` without write access (nothing is written).
    """
    repo_id = edges_repo(repo_id)
    valid = [validate_record(r, bounds=bounds) for r in records]
    by_path: dict[str, bytes] = {}
    ids: dict[str, str] = {}
    for r in valid:
        path = record_path(r)
        by_path[path] = record_bytes(r)
        ids[path] = record_id(r)
    by_path.update(shared_profile_files(profiles))
    if not by_path:
        return []
    client = client or HubClient()
    try:
        client.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    except HubError as exc:
        raise hub_user_error(exc, f"edge dataset {repo_id}", write=True) from None
    delay = 0.2
    for attempt in range(attempts):
        try:
            info = client.dataset_meta(repo_id)
            existing = {s.rfilename for s in (info.siblings or [])}
            new = {p: d for p, d in by_path.items() if p not in existing}
            if not new:
                return []
            if "README.md" not in existing:
                new["README.md"] = dataset_card(repo_id).encode()
            n_rec = sum(p in ids for p in new)
            n_prof = sum(p.startswith("profiles/") for p in new)
            client.upload_files(repo_id, new, repo_type="dataset",
                                message=f"Add {n_rec} record(s)" + (f" and {n_prof} profile(s)" if n_prof else ""),
                                parent_commit=info.sha)
            return sorted(ids[p] for p in new if p in ids)
        except HubError as exc:
            if getattr(exc, "reason", "") != "http_412" or attempt == attempts - 1:
                raise hub_user_error(exc, f"edge dataset {repo_id}", write=True) from None
            wait = min(delay, 3.0) * (0.5 + random.random())
            log.info("%s moved on during the push; retrying in %.2fs (%d/%d)", repo_id, wait, attempt + 1, attempts)
            time.sleep(wait)
            delay *= 1.6
    raise AssertionError("unreachable")
