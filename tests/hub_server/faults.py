"""Fault injection and the request log of the endpoint.

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

The request log: ``server.request_log`` is ``[(method, path, status)]`` of every request (status 0: connection
dropped), ``server.resolve_log`` a dict per file resolve, ``server.resolved_files()`` the ``(repo_id, path)`` of the
successful ones; ``server.clear_log()`` empties both.
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.hub_server.repos import gated_message
from tests.hub_server.storage import git_blob_sha1, valid_repo_id
from tests.hub_server.wire import PLURAL, Request, Response, Route, error_response

if TYPE_CHECKING:
    from tests.hub_server.server import HubServer

FAULT_KINDS = frozenset({"500", "502", "503", "timeout", "401", "403", "404", "malformed_json"})
_SERVER_ERROR_MESSAGES = {
    500: "Internal Error - We're working hard to fix this as soon as possible!",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


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

    def matches(self, route: Route) -> bool:
        if self.repo_id is not None and route.repo_id != self.repo_id:
            return False
        if self.path_glob is not None:
            if route.file_path is None:
                return False
            return fnmatch.fnmatchcase(route.file_path, self.path_glob)
        return True


class FaultInjection:
    """The injected faults of a HubServer (a base class of it); ``timeout_delay``: how long a "timeout" waits."""

    def __init__(self, timeout_delay: float) -> None:
        self.timeout_delay = float(timeout_delay)
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()

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

    def take_fault(self, route: Route, *, kinds: set[str] | None = None, exclude: set[str] | None = None,
                   consume: bool = True) -> Fault | None:
        """The first fault that matches the request (``consume``: count the hit and use up one of its times)."""
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


class RequestLog:
    """The request log of a HubServer (a base class of it)."""

    def __init__(self) -> None:
        self.request_log: list[tuple[str, str, int]] = []
        self.resolve_log: list[dict] = []
        self._log_lock = threading.Lock()

    def log(self, method: str, path: str, status: int, route: Route | None) -> None:
        with self._log_lock:
            self.request_log.append((method, path, status))
            if route is not None and route.action == "resolve":
                self.resolve_log.append({"method": method, "repo_type": route.repo_type, "repo_id": route.repo_id,
                                         "path": route.file_path, "revision": route.revision, "status": status})

    def resolved_files(self, include_head: bool = False, repo_type: str | None = None) -> list[tuple[str, str]]:
        """(repo_id, path) of every successful file resolve (GET only, unless include_head), in request order."""
        methods = {"GET", "HEAD"} if include_head else {"GET"}
        with self._log_lock:
            return [(e["repo_id"], e["path"]) for e in self.resolve_log
                    if e["method"] in methods and 0 < e["status"] < 400
                    and (repo_type is None or e["repo_type"] == repo_type)]

    def clear_log(self) -> None:
        with self._log_lock:
            self.request_log.clear()
            self.resolve_log.clear()

    def log_snapshot(self) -> dict:
        """The log as the /_test/log control endpoint answers it."""
        with self._log_lock:
            requests = [list(r) for r in self.request_log]
            resolves = [dict(r) for r in self.resolve_log]
        return {"requests": requests, "resolves": resolves, "resolved": [list(x) for x in self.resolved_files()]}


# -- what a fault answers ----------------------------------------------------------------------------------------


def fault_response(hub: HubServer, req: Request, fault: Fault) -> Response:
    """The answer of an HTTP-status fault, worded as the Hub words that status for this kind of request."""
    route, kind = req.route, fault.kind
    headers: dict[str, str] = {}
    if route.action == "resolve" and route.repo_type in PLURAL and route.repo_id:
        sha = hub.repo_sha(route.repo_id, route.repo_type) if valid_repo_id(route.repo_id) else None
        if sha:
            headers["X-Repo-Commit"] = sha
    if kind in ("500", "502", "503"):
        status = int(kind)
        return error_response(status, _SERVER_ERROR_MESSAGES[status], headers=headers)
    if kind in ("401", "403"):
        if route.repo_id:
            message = gated_message(route.repo_type or "model", route.repo_id, kind, req.base_url)
            return error_response(int(kind), message, "GatedRepo", headers)
        if kind == "401":
            return error_response(401, "Invalid credentials in Authorization header", headers=headers)
        return error_response(403, "Forbidden: you don't have the rights to perform this action", headers=headers)
    if kind == "404":
        if route.action == "resolve":
            return error_response(404, "Entry not found", "EntryNotFound", headers)
        if route.repo_id:
            return error_response(404, "Repository not found", "RepoNotFound", headers)
        return error_response(404, "Not Found", headers=headers)
    raise AssertionError(kind)  # pragma: no cover


def malform(hub: HubServer, req: Request, resp: Response) -> Response:
    """``resp`` with its JSON cut in half when a "malformed_json" fault matches (see the module docstring)."""
    if resp.status not in (200, 206):
        return resp
    route, method = req.route, req.method
    if route.action == "resolve":
        if not (route.file_path or "").lower().endswith(".json"):
            return resp
        # HEAD peeks (shows the metadata of the malformed file), GET uses the fault up.
        if hub.take_fault(route, kinds={"malformed_json"}, consume=(method != "HEAD")) is None:
            return resp
        assert resp.stream is not None
        resp.stream.seek(0)
        original = resp.stream.read()
        resp.stream.close()
        resp.stream = None
        bad = original[: len(original) // 2]
        resp.headers["ETag"] = f'"{git_blob_sha1(bad)}"'
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
    if hub.take_fault(route, kinds={"malformed_json"}) is None:
        return resp
    resp.body = resp.body[: max(1, len(resp.body) // 2)]
    return resp
