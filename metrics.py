"""Beat-classification metrics: confusion matrix, F1, AAMI EC57 statistics, bootstrap CIs.

Pure numpy, no torch: every function takes integer class-index arrays and returns plain Python
floats/ints/lists (JSON-serialisable) so the report writer can dump the result as is.

AAMI EC57 / WFDB conventions (ec57_stats, used when class_names == ["N", "S", "V", "F", "Q"])
----------------------------------------------------------------------------------------------
Sources: WFDB `bxb.c` (G. Moody, rev. 10 Aug 2010; print_results(): VTP/VFN/VFP/VTN/STP/SFN/SFP)
and WFDB `sumstats.c` (same revision), which "derives the aggregate statistics described in
sections 3.5.2 and 3.5.3 of ANSI/AAMI EC57:1998". Notation: Xy = reference X, algorithm y.

  VEB  TP = Vv          FN = Vn+Vs+Vf+Vq (every other label given to a V reference beat)
       FP = Nv+Sv       (Fv and Qv are neither FP nor TN: an F or Q beat called V is not an error)
       TN = every beat with reference != V and label != V (N, S, F, Q rows; sumstats' VEB FPR
            denominator Nn'+Fn'+On'+Nv+Ov in its S-merged-into-N form)
  SVEB TP = Ss          FN = Sn+Sv+Sf+Sq
       FP = Ns+Vs       (Fs and Qs excluded, as in sumstats' gross and average S +P =
            Ss/(Ns+Ss+Vs+Os'); note bxb's own per-record SFP adds Fs -- we follow sumstats,
            which is the program that implements the EC57 gross/average statistics)
       TN = every beat with reference != S and label != S (by analogy with VEB: EC57/bxb report
            no SVEB FPR; ours is FP/(FP+TN) with the same exclusions)
  Se = TP/(TP+FN), +P = TP/(TP+FP), FPR = FP/(FP+TN), Acc = (TP+TN)/(TP+TN+FP+FN) over the
  counted (non-excluded) beats. Acc is not an EC57 statistic; it is the accuracy most papers
  tabulate. N, F and Q get plain one-vs-rest statistics (EC57 defines no class statistics for
  them; bxb's "Q Se / Q +P" are QRS *detection* statistics, which we do not compute).
  gross   = statistics of the confusion counts summed over all beats (sumstats "Gross").
  average = mean over records of the per-record statistic, taken only over records where its
            denominator is > 0, with the number of records used (sumstats "Average").

Where we differ from bxb/EC57, and why:
  - No detection step: we classify at reference beat positions, so there are no unmatched
    beats (bxb's O and X pseudo-labels: Ov, Os counted as FP, Vo, So as FN) and no QRS Se/+P.
    A caller with detector beats must pair them first (150 ms window) and pass paired labels.
  - bxb skips the first 5 minutes of each record (learning period, `-f`); we use every beat,
    like the inter-patient literature (de Chazal et al. 2004).
  - Values are fractions in [0, 1], not percentages; an undefined statistic (0/0) is None
    (bxb prints '-').
  - The symbol-to-class mapping (paced beats -> Q, etc.) belongs to beats.LABEL_SCHEMES.
For any other class list (e.g. seed4: N, SVEB, VEB, Other) every class gets plain one-vs-rest
statistics and the result says so ("convention": "one-vs-rest").
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from beats import AAMI5, key_class
# EC57: reference beats of these classes that the algorithm labels as the key class are
# neither false positives nor true negatives for that class (see the module docstring).
EC57_FP_EXCLUDED = {"V": ("F", "Q"), "S": ("F", "Q")}


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def _check_labels(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (y_true, y_pred) as 1-D int64 arrays with values in [0, n_classes)."""
    yt = np.asarray(y_true).reshape(-1)
    yp = np.asarray(y_pred).reshape(-1)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length ({yt.size} vs {yp.size})")
    for name, a in (("y_true", yt), ("y_pred", yp)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} has class index outside [0, {n_classes}): "
                             f"min {a.min()}, max {a.max()}")
    return yt.astype(np.int64), yp.astype(np.int64)


def _div(num: np.ndarray, den: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Elementwise num/den with `fill` where den == 0 (no warnings)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def f1_from_cm(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 from confusion matrices (..., C, C) -> (..., C); 0 where 2TP+FP+FN == 0.

    2TP/(2TP+FP+FN) equals 2PR/(P+R) whenever TP > 0, and is 0 when TP == 0, which matches
    sklearn's zero_division=0 behaviour.
    """
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    pred = cm.sum(axis=-2)   # column sums: predicted as class
    true = cm.sum(axis=-1)   # row sums: support
    return _div(2.0 * tp, pred + true)


# ------------------------------------------------------------------------------------------
# confusion matrix and classification metrics
# ------------------------------------------------------------------------------------------

def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(C, C) int64 confusion matrix, rows = true class, columns = predicted class."""
    yt, yp = _check_labels(y_true, y_pred, n_classes)
    # one bincount over the flattened cell index true*C + pred is O(N) and allocation-light
    return np.bincount(yt * n_classes + yp, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def _metrics_from_cm(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """classification_metrics on an already computed (C, C) confusion matrix."""
    n = int(cm.sum())
    if n == 0:
        raise ValueError("no beats to evaluate (empty y_true)")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    fp = predicted - tp
    fn = support - tp
    tn = n - tp - fp - fn
    precision = _div(tp, predicted)
    recall = _div(tp, support)
    f1 = f1_from_cm(cm)
    specificity = _div(tn, tn + fp)
    present = support > 0
    per_class = {
        name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
               "specificity": float(specificity[k]), "support": int(support[k])}
        for k, name in enumerate(class_names)
    }
    return {
        "accuracy": float(tp.sum() / n),
        "macro_f1": float(f1[present].mean()),
        "weighted_f1": float((f1 * support).sum() / n),
        "macro_f1_classes": [name for k, name in enumerate(class_names) if present[k]],
        "per_class": per_class,
        "confusion_matrix": {"labels": list(class_names), "matrix": cm.astype(int).tolist()},
    }


def classification_metrics(y_true, y_pred, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/specificity/support, confusion.

    0/0 conventions (sklearn's zero_division=0): precision of a never-predicted class, recall of
    a class with no support, F1 when TP = FP = FN = 0 and specificity when TN = FP = 0 are 0.0.
    macro_f1 averages F1 over the classes with support > 0 in y_true (listed in
    "macro_f1_classes"): a class absent from the test set says nothing about the model, and
    averaging its 0 in would punish every model alike. Equals
    sklearn f1_score(y_true, y_pred, labels=<classes present in y_true>, average="macro",
    zero_division=0). Predictions *of* an absent class are still penalised: they are missed
    beats of the present classes (lower recall). weighted_f1 weights F1 by support
    (= sklearn average="weighted").
    """
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    return _metrics_from_cm(cm, class_names)


# ------------------------------------------------------------------------------------------
# AAMI EC57 statistics
# ------------------------------------------------------------------------------------------

def _ec57_counts(cm: np.ndarray, k: int, excluded: Sequence[int]) -> dict[str, int]:
    """TP/FN/FP/TN (+ excluded) for class k from a (C, C) matrix; `excluded` = reference rows
    whose beats labelled k count neither as FP nor TN."""
    n = int(cm.sum())
    tp = int(cm[k, k])
    fn = int(cm[k].sum()) - tp
    col = int(cm[:, k].sum()) - tp          # every non-k reference beat labelled k
    exc = int(sum(cm[i, k] for i in excluded))
    fp = col - exc
    tn = n - tp - fn - col                 # reference != k and label != k
    return {"TP": tp, "FN": fn, "FP": fp, "TN": tn, "excluded": exc}


def _ec57_rates(c: dict[str, int]) -> dict[str, float | None]:
    """Se, +P, FPR, Acc from counts; None where the denominator is 0."""
    def ratio(a: int, b: int) -> float | None:
        return a / b if b > 0 else None
    tp, fn, fp, tn = c["TP"], c["FN"], c["FP"], c["TN"]
    return {"Se": ratio(tp, tp + fn), "+P": ratio(tp, tp + fp), "FPR": ratio(fp, fp + tn),
            "Acc": ratio(tp + tn, tp + tn + fp + fn)}


STATS = ("Se", "+P", "FPR", "Acc")


def ec57_stats(y_true, y_pred, class_names: Sequence[str], record=None) -> dict[str, Any]:
    """Per-class Se, +P, FPR, Acc, gross and per-record average (see module docstring).

    Returns {"convention": "ec57-bxb" | "one-vs-rest", "classes",
             "gross": {name: {"rule", "Se", "+P", "FPR", "Acc", "TP", "FN", "FP", "TN",
                              "excluded", "excluded_ref"}},
             "average": {name: {"Se", "+P", "FPR", "Acc", "n_records": {stat: int}}} | None,
             "n_records": int | None}.
    `record` is the record id per beat; without it there is no per-record average (None).
    """
    C = len(class_names)
    yt, yp = _check_labels(y_true, y_pred, C)
    ec57 = list(class_names) == AAMI5
    excluded = {k: [] for k in range(C)}
    if ec57:
        for name, exc in EC57_FP_EXCLUDED.items():
            excluded[AAMI5.index(name)] = [AAMI5.index(e) for e in exc]

    def rule(k: int) -> str:
        return "ec57" if ec57 and class_names[k] in EC57_FP_EXCLUDED else "one-vs-rest"

    cm = confusion_matrix(yt, yp, C)
    gross = {}
    for k, name in enumerate(class_names):
        counts = _ec57_counts(cm, k, excluded[k])
        gross[name] = {"rule": rule(k), **_ec57_rates(counts), **counts,
                       "excluded_ref": [class_names[i] for i in excluded[k]]}

    average, n_rec = None, None
    if record is not None:
        cms = _group_cms(yt, yp, record, C, "record")    # (R, C, C)
        n_rec = len(cms)
        average = {}
        for k, name in enumerate(class_names):
            vals: dict[str, list[float]] = {s: [] for s in STATS}
            for r in range(n_rec):
                for s, v in _ec57_rates(_ec57_counts(cms[r], k, excluded[k])).items():
                    if v is not None:          # sumstats: only records where it is defined
                        vals[s].append(v)
            average[name] = {s: (float(np.mean(v)) if v else None) for s, v in vals.items()}
            average[name]["n_records"] = {s: len(v) for s, v in vals.items()}
    return {"convention": "ec57-bxb" if ec57 else "one-vs-rest", "classes": list(class_names),
            "gross": gross, "average": average, "n_records": n_rec}


# ------------------------------------------------------------------------------------------
# bootstrap confidence intervals
# ------------------------------------------------------------------------------------------

def _group_cms(yt: np.ndarray, yp: np.ndarray, groups, C: int, what: str) -> np.ndarray:
    """One confusion matrix per distinct value of `groups` (e.g. per record): (G, C, C)."""
    g = np.asarray(groups).reshape(-1)
    if g.shape != yt.shape:
        raise ValueError(f"{what} has {g.size} entries for {yt.size} beats")
    _, gidx = np.unique(g, return_inverse=True)
    G = int(gidx.max()) + 1 if gidx.size else 0
    return np.bincount((gidx.astype(np.int64) * C + yt) * C + yp, minlength=G * C * C).reshape(G, C, C)


def _resampled_f1(boot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 (B, C) of resampled confusion matrices (B, C, C), NaN where a resample has no
    support for the class, and their macro-F1 (B,) over the classes each resample has."""
    f1 = f1_from_cm(boot)                                              # (B, C)
    f1[boot.sum(axis=2) == 0] = np.nan                                  # no support: skip
    return f1, np.nanmean(f1, axis=1)  # every resample has >= 1 present class (n > 0)


def _interval(p: float | None, samples: np.ndarray, alpha: float) -> dict[str, Any]:
    """{point, low, high}: the percentile interval of the non-NaN `samples` (None when none)."""
    s = samples[~np.isnan(samples)]
    if s.size == 0:
        return {"point": p, "low": None, "high": None}
    lo, hi = np.percentile(s, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"point": p, "low": float(lo), "high": float(hi)}


def bootstrap_ci(y_true, y_pred, class_names: Sequence[str], groups=None, n_boot: int = 1000,
                 seed: int = 1337, alpha: float = 0.05) -> dict[str, Any]:
    """Seeded percentile bootstrap CI for accuracy, macro-F1 and per-class F1.

    groups (e.g. record id per beat) -> resample whole groups with replacement ("bootstrap-
    record"): beats of one record are correlated, so resampling beats would understate the
    spread. groups=None -> resample beats ("bootstrap-beat").
    Vectorised: a resample's confusion matrix is sum_g n_g * CM_g with group counts
    n ~ Multinomial(G, 1/G); for beats it is Multinomial(N, cell frequencies) over the C*C cells
    of the overall matrix, which has the same distribution as drawing N beats with replacement.
    Per-class F1 is skipped (nan) in resamples where the class has no support, and macro-F1 of
    a resample averages its present classes, matching classification_metrics; a class with no
    support in the data gets point/low/high None. "n_valid" = resamples the class appeared in.
    """
    C = len(class_names)
    yt, yp = _check_labels(y_true, y_pred, C)
    if yt.size == 0:
        raise ValueError("no beats to bootstrap (empty y_true)")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    cm = confusion_matrix(yt, yp, C)
    if groups is not None:
        cms = _group_cms(yt, yp, groups, C, "groups")
        G = len(cms)
        cms = cms.reshape(G, C * C)                                     # (G, C*C)
        counts = rng.multinomial(G, np.full(G, 1.0 / G), size=n_boot)  # (B, G)
        boot = counts @ cms                                             # (B, C*C)
        method, n_units = "bootstrap-record", G
    else:
        flat = cm.reshape(-1)
        boot = rng.multinomial(int(flat.sum()), flat / flat.sum(), size=n_boot)  # (B, C*C)
        method, n_units = "bootstrap-beat", int(yt.size)
    boot = boot.reshape(n_boot, C, C)

    n = boot.sum(axis=(1, 2))                                           # (B,)
    acc = np.trace(boot, axis1=1, axis2=2) / n
    f1, macro = _resampled_f1(boot)
    point = _metrics_from_cm(cm, class_names)
    interval = lambda p, samples: _interval(p, samples, alpha)  # noqa: E731

    per_class = {}
    for k, name in enumerate(class_names):
        p = point["per_class"][name]["f1"] if point["per_class"][name]["support"] else None
        per_class[name] = interval(p, f1[:, k])
        per_class[name]["n_valid"] = int(np.sum(~np.isnan(f1[:, k])))
    return {"method": method, "n_boot": int(n_boot), "alpha": float(alpha), "seed": int(seed),
            "n_units": n_units, "accuracy": interval(point["accuracy"], acc),
            "macro_f1": interval(point["macro_f1"], macro), "per_class_f1": per_class}


def paired_bootstrap_diff(y_true, pred_a, pred_b, class_names: Sequence[str], groups, n_boot: int = 1000,
                          seed: int = 1337, alpha: float = 0.05) -> dict[str, Any]:
    """Percentile CI of B minus A for macro-F1 and per-class F1, two predictions of the same beats,
    resampling whole groups (records) with replacement, the same groups for A and B.

    Pairing removes the spread both settings share (which patients happen to be drawn), so the
    interval is the one for "is B better than A on these patients", narrower than two separate
    intervals. -> {"macro_f1": {point, low, high}, "per_class_f1": {name: {point, low, high}}}
    (None where a class has no support)."""
    C = len(class_names)
    yt, pa = _check_labels(y_true, pred_a, C)
    _, pb = _check_labels(y_true, pred_b, C)
    if yt.size == 0 or n_boot < 1:
        raise ValueError("paired_bootstrap_diff needs beats and n_boot >= 1")
    ca, cb = _group_cms(yt, pa, groups, C, "groups"), _group_cms(yt, pb, groups, C, "groups")  # (G, C, C)
    G = len(ca)
    counts = np.random.default_rng(seed).multinomial(G, np.full(G, 1.0 / G), size=n_boot)  # (B, G)
    resample = lambda cms: _resampled_f1((counts @ cms.reshape(G, C * C)).reshape(n_boot, C, C))  # noqa: E731
    (fa, ma), (fb, mb) = resample(ca), resample(cb)
    point_a, point_b = _metrics_from_cm(ca.sum(0), class_names), _metrics_from_cm(cb.sum(0), class_names)

    per_class = {}
    for k, name in enumerate(class_names):
        # no support: every resample is NaN, so the interval is (None, None, None)
        d = point_b["per_class"][name]["f1"] - point_a["per_class"][name]["f1"]
        p = d if point_a["per_class"][name]["support"] else None
        per_class[name] = _interval(p, fb[:, k] - fa[:, k], alpha)
    return {"method": "paired bootstrap-record", "n_boot": int(n_boot), "alpha": float(alpha), "n_units": G,
            "macro_f1": _interval(point_b["macro_f1"] - point_a["macro_f1"], mb - ma, alpha),
            "per_class_f1": per_class}


# ------------------------------------------------------------------------------------------
# The key classes the literature reports on
# ------------------------------------------------------------------------------------------

def key_class_stats(y_true, y_pred, class_names: Sequence[str]) -> dict[str, Any]:
    """EC57 gross Se / +P (and their counts) next to F1 for the key classes S and V (under their
    name in the scheme, beats.KEY_CLASSES): {"S": {class, n, TP, FN, FP, Se, +P, F1}, "V": ...}.
    Se / +P are None when undefined (0/0), as in ec57_stats."""
    yt, yp = _check_labels(y_true, y_pred, len(class_names))
    gross = ec57_stats(yt, yp, class_names)["gross"]
    f1 = f1_from_cm(confusion_matrix(yt, yp, len(class_names)))
    out = {}
    for key in ("S", "V"):
        name = key_class(class_names, key)
        if name is None:
            continue
        k = list(class_names).index(name)
        g = gross[name]
        out[key] = {"class": name, "n": int((yt == k).sum()), "TP": g["TP"], "FN": g["FN"], "FP": g["FP"],
                    "Se": g["Se"], "+P": g["+P"], "F1": float(f1[k])}
    return out


# Record 232 (DS2) holds about 75 % of DS2's S beats, so the literature's S figures are mostly
# one patient's: reports give the key-class figures without it as well.
RECORDS_REPORTED_WITHOUT = ("232",)


def test_metrics(y: np.ndarray, pred: np.ndarray, record: np.ndarray, class_names: Sequence[str], *,
                 grouped: bool, bootstrap: int, seed: int) -> dict[str, Any]:
    """A report's `test` section from one part's labels and predictions (the nets' through
    engine.evaluate_part, baseline.py's directly): classification metrics, EC57 statistics,
    bootstrap CIs, S/V figures overall, per record and without record 232, a digest of the
    predictions. `grouped`: resample whole records in the bootstrap (beats of one record are not
    independent); False where the split mixes records' beats (stratified)."""
    out = classification_metrics(y, pred, class_names)
    out["ec57"] = ec57_stats(y, pred, class_names, record=record)
    if bootstrap:
        out["ci"] = bootstrap_ci(y, pred, class_names, groups=record if grouped else None,
                                 n_boot=bootstrap, seed=seed)
    out["key_classes"] = key_class_stats(y, pred, class_names)
    out["per_record"] = {str(r): {"beats": int((record == r).sum()),
                                  "accuracy": float((pred[record == r] == y[record == r]).mean()),
                                  "key_classes": key_class_stats(y[record == r], pred[record == r], class_names)}
                         for r in np.unique(record)}
    for r in RECORDS_REPORTED_WITHOUT:  # one record that dominates a class: figures without it too
        if np.any(record == int(r)) and np.any(record != int(r)):
            out[f"key_classes_without_{r}"] = key_class_stats(y[record != int(r)], pred[record != int(r)],
                                                              class_names)
    out["predictions_sha256"] = hashlib.sha256(np.asarray(pred).astype(np.int8).tobytes()).hexdigest()
    out["n_beats"] = int(len(y))
    return out
