"""Calibrate a trained model to one patient from the first labelled minutes of a record.

    python calibrate.py data/mitbih/232                      # the shipped DS1 model, the first 5 minutes
    python calibrate.py RECORD --checkpoint CKPT --minutes 5 --ann atr --out data/calibrated
    python calibrate.py --evaluate --records 100 232 ...     # many records: calibrate each, score the rest

One record: its beats of the first --minutes, labelled by the annotation file RECORD.<ann>,
fine-tune the checkpoint (patient.CALIBRATE: every parameter, 100 steps, the loss over the classes
those minutes hold, so a class the patient has not shown yet is kept as the model has it). Writes
<out>/<record>_calibrated.pt, a checkpoint like any other (predict.py, evaluate.py, export.py take
it), and <out>/<record>_calibration.json: the beats used per class, the classes absent from the
minutes, the fit on the calibration beats before and after, the time taken. Without --checkpoint
the DS1-pretrained liteecgnet of weights/ is used, so a record and five labelled minutes are all
a user needs.

--evaluate: the protocol behind the results page (a model trained on other patients, calibrated on
each test record's first minutes, tested on its remaining minutes once): a report
(eval_report_<model>_<stamp>_calibrated.json, the trainer's schema) of the calibrated model on every
record's test minutes, pooled and per record, with the uncalibrated model's figures on the same beats
(`uncalibrated`). --records defaults to the checkpoint's own test part (DS2 for an inter-patient
model); the records' test minutes inform nothing (patient.py's recipe is fixed).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from cli import CliParser, DataError, UsageError, log, run_cli

ROOT = Path(__file__).resolve().parent
WEIGHTS = ROOT / "weights" / "liteecgnet_ds1.pt"  # bash weights/build.sh rebuilds it
MIN_BEATS = 20  # fewer annotated beats than this in the calibration minutes calibrate nothing: refused


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="calibrate.py", description=__doc__.splitlines()[0])
    p.add_argument("record", nargs="?", help="WFDB record path without extension, e.g. data/mitbih/232")
    p.add_argument("--checkpoint", default=str(WEIGHTS), help="the model to calibrate (default: "
                   "weights/liteecgnet_ds1.pt, liteecgnet trained on DS1 with the inter-patient preset)")
    p.add_argument("--minutes", type=float, default=5.0, help="the labelled minutes at the record's start that "
                   "calibrate (default: 5, EC57's learning period)")
    p.add_argument("--ann", default="atr", help="annotation file extension holding the labels (default: atr)")
    p.add_argument("--out", default="data/calibrated", help="output folder (default: data/calibrated)")
    p.add_argument("--seed", type=int, default=1337, help="seed of the calibration's batch order (default: 1337)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    g = p.add_argument_group("evaluating calibration over many records")
    g.add_argument("--evaluate", action="store_true", help="calibrate each of --records on its first minutes and "
                   "score its remaining minutes; one report (default: off)")
    g.add_argument("--records", nargs="+", help="with --evaluate: MIT-BIH records (default: the checkpoint's test "
                   "part)")
    g.add_argument("--root", help="with --evaluate: the MIT-BIH folder (default: the checkpoint's --root)")
    g.add_argument("--int8", action="store_true", help="with --evaluate: also score each calibrated model's int8 "
                   "ONNX form (export.py --int8) on the same beats (default: off)")
    return p


def check(a: argparse.Namespace) -> None:
    if not (a.minutes > 0 and np.isfinite(a.minutes)):
        raise UsageError(f"--minutes must be a positive number of minutes, got {a.minutes}")
    if a.threads is not None and a.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {a.threads}")
    if a.evaluate == bool(a.record):
        raise UsageError("give a RECORD to calibrate, or --evaluate (with --records) to score calibration, not both"
                         if a.evaluate else "give the RECORD to calibrate (or --evaluate)")
    if (a.records or a.root or a.int8) and not a.evaluate:
        raise UsageError("--records, --root and --int8 go with --evaluate")
    if not a.ann.replace("_", "").isalnum():
        raise UsageError(f"--ann must be letters, digits or _, got {a.ann!r}")
    if not Path(a.checkpoint).exists() and Path(a.checkpoint) == WEIGHTS:
        shown = WEIGHTS.relative_to(ROOT) if WEIGHTS.is_relative_to(ROOT) else WEIGHTS
        raise UsageError(f"the shipped model {shown} is missing: rebuild it with "
                         "bash weights/build.sh, or give --checkpoint")


def load(path: str):
    """The checkpoint and its model (eval mode, CPU)."""
    from checkpoint import Checkpoint
    ckpt = Checkpoint.load(path)
    ckpt.require_final(path)
    return ckpt, ckpt.build_model("cpu", path)


# ----------------------------------------------------------------------------------------------
# One record
# ----------------------------------------------------------------------------------------------

def record_beats(record: str, cfg, ann: str):
    """A record's model inputs and labels, as training cuts them (beats whose window leaves the record
    are left out) -> (BeatData of its beats, root, name)."""
    from beats import CLASS_NAMES, LABEL_SCHEMES
    from utils import BeatData, beat_inputs, filtered_signal, read_record
    p = Path(record)
    p = p.with_suffix("") if p.suffix in (".hea", ".dat", ".atr", f".{ann}") else p
    root, rec = p.parent, p.name
    if not (root / f"{rec}.hea").is_file():
        raise DataError(f"record {p} not found (no {rec}.hea in {root})")
    sig, samp, sym, lead = read_record(root, rec, cfg, ann)
    if len(samp) == 0:
        raise DataError(f"record {rec}: {rec}.{ann} holds no beat annotations (a rhythm or foreign annotation file?)")
    x, tm, rr, kept = beat_inputs(filtered_signal(sig, cfg), samp, cfg)
    table = LABEL_SCHEMES[cfg.classes]
    y = np.array([table[s] for s in sym[kept]], np.int64)
    data = BeatData(x=x, y=y, record=np.full(len(y), int(rec) if rec.isdigit() else 0, np.int32), rpeak=samp[kept],
                    rr=rr, symbol=sym[kept], class_names=list(CLASS_NAMES[cfg.classes]), config=cfg,
                    leads={rec: lead}, dropped={rec: int((~kept).sum())}, tm=tm)
    return data, sig.shape[-1] / cfg.fs, rec


def fit_figures(model, part, names: list[str]) -> dict:
    """Accuracy and per-class recall of `model` on the calibration beats."""
    from engine import predict
    from metrics import classification_metrics
    pred = predict(model, part, 512, model.rr_dim > 0)[0]
    m = classification_metrics(part.y.numpy(), pred, names)
    return {"accuracy": m["accuracy"], "recall": {n: m["per_class"][n]["recall"] for n in names
                                                  if m["per_class"][n]["support"]}}


def calibrate_record(a: argparse.Namespace) -> int:
    import torch
    import patient
    from checkpoint import Checkpoint
    from dataset import BeatTensors
    from report import write_json
    ckpt, model = load(a.checkpoint)
    cfg, names = ckpt.preproc, list(ckpt.class_names)
    data, seconds, rec = record_beats(a.record, cfg, a.ann)
    if a.minutes * 60 >= seconds:
        raise UsageError(f"--minutes {a.minutes:g} is not shorter than record {rec} ({seconds / 60:.1f} min)")
    cal = data.rpeak < round(a.minutes * 60 * cfg.fs)
    if cal.sum() < MIN_BEATS:
        raise DataError(f"record {rec}: only {int(cal.sum())} annotated beats in the first {a.minutes:g} minutes")
    part = BeatTensors(data, np.flatnonzero(cal))
    t0, c0 = time.perf_counter(), time.process_time()
    tuned = patient.adapt(model, part, patient.CALIBRATE, a.seed)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    counts = np.bincount(data.y[cal], minlength=len(names))
    absent = [n for n, k in zip(names, counts) if k == 0]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"record": str(Path(a.record)), "annotations": a.ann, "minutes": a.minutes, "checkpoint": a.checkpoint,
            "beats": {n: int(k) for n, k in zip(names, counts)}, "absent_classes": absent,
            "recipe": patient.describe(patient.CALIBRATE), "seed": a.seed, "seconds": wall, "cpu_seconds": cpu,
            "threads": torch.get_num_threads(), "fit_before": fit_figures(model, part, names),
            "fit_after": fit_figures(tuned, part, names),
            "note": ("no beat of " + ", ".join(absent) + " in the calibration minutes: those classes are left as "
                     "the model had them (the loss runs over the classes present)") if absent else None}
    ck_path, rep_path = out / f"{rec}_calibrated.pt", out / f"{rec}_calibration.json"
    Checkpoint(**{**vars(ckpt), "state_dict": {k: v.detach().clone() for k, v in tuned.state_dict().items()},
                  "calibrated": info}).save(ck_path)
    write_json(info, rep_path)
    log(f"record {rec}: {int(cal.sum())} beats in the first {a.minutes:g} minutes ("
        + " ".join(f"{n} {k}" for n, k in zip(names, counts) if k) + f"); calibrated in {wall:.2f} s "
        f"({cpu:.2f} s CPU, {torch.get_num_threads()} thread(s))")
    if absent:
        log(f"note: {info['note']}")
    b, f = info["fit_before"], info["fit_after"]
    log(f"on the calibration beats: accuracy {b['accuracy']:.3f} -> {f['accuracy']:.3f}; recall "
        + ", ".join(f"{n} {b['recall'][n]:.2f} -> {f['recall'][n]:.2f}" for n in b["recall"]))
    log(f"wrote {ck_path}")
    log(f"wrote {rep_path}  (label the rest: python predict.py {ck_path} {a.record} --start {a.minutes * 60:g})")
    return 0


# ----------------------------------------------------------------------------------------------
# Many records: the calibration protocol
# ----------------------------------------------------------------------------------------------

def int8_predictions(ckpt):
    """(calibrated model, test beats) -> the classes its int8 ONNX file gives them: export.py --int8's
    graph, calibrated on the beats the checkpoint keeps, as a user's export of it would be."""
    import export
    from deploy import OnnxModel
    pre = ckpt.preproc
    cx, crr, _ = export.calibration_inputs(ckpt, None, None)  # the beats the checkpoint keeps

    def run(model, part) -> np.ndarray:
        q = export.quantize_int8(export.onnx_bytes(model, pre.channels, pre.window, ckpt.rr_dim), cx, crr)
        rr = part.rr.numpy() if ckpt.rr_dim else None
        return OnnxModel(export.with_metadata(q, export.export_metadata(ckpt, "calibrated"))).logits(
            part.x.numpy(), rr).argmax(1)
    return run


def evaluate_records(a: argparse.Namespace) -> int:
    import patient
    from dataset import DS1, DS2, BeatTensors
    from options import check_writable, saved_run
    from report import result_lines, run_stamp, write_report
    from utils import MITDB_RECORDS, load_beats
    ckpt, model = load(a.checkpoint)
    if a.int8 and not ckpt.calibration:
        raise UsageError(f"--int8 quantizes on the training beats a checkpoint keeps; {a.checkpoint} keeps none "
                         "(it predates them): retrain it, or leave --int8 out")
    run_cfg = saved_run(ckpt.args, a.checkpoint, a.root)
    records = [str(r) for r in a.records] if a.records else (
        list(run_cfg.test_recs) if run_cfg.test_recs else None)
    if records is None:
        if run_cfg.split != "interpatient":
            raise UsageError(f"{a.checkpoint} was tested on a {run_cfg.split} split, not on whole records: give "
                             "--records")
        records = list(DS2)
    bad = sorted(set(records) - set(MITDB_RECORDS))
    if bad:
        raise UsageError(f"not MIT-BIH records: {' '.join(bad)}")
    out_dir = check_writable(Path(a.out))
    t_start = time.perf_counter()
    data = load_beats(run_cfg.root, ckpt.preproc, records=records, use_cache=run_cfg.cache,
                      download=not run_cfg.no_download, log=log)
    log(f"calibrating {ckpt.model_name} ({a.checkpoint}) on the first {a.minutes:g} minutes of {len(records)} records; "
        "each tested on the rest, beside the uncalibrated model on the same beats")
    result = patient.per_record(
        data, records, lambda r, cal: patient.adapt(model, BeatTensors(data, cal), patient.CALIBRATE,
                                                   a.seed * 1000 + int(r)),
        a.minutes, 512, "cpu", log, baseline=model, deployed=int8_predictions(ckpt) if a.int8 else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = run_stamp(out_dir)
    path = out_dir / f"eval_report_{ckpt.model_name}_{stamp}_calibrated.json"
    report = patient.build(result, data, model=model, model_name=ckpt.model_name, stamp=stamp, source=a.checkpoint,
                           args={**run_cfg.to_dict(), "calibrate": dict(vars(a))},
                           split=f"{run_cfg.split}, calibrated",
                           train_records=list(DS1) if run_cfg.split == "interpatient" else list(run_cfg.train_recs or []),
                           minutes=a.minutes, recipe=patient.CALIBRATE, bootstrap=run_cfg.bootstrap, seed=a.seed,
                           device="cpu", t_start=t_start, extra={"checkpoint": a.checkpoint})
    write_report(report, path)
    for title, test in (("uncalibrated", report["uncalibrated"]), ("calibrated", report["test"]),
                        *((("calibrated, int8", report["deployed"]),) if a.int8 else ())):
        for line in result_lines(test, data.class_names, f"{title}, minutes {a.minutes:g}-end of {len(records)} records"):
            log(line)
    times = [r["seconds"] for r in result["records"].values()]
    log(f"calibration: median {np.median(times):.2f} s per record (max {max(times):.2f} s)")
    log(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        a = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        check(a)
        if a.threads:
            import torch
            torch.set_num_threads(a.threads)
        return evaluate_records(a) if a.evaluate else calibrate_record(a)
    return run_cli("calibrate.py", body)


if __name__ == "__main__":
    sys.exit(main())
