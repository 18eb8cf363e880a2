"""Splits of the beat data into train / val / test, and fast in-memory batches for torch.

Three protocols share the one pipeline of utils.load_beats and differ only in how they split;
`load_split` loads and splits in one call, `SPLITTERS` maps each protocol to its function:

- ``stratified``   beat-wise, class ratios kept: the index split is stratified_dataset.py's
                   (``stratified_beat_split`` here wraps it). Intra-patient: optimistic.
- ``random``       record-wise, here (``random_record_split``): 70/15/15 of the *records* (the
                   product's ``--no-stratified``); records 201 and 202 (one patient) stay together.
- ``interpatient`` de Chazal et al. 2004, here (``interpatient_split``): train DS1, test DS2,
                   paced records excluded; validation is a seeded subset of DS1 records.

Explicit ``train/val/test`` record lists override the mode (``explicit_split``).

Inter-patient with cross-validation (``--cv K``): ``interpatient_folds`` cuts DS1 into K
patient-grouped folds with the S and V beats spread as evenly as the records allow; trainer.py
chooses the number of epochs from the folds' held-out predictions, then trains on all of DS1
(``interpatient_cv_split``: no validation part) and tests DS2 once. DS2 takes part in no choice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from stratified_dataset import LEAKAGE_WARNING, stratified_split
from cli import DataError
from config import SPLIT_MODES
from utils import MITDB_RECORDS, BeatData, PreprocConfig, load_beats, stack_inputs

PARTS = ("train", "val", "test")

# de Chazal, O'Dwyer & Reilly 2004, IEEE TBME 51(7): the inter-patient protocol.
DS1 = tuple(str(r) for r in (101, 106, 108, 109, 112, 114, 115, 116, 118, 119, 122, 124, 201,
                             203, 205, 207, 208, 209, 215, 220, 223, 230))
DS2 = tuple(str(r) for r in (100, 103, 105, 111, 113, 117, 121, 123, 200, 202, 210, 212, 213,
                             214, 219, 221, 222, 228, 231, 232, 233, 234))
PACED = ("102", "104", "107", "217")
# Records of one patient (MIT-BIH: 201 and 202 come from the same subject).
SAME_PATIENT = (("201", "202"),)
INTERPATIENT_VAL_RECORDS = 4  # of DS1's 22, held out for early stopping and model selection


@dataclass
class Splits:
    """Indices into a BeatData for each part, plus what a report needs to describe them."""
    mode: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    records: dict[str, list[str]] = field(default_factory=dict)  # part -> records in it
    warning: str | None = None
    notes: list[str] = field(default_factory=list)

    def part(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def summary(self, data: BeatData) -> dict:
        """JSON-ready description for the report."""
        return {"split": self.mode, "records": self.records,
                "class_counts": {p: data.class_counts(self.part(p)) for p in PARTS},
                "beats": {p: int(len(self.part(p))) for p in PARTS},
                "dropped": int(sum(data.dropped.values())), "warning": self.warning,
                "notes": self.notes}


def records_for(mode: str, explicit: dict[str, Sequence[str]] | None = None) -> list[str]:
    """Which records a split mode needs loaded."""
    if explicit:
        return list(dict.fromkeys(r for p in PARTS for r in explicit[p]))
    if mode == "interpatient":
        return list(DS1 + DS2)
    return list(MITDB_RECORDS)


def _patient_groups(records: Sequence[str]) -> list[list[str]]:
    """Records grouped by patient (201+202 together), in the given order."""
    groups, seen = [], set()
    for r in records:
        if r in seen:
            continue
        g = next((list(p) for p in SAME_PATIENT if r in p), [r])
        g = [x for x in g if x in records]
        seen.update(g)
        groups.append(g)
    return groups


def _indices(data: BeatData, records: Sequence[str]) -> np.ndarray:
    return np.flatnonzero(np.isin(data.record, [int(r) for r in records])).astype(np.int64)


def _from_records(data: BeatData, mode: str, parts: dict[str, list[str]], **kw) -> Splits:
    return Splits(mode, *(_indices(data, parts[p]) for p in PARTS),
                  records={p: sorted(parts[p], key=int) for p in PARTS}, **kw)


def random_record_split(data: BeatData, seed: int, fractions=(0.7, 0.15, 0.15)) -> Splits:
    """Record-wise random split: patients (not beats) are shuffled into 70/15/15."""
    present = sorted({str(r) for r in np.unique(data.record)}, key=int)
    groups = _patient_groups(present)
    order = np.random.default_rng(seed).permutation(len(groups))
    n = len(groups)
    n_val = max(1, int(round(fractions[1] * n)))
    n_test = max(1, int(round(fractions[2] * n)))
    cut = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    parts = {p: [r for i in cut[p] for r in groups[i]] for p in PARTS}
    return _from_records(data, "random", parts,
                         notes=["records 201 and 202 (one patient) are kept in the same part"])


def _require_ds1_ds2(data: BeatData) -> None:
    present = {str(r) for r in np.unique(data.record)}
    lacking = [r for r in DS1 + DS2 if r not in present]
    if lacking:
        raise DataError(f"inter-patient split needs all DS1 and DS2 records; missing {lacking}")


def interpatient_split(data: BeatData, seed: int) -> Splits:
    """DS1 -> train (+ val), DS2 -> test; paced records 102 104 107 217 excluded.

    Validation: INTERPATIENT_VAL_RECORDS DS1 records drawn with `seed`; draws are repeated
    (same seed stream) until the validation records hold at least one beat of every class that
    has >= 100 beats in DS1 and training keeps at least half of each class, so early stopping
    on macro-F1 sees the rare classes. DS2 is never looked at for any choice.
    """
    _require_ds1_ds2(data)
    ds1 = np.isin(data.record, [int(r) for r in DS1])
    c = len(data.class_names)
    total = np.bincount(data.y[ds1], minlength=c)
    per_rec = {r: np.bincount(data.y[data.record == int(r)], minlength=c) for r in DS1}
    rng = np.random.default_rng(seed)
    for _ in range(10_000):
        val = sorted(rng.choice(DS1, INTERPATIENT_VAL_RECORDS, replace=False).tolist(), key=int)
        vc = sum(per_rec[r] for r in val)
        if np.all(vc[total >= 100] > 0) and np.all(total - vc >= np.ceil(total / 2)):
            break
    else:  # pragma: no cover - cannot happen with the MIT-BIH records
        raise DataError("could not draw inter-patient validation records that cover every class")
    parts = {"train": [r for r in DS1 if r not in val], "val": val, "test": list(DS2)}
    return _from_records(data, "interpatient", parts, notes=[
        f"de Chazal 2004 DS1/DS2; validation = DS1 records {' '.join(val)} (seed {seed}); "
        f"paced records {' '.join(PACED)} excluded"])


def interpatient_cv_split(data: BeatData, seed: int) -> Splits:
    """DS1 -> train (all 22 records), DS2 -> test, no validation part: the final fit of --cv,
    whose number of epochs the DS1 folds chose."""
    _require_ds1_ds2(data)
    parts = {"train": list(DS1), "val": [], "test": list(DS2)}
    return _from_records(data, "interpatient", parts, notes=[
        f"de Chazal 2004 DS1/DS2; trained on all of DS1 for the epochs chosen by cross-validation "
        f"inside DS1; paced records {' '.join(PACED)} excluded"])


# DS1's beats per record as the .atr files annotate them (all beat annotations, AAMI classes):
# record -> (S beats, V beats, beats). The folds are built from this table, so they are one
# fixed function of K, the same whatever window or inputs a run uses (tests check the table
# against the annotation files).
DS1_BEATS: dict[str, tuple[int, int, int]] = {
    "101": (3, 0, 1865), "106": (0, 520, 2027), "108": (4, 17, 1763), "109": (0, 38, 2532),
    "112": (2, 0, 2539), "114": (12, 43, 1879), "115": (0, 0, 1953), "116": (1, 109, 2412),
    "118": (96, 16, 2278), "119": (0, 444, 1987), "122": (0, 0, 2476), "124": (31, 47, 1619),
    "201": (128, 198, 1963), "203": (2, 444, 2980), "205": (3, 71, 2656), "207": (107, 210, 1860),
    "208": (2, 992, 2955), "209": (383, 1, 3005), "215": (3, 164, 3363), "220": (94, 0, 2048),
    "223": (73, 473, 2605), "230": (0, 1, 2256)}


def interpatient_folds(k: int) -> list[list[str]]:
    """DS1's records in `k` folds, patients never split, S and V beats spread evenly.

    Deterministic (no seed, no data): patients in order of their share of DS1's S plus V beats
    (DS1_BEATS), each into the fold with the smallest share so far (largest first, as in LPT
    scheduling), so the S-rich records (209, 201, 207, 118, 220, 223) do not all sit in one fold,
    as far as the records allow (209 alone holds 40 % of DS1's S beats)."""
    if not 2 <= k <= len(DS1):
        raise DataError(f"--cv must be between 2 and {len(DS1)} (DS1's records), got {k}")
    total = np.sum([DS1_BEATS[r] for r in DS1], axis=0)  # (S, V, beats)
    groups = _patient_groups(list(DS1))
    share = [(sum(DS1_BEATS[r][0] for r in g) / total[0] + sum(DS1_BEATS[r][1] for r in g) / total[1],
              sum(DS1_BEATS[r][2] for r in g)) for g in groups]
    load = np.zeros((k, 2))
    folds: list[list[str]] = [[] for _ in range(k)]
    for i in sorted(range(len(groups)), key=lambda i: (-share[i][0], -share[i][1], groups[i])):
        f = int(np.lexsort((load[:, 1], load[:, 0]))[0])  # least key-class share, then fewest beats
        folds[f] += groups[i]
        load[f] += share[i]
    return [sorted(f, key=int) for f in folds]


def stratified_beat_split(data: BeatData, seed: int) -> Splits:
    tr, va, te = stratified_split(data.y, seed)
    recs = sorted({str(r) for r in np.unique(data.record)}, key=int)
    return Splits("stratified", tr, va, te, records={p: recs for p in PARTS},
                  warning=LEAKAGE_WARNING)


SPLITTERS: dict[str, Callable[[BeatData, int], Splits]] = {
    "stratified": stratified_beat_split, "random": random_record_split,
    "interpatient": interpatient_split}
assert tuple(SPLITTERS) == SPLIT_MODES[:3], "config.SPLIT_MODES names dataset.SPLITTERS (and patient-specific)"


def explicit_split(data: BeatData, explicit: dict[str, Sequence[str]]) -> Splits:
    """User-given record lists; a record in two parts is refused (it would leak)."""
    parts = {p: [str(r) for r in explicit[p]] for p in PARTS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = sorted(set(parts[a]) & set(parts[b]), key=int)
        if both:
            raise DataError(f"record(s) {' '.join(both)} are in both --{a}-recs and --{b}-recs")
    warning = None
    for group in SAME_PATIENT:
        where = {p for p in PARTS for r in group if r in parts[p]}
        if len(where) > 1:
            warning = (f"records {' and '.join(group)} are one patient but sit in different parts "
                       f"({', '.join(sorted(where))}): patient leakage")
    return _from_records(data, "explicit", parts, warning=warning)


def make_splits(data: BeatData, mode: str, seed: int,
                explicit: dict[str, Sequence[str]] | None = None,
                class_limit: int | None = None, cv: int | None = None) -> Splits:
    """Split `data` by `mode` (or by explicit record lists), cap training classes, validate.
    `cv` (inter-patient only): the final split of cross-validation, without a validation part."""
    if cv:
        if explicit or mode != "interpatient":
            raise DataError("--cv runs inside DS1 of the inter-patient protocol: use it with --split "
                            "interpatient and no explicit record lists")
        splits = interpatient_cv_split(data, seed)
    elif explicit:
        splits = explicit_split(data, explicit)
    elif mode in SPLITTERS:
        splits = SPLITTERS[mode](data, seed)
    else:
        raise DataError(f"unknown split {mode!r}; choose one of {list(SPLITTERS)}")
    if class_limit is not None:
        splits.train = limit_per_class(data.y, splits.train, class_limit, seed)
        splits.notes.append(f"training part capped at {class_limit} beats per class (seeded)")
    for p in PARTS:
        if len(splits.part(p)) == 0 and not (cv and p == "val"):
            raise DataError(f"the {p} part of the {splits.mode} split is empty "
                            f"(records: {' '.join(splits.records.get(p, [])) or 'none'})")
    return splits


def load_split(root: str, cfg: PreprocConfig, mode: str, seed: int, *,
               explicit: dict[str, Sequence[str]] | None = None, class_limit: int | None = None,
               cv: int | None = None, use_cache: bool = True, download: bool = True,
               log: Callable[[str], None] = print) -> tuple[BeatData, Splits]:
    """Load the records `mode` (or the explicit lists) needs and split them; logs the split."""
    data = load_beats(root, cfg, records=records_for(mode, explicit), use_cache=use_cache,
                      download=download, log=log)
    splits = make_splits(data, mode, seed, explicit=explicit, class_limit=class_limit, cv=cv)
    if splits.warning:
        log(f"NOTE: {splits.warning}")
    for n in splits.notes:
        log(f"note: {n}")
    log("beats  " + "  ".join(f"{p}: {len(splits.part(p))} {data.class_counts(splits.part(p))}" for p in PARTS))
    return data, splits


def limit_per_class(y: np.ndarray, idx: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most `limit` indices of each class from `idx` (seeded choice), sorted."""
    if limit < 1:
        raise DataError(f"--class-limit must be >= 1, got {limit}")
    rng = np.random.default_rng(seed + 1)
    keep = [rng.permutation(idx[y[idx] == c])[:limit] for c in np.unique(y[idx])]
    return np.sort(np.concatenate(keep)).astype(np.int64)


class BeatTensors:
    """One split part as contiguous tensors, batched by slicing instead of per-item
    ``__getitem__`` + collate (which costs more than a small model's forward pass on a CPU)."""

    def __init__(self, data: BeatData, idx: np.ndarray, device: str | torch.device = "cpu"):
        self._set(data.x[idx], None if data.tm is None else data.tm[idx], data.rr[idx], data.y[idx], device)
        self.record = data.record[idx]  # (N,) numpy: whose beat each row is (--patient-balance)
        self.rpeak = data.rpeak[idx]    # (N,) numpy: its R-peak sample in that record

    @classmethod
    def from_arrays(cls, x: np.ndarray, tm: np.ndarray | None, rr: np.ndarray, y: np.ndarray | None = None,
                    device: str | torch.device = "cpu") -> "BeatTensors":
        """Inputs that are not a BeatData part (predict.py, utils.beat_inputs' output): no labels
        -> y is all 0."""
        self = cls.__new__(cls)
        self._set(x, tm, rr, y if y is not None else np.zeros(len(x), np.int64), device)
        return self

    def _set(self, x: np.ndarray, tm: np.ndarray | None, rr: np.ndarray, y: np.ndarray, device) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(stack_inputs(x, tm))).to(device)  # (N, C, T)
        self.rr = torch.from_numpy(np.ascontiguousarray(rr)).to(device)  # (N, F)
        self.y = torch.from_numpy(np.ascontiguousarray(y)).to(device)    # (N,)
        self.record: np.ndarray | None = None
        self.rpeak: np.ndarray | None = None
        self.w: torch.Tensor | None = None  # (N,) per-beat loss weights, or None (train_one_epoch)

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None):
        """Yield (x (B,C,T), rr (B,F), y (B,)) batches; a seeded generator makes shuffling repeatable."""
        for i in self.batch_index(batch_size, shuffle, generator):
            yield self.x[i], self.rr[i], self.y[i]

    def batch_index(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None):
        """The rows of each batch: a slice in order, or a tensor of indices into a seeded
        permutation (the same on every process of a distributed run, which each take a shard)."""
        n = len(self)
        order = torch.randperm(n, generator=generator).to(self.y.device) if shuffle else None
        for s in range(0, n, batch_size):
            yield slice(s, s + batch_size) if order is None else order[s:s + batch_size]

    def num_batches(self, batch_size: int) -> int:
        return (len(self) + batch_size - 1) // batch_size
