"""Compare inter-patient settings by their cross-validation inside DS1 (cv_report_*.json files).

    python trainer.py --split interpatient --cv 4 --cv-only --epochs 15 --out-dir runs/cv/a [flags a]
    python trainer.py --split interpatient --cv 4 --cv-only --epochs 15 --out-dir runs/cv/b [flags b]
    python bench/cv_compare.py runs/cv/*/cv_report_*.json

One row per report, at the epoch its cross-validation chose: pooled held-out macro-F1 (every DS1
beat predicted once, by a model that never saw its patient) with its 95 % record-resampled
bootstrap interval, N recall, S and V EC57 Se / +P and F1, the flags that differ between the
reports, and the chosen epochs. DS2 is in none of these numbers: this is the table to choose
inputs and settings from.

    python bench/cv_compare.py --against runs/cv/a/cv_report_*.json runs/cv/b/cv_report_*.json

adds a second table: each report minus the --against report, in macro-F1, S F1 and V F1, with
95 % intervals from a paired bootstrap over DS1's records (the same patients drawn for both, so
the interval answers "is this setting better on these patients"). Pairing needs both reports'
held-out predictions of the same beats (reports written since the "held_out" field exists).

    python bench/cv_compare.py --vote runs/cv/seed*/cv_report_*.json

adds the majority vote of the reports' held-out predictions as a row of the first table (ties go
to the first report's class): what an ensemble of those runs would score inside DS1, e.g. of
the same setting at several seeds.

    python bench/cv_compare.py --records runs/cv/a/cv_report_*.json

adds, for each report, where its held-out S and V errors are: per DS1 record, the class's beats
found out of its total, what the missed ones were called, and the false calls of the class with
what those beats truly were. It says which patients a setting's figures rest on.

    python bench/cv_compare.py runs/cv/b_seed*/cv_report_*.json --seeds-against runs/cv/a_seed*/cv_report_*.json

pairs each report with the --seeds-against report of the same --seed and prints, per seed, the
difference in pooled macro-F1 (and S, V F1) at each run's chosen epoch, then their mean, standard
deviation, how many are positive, and a one-sided paired t-test over seeds (is b better than a?).
Seeds often move macro-F1 inside DS1 by more than a setting does, so a rule fixed before the runs
on several fresh seeds is the honest way to decide (docs/lab/inter_patient_rounds.md, fifteenth round).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from common import parser, run_script  # noqa: E402  (puts the repository on sys.path)

import numpy as np  # noqa: E402

from metrics import classification_metrics, confusion_matrix, key_class_stats, paired_bootstrap_diff  # noqa: E402

IGNORED = {"out_dir", "root", "quiet", "threads", "device", "cache", "no_download", "num_workers",
           "resume", "eval_only", "bootstrap", "cv_only", "config"}


def key_columns(k: dict) -> dict:
    """S and V Se / +P / F1 of a key_classes dict, as the table's columns."""
    return {f"{c}_{s}": k[c][s] for c in ("S", "V") if c in k for s in ("Se", "+P", "F1")}


def rows(reports: dict[Path, dict]) -> list[dict]:
    paths, reps = list(reports), list(reports.values())
    keys = sorted({k for r in reps for k in r["args"]} - IGNORED)
    differ = [k for k in keys if len({json.dumps(r["args"].get(k)) for r in reps}) > 1]
    out = []
    for p, r in zip(paths, reps):
        best = r["cv"]["best"]
        k = best["key_classes"]
        out.append({"settings": " ".join(f"{d}={r['args'].get(d)}" for d in differ) or p.parent.name,
                    "epochs": best["epoch"], "macro_f1": best["macro_f1"], "N_recall": best["N_recall"],
                    "ci": (best.get("ci") or {}).get("macro_f1"), **key_columns(k),
                    "folds": r["cv"]["k"], "report": str(p)})
    return sorted(out, key=lambda row: -row["macro_f1"])


def markdown(table: list[dict]) -> str:
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    ci = lambda c: f" [{c['low']:.3f}, {c['high']:.3f}]" if c and c.get("low") is not None else ""  # noqa: E731
    lines = ["| settings | epochs | macro-F1 [95 % CI] | N Se | S Se | S +P | S F1 | V Se | V +P | V F1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        lines.append(f"| {r['settings']} | {r['epochs']} | {f(r['macro_f1'])}{ci(r['ci'])} | {f(r['N_recall'])} | "
                     f"{f(r.get('S_Se'))} | {f(r.get('S_+P'))} | {f(r.get('S_F1'))} | "
                     f"{f(r.get('V_Se'))} | {f(r.get('V_+P'))} | {f(r.get('V_F1'))} |")
    return "\n".join(lines) + "\n"


def digits(s: str) -> np.ndarray:
    """A digit string of class indices (trainer.py's held_out) -> (N,) uint8."""
    return np.frombuffer(s.encode(), np.uint8) - ord("0")


def held_out(rep: dict, path: Path) -> dict:
    """A report's held-out predictions as arrays, or ValueError naming the report."""
    h = rep["cv"].get("held_out")
    if not h:
        raise ValueError(f"{path} has no held-out predictions (written before they were stored); rerun it")
    return {"beats": h["beats"], "y": digits(h["y"]), "pred": digits(h["pred"]),
            "records": np.repeat(*np.array(h["records"]).T), "classes": rep["classes"]}


def same_beats(a: dict, b: dict) -> bool:
    """Did two held_out() results predict the same beats under the same classes?"""
    return a["beats"] == b["beats"] and a["classes"] == b["classes"]


def majority(preds: np.ndarray, n_classes: int) -> np.ndarray:
    """(R, N) predictions of R runs -> (N,) the most voted class; a tie goes to run 0's class when
    it is among the most voted, else to the lowest tied class."""
    votes = np.stack([(preds == c).sum(0) for c in range(n_classes)])  # (C, N)
    top = votes.max(0)
    first = preds[0].astype(np.int64)
    return np.where(votes[first, np.arange(preds.shape[1])] == top, first, votes.argmax(0))


def vote_row(reports: dict[Path, dict]) -> dict:
    """The first table's row for the majority vote of the reports' held-out predictions."""
    hs = [held_out(r, p) for p, r in reports.items()]
    if not all(same_beats(h, hs[0]) for h in hs):
        raise ValueError("--vote needs reports that predicted the same beats (same inputs and classes)")
    names = hs[0]["classes"]
    pred = majority(np.stack([h["pred"] for h in hs]), len(names))
    y = hs[0]["y"].astype(np.int64)
    m = classification_metrics(y, pred, names)
    return {"settings": f"majority vote of {len(hs)} reports", "epochs": "-", "macro_f1": m["macro_f1"],
            "N_recall": m["per_class"][names[0]]["recall"], "ci": None, **key_columns(key_class_stats(y, pred, names)),
            "folds": None, "report": ""}


def paired(base: Path, reports: dict[Path, dict], n_boot: int = 2000) -> str:
    """Markdown: each report minus `base`, paired record bootstrap (metrics.paired_bootstrap_diff)."""
    b = held_out(reports[base], base)
    keys = [k for k in ("S", "V") if k in b["classes"]]
    lines = [f"Against {base} (this report minus that one, 95 % paired bootstrap over records):", "",
             "| report | macro-F1 | S F1 | V F1 |", "|---|---:|---:|---:|"]
    def cell(c: dict) -> str:
        return "-" if c["point"] is None else f"{c['point']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"

    for p, rep in reports.items():
        o = held_out(rep, p)
        if not same_beats(o, b):
            raise ValueError(f"{p} and {base} did not predict the same beats (different inputs or classes)")
        if p.resolve() == base.resolve():
            continue
        d = paired_bootstrap_diff(b["y"], b["pred"], o["pred"], b["classes"], o["records"], n_boot=n_boot)
        per = {k: cell(d["per_class_f1"][k]) for k in keys}
        lines.append(f"| {p} | {cell(d['macro_f1'])} | {per.get('S', '-')} | {per.get('V', '-')} |")
    return "\n".join(lines) + "\n"


def seed_pairs(base: dict[Path, dict], reports: dict[Path, dict]) -> str:
    """Markdown: per seed, report minus the `base` report of the same seed (pooled macro-F1, S F1, V F1
    at each run's chosen epoch), then mean, sd, positive count and a one-sided paired t-test (H1: the
    mean difference is > 0). Every seed must occur once on each side, at least two seeds."""
    from scipy import stats

    def by_seed(side: dict[Path, dict], name: str) -> dict[int, dict]:
        seeds = [r["args"]["seed"] for r in side.values()]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{name} holds a seed twice ({sorted(seeds)}): give one report per seed")
        return dict(zip(seeds, side.values()))
    a, b = by_seed(base, "--seeds-against"), by_seed(reports, "the reports")
    if set(a) != set(b) or len(a) < 2:
        raise ValueError(f"--seeds-against needs the same two or more seeds on both sides, got {sorted(a)} "
                         f"against {sorted(b)}")
    lines = ["Per seed, reports minus --seeds-against (each run at its chosen epoch):", "",
             "| seed | macro-F1 against | macro-F1 | difference | S F1 difference | V F1 difference |",
             "|---:|---:|---:|---:|---:|---:|"]
    d, ds = [], {"S_F1": [], "V_F1": []}
    cell = lambda v: "-" if v is None else f"{v:+.4f}"  # noqa: E731
    for seed in sorted(a):
        ba, bb = a[seed]["cv"]["best"], b[seed]["cv"]["best"]
        ka, kb = key_columns(ba["key_classes"]), key_columns(bb["key_classes"])
        d.append(bb["macro_f1"] - ba["macro_f1"])
        for c, v in ds.items():
            v.append(kb[c] - ka[c] if c in ka and c in kb else None)
        lines.append(f"| {seed} | {ba['macro_f1']:.4f} | {bb['macro_f1']:.4f} | {d[-1]:+.4f} | "
                     f"{cell(ds['S_F1'][-1])} | {cell(ds['V_F1'][-1])} |")
    d = np.array(d)
    sd = float(d.std(ddof=1))
    t = float(d.mean() / (sd / np.sqrt(len(d)))) if sd > 0 else (np.inf if d.mean() > 0 else -np.inf)
    p = float(stats.t.sf(t, len(d) - 1))
    mean = lambda v: "-" if None in v else f"{np.mean(v):+.4f}"  # noqa: E731
    lines += ["", f"{len(d)} seeds: mean macro-F1 difference {d.mean():+.4f} (sd {sd:.4f}), positive at "
              f"{int((d > 0).sum())}; one-sided paired t-test t = {t:.2f}, p = {p:.3f}; mean S F1 difference "
              f"{mean(ds['S_F1'])}, V F1 {mean(ds['V_F1'])}"]
    return "\n".join(lines) + "\n"


def _counts(c: np.ndarray, names: list[str], skip: int) -> str:
    """'N 3, V 1': the counts `c` (C,) of every class other than `skip`, largest first, zeros left out."""
    order = [i for i in np.argsort(-c, kind="stable") if i != skip and c[i]]
    return ", ".join(f"{names[i]} {c[i]}" for i in order) or "-"


def per_record(path: Path, rep: dict) -> str:
    """Markdown: for S and V, per held-out record, found / total, missed as, false calls from.
    Records with neither a beat of the class nor a false call of it are left out."""
    h = held_out(rep, path)
    names, rec = h["classes"], h["records"]
    cms = {int(r): confusion_matrix(h["y"][rec == r], h["pred"][rec == r], len(names))  # (C, C): true x called
           for r in np.unique(rec)}
    lines = [f"Per record, {path} (found / beats; missed beats by the class they were called; "
             "false calls by their true class):", ""]
    for k in (k for k in ("S", "V") if k in names):
        c = names.index(k)
        lines += [f"| record | {k} found / beats | {k} missed as | false {k} calls | they were |", "|---|---:|---|---:|---|"]
        rows = [(r, int(cm[c, c]), int(cm[c].sum()), _counts(cm[c], names, c), int(cm[:, c].sum() - cm[c, c]),
                 _counts(cm[:, c], names, c)) for r, cm in cms.items() if cm[c].sum() or cm[:, c].sum()]
        rows.sort(key=lambda t: (-(t[2] - t[1] + t[4]), t[0]))  # most errors first
        lines += [f"| {r} | {tp} / {n} | {miss} | {fp} | {src} |" for r, tp, n, miss, fp, src in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = parser(__doc__, root=False)
    ap.add_argument("reports", nargs="+", help="cv_report_*.json files written by trainer.py --cv K --cv-only")
    ap.add_argument("--vote", action="store_true", help="also a row for the majority vote of the reports' held-out "
                    "predictions (default: off)")
    ap.add_argument("--against", metavar="REPORT", help="also print every report minus this one, with paired "
                    "record-bootstrap intervals (default: off)")
    ap.add_argument("--seeds-against", nargs="+", metavar="REPORT", help="also pair each report with the one of "
                    "these of the same --seed: per-seed differences and a paired t-test over seeds; put it after "
                    "the reports (default: off)")
    ap.add_argument("--records", action="store_true", help="also print, per report, the held-out S and V "
                    "errors of every DS1 record (default: off)")
    args = ap.parse_args()
    paths = [Path(p) for p in args.reports]
    if args.against:
        paths = list(dict.fromkeys([Path(args.against), *paths]))
    base = [Path(p) for p in args.seeds_against or []]
    missing = [str(p) for p in [*paths, *base] if not p.is_file()]
    if missing:
        print(f"bench/cv_compare.py: error: no such report: {' '.join(missing)}", file=sys.stderr)
        return 2
    try:
        reports = {p: json.loads(p.read_text()) for p in paths}  # each file read once
        table = rows(reports) + ([vote_row(reports)] if args.vote else [])
    except (ValueError, KeyError, TypeError) as e:
        print(f"bench/cv_compare.py: error: not a cv_report of trainer.py --cv-only ({type(e).__name__}: {e})",
              file=sys.stderr)
        return 2
    print(markdown(table), end="")
    if args.against:
        try:
            print("\n" + paired(paths[0], reports), end="")
        except (ValueError, KeyError, TypeError) as e:
            print(f"bench/cv_compare.py: error: {e}", file=sys.stderr)
            return 2
    if base:
        try:
            print("\n" + seed_pairs({p: json.loads(p.read_text()) for p in base},
                                     {p: reports[p] for p in map(Path, args.reports)}), end="")
        except (ValueError, KeyError, TypeError) as e:
            print(f"bench/cv_compare.py: error: {e}", file=sys.stderr)
            return 2
    if args.records:
        try:
            print("".join("\n" + per_record(p, r) for p, r in reports.items()), end="")
        except (ValueError, KeyError, TypeError) as e:
            print(f"bench/cv_compare.py: error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    run_script(main)
