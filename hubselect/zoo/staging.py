"""One staged step for changes that span several files of a zoo.

A zoo's own writes are atomic per file (``hubselect.zoo.format.atomic_write_bytes``), but a sync writes
several: the records table, profiles, the ``datasets`` and ``dataset_distances`` tables derived from
them, its own state. :func:`staged_zoo` makes them one step::

    with staged_zoo(path) as stage:          # stage: a full copy of the zoo beside it
        Zoo(stage).write_table("records", df)
        ...                                  # any number of atomic writes into the copy
    # here the copy has replaced the zoo in one rename; an exception discards it instead

The copy is made of hard links (a copy where the file system has none), which is safe because
every zoo write replaces a file (write to a temporary file, ``os.replace``) and never writes into
one. The copy then takes the zoo's place in ONE ``renameat2(RENAME_EXCHANGE)`` call on Linux, so a
process killed at any point leaves the zoo as it was before or as it is after, never between.
Where that call does not exist (other systems, some file systems) the swap is two renames; a
process killed between them leaves the old zoo under a backup name, which the next staged step
puts back before it starts. A lock file beside the zoo (``.<name>.lock``, ``flock``) keeps two
staged steps on one zoo from overlapping; plain writers that do not take it (another command
writing one table meanwhile) can lose that write to the swap.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hubselect.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)
_STAGING = ".{name}.staging-"
_BACKUP = ".{name}.old-"


def _target(path: str | os.PathLike) -> Path:
    """The zoo's own folder: absolute, a symbolic link followed (the link itself is never swapped)."""
    path = Path(os.path.abspath(path))
    return path.resolve() if path.is_symlink() else path


@contextlib.contextmanager
def _locked(parent: Path, name: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    lock_path = parent / f".{name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)             # releases the lock


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        return False
    args = (at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        rc = fn(*args)
    else:  # glibc < 2.28: the system call itself
        import platform
        number = {"x86_64": 316, "aarch64": 276}.get(platform.machine())
        if number is None:
            return False
        rc = libc.syscall(ctypes.c_long(number), *(ctypes.c_int(args[0]), ctypes.c_char_p(args[1]),
                                                   ctypes.c_int(args[2]), ctypes.c_char_p(args[3]),
                                                   ctypes.c_uint(args[4])))
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_tree(src: Path, dst: Path) -> None:
    """``dst`` (an empty folder) becomes a copy of ``src`` made of hard links where possible."""
    link = True
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        target = dst / rel
        if rel != Path("."):
            target.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(target, os.stat(dirpath).st_mode & 0o7777)
        for name in filenames:
            s, d = Path(dirpath) / name, target / name
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
                continue
            if link:
                try:
                    os.link(s, d)
                    continue
                except OSError:
                    link = False
            shutil.copy2(s, d)


def recover(path: str | os.PathLike) -> None:
    """Put back a zoo left under its backup name by a swap that was killed half-way (no exchange call),
    and remove stale staging copies. Call with the lock held (:func:`staged_zoo` does)."""
    path = Path(path)
    parent, name = path.parent, path.name
    if not parent.is_dir():
        return
    backups = sorted(parent.glob(_BACKUP.format(name=name) + "*"))
    if backups and not path.exists():
        os.rename(backups[-1], path)
        backups = backups[:-1]
    for stale in [*backups, *parent.glob(_STAGING.format(name=name) + "*")]:
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def zoo_lock(path: str | os.PathLike) -> Iterator[None]:
    """The lock a staged step holds, for a writer that changes one file of the zoo in place (a record
    added by ``finetune``): it waits for a running sync's swap instead of being lost to it. Not
    reentrant: never inside :func:`staged_zoo` on the same zoo."""
    path = _target(path)
    try:
        lock = _locked(path.parent, path.name)
        lock.__enter__()
    except OSError:              # a place where no lock file can be made: go on without one
        yield
        return
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def tidy(path: str | os.PathLike) -> None:
    """:func:`recover` under the lock: what a killed staged step left beside the zoo is put back or removed.
    A writer calls it before it reads the zoo (on a system without the exchange call, the zoo may be
    under its backup name)."""
    path = _target(path)
    if not path.parent.is_dir():
        return
    try:
        with _locked(path.parent, path.name):
            recover(path)
    except OSError:
        pass                     # a read-only place: nothing can have been left there by us


@contextlib.contextmanager
def staged_zoo(path: str | os.PathLike) -> Iterator[Path]:
    """A writable copy of the zoo at ``path`` that replaces it in one step when the block ends.

    A zoo that does not exist yet starts as an empty folder and appears whole at the end. When the
    block raises, the copy is discarded and the zoo is as it was.
    """
    path = _target(path)
    parent, name = path.parent, path.name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock = _locked(parent, name)
        lock.__enter__()
    except OSError as exc:
        raise UserError(f"cannot write beside the zoo {path}: {exc.strerror or exc}") from None
    try:
        recover(path)
        stage = Path(tempfile.mkdtemp(prefix=_STAGING.format(name=name), dir=parent))
        try:
            if path.is_dir():
                _copy_tree(path, stage)
            else:
                os.chmod(stage, 0o777 & ~_UMASK)       # mkdtemp makes 0700
            yield stage
            _fsync_dir(stage)
            if not path.exists():
                os.rename(stage, path)
            elif _exchange(stage, path):
                pass                             # stage now holds the old zoo
            else:
                backup = Path(tempfile.mkdtemp(prefix=_BACKUP.format(name=name), dir=parent))
                os.rmdir(backup)
                os.rename(path, backup)
                os.rename(stage, path)
                os.rename(backup, stage)
            _fsync_dir(parent)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    finally:
        lock.__exit__(None, None, None)
