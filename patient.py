"""Patient-specific calibration: a model adapts to a new patient's first labelled minutes.

AAMI EC57's recommended practice allows the first 5 minutes of a record as a learning period: a
cardiologist labels them, the model adapts, and it is tested on the rest. One short loop,
`adapt`, serves the two ways this suite does it, each with a fixed Recipe:

- CALIBRATE: a trained model (the DS1-pretrained liteecgnet of weights/) fine-tuned on the
  patient's calibration beats (calibrate.py). Every parameter adapts for 100 steps of 64 of the
  patient's beats (AdamW, lr 1e-3 decaying to 0 on a cosine, no weight decay), BatchNorm keeps its
  pretraining statistics, and the patient's loss is a softmax over the classes its calibration
  beats hold and those the starting model calls on at least 10 % of them. Why: most patients show
  no S beat in their first minutes, and a plain fine-tune teaches "this patient has no S" (record
  207's S beats found fell from 53 of 106 to 0); over the present classes only, a class the patient
  has not shown yet is never pushed down, unless the model keeps calling the patient's own beats
  that class (a patient whose normal beats look ventricular to it), which is then unlearnt.
- FROM_SCRATCH: the literature's protocol (`trainer.py --split patient-specific`, Hu et al. 1997,
  Kiranyaz et al. 2016): a new model per test record, trained on a common set of 245 beats of
  records 100-124 (75 N, 75 S, 75 V, all F, all Q; never the test record's) plus every beat of the
  record's first minutes: 150 steps of 64 beats, AdamW lr 3e-3 after 50 warm-up steps, weight
  decay 1e-4, square-root class weights.

Both recipes were chosen before any test minute was scored: CALIBRATE inside DS1 (pretrained
without the patient, calibrated on its first 5 minutes, scored on its minutes 5-30), FROM_SCRATCH
on the calibration minutes alone (minutes 0-4 -> minute 4-5); docs/lab/calibration.md has the
rounds and their rules. A test minute never enters a training or validation part
(tests/test_patient.py checks every beat each fit sees).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from beats import key_class
from cli import DataError, UsageError
from dataset import PACED, BeatTensors
from engine import class_weights, predict
from utils import BeatData

MINUTES = 5.0  # the EC57 learning period
COMMON_RECORDS = tuple(str(r) for r in (100, 101, 103, 105, 106, 108, 109, 111, 112, 113, 114, 115, 116, 117, 118,
                                        119, 121, 122, 123, 124))  # records 100-124 without the paced 102 and 104
COMMON_SET = {"N": 75, "S": 75, "V": 75}  # drawn with the seed; every F and Q beat is taken


@dataclass(frozen=True)
class Recipe:
    """How `adapt` trains: `steps` AdamW steps on batches of `batch` beats (shuffled passes)."""
    steps: int
    batch: int
    lr: float
    weight_decay: float
    warmup: int            # linear warm-up steps; after them the rate is constant, or with `cosine` decays to 0
    cosine: bool
    freeze_bn: bool        # BatchNorm keeps its running statistics (a trained model) instead of the batch's
    present_only: bool     # the loss is a softmax over the classes the beats hold ...
    called_share: float    # ... and those the starting model calls on at least this share of them (0: none)
    class_weights: str | None  # "sqrt": engine.class_weights of the beats


CALIBRATE = Recipe(steps=100, batch=64, lr=1e-3, weight_decay=0.0, warmup=0, cosine=True, freeze_bn=True,
                   present_only=True, called_share=0.1, class_weights=None)
FROM_SCRATCH = Recipe(steps=150, batch=64, lr=3e-3, weight_decay=1e-4, warmup=50, cosine=False, freeze_bn=False,
                      present_only=False, called_share=0.0, class_weights="sqrt")


def adapt(model: nn.Module, beats: BeatTensors, recipe: Recipe, seed: int) -> nn.Module:
    """A copy of `model` trained on `beats` by `recipe` (the model itself is left as it was); in
    eval mode. The copy's per-beat feature standardisation is the model's (a fresh model of the
    from-scratch protocol gets it from `beats` first, see `from_scratch`). `seed` sets the batch
    order and dropout's masks, whatever ran before in the process."""
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    y_all = beats.y.cpu().numpy()
    weight = (class_weights(y_all, m.num_classes, recipe.class_weights).to(beats.y.device)
              if recipe.class_weights else None)
    present = np.bincount(y_all, minlength=m.num_classes) > 0  # (C,) the classes the beats hold
    if recipe.called_share:  # and those the model calls on many of them: a systematic confusion to unlearn
        called = np.bincount(predict(m, beats, 512, m.rr_dim > 0)[0], minlength=m.num_classes)
        present |= called >= recipe.called_share * len(beats)
    present = torch.from_numpy(present).to(beats.y.device)
    m.train()
    if recipe.freeze_bn:
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.eval()
    g = torch.Generator().manual_seed(seed)
    order, pos, use_rr = torch.randperm(len(beats), generator=g), 0, m.rr_dim > 0
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(seed)
        for step in range(recipe.steps):
            lr = recipe.lr * min(1.0, (step + 1) / recipe.warmup) if recipe.warmup else recipe.lr
            if recipe.cosine:
                lr *= 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
            for group in opt.param_groups:
                group["lr"] = lr
            if pos + recipe.batch > len(beats):  # the next shuffled pass
                order, pos = torch.randperm(len(beats), generator=g), 0
            i = order[pos:pos + recipe.batch].to(beats.y.device)
            pos += recipe.batch
            logits = m(beats.x[i], beats.rr[i] if use_rr else None)  # (B, C)
            if recipe.present_only:  # classes the beats do not hold are left out of the softmax, never pushed down
                logits = logits.masked_fill(~present, float("-inf"))
            loss = F.cross_entropy(logits, beats.y[i], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return m.eval()


def from_scratch(make_model: Callable[[], nn.Module], beats: BeatTensors, seed: int) -> nn.Module:
    """The literature's protocol for one record: a new model (`make_model()`, seeded here) trained
    on `beats` (the common set and the record's calibration beats) by FROM_SCRATCH."""
    torch.manual_seed(seed)
    model = make_model()
    if model.rr_norm:  # standardisation from the training beats, as a full training run sets it
        model.set_rr_stats(beats.rr)
    return adapt(model, beats, FROM_SCRATCH, seed)


# ----------------------------------------------------------------------------------------------
# The minutes and the common set
# ----------------------------------------------------------------------------------------------

def minutes_split(data: BeatData, record: str, minutes: float = MINUTES) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `record`: (its calibration beats, R peak before `minutes`; its test beats, the rest).
    A beat is never in both."""
    rows = np.flatnonzero(data.record == int(record))
    early = data.rpeak[rows] < round(minutes * 60 * data.config.fs)
    return rows[early], rows[~early]


def common_set(data: BeatData, exclude: str, seed: int) -> np.ndarray:
    """The literature's common training set for test record `exclude`: COMMON_SET's N, S and V beats
    drawn with the seed, and every F and Q beat, from records 100-124 without the paced ones and
    without `exclude` (a record's own beats, test minutes included, never train its model). Rows,
    sorted."""
    names = data.class_names
    pool = np.flatnonzero(np.isin(data.record, [int(r) for r in COMMON_RECORDS if r != exclude]))
    rng = np.random.default_rng(seed)
    rows = []
    for c, name in enumerate(names):
        of_c = pool[data.y[pool] == c]
        key = next((k for k in COMMON_SET if k == name or (k != "N" and key_class(names, k) == name)), None)
        rows.append(rng.permutation(of_c)[:COMMON_SET[key]] if key else of_c)
    return np.sort(np.concatenate(rows)).astype(np.int64)


def protocol_records(test_recs: tuple[str, ...] | None) -> list[str]:
    """The literature's test records: the 44 of MIT-BIH without the paced ones, or those given."""
    from utils import MITDB_RECORDS
    records = list(test_recs) if test_recs else [r for r in MITDB_RECORDS if r not in PACED]
    paced = sorted(set(records) & set(PACED))
    if paced:
        raise UsageError(f"the patient-specific protocol leaves out the paced records: {' '.join(paced)}")
    return records


# ----------------------------------------------------------------------------------------------
# Calibrating and testing record by record
# ----------------------------------------------------------------------------------------------

def per_record(data: BeatData, records: list[str], fit: Callable[[str, np.ndarray], nn.Module],
               minutes: float, batch_size: int, device, log=print, baseline: nn.Module | None = None,
               deployed: Callable[[nn.Module, BeatTensors], np.ndarray] | None = None) -> dict:
    """For each record: `fit(record, calibration rows)` -> its model, which predicts the record's test
    minutes once. -> {"y", "pred", "record" (N,) over all test beats, "uncalibrated" (`baseline`'s
    predictions of the same beats, when given), "deployed" (`deployed(model, test beats)`'s, e.g. the
    model's int8 file), "records": {record: calibration beats per class, test beats, seconds to fit}}."""
    names = data.class_names
    ys, preds, recs, base, dep, info = [], [], [], [], [], {}
    for r in records:
        cal, test = minutes_split(data, r, minutes)
        if len(cal) == 0 or len(test) == 0:
            raise DataError(f"record {r} has {len(cal)} beats before minute {minutes:g} and {len(test)} after: "
                            "both are needed")
        t0 = time.perf_counter()
        model = fit(r, cal)
        seconds = time.perf_counter() - t0
        part = BeatTensors(data, test, device)
        preds.append(predict(model, part, batch_size, model.rr_dim > 0)[0])
        if baseline is not None:
            base.append(predict(baseline, part, batch_size, baseline.rr_dim > 0)[0])
        if deployed is not None:
            dep.append(deployed(model, part))
        ys.append(data.y[test])
        recs.append(data.record[test])
        counts = np.bincount(data.y[cal], minlength=len(names))
        info[r] = {"calibration_beats": {n: int(k) for n, k in zip(names, counts)}, "test_beats": int(len(test)),
                   "seconds": seconds}
        absent = [n for n, k in zip(names, counts) if k == 0 and (data.y[test] == names.index(n)).any()]
        log(f"record {r}: {len(cal)} calibration beats ({' '.join(f'{n} {k}' for n, k in zip(names, counts) if k)}), "
            f"{len(test)} test beats, {seconds:.2f} s" + (f"; none of {', '.join(absent)} in its first minutes"
                                                           if absent else ""))
    out = {"y": np.concatenate(ys), "pred": np.concatenate(preds), "record": np.concatenate(recs), "records": info}
    if baseline is not None:
        out["uncalibrated"] = np.concatenate(base)
    if deployed is not None:
        out["deployed"] = np.concatenate(dep)
    return out


def describe(recipe: Recipe) -> dict:
    """A recipe as a report shows it."""
    return asdict(recipe)


# ----------------------------------------------------------------------------------------------
# The report of a per-record run
# ----------------------------------------------------------------------------------------------

def build(result: dict, data: BeatData, *, model: nn.Module, model_name: str, stamp: str, source: str, args: dict,
          split: str, train_records: list[str], minutes: float, recipe: Recipe, bootstrap: int, seed: int, device,
          t_start: float, extra: dict | None = None) -> dict:
    """The report (report.py's schema) of `per_record`'s result: `test` from every record's test
    minutes pooled (gross and per record), the model's cost, and a `patient_specific` section (the
    minutes, the recipe, each record's calibration beats and fitting time); `uncalibrated` holds the
    same figures of the model before calibration, `deployed` those of its deployed form (int8), when
    the result has them."""
    from metrics import test_metrics
    from profiling import profile_model
    from report import build_report
    names = data.class_names
    y, rec = result["y"], result["record"]
    score = lambda pred: test_metrics(y, pred, rec, names, grouped=True, bootstrap=bootstrap, seed=seed)  # noqa: E731
    records = list(result["records"])
    cal = {n: sum(r["calibration_beats"][n] for r in result["records"].values()) for n in names}
    test_counts = {n: int((y == k).sum()) for k, n in enumerate(names)}
    dataset = {"split": split, "records": {"train": train_records, "val": [], "test": records},
               "class_counts": {"train": cal, "val": {n: 0 for n in names}, "test": test_counts},
               "beats": {"train": sum(cal.values()), "val": 0, "test": int(len(y))},
               "dropped": int(sum(data.dropped.get(r, 0) for r in records)), "warning": None,
               "notes": [f"each record's first {minutes:g} minutes (R peak before {minutes * 60:g} s) train or calibrate "
                         "its model; its remaining beats are the test part"], "leads": data.leads}
    mm = profile_model(model, seq_len=data.config.window, device=str(device), rr_dim=model.rr_dim)
    out = build_report(model_name=model_name, stamp=stamp, ckpt_path=source, args=args, class_names=names,
                       preprocessing=data.config.to_dict(), dataset=dataset, test=score(result["pred"]),
                       best_val={"source": "a fixed recipe (patient.py), chosen before any test minute was scored"},
                       history=[], model_metrics=mm, device=device, seed=seed, t_total=time.perf_counter() - t_start,
                       interrupted=False)
    out["patient_specific"] = {"minutes": minutes, "recipe": describe(recipe), "records": result["records"],
                               **(extra or {})}
    for part in ("uncalibrated", "deployed"):
        if part in result:
            out[part] = score(result[part])
    return out
