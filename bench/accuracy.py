"""Accuracy of all seven models on the three protocols, and docs/RESULTS.md, in one command.

    MITBIH_DIR=/path/to/mitdb python bench/accuracy.py                     # everything (hours on 2 cores)
    python bench/accuracy.py --skip-train --skip-bench                     # rebuild RESULTS.md only
    MITBIH_DIR=/path/to/mitdb python bench/accuracy.py --protocols interpatient \
        --seeds 1337 1 2 --models liteecgnet --skip-bench                 # inter-patient, 3 seeds

Each protocol is an experiment file (PROTOCOLS: experiments/*.toml, with its number of epochs;
--epochs overrides it). Steps: bench/pipeline.py and bench/models.py (speed tables), then
run_all_models.sh once per protocol and seed into data/records/accuracy/<protocol>/, baseline.py
(lda and logreg) beside them, and summarize.py's leaderboards of all of it, then docs/RESULTS.md: docs/results_summary.md (the headline),
those tables, then docs/results_notes.md (the other measurements). Model selection uses
validation records (or folds inside DS1) only; the test part is evaluated once per run.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from common import ROOT, parser, run_script  # noqa: E402  (puts the repository on sys.path)

# protocol -> its experiment file. Inter-patient runs with its preset (experiments/interpatient.toml:
# aami5, patient-relative RR, template channel, 1.2 s window) and chooses its number of epochs by
# 4-fold cross-validation inside DS1 (cv = 4): DS2 is evaluated once per run, for no choice.
PROTOCOLS = {
    "stratified": "experiments/stratified.toml",
    "random": "experiments/random.toml",
    "interpatient": "experiments/interpatient_cv.toml",
    "patient-specific": "experiments/patient_specific.toml",
}
# after the inter-patient sweep, each of its checkpoints calibrated on every DS2 record's first 5 minutes
# and tested on the rest (calibrate.py --evaluate), into this folder and section
CALIBRATED = "interpatient-calibrated"
# baseline.py's classifiers, run in each protocol's folder in their published configuration (no --cv):
# de Chazal 2004's linear discriminant and a class-weighted logistic regression on the same features
BASELINES = ("lda", "logreg")

# Published inter-patient (DS1 -> DS2) results, as the papers report them (F1 computed here from
# their Se and +P where the paper gives no F1). For comparison only: other inputs, other code.
LITERATURE = [
    ("de Chazal et al. 2004 (linear discriminants, RR + morphology)", 0.759, 0.385, None, 0.777, 0.819, None),
    ("Zhang et al. 2014 (feature selection + SVMs)", 0.791, 0.360, None, 0.855, 0.928, None),
    ("Niu et al. 2020 (symbolic representation + CNN)", None, None, 0.766, None, None, 0.897),
]


def literature_table() -> str:
    def f1(se, pp, given):
        return given if given is not None else 2 * se * pp / (se + pp)
    lines = ["| published (DS1 -> DS2) | S Se | S +P | S F1 | V Se | V +P | V F1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for name, sse, spp, sf1, vse, vpp, vf1 in LITERATURE:
        lines.append(f"| {name} | {fmt(sse)} | {fmt(spp)} | {fmt(f1(sse, spp, sf1))} | {fmt(vse)} | {fmt(vpp)} | "
                     f"{fmt(f1(vse, vpp, vf1))} |")
    return "\n".join(lines) + "\n"

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
  with the literature (S F1 0.50-0.77 and V F1 0.80-0.90 for the published methods in the
  inter-patient section's table).
"""


VS_REFERENCE = (
    "`vs reference`: training beats/s divided by the public reference implementation's same-named "
    "model as issue 6 gives it (batch 256, 2 threads), measured on the 2-core CPU the issue was filed "
    "on, not on the machine of this table: on a faster machine the reference runs faster too, so the "
    "ratio overstates the gain by that machine's speed-up.\n")


def run(cmd: list[str], log: Path | None = None, env: dict | None = None) -> str:
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
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
    ap.add_argument("--epochs", type=int, help="maximum epochs per run (default: each protocol file's)")
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS),
                    help="protocols to run (default: all three)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1337], help="one sweep per seed (default: 1337)")
    ap.add_argument("--models", nargs="+", help="a subset of the registry (default: all)")
    ap.add_argument("--out", default=str(ROOT / "data" / "records" / "accuracy"),
                    help="folder for the sweeps (default: data/records/accuracy)")
    ap.add_argument("--skip-train", action="store_true", help="reuse existing sweeps (default: off)")
    ap.add_argument("--skip-bench", action="store_true", help="reuse existing speed tables (default: off)")
    ap.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"), help="output (default: docs/RESULTS.md)")
    ap.add_argument("--summary", default=str(ROOT / "docs" / "results_summary.md"),
                    help="hand-written status and ablation, placed after the header, if the file exists "
                         "(default: docs/results_summary.md)")
    ap.add_argument("--notes", default=str(ROOT / "docs" / "results_notes.md"),
                    help="hand-written measurements placed after the generated tables, if the file exists "
                         "(default: docs/results_notes.md)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    if not args.skip_bench:
        (out / "bench_pipeline.md").write_text(run([py, "bench/pipeline.py", "--root", args.root]))
        (out / "bench_models.md").write_text(run([py, "bench/models.py"]))
    commands = {}
    models = f"MODELS=\"{' '.join(args.models)}\" " if args.models else ""
    for name in args.protocols:
        flags = ["--config", PROTOCOLS[name], "--root", args.root, *(["--epochs", str(args.epochs)] if args.epochs else []),
                 "--out-dir", str(out / name)]
        shown = [os.path.relpath(f, ROOT) if f == str(out / name) else "/path/to/mitdb" if f == args.root else f
                 for f in flags]  # portable in the page
        seeds = " ".join(map(str, args.seeds))
        commands[name] = (f"for s in {seeds}; do {models}bash run_all_models.sh {' '.join(shown)} --seed $s; done"
                          if len(args.seeds) > 1 else f"{models}bash run_all_models.sh {' '.join(shown)} --seed {seeds}")
        if not args.skip_train:
            t0 = time.time()
            env = {**os.environ, **({"MODELS": " ".join(args.models)} if args.models else {})}
            for seed in args.seeds:
                run(["bash", "run_all_models.sh", *flags, "--seed", str(seed)], log=out / f"sweep_{name}_{seed}.log",
                    env=env)
                split = tomllib.loads((ROOT / PROTOCOLS[name]).read_text())["split"]
                for model in BASELINES if split != "patient-specific" else ():  # a row of the same leaderboards
                    run([py, "baseline.py", "--split", split, "--model", model, "--root", args.root,
                         "--seed", str(seed), "--out-dir", str(out / name)], log=out / f"baseline_{name}_{model}_{seed}.log")
            run([py, "summarize.py", str(out / name), "--out", str(out / name)])
            if name == "interpatient":  # protocol B: the same checkpoints, calibrated patient by patient
                for ckpt in sorted(p for p in (out / name).glob("ecg_lightweight_*.pt") if ".last" not in p.name):
                    run([py, "calibrate.py", "--evaluate", "--checkpoint", str(ckpt), "--root", args.root,
                         "--out", str(out / CALIBRATED)], log=out / f"calibrate_{ckpt.stem}.log")
                run([py, "summarize.py", str(out / CALIBRATED), "--out", str(out / CALIBRATED)])
                (out / CALIBRATED / "command.txt").write_text(
                    f"python calibrate.py --evaluate --checkpoint CKPT --root /path/to/mitdb --out "
                    f"{os.path.relpath(out / CALIBRATED, ROOT)}  (each checkpoint of the inter-patient sweep)\n")
            (out / name / "sweep_seconds.txt").write_text(f"{time.time() - t0:.0f}\n")
            (out / name / "command.txt").write_text(commands[name] + "\n")
        elif (out / name / "command.txt").exists():
            commands[name] = (out / name / "command.txt").read_text().strip()

    def section(path: Path, missing: str) -> str:
        return path.read_text().strip() if path.exists() else f"_{missing}_"

    # A protocol whose sweep folder is not here (sweeps live under data/, outside git) keeps the
    # section the page had: rerunning one protocol does not erase the others' measured tables.
    old = Path(args.results).read_text() if Path(args.results).is_file() else ""

    def kept(title: str) -> str | None:
        head = f"## {title}\n"
        if head not in old:
            return None
        body = old.split(head, 1)[1]
        return head + body.split("\n## ", 1)[0]  # ends with the newline before the next "## "

    def hand_written(path: str) -> list[str]:
        return [Path(path).read_text().strip(), ""] if Path(path).is_file() else []

    def bench_section(title: str, path: Path, after: str = "") -> list[str]:
        if not path.exists() and kept(title):
            return [kept(title)]
        return [f"## {title}\n", section(path, "not run"), "", *([after] if after else [])]

    parts = [
        "# LiteECG results\n",
        f"Generated by `python bench/accuracy.py` at commit `{_git('rev-parse', '--short', 'HEAD') or 'unknown'}`. "
        "Every number below was measured by the command shown with it; rerun `python bench/accuracy.py` "
        "to regenerate this page (`--skip-train --skip-bench` rebuilds it from the sweeps already run).\n",
        *hand_written(args.summary),
        *bench_section("Data pipeline (`python bench/pipeline.py`)", out / "bench_pipeline.md"),
        *bench_section("Model cost (`python bench/models.py`)", out / "bench_models.md", VS_REFERENCE),
    ]
    for name in (*PROTOCOLS, CALIBRATED):
        lb = out / name / "leaderboard.md"
        if not lb.exists() and kept(f"Accuracy: {name}"):
            parts += [kept(f"Accuracy: {name}")]
            continue
        secs = out / name / "sweep_seconds.txt"
        if name == CALIBRATED and (out / name / "command.txt").exists():
            commands[name] = (out / name / "command.txt").read_text().strip()
        parts += [f"## Accuracy: {name}\n",
                  f"`{commands.get(name, 'bash run_all_models.sh --config ' + PROTOCOLS.get(name, '...'))}`"
                  + (f" — sweep wall time {int(secs.read_text()) / 60:.0f} min" if secs.exists() else "") + "\n",
                  section(lb, "not run yet"), "",
                  "Mean ± std over seeds (`leaderboard_seeds.md`):\n",
                  section(out / name / "leaderboard_seeds.md", "not run yet"), "",
                  "Per class (EC57 gross Se / +P as WFDB sumstats computes them, and F1):\n",
                  section(out / name / "leaderboard_classes.md", "not run yet"), ""]
        if name != "stratified" and (out / name / "leaderboard_records.md").exists():
            parts += ["Per test record (`leaderboard_records.md`):\n",
                      section(out / name / "leaderboard_records.md", ""), ""]
        if name == "interpatient":
            parts += ["Published results on the same protocol, for comparison (as the papers report them):\n",
                      literature_table(), ""]
    parts += [READING, *hand_written(args.notes)]
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.results).with_suffix(".tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(args.results)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    run_script(main)
