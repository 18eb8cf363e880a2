"""The torch-free side of deployment: a LiteECG ONNX file, read and run with onnxruntime.

    from deploy import OnnxModel
    m = OnnxModel("liteecgnet.onnx")          # checks the file and its liteecg.json metadata
    pred, prob = m.classify(x, tm, rr)        # numpy in, numpy out (utils.beat_inputs' arrays)

export.py writes the file (float or int8) with `metadata_props["liteecg.json"]`: the model's
input contract (sampling rate, window, channels, per-beat features) and the preprocessing that
rebuilds its inputs (utils.PreprocConfig). predict.py runs it over a record. Nothing here
imports torch: a monitor or gateway needs numpy, scipy, wfdb and onnxruntime only.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cli import UsageError
from utils import PreprocConfig, stack_inputs

ONNX_FORMAT, ONNX_VERSION = "liteecg-onnx", 1
META_KEY = "liteecg.json"   # the metadata_props key export.py writes
INPUT_NAMES = ("x", "rr")   # (B, C, T) windows [, (B, F) per-beat features]
OUTPUT_NAME = "logits"      # (B, classes)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, float32."""
    z = z - z.max(1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(1, keepdims=True)


class OnnxModel:
    """A LiteECG .onnx file on onnxruntime's CPU provider: its metadata, and `classify`."""

    def __init__(self, source: str | Path | bytes, threads: int | None = None, name: str | None = None):
        """`source`: the file, or its bytes (export.py checks a file before writing it; `name`
        then says what it is in messages). `threads`: onnxruntime's intra-op threads (None: its
        default, all cores)."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError("running an .onnx model needs onnxruntime: pip install onnxruntime") from None
        self.path = Path(name) if name else Path("<bytes>") if isinstance(source, bytes) else Path(source)
        if not isinstance(source, bytes) and not self.path.is_file():
            raise UsageError(f"model file {self.path} does not exist")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        ort.set_default_logger_severity(3)  # its warnings are not the user's business; errors are raised
        try:
            self.session = ort.InferenceSession(source if isinstance(source, bytes) else str(source), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # truncated, corrupt, or not ONNX at all
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UsageError(f"{self.path} is not a readable ONNX model ({first})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if raw is None:
            raise UsageError(f"{self.path} has no LiteECG metadata ({META_KEY}); export the checkpoint "
                             "with export.py")
        try:
            meta = json.loads(raw)
            if meta.get("format") != ONNX_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, not {ONNX_FORMAT!r}")
            if meta.get("version", 0) > ONNX_VERSION:
                raise ValueError(f"version {meta['version']} is newer than this code's {ONNX_VERSION}")
            self.preproc = PreprocConfig.from_dict(meta["preprocessing"])
            self.class_names = list(meta["class_names"])
            self.rr_dim = int(meta["rr"]["shape"][1]) if meta.get("rr") else 0
            self.name = str(meta["model"])
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{self.path}: unusable LiteECG metadata ({e})") from None
        self.meta = meta
        self._check_graph()

    def _check_graph(self) -> None:
        """The graph's inputs must be what the metadata says the preprocessing produces."""
        ins = {i.name: i.shape for i in self.session.get_inputs()}
        want = set(INPUT_NAMES[:2 if self.rr_dim else 1])
        if set(ins) != want:
            raise UsageError(f"{self.path}: graph inputs {sorted(ins)}, metadata implies {sorted(want)}")
        shape = ins["x"]
        if len(shape) != 3 or shape[1:] != [self.preproc.channels, self.preproc.window]:
            raise UsageError(f"{self.path}: graph input x has shape {shape}, the metadata's preprocessing "
                             f"gives (batch, {self.preproc.channels}, {self.preproc.window})")

    def logits(self, x: np.ndarray, rr: np.ndarray | None = None, batch_size: int = 1024) -> np.ndarray:
        """(N, C, T) float32 [+ (N, F)] -> (N, classes) float32 logits, in batches."""
        out = []
        for a in range(0, len(x), batch_size):
            feed = {"x": np.ascontiguousarray(x[a:a + batch_size], np.float32)}
            if self.rr_dim:
                feed["rr"] = np.ascontiguousarray(rr[a:a + batch_size], np.float32)
            out.append(self.session.run([OUTPUT_NAME], feed)[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def latency_ms(self, runs: int = 300, warmup: int = 20) -> float:
        """Median milliseconds of one batch-1 call on a random beat (what one new beat costs)."""
        rng = np.random.default_rng(0)
        feed = {"x": rng.standard_normal((1, self.preproc.channels, self.preproc.window)).astype(np.float32)}
        if self.rr_dim:
            feed["rr"] = rng.random((1, self.rr_dim)).astype(np.float32)
        for _ in range(warmup):
            self.session.run(None, feed)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.session.run(None, feed)
            times.append(time.perf_counter() - t)
        return float(np.median(times) * 1e3)

    def classify(self, x: np.ndarray, tm: np.ndarray | None, rr: np.ndarray, batch_size: int = 1024
                 ) -> tuple[np.ndarray, np.ndarray]:
        """utils.beat_inputs' (x, tm, rr) -> (class index (N,), probabilities (N, classes))."""
        p = softmax(self.logits(stack_inputs(x, tm), rr if self.rr_dim else None, batch_size))
        return p.argmax(1), p
