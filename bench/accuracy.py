"""Accuracy of all seven models on the three protocols, and docs/RESULTS.md, in one command.

    MITBIH_DIR=../shared/mitdb python bench/accuracy.py --epochs 30        # everything (hours on 2 cores)
    python bench/accuracy.py --skip-train --skip-bench                     # rebuild RESULTS.md only

Steps: bench/pipeline.py and bench/models.py (speed tables), then run_all_models.sh once per
protocol into data/records/accuracy/<protocol>/ (each ends with summarize.py's leaderboard),
then docs/RESULTS.md from those tables. Model selection uses validation records only; the test
part is evaluated once per run.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, parser  # noqa: E402  (puts the repository on sys.path)

# protocol -> trainer flags. Inter-patient adds the documented, leakage-free aids for the rare
# classes: square-root inverse-frequency class weights (from the training part's counts; full
# inverse weights of ~1000 for Q's 8 training beats pushed N beats into F/V: ldcnn macro-F1
# 0.372 -> 0.416 with sqrt, 8 epochs) and RR-interval context (from the beat's own record, never
# from DS2 labels).
PROTOCOLS = {
    "stratified": ["--split", "stratified", "--classes", "seed4"],
    "random": ["--split", "random", "--classes", "seed4"],
    "interpatient": ["--split", "interpatient", "--classes", "aami5", "--class-weights", "sqrt", "--rr"],
}

READING = """\
## How to read these numbers

- **stratified** (the product's default) puts beats of the same patient in train and test. The
  network partly learns each patient's beat morphology, so these scores are *intra-patient* and
  optimistic: they say how well a model fits patients it has already seen.
- **random** splits by record (patient): the test patients are unseen, but only 7 records are in
  test, so which patients land there (and whether rare classes are present at all) moves the
  score a lot; compare models within one seed, not across papers.
- **interpatient** (de Chazal et al. 2004, DS1 -> DS2, AAMI classes) is the protocol published
  results use. It is much harder, especially for S (supraventricular) beats, whose shape is
  often normal: only timing (RR intervals) tells them apart. Confidence intervals come from a
  bootstrap over test records, so they include patient-to-patient variation.
- Macro-F1 averages the classes present in the test part. On inter-patient AAMI data the Q class
  has 7 test beats, so its F1 swings macro-F1; the S and V Se/+P columns are the ones to compare
  with the literature (e.g. S F1 about 0.80 and V F1 about 0.91 for the best published methods).
"""


def run(cmd: list[str], log: Path | None = None) -> str:
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if log:
        log.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        print(r.stdout[-3000:] + r.stderr[-3000:], file=sys.stderr)
        print(f"(exit {r.returncode})", file=sys.stderr)
    return r.stdout


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--epochs", type=int, default=30, help="maximum epochs per run (default: 30)")
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS),
                    help="protocols to run (default: all three)")
    ap.add_argument("--out", default=str(ROOT / "data" / "records" / "accuracy"),
                    help="folder for the sweeps (default: data/records/accuracy)")
    ap.add_argument("--skip-train", action="store_true", help="reuse existing sweeps (default: off)")
    ap.add_argument("--skip-bench", action="store_true", help="reuse existing speed tables (default: off)")
    ap.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"), help="output (default: docs/RESULTS.md)")
    ap.add_argument("--notes", default=str(ROOT / "docs" / "results_notes.md"),
                    help="hand-written status / ablation section placed after the header, if the file exists "
                         "(default: docs/results_notes.md)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    if not args.skip_bench:
        (out / "bench_pipeline.md").write_text(run([py, "bench/pipeline.py", "--root", args.root]))
        (out / "bench_models.md").write_text(run([py, "bench/models.py"]))
    commands = {}
    for name in args.protocols:
        flags = ["--root", args.root, "--epochs", str(args.epochs), "--cache", "--quiet", *PROTOCOLS[name],
                 "--out-dir", str(out / name)]
        shown = [os.path.relpath(f, ROOT) if f == str(out / name) else f for f in flags]  # portable in the page
        commands[name] = "bash run_all_models.sh " + " ".join(shown)
        if not args.skip_train:
            t0 = time.time()
            run(["bash", "run_all_models.sh", *flags], log=out / f"sweep_{name}.log")
            (out / name / "sweep_seconds.txt").write_text(f"{time.time() - t0:.0f}\n")

    def section(path: Path, missing: str) -> str:
        return path.read_text().strip() if path.exists() else f"_{missing}_"

    parts = [
        "# LiteECG results\n",
        f"Generated by `python bench/accuracy.py --epochs {args.epochs}` on {time.strftime('%Y-%m-%d')}, "
        f"commit `{_git('rev-parse', '--short', 'HEAD') or 'unknown'}`, {platform.platform()}, "
        f"Python {platform.python_version()}. Every number below was measured by the scripts named; "
        "rerun the command to regenerate this page.\n",
        *([Path(args.notes).read_text().strip(), ""] if Path(args.notes).is_file() else []),
        "## Data pipeline (`python bench/pipeline.py`)\n",
        section(out / "bench_pipeline.md", "not run"), "",
        "## Model cost (`python bench/models.py`)\n",
        section(out / "bench_models.md", "not run"), "",
        "`vs reference`: training beats/s divided by the public reference implementation's same-named "
        "model as issue 6 gives it (batch 256, 2 threads), measured on the 2-core CPU the issue was filed "
        "on, not on the machine of this table: on a faster machine the reference runs faster too, so the "
        "ratio overstates the gain by that machine's speed-up.\n",
    ]
    for name in PROTOCOLS:
        lb = out / name / "leaderboard.md"
        secs = out / name / "sweep_seconds.txt"
        parts += [f"## Accuracy: {name}\n",
                  f"`{commands.get(name, 'bash run_all_models.sh ... ' + ' '.join(PROTOCOLS[name]))}`"
                  + (f" — sweep wall time {int(secs.read_text()) / 60:.0f} min" if secs.exists() else "") + "\n",
                  section(lb, "not run yet"), "",
                  "Per class (EC57 gross Se / +P as WFDB sumstats computes them, and F1):\n",
                  section(out / name / "leaderboard_classes.md", "not run yet"), ""]
    parts.append(READING)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.results).with_suffix(".tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(args.results)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
