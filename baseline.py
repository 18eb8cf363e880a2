"""The field's baseline inside the suite: de Chazal et al. 2004's linear discriminant (and a
class-weighted logistic regression) on hand-made beat features, on the nets' splits, with the
nets' report.

    python baseline.py --split interpatient                # the paper's LDA: train DS1, score DS2 once
    python baseline.py --split interpatient --cv 4         # feature variant and regularisation chosen inside DS1
    python baseline.py --model logreg --split stratified   # any protocol; the test part is the nets'

Writes (atomically) into --out-dir `eval_report_{lda|logreg}_{stamp}.json`, the trainer's report
schema plus a `features` section (and `cv` with --cv), which summarize.py shows as a row beside
the nets, and `baseline_{model}_{stamp}.npz`, the fitted linear decision function
(argmax of x @ W.T + b over `classes`, feature columns `names`).

Features (our reading of de Chazal, O'Dwyer & Reilly, IEEE TBME 51(7), 2004, fixed before any
test part was scored; FEATURES names each column):
- Beats and rows: exactly the nets' (utils.read_record: MIT-BIH beat annotations of the lead
  the nets read; the beats whose --segment-sec window leaves the record are dropped, as the
  nets drop them), so per-record counts and the test parts match the nets' reports.
- RR (`rr_s`, seconds): pre-RR and post-RR (the nets' definitions, features.rr_intervals), the
  average RR = mean of the RR intervals ending within +-5 min of the beat (the paper's; it
  looks 5 min ahead: NOT causal; near a record's ends the window holds what exists), the local
  RR = mean of the last 10 RR intervals, this beat's pre-RR included (the paper says "10
  surrounding beats"; we take the nets' causal local mean).
- Morphology (first lead = the nets' lead): baseline removed by 200 ms then 600 ms median
  filters (their output subtracted), then a 12-tap FIR low-pass at 35 Hz; amplitudes (mV) at 10
  points evenly spaced from -50 to +100 ms around the annotated R peak (`qrs_*`, 60 Hz) and at 9
  points evenly spaced from +150 to +500 ms (`t_*`), nearest sample. The paper's QRS and T-wave
  durations and P-wave flag need a wave delineator the suite does not have: left out, as are its
  second-lead features.
- Variants (VARIANTS: given with --features, or chosen by --cv inside DS1; the default is the
  paper's): the RR features relative to the +-5-min average RR (`rr_mean`) or to the +-5-min
  median RR (`rr_median`), instead of or beside the seconds.
Classifier: the paper's linear discriminant with each class weighted equally (its compensation
for class imbalance): LDA deciding with equal priors. How the within-class covariance is pooled
is not settled by our reading of the paper: `--lda-pool classes` (default, the reading fixed
before any test score) weights each class's covariance equally, i.e. the class-weighted maximum
likelihood; `--lda-pool beats` weights each beat equally (scikit-learn's LDA given equal priors).
`beats` was added after the default's first DS2 score (S Se 0.44) was seen; no default changed
because of it, and --cv chooses between the two inside DS1 only. `logreg`: standardised features, multinomial logistic regression, class_weight
"balanced", C 1 (scikit-learn's default).
--cv K (inter-patient only): variant x regularisation (REGULARISATION) chosen by the pooled
held-out macro-F1 of trainer.py --cv K's patient-grouped DS1 folds; DS2 is scored once, after.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np
from scipy import ndimage, signal as sps

from beats import CLASS_NAMES, LABEL_SCHEMES
from cli import CliParser, UsageError, log, run_cli
from config import DATA_DEFAULTS, TRAIN_DEFAULTS
from dataset import DS1, PARTS, SPLITTERS, Splits, interpatient_folds, make_splits, records_for
from features import last_starts, rr_intervals, trailing_mean
from metrics import classification_metrics, key_class_stats, test_metrics
from options import check_writable, preset
from report import build_report, result_lines, run_stamp, write_report
from utils import BeatData, PreprocConfig, atomic_write, ensure_records, read_record, windows_inside

PROG = "baseline.py"
AVG_SEC = 300.0          # de Chazal's average RR: +-5 min around the beat
LOCAL_BEATS = 10         # local RR: the last 10 intervals
MEDIAN_SEC = (0.2, 0.6)  # baseline: 200 ms then 600 ms median filters
LOWPASS = (12, 35.0)     # FIR taps, cut-off Hz
QRS_MS = np.linspace(-50.0, 100.0, 10)
T_MS = np.linspace(150.0, 500.0, 9)


def _ms(v: float) -> str:
    """-33.3 -> 'm33ms': a column name's offset, to the millisecond."""
    return f"{'m' if v < 0 else 'p'}{abs(round(v))}ms"


# Every feature column, in order: name -> meaning. Groups are the prefixes VARIANTS combine.
FEATURES: dict[str, str] = {
    "pre_rr_s": "pre-RR (s)", "post_rr_s": "post-RR (s)",
    "avg_rr_s": "mean RR of the intervals ending within +-5 min (s; looks ahead)",
    "local_rr_s": "mean of the last 10 RR intervals, pre-RR included (s)",
    "pre_rr_mean": "pre-RR / avg_rr_s", "post_rr_mean": "post-RR / avg_rr_s", "local_rr_mean": "local RR / avg_rr_s",
    "pre_rr_median": "pre-RR / median RR within +-5 min", "post_rr_median": "post-RR / the same median",
    "local_rr_median": "local RR / the same median",
    **{f"qrs_{_ms(v)}": f"amplitude (mV) {v:+.1f} ms from the R peak" for v in QRS_MS},
    **{f"t_{_ms(v)}": f"amplitude (mV) {v:+.1f} ms from the R peak" for v in T_MS},
}
GROUPS: dict[str, list[str]] = {
    "rr_s": ["pre_rr_s", "post_rr_s", "avg_rr_s", "local_rr_s"],
    **{g: [n for n in FEATURES if n.endswith("_" + g)] for g in ("rr_mean", "rr_median")},
    **{g: [n for n in FEATURES if n.startswith(g + "_")] for g in ("qrs", "t")}}
# The paper's set first: of equal cross-validation scores, it wins.
VARIANTS: dict[str, list[str]] = {
    "paper": ["rr_s", "qrs", "t"], "rr_mean": ["rr_mean", "qrs", "t"], "rr_s_mean": ["rr_s", "rr_mean", "qrs", "t"],
    "rr_median": ["rr_median", "qrs", "t"], "rr_s_median": ["rr_s", "rr_median", "qrs", "t"]}
# What each model's --cv tries; the first is the default. LDA: [pool, shrinkage] (no shrinkage, as
# published; Ledoit-Wolf); logreg: C (sklearn's default first).
REGULARISATION: dict[str, list] = {"lda": [["classes", None], ["classes", "auto"], ["beats", None], ["beats", "auto"]],
                                   "logreg": [1.0, 0.01, 100.0]}
LDA_POOLS = ("classes", "beats")
MODELS = tuple(REGULARISATION)
NON_CAUSAL = {"avg_rr_s", "pre_rr_mean", "post_rr_mean", "local_rr_mean", "pre_rr_median", "post_rr_median",
              "local_rr_median"}


def columns(variant: str) -> list[int]:
    """Column indices of a variant's features in FEATURES order."""
    names = [n for g in VARIANTS[variant] for n in GROUPS[g]]
    return [list(FEATURES).index(n) for n in names]


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------

def clean_signal(sig: np.ndarray, fs: int) -> np.ndarray:
    """de Chazal's preprocessing: baseline = 200 ms then 600 ms median filters, subtracted; then a
    12-tap FIR low-pass at 35 Hz (applied once, centred: half a sample late)."""
    base = sig
    for sec in MEDIAN_SEC:
        base = ndimage.median_filter(base, size=int(round(sec * fs)) | 1, mode="nearest")  # odd length
    return np.convolve(sig - base, sps.firwin(LOWPASS[0], LOWPASS[1], fs=fs), mode="same")


def rr_columns(rpeaks: np.ndarray, fs: int) -> tuple[np.ndarray, str | None]:
    """The 10 RR columns (FEATURES order) of every beat, (n, 10) float64, never NaN; and why the
    +-5-min average is incomplete for this record (None when it is not)."""
    n = len(rpeaks)
    if n < 2:  # no interval: neutral values (1 s, ratios 1)
        return np.ones((n, 10)), "fewer than two beats: no RR interval, RR features set to 1 s and ratios to 1"
    pre, post = rr_intervals(rpeaks, fs, 0.02)             # the nets' intervals (clamped to >= 20 ms)
    rr, t = pre[1:], rpeaks.astype(np.float64) / fs      # interval j ends at beat j + 1
    lo = np.searchsorted(t[1:], t - AVG_SEC, side="left")
    hi = np.searchsorted(t[1:], t + AVG_SEC, side="right")
    c = np.concatenate([[0.0], np.cumsum(rr)])
    whole = float(rr.mean())
    avg = np.where(hi > lo, (c[hi] - c[lo]) / np.maximum(hi - lo, 1), whole)  # > 5 min without a beat: all
    med = np.array([np.median(rr[a:b]) if b > a else whole for a, b in zip(lo, hi)])
    local = trailing_mean(pre, last_starts(n, LOCAL_BEATS))  # the nets' local mean
    out = np.stack([pre, post, avg, local, pre / avg, post / avg, local / avg, pre / med, post / med, local / med], 1)
    span = (rpeaks[-1] - rpeaks[0]) / fs
    short = (f"beats span {span:.0f} s < 10 min: no beat has a whole +-5-min window; the average and median RR "
             "use the intervals the record has" if span < 2 * AVG_SEC else None)
    return out, short


def morphology(clean: np.ndarray, rpeaks: np.ndarray, fs: int) -> np.ndarray:
    """QRS- and T-window amplitudes of every beat (n, 19): nearest samples, clipped to the record."""
    off = np.rint(np.concatenate([QRS_MS, T_MS]) * fs / 1000.0).astype(np.int64)
    return clean[np.clip(rpeaks[:, None] + off, 0, len(clean) - 1)]


def record_features(root: str | os.PathLike, rec: str, cfg: PreprocConfig) -> dict:
    """One record -> its kept beats' features (k, len(FEATURES)), labels, R peaks, symbols, lead,
    dropped count and its short-record note."""
    sig, samp, sym, lead = read_record(root, rec, cfg)
    rr, short = rr_columns(samp, cfg.fs)
    kept = windows_inside(samp, len(sig), cfg.window)  # the nets' rows
    x = np.concatenate([rr, morphology(clean_signal(sig, cfg.fs), samp, cfg.fs)], 1)[kept]
    table = LABEL_SCHEMES[cfg.classes]
    return dict(x=x, y=np.array([table[s] for s in sym[kept]], np.int64), rpeak=samp[kept], symbol=sym[kept],
                lead=lead, dropped=int((~kept).sum()), short=short)


def load_features(root: str | os.PathLike, cfg: PreprocConfig, records: list[str], download: bool = True,
                  log=log) -> tuple[BeatData, dict[str, str]]:
    """Features of every beat the nets' BeatData holds for `records` (x = the FEATURES columns);
    and {record: note} for records whose +-5-min average is incomplete."""
    cfg.validate()
    ensure_records(root, records, download=download, log=log)
    parts = [record_features(root, r, cfg) for r in records]
    cat = lambda k: np.concatenate([p[k] for p in parts])  # noqa: E731
    data = BeatData(x=cat("x"), y=cat("y"), rpeak=cat("rpeak"), symbol=cat("symbol"),
                    record=np.concatenate([np.full(len(p["y"]), int(r), np.int32) for r, p in zip(records, parts)]),
                    rr=np.zeros((sum(len(p["y"]) for p in parts), 0), np.float32),
                    class_names=list(CLASS_NAMES[cfg.classes]), config=cfg,
                    leads={r: p["lead"] for r, p in zip(records, parts)},
                    dropped={r: p["dropped"] for r, p in zip(records, parts)})
    return data, {r: p["short"] for r, p in zip(records, parts) if p["short"]}


def baseline_splits(data: BeatData, mode: str, seed: int) -> Splits:
    """The nets' split of `mode` and `seed` (dataset.make_splits), its validation part joined to
    training: a baseline has no early stopping. Inter-patient: train = all of DS1, test = DS2."""
    s = make_splits(data, mode, seed)
    train = np.sort(np.concatenate([s.train, s.val]))
    records = {"train": sorted(set(s.records["train"]) | set(s.records["val"]), key=int), "val": [],
               "test": s.records["test"]}
    return Splits(s.mode, train, s.val[:0], s.test, records=records, warning=s.warning, notes=s.notes + [
        "baseline: no validation step; the split's validation part joins its training part, the test part is "
        "the nets'"])


# ----------------------------------------------------------------------------------------------
# Classifiers
# ----------------------------------------------------------------------------------------------

class EqualPriorLDA:
    """LDA (scikit-learn, lsqr) deciding with equal priors over the classes it is fitted on.
    pool "classes": the pooled within-class covariance is the mean of the class covariances (each
    class weighs the same: the class-weighted likelihood); "beats": every beat weighs the same
    (the priors are set equal after the fit). Built per fit, so cross-validation needs no clone."""

    def __init__(self, pool: str = "classes", shrinkage: str | None = None):
        self.pool, self.shrinkage = pool, shrinkage

    def fit(self, x: np.ndarray, y: np.ndarray) -> "EqualPriorLDA":
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        k = len(np.unique(y))
        self.lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=self.shrinkage,
                                              priors=np.full(k, 1.0 / k) if self.pool == "classes" else None).fit(x, y)
        if self.pool == "beats":  # the fit used the class frequencies: decide with equal priors instead
            self.lda.intercept_ = self.lda.intercept_ + np.log(1.0 / k) - np.log(self.lda.priors_)
        self.coef_, self.intercept_, self.classes_ = self.lda.coef_, self.lda.intercept_, self.lda.classes_
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.lda.predict(x)


def make_classifier(model: str, reg):
    """An unfitted classifier: EqualPriorLDA with reg = [pool, shrinkage]; or standardised
    logistic regression with balanced class weights and inverse strength C = reg."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if model == "lda":
        return EqualPriorLDA(*reg)
    return make_pipeline(StandardScaler(), LogisticRegression(C=reg, class_weight="balanced", max_iter=2000))


def linear_function(clf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fitted classifier as (W (C, F), b (C,), classes (C,)): predict = classes[argmax(x @ W.T + b)]
    (a logistic regression's scaler folded into W and b)."""
    if hasattr(clf, "steps"):
        scaler, lr = clf.steps[0][1], clf.steps[-1][1]
        w = lr.coef_ / scaler.scale_
        w, b, classes = w, lr.intercept_ - w @ scaler.mean_, lr.classes_
    else:
        w, b, classes = clf.coef_, clf.intercept_, clf.classes_
    if len(classes) == 2:  # scikit-learn keeps one row for two classes: its score is class 1's over class 0's
        w, b = np.vstack([np.zeros_like(w), w]), np.concatenate([[0.0], b])
    return w, b, classes


def grouped_cv_predict(x: np.ndarray, y: np.ndarray, record: np.ndarray, make, k: int) -> np.ndarray:
    """Pooled held-out class of every DS1 beat over trainer.py --cv k's patient-grouped folds
    (dataset.interpatient_folds): each fold's beats are predicted by `make(y_train)` (an unfitted
    sklearn classifier) fitted on the other folds. x (N, F), y and record (N,) ints -> (N,)."""
    pred = np.full(len(y), -1)
    for held in interpatient_folds(k):
        va = np.isin(record, [int(r) for r in held])
        pred[va] = make(y[~va]).fit(x[~va], y[~va]).predict(x[va])
    return pred


def cross_validate(x: np.ndarray, y: np.ndarray, record: np.ndarray, names: list[str], model: str,
                   variants: list[str], k: int, pool: str | None = None, log=log) -> dict:
    """--cv K: every (variant, regularisation) scored by the pooled held-out macro-F1 of the K
    patient-grouped DS1 folds (dataset.interpatient_folds, as trainer.py --cv); the best (the
    first of equals: the paper's set, the default regularisation) is chosen. Only DS1 rows may
    be given: the function refuses any other record, so no DS2 beat can take part. `pool` (LDA):
    only that pooling is tried."""
    if not {str(r) for r in np.unique(record)} <= set(DS1):
        raise AssertionError("cross-validation was given beats outside DS1")
    t0, rows = time.perf_counter(), []
    for variant in variants:
        cols = columns(variant)
        for reg in [r for r in REGULARISATION[model] if pool is None or r[0] == pool]:
            pred = grouped_cv_predict(x[:, cols], y, record, lambda yt, reg=reg: make_classifier(model, reg), k)
            m, kc = classification_metrics(y, pred, names), key_class_stats(y, pred, names)
            rows.append({"variant": variant, "regularisation": reg, "macro_f1": m["macro_f1"], "key_classes": kc})
            log(f"cv: {variant:12s} {model} {'C' if model == 'logreg' else 'pool, shrinkage'} {reg}: pooled held-out "
                f"macro-F1 {m['macro_f1']:.4f}" + "".join(f", {c} F1 {kc[c]['F1']:.3f}" for c in kc))
    best = max(rows, key=lambda r: r["macro_f1"])  # max keeps the first of equals
    return {"k": k, "folds": interpatient_folds(k), "selection": "variant and regularisation of the best pooled "
            "held-out macro-F1 over DS1 (K patient-grouped folds)", "chosen": best, "scores": rows,
            "seconds": time.perf_counter() - t0}


def cost(clf, w: np.ndarray, b: np.ndarray, x: np.ndarray) -> dict:
    """model_metrics of a linear classifier: weights, multiply-adds per beat, and timings on this
    machine of the features `x` (already computed: feature extraction is not included, as the nets'
    latency leaves out preprocessing). Latency: one beat, the linear function in NumPy (and sklearn's
    predict, input checks included), median / p90 of 300 calls; throughput: batches of 256;
    peak memory: tracemalloc's peak over one 256-beat prediction."""
    def times(fn, reps: int) -> np.ndarray:
        fn()
        out = np.empty(reps)
        for i in range(reps):
            t0 = time.perf_counter()
            fn()
            out[i] = time.perf_counter() - t0
        return out * 1e3
    one, batch = x[:1], np.resize(x, (256, x.shape[1]))
    lat = times(lambda: np.argmax(one @ w.T + b, 1), 300)
    skl = times(lambda: clf.predict(one), 300)
    thr = times(lambda: clf.predict(batch), 30)
    tracemalloc.start()
    clf.predict(batch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    n = int(w.size + b.size)
    return {"params_total": n, "params_trainable": n, "state_dict_bytes": 8 * n, "macs": int(w.size),
            "flops": 2 * int(w.size), "latency_median_ms": float(np.median(lat)),
            "latency_p90_ms": float(np.percentile(lat, 90)), "latency_sklearn_median_ms": float(np.median(skl)),
            "latency_threads": 1, "throughput_beats_per_s": float(256 / np.median(thr) * 1e3),
            "peak_memory_bytes": int(peak), "device": "cpu",
            "method": "linear function W (C x F) + b, float64; latency = one beat, NumPy x @ W.T + b and argmax; "
                      "throughput and peak memory = sklearn predict of 256 beats; feature extraction excluded"}


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------

def build_parser() -> CliParser:
    D, T = DATA_DEFAULTS, TRAIN_DEFAULTS
    p = CliParser(prog=PROG, description="de Chazal et al. 2004's linear discriminant (or a class-weighted "
                  "logistic regression) on the nets' splits, with the nets' report.")
    p.add_argument("--model", choices=MODELS, default="lda", help="classifier: 'lda' (the paper's, equal priors) "
                   "or 'logreg' (class-weighted logistic regression) (default: lda)")
    p.add_argument("--lda-pool", choices=LDA_POOLS, help="LDA's pooled within-class covariance: 'classes' = each "
                   "class's covariance weighs the same (the class-weighted likelihood: our reading of the paper); "
                   "'beats' = each beat weighs the same (scikit-learn's LDA); decisions use equal priors either way "
                   "(default: classes; with --cv: chosen inside DS1)")
    p.add_argument("--features", choices=sorted(VARIANTS), help="feature variant: 'paper' = RR in seconds + QRS "
                   "and T-window amplitudes; 'rr_mean' / 'rr_median' = RR relative to the +-5-min mean / median "
                   "instead of seconds; 'rr_s_mean' / 'rr_s_median' = both (default: paper; with --cv: chosen "
                   "inside DS1)")
    p.add_argument("--split", choices=list(SPLITTERS), default=T["split"], help=f"split protocol, the nets' "
                   f"(default: {T['split']})")
    p.add_argument("--classes", choices=sorted(CLASS_NAMES), help=f"label scheme (default: {D['classes']}; "
                   f"interpatient: {preset('interpatient')['classes']})")
    p.add_argument("--segment-sec", type=float, help="beats whose window of this many seconds leaves the record are "
                   f"dropped, as the nets drop them (default: {D['segment_sec']}; interpatient: "
                   f"{preset('interpatient')['segment_sec']}, the nets' presets)")
    p.add_argument("--root", default=D["root"], help=f"folder with the MIT-BIH records; downloaded when missing "
                   f"(default: {D['root']})")
    p.add_argument("--no-download", action="store_true", help="never download missing records, fail instead "
                   "(default: off)")
    p.add_argument("--seed", type=int, default=T["seed"], help=f"seed of the split and the bootstrap "
                   f"(default: {T['seed']})")
    p.add_argument("--cv", type=int, metavar="K", help="with --split interpatient: choose the feature variant and "
                   "regularisation by K-fold patient-grouped cross-validation inside DS1, then fit on DS1 and score "
                   "DS2 once (default: off: the paper's configuration)")
    p.add_argument("--bootstrap", type=int, default=T["bootstrap"], help=f"bootstrap resamples for confidence "
                   f"intervals, 0 = off (default: {T['bootstrap']})")
    p.add_argument("--out-dir", default=T["out_dir"], help=f"where the report goes (default: {T['out_dir']})")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Split presets, then impossible values as one line."""
    applied = preset(args.split)
    if args.classes is None:
        args.classes = applied.get("classes", DATA_DEFAULTS["classes"])
    if args.segment_sec is None:
        args.segment_sec = applied.get("segment_sec", DATA_DEFAULTS["segment_sec"])
    if args.cv is not None and (not 2 <= args.cv <= len(DS1) or args.split != "interpatient"):
        raise UsageError(f"--cv K needs 2 <= K <= {len(DS1)} (DS1's records) and --split interpatient (it runs "
                         "inside DS1)")
    if args.lda_pool is not None and args.model != "lda":
        raise UsageError("--lda-pool sets how LDA pools its covariance: use it with --model lda")
    if not args.cv:
        args.features = args.features or "paper"
        args.lda_pool = args.lda_pool or ("classes" if args.model == "lda" else None)
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if not args.segment_sec > 0 or round(args.segment_sec * DATA_DEFAULTS["fs"]) < 8:
        raise UsageError(f"--segment-sec must give at least 8 samples per beat, got {args.segment_sec}")


def run(args: argparse.Namespace) -> int:
    """Features -> the nets' split -> (--cv: choose inside DS1) -> fit the training part -> score
    the test part once -> report."""
    t_start = time.perf_counter()
    check_args(args)
    out_dir = check_writable(args.out_dir)
    cfg = PreprocConfig(segment_sec=args.segment_sec, classes=args.classes)
    data, short = load_features(args.root, cfg, records_for(args.split), download=not args.no_download)
    t_features = time.perf_counter() - t_start
    for rec, why in short.items():
        log(f"note: record {rec}: {why}")
    splits = baseline_splits(data, args.split, args.seed)
    names = data.class_names
    log(f"features: {len(data)} beats x {len(FEATURES)} columns of {len(data.leads)} records in {t_features:.1f} s; "
        + "  ".join(f"{p}: {len(splits.part(p))}" for p in PARTS))
    tr, te = splits.train, splits.test
    cv = None
    if args.cv:
        cv = cross_validate(data.x[tr], data.y[tr], data.record[tr], names, args.model,
                            [args.features] if args.features else list(VARIANTS), args.cv, pool=args.lda_pool)
        variant, reg = cv["chosen"]["variant"], cv["chosen"]["regularisation"]
        log(f"cv: chose {variant}, {args.model} regularisation {reg} (pooled held-out macro-F1 "
            f"{cv['chosen']['macro_f1']:.4f})")
    else:
        variant, reg = args.features, ([args.lda_pool, None] if args.model == "lda" else REGULARISATION["logreg"][0])
    cols = columns(variant)
    t0 = time.perf_counter()
    clf = make_classifier(args.model, reg).fit(data.x[tr][:, cols], data.y[tr])
    t_fit = time.perf_counter() - t0
    w, b, classes = linear_function(clf)
    pred = np.asarray(clf.predict(data.x[te][:, cols]), np.int64)  # the test part, once
    test = test_metrics(data.y[te], pred, data.record[te], names, grouped=splits.mode != "stratified",
                        bootstrap=args.bootstrap, seed=args.seed)
    mm = cost(clf, w, b, data.x[te][:, cols])

    used = [list(FEATURES)[c] for c in cols]
    features = {"variant": variant, "groups": VARIANTS[variant], "names": used, "count": len(used),
                "meaning": {n: FEATURES[n] for n in used}, "non_causal": [n for n in used if n in NON_CAUSAL],
                "causality": "RR features use the beat's past and its post-RR, as the nets'; the +-5-min average "
                             "and median RR look up to 5 min ahead (listed in non_causal); morphology uses the "
                             "signal up to +0.8 s (T window + median filter), as the nets' windows and zero-phase "
                             "filtering use the signal after the beat",
                "short_records": short, "preprocessing": {"median_filters_s": list(MEDIAN_SEC),
                                                          "lowpass_fir": {"taps": LOWPASS[0], "cutoff_hz": LOWPASS[1]},
                                                          "qrs_ms": QRS_MS.tolist(), "t_ms": T_MS.tolist()}}
    best_val = ({"source": f"{cv['k']}-fold cross-validation inside DS1", "variant": variant, "regularisation": reg,
                 "macro_f1": cv["chosen"]["macro_f1"]} if cv else
                {"source": "none: the paper's configuration, fixed in advance"
                 if variant == "paper" and reg == REGULARISATION[args.model][0] else "none: the configuration given",
                 "variant": variant, "regularisation": reg})
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = run_stamp(out_dir)
    model_path = out_dir / f"baseline_{args.model}_{stamp}.npz"
    report_path = out_dir / f"eval_report_{args.model}_{stamp}.json"
    atomic_write(model_path, lambda f: np.savez(f, W=w, b=b, classes=classes, names=np.array(used),
                                               class_names=np.array(names)))
    report = build_report(
        model_name=args.model, stamp=stamp, ckpt_path=model_path, args=vars(args), class_names=names,
        preprocessing={**cfg.to_dict(), "normalize": "none", "band": None, "rr_features": None, "template": False,
                       "baseline_features": variant},
        dataset={**splits.summary(data), "leads": data.leads}, test=test, best_val=best_val, history=[],
        model_metrics=mm, device="cpu", seed=args.seed, t_total=time.perf_counter() - t_start, interrupted=False)
    import sklearn
    report["environment"]["sklearn"] = sklearn.__version__
    report["timing"].update(features_seconds=t_features, fit_seconds=t_fit, cv_seconds=cv["seconds"] if cv else None)
    report["features"] = features
    if cv:
        report["cv"] = cv
    write_report(report, report_path)
    log_result(test, names, splits)
    log(f"wrote {report_path}")
    return 0


def log_result(test: dict, names: list[str], splits: Splits, log=log) -> None:
    """The nets' end-of-run table (report.result_lines), then where the S beats found are: record
    232's share."""
    what = {"interpatient": "DS2"}.get(splits.mode, f"{splits.mode} test part")
    for line in result_lines(test, names, what, by_record=splits.mode != "stratified"):
        log(line)
    kc, r232 = test["key_classes"], test["per_record"].get("232", {}).get("key_classes", {}).get("S")
    if r232 and splits.mode != "stratified":
        log(f"record 232: {r232['TP']} of its {r232['n']} S beats found ({r232['TP'] / max(1, kc['S']['TP']):.0%} "
            "of all S beats found)")


def main(argv: list[str] | None = None) -> int:
    """CLI entry: one line on stderr and a non-zero exit for every user error."""
    return run_cli(PROG, lambda: run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
