"""Gather every eval_report_*.json of a folder into a leaderboard and plots.

    python summarize.py                       # data/records -> data/records/leaderboard.{md,csv}
    python summarize.py runs/sweep --out runs/sweep/summary

Writes into --out (default: the report folder), each file atomically (temp file + rename):
  leaderboard.md    Markdown table, one row per run, also printed to stdout
  leaderboard.csv   the same rows with raw numbers (one column per value)
  leaderboard_classes.md        per-class EC57 Se / +P and F1 of every run
  leaderboard_seeds.md / .csv   one row per experiment (runs that differ only in their seed):
                                n, the seeds, mean ± std of the test figures (printed too
                                when some experiment has several seeds); "options" names
                                what tells a model's experiments apart ("-": only one)
  leaderboard_records.md        per test record, S and V beats found / the record's beats
                                (false calls), mean over each experiment's runs (splits that
                                test whole records: not stratified)
  plots/frontier.png            test macro-F1 vs MACs (log x), one labelled point per
                                experiment: its mean, with a ±1 std error bar over several seeds
  plots/confusion_<run>.png     row-normalised test confusion matrix (recall per class)
  plots/curves_<run>.png        training curves: train/val loss and train/val macro-F1 per epoch

Rows are sorted by split, then test macro-F1 (best first). The S and V columns are EC57 gross
Se / +P of the supraventricular (aami5 "S", seed4 "SVEB") and ventricular ("V" / "VEB") class.
Reports are read defensively: a value that is missing or None (no CI with --bootstrap 0, no
history for --eval-only) shows as "-". A file that is not JSON or lacks the core keys (model,
test accuracy / macro-F1, ... as report.validate_report checks the documented schema) is
skipped with a one-line warning naming it. Every column comes from the one table `COLUMNS`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

from beats import key_class, scheme_of
from cli import CliParser, UsageError, run_cli
from options import DEFAULTS, REMOVED
from report import validate_report
from utils import atomic_write

PROG = "summarize.py"
SummaryError = UsageError  # bad input for the whole run: one line, exit 2


# ----------------------------------------------------------------------------------------------
# Reading reports
# ----------------------------------------------------------------------------------------------

def _get(d: Any, *path, default=None):
    """d[path[0]][path[1]]... or default when any step is missing, None or not a dict."""
    for k in path:
        if not isinstance(d, dict) or d.get(k) is None:
            return default
        d = d[k]
    return d


def _num(v) -> float | None:
    """A finite number or None (reports may hold None, strings never)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _class_stat(report: dict, cls: str | None, stat: str) -> float | None:
    """EC57 gross statistic `stat` of class `cls` in the report's test part."""
    return _num(_get(report, "test", "ec57", "gross", cls, stat)) if cls else None


def _key_stat(report: dict, key: str, stat: str) -> float | None:
    """EC57 gross statistic of key class `key` ("S" or "V") under its name in the report."""
    classes = report.get("classes")
    return _class_stat(report, key_class(classes, key) if isinstance(classes, list) else None, stat)


def _scheme(report: dict) -> str:
    s = _get(report, "preprocessing", "classes") or _get(report, "args", "classes")
    if isinstance(s, str):
        return s
    classes = report.get("classes")
    return (scheme_of(classes) if isinstance(classes, list) else None) or "-"


def _si(v: float | None) -> str:
    """12345 -> 12.3k, 4.5e6 -> 4.50M."""
    if v is None:
        return "-"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.0f}"


def _f(v: float | None, nd: int = 4) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _f1_ci(r: dict) -> str:
    ci = (f" [{r['macro_f1_low']:.4f}-{r['macro_f1_high']:.4f}]"
          if r["macro_f1_low"] is not None and r["macro_f1_high"] is not None else "")
    return _f(r["macro_f1"]) + ci


class Column(NamedTuple):
    key: str                                   # CSV column and row key
    value: Callable[[dict], Any]               # report -> raw value (None when missing)
    header: str | None = None                  # Markdown header; None: shown inside another column
    cell: Callable[[dict], str] | None = None  # row -> Markdown cell (default: the value as text)


def _fmt(key: str, nd: int) -> Callable[[dict], str]:
    return lambda r: _f(r[key], nd)


def _mm(key: str) -> Callable[[dict], float | None]:
    return lambda rep: _num(_get(rep, "model_metrics", key))


# THE table: every leaderboard column, in order. A new report field is one line here.
COLUMNS: list[Column] = [
    Column("model", lambda rep: str(rep["model"]) + (f" x{n}" if (n := _get(rep, "args", "ensemble") or 1) > 1 else ""),
           "model"),  # "liteecgnet x2": an --ensemble of two
    Column("split", lambda rep: str(_get(rep, "dataset", "split") or _get(rep, "args", "split") or "-"), "split"),
    Column("classes", _scheme, "classes"),
    Column("seed", lambda rep: _get(rep, "args", "seed"), "seed",
           lambda r: "-" if r["seed"] is None else str(r["seed"])),
    Column("macro_f1", lambda rep: _num(rep["test"]["macro_f1"]), "macro-F1 [95% CI]", _f1_ci),
    Column("macro_f1_low", lambda rep: _num(_get(rep, "test", "ci", "macro_f1", "low"))),
    Column("macro_f1_high", lambda rep: _num(_get(rep, "test", "ci", "macro_f1", "high"))),
    Column("accuracy", lambda rep: _num(rep["test"]["accuracy"]), "accuracy", _fmt("accuracy", 4)),
    Column("S_Se", lambda rep: _key_stat(rep, "S", "Se"), "S Se", _fmt("S_Se", 3)),
    Column("S_+P", lambda rep: _key_stat(rep, "S", "+P"), "S +P", _fmt("S_+P", 3)),
    Column("V_Se", lambda rep: _key_stat(rep, "V", "Se"), "V Se", _fmt("V_Se", 3)),
    Column("V_+P", lambda rep: _key_stat(rep, "V", "+P"), "V +P", _fmt("V_+P", 3)),
    Column("S_F1", lambda rep: _num(_get(rep, "test", "key_classes", "S", "F1")), "S F1", _fmt("S_F1", 3)),
    Column("V_F1", lambda rep: _num(_get(rep, "test", "key_classes", "V", "F1")), "V F1", _fmt("V_F1", 3)),
    # N Se is a target of its own (a classifier that calls normal beats S or V is useless on a monitor);
    # record 232 holds ~75 % of DS2's S beats, so S is also shown without it (None when 232 is not tested)
    Column("N_Se", lambda rep: _class_stat(rep, "N", "Se"), "N Se", _fmt("N_Se", 3)),
    Column("S_F1_no232", lambda rep: _num(_get(rep, "test", "key_classes_without_232", "S", "F1")),
           "S F1 w/o 232", _fmt("S_F1_no232", 3)),
    Column("params", _mm("params_total"), "params", lambda r: _si(r["params"])),
    Column("macs", _mm("macs"), "MACs", lambda r: _si(r["macs"])),
    Column("latency_ms", _mm("latency_median_ms"), "latency ms (b=1)", _fmt("latency_ms", 3)),
    Column("epoch_s", lambda rep: _num(_get(rep, "timing", "epoch_seconds_mean")), "epoch s", _fmt("epoch_s", 1)),
    Column("report", lambda rep: None, "report"),  # the file name, set by report_row
]
CSV_COLUMNS = [c.key for c in COLUMNS]


def report_row(report: dict, path: Path) -> dict:
    """One leaderboard row from a report that passed report.validate_report; optional values
    (CI, EC57 class statistics, epoch time) may be missing or None and become None."""
    return {**{c.key: c.value(report) for c in COLUMNS}, "report": path.name}


def load_reports(folder: Path, warn) -> list[tuple[Path, dict, dict]]:
    """(path, report, row) for every readable eval_report_*.json; others are warned about."""
    out = []
    for p in sorted(folder.glob("eval_report_*.json")):
        try:
            rep = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
            warn(f"skipping {p.name}: not valid JSON ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            continue
        try:
            validate_report(rep)
        except ValueError as e:
            warn(f"skipping {p.name}: not a valid LiteECG report ({e})")
            continue
        out.append((p, rep, report_row(rep, p)))
    return out


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------

def sort_rows(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["split"], -(r["macro_f1"] or 0.0), r["model"], r["report"]))


def markdown_table(rows: list[dict]) -> str:
    shown = [c for c in COLUMNS if c.header]
    lines = ["| " + " | ".join(c.header for c in shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    for r in rows:
        cells = [c.cell(r) if c.cell else str(r[c.key]) for c in shown]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def class_tables(loaded: list[tuple[Path, dict, dict]]) -> str:
    """Per-class EC57 gross Se / +P and F1 of every run, one Markdown table per label scheme,
    best macro-F1 first: the table published inter-patient results are compared on."""
    groups: dict[tuple, list] = {}
    for _, rep, row in loaded:
        groups.setdefault(tuple(rep["classes"]), []).append((row, rep))
    out = []
    for classes, runs in groups.items():
        out += ["| model | split | macro-F1 [95% CI] | " + " | ".join(f"{c} Se / +P / F1" for c in classes) + " |",
                "|---|---|---|" + "---|" * len(classes)]
        for row, rep in sorted(runs, key=lambda t: -(t[0]["macro_f1"] or 0.0)):
            cells = []
            for c in classes:
                se, pp = _class_stat(rep, c, "Se"), _class_stat(rep, c, "+P")
                f1 = _num(_get(rep, "test", "per_class", c, "f1"))
                cells.append(f"{_f(se, 3)} / {_f(pp, 3)} / {_f(f1, 3)}")
            ci = (f" [{_f(row['macro_f1_low'])}, {_f(row['macro_f1_high'])}]"
                  if row["macro_f1_low"] is not None else "")
            out.append(f"| {row['model']} | {row['split']} | {_f(row['macro_f1'])}{ci} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _csv_cell(key: str, v) -> str:
    """Full precision for the machine-readable table; counts as integers; None as empty."""
    if v is None:
        return ""
    if key in ("params", "macs"):
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_cell(k, r[k]) for k in CSV_COLUMNS})
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg: no display needed)
# ----------------------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Runs no other run beats on both cost (lower MACs) and macro-F1 (higher)."""
    front, best = [], -1.0
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def plot_frontier(groups: list[dict]) -> bytes | None:
    """Test macro-F1 vs MACs (log x): the size/accuracy frontier, one colour per split/scheme.
    One point per experiment (seed_groups): a single run's macro-F1, or the mean over its seeds
    with a ±1 std error bar and "(n=K)" in its label."""
    pts = [g for g in groups if g["macs"] and g["macs"] > 0 and g["macro_f1_mean"] is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    kinds = sorted({(g["split"], g["classes"]) for g in pts})
    for i, kind in enumerate(kinds):
        gs = [g for g in pts if (g["split"], g["classes"]) == kind]
        c = f"C{i % 10}"
        ax.errorbar([g["macs"] for g in gs], [g["macro_f1_mean"] for g in gs],
                    yerr=[g["macro_f1_std"] if g["n"] > 1 else 0.0 for g in gs], fmt="o", color=c, ms=6,
                    capsize=3, zorder=3, label=f"{kind[0]} / {kind[1]}")
        for g in gs:
            ax.annotate(g["model"] + (f" [{g['options']}]" if g["options"] != "-" else "")
                        + (f" (n={g['n']})" if g["n"] > 1 else ""), (g["macs"], g["macro_f1_mean"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
        front = _pareto([(g["macs"], g["macro_f1_mean"]) for g in gs])
        if len(front) > 1:
            ax.step(*zip(*front), where="post", color=c, alpha=0.4, lw=1)
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)  # room for the labels of the extreme points
    ax.set_xlabel("MACs per beat (log scale)")
    ax.set_ylabel("test macro-F1 (mean ± std over seeds)" if any(g["n"] > 1 for g in pts) else "test macro-F1")
    ax.set_title("Size / accuracy frontier")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="split / classes", title_fontsize=8)
    return _png(fig)


def plot_confusion(report: dict, title: str) -> bytes | None:
    """Row-normalised confusion matrix (each row = recall over that reference class)."""
    cm = _get(report, "test", "confusion_matrix", "matrix")
    labels = _get(report, "test", "confusion_matrix", "labels") or report.get("classes")
    if not isinstance(cm, list) or not cm or not isinstance(labels, list) or len(labels) != len(cm):
        return None
    import numpy as np
    m = np.asarray(cm, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        return None
    support = m.sum(1, keepdims=True)
    norm = np.divide(m, support, out=np.full_like(m, np.nan), where=support > 0)
    plt = _plt()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.1 * n + 2.5, 1.0 * n + 1.8))
    im = ax.imshow(np.nan_to_num(norm, nan=0.0), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            txt = "-" if np.isnan(norm[i, j]) else f"{norm[i, j]:.2f}\n({int(m[i, j])})"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="white" if not np.isnan(norm[i, j]) and norm[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), [f"{l} ({int(s)})" for l, s in zip(labels, support[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference (support)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of reference class")
    return _png(fig)


def plot_curves(report: dict, title: str) -> bytes | None:
    """Loss and macro-F1 per epoch (train and val); None without a training history."""
    hist = [h for h in (report.get("history") or []) if isinstance(h, dict) and _num(h.get("epoch")) is not None]
    if not hist:
        return None
    plt = _plt()
    ep = [h["epoch"] for h in hist]

    def series(key):
        return [_num(h.get(key)) if _num(h.get(key)) is not None else float("nan") for h in hist]

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, lab in (("train_loss", "train"), ("val_loss", "val")):
        a1.plot(ep, series(key), marker="o", ms=3, label=lab)
    for key, lab in (("train_f1", "train"), ("val_f1", "val")):
        a2.plot(ep, series(key), marker="o", ms=3, label=lab)
    best = _num(_get(report, "best_val", "epoch"))
    from matplotlib.ticker import MaxNLocator
    for a, name in ((a1, "loss"), (a2, "macro-F1")):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best is not None:
            a.axvline(best, color="grey", ls="--", lw=1, label="best epoch")
        a.set_xlabel("epoch")
        a.set_ylabel(name)
        a.grid(True, alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, then rename: never a half-written output."""
    atomic_write(path, lambda f: f.write(data))


def _run_name(path: Path) -> str:
    stem = path.stem
    return stem[len("eval_report_"):] if stem.startswith("eval_report_") else stem


# What makes two runs repeats of one experiment: everything but the seed and where/how it ran.
RUN_ONLY_ARGS = {"seed", "out_dir", "root", "quiet", "threads", "device", "cache", "no_download",
                 "resume", "eval_only", "bootstrap", "config"}
SEED_STATS = [c for c in COLUMNS if c.key in ("macro_f1", "accuracy", "S_Se", "S_+P", "S_F1", "V_Se", "V_+P", "V_F1",
                                               "N_Se", "S_F1_no232")]


def _experiment(report: dict) -> str:
    """A key shared by the runs that differ only in their seed. A setting absent from a report's
    args (one newer than the report) counts as its default, and settings that left the product at
    their 'off' value are dropped, so runs made before and after such a change still group."""
    args = report.get("args") if isinstance(report.get("args"), dict) else {}
    args = {**DEFAULTS, **args}
    if args.get("coord") is None:  # before --model-set coord=, its own flag; None: the model's setting
        args.pop("coord", None)
    gone = {k for k, off in REMOVED.items() if args.get(k, off) in (off, None, [])} | {"num_workers"}
    return json.dumps({k: v for k, v in sorted(args.items()) if k not in RUN_ONLY_ARGS | gone}, sort_keys=True,
                      default=str)


def _options_told_apart(keys: list[tuple]) -> dict[tuple, str]:
    """For each group key (split, model, classes, experiment JSON): the options that tell it apart
    from the other groups of the same model, split and classes ("ema_epochs=1.0, lr=1.0"), or "-"
    when it is the only one. Without it, two rows of one model would look the same."""
    parsed = {k: json.loads(k[3]) for k in keys}
    out = {}
    for k, args in parsed.items():
        others = [o_args for o, o_args in parsed.items() if o[:3] == k[:3] and o != k]
        differ = sorted({a for o in others for a in set(o) | set(args) if o.get(a) != args.get(a)})
        out[k] = ", ".join(f"{a}={args.get(a)}" for a in differ) or "-"
    return out


def experiment_groups(loaded: list[tuple[Path, dict, dict]]) -> dict[tuple, list[tuple[dict, dict]]]:
    """{(split, model, classes, experiment JSON): [(report, row), ...]}: the runs that differ only in
    their seed, the unit of leaderboard_seeds.md and leaderboard_records.md."""
    groups: dict[tuple, list] = {}
    for _, rep, row in loaded:
        groups.setdefault((row["split"], row["model"], row["classes"], _experiment(rep)), []).append((rep, row))
    return groups


def seed_groups(loaded: list[tuple[Path, dict, dict]]) -> list[dict]:
    """One row per experiment (same model, split, classes and options; any seeds): n, the seeds,
    the options that tell it apart from the same model's other experiments, and mean / std
    (sample, ddof 1; 0 for one run) of the SEED_STATS columns."""
    groups = experiment_groups(loaded)
    options = _options_told_apart(list(groups))
    out = []
    for key, runs in sorted(groups.items()):
        split, model, classes, _ = key
        g = {"model": model, "split": split, "classes": classes, "options": options[key], "n": len(runs),
             "seeds": " ".join(str(_get(rep, "args", "seed", default="-")) for rep, _ in runs),
             "macs": next((r["macs"] for _, r in runs if r["macs"] is not None), None)}  # one architecture
        for c in SEED_STATS:
            vals = [r[c.key] for _, r in runs if r[c.key] is not None]
            g[f"{c.key}_mean"] = sum(vals) / len(vals) if vals else None
            g[f"{c.key}_std"] = (math.sqrt(sum((v - g[f"{c.key}_mean"]) ** 2 for v in vals) / (len(vals) - 1))
                                 if len(vals) > 1 else (0.0 if vals else None))
        out.append(g)
    return out


def _record_means(reps: list[dict], key: str) -> dict[str, tuple[float, float, float]]:
    """{record: mean over `reps` of (beats, found, false calls) of key class `key`} from the
    reports' per_record key classes; a record counts the runs that have figures for it."""
    stats: dict[str, list[dict]] = {}
    for rep in reps:
        for rec, r in rep["test"]["per_record"].items():
            kc = _get(r, "key_classes", key)
            if kc is not None:
                stats.setdefault(str(rec), []).append(kc)
    return {rec: tuple(sum(kc[f] for kc in kcs) / len(kcs) for f in ("n", "TP", "FP")) for rec, kcs in stats.items()}


def _record_order(rec: str) -> tuple:
    return (not rec.isdigit(), int(rec) if rec.isdigit() else 0, rec)  # 100 before 1000, names last


def record_tables(loaded: list[tuple[Path, dict, dict]]) -> str:
    """Where the S and V beats are found and missed, per test record (`per_record.<rec>.key_classes`
    of each report), for the runs whose test part is whole records (every split but stratified):
    one Markdown table per split, label scheme and key class; a row per record that holds beats of
    the class or got false calls of it, a column per experiment (as in leaderboard_seeds.md) with
    "found / the record's beats (false calls)", each the mean over the experiment's runs."""
    every = experiment_groups(loaded)
    options = _options_told_apart(list(every))  # the names leaderboard_seeds.md gives the same columns
    groups = {}
    for k, runs in every.items():
        reps = [rep for rep, _ in runs
                if any(_get(r, "key_classes") for r in _get(rep, "test", "per_record", default={}).values())]
        if k[0] != "stratified" and reps:
            groups[k] = reps
    out = []
    for split, classes in sorted({(k[0], k[2]) for k in groups}):
        exps = sorted(k for k in groups if (k[0], k[2]) == (split, classes))
        heads = [f"{k[1]}{'' if options[k] == '-' else f' ({options[k]})'}, {len(groups[k])} run(s)" for k in exps]
        for key in ("S", "V"):
            means = [_record_means(groups[k], key) for k in exps]
            shown = {rec for m in means for rec, (n, _, fp) in m.items() if n or fp}
            if not shown:
                continue
            cells = {rec: [f"{m[rec][1]:.0f} / {m[rec][0]:.0f} ({m[rec][2]:.0f})" if rec in m else "-" for m in means]
                     for rec in shown}  # "-": the experiment did not test that record
            name = key_class(groups[exps[0]][0]["classes"], key) or key  # "S" / "V", or seed4's "SVEB" / "VEB"
            out += [f"{split}, {classes}: {name} beats found / the record's {name} beats (false {name} calls), "
                    "mean over each experiment's runs", "",
                    "| record | " + " | ".join(heads) + " |", "|---|" + "---|" * len(exps)]
            out += [f"| {rec} | " + " | ".join(cells[rec]) + " |" for rec in sorted(cells, key=_record_order)]
            out.append("")
    return "\n".join(out) if out else "_no run tested whole records (every split here is stratified)_\n"


def seed_table(groups: list[dict]) -> str:
    """Markdown: mean ± std over seeds (n runs) of each experiment."""
    head = ["model", "split", "classes", "options", "n", "seeds"] + [c.header or c.key for c in SEED_STATS]
    head[6] = "macro-F1"
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for g in groups:
        cells = [g["model"], g["split"], g["classes"], g["options"], str(g["n"]), g["seeds"]]
        cells += [("-" if g[f"{c.key}_mean"] is None else f"{g[f'{c.key}_mean']:.3f} ± {g[f'{c.key}_std']:.3f}")
                  for c in SEED_STATS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seed_csv(groups: list[dict]) -> str:
    buf = io.StringIO()
    keys = ["model", "split", "classes", "options", "n", "seeds"] + [f"{c.key}_{s}" for c in SEED_STATS for s in ("mean", "std")]
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for g in groups:
        w.writerow({k: ("" if g[k] is None else repr(g[k]) if isinstance(g[k], float) else g[k]) for k in keys})
    return buf.getvalue()


def write_outputs(out: Path, rows: list[dict], md: str, loaded: list, warn, plots: bool = True) -> list[Path]:
    """leaderboard.md/.csv, leaderboard_classes.md, leaderboard_seeds.md/.csv (mean ± std over
    seeds), leaderboard_records.md (S and V per test record) and (plots=True) the PNGs of `loaded`
    (path, report, row) -> files written."""
    files = [out / "leaderboard.md", out / "leaderboard.csv", out / "leaderboard_classes.md",
             out / "leaderboard_seeds.md", out / "leaderboard_seeds.csv", out / "leaderboard_records.md"]
    groups = seed_groups(loaded)
    write_bytes(files[0], md.encode())
    write_bytes(files[1], csv_text(rows).encode())
    write_bytes(files[2], class_tables(loaded).encode())
    write_bytes(files[3], seed_table(groups).encode())
    write_bytes(files[4], seed_csv(groups).encode())
    write_bytes(files[5], record_tables(loaded).encode())
    if not plots:
        return files
    png = plot_frontier(groups)
    if png:
        files.append(out / "plots" / "frontier.png")
        write_bytes(files[-1], png)
    else:
        warn("no report has MACs: no frontier plot")
    for path, rep, row in loaded:
        run = _run_name(path)
        title = f"{row['model']} · {row['split']} · {row['classes']} · {run}"
        for kind, fn in (("confusion", plot_confusion), ("curves", plot_curves)):
            png = fn(rep, title)
            if png:
                files.append(out / "plots" / f"{kind}_{run}.png")
                write_bytes(files[-1], png)
    return files


def summarize(folder: str | os.PathLike, out: str | os.PathLike | None = None, plots: bool = True,
              log=print, warn=None) -> dict:
    """Build the leaderboard of `folder` into `out` -> dict(rows, markdown, files)."""
    warn = warn or (lambda m: print(f"{PROG}: warning: {m}", file=sys.stderr))
    folder = Path(folder)
    if not folder.is_dir():
        raise SummaryError(f"report folder {folder} does not exist")
    if not any(folder.glob("eval_report_*.json")):
        raise SummaryError(f"no eval_report_*.json in {folder}")
    loaded = load_reports(folder, warn)
    if not loaded:
        raise SummaryError(f"no readable report in {folder} (every eval_report_*.json was skipped)")
    out = Path(out) if out is not None else folder
    try:
        (out / "plots" if plots else out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SummaryError(f"cannot create --out {out} ({e.strerror or e})") from None
    rows = sort_rows([row for _, _, row in loaded])
    md = markdown_table(rows)
    try:
        files = write_outputs(out, rows, md, loaded, warn, plots)
    except OSError as e:  # read-only folder, disk full...
        raise SummaryError(f"cannot write into {out} ({e.strerror or e})") from None
    log(md.rstrip("\n"))
    groups = seed_groups(loaded)
    if any(g["n"] > 1 for g in groups):  # repeats: their mean ± std too (leaderboard_seeds.md)
        log("\nMean ± std over seeds:\n\n" + seed_table(groups).rstrip("\n"))
    log(f"\n{len(rows)} run(s); wrote {', '.join(str(f) for f in files[:6])} and {len(files) - 6} plot(s)"
        + (f" in {out / 'plots'}" if plots else ""))
    return {"rows": rows, "markdown": md, "files": files}


def main(argv: list[str] | None = None) -> int:
    """CLI entry: one line on stderr and exit 2 for bad input."""
    p = CliParser(prog=PROG, description="Leaderboard and plots from eval_report_*.json files.")
    p.add_argument("folder", nargs="?", default="data/records", help="folder with the reports (default: data/records)")
    p.add_argument("--out", help="output folder (default: the report folder)")
    p.add_argument("--no-plots", action="store_true", help="tables only (default: off)")

    def body() -> int:
        args = p.parse_args(argv)
        summarize(args.folder, args.out, plots=not args.no_plots)
        return 0
    return run_cli(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
