"""hubselect.evaluate.metrics: hand-checked cases in both metric directions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from hubselect.evaluate import metrics as M

ACC = pd.Series({"a": 0.9, "b": 0.8, "c": 0.7})        # higher is better
FID = pd.Series({"a": 10.0, "b": 20.0, "c": 30.0})     # lower is better, same order: a best


def orders(models):
    return [list(p) for p in itertools.permutations(models)]


# -- goodness -------------------------------------------------------------------------------------

def test_goodness_directions():
    assert M.goodness(0.7, True) == 0.7
    assert M.goodness(30.0, False) == -30.0
    np.testing.assert_array_equal(M.goodness([1, 2], False), [-1.0, -2.0])
    s = M.goodness(FID, False)
    assert isinstance(s, pd.Series) and list(s.index) == ["a", "b", "c"]
    assert s.idxmax() == "a"


# -- one dataset, by hand -------------------------------------------------------------------------

def test_hand_values_accuracy_and_fid():
    order = ["b", "a", "c"]   # selects b, true best is a, reference a
    assert not M.top_hit(ACC, order, True)
    assert not M.top_hit(FID, order, False)
    assert M.o2o(ACC, order, True) == pytest.approx(0.1)
    assert M.o2o(FID, order, False) == pytest.approx(10.0)        # FID(b) - FID(a)
    assert M.o2b(ACC, order, "a", True) == pytest.approx(0.1)     # worse than the reference
    assert M.o2b(FID, order, "a", False) == pytest.approx(10.0)
    assert M.o2b(ACC, order, "c", True) == pytest.approx(-0.1)    # beats the reference
    assert M.o2b(FID, order, "c", False) == pytest.approx(-10.0)
    # weighted tau by hand: weights 1/(r+1) by true rank a=0, b=1, c=2; only (a, b) discordant.
    # numerator = sum over pairs of ±(w_i + w_j); denominator = sum over pairs of (w_i + w_j)
    w = [1.0, 1 / 2, 1 / 3]
    tot = (w[0] + w[1]) + (w[0] + w[2]) + (w[1] + w[2])
    expected = (tot - 2 * (w[0] + w[1])) / tot
    assert M.weighted_tau(ACC, order, True) == pytest.approx(expected)
    assert M.weighted_tau(FID, order, False) == pytest.approx(expected)


@pytest.mark.parametrize("order", orders("abc"))
def test_both_directions_agree_for_every_order(order):
    assert M.top_hit(ACC, order, True) == M.top_hit(FID, order, False)
    assert M.weighted_tau(ACC, order, True) == pytest.approx(M.weighted_tau(FID, order, False))
    # same sign, scale 100 (FID = 100 * (1 - acc))
    assert 100 * M.o2o(ACC, order, True) == pytest.approx(M.o2o(FID, order, False))
    assert 100 * M.o2b(ACC, order, "b", True) == pytest.approx(M.o2b(FID, order, "b", False))
    # mirrored scores give identical rows
    row_hib = M.evaluate(ACC, order, True, reference_model="b")
    row_lib = M.evaluate(-ACC, order, False, reference_model="b")
    assert row_hib["hit"] == row_lib["hit"]
    for k in ("top3", "weighted_tau", "weighted_tau_avg", "o2o", "o2b", "regret"):
        assert row_hib[k] == pytest.approx(row_lib[k])
    # the unit-free metrics do not change with the scale of the scores either
    row_fid = M.evaluate(FID, order, False, reference_model="b")
    for k in ("hit", "top3", "weighted_tau", "weighted_tau_avg", "regret"):
        assert row_hib[k] == pytest.approx(row_fid[k])


def test_ties_count_as_hits():
    true = pd.Series({"a": 0.8, "b": 0.8, "c": 0.5})
    assert M.top_hit(true, ["a", "b", "c"], True)
    assert M.top_hit(true, ["b", "a", "c"], True)
    assert not M.top_hit(true, ["c", "a", "b"], True)
    fid = pd.Series({"a": 12.0, "b": 12.0 * (1 + 1e-14), "c": 15.0})   # within relative 1e-12
    assert M.top_hit(fid, ["b", "c", "a"], False)
    assert M.o2o(fid, ["b", "c", "a"], False) == 0.0
    fid2 = pd.Series({"a": 12.0, "b": 12.0 * (1 + 1e-9), "c": 15.0})   # not a tie
    assert not M.top_hit(fid2, ["b", "c", "a"], False)


def test_perfect_and_reversed_tau():
    true = pd.Series({m: float(i) for i, m in enumerate("abcdefg")})   # g best (higher is better)
    best_first = list("gfedcba")
    assert M.weighted_tau(true, best_first, True) == pytest.approx(1.0)
    assert M.weighted_tau(true, best_first[::-1], True) == pytest.approx(-1.0)
    fid = pd.Series({m: float(i) for i, m in enumerate("abcdefg")})    # a best (lower is better)
    assert M.weighted_tau(fid, list("abcdefg"), False) == pytest.approx(1.0)
    assert M.weighted_tau(fid, list("gfedcba"), False) == pytest.approx(-1.0)


@pytest.mark.parametrize("rank_by", ["true", "predicted", "average"])
def test_swap_at_top_costs_more_than_swap_at_bottom(rank_by):
    true = pd.Series({"a": 50.0, "b": 40.0, "c": 30.0, "d": 20.0, "e": 10.0})
    top = M.weighted_tau(true, list("bacde"), True, rank_by=rank_by)
    bottom = M.weighted_tau(true, list("abced"), True, rank_by=rank_by)
    assert top < bottom < 1.0


def test_weights_follow_the_true_ranking():
    # with rank_by="true", a discordant pair costs the weights of its TRUE ranks: moving the true
    # worst model to the top costs less than moving the true best to the bottom.
    true = pd.Series({"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0})
    worst_first = M.weighted_tau(true, list("dabc"), True)   # d (true rank 3) discordant with a,b,c
    best_last = M.weighted_tau(true, list("bcda"), True)     # a (true rank 0) discordant with b,c,d
    assert worst_first > best_last
    # weighting by the predicted ranking flips it: what the method puts on top weighs most
    assert M.weighted_tau(true, list("dabc"), True, rank_by="predicted") < \
        M.weighted_tau(true, list("bcda"), True, rank_by="predicted")


@pytest.mark.parametrize("order", orders("abcd"))
def test_o2o_zero_iff_hit(order):
    true = pd.Series({"a": 3.0, "b": 3.0, "c": 2.0, "d": 1.0})
    hit = M.top_hit(true, order, True)
    loss = M.o2o(true, order, True)
    assert loss >= 0.0
    assert (loss == 0.0) == hit


def test_o2b_sign_and_reference_selected():
    fid = pd.Series({"x": 5.0, "y": 7.0, "z": 9.0})
    assert M.o2b(fid, ["x", "y", "z"], "y", False) < 0      # selected x beats reference y
    assert M.o2b(fid, ["z", "y", "x"], "y", False) > 0
    assert M.o2b(fid, ["y", "x", "z"], "y", False) == 0.0   # always picking the reference: 0


def test_o2b_nan_when_reference_unscored():
    assert math.isnan(M.o2b(ACC, ["a", "b", "c"], "zzz", True))
    assert math.isnan(M.evaluate(ACC, ["a"], True, reference_model=None)["o2b"])


def test_predicted_order_restricted_to_scored_models():
    true = pd.Series({"a": 0.9, "b": 0.8, "c": 0.7, "d": np.nan})   # d unscored (NaN)
    padded = ["x", "d", "b", "y", "a", "b", "c", "z"]               # x, y, z unknown; b repeated
    assert M.evaluate(true, padded, True, "a") == M.evaluate(true, ["b", "a", "c"], True, "a")
    assert M.top_hit(true, ["x", "d", "a"], True)            # unscored models cannot be selected
    assert M.o2o(true, ["d", "c"], True) == pytest.approx(0.2)


def test_unranked_scored_models_tie_last():
    true = pd.Series({"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0})
    partial = M.weighted_tau(true, ["a", "b"], True)
    # c and d tie at the bottom of the prediction: only their mutual order is unknown
    assert M.weighted_tau(true, ["a", "b", "c", "d"], True) > partial
    assert partial > M.weighted_tau(true, ["a", "b", "d", "c"], True)


def test_nan_and_error_handling():
    one = pd.Series({"a": 1.0, "b": np.nan})
    assert math.isnan(M.weighted_tau(one, ["a", "b"], True))       # < 2 scored models
    row = M.evaluate(one, ["b", "a"], True, reference_model="a")
    assert set(row) == set(M.ROW_KEYS)
    assert {k: row[k] for k in ("hit", "top3", "o2o", "o2b", "regret")} == \
        {"hit": True, "top3": True, "o2o": 0.0, "o2b": 0.0, "regret": 0.0}
    assert math.isnan(row["weighted_tau"]) and math.isnan(row["weighted_tau_avg"])
    tied = pd.Series({"a": 1.0, "b": 1.0, "c": 1.0})
    assert math.isnan(M.weighted_tau(tied, ["a", "b", "c"], True))  # all tied: undefined
    with pytest.raises(ValueError):
        M.top_hit(ACC, ["x", "y"], True)                   # ranks none of the scored models
    with pytest.raises(ValueError):
        M.top_hit(pd.Series(dtype=float), ["a"], True)     # nothing scored
    with pytest.raises(ValueError):
        M.weighted_tau(ACC, ["a"], True, rank_by="bogus")
    with pytest.raises(TypeError):
        M.top_hit(ACC, "abc", True)


# -- top-3 hit, regret, τ with the averaged weighting ---------------------------------------------

FIVE = pd.Series({"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0, "e": 1.0})     # a best (higher is better)


def test_top3_hand_cases():
    assert M.top3_hit(FIVE, list("bcade"), True)           # a third
    assert not M.top3_hit(FIVE, list("bcdae"), True)       # a fourth
    assert M.top3_hit(FIVE, list("abcde"), True)
    # only scored models count: x, y are unknown, so the first three are b, c, d
    assert not M.top3_hit(FIVE, ["x", "b", "y", "c", "d", "a"], True)
    assert M.top3_hit(FIVE, ["x", "b", "y", "a"], True)
    # a best model left out of the order is never in the top 3, however short the order
    assert not M.top3_hit(FIVE, ["c", "d"], True)
    # lower is better: the same decision on the mirrored FIDs
    fid = 10.0 - FIVE
    assert M.top3_hit(fid, list("bcade"), False) and not M.top3_hit(fid, list("bcdae"), False)
    # three or fewer scored models: ranking all of them always hits
    assert M.top3_hit(ACC, ["c", "b", "a"], True)


def test_top3_ties_with_the_best_are_hits():
    tied = pd.Series({"a": 5.0, "b": 5.0, "c": 3.0, "d": 2.0, "e": 1.0})
    assert M.top3_hit(tied, list("cdbae"), True)           # b ties with the best, third
    assert not M.top3_hit(tied, list("cdeab"), True)
    near = pd.Series({"a": 12.0, "b": 12.0 * (1 + 1e-14), "c": 15.0, "d": 16.0, "e": 17.0})   # FID
    assert M.top3_hit(near, list("cdbea"), False)          # b within relative 1e-12 of the best
    row = M.evaluate(tied, list("cdbae"), True)
    assert row["top3"] is True and row["hit"] is False


def test_regret_hand_cases():
    acc = pd.Series({"a": 0.9, "b": 0.8, "c": 0.5})
    assert M.regret(acc, ["a", "b", "c"], True) == 0.0
    assert M.regret(acc, ["b", "a", "c"], True) == pytest.approx(0.1 / 0.4)
    assert M.regret(acc, ["c", "a", "b"], True) == pytest.approx(1.0)
    fid = pd.Series({"a": 10.0, "b": 20.0, "c": 50.0})
    assert M.regret(fid, ["b", "c", "a"], False) == pytest.approx(10 / 40)
    assert M.regret(fid, ["c"], False) == pytest.approx(1.0)
    # ties: a model tied with the best has no regret; all tied: 0, not 0/0
    assert M.regret(pd.Series({"a": 3.0, "b": 3.0, "c": 1.0}), ["b", "c"], True) == 0.0
    assert M.regret(pd.Series({"a": 1.0, "b": 1.0}), ["b", "a"], True) == 0.0
    # regret is O2O over the spread
    row = M.evaluate(acc, ["b", "a", "c"], True)
    assert row["regret"] == pytest.approx(row["o2o"] / (0.9 - 0.5))


def test_weighted_tau_avg_by_hand():
    true = pd.Series({"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0})
    order = list("dabc")           # the true worst put first: pairs (d, a), (d, b), (d, c) discordant
    w = {r: 1 / (r + 1) for r in range(4)}
    total = 3 * sum(w.values())    # every model is in 3 pairs; a pair weighs w(r_i) + w(r_j)
    true_rank = {"a": 0, "b": 1, "c": 2, "d": 3}
    pred_rank = {"d": 0, "a": 1, "b": 2, "c": 3}
    disc = [("d", "a"), ("d", "b"), ("d", "c")]
    by_true = (total - 2 * sum(w[true_rank[i]] + w[true_rank[j]] for i, j in disc)) / total
    by_pred = (total - 2 * sum(w[pred_rank[i]] + w[pred_rank[j]] for i, j in disc)) / total
    assert M.weighted_tau(true, order, True) == pytest.approx(by_true)                  # 0.1733
    assert M.weighted_tau(true, order, True, rank_by="predicted") == pytest.approx(by_pred)  # -0.3067
    row = M.evaluate(true, order, True)
    assert row["weighted_tau"] == pytest.approx(by_true)
    assert row["weighted_tau_avg"] == pytest.approx((by_true + by_pred) / 2)
    assert row["weighted_tau_avg"] == pytest.approx(M.weighted_tau(true, order, True, rank_by="average"))
    # evaluate's rank_by changes only weighted_tau; weighted_tau_avg is always the average
    pred_row = M.evaluate(true, order, True, rank_by="predicted")
    assert pred_row["weighted_tau"] == pytest.approx(by_pred)
    assert pred_row["weighted_tau_avg"] == pytest.approx(row["weighted_tau_avg"])


# -- reference model ------------------------------------------------------------------------------

def _records(rows):
    return pd.DataFrame(rows, columns=["model", "dataset", "score"])


def test_best_on_average_uses_normalised_ranks_not_raw_means():
    # raw mean FID favours m1 (dataset d2 has a huge scale), but m2 is better on two of three
    rec = _records([
        ("m1", "d1", 10.0), ("m2", "d1", 9.0), ("m3", "d1", 11.0),
        ("m1", "d2", 100.0), ("m2", "d2", 400.0), ("m3", "d2", 500.0),
        ("m1", "d3", 5.0), ("m2", "d3", 4.0), ("m3", "d3", 6.0),
    ])
    assert M.best_on_average(rec, higher_is_better=False) == "m2"
    # the same in accuracy orientation (negated scores)
    acc = rec.assign(score=-rec["score"])
    assert M.best_on_average(acc, higher_is_better=True) == "m2"
    ranking = M.mean_normalized_rank(rec, False)
    assert list(ranking.index) == ["m2", "m1", "m3"]
    assert ranking["m2"] == pytest.approx((0 + 0.5 + 0) / 3)
    assert M.average_ranking(rec, False) == ["m2", "m1", "m3"]


def test_best_on_average_ties_by_name_and_sparse_records():
    rec = _records([
        ("b", "d1", 1.0), ("a", "d1", 2.0),      # b best on d1
        ("a", "d2", 1.0), ("b", "d2", 2.0),      # a best on d2 -> tie, a by name
        ("c", "d3", 0.0),                        # d3 has one model: no ranking information
    ])
    assert M.best_on_average(rec, higher_is_better=False) == "a"
    assert M.average_ranking(rec, False) == ["a", "b", "c"]      # c has no rank: last
    with pytest.raises(ValueError):
        M.best_on_average(_records([("a", "d1", 1.0), ("b", "d2", 2.0)]), False)


# -- random baseline ------------------------------------------------------------------------------

def _brute_force(true, hib, ref):
    rows = [M.evaluate(true, list(p), hib, reference_model=ref) for p in itertools.permutations(true.index)]
    return {k: float(np.mean([r[k] for r in rows])) for k in M.ROW_KEYS}


@pytest.mark.parametrize("hib", [True, False])
def test_random_expectation_matches_brute_force_n4(hib):
    true = pd.Series({"a": 3.0, "b": 1.5, "c": 1.5, "d": 0.2})
    exp = M.random_expectation(true, hib, reference_model="b", n_draws=200, seed=1)
    brute = _brute_force(true, hib, "b")
    assert set(exp) == set(M.ROW_KEYS)
    for k in M.ROW_KEYS:
        assert exp[k] == pytest.approx(brute[k], abs=1e-12), k


def test_random_expectation_with_tied_best_and_closed_forms():
    true = pd.Series({"a": 10.0, "b": 10.0, "c": 20.0, "d": 40.0})   # FID: a, b tie for best
    exp = M.random_expectation(true, False, reference_model="c")
    assert exp["hit"] == pytest.approx(2 / 4)
    assert exp["o2o"] == pytest.approx((0 + 0 + 10 + 30) / 4)
    # O2B for FID = FID(selected) - FID(reference)
    assert exp["o2b"] == pytest.approx(((10 - 20) + (10 - 20) + (20 - 20) + (40 - 20)) / 4)
    brute = _brute_force(true, False, "c")
    for k in M.ROW_KEYS:
        assert exp[k] == pytest.approx(brute[k], abs=1e-12), k


@pytest.mark.parametrize("true,top3", [
    (FIVE, 3 / 5),                                                        # one best: 3 of 5 places
    (pd.Series({"a": 5.0, "b": 5.0, "c": 3.0, "d": 2.0, "e": 1.0}), 0.9),  # 1 - C(3,3)/C(5,3)
    (pd.Series({"a": 2.0, "b": 1.0}), 1.0),                               # n <= 3: always
])
def test_random_expectation_top3_and_regret_exact(true, top3):
    exp = M.random_expectation(true, True, n_draws=200)
    assert exp["top3"] == pytest.approx(top3)
    spread = true.max() - true.min()
    assert exp["regret"] == pytest.approx(float(((true.max() - true) / spread).mean()))
    brute = _brute_force(true, True, None)
    for k in ("hit", "top3", "weighted_tau", "weighted_tau_avg", "o2o", "regret"):
        assert exp[k] == pytest.approx(brute[k], abs=1e-12), k


def test_random_expectation_regret_with_ties():
    fid = pd.Series({"a": 10.0, "b": 10.0, "c": 20.0, "d": 40.0})         # a, b tie for best
    exp = M.random_expectation(fid, False)
    assert exp["regret"] == pytest.approx((0 + 0 + 10 / 30 + 30 / 30) / 4)
    assert exp["top3"] == pytest.approx(1.0)                              # 1 - C(2,3)/C(4,3) = 1
    all_tied = M.random_expectation(pd.Series({"a": 1.0, "b": 1.0, "c": 1.0}), True)
    assert all_tied["regret"] == 0.0 and all_tied["top3"] == 1.0 and all_tied["hit"] == 1.0


def test_random_expectation_monte_carlo_is_seeded_and_close():
    rng = np.random.default_rng(0)
    true = pd.Series(rng.normal(size=7), index=[f"m{i}" for i in range(7)])
    a = M.random_expectation(true, True, n_draws=200, seed=3)
    b = M.random_expectation(true, True, n_draws=200, seed=3)
    assert a["weighted_tau"] == b["weighted_tau"]
    assert a["weighted_tau_avg"] == b["weighted_tau_avg"]
    exact = M.random_expectation(true, True, n_draws=math.factorial(7))   # all 5040 orders
    assert abs(exact["weighted_tau"]) < 1e-9          # no ties: a random order has E[tau] = 0
    assert abs(a["weighted_tau"] - exact["weighted_tau"]) < 0.15
    assert math.isnan(a["o2b"])                        # no reference given


def test_random_expectation_single_model():
    exp = M.random_expectation(pd.Series({"a": 1.0}), True, reference_model="a")
    assert exp["hit"] == 1.0 and exp["o2o"] == 0.0 and exp["o2b"] == 0.0
    assert exp["top3"] == 1.0 and exp["regret"] == 0.0
    assert math.isnan(exp["weighted_tau"]) and math.isnan(exp["weighted_tau_avg"])


# -- aggregation ----------------------------------------------------------------------------------

def test_summarize_aggregates_per_method():
    per = pd.DataFrame([
        ("d1", "mc", True, 0.5, 0.0, -1.0),
        ("d2", "mc", False, np.nan, 2.0, 1.0),
        ("d3", "mc", True, 0.9, 0.0, np.nan),
        ("d1", "overall", False, 0.1, 3.0, 0.0),
        ("d2", "overall", False, 0.3, 1.0, 0.0),
        ("d3", "overall", True, 0.2, 0.0, 0.0),
    ], columns=["dataset", "method", "hit", "weighted_tau", "o2o", "o2b"])
    out = M.summarize(per)
    assert list(out.columns) == ["method", "osr", "top3", "weighted_tau", "weighted_tau_avg", "regret",
                                 "o2b", "o2o", "n_datasets"]
    # rows without the newer keys (top3, weighted_tau_avg, regret) summarise them as NaN
    assert out[["top3", "weighted_tau_avg", "regret"]].isna().all().all()
    assert list(out["method"]) == ["mc", "overall"]
    mc = out.set_index("method").loc["mc"]
    assert mc["osr"] == pytest.approx(2 / 3)
    assert mc["weighted_tau"] == pytest.approx(0.7)     # NaN skipped
    assert mc["o2o"] == pytest.approx(2 / 3)
    assert mc["o2b"] == pytest.approx(0.0)              # (-1 + 1) / 2, NaN skipped
    assert mc["n_datasets"] == 3
    ov = out.set_index("method").loc["overall"]
    assert ov["osr"] == pytest.approx(1 / 3)
    assert ov["weighted_tau"] == pytest.approx(0.2)
    assert ov["o2b"] == 0.0


def test_summarize_end_to_end_with_random_rows():
    true = {"d1": pd.Series({"a": 1.0, "b": 2.0, "c": 3.0}),
            "d2": pd.Series({"a": 3.0, "b": 1.0, "c": 2.0})}
    rows = []
    for d, t in true.items():
        rows.append({"dataset": d, "method": "mc", **M.evaluate(t, ["a", "b", "c"], False, "a")})
        rows.append({"dataset": d, "method": "random", **M.random_expectation(t, False, "a")})
    out = M.summarize(pd.DataFrame(rows)).set_index("method")
    assert out.loc["mc", "osr"] == pytest.approx(0.5)
    assert out.loc["mc", "o2b"] == 0.0
    assert out.loc["mc", "o2o"] == pytest.approx((0 + 2) / 2)
    assert out.loc["random", "osr"] == pytest.approx(1 / 3)
    assert out.loc["random", "n_datasets"] == 2
    # the new columns: mc selects a, best on d1 (regret 0) and worst on d2 (regret 1)
    assert out.loc["mc", "top3"] == 1.0                          # three models: always in the top 3
    assert out.loc["mc", "regret"] == pytest.approx(0.5)
    assert out.loc["random", "top3"] == pytest.approx(1.0)
    assert out.loc["random", "regret"] == pytest.approx(0.5)     # (0 + 1/2 + 1) / 3 on each
    assert out.loc["mc", "weighted_tau_avg"] == pytest.approx(
        np.mean([M.weighted_tau(t, ["a", "b", "c"], False, rank_by="average") for t in true.values()]))


def test_summarize_requires_columns():
    with pytest.raises(ValueError):
        M.summarize(pd.DataFrame({"method": ["x"], "hit": [True]}))
