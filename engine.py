"""The training and inference steps: loss, schedule, augmentation, one epoch, prediction, and
the test-part evaluation. trainer.py wires them into a run; evaluate.py reuses the inference.

Everything here takes tensors and plain values (no command-line namespace), so it can be tested
and reused alone.
"""
from __future__ import annotations

import copy
import hashlib
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dataset import BeatTensors
from metrics import (bootstrap_ci, classification_metrics, confusion_matrix, ec57_stats, f1_from_cm,
                     key_class_stats)

CLASS_WEIGHTINGS = {"inverse": 1.0, "sqrt": 0.5}  # --class-weights mode -> power of N / (C * n_c)
# Record 232 (DS2) holds about 75 % of DS2's S beats, so the literature's S figures are mostly
# one patient's: reports give the key-class figures without it as well.
RECORDS_REPORTED_WITHOUT = ("232",)


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
    """Cross-entropy (optionally label-smoothed), or focal loss -(1 - p_t)^gamma * log p_t (Lin et
    al. 2017), optionally class-weighted and/or beat-weighted (`w`, e.g. patient_balance_weights).
    `loss(logits, y, w)` is the batch's weighted mean: the sum of weight[y] * w * loss over the sum
    of weight[y] * w.
    A distributed run splits a batch over processes: each computes `loss.sum(logits, y, w) /
    loss.normaliser(y, w of the whole batch)`, and these shares add up to the batch's mean exactly
    (a weighted mean divides by the batch's sum of weights, which the processes' own weighted means
    would not share)."""

    def __init__(self, focal: bool, gamma: float, weight: torch.Tensor | None, smoothing: float = 0.0):
        self.focal, self.gamma, self.weight, self.smoothing = focal, gamma, weight, smoothing
        # F.cross_entropy with both `weight` and `label_smoothing` weights each class's smoothing
        # term by that class's weight; here a beat's whole loss gets its own class's weight, so
        # smoothing leaves the plain path and goes through the per-beat one.
        self.plain = not focal and not smoothing

    def _per_beat(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) each row's unweighted loss."""
        if not self.focal:  # (1 - eps) * -log p_y + eps * mean over classes of -log p_c
            return F.cross_entropy(logits, y, reduction="none", label_smoothing=self.smoothing)
        logp = F.log_softmax(logits, 1).gather(1, y[:, None]).squeeze(1)  # (B,)
        return -((1 - logp.exp()) ** self.gamma) * logp

    def _beat_weights(self, y: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor | None:
        """(B,) the weight of each row (class weight times beat weight), or None when unweighted."""
        if self.weight is None:
            return w
        return self.weight[y] if w is None else self.weight[y] * w

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if w is None and self.plain:  # the plain path, bit for bit what it was before beat weights
            return F.cross_entropy(logits, y, weight=self.weight)
        if w is None and self.weight is None:
            return self._per_beat(logits, y).mean()
        return self.sum(logits, y, w) / self.normaliser(y, w)

    def sum(self, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """The numerator of the mean: the (weighted) sum over these rows."""
        if w is None and self.plain:
            return F.cross_entropy(logits, y, weight=self.weight, reduction="sum")
        loss = self._per_beat(logits, y)  # (B,)
        bw = self._beat_weights(y, w)
        return (loss * bw).sum() if bw is not None else loss.sum()

    def normaliser(self, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor | int:
        """The denominator of the mean over a batch with labels `y` (and beat weights `w`): rows,
        or their sum of weights."""
        bw = self._beat_weights(y, w)
        return len(y) if bw is None else bw.sum().clamp_min(1e-12)


def make_loss(focal: bool, gamma: float, weight: torch.Tensor | None, smoothing: float = 0.0) -> Loss:
    """The training loss (see Loss); `smoothing` = label smoothing of the cross-entropy."""
    return Loss(focal, gamma, weight, smoothing)


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


def _scaled_by(var: torch.Tensor):
    """A forward hook for a train-mode BatchNorm: centre on the batch mean as it does, but scale by
    the given (training) variance instead of the batch's (--adapt-stats mean)."""
    def hook(bn: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        x = inputs[0]  # (B, C) or (B, C, T)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = x.mean([0, *range(2, x.dim())])
        return (x - mean.view(shape)) * (bn.weight * torch.rsqrt(var + bn.eps)).view(shape) + bn.bias.view(shape)
    return hook


def record_blocks(record: np.ndarray, rpeak: np.ndarray, block: int) -> Iterator[list[np.ndarray]]:
    """For each record, the row indices of its beats in consecutive blocks of `block` samples by
    R-peak time, earliest block first (empty blocks left out): the unit the --cv-only adaptation
    probes update on, each block seeing only the ones before it."""
    blk = np.floor_divide(rpeak, block)  # (N,) block of each beat in its record
    for r in np.unique(record):
        in_r = np.flatnonzero(record == r)
        yield [in_r[blk[in_r] == b] for b in np.unique(blk[in_r])]


def adapted_predict(model: nn.Module, part: BeatTensors, batch_size: int, use_rr: bool, block: int,
                    loss_fn=None, stats: str = "both") -> tuple[np.ndarray, np.ndarray, float]:
    """`predict` with BatchNorm statistics adapted to each record from its own earlier beats
    (--adapt-norm; AdaBN, Li et al. 2016, made causal): a record is cut into blocks of `block`
    samples by R-peak time (record_blocks); block 0 is predicted with the training statistics,
    block b with the mean of the batch statistics of blocks 0..b-1. No label, later beat or other
    record is used, and `model` is not changed (each record adapts a copy). Why: a new patient's
    beats sit elsewhere in feature space than the training patients'; re-centring the features on
    the wearer's own beats is what a monitor can do without labels. `stats` "mean": only the means
    adapt, the variances stay the training ones. -> as `predict`."""
    if part.record is None or part.rpeak is None:
        raise ValueError("adapted_predict needs each beat's record and R-peak sample")
    model.eval()
    logits = torch.empty((len(part), model.num_classes), device=part.y.device)
    bs = max(batch_size, 512)
    for blocks in record_blocks(part.record, part.rpeak, block):
        m = copy.deepcopy(model)
        m.requires_grad_(False)  # statistics passes build no graph
        bns = [b for b in m.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)]
        train_var = [bn.running_var.clone() for bn in bns]
        adapted = False
        for i, rows in enumerate(blocks):
            rows = torch.from_numpy(rows).to(part.y.device)
            x, rr = part.x[rows], part.rr[rows] if use_rr else None
            with torch.no_grad():
                for lo in range(0, len(rows), bs):
                    logits[rows[lo:lo + bs]] = m(x[lo:lo + bs], None if rr is None else rr[lo:lo + bs]).float()
            if i + 1 == len(blocks) or len(rows) < 2:
                continue
            if not adapted:  # from here on the record's own statistics, averaged over its blocks
                for bn in bns:
                    bn.reset_running_stats()
                    bn.momentum = None
                adapted = True
            for bn in bns:
                bn.train()
            hooks = ([bn.register_forward_hook(_scaled_by(v)) for bn, v in zip(bns, train_var)]
                     if stats == "mean" else [])
            with torch.enable_grad():  # ConvBN folds BN only under no_grad; nothing here requires grad
                m(x, rr)
            for h in hooks:
                h.remove()
            for bn, v in zip(bns, train_var):
                bn.eval()
                if stats == "mean":
                    bn.running_var.copy_(v)
    loss = (loss_fn(logits, part.y).item() if loss_fn is not None else float("nan"))
    p = torch.softmax(logits, 1).cpu().numpy()
    return p.argmax(1), p, loss


def prior_adapted(prob: np.ndarray, record: np.ndarray, rpeak: np.ndarray, block: int,
                  train_prior: np.ndarray, iters: int = 100, adapt: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities re-weighted per record for the record's own class prior (--adapt-prior;
    Saerens, Latinne & Decaestecker 2002, made causal): a record is cut into blocks of `block`
    samples by R-peak time (record_blocks); block 0 keeps the model's output, block b is re-weighted by
    prior / train_prior, the prior estimated by EM from the outputs on the record's blocks 0..b-1.
    No label, later beat or other record is used. Why: patients differ most in how many S and V
    beats they have, and a net trained on DS1's mix expects DS1's. `adapt` (C,) bool (--adapt-classes):
    only these classes' priors are estimated, the others stay at the training prior (the EM under that
    constraint), since a class seen a few times in training (DS1: 8 Q beats) has a prior that any
    stray output multiplies. (N, C) -> (N, C)."""
    out = prob.astype(np.float64, copy=True)
    base = np.clip(np.asarray(train_prior, np.float64), 1e-6, None)  # (C,)
    adapt = np.ones(len(base), bool) if adapt is None else np.asarray(adapt, bool)
    mass = base[adapt].sum()  # the adapted classes' share, kept: the fixed ones keep theirs
    for blocks in record_blocks(record, rpeak, block):
        for b in range(1, len(blocks)):
            seen = prob[np.concatenate(blocks[:b])].astype(np.float64)  # (n, C) the record's earlier outputs
            pi = base
            for _ in range(iters):  # EM: posteriors under the current prior -> their mean
                q = seen * (pi / base)
                new = (q / q.sum(1, keepdims=True)).mean(0)
                if not adapt.all():
                    new = np.where(adapt, new / new[adapt].sum() * mass, base)
                done = np.abs(new - pi).max() < 1e-7
                pi = new
                if done:
                    break
            rows = blocks[b]
            q = out[rows] * (pi / base)
            out[rows] = q / q.sum(1, keepdims=True)
    return out.astype(prob.dtype)


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


def evaluate_part(model: nn.Module, part: BeatTensors, y: np.ndarray, record: np.ndarray,
                  class_names: list[str], *, grouped: bool, bootstrap: int, seed: int,
                  batch_size: int) -> dict:
    """Test metrics, EC57 statistics, bootstrap CIs and per-record counts of one evaluated part.

    `grouped`: resample whole records in the bootstrap (beats of one record are not
    independent); False where the split mixes records' beats (stratified)."""
    pred, _, _ = predict(model, part, batch_size, model.rr_dim > 0)
    out = classification_metrics(y, pred, class_names)
    out["ec57"] = ec57_stats(y, pred, class_names, record=record)
    if bootstrap:
        out["ci"] = bootstrap_ci(y, pred, class_names, groups=record if grouped else None,
                                 n_boot=bootstrap, seed=seed)
    out["key_classes"] = key_class_stats(y, pred, class_names)
    out["per_record"] = {str(r): {"beats": int((record == r).sum()),
                                  "accuracy": float((pred[record == r] == y[record == r]).mean()),
                                  "key_classes": key_class_stats(y[record == r], pred[record == r], class_names)}
                         for r in np.unique(record)}
    for r in RECORDS_REPORTED_WITHOUT:  # one record that dominates a class: figures without it too
        if np.any(record == int(r)) and np.any(record != int(r)):
            out[f"key_classes_without_{r}"] = key_class_stats(y[record != int(r)], pred[record != int(r)],
                                                              class_names)
    out["predictions_sha256"] = hashlib.sha256(pred.astype(np.int8).tobytes()).hexdigest()
    out["n_beats"] = int(len(y))
    return out


# Offsets tried for each key class's log-probability (0 first: of equal scores, no change wins).
_STEPS = np.arange(-8, 17) * 0.25                  # -2.0, -1.75, ..., 4.0
OFFSET_GRID = np.concatenate([[0.0], _STEPS[_STEPS != 0]])


def offset_scores(logp: np.ndarray, y: np.ndarray, keys: list[int],
                  grid: np.ndarray = OFFSET_GRID) -> tuple[np.ndarray, np.ndarray]:
    """Macro-F1 of argmax(logp + b) for every offset vector b on the grid (offsets on the `keys`
    classes, 0 elsewhere). logp: (N, C) log-probabilities. -> ((M, C) offsets, (M,) macro-F1)."""
    C = logp.shape[1]
    combos = np.stack(np.meshgrid(*[grid] * len(keys), indexing="ij"), -1).reshape(-1, len(keys))  # (M, k)
    offs = np.zeros((len(combos), C))
    offs[:, keys] = combos
    present = np.bincount(y, minlength=C) > 0
    cms = np.stack([confusion_matrix(y, (logp + b).argmax(1), C) for b in offs])  # (M, C, C)
    return offs, f1_from_cm(cms)[:, present].mean(1)   # macro over the classes present, as reported


def tune_offsets(logp: np.ndarray, y: np.ndarray, keys: list[int], folds: list[np.ndarray]) -> dict:
    """Additive offsets of the key classes' log-probabilities that maximise pooled macro-F1 of
    held-out outputs `logp` (N, C), and an honest estimate of what they bring: each fold's beats
    are scored with the offsets chosen on the other folds' beats (cross-fitting), so no beat
    judges the offsets it chose. -> {"offsets": [C floats], "in_sample_macro_f1": the chosen
    offsets' score on the beats that chose them (optimistic), "cross_fitted_pred": (N,) int}."""
    offs, score = offset_scores(logp, y, keys)
    best = offs[int(np.argmax(score))]               # the first of equals: 0 when it ties
    pred = np.empty(len(y), np.int64)
    for f in folds:
        rest = np.ones(len(y), bool)
        rest[f] = False
        o, sc = offset_scores(logp[rest], y[rest], keys)
        pred[f] = (logp[f] + o[int(np.argmax(sc))]).argmax(1)
    return {"offsets": [float(v) for v in best], "in_sample_macro_f1": float(score.max()),
            "cross_fitted_pred": pred}
