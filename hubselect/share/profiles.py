"""Dataset profiles in the edge dataset: the checks of a profile file, the files a push shares, fingerprints.

A profile lives at ``profiles/<probe>/<dataset-slug>.safetensors`` (safetensors, never pickle); the
first writer of a path wins, and a zoo's own profile of a dataset wins over a pulled one.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from hubselect.constants import PROBE_NAME, probe_name_ok
from hubselect.errors import UserError
from hubselect.hub import is_repo_id
from hubselect.share.records import MAX_INT, BadFile, check_repo_like, check_text

MAX_PROFILE_BYTES = 64 * 1024 * 1024
MAX_PROFILE_HEADER = 64 * 1024
MAX_PROFILE_DIM = 2048
MAX_PROFILE_SAMPLES = 10**9
_PROFILE_PATH = re.compile(rf"profiles/({PROBE_NAME.pattern})/([A-Za-z0-9._-]{{1,200}})\.safetensors")


def is_profile_path(path: str) -> bool:
    """Whether ``path`` (in the edge dataset) is where a profile lives: ``profiles/<probe>/<dataset>.safetensors``."""
    return _PROFILE_PATH.fullmatch(path) is not None


def _profile_header(data: bytes) -> dict:
    if len(data) < 8:
        raise BadFile("invalid", "not a safetensors file (shorter than its header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_PROFILE_HEADER or 8 + n > len(data):
        raise BadFile("invalid", f"safetensors header of {n} bytes (at most {MAX_PROFILE_HEADER}, within the file)")
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadFile("invalid", f"unreadable safetensors header ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise BadFile("invalid", "safetensors header is not a mapping")
    return header


def _meta_int(meta: dict, key: str, lo: int, hi: int, required: bool = True) -> int | None:
    value = meta.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]{1,19}", value) or not lo <= int(value) <= hi:
        raise BadFile("invalid", f"{key} must be an integer in [{lo}, {hi}], got {str(value)[:40]!r}")
    return int(value)


def check_profile_file(path: str, data: bytes, probe: str | None = None, dim: int | None = None):
    """The :class:`hubselect.profile.profiles.Profile` in ``data`` (the file at ``path`` of the edge dataset),
    or :class:`BadFile`.

    Checked: size; the safetensors header (bounded, a flat mapping); format; ``dataset`` a valid
    Hub repo ID whose file name (slug) is the path's; ``probe`` the path's folder (and ``probe``,
    the zoo's, when given: else ``other_probe``); ``n_samples`` in [2, 1e9]; every text field short
    and printable; ``skipped`` a small ``{reason: count}``; tensors ``mean`` (d ≤ 2048, ``dim``
    when given) and ``cov`` (d × d), finite, symmetric and positive semi-definite.
    """
    from safetensors.numpy import load as load_tensors

    from hubselect.profile.profiles import PROFILE_FORMAT, Profile, dataset_slug

    m = _PROFILE_PATH.fullmatch(path)
    if m is None:
        raise BadFile("bad_path", "not profiles/<probe>/<dataset>.safetensors")
    if len(data) > MAX_PROFILE_BYTES:
        raise BadFile("too_large", f"{len(data)} bytes (at most {MAX_PROFILE_BYTES})")
    header = _profile_header(data)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise BadFile("invalid", "no metadata, or metadata that is not {str: str}")
    if meta.get("format") != PROFILE_FORMAT:
        raise BadFile("invalid", f"format {str(meta.get('format'))[:40]!r} is not {PROFILE_FORMAT}")
    try:
        dataset = check_repo_like(meta.get("dataset"), "dataset")
        name = check_text(meta.get("probe"), "probe", 64, PROBE_NAME)
        for key in ("revision", "split", "image_column", "caption_column", "source", "created_at", "modality"):
            if key in meta and meta[key] != "":
                check_text(meta[key], key)
    except UserError as exc:
        raise BadFile("invalid", str(exc)) from None
    if name != m.group(1):
        raise BadFile("invalid", f"probe {name!r} in a file under profiles/{m.group(1)}/")
    if f"{dataset_slug(dataset)}" != m.group(2):
        raise BadFile("invalid", f"dataset {dataset!r} in a file named {m.group(2)}.safetensors")
    if probe is not None and name != probe:
        raise BadFile("other_probe", f"probe {name}, the zoo's is {probe}")
    modality = meta.get("modality", "image")
    if modality not in ("image", "text"):
        raise BadFile("invalid", f"modality {modality[:40]!r}")
    n_samples = _meta_int(meta, "n_samples", 2, MAX_PROFILE_SAMPLES)
    seed = _meta_int(meta, "seed", 0, MAX_INT, required=False) or 0
    n_requested = _meta_int(meta, "n_requested", 1, MAX_PROFILE_SAMPLES, required=False)
    try:
        skipped = json.loads(meta.get("skipped", "{}"))
    except (ValueError, RecursionError):
        raise BadFile("invalid", "skipped is not JSON") from None
    if not isinstance(skipped, dict) or len(skipped) > 64 or not all(
            isinstance(k, str) and len(k) <= 64 and k.isprintable() and isinstance(v, int)
            and not isinstance(v, bool) and 0 <= v <= MAX_PROFILE_SAMPLES for k, v in skipped.items()):
        raise BadFile("invalid", "skipped must be a small {reason: count}")
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
        raise BadFile("invalid", f"unreadable tensors ({type(exc).__name__})") from None
    mean, cov = tensors.get("mean"), tensors.get("cov")
    if mean is None or cov is None:
        raise BadFile("invalid", "tensors mean and cov are required")
    if mean.dtype.kind != "f" or cov.dtype.kind != "f" or mean.ndim != 1:
        raise BadFile("invalid", f"mean {mean.dtype} {mean.shape} and cov {cov.dtype} must be float, mean 1-d")
    d = int(mean.shape[0])
    if not 1 <= d <= MAX_PROFILE_DIM or cov.shape != (d, d):
        raise BadFile("invalid", f"mean of {d} and cov of {cov.shape}: expected d x d with 1 <= d <= {MAX_PROFILE_DIM}")
    if "dim" in meta and _meta_int(meta, "dim", 1, MAX_PROFILE_DIM) != d:
        raise BadFile("invalid", f"dim {meta['dim']} but a mean of {d}")
    if dim is not None and d != dim:
        raise BadFile("invalid", f"{d} dimensions, the zoo's {name} profiles have {dim}")
    mean, cov = mean.astype(np.float64), cov.astype(np.float64)
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
        raise BadFile("invalid", "mean or covariance is not finite")
    scale = max(float(np.abs(cov).max()), 1e-300)
    if float(np.abs(cov - cov.T).max()) > 1e-6 * scale:
        raise BadFile("invalid", "covariance is not symmetric")
    if float(np.linalg.eigvalsh((cov + cov.T) / 2).min()) < -1e-6 * scale:
        raise BadFile("invalid", "covariance is not positive semi-definite")
    source = meta.get("source", "")
    if not (source.startswith("hub:") and is_repo_id(source[4:])):
        source = ""                      # another machine's folder path means nothing here
    return Profile(dataset=dataset, probe=name, n_samples=n_samples, mean=mean, covariance=(cov + cov.T) / 2,
                   revision=meta.get("revision") or None, source=source, split=meta.get("split") or None,
                   image_column=meta.get("image_column") or None, caption_column=meta.get("caption_column") or None,
                   modality=modality, skipped={k: int(v) for k, v in skipped.items()}, n_requested=n_requested,
                   seed=seed, created_at=meta.get("created_at", ""))


def shared_profile_files(profiles: Iterable) -> dict[str, bytes]:
    """{repo path: bytes} for Profile objects or paths of profile files (each read and checked as a sync
    would check it); a local folder's path is not published (``source`` becomes ``local``)."""
    from dataclasses import replace

    from hubselect.profile.profiles import Profile, dataset_slug

    out: dict[str, bytes] = {}
    for item in profiles:
        profile = item if isinstance(item, Profile) else Profile.load(Path(item))
        if not probe_name_ok(profile.probe):
            raise UserError(f"invalid probe name {profile.probe!r} in the profile of {profile.dataset!r}")
        if not profile.source.startswith("hub:"):
            profile = replace(profile, source="local")
        path = f"profiles/{profile.probe}/{dataset_slug(profile.dataset)}.safetensors"
        data = profile.to_bytes()
        try:
            check_profile_file(path, data)
        except BadFile as exc:
            raise UserError(f"the profile of {profile.dataset!r} cannot be shared: {exc.detail}") from None
        out[path] = data
    return out


def fingerprint(profile) -> str | None:
    """What a profile says (dataset, probe, samples, mean, covariance), hashed: the zoo's copy of a pulled
    profile is recognised by it (safetensors files of one profile may differ in their header's order)."""
    from hubselect.profile.profiles import Profile

    if not isinstance(profile, Profile):
        try:
            profile = Profile.load(profile)
        except (UserError, KeyError, ValueError):
            return None
    h = hashlib.sha256(json.dumps([profile.dataset, profile.probe, profile.n_samples]).encode())
    h.update(np.ascontiguousarray(profile.mean, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(profile.covariance, dtype=np.float64).tobytes())
    return h.hexdigest()
