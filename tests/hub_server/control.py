"""HTTP control endpoints, for a server started by hand (never logged, never faulted)::

    POST   /_test/faults   {"kind": "503", "repo_id": null, "path_glob": null, "times": 1}  (or a list of those)
    GET    /_test/faults
    DELETE /_test/faults
    GET    /_test/log      {"requests": [[method, path, status], ...], "resolved": [[repo_id, path], ...], "resolves"}
    DELETE /_test/log
    GET    /_test/jobs     {"jobs": [{"id", "namespace", "stage", "spec"}, ...]}  (specs as submitted)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.hub_server.wire import Response, error_response, json_response

if TYPE_CHECKING:
    from tests.hub_server.server import HubServer


def control(hub: HubServer, method: str, path: str, body: bytes) -> Response:
    path = path.rstrip("/")
    if path == "/_test/faults":
        if method == "GET":
            return json_response({"faults": [f.to_dict() for f in hub.faults]})
        if method == "DELETE":
            hub.clear_faults()
            return json_response({"ok": True})
        if method == "POST":
            try:
                payload = json.loads(body or b"{}")
                items = payload if isinstance(payload, list) else [payload]
                added = [hub.inject(item["kind"], repo_id=item.get("repo_id"), path_glob=item.get("path_glob"),
                                    times=item.get("times"))
                         for item in items]
            except (ValueError, KeyError, TypeError) as e:
                return error_response(400, f"Invalid fault: {e}")
            return json_response({"ok": True, "faults": [f.to_dict() for f in added]})
    if path == "/_test/jobs" and method == "GET":
        return json_response({"jobs": hub.jobs_as_submitted()})
    if path == "/_test/log":
        if method == "GET":
            return json_response(hub.log_snapshot())
        if method == "DELETE":
            hub.clear_log()
            return json_response({"ok": True})
    return error_response(404, "Unknown test control endpoint")
