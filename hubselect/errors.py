"""Errors a user can act on. The CLI prints them as one line and exits with code 2.

Hub failures are typed (:class:`HubNotFound`, :class:`HubGated`, :class:`HubUnauthorized`,
:class:`HubRateLimited`, :class:`HubServerError`, ...), all :class:`HubError`; :func:`hub_user_error` is
the one place that words them for the user.
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """An error as a one-line report shows it: its first line (at most ``limit`` characters), or its type."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if limit is None else text[:limit]


class UserError(Exception):
    """Bad input or an unusable zoo: reported in one line, never as a traceback."""


class HubError(Exception):
    """A Hub request that failed for good (after retries where retrying makes sense).

    ``reason`` is a short machine-readable word (``not_found``, ``gated``, ``unauthorized``,
    ``rate_limited``, ``server_error``, ``timeout``, ``connection``, ``offline``, ``malformed_json``, ...)
    that the crawler records. :func:`hub_error` makes the typed subclass for a reason.
    """

    reason = "hub_error"

    def __init__(self, reason: str | None = None, message: str = ""):
        super().__init__(message or reason or self.reason)
        if reason is not None:
            self.reason = reason


class HubNotFound(HubError):
    reason = "not_found"


class HubGated(HubError):
    reason = "gated"


class HubUnauthorized(HubError):
    reason = "unauthorized"


class HubRateLimited(HubError):
    reason = "rate_limited"


class HubServerError(HubError):
    """5xx answers, timeouts and dropped connections that outlasted the retries."""
    reason = "server_error"


class HubOffline(HubError):
    reason = "offline"


_BY_REASON = {cls.reason: cls for cls in (HubNotFound, HubGated, HubUnauthorized, HubRateLimited, HubOffline)}
_BY_REASON.update(timeout=HubServerError, connection=HubServerError, server_error=HubServerError)


def hub_error(reason: str, message: str) -> HubError:
    """The typed error for ``reason`` (plain :class:`HubError` for reasons without a type)."""
    return _BY_REASON.get(reason, HubError)(reason, message)


def hub_user_error(exc: HubError, subject: str, *, write: bool = False) -> UserError:
    """The one wording of a Hub failure for the user. ``subject`` names what was asked for ("dataset
    user/x", "edge dataset user/y"); ``write`` when the request needed write access."""
    access = "write" if write else "read"
    if isinstance(exc, HubNotFound):
        return UserError(f"{subject} not found on the Hub (if it is private, set HF_TOKEN to a token with access)")
    if isinstance(exc, HubUnauthorized):
        return UserError(f"{subject} not found on the Hub, or private with no {access} access for this token: "
                         f"set HF_TOKEN to a token with {access} access (or run `hf auth login`)")
    if isinstance(exc, HubGated):
        return UserError(f"{subject} is gated: accept its conditions on the Hub and set HF_TOKEN to a token "
                         "with access")
    if isinstance(exc, HubRateLimited):
        return UserError(f"{subject}: the Hub is rate-limiting requests; wait and retry (a token raises the limit)")
    if isinstance(exc, HubOffline):
        return UserError(f"{subject}: HF_HUB_OFFLINE is set, and this needs the Hub")
    return UserError(f"{subject}: the Hub could not be reached ({exc})")
