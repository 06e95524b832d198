"""Syncing the edge dataset into a zoo (``hubselect sync``: :func:`pull`), and the zoo's ``records`` table.

**Pinned and checked.** A sync reads the revision the Hub names as head when it starts; every file
it downloads is checked in full (:func:`hubselect.share.records.check_record_file`,
:func:`hubselect.share.profiles.check_profile_file`) before the zoo is touched, and the files of
writers the zoo's :class:`hubselect.share.trust.TrustPolicy` does not take are never examined. The
zoo then changes in one staged step (:func:`hubselect.zoo.staging.staged_zoo`).

**Incremental.** The zoo keeps, in ``edges_sync.json``, the revision it last read and the verdict
on every file (blob id, writer, status), so the next sync downloads only files that are new or
whose blob changed; an unchanged edge dataset costs one metadata request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hubselect.errors import HubError, UserError, hub_user_error
from hubselect.hub import HubClient
from hubselect.share.profiles import MAX_PROFILE_BYTES, check_profile_file, fingerprint, is_profile_path
from hubselect.share.records import (
    BAD, MAX_RECORD_BYTES, NOT_USED, BadFile, check_record_file, edges_repo, is_record_path, record_id, score_range,
    zoo_score_range,
)
from hubselect.share.trust import LOCAL_WRITER, TRUST_FILE, load_trust, writer_of

log = logging.getLogger(__name__)

SYNC_STATE_FILE = "edges_sync.json"
CHECKS_VERSION = 1               # bump when the checks change: verdicts of earlier checks are redone
PROVENANCE_COLUMNS = ["record_id", "metric", "probe", "model_sha", "dataset_revision", "steps", "seed",
                      "adapter_repo", "created_at", "versions", "source", "writer"]


# -- sync state -----------------------------------------------------------------------------------------

def _load_state(zoo_path: Path) -> dict:
    path = zoo_path / SYNC_STATE_FILE
    if not path.is_file():
        return {"format": 1, "repos": {}}
    try:
        raw = json.loads(path.read_bytes())
        if not isinstance(raw, dict) or raw.get("format") != 1 or not isinstance(raw.get("repos"), dict):
            raise ValueError("unexpected content")
        return raw
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("%s is unreadable (%s): every file of the edge dataset is read again", path, exc)
        return {"format": 1, "repos": {}}


def _usable(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("oid"), str) and isinstance(entry.get("size"), int) \
        and entry.get("status") in ("ok", "excluded", *BAD, *NOT_USED)


# -- pull -------------------------------------------------------------------------------------------

def pull(repo_id: str | None = None, zoo=None, client: HubClient | None = None, workers: int = 8,
         trust: Iterable[str] = (), distrust: Iterable[str] = (), only: Iterable[str] = (),
         trust_everyone: bool = False,
         progress: Callable[[int, int, str | None], None] | None = None) -> dict:
    """Pull the edge dataset's records and profiles into ``zoo`` (a :class:`Zoo`, a directory, or None:
    the user's zoo), pinned to the revision the Hub names as head when the sync starts.

    ``trust``/``distrust``/``only``/``trust_everyone`` change the zoo's trust policy (:class:`TrustPolicy`,
    kept in ``trust.json``) first. Files are listed with their blob ids; only files that are new
    or changed since the last sync (``edges_sync.json``) are examined: the writer of each (the
    authors of its last commit), the policy, then a download and full checks. Records of trusted
    writers become rows of the ``records`` table (``source`` ``hub:<repo>``, ``writer``); rows of
    files that are gone, bad or no longer trusted leave it; profiles the zoo lacks are added (its
    own profile of a dataset wins). Nothing is written until everything is checked, and then all
    of it in one staged step; an unchanged edge dataset (and policy) writes nothing.

    Returns ``{repo, revision, previous_revision, zoo, records_added, records_removed,
    records_total, profiles_added, profiles_removed, skipped, skipped_by_reason, skipped_files,
    ignored, excluded, writers, downloaded, trust, up_to_date}``.
    """
    from hubselect.profile.profiles import add_profile_to_zoo
    from hubselect.zoo.staging import staged_zoo, tidy
    from hubselect.zoo.format import Zoo, ZooInfo, atomic_write_bytes, atomic_write_json, default_zoo_dir

    repo_id = edges_repo(repo_id)
    zoo_path = Path(zoo.path if isinstance(zoo, Zoo) else zoo if zoo is not None else default_zoo_dir(write=True))
    tidy(zoo_path)                               # a sync killed half-way left something beside the zoo
    exists = (zoo_path / "zoo.json").is_file()
    if not exists and zoo_path.exists() and not zoo_path.is_dir():
        raise UserError(f"{zoo_path} is a file, not a zoo directory")
    info = Zoo(zoo_path).info if exists else ZooInfo()
    bounds = zoo_score_range(zoo_path, info) if exists else score_range(info.metric, info.higher_is_better)
    before_policy = load_trust(zoo_path)
    policy = before_policy.updated(trust, distrust, only, trust_everyone)
    state = _load_state(zoo_path)
    prev = state["repos"].get(repo_id)
    context = {"metric": info.metric, "probe": info.probe, "bounds": list(bounds), "checks": CHECKS_VERSION}
    if not isinstance(prev, dict) or prev.get("context") != context or not isinstance(prev.get("files"), dict):
        prev = None                                  # another zoo setting or other checks: judge every file again
    prev_files = {p: e for p, e in (prev or {}).get("files", {}).items() if _usable(e)}

    client = client or HubClient()
    try:
        head = client.dataset_meta(repo_id).sha
        if prev is not None and prev.get("revision") == head:
            listing = {p: (e["oid"], e["size"]) for p, e in prev_files.items()}
        else:
            listing = {p: (oid, size) for p, oid, size in client.list_tree(repo_id, revision=head)
                       if p.startswith(("records/", "profiles/"))}
    except HubError as exc:
        raise hub_user_error(exc, f"edge dataset {repo_id}") from None

    # 1. what is known, what is new (or changed), and who wrote the new files
    files: dict[str, dict] = {}
    fresh: list[str] = []
    for p, (oid, size) in sorted(listing.items()):
        old = prev_files.get(p)
        if old is not None and old["oid"] == oid:
            files[p] = dict(old)
        elif not (is_record_path(p) or is_profile_path(p)):
            files[p] = {"oid": oid, "size": size, "status": "bad_path", "writer": None,
                        "detail": "not records/<id[:2]>/<id>.json or profiles/<probe>/<dataset>.safetensors"}
        else:
            files[p] = {"oid": oid, "size": size, "status": None}
            fresh.append(p)
    try:
        last = client.last_commits(repo_id, fresh, revision=head) if fresh else {}
        authors = client.commit_authors(repo_id, set(last.values()), revision=head)
    except HubError as exc:
        raise hub_user_error(exc, f"edge dataset {repo_id}") from None
    for p in fresh:
        files[p]["writer"] = writer_of(authors.get(last.get(p, ""), []))
        if files[p]["writer"] is None:
            files[p].update(status="no_author", detail="the Hub names no author for its last commit")

    # 2. what to download: new files of trusted writers, files whose writer became trusted, rows gone missing
    current = Zoo(zoo_path).read_table("records") if exists else None
    source = f"hub:{repo_id}"
    hub_rows = pd.DataFrame(columns=["record_id"]) if current is None or "record_id" not in current.columns \
        else current[current.get("source", pd.Series(index=current.index, dtype=object)).astype(str) == source]
    present = set(hub_rows["record_id"].astype(str))
    fetch: list[str] = []
    for p, e in files.items():
        if e.get("writer") is not None and not policy.allows(e["writer"]):
            e["status"] = "excluded"                 # whatever the file holds: not examined, not counted
            e.pop("detail", None)
            continue
        if e["status"] in BAD or e["status"] in NOT_USED:
            continue
        is_record = is_record_path(p)
        if e["size"] > (MAX_RECORD_BYTES if is_record else MAX_PROFILE_BYTES):
            e.update(status="too_large", detail=f"{e['size']} bytes")
            continue
        if e["status"] in (None, "excluded"):
            fetch.append(p)
        elif is_record and e.get("id") not in present:
            fetch.append(p)                          # the row left the table: read the file again
        elif not is_record and e.get("dataset") and not (zoo_path / p).is_file():
            fetch.append(p)                          # the zoo lost its copy: add it again

    # 3. download (pinned to head) and check everything before the zoo is touched
    data: dict[str, bytes] = {}
    if fetch:
        done = 0

        def get(path: str) -> tuple[str, bytes]:
            return path, client.fetch_bytes(repo_id, path, revision=head, repo_type="dataset")
        try:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for path, content in pool.map(get, fetch):
                    data[path] = content
                    done += 1
                    if progress is not None:
                        progress(done, len(fetch), path)
        except HubError as exc:
            raise hub_user_error(exc, f"edge dataset {repo_id}") from None

    dim = _profile_dim(zoo_path, info.probe) if any(p.startswith("profiles/") for p in fetch) else None
    new_records: list[tuple[dict, str]] = []
    new_profiles: list[tuple[Any, bytes, str]] = []
    for p in fetch:
        e, content = files[p], data[p]
        e.pop("detail", None)
        try:
            if hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() != e["oid"]:
                raise BadFile("tampered", "the content downloaded is not the blob the Hub listed")
            if is_record_path(p):
                record = check_record_file(p, content, metric=info.metric, bounds=bounds)
                e.update(status="ok", id=record_id(record))
                new_records.append((record, e["writer"]))
            else:
                profile = check_profile_file(p, content, probe=info.probe or "", dim=dim)   # "": a zoo of no probe
                dim = profile.dim if dim is None else dim
                e.update(status="ok", dataset=profile.dataset, fingerprint=fingerprint(profile))
                new_profiles.append((profile, content, p))
        except BadFile as bad:
            e.update(status=bad.reason, detail=bad.detail[:300])
            log.info("%s/%s: skipped (%s)", repo_id, p, bad)

    # 4. the new records table: this repo's rows are exactly its trusted, valid records
    ok_ids = {e["id"]: e["writer"] for p, e in files.items() if e["status"] == "ok" and "id" in e}
    incoming = _records_frame([r for r, _ in new_records], source=source, writers=[w for _, w in new_records])
    incoming = incoming.drop_duplicates("record_id")
    stale = present - set(ok_ids)
    table = current
    table_changed = bool(len(incoming)) or bool(stale)
    if len(hub_rows) and not table_changed:       # the same records: rewrite only if a writer is not as judged
        wanted = hub_rows["record_id"].astype(str).map(ok_ids)
        table_changed = "writer" not in hub_rows.columns or bool((hub_rows["writer"].astype(str) != wanted).any())

    def new_table(current: pd.DataFrame | None) -> pd.DataFrame:
        table = _merge(current, incoming, stale)
        rows = table["source"].astype(str) == source
        table.loc[rows, "writer"] = table.loc[rows, "record_id"].astype(str).map(ok_ids)
        return table

    if table_changed:
        table = new_table(current)
    records_added = int((~incoming["record_id"].isin(present)).sum())

    # 5. profiles: add the zoo's missing ones; take back the ones an untrusted writer gave
    to_add = [(prof, path) for prof, _content, path in new_profiles
              if not (zoo_path / path).is_file()]
    to_remove = []
    for p, e in files.items():
        if p.startswith("profiles/") and e["status"] == "excluded" and e.get("fingerprint"):
            target = zoo_path / p
            if target.is_file() and fingerprint(target) == e["fingerprint"]:
                to_remove.append((e.get("dataset"), p.split("/")[1], target))

    new_state = {"revision": head, "context": context, "files": files}
    state_changed = prev is None or prev.get("revision") != head or prev_files != files
    writes = table_changed or to_add or to_remove or state_changed or policy != before_policy \
        or (not exists)
    if writes:
        with staged_zoo(zoo_path) as stage:      # the zoo's lock is held from here to the swap
            staged = Zoo(stage)
            if not exists:
                atomic_write_json(stage / "zoo.json", info.to_dict())
            if table_changed:
                fresh = staged.read_table("records")
                if not (fresh is None and current is None or fresh is not None and current is not None
                        and fresh.equals(current)):
                    table = new_table(fresh)     # another command wrote the table meanwhile: keep its rows
                staged.write_table("records", table)
            for dataset, probe, _target in to_remove:
                _remove_profile(staged, dataset, probe)
            for prof, path in to_add:
                if not (stage / path).is_file():     # a profile made here meanwhile wins too
                    add_profile_to_zoo(staged, prof)
            if policy != before_policy:
                atomic_write_json(stage / TRUST_FILE, policy.to_dict())
            state = _load_state(stage)
            state["repos"][repo_id] = new_state
            atomic_write_bytes(stage / SYNC_STATE_FILE, json.dumps(state, sort_keys=True,
                                                                    separators=(",", ":")).encode())

    final = table
    reasons = Counter(e["status"] for e in files.values() if e["status"] in BAD)
    skipped_files = [{"path": p, "reason": e["status"], "detail": e.get("detail", "")}
                     for p, e in files.items() if e["status"] in BAD]
    if reasons:
        log.warning("%s@%s: %d file(s) skipped (%s)", repo_id, head[:12], sum(reasons.values()),
                    ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(reasons.items())))
    excluded = Counter(e.get("writer") or "?" for e in files.values() if e["status"] == "excluded")
    writers = Counter(w for w in ok_ids.values())
    return {"repo": repo_id, "revision": head, "previous_revision": (prev or {}).get("revision"),
            "zoo": str(zoo_path), "records_added": records_added, "records_removed": len(stale),
            "records_total": 0 if final is None else len(final),
            "records_synced": len(ok_ids), "profiles_added": len(to_add), "profiles_removed": len(to_remove),
            "skipped": sum(reasons.values()), "skipped_by_reason": dict(sorted(reasons.items())),
            "skipped_files": skipped_files[:50],
            "ignored": dict(sorted(Counter(e["status"] for e in files.values() if e["status"] in NOT_USED).items())),
            "excluded": dict(sorted(excluded.items())), "writers": dict(sorted(writers.items())),
            "downloaded": len(fetch), "trust": {"trusted": policy.trusted, "distrusted": policy.distrusted},
            "up_to_date": not writes}


def _profile_dim(zoo_path: Path, probe: str | None) -> int | None:
    """The dimension of the zoo's profiles of ``probe`` (from one of them), None when it has none."""
    from hubselect.profile.profiles import Profile

    folder = zoo_path / "profiles" / (probe or "")
    for path in sorted(folder.glob("*.safetensors")) if probe and folder.is_dir() else []:
        try:
            return Profile.load(path).dim
        except (UserError, KeyError, ValueError):
            continue
    return None


def _remove_profile(zoo, dataset: str | None, probe: str) -> None:
    """Take a profile (and what was derived from it) out of the zoo."""
    from hubselect.profile.profiles import profile_path

    if not dataset:
        return
    path = profile_path(zoo, probe, dataset)
    path.unlink(missing_ok=True)
    table = zoo.read_table("datasets")
    if table is not None and len(table):
        prefix = f"{probe}_"
        cols = [c for c in table.columns if c.startswith(prefix) and c[len(prefix):].isdigit()]
        row = table["dataset"].astype(str) == dataset
        table = table.copy()
        table.loc[row, cols] = np.nan
        others = [c for c in table.columns if c not in ("dataset", "n_images")]
        empty = row & table[others].isna().all(axis=1) if others else row
        zoo.write_table("datasets", table[~empty].reset_index(drop=True))
    distances = zoo.read_table("dataset_distances")
    if distances is not None and len(distances):
        involved = (distances["dataset_a"].astype(str) == dataset) | (distances["dataset_b"].astype(str) == dataset)
        if "probe" in distances.columns:
            involved &= distances["probe"].astype(str) == probe
        zoo.write_table("dataset_distances", distances[~involved].reset_index(drop=True))


# -- the zoo's records table ------------------------------------------------------------------------

def _records_frame(records: list[dict], source: str, writers: list[str] | None = None) -> pd.DataFrame:
    rows = []
    for i, r in enumerate(records):
        rows.append({"model": r["model"], "dataset": r["dataset"], "score": float(r["score"]),
                     "initial_score": None if r["initial_score"] is None else float(r["initial_score"]),
                     "record_id": record_id(r), "metric": r["metric"], "probe": r["probe"],
                     "model_sha": r["model_sha"], "dataset_revision": r["dataset_revision"], "steps": r["steps"],
                     "seed": r["seed"], "adapter_repo": r["adapter_repo"], "created_at": r["created_at"],
                     "versions": json.dumps(r["versions"], sort_keys=True), "source": source,
                     "writer": writers[i] if writers is not None else LOCAL_WRITER})
    return pd.DataFrame(rows, columns=["model", "dataset", "score", "initial_score", *PROVENANCE_COLUMNS])


def _merge(current: pd.DataFrame | None, incoming: pd.DataFrame, drop: set[str]) -> pd.DataFrame:
    """``current`` less the rows whose record id is in ``drop`` or incoming, plus ``incoming``."""
    if current is None or current.empty:
        return incoming.reset_index(drop=True)
    current = current.copy()
    if "record_id" not in current.columns:
        current["record_id"] = None
    ids = current["record_id"].astype(str)
    keep = current[~ids.isin(set(incoming["record_id"]) | drop)]
    columns = list(dict.fromkeys([*current.columns, *incoming.columns]))
    parts = [p.reindex(columns=columns) for p in (keep, incoming) if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def add_records_to_zoo(zoo, records: list[dict], source: str, replaces: Iterable[str] = (),
                       writer: str = LOCAL_WRITER) -> tuple[int, int]:
    """Merge validated records into the zoo's ``records`` table by ``record_id`` (atomic write).

    A record already there (same id) is replaced by the new copy, and so are the rows whose ids are
    in ``replaces`` (a run's local record once it is published); rows without a record id (results
    that came from elsewhere) are kept. ``writer`` fills the ``writer`` column: ``local`` for the
    zoo owner's own results, the Hub user for a record they just pushed. Returns (records added,
    rows in the table).
    """
    from hubselect.zoo.staging import zoo_lock

    incoming = _records_frame(records, source=source, writers=[writer] * len(records)).drop_duplicates("record_id")
    replaces = set(replaces)
    with zoo_lock(zoo.path):                    # a sync swapping the zoo meanwhile would lose this row
        current = zoo.read_table("records")
        known = set() if current is None or "record_id" not in current.columns else \
            set(current["record_id"].dropna().astype(str))
        merged = _merge(current, incoming, replaces)
        added = int((~incoming["record_id"].isin(known)).sum())
        if added or current is None or known & replaces or len(incoming):
            zoo.write_table("records", merged)
    return added, len(merged)
