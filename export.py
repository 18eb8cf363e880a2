"""Export a trained checkpoint for deployment: ONNX (float or int8) or TorchScript, from the .pt alone.

    python export.py data/records/ecg_lightweight_liteecgnet_<stamp>.pt          # -> <stamp>.onnx
    python export.py CKPT --int8                   # -> <stamp>.int8.onnx (or --out FILE)
    python export.py CKPT --format torchscript     # -> <stamp>.ts (libtorch, C++)

ONNX (run by onnxruntime on CPUs, phones, browsers and edge accelerators) takes a dynamic batch
of windows x (B, C, T) [and per-beat features rr (B, F)] and returns logits (B, classes). Its
`metadata_props["liteecg.json"]` holds the input contract and the preprocessing that rebuilds
the inputs from a record, so `predict.py MODEL.onnx RECORD` runs it without torch (deploy.py).

One file is written, the one asked for (--out names it). Before it is kept, the float graph is
checked against the checkpoint: the logits within |d| <= 1e-4 + 1e-4 |logit| of the eager
model's and the same class on every beat of the checkpoint's own test part when its records are
there (the run's --root, or --root; `--check` requires it), otherwise on the calibration beats the
checkpoint keeps and random windows, with a note.

--int8: post-training static quantization (onnxruntime.quantization, QDQ, int8 weights per
channel, uint8 activations, min/max calibration) on the few training beats of every class that
the checkpoint keeps (trainer.py stores them; older checkpoints rebuild the same draw from their
training part), never the test part. Float and int8 are compared side by side (file size,
batch-1 one-thread latency, and with the data the test macro-F1 / S F1 / V F1), and the figures
go to <out stem>.export.json beside the file.

--format torchscript keeps the traced + frozen form of `profiling.to_torchscript` (liteecg.json in
its extra files): it is the form the reports' latency measures and what a C++ program links
against libtorch loads. torch 2.13 marks TorchScript deprecated; ONNX is the portable default.

The ONNX graph comes from torch's TorchScript-based exporter (dynamo=False): the torch.export-based
one also exports all seven models, but needs onnxscript, takes 2-9 s instead of 0.1-1 s per model
and writes larger files (unfolded constants) here.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from beats import RR_FEATURES
from checkpoint import Checkpoint, calibration_beats
from cli import CliParser, DataError, OutputError, UsageError, log, run_cli
from deploy import INPUT_NAMES, META_KEY, ONNX_FORMAT, ONNX_VERSION, OUTPUT_NAME, OnnxModel
from metrics import classification_metrics, key_class_stats
from profiling import check_outputs, measure_latency, to_torchscript
from options import check_writable, saved_run
from report import versions, write_json
from utils import atomic_write, stack_inputs

TS_FORMAT, TS_VERSION = "liteecg-torchscript", 1
OPSET = 17
ATOL = RTOL = 1e-4  # ONNX float vs eager logits: BN folded by onnxruntime, other summation order


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="export.py", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="final .pt checkpoint written by trainer.py (or calibrate.py)")
    p.add_argument("--format", default="onnx", choices=("onnx", "torchscript"), help="file format (default: onnx)")
    p.add_argument("--int8", action="store_true", help="quantize to int8 (ONNX), calibrated on training beats the "
                   "checkpoint keeps (default: off: float32)")
    p.add_argument("--out", help="the file to write (default: the checkpoint's path with .onnx, .int8.onnx or .ts)")
    p.add_argument("--root", help="MIT-BIH folder for the test-part check (default: the checkpoint's --root)")
    p.add_argument("--check", action="store_true", help="require the test-part check: fail when the records are "
                   "not there (default: check when they are, else skip it with a note)")
    p.add_argument("--runs", type=int, default=300,
                   help="timed batch-1 calls per latency figure, 0 = do not time (default: 300)")
    return p


def export_metadata(ckpt: Checkpoint, checkpoint: str, fmt: str = ONNX_FORMAT, version: int = ONNX_VERSION) -> dict:
    """What a deployment needs to know to feed the exported model (liteecg.json)."""
    cfg = ckpt.preproc
    return {
        "format": fmt, "version": version, "model": ckpt.model_name, "members": ckpt.members,
        "checkpoint": Path(checkpoint).name, "class_names": list(ckpt.class_names),
        "input": {"shape": [None, cfg.channels, cfg.window], "dtype": "float32", "fs": cfg.fs,
                  "window_samples": cfg.window, "r_peak_at": cfg.window // 2,
                  "bandpass_hz": list(cfg.band), "bandpass": f"Butterworth order {cfg.filter_order}, "
                  "applied forwards and backwards (zero phase) to the whole record",
                  "normalize": ("channel 0 the beat, channel 1 the median of the record's previous "
                                f"{cfg.template_beats} beat windows (recomputed every {cfg.template_every} "
                                "beats), both minus the template's mean and divided by its std "
                                "(features.running_template, features.relative_scale)")
                  if cfg.template else cfg.normalize + " per window"},
        "rr": {"shape": [None, ckpt.rr_dim], "set": cfg.rr_features,
               "features": list(RR_FEATURES[cfg.rr_features].values()),
               "standardised_inside_the_model": ckpt.rr_norm} if ckpt.rr_dim else None,
        "output": "logits (B, classes); argmax is the class, softmax its probability"
                  + (f" (the mean of {ckpt.members} models' probabilities)" if ckpt.members > 1 else ""),
        "preprocessing": cfg.to_dict(), "quantization": None, "torch": str(torch.__version__),
    }


# ----------------------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------------------

def onnx_bytes(model: torch.nn.Module, channels: int, window: int, rr_dim: int) -> bytes:
    """The eval-mode model as an ONNX graph with a dynamic batch dimension."""
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(2, channels, window, generator=g),) + ((torch.rand(2, rr_dim, generator=g),) if rr_dim else ())
    names = list(INPUT_NAMES[:len(args)])
    buf = io.BytesIO()
    # Grad mode on: the models' inference shortcut (BN folded in Python, cached) would be traced as
    # constants beside the weights; the plain conv -> BN graph keeps one copy of each weight as an
    # initializer, which onnxruntime folds and the int8 quantizer can quantize.
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
        torch.onnx.export(model.eval(), args, buf, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=[OUTPUT_NAME], do_constant_folding=True,
                          dynamic_axes={n: {0: "batch"} for n in [*names, OUTPUT_NAME]})
    return compact_names(buf.getvalue())


def compact_names(model_bytes: bytes) -> bytes:
    """The same graph with short tensor and node names (t0, t1, ...; n0, n1, ...) and no
    value_info: the exporter's and the quantizer's names ("/blocks/blocks.2/conv/Mul_output_0")
    are a quarter of a small model's file. The inputs and outputs keep their names."""
    import onnx
    m = onnx.load_from_string(model_bytes)
    g = m.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    new: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return new.setdefault(name, f"t{len(new)}")

    for init in g.initializer:
        init.name = short(init.name)
    for k, node in enumerate(g.node):
        node.name, node.doc_string = f"n{k}", ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del g.value_info[:]
    return m.SerializeToString()


def with_metadata(model_bytes: bytes, meta: dict) -> bytes:
    """The ONNX bytes with liteecg.json in metadata_props (replacing any earlier one)."""
    import onnx
    m = onnx.load_from_string(model_bytes)
    keep = [p for p in m.metadata_props if p.key != META_KEY]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    m.metadata_props.add(key=META_KEY, value=json.dumps(meta, indent=1))
    m.producer_name = "LiteECG export.py"
    return m.SerializeToString()


def quantize_int8(float_bytes: bytes, x: np.ndarray, rr: np.ndarray | None) -> bytes:
    """Static int8 quantization (QDQ), calibrated on the given inputs (training beats).

    The quantizer's graph optimisation is skipped: it would multiply liteecgnet's factorised
    kernels (pw[o, i] * dw[i, t], how the model stores them) out into dense ones, about 3.5x the
    int8 weights; kept factorised, onnxruntime composes them per call (a few microseconds)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(range(0, len(x), 64))

        def get_next(self):
            a = next(self.batches, None)
            if a is None:
                return None
            feed = {"x": x[a:a + 64]}
            if rr is not None:
                feed["rr"] = rr[a:a + 64]
            return feed

    with tempfile.TemporaryDirectory(prefix="liteecg-int8-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(float_bytes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)  # the quantizer logs notes (e.g. 1-D weights) on the root logger
            try:
                quant_pre_process(str(src), str(pre), skip_optimization=True, skip_symbolic_shape=True)
                quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                                calibrate_method=CalibrationMethod.MinMax)
            finally:
                logging.disable(logging.NOTSET)
        return compact_names(dst.read_bytes())


# ----------------------------------------------------------------------------------------------
# The checkpoint's own data: calibration beats (kept in it) and its test part (for the check)
# ----------------------------------------------------------------------------------------------

def records_present(cfg) -> bool:
    """Whether every record the checkpoint's split needs is under its root (nothing is downloaded)."""
    from dataset import records_for
    recs = records_for(cfg.split, cfg.data_kwargs()["explicit"])
    return all((Path(cfg.root) / f"{r}.{ext}").is_file() for r in recs for ext in ("hea", "dat", "atr"))


def checkpoint_data(ckpt: Checkpoint, cfg):
    """The checkpoint's data and split, rebuilt from its run configuration as evaluate.py does."""
    from dataset import load_split
    return load_split(cfg.root, ckpt.preproc, cfg.split, cfg.seed, log=lambda m: None,
                      **{**cfg.data_kwargs(), "download": False})


def calibration_inputs(ckpt: Checkpoint, cfg, loaded, log=log) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """--int8's calibration beats: those the checkpoint keeps (a few of every class of its training
    part), or for an older checkpoint the same draw from its rebuilt training part. Never the test part."""
    if ckpt.calibration:
        c = ckpt.calibration
        x = c["x"].float().numpy()
        rr = c["rr"].numpy() if ckpt.rr_dim else None
        return x, rr, {"part": "train", "beats": int(len(x)), "records": c["records"], "source": "checkpoint"}
    if loaded is None:
        raise UsageError("--int8 calibrates on training beats: this checkpoint keeps none (it predates them), and "
                         f"its records are not under {cfg.root if cfg else 'its --root'}: give --root")
    data, splits = loaded
    x, rr, _, records = calibration_beats(data, splits.train, cfg.seed)
    return x, (rr if ckpt.rr_dim else None), {"part": "train", "beats": int(len(x)), "records": records,
                                              "source": "rebuilt training part"}


def eager_logits(model: torch.nn.Module, x: np.ndarray, rr: np.ndarray | None, batch: int = 1024) -> np.ndarray:
    out = []
    with torch.no_grad():
        for a in range(0, len(x), batch):
            args = (torch.from_numpy(x[a:a + batch]),) + ((torch.from_numpy(rr[a:a + batch]),) if rr is not None else ())
            out.append(model(*args).numpy())
    return np.concatenate(out)


def check_against(got: np.ndarray, want: np.ndarray, what: str) -> dict:
    """Refuse (OutputError) unless the file's logits `got` match the eager model's `want` on every beat."""
    diff = np.abs(got - want)
    worst = float(diff.max()) if diff.size else 0.0
    if not np.all(diff <= ATOL + RTOL * np.abs(want)):
        raise OutputError(f"{what} differs from the checkpoint's model by up to {worst:.2e} in the logits; not written")
    flips = int((got.argmax(1) != want.argmax(1)).sum())
    if flips:
        raise OutputError(f"{what} changes the predicted class of {flips} beat(s); not written")
    return {"beats": int(len(got)), "max_abs_logit_diff": worst, "argmax_identical": True}


def test_scores(pred: np.ndarray, y: np.ndarray, names: list[str]) -> dict:
    """Macro-F1 and the S / V F1 of predictions on the test part."""
    k = key_class_stats(y, pred, names)
    return {"macro_f1": classification_metrics(y, pred, names)["macro_f1"],
            "S_F1": k["S"]["F1"] if "S" in k else None, "V_F1": k["V"]["F1"] if "V" in k else None}


def export_onnx(checkpoint: str, out: Path, int8: bool, runs: int, root: str | None = None, check: bool = False,
                log=log) -> dict:
    """Write one ONNX file, float or (int8) quantized, at `out`, checked against the checkpoint;
    -> the export record (also written, <out stem>.export.json).

    The float graph is always built and checked: on the checkpoint's test part when its records are
    under its root (or --root), which `check` requires; otherwise on its calibration beats and
    random windows, with a note. An int8 file is calibrated on training beats only."""
    ckpt = Checkpoint.load(checkpoint)
    ckpt.require_final(checkpoint)
    model = ckpt.build_model("cpu", checkpoint)
    pre = ckpt.preproc
    cfg = saved_run(ckpt.args, checkpoint, root) if ckpt.args else None  # None: no run to rebuild the data of
    have_data = cfg is not None and records_present(cfg)
    if check and not have_data:
        raise DataError(f"--check needs the checkpoint's test part, but its records are not under "
                        f"{cfg.root if cfg else '--root'}: give --root" if cfg else
                        f"--check needs the checkpoint's test part, but {checkpoint} holds no run configuration")
    loaded = checkpoint_data(ckpt, cfg) if have_data else None
    meta = export_metadata(ckpt, checkpoint)
    float_bytes = with_metadata(onnx_bytes(model, pre.channels, pre.window, ckpt.rr_dim), meta)
    flt = OnnxModel(float_bytes, name=str(out))
    if loaded is not None:
        data, splits = loaded
        x = stack_inputs(data.x[splits.test], None if data.tm is None else data.tm[splits.test])
        rr, y = (data.rr[splits.test] if ckpt.rr_dim else None), data.y[splits.test]
        inputs = f"the {len(y)} beats of its test part ({cfg.split})"
    else:  # no data: real beats the checkpoint keeps, and random windows of the preprocessing's shapes
        g = np.random.default_rng(1)
        x = g.standard_normal((64, pre.channels, pre.window)).astype(np.float32)
        rr = g.random((64, ckpt.rr_dim)).astype(np.float32) if ckpt.rr_dim else None
        if ckpt.calibration:
            x = np.concatenate([ckpt.calibration["x"].float().numpy(), x])
            rr = None if rr is None else np.concatenate([ckpt.calibration["rr"].numpy(), rr])
        y, inputs = None, f"{len(x)} beats: the checkpoint's calibration beats and random windows"
        log(f"note: the test-part check is skipped: the checkpoint's records are not under "
            f"{cfg.root if cfg else 'its --root'} (give --root, or --check to require it); checking on {inputs}")
    eager, got = eager_logits(model, x, rr), flt.logits(x, rr)
    check_rec = {**check_against(got, eager, f"the ONNX export of {checkpoint}"), "inputs": inputs}
    record = {"model": ckpt.model_name, "checkpoint": str(checkpoint), "versions": versions(), "file": str(out),
              "format": "onnx-int8" if int8 else "onnx-float",
              "float": {"bytes": len(float_bytes), "check": check_rec}}
    data_bytes = float_bytes
    quantized = None
    if int8:
        cx, crr, calib = calibration_inputs(ckpt, cfg, loaded, log)
        q_meta = {**meta, "quantization": {"method": "onnxruntime static QDQ: int8 weights per channel, uint8 "
                                           "activations, min/max calibration", "calibration": calib}}
        data_bytes = with_metadata(quantize_int8(float_bytes, cx, crr), q_meta)
        quantized = OnnxModel(data_bytes, name=str(out))
        agree = float((quantized.logits(x, rr).argmax(1) == got.argmax(1)).mean())
        record["int8"] = {"bytes": len(data_bytes), "calibration": calib, "same_class_as_float": agree}
    atomic_write(out, lambda f: f.write(data_bytes))
    log(f"wrote {out} ({len(data_bytes) / 1024:.1f} KiB, {'int8' if int8 else 'float32'}, {ckpt.model_name}, "
        f"{pre.window}-sample windows x {pre.channels} channel(s){', with RR features' if ckpt.rr_dim else ''}); "
        f"float graph within {check_rec['max_abs_logit_diff']:.1e} of the checkpoint's logits, same class, on "
        f"{inputs}" + (f"; int8 gives the float's class on {record['int8']['same_class_as_float']:.1%} of them, "
                       f"calibrated on {record['int8']['calibration']['beats']} training beats" if int8 else ""))
    if y is not None:  # accuracy on the checkpoint's test part, side by side
        names = list(ckpt.class_names)
        record["test"] = {"split": cfg.split, "beats": int(len(y)), "eager": test_scores(eager.argmax(1), y, names),
                          "float": test_scores(got.argmax(1), y, names)}
        if quantized is not None:
            record["test"]["int8"] = test_scores(quantized.logits(x, rr).argmax(1), y, names)
    if runs:
        with tempfile.TemporaryDirectory(prefix="liteecg-export-") as tmp:  # latency of the files as written
            files = {"float": Path(tmp) / "float.onnx"}
            files["float"].write_bytes(float_bytes)
            if int8:
                files["int8"] = out
            record["latency_ms"] = {"eager": measure_latency(model, pre.window, threads=1, runs=runs,
                                                             rr_dim=ckpt.rr_dim)["median_ms"],
                                    **{k: OnnxModel(f, threads=1).latency_ms(runs) for k, f in files.items()},
                                    "note": f"batch 1, one thread, median of {runs} calls"}
    for line in comparison_table(record):
        log(line)
    rec_path = sibling(out, ".export", ".json")
    write_json(record, rec_path)
    log(f"wrote {rec_path}")
    return record


def sibling(out: Path, tag: str, suffix: str) -> Path:
    """A file beside `out` named after it: lite.onnx -> lite<tag><suffix> (lite.int8.onnx)."""
    return out.with_name((out.stem if out.suffix else out.name) + tag + suffix)


def comparison_table(record: dict) -> list[str]:
    """Float / int8 (and eager) side by side: size, latency, test scores."""
    forms = [k for k in ("eager", "float", "int8")
             if k in record or k in record.get("latency_ms", {}) or k in record.get("test", {})]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = ["| form | file KiB | latency ms | macro-F1 | S F1 | V F1 |", "|---|---:|---:|---:|---:|---:|"]
    for k in forms:
        size = record[k]["bytes"] / 1024 if k in record else None
        lat = record.get("latency_ms", {}).get(k)
        t = record.get("test", {}).get(k, {})
        lines.append(f"| {'torch eager' if k == 'eager' else 'ONNX ' + k} | {fmt(size, '.1f')} | {fmt(lat, '.3f')} | "
                     f"{fmt(t.get('macro_f1'), '.4f')} | {fmt(t.get('S_F1'), '.4f')} | {fmt(t.get('V_F1'), '.4f')} |")
    return lines


# ----------------------------------------------------------------------------------------------
# TorchScript
# ----------------------------------------------------------------------------------------------

def export_torchscript(checkpoint: str, out: Path, runs: int, log=log) -> Path:
    """Write the checkpoint's model as TorchScript with liteecg.json inside -> the file's path."""
    ckpt = Checkpoint.load(checkpoint)
    ckpt.require_final(checkpoint)
    model = ckpt.build_model("cpu", checkpoint)
    meta = export_metadata(ckpt, checkpoint, TS_FORMAT, TS_VERSION)
    window, rr_dim = meta["input"]["window_samples"], ckpt.rr_dim
    traced = to_torchscript(model, window, rr_dim)  # raises if it differs from the eager model
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={"liteecg.json": json.dumps(meta, indent=1)})
    atomic_write(out, lambda f: f.write(buf.getvalue()))
    loaded = torch.jit.load(str(out))
    check_outputs(loaded, model, window, rr_dim, what=f"the written file {out}")
    log(f"wrote {out} ({ckpt.model_name}, {window}-sample windows"
        f"{', with RR features' if rr_dim else ''}; checked against the checkpoint)")
    if runs:
        eager = measure_latency(model, window, threads=1, runs=runs, rr_dim=rr_dim)["median_ms"]
        exported = measure_latency(loaded, window, threads=1, runs=runs, rr_dim=rr_dim,
                                   in_channels=ckpt.in_channels)["median_ms"]
        log(f"latency b=1, 1 thread, median of {runs}: eager {eager:.3f} ms, exported {exported:.3f} ms")
    return out


def default_out(checkpoint: str, fmt: str, int8: bool) -> Path:
    """The checkpoint's path with .onnx, .int8.onnx or .ts."""
    return Path(checkpoint).with_suffix(".ts" if fmt == "torchscript" else ".int8.onnx" if int8 else ".onnx")


def export(checkpoint: str, out: str | None = None, runs: int = 300, fmt: str = "onnx", int8: bool = False,
           root: str | None = None, check: bool = False, log=log) -> Path:
    """Check the arguments, then write the one file asked for -> its path."""
    if runs < 0 or runs == 1:
        raise UsageError(f"--runs must be 0 or >= 2, got {runs}")
    if int8 and fmt != "onnx":
        raise UsageError("--int8 is an ONNX option: use it with --format onnx")
    if check and fmt != "onnx":
        raise UsageError("--check compares an ONNX file on the test part: use it with --format onnx")
    Checkpoint.load(checkpoint).require_final(checkpoint)  # the checkpoint's own problem first
    out_path = Path(out) if out else default_out(checkpoint, fmt, int8)
    if out_path.is_dir():
        raise UsageError(f"--out {out_path} is a folder; give a file name")
    if not out_path.parent.is_dir():
        raise UsageError(f"folder {out_path.parent} does not exist")
    if out_path.resolve() == Path(checkpoint).resolve():
        raise UsageError(f"--out {out_path} would overwrite the checkpoint")
    check_writable(out_path.parent, "--out's folder")
    if fmt == "torchscript":
        return export_torchscript(checkpoint, out_path, runs, log)
    export_onnx(checkpoint, out_path, int8, runs, root, check, log)
    return out_path


def main(argv: list[str] | None = None) -> int:
    """CLI entry: one line on stderr and exit 2 for every user error."""
    def body() -> int:
        a = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        export(a.checkpoint, a.out, a.runs, a.format, a.int8, a.root, a.check)
        return 0
    return run_cli("export.py", body)


if __name__ == "__main__":
    sys.exit(main())
