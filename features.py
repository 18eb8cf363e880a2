"""Per-beat features, pure NumPy: the RR feature sets of beats.RR_FEATURES and the causal
running-median beat template (the record's "normal" beat, learnt without labels).

utils.beat_inputs is their one caller on the way to a model (training cache, evaluation,
predict.py), so training and inference compute them identically.

Everything here is causal: a beat's features use only the beats before it, plus its own post-RR
(known one beat later, as is usual in the literature). Changing a later beat never changes an
earlier beat's features (tests/test_features.py checks this).

    rr = rr_sequence(rpeaks, fs)                        # (n, rr_dim("sequence")) float32
    tm = running_template(windows)                      # (n, T) float32, windows of every beat
    xb, tb = relative_scale(beats, tm)                  # beat and template on one shared scale
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from beats import _PATIENT, RR_FEATURES as _RR_SETS

RR_FEATURES = list(_PATIENT)  # rr_context's columns (names and meanings in beats.py)


def rr_intervals(rpeaks: np.ndarray, fs: int, min_sec: float) -> tuple[np.ndarray, np.ndarray]:
    """Pre- and post-RR of every beat in seconds, each (n,) float64, clamped to >= min interval.

    First beat: pre := its post. Last beat: post := its pre. (n >= 2)."""
    lo = max(1.0, round(min_sec * fs)) / fs           # at least 1 sample
    rr = np.maximum(np.diff(rpeaks.astype(np.float64)) / fs, lo)  # (n-1,)
    pre = np.concatenate([rr[:1], rr])                 # (n,)
    post = np.concatenate([rr, rr[-1:]])               # (n,)
    return pre, post


def trailing_mean(v: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """mean(v[lo[i] .. i]) for every i (inclusive), via a cumulative sum. (n,)"""
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(len(v))
    return (c[i + 1] - c[lo]) / (i + 1 - lo)


def last_starts(n: int, k: int) -> np.ndarray:
    """First beat of each of n beats' window of its last `k` intervals (its own included). (n,)"""
    return np.maximum(0, np.arange(n) + 1 - k)


def _window_starts(rpeaks: np.ndarray, fs: int, long_sec: float, local: int) -> tuple[np.ndarray, np.ndarray]:
    """First beat of each beat's long-term window (R peaks within `long_sec` s before it) and of
    its local window (the last `local` intervals): ((n,), (n,)) indices, both <= the beat's own."""
    i = np.arange(len(rpeaks))
    t = rpeaks.astype(np.float64)
    return np.minimum(np.searchsorted(t, t - long_sec * fs, side="left"), i), last_starts(len(i), local)


def rr_context(rpeaks: np.ndarray, fs: int, long_sec: float = 300.0, local: int = 10,
               irr: int = 32, min_sec: float = 0.02) -> np.ndarray:
    """Patient-relative RR context of every beat: (n, len(RR_FEATURES)) float32, never NaN/inf.

    rpeaks: (n,) R-peak samples of ALL beats of one record, ascending (duplicates allowed:
    intervals are clamped to max(1 sample, `min_sec`)). Means are over the beat's own pre-RR
    and earlier ones only: the long-term mean over beats whose R peak lies within `long_sec`
    seconds before this one, the local mean over the last `local` pre-RRs, the irregularity over
    the last `irr` pre-RRs. Beats with little history use what exists (the first beat: its own
    intervals, irregularity 0). n < 2: no interval exists; every ratio is 1, irregularity 0.
    """
    rpeaks = np.asarray(rpeaks)
    n = len(rpeaks)
    k = len(RR_FEATURES)
    if n < 2:
        out = np.ones((n, k), np.float32)
        out[:, 6:] = 0.0
        return out
    pre, post = rr_intervals(rpeaks, fs, min_sec)        # (n,), (n,) seconds
    i = np.arange(n)
    lo_long, lo_local = _window_starts(rpeaks, fs, long_sec, local)
    long_mean = trailing_mean(pre, lo_long)           # (n,)
    local_mean = trailing_mean(pre, lo_local)
    lo_irr = np.maximum(0, i + 1 - irr)
    irr_mean = trailing_mean(pre, lo_irr)
    sq_mean = trailing_mean(pre * pre, lo_irr)
    irr_std = np.sqrt(np.maximum(sq_mean - irr_mean ** 2, 0.0))
    # median |dRR| over the dRRs inside the same trailing window: d[j] = |pre[j] - pre[j-1]|, j >= 1
    d = np.abs(np.diff(pre))                           # (n-1,), d[j-1] belongs to beat j
    w = irr - 1                                        # dRRs within `irr` intervals
    mad = np.zeros(n)
    if w >= 1:
        mad[1:] = _trailing_median(d, np.maximum(0, np.arange(n - 1) + 1 - w))
    out = np.stack([pre / long_mean, post / long_mean, pre / local_mean, post / local_mean,
                    post / pre, local_mean / long_mean, irr_std / irr_mean, mad / irr_mean], 1)
    return out.astype(np.float32)


def _trailing_windows(v: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Row i holds v[lo[i] .. i] right-aligned, NaN before it: (n, w), w the longest window.
    lo[i] <= i, so every row holds at least v[i]. n = 0 gives (0, 0)."""
    n = len(v)
    if n == 0:
        return np.zeros((0, 0))
    i = np.arange(n)
    w = int((i + 1 - lo).max())                        # longest window
    pad = np.concatenate([np.full(w - 1, np.nan), v])  # row i of the view ends at v[i]
    win = np.lib.stride_tricks.sliding_window_view(pad, w).copy()  # (n, w): v[i-w+1 .. i]
    first = i - w + 1                                  # index of each row's first column
    win[np.arange(w)[None, :] + first[:, None] < lo[:, None]] = np.nan  # before the window
    return win


def _trailing_median(v: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """median(v[lo[i] .. i]) for every i (inclusive), lo[i] <= i. (n,)"""
    return _nanmedian_rows(_trailing_windows(v, lo))


def rr_robust(rpeaks: np.ndarray, fs: int, long_sec: float = 300.0, local: int = 10,
              min_sec: float = 0.02) -> np.ndarray:
    """rr_context's 8 columns plus pre/post RR over running *medians* (beats._MEDIANS):
    (n, 13) float32, never NaN/inf. The medians span the same beats as rr_context's means (the
    past `long_sec` seconds, the last `local` intervals, this beat's pre-RR included)."""
    rpeaks = np.asarray(rpeaks)
    n = len(rpeaks)
    base = rr_context(rpeaks, fs, long_sec=long_sec, local=local, min_sec=min_sec)  # (n, 8)
    if n < 2:
        return np.concatenate([base, np.ones((n, 5), np.float32)], 1)
    pre, post = rr_intervals(rpeaks, fs, min_sec)
    lo_long, lo_local = _window_starts(rpeaks, fs, long_sec, local)
    long_med, local_med = _trailing_median(pre, lo_long), _trailing_median(pre, lo_local)
    med = np.stack([pre / long_med, post / long_med, pre / local_med, post / local_med,
                    local_med / long_med], 1)
    return np.concatenate([base, med.astype(np.float32)], 1)


def _previous(v: np.ndarray) -> np.ndarray:
    """v shifted by one beat: out[i] = v[i-1], and the first beat keeps its own value. (n,)"""
    return np.concatenate([v[:1], v[:-1]])


def rr_sequence(rpeaks: np.ndarray, fs: int, long_sec: float = 300.0, local: int = 10,
                min_sec: float = 0.02) -> np.ndarray:
    """rr_robust's 13 columns plus the beat-to-beat change (beats.RR_FEATURES["sequence"]'s last three):
    pre_i / pre_(i-1), the previous beat's pre-RR over its local mean, pre_(i-1) / pre_(i-2).
    (n, 16) float32, never NaN/inf. A beat without a predecessor uses its own values (ratios 1)."""
    rpeaks = np.asarray(rpeaks)
    n = len(rpeaks)
    base = rr_robust(rpeaks, fs, long_sec=long_sec, local=local, min_sec=min_sec)  # (n, 13)
    if n < 2:
        return np.concatenate([base, np.ones((n, 3), np.float32)], 1)
    pre, _ = rr_intervals(rpeaks, fs, min_sec)           # (n,) seconds, > 0
    ratio = pre / _previous(pre)                       # pre_i / pre_(i-1)
    pre_local = base[:, list(_PATIENT).index("pre_local")]
    extra = np.stack([ratio, _previous(pre_local), _previous(ratio)], 1)
    return np.concatenate([base, extra.astype(np.float32)], 1)


def _nanmedian_rows(a: np.ndarray) -> np.ndarray:
    """Row medians ignoring NaN (each row has >= 1 finite value), without nanmedian's warnings
    and overhead: NaN sorts last, so the median of the c finite values sits at (c-1)/2."""
    s = np.sort(a, axis=1)                             # (m, w)
    c = np.sum(~np.isnan(a), axis=1)                   # (m,)
    r = np.arange(len(a))
    return 0.5 * (s[r, (c - 1) // 2] + s[r, c // 2])


def _median_rows(w: np.ndarray) -> np.ndarray:
    """Sample-wise median over the rows of w (m, T) -> (T,), equal to np.median(w, axis=0) for
    finite input; a partition of the transposed copy is ~5x faster than np.median here."""
    a = np.ascontiguousarray(w.T)                      # (T, m)
    m = a.shape[1]
    h = m // 2
    if m % 2:
        return np.partition(a, h, axis=1)[:, h]
    p = np.partition(a, h, axis=1)                   # (one kth: several kth is ~7x slower)
    return 0.5 * (p[:, :h].max(1) + p[:, h])         # lower middle = largest of the lower half


def running_template(windows: np.ndarray, history: int = 256, every: int = 64) -> np.ndarray:
    """Causal running-median beat template of every beat: (n, T) float32.

    `windows` (n, T) are the windows of ALL the record's beats, in order (labels are unknown in
    use; utils.padded_windows cuts them, so beats at the record's edges have one). The template
    of beat i is the sample-wise median of the previous `history` windows, recomputed only every
    `every` beats: beat i uses the beats [max(0, j - history), j) with j = (i // every) * every.
    The first block (j = 0, no past) uses the median of beats [0, i], i.e. the first beat's
    template is itself. Records shorter than the history use what they have.
    """
    n, window = windows.shape
    out = np.empty((n, window), np.float32)
    if n == 0:
        return out
    if history < 1 or every < 1:
        raise ValueError(f"history and every must be >= 1, got {history}, {every}")
    w = np.asarray(windows, np.float32)                # (n, T)
    for i in range(min(every, n)):                     # first block: median of what exists
        out[i] = _median_rows(w[:i + 1])
    for j in range(every, n, every):
        out[j:j + every] = _median_rows(w[max(0, j - history):j])  # (T,)
    return out


def relative_scale(beats: np.ndarray, templates: np.ndarray, floor: float = 0.05,
                   clip: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Scale each beat and its template by the SAME factor, set by the template: subtract the
    template's mean, divide by the template's std (at least `floor`, in signal units, so a flat
    template cannot blow up). Keeps the beat's amplitude relative to the patient's usual beat,
    unlike a per-window z-score. Returns (beats, templates) float32, both (n, T), clipped to
    +-`clip`."""
    t = np.asarray(templates, np.float32)              # (n, T)
    mu = t.mean(1, keepdims=True)
    sd = np.maximum(t.std(1, keepdims=True), floor)
    xb = np.clip((np.asarray(beats, np.float32) - mu) / sd, -clip, clip)
    tb = np.clip((t - mu) / sd, -clip, clip)
    return xb.astype(np.float32), tb.astype(np.float32)


def rr_features(rpeaks: np.ndarray, fs: int, local: int = 10) -> np.ndarray:
    """The original --rr set ("local"): (n, 4) float32 = [pre-RR s, post-RR s,
    pre-RR / local mean, post-RR / local mean].

    The local mean is over the previous `local` RR intervals only (causal), so a beat's
    features never use the record's future. Edge beats reuse their one neighbour interval.
    """
    n = len(rpeaks)
    if n < 2:
        return np.ones((n, len(_RR_SETS["local"])), np.float32)
    rr = np.diff(rpeaks).astype(np.float64) / fs      # (n-1,)
    pre = np.concatenate([rr[:1], rr])                 # first beat: its post interval
    post = np.concatenate([rr, rr[-1:]])
    loc = trailing_mean(pre, np.maximum(0, np.arange(n) + 1 - local))  # mean of pre[lo..i]
    return np.stack([pre, post, pre / loc, post / loc], 1).astype(np.float32)


# feature set name (beats.RR_FEATURES) -> (rpeaks, fs) -> (n, width) float32
RR_SETS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"local": rr_features, "sequence": rr_sequence}
assert set(RR_SETS) == set(_RR_SETS), "beats.RR_FEATURES and features.RR_SETS must name the same sets"
