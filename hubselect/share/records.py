"""The edge dataset's format: its repo, its layout, the record format and the checks of a record file.

The dataset repo (:func:`edges_repo`: ``$HUBSELECT_EDGES_REPO``, else ``hubselect/t2i-finetuning-records``)
is append-only, so that concurrent contributors never lose each other's records::

    README.md                                   dataset card (YAML: configs -> records/**/*.json)
    records/<id[:2]>/<id>.json                  one file per record, never rewritten
    profiles/<probe>/<dataset-slug>.safetensors dataset profiles (first writer wins; :mod:`.profiles`)

**Content-addressed records.** A record's id (:func:`record_id`) is the SHA-256 of the whole
record (score included, canonical JSON), and its file is named by it: a file whose content no
longer matches its name has been rewritten and is skipped as *tampered*; pushing the same record
twice adds nothing.

**Checks.** Every downloaded file is parsed and checked in full (:func:`check_record_file`,
:func:`hubselect.share.profiles.check_profile_file`: types, sizes, finite values within the metric's
plausible range, repo-like fields valid Hub IDs) before the zoo is touched; a bad file is a
:class:`BadFile`, which a sync skips and counts, never raises.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hubselect import constants
from hubselect.constants import DEFAULT_EDGES_REPO  # noqa: F401  (0.1's name, at its old place)
from hubselect.constants import DEFAULT_PROBE, PROBE_NAME
from hubselect.errors import UserError
from hubselect.hub import check_repo_id, is_repo_id

RECORD_FORMAT = "hubselect-record/2"
OLD_RECORD_FORMATS = ("hubselect-record/1",)     # id over a few fields only: forgeable, skipped on sync
REQUIRED_FIELDS = ("model", "model_sha", "dataset", "dataset_revision", "metric", "probe", "score",
                   "initial_score", "steps", "seed", "adapter_repo", "versions", "created_at")

# -- bounds ------------------------------------------------------------------------------------------
FID_CAP = 1e4                    # FID-like scores (FID, KID, CMMD: lower is better) lie in [0, FID_CAP]
SCORE_CAP = 1e9                  # any other score: |score| <= SCORE_CAP
EXTRA_CAP = 1e12                 # extra numeric fields of a record (hyperparameters, KID, timings)
MAX_RECORD_BYTES = 64 * 1024
MAX_TEXT = 256                   # characters of a free text field (printable only)
MAX_EXTRA_FIELDS = 64
MAX_INT = 2**63 - 1
_FID_LIKE = re.compile(r"(fid|kid|cmmd)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")             # metric
_REVISION = re.compile(r"^[A-Za-z0-9._-]{1,96}$")                  # a commit sha or a content hash
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_TIMESTAMP = re.compile(r"^[0-9][0-9T:.+\-Z ]{0,39}$")
_RECORD_PATH = re.compile(r"^records/([0-9a-f]{2})/([0-9a-f]{64})\.json$")

# -- what a sync does with a file it skips ----------------------------------------------------------------
BAD = ("tampered", "invalid", "too_large", "old_format", "no_author", "bad_path")   # skipped with a warning
NOT_USED = ("other_metric", "other_probe")                                         # fine, not for this zoo


class BadFile(Exception):
    """A downloaded file that a sync skips: ``reason`` (one of :data:`BAD` or :data:`NOT_USED`) and a detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def edges_repo(repo_id: str | None = None) -> str:
    """The edge dataset's repo ID: ``repo_id`` when given, else :func:`hubselect.constants.edges_repo`
    (``$HUBSELECT_EDGES_REPO`` or the shared one); :class:`UserError` when it is not ``owner/name``."""
    return check_repo_id(repo_id or constants.edges_repo(), "the edge dataset")


def default_edges_repo() -> str:
    """0.1's name of :func:`hubselect.constants.edges_repo` (unchecked; :func:`edges_repo` checks)."""
    return constants.edges_repo()


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


def is_record_path(path: str) -> bool:
    """Whether ``path`` (in the edge dataset) is where a record lives: ``records/<id[:2]>/<id>.json``."""
    return _RECORD_PATH.match(path) is not None


def record_bytes(record: dict) -> bytes:
    """The content of a record's file: the record with its format and id, as indented JSON."""
    body = {"format": RECORD_FORMAT, "record_id": record_id(record), **record}
    return (json.dumps(body, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def make_record(model: str, dataset: str, score: float, *, metric: str = "clip-fid", probe: str = DEFAULT_PROBE,
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


def zoo_score_range(zoo_path: Path, info) -> tuple[float, float]:
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


def check_text(value: Any, what: str, max_len: int = MAX_TEXT, pattern: re.Pattern | None = None) -> str:
    """``value`` when it is a non-empty printable string of at most ``max_len`` characters that ``pattern``
    matches in full; :class:`UserError` naming ``what`` otherwise."""
    if not isinstance(value, str) or not value or len(value) > max_len or not value.isprintable():
        shown = value if not isinstance(value, str) else value[:60]
        raise UserError(f"{what} must be a non-empty printable string of at most {max_len} characters, "
                        f"got {shown!r}")
    if pattern is not None and not pattern.fullmatch(value):
        raise UserError(f"{what} {value!r} is not allowed (expected {pattern.pattern})")
    return value


def check_repo_like(value: Any, what: str, owner: bool = False) -> str:
    """``value`` when huggingface_hub's validator accepts it as a repo ID (``owner/name`` when ``owner``);
    so never a local path (no leading ``/`` ``.`` ``~``, no ``..``, at most one ``/``)."""
    check_text(value, what, max_len=200)
    if not is_repo_id(value, owner=owner):
        raise UserError(f"{what} {value!r} is not a valid Hub repo ID" + (" (owner/name)" if owner else ""))
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
        check_text(record["metric"], "metric", 64, _NAME)
        check_text(record["probe"], "probe", 64, PROBE_NAME)
        for k in ("model_sha", "dataset_revision"):
            if record[k] is not None:
                check_text(record[k], k, 96, _REVISION)
        check_text(record["created_at"], "created_at", 40, _TIMESTAMP)
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

