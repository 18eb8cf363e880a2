"""Patient-specific calibration research (issue 40): which recipe to ship, measured inside DS1.

Protocol B (calibrate a pretrained model): for each of the 4 patient-grouped DS1 folds
(dataset.interpatient_folds(4)) and each pretraining seed, liteecgnet is trained with the
inter-patient preset on the other three folds for the full 15-epoch schedule (exactly the fold
models of `trainer.py --split interpatient --cv 4 --epochs 15`; no early stopping, the last epoch
kept); every held-out DS1 record is then calibrated on its first 5 minutes (R peak < 300 s) and
scored on its minutes 5-30. Only DS1's 22 records are ever loaded here for B.

Protocol A (the literature's): liteecgnet from scratch on a common set (75 N, 75 S, 75 V, all F,
all Q of records 100-124 other than the test record, paced records excluded, drawn with the seed)
plus the test record's first 5 minutes; choices from calibration minutes only (train on minutes
0-4, validate on minute 4-5), then one final evaluation on minutes 5-30 of the 44 records.

    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    python bench/calib_research.py table                       # S/V per DS1 record, cal vs test minutes
    python bench/calib_research.py pretrain --seeds 1337 1 2   # fold models -> /work/research40/ckpt
    python bench/calib_research.py b --name NAME [recipe flags] # one B recipe, all seeds -> runs/NAME.json
    python bench/calib_research.py b-table NAME... --uncal [--per-seed]  # the B table of finished runs
    python bench/calib_research.py b-records NAME              # per DS1 record: S/V found, false calls
    python bench/calib_research.py time [recipe flags]         # calibration seconds per patient, one thread
    python bench/calib_research.py a-choose --name NAME [flags] # A: minutes 0-4 -> minute 4-5
    python bench/calib_research.py a-final [flags]             # A: final evaluation, minutes 5-30
    python bench/calib_research.py a-table                     # A: the final run's table

The exact commands of the study: docs/calib_research/RESULTS.md (rules: RULES.md there).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dataset import DS1, DS2, PACED, BeatTensors, interpatient_folds  # noqa: E402
from engine import predict  # noqa: E402
from metrics import key_class_stats  # noqa: E402
from trainer import FitOptions, build, fit, model_spec, new_state  # noqa: E402
from utils import MITDB_RECORDS, PreprocConfig, load_beats  # noqa: E402

OUT = Path(os.environ.get("CALIB_OUT", "/work/research40"))
DATA_ROOT = os.environ.get("MITBIH_DIR", str(ROOT.parent / "shared" / "mitdb"))
CFG = PreprocConfig(segment_sec=1.2, classes="aami5", rr_features="sequence", template=True)
FS = 360
CAL_END = 300 * FS          # calibration minutes: R peak < 300 s
VAL_START = 240 * FS        # protocol A's choices: train on minutes 0-4, validate on minute 4-5
NAMES = ["N", "S", "V", "F", "Q"]
SEEDS = (1337, 1, 2)
MODEL_ARGS = argparse.Namespace(model="liteecgnet", rr=True, model_set=None, coord=None, rr_hidden=0,
                                feature_drop=0.0, template_mode="channel")
DOMINANT_S = 209            # DS1's dominant S patient: figures without it too
A_RECORDS = [r for r in MITDB_RECORDS if r not in PACED]          # 44
A_SUBSET = [r for r in A_RECORDS if 200 <= int(r) <= 234]          # 24 (200-234 without 217)
COMMON_POOL = [r for r in A_RECORDS if 100 <= int(r) <= 124]       # records 100-124, paced excluded


def log(msg: str) -> None:
    print(msg, flush=True)


def load(records):
    """Beats of exactly these records (nothing else is read): the preset's inputs."""
    return load_beats(DATA_ROOT, CFG, records=[str(r) for r in records], use_cache=True,
                      cache_dir=ROOT / "data" / "cache", download=False, log=lambda m: None)


def new_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    spec = model_spec(MODEL_ARGS, CFG, len(NAMES))
    return build(MODEL_ARGS, spec, "cpu")


def subset(data, idx: np.ndarray) -> BeatTensors:
    return BeatTensors(data, np.asarray(idx, np.int64))


# ---------------------------------------------------------------------------------------------
# per-record table
# ---------------------------------------------------------------------------------------------

def cmd_table(args) -> int:
    data = load(DS1)
    cal = data.rpeak < CAL_END
    log("| record | fold | cal N | cal S | cal V | test N | test S | test V | test F |")
    log("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    folds = interpatient_folds(4)
    tot = np.zeros((2, 5), int)
    for r in DS1:
        m = data.record == int(r)
        a, b = (np.bincount(data.y[m & c], minlength=5) for c in (cal, ~cal))
        tot += [a, b]
        k = next(i for i, f in enumerate(folds) if r in f) + 1
        log(f"| {r} | {k} | {a[0]} | {a[1]} | {a[2]} | {b[0]} | {b[1]} | {b[2]} | {b[3]} |")
    a, b = tot
    log(f"| all 22 | | {a[0]} | {a[1]} | {a[2]} | {b[0]} | {b[1]} | {b[2]} | {b[3]} |")
    return 0


# ---------------------------------------------------------------------------------------------
# B: pretraining the fold models
# ---------------------------------------------------------------------------------------------

def ckpt_path(seed: int, fold: int) -> Path:
    return OUT / "ckpt" / f"liteecgnet_seed{seed}_fold{fold + 1}_e15.pt"


def preset_fit_options(seed: int) -> FitOptions:
    """trainer.py --split interpatient --cv 4 --epochs 15 (the preset, default optimiser settings)."""
    return FitOptions(epochs=15, batch_size=256, lr=3e-3, weight_decay=1e-4, patience=16, seed=seed,
                      focal=False, focal_gamma=2.0, class_weights=None, patient_balance=0.5,
                      augment_fs=None, quiet=True, template_swap=0.5)


def cmd_pretrain(args) -> int:
    data = load(DS1)
    folds = interpatient_folds(4)
    for seed in args.seeds:
        for k, held in enumerate(folds):
            path = ckpt_path(seed, k)
            if path.exists():
                log(f"{path} exists")
                continue
            tr_idx = np.flatnonzero(~np.isin(data.record, [int(r) for r in held]))
            tr = subset(data, tr_idx)
            model = new_model(seed + 1000 * (k + 1))  # cross_validate's seeding of fold k
            t0 = time.perf_counter()
            state = fit(model, tr, None, NAMES, preset_fit_options(seed), new_state(), lambda s: None, "cpu",
                        log=lambda m: None)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state_dict": state["best_state"], "seed": seed, "fold": k + 1, "held_out": held,
                        "epochs": 15}, path)
            log(f"seed {seed} fold {k + 1}: trained on {len(tr)} beats in {time.perf_counter() - t0:.0f} s -> {path}")
    return 0


def load_fold_model(seed: int, fold: int) -> nn.Module:
    m = new_model(0)
    m.load_state_dict(torch.load(ckpt_path(seed, fold))["state_dict"])
    return m.eval()


# ---------------------------------------------------------------------------------------------
# B: calibration recipes
# ---------------------------------------------------------------------------------------------

@dataclass
class Recipe:
    """How a pretrained model adapts to one patient's labelled calibration beats."""
    params: str = "all"          # which parameters adapt: all | head | head+bn | bn | none
    steps: int = 100             # optimiser steps
    lr: float = 1e-3             # AdamW peak learning rate (cosine decay to 0 over the steps)
    batch: int = 32              # the patient's beats per step (shuffled epochs over them)
    replay: int = 0              # pretraining patients' beats per step (0: no replay)
    replay_mix: str = "0.4,0.25,0.25,0.1,0"  # class shares N,S,V,F,Q of each replay batch
    replay_pool: int = 500       # beats per class stored from the pretraining patients (patient-balanced draw)
    patient_weight: float = 0.5  # with replay: loss = w * CE(patient) + (1 - w) * CE(replay)
    l2sp: float = 0.0            # + l2sp * sum ||theta - theta_pretrained||^2 over the adapted parameters
    bn: str = "frozen"           # frozen: BN uses the pretrained statistics (eval mode); train: batch statistics
    replay_template: str = "own"  # own | patient: replay beats moved onto the patient's template
    wd: float = 0.0              # AdamW weight decay
    sched: str = "cosine"        # cosine | constant
    mask_called: int = 0         # >= 1 (with mask_absent): an absent class the starting model calls on at least this
    #                              many calibration beats stays in the softmax (its false calls there are unlearnt)
    mask_share: float = 0.0      # > 0 (with mask_absent): the same when it calls it on at least this share of them
    mask_absent: int = 0         # 1: the patient's loss is a softmax over the classes its calibration beats hold
    #                              only, so a class the patient has not shown yet is not pushed down by its beats
    patient_cw: str = "none"     # class weights of the patient's loss from its calibration beats: none | sqrt
    absent_offset: float = 0.0   # > 0 (without mask_absent): a soft mask, the absent classes' logits lowered by
    #                              this much in the patient's loss (pushed down only where they come close)

    def label(self) -> str:
        d, base = asdict(self), asdict(Recipe())
        return " ".join(f"{k}={v}" for k, v in d.items() if v != base[k]) or "defaults"


def adapted_parameters(m: nn.Module, which: str) -> list[nn.Parameter]:
    named = dict(m.named_parameters())
    if which == "all":
        keys = list(named)
    elif which == "head":
        keys = ["fc.weight", "fc.bias"]
    elif which == "head+bn":
        keys = ["fc.weight", "fc.bias"] + [k for k in named if ".bn." in k]
    elif which == "bn":
        keys = [k for k in named if ".bn." in k]
    elif which == "head+last":  # the last block, the attention pool and the head
        keys = [k for k in named if k.startswith(("fc.", "blocks.2.", "pool."))]
    else:
        raise ValueError(which)
    return [named[k] for k in keys]


def replay_pool(data, tr_idx: np.ndarray, per_class: int, seed: int) -> dict[int, np.ndarray]:
    """The stored replay set: up to `per_class` pretraining beats of each class, drawn with the
    preset's patient balance (n_rc ** -0.5) so one patient does not fill a class."""
    from engine import patient_balance_weights
    rng = np.random.default_rng(seed)
    y, rec = data.y[tr_idx], data.record[tr_idx]
    w = patient_balance_weights(y, rec, 0.5).astype(np.float64)
    pool = {}
    for c in range(len(NAMES)):
        rows = np.flatnonzero(y == c)
        if len(rows) == 0:
            continue
        k = min(per_class, len(rows))
        pool[c] = np.sort(tr_idx[rng.choice(rows, k, replace=False, p=w[rows] / w[rows].sum())])
    return pool


def calibrate(model0: nn.Module, pat: BeatTensors, pool: BeatTensors | None, pool_cls: list[np.ndarray] | None,
              rcp: Recipe, seed: int) -> nn.Module:
    """A copy of `model0` fine-tuned on the patient's calibration beats `pat` (and replay from `pool`)."""
    m = copy.deepcopy(model0)
    if rcp.params == "none" or rcp.steps == 0:
        return m.eval()
    m.requires_grad_(False)
    params = adapted_parameters(m, rcp.params)
    for p in params:
        p.requires_grad_(True)
    ref = [p.detach().clone() for p in params] if rcp.l2sp else None
    opt = torch.optim.AdamW(params, lr=rcp.lr, weight_decay=rcp.wd)
    g = torch.Generator().manual_seed(seed)
    m.train()
    if rcp.bn == "frozen":
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.eval()
    n = len(pat)
    order, pos = torch.randperm(n, generator=g), 0
    present = torch.bincount(pat.y, minlength=len(NAMES)) > 0  # (C,) classes the calibration beats hold
    if rcp.mask_called or rcp.mask_share:  # classes the starting model calls on the patient's beats stay learnable
        called = torch.from_numpy(np.bincount(predict(model0, pat, 512, True)[0], minlength=len(NAMES)))
        present = present | (called >= max(rcp.mask_called, rcp.mask_share * n, 1e-9))
    pcw = None
    if rcp.patient_cw != "none":
        from engine import class_weights
        pcw = class_weights(pat.y.numpy(), len(NAMES), rcp.patient_cw)
    counts = None
    if rcp.replay:
        mix = np.array([float(v) for v in rcp.replay_mix.split(",")])
        mix = np.where([c < len(pool_cls) and len(pool_cls[c]) > 0 for c in range(len(mix))], mix, 0)
        raw = mix / mix.sum() * rcp.replay
        counts = np.floor(raw).astype(int)
        counts[np.argsort(-(raw - counts))[:rcp.replay - counts.sum()]] += 1
        cls_t = [torch.from_numpy(pool_cls[c]) if counts[c] else None for c in range(len(counts))]
    for s in range(rcp.steps):
        if rcp.sched == "cosine":
            for gr in opt.param_groups:
                gr["lr"] = rcp.lr * 0.5 * (1 + np.cos(np.pi * s / rcp.steps))
        if pos + rcp.batch > n:
            order, pos = torch.randperm(n, generator=g), 0
        i = order[pos:pos + rcp.batch]
        pos += rcp.batch
        x, rr, y = pat.x[i], pat.rr[i], pat.y[i]
        b = len(y)
        if rcp.replay:
            j = torch.cat([t[torch.randint(len(t), (int(k),), generator=g)] for t, k in zip(cls_t, counts) if k])
            xr = pool.x[j]
            if rcp.replay_template == "patient":  # the replay beat's difference on this patient's template
                tm = pat.x[torch.randint(n, (len(j),), generator=g), 1]
                xr = torch.stack([xr[:, 0] - xr[:, 1] + tm, tm], 1)
            x, rr, y = torch.cat([x, xr]), torch.cat([rr, pool.rr[j]]), torch.cat([y, pool.y[j]])
        logits = m(x, rr)
        lp = logits[:b]
        if rcp.mask_absent:
            lp = lp.masked_fill(~present, float("-inf"))
        elif rcp.absent_offset:
            lp = lp - rcp.absent_offset * (~present).to(lp.dtype)
        loss = F.cross_entropy(lp, y[:b], weight=pcw)
        if rcp.replay:
            loss = rcp.patient_weight * loss + (1 - rcp.patient_weight) * F.cross_entropy(logits[b:], y[b:])
        if ref is not None:
            loss = loss + rcp.l2sp * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, ref))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    m.requires_grad_(False)
    return m.eval()


def digits(a: np.ndarray) -> str:
    return "".join(map(str, np.asarray(a, np.int64)))


def undigits(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), np.uint8).astype(np.int64) - 48


def cmd_b(args) -> int:
    rcp = Recipe(**{k: getattr(args, k) for k in asdict(Recipe())})
    path = OUT / "runs" / f"{args.name}.json"
    if path.exists() and not args.force:
        log(f"{path} exists (--force to rerun)")
        return 0
    data = load(DS1)  # DS1 only: no DS2 beat is read for B
    assert set(np.unique(data.record).astype(str)) == set(DS1)
    cal = data.rpeak < CAL_END
    folds = interpatient_folds(4)
    out = {"name": args.name, "recipe": asdict(rcp), "label": rcp.label(), "seeds": {},
           "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for seed in args.seeds:
        recs, ys, cal_pred, uncal_pred, times, cpu = [], [], [], [], [], []
        for k, held in enumerate(folds):
            model0 = load_fold_model(seed, k)
            tr_idx = np.flatnonzero(~np.isin(data.record, [int(r) for r in held]))
            pool = pool_cls = None
            if rcp.replay:
                pidx = replay_pool(data, tr_idx, rcp.replay_pool, seed * 100 + k)
                allp = np.concatenate(list(pidx.values()))
                pool = subset(data, allp)
                pool_cls = [np.flatnonzero(pool.y.numpy() == c) for c in range(len(NAMES))]
            for r in held:
                m_r = data.record == int(r)
                pat = subset(data, np.flatnonzero(m_r & cal))
                test = subset(data, np.flatnonzero(m_r & ~cal))
                t0, c0 = time.perf_counter(), time.process_time()
                m = calibrate(model0, pat, pool, pool_cls, rcp, seed * 1000 + int(r))
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                p_cal = predict(m, test, 512, True)[0]
                p_unc = predict(model0, test, 512, True)[0]
                recs.append(np.full(len(test), int(r)))
                ys.append(test.y.numpy())
                cal_pred.append(p_cal)
                uncal_pred.append(p_unc)
        out["seeds"][str(seed)] = {"record": [int(v) for v in np.concatenate(recs)], "y": digits(np.concatenate(ys)),
                                   "cal": digits(np.concatenate(cal_pred)), "uncal": digits(np.concatenate(uncal_pred)),
                                   "calib_seconds": times, "calib_cpu_seconds": cpu}
        s = summarize_seed(out["seeds"][str(seed)], data)
        log(f"{args.name} seed {seed}: " + fmt_summary(s) + f" | calib {np.median(times):.2f} s median, {max(times):.2f} max")
    path.parent.mkdir(parents=True, exist_ok=True)
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    path.write_text(json.dumps(out))
    return 0


def no_s_records(data) -> list[int]:
    """DS1 records whose calibration minutes hold no S beat."""
    cal = data.rpeak < CAL_END
    return [int(r) for r in DS1 if not np.any((data.record == int(r)) & cal & (data.y == 1))]


_NO_S = None


def summarize_seed(run: dict, data=None) -> dict:
    global _NO_S
    if _NO_S is None:
        _NO_S = no_s_records(data if data is not None else load(DS1))
    rec = np.asarray(run["record"])
    y = undigits(run["y"])
    out = {}
    for which in ("uncal", "cal"):
        p = undigits(run[which])
        k = key_class_stats(y, p, NAMES)
        w = rec != DOMINANT_S
        k209 = key_class_stats(y[w], p[w], NAMES)
        ns = np.isin(rec, _NO_S) & (y == 1)
        out[which] = {"S_Se": k["S"]["Se"], "S_+P": k["S"]["+P"], "S_F1": k["S"]["F1"],
                      "V_Se": k["V"]["Se"], "V_+P": k["V"]["+P"], "V_F1": k["V"]["F1"],
                      "S_F1_wo209": k209["S"]["F1"], "noS_S_Se": float((p[ns] == 1).mean()),
                      "noS_S_n": int(ns.sum()), "S207": int(((rec == 207) & (y == 1) & (p == 1)).sum()),
                      "primary": (k["S"]["F1"] + k["V"]["F1"]) / 2}
    return out


def fmt_summary(s: dict) -> str:
    c, u = s["cal"], s["uncal"]
    return (f"primary {u['primary']:.4f} -> {c['primary']:.4f} | S Se {c['S_Se']:.3f} +P {c['S_+P'] or 0:.3f} "
            f"F1 {c['S_F1']:.3f} (w/o209 {c['S_F1_wo209']:.3f}) | V Se {c['V_Se']:.3f} +P {c['V_+P'] or 0:.3f} "
            f"F1 {c['V_F1']:.3f} | noS S Se {u['noS_S_Se']:.3f} -> {c['noS_S_Se']:.3f} (207: {u['S207']} -> {c['S207']})")


def cmd_b_table(args) -> int:
    data = load(DS1)
    cols = ["S_Se", "S_+P", "S_F1", "V_Se", "V_+P", "V_F1", "S_F1_wo209", "noS_S_Se", "S207", "primary"]
    rows = []
    for name in args.names:
        run = json.loads((OUT / "runs" / f"{name}.json").read_text())
        per = {s: summarize_seed(v, data) for s, v in run["seeds"].items()}
        t = np.concatenate([v["calib_seconds"] for v in run["seeds"].values()])
        rows.append((name, run["label"], per, t))
    if args.uncal:
        name, _, per, _ = rows[0]
        rows.insert(0, ("uncalibrated", "pretrained fold models", {s: {"cal": v["uncal"], "uncal": v["uncal"]}
                                                                   for s, v in per.items()}, None))
    print("| recipe | " + " | ".join(cols) + " | noS S Se uncal | primary per seed | calib s (median / max) |")
    print("|---|" + "---:|" * (len(cols) + 3))
    for name, label, per, t in rows:
        mean = {c: np.mean([v["cal"][c] or 0 for v in per.values()]) for c in cols}
        unc = np.mean([v["uncal"]["noS_S_Se"] for v in per.values()])
        seeds = " / ".join(f"{v['cal']['primary']:.3f}" for v in per.values())
        tt = "-" if t is None else f"{np.median(t):.2f} / {np.max(t):.2f}"
        print(f"| {name} | " + " | ".join(f"{mean[c]:.3f}" if c != "S207" else f"{mean[c]:.1f}" for c in cols)
              + f" | {unc:.3f} | {seeds} | {tt} |")
        if args.per_seed:
            for s, v in per.items():
                print(f"| {name} seed {s} | " + " | ".join(f"{v['cal'][c] or 0:.3f}" if c != "S207" else
                                                          f"{v['cal'][c]}" for c in cols)
                      + f" | {v['uncal']['noS_S_Se']:.3f} | | |")
    if args.labels:
        print()
        for name, label, _, _ in rows:
            print(f"- {name}: {label}")
    return 0


# ---------------------------------------------------------------------------------------------
# A: the literature's protocol (from scratch on a common set + the record's first 5 minutes)
# ---------------------------------------------------------------------------------------------

@dataclass
class ARecipe:
    lr: float = 3e-3        # AdamW learning rate (linear warm-up, then constant)
    batch: int = 64         # beats per step (shuffled epochs over the training beats)
    wd: float = 1e-4        # AdamW weight decay
    weights: str = "none"   # class weights of the loss from the training beats: none | sqrt | inverse
    warmup: int = 50        # warm-up steps
    steps: int = 800        # a-final: optimiser steps; a-choose: the longest checkpoint


def common_set(data, test_rec: str, seed: int) -> np.ndarray:
    """75 N, 75 S, 75 V (drawn with `seed`), all F and all Q beats of records 100-124 (paced
    excluded) other than `test_rec`: the literature's 245-beat common training set."""
    rng = np.random.default_rng(seed)
    pool = np.isin(data.record, [int(r) for r in COMMON_POOL if r != str(test_rec)])
    idx = [rng.choice(np.flatnonzero(pool & (data.y == c)), 75, replace=False) for c in range(3)]
    idx += [np.flatnonzero(pool & (data.y == c)) for c in (3, 4)]
    return np.sort(np.concatenate(idx))


def train_a(tr: BeatTensors, rcp: ARecipe, seed: int, checkpoints: list[int]):
    """liteecgnet from scratch on `tr`; yields (step, model in eval mode) at each checkpoint."""
    from engine import class_weights
    m = new_model(seed)
    m.set_rr_stats(tr.rr)
    w = class_weights(tr.y.numpy(), len(NAMES), rcp.weights) if rcp.weights != "none" else None
    opt = torch.optim.AdamW(m.parameters(), lr=rcp.lr, weight_decay=rcp.wd)
    g = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(len(tr), generator=g), 0
    n = len(tr)
    for s in range(1, max(checkpoints) + 1):
        for gr in opt.param_groups:
            gr["lr"] = rcp.lr * min(1.0, s / rcp.warmup)
        if pos + rcp.batch > n:
            order, pos = torch.randperm(n, generator=g), 0
        i = order[pos:pos + rcp.batch]
        pos += rcp.batch
        m.train()
        loss = F.cross_entropy(m(tr.x[i], tr.rr[i]), tr.y[i], weight=w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s in checkpoints:
            yield s, m.eval()


def a_scores(y: np.ndarray, p: np.ndarray) -> dict:
    k = key_class_stats(y, p, NAMES)
    return {"S_Se": k["S"]["Se"], "S_+P": k["S"]["+P"], "S_F1": k["S"]["F1"], "V_Se": k["V"]["Se"],
            "V_+P": k["V"]["+P"], "V_F1": k["V"]["F1"], "S_n": k["S"]["n"], "V_n": k["V"]["n"],
            "primary": (k["S"]["F1"] + k["V"]["F1"]) / 2}


def fmt_a(s: dict) -> str:
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"S Se {f(s['S_Se'])} +P {f(s['S_+P'])} F1 {f(s['S_F1'])} (n {s['S_n']}) | "
            f"V Se {f(s['V_Se'])} +P {f(s['V_+P'])} F1 {f(s['V_F1'])} (n {s['V_n']}) | primary {s['primary']:.4f}")


def cmd_a_choose(args) -> int:
    """Choices for A from calibration minutes only: train on common set + minutes 0-4 of the record,
    validate on its minute 4-5, pooled over the 44 records. No beat of a record's minutes 5-30 is
    read except the common set's (the protocol's training beats from records 100-124, never the
    validation record's own)."""
    rcp = ARecipe(**{k: getattr(args, k) for k in asdict(ARecipe())})
    checkpoints = sorted(args.checkpoints)
    data = load(A_RECORDS)
    out = {"name": args.name, "recipe": asdict(rcp), "checkpoints": checkpoints, "seeds": {}}
    for seed in args.seeds:
        ys, preds, recs = [], {c: [] for c in checkpoints}, []
        for r in A_RECORDS:
            m_r = data.record == int(r)
            common = common_set(data, r, seed)
            assert not np.any(data.record[common] == int(r))
            tr_idx = np.concatenate([common, np.flatnonzero(m_r & (data.rpeak < VAL_START))])
            va_idx = np.flatnonzero(m_r & (data.rpeak >= VAL_START) & (data.rpeak < CAL_END))
            assert np.all(data.rpeak[va_idx] < CAL_END)
            tr, va = subset(data, tr_idx), subset(data, va_idx)
            for step, m in train_a(tr, rcp, seed * 1000 + int(r), checkpoints):
                preds[step].append(predict(m, va, 512, True)[0])
            ys.append(va.y.numpy())
            recs.append(np.full(len(va), int(r)))
        y = np.concatenate(ys)
        out["seeds"][str(seed)] = {"y": digits(y), "record": [int(v) for v in np.concatenate(recs)],
                                   **{str(c): digits(np.concatenate(preds[c])) for c in checkpoints}}
        for c in checkpoints:
            log(f"{args.name} seed {seed} steps {c}: " + fmt_a(a_scores(y, np.concatenate(preds[c]))))
    path = OUT / "runs" / f"A_{args.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return 0


def cmd_a_final(args) -> int:
    """The one final evaluation of A: train on common set + minutes 0-5, test on minutes 5-30."""
    rcp = ARecipe(**{k: getattr(args, k) for k in asdict(ARecipe())})
    data = load(A_RECORDS)
    cal = data.rpeak < CAL_END
    out = {"recipe": asdict(rcp), "seeds": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    sets = {"44 records": A_RECORDS, "24 records (200-234)": A_SUBSET, "DS2 (22)": list(DS2), "DS1 (22)": list(DS1)}
    for seed in args.seeds:
        ys, ps, recs, times = [], [], [], []
        t_all = time.perf_counter()
        for r in A_RECORDS:
            m_r = data.record == int(r)
            common = common_set(data, r, seed)
            assert not np.any(data.record[common] == int(r))
            tr = subset(data, np.concatenate([common, np.flatnonzero(m_r & cal)]))
            te = subset(data, np.flatnonzero(m_r & ~cal))
            t0 = time.perf_counter()
            (_, m), = train_a(tr, rcp, seed * 1000 + int(r), [rcp.steps])
            times.append(time.perf_counter() - t0)
            ps.append(predict(m, te, 512, True)[0])
            ys.append(te.y.numpy())
            recs.append(np.full(len(te), int(r)))
        y, p, rec = np.concatenate(ys), np.concatenate(ps), np.concatenate(recs)
        out["seeds"][str(seed)] = {"y": digits(y), "pred": digits(p), "record": [int(v) for v in rec],
                                   "train_seconds": times, "total_seconds": time.perf_counter() - t_all}
        for name, rs in sets.items():
            w = np.isin(rec, [int(v) for v in rs])
            log(f"A final seed {seed} {name}: " + fmt_a(a_scores(y[w], p[w])))
        log(f"A final seed {seed}: training {np.median(times):.2f} s median per record, "
            f"{time.perf_counter() - t_all:.0f} s for the 44 records")
    path = OUT / "runs" / "A_final.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return 0


def cmd_a_table(args) -> int:
    run = json.loads((OUT / "runs" / "A_final.json").read_text())
    sets = {"44 records": A_RECORDS, "24 records (200-234)": A_SUBSET, "DS2 (22)": list(DS2), "DS1 (22)": list(DS1)}
    cols = ["S_Se", "S_+P", "S_F1", "V_Se", "V_+P", "V_F1"]
    print("| test set | seed | " + " | ".join(cols) + " |")
    print("|---|---|" + "---:|" * len(cols))
    for name, rs in sets.items():
        per = []
        for seed, v in run["seeds"].items():
            y, p, rec = undigits(v["y"]), undigits(v["pred"]), np.asarray(v["record"])
            w = np.isin(rec, [int(x) for x in rs])
            s = a_scores(y[w], p[w])
            per.append(s)
            print(f"| {name} | {seed} | " + " | ".join(f"{s[c] or 0:.3f}" for c in cols) + " |")
        print(f"| {name} | mean | " + " | ".join(f"{np.mean([s[c] or 0 for s in per]):.3f}" for c in cols) + " |")
    return 0


def cmd_time(args) -> int:
    """Calibration time per patient (one thread): every DS1 record calibrated by its fold's model
    of one seed, after one untimed warm-up calibration; wall and CPU seconds."""
    rcp = Recipe(**{k: getattr(args, k) for k in asdict(Recipe())})
    data = load(DS1)
    cal = data.rpeak < CAL_END
    folds = interpatient_folds(4)
    wall, cpu, beats = [], [], []
    for k, held in enumerate(folds):
        model0 = load_fold_model(args.seed, k)
        tr_idx = np.flatnonzero(~np.isin(data.record, [int(r) for r in held]))
        pool = pool_cls = None
        if rcp.replay:
            allp = np.concatenate(list(replay_pool(data, tr_idx, rcp.replay_pool, args.seed * 100 + k).values()))
            pool = subset(data, allp)
            pool_cls = [np.flatnonzero(pool.y.numpy() == c) for c in range(len(NAMES))]
        for i, r in enumerate(held):
            pat = subset(data, np.flatnonzero((data.record == int(r)) & cal))
            if k == 0 and i == 0:
                calibrate(model0, pat, pool, pool_cls, rcp, 0)  # warm-up, untimed
            t0, c0 = time.perf_counter(), time.process_time()
            calibrate(model0, pat, pool, pool_cls, rcp, args.seed * 1000 + int(r))
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            beats.append(len(pat))
    log(f"{rcp.label()}: torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}; "
        f"per patient wall {np.median(wall):.3f} s median, {np.max(wall):.3f} max, {np.sum(wall):.1f} s for 22; "
        f"CPU {np.median(cpu):.3f} s median, {np.max(cpu):.3f} max; {np.median(beats):.0f} calibration beats median")
    return 0


def cmd_b_records(args) -> int:
    """Per DS1 record, summed over the seeds: S and V beats found / present and false S / V calls,
    uncalibrated -> calibrated (the recipe's run)."""
    data = load(DS1)
    cal = data.rpeak < CAL_END
    run = json.loads((OUT / "runs" / f"{args.name}.json").read_text())
    seeds = list(run["seeds"])
    print(f"{args.name} ({run['label']}), sums over seeds {' '.join(seeds)}\n")
    print("| record | cal S | cal V | test S | S found uncal -> cal | false S uncal -> cal | test V | V found uncal -> cal "
          "| false V uncal -> cal |")
    print("|---|---:|---:|---:|---|---|---:|---|---|")
    for r in sorted(DS1, key=int):
        m = (data.record == int(r)) & cal
        row = [r, int((data.y[m] == 1).sum()), int((data.y[m] == 2).sum())]
        acc = {}
        for which in ("uncal", "cal"):
            for s in seeds:
                v = run["seeds"][s]
                w = np.asarray(v["record"]) == int(r)
                y, p = undigits(v["y"])[w], undigits(v[which])[w]
                for c in (1, 2):
                    acc.setdefault((which, c, "tp"), 0)
                    acc.setdefault((which, c, "fp"), 0)
                    acc[(which, c, "tp")] += int(((y == c) & (p == c)).sum())
                    acc[(which, c, "fp")] += int(((y != c) & (p == c)).sum())
                    acc[("n", c)] = int((y == c).sum())
        for c in (1, 2):
            row += [acc[("n", c)] * len(seeds), f"{acc[('uncal', c, 'tp')]} -> {acc[('cal', c, 'tp')]}",
                    f"{acc[('uncal', c, 'fp')]} -> {acc[('cal', c, 'fp')]}"]
        print("| " + " | ".join(map(str, row)) + " |")
    return 0


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    for k, v in asdict(Recipe()).items():
        p.add_argument("--" + k.replace("_", "-"), dest=k, type=type(v), default=v)


def main() -> int:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("table")
    p = sub.add_parser("pretrain")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p = sub.add_parser("b")
    p.add_argument("--name", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--force", action="store_true")
    add_recipe_args(p)
    p = sub.add_parser("b-table")
    p.add_argument("names", nargs="+")
    p.add_argument("--uncal", action="store_true", help="first row: the uncalibrated fold models")
    p.add_argument("--labels", action="store_true")
    p.add_argument("--per-seed", action="store_true", help="a row per seed under each recipe")
    p = sub.add_parser("b-records")
    p.add_argument("name")
    p = sub.add_parser("time")
    p.add_argument("--seed", type=int, default=1337)
    add_recipe_args(p)
    for name in ("a-choose", "a-final"):
        p = sub.add_parser(name)
        p.add_argument("--seeds", type=int, nargs="+", default=[1337] if name == "a-choose" else list(SEEDS))
        for k, v in asdict(ARecipe()).items():
            p.add_argument("--" + k.replace("_", "-"), dest=k, type=type(v), default=v)
        if name == "a-choose":
            p.add_argument("--name", required=True)
            p.add_argument("--checkpoints", type=int, nargs="+", default=[200, 400, 800])
    sub.add_parser("a-table")
    args = ap.parse_args()
    return {"table": cmd_table, "pretrain": cmd_pretrain, "b": cmd_b, "b-table": cmd_b_table,
            "a-choose": cmd_a_choose, "a-final": cmd_a_final, "a-table": cmd_a_table,
            "time": cmd_time, "b-records": cmd_b_records}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
