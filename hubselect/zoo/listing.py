"""``hubselect zoo``: one row per model, from whatever tables the zoo has."""

from __future__ import annotations

import math

from hubselect.zoo.format import Zoo


def plain_value(value):
    """pandas NaN/NA -> None and numpy scalars -> Python, for JSON."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def list_models(zoo: Zoo) -> list[dict]:
    """The zoo's models with params, TFLOPs per image, license (gated, base model), the pipeline class
    and, for a repo that is not itself a loadable pipeline, the repo that loads it; number of records."""
    models = zoo.read_table("models")
    info = zoo.read_table("model_info")
    records = zoo.read_table("records")
    names = list(models["model"]) if models is not None else []
    if info is not None:
        names += [m for m in info["model"] if m not in set(names)]
    by_model = info.set_index("model").to_dict("index") if info is not None else {}
    counts = records.groupby("model").size().to_dict() if records is not None and len(records) else {}
    rows = []
    for name in names:
        meta = by_model.get(name, {})
        rows.append({
            "model": name,
            "params_denoiser": plain_value(meta.get("params_denoiser")),
            "params_total": plain_value(meta.get("params_total")),
            "tflops_per_image": plain_value(meta.get("tflops_per_image")),
            "flops_complete": plain_value(meta.get("flops_complete")),
            "license": plain_value(meta.get("license")),
            "gated": plain_value(meta.get("gated")),
            "base_model": plain_value(meta.get("base_model")),
            "downloads": plain_value(meta.get("downloads")),
            "pipeline_class": plain_value(meta.get("pipeline_class")),
            "loadable_repo": plain_value(meta.get("loadable_repo")),
            "records": int(counts.get(name, 0)),
        })
    return rows
