"""References for hubselect.rank.graph.node2vec, used by tests/test_node2vec.py and benchmarks/node2vec_bench.py.

* pecanpy (the test extra): its ``SparseOTF`` walks (``extend=True`` is node2vec+) and its word2vec step (gensim
  skip-gram, negative sampling), :func:`walks_pecanpy` and :func:`embed_pecanpy`, plus :func:`pecanpy_graph` for its
  transition-probability functions;
* :func:`embed_gensim`: the product's walks with gensim's ``Word2Vec`` instead of the product's skip-gram;
* :func:`walks` and :func:`transition_probabilities`: the product's walks as lists of nodes and the exact
  distribution its walk kernel samples from (the same kernel function), for comparison with pecanpy's.

pecanpy under numpy >= 2
------------------------
``import pecanpy`` fails under numpy 2: ``pecanpy/typing.py`` imports ``nptyping`` (2.0.x; later 2.x releases do the
same), whose ``nptyping/typing_.py`` builds its dtype table at import time from numpy attributes that numpy 2.0
removed: ``np.bool8`` is the first to raise ``AttributeError``, followed by ``object0, int0, uint0, float_,
longfloat, singlecomplex, cfloat, complex_, clongfloat, longcomplex, void0, string_, bytes0, unicode_, str0``.
Nothing else in pecanpy or nptyping touches removed numpy API (pecanpy uses nptyping only for type annotations).
:func:`import_pecanpy` therefore sets exactly the missing names on the ``numpy`` module as the numpy-1 aliases they
were (``bool8 = bool_``, ``float_ = float64``, ``int0 = intp``, ...), imports pecanpy (and with it nptyping), and
deletes the aliases again, so the rest of the process still sees numpy 2 as it is (code that feature-tests
``hasattr(np, "float_")`` keeps working). nptyping keeps its own references to the classes, which exist in numpy 2
under their canonical names. Under numpy 1 nothing is patched. numpy is never pinned.

Determinism: with gensim, embeddings are deterministic because it runs with ``workers=1`` (its multi-threaded
training is not). pecanpy's walks are seeded per numba thread and are reproducible only on one thread:
:func:`walks_pecanpy` and :func:`embed_pecanpy` run them with ``workers`` (default 1) numba threads.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import time
from collections.abc import Hashable

import networkx as nx
import numba
import numpy as np

from hubselect.rank.graph import node2vec as nv

# numpy-1 aliases removed in numpy 2.0 that nptyping's typing_.py reads at import time, with the numpy-1 meaning.
_NUMPY1_ALIASES = {
    "bool8": "bool_", "object0": "object_", "int0": "intp", "uint0": "uintp", "float_": "float64",
    "longfloat": "longdouble", "singlecomplex": "csingle", "cfloat": "cdouble", "complex_": "cdouble",
    "clongfloat": "clongdouble", "longcomplex": "clongdouble", "void0": "void", "string_": "bytes_",
    "bytes0": "bytes_", "unicode_": "str_", "str0": "str_",
}
_import_lock = threading.Lock()


def import_pecanpy():
    """``pecanpy.pecanpy`` (the module with ``SparseOTF``), importable under numpy >= 2 (see the module docstring)."""
    if "pecanpy.pecanpy" in sys.modules:
        return sys.modules["pecanpy.pecanpy"]
    with _import_lock:
        added = []
        try:
            for alias, canonical in _NUMPY1_ALIASES.items():
                if alias not in np.__dict__ and not hasattr(np, alias):
                    setattr(np, alias, getattr(np, canonical))
                    added.append(alias)
            return importlib.import_module("pecanpy.pecanpy")
        finally:
            for alias in added:
                delattr(np, alias)


# ----------------------------------------------------------------------------------------------------------------------
# The product's walks, inspected
# ----------------------------------------------------------------------------------------------------------------------


def walks(graph: nx.Graph, num_walks: int = 10, walk_length: int = 20, p: float = 1, q: float = 1,
          extend: bool = True, seed: int = 0, *, gamma: float = 0.0, weight: str = "weight") -> list[list[Hashable]]:
    """The product's node2vec(+) walks (lists of graph nodes): ``num_walks`` from every node, in a seeded order."""
    nodes, mat, lengths = nv._walk_arrays(graph, num_walks, walk_length, p, q, extend, seed, gamma, weight)
    return [[nodes[i] for i in row[:n]] for row, n in zip(mat.tolist(), lengths.tolist())]


def transition_probabilities(graph: nx.Graph, prev: Hashable | None, cur: Hashable, p: float = 1, q: float = 1,
                             extend: bool = True, *, gamma: float = 0.0,
                             weight: str = "weight") -> dict[Hashable, float]:
    """``{next node: probability}`` of the walk's next step at ``cur`` coming from ``prev`` (``None``: first step):
    the exact distribution the product's walk kernel samples from (it calls the same kernel function)."""
    nv._check_params(1, 1, p, q)
    nodes, indptr, indices, data = nv.graph_to_csr(graph, weight)
    index = {n: i for i, n in enumerate(nodes)}
    c = index[cur]
    pi = -1 if prev is None else index[prev]
    if pi >= 0 and not graph.has_edge(prev, cur):
        raise ValueError(f"{prev!r} and {cur!r} are not adjacent")
    thr = nv._noise_thresholds(indptr, data, gamma) if extend else np.zeros(len(nodes), dtype=np.float32)
    deg = int(indptr[c + 1] - indptr[c])
    cdf = np.empty(max(deg, 1), dtype=np.float64)
    total = nv._transition_cdf(indptr, indices, data, thr, c, pi, 1.0 / p, 1.0 / q, bool(extend), cdf)
    probs = np.diff(cdf[:deg], prepend=0.0) / total if deg else np.zeros(0)
    return {nodes[int(x)]: float(pr) for x, pr in zip(indices[indptr[c]:indptr[c + 1]], probs)}


def embed_gensim(graph: nx.Graph, dim: int = 32, num_walks: int = 10, walk_length: int = 20, p: float = 1,
                 q: float = 1, extend: bool = True, seed: int = 0, *, window: int = 10, epochs: int = 1,
                 negative: int = 5, alpha: float = 0.025, min_alpha: float = 0.0001, sample: float = 1e-3,
                 ns_exponent: float = 0.75, batch_words: int = 10000, gamma: float = 0.0, weight: str = "weight",
                 timings: dict | None = None) -> dict[Hashable, np.ndarray]:
    """:func:`hubselect.rank.graph.node2vec.embed` with gensim's ``Word2Vec`` (``workers=1``) as the skip-gram."""
    from gensim.models import Word2Vec

    t0 = time.perf_counter()
    nodes, mat, lengths = nv._walk_arrays(graph, num_walks, walk_length, p, q, extend, seed, gamma, weight)
    t1 = time.perf_counter()
    sentences = [[str(i) for i in row[:n]] for row, n in zip(mat.tolist(), lengths.tolist())]
    w2v = Word2Vec(sentences, vector_size=dim, window=window, sg=1, min_count=0, workers=1, epochs=epochs,
                   negative=negative, alpha=alpha, min_alpha=min_alpha, sample=sample, ns_exponent=ns_exponent,
                   batch_words=batch_words, seed=seed)
    vectors = w2v.wv[[str(i) for i in range(len(nodes))]]
    if timings is not None:
        timings["walks"], timings["skipgram"] = t1 - t0, time.perf_counter() - t1
    return {n: vectors[i].copy() for i, n in enumerate(nodes)}


# ----------------------------------------------------------------------------------------------------------------------
# pecanpy
# ----------------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _numba_threads(n: int):
    """pecanpy's walks run in a numba ``prange`` seeded per thread: one thread makes them reproducible."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def pecanpy_graph(graph: nx.Graph, p: float, q: float, extend: bool, seed: int, gamma: float = 0.0,
                  weight: str = "weight", workers: int = 1):
    """``(nodes, SparseOTF graph)``: pecanpy's graph of ``graph``, its node ``i`` being ``nodes[i]``."""
    nv._check_params(1, 1, p, q)
    pp = import_pecanpy()
    nodes, _, _, _ = nv.graph_to_csr(graph, weight)  # validates weights
    adj = nx.to_numpy_array(graph, nodelist=nodes, weight=weight, dtype=np.float64)
    g = pp.SparseOTF.from_mat(adj, [str(i) for i in range(len(nodes))], p=p, q=q, workers=workers, extend=extend,
                              gamma=gamma, random_state=seed)
    return nodes, g


def walks_pecanpy(graph: nx.Graph, num_walks: int = 10, walk_length: int = 20, p: float = 1, q: float = 1,
                  extend: bool = True, seed: int = 0, *, gamma: float = 0.0, weight: str = "weight",
                  workers: int = 1) -> list[list[Hashable]]:
    """pecanpy ``SparseOTF`` walks (lists of graph nodes), for comparison with :func:`walks`.

    ``workers``: numba threads for pecanpy's walk loop; pecanpy seeds each thread, so only ``workers=1`` (default)
    gives the same walks for the same seed.
    """
    nv._check_params(num_walks, walk_length, p, q)
    nodes, g = pecanpy_graph(graph, p, q, extend, seed, gamma, weight, workers)
    with _numba_threads(workers):
        walk_list = g.simulate_walks(num_walks, walk_length)
    return [[nodes[int(i)] for i in walk] for walk in walk_list]


def embed_pecanpy(graph: nx.Graph, dim: int = 32, num_walks: int = 10, walk_length: int = 20, p: float = 1,
                  q: float = 1, extend: bool = True, seed: int = 0, *, window: int = 10, epochs: int = 1,
                  gamma: float = 0.0, weight: str = "weight", workers: int = 1,
                  timings: dict | None = None) -> dict[Hashable, np.ndarray]:
    """Node2vec(+) embeddings with pecanpy: ``SparseOTF`` walks and pecanpy's word2vec step.

    The steps are those of pecanpy's ``Base.embed`` (``simulate_walks``, then gensim ``Word2Vec(walks,
    vector_size=dim, window=window, sg=1, min_count=0, workers=workers, epochs=epochs, seed=seed)``), spelled out
    here only so ``timings`` (if a dict is given: ``"walks"``, ``"skipgram"`` seconds) can split them.
    """
    nv._check_params(num_walks, walk_length, p, q)
    from gensim.models import Word2Vec

    t0 = time.perf_counter()
    nodes, g = pecanpy_graph(graph, p, q, extend, seed, gamma, weight, workers)
    if not nodes:
        return {}
    with _numba_threads(workers):
        walk_list = g.simulate_walks(num_walks, walk_length)
    t1 = time.perf_counter()
    w2v = Word2Vec(walk_list, vector_size=dim, window=window, sg=1, min_count=0, workers=workers, epochs=epochs,
                   seed=seed)
    vectors = w2v.wv[g.nodes]
    t2 = time.perf_counter()
    if timings is not None:
        timings["walks"], timings["skipgram"] = t1 - t0, t2 - t1
    return {n: vectors[i].copy() for i, n in enumerate(nodes)}
