"""References for hubselect.profile.distance, used by tests/test_distance.py and benchmarks/frechet_bench.py.

* :func:`frechet_distance_naive`: the classic per-pair FID recipe (``scipy.linalg.sqrtm``), what the factored
  computation is checked against.
* Two per-pair kernels with the signature of the product's ``distance._nuclear_norm(a, b)`` (``a``, ``b``: its
  covariance factors), which a test or the benchmark swaps in (monkeypatching ``_nuclear_norm``) to run the product's
  whole computation through them:

  - :func:`nuclear_norm_float32`: the two products and the Gram matrix's eigenvalues in float32, ~1.7x faster on
    full-rank pairs, but float32 accumulation costs accuracy: 3e-6 median, 2e-4 worst relative error on the
    benchmark's profiles, 1e-4 .. 1e-2 once d² < 1e-3 x the traces;
  - :func:`nuclear_norm_lapack`: GEMM, SYRK and SYEVR called through SciPy's public Cython BLAS/LAPACK capsules
    (``scipy.linalg.cython_blas`` / ``cython_lapack``) via ctypes, which releases the GIL, with per-thread buffers;
    it saves the numpy route's temporaries, a few percent to ~25 % per pair.

Neither kernel is in the product: on the zoo's tens of profiles they save too little for what they cost.
"""

from __future__ import annotations

import ctypes
import threading
import warnings
from typing import Any

import numpy as np

from hubselect.profile import distance as dist


def frechet_distance_naive(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, eps: float = 1e-6) -> float:
    """The classic FID computation with ``scipy.linalg.sqrtm(sigma1 @ sigma2)``.

    The recipe of the TTUR / pytorch-fid code (``calculate_frechet_distance``): if the square root is not finite
    (singular product), retry with ``eps * I`` added to both covariances; drop the imaginary part that round-off
    leaves. The result is not clipped and may be slightly negative or inaccurate for singular covariances. Inputs
    are checked as the product checks them.
    """
    from scipy.linalg import sqrtm

    m1, s1 = dist._check_profile(mu1, sigma1, "1")
    m2, s2 = dist._check_profile(mu2, sigma2, "2")
    if m1.shape != m2.shape:
        raise ValueError(f"profiles have different dimensions: mu1 has {m1.shape[0]}, mu2 has {m2.shape[0]}")
    diff = m1 - m2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def nuclear_norm_float32(a, b) -> float:
    """||F_bᵀ F_a||_* with the factors, products and Gram matrix in float32 (eigenvalue roots summed in float64)."""
    if a.rank == 0 or b.rank == 0:
        return 0.0
    fa, fb = a.f.astype(np.float32), b.f.astype(np.float32)
    w = fb.T @ fa
    g = w.T @ w if a.rank <= b.rank else w @ w.T
    return dist._sum_sqrt(np.linalg.eigvalsh(g))


# ----------------------------------------------------------------------------------------------------------------------
# The LAPACK-via-ctypes kernel
# ----------------------------------------------------------------------------------------------------------------------

def lapack_functions() -> dict | None:
    """ctypes function pointers to SciPy's double-precision ``gemm``, ``syrk`` and ``syevr``, or None. The capsule
    signatures are checked (argument count, 32-bit ``int *``) before use."""
    from scipy.linalg import cython_blas, cython_lapack

    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.restype, get_ptr.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    # name -> (module, [argument kinds]); c = char*, i = int*, x = double*
    specs = {
        "dgemm": (cython_blas, "cciii" "x" "xi" "xi" "x" "xi"),
        "dsyrk": (cython_blas, "ccii" "x" "xi" "x" "xi"),
        "dsyevr": (cython_lapack, "ccci" "xi" "xx" "ii" "x" "i" "xx" "i" "i" "xi" "iii"),
    }
    out = {}
    for name, (module, kinds) in specs.items():
        capsule = module.__pyx_capi__[name]
        sig = get_name(capsule).decode()
        args = [a.strip() for a in sig[sig.index("(") + 1: sig.rindex(")")].split(",")]
        if not sig.startswith("void ") or len(args) != len(kinds):
            return None
        for a, k in zip(args, kinds):
            if not {"c": a == "char *", "i": a == "int *", "x": a.endswith("_d *")}[k]:
                return None
        ptr = get_ptr(capsule, get_name(capsule))
        if not ptr:
            return None
        # ctypes foreign calls release the GIL for their duration.
        out[name[1:]] = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * len(kinds)))(ptr)
    return out


_FUNCTIONS: dict[str, Any] = {}
_FUNCTIONS_LOCK = threading.Lock()


def _functions() -> dict:
    with _FUNCTIONS_LOCK:
        if not _FUNCTIONS:
            found = lapack_functions()
            if found is None:
                raise RuntimeError("SciPy's BLAS/LAPACK capsules do not have the expected signatures")
            _FUNCTIONS.update(found)
        return _FUNCTIONS


class _Workspace(threading.local):
    """Per-thread buffers, so the pair loop allocates nothing once they have grown to the largest pair."""

    def get(self, d: int):
        if getattr(self, "d", 0) < d:
            self.d = d
            self.w_buf = np.empty(d * d)          # W = F2ᵀ F1
            self.g_buf = np.empty(d * d)          # Gram matrix
            self.eig = np.empty(d)
            self.work = self.iwork = None
        return self


_WS = _Workspace()


def _int(v: int):
    return ctypes.byref(ctypes.c_int(v))


def nuclear_norm_lapack(a, b) -> float:
    """||F_bᵀ F_a||_* through BLAS/LAPACK called directly (W = F_bᵀ F_a by GEMM, its Gram matrix by SYRK, the
    eigenvalues by SYEVR)."""
    fn = _functions()
    m, n = b.rank, a.rank
    if m == 0 or n == 0:
        return 0.0
    d = a.f.shape[0]
    left, right = np.asfortranarray(b.f), np.asfortranarray(a.f)
    ws = _WS.get(d)
    one, zero, dummy = ctypes.byref(ctypes.c_double(1.0)), ctypes.byref(ctypes.c_double(0.0)), \
        ctypes.byref(ctypes.c_double(0.0))
    w = ws.w_buf[: m * n].reshape((m, n), order="F")
    fn["gemm"](b"T", b"N", _int(m), _int(n), _int(d), one, left.ctypes.data, _int(d), right.ctypes.data, _int(d),
               zero, w.ctypes.data, _int(m))
    k = min(m, n)
    g = ws.g_buf[: k * k].reshape((k, k), order="F")
    trans = b"T" if n <= m else b"N"          # G = WᵀW (n × n) or W Wᵀ (m × m)
    fn["syrk"](b"L", trans, _int(k), _int(max(m, n)), one, w.ctypes.data, _int(m), zero, g.ctypes.data, _int(k))
    eig = ws.eig[:k]
    info, found = ctypes.c_int(0), ctypes.c_int(0)
    z = np.empty(1)
    isuppz = np.empty(2 * ws.d, np.intc)
    if ws.work is None:
        # workspace query for the largest size this thread will see (d): LAPACK's optimum
        qwork, qiwork = np.empty(1), np.empty(1, np.intc)
        fn["syevr"](b"N", b"A", b"L", _int(ws.d), g.ctypes.data, _int(ws.d), dummy, dummy, _int(1), _int(ws.d),
                    dummy, ctypes.byref(found), eig.ctypes.data, z.ctypes.data, _int(1), isuppz.ctypes.data,
                    qwork.ctypes.data, _int(-1), qiwork.ctypes.data, _int(-1), ctypes.byref(info))
        ws.work = np.empty(max(int(qwork[0]), 26 * ws.d, 1))
        ws.iwork = np.empty(max(int(qiwork[0]), 10 * ws.d, 1), np.intc)
        info.value = 0
    fn["syevr"](b"N", b"A", b"L", _int(k), g.ctypes.data, _int(k), dummy, dummy, _int(1), _int(k), dummy,
                ctypes.byref(found), eig.ctypes.data, z.ctypes.data, _int(1), isuppz.ctypes.data, ws.work.ctypes.data,
                _int(ws.work.size), ws.iwork.ctypes.data, _int(ws.iwork.size), ctypes.byref(info))
    if info.value != 0 or found.value != k:
        raise RuntimeError(f"dsyevr failed (info {info.value}, {found.value} of {k} eigenvalues)")
    return dist._sum_sqrt(eig)
