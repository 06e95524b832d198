"""M&C and its baselines on the TransferGraph text zoo, beside TransferGraph's published weighted τ.

    python benchmarks/evaluate_transfergraph.py [--zoo benchmarks/zoos/transfergraph-text] [--methods mc,mc-paper]

Runs the leave-one-dataset-out protocol (`hubselect evaluate`'s main table), then prints, for the
eight target datasets TransferGraph reports, our weighted τ next to theirs
(src/published_w-kendall.csv). Our τ is printed under two conventions: weighted by the true ranking
(hubselect's default) and scipy's default (`rank=True`, averaging the true- and predicted-rank
weightings), which is presumably what TransferGraph's code used. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubselect.evaluate import metrics  # noqa: E402
from hubselect.evaluate.protocol import leave_one_dataset_out, main_methods, markdown_table  # noqa: E402
from hubselect.zoo.tables import ZooTables  # noqa: E402
from hubselect.zoo.format import Zoo  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--zoo", type=Path, default=REPO / "benchmarks" / "zoos" / "transfergraph-text",
                   help="the transfergraph-text zoo, with TransferGraph's published_w-kendall.csv beside its tables")
    p.add_argument("--methods", default="mc,mc-paper")
    args = p.parse_args()
    tables = ZooTables.load(Zoo.open(args.zoo))
    methods = {k: v for k, v in main_methods().items() if k in args.methods.split(",")}
    t = time.perf_counter()
    per = leave_one_dataset_out(tables, methods)
    seconds = time.perf_counter() - t
    print(markdown_table(metrics.summarize(per), f"transfergraph-text, leave-one-dataset-out ({seconds:.1f} s)"))

    published = pd.read_csv(args.zoo / "published_w-kendall.csv", index_col=0)
    targets = [c for c in published.columns if c != "average"]
    hib = tables.higher_is_better
    rows = {}
    for method in list(methods) + ["overall", "direct"]:
        for convention in ("true", "average"):
            vals = {}
            for d in targets:
                true = tables.records[tables.records.dataset == d].groupby("model")["score"].mean()
                row = per[(per.dataset == d) & (per.method == method)]
                if row.empty:
                    continue
                order = _order_of(tables, per, method, d)
                vals[d] = metrics.weighted_tau(true, order, hib, rank_by=convention)
            rows[f"{method} (τ by {convention})"] = vals
    ours = pd.DataFrame(rows).T[targets]
    ours["average"] = ours.mean(axis=1)
    best = published.loc[[published["average"].idxmax()]]
    best.index = [f"TransferGraph best: {best.index[0]}"]
    table = pd.concat([ours, best[targets + ["average"]]])
    print()
    print(table.round(3).to_string())
    return 0


_ORDERS: dict = {}


def _order_of(tables, per, method, dataset):
    """Re-rank one held-out dataset with one method to get its full order (cached)."""
    from hubselect.evaluate.protocol import direct_order, overall_order
    key = (method, dataset)
    if key not in _ORDERS:
        models = list(tables.models["model"])
        train = tables.records[tables.records.dataset != dataset]
        if method == "overall":
            _ORDERS[key] = overall_order(train, models, tables.higher_is_better)
        elif method == "direct":
            _ORDERS[key] = direct_order(tables, train, dataset, models, tables.higher_is_better, 0)
        else:
            pred = main_methods()[method].fit(tables.without(dataset)).predict(dataset)
            _ORDERS[key] = list(pred.sort_values(["score", "model"])["model"])
    return _ORDERS[key]


if __name__ == "__main__":
    raise SystemExit(main())
