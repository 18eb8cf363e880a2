"""metrics.py: hand-computed expectations (arithmetic in comments) plus sklearn cross-checks."""

import json
import time

import numpy as np
import pytest
from sklearn import metrics as skm

import metrics
from metrics import bootstrap_ci, classification_metrics, confusion_matrix, ec57_stats

AAMI = ["N", "S", "V", "F", "Q"]
N, S, V, F, Q = range(5)


def beats(pairs):
    """[(true, pred, count), ...] -> (y_true, y_pred) arrays."""
    yt = np.concatenate([np.full(c, t) for t, _, c in pairs]).astype(np.int64)
    yp = np.concatenate([np.full(c, p) for _, p, c in pairs]).astype(np.int64)
    return yt, yp


# Two records of different size (111 and 23 beats) -- the EC57 hand example.
REC_A = [(N, N, 80), (N, V, 2), (N, S, 3), (S, S, 6), (S, N, 4), (V, V, 9), (V, N, 1),
         (F, V, 3), (F, F, 2), (Q, Q, 1)]                        # 111 beats
REC_B = [(N, N, 10), (N, V, 5), (V, V, 1), (V, N, 3), (S, N, 2), (F, S, 1), (Q, V, 1)]  # 23


def ec57_example():
    ya, pa = beats(REC_A)
    yb, pb = beats(REC_B)
    yt, yp = np.concatenate([ya, yb]), np.concatenate([pa, pb])
    rec = np.concatenate([np.full(ya.size, 100), np.full(yb.size, 200)])
    return yt, yp, rec


# ---------------------------------------------------------------------------------------------
# confusion matrix / classification metrics
# ---------------------------------------------------------------------------------------------

def test_confusion_matrix_rows_true_cols_pred():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    # row 0: 0->0, 0->1 ; row 1: 1->1 ; row 2: 2->2 twice, 2->0 once
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert cm.dtype == np.int64
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(np.array([0.5]), np.array([0]), 2)
    with pytest.raises(ValueError, match="no beats"):
        classification_metrics([], [], ["a", "b"])


def test_classification_metrics_hand_values():
    # y_true 0 0 0 1 1 2, y_pred 0 0 1 1 2 2; class D (3) never occurs and is never predicted.
    # cm rows: [2,1,0,0] [0,1,1,0] [0,0,1,0] [0,0,0,0]
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["A", "B", "C", "D"])
    assert m["accuracy"] == pytest.approx(4 / 6)                 # diagonal 2+1+1 of 6
    a, b, c, d = (m["per_class"][k] for k in "ABCD")
    # A: P = 2/2, R = 2/3, F1 = 2*1*(2/3)/(1+2/3) = 0.8, TN = 6-2-0-1 = 3, spec = 3/3
    assert (a["precision"], a["recall"], a["f1"], a["specificity"], a["support"]) == \
        pytest.approx((1.0, 2 / 3, 0.8, 1.0, 3))
    # B: P = 1/2 (one A called B), R = 1/2, F1 = 0.5, FP = 1, TN = 6-1-1-1 = 3, spec = 3/4
    assert (b["precision"], b["recall"], b["f1"], b["specificity"]) == pytest.approx(
        (0.5, 0.5, 0.5, 0.75))
    # C: P = 1/2, R = 1/1, F1 = 2*.5*1/1.5 = 2/3, FP = 1, TN = 6-1-0-1 = 4, spec = 4/5
    assert (c["precision"], c["recall"], c["f1"], c["specificity"]) == pytest.approx(
        (0.5, 1.0, 2 / 3, 0.8))
    # D: 0/0 everywhere -> 0.0 (precision, recall, f1); TN = 6, FP = 0 -> spec 1.0; support 0
    assert (d["precision"], d["recall"], d["f1"], d["specificity"], d["support"]) == \
        (0.0, 0.0, 0.0, 1.0, 0)
    # macro over present classes A, B, C: (0.8 + 0.5 + 2/3) / 3 = 0.65556 (D left out)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["macro_f1_classes"] == ["A", "B", "C"]
    # weighted by support 3, 2, 1, 0: (3*0.8 + 2*0.5 + 1*2/3) / 6 = 0.67778
    assert m["weighted_f1"] == pytest.approx((2.4 + 1.0 + 2 / 3) / 6)
    assert m["confusion_matrix"] == {"labels": ["A", "B", "C", "D"],
                                     "matrix": [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0],
                                                [0, 0, 0, 0]]}
    json.dumps(m)  # plain Python types only


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    C, n = 5, 3000
    y_true = rng.choice(C, size=n, p=[0.7, 0.1, 0.1, 0.1, 0.0])  # class 4 absent from y_true
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, C, n))  # some 4s predicted
    if seed % 2:
        y_pred[y_pred == 3] = 0  # class 3 never predicted -> precision 0/0
    names = list("abcde")
    m = classification_metrics(y_true, y_pred, names)
    present = np.unique(y_true)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=range(C), average="weighted", zero_division=0))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(C),
                                                     zero_division=0)
    for k, name in enumerate(names):
        pc = m["per_class"][name]
        assert (pc["precision"], pc["recall"], pc["f1"]) == pytest.approx((p[k], r[k], f[k]))
        assert pc["support"] == s[k]
    assert m["confusion_matrix"]["matrix"] == skm.confusion_matrix(
        y_true, y_pred, labels=range(C)).tolist()


# ---------------------------------------------------------------------------------------------
# EC57
# ---------------------------------------------------------------------------------------------

def test_ec57_gross_hand_values():
    yt, yp, rec = ec57_example()
    out = ec57_stats(yt, yp, AAMI, record=rec)
    assert out["convention"] == "ec57-bxb" and out["n_records"] == 2
    g = out["gross"]
    # V: TP = 9+1 = 10; FN = V->N 1+3 = 4; FP = N->V 2+5 = 7 (S->V none);
    #    excluded = F->V 3 + Q->V 1 = 4; TN = 134 - 10 - 4 - 7 - 4 = 109
    v = g["V"]
    assert (v["TP"], v["FN"], v["FP"], v["TN"], v["excluded"]) == (10, 4, 7, 109, 4)
    assert v["rule"] == "ec57" and v["excluded_ref"] == ["F", "Q"]
    assert v["Se"] == pytest.approx(10 / 14)           # 0.7143
    assert v["+P"] == pytest.approx(10 / 17)           # 0.5882 (one-vs-rest would be 10/21)
    assert v["FPR"] == pytest.approx(7 / 116)          # FP / (FP + TN)
    assert v["Acc"] == pytest.approx(119 / 130)        # (TP+TN) / (134 - 4 excluded)
    # S: TP = 6; FN = S->N 4+2 = 6; FP = N->S 3 (V->S none); excluded = F->S 1;
    #    TN = 134 - 6 - 6 - 3 - 1 = 118
    s = g["S"]
    assert (s["TP"], s["FN"], s["FP"], s["TN"], s["excluded"]) == (6, 6, 3, 118, 1)
    assert (s["Se"], s["+P"], s["FPR"], s["Acc"]) == pytest.approx(
        (6 / 12, 6 / 9, 3 / 121, 124 / 133))
    # N one-vs-rest: row N = 85 + 15 = 100, TP = 90, FN = 10;
    #    called N but not N: S->N 4+2, V->N 1+3 = 10 = FP; TN = 134 - 90 - 10 - 10 = 24
    n = g["N"]
    assert n["rule"] == "one-vs-rest" and n["excluded_ref"] == []
    assert (n["TP"], n["FN"], n["FP"], n["TN"]) == (90, 10, 10, 24)
    assert (n["Se"], n["+P"], n["FPR"]) == pytest.approx((0.9, 0.9, 10 / 34))
    # F: TP = 2, FN = F->V 3 + F->S 1 = 4, FP = 0 -> Se 1/3, +P 1, FPR 0
    f = g["F"]
    assert (f["TP"], f["FN"], f["FP"], f["TN"]) == (2, 4, 0, 128)
    assert (f["Se"], f["+P"], f["FPR"]) == pytest.approx((1 / 3, 1.0, 0.0))
    json.dumps(out)


def test_ec57_average_hand_values_differs_from_gross():
    yt, yp, rec = ec57_example()
    a = ec57_stats(yt, yp, AAMI, record=rec)["average"]
    # V per record: A Se 9/10, +P 9/11, FPR 2/98, Acc (9+96)/108 ; B Se 1/4, +P 1/6,
    #   FPR 5/18, Acc (1+13)/22   (B: TN = N->N 10 + S->N 2 + F->S 1 = 13; Q->V excluded)
    v = a["V"]
    assert v["Se"] == pytest.approx((0.9 + 0.25) / 2)               # 0.575 vs gross 0.714
    assert v["+P"] == pytest.approx((9 / 11 + 1 / 6) / 2)           # 0.492 vs gross 0.588
    assert v["FPR"] == pytest.approx((2 / 98 + 5 / 18) / 2)
    assert v["Acc"] == pytest.approx((105 / 108 + 14 / 22) / 2)
    assert v["n_records"] == {"Se": 2, "+P": 2, "FPR": 2, "Acc": 2}
    # S per record: A Se 6/10, +P 6/9, FPR 3/101 ; B Se 0/2, +P 0/0 undefined (nothing called S
    #   but the excluded F->S), FPR 0/20 -> +P averaged over record A only
    s = a["S"]
    assert s["Se"] == pytest.approx((0.6 + 0.0) / 2)
    assert s["+P"] == pytest.approx(6 / 9) and s["n_records"]["+P"] == 1
    assert s["FPR"] == pytest.approx((3 / 101 + 0.0) / 2)
    # Q: A Q->Q 1 (Se 1, +P 1); B Q->V 1 (Se 0, +P undefined)
    assert a["Q"]["Se"] == pytest.approx(0.5)
    assert a["Q"]["+P"] == pytest.approx(1.0) and a["Q"]["n_records"]["+P"] == 1


def test_ec57_f_called_v_is_not_a_false_positive():
    # reference F F Q V N, algorithm V V V V N
    yt = [F, F, Q, V, N]
    yp = [V, V, V, V, N]
    v = ec57_stats(yt, yp, AAMI)["gross"]["V"]
    # EC57: Fv, Qv neither FP nor TN -> +P = 1/(1+0) = 1.0; TN = N->N 1; FPR = 0/1
    assert (v["TP"], v["FP"], v["TN"], v["excluded"]) == (1, 0, 1, 3)
    assert (v["+P"], v["FPR"], v["Acc"]) == (1.0, 0.0, 1.0)
    # N or S reference called V *is* a false positive
    v2 = ec57_stats([N, S, V], [V, V, V], AAMI)["gross"]["V"]
    assert (v2["TP"], v2["FP"], v2["+P"]) == (1, 2, pytest.approx(1 / 3))
    # same data under another class scheme: plain one-vs-rest, F->V counts: +P = 1/4
    names = ["n", "s", "v", "f", "q"]
    out = ec57_stats(yt, yp, names)
    assert out["convention"] == "one-vs-rest"
    assert out["gross"]["v"]["+P"] == pytest.approx(1 / 4)
    assert out["gross"]["v"]["FP"] == 3 and out["gross"]["v"]["excluded"] == 0


def test_ec57_f_and_q_called_s_excluded_but_v_called_s_counts():
    # reference F Q V S, algorithm S S S S: S TP 1, FP = Vs 1, excluded Fs + Qs = 2
    s = ec57_stats([F, Q, V, S], [S, S, S, S], AAMI)["gross"]["S"]
    assert (s["TP"], s["FP"], s["excluded"], s["+P"]) == (1, 1, 2, 0.5)


def test_ec57_seed4_one_vs_rest_and_no_record():
    names = ["N", "SVEB", "VEB", "Other"]
    yt = [0, 0, 1, 2, 3, 3]
    yp = [0, 2, 1, 2, 2, 0]
    out = ec57_stats(yt, yp, names)
    assert out["convention"] == "one-vs-rest"
    assert out["average"] is None and out["n_records"] is None
    veb = out["gross"]["VEB"]
    # VEB: TP 1; FP = N->VEB 1 + Other->VEB 1 = 2; FN 0; TN = 6-1-2 = 3
    assert (veb["TP"], veb["FP"], veb["FN"], veb["TN"]) == (1, 2, 0, 3)
    assert veb["Se"] == 1.0 and veb["+P"] == pytest.approx(1 / 3)
    assert veb["FPR"] == pytest.approx(2 / 5)
    # a class with no reference beats and no calls: Se, +P undefined -> None
    out2 = ec57_stats([0, 0], [0, 0], names)
    assert out2["gross"]["VEB"]["Se"] is None and out2["gross"]["VEB"]["+P"] is None
    assert out2["gross"]["VEB"]["FPR"] == 0.0


def test_ec57_single_record_average_equals_gross():
    yt, yp, _ = ec57_example()
    out = ec57_stats(yt, yp, AAMI, record=np.zeros(yt.size, int))
    for name in AAMI:
        for stat in metrics.STATS:
            assert out["average"][name][stat] == pytest.approx(out["gross"][name][stat])


# ---------------------------------------------------------------------------------------------
# bootstrap
# ---------------------------------------------------------------------------------------------

def clustered_data(seed=0, n_rec=20, per_rec=500):
    """Records whose accuracy differs a lot (0.6 or 0.98): beats are not independent."""
    rng = np.random.default_rng(seed)
    yt, yp, rec = [], [], []
    for r in range(n_rec):
        t = rng.choice(4, size=per_rec, p=[0.7, 0.1, 0.15, 0.05])
        acc = 0.98 if r % 2 else 0.6
        p = np.where(rng.random(per_rec) < acc, t, rng.integers(0, 4, per_rec))
        yt.append(t), yp.append(p), rec.append(np.full(per_rec, 100 + r))
    return np.concatenate(yt), np.concatenate(yp), np.concatenate(rec)


def test_bootstrap_deterministic_with_seed():
    yt, yp, rec = clustered_data()
    names = ["N", "SVEB", "VEB", "Other"]
    a = bootstrap_ci(yt, yp, names, groups=rec, n_boot=300, seed=7)
    b = bootstrap_ci(yt, yp, names, groups=rec, n_boot=300, seed=7)
    c = bootstrap_ci(yt, yp, names, groups=rec, n_boot=300, seed=8)
    assert a == b
    assert a["macro_f1"] != c["macro_f1"]
    assert bootstrap_ci(yt, yp, names, n_boot=300) == bootstrap_ci(yt, yp, names, n_boot=300)
    json.dumps(a)


def test_bootstrap_interval_contains_point_and_structure():
    yt, yp, rec = clustered_data(seed=1)
    names = ["N", "SVEB", "VEB", "Other"]
    point = classification_metrics(yt, yp, names)
    for groups, method in ((rec, "bootstrap-record"), (None, "bootstrap-beat")):
        ci = bootstrap_ci(yt, yp, names, groups=groups, n_boot=500)
        assert ci["method"] == method and ci["n_boot"] == 500 and ci["alpha"] == 0.05
        assert ci["accuracy"]["point"] == point["accuracy"]
        assert ci["macro_f1"]["point"] == point["macro_f1"]
        for key in ("accuracy", "macro_f1"):
            assert ci[key]["low"] <= ci[key]["point"] <= ci[key]["high"]
        for name in names:
            pc = ci["per_class_f1"][name]
            assert pc["point"] == point["per_class"][name]["f1"]
            assert pc["low"] <= pc["point"] <= pc["high"]


def test_record_bootstrap_wider_than_beat_bootstrap_when_clustered():
    yt, yp, rec = clustered_data(seed=2)
    names = ["N", "SVEB", "VEB", "Other"]
    by_rec = bootstrap_ci(yt, yp, names, groups=rec, n_boot=1000)
    by_beat = bootstrap_ci(yt, yp, names, n_boot=1000)

    def width(ci, key):
        return ci[key]["high"] - ci[key]["low"]

    # half the records are at 0.6 and half at 0.98: which records are drawn dominates the spread
    for key in ("accuracy", "macro_f1"):
        assert width(by_rec, key) >= 2 * width(by_beat, key)


def test_beat_multinomial_matches_naive_resampling():
    # Multinomial over confusion cells has the same distribution as drawing beats with
    # replacement: compare the spread of accuracy with a naive index bootstrap.
    rng = np.random.default_rng(3)
    yt = rng.integers(0, 3, 2000)
    yp = np.where(rng.random(2000) < 0.8, yt, rng.integers(0, 3, 2000))
    ci = bootstrap_ci(yt, yp, ["a", "b", "c"], n_boot=2000, seed=5)
    idx = rng.integers(0, yt.size, size=(2000, yt.size))
    naive = (yt[idx] == yp[idx]).mean(axis=1)
    lo, hi = np.percentile(naive, [2.5, 97.5])
    assert ci["accuracy"]["low"] == pytest.approx(lo, abs=0.004)
    assert ci["accuracy"]["high"] == pytest.approx(hi, abs=0.004)


def test_bootstrap_rare_class_skips_resamples_without_support():
    # class "c" occurs in one record only: resamples that miss that record have no c support
    yt = np.array([0, 1, 0, 1] * 5 + [2, 2])
    yp = np.array([0, 1, 1, 1] * 5 + [2, 0])
    rec = np.repeat(np.arange(11), 2)          # 11 records of 2 beats; record 10 holds the c's
    ci = bootstrap_ci(yt, yp, ["a", "b", "c"], groups=rec, n_boot=400)
    c = ci["per_class_f1"]["c"]
    # P(record 10 never drawn in 11 draws) = (10/11)^11 = 0.35 -> ~260 of 400 valid
    assert 200 < c["n_valid"] < 320
    assert c["point"] == pytest.approx(2 / 3)  # c: TP 1, FN 1, FP 0 -> 2/(2+1)
    assert ci["macro_f1"]["low"] <= ci["macro_f1"]["high"]


def test_bootstrap_fast_on_full_size_data():
    # ~50k beats, 44 records, 1000 resamples: no timing assertion, just a sanity print
    rng = np.random.default_rng(0)
    n = 50_000
    yt = rng.choice(5, size=n, p=[0.88, 0.03, 0.07, 0.01, 0.01])
    yp = np.where(rng.random(n) < 0.9, yt, rng.integers(0, 5, n))
    rec = rng.integers(100, 144, n)
    t0 = time.perf_counter()
    a = bootstrap_ci(yt, yp, AAMI, groups=rec, n_boot=1000)
    b = bootstrap_ci(yt, yp, AAMI, n_boot=1000)
    e = ec57_stats(yt, yp, AAMI, record=rec)
    print(f"bootstrap x2 + ec57 on {n} beats: {time.perf_counter() - t0:.3f} s")
    assert a["n_units"] == 44 and b["n_units"] == n and e["n_records"] == 44


def test_key_class_stats_hand_computed():
    # y: N S S V V N F ; pred: N S N V S S V
    y, p = np.array([0, 1, 1, 2, 2, 0, 3]), np.array([0, 1, 0, 2, 1, 1, 2])
    k = metrics.key_class_stats(y, p, ["N", "S", "V", "F", "Q"])
    # S: TP 1 (beat 1), FN 1 (beat 2 -> N), FP 2 (N -> S, V -> S); F1 = 2 / (2 + 2 + 1)
    assert (k["S"]["TP"], k["S"]["FN"], k["S"]["FP"]) == (1, 1, 2)
    assert k["S"]["Se"] == 0.5 and k["S"]["+P"] == pytest.approx(1 / 3) and k["S"]["F1"] == pytest.approx(0.4)
    # V: TP 1, FN 1 (V -> S), F -> V is no EC57 false positive (+P 1.0) but counts against plain F1
    assert (k["V"]["TP"], k["V"]["FN"], k["V"]["FP"]) == (1, 1, 0)
    assert k["V"]["+P"] == 1.0 and k["V"]["F1"] == pytest.approx(2 / 4)
    assert metrics.key_class_stats(y, p, ["N", "SVEB", "VEB", "Other", "X"])["S"]["class"] == "SVEB"


# ------------------------------------------------------------------------------ paired bootstrap

def test_paired_bootstrap_identical_predictions_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    y, p, g = rng.integers(0, 3, 500), rng.integers(0, 3, 500), np.repeat(np.arange(10), 50)
    d = metrics.paired_bootstrap_diff(y, p, p, ["N", "S", "V"], g, n_boot=200)
    assert d["macro_f1"] == {"point": 0.0, "low": 0.0, "high": 0.0}
    assert all(c == {"point": 0.0, "low": 0.0, "high": 0.0} for c in d["per_class_f1"].values())


def test_paired_bootstrap_point_and_sign_hand_computed():
    # 4 records of 4 beats, labels N N S S. A misses every S; B finds the S beats of records 0 and 1.
    y = np.tile([0, 0, 1, 1], 4)
    a = np.zeros(16, int)
    b = a.copy()
    b[[2, 3, 6, 7]] = 1
    g = np.repeat(np.arange(4), 4)
    d = metrics.paired_bootstrap_diff(y, a, b, ["N", "S"], g, n_boot=500)
    # S F1: A 0; B TP 4, FN 4, FP 0 -> 8 / 12. N F1: A 16/24 (TP 8, FP 8); B TP 8, FP 4 -> 16/20
    assert d["per_class_f1"]["S"]["point"] == pytest.approx(2 / 3)
    assert d["per_class_f1"]["N"]["point"] == pytest.approx(0.8 - 2 / 3)
    assert d["macro_f1"]["point"] == pytest.approx((2 / 3 + 0.8 - 2 / 3) / 2)
    # B is never worse on any draw of records; a draw of records 2 and 3 only ties
    s = d["per_class_f1"]["S"]
    assert s["low"] >= 0 and s["high"] <= 1 and s["low"] < s["point"] < s["high"]
    with pytest.raises(ValueError):
        metrics.paired_bootstrap_diff(y, a, b, ["N", "S"], g[:-1])
