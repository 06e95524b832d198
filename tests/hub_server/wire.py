"""What travels over HTTP: the parsed request, the response, the Hub's error answer, and the Hub's JSON conventions.

Every request handler of the endpoint is a function ``handler(hub, request) -> Response``; it raises
:class:`HubError` for an answer the Hub gives as an error (status, ``X-Error-Message``, ``X-Error-Code``), which
huggingface_hub turns into its typed errors (``RepositoryNotFoundError``, ``GatedRepoError``, ...).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from typing import Any, BinaryIO
from urllib.parse import urlencode

PLURAL = {"model": "models", "dataset": "datasets"}
SINGULAR = {"models": "model", "datasets": "dataset"}
CHUNK = 1024 * 1024  # bytes read or sent at a time


@dataclass
class Route:
    """What a request is about, from its URL alone (see ``routes.parse_route``)."""

    action: str
    repo_type: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    file_path: str | None = None  # file resolves only
    tree_path: str | None = None
    namespace: str | None = None  # jobs only
    job_id: str | None = None


@dataclass
class Request:
    method: str
    path: str                      # the URL path as sent (still quoted), without the query string
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    base_url: str                  # http://host:port as the client addressed the server
    route: Route


class HubError(Exception):
    """An error answer: ``status``, a message (``X-Error-Message`` and the JSON body), an optional ``X-Error-Code``."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, body=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.body = body


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: BinaryIO | None = None  # when set, `length` bytes are streamed from it starting at `offset`
    offset: int = 0
    length: int = 0
    is_json: bool = False


def json_response(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(obj).encode("utf-8")
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return Response(status, h, body, is_json=True)


def error_response(status: int, message: str, code: str | None = None, headers: dict | None = None,
                   body=None) -> Response:
    h = {"X-Error-Message": message.encode("latin-1", "replace").decode("latin-1")}
    if code:
        h["X-Error-Code"] = code
    h.update(headers or {})
    return json_response(body if body is not None else {"error": message}, status, h)


# -- query strings -----------------------------------------------------------------------------------------------


def truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].strip().lower() in ("1", "true", "yes", "on")


def as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def expand_param(query: dict[str, list[str]]) -> list[str]:
    """The ``expand`` fields asked for (``expand=a&expand=b``, ``expand[]=a`` or ``expand=a,b``)."""
    values = query.get("expand", []) + query.get("expand[]", [])
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.split(",") if x)
    return out


def int_param(query: dict[str, list[str]], name: str, what: str) -> int:
    """The last value of an integer query parameter (0 when absent); a bad one is a 400 naming ``what``."""
    try:
        return int((query.get(name) or ["0"])[-1] or 0)
    except ValueError:
        raise HubError(400, f"Invalid {what}") from None


def next_page_link(url: str, query: dict[str, list[str]], param: str, value: int) -> dict[str, str]:
    """The ``Link: <url?...&param=value>; rel="next"`` header the Hub paginates with (other parameters kept)."""
    params = [(k, v) for k, vs in query.items() if k != param for v in vs] + [(param, str(value))]
    return {"Link": f'<{url}?{urlencode(params)}>; rel="next"'}


# -- values as the Hub writes them --------------------------------------------------------------------------------


def iso(ts: float) -> str:
    """A date as the Hub answers it: ``2024-01-31T12:00:00.000Z``."""
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def object_id(kind: str, name: str) -> str:
    """A stable 24-hex ``_id`` for a repo or a user, like the Hub's database ids."""
    return hashlib.sha1(f"{kind}/{name}".encode()).hexdigest()[:24]
