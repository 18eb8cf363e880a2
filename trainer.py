"""Train and evaluate one lightweight beat classifier on MIT-BIH.

    python trainer.py --model liteecgnet --epochs 30 --batch-size 256 --lr 3e-3 --cache

Reads beats through utils.load_beats (cached), splits them (dataset.load_split), trains with
AdamW + warm-up/cosine schedule and early stopping on validation macro-F1, restores the best
weights, touches the test part once, and writes (atomically) into --out-dir:

    ecg_lightweight_{model}_{timestamp}.pt        checkpoint that rebuilds model + preprocessing
    eval_report_{model}_{timestamp}.json          evaluation report (schema in README.md)
    ecg_lightweight_{model}_{timestamp}.last.pt   training state for --resume (removed when done)

The run reads top to bottom in `train`: arguments -> data -> model -> fit -> test -> write.
`--eval-only CKPT` hands over to evaluate.py.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import evaluate
from checkpoint import FINAL, TRAINING_KEYS, TRAINING_STATE, Checkpoint
from cli import UsageError, log, run_cli
from distributed import World, exit_process, launch_env
from config import MODEL_CONFIGS
from dataset import DS1, BeatTensors, interpatient_folds, limit_per_class, load_split
from beats import CLASS_NAMES, key_class
from engine import (OFFSET_GRID, WeightAverage, adapted_predict, class_weights, cpu_state, lr_lambda, make_loss,
                    patient_balance_weights, predict, prior_adapted, train_one_epoch, tune_offsets)
from metrics import bootstrap_ci, classification_metrics, key_class_stats
from models import Ensemble, create_model
from options import adopt_checkpoint_args, data_kwargs, parse_args, prepare_run, preproc_from_args
from report import environment, run_stamp, versions, write_json


@dataclass
class FitOptions:
    """What the training loop needs to know (from the command line, or a resumed run's)."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    seed: int
    focal: bool
    focal_gamma: float
    class_weights: str | None   # None | "inverse" | "sqrt"
    patient_balance: float      # > 0: per-beat weights evening out patients within a class
    augment_fs: int | None      # sampling rate when augmenting, else None
    quiet: bool
    template_swap: float = 0.0  # > 0: share of training beats moved onto another beat's template (engine.swap_templates)
    ema_epochs: float = 0.0     # > 0: evaluate and keep a moving average of the weights (engine.WeightAverage)
    adapt_norm: float = 0.0     # > 0: validate with BN statistics adapted per record (engine.adapted_predict)
    adapt_stats: str = "both"   # which BN statistics adapt: "both" (means and variances) or "mean"
    adapt_prior: float = 0.0    # > 0: validate with class priors adapted per record (engine.prior_adapted)
    adapt_classes: tuple[int, ...] = ()  # with adapt_prior: the classes whose prior adapts; () = all
    label_smoothing: float = 0.0  # > 0: label-smoothed cross-entropy (engine.Loss)
    stop_epoch: int | None = None  # stop after this epoch of the `epochs`-long schedule (--cv's final fit)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "FitOptions":
        return cls(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                   weight_decay=args.weight_decay, patience=args.patience, seed=args.seed,
                   focal=args.focal, focal_gamma=args.focal_gamma, label_smoothing=args.label_smoothing,
                   class_weights=args.class_weights,
                   patient_balance=args.patient_balance,
                   augment_fs=args.fs if args.augment else None, quiet=args.quiet,
                   ema_epochs=args.ema_epochs, template_swap=args.template_swap, adapt_norm=args.adapt_norm,
                   adapt_stats=args.adapt_stats, adapt_prior=args.adapt_prior,
                   adapt_classes=tuple(CLASS_NAMES[args.classes].index(c) for c in args.adapt_classes))


def new_state() -> dict:
    """fit's state before the first epoch (checkpoint.TRAINING_KEYS are what --resume keeps of it)."""
    return {"epoch": 0, "history": [], "best_val": {}, "best_state": None, "bad_epochs": 0, "ema_state": None,
            "members": []}


# --ensemble K: member m trains from seed + MEMBER_SEED_STEP * m (its initialisation, batch order and
# dropout), so member 0 is exactly the single-model run of the same seed.
MEMBER_SEED_STEP = 10007


def member_seed(seed: int, member: int) -> int:
    """The seed of ensemble member `member` of a run seeded `seed`."""
    return seed + MEMBER_SEED_STEP * member


def validate(model, va: BeatTensors, tr: BeatTensors, opts: FitOptions, use_rr: bool,
             loss_fn) -> tuple[np.ndarray, np.ndarray, float]:
    """The validation part's (predictions, probabilities, loss). The --cv-only probes adapt them to
    each held-out record without labels: --adapt-norm its BatchNorm statistics, --adapt-prior its
    class prior (then the loss is the re-weighted outputs' negative log-likelihood)."""
    samples = lambda sec: int(round(sec * model.io.fs))  # noqa: E731  (a probe's block length)
    if opts.adapt_norm:
        vp, vprob, loss = adapted_predict(model, va, opts.batch_size, use_rr, samples(opts.adapt_norm), loss_fn,
                                          opts.adapt_stats)
    else:
        vp, vprob, loss = predict(model, va, opts.batch_size, use_rr, loss_fn)
    if opts.adapt_prior:
        y = va.y.cpu().numpy()
        train_prior = np.bincount(tr.y.cpu().numpy(), minlength=vprob.shape[1]) / len(tr)
        adapt = np.isin(np.arange(vprob.shape[1]), opts.adapt_classes) if opts.adapt_classes else None
        vprob = prior_adapted(vprob, va.record, va.rpeak, samples(opts.adapt_prior), train_prior, adapt=adapt)
        vp, loss = vprob.argmax(1), float(-np.log(np.clip(vprob[np.arange(len(y)), y], 1e-12, None)).mean())
    return vp, vprob, loss


def fit(model, tr: BeatTensors, va: BeatTensors | None, class_names: list[str], opts: FitOptions,
        state: dict, save_state: Callable[[dict], None], device, log=log,
        on_epoch: Callable[[int, np.ndarray, float, np.ndarray], None] | None = None,
        world: World | None = None) -> dict:
    """Train with early stopping on validation macro-F1; returns the state (best weights,
    history, ...). After every epoch `save_state(state)` persists it for --resume (before the
    epoch's line is printed), and `on_epoch(epoch, val predictions, val loss, val probabilities)`
    sees the epoch's validation (cross-validation collects held-out outputs so). Without a
    validation part (`va` None) the last epoch is the best. Ctrl-C stops cleanly after marking the state
    interrupted; the caller evaluates the best weights.

    `world` (a distributed run, see distributed.py): every process trains its shard of each
    batch; rank 0 alone validates, keeps the state and logs, and its early-stopping decision
    and any process's Ctrl-C reach all processes at the same step."""
    world = world or World()
    use_rr = model.rr_dim > 0
    if model.rr_norm and state["epoch"] == 0:  # standardisation from the training part (resumed: in the weights)
        model.set_rr_stats(tr.rr)
    weight = (class_weights(tr.y.cpu().numpy(), len(class_names), opts.class_weights).to(device)
              if opts.class_weights else None)
    loss_fn = make_loss(opts.focal, opts.focal_gamma, weight, opts.label_smoothing)
    tr.w = (torch.from_numpy(patient_balance_weights(tr.y.cpu().numpy(), tr.record, opts.patient_balance))
            .to(tr.y.device) if opts.patient_balance else None)
    net = world.wrap(model)  # DDP under torchrun (it averages the gradients); `model` stays the bare module
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    steps = opts.epochs * tr.num_batches(opts.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(steps, warmup=min(200, steps // 10 + 1)))
    if state.get("optimizer"):  # resumed
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
    # --ema-epochs: the moving average (time constant in optimiser steps) is what is validated and kept
    average = (WeightAverage(model, opts.ema_epochs * tr.num_batches(opts.batch_size))
               if opts.ema_epochs > 0 else None)
    if average is not None and state.get("ema_state"):
        average.load_state_dict(state["ema_state"])
    evaluated = average.model if average is not None else model
    world.defer_sigint = True  # a distributed run's Ctrl-C waits for the next shared check (distributed.py)
    try:
        for epoch in range(state["epoch"] + 1, (opts.stop_epoch or opts.epochs) + 1):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(opts.seed * 1000 + epoch)  # per-epoch order: resumable
            world.seed_dropout(opts.seed, epoch)
            tr_loss, (tp, ty) = train_one_epoch(net, tr, opt, sched, loss_fn, opts.batch_size, use_rr,
                                                gen, f"epoch {epoch}/{opts.epochs}", opts.quiet,
                                                augment_fs=opts.augment_fs, world=world, average=average,
                                                template_swap=opts.template_swap)
            t_train = time.perf_counter() - t0
            early_stop = False
            if world.is_main:  # rank 0 validates, keeps the state and prints; the others await its decision
                va_m, va_loss = {"macro_f1": None, "accuracy": None}, None
                if va is not None:
                    vp, vprob, va_loss = validate(evaluated, va, tr, opts, use_rr, loss_fn)
                    va_m = classification_metrics(va.y.cpu().numpy(), vp, class_names)
                    if on_epoch:
                        on_epoch(epoch, vp, va_loss, vprob)
                tr_f1 = classification_metrics(ty, tp, class_names)["macro_f1"]
                sec = time.perf_counter() - t0
                row = dict(epoch=epoch, train_loss=tr_loss, train_f1=tr_f1, val_loss=va_loss,
                           val_f1=va_m["macro_f1"], val_accuracy=va_m["accuracy"],
                           lr=opt.param_groups[0]["lr"], seconds=sec, train_seconds=t_train,
                           train_beats_per_s=len(tr) / t_train)
                state["history"].append(row)
                better = va is None or va_m["macro_f1"] > state["best_val"].get("macro_f1", -1.0)
                if better:
                    state["best_val"] = dict(epoch=epoch, macro_f1=va_m["macro_f1"],
                                             accuracy=va_m["accuracy"], loss=va_loss)
                    state["best_state"] = cpu_state(evaluated)
                    state["bad_epochs"] = 0
                else:
                    state["bad_epochs"] += 1
                state.update(epoch=epoch, model_state=model.state_dict(), optimizer=opt.state_dict(),
                             scheduler=sched.state_dict(), torch_rng=torch.get_rng_state(),
                             ema_state=average.state_dict() if average is not None else None)
                # state first, then the line: whoever acts on the line finds the state on disk
                save_state(state)
                val = (f" | val loss {va_loss:.4f} F1 {va_m['macro_f1']:.4f}" if va is not None else "")
                log(f"epoch {epoch:3d}/{opts.epochs}  train loss {tr_loss:.4f} F1 {tr_f1:.4f}{val} | "
                    f"lr {row['lr']:.2e} | {sec:5.1f} s ({row['train_beats_per_s']:.0f} beats/s)"
                    f"{'  *best' if better and va is not None else ''}")
                early_stop = state["bad_epochs"] >= opts.patience
            early_stop, interrupted = world.any(early_stop, world.interrupt_seen)
            if early_stop:
                log(f"early stopping: no val macro-F1 gain for {opts.patience} epochs")
                break
            if interrupted:  # a distributed run's Ctrl-C, seen after the epoch's last check
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        state["interrupted"] = True
        log("\ninterrupted: evaluating the best model so far")
    finally:
        world.defer_sigint = False
    return state


def model_spec(args: argparse.Namespace, cfg, num_classes: int) -> dict:
    """create_model's arguments for this run: the data's inputs, the --model-set and --coord overrides.
    Every feature set but 'local' ('patient', 'robust', 'sequence', 'sinus') is standardised inside the
    model and never dropped out (rr_norm); the original 'local' set keeps its original treatment,
    so earlier results reproduce."""
    overrides = {**dict(args.model_set or []), **({} if args.coord is None else {"coord": args.coord})}
    rr_norm = bool(args.rr) and cfg.rr_features != "local"
    return dict(num_classes=num_classes, rr_dim=cfg.rr_dim if args.rr else 0, fs=cfg.fs,
                in_channels=cfg.channels, rr_norm=rr_norm, rr_hidden=args.rr_hidden if rr_norm else 0,
                feature_drop=args.feature_drop if rr_norm else 0.0,
                template_mode=args.template_mode,  # options.check_args: "difference" needs --template
                model_config={**MODEL_CONFIGS[args.model], **overrides})


def build(args: argparse.Namespace, spec: dict, device) -> torch.nn.Module:
    io = {k: v for k, v in spec.items() if k != "model_config"}
    return create_model(args.model, **io, **spec["model_config"]).to(device)


def assemble(args: argparse.Namespace, spec: dict, states: list[dict], device) -> torch.nn.Module:
    """The ensemble of --ensemble K members from their trained weights (state_dicts)."""
    members = []
    for st in states:
        m = build(args, spec, device)
        m.load_state_dict(st)
        members.append(m)
    return Ensemble(members).to(device)


def cross_validate(args: argparse.Namespace, data, device, log=log) -> dict:
    """--cv K: choose the number of epochs inside DS1, never looking at DS2.

    DS1 is cut into K patient-grouped folds (dataset.interpatient_folds). For each fold a model
    is trained on the other folds for the full --epochs schedule (no early stopping) and
    predicts the held-out fold after every epoch; the held-out predictions of all folds are
    pooled (every DS1 beat predicted once, by a model that never saw its patient) and the epoch
    with the best pooled macro-F1 is chosen. -> the "cv" section of the report.

    --ensemble K: each fold trains K members (member_seed), the held-out prediction is the argmax of
    their mean probability, the pooled loss their mean loss, and "members" gives each member's own
    pooled per-epoch macro-F1 (what K single runs of those seeds would have measured)."""
    t0 = time.perf_counter()
    folds = interpatient_folds(args.cv)
    if any(r not in DS1 for f in folds for r in f):  # the protocol's promise, checked where it is kept
        raise AssertionError("a cross-validation fold holds a record outside DS1")
    names, K = data.class_names, args.ensemble
    preds = np.full((args.epochs, len(data)), -1, np.int8)  # (epochs, N) held-out class per DS1 beat
    # (E, N, C) held-out probabilities (the members' mean)
    probs = np.zeros((args.epochs, len(data), len(names)), np.float32) if args.cv_offsets or K > 1 else None
    member_preds = np.full((K, args.epochs, len(data)), -1, np.int8) if K > 1 else None  # (K, E, N)
    losses = np.zeros(args.epochs)
    ds1 = np.flatnonzero(np.isin(data.record, [int(r) for r in DS1]))
    spec = model_spec(args, data.config, len(names))
    opts = replace(FitOptions.from_args(args), patience=args.epochs + 1)  # every epoch, no early stop
    for k, held in enumerate(folds):
        va_idx = np.flatnonzero(np.isin(data.record, [int(r) for r in held]))
        tr_idx = np.setdiff1d(ds1, va_idx)
        if args.class_limit is not None:
            tr_idx = limit_per_class(data.y, tr_idx, args.class_limit, args.seed)
        log(f"cv fold {k + 1}/{len(folds)}: held out {' '.join(held)} ({len(va_idx)} beats "
            f"{data.class_counts(va_idx)}), training on {len(tr_idx)} beats of the other DS1 records")
        tr, va = BeatTensors(data, tr_idx, device), BeatTensors(data, va_idx, device)
        for m in range(K):
            seed = member_seed(args.seed, m)
            if K > 1:
                log(f"cv fold {k + 1}/{len(folds)}: ensemble member {m + 1}/{K} (seed {seed})")
            torch.manual_seed(seed + 1000 * (k + 1))
            model = build(args, spec, device)

            def keep(epoch: int, vp: np.ndarray, loss: float, prob: np.ndarray, va_idx=va_idx, m=m) -> None:
                if K == 1:
                    preds[epoch - 1, va_idx] = vp
                else:
                    member_preds[m, epoch - 1, va_idx] = vp
                if probs is not None:
                    probs[epoch - 1, va_idx] += prob / K
                losses[epoch - 1] += loss * len(va_idx) / len(ds1) / K
            state = fit(model, tr, va, names, replace(opts, seed=seed), new_state(), lambda s: None, device, log,
                        on_epoch=keep)
            if state.get("interrupted"):
                raise KeyboardInterrupt
        if K > 1:
            preds[:, va_idx] = probs[:, va_idx].argmax(-1)
    per_epoch = []
    for e in range(args.epochs):
        yp = preds[e, ds1].astype(np.int64)
        m = classification_metrics(data.y[ds1], yp, names)
        per_epoch.append({"epoch": e + 1, "macro_f1": m["macro_f1"], "loss": float(losses[e]),
                          "N_recall": m["per_class"][names[0]]["recall"],
                          "key_classes": key_class_stats(data.y[ds1], yp, names)})
    best = dict(max(per_epoch, key=lambda r: r["macro_f1"]))  # the first of equals: fewer epochs
    chosen = preds[best["epoch"] - 1, ds1].astype(np.int64)
    if args.bootstrap:  # patients, not beats, are the unit a new-patient score varies with
        best["ci"] = bootstrap_ci(data.y[ds1], chosen, names, groups=data.record[ds1], n_boot=args.bootstrap,
                                  seed=args.seed)
    members = None
    if K > 1:  # each member alone: the single runs the ensemble is compared with
        members = []
        for m in range(K):
            f1 = [classification_metrics(data.y[ds1], member_preds[m, e, ds1].astype(np.int64), names)["macro_f1"]
                  for e in range(args.epochs)]
            e = int(np.argmax(f1))
            members.append({"seed": member_seed(args.seed, m), "per_epoch_macro_f1": f1,
                            "best": {"epoch": e + 1, "macro_f1": f1[e]}})
            log(f"cv: member {m + 1} (seed {members[-1]['seed']}) alone: best pooled held-out macro-F1 "
                f"{f1[e]:.4f} at epoch {e + 1}")
    log("cv: pooled held-out macro-F1 by epoch " + " ".join(f"{r['macro_f1']:.3f}" for r in per_epoch))
    k = best["key_classes"]
    log(f"cv: {best['epoch']} epochs chosen (pooled held-out macro-F1 {best['macro_f1']:.4f}"
        + "".join(f", {c} F1 {k[c]['F1']:.3f}" for c in k) + ")")
    out = {"k": len(folds), "folds": folds, "selection": "epoch of the best pooled held-out macro-F1 over "
           "DS1 (K patient-grouped folds, full schedule, no early stopping)", "chosen_epochs": best["epoch"],
           "best": best, "per_epoch": per_epoch, "held_out": held_out(data, ds1, chosen)}
    if members:
        out["members"] = members
    if args.cv_offsets:
        out["offsets"] = choose_offsets(probs[best["epoch"] - 1, ds1], data.y[ds1], data.record[ds1], names, folds,
                                        log)
        out["held_out"]["pred_offsets"] = out["offsets"].pop("pred")
    out["seconds"] = time.perf_counter() - t0
    return out


def choose_offsets(prob: np.ndarray, y: np.ndarray, record: np.ndarray, names: list[str], folds: list[list[str]],
                   log=log) -> dict:
    """--cv-offsets: the S and V log-probability offsets that maximise the pooled held-out macro-F1
    at the chosen epoch (engine.tune_offsets), with their cross-fitted scores (each fold scored
    with offsets chosen on the other folds: the honest estimate of what they bring)."""
    keys = [names.index(c) for c in (key_class(names, k) for k in ("S", "V")) if c is not None]
    logp = np.log(np.clip(prob, 1e-12, None))  # (N, C)
    idx = [np.flatnonzero(np.isin(record, [int(r) for r in held])) for held in folds]
    t = tune_offsets(logp, y, keys, idx)
    pred = t["cross_fitted_pred"]
    m = classification_metrics(y, pred, names)
    kc = key_class_stats(y, pred, names)
    chosen = " ".join(f"{n} {o:+.2f}" for n, o in zip(names, t["offsets"]) if o) or "none"
    log(f"cv: log-probability offsets {chosen} (pooled macro-F1 {t['in_sample_macro_f1']:.4f} on the beats that "
        f"chose them); cross-fitted pooled macro-F1 {m['macro_f1']:.4f}"
        + "".join(f", {c} F1 {kc[c]['F1']:.3f}" for c in kc))
    return {"offsets": t["offsets"], "grid": [float(v) for v in OFFSET_GRID],
            "in_sample_macro_f1": t["in_sample_macro_f1"],
            "cross_fitted": {"macro_f1": m["macro_f1"], "N_recall": m["per_class"][names[0]]["recall"],
                             "key_classes": kc},
            "pred": _digits(pred)}


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


def train(args: argparse.Namespace, given: set[str], log=log, world: World | None = None) -> int:
    """A training run (new, or resumed from args.resume): data -> model -> fit -> test -> write.
    `world`: this process's place in a distributed run (torchrun); rank 0 writes everything."""
    world = world or World()
    resumed = Checkpoint.load(args.resume) if args.resume else None
    if resumed:
        if resumed.kind != TRAINING_STATE:
            raise UsageError(f"{args.resume} is a final checkpoint; resume from the .last.pt file of the run")
        args = adopt_checkpoint_args(args, given, resumed.args, args.resume)
    device, out_dir = prepare_run(args, log, make_out_dir=world.is_main)
    if world.distributed:
        if args.cv:
            raise UsageError("--cv trains its folds in one process: run it with python trainer.py, not torchrun")
        if args.batch_size < world.size:
            raise UsageError(f"--batch-size {args.batch_size} is the global batch, split over {world.size} "
                             f"processes: give at least {world.size}")
    device = world.start(device)  # torchrun: joins the process group (gloo on the CPU, nccl on GPUs)
    cfg = resumed.preproc if resumed else preproc_from_args(args)
    t_start = time.perf_counter()

    # data
    data, splits = load_split(args.root, cfg, args.split, args.seed, log=log, **data_kwargs(args))
    cv = resumed.cv if resumed else (cross_validate(args, data, device, log) if args.cv else None)
    if args.cv_only:  # exploring: the folds' scores, no final model, DS2 untouched
        path = out_dir / f"cv_report_{args.model}_{run_stamp(out_dir)}.json"
        write_json({"model": args.model, "args": vars(args), "preprocessing": cfg.to_dict(),
                    "classes": data.class_names, "cv": cv,
                    "environment": environment(device, args.seed, world.describe())}, path)
        log(f"wrote {path} (cross-validation inside DS1 only; DS2 was not evaluated)")
        return 0

    # model (--ensemble K: K members trained one after the other, member m from member_seed(seed, m))
    K = args.ensemble
    spec = model_spec(args, cfg, len(data.class_names))
    stamp = resumed.stamp if resumed else run_stamp(out_dir)
    ckpt_path = out_dir / f"ecg_lightweight_{args.model}_{stamp}.pt"
    report_path = out_dir / f"eval_report_{args.model}_{stamp}.json"
    last_path = out_dir / f"ecg_lightweight_{args.model}_{stamp}.last.pt"
    ckpt = Checkpoint(model_name=args.model, **{k: v for k, v in spec.items() if k != "fs"},  # fs: preprocessing
                      class_names=data.class_names, members=K,
                      preprocessing=cfg.to_dict(), args=vars(args), versions=versions(), stamp=stamp, cv=cv)
    state = new_state()
    if resumed:  # model, optimizer, scheduler, RNG and early-stopping state (and finished members)
        state.update(resumed.training, best_val=resumed.best_val)
        best = state["best_val"].get("macro_f1")
        log(f"resuming {args.model}" + (f" member {len(state['members']) + 1}/{K}" if K > 1 else "")
            + f" after epoch {state['epoch']}" + (f" (best val F1 {best:.4f})" if best is not None else ""))

    def save_state(s: dict) -> None:
        Checkpoint(**{**vars(ckpt), "kind": TRAINING_STATE, "best_val": s["best_val"],
                      "training": {k: s[k] for k in TRAINING_KEYS}}).save(last_path)

    # fit
    tr = BeatTensors(data, splits.train, device)
    # none: --cv's final fit; in a distributed run only rank 0 validates
    va = BeatTensors(data, splits.val, device) if len(splits.val) and world.is_main else None
    opts = FitOptions.from_args(args)
    opts.quiet = opts.quiet or not world.is_main  # one progress bar
    if cv:
        opts.stop_epoch = cv["chosen_epochs"]  # the folds' schedule, stopped where the folds peaked
    where = str(device)
    if world.distributed:
        per, machines = args.batch_size // world.size, len({d.split("@")[-1] for d in world.devices})
        where = (f"{world.size} processes ({world.backend}, {machines} machine(s)), global batch {args.batch_size} "
                 f"= {per}{'' if args.batch_size % world.size == 0 else f'-{per + 1}'} beats per process")
    first = len(state["members"])  # members finished before a resume
    for m in range(first, K):
        seed = member_seed(args.seed, m)
        torch.manual_seed(seed)
        np.random.seed(seed)
        model = build(args, spec, device)
        if resumed and m == first:
            model.load_state_dict(resumed.training["model_state"])
        if m == first:
            n_params = sum(p.numel() for p in model.parameters())
            log(f"training {args.model} ({n_params:,} parameters{f', ensemble of {K}' if K > 1 else ''}) on {where}, "
                f"{len(tr)} beats/epoch" + (f", {opts.stop_epoch} epochs (chosen by cross-validation)" if cv else ""))
        if K > 1:
            log(f"ensemble member {m + 1}/{K} (seed {seed})")
        try:
            state = fit(model, tr, va, data.class_names, replace(opts, seed=seed), state, save_state, device, log,
                        world=world)
        except Exception:
            if world.is_main and last_path.exists():
                log(f"the last complete epoch's training state is kept: continue with --resume {last_path}")
            raise
        if state.get("interrupted"):  # every process sees it (fit shares it); only rank 0 has a best_state
            break
        if m < K - 1:  # the next member starts afresh; the finished ones ride along in its training state
            done = {k: state[k] for k in ("best_state", "best_val", "history")}
            state = {**new_state(), "members": state["members"] + [done]}
    if not world.is_main:  # rank 0 evaluates and writes
        return 130 if state.get("interrupted") else 0
    if state.get("interrupted") and last_path.exists():
        log(f"resume with --resume {last_path}")
    if state["best_state"] is None:
        log("stopped before the first epoch finished: nothing to evaluate, nothing written")
        return 130
    if K > 1:
        if state.get("interrupted"):
            log(f"interrupted during ensemble member {len(state['members']) + 1}/{K}: nothing evaluated or written")
            return 130
        done = state["members"] + [{k: state[k] for k in ("best_state", "best_val", "history")}]
        model = assemble(args, spec, [d["best_state"] for d in done], device)
        state["best_state"] = cpu_state(model)
        state["history"] = [{**row, "member": i} for i, d in enumerate(done) for row in d["history"]]
        state["best_val"] = {"epoch": None, "members": [d["best_val"] for d in done]}
        if va is not None:  # what early stopping saw, for the ensemble as a whole
            vp, _, _ = predict(model, va, args.batch_size, model.rr_dim > 0)
            vm = classification_metrics(va.y.cpu().numpy(), vp, data.class_names)
            state["best_val"].update(macro_f1=vm["macro_f1"], accuracy=vm["accuracy"])
    else:
        model.load_state_dict(state["best_state"])  # the test part sees the best weights only
    if cv and cv.get("offsets") and any(cv["offsets"]["offsets"]):  # --cv-offsets: into the output layer,
        with torch.no_grad():  # so evaluate.py, export.py and predict.py all apply them
            model.fc.bias += torch.tensor(cv["offsets"]["offsets"], dtype=model.fc.bias.dtype,
                                          device=model.fc.bias.device)
        state["best_state"] = cpu_state(model)
    if cv:  # no validation part: what the folds measured at the chosen epoch stands in
        state["best_val"] = {**({"members": state["best_val"]["members"]} if K > 1 else {}),
                             "epoch": cv["chosen_epochs"], "macro_f1": cv["best"]["macro_f1"],
                             "source": f"{cv['k']}-fold cross-validation inside DS1"}
    ckpt.state_dict, ckpt.best_val = state["best_state"], state["best_val"]
    ckpt.kind = FINAL
    ckpt.save(ckpt_path)

    # test, write
    test = evaluate.test_and_report(model, data, splits, ckpt, ckpt_path, report_path, args, device,
                                    stamp=stamp, history=state["history"], t_start=t_start,
                                    interrupted=bool(state.get("interrupted")), extra={"cv": cv} if cv else None,
                                    world=world.describe(), log=log)
    if not state.get("interrupted"):
        last_path.unlink(missing_ok=True)  # finished: the training state is no longer needed
    evaluate.log_result(test, log)
    log(f"wrote {ckpt_path}")
    log(f"wrote {report_path}")
    return 130 if state.get("interrupted") else 0


def run(args: argparse.Namespace, given: set[str], log=log) -> int:
    if args.no_stratified:
        args.split = "random"
    world = World.from_env()
    if args.eval_only:
        if world.distributed:
            raise UsageError("--eval-only evaluates in one process: python evaluate.py CKPT, not torchrun")
        return evaluate.evaluate_checkpoint(args, given, log)
    with world:  # ends the process group; a lost peer becomes one line
        return train(args, given, log, world)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: one line on stderr and a non-zero exit for every user error. Under torchrun,
    rank 0 prints the progress, the first process on each machine a user error (every process
    reads the same arguments), and every process its own failure, its rank in front."""
    prog = Path(sys.argv[0]).name if argv is None else "trainer.py"
    try:
        rank, local_rank, size = launch_env()
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if size > 1:
        prog = f"{prog} [rank {rank}/{size}]"
    return run_cli(prog, lambda: run(*parse_args(argv), log=log if rank == 0 else lambda msg: None),
                   user_errors=local_rank == 0)


if __name__ == "__main__":
    exit_process(main())  # sys.exit, minus the interpreter teardown after a process group
