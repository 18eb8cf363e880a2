"""features.py: edge cases, hand-computed values, causality (no data files needed)."""
from __future__ import annotations

import numpy as np
import pytest

import features as F
from utils import padded_windows

K = len(F.RR_FEATURES)
COL = {n: i for i, n in enumerate(F.RR_FEATURES)}


# ---------------------------------------------------------------------------------- rr_context

def test_rr_empty_and_single_beat():
    assert F.rr_context(np.array([], np.int64), 360).shape == (0, K)
    one = F.rr_context(np.array([500]), 360)
    assert one.dtype == np.float32 and one.shape == (1, K)
    assert np.all(one[0, :6] == 1) and np.all(one[0, 6:] == 0)


def test_rr_two_beats_all_ratios_one():
    r = F.rr_context(np.array([0, 360]), 360)
    assert np.allclose(r[:, :6], 1) and np.allclose(r[:, 6:], 0)


def test_rr_hand_computed():
    # RR = 1, 0.5, 1.5 s -> pre = [1, 1, .5, 1.5] (first beat borrows its post), post = [1, .5, 1.5, 1.5]
    r = F.rr_context(np.array([0, 360, 540, 1080]), 360)
    m2 = 2.5 / 3                                   # mean of pre[0..2]
    assert r[2, COL["pre_long"]] == pytest.approx(0.5 / m2)
    assert r[2, COL["post_long"]] == pytest.approx(1.5 / m2)
    assert r[2, COL["pre_local"]] == pytest.approx(0.5 / m2)
    assert r[2, COL["post_pre"]] == pytest.approx(3.0)
    assert r[1, COL["post_pre"]] == pytest.approx(0.5)
    assert r[3, COL["local_long"]] == pytest.approx(1.0)
    assert r[3, COL["irr_cv"]] == pytest.approx(np.sqrt(0.125))     # std of [1, 1, .5, 1.5] / 1
    assert r[3, COL["irr_mad"]] == pytest.approx(0.5)               # median |dRR| of [0, .5, 1]
    assert r[2, COL["irr_mad"]] == pytest.approx(0.25 / m2)         # median of [0, .5]
    assert r[0, COL["irr_cv"]] == 0 and r[0, COL["irr_mad"]] == 0


def _pre_post(rpeaks, fs, min_sec=0.02):
    """Pre- and post-RR lists in seconds, intervals clamped as rr_context clamps them."""
    lo_iv = max(1.0, round(min_sec * fs)) / fs
    rr = [max((rpeaks[i + 1] - rpeaks[i]) / fs, lo_iv) for i in range(len(rpeaks) - 1)]
    return [rr[0]] + rr, rr + [rr[-1]]


def _reference(rpeaks, fs, long_sec=300.0, local=10, irr=32, min_sec=0.02):
    """Loop-by-loop restatement of rr_context's definition."""
    n = len(rpeaks)
    pre, post = _pre_post(rpeaks, fs, min_sec)
    out = []
    for i in range(n):
        past = [pre[j] for j in range(i + 1) if rpeaks[j] >= rpeaks[i] - long_sec * fs]
        lm, loc = np.mean(past), np.mean(pre[max(0, i + 1 - local):i + 1])
        w = pre[max(0, i + 1 - irr):i + 1]
        d = np.abs(np.diff(w))
        mad = np.median(d) if len(d) else 0.0
        out.append([pre[i] / lm, post[i] / lm, pre[i] / loc, post[i] / loc, post[i] / pre[i],
                    loc / lm, np.std(w) / np.mean(w), mad / np.mean(w)])
    return np.array(out)


def test_rr_matches_reference_with_5_min_window():
    rng = np.random.default_rng(0)
    # ~600 beats at 0.4-1.6 s: longer than the 300 s long-term window
    rpeaks = np.cumsum(rng.integers(144, 576, 600))
    got = F.rr_context(rpeaks, 360)
    assert np.allclose(got, _reference(rpeaks, 360), rtol=1e-5, atol=1e-6)


def test_rr_duplicate_annotation_is_finite():
    r = F.rr_context(np.array([0, 360, 360, 720, 720]), 360)
    assert np.isfinite(r).all()
    # the zero interval is clamped to 7 samples (20 ms at 360 Hz): post/pre of beat 1 = 7/360
    assert r[1, COL["post_pre"]] == pytest.approx(7 / 360)


@pytest.mark.parametrize("rr_set", [F.rr_context, F.rr_robust, F.rr_sequence, F.rr_features])
def test_rr_causal(rr_set):
    rng = np.random.default_rng(1)
    rpeaks = np.cumsum(rng.integers(150, 500, 200))
    base = rr_set(rpeaks, 360)
    for k in (1, 5, 50, 150):
        changed = rpeaks.copy()
        changed[k + 1:] = changed[k + 1:] + rng.integers(-100, 100, len(changed) - k - 1).cumsum().clip(-50, 50)
        changed[k + 1:] = np.maximum.accumulate(changed[k + 1:])
        got = rr_set(changed, 360)
        # beats 0..k-1 only look at R peaks <= k (beat k-1's post-RR ends at peak k)
        assert np.array_equal(got[:k], base[:k])


# ----------------------------------------------------------------------------------- rr_robust

def _robust_reference(rpeaks, fs, long_sec=300.0, local=10, min_sec=0.02):
    """Loop-by-loop restatement of rr_robust's five median columns."""
    n = len(rpeaks)
    pre, post = _pre_post(rpeaks, fs, min_sec)
    out = []
    for i in range(n):
        lm = np.median([pre[j] for j in range(i + 1) if rpeaks[j] >= rpeaks[i] - long_sec * fs])
        loc = np.median(pre[max(0, i + 1 - local):i + 1])
        out.append([pre[i] / lm, post[i] / lm, pre[i] / loc, post[i] / loc, loc / lm])
    return np.array(out)


def test_robust_is_patient_plus_medians_matching_reference():
    rng = np.random.default_rng(2)
    rpeaks = np.cumsum(rng.integers(144, 576, 600))  # longer than the 5-min window, as above
    got = F.rr_robust(rpeaks, 360)
    assert got.shape == (600, K + 5) and got.dtype == np.float32
    assert np.array_equal(got[:, :K], F.rr_context(rpeaks, 360))
    assert np.allclose(got[:, K:], _robust_reference(rpeaks, 360), rtol=1e-5, atol=1e-6)


def test_robust_hand_computed_and_edges():
    # pre = [1, 1, .5, 1.5]: beat 2's medians are median(1, 1, .5) = 1; beat 3's median(1, 1, .5, 1.5) = 1
    r = F.rr_robust(np.array([0, 360, 540, 1080]), 360)
    assert r[2, K] == pytest.approx(0.5) and r[2, K + 1] == pytest.approx(1.5)
    assert r[3, K + 2] == pytest.approx(1.5) and r[3, K + 4] == pytest.approx(1.0)
    assert F.rr_robust(np.array([], np.int64), 360).shape == (0, K + 5)
    assert np.all(F.rr_robust(np.array([7]), 360)[:, K:] == 1)
    assert np.isfinite(F.rr_robust(np.array([0, 360, 360, 720, 720]), 360)).all()


# --------------------------------------------------------------------------------- rr_sequence

def test_sequence_is_robust_plus_beat_to_beat_change_hand_computed():
    # R peaks 0 1 2 2.5 4 5 s -> pre = [1, 1, 1, .5, 1.5, 1] (the first beat borrows its post)
    rpeaks = np.array([0, 360, 720, 900, 1440, 1800])
    got = F.rr_sequence(rpeaks, 360)
    assert got.shape == (6, len(F._RR_SETS["sequence"])) == (6, K + 8) and got.dtype == np.float32
    assert np.array_equal(got[:, :K + 5], F.rr_robust(rpeaks, 360))
    pre_prev, prev_pre_local, prev_pre_prev = got[:, K + 5:].T
    assert np.allclose(pre_prev, [1, 1, 1, 0.5, 3, 2 / 3])           # pre_i / pre_(i-1)
    assert np.allclose(prev_pre_prev, [1, 1, 1, 1, 0.5, 3])         # the same, one beat earlier
    # beat 3's pre-RR over its local mean, mean(1, 1, 1, .5) = .875, seen by beat 4
    assert prev_pre_local[4] == pytest.approx(0.5 / 0.875) and prev_pre_local[0] == pytest.approx(1)


def test_sequence_edges_are_finite():
    assert F.rr_sequence(np.array([], np.int64), 360).shape == (0, K + 8)
    assert np.all(F.rr_sequence(np.array([7]), 360)[:, K + 5:] == 1)
    assert np.isfinite(F.rr_sequence(np.array([0, 360, 360, 720, 720]), 360)).all()


# ------------------------------------------------------------------------------ running_template

def _sig_and_peaks(n_beats=40, rr=100, window=60, seed=0):
    rng = np.random.default_rng(seed)
    sig = rng.normal(size=n_beats * rr + 2 * rr).astype(np.float32)
    return sig, np.arange(1, n_beats + 1) * rr


def test_template_first_beat_is_itself_and_first_block_is_median_so_far():
    sig, pk = _sig_and_peaks()
    tm = F.running_template(padded_windows(sig, pk, 60), history=8, every=4)
    w = sig[pk[:, None] - 30 + np.arange(60)]
    assert tm.dtype == np.float32 and tm.shape == (len(pk), 60)
    assert np.array_equal(tm[0], w[0])
    assert np.allclose(tm[2], np.median(w[:3], 0))


def test_template_hand_history_and_every():
    sig, pk = _sig_and_peaks()
    w = sig[pk[:, None] - 30 + np.arange(60)]
    tm = F.running_template(padded_windows(sig, pk, 60), history=3, every=1)
    assert np.allclose(tm[10], np.median(w[7:10], 0))                # previous 3 beats, not itself
    tm = F.running_template(padded_windows(sig, pk, 60), history=8, every=4)
    assert np.allclose(tm[13], np.median(w[4:12], 0))                # block start j = 12
    assert np.array_equal(tm[12], tm[15])                            # constant within a block


def test_template_edges_short_record_and_empty():
    sig = np.arange(50, dtype=np.float32)
    tm = F.running_template(padded_windows(sig, np.array([0, 10, 49]), 20), history=256, every=64)
    assert tm.shape == (3, 20) and np.isfinite(tm).all()
    assert np.all(tm[0, :10] == 0)                                   # left edge: edge-padded
    assert F.running_template(padded_windows(sig, np.array([], np.int64), 20)).shape == (0, 20)
    with pytest.raises(ValueError):
        F.running_template(padded_windows(sig, np.array([10]), 20), history=0)


def test_template_causal():
    sig, pk = _sig_and_peaks(n_beats=60)
    base = F.running_template(padded_windows(sig, pk, 60), history=16, every=8)
    for k in (0, 3, 20, 41):
        s2 = sig.copy()
        s2[pk[k] + 30:] += 5.0                                       # everything after beat k's window
        got = F.running_template(padded_windows(s2, pk, 60), history=16, every=8)
        assert np.array_equal(got[:k + 1], base[:k + 1])



# ------------------------------------------------------------------------------ relative_scale

def test_relative_scale_keeps_relative_amplitude():
    t = np.sin(np.linspace(0, 2 * np.pi, 100, endpoint=False))[None].astype(np.float32)
    xb, tb = F.relative_scale(3 * t, t)
    assert np.allclose(tb.std(), 1, atol=1e-5)
    assert np.allclose(xb, 3 * tb, atol=1e-5)                        # 3x the template stays 3x
    xb2, tb2 = F.relative_scale(6 * t, 2 * t)                        # a record at twice the gain
    assert np.allclose(xb2, xb, atol=1e-5) and np.allclose(tb2, tb, atol=1e-5)


def test_relative_scale_flat_template_is_finite():
    xb, tb = F.relative_scale(np.ones((2, 10), np.float32) * 100, np.zeros((2, 10), np.float32))
    assert np.isfinite(xb).all() and xb.max() == 20.0 and np.all(tb == 0)
