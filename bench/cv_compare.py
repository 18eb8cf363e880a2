"""Compare inter-patient settings by their cross-validation inside DS1 (cv_report_*.json files).

    python trainer.py --split interpatient --cv 4 --cv-only --epochs 15 --out-dir runs/cv/a [flags a]
    python trainer.py --split interpatient --cv 4 --cv-only --epochs 15 --out-dir runs/cv/b [flags b]
    python bench/cv_compare.py runs/cv/*/cv_report_*.json

One row per report, at the epoch its cross-validation chose: pooled held-out macro-F1 (every DS1
beat predicted once by a model that never saw its patient), N recall, S and V EC57 Se / +P and
F1, the flags that differ between the reports, and the chosen epochs. DS2 is in none of these
numbers: this is the table to choose inputs and settings from.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from common import parser  # noqa: E402  (puts the repository on sys.path)

IGNORED = {"out_dir", "root", "quiet", "threads", "device", "cache", "no_download", "num_workers",
           "resume", "eval_only", "bootstrap", "cv_only"}


def rows(paths: list[Path]) -> list[dict]:
    reps = [json.loads(p.read_text()) for p in paths]
    keys = sorted({k for r in reps for k in r["args"]} - IGNORED)
    differ = [k for k in keys if len({json.dumps(r["args"].get(k)) for r in reps}) > 1]
    out = []
    for p, r in zip(paths, reps):
        best = r["cv"]["best"]
        k = best["key_classes"]
        out.append({"settings": " ".join(f"{d}={r['args'].get(d)}" for d in differ) or p.parent.name,
                    "epochs": best["epoch"], "macro_f1": best["macro_f1"], "N_recall": best["N_recall"],
                    **{f"{c}_{s}": k[c][s] for c in ("S", "V") if c in k for s in ("Se", "+P", "F1")},
                    "folds": r["cv"]["k"], "report": str(p)})
    return sorted(out, key=lambda row: -row["macro_f1"])


def markdown(table: list[dict]) -> str:
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| settings | epochs | macro-F1 | N Se | S Se | S +P | S F1 | V Se | V +P | V F1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        lines.append(f"| {r['settings']} | {r['epochs']} | {f(r['macro_f1'])} | {f(r['N_recall'])} | "
                     f"{f(r.get('S_Se'))} | {f(r.get('S_+P'))} | {f(r.get('S_F1'))} | "
                     f"{f(r.get('V_Se'))} | {f(r.get('V_+P'))} | {f(r.get('V_F1'))} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = parser(__doc__, root=False)
    ap.add_argument("reports", nargs="+", help="cv_report_*.json files written by trainer.py --cv K --cv-only")
    args = ap.parse_args()
    paths = [Path(p) for p in args.reports]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"bench/cv_compare.py: error: no such report: {' '.join(missing)}", file=sys.stderr)
        return 2
    try:
        table = rows(paths)
    except (ValueError, KeyError, TypeError) as e:
        print(f"bench/cv_compare.py: error: not a cv_report of trainer.py --cv-only ({type(e).__name__}: {e})",
              file=sys.stderr)
        return 2
    print(markdown(table), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
