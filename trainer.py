"""Train and evaluate one lightweight beat classifier on MIT-BIH.

    python trainer.py --model liteecgnet --epochs 30 --batch-size 256 --lr 3e-3 --cache

Reads beats through utils.load_beats (cached), splits them (dataset.make_splits), trains with
AdamW + warm-up/cosine schedule and early stopping on validation macro-F1, restores the best
weights, touches the test part once, and writes (atomically) into --out-dir:

    ecg_lightweight_{model}_{timestamp}.pt        checkpoint that rebuilds model + preprocessing
    eval_report_{model}_{timestamp}.json          evaluation report (schema in README.md)
    ecg_lightweight_{model}_{timestamp}.last.pt   training state for --resume (removed when done)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from config import DATA_DEFAULTS, MODEL_CONFIGS, TRAIN_DEFAULTS
from dataset import PARTS, SPLIT_MODES, BeatTensors, make_splits, records_for
from metrics import bootstrap_ci, classification_metrics, ec57_stats
from models import MODEL_NAMES, create_model
from utils import CLASS_NAMES, NORMALIZERS, DataError, PreprocConfig, atomic_write, load_beats

CKPT_FORMAT, CKPT_VERSION, REPORT_SCHEMA = "liteecg-checkpoint", 1, 1
RR_DIM = 4  # utils.rr_features columns


class UsageError(Exception):
    """A bad command line or a bad file given on it: reported as one line, exit code 2."""


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

class CliParser(argparse.ArgumentParser):
    """argparse for the scripts (trainer, predict, export): a bad flag is one UsageError line."""
    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(f"{message} (see --help)")


CLASS_WEIGHTINGS = {"inverse": 1.0, "sqrt": 0.5}  # --class-weights mode -> power of N / (C * n_c)


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    """The CLI. With suppress=True no defaults are set, which tells which flags were given."""
    p = CliParser(description="Train / evaluate a lightweight ECG beat classifier on MIT-BIH.",
                argument_default=argparse.SUPPRESS if suppress else None)
    D, T = DATA_DEFAULTS, TRAIN_DEFAULTS

    def add(*flags, default=None, **kw):  # into the current group `g`
        if not suppress and default is not None:
            kw["default"] = default
        g.add_argument(*flags, **kw)

    g = p.add_argument_group("model and training")
    add("--model", default=T["model"], choices=MODEL_NAMES, help=f"architecture (default: {T['model']})")
    add("--epochs", type=int, default=T["epochs"], help=f"maximum epochs (default: {T['epochs']})")
    add("--batch-size", type=int, default=T["batch_size"], help=f"batch size (default: {T['batch_size']})")
    add("--lr", type=float, default=T["lr"], help=f"peak learning rate of AdamW (default: {T['lr']})")
    add("--weight-decay", type=float, default=T["weight_decay"], help=f"AdamW weight decay (default: {T['weight_decay']})")
    add("--patience", type=int, default=T["patience"], help=f"early-stopping patience in epochs on val macro-F1 (default: {T['patience']})")
    add("--focal", action="store_true", help="focal loss (gamma --focal-gamma) instead of cross-entropy (default: off)")
    add("--focal-gamma", type=float, default=2.0, help="focal loss gamma (default: 2.0)")
    add("--class-weights", nargs="?", const="inverse", choices=CLASS_WEIGHTINGS,
        help="class weights in the loss: 'inverse' frequency (the bare flag) or its 'sqrt', gentler "
             "when a class has only a few training beats (default: off)")
    add("--augment", action="store_true", help="train-time R-peak jitter, amplitude scaling, baseline wander and noise (default: off)")
    add("--rr", action="store_true", help="feed RR-interval context (pre/post RR and their ratios to the local mean) to the model (default: off)")
    add("--seed", type=int, default=T["seed"], help=f"seed for splits, init and shuffling (default: {T['seed']})")
    add("--device", default=T["device"], choices=("cuda", "cpu"), help=f"device; cuda falls back to cpu when unavailable (default: {T['device']})")
    add("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    add("--num-workers", type=int, default=0, help="unused: batches are sliced from in-memory tensors, no loader workers are needed; accepted for compatibility (default: 0)")
    g = p.add_argument_group("data")
    add("--root", default=D["root"], help=f"folder with the MIT-BIH records; downloaded when missing (default: {D['root']})")
    add("--no-download", action="store_true", help="never download missing records, fail instead (default: off)")
    add("--cache", action="store_true", help="cache preprocessed beats as cache_<key>.npz in the data folder (default: off)")
    add("--fs", type=int, default=D["fs"], help=f"sampling rate the records must have, Hz (default: {D['fs']})")
    add("--segment-sec", type=float, default=D["segment_sec"], help=f"beat window length in seconds, centred on the R peak (default: {D['segment_sec']})")
    add("--normalize", default=D["normalize"], choices=sorted(NORMALIZERS), help=f"per-window normalisation (default: {D['normalize']})")
    add("--classes", default=D["classes"], choices=sorted(CLASS_NAMES), help=f"label scheme (default: {D['classes']})")
    add("--split", default=T["split"], choices=SPLIT_MODES, help=f"split protocol (default: {T['split']})")
    add("--no-stratified", action="store_true", help="same as --split random (record-wise) (default: off)")
    add("--train-recs", nargs="+", help="explicit training records; with --val-recs and --test-recs overrides --split (default: none)")
    add("--val-recs", nargs="+", help="explicit validation records (default: none)")
    add("--test-recs", nargs="+", help="explicit test records (default: none)")
    add("--class-limit", type=int, help="cap each class in the training part at N beats (default: no cap)")
    g = p.add_argument_group("outputs and modes")
    add("--out-dir", default=T["out_dir"], help=f"where checkpoints and reports go (default: {T['out_dir']})")
    add("--resume", metavar="PATH", help="continue an interrupted run from its .last.pt file (default: none)")
    add("--eval-only", metavar="PATH", help="evaluate a saved checkpoint on the test part, no training (default: none)")
    add("--bootstrap", type=int, default=1000, help="bootstrap resamples for confidence intervals, 0 = off (default: 1000)")
    add("--quiet", action="store_true", help="no progress bars (default: off)")
    return p


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, set[str]]:
    """Parsed args and the set of flags the user actually gave."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    given = set(vars(build_parser(suppress=True).parse_args(argv)))
    return args, given


def check_args(args: argparse.Namespace) -> None:
    """Reject impossible values with one clear line."""
    for name in ("epochs", "batch_size", "patience"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.lr > 0 or not math.isfinite(args.lr):
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    if args.weight_decay < 0:
        raise UsageError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.segment_sec <= 0 or round(args.segment_sec * args.fs) < 8:
        raise UsageError(f"--segment-sec {args.segment_sec} at --fs {args.fs} gives "
                         f"{round(args.segment_sec * args.fs)} samples per beat; need at least 8")
    if args.class_limit is not None and args.class_limit < 1:
        raise UsageError(f"--class-limit must be >= 1, got {args.class_limit}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    recs = [args.train_recs, args.val_recs, args.test_recs]
    if any(recs) and not all(recs):
        raise UsageError("--train-recs, --val-recs and --test-recs go together: give all three")
    if args.resume and args.eval_only:
        raise UsageError("--resume and --eval-only exclude each other")


def resolve_device(name: str, log=print) -> torch.device:
    """cuda when asked and present; otherwise cpu, saying so."""
    if name == "cuda" and not torch.cuda.is_available():
        log("CUDA is not available on this machine: running on CPU")
        return torch.device("cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------------------------
# Files: atomic writes, checkpoints
# ----------------------------------------------------------------------------------------------

def save_torch(obj: dict, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def write_json(obj: dict, path: Path) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, allow_nan=False).encode()))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and check a LiteECG checkpoint dict (weights_only: no code runs on load)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(f"{p} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise UsageError(f"{p} is not a LiteECG checkpoint")
    if ckpt.get("version") != CKPT_VERSION:
        raise UsageError(f"{p} has checkpoint version {ckpt.get('version')}, this code reads {CKPT_VERSION}")
    return ckpt


def require_final(ckpt: dict, path: str | os.PathLike) -> None:
    """Refuse a training state (.last.pt) where a final checkpoint is needed."""
    if ckpt.get("kind") == "training-state":
        raise UsageError(f"{path} is a training state (.last.pt): continue it with --resume, or use the "
                         "final .pt checkpoint of the run")


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike,
                          device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of an already-read final checkpoint (no flags needed), in eval mode."""
    require_final(ckpt, path)
    model = create_model(ckpt["model_name"], num_classes=ckpt["num_classes"], rr_dim=ckpt["rr_dim"],
                         **ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Read a checkpoint and rebuild its model -> (model in eval mode, ckpt)."""
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(ckpt, path, device), ckpt


def preproc_from_args(args: argparse.Namespace) -> PreprocConfig:
    return PreprocConfig(fs=args.fs, segment_sec=args.segment_sec, classes=args.classes,
                         normalize=args.normalize)


def _versions() -> dict:
    import wfdb
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "numpy": np.__version__, "wfdb": wfdb.__version__}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def class_weights(y: np.ndarray, n_classes: int, mode: str = "inverse") -> torch.Tensor:
    """Weights (N / (C * n_c)) ** p, p = 1 for 'inverse', 0.5 for 'sqrt'; absent classes weight 0.

    Why sqrt: inter-patient DS1 has 8 Q and ~400 F training beats against ~45k N, so inverse
    weights of ~1000 and ~20 make the loss chase a handful of beats and push N beats of unseen
    patients into F/V; the square root keeps the rare classes up-weighted with a tenth the spread.
    """
    n = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(n > 0, (len(y) / (n_classes * np.maximum(n, 1))) ** CLASS_WEIGHTINGS[mode], 0.0)
    return torch.tensor(w, dtype=torch.float32)


def make_loss(focal: bool, gamma: float, weight: torch.Tensor | None):
    """Cross-entropy, or focal loss -(1 - p_t)^gamma * log p_t (Lin et al. 2017), optionally weighted."""
    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not focal:
            return F.cross_entropy(logits, y, weight=weight)
        logp = F.log_softmax(logits, 1).gather(1, y[:, None]).squeeze(1)  # (B,)
        loss = -((1 - logp.exp()) ** gamma) * logp
        if weight is not None:
            w = weight[y]
            return (loss * w).sum() / w.sum().clamp_min(1e-12)
        return loss.mean()
    return loss_fn


def lr_lambda(total_steps: int, warmup: int):
    """Linear warm-up, then cosine decay to 1 % of the peak over the maximum epochs."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))
    return f


@torch.inference_mode()
def predict(model: nn.Module, part: BeatTensors, batch_size: int, use_rr: bool,
            loss_fn=None) -> tuple[np.ndarray, np.ndarray, float]:
    """-> (predicted class (N,), class probabilities (N, C), mean loss or nan)."""
    model.eval()
    # sums and outputs stay on the device until the end: one GPU -> host copy, not one per batch
    probs, total = [], torch.zeros((), dtype=torch.float64, device=part.y.device)
    for x, rr, y in part.batches(max(batch_size, 512)):
        logits = model(x, rr if use_rr else None)
        if loss_fn is not None:
            total += loss_fn(logits, y).detach().double() * len(y)
        probs.append(torch.softmax(logits.float(), 1))
    p = torch.cat(probs).cpu().numpy()
    return p.argmax(1), p, (total.item() / len(part) if loss_fn is not None else float("nan"))


def augment(x: torch.Tensor, fs: int, generator: torch.Generator) -> torch.Tensor:
    """Train-time perturbations of a batch of normalised windows (B, 1, T), seeded:
    R-peak jitter (shift by up to 25 ms, edges repeated), amplitude x U(0.8, 1.2), baseline
    wander (0.1-0.5 Hz sine, amplitude <= 0.2) and white noise (sd 0.05). Why: in the
    inter-patient protocol the nets fit the training patients' exact beat shapes; these are the
    nuisances that differ between patients and recordings, not the beat classes."""
    b, _, t = x.shape
    dev = x.device

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(*shape, generator=generator)).to(dev)

    shift = torch.randint(-int(0.025 * fs), int(0.025 * fs) + 1, (b, 1), generator=generator).to(dev)
    idx = (torch.arange(t, device=dev) + shift).clamp_(0, t - 1)  # (B, T)
    x = x.gather(2, idx.unsqueeze(1))
    time = torch.arange(t, device=dev) / fs  # (T,) seconds
    wander = u(0, 0.2, b, 1) * torch.sin(2 * math.pi * u(0.1, 0.5, b, 1) * time + u(0, 2 * math.pi, b, 1))
    noise = 0.05 * torch.randn(x.shape, generator=generator).to(dev)
    return x * u(0.8, 1.2, b, 1, 1) + wander.unsqueeze(1) + noise


def train_one_epoch(model, part: BeatTensors, opt, sched, loss_fn, batch_size: int, use_rr: bool,
                    generator: torch.Generator, bar_desc: str, quiet: bool,
                    augment_fs: int | None = None) -> tuple[float, np.ndarray]:
    """One pass over the training part -> (mean loss, predictions in visiting order + labels)."""
    from tqdm import tqdm
    model.train()
    # The loss sum and the predictions stay on the device: reading them every step (.item(),
    # .cpu()) would make a GPU wait for each step to finish before queueing the next.
    total = torch.zeros((), dtype=torch.float64, device=part.y.device)
    seen, preds, labels = 0, [], []
    bar = tqdm(part.batches(batch_size, shuffle=True, generator=generator), total=part.num_batches(batch_size),
               desc=bar_desc, leave=False, disable=quiet or None, dynamic_ncols=True)
    for step, (x, rr, y) in enumerate(bar):
        if augment_fs:
            x = augment(x, augment_fs, generator)
        logits = model(x, rr if use_rr else None)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.detach().double() * len(y)
        seen += len(y)
        preds.append(logits.detach().argmax(1))
        labels.append(y)
        if not bar.disable and step % 20 == 0:  # the progress bar's loss: a sync every 20 steps
            bar.set_postfix(loss=f"{total.item() / seen:.4f}")
    return total.item() / seen, np.stack([torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy()])


def fit(model, tr: BeatTensors, va: BeatTensors, args, class_names, state: dict, ckpt_base: dict,
        last_path: Path, device, log=print) -> dict:
    """Train with early stopping; returns the state (best weights, history...). Ctrl-C stops
    cleanly after marking the state interrupted; the caller evaluates the best weights."""
    weight = (class_weights(tr.y.cpu().numpy(), len(class_names), args.class_weights).to(device)
              if args.class_weights else None)
    loss_fn = make_loss(args.focal, args.focal_gamma, weight)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * tr.num_batches(args.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(steps, warmup=min(200, steps // 10 + 1)))
    if state.get("optimizer"):
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
    try:
        for epoch in range(state["epoch"] + 1, args.epochs + 1):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)  # per-epoch order: resumable
            tr_loss, (tp, ty) = train_one_epoch(model, tr, opt, sched, loss_fn, args.batch_size, args.rr,
                                                gen, f"epoch {epoch}/{args.epochs}", args.quiet,
                                                augment_fs=args.fs if args.augment else None)
            t_train = time.perf_counter() - t0
            vp, _, va_loss = predict(model, va, args.batch_size, args.rr, loss_fn)
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
            state["epoch"] = epoch
            # state first, then the line: whoever acts on the line finds the state on disk
            save_torch({**ckpt_base, "kind": "training-state", "epoch": epoch,
                        "model_state": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                        "history": state["history"], "best_val": state["best_val"],
                        "best_state": state["best_state"], "bad_epochs": state["bad_epochs"]}, last_path)
            log(f"epoch {epoch:3d}/{args.epochs}  train loss {tr_loss:.4f} F1 {tr_f1:.4f} | val loss "
                f"{va_loss:.4f} F1 {va_m['macro_f1']:.4f} | lr {row['lr']:.2e} | {sec:5.1f} s "
                f"({row['train_beats_per_s']:.0f} beats/s){'  *best' if better else ''}")
            if state["bad_epochs"] >= args.patience:
                log(f"early stopping: no val macro-F1 gain for {args.patience} epochs")
                break
    except KeyboardInterrupt:
        state["interrupted"] = True
        log(f"\ninterrupted: evaluating the best model so far; resume with --resume {last_path}")
    return state


# ----------------------------------------------------------------------------------------------
# Evaluation and report
# ----------------------------------------------------------------------------------------------

def evaluate_test(model, te: BeatTensors, data, idx, splits, args, use_rr: bool) -> dict:
    """Test metrics, EC57 statistics, bootstrap CIs and per-record counts of one test part."""
    names = data.class_names
    pred, prob, _ = predict(model, te, args.batch_size, use_rr)
    y, rec = data.y[idx], data.record[idx]
    out = classification_metrics(y, pred, names)
    out["ec57"] = ec57_stats(y, pred, names, record=rec)
    if args.bootstrap:
        # beats of one record are not independent: resample records unless the split mixes them
        groups = None if splits.mode == "stratified" else rec
        out["ci"] = bootstrap_ci(y, pred, names, groups=groups, n_boot=args.bootstrap, seed=args.seed)
    out["per_record"] = {str(r): {"beats": int((rec == r).sum()),
                                  "accuracy": float((pred[rec == r] == y[rec == r]).mean())}
                         for r in np.unique(rec)}
    out["predictions_sha256"] = hashlib.sha256(pred.astype(np.int8).tobytes()).hexdigest()
    out["n_beats"] = int(len(y))
    return out


def build_report(*, model_name, stamp, ckpt_path, args, data, splits, test, state, model_metrics,
                 device, t_total) -> dict:
    hist = state.get("history", [])
    return {
        "schema_version": REPORT_SCHEMA, "model": model_name, "timestamp": stamp,
        "checkpoint": str(ckpt_path), "args": vars(args), "classes": data.class_names,
        "preprocessing": data.config.to_dict(),
        "dataset": {**splits.summary(data), "leads": data.leads},
        "test": test, "best_val": state.get("best_val", {}), "model_metrics": model_metrics,
        "history": hist,
        "timing": {"total_seconds": t_total,
                   "epoch_seconds_mean": float(np.mean([h["seconds"] for h in hist])) if hist else None,
                   "train_beats_per_s": float(np.mean([h["train_beats_per_s"] for h in hist])) if hist else None,
                   "interrupted": bool(state.get("interrupted", False))},
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "environment": {**_versions(), "device": str(device), "threads": torch.get_num_threads(),
                        "seed": args.seed, "git_commit": _git_commit(), "platform": platform.platform(),
                        "cpu": _cpu_name()},
    }


def _model_metrics(model, seq_len: int, device, rr_dim: int) -> dict:
    from profiling import profile_model
    return profile_model(model, seq_len=seq_len, device=str(device), rr_dim=rr_dim)


# The report schema (documented in README.md). Numbers may be int where a float is expected.
_NUM = (int, float)
REPORT_FIELDS: dict[str, object] = {
    "schema_version": int, "model": str, "timestamp": str, "checkpoint": str, "args": dict,
    "classes": list, "preprocessing": dict, "best_val": dict, "peak_rss_bytes": int,
    "dataset": {"split": str, "records": dict, "class_counts": dict, "beats": dict, "dropped": int},
    "test": {"accuracy": _NUM, "macro_f1": _NUM, "weighted_f1": _NUM, "per_class": dict,
             "confusion_matrix": {"labels": list, "matrix": list}, "ec57": dict, "per_record": dict,
             "predictions_sha256": str, "n_beats": int},
    "model_metrics": {"params_total": int, "params_trainable": int, "state_dict_bytes": int, "macs": int,
                      "flops": int, "latency_median_ms": _NUM, "latency_p90_ms": _NUM,
                      "throughput_beats_per_s": _NUM, "peak_memory_bytes": int},
    "history": list, "timing": {"total_seconds": _NUM},
    "environment": {"python": str, "torch": str, "device": str, "threads": int, "seed": int},
}
HISTORY_FIELDS = {"epoch": int, "train_loss": _NUM, "train_f1": _NUM, "val_loss": _NUM, "val_f1": _NUM,
                  "lr": _NUM, "seconds": _NUM}


def validate_report(report: dict, fields: dict = REPORT_FIELDS, where: str = "report") -> None:
    """Raise ValueError naming the first missing or mistyped field of a report."""
    if not isinstance(report, dict):
        raise ValueError(f"{where} is not an object")
    for key, kind in fields.items():
        if key not in report:
            raise ValueError(f"{where}.{key} is missing")
        if isinstance(kind, dict):
            validate_report(report[key], kind, f"{where}.{key}")
        elif not isinstance(report[key], kind) or isinstance(report[key], bool) and kind is not bool:
            raise ValueError(f"{where}.{key} should be {getattr(kind, '__name__', kind)}")
    if fields is REPORT_FIELDS:
        for i, row in enumerate(report["history"]):
            validate_report(row, HISTORY_FIELDS, f"{where}.history[{i}]")


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------

def _prepare_out_dir(out_dir: str) -> Path:
    p = Path(out_dir)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to --out-dir {p} ({e.strerror or e})") from None
    return p


def _explicit(args) -> dict | None:
    return ({"train": args.train_recs, "val": args.val_recs, "test": args.test_recs}
            if args.train_recs else None)


def _load_split(args, cfg: PreprocConfig, log):
    explicit = _explicit(args)
    records = records_for(args.split, explicit)
    data = load_beats(args.root, cfg, records=records, use_cache=args.cache,
                      download=not args.no_download, log=log)
    splits = make_splits(data, args.split, args.seed, explicit=explicit, class_limit=args.class_limit)
    if splits.warning:
        log(f"NOTE: {splits.warning}")
    for n in splits.notes:
        log(f"note: {n}")
    log("beats  " + "  ".join(f"{p}: {len(splits.part(p))} {data.class_counts(splits.part(p))}" for p in PARTS))
    return data, splits


def _adopt_checkpoint_args(args, given: set[str], ckpt: dict, what: str) -> argparse.Namespace:
    """Use the checkpoint's run arguments, refusing a --model/--classes that contradicts it."""
    saved = ckpt["args"]
    for flag in ("model", "classes"):
        if flag in given and getattr(args, flag) != saved[flag]:
            raise UsageError(f"{what} holds a {saved['model']}/{saved['classes']} checkpoint, but "
                             f"--{flag} {getattr(args, flag)} was given")
    # flags given now win; everything else (root, split, seed, ...) is what the run used
    keep = given | {"resume", "eval_only"}
    # (options newer than the checkpoint keep their defaults)
    merged = {**vars(args), **{k: v for k, v in saved.items() if k in vars(args)},
              **{k: getattr(args, k) for k in keep if hasattr(args, k)}}
    if isinstance(merged.get("class_weights"), bool):  # checkpoints from before the modes: a flag
        merged["class_weights"] = "inverse" if merged["class_weights"] else None
    return argparse.Namespace(**merged)


def _log(msg: str) -> None:
    print(msg, flush=True)  # flushed: progress must show through pipes (tee in run_all_models.sh)


def run(args: argparse.Namespace, given: set[str], log=_log) -> int:
    if args.no_stratified:
        args.split = "random"
    ckpt_in = None
    if args.eval_only or args.resume:
        ckpt_in = read_checkpoint(args.eval_only or args.resume)
        kind = ckpt_in.get("kind", "final")
        if args.resume and kind != "training-state":
            raise UsageError(f"{args.resume} is a final checkpoint; resume from the .last.pt file of the run")
        if args.eval_only:
            require_final(ckpt_in, args.eval_only)  # before any data is loaded
        args = _adopt_checkpoint_args(args, given, ckpt_in, args.eval_only or args.resume)
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, log)
    out_dir = _prepare_out_dir(args.out_dir)
    cfg = PreprocConfig.from_dict(ckpt_in["preprocessing"]) if ckpt_in else preproc_from_args(args)
    t_start = time.perf_counter()
    data, splits = _load_split(args, cfg, log)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    rr_dim = RR_DIM if args.rr else 0
    if ckpt_in and args.eval_only:
        model = model_from_checkpoint(ckpt_in, args.eval_only, device)
        state = {"best_val": ckpt_in.get("best_val", {}), "history": []}
        stamp = time.strftime("%Y%m%d_%H%M%S")
        ckpt_path = Path(args.eval_only)
        report_path = out_dir / f"eval_report_{ckpt_in['model_name']}_{stamp}_evalonly.json"
    else:
        model = create_model(args.model, num_classes=len(data.class_names), rr_dim=rr_dim).to(device)
        model_config = dict(MODEL_CONFIGS[args.model])  # stored whole: config.py may change later
        stamp = ckpt_in["stamp"] if ckpt_in else time.strftime("%Y%m%d_%H%M%S")
        ckpt_path = out_dir / f"ecg_lightweight_{args.model}_{stamp}.pt"
        report_path = out_dir / f"eval_report_{args.model}_{stamp}.json"
        last_path = out_dir / f"ecg_lightweight_{args.model}_{stamp}.last.pt"
        ckpt_base = {"format": CKPT_FORMAT, "version": CKPT_VERSION, "model_name": args.model,
                     "model_config": model_config, "num_classes": len(data.class_names), "rr_dim": rr_dim,
                     "class_names": data.class_names, "preprocessing": cfg.to_dict(), "args": vars(args),
                     "versions": _versions(), "stamp": stamp}
        state = {"epoch": 0, "history": [], "best_val": {}, "best_state": None, "bad_epochs": 0}
        if ckpt_in:  # resume: model, optimizer, scheduler, RNG and early-stopping state
            model.load_state_dict(ckpt_in["model_state"])
            state.update({k: ckpt_in[k] for k in ("epoch", "history", "best_val", "best_state", "bad_epochs",
                                                  "optimizer", "scheduler", "torch_rng")})
            log(f"resuming {args.model} after epoch {state['epoch']} (best val F1 "
                f"{state['best_val'].get('macro_f1', float('nan')):.4f})")
        tr, va = BeatTensors(data, splits.train, device), BeatTensors(data, splits.val, device)
        n_params = sum(p.numel() for p in model.parameters())
        log(f"training {args.model} ({n_params:,} parameters) on {device}, {len(tr)} beats/epoch")
        state = fit(model, tr, va, args, data.class_names, state, ckpt_base, last_path, device, log)
        if state["best_state"] is None:
            log("stopped before the first epoch finished: nothing to evaluate, nothing written")
            return 130
        model.load_state_dict(state["best_state"])  # the test part sees the best weights only
        save_torch({**ckpt_base, "kind": "final", "state_dict": state["best_state"],
                    "best_epoch": state["best_val"]["epoch"], "best_val_f1": state["best_val"]["macro_f1"],
                    "best_val": state["best_val"]}, ckpt_path)

    te = BeatTensors(data, splits.test, device)
    test = evaluate_test(model, te, data, splits.test, splits, args, use_rr=model.rr_dim > 0)
    mm = _model_metrics(model, cfg.window, device, model.rr_dim)
    report = build_report(model_name=ckpt_in["model_name"] if args.eval_only else args.model, stamp=stamp,
                          ckpt_path=ckpt_path, args=args, data=data, splits=splits, test=test, state=state,
                          model_metrics=mm, device=device, t_total=time.perf_counter() - t_start)
    write_json(report, report_path)
    if not args.eval_only and not state.get("interrupted"):
        last_path.unlink(missing_ok=True)  # finished: the training state is no longer needed
    ci = test.get("ci", {}).get("macro_f1", {})
    ci_txt = f" [{ci['low']:.4f}, {ci['high']:.4f}]" if ci.get("low") is not None else ""
    log(f"test: accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}{ci_txt}  "
        f"({test['n_beats']} beats)")
    if not args.eval_only:
        log(f"wrote {ckpt_path}")
    log(f"wrote {report_path}")
    return 130 if state.get("interrupted") else 0


def cli(prog: str, body) -> int:
    """Run a CLI body: every user error becomes one line on stderr and exit 2, Ctrl-C exit 130."""
    try:
        return body()
    except (UsageError, DataError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """CLI entry: one line on stderr and a non-zero exit for every user error."""
    prog = Path(sys.argv[0]).name if argv is None else "trainer.py"
    return cli(prog, lambda: run(*parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
