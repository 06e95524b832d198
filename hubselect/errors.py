"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input or an unusable zoo: reported in one line, never as a traceback."""


class HubError(Exception):
    """A Hub request that failed for good (after retries where retrying makes sense).

    ``reason`` is a short machine-readable word (``not_found``, ``gated``, ``unauthorized``,
    ``server_error``, ``timeout``, ``connection``, ``malformed_json``) recorded by the crawler.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
