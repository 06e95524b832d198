"""A local, Hugging Face Hub-compatible HTTP server for tests.

The real ``huggingface_hub`` client (``HfApi``, ``hf_hub_download``, ``snapshot_download``, ``create_repo``,
``create_commit``/``upload_file``, ``list_models``, ``list_repo_files``/``list_repo_tree``, ``model_info``,
``dataset_info``, ``repo_info``, ...) talks to it over real HTTP when ``HF_ENDPOINT`` points at it.
The URLs, query parameters, headers and JSON keys answered here are the ones huggingface_hub 2.x sends and reads
(see ``hf_api.py``, ``file_download.py``, ``_commit_api.py`` and ``utils/_http.py`` in the installed client).

Storage layout (a plain folder, e.g. a temporary copy of ``shared/hub_fixtures``)::

    ROOT/models/<org>/<name>/<files...>
    ROOT/datasets/<org>/<name>/<files...>
    ROOT/.meta/models/<org>/<name>.json      optional sidecar metadata, never served as a file
    ROOT/.meta/datasets/<org>/<name>.json

Sidecar keys: ``downloads``, ``likes``, ``tags``, ``pipeline_tag``, ``library_name``, ``gated`` (false/"auto"/"manual";
without it, a README whose front matter has ``extra_gated_*`` keys makes the repo gated "auto"),
``private``, ``disabled``, ``created_at``, ``last_modified``, ``trending_score``, ``downloads_all_time``,
``description`` (datasets).

History: every commit made through the endpoint is recorded (``ROOT/.history/<type>s/<org>/<name>/commits.json``,
with a copy of each committed blob in ``ROOT/.history/objects/``): its id, parent, author (the user of the token that
made it), title, message, date and the paths it changed. Every commit id stays a readable revision (info, tree,
paths-info, resolve), as on the Hub; ``list_repo_commits`` (``/api/<type>s/<id>/commits/<rev>``, newest first,
``commits_page_size`` per page) answers the authors, and ``list_repo_tree``/``get_paths_info`` with ``expand=True``
answer each file's ``lastCommit`` (the last commit that changed it). Files that changed outside the endpoint (a
fixture folder, ``make_repo``) count as one more commit whose id is the sha1 of the sorted ``(path, git blob sha1)``
manifest, authored by the sidecar's ``author`` or else the repo's namespace: a repo that never saw a commit keeps a
sha that is stable across restarts and changes exactly when a file changes. Revisions ``main``,
``refs/heads/main`` and commit ids are accepted; anything else is ``RevisionNotFound``.

Users: every valid token belongs to ``username`` unless ``server.add_user("alice")`` (which returns alice's write
token, ``hf_alice_write``) or ``users={token: name}`` says otherwise; ``whoami``, the default namespace of
``create_repo`` and commit authors follow the token's user.

Faults (thread-safe)::

    server.inject("503", repo_id="org/name", path_glob="*.safetensors", times=1)
    server.inject("timeout")            # every request: sleep `server.timeout_delay` s, then drop the connection
    server.clear_faults()

Kinds: "500", "502", "503", "timeout", "401", "403", "404", "malformed_json".

* ``repo_id=None`` matches every request (list/whoami/... included); otherwise only requests about that repo.
* ``path_glob=None`` matches any request of the repo (API calls included); otherwise only file resolves whose
  path matches (``fnmatch``, ``*`` also crosses ``/``).
* ``times=None``: forever; ``times=N``: the next N matching requests, then the fault is gone.
* "401"/"403" answer with ``X-Error-Code: GatedRepo`` on repo requests (client raises ``GatedRepoError``).
* "404" answers ``EntryNotFound`` on file resolves and ``RepoNotFound`` on repo API calls.
* "timeout" sleeps ``timeout_delay`` seconds (other requests are still served) and closes the connection without
  answering: a client with a shorter timeout gets a timeout error, one without gets a "server disconnected" error.
  It is logged with status 0.
* "malformed_json" replaces a 200 JSON body (API answers, and resolves of ``*.json`` files) with its first half.
  On file resolves, HEAD shows the metadata of the malformed body without using up the fault and GET uses it up,
  so that one ``hf_hub_download`` gets a consistent (size/ETag) but invalid file. That file is announced with its
  own ETag and a transient ``X-Repo-Commit`` (not a valid revision), so the client caches it apart from the real
  commit and a plain retry after the fault is gone downloads the real file.

Python API::

    server = HubServer(root, host="127.0.0.1", port=0).start()   # or: with HubServer(root) as server: ...
    server.url                       # http://127.0.0.1:<port>
    server.tokens                    # {"hf_write": "write", "hf_read": "read"}; writes need a write token
    server.gated_denied_tokens       # valid tokens refused on gated repos (403 GatedRepo)
    server.request_log               # [(method, path, status)], status 0 = connection dropped ("timeout")
    server.resolved_files()          # [(repo_id, path)] of successful GET resolves (include_head=True: HEADs too)
    server.repo_sha("org/name")      # current commit id
    server.add_user("alice")         # -> "hf_alice_write"; commits with it are authored by alice
    server.commits("org/name", "dataset")   # history, newest first: {id, authors, title, date, tree, changes}
    server.stop()
    make_repo(root, "org/name", {"model_index.json": "{...}"}, repo_type="model", meta={"downloads": 3})

Hugging Face Jobs (``HfApi.run_job``, ``inspect_job``, ``list_jobs``, ``fetch_job_logs``, ``cancel_job``,
``wait_for_job``) are answered too, without running anything: a submitted Job is stored as submitted
(``server.jobs[job_id]["spec"]``, secrets included, for the tests to inspect) and starts in stage SCHEDULING;
every ``inspect_job`` moves it one stage on (RUNNING, then ``server.job_final_stage``, default COMPLETED);
``cancel_job`` moves it to CANCELED. Answers never echo secret values (their names map to null). Its log is a few
synthetic lines (the image, the flavor and the command), served as the Hub's server-sent events.

HTTP control endpoints (not logged, never faulted) for a server started by hand::

    POST   /_test/faults   {"kind": "503", "repo_id": null, "path_glob": null, "times": 1}  (or a list of those)
    GET    /_test/faults
    DELETE /_test/faults
    GET    /_test/log      {"requests": [[method, path, status], ...], "resolved": [[repo_id, path], ...]}
    DELETE /_test/log
    GET    /_test/jobs     {"jobs": [{"id", "namespace", "stage", "spec"}, ...]}  (specs as submitted)

Start by hand::

    python -m tests.hub_server --root PATH [--host 127.0.0.1] [--port 8765]

This module uses the standard library only (PyYAML is used, when importable, to parse README front matter).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import mimetypes
import os
import re
import shutil
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = [
    "FAULT_KINDS",
    "READ_TOKEN",
    "WRITE_TOKEN",
    "Fault",
    "HubServer",
    "configure_hf_client",
    "make_repo",
]

WRITE_TOKEN = "hf_write"
READ_TOKEN = "hf_read"
DEFAULT_TOKENS = {WRITE_TOKEN: "write", READ_TOKEN: "read"}
FAULT_KINDS = frozenset({"500", "502", "503", "timeout", "401", "403", "404", "malformed_json"})

_PLURAL = {"model": "models", "dataset": "datasets"}
_SINGULAR = {"models": "model", "datasets": "dataset"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_CHUNK = 1024 * 1024
_JOB_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]*$")  # label values are also stored as tags on the Hub
_JOB_TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
_SERVER_ERROR_MESSAGES = {
    500: "Internal Error - We're working hard to fix this as soon as possible!",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


# --------------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _norm_date(value: Any, fallback: float) -> str:
    """Metadata dates may be ISO strings or epoch numbers; answer the Hub's `...T..:..:..(.fff)Z` format."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _iso(float(value))
    if isinstance(value, str) and value:
        try:
            d = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if d.tzinfo is None:
            d = d.replace(tzinfo=timezone.utc)
        return _iso(d.timestamp())
    return _iso(fallback)


def _date_key(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0


def _git_blob_sha1(data: bytes) -> str:
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def _tree_sha(files: dict) -> str:
    """sha1 of the sorted (path, blob oid) manifest: what the files of a repo are."""
    manifest = "".join(f"{p}\0{files[p].oid}\n" for p in sorted(files))
    return hashlib.sha1(manifest.encode("utf-8", errors="surrogateescape")).hexdigest()


def _replay(commits: list[dict]) -> dict[str, str]:
    """{path: blob oid} after ``commits`` (oldest first)."""
    out: dict[str, str] = {}
    for commit in commits:
        for p, oid in (commit.get("changes") or {}).items():
            if oid is None:
                out.pop(p, None)
            else:
                out[p] = oid
    return out


def _object_id(repo_type: str, repo_id: str) -> str:
    return hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24]


def _valid_repo_id(repo_id: str) -> bool:
    parts = repo_id.split("/")
    return len(parts) == 2 and all(_NAME_RE.match(p) and ".." not in p for p in parts)


def _clean_repo_path(path: str) -> str | None:
    """Normalise a path inside a repo; None if it escapes the repo or is empty."""
    if not path or "\\" in path or "\0" in path or path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].strip().lower() in ("1", "true", "yes", "on")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _parse_front_matter(text: str) -> dict | None:
    if not text.startswith("---"):
        return None
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            block = "\n".join(lines[1:i])
            try:
                import yaml  # PyYAML; optional
            except ImportError:  # pragma: no cover - PyYAML is installed in this project
                return None
            try:
                data = yaml.safe_load(block)
            except yaml.YAMLError:
                return None
            return data if isinstance(data, dict) else None
    return None


def _yaml_error(text: str) -> str | None:
    """Error message if README front matter is not valid YAML (for /api/validate-yaml)."""
    if not text.startswith("---"):
        return None
    lines = text.splitlines()
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            try:
                import yaml
            except ImportError:  # pragma: no cover
                return None
            try:
                data = yaml.safe_load("\n".join(lines[1:i]))
            except yaml.YAMLError as e:
                return f"Invalid YAML in README.md metadata: {e}"
            if data is not None and not isinstance(data, dict):
                return "README.md metadata must be a YAML mapping"
            return None
    return None


# --------------------------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _File:
    path: str
    abspath: str | Path       # str when scanned (pathlib is slow for hundreds of files per request)
    size: int
    oid: str
    mtime: float


@dataclass
class _RepoState:
    repo_type: str
    repo_id: str
    directory: Path
    files: dict[str, _File]
    sha: str
    meta: dict
    card_data: dict | None
    last_modified: str
    created_at: str
    private: bool
    gated: Any
    disabled: bool
    downloads: int
    downloads_all_time: int
    likes: int
    trending_score: int
    tags: list[str]
    pipeline_tag: str | None
    library_name: str | None
    config: dict | None
    used_storage: int
    tree: str = ""                                   # sha1 of the manifest: what the files are
    commits: list[dict] = field(default_factory=list)  # history up to this state, oldest first

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]

    def folders(self) -> set[str]:
        out: set[str] = set()
        for p in self.files:
            parent = PurePosixPath(p).parent
            while str(parent) not in (".", ""):
                out.add(str(parent))
                parent = parent.parent
        return out


class _Storage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[tuple[str, str], threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._create_lock = threading.Lock()
        self._oid_cache: dict[tuple, str] = {}
        self._json_cache: dict[str, Any] = {}
        self._history_cache: dict[str, tuple[tuple, list[dict]]] = {}
        self._cache_guard = threading.Lock()

    # -- paths -----------------------------------------------------------------------------------------------------

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / _PLURAL[repo_type] / repo_id

    def meta_path(self, repo_type: str, repo_id: str) -> Path:
        return self.root / ".meta" / _PLURAL[repo_type] / f"{repo_id}.json"

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return _valid_repo_id(repo_id) and self.repo_dir(repo_type, repo_id).is_dir()

    def lock(self, repo_type: str, repo_id: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault((repo_type, repo_id), threading.RLock())

    def list_repo_ids(self, repo_type: str) -> list[str]:
        base = self.root / _PLURAL[repo_type]
        out = []
        if not base.is_dir():
            return out
        for org in sorted(base.iterdir()):
            if not org.is_dir() or org.name.startswith("."):
                continue
            for repo in sorted(org.iterdir()):
                if repo.is_dir() and not repo.name.startswith("."):
                    rid = f"{org.name}/{repo.name}"
                    if _valid_repo_id(rid):
                        out.append(rid)
        return out

    # -- reading ---------------------------------------------------------------------------------------------------

    def read_meta(self, repo_type: str, repo_id: str) -> dict:
        p = self.meta_path(repo_type, repo_id)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_meta(self, repo_type: str, repo_id: str, meta: dict) -> None:
        self._atomic_write(self.meta_path(repo_type, repo_id), json.dumps(meta, indent=2, sort_keys=True).encode())

    def _oid(self, abspath: Path, st: os.stat_result) -> str:
        key = (str(abspath), st.st_ino, st.st_size, st.st_mtime_ns)
        with self._cache_guard:
            oid = self._oid_cache.get(key)
        if oid is None:
            h = hashlib.sha1(b"blob %d\0" % st.st_size)
            with open(abspath, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    h.update(chunk)
            oid = h.hexdigest()
            with self._cache_guard:
                self._oid_cache[key] = oid
        return oid

    def _json_of(self, f: _File) -> Any:
        with self._cache_guard:
            if f.oid in self._json_cache:
                return self._json_cache[f.oid]
        try:
            value = json.loads(Path(f.abspath).read_bytes())
        except (OSError, ValueError):
            value = None
        with self._cache_guard:
            self._json_cache[f.oid] = value
        return value

    def _text_of(self, f: _File) -> str:
        try:
            return Path(f.abspath).read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def state(self, repo_type: str, repo_id: str) -> _RepoState | None:
        """Snapshot of a repo (None if it does not exist). Consistent with respect to commits."""
        if not self.exists(repo_type, repo_id):
            return None
        with self.lock(repo_type, repo_id):
            return self._state_unlocked(repo_type, repo_id)

    def _scan(self, directory: Path) -> dict[str, _File]:
        """{path in repo: file}, sorted by path (``.git`` folders left out)."""
        files: dict[str, _File] = {}
        stack = [("", str(directory))]
        while stack:
            rel, folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir():
                        if entry.name != ".git":
                            stack.append((f"{rel}{entry.name}/", entry.path))
                        continue
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except OSError:
                    continue
                path = rel + entry.name
                files[path] = _File(path, entry.path, st.st_size, self._oid(entry.path, st), st.st_mtime)
        return dict(sorted(files.items()))

    def _state_unlocked(self, repo_type: str, repo_id: str) -> _RepoState | None:
        directory = self.repo_dir(repo_type, repo_id)
        if not directory.is_dir():
            return None
        files = self._scan(directory)
        tree = _tree_sha(files)
        meta = self.read_meta(repo_type, repo_id)

        try:
            dir_mtime = directory.stat().st_mtime
        except OSError:
            dir_mtime = time.time()
        mtimes = [f.mtime for f in files.values()]
        newest = max(mtimes) if mtimes else dir_mtime
        oldest = min(mtimes) if mtimes else dir_mtime
        last_modified = _norm_date(meta.get("last_modified", meta.get("lastModified")), newest)
        created_at = _norm_date(meta.get("created_at", meta.get("createdAt")), min(oldest, dir_mtime))

        card = None
        if "README.md" in files:
            card = _parse_front_matter(self._text_of(files["README.md"]))

        library_name: str | None = None
        pipeline_tag: str | None = None
        config: dict | None = None
        extra_tags: list[str] = []
        if repo_type == "model":
            model_index = self._json_of(files["model_index.json"]) if "model_index.json" in files else None
            is_diffusers = "model_index.json" in files
            for p, f in files.items():
                pp = PurePosixPath(p)
                if pp.name == "config.json" and pp.parent.name in ("unet", "transformer"):
                    cfg = self._json_of(f)
                    if isinstance(cfg, dict) and str(cfg.get("_class_name", "")).endswith("Model"):
                        is_diffusers = True
            if isinstance(model_index, dict) and model_index.get("_class_name"):
                config = {"diffusers": {"_class_name": model_index["_class_name"]}}
                extra_tags.append(f"diffusers:{model_index['_class_name']}")
            elif "config.json" in files:
                cfg = self._json_of(files["config.json"])
                if isinstance(cfg, dict):
                    config = {k: cfg[k] for k in ("architectures", "model_type") if k in cfg} or None
            derived_library = "diffusers" if is_diffusers else None
            derived_pipeline = "text-to-image" if is_diffusers else None
            card_d = card or {}
            library_name = (
                meta["library_name"] if "library_name" in meta else card_d.get("library_name") or derived_library
            )
            pipeline_tag = (
                meta["pipeline_tag"] if "pipeline_tag" in meta else card_d.get("pipeline_tag") or derived_pipeline
            )
            if "config" in meta:
                config = meta["config"]

        tags: list[str] = []

        def add(tag: Any) -> None:
            if tag is None or tag == "" or isinstance(tag, (dict, list)):
                return
            tag = str(tag)
            if tag not in tags:
                tags.append(tag)

        add(library_name)
        for t in extra_tags:
            add(t)
        card_d = card or {}
        for t in _as_list(card_d.get("tags")):
            add(t)
        for t in _as_list(meta.get("tags")):
            add(t)
        add(pipeline_tag)
        if repo_type == "dataset":
            for key in ("task_categories", "task_ids", "size_categories", "language", "multilinguality"):
                for v in _as_list(card_d.get(key)):
                    add(f"{key}:{v}")
        else:
            for v in _as_list(card_d.get("language")):
                add(v)
            for v in _as_list(card_d.get("datasets")):
                add(f"dataset:{v}")
            for v in _as_list(card_d.get("base_model")):
                add(f"base_model:{v}")
        for v in _as_list(card_d.get("license")):
            add(f"license:{v}")

        gated = meta.get("gated", False)
        if "gated" not in meta and any(str(k).startswith("extra_gated_") for k in card_d):
            gated = "auto"   # a card that configures the access form (extra_gated_*) stands for a gated repo
        if gated is True:
            gated = "auto"
        if gated not in ("auto", "manual"):
            gated = False
        downloads = int(meta.get("downloads", 0) or 0)
        commits = self._effective_history(repo_type, repo_id, files, tree, meta, created_at)
        return _RepoState(
            repo_type=repo_type,
            repo_id=repo_id,
            directory=directory,
            files=files,
            sha=commits[-1]["id"],
            meta=meta,
            card_data=card,
            last_modified=last_modified,
            created_at=created_at,
            private=bool(meta.get("private", False)),
            gated=gated,
            disabled=bool(meta.get("disabled", False)),
            downloads=downloads,
            downloads_all_time=int(meta.get("downloads_all_time", meta.get("downloadsAllTime", downloads)) or 0),
            likes=int(meta.get("likes", 0) or 0),
            trending_score=int(meta.get("trending_score", meta.get("trendingScore", 0)) or 0),
            tags=tags,
            pipeline_tag=pipeline_tag,
            library_name=library_name,
            config=config,
            used_storage=sum(f.size for f in files.values()),
            tree=tree,
            commits=commits,
        )

    # -- history ---------------------------------------------------------------------------------------------------
    #
    # Commits made through the endpoint are kept in ROOT/.history/<type>s/<org>/<name>/commits.json (oldest first:
    # id, parents, authors, title, message, date, tree, changes {path: blob oid, or null when deleted}) with a copy
    # of every committed blob in ROOT/.history/objects/, so that any past commit stays a readable revision, as on
    # the Hub. Files that changed outside the endpoint (a fixture copied in, make_repo) show as one more commit whose
    # id is the sha1 of the manifest (so a repo that never saw a commit keeps a sha that is stable across restarts)
    # and whose author is the sidecar's "author", else the repo's namespace.

    def history_path(self, repo_type: str, repo_id: str) -> Path:
        return self.root / ".history" / _PLURAL[repo_type] / repo_id / "commits.json"

    def object_path(self, oid: str) -> Path:
        return self.root / ".history" / "objects" / oid[:2] / oid

    def read_history(self, repo_type: str, repo_id: str) -> list[dict]:
        p = self.history_path(repo_type, repo_id)
        try:
            st = p.stat()
        except OSError:
            return []
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._cache_guard:
            cached = self._history_cache.get(str(p))
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            data = json.loads(p.read_bytes())
        except (OSError, ValueError):
            return []
        commits = data.get("commits") if isinstance(data, dict) else None
        commits = commits if isinstance(commits, list) else []
        with self._cache_guard:
            self._history_cache[str(p)] = (key, commits)
        return commits

    def _write_history(self, repo_type: str, repo_id: str, commits: list[dict]) -> None:
        self._atomic_write(self.history_path(repo_type, repo_id),
                           json.dumps({"commits": commits}, separators=(",", ":")).encode())

    def _effective_history(self, repo_type: str, repo_id: str, files: dict[str, _File], tree: str, meta: dict,
                           date: str) -> list[dict]:
        persisted = self.read_history(repo_type, repo_id)
        if persisted and persisted[-1].get("tree") == tree:
            return persisted
        current = {p: f.oid for p, f in files.items()}
        before = _replay(persisted)
        changes: dict[str, str | None] = {p: o for p, o in current.items() if before.get(p) != o}
        changes.update({p: None for p in before if p not in current})
        author = meta.get("author") if isinstance(meta.get("author"), str) else repo_id.split("/")[0]
        virtual = {"id": tree, "parents": [persisted[-1]["id"]] if persisted else [], "authors": [author],
                   "title": "Files changed outside the endpoint" if persisted else "initial commit", "message": "",
                   "date": date if not persisted else _iso(max((f.mtime for f in files.values()), default=0.0)),
                   "tree": tree, "changes": changes}
        return [*persisted, virtual]

    def _store_object(self, oid: str, data: bytes | None = None, source: Path | None = None) -> None:
        dest = self.object_path(oid)
        if dest.is_file():
            return
        if data is None:
            assert source is not None
            data = source.read_bytes()
        self._atomic_write(dest, data)

    def state_at(self, state: _RepoState, revision: str | None) -> _RepoState | None:
        """The repo as it was at ``revision`` (a branch name of main or a commit id); None if unknown."""
        rev = revision or "main"
        if rev in ("main", "refs/heads/main") or rev == state.sha:
            return state
        for i, commit in enumerate(state.commits):
            if commit.get("id") == rev:
                break
        else:
            return None
        commits = state.commits[: i + 1]
        files: dict[str, _File] = {}
        for p, oid in _replay(commits).items():
            current = state.files.get(p)
            if current is not None and current.oid == oid:
                files[p] = current
                continue
            obj = self.object_path(oid)
            try:
                st = obj.stat()
            except OSError:
                continue
            files[p] = _File(p, obj, st.st_size, oid, st.st_mtime)
        return dataclasses.replace(state, files=files, sha=rev, tree=commit.get("tree", ""), commits=commits,
                                   used_storage=sum(f.size for f in files.values()))

    # -- writing ---------------------------------------------------------------------------------------------------

    def _atomic_write(self, dest: Path, data: bytes) -> None:
        tmp_dir = self.root / ".tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def create(self, repo_type: str, repo_id: str, private: bool) -> bool:
        """Create an empty repo; False if it already exists."""
        with self._create_lock:
            directory = self.repo_dir(repo_type, repo_id)
            if directory.is_dir():
                return False
            directory.mkdir(parents=True)
            meta = self.read_meta(repo_type, repo_id)
            meta.setdefault("created_at", _iso(time.time()))
            meta["private"] = bool(private)
            self.write_meta(repo_type, repo_id, meta)
            return True

    def delete(self, repo_type: str, repo_id: str) -> bool:
        with self._create_lock, self.lock(repo_type, repo_id):
            directory = self.repo_dir(repo_type, repo_id)
            if not directory.is_dir():
                return False
            # Move away first so that readers never see a half-deleted repo.
            trash = self.root / ".tmp" / f"deleted-{uuid.uuid4().hex}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(directory, trash)
            shutil.rmtree(trash, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.meta_path(repo_type, repo_id).unlink()
            return True

    def apply_commit(
        self,
        repo_type: str,
        repo_id: str,
        additions: list[tuple[str, bytes]],
        deleted_files: list[str],
        deleted_folders: list[str],
        parent_commit: str | None,
        author: str | None = None,
        title: str = "",
        message: str = "",
    ) -> _RepoState:
        with self.lock(repo_type, repo_id):
            state = self._state_unlocked(repo_type, repo_id)
            if state is None:
                raise _HubError(404, "Repository not found", code="RepoNotFound")
            if parent_commit is not None and not state.sha.startswith(parent_commit.lower()):
                raise _HubError(
                    412,
                    "A commit has happened since. Please refresh and try again. "
                    f"(parent commit {parent_commit} is not the head {state.sha})",
                )
            remaining = set(state.files)
            for p in deleted_files:
                if p not in remaining:
                    raise _HubError(404, f"A file with this name doesn't exist: {p}", code="EntryNotFound")
                remaining.discard(p)
            for folder in deleted_folders:
                inside = {p for p in remaining if p.startswith(folder + "/")}
                if not inside:
                    raise _HubError(404, f"A folder with this name doesn't exist: {folder}", code="EntryNotFound")
                remaining -= inside
            added: set[str] = set()
            for p, _ in additions:
                added.add(p)
            final = remaining | added
            for p in final:
                parent = PurePosixPath(p).parent
                while str(parent) not in (".", ""):
                    if str(parent) in final:
                        raise _HubError(400, f"Cannot commit '{p}': '{parent}' is a file")
                    parent = parent.parent

            # Keep the history this commit builds on, blobs included (a repo seen before any commit, files changed
            # outside the endpoint), so that every earlier revision stays readable.
            persisted = self.read_history(repo_type, repo_id)
            for commit in state.commits[len(persisted):]:
                for p, oid in commit["changes"].items():
                    if oid is not None and p in state.files and state.files[p].oid == oid:
                        self._store_object(oid, source=Path(state.files[p].abspath))
            changes: dict[str, str | None] = {}
            for p in state.files:
                if p not in remaining:
                    changes[p] = None
            for p, data in additions:
                changes[p] = _git_blob_sha1(data)
                self._store_object(changes[p], data=data)
            changes = {p: o for p, o in changes.items() if (state.files[p].oid if p in state.files else None) != o}

            directory = state.directory
            touched_dirs: set[Path] = set()
            for p in deleted_files:
                target = directory / p
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
                touched_dirs.add(target.parent)
            for folder in deleted_folders:
                shutil.rmtree(directory / folder, ignore_errors=True)
                touched_dirs.add((directory / folder).parent)
            for p, data in additions:
                target = directory / p
                if target.is_dir():
                    shutil.rmtree(target)
                self._atomic_write(target, data)
            # git has no empty folders
            for d in sorted(touched_dirs, key=lambda x: len(x.parts), reverse=True):
                while d != directory and directory in d.parents:
                    try:
                        d.rmdir()
                    except OSError:
                        break
                    d = d.parent
            meta = self.read_meta(repo_type, repo_id)
            for key in ("last_modified", "lastModified"):
                if key in meta:
                    meta[key] = _iso(time.time())
                    self.write_meta(repo_type, repo_id, meta)
                    break
            tree = _tree_sha(self._scan(directory))
            now = time.time()
            parent = state.sha
            cid = hashlib.sha1(f"commit\0{tree}\0{parent}\0{author}\0{time.time_ns()}\0{title}\0{uuid.uuid4().hex}"
                               .encode()).hexdigest()
            commit = {"id": cid, "parents": [parent], "authors": [author] if author else [], "title": title,
                      "message": message, "date": _iso(now), "tree": tree, "changes": changes}
            self._write_history(repo_type, repo_id, [*state.commits, commit])
            new_state = self._state_unlocked(repo_type, repo_id)
            assert new_state is not None
            return new_state


def make_repo(
    root: str | os.PathLike,
    repo_id: str,
    files: dict[str, str | bytes],
    repo_type: str = "model",
    meta: dict | None = None,
) -> Path:
    """Write a repo (files and optional sidecar metadata) into a hub root folder. Returns the repo folder."""
    if repo_type not in _PLURAL:
        raise ValueError(f"repo_type must be 'model' or 'dataset', not {repo_type!r}")
    if not _valid_repo_id(repo_id):
        raise ValueError(f"repo_id must be '<org>/<name>', not {repo_id!r}")
    root = Path(root)
    repo_dir = root / _PLURAL[repo_type] / repo_id
    repo_dir.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        clean = _clean_repo_path(rel)
        if clean is None:
            raise ValueError(f"invalid path in repo: {rel!r}")
        target = repo_dir / clean
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8") if isinstance(content, str) else bytes(content))
    if meta is not None:
        meta_path = root / ".meta" / _PLURAL[repo_type] / f"{repo_id}.json"
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return repo_dir


# --------------------------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """An injected fault. `hits` counts the requests it was applied to; `times` is what remains (None = forever)."""

    kind: str
    repo_id: str | None = None
    path_glob: str | None = None
    times: int | None = None
    hits: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "repo_id": self.repo_id,
            "path_glob": self.path_glob,
            "times": self.times,
            "hits": self.hits,
        }

    def matches(self, route: _Route) -> bool:
        if self.repo_id is not None and route.repo_id != self.repo_id:
            return False
        if self.path_glob is not None:
            if route.file_path is None:
                return False
            return fnmatch.fnmatchcase(route.file_path, self.path_glob)
        return True


# --------------------------------------------------------------------------------------------------------------------
# Routing / responses
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _Route:
    action: str
    repo_type: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    file_path: str | None = None  # file resolves only
    tree_path: str | None = None
    namespace: str | None = None  # jobs only
    job_id: str | None = None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, body=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.body = body


@dataclass
class _Resp:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: BinaryIO | None = None  # when set, `length` bytes are streamed from it starting at `offset`
    offset: int = 0
    length: int = 0
    is_json: bool = False


def _json_resp(obj: Any, status: int = 200, headers: dict | None = None) -> _Resp:
    body = json.dumps(obj).encode("utf-8")
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return _Resp(status, h, body, is_json=True)


def _error_resp(status: int, message: str, code: str | None = None, headers: dict | None = None, body=None) -> _Resp:
    h = {"X-Error-Message": message.encode("latin-1", "replace").decode("latin-1")}
    if code:
        h["X-Error-Code"] = code
    h.update(headers or {})
    return _json_resp(body if body is not None else {"error": message}, status, h)


def _route(method: str, raw_path: str) -> _Route:
    segs = raw_path.split("/")[1:]
    if segs and segs[-1] == "" and len(segs) > 1:
        segs = segs[:-1]
    u = unquote
    n = len(segs)
    if n >= 1 and segs[0] == "api":
        if n == 2 and segs[1] == "whoami-v2":
            return _Route("whoami")
        if n == 2 and segs[1] == "validate-yaml":
            return _Route("validate_yaml")
        if n == 3 and segs[1] == "repos" and segs[2] in ("create", "delete"):
            return _Route("repo_" + segs[2])
        if n >= 3 and segs[1] == "jobs":
            # /api/jobs/{ns} (create, list), /api/jobs/{ns}/{id} (inspect), /api/jobs/{ns}/{id}/{logs,cancel}
            ns, job_id = u(segs[2]), (u(segs[3]) if n >= 4 else None)
            if n == 3:
                return _Route("jobs", namespace=ns)
            if n == 4:
                return _Route("job", namespace=ns, job_id=job_id)
            if n == 5 and segs[4] in ("logs", "cancel"):
                return _Route("job_" + segs[4], namespace=ns, job_id=job_id)
            return _Route("not_found")
        if n >= 2 and segs[1] in ("models", "datasets", "spaces"):
            if segs[1] == "spaces":
                rid = f"{u(segs[2])}/{u(segs[3])}" if n >= 4 else None
                return _Route("unsupported_space", "space", rid)
            rtype = _SINGULAR[segs[1]]
            if n == 2:
                return _Route("list", rtype)
            if n < 4:
                return _Route("not_found", rtype)
            rid = f"{u(segs[2])}/{u(segs[3])}"
            if n == 4:
                return _Route("info", rtype, rid, "main")
            sub = segs[4]
            if sub == "revision" and n == 6:
                return _Route("info", rtype, rid, u(segs[5]))
            if sub == "tree" and n >= 6:
                return _Route("tree", rtype, rid, u(segs[5]), tree_path=u("/".join(segs[6:])))
            if sub == "paths-info" and n == 6:
                return _Route("paths_info", rtype, rid, u(segs[5]))
            if sub == "preupload" and n == 6:
                return _Route("preupload", rtype, rid, u(segs[5]))
            if sub == "commit" and n == 6:
                return _Route("commit", rtype, rid, u(segs[5]))
            if sub == "refs" and n == 5:
                return _Route("refs", rtype, rid)
            if sub == "commits" and n == 6:
                return _Route("commits", rtype, rid, u(segs[5]))
            return _Route("not_found", rtype, rid)
        return _Route("not_found")
    # File resolves: /{org}/{name}/resolve/{rev}/{path} and /datasets/{org}/{name}/resolve/{rev}/{path}
    if n >= 6 and segs[0] in ("datasets", "spaces") and segs[3] == "resolve":
        rtype = "dataset" if segs[0] == "datasets" else "space"
        return _Route(
            "resolve", rtype, f"{u(segs[1])}/{u(segs[2])}", u(segs[4]), file_path=u("/".join(segs[5:]))
        )
    if n >= 5 and segs[2] == "resolve":
        return _Route("resolve", "model", f"{u(segs[0])}/{u(segs[1])}", u(segs[3]), file_path=u("/".join(segs[4:])))
    return _Route("not_found")


# --------------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------------


class HubServer:
    """Hugging Face Hub-compatible HTTP server over a folder.

    >>> with HubServer(root) as server:          # or server = HubServer(root).start(); ...; server.stop()
    ...     os.environ["HF_ENDPOINT"] = server.url

    Attributes you may change at any time:
        tokens: {token: "read" | "write"} (default {"hf_write": "write", "hf_read": "read"})
        gated_denied_tokens: valid tokens that were NOT granted access to gated repos (403 GatedRepo)
        username: the user every valid token belongs to (namespace of `create_repo("name")`), unless
            token_users ({token: user}, filled by `add_user(name)` or the `users` argument) names another
        commits_page_size: page size of /commits/{revision} (newest first, Link: rel="next" pagination)
        timeout_delay: seconds a "timeout" fault waits before dropping the connection
        page_size: page size of /api/models and /api/datasets (Link: rel="next" pagination)
        tree_page_size: page size of /tree (50 when expand=True, like the Hub)
        request_log: [(method, path, status), ...] for every request (status 0: connection dropped)
        resolve_log: [dict(method, repo_type, repo_id, path, revision, status), ...] for file resolves
        jobs: {job_id: dict(id, namespace, spec, stage, message, created_at, started_at, finished_at)}, the
            submitted Jobs in order (``spec`` is the JSON body as submitted, secrets included)
        job_final_stage: the stage a Job reaches after RUNNING ("COMPLETED", or e.g. "ERROR" to test failures)
    """

    def __init__(
        self,
        root: str | os.PathLike,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tokens: dict[str, str] | None = None,
        username: str = "test-user",
        users: dict[str, str] | None = None,
        timeout_delay: float = 3.0,
        page_size: int = 1000,
        verbose: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self.tokens: dict[str, str] = dict(DEFAULT_TOKENS if tokens is None else tokens)
        self.gated_denied_tokens: set[str] = set()
        self.username = username
        self.token_users: dict[str, str] = dict(users or {})
        self.commits_page_size = 50
        self.timeout_delay = float(timeout_delay)
        self.page_size = int(page_size)
        self.tree_page_size = 1000
        self.verbose = verbose
        self.request_log: list[tuple[str, str, int]] = []
        self.resolve_log: list[dict] = []
        self.jobs: dict[str, dict] = {}
        self.job_final_stage = "COMPLETED"
        self._jobs_lock = threading.Lock()
        self._storage = _Storage(self.root)
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._conns: set[Any] = set()
        self._conns_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> HubServer:
        if self._httpd is not None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        handler = type("_BoundHubHandler", (_Handler,), {"hub": self})
        httpd = ThreadingHTTPServer((self.host, self.port), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._stop_event.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"HubServer:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop_event.set()  # wakes up "timeout" faults that are sleeping
        httpd.shutdown()
        httpd.server_close()
        # Close idle keep-alive connections too: a stopped server must not answer a pooled connection any more.
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # -- users -----------------------------------------------------------------------------------------------------

    def add_user(self, name: str, permission: str = "write", token: str | None = None) -> str:
        """A user with a token of their own (returned); their commits are recorded with ``name`` as author."""
        if permission not in ("read", "write"):
            raise ValueError(f"permission must be 'read' or 'write', not {permission!r}")
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid user name {name!r}")
        token = token or f"hf_{name}_{permission}"
        self.tokens[token] = permission
        self.token_users[token] = name
        return token

    def user_of(self, token: str) -> str:
        """The user a valid token belongs to (``username`` unless ``add_user``/``users`` says otherwise)."""
        return self.token_users.get(token, self.username)

    def commits(self, repo_id: str, repo_type: str = "model") -> list[dict]:
        """The repo's history, newest first: {id, authors, title, message, date, tree, changes}."""
        state = self._storage.state(repo_type, repo_id)
        return list(reversed(state.commits)) if state else []

    # -- faults ----------------------------------------------------------------------------------------------------

    def inject(
        self, kind: str, repo_id: str | None = None, path_glob: str | None = None, times: int | None = None
    ) -> Fault:
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if times is not None and int(times) < 1:
            raise ValueError("times must be >= 1 or None")
        fault = Fault(kind, repo_id, path_glob, None if times is None else int(times))
        with self._faults_lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._faults_lock:
            return list(self._faults)

    def _take_fault(self, route: _Route, *, kinds: set[str] | None = None, exclude: set[str] | None = None,
                    consume: bool = True) -> Fault | None:
        with self._faults_lock:
            for fault in self._faults:
                if kinds is not None and fault.kind not in kinds:
                    continue
                if exclude is not None and fault.kind in exclude:
                    continue
                if not fault.matches(route):
                    continue
                if consume:
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                return fault
        return None

    # -- logs ------------------------------------------------------------------------------------------------------

    def _log(self, method: str, path: str, status: int, route: _Route | None) -> None:
        with self._log_lock:
            self.request_log.append((method, path, status))
            if route is not None and route.action == "resolve":
                self.resolve_log.append(
                    {
                        "method": method,
                        "repo_type": route.repo_type,
                        "repo_id": route.repo_id,
                        "path": route.file_path,
                        "revision": route.revision,
                        "status": status,
                    }
                )

    def resolved_files(self, include_head: bool = False, repo_type: str | None = None) -> list[tuple[str, str]]:
        """(repo_id, path) of every successful file resolve (GET only, unless include_head), in request order."""
        methods = {"GET", "HEAD"} if include_head else {"GET"}
        with self._log_lock:
            return [
                (e["repo_id"], e["path"])
                for e in self.resolve_log
                if e["method"] in methods
                and 0 < e["status"] < 400
                and (repo_type is None or e["repo_type"] == repo_type)
            ]

    def clear_log(self) -> None:
        with self._log_lock:
            self.request_log.clear()
            self.resolve_log.clear()

    # -- misc ------------------------------------------------------------------------------------------------------

    def repo_sha(self, repo_id: str, repo_type: str = "model") -> str | None:
        """Current commit id of a repo (None if it does not exist)."""
        state = self._storage.state(repo_type, repo_id)
        return state.sha if state else None

    def make_repo(self, repo_id: str, files: dict[str, str | bytes], repo_type: str = "model",
                  meta: dict | None = None) -> Path:
        return make_repo(self.root, repo_id, files, repo_type=repo_type, meta=meta)


# --------------------------------------------------------------------------------------------------------------------
# Request handler
# --------------------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubselect-test-hub/1.0"
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    hub: HubServer  # set on the bound subclass

    def setup(self) -> None:
        super().setup()
        with self.hub._conns_lock:
            self.hub._conns.add(self.connection)

    def finish(self) -> None:
        with self.hub._conns_lock:
            self.hub._conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # Silence the default stderr logging unless verbose.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.hub.verbose:
            sys.stderr.write("[hub] %s - %s\n" % (self.address_string(), format % args))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- plumbing --------------------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    @property
    def base_url(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.hub.url

    def _send(self, method: str, resp: _Resp) -> None:
        resp.headers.setdefault("X-Request-Id", uuid.uuid4().hex)
        length = resp.length if resp.stream is not None else len(resp.body)
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if method == "HEAD":
            return
        try:
            if resp.stream is not None:
                resp.stream.seek(resp.offset)
                left = resp.length
                while left > 0:
                    chunk = resp.stream.read(min(_CHUNK, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            elif resp.body:
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        raw_path = split.path or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        log_path = unquote(raw_path)
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return

        if raw_path.startswith("/_test/"):
            resp = self._control(method, raw_path, body)
            self._send(method, resp)
            return

        route = _route(method, raw_path)
        resp: _Resp | None = None
        try:
            # 1. injected faults (infrastructure problems come before anything else)
            fault = hub._take_fault(route, exclude={"malformed_json"})
            if fault is not None:
                if fault.kind == "timeout":
                    hub._log(method, log_path, 0, route)
                    hub._stop_event.wait(hub.timeout_delay)
                    self.close_connection = True  # no answer at all
                    return
                resp = self._fault_response(fault, route)
            else:
                resp = self._handle(method, route, query, body)
                resp = self._maybe_malform(method, route, resp)
        except _HubError as e:
            resp = _error_resp(e.status, e.message, e.code, e.headers, e.body)
        except Exception as e:  # pragma: no cover - bug in the test server
            traceback.print_exc()
            resp = _error_resp(500, f"Test hub server error: {type(e).__name__}: {e}")
        # Log before answering, so that a client which got its answer always finds its request in the log.
        hub._log(method, log_path, resp.status, route)
        try:
            self._send(method, resp)
        finally:
            if resp.stream is not None:
                resp.stream.close()

    # -- faults ----------------------------------------------------------------------------------------------------

    def _fault_response(self, fault: Fault, route: _Route) -> _Resp:
        kind = fault.kind
        headers: dict[str, str] = {}
        if route.action == "resolve" and route.repo_type in _PLURAL and route.repo_id:
            sha = self.hub.repo_sha(route.repo_id, route.repo_type) if _valid_repo_id(route.repo_id) else None
            if sha:
                headers["X-Repo-Commit"] = sha
        if kind in ("500", "502", "503"):
            status = int(kind)
            return _error_resp(status, _SERVER_ERROR_MESSAGES[status], headers=headers)
        rtype = route.repo_type or "model"
        if kind in ("401", "403"):
            if route.repo_id:
                if kind == "401":
                    msg = (
                        f"Access to {rtype} {route.repo_id} is restricted. You must have access to it and be "
                        "authenticated to access it. Please log in."
                    )
                else:
                    msg = (
                        f"Access to {rtype} {route.repo_id} is restricted and you are not in the authorized list. "
                        f"Visit {self.base_url}/{route.repo_id} to ask for access."
                    )
                return _error_resp(int(kind), msg, "GatedRepo", headers)
            if kind == "401":
                return _error_resp(401, "Invalid credentials in Authorization header", headers=headers)
            return _error_resp(403, "Forbidden: you don't have the rights to perform this action", headers=headers)
        if kind == "404":
            if route.action == "resolve":
                return _error_resp(404, "Entry not found", "EntryNotFound", headers)
            if route.repo_id:
                return _error_resp(404, "Repository not found", "RepoNotFound", headers)
            return _error_resp(404, "Not Found", headers=headers)
        raise AssertionError(kind)  # pragma: no cover

    def _maybe_malform(self, method: str, route: _Route, resp: _Resp) -> _Resp:
        if resp.status not in (200, 206):
            return resp
        if route.action == "resolve":
            if not (route.file_path or "").lower().endswith(".json"):
                return resp
            # HEAD peeks (shows the metadata of the malformed file), GET uses the fault up.
            fault = self.hub._take_fault(route, kinds={"malformed_json"}, consume=(method != "HEAD"))
            if fault is None:
                return resp
            assert resp.stream is not None
            resp.stream.seek(0)
            original = resp.stream.read()
            resp.stream.close()
            resp.stream = None
            bad = original[: len(original) // 2]
            resp.headers["ETag"] = f'"{_git_blob_sha1(bad)}"'
            # Served as if from another, transient commit: the client files the bad copy under that commit in its
            # cache, so once the fault is gone a plain retry (same revision) downloads the real file again.
            sha = resp.headers.get("X-Repo-Commit", "")
            resp.headers["X-Repo-Commit"] = hashlib.sha1(f"malformed:{sha}".encode()).hexdigest()
            resp.headers.pop("Content-Range", None)
            resp.status = 200
            resp.body = bad
            return resp
        if not resp.is_json or method == "HEAD":
            return resp
        fault = self.hub._take_fault(route, kinds={"malformed_json"})
        if fault is None:
            return resp
        resp.body = resp.body[: max(1, len(resp.body) // 2)]
        return resp

    # -- control endpoints -----------------------------------------------------------------------------------------

    def _control(self, method: str, raw_path: str, body: bytes) -> _Resp:
        hub = self.hub
        path = raw_path.rstrip("/")
        if path == "/_test/faults":
            if method == "GET":
                return _json_resp({"faults": [f.to_dict() for f in hub.faults]})
            if method == "DELETE":
                hub.clear_faults()
                return _json_resp({"ok": True})
            if method == "POST":
                try:
                    payload = json.loads(body or b"{}")
                    items = payload if isinstance(payload, list) else [payload]
                    added = [
                        hub.inject(
                            item["kind"],
                            repo_id=item.get("repo_id"),
                            path_glob=item.get("path_glob"),
                            times=item.get("times"),
                        )
                        for item in items
                    ]
                except (ValueError, KeyError, TypeError) as e:
                    return _error_resp(400, f"Invalid fault: {e}")
                return _json_resp({"ok": True, "faults": [f.to_dict() for f in added]})
        if path == "/_test/jobs" and method == "GET":
            with hub._jobs_lock:
                jobs = [{k: job[k] for k in ("id", "namespace", "stage", "spec")} for job in hub.jobs.values()]
            return _json_resp({"jobs": jobs})
        if path == "/_test/log":
            if method == "GET":
                with hub._log_lock:
                    requests = [list(r) for r in hub.request_log]
                    resolves = [dict(r) for r in hub.resolve_log]
                return _json_resp(
                    {
                        "requests": requests,
                        "resolves": resolves,
                        "resolved": [list(x) for x in hub.resolved_files()],
                    }
                )
            if method == "DELETE":
                hub.clear_log()
                return _json_resp({"ok": True})
        return _error_resp(404, "Unknown test control endpoint")

    # -- auth ------------------------------------------------------------------------------------------------------

    def _token(self) -> tuple[str, str] | None:
        """(token, permission) or None when anonymous. Invalid tokens are refused like the Hub does."""
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _HubError(401, "Invalid credentials in Authorization header")
        token = value.strip()
        perm = self.hub.tokens.get(token)
        if perm is None:
            raise _HubError(401, "Invalid credentials in Authorization header")
        return token, perm

    def _require_write(self) -> tuple[str, str]:
        tok = self._token()
        if tok is None:
            raise _HubError(401, "You must be authenticated to perform this action (no token provided)")
        if tok[1] != "write":
            raise _HubError(403, "You don't have the rights to perform this action: this token is read-only")
        return tok

    def _readable_state(self, route: _Route, tok: tuple[str, str] | None, *, files: bool) -> _RepoState:
        assert route.repo_type is not None and route.repo_id is not None
        if route.repo_type not in _PLURAL or not _valid_repo_id(route.repo_id):
            raise _HubError(404, "Repository not found", "RepoNotFound")
        state = self.hub._storage.state(route.repo_type, route.repo_id)
        if state is None:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        if state.private and tok is None:
            raise _HubError(401, "Repository not found", "RepoNotFound")
        if state.disabled:
            raise _HubError(403, "Access to this resource is disabled.")
        if files and state.gated:
            if tok is None:
                raise _HubError(
                    401,
                    f"Access to {route.repo_type} {route.repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in.",
                    "GatedRepo",
                )
            if tok[0] in self.hub.gated_denied_tokens:
                raise _HubError(
                    403,
                    f"Access to {route.repo_type} {route.repo_id} is restricted and you are not in the authorized "
                    f"list. Visit {self.base_url}/{route.repo_id} to ask for access.",
                    "GatedRepo",
                )
        return state

    def _at_revision(self, state: _RepoState, revision: str | None) -> _RepoState:
        """The repo at ``revision`` (main, refs/heads/main, or any commit id of its history)."""
        at = self.hub._storage.state_at(state, revision)
        if at is None:
            raise _HubError(404, f"Invalid rev id: {revision or 'main'}", "RevisionNotFound")
        return at

    @staticmethod
    def _check_revision(state: _RepoState, revision: str | None) -> None:
        rev = revision or "main"
        if rev in ("main", "refs/heads/main") or rev == state.sha:
            return
        raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    # -- handlers --------------------------------------------------------------------------------------------------

    def _handle(self, method: str, route: _Route, query: dict[str, list[str]], body: bytes) -> _Resp:
        action = route.action
        if action == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, route)
        if action == "info" and method == "GET":
            return self._info(route, query)
        if action == "list" and method == "GET":
            return self._list(route, query)
        if action == "tree" and method == "GET":
            return self._tree(route, query)
        if action == "paths_info" and method == "POST":
            return self._paths_info(route, body)
        if action == "preupload" and method == "POST":
            return self._preupload(route, body)
        if action == "commit" and method == "POST":
            return self._commit(route, query, body)
        if action == "commits" and method == "GET":
            return self._commits(route, query)
        if action == "refs" and method == "GET":
            state = self._readable_state(route, self._token(), files=False)
            branch = {"name": "main", "ref": "refs/heads/main", "targetCommit": state.sha}
            return _json_resp({"branches": [branch], "converts": [], "tags": [], "pullRequests": []})
        if action == "repo_create" and method == "POST":
            return self._create_repo(body)
        if action == "repo_delete" and method == "DELETE":
            return self._delete_repo(body)
        if action == "whoami" and method == "GET":
            return self._whoami()
        if action == "validate_yaml" and method == "POST":
            return self._validate_yaml(body)
        if action == "jobs" and method == "POST":
            return self._job_create(route, body)
        if action == "jobs" and method == "GET":
            return self._job_list(route, query)
        if action == "job" and method == "GET":
            return self._job_inspect(route)
        if action == "job_logs" and method == "GET":
            return self._job_logs(route, query)
        if action == "job_cancel" and method == "POST":
            return self._job_cancel(route)
        if action == "unsupported_space":
            raise _HubError(404, "Repository not found (Spaces are not served by the test hub)", "RepoNotFound")
        if action in ("resolve", "info", "list", "tree", "paths_info", "preupload", "commit", "refs", "commits",
                      "repo_create", "repo_delete", "whoami", "validate_yaml", "jobs", "job", "job_logs",
                      "job_cancel"):
            raise _HubError(405, f"Method {method} not allowed")
        raise _HubError(404, f"Not Found: {self.path}")

    def _resolve(self, method: str, route: _Route) -> _Resp:
        if route.repo_type not in _PLURAL:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        tok = self._token()
        assert route.repo_id is not None
        # Snapshot and open under the repo lock: the bytes sent always match the ETag/commit announced.
        with self.hub._storage.lock(route.repo_type, route.repo_id):
            state = self._at_revision(self._readable_state(route, tok, files=True), route.revision)
            commit_header = {"X-Repo-Commit": state.sha}
            path = _clean_repo_path(route.file_path or "")
            entry = state.files.get(path) if path else None
            if entry is None:
                raise _HubError(404, "Entry not found", "EntryNotFound", headers=commit_header)
            try:
                stream = open(entry.abspath, "rb")  # noqa: SIM115 - closed after sending
            except OSError:
                raise _HubError(404, "Entry not found", "EntryNotFound", headers=commit_header) from None
        size = os.fstat(stream.fileno()).st_size
        ctype = mimetypes.guess_type(entry.path)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "application/json":
            ctype += "; charset=utf-8"
        headers = {
            "Content-Type": ctype,
            "ETag": f'"{entry.oid}"',
            "X-Repo-Commit": state.sha,
            "Accept-Ranges": "bytes",
            "Last-Modified": datetime.fromtimestamp(entry.mtime, tz=timezone.utc).strftime(
                "%a, %d %b %Y %H:%M:%S GMT"
            ),
        }
        offset, length, status = 0, size, 200
        range_header = self.headers.get("Range")
        if range_header and method == "GET":
            m = _RANGE_RE.match(range_header)
            if m is None:
                stream.close()
                raise _HubError(416, "Invalid range", headers={"Content-Range": f"bytes */{size}"})
            start_s, end_s = m.groups()
            if start_s == "" and end_s == "":
                stream.close()
                raise _HubError(416, "Invalid range", headers={"Content-Range": f"bytes */{size}"})
            if start_s == "":
                n = int(end_s)
                start, end = max(size - n, 0), size - 1
            else:
                start = int(start_s)
                end = min(int(end_s), size - 1) if end_s else size - 1
            if start >= size or start > end:
                stream.close()
                raise _HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
            offset, length, status = start, end - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return _Resp(status, headers, stream=stream, offset=offset, length=length)

    # -- info / list -----------------------------------------------------------------------------------------------

    def _full_info(self, state: _RepoState, *, blobs: bool) -> dict:
        siblings = []
        for p in sorted(state.files):
            s: dict[str, Any] = {"rfilename": p}
            if blobs:
                s["size"] = state.files[p].size
                s["blobId"] = state.files[p].oid
            siblings.append(s)
        d: dict[str, Any] = {
            "_id": _object_id(state.repo_type, state.repo_id),
            "id": state.repo_id,
        }
        if state.repo_type == "model":
            d["modelId"] = state.repo_id
        d.update(
            {
                "author": state.author,
                "sha": state.sha,
                "lastModified": state.last_modified,
                "createdAt": state.created_at,
                "private": state.private,
                "gated": state.gated,
                "disabled": state.disabled,
                "downloads": state.downloads,
                "likes": state.likes,
                "tags": list(state.tags),
            }
        )
        if state.repo_type == "model":
            if state.pipeline_tag is not None:
                d["pipeline_tag"] = state.pipeline_tag
            if state.library_name is not None:
                d["library_name"] = state.library_name
            if state.config is not None:
                d["config"] = state.config
            d["spaces"] = []
        else:
            if state.meta.get("description") is not None:
                d["description"] = state.meta["description"]
            d["paperswithcode_id"] = state.meta.get("paperswithcode_id")
        if state.card_data is not None:
            d["cardData"] = state.card_data
        d["siblings"] = siblings
        d["usedStorage"] = state.used_storage
        return d

    def _expanded(self, state: _RepoState, expand: list[str]) -> dict:
        full = self._full_info(state, blobs=False)
        full["downloadsAllTime"] = state.downloads_all_time
        full["trendingScore"] = state.trending_score
        full.setdefault("cardData", None)
        out = {"_id": full["_id"], "id": full["id"]}
        for key in expand:
            if key in full:
                out[key] = full[key]
        return out

    @staticmethod
    def _expand_param(query: dict[str, list[str]]) -> list[str]:
        values = query.get("expand", []) + query.get("expand[]", [])
        out: list[str] = []
        for v in values:
            out.extend(x for x in v.split(",") if x)
        return out

    def _info(self, route: _Route, query: dict[str, list[str]]) -> _Resp:
        tok = self._token()
        state = self._at_revision(self._readable_state(route, tok, files=False), route.revision)
        expand = self._expand_param(query)
        if expand:
            return _json_resp(self._expanded(state, expand))
        return _json_resp(self._full_info(state, blobs=_truthy(query.get("blobs"))))

    def _list(self, route: _Route, query: dict[str, list[str]]) -> _Resp:
        rtype = route.repo_type
        assert rtype in _PLURAL
        tok = self._token()
        storage = self.hub._storage
        states = [s for s in (storage.state(rtype, rid) for rid in storage.list_repo_ids(rtype)) if s is not None]

        if tok is None:
            states = [s for s in states if not s.private]
        for term in query.get("search", []):
            t = term.lower()
            states = [s for s in states if t in s.repo_id.lower()]
        for author in query.get("author", []):
            states = [s for s in states if s.author.lower() == author.lower()]
        for f in query.get("filter", []) + query.get("filter[]", []):
            states = [s for s in states if f in s.tags or f == s.library_name or f == s.pipeline_tag]
        for pt in query.get("pipeline_tag", []):
            states = [s for s in states if s.pipeline_tag == pt]
        libraries = query.get("library", []) + query.get("library[]", [])
        if libraries:
            states = [s for s in states if s.library_name in libraries or any(lib in s.tags for lib in libraries)]
        if query.get("gated"):
            want = _truthy(query["gated"])
            states = [s for s in states if bool(s.gated) == want]

        sort = (query.get("sort") or [None])[-1]
        sort_keys = {
            "downloads": lambda s: s.downloads,
            "likes": lambda s: s.likes,
            "lastModified": lambda s: _date_key(s.last_modified),
            "last_modified": lambda s: _date_key(s.last_modified),
            "createdAt": lambda s: _date_key(s.created_at),
            "created_at": lambda s: _date_key(s.created_at),
            "trendingScore": lambda s: s.trending_score,
            "trending_score": lambda s: s.trending_score,
            "downloadsAllTime": lambda s: s.downloads_all_time,
            "id": None,
            "modelId": None,
        }
        states.sort(key=lambda s: s.repo_id)
        if sort is not None:
            if sort not in sort_keys:
                raise _HubError(400, f"Invalid sort parameter: {sort!r}")
            key = sort_keys[sort]
            direction = (query.get("direction") or ["-1"])[-1]
            descending = direction.strip() != "1"
            if key is None:
                states.sort(key=lambda s: s.repo_id.lower(), reverse=descending)
            else:
                states.sort(key=key, reverse=descending)  # stable: ties stay sorted by id

        try:
            limit = int((query.get("limit") or ["0"])[-1] or 0)
            offset = int((query.get("cursor") or ["0"])[-1] or 0)
        except ValueError:
            raise _HubError(400, "Invalid limit or cursor") from None
        page_size = max(1, self.hub.page_size)
        if limit > 0:
            page_size = min(page_size, limit)
        page = states[offset : offset + page_size]

        expand = self._expand_param(query)
        full = _truthy(query.get("full"))
        want_card = _truthy(query.get("cardData"))
        want_config = _truthy(query.get("config"))
        items = []
        for s in page:
            if expand:
                items.append(self._expanded(s, expand))
                continue
            info = self._full_info(s, blobs=False)
            if rtype == "model":
                keep = ["_id", "id", "modelId", "likes", "downloads", "private", "tags", "pipeline_tag",
                        "library_name", "createdAt"]
            else:
                keep = ["_id", "id", "author", "sha", "lastModified", "private", "gated", "disabled", "downloads",
                        "likes", "tags", "createdAt", "description", "paperswithcode_id"]
            if full:
                keep += ["author", "sha", "lastModified", "gated", "disabled", "siblings", "cardData", "config"]
            if want_card:
                keep.append("cardData")
            if want_config:
                keep.append("config")
            item = {k: info[k] for k in keep if k in info}
            item["trendingScore"] = s.trending_score
            items.append(item)

        headers = {}
        if offset + page_size < len(states):
            params = [(k, v) for k, vs in query.items() if k != "cursor" for v in vs]
            params.append(("cursor", str(offset + page_size)))
            next_url = f"{self.base_url}/api/{_PLURAL[rtype]}?{urlencode(params)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        return _json_resp(items, headers=headers)

    # -- tree ------------------------------------------------------------------------------------------------------

    @staticmethod
    def _tree_oid(state: _RepoState, folder: str) -> str:
        prefix = folder + "/"
        h = hashlib.sha1(b"tree\0")
        for p in sorted(state.files):
            if p.startswith(prefix):
                h.update(f"{p[len(prefix):]}\0{state.files[p].oid}\n".encode())
        return h.hexdigest()

    def _entry(self, state: _RepoState, path: str, expand: bool) -> dict:
        if path in state.files:
            f = state.files[path]
            e: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": path}
        else:
            e = {"type": "directory", "oid": self._tree_oid(state, path), "size": 0, "path": path}
        if expand:
            commit = self._last_commit(state, path)
            e["lastCommit"] = {"id": commit["id"], "title": commit.get("title", ""), "date": commit.get("date")}
        return e

    @staticmethod
    def _last_commit(state: _RepoState, path: str) -> dict:
        """The last commit of ``state``'s history that changed ``path`` (a file, or anything in a folder)."""
        prefix = path + "/"
        for commit in reversed(state.commits):
            if any(p == path or p.startswith(prefix) for p in commit.get("changes") or {}):
                return commit
        return state.commits[-1]

    def _commits(self, route: _Route, query: dict[str, list[str]]) -> _Resp:
        state = self._at_revision(self._readable_state(route, self._token(), files=False), route.revision)
        items = [{"id": c["id"], "title": c.get("title", ""), "message": c.get("message", ""),
                  "authors": [{"user": a, "avatar": None} for a in c.get("authors") or []],
                  "date": c.get("date") or state.last_modified}
                 for c in reversed(state.commits)]
        try:
            page = int((query.get("p") or ["0"])[-1] or 0)
        except ValueError:
            raise _HubError(400, "Invalid page") from None
        size = max(1, self.hub.commits_page_size)
        headers = {}
        if (page + 1) * size < len(items):
            params = [(k, v) for k, vs in query.items() if k != "p" for v in vs] + [("p", str(page + 1))]
            headers["Link"] = f'<{self.base_url}{urlsplit(self.path).path}?{urlencode(params)}>; rel="next"'
        return _json_resp(items[page * size:(page + 1) * size], headers=headers)

    def _tree(self, route: _Route, query: dict[str, list[str]]) -> _Resp:
        tok = self._token()
        state = self._at_revision(self._readable_state(route, tok, files=False), route.revision)
        recursive = _truthy(query.get("recursive"))
        expand = _truthy(query.get("expand"))
        folder = (route.tree_path or "").strip("/")
        folders = state.folders()
        if folder:
            folder = _clean_repo_path(folder) or ""
            if folder not in folders:
                raise _HubError(
                    404, f'{route.tree_path} does not exist on "{route.revision}"', "EntryNotFound",
                    headers={"X-Repo-Commit": state.sha},
                )
        prefix = folder + "/" if folder else ""
        paths: list[str] = []
        for p in sorted(set(state.files) | folders):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix):]
            if not rest or (not recursive and "/" in rest):
                continue
            paths.append(p)
        page_size = 50 if expand else max(1, self.hub.tree_page_size)
        try:
            offset = int((query.get("cursor") or ["0"])[-1] or 0)
        except ValueError:
            raise _HubError(400, "Invalid cursor") from None
        page = paths[offset : offset + page_size]
        headers = {}
        if offset + page_size < len(paths):
            params = [(k, v) for k, vs in query.items() if k != "cursor" for v in vs]
            params.append(("cursor", str(offset + page_size)))
            headers["Link"] = f'<{self.base_url}{urlsplit(self.path).path}?{urlencode(params)}>; rel="next"'
        return _json_resp([self._entry(state, p, expand) for p in page], headers=headers)

    def _paths_info(self, route: _Route, body: bytes) -> _Resp:
        tok = self._token()
        state = self._at_revision(self._readable_state(route, tok, files=False), route.revision)
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            payload = json.loads(body or b"{}")
            paths = _as_list(payload.get("paths"))
            expand = bool(payload.get("expand"))
        else:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            paths = form.get("paths", []) + form.get("paths[]", [])
            expand = _truthy(form.get("expand"))
        folders = state.folders()
        out = []
        for raw in paths:
            p = _clean_repo_path(str(raw).strip("/"))
            if p and (p in state.files or p in folders):
                out.append(self._entry(state, p, expand))
        return _json_resp(out)

    # -- writes ----------------------------------------------------------------------------------------------------

    def _writable_state(self, route: _Route) -> _RepoState:
        self._require_write()
        if route.repo_type not in _PLURAL or not route.repo_id or not _valid_repo_id(route.repo_id):
            raise _HubError(404, "Repository not found", "RepoNotFound")
        state = self.hub._storage.state(route.repo_type, route.repo_id)
        if state is None:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        self._check_revision(state, route.revision)
        if route.revision not in (None, "main", "refs/heads/main"):
            raise _HubError(400, f"Commits are only supported on the main branch, not on {route.revision!r}")
        return state

    def _preupload(self, route: _Route, body: bytes) -> _Resp:
        state = self._writable_state(route)
        try:
            payload = json.loads(body or b"{}")
            files = payload["files"]
        except (ValueError, KeyError, TypeError):
            raise _HubError(400, "Invalid preupload payload") from None
        out = []
        for f in files:
            p = f.get("path")
            clean = _clean_repo_path(p or "")
            existing = state.files.get(clean) if clean else None
            out.append(
                {
                    "path": p,
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": existing.oid if existing else None,
                }
            )
        return _json_resp({"files": out, "commitOid": state.sha})

    def _commit(self, route: _Route, query: dict[str, list[str]], body: bytes) -> _Resp:
        self._writable_state(route)
        author = self.hub.user_of(self._require_write()[0])
        if _truthy(query.get("create_pr")):
            raise _HubError(400, "Pull requests are not supported by the test hub")
        additions: list[tuple[str, bytes]] = []
        deleted_files: list[str] = []
        deleted_folders: list[str] = []
        summary, description, parent = "", "", None
        try:
            ctype = self.headers.get("Content-Type", "")
            if "ndjson" in ctype or body.lstrip().startswith(b'{"key"'):
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            else:  # legacy single JSON document
                doc = json.loads(body or b"{}")
                lines = [{"key": "header", "value": {"summary": doc.get("summary", ""),
                                                     "description": doc.get("description", ""),
                                                     "parentCommit": doc.get("parentCommit")}}]
                lines += [{"key": "file", "value": v} for v in doc.get("files", [])]
                lines += [{"key": "deletedFile", "value": v} for v in doc.get("deletedFiles", [])]
                lines += [{"key": "lfsFile", "value": v} for v in doc.get("lfsFiles", [])]
        except ValueError:
            raise _HubError(400, "Invalid commit payload (expected NDJSON)") from None
        for item in lines:
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                summary = value.get("summary") or ""
                description = value.get("description") or ""
                parent = value.get("parentCommit")
                continue
            raw_path = str(value.get("path", ""))
            path = _clean_repo_path(raw_path.rstrip("/") if key == "deletedFolder" else raw_path)
            if path is None:
                raise _HubError(400, f"Invalid path in commit: {raw_path!r}")
            if key == "file":
                encoding = (value.get("encoding") or "base64").lower()
                content = value.get("content", "")
                try:
                    data = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
                except (ValueError, TypeError):
                    raise _HubError(400, f"Invalid base64 content for {path}") from None
                additions.append((path, data))
            elif key == "deletedFile":
                deleted_files.append(path)
            elif key == "deletedFolder":
                deleted_folders.append(path)
            elif key == "lfsFile":
                raise _HubError(400, "LFS uploads are not supported by the test hub (preupload answers 'regular')")
            else:
                raise _HubError(400, f"Unknown commit operation {key!r}")
        if not summary:
            raise _HubError(400, "Commit summary is required")
        if parent is not None and not re.fullmatch(r"[0-9a-fA-F]{5,40}", str(parent)):
            raise _HubError(400, f"Invalid parentCommit {parent!r}")
        assert route.repo_type is not None and route.repo_id is not None
        new_state = self.hub._storage.apply_commit(
            route.repo_type, route.repo_id, additions, deleted_files, deleted_folders, parent,
            author=author, title=summary, message=description,
        )
        prefix = "" if route.repo_type == "model" else f"{_PLURAL[route.repo_type]}/"
        return _json_resp(
            {
                "success": True,
                "commitOid": new_state.sha,
                "commitUrl": f"{self.base_url}/{prefix}{route.repo_id}/commit/{new_state.sha}",
                "commitMessage": summary,
                "commitDescription": description,
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    def _repo_from_body(self, body: bytes) -> tuple[str, str, dict]:
        tok = self._token()
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise _HubError(400, "Invalid JSON body") from None
        name = payload.get("name")
        org = payload.get("organization") or (self.hub.user_of(tok[0]) if tok else self.hub.username)
        rtype = payload.get("type") or "model"
        if rtype == "space":
            raise _HubError(400, "Spaces are not supported by the test hub")
        if rtype not in _PLURAL:
            raise _HubError(400, f"Invalid repo type {rtype!r}")
        repo_id = f"{org}/{name}"
        if not name or not _valid_repo_id(repo_id):
            raise _HubError(400, f"Invalid repo name {repo_id!r}")
        return rtype, repo_id, payload

    def _repo_url(self, rtype: str, repo_id: str) -> str:
        prefix = "" if rtype == "model" else f"{_PLURAL[rtype]}/"
        return f"{self.base_url}/{prefix}{repo_id}"

    def _create_repo(self, body: bytes) -> _Resp:
        self._require_write()
        rtype, repo_id, payload = self._repo_from_body(body)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = self._repo_url(rtype, repo_id)
        if not self.hub._storage.create(rtype, repo_id, private):
            raise _HubError(409, f"You already created this {rtype} repo", body={
                "error": f"You already created this {rtype} repo", "url": url})
        return _json_resp({"url": url, "name": repo_id, "id": _object_id(rtype, repo_id)})

    def _delete_repo(self, body: bytes) -> _Resp:
        self._require_write()
        rtype, repo_id, _ = self._repo_from_body(body)
        if not self.hub._storage.delete(rtype, repo_id):
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return _json_resp({"ok": True})

    def _whoami(self) -> _Resp:
        tok = self._token()
        if tok is None:
            raise _HubError(401, "Invalid username or password.")
        name = self.hub.user_of(tok[0])
        return _json_resp(
            {
                "type": "user",
                "id": _object_id("user", name),
                "name": name,
                "fullname": "Test User",
                "email": f"{name}@example.com",
                "emailVerified": True,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": [],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "test-token", "role": tok[1], "createdAt": _iso(0)},
                },
            }
        )

    def _validate_yaml(self, body: bytes) -> _Resp:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise _HubError(400, "Invalid JSON body") from None
        err = _yaml_error(str(payload.get("content", "")))
        if err:
            return _json_resp({"errors": [{"message": err}], "warnings": []}, status=400)
        return _json_resp({"errors": [], "warnings": []})


    # -- jobs ------------------------------------------------------------------------------------------------------

    def _job_namespace(self, route: _Route, write: bool = False) -> str:
        """The Jobs namespace of the request, which must be the token's user."""
        tok = self._require_write() if write else self._token()
        if tok is None:
            raise _HubError(401, "You must be authenticated to use Jobs (no token provided)")
        if route.namespace != self.hub.user_of(tok[0]):
            raise _HubError(403, f"You don't have access to the namespace {route.namespace!r}")
        return route.namespace

    def _job(self, route: _Route) -> dict:
        namespace = self._job_namespace(route)
        job = self.hub.jobs.get(route.job_id or "")
        if job is None or job["namespace"] != namespace:
            raise _HubError(404, f"Job {route.job_id} not found")
        return job

    def _job_info(self, job: dict) -> dict:
        """A Job as the Hub answers it (the JSON that huggingface_hub's ``JobInfo`` parses)."""
        spec = job["spec"]
        owner = {"id": _object_id("user", job["namespace"]), "name": job["namespace"], "type": "user"}
        attempts = spec.get("attempts")
        return {
            "id": job["id"],
            "createdAt": job["created_at"],
            "startedAt": job["started_at"],
            "finishedAt": job["finished_at"],
            "dockerImage": spec.get("dockerImage"),
            "spaceId": spec.get("spaceId"),
            "command": spec.get("command"),
            "arguments": spec.get("arguments") or [],
            "environment": spec.get("environment") or {},
            "secrets": dict.fromkeys(spec.get("secrets") or {}),  # names only: values are never echoed back
            "flavor": spec.get("flavor"),
            "labels": spec.get("labels"),
            "status": {"stage": job["stage"], "message": job["message"]},
            "owner": owner,
            "initiator": {"type": "user", "id": owner["id"], "name": owner["name"]},
            "retry": attempts - 1 if isinstance(attempts, int) else None,
        }

    def _job_create(self, route: _Route, body: bytes) -> _Resp:
        namespace = self._job_namespace(route, write=True)
        try:
            spec = json.loads(body or b"{}")
        except ValueError:
            raise _HubError(400, "Invalid JSON body") from None
        if not isinstance(spec, dict):
            raise _HubError(400, "A Job spec must be a JSON object")
        command = spec.get("command")
        if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
            raise _HubError(400, "command must be a non-empty list of strings")
        if not isinstance(spec.get("dockerImage") or spec.get("spaceId"), str):
            raise _HubError(400, "dockerImage or spaceId is required")
        if not isinstance(spec.get("flavor"), str) or not spec["flavor"]:
            raise _HubError(400, "flavor is required")
        for key in ("environment", "secrets", "labels"):
            value = spec.get(key, {})
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise _HubError(400, f"{key} must map names to strings")
        bad = [v for v in (spec.get("labels") or {}).values() if not _JOB_LABEL_RE.match(v)]
        if bad:
            raise _HubError(400, f"Invalid label value {bad[0]!r}: only letters, digits, '-' and '_'")
        timeout = spec.get("timeoutSeconds")
        if timeout is not None and not (isinstance(timeout, int) and timeout > 0):
            raise _HubError(400, "timeoutSeconds must be a positive integer")
        now = _iso(time.time())
        job = {"id": uuid.uuid4().hex[:24], "namespace": namespace, "spec": spec, "stage": "SCHEDULING",
               "message": None, "created_at": now, "started_at": None, "finished_at": None}
        with self.hub._jobs_lock:
            self.hub.jobs[job["id"]] = job
            return _json_resp(self._job_info(job))

    def _job_list(self, route: _Route, query: dict[str, list[str]]) -> _Resp:
        namespace = self._job_namespace(route)
        stages = {s.upper() for s in query.get("stage", [])}
        labels = [tuple(x.split("=", 1)) for x in query.get("label", []) if "=" in x]
        with self.hub._jobs_lock:
            jobs = [job for job in self.hub.jobs.values() if job["namespace"] == namespace
                    and (not stages or job["stage"] in stages)
                    and all((job["spec"].get("labels") or {}).get(k) == v for k, v in labels)]
            return _json_resp([self._job_info(job) for job in jobs])

    def _job_inspect(self, route: _Route) -> _Resp:
        """The Job, one stage further on: SCHEDULING -> RUNNING -> ``job_final_stage``."""
        with self.hub._jobs_lock:
            job = self._job(route)
            now = _iso(time.time())
            if job["stage"] == "SCHEDULING":
                job["stage"], job["started_at"] = "RUNNING", now
            elif job["stage"] == "RUNNING":
                job["stage"], job["finished_at"] = self.hub.job_final_stage, now
                if job["stage"] == "ERROR":
                    job["message"] = "Job failed with exit code: 1"
            return _json_resp(self._job_info(job))

    def _job_logs(self, route: _Route, query: dict[str, list[str]]) -> _Resp:
        """The Job's log as server-sent events (``data: {"timestamp": ..., "data": ...}``), like the Hub."""
        with self.hub._jobs_lock:
            job = self._job(route)
            spec, stage, created = job["spec"], job["stage"], job["created_at"]
        lines = [f"===== Job started at {created} =====",
                 f"image {spec.get('dockerImage') or spec.get('spaceId')} on {spec.get('flavor')}",
                 "$ " + " ".join(spec.get("command") or [])]
        if stage in _JOB_TERMINAL:
            lines.append(f"the test hub ran nothing; stage {stage}")
        tail = (query.get("tail") or [""])[-1]
        if tail.isdigit():
            lines = lines[-int(tail):] if int(tail) else []
        events = "".join(f"data: {json.dumps({'timestamp': created, 'data': line})}\n\n" for line in lines)
        return _Resp(200, {"Content-Type": "text/event-stream"}, events.encode())

    def _job_cancel(self, route: _Route) -> _Resp:
        with self.hub._jobs_lock:
            job = self._job(route)
            if job["stage"] not in _JOB_TERMINAL:
                job["stage"], job["finished_at"] = "CANCELED", _iso(time.time())
            return _json_resp(self._job_info(job))


# --------------------------------------------------------------------------------------------------------------------
# Pointing the real client at a server (used by tests/conftest.py)
# --------------------------------------------------------------------------------------------------------------------


def configure_hf_client(
    monkeypatch: Any,
    endpoint: str,
    hf_home: str | os.PathLike,
    *,
    etag_timeout: int = 2,
    download_timeout: int = 2,
) -> None:
    """Point huggingface_hub at `endpoint` with a private HF_HOME, using a pytest `monkeypatch` (undone at teardown).

    huggingface_hub reads HF_ENDPOINT, HF_HOME (and the paths derived from it), HF_TOKEN_PATH, HF_HUB_OFFLINE,
    HF_HUB_DISABLE_TELEMETRY and the timeouts ONCE, when `huggingface_hub.constants` is imported; the module-level
    `huggingface_hub.hf_api.api = HfApi()` (behind `huggingface_hub.model_info`, `list_models`, ...) also copies
    ENDPOINT at import. Setting the environment is therefore not enough inside a running test process: the
    environment is set (for subprocesses) AND the already-imported values are patched here.
    """
    hf_home = Path(hf_home)
    hub_cache = hf_home / "hub"
    assets_cache = hf_home / "assets"
    token_path = hf_home / "token"
    endpoint = endpoint.rstrip("/")

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                "HF_TOKEN_PATH", "HUGGINGFACE_HUB_CACHE", "HUGGINGFACE_ASSETS_CACHE", "HUGGINGFACE_CO_STAGING",
                "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_ASSETS_CACHE", str(assets_cache))
    monkeypatch.setenv("HF_XET_CACHE", str(hf_home / "xet"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", str(etag_timeout))
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", str(download_timeout))

    import huggingface_hub.constants as C  # noqa: N812

    def patch(obj: Any, name: str, value: Any) -> None:
        if hasattr(obj, name):
            monkeypatch.setattr(obj, name, value)

    host = urlsplit(endpoint).hostname or "127.0.0.1"
    patch(C, "ENDPOINT", endpoint)
    patch(C, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    patch(C, "HF_URL_HOSTS", frozenset(getattr(C, "HF_URL_HOSTS", frozenset())) | {host.lower()})
    patch(C, "_staging_mode", False)
    patch(C, "HF_HOME", str(hf_home))
    patch(C, "default_cache_path", str(hub_cache))
    patch(C, "default_assets_cache_path", str(assets_cache))
    patch(C, "HUGGINGFACE_HUB_CACHE", str(hub_cache))
    patch(C, "HUGGINGFACE_ASSETS_CACHE", str(assets_cache))
    patch(C, "HF_HUB_CACHE", str(hub_cache))
    patch(C, "HF_ASSETS_CACHE", str(assets_cache))
    patch(C, "HF_XET_CACHE", str(hf_home / "xet"))
    patch(C, "HF_TOKEN_PATH", str(token_path))
    patch(C, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    patch(C, "CHECK_FOR_UPDATE_DONE_PATH", str(hf_home / ".check_for_update_done"))
    patch(C, "CHECK_FOR_SKILL_UPDATE_DONE_PATH", str(hf_home / ".check_for_skill_update_done"))
    patch(C, "AGENT_HARNESSES_PATH", str(hf_home / ".agent_harnesses.json"))
    patch(C, "HF_HUB_OFFLINE", False)
    patch(C, "HF_HUB_DISABLE_TELEMETRY", True)
    patch(C, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    patch(C, "HF_HUB_ETAG_TIMEOUT", int(etag_timeout))
    patch(C, "HF_HUB_DOWNLOAD_TIMEOUT", int(download_timeout))

    import importlib

    for modname, attrs in (
        ("huggingface_hub.utils._cache_manager", {"HF_HUB_CACHE": str(hub_cache)}),
        ("huggingface_hub.utils._cache_assets", {"HF_ASSETS_CACHE": str(assets_cache)}),
    ):
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        for name, value in attrs.items():
            patch(mod, name, value)

    import huggingface_hub.hf_api as hf_api

    if hasattr(hf_api, "api"):
        monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    try:
        import huggingface_hub.utils._http as hf_http
    except ImportError:  # pragma: no cover
        hf_http = None
    if hf_http is not None:
        if hasattr(hf_http, "_HUB_ORIGINS") and hasattr(hf_http, "_url_origin"):
            monkeypatch.setattr(hf_http, "_HUB_ORIGINS", frozenset(hf_http._HUB_ORIGINS) | {hf_http._url_origin(endpoint)})
        if hasattr(hf_http, "close_session"):
            hf_http.close_session()  # drop keep-alive connections to a previous server
    try:
        from huggingface_hub import HfFileSystem

        HfFileSystem.clear_instance_cache()  # fsspec caches instances, with the endpoint they were built with
    except Exception:  # pragma: no cover
        pass


def reset_hf_client() -> None:
    """Close the shared HTTP session and cached HfFileSystem instances (call after a server stops)."""
    try:
        import huggingface_hub.utils._http as hf_http

        hf_http.close_session()
    except Exception:  # pragma: no cover
        pass
    try:
        from huggingface_hub import HfFileSystem

        HfFileSystem.clear_instance_cache()
    except Exception:  # pragma: no cover
        pass


# --------------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hub_server", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="hub root folder (models/<org>/<name>/..., datasets/...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--token", action="append", default=None, metavar="TOKEN[:read|write[:USER]]",
        help=f"valid token, optionally of its own user (repeatable; default: {WRITE_TOKEN}:write and "
             f"{READ_TOKEN}:read, both of --username)",
    )
    parser.add_argument("--username", default="test-user")
    parser.add_argument("--timeout-delay", type=float, default=3.0)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    tokens, users = None, {}
    if args.token:
        tokens = {}
        for t in args.token:
            name, _, rest = t.partition(":")
            perm, _, user = rest.partition(":")
            tokens[name] = perm or "read"
            if user:
                users[name] = user
    server = HubServer(
        args.root, args.host, args.port, tokens=tokens, username=args.username, users=users,
        timeout_delay=args.timeout_delay, page_size=args.page_size, verbose=args.verbose,
    ).start()
    print(f"Hub server for {server.root} running at {server.url}", flush=True)
    print(f"  export HF_ENDPOINT={server.url}", flush=True)
    print(f"  tokens: {', '.join(f'{k} ({v})' for k, v in server.tokens.items())}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
