"""FID / KID / CMMD (hubselect.finetune.scoring): closed forms, direct references, clean-fid's own functions
(which scoring calls, and against which its faster routes are checked), real probe."""

from __future__ import annotations

import itertools
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
from PIL import Image

from hubselect.errors import UserError
from hubselect.finetune import scoring
from hubselect.finetune.scoring import (
    Scores,
    cmmd,
    fid,
    kid,
    metric_name,
    score_embeddings,
    score_images,
)


def _rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _with_moments(z: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Rows whose sample mean is exactly mu and ddof=1 sample covariance exactly sigma."""
    c = z - z.mean(axis=0)
    white = c @ np.linalg.inv(np.linalg.cholesky(np.cov(c, rowvar=False)).T)
    return mu + white @ np.linalg.cholesky(sigma).T


# Two Gaussians with commuting covariances (same eigenvectors Q): tr((S1 S2)^1/2) = Σ sqrt(a_i b_i),
# so FID = |mu1 - mu2|² + Σ (sqrt(a_i) - sqrt(b_i))².
D = 4
Q = _rotation(D, 7)
A = np.array([1.0, 2.0, 0.5, 3.0])
B = np.array([2.0, 2.0, 1.0, 0.5])
MU1 = np.zeros(D)
MU2 = np.array([1.0, 0.0, -2.0, 0.5])
S1 = Q @ np.diag(A) @ Q.T
S2 = Q @ np.diag(B) @ Q.T
CLOSED_FORM = float((MU1 - MU2) @ (MU1 - MU2) + ((np.sqrt(A) - np.sqrt(B)) ** 2).sum())


# ------------------------------------------------------------------------------------------------
# FID
# ------------------------------------------------------------------------------------------------

def test_fid_is_zero_for_identical_sets():
    x = np.random.default_rng(0).standard_normal((50, 8))
    assert fid(x, x) == 0.0
    assert fid(x, x.copy()) == 0.0


def test_fid_matches_the_closed_form_for_two_gaussians():
    rng = np.random.default_rng(1)
    # samples with exactly the target moments: FID equals the closed form up to round-off
    x = _with_moments(rng.standard_normal((300, D)), MU1, S1)
    y = _with_moments(rng.standard_normal((200, D)), MU2, S2)
    assert fid(x, y) == pytest.approx(CLOSED_FORM, rel=1e-9)
    # plain large samples: the estimate converges to the closed form
    x = rng.multivariate_normal(MU1, S1, size=200_000)
    y = rng.multivariate_normal(MU2, S2, size=200_000)
    assert fid(x, y) == pytest.approx(CLOSED_FORM, rel=0.02)


def test_fid_is_symmetric_and_grows_with_the_mean_shift():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((120, 6))
    y = rng.standard_normal((90, 6)) * 1.5
    assert fid(x, y) == pytest.approx(fid(y, x), rel=1e-10)
    e = np.ones(6) / np.sqrt(6)
    shifts = [0.25, 0.5, 1.0, 2.0, 4.0]
    values = [fid(x, x + s * e) for s in shifts]
    assert all(a < b for a, b in itertools.pairwise(values))
    # same covariance: only the mean term is left
    assert values == pytest.approx([s * s for s in shifts], rel=1e-8)


def _cleanfid_fid(x: np.ndarray, y: np.ndarray) -> float:
    from cleanfid.fid import frechet_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)      # SciPy >= 1.16 on clean-fid's sqrtm(disp=False)
        return float(frechet_distance(x.mean(axis=0), np.cov(x, rowvar=False), y.mean(axis=0), np.cov(y, rowvar=False)))


@pytest.mark.parametrize("n_real, n_fake, dim", [(300, 200, 6), (40, 90, 32), (600, 520, 512)])
def test_fid_with_more_images_than_dimensions_is_clean_fids_and_so_is_the_low_rank_route(n_real, n_fake, dim):
    """More images than dimensions: fid is clean-fid's frechet_distance; the exact n x n route, valid for any n,
    gives the same there."""
    from hubselect.finetune.scoring import _fid_low_rank

    rng = np.random.default_rng(n_real + dim)
    real = rng.normal(size=(n_real, dim)) @ rng.normal(size=(dim, dim)) * 0.3
    fake = rng.normal(0.2, 1.0, size=(n_fake, dim))
    reference = _cleanfid_fid(real, fake)
    assert fid(real, fake) == pytest.approx(reference, rel=1e-12)
    assert _fid_low_rank(real, fake) == pytest.approx(reference, rel=1e-9)


def test_fid_falls_back_to_the_exact_route_when_clean_fid_refuses(monkeypatch):
    from hubselect.finetune.scoring import _fid_low_rank

    def refuse(*_):
        raise ValueError("Imaginary component 0.01")

    rng = np.random.default_rng(16)
    x, y = rng.standard_normal((50, 4)), rng.standard_normal((60, 4)) + 0.5
    monkeypatch.setattr(scoring, "_cleanfid", lambda: types.SimpleNamespace(frechet_distance=refuse))
    assert fid(x, y) == _fid_low_rank(x, y)


def test_fid_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 64)), rng.standard_normal((8, 64)) + 1.0
    value = fid(x, y)
    assert np.isfinite(value) and value > fid(x, rng.standard_normal((8, 64)))


# ------------------------------------------------------------------------------------------------
# KID
# ------------------------------------------------------------------------------------------------

def _kid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² with k(a, b) = (a·b/d + 1)³, written out pair by pair."""
    m, d = x.shape

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2.0 * xy


def test_kid_matches_a_direct_reference():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, 5))
    y = rng.standard_normal((9, 5)) * 0.7 + 0.3
    ref = _kid_reference(x, y)
    assert kid(x, y, subsets=1, subset_size=9) == pytest.approx(ref, abs=1e-10, rel=0)
    # subset_size is capped at the set sizes; all subsets are then the whole sets
    assert kid(x, y, subsets=5, subset_size=1000) == pytest.approx(ref, abs=1e-10, rel=0)


def test_kid_subsets_average_the_reference_over_random_subsets():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((12, 3)), rng.standard_normal((15, 3)) + 0.5
    # m = 12: every subset is all of x and 12 of the 15 rows of y; all C(15, 12) = 455 of them
    values = np.array([_kid_reference(x, y[list(j)]) for j in itertools.combinations(range(15), 12)])
    value = kid(x, y, subsets=20, seed=3)
    assert kid(x, y, subsets=20, seed=3) == value                    # deterministic for a seed
    assert kid(x, y, subsets=20, seed=4) != value
    assert values.min() < value < values.max()
    # many random subsets: the average converges to the mean over all subsets
    many = kid(x, y, subsets=4000, seed=0)
    assert abs(many - values.mean()) < 4 * values.std() / np.sqrt(4000)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(6)
    d = 16
    x = rng.standard_normal((400, d))
    same = kid(x, rng.standard_normal((400, d)), subsets=10, subset_size=200)
    small = kid(x, rng.standard_normal((400, d)) + 0.5, subsets=10, subset_size=200)
    large = kid(x, rng.standard_normal((400, d)) + 1.0, subsets=10, subset_size=200)
    assert abs(same) < 0.01
    assert 0 < small < large
    assert abs(same) < 0.2 * small


def test_kid_is_unbiased_so_it_can_be_negative():
    rng = np.random.default_rng(7)
    values = [kid(rng.standard_normal((20, 4)), rng.standard_normal((20, 4))) for _ in range(20)]
    assert min(values) < 0 < max(values)


def test_kid_needs_two_rows():
    with pytest.raises(UserError, match="at least 2"):
        kid(np.ones((1, 3)), np.ones((5, 3)))


def _cleanfid_kid(x: np.ndarray, y: np.ndarray, subsets: int, subset_size: int, seed: int) -> float:
    from cleanfid.fid import kernel_distance

    np.random.seed(seed)
    return kernel_distance(x, y, num_subsets=subsets, max_subset_size=subset_size)


@pytest.mark.parametrize("n_real, n_fake, subsets, subset_size", [(9, 9, 1, 1000), (9, 9, 5, 9), (40, 50, 7, 30),
                                                                  (40, 50, 1, 30), (50, 40, 3, 1000)])
def test_kid_is_clean_fids_kernel_distance_with_a_seeded_global_state(n_real, n_fake, subsets, subset_size):
    """Whole sets and one round are clean-fid's own call; several rounds come from kernels computed once, with the
    subsets clean-fid draws. numpy's global random state is left as it was."""
    rng = np.random.default_rng(n_real + subsets)
    x = rng.standard_normal((n_real, 6))
    y = rng.standard_normal((n_fake, 6)) * 0.8 + 0.2
    before = np.random.get_state()
    value = kid(x, y, subsets=subsets, subset_size=subset_size, seed=5)
    after = np.random.get_state()
    assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    rounds = 1 if min(subset_size, n_real, n_fake) == n_real == n_fake else subsets
    assert value == pytest.approx(_cleanfid_kid(x, y, rounds, subset_size, 5), rel=1e-12, abs=1e-14)


def test_importing_scoring_or_the_cli_does_not_import_clean_fid():
    code = ("import sys, hubselect.finetune.scoring, hubselect.cli.root\n"
            "print('cleanfid' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_kid_large_sets_without_cached_kernels(monkeypatch):
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((40, 6)), rng.standard_normal((50, 6)) + 0.2
    cached = kid(x, y, subsets=7, subset_size=30, seed=1)
    monkeypatch.setattr(scoring, "_CHUNK_ELEMENTS", 16)
    assert kid(x, y, subsets=7, subset_size=30, seed=1) == pytest.approx(cached, abs=1e-12, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# CMMD
# ------------------------------------------------------------------------------------------------

def _cmmd_reference(x: np.ndarray, y: np.ndarray, sigma: float = 10.0) -> float:
    """Biased MMD² (all pairs) with a Gaussian kernel on unit rows, x 1000, pair by pair."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)

    def mean_k(a, b):
        return np.mean([np.exp(-np.sum((u - v) ** 2) / (2 * sigma**2)) for u in a for v in b])

    return 1000.0 * (mean_k(x, x) + mean_k(y, y) - 2.0 * mean_k(x, y))


def test_cmmd_is_zero_for_identical_sets():
    x = np.random.default_rng(9).standard_normal((30, 7))
    assert cmmd(x, x) == 0.0
    assert cmmd(x, x.copy()) == 0.0


def test_cmmd_matches_a_direct_reference():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((11, 5))
    y = rng.standard_normal((13, 5)) + 0.8
    ref = _cmmd_reference(x, y)
    assert ref > 0
    assert cmmd(x, y) == pytest.approx(ref, rel=1e-9)
    assert cmmd(x, y, sigma=2.0, scale=1.0) == pytest.approx(_cmmd_reference(x, y, 2.0) / 1000, rel=1e-9)


def test_cmmd_is_invariant_to_scaling_the_embeddings():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((20, 6)), rng.standard_normal((25, 6)) + 0.5
    scaled = cmmd(3.0 * x, y * rng.uniform(0.1, 10.0, size=(25, 1)))
    assert scaled == pytest.approx(cmmd(x, y), rel=1e-9)


def test_cmmd_increases_with_the_shift():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((200, 8))
    y = rng.standard_normal((200, 8))
    e = np.eye(8)[0]
    values = [cmmd(x, y + s * e) for s in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in itertools.pairwise(values))


def test_cmmd_in_row_blocks_equals_the_whole_matrix(monkeypatch):
    rng = np.random.default_rng(13)
    x, y = rng.standard_normal((300, 5)), rng.standard_normal((250, 5)) + 0.3
    whole = cmmd(x, y)
    monkeypatch.setattr(scoring, "_CHUNK_ELEMENTS", 1000)       # blocks of 3-4 rows
    assert cmmd(x, y) == pytest.approx(whole, rel=1e-10)


def test_cmmd_rejects_zero_rows():
    with pytest.raises(UserError, match="all-zero row"):
        cmmd(np.zeros((3, 4)), np.ones((3, 4)))


# ------------------------------------------------------------------------------------------------
# Scores, validation, and the real efficientnet probe
# ------------------------------------------------------------------------------------------------

def test_metric_name():
    assert metric_name("clip") == "clip-fid"
    assert metric_name("efficientnet") == "efficientnet-fid"


def test_score_embeddings_validation():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((10, 4))
    with pytest.raises(UserError, match="need at least 2"):
        score_embeddings(x[:1], x, "clip")
    with pytest.raises(UserError, match="different dimensions"):
        score_embeddings(x, rng.standard_normal((10, 5)), "clip")
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(UserError, match="non-finite"):
        score_embeddings(x, bad, "clip")
    bad[3, 2] = np.inf
    with pytest.raises(UserError, match="non-finite"):
        score_embeddings(bad, x, "clip")
    with pytest.raises(UserError, match="2-D"):
        score_embeddings(x[0], x, "clip")


def test_score_embeddings_returns_all_three():
    rng = np.random.default_rng(15)
    x, y = rng.standard_normal((30, 4)), rng.standard_normal((20, 4)) + 1.0
    s = score_embeddings(x, y, "clip")
    assert (s.fid, s.kid, s.cmmd) == (pytest.approx(fid(x, y)), pytest.approx(kid(x, y)), pytest.approx(cmmd(x, y)))
    assert s.to_dict() == {"fid": s.fid, "kid": s.kid, "cmmd": s.cmmd, "probe": "clip", "n_real": 30,
                           "n_generated": 20}
    assert s.metric == "clip-fid"


def _noise(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)) for _ in range(n)]


def _gradients(n: int) -> list[Image.Image]:
    ramp = np.linspace(0.0, 1.0, 64)
    out = []
    for k in range(n):
        c0 = np.array([40 + 25 * k, 200 - 20 * k, 90 + 10 * k], dtype=float)
        c1 = np.array([230 - 15 * k, 30 + 20 * k, 180], dtype=float)
        t = (ramp[None, :] + ramp[:, None])[..., None] / 2.0 if k % 2 else np.broadcast_to(ramp[None, :, None],
                                                                                          (64, 64, 1))
        out.append(Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8)))
    return out


@pytest.fixture(scope="module")
def image_scores():
    noise, other_noise, gradients = _noise(8, 0), _noise(8, 1), _gradients(8)
    return (score_images(noise, other_noise, probe="efficientnet", device="cpu"),
            score_images(noise, gradients, probe="efficientnet", device="cpu"))


def test_score_images_with_the_efficientnet_probe(image_scores):
    same, different = image_scores
    assert isinstance(same, Scores)
    assert (same.probe, same.n_real, same.n_generated) == ("efficientnet", 8, 8)
    assert same.metric == metric_name("efficientnet") == "efficientnet-fid"
    assert 0 < same.fid < different.fid
    assert 0 < same.cmmd < different.cmmd
    assert same.kid < different.kid


def test_score_images_rejects_too_few_images_and_text_probes():
    with pytest.raises(UserError, match="real: 1 image"):
        score_images(_noise(1, 0), _noise(4, 1), probe="efficientnet", device="cpu")
    with pytest.raises(UserError, match="generated: 0 image"):
        score_images(_noise(4, 0), [], probe="efficientnet", device="cpu")
    with pytest.raises(UserError, match="embeds text"):
        score_images(_noise(4, 0), _noise(4, 1), probe="minilm", device="cpu")
    with pytest.raises(UserError, match="unknown probe"):
        score_images(_noise(4, 0), _noise(4, 1), probe="nope", device="cpu")


@pytest.mark.parametrize("n_real, n_fake, dim", [(8, 5, 64), (30, 40, 50), (3, 200, 16)])
def test_fid_low_rank_path_equals_the_full_computation(n_real, n_fake, dim):
    """Few images in many dimensions: the n x n route gives what the d x d Fréchet distance gives."""
    from hubselect.profile.distance import frechet_distance
    from hubselect.finetune.scoring import _fid_low_rank, _gaussian

    rng = np.random.default_rng(n_real + dim)
    real = rng.normal(size=(n_real, dim)) @ rng.normal(size=(dim, dim)) * 0.3
    fake = rng.normal(0.2, 1.0, size=(n_fake, dim))
    full = frechet_distance(*_gaussian(real), *_gaussian(fake))
    assert _fid_low_rank(real, fake) == pytest.approx(full, rel=1e-8, abs=1e-9)
    assert fid(real, fake) == pytest.approx(full, rel=1e-8, abs=1e-9)
