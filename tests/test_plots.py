"""hubselect.evaluate.plots: PNGs are written, valid, sized sensibly and depend on their input."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hubselect.evaluate import plots as P
from hubselect.evaluate.metrics import summarize


def _png(path):
    assert path.exists() and path.stat().st_size > 1000
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert 300 <= w <= 4000 and 200 <= h <= 4000
        return np.asarray(im.convert("RGB"))


def _different(a, b):
    return a.shape != b.shape or not np.array_equal(a, b)


def _sparsity(shift=0.0, methods=("mc", "random"), seeds=3):
    rng = np.random.default_rng(0)
    rows = []
    for frac in (0.0, 0.2, 0.4, 0.6, 0.8):
        for seed in range(seeds):
            for m in methods:
                base = 0.15 if m == "random" else 0.6 * (1 - frac) + shift
                rows.append({"removed_fraction": frac, "seed": seed, "method": m,
                             "osr": float(np.clip(base + rng.normal(0, 0.05), 0, 1)),
                             "weighted_tau": float(base - 0.1 + rng.normal(0, 0.05))})
    return pd.DataFrame(rows)


def _records(n_models=6, n_datasets=5, missing=0.2, seed=0, name_len=10):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_models):
        for j in range(n_datasets):
            if rng.random() < missing:
                continue
            model = f"org/model-{i:03d}-" + "x" * name_len
            rows.append({"model": model, "dataset": f"dataset-{j}", "score": float(10 + i + rng.normal(0, 2))})
    return pd.DataFrame(rows)


def test_no_pyplot_and_no_display(tmp_path):
    # plots draw on Figure + FigureCanvasAgg: no pyplot import, no backend switch, no display
    code = (
        "import sys, pandas as pd; from hubselect.evaluate import plots; "
        "rec = pd.DataFrame({'model': ['a', 'b'], 'dataset': ['d', 'd'], 'score': [1.0, 2.0]}); "
        f"plots.plot_score_heatmap(rec, True, {str(tmp_path / 'x.png')!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    _png(tmp_path / "x.png")


def test_plot_sparsity_writes_png_and_depends_on_input(tmp_path):
    a = _png(P.plot_sparsity(_sparsity(), tmp_path / "sub" / "a.png"))
    b = _png(P.plot_sparsity(_sparsity(shift=-0.3), tmp_path / "b.png"))
    assert _different(a, b)
    c = _png(P.plot_sparsity(_sparsity(), tmp_path / "c.png", spread="minmax"))
    assert _different(a, c)
    assert a.shape[1] > a.shape[0]     # two panels side by side


def test_plot_sparsity_single_method_single_seed(tmp_path):
    _png(P.plot_sparsity(_sparsity(methods=("mc",), seeds=1), tmp_path / "one.png"))
    with pytest.raises(ValueError):
        P.plot_sparsity(pd.DataFrame({"method": ["mc"]}), tmp_path / "bad.png")


def test_plot_score_heatmap_writes_png_and_depends_on_input(tmp_path):
    rec = _records()
    a = _png(P.plot_score_heatmap(rec, False, tmp_path / "a.png"))
    b = _png(P.plot_score_heatmap(rec, True, tmp_path / "b.png"))      # direction flips colours
    assert _different(a, b)
    c = _png(P.plot_score_heatmap(_records(seed=5), False, tmp_path / "c.png"))
    assert _different(a, c)


def test_plot_score_heatmap_caps_models_and_truncates(tmp_path):
    rec = _records(n_models=60, n_datasets=8, name_len=60)
    few = _png(P.plot_score_heatmap(rec, False, tmp_path / "capped.png", max_models=12))
    many = _png(P.plot_score_heatmap(rec, False, tmp_path / "more.png", max_models=40))
    assert many.shape[0] > few.shape[0]          # figure height follows the rows shown
    assert P.truncate_label("a" * 100, 28) == "a" * 13 + "…" + "a" * 14
    assert len(P.truncate_label("org/" + "y" * 80, 20)) == 20
    assert P.truncate_label("short", 28) == "short"


def test_plot_method_bars(tmp_path):
    per = pd.DataFrame([
        ("d1", "mc", True, 0.5, 0.0, -1.0), ("d2", "mc", False, 0.3, 2.0, 1.0),
        ("d1", "overall", False, 0.1, 3.0, 0.0), ("d2", "overall", True, 0.4, 0.0, 0.0),
        ("d1", "random", 0.25, 0.0, 2.5, 1.5), ("d2", "random", 0.25, 0.0, 2.0, 1.0),
    ], columns=["dataset", "method", "hit", "weighted_tau", "o2o", "o2b"])
    summary = summarize(per)
    a = _png(P.plot_method_bars(summary, tmp_path / "a.png"))
    changed = summary.assign(osr=summary["osr"][::-1].to_numpy())
    b = _png(P.plot_method_bars(changed, tmp_path / "b.png"))
    assert _different(a, b)
    # method as the index and no o2b column also work (three panels, narrower figure)
    c = _png(P.plot_method_bars(summary.drop(columns="o2b").set_index("method"), tmp_path / "c.png"))
    assert c.shape[1] < a.shape[1]
