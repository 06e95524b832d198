"""Hugging Face Jobs, answered without running anything.

``HfApi.run_job``, ``inspect_job``, ``list_jobs``, ``fetch_job_logs``, ``cancel_job`` and ``wait_for_job`` work
against the endpoint (``/api/jobs/<namespace>[/<id>[/logs|/cancel]]``; the namespace must be the token's user). A
submitted Job is stored as submitted (``server.jobs[job_id]["spec"]``, secrets included, for the tests to inspect)
and starts in stage SCHEDULING; every ``inspect_job`` moves it one stage on (RUNNING, then
``server.job_final_stage``, default COMPLETED); ``cancel_job`` moves it to CANCELED. Answers never echo secret values
(their names map to null). Its log is a few synthetic lines (the image, the flavor and the command), served as the
Hub's server-sent events.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from typing import TYPE_CHECKING

from tests.hub_server.users import require_write, token_of
from tests.hub_server.wire import HubError, Request, Response, iso, json_response, object_id

if TYPE_CHECKING:
    from tests.hub_server.server import HubServer

_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]*$")  # label values are also stored as tags on the Hub
_TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")


class Jobs:
    """The submitted Jobs of a HubServer (a base class of it).

    jobs: {job_id: dict(id, namespace, spec, stage, message, created_at, started_at, finished_at)}, in order;
    job_final_stage: the stage a Job reaches after RUNNING ("COMPLETED", or e.g. "ERROR" to test failures).
    """

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.job_final_stage = "COMPLETED"
        self.jobs_lock = threading.Lock()

    def jobs_as_submitted(self) -> list[dict]:
        """[{id, namespace, stage, spec}] of every Job (for the /_test/jobs control endpoint)."""
        with self.jobs_lock:
            return [{k: job[k] for k in ("id", "namespace", "stage", "spec")} for job in self.jobs.values()]


def _namespace(hub: HubServer, req: Request, write: bool = False) -> str:
    """The Jobs namespace of the request, which must be the token's user."""
    tok = require_write(hub, req) if write else token_of(hub, req)
    if tok is None:
        raise HubError(401, "You must be authenticated to use Jobs (no token provided)")
    namespace = req.route.namespace
    if namespace != hub.user_of(tok[0]):
        raise HubError(403, f"You don't have access to the namespace {namespace!r}")
    return namespace


def _job(hub: HubServer, req: Request) -> dict:
    namespace = _namespace(hub, req)
    job = hub.jobs.get(req.route.job_id or "")
    if job is None or job["namespace"] != namespace:
        raise HubError(404, f"Job {req.route.job_id} not found")
    return job


def _job_info(job: dict) -> dict:
    """A Job as the Hub answers it (the JSON that huggingface_hub's ``JobInfo`` parses)."""
    spec = job["spec"]
    owner = {"id": object_id("user", job["namespace"]), "name": job["namespace"], "type": "user"}
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


def _check_spec(spec: object) -> None:
    """A Job spec the Hub would accept, or its 400."""
    if not isinstance(spec, dict):
        raise HubError(400, "A Job spec must be a JSON object")
    command = spec.get("command")
    if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
        raise HubError(400, "command must be a non-empty list of strings")
    if not isinstance(spec.get("dockerImage") or spec.get("spaceId"), str):
        raise HubError(400, "dockerImage or spaceId is required")
    if not isinstance(spec.get("flavor"), str) or not spec["flavor"]:
        raise HubError(400, "flavor is required")
    for key in ("environment", "secrets", "labels"):
        value = spec.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise HubError(400, f"{key} must map names to strings")
    bad = [v for v in (spec.get("labels") or {}).values() if not _LABEL_RE.match(v)]
    if bad:
        raise HubError(400, f"Invalid label value {bad[0]!r}: only letters, digits, '-' and '_'")
    timeout = spec.get("timeoutSeconds")
    if timeout is not None and not (isinstance(timeout, int) and timeout > 0):
        raise HubError(400, "timeoutSeconds must be a positive integer")


def create_job(hub: HubServer, req: Request) -> Response:
    namespace = _namespace(hub, req, write=True)
    try:
        spec = json.loads(req.body or b"{}")
    except ValueError:
        raise HubError(400, "Invalid JSON body") from None
    _check_spec(spec)
    job = {"id": uuid.uuid4().hex[:24], "namespace": namespace, "spec": spec, "stage": "SCHEDULING",
           "message": None, "created_at": iso(time.time()), "started_at": None, "finished_at": None}
    with hub.jobs_lock:
        hub.jobs[job["id"]] = job
        return json_response(_job_info(job))


def list_jobs(hub: HubServer, req: Request) -> Response:
    namespace = _namespace(hub, req)
    stages = {s.upper() for s in req.query.get("stage", [])}
    labels = [tuple(x.split("=", 1)) for x in req.query.get("label", []) if "=" in x]
    with hub.jobs_lock:
        jobs = [job for job in hub.jobs.values() if job["namespace"] == namespace
                and (not stages or job["stage"] in stages)
                and all((job["spec"].get("labels") or {}).get(k) == v for k, v in labels)]
        return json_response([_job_info(job) for job in jobs])


def inspect_job(hub: HubServer, req: Request) -> Response:
    """The Job, one stage further on: SCHEDULING -> RUNNING -> ``job_final_stage``."""
    with hub.jobs_lock:
        job = _job(hub, req)
        now = iso(time.time())
        if job["stage"] == "SCHEDULING":
            job["stage"], job["started_at"] = "RUNNING", now
        elif job["stage"] == "RUNNING":
            job["stage"], job["finished_at"] = hub.job_final_stage, now
            if job["stage"] == "ERROR":
                job["message"] = "Job failed with exit code: 1"
        return json_response(_job_info(job))


def job_logs(hub: HubServer, req: Request) -> Response:
    """The Job's log as server-sent events (``data: {"timestamp": ..., "data": ...}``), like the Hub."""
    with hub.jobs_lock:
        job = _job(hub, req)
        spec, stage, created = job["spec"], job["stage"], job["created_at"]
    lines = [f"===== Job started at {created} =====",
             f"image {spec.get('dockerImage') or spec.get('spaceId')} on {spec.get('flavor')}",
             "$ " + " ".join(spec.get("command") or [])]
    if stage in _TERMINAL:
        lines.append(f"the test hub ran nothing; stage {stage}")
    tail = (req.query.get("tail") or [""])[-1]
    if tail.isdigit():
        lines = lines[-int(tail):] if int(tail) else []
    events = "".join(f"data: {json.dumps({'timestamp': created, 'data': line})}\n\n" for line in lines)
    return Response(200, {"Content-Type": "text/event-stream"}, events.encode())


def cancel_job(hub: HubServer, req: Request) -> Response:
    with hub.jobs_lock:
        job = _job(hub, req)
        if job["stage"] not in _TERMINAL:
            job["stage"], job["finished_at"] = "CANCELED", iso(time.time())
        return json_response(_job_info(job))
