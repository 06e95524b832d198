"""Distances from a new dataset profile to a zoo's profiles: the product's kernel beside the references, in one run.

    python benchmarks/frechet_bench.py [--n 100] [--dim 512] [--samples 1000] [--naive-pairs 20] [--repeat 3]
                                       [--workers N] [--seed 0]

Builds n + 1 synthetic dataset profiles shaped like real probe statistics: each "dataset" draws ``--samples``
embeddings from a correlated Gaussian whose mixing matrix is a shared backbone with a decaying spectrum (like CLIP
features) plus a dataset-specific part, and a mean offset; its profile is the sample mean and covariance. Then times
the step ``hubselect profile`` and ``hubselect rank`` run, ``frechet_to_many`` of the new profile against the n others
(factoring them included), best of ``--repeat`` runs, with each per-pair kernel:

* ``numpy`` (the product's: ``matmul`` and ``eigvalsh``);
* ``lapack-ctypes`` and ``float32``, the reference kernels of ``tests/frechet_references.py``, swapped in for it;
* ``naive``: ``frechet_distance_naive`` (``scipy.linalg.sqrtm`` of sigma1 @ sigma2) on ``--naive-pairs`` of the n
  pairs, its mean time per pair extrapolated to all n;

with the largest relative difference of each from the product's distances. Run by hand from a clone with the test
extra installed (``pip install -e '.[test]'``); it prints figures, it is not a test.
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

from hubselect.profile import distance as dist  # noqa: E402
from tests.frechet_references import frechet_distance_naive, nuclear_norm_float32, nuclear_norm_lapack  # noqa: E402

KERNELS = {"numpy": dist._nuclear_norm, "lapack-ctypes": nuclear_norm_lapack, "float32": nuclear_norm_float32}


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


def time_kernel(kernel, new: tuple, mus: np.ndarray, sigmas: list, workers: int | None, repeat: int):
    """Best wall time of ``frechet_to_many`` with ``kernel`` as the per-pair kernel, and its distances."""
    saved = dist._nuclear_norm
    dist._nuclear_norm = kernel
    try:
        best, values = float("inf"), None
        for _ in range(repeat):
            t = time.perf_counter()
            values = dist.frechet_to_many(*new, mus, sigmas, workers=workers)
            best = min(best, time.perf_counter() - t)
        return best, values
    finally:
        dist._nuclear_norm = saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="profiles in the zoo (default 100)")
    ap.add_argument("--dim", type=int, default=512, help="embedding dimension (default 512)")
    ap.add_argument("--samples", type=int, default=1000, help="samples per profile (default 1000)")
    ap.add_argument("--naive-pairs", type=int, default=20,
                    help="pairs timed with the naive method, then extrapolated (default 20)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per kernel, the best is kept (default 3)")
    ap.add_argument("--workers", type=int, default=None, help="threads (default: cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.n < 1 or args.dim < 1 or args.samples < 2 or args.naive_pairs < 0 or args.repeat < 1:
        ap.error("need --n >= 1, --dim >= 1, --samples >= 2, --naive-pairs >= 0, --repeat >= 1")

    n, dim = args.n, args.dim
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.processor() or platform.machine()}, {cores} usable cores, numpy {np.__version__}")
    t = time.perf_counter()
    mus, sigmas = make_profiles(n + 1, dim, args.samples, args.seed)
    new, mus, sigmas = (mus[0], sigmas[0]), mus[1:], sigmas[1:]
    print(f"profiles: a new one against n={n}, dim={dim}, {args.samples} samples each "
          f"({'full rank' if args.samples > dim else 'rank-deficient'}), built in {time.perf_counter() - t:.1f} s")
    print()

    dist.frechet_to_many(*new, mus[:2], sigmas[:2], workers=args.workers)     # warm-up: thread pool, threadpoolctl
    results = {name: time_kernel(kernel, new, mus, sigmas, args.workers, args.repeat)
               for name, kernel in KERNELS.items()}
    product = results["numpy"][1]
    k = min(args.naive_pairs, n)
    if k:
        times, values = [], []
        for j in range(k):
            t = time.perf_counter()
            values.append(frechet_distance_naive(*new, mus[j], sigmas[j]))
            times.append(time.perf_counter() - t)
        naive_total = float(np.mean(times)) * n
    print(f"{'kernel':<24}{'frechet_to_many, ' + str(n) + ' pairs':>28}{'speed-up':>10}{'max rel. diff vs numpy':>26}")
    for name, (seconds, got) in results.items():
        diff = float(np.max(np.abs(got - product) / np.abs(product)))
        print(f"{name:<24}{seconds:>26.2f} s{results['numpy'][0] / seconds:>9.2f}x{diff:>26.2e}")
    if k:
        diff = float(np.max(np.abs(np.array(values) - product[:k]) / np.abs(product[:k])))
        print(f"{'naive sqrtm (extrap.)':<24}{naive_total:>26.2f} s{results['numpy'][0] / naive_total:>9.2f}x"
              f"{diff:>26.2e}   ({k} pairs timed, {np.mean(times) * 1e3:.0f} ms/pair)")
    traces = np.array([np.trace(s) for s in sigmas])
    share = product / (np.trace(new[1]) + traces)
    print(f"(d² {product.min():.4g} .. {product.max():.4g}, i.e. {share.min():.3g} .. {share.max():.3g} "
          f"of tr(sigma1) + tr(sigma2))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
