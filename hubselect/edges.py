"""The shared edge dataset: fine-tuning records (model–dataset edges) and dataset profiles on the Hub.

Contributors push what they measured; everyone pulls it into their zoo (``hubselect sync``).
The dataset repo (default: ``$HUBSELECT_EDGES_REPO``, else ``hubselect/t2i-finetuning-records``)
is append-only, so that concurrent contributors never lose each other's records::

    README.md                                   dataset card (YAML: configs -> records/**/*.json)
    records/<id[:2]>/<id>.json                  one file per record, never rewritten
    profiles/<probe>/<dataset-slug>.safetensors dataset profiles (first writer wins)

A record's id (:func:`record_id`) is a SHA-256 over its identifying fields, so pushing the same
record twice adds nothing. A push is ONE commit with the repo's head as parent commit: when
someone else committed in between, the Hub answers 412, and the push re-lists the repo and tries
again (with backoff), skipping whatever has appeared meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from hubselect.errors import HubError, UserError
from hubselect.hub import HubClient, is_repo_id

log = logging.getLogger(__name__)

DEFAULT_EDGES_REPO = "hubselect/t2i-finetuning-records"
RECORD_FORMAT = "hubselect-record/1"
ID_FIELDS = ("model", "model_sha", "dataset", "dataset_revision", "metric", "probe", "steps", "seed",
             "adapter_repo")
REQUIRED_FIELDS = (*ID_FIELDS, "score", "initial_score", "versions", "created_at")
_TEXT_FIELDS = ("model", "dataset", "metric", "probe")               # non-empty strings
_OPTIONAL_TEXT_FIELDS = ("model_sha", "dataset_revision", "adapter_repo")   # string or None
PROVENANCE_COLUMNS = ["record_id", "metric", "probe", "model_sha", "dataset_revision", "steps", "seed",
                      "adapter_repo", "created_at", "versions", "source"]
_RECORD_PATH = re.compile(r"^records/([0-9a-f]{2})/([0-9a-f]{64})\.json$")
_PROFILE_PATH = re.compile(r"^profiles/([A-Za-z][A-Za-z0-9-]*)/[^/]+\.safetensors$")
PUSH_ATTEMPTS = 12


def default_edges_repo() -> str:
    """``$HUBSELECT_EDGES_REPO``, else ``hubselect/t2i-finetuning-records``."""
    return os.environ.get("HUBSELECT_EDGES_REPO") or DEFAULT_EDGES_REPO


# -- records ----------------------------------------------------------------------------------------

def record_id(record: dict) -> str:
    """A stable content hash (SHA-256, hex) of the record's identifying fields."""
    key = {f: record.get(f) for f in ID_FIELDS}
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def record_path(record: dict) -> str:
    rid = record_id(record)
    return f"records/{rid[:2]}/{rid}.json"


def make_record(model: str, dataset: str, score: float, *, metric: str = "clip-fid", probe: str = "clip",
                model_sha: str | None = None, dataset_revision: str | None = None,
                initial_score: float | None = None, steps: int = 0, seed: int = 0,
                adapter_repo: str | None = None, versions: dict | None = None, **extra: Any) -> dict:
    """A record with ``versions`` (hubselect, huggingface_hub) and ``created_at`` filled in."""
    import huggingface_hub

    import hubselect
    record = {"model": model, "model_sha": model_sha, "dataset": dataset, "dataset_revision": dataset_revision,
              "metric": metric, "probe": probe, "score": score, "initial_score": initial_score, "steps": steps,
              "seed": seed, "adapter_repo": adapter_repo,
              "versions": versions if versions is not None else {
                  "hubselect": getattr(hubselect, "__version__", "unknown"),
                  "huggingface_hub": huggingface_hub.__version__},
              "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **extra}
    return record


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_record(record: Any) -> dict:
    """The record as a plain dict, or :class:`UserError` saying what is wrong with it."""
    if not isinstance(record, dict):
        raise UserError(f"a record must be a dict, not {type(record).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    where = f"record {record.get('model')!r} on {record.get('dataset')!r}"
    if missing:
        raise UserError(f"{where} lacks field(s) {', '.join(missing)}")
    for k in _TEXT_FIELDS:
        if not isinstance(record[k], str) or not record[k].strip():
            raise UserError(f"{where}: {k} must be a non-empty string")
    for k in _OPTIONAL_TEXT_FIELDS:
        if record[k] is not None and not isinstance(record[k], str):
            raise UserError(f"{where}: {k} must be a string or null")
    if not _finite(record["score"]):
        raise UserError(f"{where}: score must be a finite number, got {record['score']!r}")
    if record["initial_score"] is not None and not _finite(record["initial_score"]):
        raise UserError(f"{where}: initial_score must be a finite number or null, got {record['initial_score']!r}")
    for k in ("steps", "seed"):
        if not isinstance(record[k], int) or isinstance(record[k], bool) or record[k] < 0:
            raise UserError(f"{where}: {k} must be a non-negative integer, got {record[k]!r}")
    if not isinstance(record["versions"], dict):
        raise UserError(f"{where}: versions must be a dict")
    if not isinstance(record["created_at"], str):
        raise UserError(f"{where}: created_at must be a string")
    try:
        json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where} is not JSON-serialisable: {exc}") from None
    return dict(record)


def _record_bytes(record: dict) -> bytes:
    body = {"format": RECORD_FORMAT, "record_id": record_id(record), **record}
    return (json.dumps(body, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


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
  metric, probe, score, initial_score, steps, seed, adapter_repo, versions, created_at). The id is
  a SHA-256 of the identifying fields; files are never rewritten, so pushes never conflict.
* `profiles/<probe>/<dataset>.safetensors`: dataset profiles (mean and covariance of probe
  embeddings; safetensors, no pickle).
"""


# -- push -------------------------------------------------------------------------------------------

def _profile_files(profiles: Iterable) -> dict[str, bytes]:
    """{repo path: bytes} for Profile objects or paths of profile files (each read and checked)."""
    from hubselect.profiles import Profile, dataset_slug

    out: dict[str, bytes] = {}
    for item in profiles:
        if isinstance(item, Profile):
            profile, data = item, item.to_bytes()
        else:
            path = Path(item)
            profile = Profile.load(path)          # UserError when it is not a readable profile
            data = path.read_bytes()
        if not re.match(r"^[A-Za-z][A-Za-z0-9-]*$", profile.probe):
            raise UserError(f"invalid probe name {profile.probe!r} in the profile of {profile.dataset!r}")
        out[f"profiles/{profile.probe}/{dataset_slug(profile.dataset)}.safetensors"] = data
    return out


def _check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not is_repo_id(repo_id):
        raise UserError(f"invalid edge dataset repo ID {repo_id!r} (expected owner/name)")
    return repo_id


def _hub_user_error(exc: HubError, repo_id: str, doing: str) -> UserError:
    reason = getattr(exc, "reason", "")
    if reason == "unauthorized":
        return UserError(f"{doing} {repo_id}: no access (set HF_TOKEN to a token with "
                         f"{'write' if doing == 'push to' else 'read'} access)")
    if reason == "not_found":
        return UserError(f"{doing} {repo_id}: no such dataset repo on the Hub")
    return UserError(f"{doing} {repo_id} failed: {exc}")


def push_records(records: Iterable[dict], repo_id: str | None = None, client: HubClient | None = None,
                 profiles: Iterable = (), attempts: int = PUSH_ATTEMPTS) -> list[str]:
    """Push records (and profiles) to the edge dataset in one commit; returns the ids of the records added.

    Every record is validated before any network call. The repo is created when missing. Records
    (and profiles) already on the Hub are skipped, so pushing twice is harmless. A commit refused
    because someone else committed first (412) is retried against the new head, with backoff.
    Raises :class:`UserError` without write access (nothing is written).
    """
    repo_id = _check_repo_id(repo_id or default_edges_repo())
    valid = [validate_record(r) for r in records]
    by_path: dict[str, bytes] = {}
    ids: dict[str, str] = {}
    for r in valid:
        path = record_path(r)
        by_path[path] = _record_bytes(r)
        ids[path] = record_id(r)
    by_path.update(_profile_files(profiles))
    if not by_path:
        return []
    client = client or HubClient()
    try:
        client.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    except HubError as exc:
        raise _hub_user_error(exc, repo_id, "push to") from None
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
                raise _hub_user_error(exc, repo_id, "push to") from None
            wait = min(delay, 3.0) * (0.5 + random.random())
            log.info("%s moved on during the push; retrying in %.2fs (%d/%d)", repo_id, wait, attempt + 1, attempts)
            time.sleep(wait)
            delay *= 1.6
    raise AssertionError("unreachable")


# -- pull -------------------------------------------------------------------------------------------

def _records_frame(records: list[dict], source: str) -> pd.DataFrame:
    rows = []
    for r in records:
        rows.append({"model": r["model"], "dataset": r["dataset"], "score": float(r["score"]),
                     "initial_score": None if r["initial_score"] is None else float(r["initial_score"]),
                     "record_id": record_id(r), "metric": r["metric"], "probe": r["probe"],
                     "model_sha": r["model_sha"], "dataset_revision": r["dataset_revision"], "steps": r["steps"],
                     "seed": r["seed"], "adapter_repo": r["adapter_repo"], "created_at": r["created_at"],
                     "versions": json.dumps(r["versions"], sort_keys=True), "source": source})
    return pd.DataFrame(rows, columns=["model", "dataset", "score", "initial_score", *PROVENANCE_COLUMNS])


def add_records_to_zoo(zoo, records: list[dict], source: str, replaces: Iterable[str] = ()) -> tuple[int, int]:
    """Merge validated records into the zoo's ``records`` table by ``record_id`` (atomic write).

    A record already there (same id) is replaced by the new copy, and so are the rows whose ids are
    in ``replaces`` (a run's local record once it is published); rows without a record id (results
    that came from elsewhere) are kept. Returns (records added, rows in the table).
    """
    incoming = _records_frame(records, source=source).drop_duplicates("record_id")
    replaces = set(replaces)
    current = zoo.read_table("records")
    if current is None or current.empty:
        known: set[str] = set()
        merged = incoming
    else:
        current = current.copy()
        if "record_id" not in current.columns:
            current["record_id"] = None
        known = set(current["record_id"].dropna().astype(str))
        keep = current[~current["record_id"].astype(str).isin(set(incoming["record_id"]) | replaces)]
        columns = list(dict.fromkeys([*current.columns, *incoming.columns]))
        parts = [p.reindex(columns=columns) for p in (keep, incoming) if len(p)]
        merged = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    added = int((~incoming["record_id"].isin(known)).sum())
    if added or current is None or known & replaces:
        zoo.write_table("records", merged)
    return added, len(merged)


def pull(repo_id: str | None = None, zoo=None, client: HubClient | None = None, workers: int = 8) -> dict:
    """Pull the edge dataset's records and profiles into ``zoo`` (a :class:`Zoo` or a directory).

    Everything is downloaded and checked before the zoo is touched. Records are merged into the
    ``records`` table by ``record_id`` (local rows that did not come from the Hub are kept); profiles
    the zoo does not have yet are added with ``add_profile_to_zoo`` (a local profile of the same
    dataset and probe wins). Returns ``{records_added, records_total, profiles_added, ...}``.
    """
    from hubselect.profiles import Profile, add_profile_to_zoo, profile_path
    from hubselect.zoo import Zoo

    repo_id = _check_repo_id(repo_id or default_edges_repo())
    client = client or HubClient()
    try:
        info = client.dataset_meta(repo_id)
    except HubError as exc:
        raise _hub_user_error(exc, repo_id, "sync from") from None
    files = sorted(s.rfilename for s in (info.siblings or []))
    record_files = [f for f in files if _RECORD_PATH.match(f)]
    profile_files = [f for f in files if _PROFILE_PATH.match(f)]

    def fetch(path: str) -> bytes:
        return client.fetch_bytes(repo_id, path, revision=info.sha, repo_type="dataset")

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            record_data = list(pool.map(fetch, record_files))
            profile_data = list(pool.map(fetch, profile_files))
    except HubError as exc:
        raise _hub_user_error(exc, repo_id, "sync from") from None

    records: list[dict] = []
    skipped = 0
    for path, data in zip(record_files, record_data, strict=True):
        try:
            raw = json.loads(data)
            raw = {k: v for k, v in raw.items() if k not in ("format", "record_id")}
            rec = validate_record(raw)
            if record_id(rec) != _RECORD_PATH.match(path).group(2):
                raise UserError("record id does not match its content")
        except (ValueError, UnicodeDecodeError, AttributeError, UserError) as exc:
            log.warning("%s/%s: skipped (%s)", repo_id, path, exc)
            skipped += 1
            continue
        records.append(rec)

    loaded: list[tuple[Profile, bytes]] = []
    with tempfile.TemporaryDirectory(prefix="hubselect-sync-") as tmp:
        for i, (path, data) in enumerate(zip(profile_files, profile_data, strict=True)):
            local = Path(tmp) / f"{i}.safetensors"
            local.write_bytes(data)
            try:
                loaded.append((Profile.load(local), data))      # safetensors only, never pickle
            except UserError as exc:
                log.warning("%s/%s: skipped (%s)", repo_id, path, exc)
                skipped += 1

    target = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo, create=True)
    added, total = add_records_to_zoo(target, records, source=f"hub:{repo_id}")
    profiles_added = 0
    for profile, data in loaded:
        path = profile_path(target, profile.probe, profile.dataset)
        if path.is_file():
            continue                     # the zoo's own (or an earlier pull's) profile stays
        add_profile_to_zoo(target, profile)
        profiles_added += 1
    return {"repo": repo_id, "revision": info.sha, "zoo": str(target.path), "records_added": added,
            "records_total": total, "profiles_added": profiles_added, "skipped": skipped}
