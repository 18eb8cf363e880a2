"""How far RR intervals alone carry the inter-patient S and V classes: a gradient-boosted tree
on RR features only, scored by trainer.py --cv 4's patient-grouped folds inside DS1 (AAMI
classes). DS2 is never read: a probe that answers "which normalisation?" on the test records
would let them choose one.

    MITBIH_DIR=../shared/mitdb python bench/rr_probe.py

The neural nets see these features through `--rr`; this probe asks whether a different RR
normalisation, or leaving the absolute intervals out, would be worth giving them. Feature sets
(FEATURE_SETS below): the trainer's own four (pre-RR and post-RR in seconds, `abs`, and both
divided by the mean of the previous 10 RR, `local`), plus the same two divided by the record's
median RR (`global`) or by the mean RR of a +-150 s window around the beat (`centred`, de Chazal
et al. 2004's "average RR"), and relative sets without the seconds, which carry each patient's
heart rate. All use unlabelled R-peak times of the beat's own record only (no labels, no other
patient); `global` and `centred` also use later beats (the whole record, 150 s ahead), which a
monitor could not. Every DS1 beat is predicted once, by a tree that never saw its patient, and
the pooled predictions are scored. Prints a Markdown table and appends a JSON line to
bench/results.jsonl (bench "rr_probe_cv"; until 2026-12-02 this probe tested DS2, under the
bench name "rr_probe"). Takes about 30 s.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from common import grouped_cv_predict, parser, records_missing, run_script  # noqa: E402  (puts the repository on sys.path)

from dataset import DS1  # noqa: E402
from beats import BEAT_SYMBOLS, CLASS_NAMES, LABEL_SCHEMES  # noqa: E402
from features import rr_features  # noqa: E402
from utils import read_annotations  # noqa: E402

# column groups joined by "+"; the module docstring says what each group holds
FEATURE_SETS = ("abs+local", "abs+local+global", "abs+local+centred", "local", "local+centred")


def features(root: str, rec: str, cols: str) -> tuple[np.ndarray, np.ndarray]:
    """RR feature columns `cols` (see FEATURE_SETS) and AAMI labels (n,) of one record's beats."""
    samp, sym = read_annotations(Path(root) / f"{rec}.atr")
    beat = np.isin(sym, list(BEAT_SYMBOLS))
    samp, sym = samp[beat], sym[beat]
    f = rr_features(samp, 360)  # (n, 4): pre, post, pre / local, post / local
    pre, post = f[:, 0], f[:, 1]
    t = samp / 360.0
    c = np.concatenate([[0.0], np.cumsum(pre)])
    lo, hi = np.searchsorted(t, t - 150), np.searchsorted(t, t + 150)
    centred = (c[hi] - c[lo]) / np.maximum(hi - lo, 1)  # mean pre-RR within +-150 s
    glob = np.median(np.diff(samp)) / 360.0
    parts = {"abs": f[:, :2], "local": f[:, 2:], "global": np.column_stack([pre / glob, post / glob]),
             "centred": np.column_stack([pre / centred, post / centred])}
    x = np.column_stack([parts[k] for k in cols.split("+")])
    return x, np.array([LABEL_SCHEMES["aami5"][s] for s in sym])


def main() -> int:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import precision_recall_fscore_support
    ap = parser(__doc__)
    args = ap.parse_args()
    if records_missing(args.root, "bench/rr_probe.py", DS1):  # DS1 is all it reads
        return 2
    names = CLASS_NAMES["aami5"]
    print("| RR features | " + " | ".join(f"{c} F1" for c in names) + " | S Se / +P | V Se / +P |")
    print("|---|" + "---:|" * (len(names) + 2))
    k = 4

    def trees(ytr: np.ndarray):  # square-root inverse-frequency weights of the fold's training part
        n = np.bincount(ytr, minlength=len(names))
        weight = {c: float(np.sqrt(len(ytr) / (len(names) * n[c]))) for c in range(len(names)) if n[c]}
        return HistGradientBoostingClassifier(max_iter=200, class_weight=weight, random_state=0)

    rows = []
    for fs in FEATURE_SETS:
        per = [features(args.root, r, fs) for r in DS1]  # (x, y) per record
        x, y = (np.concatenate(a) for a in zip(*per))
        record = np.repeat([int(r) for r in DS1], [len(yr) for _, yr in per])
        pred = grouped_cv_predict(x, y, record, trees, k)
        p, r, f1, _ = precision_recall_fscore_support(y, pred, labels=range(len(names)), zero_division=0)
        rows.append({"features": fs, "f1": f1.tolist(), "se": r.tolist(), "ppv": p.tolist()})
        print(f"| {fs} | " + " | ".join(f"{v:.3f}" for v in f1)
              + f" | {r[1]:.3f} / {p[1]:.3f} | {r[2]:.3f} / {p[2]:.3f} |")
    with open(Path(__file__).with_name("results.jsonl"), "a") as f:
        f.write(json.dumps({"bench": "rr_probe_cv", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "classes": names, "cv": k, "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
