"""The checkpoint: one typed structure that rebuilds a model and its preprocessing, no flags needed.

    ckpt = Checkpoint.load("data/records/ecg_lightweight_liteecgnet_<stamp>.pt")
    model = ckpt.build_model()            # eval mode, on the CPU
    cfg = ckpt.preproc                    # utils.PreprocConfig the windows were cut with

Two kinds share the structure: a *final* checkpoint (the best weights, written once at the end
of a run) and a *training state* (`.last.pt`, written after every epoch for --resume: weights,
optimiser, scheduler, RNG and early-stopping state). On disk both are plain dicts of tensors,
numbers, strings, lists and dicts, read with ``torch.load(weights_only=True)``: loading runs no
code. The dict keys are those of checkpoint version 1, so older files still load.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cli import UsageError
from models import ModelIO, create_model
from options import LAB_TAG
from utils import PreprocConfig, atomic_write, stack_inputs

CKPT_FORMAT, CKPT_VERSION = "liteecg-checkpoint", 1
# models.ModelIO fields of the research probes, now removed (docs/lab/README.md), at their "off" values
REMOVED_IO = {"rr_hidden": 0, "feature_drop": 0.0, "template_mode": "channel"}
FINAL, TRAINING_STATE = "final", "training-state"
CALIBRATION_PER_CLASS = 16  # training beats per class a checkpoint keeps: export.py --int8 calibrates on them
# what a training state holds beyond the common fields (trainer.fit's state)
TRAINING_KEYS = ("epoch", "model_state", "optimizer", "scheduler", "torch_rng", "history",
                 "best_state", "bad_epochs", "ema_state", "members")


@dataclass
class Checkpoint:
    """Everything a saved run knows. `state_dict` is set for final checkpoints, `training` for
    training states; the rest is common to both."""
    model_name: str
    model_config: dict          # the whole merged config: config.py may change later
    num_classes: int
    rr_dim: int
    class_names: list[str]
    preprocessing: dict         # utils.PreprocConfig.to_dict()
    args: dict = field(default_factory=dict)      # the run's command-line arguments
    versions: dict = field(default_factory=dict)  # python / torch / numpy / wfdb of the run
    stamp: str = ""                               # the run's timestamp (its file names)
    in_channels: int = 1                          # models.ModelIO (absent before: 1)
    rr_norm: bool = False                         # models.ModelIO (absent before: False)
    members: int = 1                              # > 1: a models.Ensemble of that many (absent before: 1)
    kind: str = FINAL
    state_dict: dict | None = None
    best_val: dict = field(default_factory=dict)
    cv: dict | None = None      # --cv: the folds, the per-epoch pooled scores, the chosen epochs
    training: dict | None = None
    # a few training beats of every class ({"x": (n, C, T) float16, "rr": (n, F) or None, "y", "records"}):
    # export.py --int8 calibrates on them, so a checkpoint exports without the data (absent before)
    calibration: dict | None = None
    calibrated: dict | None = None  # calibrate.py: the record, minutes, beats and recipe it was calibrated on

    @property
    def preproc(self) -> PreprocConfig:
        return PreprocConfig.from_dict(self.preprocessing)

    def to_dict(self) -> dict:
        """The dict written to disk (checkpoint version 1 keys)."""
        d = {"format": CKPT_FORMAT, "version": CKPT_VERSION,
             **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("state_dict", "training")}}
        if self.kind == FINAL:
            d.update(state_dict=self.state_dict, best_epoch=self.best_val.get("epoch"),
                     best_val_f1=self.best_val.get("macro_f1"))
        else:
            d.update(self.training or {})
        return d

    @classmethod
    def from_dict(cls, d: dict, path: str | os.PathLike = "checkpoint") -> "Checkpoint":
        for k, off in REMOVED_IO.items():
            if d.get(k, off) != off:
                raise UsageError(f"{path} was made with {k}={d[k]}, a research probe that was removed; it runs at "
                                 f"git tag {LAB_TAG} (docs/lab/README.md)")
        try:
            PreprocConfig.from_dict(d["preprocessing"])
        except ValueError as e:
            raise UsageError(f"{path} was {e}") from None
        common = {f.name: d[f.name] for f in dataclasses.fields(cls)
                  if f.name in d and f.name not in ("state_dict", "training")}
        kind = d.get("kind", FINAL)
        return cls(**common, state_dict=d.get("state_dict"),
                   training={k: d[k] for k in TRAINING_KEYS if k in d} if kind == TRAINING_STATE else None)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Checkpoint":
        """Read and check a LiteECG checkpoint (weights_only: no code runs on load)."""
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"checkpoint {p} does not exist")
        if p.suffix.lower() in (".onnx", ".ts"):
            raise UsageError(f"{p} is an exported model ({p.suffix}); this needs the .pt checkpoint it came from "
                             "(predict.py runs .onnx files)")
        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
        except Exception:  # a zip archive torch cannot open, or bytes that are no pickle at all
            raise UsageError(f"{p} cannot be read as a checkpoint: the file is truncated or damaged, or is no "
                             f"LiteECG .pt file ({p.stat().st_size:,} bytes)") from None
        if not isinstance(d, dict) or d.get("format") != CKPT_FORMAT:
            raise UsageError(f"{p} is not a LiteECG checkpoint")
        if d.get("version") != CKPT_VERSION:
            raise UsageError(f"{p} has checkpoint version {d.get('version')}, this code reads {CKPT_VERSION}")
        try:
            return cls.from_dict(d, p)
        except (KeyError, TypeError) as e:
            raise UsageError(f"{p} is an incomplete LiteECG checkpoint (missing or wrong field: {e})") from None

    @staticmethod
    def calibration_sample(data, idx: np.ndarray, seed: int) -> dict:
        """The checkpoint's `calibration` field: `calibration_beats` of the part `idx` (x float16:
        half the bytes, ample for the int8 ranges)."""
        x, rr, y, records = calibration_beats(data, idx, seed)
        return {"x": torch.from_numpy(x.astype(np.float16)), "rr": torch.from_numpy(rr), "y": torch.from_numpy(y),
                "records": records}

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file + rename): a failed write leaves the previous file."""
        atomic_write(path, lambda f: torch.save(self.to_dict(), f))

    def require_final(self, path: str | os.PathLike) -> None:
        """Refuse a training state (.last.pt) where a final checkpoint is needed."""
        if self.kind == TRAINING_STATE:
            raise UsageError(f"{path} is a training state (.last.pt): continue it with --resume, or use "
                             "the final .pt checkpoint of the run")

    def new_model(self) -> nn.Module:
        """A freshly initialised model of this checkpoint's architecture and inputs."""
        # every models.ModelIO field is a field of this checkpoint of the same name, except fs
        io = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelIO) if f.name != "fs"}
        return create_model(self.model_name, **io, fs=self.preproc.fs, members=self.members, **self.model_config)

    def build_model(self, device: str | torch.device = "cpu", path: str | os.PathLike = "checkpoint") -> nn.Module:
        """The final checkpoint's model with its weights, in eval mode on `device`."""
        self.require_final(path)
        model = self.new_model()
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()


def calibration_beats(data, idx: np.ndarray, seed: int, per_class: int = CALIBRATION_PER_CLASS
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """At most `per_class` beats of each class of the part `idx` of `data` (utils.BeatData),
    drawn with the seed, as model inputs -> (x (n, C, T) float32, rr (n, F), y (n,), their records)."""
    from dataset import limit_per_class
    pick = limit_per_class(data.y, idx, per_class, seed)
    return (stack_inputs(data.x[pick], None if data.tm is None else data.tm[pick]), data.rr[pick], data.y[pick],
            sorted({str(r) for r in data.record[pick]}, key=int))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Read a final checkpoint and rebuild its model -> (model in eval mode, checkpoint)."""
    ckpt = Checkpoint.load(path)
    return ckpt.build_model(device, path), ckpt
