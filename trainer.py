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
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import evaluate
from beats import RR_DIM
from checkpoint import FINAL, TRAINING_STATE, Checkpoint
from cli import UsageError, log, run_cli
from config import MODEL_CONFIGS
from dataset import BeatTensors, load_split
from engine import class_weights, lr_lambda, make_loss, predict, train_one_epoch
from metrics import classification_metrics
from models import create_model
from options import adopt_checkpoint_args, data_kwargs, parse_args, prepare_run, preproc_from_args
from report import versions


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
    augment_fs: int | None      # sampling rate when augmenting, else None
    quiet: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "FitOptions":
        return cls(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                   weight_decay=args.weight_decay, patience=args.patience, seed=args.seed,
                   focal=args.focal, focal_gamma=args.focal_gamma, class_weights=args.class_weights,
                   augment_fs=args.fs if args.augment else None, quiet=args.quiet)


def fit(model, tr: BeatTensors, va: BeatTensors, class_names: list[str], opts: FitOptions, state: dict,
        save_state: Callable[[dict], None], device, log=log) -> dict:
    """Train with early stopping on validation macro-F1; returns the state (best weights,
    history, ...). After every epoch `save_state(state)` persists it for --resume (before the
    epoch's line is printed). Ctrl-C stops cleanly after marking the state interrupted; the
    caller evaluates the best weights."""
    use_rr = model.rr_dim > 0
    weight = (class_weights(tr.y.cpu().numpy(), len(class_names), opts.class_weights).to(device)
              if opts.class_weights else None)
    loss_fn = make_loss(opts.focal, opts.focal_gamma, weight)
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    steps = opts.epochs * tr.num_batches(opts.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(steps, warmup=min(200, steps // 10 + 1)))
    if state.get("optimizer"):  # resumed
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
    try:
        for epoch in range(state["epoch"] + 1, opts.epochs + 1):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(opts.seed * 1000 + epoch)  # per-epoch order: resumable
            tr_loss, (tp, ty) = train_one_epoch(model, tr, opt, sched, loss_fn, opts.batch_size, use_rr,
                                                gen, f"epoch {epoch}/{opts.epochs}", opts.quiet,
                                                augment_fs=opts.augment_fs)
            t_train = time.perf_counter() - t0
            vp, _, va_loss = predict(model, va, opts.batch_size, use_rr, loss_fn)
            va_m = classification_metrics(va.y.cpu().numpy(), vp, class_names)
            tr_f1 = classification_metrics(ty, tp, class_names)["macro_f1"]
            sec = time.perf_counter() - t0
            row = dict(epoch=epoch, train_loss=tr_loss, train_f1=tr_f1, val_loss=va_loss,
                       val_f1=va_m["macro_f1"], val_accuracy=va_m["accuracy"],
                       lr=opt.param_groups[0]["lr"], seconds=sec, train_seconds=t_train,
                       train_beats_per_s=len(tr) / t_train)
            state["history"].append(row)
            better = va_m["macro_f1"] > state["best_val"].get("macro_f1", -1.0)
            if better:
                state["best_val"] = dict(epoch=epoch, macro_f1=va_m["macro_f1"],
                                         accuracy=va_m["accuracy"], loss=va_loss)
                state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            state.update(epoch=epoch, model_state=model.state_dict(), optimizer=opt.state_dict(),
                         scheduler=sched.state_dict(), torch_rng=torch.get_rng_state())
            # state first, then the line: whoever acts on the line finds the state on disk
            save_state(state)
            log(f"epoch {epoch:3d}/{opts.epochs}  train loss {tr_loss:.4f} F1 {tr_f1:.4f} | val loss "
                f"{va_loss:.4f} F1 {va_m['macro_f1']:.4f} | lr {row['lr']:.2e} | {sec:5.1f} s "
                f"({row['train_beats_per_s']:.0f} beats/s){'  *best' if better else ''}")
            if state["bad_epochs"] >= opts.patience:
                log(f"early stopping: no val macro-F1 gain for {opts.patience} epochs")
                break
    except KeyboardInterrupt:
        state["interrupted"] = True
        log("\ninterrupted: evaluating the best model so far")
    return state


def train(args: argparse.Namespace, given: set[str], log=log) -> int:
    """A training run (new, or resumed from args.resume): data -> model -> fit -> test -> write."""
    resumed = Checkpoint.load(args.resume) if args.resume else None
    if resumed:
        if resumed.kind != TRAINING_STATE:
            raise UsageError(f"{args.resume} is a final checkpoint; resume from the .last.pt file of the run")
        args = adopt_checkpoint_args(args, given, resumed.args, args.resume)
    device, out_dir = prepare_run(args, log)
    cfg = resumed.preproc if resumed else preproc_from_args(args)
    t_start = time.perf_counter()

    # data
    data, splits = load_split(args.root, cfg, args.split, args.seed, log=log, **data_kwargs(args))

    # model
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    rr_dim = RR_DIM if args.rr else 0
    model = create_model(args.model, num_classes=len(data.class_names), rr_dim=rr_dim, fs=cfg.fs).to(device)
    stamp = resumed.stamp if resumed else time.strftime("%Y%m%d_%H%M%S")
    ckpt_path = out_dir / f"ecg_lightweight_{args.model}_{stamp}.pt"
    report_path = out_dir / f"eval_report_{args.model}_{stamp}.json"
    last_path = out_dir / f"ecg_lightweight_{args.model}_{stamp}.last.pt"
    ckpt = Checkpoint(model_name=args.model, model_config=dict(MODEL_CONFIGS[args.model]),
                      num_classes=len(data.class_names), rr_dim=rr_dim, class_names=data.class_names,
                      preprocessing=cfg.to_dict(), args=vars(args), versions=versions(), stamp=stamp)
    state = {"epoch": 0, "history": [], "best_val": {}, "best_state": None, "bad_epochs": 0}
    if resumed:  # model, optimizer, scheduler, RNG and early-stopping state
        model.load_state_dict(resumed.training["model_state"])
        state.update(resumed.training, best_val=resumed.best_val)
        log(f"resuming {args.model} after epoch {state['epoch']} (best val F1 "
            f"{state['best_val'].get('macro_f1', float('nan')):.4f})")

    def save_state(s: dict) -> None:
        Checkpoint(**{**vars(ckpt), "kind": TRAINING_STATE, "best_val": s["best_val"],
                      "training": {k: s[k] for k in ("epoch", "model_state", "optimizer", "scheduler",
                                                     "torch_rng", "history", "best_state", "bad_epochs")}
                      }).save(last_path)

    # fit
    tr, va = BeatTensors(data, splits.train, device), BeatTensors(data, splits.val, device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {args.model} ({n_params:,} parameters) on {device}, {len(tr)} beats/epoch")
    try:
        state = fit(model, tr, va, data.class_names, FitOptions.from_args(args), state, save_state, device, log)
    except Exception:
        if last_path.exists():
            log(f"the last complete epoch's training state is kept: continue with --resume {last_path}")
        raise
    if state.get("interrupted") and last_path.exists():
        log(f"resume with --resume {last_path}")
    if state["best_state"] is None:
        log("stopped before the first epoch finished: nothing to evaluate, nothing written")
        return 130
    model.load_state_dict(state["best_state"])  # the test part sees the best weights only
    ckpt.state_dict, ckpt.best_val = state["best_state"], state["best_val"]
    ckpt.kind = FINAL
    ckpt.save(ckpt_path)

    # test, write
    test = evaluate.test_and_report(model, data, splits, ckpt, ckpt_path, report_path, args, device,
                                    stamp=stamp, history=state["history"], t_start=t_start,
                                    interrupted=bool(state.get("interrupted")), log=log)
    if not state.get("interrupted"):
        last_path.unlink(missing_ok=True)  # finished: the training state is no longer needed
    evaluate.log_result(test, log)
    log(f"wrote {ckpt_path}")
    log(f"wrote {report_path}")
    return 130 if state.get("interrupted") else 0


def run(args: argparse.Namespace, given: set[str], log=log) -> int:
    if args.no_stratified:
        args.split = "random"
    if args.resume and args.eval_only:
        raise UsageError("--resume and --eval-only exclude each other")
    if args.eval_only:
        return evaluate.evaluate_checkpoint(args, given, log)
    return train(args, given, log)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: one line on stderr and a non-zero exit for every user error."""
    prog = Path(sys.argv[0]).name if argv is None else "trainer.py"
    return run_cli(prog, lambda: run(*parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
