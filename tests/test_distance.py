"""Fréchet distance between Gaussian profiles (hubselect.profile.distance), against the references of
tests/frechet_references.py: the sqrtm recipe, and the float32 and LAPACK-via-ctypes kernels run in its place."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hubselect.profile import distance as dist
from hubselect.profile.distance import frechet_distance, frechet_to_many
from tests.frechet_references import (
    frechet_distance_naive,
    lapack_functions,
    nuclear_norm_float32,
    nuclear_norm_lapack,
)

KERNELS = {"lapack": nuclear_norm_lapack, "float32": nuclear_norm_float32}


@pytest.fixture(params=["lapack", "numpy"])
def backend(request, monkeypatch):
    """Run a test through the product's numpy kernel and through the LAPACK-via-ctypes reference kernel."""
    if request.param in KERNELS:
        monkeypatch.setattr(dist, "_nuclear_norm", KERNELS[request.param])
    return request.param


def pairwise(mus, sigmas, workers=None):
    """The (n, n) matrix of d², one frechet_to_many row per profile, zero diagonal."""
    m = np.array([frechet_to_many(mus[i], sigmas[i], mus, sigmas, workers=workers) for i in range(len(mus))])
    np.fill_diagonal(m, 0.0)
    return m


def profile(rng, dim, samples, *, scale=1.0):
    """Mean and covariance of `samples` correlated Gaussian draws in `dim` dimensions."""
    mixing = rng.standard_normal((dim, dim)) / math.sqrt(dim) + np.eye(dim)
    x = rng.standard_normal((samples, dim)) @ mixing.T * scale + rng.standard_normal(dim)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def spd(rng, dim, eigenvalues):
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (q * np.asarray(eigenvalues, dtype=float)) @ q.T, q


def rel(a, b):
    return abs(a - b) / abs(b)


# ------------------------------------------------------------------------------------------------
# Agreement with the sqrtm reference
# ------------------------------------------------------------------------------------------------

def test_reference_lapack_kernel_is_available():
    # The benchmark compares the product's numpy kernel with it; make sure SciPy's capsules are found here.
    assert lapack_functions() is not None


@pytest.mark.parametrize("dim,samples", [(2, 50), (8, 200), (32, 500), (64, 400)])
def test_agrees_with_naive_on_well_conditioned_profiles(backend, dim, samples):
    rng = np.random.default_rng(dim)
    for _ in range(3):
        a, b = profile(rng, dim, samples), profile(rng, dim, samples, scale=1.5)
        ref = frechet_distance_naive(*a, *b)
        assert ref > 0
        assert rel(frechet_distance(*a, *b), ref) < 1e-9


def test_float32_precision_stays_close(monkeypatch):
    rng = np.random.default_rng(7)
    a, b = profile(rng, 48, 400), profile(rng, 48, 400, scale=2.0)
    ref = frechet_distance_naive(*a, *b)
    float64 = frechet_distance(*a, *b)
    monkeypatch.setattr(dist, "_nuclear_norm", nuclear_norm_float32)
    got = frechet_distance(*a, *b)
    assert rel(got, ref) < 1e-4
    assert got != float64     # it really ran in float32


# ------------------------------------------------------------------------------------------------
# Closed forms
# ------------------------------------------------------------------------------------------------

def test_diagonal_covariances_closed_form(backend):
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 3.0, 20), rng.uniform(0.1, 3.0, 20)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    # tr((AB)^½) = Σ sqrt(a_i b_i)  =>  d² = |Δμ|² + Σ (√a_i - √b_i)²
    expected = float(np.sum((mu1 - mu2) ** 2) + np.sum(a) + np.sum(b) - 2 * np.sum(np.sqrt(a * b)))
    assert rel(frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), expected) < 1e-12


def test_commuting_covariances_closed_form(backend):
    # Same eigenvectors, different eigenvalues: d² = |Δμ|² + Σ (√a_i - √b_i)², in a rotated basis.
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.01, 5.0, 30), rng.uniform(0.01, 5.0, 30)
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    mu = rng.standard_normal(30)
    expected = float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert rel(frechet_distance(mu, s1, mu, s2), expected) < 1e-9


def test_identical_profiles_give_zero(backend):
    rng = np.random.default_rng(3)
    mu, s = profile(rng, 40, 300)
    assert frechet_distance(mu, s, mu, s) == 0.0
    assert frechet_distance(mu, s, mu.copy(), s.copy()) == 0.0
    # The same covariance built another way (round-off differences): zero up to round-off.
    s_again = np.linalg.multi_dot([np.eye(40), s, np.eye(40)]) * (1 + 1e-15)
    s_again = (s_again + s_again.T) / 2
    assert not np.array_equal(s_again, s)
    d2 = frechet_distance(mu, s, mu, s_again)
    assert 0.0 <= d2 < 1e-9 * np.trace(s)


def test_pure_mean_shift(backend):
    rng = np.random.default_rng(4)
    mu, s = profile(rng, 24, 200)
    shift = rng.standard_normal(24) * 3
    expected = float(shift @ shift)
    assert rel(frechet_distance(mu, s, mu + shift, s), expected) < 1e-9
    assert rel(frechet_distance(mu, s, mu + shift, s.copy()), expected) < 1e-9


def test_zero_covariance(backend):
    rng = np.random.default_rng(5)
    mu1, s1 = profile(rng, 10, 100)
    mu2 = rng.standard_normal(10)
    # tr((0 · Σ)^½) = 0: d² = |Δμ|² + tr Σ
    expected = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1))
    assert rel(frechet_distance(mu1, s1, mu2, np.zeros((10, 10))), expected) < 1e-12
    assert frechet_distance(mu2, np.zeros((10, 10)), mu2, np.zeros((10, 10))) == 0.0


def test_is_a_metric_after_square_root(backend):
    # √d² is the 2-Wasserstein distance: symmetric, and it satisfies the triangle inequality.
    rng = np.random.default_rng(6)
    ps = [profile(rng, 12, 60 + 40 * k, scale=1 + k / 3) for k in range(5)]
    d = np.sqrt(pairwise(np.stack([p[0] for p in ps]), [p[1] for p in ps]))
    for i in range(5):
        for j in range(5):
            for k in range(5):
                assert d[i, j] <= d[i, k] + d[k, j] + 1e-9


# ------------------------------------------------------------------------------------------------
# Rank-deficient and near-singular covariances
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("samples1,samples2", [(10, 15), (10, 200), (25, 25)])
def test_rank_deficient_covariances(backend, samples1, samples2):
    rng = np.random.default_rng(samples1 * 1000 + samples2)
    dim = 40
    a, b = profile(rng, dim, samples1), profile(rng, dim, samples2)
    assert np.linalg.matrix_rank(a[1]) < dim
    got = frechet_distance(*a, *b)
    assert math.isfinite(got) and got > 0
    assert rel(got, frechet_distance_naive(*a, *b)) < 1e-3
    assert [dist._factor(a[1]).rank, dist._factor(b[1]).rank] == [min(samples1 - 1, dim), min(samples2 - 1, dim)]


def test_rank_deficient_same_data_is_zero_up_to_round_off(backend):
    rng = np.random.default_rng(8)
    mu, s = profile(rng, 50, 12)
    s2 = (s * 3.0) / 3.0        # a rounding-level copy
    d2 = frechet_distance(mu, s, mu, s2)
    assert 0.0 <= d2 < 1e-8 * np.trace(s)


def test_tiny_negative_eigenvalues_and_spurious_asymmetry(backend):
    rng = np.random.default_rng(9)
    dim = 30
    w = np.geomspace(1.0, 1e-3, dim)
    w[-5:] = [-1e-9, -5e-10, 0.0, 1e-15, -1e-11]         # round-off around a rank-25 covariance
    s1, q = spd(rng, dim, w)
    s2, _ = spd(rng, dim, np.geomspace(2.0, 1e-2, dim))
    mu = np.zeros(dim)
    got = frechet_distance(mu, s1, mu, s2)
    assert math.isfinite(got) and got >= 0
    # Negative eigenvalues are clipped to 0 (taking |λ| instead would be off by ~4e-6 here).
    s1_psd = (q * np.clip(w, 0, None)) @ q.T
    s1_psd = (s1_psd + s1_psd.T) / 2
    assert rel(got, frechet_distance(mu, s1_psd, mu, s2)) < 1e-9
    assert rel(got, frechet_distance_naive(mu, s1_psd, mu, s2)) < 1e-6
    s1_asym = s1.copy()
    s1_asym[0, 1] += 1e-12                                # asymmetric by round-off: symmetrised
    assert rel(frechet_distance(mu, s1_asym, mu, s2), got) < 1e-9


def test_round_off_never_makes_a_distance_negative(backend):
    # Near-identical profiles (rounding-level copies): the raw formula lands on either side of 0
    # about half the time; the result must be >= 0 and tiny.
    rng = np.random.default_rng(14)
    for _ in range(20):
        dim, samples = int(rng.integers(5, 40)), int(rng.integers(3, 100))
        mu, s = profile(rng, dim, samples)
        s2 = (s * 3.0) / 3.0
        for a, b in ((s, s2), (s2, s)):
            d2 = frechet_distance(mu, a, mu, b)
            assert 0.0 <= d2 < 1e-12 * np.trace(s)


def test_slightly_asymmetric_covariance_is_symmetrised(backend):
    rng = np.random.default_rng(15)
    mu1, s1 = profile(rng, 20, 200)
    mu2, s2 = profile(rng, 20, 200, scale=2)
    noise = np.triu(rng.standard_normal((20, 20)), 1) * 1e-7 * np.abs(s1).max()
    s1_asym = s1 + noise                                   # asymmetric at 1e-7, under the tolerance
    got = frechet_distance(mu1, s1_asym, mu2, s2)
    assert got == frechet_distance(mu1, s1_asym.T, mu2, s2)
    assert rel(got, frechet_distance(mu1, (s1_asym + s1_asym.T) / 2, mu2, s2)) < 1e-13


def test_near_singular_profiles_never_nan_or_negative(backend):
    rng = np.random.default_rng(10)
    dim = 32
    vals = []
    for k in range(6):
        w = np.geomspace(1.0, 10.0 ** -(4 + 3 * k), dim)  # condition numbers up to 1e19
        s1, _ = spd(rng, dim, w)
        s2, _ = spd(rng, dim, w[::-1])
        mu = rng.standard_normal(dim) * 1e-3
        for a, b in ((s1, s2), (s1, s1 * (1 + 1e-14)), (s2, s2.T.copy())):
            vals.append(frechet_distance(mu, (a + a.T) / 2, mu * 0, (b + b.T) / 2))
    assert all(math.isfinite(v) and v >= 0 for v in vals)


# ------------------------------------------------------------------------------------------------
# Symmetry, to_many
# ------------------------------------------------------------------------------------------------

def test_symmetric(backend):
    rng = np.random.default_rng(11)
    for samples in (8, 300):
        a, b = profile(rng, 20, samples), profile(rng, 20, 300, scale=0.5)
        ab, ba = frechet_distance(*a, *b), frechet_distance(*b, *a)
        assert rel(ab, ba) < 1e-12


@pytest.mark.parametrize("kernel", ["numpy", "lapack", "float32"])
def test_to_many_rows_match_per_pair_calls(monkeypatch, kernel):
    if kernel in KERNELS:
        monkeypatch.setattr(dist, "_nuclear_norm", KERNELS[kernel])
    rng = np.random.default_rng(12)
    ps = [profile(rng, 24, s, scale=1 + k / 4) for k, s in enumerate([8, 100, 20, 300, 24, 60, 500])]
    mus, sigmas = np.stack([p[0] for p in ps]), [p[1] for p in ps]
    m = pairwise(mus, sigmas, workers=2)
    n = len(ps)
    assert m.shape == (n, n)
    tol = 1e-5 if kernel == "float32" else 1e-10
    assert np.max(np.abs(m - m.T) / np.where(m > 0, m, 1)) < tol
    assert np.all(m[~np.eye(n, dtype=bool)] > 0)
    per_pair = np.array([[frechet_distance(*ps[i], *ps[j]) for j in range(n)] for i in range(n)])
    assert np.max(np.abs(m - per_pair) / np.where(per_pair > 0, per_pair, 1)) < tol
    # single-threaded run gives the same matrix, as does a stacked (n, d, d) array of covariances
    assert np.allclose(pairwise(mus, sigmas, workers=1), m, rtol=1e-12, atol=0)
    assert np.allclose(pairwise(mus, np.stack(sigmas)), m, rtol=1e-12, atol=0)


def test_to_many_matches_per_pair_calls(backend):
    rng = np.random.default_rng(13)
    ps = [profile(rng, 16, s) for s in (5, 40, 400, 16)]
    mus, sigmas = np.stack([p[0] for p in ps]), [p[1] for p in ps]
    new = profile(rng, 16, 30, scale=2)
    got = frechet_to_many(*new, mus, sigmas)
    expected = np.array([frechet_distance(*new, *p) for p in ps])
    assert got.shape == (4,)
    assert np.allclose(got, expected, rtol=1e-10, atol=0)
    assert frechet_to_many(*ps[1], mus, sigmas)[1] < 1e-9 * np.trace(ps[1][1])
    assert [dist._factor(p[1]).trace for p in ps] == pytest.approx([np.trace(p[1]) for p in ps], rel=1e-12)


# ------------------------------------------------------------------------------------------------
# Invalid inputs
# ------------------------------------------------------------------------------------------------

def test_invalid_inputs_raise_value_error():
    mu, s = np.zeros(3), np.eye(3)
    cases = [
        ((np.zeros(4), np.eye(4), mu, s), "different dimensions"),
        ((mu, np.eye(4), mu, s), "dimension 3"),
        ((mu, np.ones((3, 4)), mu, s), "square"),
        ((mu, np.ones(3), mu, s), "square"),
        ((np.zeros((1, 3)), s, mu, s), "1-D"),
        ((np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 0))), "empty"),
        ((np.array([0.0, np.nan, 0.0]), s, mu, s), "non-finite"),
        ((mu, s, mu, np.diag([1.0, np.inf, 1.0])), "non-finite"),
        ((mu, np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]), mu, s), "not symmetric"),
        ((mu, -np.eye(3), mu, s), "not positive semidefinite"),
        ((mu, np.diag([1.0, -0.5, 1.0]), mu, s), "not positive semidefinite"),
        ((np.array(["a", "b", "c"]), s, mu, s), "numeric"),
        ((mu.astype(complex), s, mu, s), "numeric"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            frechet_distance(*args)
    for args, match in cases[:5]:
        with pytest.raises(ValueError, match=match):
            frechet_distance_naive(*args)


def test_invalid_profile_collections_raise_value_error():
    mus, sigmas = np.zeros((3, 4)), [np.eye(4)] * 3
    new = np.ones(4), np.eye(4)
    with pytest.raises(ValueError, match="3 means but 2"):
        frechet_to_many(*new, mus, sigmas[:2])
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        frechet_to_many(*new, np.zeros(4), sigmas)
    with pytest.raises(ValueError, match=r"sigmas\[1\]"):
        frechet_to_many(*new, mus, [np.eye(4), np.eye(5), np.eye(4)])
    with pytest.raises(ValueError, match=r"mus\[2\]"):
        frechet_to_many(*new, np.array([[0.0] * 4, [0.0] * 4, [np.nan] * 4]), sigmas)
    with pytest.raises(ValueError, match="workers"):
        frechet_to_many(*new, mus, sigmas, workers=0)
    with pytest.raises(ValueError, match="dimension 5"):
        frechet_to_many(np.zeros(5), np.eye(5), mus, sigmas)
    with pytest.raises(ValueError, match="square"):
        frechet_to_many(np.zeros(4), np.eye(4)[:3], mus, sigmas)
