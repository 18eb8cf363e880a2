"""Deployment: ONNX float / int8 files of every model, and predict.py over whole 30-min records.

    MITBIH_DIR=/path/to/mitdb python bench/deploy.py                       # all three tables
    python bench/deploy.py --accuracy STRATIFIED.pt INTERPATIENT.pt         # int8 accuracy of these
    python bench/deploy.py --skip-models --skip-accuracy --records 100 208  # predict.py speed only

(1) Per model: `export.py --int8` of a checkpoint (the newest final one per model in
--checkpoints, else a one-epoch run on records 101 106 / 103 / 100 made here: size and latency do
not depend on how well it is trained): file sizes, and batch-1 one-thread latency of the torch
eager model, the ONNX float and the ONNX int8 file, measured side by side in one process.
(2) For each --accuracy checkpoint: test macro-F1 / S F1 / V F1 of the float and int8 files on
the checkpoint's own test part (int8 calibrated on its training part).
(3) predict.py with an ONNX file over each --records record, as a user runs it (a new process,
imports included), with the reference annotations and with XQRS detection (--detect): median
wall seconds of --repeats runs and the multiple of real time; also the detection alone, ours
(predict.detect_beats) and wfdb's unchanged XQRS, in this process.
Prints Markdown tables and appends a JSON line to bench/results.jsonl. Run it on an idle machine.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, parser, print_table_head, records_missing, run_script  # noqa: E402

import export  # noqa: E402
from models import MODEL_NAMES  # noqa: E402


def newest_checkpoint(folder: Path, model: str) -> Path | None:
    found = sorted(p for p in folder.glob(f"ecg_lightweight_{model}_*.pt") if not p.name.endswith(".last.pt"))
    return found[-1] if found else None


def small_checkpoint(model: str, root: str, out: Path) -> Path:
    """One epoch on three records (seconds): a real checkpoint with run arguments to calibrate on."""
    import trainer
    rc = trainer.main(["--model", model, "--epochs", "1", "--device", "cpu", "--root", root, "--no-download",
                       "--out-dir", str(out), "--class-limit", "300",
                       "--train-recs", "101", "106", "--val-recs", "103", "--test-recs", "100"])
    if rc != 0:
        raise SystemExit(f"bench/deploy.py: training a {model} checkpoint failed (exit {rc})")
    return newest_checkpoint(out, model)


def export_record(ckpt: Path, out_dir: Path, runs: int, root: str | None) -> dict:
    """export.py --int8 of `ckpt` into `out_dir` (its record: float and int8 sizes, latencies, and
    with the data the test scores of both)."""
    return export.export_onnx(str(ckpt), out_dir / (ckpt.stem + ".int8.onnx"), True, runs, root, log=lambda m: None)


def float_file(ckpt: Path, out_dir: Path, root: str | None) -> Path:
    """export.py of `ckpt` (float ONNX) into `out_dir` -> the file."""
    out = out_dir / (ckpt.stem + ".onnx")
    export.export_onnx(str(ckpt), out, False, 0, root, log=lambda m: None)
    return out


def wall(cmd: list[str], repeats: int) -> float:
    """Median wall seconds of `cmd` run `repeats` times (each must succeed)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise SystemExit(f"bench/deploy.py: {' '.join(cmd)} failed: {r.stderr.strip()[-300:]}")
    return statistics.median(times)


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--checkpoints", default="data/records/accuracy/stratified",
                    help="folder with final checkpoints per model (default: data/records/accuracy/stratified)")
    ap.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES,
                    help="models of table 1 (default: all)")
    ap.add_argument("--accuracy", nargs="*", default=[], help="checkpoints for table 2 (default: none)")
    ap.add_argument("--records", nargs="+", default=["100"], help="records for table 3 (default: 100)")
    ap.add_argument("--runs", type=int, default=300, help="timed batch-1 calls per latency (default: 300)")
    ap.add_argument("--repeats", type=int, default=3, help="predict.py runs per figure, median (default: 3)")
    ap.add_argument("--skip-models", action="store_true", help="no table 1 (default: off)")
    ap.add_argument("--skip-accuracy", action="store_true", help="no table 2 (default: off)")
    ap.add_argument("--skip-predict", action="store_true", help="no table 3 (default: off)")
    args = ap.parse_args()
    if records_missing(args.root, "bench/deploy.py"):
        return 2
    import onnxruntime
    head = machine(extra=f", onnxruntime {onnxruntime.__version__}")
    result = {"bench": "deploy", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": head}
    work = Path(tempfile.mkdtemp(prefix="liteecg-deploy-"))
    models_rows, acc_rows, pred_rows = [], [], []

    if not args.skip_models:
        print_table_head(head, ["model", "checkpoint", "T x C", "ONNX KiB", "int8 KiB", "eager ms", "ONNX ms",
                                "int8 ms", "int8 / eager"], text_columns=3)
        for m in args.models:
            ckpt = newest_checkpoint(Path(args.checkpoints), m) or small_checkpoint(m, args.root, work / "ckpt")
            r = export_record(ckpt, work, args.runs, args.root)
            lat, meta = r["latency_ms"], export.OnnxModel(r["file"]).preproc
            row = {"model": m, "checkpoint": ckpt.name, "window": meta.window, "channels": meta.channels,
                   "onnx_bytes": r["float"]["bytes"], "int8_bytes": r["int8"]["bytes"],
                   "eager_ms": lat["eager"], "onnx_ms": lat["float"], "int8_ms": lat["int8"]}
            models_rows.append(row)
            print(f"| {m} | {ckpt.name} | {meta.window} x {meta.channels} | {row['onnx_bytes'] / 1024:.1f} | "
                  f"{row['int8_bytes'] / 1024:.1f} | {lat['eager']:.3f} | {lat['float']:.3f} | {lat['int8']:.3f} | "
                  f"{lat['int8'] / lat['eager']:.2f} |", flush=True)
        print()

    if not args.skip_accuracy and args.accuracy:
        print_table_head("Test part of each checkpoint, float vs int8 (int8 calibrated on its training part):",
                         ["checkpoint", "split", "beats", "float macro-F1", "int8 macro-F1", "float S F1",
                          "int8 S F1", "float V F1", "int8 V F1", "int8 KiB"], text_columns=2)
        for c in args.accuracy:
            r = export_record(Path(c), work, 0, None)
            t = r["test"]
            row = {"checkpoint": Path(c).name, "split": t["split"], "beats": t["beats"], "float": t["float"],
                   "int8": t["int8"], "int8_bytes": r["int8"]["bytes"]}
            acc_rows.append(row)
            f, q = t["float"], t["int8"]
            fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
            print(f"| {row['checkpoint']} | {t['split']} | {t['beats']} | {fmt(f['macro_f1'])} | {fmt(q['macro_f1'])} | "
                  f"{fmt(f['S_F1'])} | {fmt(q['S_F1'])} | {fmt(f['V_F1'])} | {fmt(q['V_F1'])} | "
                  f"{row['int8_bytes'] / 1024:.1f} |", flush=True)
        print()

    if not args.skip_predict:
        ckpt = newest_checkpoint(Path(args.checkpoints), "liteecgnet") or small_checkpoint("liteecgnet", args.root,
                                                                                          work / "ckpt")
        onnx_file = float_file(ckpt, work, args.root)
        import wfdb
        from wfdb import processing
        from predict import detect_beats
        from utils import PreprocConfig, read_signal
        print_table_head(f"predict.py {onnx_file.name} RECORD (liteecgnet ONNX float), a new process each run, "
                         f"median of {args.repeats}:",
                         ["record", "minutes", "XQRS beats", "with .atr s", "x real time", "--detect s", "x real time",
                          "detection alone s", "wfdb XQRS alone s"])
        for rec in args.records:
            hdr = wfdb.rdheader(str(Path(args.root) / rec))
            dur = hdr.sig_len / hdr.fs
            base = [sys.executable, "predict.py", str(onnx_file), str(Path(args.root) / rec), "--out-dir",
                    str(work / "pred")]
            t_ref, t_det = wall(base, args.repeats), wall(base + ["--detect"], args.repeats)
            sig, _ = read_signal(args.root, rec, PreprocConfig())
            ours, xq = [], []  # predict.detect_beats (vectorised peak search) and wfdb's own XQRS
            for _ in range(args.repeats):
                t = time.perf_counter()
                detect_beats(sig, int(hdr.fs))
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                processing.xqrs_detect(sig=sig, fs=hdr.fs, verbose=False)
                xq.append(time.perf_counter() - t)
            n = len(wfdb.rdann(str(work / "pred" / rec), "pred").sample)
            row = {"record": rec, "seconds": dur, "beats_detected": n, "with_atr_s": t_ref, "detect_s": t_det,
                   "detection_s": statistics.median(ours), "wfdb_xqrs_s": statistics.median(xq)}
            pred_rows.append(row)
            print(f"| {rec} | {dur / 60:.1f} | {n} | {t_ref:.2f} | {dur / t_ref:,.0f} | {t_det:.2f} | "
                  f"{dur / t_det:,.0f} | {row['detection_s']:.2f} | {row['wfdb_xqrs_s']:.2f} |", flush=True)
    result.update(models=models_rows, accuracy=acc_rows, predict=pred_rows)
    with open(Path(__file__).with_name("results.jsonl"), "a") as f:
        f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
