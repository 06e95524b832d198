"""The endpoint's repos on disk: their files, sidecar metadata, and every revision they had.

A hub root is a plain folder (e.g. a temporary copy of ``tests/hub_fixtures``)::

    ROOT/models/<org>/<name>/<files...>
    ROOT/datasets/<org>/<name>/<files...>
    ROOT/.meta/<type>s/<org>/<name>.json               optional sidecar metadata (see metadata.py), never served
    ROOT/.history/<type>s/<org>/<name>/commits.json    the commits made through the endpoint, oldest first
    ROOT/.history/objects/<oid[:2]>/<oid>              a copy of every committed blob (git blob sha1 as name)

A commit is ``{id, parents, authors, title, message, date, tree, changes}`` where ``tree`` is the sha1 of the sorted
``(path, git blob sha1)`` manifest and ``changes`` maps each path it changed to its new blob oid (null: deleted).
Because every blob is kept, every commit id stays a readable revision, as on the Hub. Files that changed outside
the endpoint (a fixture folder, ``make_repo``) count as one more commit whose id is the manifest's sha1, authored by
the sidecar's ``author`` or else the repo's namespace: a repo that never saw a commit keeps a sha that is stable
across restarts and changes exactly when a file changes.

Writes are atomic (a temporary file, then ``os.replace``) and serialised per repo (``Storage.lock``); a snapshot
(``Storage.state``) is taken under the same lock, so it never sees half a commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tests.hub_server.metadata import RepoInfo, describe
from tests.hub_server.wire import CHUNK, PLURAL, iso

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")  # one part of a repo ID, or a user name


def valid_repo_id(repo_id: str) -> bool:
    parts = repo_id.split("/")
    return len(parts) == 2 and all(NAME_RE.match(p) and ".." not in p for p in parts)


def clean_repo_path(path: str) -> str | None:
    """Normalise a path inside a repo; None if it escapes the repo or is empty."""
    if not path or "\\" in path or "\0" in path or path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def git_blob_sha1(data: bytes) -> str:
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def tree_sha(files: dict[str, RepoFile]) -> str:
    """sha1 of the sorted (path, blob oid) manifest: what the files of a repo are."""
    manifest = "".join(f"{p}\0{files[p].oid}\n" for p in sorted(files))
    return hashlib.sha1(manifest.encode("utf-8", errors="surrogateescape")).hexdigest()


def replay(commits: list[dict]) -> dict[str, str]:
    """{path: blob oid} after ``commits`` (oldest first)."""
    out: dict[str, str] = {}
    for commit in commits:
        for p, oid in (commit.get("changes") or {}).items():
            if oid is None:
                out.pop(p, None)
            else:
                out[p] = oid
    return out


@dataclass
class RepoFile:
    path: str
    abspath: str | Path       # str when scanned (pathlib is slow for hundreds of files per request)
    size: int
    oid: str
    mtime: float


@dataclass
class RepoState:
    """A repo at one revision: its files, what the Hub says about it, and its history up to that revision."""

    repo_type: str
    repo_id: str
    directory: Path
    files: dict[str, RepoFile]
    sha: str
    meta: dict                                       # the sidecar as stored
    info: RepoInfo
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


class Storage:
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
        return self.root / PLURAL[repo_type] / repo_id

    def meta_path(self, repo_type: str, repo_id: str) -> Path:
        return self.root / ".meta" / PLURAL[repo_type] / f"{repo_id}.json"

    def history_path(self, repo_type: str, repo_id: str) -> Path:
        return self.root / ".history" / PLURAL[repo_type] / repo_id / "commits.json"

    def object_path(self, oid: str) -> Path:
        return self.root / ".history" / "objects" / oid[:2] / oid

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return valid_repo_id(repo_id) and self.repo_dir(repo_type, repo_id).is_dir()

    def lock(self, repo_type: str, repo_id: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault((repo_type, repo_id), threading.RLock())

    def list_repo_ids(self, repo_type: str) -> list[str]:
        base = self.root / PLURAL[repo_type]
        out = []
        if not base.is_dir():
            return out
        for org in sorted(base.iterdir()):
            if not org.is_dir() or org.name.startswith("."):
                continue
            for repo in sorted(org.iterdir()):
                if repo.is_dir() and not repo.name.startswith("."):
                    rid = f"{org.name}/{repo.name}"
                    if valid_repo_id(rid):
                        out.append(rid)
        return out

    # -- files -----------------------------------------------------------------------------------------------------

    def read_meta(self, repo_type: str, repo_id: str) -> dict:
        try:
            data = json.loads(self.meta_path(repo_type, repo_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_meta(self, repo_type: str, repo_id: str, meta: dict) -> None:
        self.atomic_write(self.meta_path(repo_type, repo_id), json.dumps(meta, indent=2, sort_keys=True).encode())

    def _oid(self, abspath: str, st: os.stat_result) -> str:
        key = (abspath, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._cache_guard:
            oid = self._oid_cache.get(key)
        if oid is None:
            h = hashlib.sha1(b"blob %d\0" % st.st_size)
            with open(abspath, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    h.update(chunk)
            oid = h.hexdigest()
            with self._cache_guard:
                self._oid_cache[key] = oid
        return oid

    def _json_of(self, f: RepoFile) -> Any:
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

    @staticmethod
    def _text_of(f: RepoFile) -> str:
        try:
            return Path(f.abspath).read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def scan(self, directory: Path) -> dict[str, RepoFile]:
        """{path in repo: file}, sorted by path (``.git`` folders left out)."""
        files: dict[str, RepoFile] = {}
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
                files[path] = RepoFile(path, entry.path, st.st_size, self._oid(entry.path, st), st.st_mtime)
        return dict(sorted(files.items()))

    # -- snapshots -------------------------------------------------------------------------------------------------

    def state(self, repo_type: str, repo_id: str) -> RepoState | None:
        """Snapshot of a repo at its head (None if it does not exist). Consistent with respect to commits."""
        if not self.exists(repo_type, repo_id):
            return None
        with self.lock(repo_type, repo_id):
            return self.state_locked(repo_type, repo_id)

    def state_locked(self, repo_type: str, repo_id: str) -> RepoState | None:
        """:meth:`state` for a caller that holds ``lock(repo_type, repo_id)``."""
        directory = self.repo_dir(repo_type, repo_id)
        if not directory.is_dir():
            return None
        files = self.scan(directory)
        tree = tree_sha(files)
        meta = self.read_meta(repo_type, repo_id)
        try:
            dir_mtime = directory.stat().st_mtime
        except OSError:
            dir_mtime = time.time()
        mtimes = [f.mtime for f in files.values()]
        info = describe(repo_type, files, meta,
                        read_json=lambda p: self._json_of(files[p]), read_text=lambda p: self._text_of(files[p]),
                        newest=max(mtimes) if mtimes else dir_mtime, oldest=min(mtimes + [dir_mtime]))
        commits = self._effective_history(repo_type, repo_id, files, tree, meta, info.created_at)
        return RepoState(repo_type=repo_type, repo_id=repo_id, directory=directory, files=files,
                         sha=commits[-1]["id"], meta=meta, info=info,
                         used_storage=sum(f.size for f in files.values()), tree=tree, commits=commits)

    def state_at(self, state: RepoState, revision: str | None) -> RepoState | None:
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
        files: dict[str, RepoFile] = {}
        for p, oid in replay(commits).items():
            current = state.files.get(p)
            if current is not None and current.oid == oid:
                files[p] = current
                continue
            obj = self.object_path(oid)
            try:
                st = obj.stat()
            except OSError:
                continue
            files[p] = RepoFile(p, obj, st.st_size, oid, st.st_mtime)
        return dataclasses.replace(state, files=files, sha=rev, tree=commit.get("tree", ""), commits=commits,
                                   used_storage=sum(f.size for f in files.values()))

    # -- history ---------------------------------------------------------------------------------------------------

    def read_history(self, repo_type: str, repo_id: str) -> list[dict]:
        """The commits made through the endpoint, oldest first."""
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

    def write_history(self, repo_type: str, repo_id: str, commits: list[dict]) -> None:
        self.atomic_write(self.history_path(repo_type, repo_id),
                          json.dumps({"commits": commits}, separators=(",", ":")).encode())

    def _effective_history(self, repo_type: str, repo_id: str, files: dict[str, RepoFile], tree: str, meta: dict,
                           date: str) -> list[dict]:
        """The recorded history, plus one commit for files changed outside the endpoint since (or ever)."""
        persisted = self.read_history(repo_type, repo_id)
        if persisted and persisted[-1].get("tree") == tree:
            return persisted
        current = {p: f.oid for p, f in files.items()}
        before = replay(persisted)
        changes: dict[str, str | None] = {p: o for p, o in current.items() if before.get(p) != o}
        changes.update({p: None for p in before if p not in current})
        author = meta.get("author") if isinstance(meta.get("author"), str) else repo_id.split("/")[0]
        outside = {"id": tree, "parents": [persisted[-1]["id"]] if persisted else [], "authors": [author],
                   "title": "Files changed outside the endpoint" if persisted else "initial commit", "message": "",
                   "date": date if not persisted else iso(max((f.mtime for f in files.values()), default=0.0)),
                   "tree": tree, "changes": changes}
        return [*persisted, outside]

    def store_object(self, oid: str, data: bytes | None = None, source: Path | None = None) -> None:
        """Keep a blob under its oid (once), from ``data`` or from the file ``source``."""
        dest = self.object_path(oid)
        if dest.is_file():
            return
        if data is None:
            assert source is not None
            data = source.read_bytes()
        self.atomic_write(dest, data)

    # -- writing ---------------------------------------------------------------------------------------------------

    def atomic_write(self, dest: Path, data: bytes) -> None:
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

    def write_files(self, directory: Path, additions: list[tuple[str, bytes]], deleted_files: list[str],
                    deleted_folders: list[str]) -> None:
        """Change a repo folder's files (the caller holds the repo's lock and has checked the paths)."""
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
            self.atomic_write(target, data)
        # git has no empty folders
        for d in sorted(touched_dirs, key=lambda x: len(x.parts), reverse=True):
            while d != directory and directory in d.parents:
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent

    def touch_last_modified(self, repo_type: str, repo_id: str) -> None:
        """A sidecar that states the last modification date gets the date of this change."""
        meta = self.read_meta(repo_type, repo_id)
        for key in ("last_modified", "lastModified"):
            if key in meta:
                meta[key] = iso(time.time())
                self.write_meta(repo_type, repo_id, meta)
                return

    def create(self, repo_type: str, repo_id: str, private: bool) -> bool:
        """Create an empty repo; False if it already exists."""
        with self._create_lock:
            directory = self.repo_dir(repo_type, repo_id)
            if directory.is_dir():
                return False
            directory.mkdir(parents=True)
            meta = self.read_meta(repo_type, repo_id)
            meta.setdefault("created_at", iso(time.time()))
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


def make_repo(
    root: str | os.PathLike,
    repo_id: str,
    files: dict[str, str | bytes],
    repo_type: str = "model",
    meta: dict | None = None,
) -> Path:
    """Write a repo (files and optional sidecar metadata) into a hub root folder. Returns the repo folder."""
    if repo_type not in PLURAL:
        raise ValueError(f"repo_type must be 'model' or 'dataset', not {repo_type!r}")
    if not valid_repo_id(repo_id):
        raise ValueError(f"repo_id must be '<org>/<name>', not {repo_id!r}")
    root = Path(root)
    repo_dir = root / PLURAL[repo_type] / repo_id
    repo_dir.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        clean = clean_repo_path(rel)
        if clean is None:
            raise ValueError(f"invalid path in repo: {rel!r}")
        target = repo_dir / clean
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8") if isinstance(content, str) else bytes(content))
    if meta is not None:
        meta_path = root / ".meta" / PLURAL[repo_type] / f"{repo_id}.json"
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return repo_dir
