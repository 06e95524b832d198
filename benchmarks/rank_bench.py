"""Time `hubselect rank` on a zoo (default: benchmarks/zoos/transfergraph-text, glue/cola, --holdout).

    python benchmarks/rank_bench.py [--zoo DIR] [--dataset NAME] [--repeat 3]

Prints the wall time of the whole command line (a fresh process: imports, CatBoost), first with an
empty selector cache (the inner leave-one-dataset-out that chooses the prior and the blend runs) and
then with the cached choice (what every later rank on the same zoo state costs), and of the
in-process call once warm, side by side. A measurement run by hand, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubselect.constants import DEFAULT_PREDICTOR  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--zoo", type=Path, default=REPO / "benchmarks" / "zoos" / "transfergraph-text")
    p.add_argument("--dataset", default="glue/cola")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--predictor", default=DEFAULT_PREDICTOR)
    args = p.parse_args()

    env = {**os.environ, "HF_HOME": tempfile.mkdtemp(prefix="hubselect-bench-")}   # an empty selector cache
    command = [sys.executable, "-m", "hubselect.cli", "rank", args.dataset, "--zoo", str(args.zoo), "--holdout",
               "--json", "--predictor", args.predictor]

    def timed() -> float:
        t = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        return time.perf_counter() - t

    cold = timed()
    cli = [timed() for _ in range(args.repeat)]

    from hubselect.rank.api import rank
    rank(args.dataset, zoo=args.zoo, holdout=True, predictor=args.predictor)   # warm-up
    warm = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        ranking = rank(args.dataset, zoo=args.zoo, holdout=True, predictor=args.predictor)
        warm.append(time.perf_counter() - t)
    print(f"zoo {args.zoo} dataset {args.dataset}: {len(ranking.models)} models ranked")
    print(f"command line, empty selector cache: {cold:.2f} s")
    print(f"command line (fresh process): median {statistics.median(cli):.2f} s  (runs: "
          + ", ".join(f"{x:.2f}" for x in cli) + ")")
    print(f"in process, warm:             median {statistics.median(warm):.2f} s  (runs: "
          + ", ".join(f"{x:.2f}" for x in warm) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
