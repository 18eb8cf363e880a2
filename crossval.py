"""`--cv K`: choose the number of epochs inside DS1 by patient-grouped cross-validation, never
looking at DS2 (trainer.py then trains on all of DS1 for that many epochs and tests DS2 once).

DS1 is cut into K folds that never split a patient (dataset.interpatient_folds). For each fold a
model is trained on the other folds for the full --epochs schedule (no early stopping) and
predicts the held-out fold after every epoch; the held-out predictions of all folds are pooled
(every DS1 beat predicted once, by a model that never saw its patient) and the epoch with the
best pooled macro-F1 is chosen. -> the report's "cv" section.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from dataset import DS1, BeatTensors, interpatient_folds, limit_per_class
from engine import FitOptions, fit, member_seed, new_state
from metrics import bootstrap_ci, classification_metrics, key_class_stats
from models import create_from_spec
from options import RunConfig


def cross_validate(cfg: RunConfig, data, device, log: Callable[[str], None] = print) -> dict:
    """The "cv" section: folds, per-epoch pooled held-out scores, the chosen epochs and that epoch's
    held-out predictions. With --ensemble K every fold trains K members (engine.member_seed); the
    held-out class is the argmax of their mean probability, the pooled loss their mean loss, and
    "members" gives each member's own pooled scores (what K single runs would have measured)."""
    t0 = time.perf_counter()
    folds = interpatient_folds(cfg.cv)
    if any(r not in DS1 for f in folds for r in f):  # the protocol's promise, checked where it is kept
        raise AssertionError("a cross-validation fold holds a record outside DS1")
    names, K, E = data.class_names, cfg.ensemble, cfg.epochs
    probs = np.zeros((E, len(data), len(names)), np.float32)  # (E, N, C) held-out mean probability
    member_preds = np.full((K, E, len(data)), -1, np.int8)    # (K, E, N) each member's held-out class
    losses = np.zeros(E)
    ds1 = np.flatnonzero(np.isin(data.record, [int(r) for r in DS1]))
    spec = cfg.model_spec(data.config, len(names))
    opts = replace(FitOptions.from_config(cfg), patience=E + 1)  # every epoch, no early stop
    for k, held in enumerate(folds):
        va_idx = np.flatnonzero(np.isin(data.record, [int(r) for r in held]))
        tr_idx = np.setdiff1d(ds1, va_idx)
        if cfg.class_limit is not None:
            tr_idx = limit_per_class(data.y, tr_idx, cfg.class_limit, cfg.seed)
        log(f"cv fold {k + 1}/{len(folds)}: held out {' '.join(held)} ({len(va_idx)} beats "
            f"{data.class_counts(va_idx)}), training on {len(tr_idx)} beats of the other DS1 records")
        tr, va = BeatTensors(data, tr_idx, device), BeatTensors(data, va_idx, device)
        for m in range(K):
            seed = member_seed(cfg.seed, m)
            if K > 1:
                log(f"cv fold {k + 1}/{len(folds)}: ensemble member {m + 1}/{K} (seed {seed})")
            torch.manual_seed(seed + 1000 * (k + 1))
            model = create_from_spec(spec).to(device)

            def keep(epoch: int, vp: np.ndarray, loss: float, prob: np.ndarray, va_idx=va_idx, m=m) -> None:
                member_preds[m, epoch - 1, va_idx] = vp
                probs[epoch - 1, va_idx] += prob / K
                losses[epoch - 1] += loss * len(va_idx) / len(ds1) / K
            state = fit(model, tr, va, names, replace(opts, seed=seed), new_state(), lambda s: None, device, log,
                        on_epoch=keep)
            if state.get("interrupted"):
                raise KeyboardInterrupt
    preds = probs.argmax(-1)  # (E, N): one member's own prediction when K == 1
    per_epoch = []
    for e in range(E):
        m = classification_metrics(data.y[ds1], preds[e, ds1], names)
        per_epoch.append({"epoch": e + 1, "macro_f1": m["macro_f1"], "loss": float(losses[e]),
                          "N_recall": m["per_class"][names[0]]["recall"],
                          "key_classes": key_class_stats(data.y[ds1], preds[e, ds1], names)})
    best = dict(max(per_epoch, key=lambda r: r["macro_f1"]))  # the first of equals: fewer epochs
    chosen = preds[best["epoch"] - 1, ds1].astype(np.int64)
    if cfg.bootstrap:  # patients, not beats, are the unit a new-patient score varies with
        best["ci"] = bootstrap_ci(data.y[ds1], chosen, names, groups=data.record[ds1], n_boot=cfg.bootstrap,
                                  seed=cfg.seed)
    log("cv: pooled held-out macro-F1 by epoch " + " ".join(f"{r['macro_f1']:.3f}" for r in per_epoch))
    kc = best["key_classes"]
    log(f"cv: {best['epoch']} epochs chosen (pooled held-out macro-F1 {best['macro_f1']:.4f}"
        + "".join(f", {c} F1 {kc[c]['F1']:.3f}" for c in kc) + ")")
    out = {"k": len(folds), "folds": folds, "selection": "epoch of the best pooled held-out macro-F1 over "
           "DS1 (K patient-grouped folds, full schedule, no early stopping)", "chosen_epochs": best["epoch"],
           "best": best, "per_epoch": per_epoch, "held_out": held_out(data, ds1, chosen)}
    if K > 1:
        out["members"] = [member_alone(data.y[ds1], member_preds[m][:, ds1], names, member_seed(cfg.seed, m), log)
                          for m in range(K)]
    out["seconds"] = time.perf_counter() - t0
    return out


def member_alone(y: np.ndarray, preds: np.ndarray, names: list[str], seed: int, log=print) -> dict:
    """One ensemble member's own pooled held-out scores per epoch ((E, N) predictions)."""
    f1 = [classification_metrics(y, p.astype(np.int64), names)["macro_f1"] for p in preds]
    e = int(np.argmax(f1))
    log(f"cv: member seed {seed} alone: best pooled held-out macro-F1 {f1[e]:.4f} at epoch {e + 1}")
    return {"seed": seed, "per_epoch_macro_f1": f1, "best": {"epoch": e + 1, "macro_f1": f1[e]}}


def _digits(a: np.ndarray) -> str:
    """Class indices (< 10) as one digit string: compact in JSON (bench/cv_compare.digits reads it)."""
    return "".join(map(str, a))


def _runs(v: np.ndarray) -> list[list[int]]:
    """Run-length form [[value, count], ...] of a 1-D array (records come in blocks)."""
    cut = np.flatnonzero(np.diff(v)) + 1
    return [[int(b[0]), len(b)] for b in np.split(v, cut) if len(b)]


def held_out(data, idx: np.ndarray, pred: np.ndarray) -> dict:
    """The chosen epoch's held-out predictions, compact, with what pairs them with another run's:
    the beats' identity (record, R peak, label) as a digest. bench/cv_compare.py --against uses them
    for a paired, record-resampled comparison of two settings."""
    key = np.stack([data.record[idx].astype(np.int64), data.rpeak[idx].astype(np.int64),
                    data.y[idx].astype(np.int64)], 1)
    return {"beats": hashlib.sha256(np.ascontiguousarray(key).tobytes()).hexdigest()[:16],
            "records": _runs(data.record[idx]), "y": _digits(data.y[idx]),
            "pred": _digits(pred)}
