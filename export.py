"""Export a trained checkpoint as a deployable TorchScript file, with its preprocessing inside.

    python export.py data/records/ecg_lightweight_liteecgnet_<stamp>.pt
    python export.py CKPT --out liteecgnet.ts --runs 500

The file is the traced + frozen form of `profiling.to_torchscript` and runs without this
repository:

    meta = {"liteecg.json": ""}
    m = torch.jit.load("liteecgnet.ts", _extra_files=meta)   # meta now holds the JSON text
    logits = m(x)          # x: (B, C, T) float32 windows (C = 2 with the template channel);
                           # m(x, rr) with (B, F) per-beat features if trained with --rr

`liteecg.json` says what the windows must be: sampling rate, window length T, band-pass,
per-window normalisation, class names, RR feature layout. Only windows of exactly T samples are
served (the trace fixes the shape). Before the file is written the export's outputs are checked
against the checkpoint's model, and after it is written it is loaded back and checked again.
Prints the batch-1 latency on one thread of the eager model and of the exported file.
(torch 2.13 marks TorchScript deprecated in favour of torch.export; `profiling.to_torchscript`
says why this form stays for now.)
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import torch

from beats import RR_FEATURES
from checkpoint import Checkpoint
from cli import CliParser, UsageError, run_cli
from profiling import check_outputs, measure_latency, to_torchscript
from utils import atomic_write

EXPORT_FORMAT, EXPORT_VERSION = "liteecg-torchscript", 1


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="export.py", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="final .pt checkpoint written by trainer.py")
    p.add_argument("--out", help="output file (default: the checkpoint's path with .ts)")
    p.add_argument("--runs", type=int, default=300,
                   help="timed batch-1 calls per latency figure, 0 = do not time (default: 300)")
    return p


def export_metadata(ckpt: Checkpoint, checkpoint: str) -> dict:
    """What a deployment needs to know to feed the exported model (stored as liteecg.json)."""
    cfg = ckpt.preproc
    return {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "model": ckpt.model_name,
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
        "output": "logits (B, classes); argmax is the class, softmax its probability",
        "preprocessing": cfg.to_dict(), "torch": str(torch.__version__),
    }


def export(checkpoint: str, out: str | None = None, runs: int = 300, log=print) -> Path:
    """Write the checkpoint's model as TorchScript with liteecg.json inside -> the file's path."""
    if runs < 0 or runs == 1:
        raise UsageError(f"--runs must be 0 or >= 2, got {runs}")
    ckpt = Checkpoint.load(checkpoint)
    model = ckpt.build_model("cpu", checkpoint)
    out_path = Path(out) if out else Path(checkpoint).with_suffix(".ts")
    if out_path.is_dir():
        raise UsageError(f"--out {out_path} is a folder; give a file name")
    if not out_path.parent.is_dir():
        raise UsageError(f"folder {out_path.parent} does not exist")
    meta = export_metadata(ckpt, checkpoint)
    window, rr_dim = meta["input"]["window_samples"], ckpt.rr_dim
    traced = to_torchscript(model, window, rr_dim)  # raises if it differs from the eager model
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={"liteecg.json": json.dumps(meta, indent=1)})
    atomic_write(out_path, lambda f: f.write(buf.getvalue()))
    loaded = torch.jit.load(str(out_path))
    check_outputs(loaded, model, window, rr_dim, what=f"the written file {out_path}")
    log(f"wrote {out_path} ({ckpt.model_name}, {window}-sample windows"
        f"{', with RR features' if rr_dim else ''}; checked against the checkpoint)")
    if runs:
        eager = measure_latency(model, window, threads=1, runs=runs, rr_dim=rr_dim)["median_ms"]
        exported = measure_latency(loaded, window, threads=1, runs=runs, rr_dim=rr_dim,
                                   in_channels=ckpt.in_channels)["median_ms"]
        log(f"latency b=1, 1 thread, median of {runs}: eager {eager:.3f} ms, exported {exported:.3f} ms")
    return out_path


def main(argv: list[str] | None = None) -> int:
    """CLI entry: one line on stderr and exit 2 for every user error."""
    def body() -> int:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        export(args.checkpoint, args.out, args.runs)
        return 0
    return run_cli("export.py", body)


if __name__ == "__main__":
    sys.exit(main())
