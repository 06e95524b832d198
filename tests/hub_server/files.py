"""The file API of the endpoint: downloads (resolve), the file tree and paths-info.

``GET|HEAD /<org>/<name>/resolve/<rev>/<path>`` (and ``/datasets/...``) answers the file with ``ETag`` (its git
blob sha1), ``X-Repo-Commit`` and ``Range`` support, as ``hf_hub_download``/``snapshot_download`` expect;
``GET /api/<type>s/<id>/tree/<rev>[/<folder>]`` (``recursive``, ``expand``, ``Link`` pagination by ``cursor``:
``tree_page_size``, 50 with ``expand`` like the Hub) and ``POST .../paths-info/<rev>`` answer entries, with each
one's ``lastCommit`` when expanded.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from tests.hub_server.commits import last_commit
from tests.hub_server.repos import at_revision, readable_revision, readable_state
from tests.hub_server.storage import RepoState, clean_repo_path
from tests.hub_server.wire import (
    PLURAL,
    HubError,
    Request,
    Response,
    as_list,
    int_param,
    json_response,
    next_page_link,
    truthy,
)

if TYPE_CHECKING:
    from tests.hub_server.server import HubServer

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def resolve(hub: HubServer, req: Request) -> Response:
    route = req.route
    if route.repo_type not in PLURAL:
        raise HubError(404, "Repository not found", "RepoNotFound")
    assert route.repo_id is not None
    # Snapshot and open under the repo lock: the bytes sent always match the ETag/commit announced.
    with hub.storage.lock(route.repo_type, route.repo_id):
        state = at_revision(hub, readable_state(hub, req, files=True), route.revision)
        commit_header = {"X-Repo-Commit": state.sha}
        path = clean_repo_path(route.file_path or "")
        entry = state.files.get(path) if path else None
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers=commit_header)
        try:
            stream = open(entry.abspath, "rb")  # noqa: SIM115 - closed after sending
        except OSError:
            raise HubError(404, "Entry not found", "EntryNotFound", headers=commit_header) from None
    size = os.fstat(stream.fileno()).st_size
    ctype = mimetypes.guess_type(entry.path)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype == "application/json":
        ctype += "; charset=utf-8"
    headers = {
        "Content-Type": ctype,
        "ETag": f'"{entry.oid}"',
        "X-Repo-Commit": state.sha,
        "Accept-Ranges": "bytes",
        "Last-Modified": datetime.fromtimestamp(entry.mtime, tz=timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }
    range_header = req.headers.get("Range")
    if not (range_header and req.method == "GET"):
        return Response(200, headers, stream=stream, offset=0, length=size)
    try:
        start, end = _byte_range(range_header, size)
    except HubError:
        stream.close()
        raise
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(206, headers, stream=stream, offset=start, length=end - start + 1)


def _byte_range(header: str, size: int) -> tuple[int, int]:
    """(first, last) byte of a ``Range: bytes=a-b`` header (``a-``, ``-n`` too); 416 when not satisfiable."""
    refused = {"Content-Range": f"bytes */{size}"}
    m = _RANGE_RE.match(header)
    if m is None or m.groups() == ("", ""):
        raise HubError(416, "Invalid range", headers=refused)
    start_s, end_s = m.groups()
    if start_s == "":
        start, end = max(size - int(end_s), 0), size - 1
    else:
        start = int(start_s)
        end = min(int(end_s), size - 1) if end_s else size - 1
    if start >= size or start > end:
        raise HubError(416, "Requested range not satisfiable", headers=refused)
    return start, end


# -- tree and paths-info ----------------------------------------------------------------------------------------


def _folder_oid(state: RepoState, folder: str) -> str:
    prefix = folder + "/"
    h = hashlib.sha1(b"tree\0")
    for p in sorted(state.files):
        if p.startswith(prefix):
            h.update(f"{p[len(prefix):]}\0{state.files[p].oid}\n".encode())
    return h.hexdigest()


def _entry(state: RepoState, path: str, expand: bool) -> dict:
    """A tree entry (file or folder); ``expand`` adds the last commit that changed it."""
    if path in state.files:
        f = state.files[path]
        e: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": path}
    else:
        e = {"type": "directory", "oid": _folder_oid(state, path), "size": 0, "path": path}
    if expand:
        commit = last_commit(state, path)
        e["lastCommit"] = {"id": commit["id"], "title": commit.get("title", ""), "date": commit.get("date")}
    return e


def tree(hub: HubServer, req: Request) -> Response:
    route, query = req.route, req.query
    state = readable_revision(hub, req)
    recursive = truthy(query.get("recursive"))
    expand = truthy(query.get("expand"))
    folder = (route.tree_path or "").strip("/")
    folders = state.folders()
    if folder:
        folder = clean_repo_path(folder) or ""
        if folder not in folders:
            raise HubError(404, f'{route.tree_path} does not exist on "{route.revision}"', "EntryNotFound",
                           headers={"X-Repo-Commit": state.sha})
    prefix = folder + "/" if folder else ""
    paths: list[str] = []
    for p in sorted(set(state.files) | folders):
        if not p.startswith(prefix):
            continue
        rest = p[len(prefix):]
        if not rest or (not recursive and "/" in rest):
            continue
        paths.append(p)
    page_size = 50 if expand else max(1, hub.tree_page_size)
    offset = int_param(query, "cursor", "cursor")
    page = paths[offset : offset + page_size]
    headers = {}
    if offset + page_size < len(paths):
        headers = next_page_link(f"{req.base_url}{req.path}", query, "cursor", offset + page_size)
    return json_response([_entry(state, p, expand) for p in page], headers=headers)


def paths_info(hub: HubServer, req: Request) -> Response:
    state = readable_revision(hub, req)
    if "json" in req.headers.get("Content-Type", ""):
        payload = json.loads(req.body or b"{}")
        paths = as_list(payload.get("paths"))
        expand = bool(payload.get("expand"))
    else:
        form = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
        paths = form.get("paths", []) + form.get("paths[]", [])
        expand = truthy(form.get("expand"))
    folders = state.folders()
    out = []
    for raw in paths:
        p = clean_repo_path(str(raw).strip("/"))
        if p and (p in state.files or p in folders):
            out.append(_entry(state, p, expand))
    return json_response(out)
