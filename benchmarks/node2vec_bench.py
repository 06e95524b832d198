"""node2vec+ embedding time per new matching graph: pecanpy (reference) against hubselect's fast implementation.

    python benchmarks/node2vec_bench.py [--models 190] [--datasets 10] [--graphs 5] [--dim 32] [--num-walks 10]
                                        [--walk-length 20] [--no-pecanpy]

Graphs look like the project's: ``--models`` models × ``--datasets`` datasets, each model with a result on ~80% of
the datasets (random FIDs), one dataset without any model edge (the paper's step 4), and all dataset–dataset pairs,
built with ``hubselect.rank.graph.matching.build_matching_graph``; every timed call gets a NEW graph object with new
weights.

Cold figures come from fresh subprocesses (the first call of a process, compilation included): the fast
implementation with an empty numba cache (``NUMBA_CACHE_DIR`` pointed at an empty folder: a true compile) and with
the on-disk cache that ``cache=True`` keeps beside the module (what a new process normally sees); pecanpy has no
disk cache. Warm figures: mean ± std over ``--graphs`` new graphs after one warm-up call, split into walk and
skip-gram time. ``fast-gensim`` is the fast walks with gensim's skip-gram; it and pecanpy are the references of
``tests/node2vec_references.py``. Run by hand from a clone with the test extra installed (``pip install -e
'.[test]'``); it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hubselect.rank.graph.matching import build_matching_graph  # noqa: E402


def make_graph(n_models: int, n_datasets: int, seed: int):
    rng = np.random.default_rng(seed)
    models = [f"org/model-{i}" for i in range(n_models)]
    datasets = [f"dataset-{j}" for j in range(n_datasets)]
    rows = [(m, d, rng.uniform(5, 80)) for m in models for d in datasets[:-1] if rng.random() < 0.8]
    recs = pd.DataFrame(rows, columns=["model", "dataset", "score"])
    dist = pd.DataFrame([(a, b, rng.uniform(10, 200)) for i, a in enumerate(datasets) for b in datasets[i + 1:]],
                        columns=["dataset_a", "dataset_b", "distance"])
    return build_matching_graph(recs, dist, higher_is_better=False, models=models, datasets=datasets)


def run_one(impl: str, graph, args) -> dict:
    from hubselect.rank.graph import node2vec as nv
    from tests import node2vec_references as ref

    embed = {"fast": nv.embed, "fast-gensim": ref.embed_gensim, "pecanpy": ref.embed_pecanpy}[impl]
    kw = dict(dim=args.dim, num_walks=args.num_walks, walk_length=args.walk_length, p=1, q=1, extend=True, seed=0)
    timings: dict = {}
    t0 = time.perf_counter()
    embed(graph, timings=timings, **kw)
    return {"total": time.perf_counter() - t0, **timings}


def cold(impl: str, args, empty_cache: bool) -> dict:
    """First call in a fresh process (imports excluded, reported apart)."""
    env = dict(os.environ)
    tmp = None
    if empty_cache:
        tmp = tempfile.TemporaryDirectory()
        env["NUMBA_CACHE_DIR"] = tmp.name
    cmd = [sys.executable, __file__, "--_cold", impl, "--models", str(args.models), "--datasets", str(args.datasets),
           "--dim", str(args.dim), "--num-walks", str(args.num_walks), "--walk-length", str(args.walk_length)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=600)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_cold(impl: str, args) -> None:
    t0 = time.perf_counter()
    from tests import node2vec_references as ref
    if impl == "pecanpy":
        ref.import_pecanpy()
    if impl != "fast":
        import gensim.models  # noqa: F401  (the references' skip-gram; keep its import out of the call)
    t_import = time.perf_counter() - t0
    res = run_one(impl, make_graph(args.models, args.datasets, seed=999), args)
    print(json.dumps({**res, "import": t_import}))


def warm(impl: str, args) -> list[dict]:
    run_one(impl, make_graph(args.models, args.datasets, seed=1000), args)  # warm-up
    return [run_one(impl, make_graph(args.models, args.datasets, seed=s), args) for s in range(args.graphs)]


def fmt(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:8.3f}"
    return f"{statistics.mean(xs):8.3f} ± {statistics.stdev(xs):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=190)
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--graphs", type=int, default=5, help="new graphs timed warm, per implementation")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--num-walks", type=int, default=10)
    ap.add_argument("--walk-length", type=int, default=20)
    ap.add_argument("--no-pecanpy", action="store_true")
    ap.add_argument("--_cold", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._cold:
        child_cold(args._cold, args)
        return

    import numba
    g = make_graph(args.models, args.datasets, seed=0)
    t0 = time.perf_counter()
    for s in range(5):
        make_graph(args.models, args.datasets, seed=s)
    t_build = (time.perf_counter() - t0) / 5
    print(f"graph: {g.number_of_nodes()} nodes ({args.models} models + {args.datasets} datasets), "
          f"{g.number_of_edges()} edges; dim={args.dim}, num_walks={args.num_walks}, walk_length={args.walk_length}, "
          f"extend=True, p=q=1")
    print(f"machine: {os.cpu_count()} CPUs, numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads), "
          f"numpy {np.__version__}; build_matching_graph: {t_build * 1000:.1f} ms per graph")
    print()

    impls = ["fast", "fast-gensim"] + ([] if args.no_pecanpy else ["pecanpy"])
    rows = []
    cold_rows = [("fast", "cold, empty numba cache", cold("fast", args, empty_cache=True)),
                 ("fast", "cold, on-disk numba cache", cold("fast", args, empty_cache=False))]
    if not args.no_pecanpy:
        cold_rows.append(("pecanpy", "cold", cold("pecanpy", args, empty_cache=False)))
    for impl, what, r in cold_rows:
        rows.append((impl, what, [r["total"]], [r["walks"]], [r["skipgram"]], f"imports {r['import']:.2f} s"))
    warm_means = {}
    for impl in impls:
        rs = warm(impl, args)
        warm_means[impl] = statistics.mean(r["total"] for r in rs)
        rows.append((impl, f"warm, mean of {len(rs)} new graphs", [r["total"] for r in rs], [r["walks"] for r in rs],
                     [r["skipgram"] for r in rs], ""))

    print(f"| {'implementation':<14} | {'call':<30} | {'total s':>16} | {'walks s':>16} | {'skip-gram s':>16} | note |")
    print(f"|{'-' * 16}|{'-' * 32}|{'-' * 18}|{'-' * 18}|{'-' * 18}|------|")
    for impl, what, tot, wk, sg, note in rows:
        print(f"| {impl:<14} | {what:<30} | {fmt(tot):>16} | {fmt(wk):>16} | {fmt(sg):>16} | {note} |")
    print()
    if "pecanpy" in warm_means:
        pec_cold = next(r for i, w, r in cold_rows if i == "pecanpy")["total"]
        fast_cold = next(r for i, w, r in cold_rows if w == "cold, on-disk numba cache")["total"]
        print(f"warm ratio pecanpy / fast: {warm_means['pecanpy'] / warm_means['fast']:.0f}x "
              f"({warm_means['pecanpy']:.2f} s vs {warm_means['fast'] * 1000:.0f} ms per new graph); "
              f"pecanpy / fast-gensim: {warm_means['pecanpy'] / warm_means['fast-gensim']:.0f}x")
        print(f"cold ratio pecanpy / fast (on-disk cache): {pec_cold / fast_cold:.0f}x")


if __name__ == "__main__":
    main()
