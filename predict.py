"""Run a trained model over a whole WFDB record and write its beat labels.

    python predict.py data/records/ecg_lightweight_liteecgnet_<stamp>.pt /path/to/mitdb/100
    python predict.py liteecgnet.onnx /path/to/mitdb/100   # export.py's file: onnxruntime, no torch
    python predict.py MODEL path/to/record --out-dir data/predictions --out-ext pred --device cpu
    python predict.py MODEL /path/to/mitdb/100 --detect     # XQRS beats, matched to 100.atr

MODEL is a final checkpoint (.pt, run by torch) or an ONNX file written by export.py (.onnx, run
by onnxruntime through deploy.OnnxModel; torch is then never imported). Both take their inputs
from the same preprocessing, stored in the checkpoint or in the file's liteecg.json.

Where the beats are:
  - RECORD.atr exists (and no --detect): at its reference *beat* annotations (beats.BEAT_SYMBOLS,
    read by utils.read_record), so every reference beat gets exactly one label.
  - otherwise: at the R peaks wfdb.processing's XQRS detector finds (said in one line), with its
    local-peak search vectorised (`local_peaks`: the same beats, ~12x faster).

Preprocessing comes entirely from the model ("preprocessing" -> utils.PreprocConfig), and
the model inputs come from the function the training cache is built with (utils.beat_inputs):
lead policy, zero-phase band-pass over the whole record, windows, per-window normalisation and
the per-beat features over all beats found. Training *drops* beats whose window leaves the
record; here every beat must get a label, so beat_inputs edge-pads the signal (its pad_edges
option). Beats away from the ends see exactly the training input; the few edge beats (3 in
record 100 with 2 s windows) see a padded window and are flagged ``edge_padded`` in the CSV.

The sampling rate is not adapted: a record whose fs differs from the model's is refused with
one line (resample it first, e.g. with wfdb.processing.resample_multichan).

Outputs in --out-dir (each written to a temp file, then renamed):
  RECORD.<out-ext>       WFDB annotation file (MIT format, as wfdb.wrann writes it), one beat symbol per predicted beat;
                         class -> symbol by beats.CLASS_SYMBOL (a representative MIT-BIH
                         code of each class; read back with wfdb.rdann(path, "<out-ext>")).
  RECORD.<out-ext>.csv   sample, time_s, label, symbol, edge_padded, p_<class> per class.

With reference annotations the beat-by-beat comparison is printed: each predicted beat is paired
with the nearest reference beat within 150 ms (one-to-one, closest pairs first, as bxb does;
trivial when the beats *are* the reference positions), reference symbols are mapped to classes
with the checkpoint's label scheme, and the paired labels give the confusion table,
metrics.classification_metrics and metrics.ec57_stats (gross). Unpaired reference beats are
"missed", unpaired predicted beats "extra" (QRS detection errors, outside the class statistics).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np

from beats import CLASS_SYMBOL, LABEL_SCHEMES
from cli import CliParser, DataError, UsageError, resolve_device, run_cli
from metrics import classification_metrics, ec57_stats
from wfdbio import annotation_bytes
from utils import (PreprocConfig, atomic_write, beat_inputs, filtered_signal, read_record, read_signal,
                   windows_inside)

MATCH_WINDOW_S = 0.150  # bxb / EC57 beat-matching window


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(description="Label every beat of a WFDB record with a trained LiteECG model.")
    p.add_argument("model", help="final checkpoint (.pt) written by trainer.py, or an .onnx file written by export.py")
    p.add_argument("record", help="WFDB record path without extension, e.g. /path/to/mitdb/100")
    p.add_argument("--out-dir", default="data/predictions", help="output folder (default: data/predictions)")
    p.add_argument("--out-ext", default="pred", help="annotation file extension (default: pred)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="device of a checkpoint; cuda falls back to cpu when unavailable; .onnx runs on "
                   "onnxruntime's CPU provider (default: cpu)")
    p.add_argument("--detect", action="store_true",
                   help="find beats with XQRS even when RECORD.atr exists, and compare them with it (default: off)")
    p.add_argument("--batch-size", type=int, default=1024, help="beats per forward pass (default: 1024)")
    p.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="label and compare the beats from "
                   "this time on (e.g. after a calibration period); earlier beats still feed the RR features and the "
                   "template (default: 0)")
    return p


# ----------------------------------------------------------------------------------------------
# Signal and beat positions
# ----------------------------------------------------------------------------------------------

def local_peaks(sig: np.ndarray, radius: int) -> np.ndarray:
    """wfdb.processing.peaks.find_local_peaks, vectorised: the same peaks, about 18x faster (XQRS's
    two calls on record 100: 0.055 s each against 0.93-1.10 s).

    wfdb scans sample by sample: i is a peak when sig[i] equals the maximum of
    sig[max(0, i - radius) : i + radius]; after a peak it jumps `radius` samples ahead. Here every
    sample's window maximum comes from one sliding-window view, and only the candidates (samples
    equal to their window maximum) are scanned for the jump. XQRS spends ~95 % of its time in
    wfdb's loop (record 100: ~2 of its 2.2 s); tests compare the two on real signals."""
    sig = np.asarray(sig)
    if sig.size == 0 or np.min(sig) == np.max(sig):
        return np.empty(0)
    pad = np.full(radius, -np.inf)
    padded = np.concatenate([pad, sig.astype(np.float64), pad])
    win = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius)[:len(sig)]  # row i: [i - r, i + r)
    candidates = np.flatnonzero(sig == win.max(1)).tolist()
    peaks, next_free = [], -1
    for c in candidates:  # the scan's jump: a peak makes the next `radius - 1` samples ineligible
        if c >= next_free:
            peaks.append(c)
            next_free = c + radius
    return np.array(peaks)


def detect_beats(sig: np.ndarray, fs: int) -> np.ndarray:
    """R peaks by wfdb.processing XQRS (its own filtering; on record 100 within 1 sample of the
    reference positions), with its local-peak search replaced by `local_peaks` (same peaks).
    -> sorted int64 samples."""
    from wfdb import processing
    from wfdb.processing import qrs
    slow, qrs.find_local_peaks = qrs.find_local_peaks, local_peaks
    try:
        found = processing.xqrs_detect(sig=sig, fs=fs, verbose=False)
    except Exception as e:
        raise DataError(f"XQRS beat detection failed ({type(e).__name__}: {e})") from None
    finally:
        qrs.find_local_peaks = slow
    return np.unique(np.asarray(found, dtype=np.int64))


# ----------------------------------------------------------------------------------------------
# Model input and inference
# ----------------------------------------------------------------------------------------------

class CheckpointModel:
    """A final trainer.py checkpoint on torch, with deploy.OnnxModel's interface (name, preproc,
    class_names, rr_dim, classify). torch is imported here, not at the top of this file: an
    .onnx model never loads it."""

    def __init__(self, path: str | os.PathLike, device: str, log=print):
        try:
            from checkpoint import Checkpoint
        except ImportError as e:  # torch missing (a deployment with onnxruntime only)
            raise UsageError(f"{path} is a torch checkpoint and torch cannot be imported here ({e}): install "
                             "it, or run the .onnx file export.py makes from it") from None
        ckpt = Checkpoint.load(path)
        ckpt.require_final(path)  # before the device message: fail first
        self.device = resolve_device(device, log)
        self.model = ckpt.build_model(self.device, path)
        self.name, self.preproc, self.rr_dim = ckpt.model_name, ckpt.preproc, ckpt.rr_dim
        self.class_names = list(ckpt.class_names)

    def classify(self, x: np.ndarray, tm: np.ndarray | None, rr: np.ndarray, batch_size: int = 1024
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Class index (N,) and probabilities (N, C) through engine.predict (the test code path)."""
        from dataset import BeatTensors
        from engine import predict
        pred, prob, _ = predict(self.model, BeatTensors.from_arrays(x, tm, rr, device=self.device),
                                batch_size, self.rr_dim > 0)
        return pred, prob


def load_model(path: str | os.PathLike, device: str = "cpu", log=print):
    """An .onnx file -> deploy.OnnxModel (onnxruntime); anything else is read as a checkpoint."""
    if Path(path).suffix.lower() == ".onnx":
        from deploy import OnnxModel
        if device == "cuda":
            log("an .onnx model runs on onnxruntime's CPU provider here: --device cuda ignored")
        return OnnxModel(path)
    return CheckpointModel(path, device, log)


# ----------------------------------------------------------------------------------------------
# Comparison with the reference
# ----------------------------------------------------------------------------------------------

def match_beats(ref: np.ndarray, test: np.ndarray, tol: int) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairing of sorted sample arrays within `tol` samples, closest pairs first.
    -> (ref index, test index) of the pairs, ordered by reference beat."""
    # candidate pairs: every test beat within tol of a reference beat (a handful per beat)
    lo = np.searchsorted(test, ref - tol, side="left")
    hi = np.searchsorted(test, ref + tol, side="right")
    ri = np.repeat(np.arange(len(ref)), hi - lo)
    ti = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(ref) else np.zeros(0, np.int64)
    ti = ti.astype(np.int64)
    order = np.lexsort((ri, np.abs(ref[ri] - test[ti])))  # by distance, ties by reference order
    used_r, used_t, pairs = np.zeros(len(ref), bool), np.zeros(len(test), bool), []
    for k in order:
        r, t = ri[k], ti[k]
        if not used_r[r] and not used_t[t]:
            used_r[r] = used_t[t] = True
            pairs.append((r, t))
    pairs.sort()
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return p[:, 0], p[:, 1]


def compare(ref_samp: np.ndarray, ref_sym: np.ndarray, samples: np.ndarray, pred: np.ndarray,
            cfg: PreprocConfig, class_names: list[str]) -> dict:
    """Beat-by-beat comparison with the reference: paired labels, confusion, metrics, EC57."""
    table = LABEL_SCHEMES[cfg.classes]
    known = np.array([s in table for s in ref_sym], bool)   # every beat symbol, for both schemes
    ref_samp, ref_sym = ref_samp[known], ref_sym[known]
    ri, ti = match_beats(ref_samp, samples, int(round(MATCH_WINDOW_S * cfg.fs)))
    y_true = np.array([table[s] for s in ref_sym[ri]], dtype=np.int64)
    y_pred = pred[ti]
    out = {"matched": int(len(ri)), "missed": int(len(ref_samp) - len(ri)), "extra": int(len(samples) - len(ti)),
           "ref_index": ri, "pred_index": ti, "y_true": y_true, "y_pred": y_pred,
           "missed_by_class": np.bincount(np.array([table[s] for s in np.delete(ref_sym, ri)], dtype=np.int64),
                                          minlength=len(class_names)).tolist(),
           "extra_by_class": np.bincount(np.delete(pred, ti), minlength=len(class_names)).tolist()}
    if len(ri):
        out["metrics"] = classification_metrics(y_true, y_pred, class_names)
        out["ec57"] = ec57_stats(y_true, y_pred, class_names)
    return out


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def format_comparison(c: dict, class_names: list[str]) -> list[str]:
    """The printed comparison: confusion table (rows reference, columns predicted, bxb-style
    'missed' column and 'extra' row), then accuracy / F1 and the EC57 gross statistics."""
    lines = [f"beat-by-beat vs reference (match window {MATCH_WINDOW_S * 1000:.0f} ms): "
             f"{c['matched']} paired, {c['missed']} reference beats missed, {c['extra']} extra beats"]
    if not c["matched"]:
        return lines + ["no beat could be paired with the reference: no class statistics"]
    cm = np.asarray(c["metrics"]["confusion_matrix"]["matrix"])
    w = max(7, *(len(n) + 1 for n in class_names))
    head = "ref \\ pred".ljust(11) + "".join(n.rjust(w) for n in class_names) + "missed".rjust(w)
    lines += ["confusion (rows = reference, columns = predicted):", head]
    for k, n in enumerate(class_names):
        lines.append(n.ljust(11) + "".join(str(v).rjust(w) for v in cm[k]) + str(c["missed_by_class"][k]).rjust(w))
    lines.append("extra".ljust(11) + "".join(str(v).rjust(w) for v in c["extra_by_class"]))
    m = c["metrics"]
    lines.append(f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  weighted-F1 {m['weighted_f1']:.4f}")
    g, stats = c["ec57"]["gross"], ("Se", "+P", "FPR", "Acc")
    lines.append(f"EC57 gross statistics ({c['ec57']['convention']}):")
    lines.append("  class".ljust(11) + "".join(s.rjust(8) for s in stats))
    for n in class_names:
        lines.append(f"  {n}".ljust(11) + "".join(_fmt(g[n][s]).rjust(8) for s in stats))
    return lines


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------

def write_annotations(out_dir: Path, rec: str, ext: str, samples: np.ndarray, symbols: list[str], fs: int) -> Path:
    """RECORD.<ext> in MIT format (wfdbio.annotation_bytes: what wfdb.wrann writes), atomically."""
    dest = out_dir / f"{rec}.{ext}"
    data = annotation_bytes(samples, symbols, fs)
    atomic_write(dest, lambda f: f.write(data))
    return dest


def write_csv(path: Path, samples, fs: int, labels, symbols, edge, prob, class_names) -> None:
    head = ["sample", "time_s", "label", "symbol", "edge_padded"] + [f"p_{n}" for n in class_names]
    rows = [",".join(head)]
    for s, l, y, e, p in zip(samples.tolist(), labels, symbols, edge.tolist(), prob.tolist()):
        rows.append(f"{s},{s / fs:.4f},{l},{y},{int(e)}," + ",".join(f"{v:.6f}" for v in p))
    atomic_write(path, lambda f: f.write(("\n".join(rows) + "\n").encode()))


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------

def _split_record_path(path: str) -> tuple[Path, str]:
    p = Path(path)
    if p.suffix in (".hea", ".dat", ".atr"):  # forgive a path given with its extension
        p = p.with_suffix("")
    return p.parent, p.name


def predict_record(model_path: str | os.PathLike, record_path: str, out_dir: str | os.PathLike = "data/predictions",
                   out_ext: str = "pred", device: str = "cpu", detect: bool = False, batch_size: int = 1024,
                   log=print, start: float = 0.0) -> dict:
    """Label every beat of a record with a checkpoint or an .onnx file -> dict(samples, pred, prob,
    labels, edge_padded, source, lead, comparison (or None), annotation, csv). Raises UsageError /
    DataError (one line)."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", out_ext):
        raise UsageError(f"--out-ext must be letters, digits or _, got {out_ext!r}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if not (start >= 0 and np.isfinite(start)):
        raise UsageError(f"--start must be a number of seconds >= 0, got {start}")
    model = load_model(model_path, device, log)
    cfg = model.preproc
    cfg.validate()
    names = model.class_names
    root, rec = _split_record_path(record_path)
    if not (root / f"{rec}.hea").is_file():
        raise DataError(f"record {root / rec} not found (no {rec}.hea in {root})")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --out-dir {out} ({e.strerror or e})") from None
    if (out / f"{rec}.{out_ext}").resolve() == (root / f"{rec}.atr").resolve():
        raise UsageError(f"--out-ext {out_ext} in {out} would overwrite the reference annotations")

    has_ref = (root / f"{rec}.atr").is_file()
    ref = None
    if has_ref:
        sig, ref_samp, ref_sym, lead = read_record(root, rec, cfg)  # beat annotations only
        ref = (ref_samp, ref_sym)
    else:
        sig, lead = read_signal(root, rec, cfg)
        log(f"record {rec} has no reference annotations ({rec}.atr): detecting beats with wfdb.processing XQRS")
    if has_ref and not detect:
        samples, source = ref[0], "reference"
    else:
        if detect and has_ref:
            log(f"--detect: finding beats with wfdb.processing XQRS and matching them to {rec}.atr")
        samples, source = detect_beats(sig if sig.ndim == 1 else sig[0], cfg.fs), "xqrs"  # on the policy's lead
    if len(samples) == 0:
        raise DataError(f"record {rec}: no beats {'annotated' if source == 'reference' else 'detected'}")

    filt = filtered_signal(sig, cfg)
    x, tm, rr, _ = beat_inputs(filt, samples, cfg, pad_edges=True)  # every beat gets a window
    edge = ~windows_inside(samples, filt.shape[-1], cfg.window)     # the windows training would drop
    if model.rr_dim and rr.shape[1] != model.rr_dim:
        raise UsageError(f"the model expects {model.rr_dim} RR features, the pipeline gives {rr.shape[1]}")
    pred, prob = model.classify(x, tm, rr, batch_size)
    if start:  # the beats before `start` fed the features of later ones; they get no label here
        later = samples >= round(start * cfg.fs)
        if not later.any():
            raise UsageError(f"--start {start:g} s is after the record's last beat ({samples[-1] / cfg.fs:.0f} s)")
        samples, pred, prob, edge = samples[later], pred[later], prob[later], edge[later]
        if ref is not None:
            keep = ref[0] >= round(start * cfg.fs)
            ref = (ref[0][keep], ref[1][keep])
        log(f"labelling the {int(later.sum())} beats from {start:g} s on ({int((~later).sum())} earlier beats only "
            "feed the features)")
    labels = [names[k] for k in pred]
    symbols = [CLASS_SYMBOL.get(n, "Q") for n in labels]
    log(f"record {rec}: {len(samples)} beats ({source} positions), lead {lead}, {model.name} "
        f"{cfg.classes} at {cfg.fs} Hz; {int(edge.sum())} beat(s) near the record ends classified on "
        f"an edge-padded window")

    ann = write_annotations(out, rec, out_ext, samples, symbols, cfg.fs)
    csv = out / f"{rec}.{out_ext}.csv"
    write_csv(csv, samples, cfg.fs, labels, symbols, edge, prob, names)
    counts = np.bincount(pred, minlength=len(names))
    log("predicted: " + "  ".join(f"{n} {c}" for n, c in zip(names, counts)))
    log(f"wrote {ann} and {csv}")

    comparison = None
    if ref is not None:
        comparison = compare(ref[0], ref[1], samples, pred, cfg, names)
        for line in format_comparison(comparison, names):
            log(line)
    return {"record": rec, "samples": samples, "pred": pred, "prob": prob, "labels": labels,
            "symbols": symbols, "edge_padded": edge, "source": source, "lead": lead,
            "class_names": names, "comparison": comparison, "annotation": ann, "csv": csv}


def main(argv: list[str] | None = None) -> int:
    """CLI entry: one line on stderr and exit 2 for every user error."""
    def body() -> int:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        predict_record(args.model, args.record, args.out_dir, args.out_ext, args.device,
                       args.detect, args.batch_size, start=args.start)
        return 0
    return run_cli("predict.py", body)


if __name__ == "__main__":
    sys.exit(main())
