"""Model features: a pipeline's configs flattened into a fixed numeric vector (the paper's §4.2).

1. Flatten every component config into ``<component>_<key>`` entries; lists become indexed keys
   (``unet_block_out_channels_2``), nested dicts join their keys. Provenance keys that are not
   hyperparameters (``_name_or_path``, ``_diffusers_version``, ...) are dropped.
2. Add what configs do not hold: the sampling defaults, ``log10`` of the parameter counts and of
   the sampling FLOPs per image.
3. Keep the keys whose value varies across the zoo (a key absent from some models varies).
4. Numbers (booleans as 0/1) are standardised with the zoo's mean and standard deviation; a
   missing number becomes 0, the zoo mean. Everything else is one-hot encoded; a missing
   category is all zeros and a category unseen at fit time is all zeros too.

The fitted schema is saved as JSON beside the zoo's tables (``feature_schema.json``), so a model
crawled later is mapped into the same space without changing the vectors of the others.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from hubselect.zoo.format import atomic_write_json

SCHEMA_FILE = "feature_schema.json"
SCHEMA_VERSION = 1
# Keys that describe where a config came from, not the model.
PROVENANCE_KEYS = {"_name_or_path", "_diffusers_version", "transformers_version", "_commit_hash",
                   "torch_dtype", "dtype", "architectures", "_use_default_values", "id2label",
                   "label2id", "task_specific_params", "auto_map"}
NON_MODEL_COMPONENTS = {"tokenizer", "tokenizer_2", "tokenizer_3", "feature_extractor", "image_processor"}


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in PROVENANCE_KEYS:
                continue
            _flatten(f"{prefix}_{k.lstrip('_')}", v, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(f"{prefix}_{i}", v, out)
    else:
        out[prefix] = value


def _log10(x) -> float | None:
    return math.log10(x) if isinstance(x, (int, float)) and x and x > 0 else None


def flatten_record(record: dict) -> dict[str, Any]:
    """All hyperparameters of one crawled pipeline as a flat ``{name: scalar}`` dict."""
    flat: dict[str, Any] = {"pipeline_class": record.get("pipeline_class")}
    for name, cfg in sorted((record.get("configs") or {}).items()):
        if name not in NON_MODEL_COMPONENTS:
            _flatten(name, cfg, flat)
    for k in ("num_inference_steps", "guidance_scale", "cfg_factor", "text_tokens", "latent_size"):
        flat[f"sampling_{k}"] = (record.get("sampling") or {}).get(k)
    flat["log_params_denoiser"] = _log10(record.get("params_denoiser"))
    flat["log_params_total"] = _log10(record.get("params_total"))
    flat["log_flops_per_image"] = _log10((record.get("flops") or {}).get("per_image"))
    return flat


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not (isinstance(v, float) and math.isnan(v))


_MISSING = object()


class ModelFeatureEncoder:
    """Fit on a zoo's crawl records, transform any record into the same columns."""

    def __init__(self):
        self.numeric: dict[str, dict[str, float]] = {}
        self.categorical: dict[str, list[str]] = {}
        self.n_hyperparameters = 0

    @property
    def columns(self) -> list[str]:
        cols = list(self.numeric)
        for key, cats in self.categorical.items():
            cols += [f"{key}_{c}" for c in cats]
        return cols

    def fit(self, records: Iterable[dict]) -> "ModelFeatureEncoder":
        flats = [flatten_record(r) for r in records]
        keys = sorted({k for f in flats for k in f})
        self.numeric, self.categorical = {}, {}
        for key in keys:
            values = [f.get(key, _MISSING) for f in flats]
            present = [v for v in values if v is not _MISSING]
            distinct = {json.dumps(v, sort_keys=True, default=str) for v in values if v is not _MISSING}
            if len(distinct) + (len(present) < len(values)) <= 1:
                continue   # the same everywhere: says nothing about a model
            if present and all(_is_number(v) or isinstance(v, bool) for v in present):
                arr = np.array([float(v) for v in present])
                std = float(arr.std())
                self.numeric[key] = {"mean": float(arr.mean()), "std": std if std > 0 else 1.0}
            else:
                self.categorical[key] = sorted({str(v) for v in present})
        self.n_hyperparameters = len(self.numeric) + len(self.categorical)
        return self

    def transform(self, records: Iterable[dict]) -> pd.DataFrame:
        rows, names = [], []
        for rec in records:
            flat = flatten_record(rec)
            row = []
            for key, stats in self.numeric.items():
                v = flat.get(key)
                row.append((float(v) - stats["mean"]) / stats["std"] if _is_number(v) or isinstance(v, bool) else 0.0)
            for key, cats in self.categorical.items():
                v = flat.get(key, _MISSING)
                row += [1.0 if v is not _MISSING and str(v) == c else 0.0 for c in cats]
            rows.append(row)
            names.append(rec["model"])
        df = pd.DataFrame(rows, columns=self.columns)
        df.insert(0, "model", names)
        return df

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"version": SCHEMA_VERSION, "numeric": self.numeric, "categorical": self.categorical,
                "n_hyperparameters": self.n_hyperparameters, "dimension": len(self.columns)}

    def save(self, path: Path) -> None:
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "ModelFeatureEncoder | None":
        path = Path(path)
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        if raw.get("version") != SCHEMA_VERSION:
            return None
        enc = cls()
        enc.numeric = raw["numeric"]
        enc.categorical = raw["categorical"]
        enc.n_hyperparameters = raw.get("n_hyperparameters", len(enc.numeric) + len(enc.categorical))
        return enc
