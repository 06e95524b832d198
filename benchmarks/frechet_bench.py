"""Pairwise Fréchet distances: the factored fast path beside the classic sqrtm recipe, in one run.

    python benchmarks/frechet_bench.py [--n 100] [--dim 512] [--samples 1000] [--naive-pairs 50]
                                       [--precision both|float64|float32] [--workers N] [--seed 0]

Builds n synthetic dataset profiles shaped like real probe statistics: each "dataset" draws
``--samples`` embeddings from a correlated Gaussian whose mixing matrix is a shared backbone with a
decaying spectrum (like CLIP features) plus a dataset-specific part, and a mean offset; its profile
is the sample mean and covariance. Then:

* fast path: ``FrechetProfiles(...).pairwise()``, the whole n × n matrix (factoring included);
* naive: ``frechet_distance_naive`` (``scipy.linalg.sqrtm`` of sigma1 @ sigma2) on a random subset
  of ``--naive-pairs`` pairs, its mean time per pair extrapolated to all n(n-1)/2 pairs (the
  full naive matrix would take far too long), and the largest relative difference from the fast
  path on those pairs.

Run by hand; it prints figures, it is not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubselect.profile.distance import FrechetProfiles, frechet_distance_naive  # noqa: E402


def make_profiles(n: int, dim: int, samples: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    spectrum = (1.0 + np.arange(dim)) ** -0.8                     # decaying, like embedding features
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    backbone = q * spectrum                                      # shared structure of all datasets
    m0 = rng.standard_normal(dim) * 0.1
    mus, sigmas = [], []
    for _ in range(n):
        own = rng.uniform(0.3, 1.0) * rng.standard_normal((dim, dim)) * spectrum / np.sqrt(dim) * 3
        mixing = backbone + own
        mu = m0 + rng.standard_normal(dim) * spectrum * rng.uniform(0.1, 1.0)
        x = rng.standard_normal((samples, dim)) @ mixing.T + mu
        mus.append(x.mean(axis=0))
        sigmas.append(np.cov(x, rowvar=False))
    return np.stack(mus), sigmas


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="number of profiles (default 100)")
    ap.add_argument("--dim", type=int, default=512, help="embedding dimension (default 512)")
    ap.add_argument("--samples", type=int, default=1000, help="samples per profile (default 1000)")
    ap.add_argument("--naive-pairs", type=int, default=50,
                    help="random pairs timed with the naive method, then extrapolated (default 50)")
    ap.add_argument("--precision", choices=["both", "float64", "float32"], default="both")
    ap.add_argument("--workers", type=int, default=None, help="threads for the fast path (default: cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.n < 2 or args.dim < 1 or args.samples < 2 or args.naive_pairs < 0:
        ap.error("need --n >= 2, --dim >= 1, --samples >= 2, --naive-pairs >= 0")

    n, dim = args.n, args.dim
    total_pairs = n * (n - 1) // 2
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.processor() or platform.machine()}, {cores} usable cores, numpy {np.__version__}")
    t = time.perf_counter()
    mus, sigmas = make_profiles(n, dim, args.samples, args.seed)
    print(f"profiles: n={n}, dim={dim}, {args.samples} samples each "
          f"({'full rank' if args.samples > dim else 'rank-deficient'}), built in {time.perf_counter() - t:.1f} s")
    print(f"pairs: {total_pairs}")
    print()

    precisions = ["float64", "float32"] if args.precision == "both" else [args.precision]
    fast: dict[str, tuple[float, float, np.ndarray]] = {}
    for prec in precisions:
        c0, t0 = time.process_time(), time.perf_counter()
        profiles = FrechetProfiles(mus, sigmas, precision=prec, workers=args.workers)
        t1 = time.perf_counter()
        matrix = profiles.pairwise()
        t2, c2 = time.perf_counter(), time.process_time()
        fast[prec] = (t2 - t0, t1 - t0, matrix)
        print(f"fast path ({prec}, {profiles.workers} threads): {t2 - t0:.2f} s for the full {n}x{n} matrix "
              f"(factoring {t1 - t0:.2f} s, pairs {t2 - t1:.2f} s = {(t2 - t1) / total_pairs * 1e3:.2f} ms/pair; "
              f"CPU time {c2 - c0:.1f} s)")

    rng = np.random.default_rng(args.seed + 1)
    iu, ju = np.triu_indices(n, k=1)
    k = min(args.naive_pairs, total_pairs)
    pick = rng.choice(total_pairs, size=k, replace=False)
    naive_vals, naive_times, naive_cpu = [], [], []
    for p in pick:
        i, j = int(iu[p]), int(ju[p])
        t, c = time.perf_counter(), time.process_time()
        naive_vals.append(frechet_distance_naive(mus[i], sigmas[i], mus[j], sigmas[j]))
        naive_times.append(time.perf_counter() - t)
        naive_cpu.append(time.process_time() - c)
    print()
    if k:
        per_pair = float(np.mean(naive_times))
        naive_total = per_pair * total_pairs
        print(f"naive sqrtm: timed on {k} random pairs, {per_pair * 1e3:.1f} ms/pair; "
              f"EXTRAPOLATED to all {total_pairs} pairs: {naive_total:.0f} s ({naive_total / 60:.1f} min; "
              f"CPU time {float(np.mean(naive_cpu)) * total_pairs:.0f} s)")
        naive_arr = np.array(naive_vals)
        print()
        print(f"{'method':<22}{'full matrix time':>20}{'speed-up vs naive':>20}{'max rel. diff vs naive':>26}")
        print(f"{'naive sqrtm (extrap.)':<22}{naive_total:>18.1f} s{'1.0x':>20}{'-':>26}")
        for prec, (total, _, matrix) in fast.items():
            fast_vals = matrix[iu[pick], ju[pick]]
            rel = float(np.max(np.abs(fast_vals - naive_arr) / np.abs(naive_arr)))
            print(f"{'fast ' + prec:<22}{total:>18.2f} s{naive_total / total:>19.1f}x{rel:>26.2e}")
        traces = np.array([np.trace(s) for s in sigmas])
        share = naive_arr / (traces[iu[pick]] + traces[ju[pick]])
        print(f"(naive d² on those pairs: {naive_arr.min():.4g} .. {naive_arr.max():.4g}, "
              f"i.e. {share.min():.3g} .. {share.max():.3g} of tr(sigma1) + tr(sigma2))")
    if "float64" in fast and "float32" in fast:
        a, b = fast["float64"][2][iu, ju], fast["float32"][2][iu, ju]
        r = np.abs(a - b) / np.abs(a)
        print(f"float32 vs float64 fast path over all {total_pairs} pairs: max rel. diff {r.max():.2e}, "
              f"median {np.median(r):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
