"""Users and tokens of the endpoint: who a request is, what it may do, and ``whoami``.

Every valid token belongs to ``username`` ("test-user") unless ``server.add_user("alice")`` (which returns alice's
write token, ``hf_alice_write``) or ``users={token: name}`` says otherwise. ``whoami``, the default namespace of
``create_repo``, the Jobs namespace and commit authors follow the token's user. Reads need no token (except of
private and gated repos); writes need a token with "write" permission. An unknown token is refused (401) like the
Hub does, even on reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.hub_server.storage import NAME_RE
from tests.hub_server.wire import HubError, Request, Response, iso, json_response, object_id

if TYPE_CHECKING:
    from tests.hub_server.server import HubServer

WRITE_TOKEN = "hf_write"
READ_TOKEN = "hf_read"
DEFAULT_TOKENS = {WRITE_TOKEN: "write", READ_TOKEN: "read"}


class Users:
    """The token and user tables of a HubServer (a base class of it).

    tokens: {token: "read" | "write"}; gated_denied_tokens: valid tokens refused on gated repos (403 GatedRepo);
    username: the user of every token that ``token_users`` ({token: user}) does not name.
    """

    def __init__(self, tokens: dict[str, str] | None, username: str, users: dict[str, str] | None) -> None:
        self.tokens: dict[str, str] = dict(DEFAULT_TOKENS if tokens is None else tokens)
        self.gated_denied_tokens: set[str] = set()
        self.username = username
        self.token_users: dict[str, str] = dict(users or {})

    def add_user(self, name: str, permission: str = "write", token: str | None = None) -> str:
        """A user with a token of their own (returned); their commits are recorded with ``name`` as author."""
        if permission not in ("read", "write"):
            raise ValueError(f"permission must be 'read' or 'write', not {permission!r}")
        if not NAME_RE.match(name):
            raise ValueError(f"invalid user name {name!r}")
        token = token or f"hf_{name}_{permission}"
        self.tokens[token] = permission
        self.token_users[token] = name
        return token

    def user_of(self, token: str) -> str:
        """The user a valid token belongs to (``username`` unless ``add_user``/``users`` says otherwise)."""
        return self.token_users.get(token, self.username)


def token_of(hub: HubServer, req: Request) -> tuple[str, str] | None:
    """(token, permission) or None when anonymous. Invalid tokens are refused like the Hub does."""
    auth = req.headers.get("Authorization")
    if not auth:
        return None
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise HubError(401, "Invalid credentials in Authorization header")
    token = value.strip()
    perm = hub.tokens.get(token)
    if perm is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    return token, perm


def require_write(hub: HubServer, req: Request) -> tuple[str, str]:
    """(token, "write"), or the Hub's 401/403."""
    tok = token_of(hub, req)
    if tok is None:
        raise HubError(401, "You must be authenticated to perform this action (no token provided)")
    if tok[1] != "write":
        raise HubError(403, "You don't have the rights to perform this action: this token is read-only")
    return tok


def whoami(hub: HubServer, req: Request) -> Response:
    tok = token_of(hub, req)
    if tok is None:
        raise HubError(401, "Invalid username or password.")
    name = hub.user_of(tok[0])
    return json_response(
        {
            "type": "user",
            "id": object_id("user", name),
            "name": name,
            "fullname": "Test User",
            "email": f"{name}@example.com",
            "emailVerified": True,
            "canPay": False,
            "isPro": False,
            "periodEnd": None,
            "avatarUrl": "",
            "orgs": [],
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": "test-token", "role": tok[1], "createdAt": iso(0)},
            },
        }
    )
