"""Dataset sources: where the images (and captions) of a dataset to profile come from.

Two kinds of source, chosen by :func:`open_source`:

* a **local folder** in the Hugging Face ``imagefolder`` layout: image files anywhere below it, and
  optionally ``metadata.jsonl`` / ``metadata.csv`` / ``metadata.parquet`` files whose ``file_name``
  column names an image relative to the metadata file's folder (the other columns, e.g. a caption,
  belong to that image). Sub-folders named like splits (``train/``, ``test/`` ...) are splits;
* a **Hub dataset ID**, streamed through ``datasets`` (nothing is downloaded up front) at the commit
  the Hub reports for it, which is recorded as the profile's revision.

Sampling is seeded: a folder is listed, shuffled with ``numpy.random.default_rng(seed)`` and read in
that order (an exact uniform sample); a Hub stream goes through ``IterableDataset.shuffle(seed,
buffer_size)`` (shard order shuffled, then a shuffle buffer: approximately uniform without reading the
whole dataset). Items are read until ``n`` usable images are found, so an unreadable file is replaced
by the next one and counted in ``skipped``.

Every image is converted to 8-bit RGB (:func:`to_rgb`): CMYK, 16-bit grayscale (``I;16``, ``I``),
float (``F``), palette (``P``, with or without transparency), grayscale (``L``, ``LA``, ``1``) and
RGBA; transparency is composited on white, EXIF orientation is applied. Unreadable, truncated and
non-image files are skipped, and so are decompression bombs (more than :data:`MAX_PIXELS` pixels):
the header is checked before any pixel is decoded.

:meth:`DataSource.prepared` yields the same usable images, in the same order, each already passed
through a probe's transform (RGB image -> tensor). For a folder, decoding and the transform run in
``torch.utils.data.DataLoader`` worker processes when ``workers > 0``, while the caller runs the
probe on the previous batch; the images, their order and the skip counts are those of
:meth:`DataSource.sample`, and so are the tensors, bit for bit. A Hub stream is read, decoded and
transformed in the calling process.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hubselect.constants import ENV_WORKER_NICE, env_number
from hubselect.errors import HubError, HubGated, UserError, first_line, hub_user_error
from hubselect.hub import is_repo_id

#: Images with more pixels than this are refused as decompression bombs (8192 x 8192).
MAX_PIXELS = 8192 * 8192
#: Shuffle buffer of a streamed Hub dataset (the ``datasets`` default).
SHUFFLE_BUFFER = 1000
#: Remote image files fetched at once when a stream yields paths rather than bytes.
FETCH_THREADS = 8
#: Images a DataLoader worker decodes per task (:meth:`DataSource.prepared`).
PREPARE_CHUNK = 8

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".pjpeg", ".pjp", ".png", ".apng", ".webp", ".bmp", ".dib", ".gif",
    ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k", ".avif", ".qoi",
})
METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
SPLIT_NAMES = ("train", "validation", "valid", "val", "dev", "test")
# Column names that hold an image or a caption, most specific first.
IMAGE_COLUMN_NAMES = ("image", "images", "img", "picture", "photo", "pixel_values", "jpg", "png", "webp")
CAPTION_COLUMN_NAMES = ("caption", "captions", "text", "prompt", "prompts", "sentence", "description",
                        "alt_text", "title", "txt", "label_text", "additional_feature")
_NOT_CAPTION = re.compile(r"(^|_)(url|uri|path|file|file_name|filename|id|hash|sha|md5|key|license|source)s?$",
                          re.IGNORECASE)

# Why an item was skipped.
NOT_AN_IMAGE = "not_an_image"     # not an image file at all (or an empty one)
CORRUPT = "corrupt"               # an image that does not decode: truncated, damaged, unsupported mode
TOO_LARGE = "too_large"           # decompression bomb
MISSING = "missing"               # listed in the data but the file cannot be read
NO_CAPTION = "no_caption"         # a text probe met an item without a caption


class SkipImage(Exception):
    """An item that cannot be used; ``reason`` is one of the skip reasons above."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ------------------------------------------------------------------------------------------------
# Decoding one image
# ------------------------------------------------------------------------------------------------

def to_rgb(im: Image.Image) -> Image.Image:
    """The image as 8-bit RGB: alpha composited on white, 16-bit and float scaled to 8 bits."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a damaged EXIF block must not cost the image
        pass
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":      # I;16, I;16B, I;16L, I;16N, I (32-bit), F
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if mode.startswith("I;16") or (mode == "I" and 255 < top <= 65535):
            arr = arr / 257.0                     # 65535 -> 255
        elif mode == "I" and top > 65535:
            arr = arr * (255.0 / top)
        elif mode == "F" and top <= 1.0:
            arr = arr * 255.0                     # float images in [0, 1]
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    elif mode in ("LA", "La", "PA", "RGBa", "RGBA"):
        im = im.convert("RGBA")
    elif mode == "L" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        white = Image.new("RGB", im.size, (255, 255, 255))
        white.paste(im.convert("RGB"), mask=im.getchannel("A"))
        return white
    return im.convert("RGB")                      # L, 1, CMYK, YCbCr, HSV, ...


def load_image(data: bytes | str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file (bytes or a local path) to RGB, or raise :class:`SkipImage`."""
    try:
        fp = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else open(data, "rb")
    except OSError as exc:
        raise SkipImage(MISSING, str(exc)) from None
    with fp, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(fp)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise SkipImage(TOO_LARGE, str(exc)) from None
        except UnidentifiedImageError as exc:
            raise SkipImage(NOT_AN_IMAGE, str(exc)) from None
        except Exception as exc:  # PIL raises many types for damaged headers
            raise SkipImage(CORRUPT, f"{type(exc).__name__}: {exc}") from None
        with im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise SkipImage(CORRUPT, f"size {width}x{height}")
            if width * height > max_pixels:
                raise SkipImage(TOO_LARGE, f"{width}x{height} pixels is over the limit of {max_pixels}")
            try:
                im.load()
                rgb = to_rgb(im)
                if rgb is im:
                    rgb = im.copy()      # `im` is closed when this block ends
                rgb.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise SkipImage(TOO_LARGE, str(exc)) from None
            except Exception as exc:  # truncated data, bad chunks, unsupported modes
                raise SkipImage(CORRUPT, f"{type(exc).__name__}: {exc}") from None
    return rgb


# ------------------------------------------------------------------------------------------------
# Items and sources
# ------------------------------------------------------------------------------------------------

@dataclass
class Record:
    """One item of a dataset before decoding: image bytes or a path, and its caption."""

    key: str
    data: bytes | None = None
    path: str | None = None          # a local path, or an hf:// path of a streamed dataset
    caption: str | None = None


@dataclass
class Sample:
    """One usable item: an RGB image (None when only captions are wanted) and its caption."""

    key: str
    image: Image.Image | None
    caption: str | None


@dataclass
class Prepared:
    """One usable image after a probe's transform: its key, the transformed tensor, its caption."""

    key: str
    pixels: object                   # torch.Tensor
    caption: str | None


def _caption(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass
class SampleSet:
    """Samples held in memory, with where they came from (see :func:`load_samples`)."""

    dataset: str
    kind: str
    revision: str | None
    split: str | None
    image_column: str | None
    caption_column: str | None
    samples: list[Sample]
    skipped: dict[str, int]

    @property
    def images(self) -> list[Image.Image]:
        return [s.image for s in self.samples if s.image is not None]

    @property
    def captions(self) -> list[str | None]:
        return [s.caption for s in self.samples]


@dataclass
class DataSource:
    """Where a dataset's items come from; :meth:`sample` draws usable ones."""

    kind: str                         # "folder" or "hub"
    dataset: str                      # the default name: the Hub ID, or the folder's name
    source: str                       # the Hub ID, or the folder's absolute path
    revision: str | None = None       # the Hub commit sha (None for a folder)
    split: str | None = None
    image_column: str | None = None
    caption_column: str | None = None
    size: int | None = None           # number of items when known (a folder)
    skipped: Counter = field(default_factory=Counter)

    def records(self, seed: int) -> Iterator[Record]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fill(self, batch: list[Record]) -> None:
        """Fetch the bytes of records that only carry a path (overridden by the Hub source)."""

    def sample(self, n: int, seed: int = 0, modality: str = "image", timings: dict | None = None) -> Iterator[Sample]:
        """Up to ``n`` usable items in a seeded random order; unusable ones are counted in ``skipped``.

        ``modality="image"`` decodes images (captions come along when there are any);
        ``modality="text"`` wants captions only and never decodes an image. ``timings``, when given,
        gains ``decode``: the seconds spent decoding images.
        """
        if modality not in ("image", "text"):
            raise ValueError(f"modality must be 'image' or 'text', not {modality!r}")
        self.skipped = Counter()
        if n <= 0:
            return
        stream = self.records(seed)
        try:
            yield from self._usable(stream, n, modality, timings)
        finally:
            stream.close()      # stop the underlying reader now (a Hub stream winds its threads down)

    def prepared(self, n: int, transform, seed: int = 0, workers: int = 0, prefetch: int | None = None,
                 timings: dict | None = None) -> Iterator[Prepared]:
        """The images of :meth:`sample` (same ones, same order, same ``skipped``), each through ``transform``.

        ``transform`` maps an RGB image to a tensor (a probe's :meth:`~hubselect.profile.probes.Probe.transform`).
        ``workers`` and ``prefetch`` (images kept ready ahead of the caller) apply to folders; this
        generic version reads, decodes and transforms in the calling process. ``timings``, when given,
        is filled with seconds: ``read`` (listing, streaming, fetching), ``decode``, ``transform``
        and ``wait`` (time the caller spent waiting for images: all of the above here).
        """
        t = timings if timings is not None else {}
        for key in ("read", "decode", "transform", "wait"):
            t.setdefault(key, 0.0)
        t.setdefault("workers", 0)
        inner: dict = {"decode": 0.0}
        samples = self.sample(n, seed=seed, modality="image", timings=inner)
        try:
            while True:
                start = time.perf_counter()
                decoded = inner["decode"]
                sample = next(samples, None)
                got = time.perf_counter()
                decode = inner["decode"] - decoded
                t["decode"] += decode
                t["read"] += got - start - decode
                if sample is None:
                    t["wait"] += got - start
                    break
                pixels = transform(sample.image)
                done = time.perf_counter()
                t["transform"] += done - got
                t["wait"] += done - start
                yield Prepared(sample.key, pixels, sample.caption)
        finally:
            samples.close()

    def _usable(self, stream: Iterator[Record], n: int, modality: str,
                timings: dict | None = None) -> Iterator[Sample]:
        found = 0
        pending: list[Record] = []
        while found < n:
            record = next(stream, None)
            if record is not None:
                if modality == "text" and not (isinstance(record.caption, str) and record.caption.strip()):
                    self.skipped[NO_CAPTION] += 1
                    continue
                pending.append(record)
                # Read a few more records than needed, so that remote files are fetched in parallel.
                if len(pending) < min(FETCH_THREADS * 2, n - found):
                    continue
            if not pending:
                break
            if modality == "image":
                self._fill(pending)
            for rec in pending:
                if found >= n:
                    break
                if modality == "text":
                    yield Sample(rec.key, None, rec.caption.strip())
                    found += 1
                    continue
                start = time.perf_counter()
                try:
                    if rec.data is not None:
                        image = load_image(rec.data)
                    elif rec.path is not None:
                        image = load_image(rec.path)
                    else:
                        raise SkipImage(MISSING, "no image data")
                except SkipImage as exc:
                    self.skipped[exc.reason] += 1
                    continue
                finally:
                    if timings is not None:
                        timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - start
                yield Sample(rec.key, image, _caption(rec.caption))
                found += 1
            pending = []
            if record is None:
                break


def load_samples(source: str, n: int = 1000, seed: int = 0, modality: str = "image",
                 image_column: str | None = None, caption_column: str | None = None,
                 split: str | None = None) -> SampleSet:
    """Up to ``n`` usable samples of a folder or Hub dataset, held in memory."""
    src = open_source(source, image_column=image_column, caption_column=caption_column, split=split,
                      need_images=modality == "image", need_captions=modality == "text")
    samples = list(src.sample(n, seed=seed, modality=modality))
    return SampleSet(dataset=src.dataset, kind=src.kind, revision=src.revision, split=src.split,
                     image_column=src.image_column, caption_column=src.caption_column, samples=samples,
                     skipped=dict(src.skipped))


def open_source(source: str | os.PathLike, image_column: str | None = None, caption_column: str | None = None,
                split: str | None = None, need_images: bool = True, need_captions: bool = False) -> DataSource:
    """A local folder (when ``source`` exists on disk) or a Hub dataset ID.

    Raises :class:`UserError` for anything the user can fix: a missing folder, a folder without
    images, an unknown, private or gated Hub dataset, a column that does not exist.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{text} is a file: DATASET must be an image folder or a Hub dataset ID")
        return FolderSource.open(path, image_column=image_column, caption_column=caption_column, split=split,
                                 need_captions=need_captions)
    if is_repo_id(text, owner=False):          # canonical datasets ("mnist") have no owner
        return HubSource.open(text, image_column=image_column, caption_column=caption_column, split=split,
                              need_images=need_images, need_captions=need_captions)
    raise UserError(f"{text}: no such folder, and not a Hub dataset ID (owner/name)")


# ------------------------------------------------------------------------------------------------
# Local folders
# ------------------------------------------------------------------------------------------------

def _pick_caption_column(columns: list[str], explicit: str | None, where: str,
                         string_columns: list[str] | None = None) -> str | None:
    if explicit is not None:
        if explicit not in columns:
            raise UserError(f"{where} has no column {explicit!r} for --caption-column "
                            f"(columns: {', '.join(columns) or 'none'})")
        return explicit
    lower = {c.lower(): c for c in columns}
    for name in CAPTION_COLUMN_NAMES:
        if name in lower:
            return lower[name]
    candidates = [c for c in (string_columns if string_columns is not None else columns)
                  if not _NOT_CAPTION.search(c)]
    return candidates[0] if len(candidates) == 1 else None


def _read_metadata(meta: Path) -> list[dict]:
    try:
        if meta.suffix == ".jsonl":
            rows = []
            with open(meta, encoding="utf-8") as f:
                for lineno, line in enumerate(f, start=1):
                    if line.strip():
                        row = json.loads(line)
                        if not isinstance(row, dict):
                            raise ValueError(f"line {lineno} is not a JSON object")
                        rows.append(row)
            return rows
        import pandas as pd
        df = pd.read_csv(meta, keep_default_na=False) if meta.suffix == ".csv" else pd.read_parquet(meta)
        return df.to_dict("records")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"unreadable {meta}: {exc}") from None
    except Exception as exc:  # pandas / pyarrow parse errors
        raise UserError(f"unreadable {meta}: {type(exc).__name__}: {exc}") from None


@dataclass
class FolderSource(DataSource):
    root: Path = Path(".")
    files: list[str] = field(default_factory=list)          # relative POSIX paths, sorted
    captions: dict[str, str] = field(default_factory=dict)  # relative path -> caption

    @classmethod
    def open(cls, folder: Path, image_column: str | None = None, caption_column: str | None = None,
             split: str | None = None, need_captions: bool = False) -> "FolderSource":
        folder = folder.resolve()
        if image_column is not None and image_column not in ("image", "file_name"):
            raise UserError(f"--image-column does not apply to a folder ({folder}): its images are its files")
        root = folder
        subdirs = {p.name for p in folder.iterdir() if p.is_dir()}
        if split is not None:
            if split not in subdirs:
                raise UserError(f"{folder} has no split folder {split!r}"
                                + (f" (splits: {', '.join(sorted(s for s in subdirs if s in SPLIT_NAMES))})"
                                   if subdirs & set(SPLIT_NAMES) else ""))
            root = folder / split
        elif "train" in subdirs and len(subdirs & set(SPLIT_NAMES)) >= 2:
            split, root = "train", folder / "train"

        files: list[str] = []
        metas: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                if name in METADATA_FILES:
                    metas.append(full)
                elif full.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(full.relative_to(root).as_posix())
        if not files:
            raise UserError(f"no image files in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS)[:6])}, ...)")

        captions: dict[str, str] = {}
        chosen: str | None = None
        for meta in metas:
            rows = _read_metadata(meta)
            if not rows:
                continue
            columns = list(dict.fromkeys(k for row in rows for k in row))
            if "file_name" not in columns:
                raise UserError(f"{meta} has no file_name column (the imagefolder layout names each image in it)")
            strings = [c for c in columns if c != "file_name"
                       and all(isinstance(r.get(c), str) or r.get(c) is None for r in rows)]
            column = _pick_caption_column([c for c in columns if c != "file_name"], caption_column, str(meta),
                                          string_columns=strings)
            if column is None:
                continue
            chosen = chosen or column
            base = meta.parent.relative_to(root)
            for row in rows:
                name, value = row.get("file_name"), row.get(column)
                if not isinstance(name, str) or value is None:
                    continue
                rel = (base / name).as_posix() if str(base) != "." else Path(name).as_posix()
                captions[rel] = value if isinstance(value, str) else str(value)
        if caption_column is not None and chosen is None:
            raise UserError(f"{folder} has no metadata file with column {caption_column!r}")
        if need_captions and not captions:
            raise UserError(f"{folder} has no captions: add a metadata.jsonl or metadata.csv with file_name "
                            "and a caption column")
        return cls(kind="folder", dataset=folder.name, source=str(folder), revision=None, split=split,
                   image_column="file_name", caption_column=chosen, size=len(files), root=root, files=files,
                   captions=captions)

    def order(self, seed: int) -> np.ndarray:
        """The seeded reading order: a permutation of ``files``."""
        return np.random.default_rng(seed).permutation(len(self.files))

    def records(self, seed: int) -> Iterator[Record]:
        for i in self.order(seed):
            rel = self.files[int(i)]
            yield Record(key=rel, path=str(self.root / rel), caption=self.captions.get(rel))

    def prepared(self, n: int, transform, seed: int = 0, workers: int = 0, prefetch: int | None = None,
                 timings: dict | None = None) -> Iterator[Prepared]:
        """As :meth:`DataSource.prepared`; with ``workers > 0``, DataLoader worker processes decode and
        transform the images (:data:`PREPARE_CHUNK` per task, about ``prefetch`` images ahead) while the
        caller works. ``timings["decode"]`` and ``["transform"]`` are CPU seconds, summed over the
        workers; ``read`` is 0 (listing the folder is part of opening it).
        """
        t = timings if timings is not None else {}
        for key in ("read", "decode", "transform", "wait"):
            t.setdefault(key, 0.0)
        self.skipped = Counter()
        items = _FolderItems(self.root, self.files, self.order(seed), self.captions, transform)
        workers = max(0, int(workers))
        if n <= 0 or len(items) <= PREPARE_CHUNK:
            workers = 0                  # nothing to overlap: starting a process costs more
        t["workers"] = workers
        if workers == 0:
            chunks = ([items[i] for i in range(k, min(k + PREPARE_CHUNK, len(items)))]
                      for k in range(0, len(items), PREPARE_CHUNK))
            chunks = (_stack_chunk(c) for c in chunks)
            loader = None
        else:
            from torch.utils.data import DataLoader

            ahead = prefetch if prefetch is not None else 2 * PREPARE_CHUNK * workers
            loader = DataLoader(items, batch_size=PREPARE_CHUNK, shuffle=False, num_workers=workers,
                                collate_fn=_stack_chunk, worker_init_fn=_worker_init,
                                prefetch_factor=max(2, -(-ahead // (PREPARE_CHUNK * workers))))
            chunks = iter(loader)
        found = 0
        try:
            while found < n:
                start = time.perf_counter()
                chunk = next(chunks, None)
                t["wait"] += time.perf_counter() - start
                if chunk is None:
                    break
                meta, stacked = chunk
                row = 0
                for key, reason, caption, decode_s, transform_s in meta:
                    if found >= n:
                        break
                    t["decode"] += decode_s
                    t["transform"] += transform_s
                    if reason is not None:
                        self.skipped[reason] += 1
                        continue
                    pixels = stacked[row]
                    row += 1
                    found += 1
                    yield Prepared(key, pixels, caption)
        finally:
            del chunks           # a DataLoader's iterator shuts its workers down when released
            del loader


class _FolderItems:
    """Item ``i`` of a folder's seeded order, decoded and transformed (a map-style dataset, as
    ``torch.utils.data.DataLoader`` takes it). Returns ``(key, pixels, skip_reason, caption,
    decode_seconds, transform_seconds)``; ``pixels`` is None for an unusable file."""

    def __init__(self, root: Path, files: list[str], order: np.ndarray, captions: dict[str, str], transform):
        self.root, self.files, self.order, self.captions, self.transform = root, files, order, captions, transform

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int):
        # CPU time of this thread: a worker may wait for a core (it runs at a lower priority), and
        # that wait is not decoding.
        rel = self.files[int(self.order[i])]
        start = time.thread_time()
        try:
            image = load_image(str(self.root / rel))
        except SkipImage as exc:
            return rel, None, exc.reason, None, time.thread_time() - start, 0.0
        decoded = time.thread_time()
        pixels = self.transform(image)
        return rel, pixels, None, _caption(self.captions.get(rel)), decoded - start, time.thread_time() - decoded


#: Scheduling priority of the decoding workers (os.nice increment; 0 keeps the caller's).
WORKER_NICE = env_number(ENV_WORKER_NICE, 10, int)


def _worker_init(worker_id: int) -> None:
    """Decoding workers yield the CPU to the probe's threads: they fill the cores' idle moments.

    The forward pass runs on every core with OpenMP threads that wait for each other at every
    operation; a decoding process that takes a core from one of them at full priority stalls all
    of them, which costs more than the decoding saves.
    """
    if WORKER_NICE:
        try:
            os.nice(WORKER_NICE)
        except OSError:  # pragma: no cover - not permitted: keep the priority
            pass


def _stack_chunk(items: list) -> tuple[list, object]:
    """A chunk of :class:`_FolderItems` results: their metadata, and the usable tensors stacked into one
    (a worker hands one shared-memory block to the main process, not one per image)."""
    import torch

    tensors = [it[1] for it in items if it[1] is not None]
    meta = [(key, reason, caption, d, tr) for key, _, reason, caption, d, tr in items]
    return meta, (torch.stack(tensors) if tensors else None)


# ------------------------------------------------------------------------------------------------
# Hub datasets (streamed through `datasets`)
# ------------------------------------------------------------------------------------------------

def dataset_hub_error(repo_id: str, exc: HubError) -> UserError:
    """What a user should know when the Hub refuses or lacks a dataset (worded by hub_user_error)."""
    return hub_user_error(exc, f"dataset {repo_id}")


def _image_like(feature) -> bool:
    import datasets
    if isinstance(feature, datasets.Image):
        return True
    if isinstance(feature, dict) and "bytes" in feature:
        return True
    return isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary")


@dataclass
class HubSource(DataSource):
    stream: object = None              # datasets.IterableDataset
    token: str | None = None
    endpoint: str | None = None

    @classmethod
    def open(cls, repo_id: str, image_column: str | None = None, caption_column: str | None = None,
             split: str | None = None, need_images: bool = True, need_captions: bool = False) -> "HubSource":
        import datasets

        from hubselect.hub import HubClient

        client = HubClient()
        try:   # the commit sha pins the data read below, and is recorded as the profile's revision
            info = client.dataset_meta(repo_id)
        except HubError as exc:
            raise dataset_hub_error(repo_id, exc) from None
        if info.gated and not client.token:
            raise hub_user_error(HubGated(message="no token"), f"dataset {repo_id}")
        sha = info.sha

        _point_datasets_at(client.endpoint)
        bars_were_off = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()     # "Resolving data files" bars would clutter the CLI's own bar
        try:
            loaded = datasets.load_dataset(repo_id, revision=sha, streaming=True, token=client.token)
        except datasets.exceptions.DatasetNotFoundError as exc:
            msg = first_line(exc, 300)
            if "gated" in msg.lower():
                raise hub_user_error(HubGated(message=msg), f"dataset {repo_id}") from None
            raise UserError(f"dataset {repo_id}: {msg}") from None
        except Exception as exc:  # no data files, unsupported format, network
            raise UserError(f"cannot stream dataset {repo_id}: {type(exc).__name__}: {first_line(exc, 300)}") from None
        finally:
            if not bars_were_off:
                datasets.enable_progress_bars()

        splits = list(loaded.keys()) if isinstance(loaded, dict) else []
        if split is None:
            split = "train" if "train" in splits else (splits[0] if splits else None)
        if split not in splits:
            raise UserError(f"dataset {repo_id} has no split {split!r} (splits: {', '.join(splits) or 'none'})")
        stream = loaded[split]

        features = stream.features
        if features is None:
            try:
                stream = stream._resolve_features()
                features = stream.features
            except Exception as exc:
                raise UserError(f"cannot read the columns of dataset {repo_id}: {first_line(exc, 300)}") from None
        columns = list(features or {})
        where = f"dataset {repo_id} ({split})"

        if image_column is not None:
            if image_column not in columns:
                raise UserError(f"{where} has no column {image_column!r} (columns: {', '.join(columns)})")
            if not _image_like(features[image_column]):
                raise UserError(f"{where}: column {image_column!r} holds {features[image_column]}, not images")
        else:
            images = [c for c in columns if isinstance(features[c], datasets.Image)]
            if not images:
                images = [c for c in columns if c.lower() in IMAGE_COLUMN_NAMES and _image_like(features[c])]
            image_column = images[0] if images else None
        if need_images and image_column is None:
            raise UserError(f"{where} has no image column (columns: {', '.join(columns)}); "
                            "pass --image-column")

        strings = [c for c in columns if isinstance(features[c], datasets.Value)
                   and features[c].dtype in ("string", "large_string")]
        if caption_column is not None and caption_column in columns and caption_column not in strings:
            raise UserError(f"{where}: column {caption_column!r} holds {features[caption_column]}, not text")
        caption_column = _pick_caption_column(columns if caption_column else strings, caption_column, where,
                                              string_columns=strings)
        if need_captions and caption_column is None:
            raise UserError(f"{where} has no caption column (columns: {', '.join(columns)}); "
                            "pass --caption-column")

        if not need_images:
            image_column = None          # a caption probe never reads the images
        keep = [c for c in (image_column, caption_column) if c is not None]
        # Images are decoded here, not by `datasets`: a damaged file must be skipped, not end the stream.
        stream = stream.decode(False).select_columns(keep)
        return cls(kind="hub", dataset=repo_id, source=repo_id, revision=sha, split=split,
                   image_column=image_column, caption_column=caption_column, size=None, stream=stream,
                   token=client.token, endpoint=client.endpoint)

    def records(self, seed: int) -> Iterator[Record]:
        shuffled = self.stream.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
        try:
            for i, row in enumerate(shuffled):
                value = row.get(self.image_column) if self.image_column else None
                caption = row.get(self.caption_column) if self.caption_column else None
                data = name = None
                if isinstance(value, dict):
                    data, name = value.get("bytes"), value.get("path")
                elif isinstance(value, (bytes, bytearray)):
                    data = bytes(value)
                # A path is only followed into the dataset's own repo, never onto the local disk.
                remote = name if data is None and self._own_file(name) else None
                key = re.sub(r"^hf://datasets/[^@]+@[^/]+/", "", name) if isinstance(name, str) else None
                yield Record(key=key or f"{self.split}[{i}]", data=data, path=remote, caption=caption)
        except UserError:
            raise
        except Exception as exc:  # a network failure or a damaged shard in the middle of the stream
            raise UserError(f"streaming dataset {self.dataset} failed: {type(exc).__name__}: "
                            f"{first_line(exc, 300)}") from None

    def _own_file(self, name) -> bool:
        return isinstance(name, str) and (name.startswith(f"hf://datasets/{self.dataset}@")
                                          or name.startswith(f"hf://datasets/{self.dataset}/"))

    def _fill(self, batch: list[Record]) -> None:
        remote = [r for r in batch if r.data is None and r.path]
        if not remote:
            return
        from huggingface_hub import HfFileSystem
        fs = HfFileSystem(endpoint=self.endpoint, token=self.token)

        def fetch(record: Record) -> None:
            try:
                with fs.open(record.path, "rb") as f:
                    record.data = f.read()
            except Exception:
                record.path = None      # counted as missing by the caller
        with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(remote))) as pool:
            list(pool.map(fetch, remote))


def _point_datasets_at(endpoint: str) -> None:
    """Make ``datasets`` use the endpoint hubselect's Hub client uses.

    ``datasets`` reads ``HF_ENDPOINT`` once, at import (``datasets.config.HF_ENDPOINT``), while
    hubselect reads it whenever a client is made (see :mod:`hubselect.hub`); without this, a script
    or test that sets ``HF_ENDPOINT`` after ``datasets`` was imported would stream from elsewhere.
    """
    from datasets import config
    endpoint = endpoint.rstrip("/")
    if config.HF_ENDPOINT.rstrip("/") != endpoint:
        config.HF_ENDPOINT = endpoint
        config.HUB_DATASETS_URL = endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"
