"""FID, KID and CMMD between real and generated images, in a probe's embedding space.

After LoRA fine-tuning the trainer generates one image per validation caption and compares them
with the real validation images. Both image sets are embedded with a probe
(:mod:`hubselect.profile.probes`: ``clip`` by default, ``efficientnet`` offline) and three numbers are
computed from the two embedding matrices, ``real`` (n_r × d) and ``fake`` (n_f × d). All three are
0 for identical distributions and grow as the distributions move apart; lower is better. The zoo's
headline metric is the FID, named ``clip-fid`` for the clip probe and ``{probe}-fid`` otherwise
(:func:`metric_name`).

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
equilibrium")
    The squared Fréchet distance between the Gaussians fitted to the two sets::

        FID = |mu_r - mu_f|² + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^{1/2})

    mu = sample mean, S = sample covariance with ddof=1 (n - 1 denominator), both in float64. With
    more images than dimensions in both sets it is clean-fid's own ``frechet_distance`` (Parmar et
    al. 2022, github.com/GaParmar/clean-fid: ``scipy.linalg.sqrtm`` of S_r S_f). With fewer (a
    validation set of a few dozen images in a 512- or 1280-d space) a covariance is singular, where
    the square root of the product is ill-posed, and the exact value comes from the n_r x n_f sample
    matrices instead (:func:`_fid_low_rank`); the tests check both against clean-fid. Never
    negative. The value is the squared distance, as FID is always reported. "clip-fid" is
    this number on the clip probe's ``encode_image`` features (open_clip ViT-B-32, 512-d), not on
    Inception-v3 pool features, so it is not on the scale of published (Inception) FIDs.

KID (Bińkowski et al. 2018, "Demystifying MMD GANs")
    The unbiased estimate of the squared maximum mean discrepancy with the cubic polynomial kernel

        k(x, y) = (xᵀy / d + 1)³,   d = embedding dimension,

    i.e. for subsets X, Y of m rows each::

        MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m-1)) + Σ_{i≠j} k(y_i, y_j) / (m(m-1))
                 - 2 Σ_{i,j} k(x_i, y_j) / m²

    averaged over ``subsets`` pairs of random subsets drawn without replacement. It is clean-fid's
    ``kernel_distance`` with its defaults ``num_subsets=100, max_subset_size=1000``, run with
    numpy's global random state seeded by ``seed`` (and restored after), so the value is
    deterministic for a seed and equals ``np.random.seed(seed); kernel_distance(real, fake, ...)``.
    The subset size is capped at min(n_r, n_f); when that takes every row of both sets, all subsets
    are the same and one is computed. With many subsets of sets whose kernel matrices fit in memory,
    the three kernel matrices are computed once and each subset indexes them (the same subsets, so
    the same value; clean-fid recomputes them per subset). Being unbiased, KID is ~0 (and can be
    slightly negative) for two samples of one distribution, and its expectation does not depend on
    the sample size. Reported unscaled (papers often print KID x 1000).

CMMD (Jayasumana et al. 2024, "Rethinking FID: Towards a Better Evaluation Metric for Image
Generation", CVPR)
    The embeddings are L2-normalised (the reference implementation's CLIP encoder, scenic's
    ``encode_image(normalize=True)``, returns unit vectors), then::

        CMMD = 1000 · [ mean_{i,j} k(x_i, x_j) + mean_{i,j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j) ]
        k(x, y) = exp(-|x - y|² / (2 σ²)),  σ = 10

    with every mean over *all* pairs, diagonal included: the biased (minimum-variance, V-statistic)
    estimator of Gretton et al. 2012 (JMLR, Eq. 5), which is what the reference implementation
    ``cmmd/distance.py`` in github.com/google-research/google-research computes, with its
    constants ``_SIGMA = 10`` and ``_SCALE = 1000``. This estimate is the squared RKHS distance
    between the two empirical mean embeddings, so it is >= 0 (round-off below 0 is clipped) and 0
    only for identical sets; its bias is positive and shrinks as 1/n. Computed in float64 (the
    kernel values of unit vectors lie in [exp(-0.02), 1], so the differences that matter are
    small; ``expm1`` keeps them exact), with the kernel sums taken over row blocks so that memory
    stays bounded for thousands of rows. The paper embeds with CLIP ViT-L/14 at 336 px; here the
    probe's space is used, so values are not comparable with published CMMDs.

Sample size
-----------
FID in a probe's space is a biased estimator: with few images the covariance estimates are noisy
(and of rank <= n - 1 when n <= d, e.g. 8 images in 512 or 1280 dimensions), and the expected FID
decreases with n towards its limit, roughly as FID_n ≈ FID_∞ + c/n (Chong & Forsyth 2020,
"Effectively Unbiased FID and Inception Score and where to find them"). Scores from a validation
set of a few dozen images are therefore biased upward and are comparable **only at equal n** (and
with the same probe). KID's estimator is unbiased; CMMD's bias is O(1/n) and usually small.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hubselect.constants import DEFAULT_PROBE
from hubselect.errors import UserError

__all__ = [
    "CMMD_SCALE",
    "CMMD_SIGMA",
    "KID_SUBSETS",
    "KID_SUBSET_SIZE",
    "Scores",
    "cmmd",
    "fid",
    "kid",
    "metric_name",
    "score_embeddings",
    "score_images",
]

KID_SUBSETS = 100          # clean-fid kernel_distance(num_subsets=100)
KID_SUBSET_SIZE = 1000     # clean-fid kernel_distance(max_subset_size=1000)
CMMD_SIGMA = 10.0          # google-research cmmd/distance.py: _SIGMA = 10
CMMD_SCALE = 1000.0        # google-research cmmd/distance.py: _SCALE = 1000

# Largest kernel block held in memory at once (float64 elements: 2**22 = 32 MiB).
_CHUNK_ELEMENTS = 1 << 22


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------

def _embeddings(x: Any, name: str, min_rows: int) -> np.ndarray:
    """``x`` as a float64 (n, d) array with n >= min_rows, d >= 1, finite values; else UserError."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{name} embeddings must be a numeric (n, dim) array") from None
    if a.ndim != 2:
        raise UserError(f"{name} embeddings must be a 2-D (n, dim) array, got shape {a.shape}")
    if a.shape[1] < 1:
        raise UserError(f"{name} embeddings have dimension 0")
    if a.shape[0] < min_rows:
        raise UserError(f"{name}: {a.shape[0]} image(s), need at least {min_rows} to score")
    if not np.isfinite(a).all():
        raise UserError(f"{name} embeddings contain non-finite values (NaN or inf)")
    return a


def _pair(real: Any, fake: Any, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    r = _embeddings(real, "real", min_rows)
    f = _embeddings(fake, "generated", min_rows)
    if r.shape[1] != f.shape[1]:
        raise UserError(f"real and generated embeddings have different dimensions ({r.shape[1]} vs {f.shape[1]})")
    return r, f


# ------------------------------------------------------------------------------------------------
# FID
# ------------------------------------------------------------------------------------------------

def _cleanfid():
    """clean-fid's metric module, imported on first use (it imports torchvision, about 1.5 s)."""
    from cleanfid import fid as cleanfid_fid

    return cleanfid_fid


def _gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(axis=0)
    c = x - mu
    sigma = c.T @ c / (x.shape[0] - 1)
    return mu, 0.5 * (sigma + sigma.T)


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Squared Fréchet distance between Gaussians fitted to two embedding sets (n >= 2 each).

    Mean and ddof=1 covariance in float64. When a set has no more images than dimensions its
    covariance is singular (rank <= n - 1 < d) and the exact value comes from the n_r x n_f sample
    matrices (:func:`_fid_low_rank`); otherwise it is clean-fid's ``frechet_distance``.
    """
    r, f = _pair(real, fake, 2)
    if min(r.shape[0], f.shape[0]) <= r.shape[1]:
        return _fid_low_rank(r, f)
    mu_r, s_r = _gaussian(r)
    mu_f, s_f = _gaussian(f)
    if np.array_equal(mu_r, mu_f) and np.array_equal(s_r, s_f):
        return 0.0
    try:
        # clean-fid prints a notice when it retries a singular product: keep stdout for --json output.
        # SciPy 1.16-1.17 warn that clean-fid's sqrtm(disp=False) goes away in 1.18 (pyproject bounds scipy).
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The `disp` argument is deprecated", category=DeprecationWarning)
            value = float(_cleanfid().frechet_distance(mu_r, s_r, mu_f, s_f))
    except ValueError:   # clean-fid refuses a square root with a large imaginary part (ill-conditioned)
        return _fid_low_rank(r, f)
    return max(value, 0.0)


def _fid_low_rank(real: np.ndarray, fake: np.ndarray) -> float:
    """FID from the centred samples: with A = (X - mu) / sqrt(n - 1), S = AᵀA, and the non-zero
    eigenvalues of S_r S_f = A_rᵀ A_r A_fᵀ A_f are those of M Mᵀ with M = A_r A_fᵀ (n_r x n_f), so
    tr((S_r S_f)^{1/2}) is the sum of M's singular values (its nuclear norm)."""
    r = real.astype(np.float64)
    f = fake.astype(np.float64)
    a_r = (r - r.mean(axis=0)) / np.sqrt(r.shape[0] - 1)
    a_f = (f - f.mean(axis=0)) / np.sqrt(f.shape[0] - 1)
    diff = r.mean(axis=0) - f.mean(axis=0)
    trace_sqrt = float(np.linalg.svd(a_r @ a_f.T, compute_uv=False).sum())
    value = float(diff @ diff) + float((a_r * a_r).sum()) + float((a_f * a_f).sum()) - 2.0 * trace_sqrt
    return max(value, 0.0)


# ------------------------------------------------------------------------------------------------
# KID
# ------------------------------------------------------------------------------------------------

def _poly(a: np.ndarray, b: np.ndarray, d: int) -> np.ndarray:
    k = a @ b.T
    k /= d
    k += 1.0
    return k ** 3


def _offdiag_mean(k: np.ndarray) -> float:
    m = k.shape[0]
    return (float(k.sum()) - float(np.trace(k))) / (m * (m - 1))


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    return _offdiag_mean(kxx) + _offdiag_mean(kyy) - 2.0 * float(kxy.mean())


@contextlib.contextmanager
def _numpy_global_seed(seed: int):
    """numpy's global random state seeded with ``seed`` inside the block and restored after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD² with k(x, y) = (xᵀy/d + 1)³, averaged over subsets.

    clean-fid's ``kernel_distance(real, fake, num_subsets=subsets, max_subset_size=subset_size)``
    with numpy's global random state seeded by ``seed`` (restored after): each round draws
    m = min(subset_size, n_real, n_generated) rows without replacement from each set; needs >= 2
    rows per set. When m covers both sets entirely every round is identical and one is computed;
    with several rounds over kernel matrices that fit in memory, :func:`_kid_from_kernels` draws the
    same subsets from matrices computed once.
    """
    r, f = _pair(real, fake, 2)
    if subsets < 1:
        raise UserError(f"kid: subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise UserError(f"kid: subset_size must be >= 2, got {subset_size}")
    n_r, n_f = r.shape[0], f.shape[0]
    m = min(subset_size, n_r, n_f)
    if m == n_r and m == n_f:
        subsets = 1
    if subsets > 1 and n_r * n_r + n_f * n_f + n_r * n_f <= 4 * _CHUNK_ELEMENTS:
        return _kid_from_kernels(r, f, m, subsets, seed)
    with _numpy_global_seed(seed):
        return float(_cleanfid().kernel_distance(r, f, num_subsets=subsets, max_subset_size=m))


def _kid_from_kernels(real: np.ndarray, fake: np.ndarray, m: int, subsets: int, seed: int) -> float:
    """clean-fid's ``kernel_distance`` after ``np.random.seed(seed)``, from the three kernel matrices
    computed once: the same subsets, drawn in clean-fid's order (the generated set's rows first)."""
    d = real.shape[1]
    krr, kff, krf = _poly(real, real, d), _poly(fake, fake, d), _poly(real, fake, d)
    rng = np.random.RandomState(seed)   # the generator np.random.seed(seed) sets up
    total = 0.0
    for _ in range(subsets):
        j = rng.choice(fake.shape[0], m, replace=False)
        i = rng.choice(real.shape[0], m, replace=False)
        total += _mmd2_unbiased(krr[np.ix_(i, i)], kff[np.ix_(j, j)], krf[np.ix_(i, j)])
    return total / subsets


# ------------------------------------------------------------------------------------------------
# CMMD
# ------------------------------------------------------------------------------------------------

def _unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not (norms > 0).all():
        raise UserError(f"{name} embeddings contain an all-zero row, which cannot be L2-normalised")
    return x / norms


def _rbf_mean_minus_one(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """mean over all (i, j) of exp(-gamma |x_i - y_j|²) - 1, in row blocks of bounded size."""
    sx = np.einsum("ij,ij->i", x, x)
    sy = np.einsum("ij,ij->i", y, y)
    rows = max(1, _CHUNK_ELEMENTS // y.shape[0])
    total = 0.0
    for start in range(0, x.shape[0], rows):
        xb = x[start:start + rows]
        d2 = xb @ y.T
        d2 *= -2.0
        d2 += sx[start:start + rows, None]
        d2 += sy[None, :]
        np.maximum(d2, 0.0, out=d2)
        d2 *= -gamma
        total += float(np.expm1(d2, out=d2).sum())
    return total / (x.shape[0] * y.shape[0])


def cmmd(real: np.ndarray, fake: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE) -> float:
    """CMMD: scale x biased MMD² with a Gaussian RBF kernel (bandwidth sigma) on L2-normalised rows.

    The V-statistic (all pairs, diagonal included) of the reference implementation; see the module
    docstring. Needs >= 1 row per set; float64; memory bounded by row blocks.
    """
    r, f = _pair(real, fake, 1)
    if not sigma > 0:
        raise UserError(f"cmmd: sigma must be > 0, got {sigma}")
    x, y = _unit_rows(r, "real"), _unit_rows(f, "generated")
    gamma = 1.0 / (2.0 * sigma * sigma)
    # The "- 1" of expm1 cancels in kxx + kyy - 2 kxy and keeps the small differences exact.
    value = _rbf_mean_minus_one(x, x, gamma) + _rbf_mean_minus_one(y, y, gamma) \
        - 2.0 * _rbf_mean_minus_one(x, y, gamma)
    return scale * max(value, 0.0)


# ------------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------------

def metric_name(probe: str) -> str:
    """The name of the headline metric (the FID) for a probe: ``clip-fid``, ``efficientnet-fid``, ..."""
    return f"{probe}-fid"


@dataclass(frozen=True)
class Scores:
    """FID, KID and CMMD of generated images against real ones, in one probe's space."""

    fid: float
    kid: float
    cmmd: float
    probe: str
    n_real: int
    n_generated: int

    @property
    def metric(self) -> str:
        """Name of the headline metric, :func:`metric_name` of the probe (its value is ``fid``)."""
        return metric_name(self.probe)

    def to_dict(self) -> dict[str, Any]:
        """The six fields as a JSON-ready dict."""
        return asdict(self)


def score_embeddings(real: np.ndarray, fake: np.ndarray, probe: str) -> Scores:
    """FID, KID (default subsets) and CMMD of two embedding sets (n >= 2 each, same dimension)."""
    r, f = _pair(real, fake, 2)
    return Scores(fid=fid(r, f), kid=kid(r, f), cmmd=cmmd(r, f), probe=probe,
                  n_real=int(r.shape[0]), n_generated=int(f.shape[0]))


def score_images(real_images: Sequence, generated_images: Sequence, probe: str = DEFAULT_PROBE,
                 device: str | None = None) -> Scores:
    """Embed both lists of RGB PIL images with ``probe`` and :func:`score_embeddings` them."""
    from hubselect.profile.probes import get_probe, probe_class

    real_images, generated_images = list(real_images), list(generated_images)
    for name, images in (("real", real_images), ("generated", generated_images)):
        if len(images) < 2:
            raise UserError(f"{name}: {len(images)} image(s), need at least 2 to score")
    if probe_class(probe).modality != "image":
        raise UserError(f"probe {probe!r} embeds text, not images; scoring needs an image probe")
    p = get_probe(probe, device)
    return score_embeddings(p.embed(real_images), p.embed(generated_images), probe)
