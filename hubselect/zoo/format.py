"""The zoo: one directory, one format (see README, "The zoo format").

Every table may be stored as ``<stem>.csv`` or ``<stem>.parquet``. Writes are atomic: a table is
written to a temporary file in the same directory and moved into place with ``os.replace``, so a
killed process leaves either the old table or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hubselect.constants import DEFAULT_PROBE, ENV_ZOO, PROBE_NAME, env, hubselect_home
from hubselect.errors import UserError

ZOO_FORMAT = 1
TABLE_SUFFIXES = (".parquet", ".csv")
# Columns each table must carry; everything else in a table is free-form.
REQUIRED_COLUMNS = {
    "models": ["model"],
    "datasets": ["dataset"],
    "records": ["model", "dataset", "score"],
    "dataset_distances": ["dataset_a", "dataset_b", "distance"],
}


def shipped_zoo_dir() -> Path:
    """The zoo shipped with hubselect (read only).

    An installed wheel carries it as package data, ``hubselect/zoo_cache/``; in a clone (or an
    editable install) it is the repository's top-level ``zoo_cache/``.
    """
    package = Path(__file__).resolve().parent.parent      # hubselect/
    installed = package / "zoo_cache"
    if (installed / "zoo.json").is_file():
        return installed
    return package.parent / "zoo_cache"


def user_zoo_dir() -> Path:
    """The user's own zoo, ``$HF_HOME/hubselect/zoo``: where commands write when no zoo is named."""
    return hubselect_home() / "zoo"


def default_zoo_dir(write: bool = False) -> Path:
    """The zoo used when ``--zoo`` is not given.

    ``HUBSELECT_ZOO`` wins, for reading and writing. Otherwise the shipped zoo is never written:
    reading uses the user's zoo (:func:`user_zoo_dir`) when it exists, else the shipped one;
    ``write=True`` returns the user's zoo, first made as a copy of the shipped one.
    """
    named = env(ENV_ZOO)
    if named:
        return Path(named)
    user = user_zoo_dir()
    if write:
        return ensure_user_zoo()
    if (user / "zoo.json").is_file():
        return user
    shipped = shipped_zoo_dir()
    return shipped if (shipped / "zoo.json").is_file() else user


def ensure_user_zoo() -> Path:
    """The user's zoo, made on first use as a copy of the shipped zoo (an empty zoo if none ships).

    The copy is assembled beside its destination and moved into place in one step, so a killed
    process or a concurrent first use never leaves half a zoo.
    """
    user = user_zoo_dir()
    if (user / "zoo.json").is_file():
        return user
    shipped = shipped_zoo_dir()
    user.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".zoo.", dir=user.parent))
    try:
        if (shipped / "zoo.json").is_file():
            for src in sorted(shipped.rglob("*")):
                if src.is_file() and "__pycache__" not in src.parts:
                    dst = staging / src.relative_to(shipped)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dst)   # contents only: the copy is writable whatever the source's mode
        else:
            atomic_write_json(staging / "zoo.json", ZooInfo().to_dict())
        os.chmod(staging, 0o777 & ~_UMASK)     # mkdtemp makes 0700
        if user.is_dir() and not any(user.iterdir()):
            user.rmdir()                         # an empty folder left by hand: replace it
        try:
            os.rename(staging, user)
        except OSError:
            if not (user / "zoo.json").is_file():  # not a concurrent first use that won the race
                raise UserError(f"cannot make the user zoo at {user}: it exists and holds no zoo.json "
                                "(move it away, or pass --zoo DIR)") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return user


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; a zoo is shared like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


@dataclass
class ZooInfo:
    metric: str = "clip-fid"
    higher_is_better: bool = False
    probe: str | None = DEFAULT_PROBE
    format: int = ZOO_FORMAT

    def to_dict(self) -> dict:
        return {"format": self.format, "metric": self.metric,
                "higher_is_better": self.higher_is_better, "probe": self.probe}


class Zoo:
    """A zoo directory. Tables are read lazily and written atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- creation / metadata -------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike | None = None, create: bool = False, write: bool = False) -> "Zoo":
        """The zoo at ``path``; with no path, the default zoo (:func:`default_zoo_dir`).

        ``write`` (implied by ``create``) says the caller will write: with no path, that is the
        user's zoo, never the shipped one.
        """
        zoo = cls(path if path is not None else default_zoo_dir(write=write or create))
        if not (zoo.path / "zoo.json").is_file():
            if not create:
                raise UserError(f"no zoo at {zoo.path} (zoo.json missing); pass --zoo DIR")
            zoo.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(zoo.path / "zoo.json", ZooInfo().to_dict())
        zoo.info                          # every command reads zoo.json first: a bad one stops it here
        return zoo

    @property
    def info(self) -> ZooInfo:
        """zoo.json, checked: an object with ``format`` 1, a metric name, a boolean direction and a
        probe name (or null); anything else is one line naming the file and the problem."""
        path = self.path / "zoo.json"
        try:
            raw = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as exc:     # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UserError(f"unreadable {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path} must hold a JSON object, not {type(raw).__name__}")
        fmt = raw.get("format", ZOO_FORMAT)
        if fmt != ZOO_FORMAT or isinstance(fmt, bool):
            raise UserError(f"{path}: zoo format {fmt!r} is not supported (expected {ZOO_FORMAT})")
        metric = raw.get("metric", "clip-fid")
        if not isinstance(metric, str) or not metric.strip() or len(metric) > 100:
            raise UserError(f"{path}: metric must be a short non-empty string, not {metric!r}")
        direction = raw.get("higher_is_better", False)
        if not isinstance(direction, bool):
            raise UserError(f"{path}: higher_is_better must be true or false, not {direction!r}")
        probe = raw.get("probe")
        if probe is not None and not (isinstance(probe, str) and PROBE_NAME.fullmatch(probe)):
            raise UserError(f"{path}: probe must be a probe name or null, not {probe!r}")
        return ZooInfo(metric=metric, higher_is_better=direction, probe=probe, format=ZOO_FORMAT)

    # -- tables --------------------------------------------------------------------------------
    def table_path(self, stem: str) -> Path | None:
        for suffix in TABLE_SUFFIXES:
            p = self.path / f"{stem}{suffix}"
            if p.is_file():
                return p
        return None

    def has_table(self, stem: str) -> bool:
        return self.table_path(stem) is not None

    def read_table(self, stem: str) -> pd.DataFrame | None:
        """The table ``stem`` or None when the zoo has none."""
        p = self.table_path(stem)
        if p is None:
            return None
        try:
            df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
        except Exception as exc:  # pandas raises many types for a damaged file
            raise UserError(f"unreadable table {p}: {exc}") from None
        missing = [c for c in REQUIRED_COLUMNS.get(stem, []) if c not in df.columns]
        if missing:
            raise UserError(f"table {p} lacks column(s) {', '.join(missing)}")
        return df

    def write_table(self, stem: str, df: pd.DataFrame) -> Path:
        """Write a table atomically, keeping the format (csv or parquet) it already has."""
        existing = self.table_path(stem)
        path = existing if existing is not None else self.path / f"{stem}.csv"
        if path.suffix == ".parquet":
            import io
            buf = io.BytesIO()
            df.to_parquet(buf, index=False)
            atomic_write_bytes(path, buf.getvalue())
        else:
            atomic_write_bytes(path, df.to_csv(index=False).encode())
        return path
