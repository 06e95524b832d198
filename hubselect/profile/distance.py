"""Fréchet distance between Gaussian dataset profiles (the distance behind FID).

A dataset profile is the mean ``mu`` (shape ``(d,)``) and covariance ``sigma`` (shape ``(d, d)``) of
its probe embeddings. The Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and
N(mu2, sigma2) satisfies (Dowson & Landau 1982; Heusel et al. 2017, "GANs trained by a two
time-scale update rule converge to a local Nash equilibrium", which named it FID)::

    d² = |mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})

**This project stores the squared value d²** (as FID does): every function here returns d², never
its square root, and that is what the zoo's ``dataset_distances.distance`` column holds.

How it is computed
------------------
Each covariance is factored once, sigma = F Fᵀ, by LAPACK's pivoted Cholesky (``dpstrf``), which
stops at the first pivot below round-off (``d * eps * max diag``), so a covariance of n < d samples
gets a d × (n-1) factor, and a full-rank one a d × d factor. It costs about d r² / 3 flops (0.1 s
for d = 1280, r = 999 on one core, where an eigendecomposition takes 1-2 s). Where sigma - F Fᵀ is
not within round-off (an indefinite matrix, negative round-off eigenvalues above the tolerance), a
symmetric eigendecomposition decides instead: eigenvalues below ``d * eps * lambda_max`` (the
``numpy.linalg.matrix_rank`` tolerance) are dropped and negative ones never survive. The
eigenvalues of sigma1 sigma2 are those of (F2ᵀ F1)ᵀ (F2ᵀ F1), so

    tr((sigma1 sigma2)^{1/2}) = ||F2ᵀ F1||_*  (nuclear norm) = sum sqrt(eig(G)),  G = WᵀW, W = F2ᵀ F1,

with G the smaller of the two Gram matrices of W. Per pair that is two matrix products and one
symmetric eigenvalue problem (values only), instead of the Schur decomposition of a non-symmetric
d × d product that ``scipy.linalg.sqrtm`` needs. No complex numbers appear, the square roots are
taken of clipped (>= 0) eigenvalues, and the nuclear norm is capped by its Cauchy-Schwarz bound
``sqrt(tr1 tr2)``, so the result is finite and >= 0 by construction (and clipped at 0 on top of
that). In float64 it agrees with the classic sqrtm recipe to ~1e-9 relative or better on
well-conditioned profiles.

:func:`frechet_to_many` (a new profile against the zoo's, the step of ``profile`` and ``rank``)
runs the pairs on a thread pool, one single-threaded BLAS/LAPACK call chain per pair (numpy's
``matmul`` and ``eigvalsh`` release the GIL; measured faster on a 2-core CPU than multithreaded
BLAS on one pair at a time, whose eigensolver hardly parallelises).

The classic sqrtm recipe, a float32 kernel and a kernel that calls LAPACK through ctypes are kept
in ``tests/frechet_references.py``, where the tests check this module against them and
``benchmarks/frechet_bench.py`` times them: on the zoo's tens of profiles neither kernel gains
enough to be worth its cost in the product (float32 loses accuracy for close profiles).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy.linalg import lapack

__all__ = ["frechet_distance", "frechet_to_many"]

# A matrix whose most negative eigenvalue is below -NEG_EIG_RTOL * max|eigenvalue| is not a
# covariance (round-off, even of a float32 estimate in thousands of dimensions, stays well below);
# smaller negative eigenvalues are round-off and are clipped to 0.
NEG_EIG_RTOL = 1e-3
# Relative asymmetry tolerated (and removed by symmetrising) in a covariance.
ASYM_RTOL = 1e-5


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------

def _as_real_array(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
                                 or a.dtype == np.bool_):
        raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _check_mu(mu: Any, name: str) -> np.ndarray:
    m = _as_real_array(mu, name)
    if m.ndim != 1:
        raise ValueError(f"{name} must be a 1-D mean vector, got shape {m.shape}")
    if m.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return m


def _check_sigma(sigma: Any, name: str, dim: int) -> np.ndarray:
    s = _as_real_array(sigma, name)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"{name} must be a square 2-D covariance matrix, got shape {s.shape}")
    if s.shape[0] != dim:
        raise ValueError(f"{name} is {s.shape[0]}x{s.shape[1]} but its mean has dimension {dim}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    scale = float(np.abs(s).max())
    if scale > 0 and float(np.abs(s - s.T).max()) > ASYM_RTOL * scale:
        raise ValueError(f"{name} is not symmetric (max |S - Sᵀ| = {float(np.abs(s - s.T).max()):.3g}, "
                         f"max |S| = {scale:.3g})")
    return s


def _check_profile(mu: Any, sigma: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    m = _check_mu(mu, f"mu{name}")
    s = _check_sigma(sigma, f"sigma{name}", m.shape[0])
    return m, s


# ------------------------------------------------------------------------------------------------
# Factoring a covariance once: sigma = F Fᵀ
# ------------------------------------------------------------------------------------------------

class _Factor:
    """F (shape (d, r)), its rank r and its trace ||F||_F² = tr(sigma), in float64."""

    __slots__ = ("f", "trace", "rank")

    def __init__(self, f: np.ndarray, trace: float):
        self.f = f
        self.trace = trace
        self.rank = f.shape[1]


#: A pivoted Cholesky factor is kept when every entry of sigma - F Fᵀ is within this many times its
#: stopping tolerance (d * eps * max diag); otherwise the eigendecomposition decides.
CHOLESKY_RESIDUAL = 64.0


def _factor(sigma: np.ndarray, name: str = "sigma") -> _Factor:
    s = 0.5 * (sigma + sigma.T)
    f = _factor_cholesky(s)
    return f if f is not None else _factor_eigh(s, name)


def _factor_cholesky(s: np.ndarray) -> _Factor | None:
    """sigma = F Fᵀ by LAPACK's pivoted Cholesky (``dpstrf``: about d r² / 3 flops, where a symmetric
    eigendecomposition costs about 9 d³), or None when sigma is not clearly positive semidefinite.

    ``dpstrf`` stops at the first pivot below ``d * eps * max(diag)`` (the rank r), so a covariance of
    n < d samples gets a d x (n - 1) factor, as from the eigendecomposition. The factor is only kept
    if sigma - F Fᵀ is within :data:`CHOLESKY_RESIDUAL` times that tolerance: an indefinite matrix,
    or one whose negative round-off eigenvalues are above it, goes to :func:`_factor_eigh`, which
    clips them (or refuses the matrix).
    """
    d = s.shape[0]
    diag = np.diag(s)
    top = float(diag.max()) if d else 0.0
    if not top > 0.0 or float(diag.min()) < 0.0:
        return None
    tol = d * np.finfo(np.float64).eps * top
    c, piv, rank, info = lapack.dpstrf(s, lower=1, tol=tol)
    if info < 0 or rank < 1:
        return None
    f = np.zeros((d, rank))
    f[piv - 1] = np.tril(c[:, :rank])
    if float(np.abs(s - f @ f.T).max()) > CHOLESKY_RESIDUAL * tol:
        return None
    return _Factor(f, float(np.einsum("ij,ij->", f, f)))


def _factor_eigh(s: np.ndarray, name: str = "sigma") -> _Factor:
    d = s.shape[0]
    w, u = np.linalg.eigh(s)
    wmax_abs = float(np.abs(w).max()) if w.size else 0.0
    if w[0] < -NEG_EIG_RTOL * wmax_abs:
        raise ValueError(f"{name} is not positive semidefinite (eigenvalue {w[0]:.3g}, largest "
                         f"|eigenvalue| {wmax_abs:.3g}); it cannot be a covariance")
    tol = max(float(w[-1]), 0.0) * d * np.finfo(np.float64).eps
    keep = w > tol
    wk = w[keep]
    return _Factor(u[:, keep] * np.sqrt(wk), float(wk.sum()))     # F Fᵀ = the PSD part of sigma


# ------------------------------------------------------------------------------------------------
# Per pair: tr((S1 S2)^{1/2}) = ||F2ᵀ F1||_*
# ------------------------------------------------------------------------------------------------

def _sum_sqrt(eig: np.ndarray) -> float:
    e = eig.astype(np.float64)
    np.maximum(e, 0.0, out=e)
    return float(np.sqrt(e).sum())


def _nuclear_norm(a: _Factor, b: _Factor) -> float:
    """||F_bᵀ F_a||_*: the square roots of the eigenvalues of its smaller Gram matrix, summed."""
    if a.rank == 0 or b.rank == 0:
        return 0.0
    w = b.f.T @ a.f                                            # (r_b × r_a)
    g = w.T @ w if a.rank <= b.rank else w @ w.T
    return _sum_sqrt(np.linalg.eigvalsh(g))


def _trace_sqrt(a: _Factor, b: _Factor) -> float:
    # ||F_bᵀ F_a||_* <= ||F_a||_F ||F_b||_F (Cauchy-Schwarz): keeps d² >= |Δmu|² + (√tr_a - √tr_b)²
    return min(_nuclear_norm(a, b), math.sqrt(a.trace * b.trace))


def _combine(diff: np.ndarray, a: _Factor, b: _Factor) -> float:
    return max(float(diff @ diff) + a.trace + b.trace - 2.0 * _trace_sqrt(a, b), 0.0)


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------

def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Squared Fréchet distance d² between N(mu1, sigma1) and N(mu2, sigma2) (FID's formula).

    Robust to rank-deficient / near-singular covariances and round-off (never NaN, never < 0),
    symmetric, 0.0 for identical profiles. Raises ``ValueError`` on mismatched dimensions, a
    non-square / non-symmetric / clearly indefinite covariance, or non-finite values.
    """
    m1, s1 = _check_profile(mu1, sigma1, "1")
    m2, s2 = _check_profile(mu2, sigma2, "2")
    if m1.shape != m2.shape:
        raise ValueError(f"profiles have different dimensions: mu1 has {m1.shape[0]}, mu2 has {m2.shape[0]}")
    if np.array_equal(m1, m2) and np.array_equal(s1, s2):
        return 0.0
    return _combine(m1 - m2, _factor(s1, "sigma1"), _factor(s2, "sigma2"))


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def frechet_to_many(mu: Any, sigma: Any, mus: Any, sigmas: Sequence[Any] | np.ndarray, *,
                    workers: int | None = None) -> np.ndarray:
    """Squared Fréchet distances from the profile (mu, sigma) to each of n profiles, shape (n,).

    ``mus``: (n, d); ``sigmas``: (n, d, d) or n arrays (d, d). Shapes and values are checked before
    any work. ``workers``: threads, one pair each at a time (default: the usable CPU cores); while they
    run, the process's BLAS pools are limited to one thread (threadpoolctl).
    """
    m = _as_real_array(mus, "mus")
    if m.ndim != 2:
        raise ValueError(f"mus must be an (n, d) array of mean vectors, got shape {m.shape}")
    if len(sigmas) != m.shape[0]:
        raise ValueError(f"got {m.shape[0]} means but {len(sigmas)} covariances")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    dim = int(m.shape[1])
    zoo = [(_check_mu(m[i], f"mus[{i}]"), _check_sigma(sigmas[i], f"sigmas[{i}]", dim)) for i in range(m.shape[0])]
    new_mu = _check_mu(mu, "mu")
    if new_mu.shape[0] != dim:
        raise ValueError(f"mu has dimension {new_mu.shape[0]} but the profiles have dimension {dim}")
    new = _factor(_check_sigma(sigma, "sigma", dim), "sigma")

    def distance(k: int) -> float:
        other_mu, other_sigma = zoo[k]
        return _combine(new_mu - other_mu, new, _factor(other_sigma, f"sigmas[{k}]"))

    workers = min(workers or _default_workers(), len(zoo))
    if workers <= 1:
        return np.array([distance(k) for k in range(len(zoo))], dtype=np.float64)
    from threadpoolctl import threadpool_limits

    # One BLAS thread per pair: a BLAS that runs multithreaded inside each worker thread oversubscribes
    # the cores badly. (numpy's and SciPy's BLAS libraries are both loaded by now: threadpoolctl only
    # limits libraries already loaded.)
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=workers) as pool:
        return np.array(list(pool.map(distance, range(len(zoo)))), dtype=np.float64)
