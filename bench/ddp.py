"""Training beats/s of one process vs N processes under torchrun (gloo, CPU), same global batch.

    MITBIH_DIR=/path/to/mitdb python bench/ddp.py [--procs 2] [--epochs 3] [--repeats 3] [--models liteecgnet resnet]

What `torchrun --nproc-per-node N trainer.py --device cpu` buys on this machine. Each
measurement is one real trainer.py run on a fixed subset (--train-recs, --class-limit, the same
global --batch-size, --epochs, no bootstrap, --cache): one process with every core's threads,
then N processes with (cores / N) threads each under torchrun. Its training beats/s is the
median over epochs 2.. of the report's per-epoch `train_beats_per_s` (all processes' beats over
rank 0's wall time of the epoch's training; validation excluded; epoch 1 warms up). The two
sides alternate (a VM's speed drifts) and the table gives medians, each side's last train loss
(the same optimiser steps: close, not equal; see docs/TRAINING.md, "Several processes") and the ratios.
Appends one JSON line to bench/results.jsonl.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, parser, print_table_head, records_missing, run_script  # noqa: E402  (repository on sys.path)

from models import MODEL_NAMES  # noqa: E402

TRAIN_RECS = ["101", "106", "108", "109", "112", "114", "115", "116", "118", "119"]  # ten DS1 records
NO_BOOTSTRAP = ROOT / "bench" / "no_bootstrap.toml"  # a timing run needs no confidence intervals


def train(args, model: str, procs: int, threads: int, out: Path) -> dict:
    """One trainer.py run (under torchrun when procs > 1) -> its report."""
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)]
              if procs > 1 else [sys.executable])
    cmd = [*launch, "trainer.py", "--model", model, "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--device", "cpu", "--threads", str(threads), "--root", args.root, "--no-download", "--cache",
           "--config", str(NO_BOOTSTRAP), "--patience", str(args.epochs + 1), "--out-dir", str(out),
           "--train-recs", *args.train_recs, "--val-recs", "117", "--test-recs", "100",
           *(["--class-limit", str(args.class_limit)] if args.class_limit else [])]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    reports = list(out.glob("eval_report_*.json"))
    if r.returncode != 0 or len(reports) != 1:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return json.loads(reports[0].read_text())


def beats_per_s(report: dict) -> float:
    rates = [h["train_beats_per_s"] for h in report["history"]]
    return statistics.median(rates[1:] or rates)


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--procs", type=int, default=2, help="processes of the distributed side (default: 2)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run; epoch 1 is not timed (default: 3)")
    ap.add_argument("--repeats", type=int, default=3, help="measurement pairs per model, medians reported (default: 3)")
    ap.add_argument("--batch-size", type=int, default=256, help="the global batch of both sides (default: 256)")
    ap.add_argument("--train-recs", nargs="+", default=TRAIN_RECS,
                    help=f"training records (default: {' '.join(TRAIN_RECS)})")
    ap.add_argument("--class-limit", type=int, help="cap each training class at N beats (default: no cap)")
    ap.add_argument("--models", nargs="+", default=["liteecgnet", "resnet"], choices=MODEL_NAMES,
                    help="models to measure (default: liteecgnet resnet)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    if not 2 <= args.procs <= cores:
        ap.error(f"--procs must be between 2 and the {cores} cores")
    if args.repeats < 1 or args.epochs < 1 or args.batch_size < args.procs:
        ap.error("--repeats and --epochs must be >= 1, --batch-size >= --procs")
    if records_missing(args.root, "bench/ddp.py"):
        return 2
    per = cores // args.procs
    head = machine(cores, f"; gloo, global batch {args.batch_size}, {args.epochs} epochs on "
                          f"{' '.join(args.train_recs)}" + (f" (<= {args.class_limit} per class)" if args.class_limit else ""))
    print_table_head(head, ["model", f"1 process x {cores} threads (beats/s)",
                            f"{args.procs} processes x {per} thread{'s' if per > 1 else ''} (beats/s)", "ratio (median)",
                            "last train loss (1 / N)", "ratios measured"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as tmp:
        for name in args.models:
            ones, manys, losses = [], [], []
            for i in range(args.repeats):  # alternating, so a drift hits both sides alike
                a = train(args, name, 1, cores, Path(tmp) / f"{name}_{i}_one")
                b = train(args, name, args.procs, per, Path(tmp) / f"{name}_{i}_ddp")
                ones.append(beats_per_s(a))
                manys.append(beats_per_s(b))
                losses.append((a["history"][-1]["train_loss"], b["history"][-1]["train_loss"]))
            ratios = [m / o for m, o in zip(manys, ones)]
            one, many, ratio = statistics.median(ones), statistics.median(manys), statistics.median(ratios)
            rows.append(dict(model=name, single_beats_per_s=ones, ddp_beats_per_s=manys, ratios=ratios,
                             ratio_median=ratio, last_train_loss=losses))
            print(f"| {name} | {one:,.0f} | {many:,.0f} | {ratio:.2f}x | {losses[0][0]:.4f} / {losses[0][1]:.4f} | "
                  f"{', '.join(f'{r:.2f}' for r in ratios)} |", flush=True)
    with open(Path(__file__).with_name("results.jsonl"), "a") as f:
        f.write(json.dumps({"bench": "ddp", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": head,
                            "procs": args.procs, "threads_each": per, "epochs": args.epochs,
                            "batch_size": args.batch_size, "train_recs": args.train_recs,
                            "class_limit": args.class_limit, "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
