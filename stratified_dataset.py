"""Beat-wise stratified split (the product's default `--split stratified`).

Each class's beats are shuffled (seeded) and cut 70/15/15, so every part keeps the class ratios.

Caution, and the reason this is not the protocol papers compare on: beats of the *same
patient* land in train, validation and test alike. A model can learn each patient's beat shape
and scores far higher than it would on a new patient (intra-patient evaluation, optimistic).
Use `--split interpatient` for results comparable with the literature.
"""
from __future__ import annotations

import numpy as np

LEAKAGE_WARNING = ("stratified beat-wise split: beats of the same patient are in train, val and "
                   "test (intra-patient evaluation) - scores are optimistic; use --split "
                   "interpatient for patient-independent results")


def stratified_split(y: np.ndarray, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test), each sorted, splitting every class by `fractions`.

    Per class, the first round(f_train * n) shuffled beats go to train, the next
    round(f_val * n) to val, the rest to test; classes with a handful of beats therefore still
    put one in test before val. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    f_train, f_val, _ = fractions
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = len(idx)
        n_train = int(round(f_train * n))
        n_val = int(round(f_val * n))
        if n >= 3:  # keep at least one beat of the class in each part when possible
            n_train = min(max(n_train, 1), n - 2)
            n_val = min(max(n_val, 1), n - n_train - 1)
        cut = (n_train, n_train + n_val)
        for p, chunk in zip(parts, np.split(idx, cut)):
            p.append(chunk)
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) if p else np.empty(0, np.int64)
                 for p in parts)
