"""The evaluation report: its schema (documented in README.md), how it is built, checked, written.

Every tool that writes a report (trainer.py, evaluate.py) builds it with `build_report` and
writes it with `write_report`; every tool that reads reports (summarize.py, bench/) checks them
with `validate_report`. Imports no torch (summarize.py needs none); `environment` asks torch
lazily.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from utils import atomic_write

REPORT_SCHEMA = 1

# The schema. Numbers may be int where a float is expected; nested dicts are checked recursively.
_NUM = (int, float)


class Since(NamedTuple):
    """A field added after schema 1: checked when present, absent from older reports (which
    must stay readable: summarize.py skips a report that fails the check)."""
    kind: object


REPORT_FIELDS: dict[str, object] = {
    "schema_version": int, "model": str, "timestamp": str, "checkpoint": str, "args": dict,
    "classes": list, "preprocessing": dict, "best_val": dict, "peak_rss_bytes": int,
    "dataset": {"split": str, "records": dict, "class_counts": dict, "beats": dict, "dropped": int},
    "test": {"accuracy": _NUM, "macro_f1": _NUM, "weighted_f1": _NUM, "per_class": dict,
             "confusion_matrix": {"labels": list, "matrix": list}, "ec57": dict, "per_record": dict,
             "predictions_sha256": str, "n_beats": int},
    "model_metrics": {"params_total": int, "params_trainable": int, "state_dict_bytes": int, "macs": int,
                      "flops": int, "latency_median_ms": _NUM, "latency_p90_ms": _NUM,
                      "throughput_beats_per_s": _NUM, "peak_memory_bytes": int},
    "history": list, "timing": {"total_seconds": _NUM},
    "environment": {"python": str, "torch": str, "device": str, "threads": int, "seed": int,
                    # the processes that trained (distributed.py); 1, None, [device] for one process
                    "world_size": Since(int), "backend": Since((str, type(None))), "devices": Since(list)},
}
_NUM_OR_NONE = (int, float, type(None))  # None: the run had no validation part (--cv's final fit)
HISTORY_FIELDS = {"epoch": int, "train_loss": _NUM, "train_f1": _NUM, "val_loss": _NUM_OR_NONE,
                  "val_f1": _NUM_OR_NONE, "lr": _NUM, "seconds": _NUM}


def validate_report(report: dict, fields: dict = REPORT_FIELDS, where: str = "report") -> None:
    """Raise ValueError naming the first missing or mistyped field of a report."""
    if not isinstance(report, dict):
        raise ValueError(f"{where} is not an object")
    for key, kind in fields.items():
        if isinstance(kind, Since):
            if key not in report:
                continue
            kind = kind.kind
        if key not in report:
            raise ValueError(f"{where}.{key} is missing")
        if isinstance(kind, dict):
            validate_report(report[key], kind, f"{where}.{key}")
        elif not isinstance(report[key], kind) or isinstance(report[key], bool) and kind is not bool:
            raise ValueError(f"{where}.{key} should be {getattr(kind, '__name__', kind)}")
    if fields is REPORT_FIELDS:
        for i, row in enumerate(report["history"]):
            validate_report(row, HISTORY_FIELDS, f"{where}.history[{i}]")


# ----------------------------------------------------------------------------------------------
# Provenance
# ----------------------------------------------------------------------------------------------

def versions() -> dict:
    """Versions of what produced a run (stored in checkpoints and reports)."""
    import torch
    import wfdb
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "numpy": np.__version__, "wfdb": wfdb.__version__}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device, seed: int, world: dict | None = None) -> dict:
    """Versions, device, threads, seed, commit, machine; and the processes that trained
    (`world`: world_size, backend, devices from distributed.World.describe(); default one process,
    no process group, `device`)."""
    import torch
    world = world or {"world_size": 1, "backend": None, "devices": [str(device)]}
    return {**versions(), "device": str(device), "threads": torch.get_num_threads(), "seed": seed,
            "git_commit": git_commit(), "platform": platform.platform(), "cpu": cpu_name(), **world}


# ----------------------------------------------------------------------------------------------
# Building and writing
# ----------------------------------------------------------------------------------------------

def run_stamp(out_dir: Path) -> str:
    """The name a new run's files carry (ecg_lightweight_{model}_{stamp}.pt, eval_report_..., cv_report_...):
    local time to the second, the process id, and "-2", "-3", ... if files of that stamp are already in
    `out_dir`. Why: runs started in the same second into one folder (run_all_models.sh with JOBS=2,
    side-by-side seeds, two calls in one process) must never overwrite one another's checkpoint, report
    or training state."""
    base = f"{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}"
    stamp, n = base, 1
    while any(Path(out_dir).glob(f"*_{stamp}.*")) or any(Path(out_dir).glob(f"*_{stamp}_*")):
        n += 1
        stamp = f"{base}-{n}"
    return stamp


def build_report(*, model_name: str, stamp: str, ckpt_path, args: dict, class_names: list[str],
                 preprocessing: dict, dataset: dict, test: dict, best_val: dict, history: list[dict],
                 model_metrics: dict, device, seed: int, t_total: float, interrupted: bool,
                 world: dict | None = None) -> dict:
    """A report with the documented schema, from what a run measured."""
    mean = lambda key: float(np.mean([h[key] for h in history])) if history else None  # noqa: E731
    return {
        "schema_version": REPORT_SCHEMA, "model": model_name, "timestamp": stamp,
        "checkpoint": str(ckpt_path), "args": args, "classes": class_names,
        "preprocessing": preprocessing, "dataset": dataset,
        "test": test, "best_val": best_val, "model_metrics": model_metrics, "history": history,
        "timing": {"total_seconds": t_total, "epoch_seconds_mean": mean("seconds"),
                   "train_beats_per_s": mean("train_beats_per_s"), "interrupted": bool(interrupted)},
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "environment": environment(device, seed, world),
    }


def write_json(obj: dict, path: str | os.PathLike) -> None:
    """JSON, atomically (temp file + rename); NaN is refused (it is not JSON)."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, allow_nan=False).encode()))


def write_report(report: dict, path: str | os.PathLike) -> None:
    """Check the report against the schema, then write it atomically."""
    validate_report(report)
    write_json(report, path)


# ----------------------------------------------------------------------------------------------
# What a run prints at its end
# ----------------------------------------------------------------------------------------------

def collapse_warning(test: dict, class_names: list[str]) -> str | None:
    """A warning when the predictions collapsed onto one class: a model that has not learnt yet
    (too few epochs or beats) scores a macro-F1 near 0 and says nothing else."""
    cm = np.asarray(test["confusion_matrix"]["matrix"])  # rows: reference, columns: predicted
    support, called = cm.sum(1), cm.sum(0)
    top = int(called.argmax())
    share, ref_share = called[top] / max(1, cm.sum()), support[top] / max(1, cm.sum())
    others_found = [k for k in range(len(class_names)) if k != top and support[k] and cm[k, k]]
    if (support > 0).sum() < 2 or others_found and not (share >= 0.99 and ref_share < 0.95):
        return None
    return (f"WARNING: the predictions collapsed onto one class: {share:.1%} of the test beats were called "
            f"{class_names[top]} ({ref_share:.1%} of the reference), and no beat of "
            + ("another class" if not others_found else "most other classes") + " was recognised. The model "
            "has not learnt to tell the classes apart: train longer (--epochs) or on more beats (--class-limit).")


def result_lines(test: dict, class_names: list[str], what: str, by_record: bool = True) -> list[str]:
    """The end of every run: accuracy and macro-F1 (with CI), a per-class table (Se, +P, F1, beats),
    EC57's S and V figures (without record 232 too, when a record-wise test part holds it) and the
    collapse warning."""
    ci = test.get("ci", {}).get("macro_f1", {})
    ci_txt = f" [{ci['low']:.4f}, {ci['high']:.4f}]" if ci.get("low") is not None else ""
    lines = [f"test ({what}, {test['n_beats']} beats): accuracy {test['accuracy']:.4f}  macro-F1 "
             f"{test['macro_f1']:.4f}{ci_txt}",
             f"  {'class':<6} {'Se':>6} {'+P':>6} {'F1':>6} {'beats':>7}"]
    for n in class_names:
        c = test["per_class"][n]
        lines.append(f"  {n:<6} {c['recall']:6.3f} {c['precision']:6.3f} {c['f1']:6.3f} {c['support']:7d}")

    def key(stats: dict) -> str:
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        return "  ".join(f"{k} Se {f(s['Se'])} +P {f(s['+P'])} F1 {f(s['F1'])}" for k, s in stats.items())
    if test.get("key_classes"):
        lines.append(f"  EC57 gross: {key(test['key_classes'])}")
    if by_record and test.get("key_classes_without_232"):
        lines.append(f"  without record 232: {key(test['key_classes_without_232'])}")
    warning = collapse_warning(test, class_names)
    return lines + ([warning] if warning else [])
