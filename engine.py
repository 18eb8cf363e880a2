"""The training and inference steps: loss, schedule, augmentation, one epoch, the training loop
with early stopping (`fit`; `fit_members` for an ensemble), prediction, and the test-part
evaluation. trainer.py wires them into a run; evaluate.py reuses the inference.

Everything here takes tensors and plain values (no command-line namespace), so it can be tested
and reused alone.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from config import CLASS_WEIGHTINGS
from dataset import BeatTensors
from distributed import World
from metrics import classification_metrics, test_metrics
from models import Ensemble

def class_weights(y: np.ndarray, n_classes: int, mode: str = "inverse") -> torch.Tensor:
    """Weights (N / (C * n_c)) ** p, p = 1 for 'inverse', 0.5 for 'sqrt'; absent classes weight 0.

    Why sqrt: inter-patient DS1 has 8 Q and ~400 F training beats against ~45k N, so inverse
    weights of ~1000 and ~20 make the loss chase a handful of beats and push N beats of unseen
    patients into F/V; the square root keeps the rare classes up-weighted with a tenth the spread.
    """
    n = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(n > 0, (len(y) / (n_classes * np.maximum(n, 1))) ** CLASS_WEIGHTINGS[mode], 0.0)
    return torch.tensor(w, dtype=torch.float32)


def patient_balance_weights(y: np.ndarray, record: np.ndarray, power: float) -> np.ndarray:
    """Per-beat loss weights (N,): a beat of class c from record r weighs n_rc ** -power, n_rc
    being r's beats of class c, rescaled so that class c's weights still sum to n_c (class priors
    unchanged). power 0 gives all ones; 1 gives every record an equal share of each class it has.

    Why: inter-patient DS1 has its S beats in a handful of patients (record 209 alone holds 383 of
    943), so a plain loss learns mostly that patient's S beats; weighting evens out who a class is
    learnt from without changing how often the model should predict it."""
    w = np.ones(len(y), np.float64)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        _, inv, n_rc = np.unique(record[rows], return_inverse=True, return_counts=True)
        wc = n_rc[inv].astype(np.float64) ** -power
        w[rows] = wc * (len(rows) / wc.sum())
    return w.astype(np.float32)


class Loss:
    """Cross-entropy, or focal loss -(1 - p_t)^gamma * log p_t (Lin et al. 2017), optionally
    class-weighted and/or beat-weighted (`w`, e.g. patient_balance_weights). `loss(logits, y, w)`
    is the batch's weighted mean: the sum of weight[y] * w * loss over the sum of weight[y] * w.
    A distributed run splits a batch over processes: each computes `loss.sum(logits, y, w) /
    loss.normaliser(y, w of the whole batch)`, and these shares add up to the batch's mean exactly
    (a weighted mean divides by the batch's sum of weights, which the processes' own weighted means
    would not share)."""

    def __init__(self, focal: bool, gamma: float, weight: torch.Tensor | None):
        self.focal, self.gamma, self.weight = focal, gamma, weight

    def _per_beat(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) each row's unweighted loss."""
        if not self.focal:
            return F.cross_entropy(logits, y, reduction="none")
        logp = F.log_softmax(logits, 1).gather(1, y[:, None]).squeeze(1)  # (B,)
        return -((1 - logp.exp()) ** self.gamma) * logp

    def _beat_weights(self, y: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor | None:
        """(B,) the weight of each row (class weight times beat weight), or None when unweighted."""
        if self.weight is None:
            return w
        return self.weight[y] if w is None else self.weight[y] * w

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if w is None and not self.focal:  # the plain path, bit for bit what it was before beat weights
            return F.cross_entropy(logits, y, weight=self.weight)
        if w is None and self.weight is None:
            return self._per_beat(logits, y).mean()
        return self.sum(logits, y, w) / self.normaliser(y, w)

    def sum(self, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """The numerator of the mean: the (weighted) sum over these rows."""
        if w is None and not self.focal:
            return F.cross_entropy(logits, y, weight=self.weight, reduction="sum")
        loss = self._per_beat(logits, y)  # (B,)
        bw = self._beat_weights(y, w)
        return (loss * bw).sum() if bw is not None else loss.sum()

    def normaliser(self, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor | int:
        """The denominator of the mean over a batch with labels `y` (and beat weights `w`): rows,
        or their sum of weights."""
        bw = self._beat_weights(y, w)
        return len(y) if bw is None else bw.sum().clamp_min(1e-12)


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


def cpu_state(model: nn.Module) -> dict:
    """A detached CPU copy of the model's state_dict: a snapshot later steps cannot change."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class WeightAverage:
    """Exponential moving average of a model's weights and BN statistics (Polyak averaging), updated
    after every optimiser step; `model` is the averaged copy, the one to evaluate and save.

    Why: with the few S-rich patients of DS1, the held-out scores of consecutive epochs differ by
    up to 0.17 macro-F1, so one epoch's last step decides what is kept; an average over the last
    ~`tau` steps is a one-model form of the seed ensemble that scored higher inside DS1. The decay
    starts low (min(exp(-1 / tau), (1 + t) / (10 + t)), as timm's model EMA) so the random
    initialisation does not linger. Integer buffers (BN's batch counter) are copied, not averaged."""

    def __init__(self, model: nn.Module, tau: float):
        if tau <= 0:
            raise ValueError(f"tau must be > 0 steps, got {tau}")
        self.decay, self.steps = math.exp(-1.0 / tau), 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        # the tensors themselves, not .data: in-place updates must move their version counters
        # (ConvBN's folded inference kernel is rebuilt when they move)
        mine, theirs = self.model.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        keys = [k for k, v in mine.items() if v.is_floating_point()]
        self._avg, self._src = [mine[k] for k in keys], [theirs[k] for k in keys]
        self._int = [(mine[k], theirs[k]) for k, v in mine.items() if not v.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the live model's current weights into the average (after an optimiser step)."""
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self._avg, self._src, 1.0 - d)
        for a, b in self._int:
            a.copy_(b)

    def state_dict(self) -> dict:
        """The averaged weights plus the step count: what --resume needs."""
        return {"weights": cpu_state(self.model),
                "steps": self.steps}

    def load_state_dict(self, d: dict) -> None:
        self.model.load_state_dict(d["weights"])
        self.steps = int(d["steps"])


def augment(x: torch.Tensor, fs: int, generator: torch.Generator,
            rows: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Train-time perturbations of a batch of normalised windows (B, C, T), seeded:
    R-peak jitter (shift by up to 25 ms, edges repeated), amplitude x U(0.8, 1.2), baseline
    wander (0.1-0.5 Hz sine, amplitude <= 0.2) and white noise (sd 0.05). Why: in the
    inter-patient protocol the nets fit the training patients' exact beat shapes; these are the
    nuisances that differ between patients and recordings, not the beat classes.
    Channel 0 is the beat; further channels (the running template) are the record's average
    beat: they share the amplitude factor (the beat's size relative to it is kept) but are
    neither shifted nor made noisy.
    `rows` (lo, hi, n): x is rows lo:hi of a batch of n (a distributed run's shard); the draws
    are made for all n rows and rows lo:hi used, so each process perturbs its rows exactly as
    one process would."""
    lo, hi, b = rows or (0, len(x), len(x))
    _, c, t = x.shape
    dev = x.device

    def u(a: float, z: float, *shape: int) -> torch.Tensor:
        return (a + (z - a) * torch.rand(*shape, generator=generator))[lo:hi].to(dev)

    shift = torch.randint(-int(0.025 * fs), int(0.025 * fs) + 1, (b, 1), generator=generator)[lo:hi].to(dev)
    idx = (torch.arange(t, device=dev) + shift).clamp_(0, t - 1)  # (B, T)
    beat = x[:, :1].gather(2, idx.unsqueeze(1))  # (B, 1, T)
    time = torch.arange(t, device=dev) / fs  # (T,) seconds
    wander = u(0, 0.2, b, 1) * torch.sin(2 * math.pi * u(0.1, 0.5, b, 1) * time + u(0, 2 * math.pi, b, 1))
    noise = 0.05 * torch.randn((b, 1, t), generator=generator)[lo:hi].to(dev)
    scale = u(0.8, 1.2, b, 1, 1)
    beat = beat * scale + wander.unsqueeze(1) + noise
    return beat if c == 1 else torch.cat([beat, x[:, 1:] * scale], 1)


def swap_templates(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Move each row of a batch (B, 2, T) of (beat, template) pairs, with probability p, onto the
    template of a random row of the batch (a random permutation, so mostly another patient's):
    beat' = beat - template + template', the other row's template becoming its own.
    Why: a beat's class shows in how it differs from its patient's usual beat (an atrial
    premature beat keeps it, a ventricular one does not), while the usual beat itself differs
    between patients; moving the difference onto other patients' usual beats keeps a net from
    tying a class to the few training patients that have it. Both channels are on the
    template's scale (features.relative_scale), so the sum needs no rescaling. Seeded; rows not
    moved are returned unchanged, bit for bit. The draws are made for the whole batch (a
    distributed run swaps the whole batch, then takes its shard).
    Two leads (B, 4, T) = (beat, template) of each (utils.stack_inputs): a moved row takes both
    leads' templates from the same other row."""
    if x.ndim != 3 or x.shape[1] not in (2, 4):
        raise ValueError(f"swap_templates needs (B, 2, T) beat and template windows (B, 4, T with two leads), "
                         f"got {tuple(x.shape)}")
    b = len(x)
    move = (torch.rand(b, generator=generator) < p).to(x.device)[:, None, None]  # (B, 1, 1)
    other = torch.randperm(b, generator=generator).to(x.device)
    beat, tm = x[:, 0::2], x[:, 1::2]                                        # (B, leads, T) each
    new_tm = torch.where(move, tm[other], tm)
    beat = torch.where(move, beat - tm + new_tm, beat)
    return torch.stack([beat, new_tm], 2).flatten(1, 2)                      # (B, 2 * leads, T)


def train_one_epoch(model, part: BeatTensors, opt, sched, loss_fn: Loss, batch_size: int, use_rr: bool,
                    generator: torch.Generator, bar_desc: str, quiet: bool,
                    augment_fs: int | None = None, world=None,
                    average: WeightAverage | None = None,
                    template_swap: float = 0.0) -> tuple[float, np.ndarray]:
    """One pass over the training part -> (mean loss, predictions in visiting order + labels).
    `average`: updated after every optimiser step. `template_swap` > 0: swap_templates with that
    probability before any augmentation.

    `world` (distributed.World of a distributed run): `model` is the DDP-wrapped one, and this
    process trains on its shard of every batch with its share of the batch's mean loss (see
    distributed.py), so the averaged gradient is the whole batch's. The mean loss and the
    predictions returned are all processes' (the predictions as (prediction, label) pairs in
    class order rather than visiting order: what the F1 needs, from one collective)."""
    from tqdm import tqdm
    model.train()
    shards = world is not None and world.distributed
    # The loss sum and the predictions stay on the device: reading them every step (.item(),
    # .cpu()) would make a GPU wait for each step to finish before queueing the next.
    total = torch.zeros((), dtype=torch.float64, device=part.y.device)
    seen, preds, labels = 0, [], []
    bar = tqdm(part.batch_index(batch_size, shuffle=True, generator=generator), total=part.num_batches(batch_size),
               desc=bar_desc, leave=False, disable=quiet or None, dynamic_ncols=True)
    for step, i in enumerate(bar):
        n, lo, hi, keep = len(i), 0, len(i), True
        if shards:
            lo, hi = world.shard(n)
            if lo == hi:  # fewer rows than processes: a copied row with weight 0 keeps this one in step
                lo, hi, keep = 0, 1, False
        rr, y = part.rr[i[lo:hi]], part.y[i[lo:hi]]
        # --template-swap pairs rows of the whole batch, so a shard swaps it all and keeps its rows
        x = swap_templates(part.x[i], template_swap, generator)[lo:hi] if template_swap else part.x[i[lo:hi]]
        batch_w = None if part.w is None else part.w[i]  # --patient-balance: the whole batch's beat weights
        w = None if batch_w is None else batch_w[lo:hi]
        if augment_fs:
            x = augment(x, augment_fs, generator, (lo, hi, n) if shards else None)
        logits = model(x, rr if use_rr else None)
        if shards:  # this process's share of the batch's mean; x size: DDP averages the gradients
            loss = loss_fn.sum(logits, y, w) * float(keep) / loss_fn.normaliser(part.y[i], batch_w)
            step_loss = loss * world.size
        else:
            loss = step_loss = loss_fn(logits, y, w)
        opt.zero_grad(set_to_none=True)
        step_loss.backward()
        opt.step()
        sched.step()
        if average is not None:
            average.update()
        total += loss.detach().double() * n
        seen += n
        if keep:
            preds.append(logits.detach().argmax(1))
            labels.append(y)
        if shards:
            world.stop_check(step)
        if not bar.disable and step % 20 == 0:  # the progress bar's loss: a sync every 20 steps
            bar.set_postfix(loss=f"{total.item() * (world.size if shards else 1) / seen:.4f}")
    if not shards:
        return total.item() / seen, np.stack([torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy()])
    c = logits.shape[1]  # all processes' (label, prediction) counts -> pairs
    codes = torch.cat([yy * c + pp for yy, pp in zip(labels, preds)]) if labels else part.y[:0]
    counts = world.sum_(torch.bincount(codes, minlength=c * c))
    pairs = np.repeat(np.arange(c * c), counts.cpu().numpy())
    return world.sum_(total).item() / seen, np.stack([pairs % c, pairs // c])


@dataclass
class FitOptions:
    """What the training loop needs to know (options.RunConfig holds it for a run)."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    seed: int
    focal: bool = False
    focal_gamma: float = 2.0
    class_weights: str | None = None  # None | "inverse" | "sqrt"
    patient_balance: float = 0.0      # > 0: per-beat weights evening out patients within a class
    augment_fs: int | None = None     # sampling rate when augmenting, else None
    quiet: bool = False
    template_swap: float = 0.0        # > 0: share of training beats moved onto another beat's template
    ema_epochs: float = 0.0           # > 0: evaluate and keep a moving average of the weights
    stop_epoch: int | None = None     # stop after this epoch of the `epochs`-long schedule (--cv's final fit)

    @classmethod
    def from_config(cls, cfg) -> "FitOptions":
        """From an options.RunConfig."""
        return cls(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                   patience=cfg.patience, seed=cfg.seed, focal=cfg.focal, focal_gamma=cfg.focal_gamma,
                   class_weights=cfg.class_weights, patient_balance=cfg.patient_balance,
                   augment_fs=cfg.fs if cfg.augment else None, quiet=cfg.quiet, template_swap=cfg.template_swap,
                   ema_epochs=cfg.ema_epochs)


def new_state() -> dict:
    """fit's state before the first epoch (checkpoint.TRAINING_KEYS are what --resume keeps of it)."""
    return {"epoch": 0, "history": [], "best_val": {}, "best_state": None, "bad_epochs": 0, "ema_state": None,
            "members": []}


def fit(model: nn.Module, tr: BeatTensors, va: BeatTensors | None, class_names: list[str], opts: FitOptions,
        state: dict, save_state: Callable[[dict], None], device, log: Callable[[str], None] = print,
        on_epoch: Callable[[int, np.ndarray, float, np.ndarray], None] | None = None,
        world: World | None = None) -> dict:
    """Train with early stopping on validation macro-F1; returns the state (best weights,
    history, ...). A resumed state (epoch > 0) brings the weights, optimiser, schedule and RNG.
    After every epoch `save_state(state)` persists it for --resume (before the epoch's line is
    printed), and `on_epoch(epoch, val predictions, val loss, val probabilities)` sees the epoch's
    validation (cross-validation collects held-out outputs so). Without a validation part (`va`
    None) the last epoch is the best. Ctrl-C stops cleanly after marking the state interrupted;
    the caller evaluates the best weights.

    `world` (a distributed run, see distributed.py): every process trains its shard of each
    batch; rank 0 alone validates, keeps the state and logs, and its early-stopping decision
    and any process's Ctrl-C reach all processes at the same step."""
    world = world or World()
    use_rr = model.rr_dim > 0
    if state["epoch"] > 0:  # resumed: the weights (with their RR standardisation) go on from there
        model.load_state_dict(state["model_state"])
    elif model.rr_norm:  # standardisation from the training part
        model.set_rr_stats(tr.rr)
    weight = (class_weights(tr.y.cpu().numpy(), len(class_names), opts.class_weights).to(device)
              if opts.class_weights else None)
    loss_fn = Loss(opts.focal, opts.focal_gamma, weight)
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
                    vp, vprob, va_loss = predict(evaluated, va, opts.batch_size, use_rr, loss_fn)
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


# --ensemble K: member m trains from seed + MEMBER_SEED_STEP * m (its initialisation, batch order and
# dropout), so member 0 is exactly the single-model run of the same seed.
MEMBER_SEED_STEP = 10007


def member_seed(seed: int, member: int) -> int:
    """The seed of ensemble member `member` of a run seeded `seed`."""
    return seed + MEMBER_SEED_STEP * member


def _finished(state: dict) -> dict:
    """What an ensemble keeps of a finished member's training."""
    return {k: state[k] for k in ("best_state", "best_val", "history")}


def fit_members(opts: FitOptions, members: int, build: Callable[[], nn.Module], tr: BeatTensors,
                va: BeatTensors | None, class_names: list[str], state: dict, save_state: Callable[[dict], None],
                device, log: Callable[[str], None] = print, world: World | None = None
                ) -> tuple[nn.Module | None, dict]:
    """`fit` once per ensemble member (one member: the plain run), each from `build()` seeded by
    member_seed(opts.seed, m); the finished members ride along in the next one's training state,
    so --resume goes on with the member it stopped in. -> (the model to test: the best weights, or
    the Ensemble of the members' best weights, in eval mode on `device`; None where there is none:
    another process of a distributed run, nothing trained, or an ensemble interrupted; the state,
    whose best_state / best_val / history then describe that model)."""
    world = world or World()
    for m in range(len(state["members"]), members):
        seed = member_seed(opts.seed, m)
        torch.manual_seed(seed)
        np.random.seed(seed)
        model = build()
        if members > 1:
            log(f"ensemble member {m + 1}/{members} (seed {seed})")
        state = fit(model, tr, va, class_names, replace(opts, seed=seed), state, save_state, device, log, world=world)
        if state.get("interrupted"):
            break
        if m < members - 1:  # the next member starts afresh
            state = {**new_state(), "members": state["members"] + [_finished(state)]}
    if not world.is_main or state["best_state"] is None or (members > 1 and state.get("interrupted")):
        return None, state
    if members == 1:
        model.load_state_dict(state["best_state"])  # the test part sees the best weights only
        return model, state
    done = state["members"] + [_finished(state)]
    parts = []
    for d in done:
        parts.append(build())
        parts[-1].load_state_dict(d["best_state"])
    model = Ensemble(parts).to(device)
    state.update(best_state=cpu_state(model), history=[{**row, "member": i} for i, d in enumerate(done)
                                                        for row in d["history"]],
                 best_val={"epoch": None, "members": [d["best_val"] for d in done]})
    if va is not None:  # what early stopping saw, for the ensemble as a whole
        vp, _, _ = predict(model, va, opts.batch_size, model.rr_dim > 0)
        vm = classification_metrics(va.y.cpu().numpy(), vp, class_names)
        state["best_val"].update(macro_f1=vm["macro_f1"], accuracy=vm["accuracy"])
    return model, state


def evaluate_part(model: nn.Module, part: BeatTensors, y: np.ndarray, record: np.ndarray,
                  class_names: list[str], *, grouped: bool, bootstrap: int, seed: int,
                  batch_size: int) -> dict:
    """The model's predictions of one part, scored by metrics.test_metrics (the report's `test`)."""
    pred, _, _ = predict(model, part, batch_size, model.rr_dim > 0)
    return test_metrics(y, pred, record, class_names, grouped=grouped, bootstrap=bootstrap, seed=seed)
