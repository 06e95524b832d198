"""Whose files a sync takes: the writer of a file and the zoo's trust policy (``trust.json``).

**Provenance.** Who wrote a file is not a field of the file: a sync asks the Hub for the last
commit that changed each file and for that commit's authors (:func:`writer_of`). That writer goes
into the zoo's ``records`` table (column ``writer``), where the ranking counts one vote per writer
(:func:`hubselect.zoo.tables.aggregate_records`).

**Trust.** By default a sync takes every writer the Hub let commit to the edge dataset (each one
vote), narrowed by an allow-list (``hubselect sync --only NAME``) or a deny-list (``--distrust NAME``),
widened again by ``--trust NAME`` and ``--trust-everyone`` (:class:`TrustPolicy`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubselect.errors import UserError

TRUST_FILE = "trust.json"
LOCAL_WRITER = "local"           # the writer of records that never went through the Hub (the zoo's owner)


@dataclass
class TrustPolicy:
    """Whose files a sync takes (the zoo's ``trust.json``).

    ``trusted`` None: every writer (the default of a fresh zoo: whoever the Hub let commit to the
    edge dataset, each counted once); a list: only those writers (``sync --only``). ``distrusted``: never these,
    whatever ``trusted`` says. A writer is a Hub user name, or ``a+b`` for a commit with several
    authors (one more voice, so that naming a co-author never borrows that author's trust).
    """

    trusted: list[str] | None = None
    distrusted: list[str] = field(default_factory=list)

    def allows(self, writer: str | None) -> bool:
        if writer is None or writer in self.distrusted:
            return False
        return self.trusted is None or writer in self.trusted

    def updated(self, trust: Iterable[str] = (), distrust: Iterable[str] = (), only: Iterable[str] = (),
                trust_everyone: bool = False) -> TrustPolicy:
        """The policy after ``hubselect sync`` options: ``only`` sets the allow-list (narrows);
        ``trust_everyone`` drops it; ``trust`` takes writers off the deny-list and onto the allow-list
        when there is one (widens); ``distrust`` puts writers on the deny-list (and off the allow-list)."""
        trust, distrust = {_writer_name(w) for w in trust}, {_writer_name(w) for w in distrust}
        only = {_writer_name(w) for w in only}
        trusted = None if trust_everyone else set(only) if only else \
            None if self.trusted is None else set(self.trusted)
        if trusted is not None:
            trusted = sorted((trusted | trust) - distrust)
        return TrustPolicy(trusted=trusted, distrusted=sorted((set(self.distrusted) - trust - only) | distrust))

    def to_dict(self) -> dict:
        return {"format": 1, "trusted": self.trusted, "distrusted": list(self.distrusted)}


def _writer_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+:-]{0,199}", name):
        raise UserError(f"invalid writer name {str(name)[:60]!r} (a Hub user name)")
    return name


def load_trust(zoo_path: str | os.PathLike) -> TrustPolicy:
    """The zoo's trust policy (``trust.json``; the default when there is none)."""
    path = Path(zoo_path) / TRUST_FILE
    if not path.is_file():
        return TrustPolicy()
    try:
        raw = json.loads(path.read_bytes())
        if not isinstance(raw, dict) or raw.get("format", 1) != 1:
            raise ValueError("expected {\"format\": 1, \"trusted\": null or [names], \"distrusted\": [names]}")
        trusted = raw.get("trusted")
        if trusted is not None:
            if not isinstance(trusted, list):
                raise TypeError("trusted must be null or a list of names")
            trusted = sorted({_writer_name(w) for w in trusted})
        distrusted = raw.get("distrusted") or []
        if not isinstance(distrusted, list):
            raise TypeError("distrusted must be a list of names")
        return TrustPolicy(trusted=trusted, distrusted=sorted({_writer_name(w) for w in distrusted}))
    except (OSError, ValueError, TypeError, RecursionError, UserError) as exc:
        raise UserError(f"{path}: unreadable trust settings ({exc})") from None


def writer_of(authors: Iterable[Any]) -> str | None:
    """The writer a file counts for, from its last commit's authors (None when there are none).

    Several authors make one writer ``a+b`` (sorted). A Hub user named like the zoo's own
    writer (``local``) is written ``hub:local``, so that nobody can vote as the zoo's owner.
    """
    names = sorted({a for a in authors if isinstance(a, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", a)})
    if not names:
        return None
    writer = "+".join(names)
    return f"hub:{writer}" if writer == LOCAL_WRITER else writer
