"""Dataset profiles: the mean and covariance of a probe's embeddings over a sample of a dataset.

``profile_dataset`` draws up to ``n`` usable images (or captions, for a text probe) from a Hub
dataset or a local folder (:mod:`hubselect.profile.sources`), embeds them in batches with a probe
(:mod:`hubselect.profile.probes`) and accumulates the statistics as it goes, so that no more than a few
batches are held in memory. The images of a folder are decoded and transformed in DataLoader worker
processes (:func:`default_workers`) while the probe runs on the previous batch; the images, their
order, the batches and so the profile are the same, bit for bit, with any number of workers.
Accumulation is in float64 with Chan et al.'s pairwise update of the mean and the centred scatter
matrix (never ``E[xx^T] - mu mu^T``, which loses precision when the mean is large next to the
spread). The covariance is the unbiased one (divided by ``n - 1``), as in FID.

A zoo keeps one file per dataset and probe, ``profiles/<probe>/<dataset-slug>.safetensors``: the
tensors ``mean`` (d) and ``cov`` (d x d), float64, and the rest (dataset, sample count, revision,
source, skipped items...) as strings in the safetensors header. No pickle anywhere.

``add_profile_to_zoo`` writes a profile and derives from it, for image zoos:

* the ``datasets`` table row of the dataset: ``n_images`` and the mean vector as columns
  ``<probe>_0 ... <probe>_{d-1}`` (each probe has its own column group; other rows are kept);
* the ``dataset_distances`` rows between this dataset and every other dataset profiled with the
  SAME probe (column ``probe``): the squared Fréchet distance of the two Gaussians (as FID).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from hubselect.constants import DEFAULT_PROBE, ENV_PROFILE_WORKERS, env, env_number, probe_name_ok
from hubselect.errors import UserError
from hubselect.zoo.format import Zoo, atomic_write_bytes

PROFILE_FORMAT = "hubselect-profile/1"
DEFAULT_N = 1000

Progress = Callable[[int, int, "str | None"], None]


class RunningMoments:
    """Streaming mean and covariance of row vectors, accumulated in float64.

    Each batch is reduced to its own mean and centred scatter, then merged (Chan, Golub & LeVeque
    1979): ``M2 += S_b + delta delta^T * n_a n_b / (n_a + n_b)``.
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.n = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros((dim, dim), dtype=np.float64)

    def update(self, batch: np.ndarray) -> None:
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected a (batch, {self.dim}) array, got {x.shape}")
        nb = x.shape[0]
        if nb == 0:
            return
        if not np.isfinite(x).all():
            raise ValueError("embeddings contain NaN or infinity")
        mb = x.mean(axis=0)
        xc = x - mb
        sb = xc.T @ xc
        if self.n == 0:
            self.mean, self.m2 = mb, sb
        else:
            total = self.n + nb
            delta = mb - self.mean
            self.mean = self.mean + delta * (nb / total)
            self.m2 = self.m2 + sb + np.outer(delta, delta) * (self.n * nb / total)
        self.n += nb

    @property
    def covariance(self) -> np.ndarray:
        if self.n < 2:
            raise ValueError("a covariance needs at least two samples")
        cov = self.m2 / (self.n - 1)
        return (cov + cov.T) / 2      # exactly symmetric


@dataclass
class Profile:
    """A dataset's statistics under one probe."""

    dataset: str
    probe: str
    n_samples: int
    mean: np.ndarray
    covariance: np.ndarray
    revision: str | None = None       # Hub commit sha of the data (None for a local folder)
    source: str = ""                  # "hub:<id>" or the absolute folder path
    split: str | None = None
    image_column: str | None = None
    caption_column: str | None = None
    modality: str = "image"
    skipped: dict[str, int] = field(default_factory=dict)
    n_requested: int | None = None
    seed: int = 0
    created_at: str = ""

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    def summary(self) -> dict:
        """What ``hubselect profile --json`` prints."""
        return {"dataset": self.dataset, "probe": self.probe, "modality": self.modality,
                "n_images": self.n_samples, "n_requested": self.n_requested,
                "skipped": dict(self.skipped), "n_skipped": self.n_skipped, "revision": self.revision,
                "source": self.source, "split": self.split, "image_column": self.image_column,
                "caption_column": self.caption_column, "dim": self.dim, "seed": self.seed}

    # -- storage ---------------------------------------------------------------------------------
    def _metadata(self) -> dict[str, str]:
        meta = {"format": PROFILE_FORMAT, "dataset": self.dataset, "probe": self.probe,
                "n_samples": str(self.n_samples), "modality": self.modality, "source": self.source,
                "skipped": json.dumps(self.skipped, sort_keys=True), "seed": str(self.seed),
                "created_at": self.created_at, "dim": str(self.dim)}
        for key in ("revision", "split", "image_column", "caption_column", "n_requested"):
            value = getattr(self, key)
            if value is not None:
                meta[key] = str(value)
        return meta

    def to_bytes(self) -> bytes:
        """The safetensors file, byte for byte the same for the same profile (its header's keys sorted:
        safetensors itself writes the metadata in a random order)."""
        from safetensors.numpy import save
        return _sorted_header(save({"mean": np.ascontiguousarray(self.mean, dtype=np.float64),
                                    "cov": np.ascontiguousarray(self.covariance, dtype=np.float64)},
                                   metadata=self._metadata()))

    def save(self, path: str | Path) -> Path:
        """Write the profile atomically (a killed process leaves the old file or the new one)."""
        path = Path(path)
        atomic_write_bytes(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                mean, cov = f.get_tensor("mean"), f.get_tensor("cov")
        except Exception as exc:  # missing tensor, damaged header, not a safetensors file
            raise UserError(f"unreadable profile {path}: {type(exc).__name__}: {exc}") from None
        if meta.get("format") != PROFILE_FORMAT:
            raise UserError(f"{path} is not a hubselect profile (format {meta.get('format')!r})")
        d = mean.shape[0]
        if mean.ndim != 1 or cov.shape != (d, d):
            raise UserError(f"profile {path}: mean {mean.shape} and cov {cov.shape} do not match")
        try:
            skipped = json.loads(meta.get("skipped", "{}"))
        except json.JSONDecodeError:
            skipped = {}
        n_req = meta.get("n_requested")
        return cls(dataset=meta["dataset"], probe=meta["probe"], n_samples=int(meta["n_samples"]),
                   mean=mean.astype(np.float64), covariance=cov.astype(np.float64),
                   revision=meta.get("revision"), source=meta.get("source", ""), split=meta.get("split"),
                   image_column=meta.get("image_column"), caption_column=meta.get("caption_column"),
                   modality=meta.get("modality", "image"), skipped={k: int(v) for k, v in skipped.items()},
                   n_requested=int(n_req) if n_req else None, seed=int(meta.get("seed", 0)),
                   created_at=meta.get("created_at", ""))


def _sorted_header(data: bytes) -> bytes:
    """``data`` (a safetensors file) with the JSON header's keys sorted; same length, same tensors."""
    n = int.from_bytes(data[:8], "little")
    header = data[8:8 + n]
    body = json.loads(header)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:              # another way of escaping than safetensors' own: keep its order
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n:]


# -- computing a profile ---------------------------------------------------------------------------

def default_workers() -> int:
    """DataLoader workers that decode a folder's images while the probe runs: one per usable CPU core
    beyond the first, at most 2 (``HUBSELECT_PROFILE_WORKERS`` overrides; 0 decodes in the process).

    The probe's forward pass already uses every core (torch's intra-op threads), so workers run at
    a lower priority (:data:`hubselect.profile.sources.WORKER_NICE`) and decode in the cores' idle moments.
    Measured on 2 CPU cores (``benchmarks/profile_bench.py``, see the README's "Dataset profiles"):
    one worker takes efficientnet from 68 to 39 ms per image and leaves clip as it was (48 / 47 ms);
    a second worker adds nothing there.
    """
    if env(ENV_PROFILE_WORKERS) is not None:
        return max(0, env_number(ENV_PROFILE_WORKERS, 0, int))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(0, min(2, cores - 1))


def profile_dataset(source: str, probe: str = DEFAULT_PROBE, n: int = DEFAULT_N, image_column: str | None = None,
                    caption_column: str | None = None, split: str | None = None, name: str | None = None,
                    seed: int = 0, progress: Progress | None = None, device: str | None = None,
                    workers: int | None = None, batch_size: int | None = None,
                    timings: dict | None = None) -> Profile:
    """Profile a Hub dataset ID or a local image folder with a probe (nothing is written).

    ``progress(done, total, item)`` is called as items are embedded. ``workers``: DataLoader worker
    processes that decode a folder's images (default :func:`default_workers`); ``batch_size``: images
    per forward pass (default: the probe's, chosen by measurement). The number of workers never
    changes the result; the batch size changes it only by float32 round-off (~1e-6 relative).
    ``timings``, when given, is filled with seconds per phase: ``list`` (open the folder or the Hub
    dataset), ``load_probe``, ``read``, ``decode``, ``transform`` (summed over the workers when
    there are any), ``wait`` (the main process waiting for images), ``forward``, ``moments``, and
    ``total``, plus ``images``, ``workers`` and ``batch_size``. Raises :class:`UserError` for an
    unknown probe, an unusable source, or fewer than two usable items.
    """
    from hubselect.profile.probes import get_probe, probe_class
    from hubselect.profile.sources import open_source

    clock = time.perf_counter()
    t = timings if timings is not None else {}
    if n < 2:
        raise UserError("--n must be at least 2 (a covariance needs two samples)")
    if name is not None and not name.strip():
        raise UserError("--name must not be empty")
    if batch_size is not None and batch_size < 1:
        raise UserError("the batch size must be at least 1")
    cls = probe_class(probe)                     # an unknown probe fails before any data is read
    text = cls.modality == "text"
    src = open_source(source, image_column=image_column, caption_column=caption_column, split=split,
                      need_images=not text, need_captions=text)
    t["list"] = time.perf_counter() - clock
    start = time.perf_counter()
    model = get_probe(probe, device=device)
    t["load_probe"] = time.perf_counter() - start
    size = batch_size or model.batch_size
    t["batch_size"] = size
    t["forward"] = t["moments"] = 0.0
    total = n if src.size is None else min(n, src.size)
    moments = RunningMoments(model.dim)
    batch: list = []
    done = 0

    def flush() -> None:
        nonlocal done, batch
        if batch:
            start = time.perf_counter()
            if text:
                embeddings = model.embed(batch)
            else:
                import torch
                embeddings = model.forward(torch.stack(batch))
            middle = time.perf_counter()
            moments.update(embeddings)
            t["forward"] += middle - start
            t["moments"] += time.perf_counter() - middle
            done += len(batch)
            batch = []
            if progress is not None:
                progress(min(done, total), total, None)

    if text:
        for sample in src.sample(n, seed=seed, modality="text"):
            batch.append(sample.caption)
            if len(batch) >= size:
                flush()
    else:
        for item in src.prepared(n, model.transform(), seed=seed,
                                 workers=default_workers() if workers is None else workers,
                                 prefetch=2 * size, timings=t):
            batch.append(item.pixels)
            if len(batch) >= size:
                flush()
    flush()
    t["images"] = done
    t["total"] = time.perf_counter() - clock
    if progress is not None and done < total:
        progress(total, total, None)             # closes the bar when the source ran dry early
    skipped = {k: int(v) for k, v in sorted(src.skipped.items())}
    if moments.n < 2:
        what = "captioned items" if text else "usable images"
        detail = f" (skipped: {', '.join(f'{k} {v}' for k, v in skipped.items())})" if skipped else ""
        raise UserError(f"{source}: {moments.n} {what}, at least 2 are needed to profile it{detail}")
    return Profile(dataset=(name.strip() if name else src.dataset), probe=probe, n_samples=moments.n,
                   mean=moments.mean, covariance=moments.covariance, revision=src.revision,
                   source=f"hub:{src.source}" if src.kind == "hub" else src.source, split=src.split,
                   image_column=src.image_column if not text else None, caption_column=src.caption_column,
                   modality=cls.modality, skipped=skipped, n_requested=n, seed=seed,
                   created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


# -- the zoo -----------------------------------------------------------------------------------------

def dataset_slug(dataset: str) -> str:
    """A file name for a dataset: ``owner/name`` -> ``owner--name``; other unsafe characters -> ``_``."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", dataset.strip().replace("/", "--"))
    slug = slug.lstrip(".") or "_"
    return slug[:200]


def profile_path(zoo: Zoo, probe: str, dataset: str) -> Path:
    if not probe_name_ok(probe):
        raise UserError(f"invalid probe name {probe!r}")
    return zoo.path / "profiles" / probe / f"{dataset_slug(dataset)}.safetensors"


def load_profile(zoo: Zoo, dataset: str, probe: str) -> Profile | None:
    """The zoo's profile of ``dataset`` under ``probe``, or None."""
    path = profile_path(zoo, probe, dataset)
    if not path.is_file():
        return None
    profile = Profile.load(path)
    return profile if profile.dataset == dataset else None


def load_zoo_profiles(zoo: Zoo, probe: str) -> list[Profile]:
    """Every profile the zoo holds for ``probe``, sorted by dataset name."""
    folder = zoo.path / "profiles" / probe
    if not probe_name_ok(probe) or not folder.is_dir():
        return []
    profiles = [Profile.load(p) for p in sorted(folder.glob("*.safetensors"))]
    return sorted((p for p in profiles if p.probe == probe), key=lambda p: p.dataset)


def _updated_datasets_table(table: pd.DataFrame | None, profile: Profile) -> pd.DataFrame:
    """The ``datasets`` table with the profile's row set: ``n_images`` and its probe's mean columns."""
    prefix = f"{profile.probe}_"
    row = {"dataset": profile.dataset, "n_images": profile.n_samples}
    row.update({f"{prefix}{i}": float(v) for i, v in enumerate(profile.mean)})
    if table is None or table.empty:
        base = table if table is not None else pd.DataFrame(columns=["dataset"])
        columns = list(dict.fromkeys(["dataset", "n_images", *base.columns, *row]))
        return pd.DataFrame([row]).reindex(columns=columns)
    table = table.copy()
    table["dataset"] = table["dataset"].astype(str)
    existing = table[table["dataset"] == profile.dataset]
    old = existing.iloc[0].to_dict() if len(existing) else {}
    # Keep the dataset's other columns (other probes, user features); columns of this probe
    # beyond the new dimension (a probe whose size changed) are cleared for this row.
    for col, value in old.items():
        if col in row:
            continue
        if col.startswith(prefix) and col[len(prefix):].isdigit():
            value = np.nan
        row[col] = value
    rest = table[table["dataset"] != profile.dataset]
    columns = list(dict.fromkeys(["dataset", "n_images", *table.columns, *row]))
    new = pd.DataFrame([row]).reindex(columns=columns)
    out = pd.concat([rest.reindex(columns=columns), new], ignore_index=True)
    # Keep the table's order: an updated dataset stays where it was, a new one goes last.
    order = {d: i for i, d in enumerate(table["dataset"])}
    out["_order"] = out["dataset"].map(order).fillna(len(order))
    return out.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def _updated_distances_table(table: pd.DataFrame | None, profile: Profile,
                             distances: dict[str, float]) -> pd.DataFrame:
    columns = ["dataset_a", "dataset_b", "distance", "probe"]
    if table is None:
        table = pd.DataFrame(columns=columns)
    table = table.copy()
    if "probe" not in table.columns:
        table["probe"] = np.nan          # distances of unknown provenance are kept, probe unset
    involved = (table["dataset_a"].astype(str) == profile.dataset) | (table["dataset_b"].astype(str) == profile.dataset)
    keep = table[~(involved & (table["probe"] == profile.probe))]
    new = pd.DataFrame([{"dataset_a": profile.dataset, "dataset_b": other, "distance": float(d),
                         "probe": profile.probe} for other, d in sorted(distances.items())],
                       columns=columns)
    all_columns = list(dict.fromkeys([*columns, *table.columns]))
    parts = [p.reindex(columns=all_columns) for p in (keep, new) if len(p)]
    if not parts:
        return pd.DataFrame(columns=all_columns)
    return pd.concat(parts, ignore_index=True)


def _blas_single_thread():
    """One BLAS thread while distances are computed.

    Right after torch inference, torch's OpenMP workers are still spinning; a multithreaded BLAS
    eigensolver on the same few cores then runs 2-20x slower (measured on a 2-core machine:
    0.5 s -> 1-11 s for one 1280-d pair). ``frechet_to_many`` parallelises over pairs itself.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        from contextlib import nullcontext
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def distances_to_zoo(zoo: Zoo, profile: Profile) -> dict[str, float]:
    """Fréchet distance from ``profile`` to every other dataset the zoo has profiled with the same probe
    and dimension: the one rule for a new profile's distances, used by ``profile`` and by ``rank``."""
    from hubselect.profile.distance import frechet_to_many

    others = [p for p in load_zoo_profiles(zoo, profile.probe) if p.dataset != profile.dataset]
    others = [p for p in others if p.dim == profile.dim]
    if not others:
        return {}
    with _blas_single_thread():
        values = frechet_to_many(profile.mean, profile.covariance, [p.mean for p in others],
                                 [p.covariance for p in others])
    return {p.dataset: float(v) for p, v in zip(others, np.asarray(values, dtype=np.float64), strict=True)}


def add_profile_to_zoo(zoo: Zoo, profile: Profile) -> dict:
    """Write ``profile`` into the zoo and update ``datasets`` and ``dataset_distances``.

    Everything is computed (other profiles read, distances, new tables) before anything is written,
    so bad input or a damaged zoo leaves the zoo untouched; each file is then written atomically,
    the profile first. Returns the profile's path and its distances to the other datasets.
    """
    path = profile_path(zoo, profile.probe, profile.dataset)
    if path.is_file():
        current = Profile.load(path)
        if current.dataset != profile.dataset:
            raise UserError(f"{path} already holds dataset {current.dataset!r}; profile {profile.dataset!r} "
                            "under another --name")
    distances = distances_to_zoo(zoo, profile)
    datasets_table = _updated_datasets_table(zoo.read_table("datasets"), profile)
    distances_table = _updated_distances_table(zoo.read_table("dataset_distances"), profile, distances)
    data = profile.to_bytes()

    atomic_write_bytes(path, data)
    zoo.write_table("datasets", datasets_table)
    zoo.write_table("dataset_distances", distances_table)
    return {"profile": str(path), "distances": distances}


def add_profile_staged(zoo_dir: str | os.PathLike, profile) -> dict:
    """:func:`add_profile_to_zoo` as one staged step (``hubselect profile``): the profile,
    its ``datasets`` row and its distances appear together, or not at all when the process is killed.
    A zoo that does not exist yet is made (``zoo.json`` with the defaults) in the same step."""
    from hubselect.zoo.staging import staged_zoo

    with staged_zoo(zoo_dir) as stage:
        written = add_profile_to_zoo(Zoo.open(stage, create=True), profile)
    written["profile"] = str(Path(zoo_dir) / Path(written["profile"]).relative_to(stage))
    return written
