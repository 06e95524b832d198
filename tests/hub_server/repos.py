"""The repo API of the endpoint: who may read a repo, its info, listings, refs, creating and deleting repos.

``GET /api/<type>s/<org>/<name>[/revision/<rev>]`` (``model_info``, ``dataset_info``, ``repo_info``, with
``expand``/``blobs``), ``GET /api/<type>s`` (``list_models``/``list_datasets``: search, author, filter, pipeline_tag,
library, gated, sort/direction, limit, ``Link`` pagination by ``cursor``), ``GET .../refs``,
``POST /api/repos/create``, ``DELETE /api/repos/delete`` and ``POST /api/validate-yaml``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tests.hub_server.metadata import front_matter_error
from tests.hub_server.storage import RepoState, valid_repo_id
from tests.hub_server.users import require_write, token_of
from tests.hub_server.wire import (
    PLURAL,
    HubError,
    Request,
    Response,
    expand_param,
    int_param,
    json_response,
    next_page_link,
    object_id,
    truthy,
)

if TYPE_CHECKING:
    from tests.hub_server.server import HubServer


def readable_state(hub: HubServer, req: Request, *, files: bool) -> RepoState:
    """The repo the request is about, at its head, if the request may read it (``files``: its files, which a
    gated repo refuses to anonymous and denied tokens)."""
    route = req.route
    assert route.repo_type is not None and route.repo_id is not None
    tok = token_of(hub, req)  # an invalid token is refused before anything else
    if route.repo_type not in PLURAL or not valid_repo_id(route.repo_id):
        raise HubError(404, "Repository not found", "RepoNotFound")
    state = hub.storage.state(route.repo_type, route.repo_id)
    if state is None:
        raise HubError(404, "Repository not found", "RepoNotFound")
    if state.info.private and tok is None:
        raise HubError(401, "Repository not found", "RepoNotFound")
    if state.info.disabled:
        raise HubError(403, "Access to this resource is disabled.")
    if files and state.info.gated:
        if tok is None:
            raise HubError(401, gated_message(route.repo_type, route.repo_id, "401", req.base_url), "GatedRepo")
        if tok[0] in hub.gated_denied_tokens:
            raise HubError(403, gated_message(route.repo_type, route.repo_id, "403", req.base_url), "GatedRepo")
    return state


def gated_message(repo_type: str, repo_id: str, status: str, base_url: str) -> str:
    """The Hub's words for a gated repo refused without a token ("401") or to a token without access ("403")."""
    if status == "401":
        return (f"Access to {repo_type} {repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in.")
    return (f"Access to {repo_type} {repo_id} is restricted and you are not in the authorized list. "
            f"Visit {base_url}/{repo_id} to ask for access.")


def at_revision(hub: HubServer, state: RepoState, revision: str | None) -> RepoState:
    """The repo at ``revision`` (main, refs/heads/main, or any commit id of its history)."""
    at = hub.storage.state_at(state, revision)
    if at is None:
        raise HubError(404, f"Invalid rev id: {revision or 'main'}", "RevisionNotFound")
    return at


def readable_revision(hub: HubServer, req: Request) -> RepoState:
    """The repo at the request's revision, for an API call about it (not its files)."""
    return at_revision(hub, readable_state(hub, req, files=False), req.route.revision)


# -- info --------------------------------------------------------------------------------------------------------


def full_info(state: RepoState, *, blobs: bool) -> dict:
    """The JSON of ``model_info``/``dataset_info`` (``blobs``: siblings with size and blob id)."""
    info = state.info
    siblings = []
    for p in sorted(state.files):
        s: dict[str, Any] = {"rfilename": p}
        if blobs:
            s["size"] = state.files[p].size
            s["blobId"] = state.files[p].oid
        siblings.append(s)
    d: dict[str, Any] = {"_id": object_id(state.repo_type, state.repo_id), "id": state.repo_id}
    if state.repo_type == "model":
        d["modelId"] = state.repo_id
    d.update({"author": state.author, "sha": state.sha, "lastModified": info.last_modified,
              "createdAt": info.created_at, "private": info.private, "gated": info.gated, "disabled": info.disabled,
              "downloads": info.downloads, "likes": info.likes, "tags": list(info.tags)})
    if state.repo_type == "model":
        if info.pipeline_tag is not None:
            d["pipeline_tag"] = info.pipeline_tag
        if info.library_name is not None:
            d["library_name"] = info.library_name
        if info.config is not None:
            d["config"] = info.config
        d["spaces"] = []
    else:
        if state.meta.get("description") is not None:
            d["description"] = state.meta["description"]
        d["paperswithcode_id"] = state.meta.get("paperswithcode_id")
    if info.card_data is not None:
        d["cardData"] = info.card_data
    d["siblings"] = siblings
    d["usedStorage"] = state.used_storage
    return d


def expanded_info(state: RepoState, expand: list[str]) -> dict:
    """Only the ``expand`` fields (and the ids), as the Hub answers ``?expand=...``."""
    full = full_info(state, blobs=False)
    full["downloadsAllTime"] = state.info.downloads_all_time
    full["trendingScore"] = state.info.trending_score
    full.setdefault("cardData", None)
    out = {"_id": full["_id"], "id": full["id"]}
    for key in expand:
        if key in full:
            out[key] = full[key]
    return out


def repo_info(hub: HubServer, req: Request) -> Response:
    state = readable_revision(hub, req)
    expand = expand_param(req.query)
    if expand:
        return json_response(expanded_info(state, expand))
    return json_response(full_info(state, blobs=truthy(req.query.get("blobs"))))


def refs(hub: HubServer, req: Request) -> Response:
    state = readable_state(hub, req, files=False)
    branch = {"name": "main", "ref": "refs/heads/main", "targetCommit": state.sha}
    return json_response({"branches": [branch], "converts": [], "tags": [], "pullRequests": []})


# -- listing -----------------------------------------------------------------------------------------------------


def _date_key(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0


_SORT_KEYS = {
    "downloads": lambda s: s.info.downloads,
    "likes": lambda s: s.info.likes,
    "lastModified": lambda s: _date_key(s.info.last_modified),
    "last_modified": lambda s: _date_key(s.info.last_modified),
    "createdAt": lambda s: _date_key(s.info.created_at),
    "created_at": lambda s: _date_key(s.info.created_at),
    "trendingScore": lambda s: s.info.trending_score,
    "trending_score": lambda s: s.info.trending_score,
    "downloadsAllTime": lambda s: s.info.downloads_all_time,
    "id": None,
    "modelId": None,
}


def _matching(states: list[RepoState], query: dict[str, list[str]], anonymous: bool) -> list[RepoState]:
    """The repos a listing's filters keep."""
    if anonymous:
        states = [s for s in states if not s.info.private]
    for term in query.get("search", []):
        t = term.lower()
        states = [s for s in states if t in s.repo_id.lower()]
    for author in query.get("author", []):
        states = [s for s in states if s.author.lower() == author.lower()]
    for f in query.get("filter", []) + query.get("filter[]", []):
        states = [s for s in states if f in s.info.tags or f == s.info.library_name or f == s.info.pipeline_tag]
    for pt in query.get("pipeline_tag", []):
        states = [s for s in states if s.info.pipeline_tag == pt]
    libraries = query.get("library", []) + query.get("library[]", [])
    if libraries:
        states = [s for s in states
                  if s.info.library_name in libraries or any(lib in s.info.tags for lib in libraries)]
    if query.get("gated"):
        want = truthy(query["gated"])
        states = [s for s in states if bool(s.info.gated) == want]
    return states


def _sorted(states: list[RepoState], query: dict[str, list[str]]) -> list[RepoState]:
    """By id, then by ``sort`` (``direction=1``: ascending; default descending), ties staying by id."""
    states = sorted(states, key=lambda s: s.repo_id)
    sort = (query.get("sort") or [None])[-1]
    if sort is None:
        return states
    if sort not in _SORT_KEYS:
        raise HubError(400, f"Invalid sort parameter: {sort!r}")
    key = _SORT_KEYS[sort]
    descending = (query.get("direction") or ["-1"])[-1].strip() != "1"
    if key is None:
        return sorted(states, key=lambda s: s.repo_id.lower(), reverse=descending)
    return sorted(states, key=key, reverse=descending)


def _list_item(state: RepoState, query: dict[str, list[str]]) -> dict:
    """One repo of a listing: the fields the Hub lists by default, plus those ``full``/``cardData``/``config`` ask."""
    info = full_info(state, blobs=False)
    if state.repo_type == "model":
        keep = ["_id", "id", "modelId", "likes", "downloads", "private", "tags", "pipeline_tag", "library_name",
                "createdAt"]
    else:
        keep = ["_id", "id", "author", "sha", "lastModified", "private", "gated", "disabled", "downloads", "likes",
                "tags", "createdAt", "description", "paperswithcode_id"]
    if truthy(query.get("full")):
        keep += ["author", "sha", "lastModified", "gated", "disabled", "siblings", "cardData", "config"]
    if truthy(query.get("cardData")):
        keep.append("cardData")
    if truthy(query.get("config")):
        keep.append("config")
    item = {k: info[k] for k in keep if k in info}
    item["trendingScore"] = state.info.trending_score
    return item


def list_repos(hub: HubServer, req: Request) -> Response:
    rtype = req.route.repo_type
    assert rtype in PLURAL
    query = req.query
    anonymous = token_of(hub, req) is None
    storage = hub.storage
    states = [s for s in (storage.state(rtype, rid) for rid in storage.list_repo_ids(rtype)) if s is not None]
    states = _sorted(_matching(states, query, anonymous), query)

    limit = int_param(query, "limit", "limit or cursor")
    offset = int_param(query, "cursor", "limit or cursor")
    page_size = max(1, hub.page_size)
    if limit > 0:
        page_size = min(page_size, limit)
    page = states[offset : offset + page_size]

    expand = expand_param(query)
    items = [expanded_info(s, expand) if expand else _list_item(s, query) for s in page]
    headers = {}
    if offset + page_size < len(states):
        headers = next_page_link(f"{req.base_url}/api/{PLURAL[rtype]}", query, "cursor", offset + page_size)
    return json_response(items, headers=headers)


# -- creating and deleting ---------------------------------------------------------------------------------------


def _repo_from_body(hub: HubServer, req: Request) -> tuple[str, str, dict]:
    """(repo type, repo ID, payload) of a create/delete request (the namespace defaults to the token's user)."""
    tok = token_of(hub, req)
    try:
        payload = json.loads(req.body or b"{}")
    except ValueError:
        raise HubError(400, "Invalid JSON body") from None
    name = payload.get("name")
    org = payload.get("organization") or (hub.user_of(tok[0]) if tok else hub.username)
    rtype = payload.get("type") or "model"
    if rtype == "space":
        raise HubError(400, "Spaces are not supported by the test hub")
    if rtype not in PLURAL:
        raise HubError(400, f"Invalid repo type {rtype!r}")
    repo_id = f"{org}/{name}"
    if not name or not valid_repo_id(repo_id):
        raise HubError(400, f"Invalid repo name {repo_id!r}")
    return rtype, repo_id, payload


def repo_url(base_url: str, repo_type: str, repo_id: str) -> str:
    prefix = "" if repo_type == "model" else f"{PLURAL[repo_type]}/"
    return f"{base_url}/{prefix}{repo_id}"


def create_repo(hub: HubServer, req: Request) -> Response:
    require_write(hub, req)
    rtype, repo_id, payload = _repo_from_body(hub, req)
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    url = repo_url(req.base_url, rtype, repo_id)
    if not hub.storage.create(rtype, repo_id, private):
        message = f"You already created this {rtype} repo"
        raise HubError(409, message, body={"error": message, "url": url})
    return json_response({"url": url, "name": repo_id, "id": object_id(rtype, repo_id)})


def delete_repo(hub: HubServer, req: Request) -> Response:
    require_write(hub, req)
    rtype, repo_id, _ = _repo_from_body(hub, req)
    if not hub.storage.delete(rtype, repo_id):
        raise HubError(404, "Repository not found", "RepoNotFound")
    return json_response({"ok": True})


def validate_yaml(hub: HubServer, req: Request) -> Response:
    try:
        payload = json.loads(req.body or b"{}")
    except ValueError:
        raise HubError(400, "Invalid JSON body") from None
    err = front_matter_error(str(payload.get("content", "")))
    if err:
        return json_response({"errors": [{"message": err}], "warnings": []}, status=400)
    return json_response({"errors": [], "warnings": []})
