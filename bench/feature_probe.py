"""How far the inter-patient preset's inputs carry S and V without a neural net: gradient-boosted
trees (or a linear model, the literature's classic learner) on the same per-beat features, scored
by the same cross-validation inside DS1.

    MITBIH_DIR=../shared/mitdb python bench/feature_probe.py [--learner linear]

Only DS1's 22 records are loaded (DS2 is never read). The folds are trainer.py --cv 4's
(dataset.interpatient_folds): every DS1 beat is predicted once by a model that never saw its
patient, and the pooled held-out predictions are scored like bench/cv_compare.py's rows, so a
row here sits beside the nets' cross-validation rows. Feature sets (FEATURE_SETS):

- ``rr``            the RR set of --rr-features (default: the preset's)
- ``rr+diff``       plus the beat minus the running template, every 8th sample
- ``rr+diff+beat``  plus the beat itself, every 8th sample (on the template's scale)

A tree model that reads the RR features sharply is an upper reference for what these inputs hold
about S in DS1; when it beats the nets by more than their seed noise, the nets are not using
their inputs. The linear model (standardised inputs, multinomial logistic regression, no class
weights like the preset) asks the opposite question: how much of it a single hyperplane per class,
which cannot carve out training patients, already gets. Prints a Markdown table and appends a
JSON line to bench/results.jsonl.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from common import grouped_cv_predict, parser, records_missing, run_script  # noqa: E402  (puts the repository on sys.path)

from beats import RR_FEATURES  # noqa: E402
from config import DATA_DEFAULTS, SPLIT_PRESETS  # noqa: E402
from dataset import DS1  # noqa: E402
from metrics import classification_metrics, key_class_stats  # noqa: E402
from utils import PreprocConfig, load_beats  # noqa: E402

FEATURE_SETS = ("rr", "rr+diff", "rr+diff+beat")
STRIDE = 8  # waveform samples kept: every 8th (432 -> 54 at the preset's 1.2 s)


def columns(data, which: str) -> np.ndarray:
    """Feature matrix (N, F) of the set `which` (see FEATURE_SETS)."""
    parts = {"rr": data.rr, "diff": (data.x - data.tm)[:, ::STRIDE], "beat": data.x[:, ::STRIDE]}
    return np.column_stack([parts[k] for k in which.split("+")]).astype(np.float32)


def _trees(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(max_iter=200, random_state=seed)


def _linear(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    # scaled on each fold's training part only: the held-out patients inform nothing
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


LEARNERS = {"trees": _trees, "linear": _linear}  # --learner -> a fresh, unfitted sklearn classifier


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--cv", type=int, default=4, help="patient-grouped folds inside DS1 (default: 4)")
    preset = SPLIT_PRESETS["interpatient"]
    ap.add_argument("--rr-features", default=preset["rr_features"], choices=sorted(RR_FEATURES),
                    help=f"per-beat RR set (default: the inter-patient preset's, {preset['rr_features']})")
    ap.add_argument("--learner", default="trees", choices=list(LEARNERS),
                    help="gradient-boosted trees or a linear model (logistic regression) (default: trees)")
    ap.add_argument("--seed", type=int, default=0, help="tree seed (default: 0)")
    ap.add_argument("--sets", nargs="+", default=list(FEATURE_SETS), choices=FEATURE_SETS,
                    help="feature sets to score (default: all)")
    args = ap.parse_args()
    if records_missing(args.root, "bench/feature_probe.py", DS1):  # DS1 is all it reads
        return 2
    cfg = PreprocConfig(classes=preset["classes"], segment_sec=preset["segment_sec"], template=True,
                        rr_features=args.rr_features, normalize=DATA_DEFAULTS["normalize"])
    data = load_beats(args.root, cfg, records=list(DS1), download=False, log=lambda s: None)
    names = data.class_names
    print(f"DS1 only ({len(data)} beats), {args.cv} patient-grouped folds, RR set {args.rr_features!r}, "
          f"learner {args.learner!r}, pooled held-out predictions\n")
    print("| features | macro-F1 | N Se | S Se | S +P | S F1 | V Se | V +P | V F1 | seconds |")
    print("|---|" + "---:|" * 9)
    rows = []
    for which in args.sets:
        t0 = time.perf_counter()
        pred = grouped_cv_predict(columns(data, which), data.y, data.record,
                                  lambda _: LEARNERS[args.learner](args.seed), args.cv)
        m = classification_metrics(data.y, pred, names)
        kc = key_class_stats(data.y, pred, names)
        sec = time.perf_counter() - t0
        rows.append({"features": which, "macro_f1": m["macro_f1"],
                     "N_recall": m["per_class"][names[0]]["recall"], "key_classes": kc, "seconds": sec})
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {which} | {m['macro_f1']:.3f} | {m['per_class'][names[0]]['recall']:.3f} | "
              + " | ".join(f(kc[c][s]) for c in ("S", "V") for s in ("Se", "+P", "F1")) + f" | {sec:.0f} |")
    with open(Path(__file__).with_name("results.jsonl"), "a") as fh:
        fh.write(json.dumps({"bench": "feature_probe", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "rr_features": args.rr_features, "learner": args.learner, "cv": args.cv,
                             "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
