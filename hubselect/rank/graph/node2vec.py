"""Node2vec+ node embeddings of a weighted undirected graph (the paper's §4.4, Liu et al. 2023).

pecanpy's node2vec+ walk rule and gensim's skip-gram, as numba kernels compiled once per process (and cached on disk,
``cache=True``) that take a graph as plain CSR arrays, so a new graph costs no compilation: tens of milliseconds per
200-node graph once warm, where pecanpy takes about 4 s per NEW graph object, most of it numba recompiling its walk
kernels, which are closures over each graph's arrays (``benchmarks/node2vec_bench.py``). The tests compare the walks
with pecanpy's and the skip-gram with gensim's (``tests/node2vec_references.py``, the test extra).

Needs numba, which comes with the ``graph`` extra (``pip install 'hubselect[graph]'``); without it, importing this
module raises a one-line :class:`~hubselect.errors.UserError` that says so. The default selector does not use
node2vec+ (``MatchAndChoose(use_graph=True)`` and the paper's preset do).

Walks
-----
A walk starts at a node, takes ONE first-order step (probability proportional to the edge weight), then
``walk_length - 1`` second-order steps, so a walk has ``walk_length + 1`` nodes (as pecanpy's). A walk from an
isolated node is that node alone. At current node ``v`` coming from ``t``, the unnormalised probability of moving to
a neighbour ``x`` is ``w(v, x) * bias``:

* node2vec (``extend=False``): ``bias = 1/p`` if ``x == t``; ``1`` if ``x`` is a neighbour of ``t``; ``1/q`` otherwise.
* node2vec+ (``extend=True``): with ``thr(u) = max(mean(w(u, .)) + gamma * std(w(u, .)), 0)`` (pecanpy's "noise
  threshold", float32 numpy mean/std of the node's edge weights; ``gamma=0`` by default, i.e. the average edge
  weight): ``x == t`` gives ``1/p``; an "in" edge (``x`` a neighbour of ``t`` with ``w(t, x) >= thr(x)``, a strong
  connection) gives ``1``; any other ``x`` is "out", with ``t_x = w(t, x) / thr(x)`` (0 when ``x`` is not a
  neighbour of ``t``) and ``bias = 1/q + (1 - 1/q) * t_x`` (interpolating from 1/q for a loose connection to 1),
  except that a noisy edge, ``w(v, x) < thr(v)``, gets ``bias = min(1, 1/q)``.

Weights are compared in float32, as pecanpy stores them, so the in/out classification is the same bit for bit.

Determinism
-----------
:func:`embed` is deterministic for a given ``seed``, graph and node order (``list(graph.nodes)``): every walk draws
from its own splitmix64 stream seeded by ``(seed, walk index)`` (so walks would not depend on how they were split
across threads either), and the skip-gram is a single-threaded numba loop with its own seeded generator. Nothing needs
``workers=1`` or ``PYTHONHASHSEED``. Bit-identical results are guaranteed on the same machine and numba build; across
CPUs only floating-point rounding can differ.

Skip-gram
---------
Our own implementation of word2vec's skip-gram with negative sampling, with gensim's defaults and learning-rate
schedule, so it can stand in for pecanpy's word2vec step: frequent-token down-sampling (``sample=1e-3``), a random
reduced window per centre token (``window=10``), ``negative=5`` negatives drawn from counts^0.75 (a negative equal
to the positive is skipped), the rate decaying linearly from ``alpha=0.025`` to ``min_alpha=1e-4`` over all epochs
and fixed within batches of ``batch_words=10000`` raw tokens (with a corpus under 10000 tokens, one epoch runs at
0.025 throughout, as in gensim), input vectors initialised uniform in ``[-1/dim, 1/dim)``, output vectors at 0,
saturated pairs (``|u·v| >= 6``) skipped, exact sigmoid instead of gensim's table. The embedding is the input
vector.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

import networkx as nx
import numpy as np

from hubselect.errors import UserError

try:
    import numba
except ImportError:
    raise UserError("node2vec+ needs the graph extra: pip install 'hubselect[graph]'") from None

__all__ = ["graph_to_csr", "embed"]


# ----------------------------------------------------------------------------------------------------------------------
# Graph -> CSR
# ----------------------------------------------------------------------------------------------------------------------


def graph_to_csr(graph: nx.Graph, weight: str = "weight") -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """``(nodes, indptr, indices, data)`` of an undirected weighted graph.

    ``nodes`` is ``list(graph.nodes)`` (row ``i`` is ``nodes[i]``); each row's neighbour indices are sorted; ``data``
    is float32 (as pecanpy stores weights). A missing ``weight`` attribute counts as 1. Weights must be positive and
    finite. ``indptr``/``indices`` are int64.
    """
    if graph.is_directed():
        raise ValueError("node2vec here is for undirected graphs")
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    m = graph.number_of_edges()
    u = np.empty(m, dtype=np.int64)
    v = np.empty(m, dtype=np.int64)
    w = np.empty(m, dtype=np.float64)
    for k, (a, b, x) in enumerate(graph.edges(data=weight, default=1.0)):
        u[k], v[k], w[k] = index[a], index[b], x
    if m and not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise ValueError(f"edge attribute {weight!r} must be positive and finite for node2vec")
    loop = u == v
    rows = np.concatenate([u, v[~loop]])
    cols = np.concatenate([v, u[~loop]])
    vals = np.concatenate([w, w[~loop]]).astype(np.float32)
    order = np.lexsort((cols, rows))
    indptr = np.zeros(len(nodes) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(nodes)), out=indptr[1:])
    return nodes, indptr, cols[order].astype(np.int64), vals[order]


def _noise_thresholds(indptr: np.ndarray, data: np.ndarray, gamma: float) -> np.ndarray:
    """node2vec+'s per-node threshold, computed with the same float32 numpy reductions as pecanpy."""
    n = indptr.size - 1
    thr = np.zeros(n, dtype=np.float32)
    for i in range(n):
        row = data[indptr[i]:indptr[i + 1]]
        if row.size:
            thr[i] = row.mean() + gamma * row.std() if gamma else row.mean()
    return np.maximum(thr, 0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# numba kernels (compiled once per process, cached on disk when a cache directory is writable)
# ----------------------------------------------------------------------------------------------------------------------


def _jit(**kwargs):
    def deco(fn):
        try:
            return numba.njit(cache=True, **kwargs)(fn)
        except RuntimeError:  # no writable cache location: compile per process instead
            return numba.njit(**kwargs)(fn)
    return deco


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@_jit(nogil=True)
def _mix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@_jit(nogil=True)
def _stream_seed(seed, stream):
    """Initial splitmix64 state of stream ``stream`` of generator ``seed``."""
    return _mix64(_mix64(np.uint64(seed) + _GOLDEN) ^ (np.uint64(stream) * _GOLDEN + np.uint64(1)))


@_jit(nogil=True)
def _uniform(state):
    """(u in [0, 1), new state)."""
    state = state + _GOLDEN
    return (_mix64(state) >> _S11) * _INV53, state


@_jit(nogil=True)
def _transition_cdf(indptr, indices, data, thr, cur, prev, inv_p, inv_q, extend, cdf):
    """Cumulative unnormalised probabilities of moving from ``cur`` to each of its neighbours (in CSR order) into
    ``cdf``; returns the total. ``prev < 0``: first-order step (proportional to the weight)."""
    s, e = indptr[cur], indptr[cur + 1]
    total = 0.0
    if prev < 0:
        for k in range(s, e):
            total += data[k]
            cdf[k - s] = total
        return total
    ps, pe = indptr[prev], indptr[prev + 1]
    j = ps  # merge pointer into prev's sorted neighbours
    thr_cur = thr[cur]
    noisy_bias = min(1.0, inv_q)
    for k in range(s, e):
        x = indices[k]
        wx = data[k]
        while j < pe and indices[j] < x:
            j += 1
        if x == prev:  # return
            bias = inv_p
        elif j < pe and indices[j] == x:  # x is also a neighbour of prev
            if not extend or data[j] >= thr[x]:  # node2vec: in edge; node2vec+: strong connection, in edge
                bias = 1.0
            elif wx < thr_cur:  # node2vec+: out edge (loose connection) over a noisy edge
                bias = noisy_bias
            else:  # node2vec+: out edge, loose connection
                bias = inv_q + (1.0 - inv_q) * (np.float32(data[j]) / np.float32(thr[x]))
        elif extend and wx < thr_cur:  # node2vec+: out edge over a noisy edge
            bias = noisy_bias
        else:  # out edge
            bias = inv_q
        total += wx * bias
        cdf[k - s] = total
    return total


@_jit(nogil=True)
def _walk_kernel(indptr, indices, data, thr, starts, walk_length, p, q, extend, seed):
    """Walks from ``starts``: (walks[n_walks, walk_length + 1] int32 node indices, lengths int32)."""
    n_walks = starts.size
    out = np.zeros((n_walks, walk_length + 1), dtype=np.int32)
    lengths = np.ones(n_walks, dtype=np.int32)
    max_deg = 1
    for i in range(indptr.size - 1):
        max_deg = max(max_deg, indptr[i + 1] - indptr[i])
    cdf = np.empty(max_deg, dtype=np.float64)
    inv_p = 1.0 / p
    inv_q = 1.0 / q
    for w in range(n_walks):
        state = _stream_seed(seed, w)
        cur = starts[w]
        prev = -1
        out[w, 0] = cur
        if indptr[cur] == indptr[cur + 1]:
            continue  # isolated node: a walk of one node
        for step in range(1, walk_length + 1):
            total = _transition_cdf(indptr, indices, data, thr, cur, prev, inv_p, inv_q, extend, cdf)
            u, state = _uniform(state)
            r = u * total
            deg = indptr[cur + 1] - indptr[cur]
            k = 0
            while k < deg - 1 and cdf[k] <= r:
                k += 1
            prev = cur
            cur = indices[indptr[prev] + k]
            out[w, step] = cur
        lengths[w] = walk_length + 1
    return out, lengths


@_jit(nogil=True)
def _sgns_kernel(walks, lengths, n_nodes, dim, window, negative, alpha, min_alpha, sample, ns_exponent, epochs, seed,
                 batch_words):
    """Skip-gram with negative sampling over the walks; returns the input vectors (n_nodes, dim) float32."""
    state = _stream_seed(seed, 0x5EED)
    counts = np.zeros(n_nodes, dtype=np.float64)
    total_words = 0
    for w in range(walks.shape[0]):
        for i in range(lengths[w]):
            counts[walks[w, i]] += 1.0
        total_words += lengths[w]
    # down-sampling of frequent tokens (word2vec / gensim formula)
    keep = np.ones(n_nodes, dtype=np.float64)
    if sample > 0:
        threshold = sample * total_words
        for v in range(n_nodes):
            if counts[v] > 0:
                keep[v] = min(1.0, (np.sqrt(counts[v] / threshold) + 1.0) * threshold / counts[v])
    # unigram^ns_exponent table for negatives
    neg_cdf = np.zeros(n_nodes, dtype=np.float64)
    acc = 0.0
    for v in range(n_nodes):
        if counts[v] > 0:
            acc += counts[v] ** ns_exponent
        neg_cdf[v] = acc
    syn0 = np.empty((n_nodes, dim), dtype=np.float32)
    for v in range(n_nodes):
        for d in range(dim):
            u, state = _uniform(state)
            syn0[v, d] = np.float32((2.0 * u - 1.0) / dim)
    syn1 = np.zeros((n_nodes, dim), dtype=np.float32)
    neu1e = np.zeros(dim, dtype=np.float32)
    sent = np.empty(walks.shape[1], dtype=np.int32)
    for epoch in range(epochs):
        # gensim's schedule: the rate is fixed per batch of <= batch_words raw tokens, set from the progress at the
        # start of the batch, decaying linearly over all epochs
        pushed = 0
        batch = 0
        lr32 = np.float32(alpha - (alpha - min_alpha) * epoch / epochs)
        for w in range(walks.shape[0]):
            if batch + lengths[w] > batch_words and batch > 0:
                pushed += batch
                batch = 0
                lr = alpha - (alpha - min_alpha) * (epoch + pushed / max(1, total_words)) / epochs
                lr32 = np.float32(max(min_alpha, lr))
            batch += lengths[w]
            n = 0
            for i in range(lengths[w]):
                v = walks[w, i]
                if keep[v] < 1.0:
                    u, state = _uniform(state)
                    if u >= keep[v]:
                        continue
                sent[n] = v
                n += 1
            for i in range(n):
                u, state = _uniform(state)
                b = int(u * window)
                lo = max(0, i - window + b)
                hi = min(n, i + window + 1 - b)
                target = sent[i]
                for c in range(lo, hi):
                    if c == i:
                        continue
                    ctx = sent[c]
                    for d in range(dim):
                        neu1e[d] = 0.0
                    for s in range(negative + 1):
                        if s == 0:
                            out_word = target
                            label = np.float32(1.0)
                        else:
                            u, state = _uniform(state)
                            out_word = np.searchsorted(neg_cdf, u * acc, side="right")
                            if out_word >= n_nodes:
                                out_word = n_nodes - 1
                            if out_word == target:
                                continue
                            label = np.float32(0.0)
                        f = np.float32(0.0)
                        for d in range(dim):
                            f += syn0[ctx, d] * syn1[out_word, d]
                        if f <= -6.0 or f >= 6.0:
                            continue
                        g = (label - np.float32(1.0) / (np.float32(1.0) + np.exp(-f))) * lr32
                        for d in range(dim):
                            neu1e[d] += g * syn1[out_word, d]
                            syn1[out_word, d] += g * syn0[ctx, d]
                    for d in range(dim):
                        syn0[ctx, d] += neu1e[d]
    return syn0


# ----------------------------------------------------------------------------------------------------------------------
# Walks and embeddings
# ----------------------------------------------------------------------------------------------------------------------


def _check_params(num_walks: int, walk_length: int, p: float, q: float) -> None:
    if num_walks < 1 or walk_length < 1:
        raise ValueError("num_walks and walk_length must be >= 1")
    if not (p > 0 and q > 0):
        raise ValueError("p and q must be positive")


def _walk_arrays(graph: nx.Graph, num_walks: int, walk_length: int, p: float, q: float, extend: bool, seed: int,
                 gamma: float, weight: str):
    _check_params(num_walks, walk_length, p, q)
    nodes, indptr, indices, data = graph_to_csr(graph, weight)
    thr = _noise_thresholds(indptr, data, gamma) if extend else np.zeros(len(nodes), dtype=np.float32)
    # start nodes: each node num_walks times, shuffled (as pecanpy) so the skip-gram sees a mixed corpus
    starts = np.tile(np.arange(len(nodes), dtype=np.int64), num_walks)
    np.random.default_rng(seed & 0xFFFFFFFFFFFFFFFF).shuffle(starts)
    mat, lengths = _walk_kernel(indptr, indices, data, thr, starts, int(walk_length), float(p), float(q),
                                bool(extend), np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
    return nodes, mat, lengths


def embed(graph: nx.Graph, dim: int = 32, num_walks: int = 10, walk_length: int = 20, p: float = 1, q: float = 1,
          extend: bool = True, seed: int = 0, *, window: int = 10, epochs: int = 1, negative: int = 5,
          alpha: float = 0.025, min_alpha: float = 0.0001, sample: float = 1e-3, ns_exponent: float = 0.75,
          batch_words: int = 10000, gamma: float = 0.0, weight: str = "weight",
          timings: dict | None = None) -> dict[Hashable, np.ndarray]:
    """Node2vec(+) embeddings, ``{node: float32 vector of length dim}``; fast and deterministic for a given seed.

    Same walk rule and defaults as pecanpy's ``embed`` (window 10, one epoch).
    ``timings``: if a dict is given, ``"walks"`` and ``"skipgram"`` seconds are stored in it.
    """
    t0 = time.perf_counter()
    nodes, mat, lengths = _walk_arrays(graph, num_walks, walk_length, p, q, extend, seed, gamma, weight)
    t1 = time.perf_counter()
    if nodes:
        vectors = _sgns_kernel(mat, lengths, len(nodes), int(dim), int(window), int(negative), float(alpha),
                               float(min_alpha), float(sample), float(ns_exponent), int(epochs),
                               np.uint64(seed & 0xFFFFFFFFFFFFFFFF), int(batch_words))
    else:
        vectors = np.zeros((0, dim), dtype=np.float32)
    t2 = time.perf_counter()
    if timings is not None:
        timings["walks"], timings["skipgram"] = t1 - t0, t2 - t1
    return {n: vectors[i].copy() for i, n in enumerate(nodes)}
