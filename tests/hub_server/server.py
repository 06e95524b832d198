"""HubServer: the endpoint itself, a threaded HTTP server over a hub root folder, started and stopped by tests.

Its state comes from its base classes, one per concern: :class:`~tests.hub_server.users.Users` (tokens, users),
:class:`~tests.hub_server.faults.FaultInjection` and :class:`~tests.hub_server.faults.RequestLog`,
:class:`~tests.hub_server.jobs.Jobs`; the repos live in its :class:`~tests.hub_server.storage.Storage`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.hub_server.faults import FaultInjection, RequestLog
from tests.hub_server.jobs import Jobs
from tests.hub_server.routes import Handler
from tests.hub_server.storage import Storage, make_repo
from tests.hub_server.users import Users


class HubServer(Users, FaultInjection, RequestLog, Jobs):
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
        Users.__init__(self, tokens, username, users)
        FaultInjection.__init__(self, timeout_delay)
        RequestLog.__init__(self)
        Jobs.__init__(self)
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self.commits_page_size = 50
        self.page_size = int(page_size)
        self.tree_page_size = 1000
        self.verbose = verbose
        self.storage = Storage(self.root)
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
        handler = type("_BoundHubHandler", (Handler,), {"hub": self})
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

    def connection_opened(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.add(conn)

    def connection_closed(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.discard(conn)

    def wait_for_timeout_fault(self) -> None:
        """A "timeout" fault's wait: ``timeout_delay`` seconds, cut short when the server stops."""
        self._stop_event.wait(self.timeout_delay)

    # -- repos -----------------------------------------------------------------------------------------------------

    def repo_sha(self, repo_id: str, repo_type: str = "model") -> str | None:
        """Current commit id of a repo (None if it does not exist)."""
        state = self.storage.state(repo_type, repo_id)
        return state.sha if state else None

    def commits(self, repo_id: str, repo_type: str = "model") -> list[dict]:
        """The repo's history, newest first: {id, authors, title, message, date, tree, changes}."""
        state = self.storage.state(repo_type, repo_id)
        return list(reversed(state.commits)) if state else []

    def make_repo(self, repo_id: str, files: dict[str, str | bytes], repo_type: str = "model",
                  meta: dict | None = None) -> Path:
        return make_repo(self.root, repo_id, files, repo_type=repo_type, meta=meta)
