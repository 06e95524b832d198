"""Leave-one-dataset-out weighted τ of M&C variants on several zoos (README, "Choosing the defaults").

    python benchmarks/compare_variants.py [--image-zoo DIR] [--variants a,b]

Zoos: transfergraph-text (benchmarks/zoos), two synthetic zoos with planted
affinity (10 models x 32 datasets, noise 0.3, FID-like; 30 models x 20 datasets in 3 kinds, 30 %
of records missing), and optionally an image zoo (e.g. the one tests/test_rank_images.py builds).
Prints OSR, weighted τ, O2B, O2O and seconds per variant. A measurement run by hand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubselect.evaluate import metrics  # noqa: E402
from hubselect.evaluate.protocol import NODE2VEC_PRESET, PAPER_PRESET, leave_one_dataset_out  # noqa: E402
from hubselect.rank.estimator import MatchAndChoose  # noqa: E402
from hubselect.zoo.tables import ZooTables  # noqa: E402
from hubselect.evaluate.synthetic import make_synthetic_zoo  # noqa: E402
from hubselect.zoo.format import Zoo  # noqa: E402

VARIANTS = {
    "paper": PAPER_PRESET,
    "node2vec-proximity": dict(use_graph=True, rank_features=False, predictor="catboost"),
    "mc-node2vec": NODE2VEC_PRESET,
    "mc": {},
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--image-zoo", type=Path, default=None)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    zoos = {}
    tg = REPO / "benchmarks" / "zoos" / "transfergraph-text"
    if tg.is_dir():
        zoos["transfergraph"] = tg
    tmp = Path(tempfile.mkdtemp())
    for name, kw in {"synthetic 1": dict(n_models=10, n_datasets=32, noise_sd=0.3, seed=11, higher_is_better=False),
                     "synthetic 2": dict(n_models=30, n_datasets=20, n_kinds=3, noise_sd=0.2, density=0.7,
                                         seed=12)}.items():
        make_synthetic_zoo(**kw).write(tmp / name)
        zoos[name] = tmp / name
    if args.image_zoo:
        zoos["images"] = args.image_zoo
    for zname, path in zoos.items():
        tables = ZooTables.load(Zoo.open(path))
        out = metrics.summarize(leave_one_dataset_out(tables, {}, baselines=True))
        for v in args.variants.split(","):
            t = time.perf_counter()
            per = leave_one_dataset_out(tables, {v: MatchAndChoose(**VARIANTS[v])}, baselines=False)
            s = metrics.summarize(per)
            s["seconds"] = time.perf_counter() - t
            out = pd.concat([out, s])
        print(f"\n{zname}")
        print(out.round(3).to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
