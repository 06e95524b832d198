"""PNG figures of the evaluation, drawn on matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` and saved through ``FigureCanvasAgg``: pyplot is
never imported, so no display is needed and the process-wide backend is left as it is.

* :func:`plot_sparsity` — the paper's Fig. 6: OSR and weighted τ against the fraction of
  model–dataset edges removed, one line per method (mean over seeds with a std or min–max band),
  the random baseline (method ``"random"``) dashed.
* :func:`plot_score_heatmap` — model × dataset heatmap like Fig. 3b, coloured by each model's
  normalised rank on the dataset (0 = best), so datasets with different scales are comparable;
  missing records are grey.
* :func:`plot_method_bars` — OSR, weighted τ, O2O (and O2B when present) per method.

Every function writes one PNG (creating parent folders) and returns its ``Path``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from hubselect.zoo.tables import normalized_rank

__all__ = ["plot_sparsity", "plot_score_heatmap", "plot_method_bars", "truncate_label"]

RANDOM_METHOD = "random"
MISSING_COLOUR = "#d9d9d9"
DPI = 110


def truncate_label(label, width: int = 28) -> str:
    """``label`` as text, cut to ``width`` characters with an ellipsis in the middle.

    The middle is cut so that both an organisation prefix and a model suffix stay readable
    ("stabilityai/stable-…-medium").
    """
    text = str(label)
    if len(text) <= width or width < 5:
        return text
    head = (width - 1) // 2
    tail = width - 1 - head
    return f"{text[:head]}…{text[-tail:]}"


def _natural_key(label) -> tuple:
    """Sort key that orders "dataset-2" before "dataset-10"."""
    parts = re.split(r"(\d+)", str(label).lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _require(df: pd.DataFrame, columns: set[str], what: str) -> None:
    missing = columns - set(df.columns)
    if missing:
        raise ValueError(f"{what} lacks column(s) {sorted(missing)}")


def _method_styles(methods: list) -> dict:
    cycle = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
             "#17becf", "#bcbd22"]
    styles, k = {}, 0
    for m in methods:
        if str(m) == RANDOM_METHOD:
            styles[m] = {"color": "#555555", "linestyle": "--", "marker": None}
        else:
            styles[m] = {"color": cycle[k % len(cycle)], "linestyle": "-", "marker": "o"}
            k += 1
    return styles


# -- Fig. 6 ---------------------------------------------------------------------------------------

def plot_sparsity(df: pd.DataFrame, path, spread: Literal["std", "minmax"] = "std",
                  title: str | None = None) -> Path:
    """OSR and weighted τ against the fraction of model–dataset edges removed (two panels).

    ``df`` has one row per (removed_fraction, seed, method) with ``osr`` and ``weighted_tau``.
    Each method is a line through its mean over seeds with a band of ± one standard deviation
    (``spread="std"``) or the min–max range (``"minmax"``); the method ``"random"`` is dashed grey.
    Fractions in [0, 1] are shown as percentages.
    """
    _require(df, {"removed_fraction", "method", "osr", "weighted_tau"}, "sparsity table")
    if spread not in ("std", "minmax"):
        raise ValueError(f"spread must be 'std' or 'minmax', not {spread!r}")
    if df.empty:
        raise ValueError("sparsity table is empty")
    data = df.copy()
    data["removed_fraction"] = data["removed_fraction"].astype(float)
    for col in ("osr", "weighted_tau"):
        data[col] = pd.to_numeric(data[col], errors="coerce").astype(float)
    methods = list(dict.fromkeys(data["method"]))
    styles = _method_styles(methods)
    as_percent = bool(data["removed_fraction"].between(0, 1).all())
    scale = 100.0 if as_percent else 1.0

    fig = Figure(figsize=(10.5, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = [("osr", "OSR (optimal selection ratio) ↑", True),
              ("weighted_tau", "Kendall weighted τ ↑", False)]
    for ax, (col, label, percent_y) in zip(axes, panels):
        for m in methods:
            sub = data.loc[data["method"] == m]
            g = sub.groupby("removed_fraction")[col]
            mean = g.mean()
            if spread == "std":
                sd = g.std(ddof=0).fillna(0.0)
                lo, hi = mean - sd, mean + sd
            else:
                lo, hi = g.min(), g.max()
            x = mean.index.to_numpy(dtype=float) * scale
            yscale = 100.0 if percent_y else 1.0
            st = styles[m]
            ax.plot(x, mean.to_numpy() * yscale, label=str(m), color=st["color"],
                    linestyle=st["linestyle"], marker=st["marker"], markersize=4, linewidth=1.8)
            if (hi - lo).fillna(0.0).abs().max() > 0:
                ax.fill_between(x, lo.to_numpy() * yscale, hi.to_numpy() * yscale,
                                color=st["color"], alpha=0.15, linewidth=0)
        ax.set_xlabel("model–dataset edges removed" + (" (%)" if as_percent else ""))
        ax.set_ylabel(label + (" (%)" if percent_y else ""))
        ax.grid(True, alpha=0.3)
        if percent_y:
            ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    band = "± 1 std" if spread == "std" else "min–max"
    n_seeds = int(data["seed"].nunique()) if "seed" in data.columns else 1
    axes[0].legend(loc="best", fontsize=9)
    fig.suptitle(title or f"Selection quality vs. knowledge deficit "
                          f"(mean over {n_seeds} seed{'s' if n_seeds != 1 else ''}, band {band})")
    return _save(fig, path)


# -- Fig. 3b --------------------------------------------------------------------------------------

def plot_score_heatmap(records: pd.DataFrame, higher_is_better: bool, path, max_models: int = 40,
                       max_datasets: int | None = 80, title: str | None = None,
                       label_width: int = 28) -> Path:
    """Model × dataset heatmap coloured by the per-dataset normalised rank (0 = best, 1 = worst).

    ``records`` has columns ``model, dataset, score`` (a pair recorded twice counts with its mean
    score). Missing pairs are grey. With more than ``max_models`` models, the ``max_models``
    with the most records are kept (ties: better mean rank, then name) and the title says so;
    likewise for datasets with ``max_datasets``. Ranks are computed on the full records before
    the cut. Rows are ordered by mean normalised rank (best on top), columns by name (natural order).
    """
    _require(records, {"model", "dataset", "score"}, "records")
    rec = records.loc[records["score"].notna(), ["model", "dataset", "score"]]
    if rec.empty:
        raise ValueError("no scored records to plot")
    rec = rec.groupby(["model", "dataset"], as_index=False)["score"].mean()
    rec["u"] = rec.groupby("dataset", group_keys=False)["score"].transform(
        lambda s: normalized_rank(s, higher_is_better))
    grid = rec.pivot(index="model", columns="dataset", values="u")
    n_models_all, n_datasets_all = grid.shape

    stats = pd.DataFrame({"n": grid.notna().sum(axis=1), "u": grid.mean(axis=1)})
    stats["name"] = stats.index.astype(str)
    notes = []
    if max_models is not None and n_models_all > max_models:
        keep = stats.sort_values(["n", "u", "name"], ascending=[False, True, True]).index[:max_models]
        grid = grid.loc[keep]
        notes.append(f"{max_models} of {n_models_all} models with the most records")
    if max_datasets is not None and n_datasets_all > max_datasets:
        dstats = pd.DataFrame({"n": grid.notna().sum(axis=0)})
        dstats["name"] = dstats.index.astype(str)
        keep = dstats.sort_values(["n", "name"], ascending=[False, True]).index[:max_datasets]
        grid = grid[keep]
        notes.append(f"{max_datasets} of {n_datasets_all} datasets with the most records")
    order = pd.DataFrame({"u": grid.mean(axis=1), "name": grid.index.astype(str)}, index=grid.index)
    grid = grid.loc[order.sort_values(["u", "name"], na_position="last").index]
    grid = grid[sorted(grid.columns, key=_natural_key)]

    n_rows, n_cols = grid.shape
    width = min(max(5.0, 2.6 + 0.28 * n_cols + 0.065 * label_width), 30.0)
    height = min(max(3.0, 1.6 + 0.24 * n_rows), 30.0)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["RdYlGn_r"].with_extremes(bad=to_rgba(MISSING_COLOUR))
    values = np.ma.masked_invalid(grid.to_numpy(dtype=float))
    im = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    fontsize = 8 if max(n_rows, n_cols) <= 40 else 6
    ax.set_yticks(np.arange(n_rows), [truncate_label(m, label_width) for m in grid.index],
                  fontsize=fontsize)
    ax.set_xticks(np.arange(n_cols), [truncate_label(d, label_width) for d in grid.columns],
                  fontsize=fontsize, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_xlabel("dataset")
    ax.set_ylabel("model")
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label("normalised rank on the dataset (0 = best)")
    direction = "higher is better" if higher_is_better else "lower is better"
    heading = title or f"Model × dataset ranks ({direction}; grey = no record)"
    if notes:
        heading += "\nshowing " + "; ".join(notes)
    ax.set_title(heading, fontsize=10)
    return _save(fig, path)


# -- Table 3 as bars ------------------------------------------------------------------------------

def plot_method_bars(summary: pd.DataFrame, path, title: str | None = None) -> Path:
    """Bars per method for OSR (%), weighted τ and O2O, plus O2B when the column is present.

    ``summary`` is :func:`hubselect.evaluate.metrics.summarize`'s output (``method`` as a column or as
    the index). The random baseline, if any, is hatched grey.
    """
    table = summary
    if "method" not in table.columns:
        table = table.rename_axis("method").reset_index()
    _require(table, {"method", "osr", "weighted_tau", "o2o"}, "summary")
    if table.empty:
        raise ValueError("summary is empty")
    panels = [("osr", "OSR (%) ↑", 100.0), ("weighted_tau", "Kendall weighted τ ↑", 1.0),
              ("o2o", "O2O ↓", 1.0)]
    if "o2b" in table.columns and table["o2b"].notna().any():
        panels.append(("o2b", "O2B ↓", 1.0))
    methods = [str(m) for m in table["method"]]
    styles = _method_styles(methods)
    fig = Figure(figsize=(3.1 * len(panels) + 0.4 * max(0, len(methods) - 4), 3.8),
                 layout="constrained")
    axes = fig.subplots(1, len(panels))
    x = np.arange(len(methods))
    for ax, (col, label, factor) in zip(np.atleast_1d(axes), panels):
        vals = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float) * factor
        colours = [styles[m]["color"] for m in methods]
        bars = ax.bar(x, np.nan_to_num(vals), color=colours, edgecolor="black", linewidth=0.6)
        for bar, m in zip(bars, methods):
            if m == RANDOM_METHOD:
                bar.set_hatch("//")
                bar.set_facecolor("#bbbbbb")
        for xi, v in zip(x, vals):
            text = "n/a" if np.isnan(v) else (f"{v:.1f}" if factor == 100.0 else f"{v:.2f}")
            ax.annotate(text, (xi, 0 if np.isnan(v) else v), ha="center",
                        va="bottom" if (np.isnan(v) or v >= 0) else "top", fontsize=8,
                        xytext=(0, 2 if (np.isnan(v) or v >= 0) else -2), textcoords="offset points")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(x, [truncate_label(m, 16) for m in methods], rotation=30, ha="right",
                      rotation_mode="anchor", fontsize=9)
        ax.set_title(label, fontsize=10)
        ax.margins(y=0.15)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title or "Model selection, per method")
    return _save(fig, path)
