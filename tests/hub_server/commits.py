"""Commits: ``create_commit`` (and ``upload_file``/``upload_folder``/``delete_file``), history and its authors.

``POST /api/<type>s/<id>/preupload/<rev>`` answers "regular" for every file (no LFS), ``POST .../commit/<rev>``
takes the NDJSON payload of huggingface_hub (header, file, deletedFile, deletedFolder; a legacy single JSON document
too) and applies it atomically under the repo's lock: with ``parentCommit`` that is no longer the head it is refused
with 412, as on the Hub, so that concurrent writers lose nothing. The commit is authored by the token's user.
``GET .../commits/<rev>`` (``list_repo_commits``) answers the history newest first, ``commits_page_size`` a page
(``Link`` pagination by ``p``); :func:`last_commit` gives the ``lastCommit`` of tree entries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from tests.hub_server.repos import readable_revision, repo_url
from tests.hub_server.storage import RepoState, Storage, clean_repo_path, git_blob_sha1, tree_sha, valid_repo_id
from tests.hub_server.users import require_write
from tests.hub_server.wire import (
    PLURAL,
    HubError,
    Request,
    Response,
    int_param,
    iso,
    json_response,
    next_page_link,
    truthy,
)

if TYPE_CHECKING:
    from tests.hub_server.server import HubServer


# -- history -----------------------------------------------------------------------------------------------------


def last_commit(state: RepoState, path: str) -> dict:
    """The last commit of ``state``'s history that changed ``path`` (a file, or anything in a folder)."""
    prefix = path + "/"
    for commit in reversed(state.commits):
        if any(p == path or p.startswith(prefix) for p in commit.get("changes") or {}):
            return commit
    return state.commits[-1]


def list_commits(hub: HubServer, req: Request) -> Response:
    state = readable_revision(hub, req)
    items = [{"id": c["id"], "title": c.get("title", ""), "message": c.get("message", ""),
              "authors": [{"user": a, "avatar": None} for a in c.get("authors") or []],
              "date": c.get("date") or state.info.last_modified}
             for c in reversed(state.commits)]
    page = int_param(req.query, "p", "page")
    size = max(1, hub.commits_page_size)
    headers = {}
    if (page + 1) * size < len(items):
        headers = next_page_link(f"{req.base_url}{req.path}", req.query, "p", page + 1)
    return json_response(items[page * size:(page + 1) * size], headers=headers)


# -- writing -----------------------------------------------------------------------------------------------------


def _writable_state(hub: HubServer, req: Request) -> RepoState:
    """The repo a write is about; writes need a write token and go to main."""
    require_write(hub, req)
    route = req.route
    if route.repo_type not in PLURAL or not route.repo_id or not valid_repo_id(route.repo_id):
        raise HubError(404, "Repository not found", "RepoNotFound")
    state = hub.storage.state(route.repo_type, route.repo_id)
    if state is None:
        raise HubError(404, "Repository not found", "RepoNotFound")
    if (route.revision or "main") not in ("main", "refs/heads/main", state.sha):
        raise HubError(404, f"Invalid rev id: {route.revision}", "RevisionNotFound")
    if route.revision not in (None, "main", "refs/heads/main"):
        raise HubError(400, f"Commits are only supported on the main branch, not on {route.revision!r}")
    return state


def preupload(hub: HubServer, req: Request) -> Response:
    state = _writable_state(hub, req)
    try:
        files = json.loads(req.body or b"{}")["files"]
    except (ValueError, KeyError, TypeError):
        raise HubError(400, "Invalid preupload payload") from None
    out = []
    for f in files:
        p = f.get("path")
        clean = clean_repo_path(p or "")
        existing = state.files.get(clean) if clean else None
        out.append({"path": p, "uploadMode": "regular", "shouldIgnore": False,
                    "oid": existing.oid if existing else None})
    return json_response({"files": out, "commitOid": state.sha})


def _payload_lines(req: Request) -> list[dict]:
    """The commit's operations as NDJSON lines ``{"key": ..., "value": ...}`` (a legacy JSON document converted)."""
    body = req.body
    try:
        if "ndjson" in req.headers.get("Content-Type", "") or body.lstrip().startswith(b'{"key"'):
            return [json.loads(line) for line in body.splitlines() if line.strip()]
        doc = json.loads(body or b"{}")
    except ValueError:
        raise HubError(400, "Invalid commit payload (expected NDJSON)") from None
    header = {"summary": doc.get("summary", ""), "description": doc.get("description", ""),
              "parentCommit": doc.get("parentCommit")}
    return [{"key": "header", "value": header},
            *({"key": "file", "value": v} for v in doc.get("files", [])),
            *({"key": "deletedFile", "value": v} for v in doc.get("deletedFiles", [])),
            *({"key": "lfsFile", "value": v} for v in doc.get("lfsFiles", []))]


def create_commit(hub: HubServer, req: Request) -> Response:
    _writable_state(hub, req)
    author = hub.user_of(require_write(hub, req)[0])
    if truthy(req.query.get("create_pr")):
        raise HubError(400, "Pull requests are not supported by the test hub")
    additions: list[tuple[str, bytes]] = []
    deleted_files: list[str] = []
    deleted_folders: list[str] = []
    summary, description, parent = "", "", None
    for item in _payload_lines(req):
        key, value = item.get("key"), item.get("value") or {}
        if key == "header":
            summary = value.get("summary") or ""
            description = value.get("description") or ""
            parent = value.get("parentCommit")
            continue
        raw_path = str(value.get("path", ""))
        path = clean_repo_path(raw_path.rstrip("/") if key == "deletedFolder" else raw_path)
        if path is None:
            raise HubError(400, f"Invalid path in commit: {raw_path!r}")
        if key == "file":
            encoding = (value.get("encoding") or "base64").lower()
            content = value.get("content", "")
            try:
                data = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
            except (ValueError, TypeError):
                raise HubError(400, f"Invalid base64 content for {path}") from None
            additions.append((path, data))
        elif key == "deletedFile":
            deleted_files.append(path)
        elif key == "deletedFolder":
            deleted_folders.append(path)
        elif key == "lfsFile":
            raise HubError(400, "LFS uploads are not supported by the test hub (preupload answers 'regular')")
        else:
            raise HubError(400, f"Unknown commit operation {key!r}")
    if not summary:
        raise HubError(400, "Commit summary is required")
    if parent is not None and not re.fullmatch(r"[0-9a-fA-F]{5,40}", str(parent)):
        raise HubError(400, f"Invalid parentCommit {parent!r}")
    route = req.route
    assert route.repo_type is not None and route.repo_id is not None
    new_state = apply_commit(hub.storage, route.repo_type, route.repo_id, additions, deleted_files, deleted_folders,
                             parent, author=author, title=summary, message=description)
    return json_response(
        {
            "success": True,
            "commitOid": new_state.sha,
            "commitUrl": f"{repo_url(req.base_url, route.repo_type, route.repo_id)}/commit/{new_state.sha}",
            "commitMessage": summary,
            "commitDescription": description,
            "hookOutput": "",
            "pullRequestUrl": None,
        }
    )


def apply_commit(
    storage: Storage,
    repo_type: str,
    repo_id: str,
    additions: list[tuple[str, bytes]],
    deleted_files: list[str],
    deleted_folders: list[str],
    parent_commit: str | None,
    author: str | None = None,
    title: str = "",
    message: str = "",
) -> RepoState:
    """Change the repo's files and record the commit, all under the repo's lock; the repo after it."""
    with storage.lock(repo_type, repo_id):
        state = storage.state_locked(repo_type, repo_id)
        if state is None:
            raise HubError(404, "Repository not found", code="RepoNotFound")
        if parent_commit is not None and not state.sha.startswith(parent_commit.lower()):
            raise HubError(412, "A commit has happened since. Please refresh and try again. "
                                f"(parent commit {parent_commit} is not the head {state.sha})")
        remaining = _remaining_files(state, deleted_files, deleted_folders)
        _check_no_file_is_a_folder(remaining | {p for p, _ in additions})

        # Keep the history this commit builds on, blobs included (a repo seen before any commit, files changed
        # outside the endpoint), so that every earlier revision stays readable.
        persisted = storage.read_history(repo_type, repo_id)
        for commit in state.commits[len(persisted):]:
            for p, oid in commit["changes"].items():
                if oid is not None and p in state.files and state.files[p].oid == oid:
                    storage.store_object(oid, source=Path(state.files[p].abspath))
        changes: dict[str, str | None] = {p: None for p in state.files if p not in remaining}
        for p, data in additions:
            changes[p] = git_blob_sha1(data)
            storage.store_object(changes[p], data=data)
        changes = {p: o for p, o in changes.items() if (state.files[p].oid if p in state.files else None) != o}

        storage.write_files(state.directory, additions, deleted_files, deleted_folders)
        storage.touch_last_modified(repo_type, repo_id)
        tree = tree_sha(storage.scan(state.directory))
        cid = hashlib.sha1(f"commit\0{tree}\0{state.sha}\0{author}\0{time.time_ns()}\0{title}\0{uuid.uuid4().hex}"
                           .encode()).hexdigest()
        commit = {"id": cid, "parents": [state.sha], "authors": [author] if author else [], "title": title,
                  "message": message, "date": iso(time.time()), "tree": tree, "changes": changes}
        storage.write_history(repo_type, repo_id, [*state.commits, commit])
        new_state = storage.state_locked(repo_type, repo_id)
        assert new_state is not None
        return new_state


def _remaining_files(state: RepoState, deleted_files: list[str], deleted_folders: list[str]) -> set[str]:
    """The repo's paths that the deletions leave; deleting what is not there is the Hub's 404 EntryNotFound."""
    remaining = set(state.files)
    for p in deleted_files:
        if p not in remaining:
            raise HubError(404, f"A file with this name doesn't exist: {p}", code="EntryNotFound")
        remaining.discard(p)
    for folder in deleted_folders:
        inside = {p for p in remaining if p.startswith(folder + "/")}
        if not inside:
            raise HubError(404, f"A folder with this name doesn't exist: {folder}", code="EntryNotFound")
        remaining -= inside
    return remaining


def _check_no_file_is_a_folder(final: set[str]) -> None:
    for p in final:
        parent = PurePosixPath(p).parent
        while str(parent) not in (".", ""):
            if str(parent) in final:
                raise HubError(400, f"Cannot commit '{p}': '{parent}' is a file")
            parent = parent.parent
