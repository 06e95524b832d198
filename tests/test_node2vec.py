"""node2vec+ embeddings: pecanpy under numpy 2, the fast walks against pecanpy's (exactly and statistically),
determinism, embeddings that see communities, the 200-node matching-graph case. Uses the real pecanpy and gensim
(the references of tests/node2vec_references.py)."""

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hubselect.rank.graph import node2vec as nv
from hubselect.rank.graph.matching import build_matching_graph, dataset_node, model_node
from tests import node2vec_references as ref

REPO = Path(__file__).resolve().parents[1]


def _weighted_graph(n=10, prob=0.5, seed=3) -> nx.Graph:
    """A small connected graph with widely spread weights (every node2vec+ case occurs, see below)."""
    rng = np.random.default_rng(seed)
    g = nx.gnp_random_graph(n, prob, seed=seed)
    assert nx.is_connected(g)
    for u, v in g.edges:
        g[u][v]["weight"] = float(rng.lognormal(0.0, 1.0))
    return g


def _planted(seed=1) -> tuple[nx.Graph, dict]:
    g = nx.planted_partition_graph(2, 20, 0.5, 0.02, seed=seed)
    rng = np.random.default_rng(seed)
    for u, v in g.edges:
        g[u][v]["weight"] = float(rng.uniform(0.5, 1.5))
    return g, {n: n // 20 for n in g.nodes}


def _matching_graph(n_models=190, n_datasets=10, seed=0) -> nx.Graph:
    rng = np.random.default_rng(seed)
    models = [f"org/model-{i}" for i in range(n_models)]
    datasets = [f"dataset-{j}" for j in range(n_datasets)]
    recs = pd.DataFrame([(m, d, rng.uniform(5, 80)) for m in models for d in datasets],
                        columns=["model", "dataset", "score"])
    dist = pd.DataFrame([(a, b, rng.uniform(10, 200)) for i, a in enumerate(datasets) for b in datasets[i + 1:]],
                        columns=["dataset_a", "dataset_b", "distance"])
    target = datasets[-1]  # step 4: the target has dataset edges only
    return build_matching_graph(recs[recs["dataset"] != target], dist, False, models=models, datasets=datasets,
                                knn=5)


# ----------------------------------------------------------------------------------------------------------------------
# pecanpy under numpy >= 2
# ----------------------------------------------------------------------------------------------------------------------


def test_pecanpy_imports_under_numpy2_in_a_fresh_process():
    code = ("import numpy as np\n"
            "assert int(np.__version__.split('.')[0]) >= 2, np.__version__\n"
            "from tests.node2vec_references import import_pecanpy\n"
            "pp = import_pecanpy()\n"
            "assert hasattr(pp, 'SparseOTF')\n"
            "import pecanpy, nptyping\n"
            # the numpy-1 aliases were only there during the import
            "assert not any(hasattr(np, a) for a in ('bool8', 'float_', 'object0', 'int0', 'string_', 'str0'))\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ----------------------------------------------------------------------------------------------------------------------
# the transition rule, exactly
# ----------------------------------------------------------------------------------------------------------------------


def _case_counts(g: nx.Graph) -> Counter:
    """How often each node2vec+ case occurs over all (prev, cur, next) triples of g."""
    thr = {u: np.float32(np.array([w for _, _, w in g.edges(u, data="weight")], dtype=np.float32).mean())
           for u in g.nodes}
    w = lambda a, b: np.float32(g[a][b]["weight"])  # noqa: E731
    cases = Counter()
    for cur in g.nodes:
        for prev in g.neighbors(cur):
            for x in g.neighbors(cur):
                if x == prev:
                    cases["return"] += 1
                elif g.has_edge(prev, x) and w(prev, x) >= thr[x]:
                    cases["in"] += 1
                elif w(cur, x) < thr[cur]:
                    cases["out-noisy"] += 1
                elif g.has_edge(prev, x):
                    cases["out-loose"] += 1
                else:
                    cases["out"] += 1
    return cases


def test_transition_probabilities_equal_pecanpy_exactly():
    """Our walk kernel's transition distribution against pecanpy's own (prev, cur) -> next probability functions."""
    g = _weighted_graph()
    assert all(c > 0 for c in (_case_counts(g)[k] for k in ("return", "in", "out-noisy", "out-loose", "out")))
    for extend in (True, False):
        for p, q in [(1.0, 1.0), (0.5, 2.0), (2.0, 0.5), (0.25, 4.0)]:
            nodes, pg = ref.pecanpy_graph(g, p, q, extend, 0)
            ref_fn, thr = pg.setup_get_normalized_probs()
            for cur in g.nodes:
                ci = nodes.index(cur)
                nbrs = [nodes[i] for i in pg.indices[pg.indptr[ci]:pg.indptr[ci + 1]]]
                for prev in [None, *g.neighbors(cur)]:
                    pi = None if prev is None else np.uint32(nodes.index(prev))
                    theirs = ref_fn(pg.data, pg.indices, pg.indptr, p, q, np.uint32(ci), pi, thr)
                    ours = ref.transition_probabilities(g, prev, cur, p, q, extend)
                    assert list(ours) == nbrs
                    np.testing.assert_allclose([ours[n] for n in nbrs], theirs, rtol=1e-5, atol=1e-6)


def test_node2vec_plus_differs_from_node2vec_on_this_graph():
    g = _weighted_graph()
    diffs = [max(abs(a - b) for a, b in zip(ref.transition_probabilities(g, prev, cur, 1, 4, True).values(),
                                            ref.transition_probabilities(g, prev, cur, 1, 4, False).values()))
             for cur in g.nodes for prev in g.neighbors(cur)]
    assert max(diffs) > 0.1


# ----------------------------------------------------------------------------------------------------------------------
# the walks, statistically, against pecanpy's walks
# ----------------------------------------------------------------------------------------------------------------------


def _transitions(walk_list) -> dict:
    out = defaultdict(Counter)
    for walk in walk_list:
        for a, b, c in zip(walk, walk[1:], walk[2:]):
            out[(a, b)][c] += 1
    return out


def _pooled_chi2(tables) -> float:
    """p-value of the summed chi-square statistics of independent contingency tables."""
    stat = dof = 0
    for table in tables:
        table = np.asarray(table, dtype=float)
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            continue
        res = stats.chi2_contingency(table, correction=False)
        stat, dof = stat + res.statistic, dof + res.dof
    return float(stats.chi2.sf(stat, dof))


def _compare_walks(ours, theirs, min_count=200, positions=(2, 5, 10)):
    """p-values: next-step frequencies per (previous, current) pair, pooled over the pairs seen >= min_count times in
    both (valid: by the Markov property the steps taken from one (previous, current) state are independent draws);
    and, per walk position t, the frequencies of the node visited at step t (one node per walk, so independent
    samples; pooling visits over all positions of a walk would not be, and overstates the evidence)."""
    to, tt = _transitions(ours), _transitions(theirs)
    pairs = [k for k in to if to[k].total() >= min_count and tt[k].total() >= min_count]
    assert len(pairs) >= 20
    tables = []
    for k in pairs:
        nxt = sorted(set(to[k]) | set(tt[k]))
        tables.append([[to[k][n] for n in nxt], [tt[k][n] for n in nxt]])
    p_visits = []
    for t in positions:
        vo, vt = Counter(w[t] for w in ours), Counter(w[t] for w in theirs)
        nodes = sorted(set(vo) | set(vt))
        p_visits.append(_pooled_chi2([[[vo[n] for n in nodes], [vt[n] for n in nodes]]]))
    return _pooled_chi2(tables), min(p_visits)


@pytest.mark.parametrize("extend,p,q", [(True, 0.5, 2.0), (False, 2.0, 0.5)])
def test_walks_match_pecanpy_statistically(extend, p, q):
    g = _weighted_graph()
    kw = dict(num_walks=300, walk_length=10, p=p, q=q, extend=extend)
    ours = ref.walks(g, seed=11, **kw)
    theirs = ref.walks_pecanpy(g, seed=12, **kw)
    assert len(ours) == len(theirs) == 300 * g.number_of_nodes()
    p_next, p_visits = _compare_walks(ours, theirs)
    assert p_next > 1e-3 and p_visits > 1e-3, (p_next, p_visits)
    # the same comparison sees the other rule: the test has power
    other = ref.walks(g, seed=13, **{**kw, "extend": not extend})
    assert _compare_walks(other, theirs)[0] < 1e-6


def test_walk_shape_and_isolated_nodes():
    g = _weighted_graph()
    g.add_node("alone")
    ws = ref.walks(g, num_walks=3, walk_length=7, seed=0)
    assert len(ws) == 3 * g.number_of_nodes()
    assert Counter(w[0] for w in ws) == {n: 3 for n in g.nodes}
    for w in ws:
        if w[0] == "alone":
            assert w == ["alone"]
        else:
            assert len(w) == 8 and all(g.has_edge(a, b) for a, b in zip(w, w[1:]))


def test_fast_walks_and_embeddings_are_deterministic():
    g = _weighted_graph()
    assert ref.walks(g, seed=5, p=0.5, q=2) == ref.walks(g, seed=5, p=0.5, q=2)
    assert ref.walks(g, seed=5) != ref.walks(g, seed=6)
    for embed in (nv.embed, ref.embed_gensim):
        a, b = embed(g, seed=5), embed(g, seed=5)
        assert list(a) == list(g.nodes)
        assert all(np.array_equal(a[n], b[n]) for n in g.nodes)
        c = embed(g, seed=6)
        assert not all(np.array_equal(a[n], c[n]) for n in g.nodes)


# ----------------------------------------------------------------------------------------------------------------------
# embeddings
# ----------------------------------------------------------------------------------------------------------------------


def _community_separation(emb: dict, labels: dict) -> tuple[float, float]:
    nodes = list(labels)
    x = np.array([emb[n] for n in nodes], dtype=float)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    lab = np.array([labels[n] for n in nodes])
    sim = x @ x.T
    same = lab[:, None] == lab[None, :]
    np.fill_diagonal(same, False)
    margin = sim[same].mean() - sim[lab[:, None] != lab[None, :]].mean()
    centroids = np.array([x[lab == k].mean(axis=0) for k in (0, 1)])
    accuracy = float(((x @ centroids.T).argmax(axis=1) == lab).mean())
    return float(margin), accuracy


@pytest.mark.parametrize("impl", ["fast", "fast-gensim", "pecanpy"])
def test_embeddings_separate_planted_communities(impl):
    g, labels = _planted()
    kw = dict(dim=16, num_walks=10, walk_length=20, p=1, q=1, extend=True, seed=1)
    emb = {"fast": nv.embed, "fast-gensim": ref.embed_gensim, "pecanpy": ref.embed_pecanpy}[impl](g, **kw)
    assert set(emb) == set(g.nodes) and all(v.shape == (16,) for v in emb.values())
    margin, accuracy = _community_separation(emb, labels)
    assert margin > 0.005 and accuracy >= 0.9, (margin, accuracy)


def test_matching_graph_200_nodes_both_implementations():
    g = _matching_graph()
    assert g.number_of_nodes() == 200
    target = dataset_node("dataset-9")
    assert all(n.startswith("dataset:") for n in g.neighbors(target))
    timings = {}
    fast = nv.embed(g, dim=32, timings=timings)
    reference = ref.embed_pecanpy(g, dim=32)
    assert set(timings) == {"walks", "skipgram"}
    for emb in (fast, reference):
        assert list(emb) == list(g.nodes)
        assert all(v.shape == (32,) and v.dtype == np.float32 and np.all(np.isfinite(v)) for v in emb.values())
    # an edge embedding (the paper's element-wise product) exists for the target and every model, although the
    # graph has no such edge
    for m in (model_node("org/model-0"), model_node("org/model-189")):
        assert (fast[m] * fast[target]).shape == (32,)
        assert np.array_equal(fast[m] * fast[target], fast[target] * fast[m])


def test_bad_weights_are_rejected():
    g = nx.Graph()
    g.add_edge("a", "b", weight=0.0)
    with pytest.raises(ValueError):
        nv.embed(g)
    with pytest.raises(ValueError):
        nv.embed(nx.path_graph(3), p=0)
