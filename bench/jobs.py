"""Training beats/s: one run on all cores vs the cores split between side-by-side runs.

    python bench/jobs.py [--jobs 2] [--seconds 8] [--repeats 3] [--models liteecgnet resnet ...]

What `JOBS=N bash run_all_models.sh` buys. For each model, first one process trains with all
threads, then N processes with (threads / N) threads each train at the same moment (they start
on a shared clock after warming up); each counts the training steps (batch 256, forward +
backward + AdamW, synthetic windows) it completes in the window. The pair of measurements is
repeated (a VM's speed drifts by tens of percent over minutes) and the table gives medians:
beats/s of the single run, the sum over the side-by-side runs, and the median of the ratios.
Appends one JSON line to bench/results.jsonl.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import machine, parser, print_table_head, run_script  # noqa: E402  (puts the repository on sys.path)

from config import DEFAULT_WINDOW  # noqa: E402
from models import MODEL_NAMES, create_model  # noqa: E402


def worker(name: str, threads: int, start: float, seconds: float, seq_len: int = DEFAULT_WINDOW) -> float:
    """Train `name` from `start` for `seconds`; beats per second."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(name).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(256, 1, seq_len), torch.randint(0, 4, (256,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for _ in range(3):  # warm-up, before the shared clock starts
        step()
    while time.time() < start:
        time.sleep(0.002)
    steps = 0
    while time.time() < start + seconds:
        step()
        steps += 1
    return steps * 256 / (time.time() - start)


def side_by_side(name: str, procs: int, threads: int, seconds: float) -> list[float]:
    """Run `procs` workers at once; their beats/s."""
    start = time.time() + 6  # time for every process to import torch and warm up
    cmd = [sys.executable, __file__, "--worker", name, str(threads), str(start), str(seconds)]
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    outs = [p.communicate(timeout=seconds + 300)[0] for p in ps]
    if any(p.returncode for p in ps):
        raise RuntimeError(f"a {name} worker failed")
    return [float(o) for o in outs]


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        print(worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])))
        return 0
    ap = parser(__doc__, root=False)
    ap.add_argument("--jobs", type=int, default=2, help="side-by-side runs (default: 2)")
    ap.add_argument("--seconds", type=float, default=8, help="timed window per measurement (default: 8)")
    ap.add_argument("--repeats", type=int, default=3, help="measurement pairs per model, medians reported (default: 3)")
    ap.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES,
                    help="models to measure (default: all)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    if not 2 <= args.jobs <= cores:
        ap.error(f"--jobs must be between 2 and the {cores} cores")
    if args.repeats < 1 or args.seconds <= 0:
        ap.error("--repeats must be >= 1 and --seconds > 0")
    per = cores // args.jobs
    head = machine(cores)
    print_table_head(head, ["model", f"1 run x {cores} threads (beats/s)",
                            f"{args.jobs} runs x {per} threads, sum (beats/s)", "ratio (median)", "ratios measured"])
    rows = []
    for name in args.models:
        ones, manys = [], []
        for _ in range(args.repeats):  # interleaved, so a drift hits both sides alike
            ones.append(side_by_side(name, 1, cores, args.seconds)[0])
            manys.append(sum(side_by_side(name, args.jobs, per, args.seconds)))
        ratios = [m / o for m, o in zip(manys, ones)]
        one, many, ratio = statistics.median(ones), statistics.median(manys), statistics.median(ratios)
        rows.append(dict(model=name, single_beats_per_s=ones, side_by_side_beats_per_s=manys, ratios=ratios,
                         ratio_median=ratio))
        print(f"| {name} | {one:,.0f} | {many:,.0f} | {ratio:.2f}x | "
              f"{', '.join(f'{r:.2f}' for r in ratios)} |", flush=True)
    with open(Path(__file__).with_name("results.jsonl"), "a") as f:
        f.write(json.dumps({"bench": "jobs", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": head,
                            "jobs": args.jobs, "threads_each": per, "seconds": args.seconds, "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
