"""The shared edge dataset: fine-tuning records (model–dataset edges) and dataset profiles on the Hub.

Contributors push what they measured; everyone pulls it into their zoo (``hubselect sync``).
The dataset repo (default: ``$HUBSELECT_EDGES_REPO``, else ``hubselect/t2i-finetuning-records``)
is append-only, so that concurrent contributors never lose each other's records::

    README.md                                   dataset card (YAML: configs -> records/**/*.json)
    records/<id[:2]>/<id>.json                  one file per record, never rewritten
    profiles/<probe>/<dataset-slug>.safetensors dataset profiles (first writer wins)

**Content-addressed records.** A record's id (:func:`record_id`) is the SHA-256 of the whole
record (score included, canonical JSON), and its file is named by it: a file whose content no
longer matches its name has been rewritten and is skipped as *tampered*; pushing the same record
twice adds nothing. A push is ONE commit with the repo's head as parent commit: when someone else
committed in between, the Hub answers 412, and the push re-lists the repo and tries again (with
backoff), skipping whatever has appeared meanwhile.

**Provenance.** Who wrote a file is not a field of the file: a sync asks the Hub for the last
commit that changed each file (``get_paths_info(expand=True)``) and for that commit's authors
(the commit history, ``list_repo_commits``), both pinned to the revision it read. That writer
goes into the zoo's ``records`` table (column ``writer``), where the ranking counts one vote per
writer (:func:`hubselect.zoo.tables.aggregate_records`).

**Trust.** The zoo's ``trust.json`` (:class:`TrustPolicy`) says whose files a sync takes: by
default every writer the Hub let commit to the edge dataset (each one vote), narrowed by an
allow-list (``hubselect sync --only NAME``) or a deny-list (``--distrust NAME``), widened again
by ``--trust NAME`` and ``--trust-everyone``.

**Checks.** Every downloaded file is parsed and checked in full (:func:`check_record_file`,
:func:`check_profile_file`: types, sizes, finite values within the metric's plausible range,
repo-like fields valid Hub IDs, a profile's probe and dataset matching its path) before the zoo
is touched; a bad file is skipped and counted, never raised. The zoo then changes in one staged
step (:func:`hubselect.zoo.staging.staged_zoo`).

**Incremental.** The zoo keeps, in ``edges_sync.json``, the revision it last read and the verdict
on every file (blob id, writer, status), so the next sync downloads only files that are new or
whose blob changed; an unchanged edge dataset costs one metadata request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hubselect.errors import HubError, UserError
from hubselect.hub import HubClient, is_repo_id

log = logging.getLogger(__name__)

DEFAULT_EDGES_REPO = "hubselect/t2i-finetuning-records"
RECORD_FORMAT = "hubselect-record/2"
OLD_RECORD_FORMATS = ("hubselect-record/1",)     # id over a few fields only: forgeable, skipped on sync
REQUIRED_FIELDS = ("model", "model_sha", "dataset", "dataset_revision", "metric", "probe", "score",
                   "initial_score", "steps", "seed", "adapter_repo", "versions", "created_at")
PROVENANCE_COLUMNS = ["record_id", "metric", "probe", "model_sha", "dataset_revision", "steps", "seed",
                      "adapter_repo", "created_at", "versions", "source", "writer"]
LOCAL_WRITER = "local"           # the writer of records that never went through the Hub (the zoo's owner)

# -- bounds ------------------------------------------------------------------------------------------
FID_CAP = 1e4                    # FID-like scores (FID, KID, CMMD: lower is better) lie in [0, FID_CAP]
SCORE_CAP = 1e9                  # any other score: |score| <= SCORE_CAP
EXTRA_CAP = 1e12                 # extra numeric fields of a record (hyperparameters, KID, timings)
MAX_RECORD_BYTES = 64 * 1024
MAX_PROFILE_BYTES = 64 * 1024 * 1024
MAX_PROFILE_HEADER = 64 * 1024
MAX_PROFILE_DIM = 2048
MAX_PROFILE_SAMPLES = 10**9
MAX_TEXT = 256                   # characters of a free text field (printable only)
MAX_EXTRA_FIELDS = 64
MAX_INT = 2**63 - 1
_FID_LIKE = re.compile(r"(fid|kid|cmmd)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")             # metric
_PROBE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")               # probe (also a folder name)
_REVISION = re.compile(r"^[A-Za-z0-9._-]{1,96}$")                  # a commit sha or a content hash
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_TIMESTAMP = re.compile(r"^[0-9][0-9T:.+\-Z ]{0,39}$")

_RECORD_PATH = re.compile(r"^records/([0-9a-f]{2})/([0-9a-f]{64})\.json$")
_PROFILE_PATH = re.compile(r"^profiles/([A-Za-z][A-Za-z0-9-]{0,63})/([A-Za-z0-9._-]{1,200})\.safetensors$")
PUSH_ATTEMPTS = 12

SYNC_STATE_FILE = "edges_sync.json"
TRUST_FILE = "trust.json"
CHECKS_VERSION = 1               # bump when the checks change: verdicts of earlier checks are redone
BAD = ("tampered", "invalid", "too_large", "old_format", "no_author", "bad_path")   # skipped with a warning
NOT_USED = ("other_metric", "other_probe")                                         # fine, not for this zoo


def default_edges_repo() -> str:
    """``$HUBSELECT_EDGES_REPO``, else ``hubselect/t2i-finetuning-records``."""
    return os.environ.get("HUBSELECT_EDGES_REPO") or DEFAULT_EDGES_REPO


# -- records ----------------------------------------------------------------------------------------

def _canonical(record: dict) -> bytes:
    body = {k: v for k, v in record.items() if k not in ("format", "record_id")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def record_id(record: dict) -> str:
    """The SHA-256 (hex) of the whole record as canonical JSON: every field, the score included."""
    return hashlib.sha256(_canonical(record)).hexdigest()


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


def score_range(metric: str, higher_is_better: bool | None = None,
                declared: tuple[float, float] | None = None) -> tuple[float, float]:
    """The plausible range of a score of ``metric``.

    A zoo's own declaration (``"score_range": [lo, hi]`` in zoo.json) wins. Otherwise FID-like
    metrics (names ending in fid, kid or cmmd; lower is better) lie in [0, :data:`FID_CAP`]; a
    higher-is-better metric (accuracy) in [0, 1] (a zoo of percentages declares [0, 100]); an
    accuracy named as such with no zoo to say which form in [0, 100]; anything else within
    ±:data:`SCORE_CAP`.
    """
    if declared is not None:
        return float(declared[0]), float(declared[1])
    if _FID_LIKE.search(metric or ""):
        return 0.0, FID_CAP
    if higher_is_better:
        return 0.0, 1.0
    if "acc" in (metric or "").lower():
        return 0.0, 100.0
    return (-SCORE_CAP, SCORE_CAP) if higher_is_better is None else (0.0, SCORE_CAP)


def _text(value: Any, what: str, max_len: int = MAX_TEXT, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len or not value.isprintable():
        shown = value if not isinstance(value, str) else value[:60]
        raise UserError(f"{what} must be a non-empty printable string of at most {max_len} characters, "
                        f"got {shown!r}")
    if pattern is not None and not pattern.match(value):
        raise UserError(f"{what} {value!r} is not allowed (expected {pattern.pattern})")
    return value


def check_repo_like(value: Any, what: str, owner: bool = False) -> str:
    """``value`` when huggingface_hub's validator accepts it as a repo ID (``owner/name`` when ``owner``);
    so never a local path (no leading ``/`` ``.`` ``~``, no ``..``, at most one ``/``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    _text(value, what, max_len=200)
    try:
        validate_repo_id(value)
    except HFValidationError:
        raise UserError(f"{what} {value!r} is not a valid Hub repo ID") from None
    if owner and not is_repo_id(value):
        raise UserError(f"{what} {value!r} is not a Hub repo ID (owner/name)")
    return value


def validate_record(record: Any, bounds: tuple[float, float] | None = None) -> dict:
    """The record as a plain dict, or :class:`UserError` saying what is wrong with it.

    Checked: the required fields and their types; ``model``, ``dataset`` (and ``adapter_repo``)
    valid Hub repo IDs; ``metric``, ``probe``, revisions and ``created_at`` short names; ``score``
    and ``initial_score`` finite and within ``bounds`` (default: :func:`score_range` of the
    record's metric); ``steps``, ``seed`` non-negative integers; ``versions`` a small flat
    ``{name: version}``; at most :data:`MAX_EXTRA_FIELDS` extra fields, each a finite number
    (|x| ≤ :data:`EXTRA_CAP`), a short printable string, a boolean or null.
    """
    if not isinstance(record, dict):
        raise UserError(f"a record must be a dict, not {type(record).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    model, dataset = record.get("model"), record.get("dataset")
    where = (f"record {model!r} on {dataset!r}" if isinstance(model, str) and isinstance(dataset, str)
             and len(model) + len(dataset) < 300 else "record")
    if missing:
        raise UserError(f"{where} lacks field(s) {', '.join(missing)}")
    try:
        check_repo_like(record["model"], "model")
        check_repo_like(record["dataset"], "dataset")
        if record["adapter_repo"] is not None:
            check_repo_like(record["adapter_repo"], "adapter_repo", owner=True)
        _text(record["metric"], "metric", 64, _NAME)
        _text(record["probe"], "probe", 64, _PROBE)
        for k in ("model_sha", "dataset_revision"):
            if record[k] is not None:
                _text(record[k], k, 96, _REVISION)
        _text(record["created_at"], "created_at", 40, _TIMESTAMP)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    lo, hi = bounds if bounds is not None else score_range(record["metric"])
    if not _finite(record["score"]):
        raise UserError(f"{where}: score must be a finite number, got {record['score']!r}")
    if record["initial_score"] is not None and not _finite(record["initial_score"]):
        raise UserError(f"{where}: initial_score must be a finite number or null, got {record['initial_score']!r}")
    for k in ("score", "initial_score"):
        value = record[k]
        if value is not None and not lo <= value <= hi:
            raise UserError(f"{where}: {k} {value!r} is outside the plausible range [{lo:g}, {hi:g}] "
                            f"of {record['metric']}")
    for k in ("steps", "seed"):
        if not isinstance(record[k], int) or isinstance(record[k], bool) or not 0 <= record[k] <= MAX_INT:
            raise UserError(f"{where}: {k} must be a non-negative integer, got {record[k]!r}")
    versions = record["versions"]
    if not isinstance(versions, dict) or len(versions) > 16 or not all(
            isinstance(k, str) and _FIELD.match(k) and isinstance(v, str) and 0 < len(v) <= 64 and v.isprintable()
            for k, v in versions.items()):
        raise UserError(f"{where}: versions must be a dict of at most 16 {{name: version string}}")
    extra = [k for k in record if k not in REQUIRED_FIELDS]
    if len(extra) > MAX_EXTRA_FIELDS:
        raise UserError(f"{where}: {len(extra)} extra fields, at most {MAX_EXTRA_FIELDS} are allowed")
    for k in extra:
        value = record[k]
        if not isinstance(k, str) or not _FIELD.match(k):
            raise UserError(f"{where}: invalid field name {str(k)[:60]!r}")
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            if not _finite(value) or abs(value) > EXTRA_CAP:
                raise UserError(f"{where}: {k} must be finite and at most {EXTRA_CAP:g} in magnitude, got {value!r}")
            continue
        if isinstance(value, str):
            if len(value) > MAX_TEXT or not value.isprintable():
                raise UserError(f"{where}: {k} must be a printable string of at most {MAX_TEXT} characters")
            continue
        raise UserError(f"{where}: {k} must be a number, a string, a boolean or null, not {type(value).__name__}")
    try:
        _canonical(record)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where} is not JSON-serialisable: {exc}") from None
    return dict(record)


def check_pushable(model: str, dataset: str) -> None:
    """:class:`UserError` when a record of ``model`` on ``dataset`` could not be pushed (names that are not
    valid Hub repo IDs: a folder named with spaces, say); checked before a fine-tuning run starts."""
    for value, what in ((model, "model"), (dataset, "dataset")):
        try:
            check_repo_like(value, what)
        except UserError as exc:
            raise UserError(f"--push: the record's {exc}; the edge dataset only takes names that are valid "
                            "Hub repo IDs (rename the folder, or profile it under --name)") from None


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
  metric, probe, score, initial_score, steps, seed, adapter_repo, versions, created_at, and the
  run's hyperparameters). The id is a SHA-256 of the whole record, score included: a file whose
  content does not match its name is ignored. Files are never rewritten, so pushes never conflict.
* `profiles/<probe>/<dataset>.safetensors`: dataset profiles (mean and covariance of probe
  embeddings; safetensors, no pickle).

Who wrote a record is what the Hub's commit history says (the author of the last commit that
changed the file), and a sync counts one vote per writer.
"""


# -- profiles -----------------------------------------------------------------------------------------

class BadFile(Exception):
    """A downloaded file that a sync skips: ``reason`` (one of :data:`BAD` or :data:`NOT_USED`) and a detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _profile_header(data: bytes) -> dict:
    if len(data) < 8:
        raise BadFile("invalid", "not a safetensors file (shorter than its header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_PROFILE_HEADER or 8 + n > len(data):
        raise BadFile("invalid", f"safetensors header of {n} bytes (at most {MAX_PROFILE_HEADER}, within the file)")
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadFile("invalid", f"unreadable safetensors header ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise BadFile("invalid", "safetensors header is not a mapping")
    return header


def _meta_int(meta: dict, key: str, lo: int, hi: int, required: bool = True) -> int | None:
    value = meta.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]{1,19}", value) or not lo <= int(value) <= hi:
        raise BadFile("invalid", f"{key} must be an integer in [{lo}, {hi}], got {str(value)[:40]!r}")
    return int(value)


def check_profile_file(path: str, data: bytes, probe: str | None = None, dim: int | None = None):
    """The :class:`hubselect.profile.profiles.Profile` in ``data`` (the file at ``path`` of the edge dataset),
    or :class:`BadFile`.

    Checked: size; the safetensors header (bounded, a flat mapping); format; ``dataset`` a valid
    Hub repo ID whose file name (slug) is the path's; ``probe`` the path's folder (and ``probe``,
    the zoo's, when given: else ``other_probe``); ``n_samples`` in [2, 1e9]; every text field short
    and printable; ``skipped`` a small ``{reason: count}``; tensors ``mean`` (d ≤ 2048, ``dim``
    when given) and ``cov`` (d × d), finite, symmetric and positive semi-definite.
    """
    from safetensors.numpy import load as load_tensors

    from hubselect.profile.profiles import PROFILE_FORMAT, Profile, dataset_slug

    m = _PROFILE_PATH.match(path)
    if m is None:
        raise BadFile("bad_path", "not profiles/<probe>/<dataset>.safetensors")
    if len(data) > MAX_PROFILE_BYTES:
        raise BadFile("too_large", f"{len(data)} bytes (at most {MAX_PROFILE_BYTES})")
    header = _profile_header(data)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise BadFile("invalid", "no metadata, or metadata that is not {str: str}")
    if meta.get("format") != PROFILE_FORMAT:
        raise BadFile("invalid", f"format {str(meta.get('format'))[:40]!r} is not {PROFILE_FORMAT}")
    try:
        dataset = check_repo_like(meta.get("dataset"), "dataset")
        name = _text(meta.get("probe"), "probe", 64, _PROBE)
        for key in ("revision", "split", "image_column", "caption_column", "source", "created_at", "modality"):
            if key in meta and meta[key] != "":
                _text(meta[key], key)
    except UserError as exc:
        raise BadFile("invalid", str(exc)) from None
    if name != m.group(1):
        raise BadFile("invalid", f"probe {name!r} in a file under profiles/{m.group(1)}/")
    if f"{dataset_slug(dataset)}" != m.group(2):
        raise BadFile("invalid", f"dataset {dataset!r} in a file named {m.group(2)}.safetensors")
    if probe is not None and name != probe:
        raise BadFile("other_probe", f"probe {name}, the zoo's is {probe}")
    modality = meta.get("modality", "image")
    if modality not in ("image", "text"):
        raise BadFile("invalid", f"modality {modality[:40]!r}")
    n_samples = _meta_int(meta, "n_samples", 2, MAX_PROFILE_SAMPLES)
    seed = _meta_int(meta, "seed", 0, MAX_INT, required=False) or 0
    n_requested = _meta_int(meta, "n_requested", 1, MAX_PROFILE_SAMPLES, required=False)
    try:
        skipped = json.loads(meta.get("skipped", "{}"))
    except (ValueError, RecursionError):
        raise BadFile("invalid", "skipped is not JSON") from None
    if not isinstance(skipped, dict) or len(skipped) > 64 or not all(
            isinstance(k, str) and len(k) <= 64 and k.isprintable() and isinstance(v, int)
            and not isinstance(v, bool) and 0 <= v <= MAX_PROFILE_SAMPLES for k, v in skipped.items()):
        raise BadFile("invalid", "skipped must be a small {reason: count}")
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
        raise BadFile("invalid", f"unreadable tensors ({type(exc).__name__})") from None
    mean, cov = tensors.get("mean"), tensors.get("cov")
    if mean is None or cov is None:
        raise BadFile("invalid", "tensors mean and cov are required")
    if mean.dtype.kind != "f" or cov.dtype.kind != "f" or mean.ndim != 1:
        raise BadFile("invalid", f"mean {mean.dtype} {mean.shape} and cov {cov.dtype} must be float, mean 1-d")
    d = int(mean.shape[0])
    if not 1 <= d <= MAX_PROFILE_DIM or cov.shape != (d, d):
        raise BadFile("invalid", f"mean of {d} and cov of {cov.shape}: expected d x d with 1 <= d <= {MAX_PROFILE_DIM}")
    if "dim" in meta and _meta_int(meta, "dim", 1, MAX_PROFILE_DIM) != d:
        raise BadFile("invalid", f"dim {meta['dim']} but a mean of {d}")
    if dim is not None and d != dim:
        raise BadFile("invalid", f"{d} dimensions, the zoo's {name} profiles have {dim}")
    mean, cov = mean.astype(np.float64), cov.astype(np.float64)
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
        raise BadFile("invalid", "mean or covariance is not finite")
    scale = max(float(np.abs(cov).max()), 1e-300)
    if float(np.abs(cov - cov.T).max()) > 1e-6 * scale:
        raise BadFile("invalid", "covariance is not symmetric")
    if float(np.linalg.eigvalsh((cov + cov.T) / 2).min()) < -1e-6 * scale:
        raise BadFile("invalid", "covariance is not positive semi-definite")
    source = meta.get("source", "")
    if not (source.startswith("hub:") and is_repo_id(source[4:])):
        source = ""                      # another machine's folder path means nothing here
    return Profile(dataset=dataset, probe=name, n_samples=n_samples, mean=mean, covariance=(cov + cov.T) / 2,
                   revision=meta.get("revision") or None, source=source, split=meta.get("split") or None,
                   image_column=meta.get("image_column") or None, caption_column=meta.get("caption_column") or None,
                   modality=modality, skipped={k: int(v) for k, v in skipped.items()}, n_requested=n_requested,
                   seed=seed, created_at=meta.get("created_at", ""))


def check_record_file(path: str, data: bytes, metric: str | None = None,
                      bounds: tuple[float, float] | None = None) -> dict:
    """The record in ``data`` (the file at ``path`` of the edge dataset), or :class:`BadFile`.

    In this order: size; JSON (deep nesting included); the format (``hubselect-record/1`` files:
    ``old_format``); the SHA-256 of the content against the file's name (``tampered``);
    :func:`validate_record` with ``bounds`` (``invalid``); the zoo's ``metric`` (``other_metric``).
    """
    m = _RECORD_PATH.match(path)
    if m is None:
        raise BadFile("bad_path", "not records/<id[:2]>/<id>.json")
    if len(data) > MAX_RECORD_BYTES:
        raise BadFile("too_large", f"{len(data)} bytes (at most {MAX_RECORD_BYTES})")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        raise BadFile("invalid", f"not JSON ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise BadFile("invalid", f"a record must be a JSON object, not {type(raw).__name__}")
    fmt = raw.get("format")
    if fmt in OLD_RECORD_FORMATS:
        raise BadFile("old_format", f"{fmt}: its id does not cover the score; the writer can push it again")
    if fmt != RECORD_FORMAT:
        raise BadFile("invalid", f"format {str(fmt)[:40]!r} is not {RECORD_FORMAT}")
    try:
        rid = record_id(raw)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BadFile("invalid", f"not canonical JSON ({type(exc).__name__})") from None
    if rid != m.group(2) or m.group(1) != rid[:2]:
        raise BadFile("tampered", "its content does not hash to its name")
    body = {k: v for k, v in raw.items() if k not in ("format", "record_id")}
    try:
        record = validate_record(body, bounds=bounds)
    except UserError as exc:
        raise BadFile("invalid", str(exc)) from None
    if metric is not None and record["metric"] != metric:
        raise BadFile("other_metric", f"metric {record['metric']}, the zoo's is {metric}")
    return record


# -- push -------------------------------------------------------------------------------------------

def _profile_files(profiles: Iterable) -> dict[str, bytes]:
    """{repo path: bytes} for Profile objects or paths of profile files (each read and checked as a sync
    would check it); a local folder's path is not published (``source`` becomes ``local``)."""
    from dataclasses import replace

    from hubselect.profile.profiles import Profile, dataset_slug

    out: dict[str, bytes] = {}
    for item in profiles:
        profile = item if isinstance(item, Profile) else Profile.load(Path(item))
        if not re.match(r"^[A-Za-z][A-Za-z0-9-]*$", profile.probe):
            raise UserError(f"invalid probe name {profile.probe!r} in the profile of {profile.dataset!r}")
        if not profile.source.startswith("hub:"):
            profile = replace(profile, source="local")
        path = f"profiles/{profile.probe}/{dataset_slug(profile.dataset)}.safetensors"
        data = profile.to_bytes()
        try:
            check_profile_file(path, data)
        except BadFile as exc:
            raise UserError(f"the profile of {profile.dataset!r} cannot be shared: {exc.detail}") from None
        out[path] = data
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
                 profiles: Iterable = (), attempts: int = PUSH_ATTEMPTS,
                 bounds: tuple[float, float] | None = None) -> list[str]:
    """Push records (and profiles) to the edge dataset in one commit; returns the ids of the records added.

    Every record is validated (:func:`validate_record`, with ``bounds`` or its metric's default
    range) and every profile checked as a sync checks it, before any network call. The repo is
    created when missing. Records (and profiles) already on the Hub are skipped, so pushing twice
    is harmless. A commit refused because someone else committed first (412) is retried against
    the new head, with backoff. Raises :class:`UserError` without write access (nothing is written).
    """
    repo_id = _check_repo_id(repo_id or default_edges_repo())
    valid = [validate_record(r, bounds=bounds) for r in records]
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


# -- trust --------------------------------------------------------------------------------------------

@dataclass
class TrustPolicy:
    """Whose files a sync takes (the zoo's ``trust.json``).

    ``trusted`` None: every writer (the default of a fresh zoo: whoever the Hub let commit to the
    edge dataset, each counted once); a list: only those writers (``sync --only``). ``distrusted``: never these,
    whatever ``trusted`` says. A writer is a Hub user name, or ``a+b`` for a commit with several
    authors (one more voice, so that naming a co-author never borrows that author's trust).
    """

    trusted: list[str] | None = None
    distrusted: list[str] = field(default_factory=list)

    def allows(self, writer: str | None) -> bool:
        if writer is None or writer in self.distrusted:
            return False
        return self.trusted is None or writer in self.trusted

    def updated(self, trust: Iterable[str] = (), distrust: Iterable[str] = (), only: Iterable[str] = (),
                trust_everyone: bool = False) -> TrustPolicy:
        """The policy after ``hubselect sync`` options: ``only`` sets the allow-list (narrows);
        ``trust_everyone`` drops it; ``trust`` takes writers off the deny-list and onto the allow-list
        when there is one (widens); ``distrust`` puts writers on the deny-list (and off the allow-list)."""
        trust, distrust = {_writer_name(w) for w in trust}, {_writer_name(w) for w in distrust}
        only = {_writer_name(w) for w in only}
        trusted = None if trust_everyone else set(only) if only else \
            None if self.trusted is None else set(self.trusted)
        if trusted is not None:
            trusted = sorted((trusted | trust) - distrust)
        return TrustPolicy(trusted=trusted, distrusted=sorted((set(self.distrusted) - trust - only) | distrust))

    def to_dict(self) -> dict:
        return {"format": 1, "trusted": self.trusted, "distrusted": list(self.distrusted)}


def _writer_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+:-]{0,199}", name):
        raise UserError(f"invalid writer name {str(name)[:60]!r} (a Hub user name)")
    return name


def load_trust(zoo_path: str | os.PathLike) -> TrustPolicy:
    """The zoo's trust policy (``trust.json``; the default when there is none)."""
    path = Path(zoo_path) / TRUST_FILE
    if not path.is_file():
        return TrustPolicy()
    try:
        raw = json.loads(path.read_bytes())
        if not isinstance(raw, dict) or raw.get("format", 1) != 1:
            raise ValueError("expected {\"format\": 1, \"trusted\": null or [names], \"distrusted\": [names]}")
        trusted = raw.get("trusted")
        if trusted is not None:
            if not isinstance(trusted, list):
                raise TypeError("trusted must be null or a list of names")
            trusted = sorted({_writer_name(w) for w in trusted})
        distrusted = raw.get("distrusted") or []
        if not isinstance(distrusted, list):
            raise TypeError("distrusted must be a list of names")
        return TrustPolicy(trusted=trusted, distrusted=sorted({_writer_name(w) for w in distrusted}))
    except (OSError, ValueError, TypeError, RecursionError, UserError) as exc:
        raise UserError(f"{path}: unreadable trust settings ({exc})") from None


def writer_of(authors: Iterable[Any]) -> str | None:
    """The writer a file counts for, from its last commit's authors (None when there are none).

    Several authors make one writer ``a+b`` (sorted). A Hub user named like the zoo's own
    writer (``local``) is written ``hub:local``, so that nobody can vote as the zoo's owner.
    """
    names = sorted({a for a in authors if isinstance(a, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", a)})
    if not names:
        return None
    writer = "+".join(names)
    return f"hub:{writer}" if writer == LOCAL_WRITER else writer


# -- sync state -----------------------------------------------------------------------------------------

def _zoo_score_range(zoo_path: Path, info) -> tuple[float, float]:
    """The zoo's declared ``score_range`` (zoo.json), else :func:`score_range` of its metric."""
    declared = None
    try:
        raw = json.loads((zoo_path / "zoo.json").read_bytes())
    except (OSError, ValueError):
        raw = {}
    value = raw.get("score_range") if isinstance(raw, dict) else None
    if value is not None:
        if not (isinstance(value, list) and len(value) == 2 and all(_finite(v) for v in value)
                and value[0] < value[1]):
            raise UserError(f"{zoo_path / 'zoo.json'}: score_range must be [low, high] (two finite numbers, "
                            f"low < high), got {str(value)[:60]}")
        declared = (float(value[0]), float(value[1]))
    return score_range(info.metric, info.higher_is_better, declared)


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

    repo_id = _check_repo_id(repo_id or default_edges_repo())
    zoo_path = Path(zoo.path if isinstance(zoo, Zoo) else zoo if zoo is not None else default_zoo_dir(write=True))
    tidy(zoo_path)                               # a sync killed half-way left something beside the zoo
    exists = (zoo_path / "zoo.json").is_file()
    if not exists and zoo_path.exists() and not zoo_path.is_dir():
        raise UserError(f"{zoo_path} is a file, not a zoo directory")
    info = Zoo(zoo_path).info if exists else ZooInfo()
    bounds = _zoo_score_range(zoo_path, info) if exists else score_range(info.metric, info.higher_is_better)
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
        raise _hub_user_error(exc, repo_id, "sync from") from None

    # 1. what is known, what is new (or changed), and who wrote the new files
    files: dict[str, dict] = {}
    fresh: list[str] = []
    for p, (oid, size) in sorted(listing.items()):
        old = prev_files.get(p)
        if old is not None and old["oid"] == oid:
            files[p] = dict(old)
        elif not (_RECORD_PATH.match(p) or _PROFILE_PATH.match(p)):
            files[p] = {"oid": oid, "size": size, "status": "bad_path", "writer": None,
                        "detail": "not records/<id[:2]>/<id>.json or profiles/<probe>/<dataset>.safetensors"}
        else:
            files[p] = {"oid": oid, "size": size, "status": None}
            fresh.append(p)
    try:
        last = client.last_commits(repo_id, fresh, revision=head) if fresh else {}
        authors = client.commit_authors(repo_id, set(last.values()), revision=head)
    except HubError as exc:
        raise _hub_user_error(exc, repo_id, "sync from") from None
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
        is_record = bool(_RECORD_PATH.match(p))
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
            raise _hub_user_error(exc, repo_id, "sync from") from None

    dim = _profile_dim(zoo_path, info.probe) if any(p.startswith("profiles/") for p in fetch) else None
    new_records: list[tuple[dict, str]] = []
    new_profiles: list[tuple[Any, bytes, str]] = []
    for p in fetch:
        e, content = files[p], data[p]
        e.pop("detail", None)
        try:
            if hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() != e["oid"]:
                raise BadFile("tampered", "the content downloaded is not the blob the Hub listed")
            if _RECORD_PATH.match(p):
                record = check_record_file(p, content, metric=info.metric, bounds=bounds)
                e.update(status="ok", id=record_id(record))
                new_records.append((record, e["writer"]))
            else:
                profile = check_profile_file(p, content, probe=info.probe or "", dim=dim)   # "": a zoo of no probe
                dim = profile.dim if dim is None else dim
                e.update(status="ok", dataset=profile.dataset, fingerprint=_fingerprint(profile))
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
            if target.is_file() and _fingerprint(target) == e["fingerprint"]:
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


def _fingerprint(profile) -> str | None:
    """What a profile says (dataset, probe, samples, mean, covariance), hashed: the zoo's copy of a pulled
    profile is recognised by it (safetensors files of one profile may differ in their header's order)."""
    from hubselect.profile.profiles import Profile

    if not isinstance(profile, Profile):
        try:
            profile = Profile.load(profile)
        except (UserError, KeyError, ValueError):
            return None
    h = hashlib.sha256(json.dumps([profile.dataset, profile.probe, profile.n_samples]).encode())
    h.update(np.ascontiguousarray(profile.mean, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(profile.covariance, dtype=np.float64).tobytes())
    return h.hexdigest()


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
