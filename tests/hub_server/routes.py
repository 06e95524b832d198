"""Request dispatch: which URL is which Hub call, and the HTTP handler that parses a request and hands it over.

The handler is kept thin: it reads the request, answers the ``/_test/`` control endpoints, applies injected faults,
calls the handler of the route (:data:`HANDLERS`: ``(action, method) -> handler(hub, request)``), logs the request
and sends the answer. A :class:`HubError` raised anywhere becomes the Hub's error answer.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.hub_server import commits, files, jobs, repos, users
from tests.hub_server.control import control
from tests.hub_server.faults import fault_response, malform
from tests.hub_server.wire import CHUNK, SINGULAR, HubError, Request, Response, Route, error_response

if TYPE_CHECKING:
    from tests.hub_server.server import HubServer

HANDLERS: dict[tuple[str, str], Callable[[HubServer, Request], Response]] = {
    ("resolve", "GET"): files.resolve,
    ("resolve", "HEAD"): files.resolve,
    ("tree", "GET"): files.tree,
    ("paths_info", "POST"): files.paths_info,
    ("info", "GET"): repos.repo_info,
    ("list", "GET"): repos.list_repos,
    ("refs", "GET"): repos.refs,
    ("repo_create", "POST"): repos.create_repo,
    ("repo_delete", "DELETE"): repos.delete_repo,
    ("validate_yaml", "POST"): repos.validate_yaml,
    ("preupload", "POST"): commits.preupload,
    ("commit", "POST"): commits.create_commit,
    ("commits", "GET"): commits.list_commits,
    ("whoami", "GET"): users.whoami,
    ("jobs", "POST"): jobs.create_job,
    ("jobs", "GET"): jobs.list_jobs,
    ("job", "GET"): jobs.inspect_job,
    ("job_logs", "GET"): jobs.job_logs,
    ("job_cancel", "POST"): jobs.cancel_job,
}
_ACTIONS = {action for action, _ in HANDLERS}


def parse_route(raw_path: str) -> Route:
    """What a URL path (still quoted) asks for."""
    segs = raw_path.split("/")[1:]
    if segs and segs[-1] == "" and len(segs) > 1:
        segs = segs[:-1]
    u = unquote
    n = len(segs)
    if n >= 1 and segs[0] == "api":
        if n == 2 and segs[1] == "whoami-v2":
            return Route("whoami")
        if n == 2 and segs[1] == "validate-yaml":
            return Route("validate_yaml")
        if n == 3 and segs[1] == "repos" and segs[2] in ("create", "delete"):
            return Route("repo_" + segs[2])
        if n >= 3 and segs[1] == "jobs":
            # /api/jobs/{ns} (create, list), /api/jobs/{ns}/{id} (inspect), /api/jobs/{ns}/{id}/{logs,cancel}
            ns, job_id = u(segs[2]), (u(segs[3]) if n >= 4 else None)
            if n == 3:
                return Route("jobs", namespace=ns)
            if n == 4:
                return Route("job", namespace=ns, job_id=job_id)
            if n == 5 and segs[4] in ("logs", "cancel"):
                return Route("job_" + segs[4], namespace=ns, job_id=job_id)
            return Route("not_found")
        if n >= 2 and segs[1] in ("models", "datasets", "spaces"):
            if segs[1] == "spaces":
                rid = f"{u(segs[2])}/{u(segs[3])}" if n >= 4 else None
                return Route("unsupported_space", "space", rid)
            rtype = SINGULAR[segs[1]]
            if n == 2:
                return Route("list", rtype)
            if n < 4:
                return Route("not_found", rtype)
            rid = f"{u(segs[2])}/{u(segs[3])}"
            if n == 4:
                return Route("info", rtype, rid, "main")
            sub = segs[4]
            if sub == "revision" and n == 6:
                return Route("info", rtype, rid, u(segs[5]))
            if sub == "tree" and n >= 6:
                return Route("tree", rtype, rid, u(segs[5]), tree_path=u("/".join(segs[6:])))
            if sub in ("paths-info", "preupload", "commit", "commits") and n == 6:
                return Route(sub.replace("-", "_"), rtype, rid, u(segs[5]))
            if sub == "refs" and n == 5:
                return Route("refs", rtype, rid)
            return Route("not_found", rtype, rid)
        return Route("not_found")
    # File resolves: /{org}/{name}/resolve/{rev}/{path} and /datasets/{org}/{name}/resolve/{rev}/{path}
    if n >= 6 and segs[0] in ("datasets", "spaces") and segs[3] == "resolve":
        rtype = "dataset" if segs[0] == "datasets" else "space"
        return Route("resolve", rtype, f"{u(segs[1])}/{u(segs[2])}", u(segs[4]), file_path=u("/".join(segs[5:])))
    if n >= 5 and segs[2] == "resolve":
        return Route("resolve", "model", f"{u(segs[0])}/{u(segs[1])}", u(segs[3]), file_path=u("/".join(segs[4:])))
    return Route("not_found")


def handle(hub: HubServer, req: Request) -> Response:
    """The answer of the route's handler, or the Hub's 404/405."""
    handler = HANDLERS.get((req.route.action, req.method))
    if handler is not None:
        return handler(hub, req)
    if req.route.action == "unsupported_space":
        raise HubError(404, "Repository not found (Spaces are not served by the test hub)", "RepoNotFound")
    if req.route.action in _ACTIONS:
        raise HubError(405, f"Method {req.method} not allowed")
    raise HubError(404, f"Not Found: {req.path}")


class Handler(BaseHTTPRequestHandler):
    """The HTTP side: one instance per connection, bound to its HubServer as ``hub`` (see ``HubServer.start``)."""

    protocol_version = "HTTP/1.1"
    server_version = "hubselect-test-hub/1.0"
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    hub: HubServer  # set on the bound subclass

    def setup(self) -> None:
        super().setup()
        self.hub.connection_opened(self.connection)

    def finish(self) -> None:
        self.hub.connection_closed(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # Silence the default stderr logging unless verbose.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.hub.verbose:
            sys.stderr.write("[hub] %s - %s\n" % (self.address_string(), format % args))

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

    def _send(self, method: str, resp: Response) -> None:
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
                    chunk = resp.stream.read(min(CHUNK, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            elif resp.body:
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _dispatch(self) -> None:
        method, hub = self.command, self.hub
        split = urlsplit(self.path)
        raw_path = split.path or "/"
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        if raw_path.startswith("/_test/"):
            self._send(method, control(hub, method, raw_path, body))
            return

        host = self.headers.get("Host")
        req = Request(method, raw_path, parse_qs(split.query, keep_blank_values=True), self.headers, body,
                      f"http://{host}" if host else hub.url, parse_route(raw_path))
        log_path = unquote(raw_path)
        try:
            # Injected faults come first: they stand for infrastructure problems in front of the Hub.
            fault = hub.take_fault(req.route, exclude={"malformed_json"})
            if fault is not None and fault.kind == "timeout":
                hub.log(method, log_path, 0, req.route)
                hub.wait_for_timeout_fault()
                self.close_connection = True  # no answer at all
                return
            resp = fault_response(hub, req, fault) if fault is not None else malform(hub, req, handle(hub, req))
        except HubError as e:
            resp = error_response(e.status, e.message, e.code, e.headers, e.body)
        except Exception as e:  # pragma: no cover - bug in the test server
            traceback.print_exc()
            resp = error_response(500, f"Test hub server error: {type(e).__name__}: {e}")
        # Log before answering, so that a client which got its answer always finds its request in the log.
        hub.log(method, log_path, resp.status, req.route)
        try:
            self._send(method, resp)
        finally:
            if resp.stream is not None:
                resp.stream.close()

    # every method goes the same way (``self.command`` says which)
    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch
