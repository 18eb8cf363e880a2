"""MIT-BIH records -> preprocessed beat windows, with a cache that cannot go stale.

One pipeline serves every split mode (dataset.py, stratified_dataset.py):

    WFDB files --read one lead--> band-pass (zero phase) --cut windows at R peaks--> normalise
               --label with a scheme--> BeatData  (cached as cache_<key>.npz)

A cold build reads records on a few threads, decodes MIT-BIH's format 212 itself (wfdb reads
any other format), and cuts and normalises windows in cache-sized chunks straight into the final
array; tests check every step against wfdb and the plain NumPy formulas, value for value.

Only *beat* annotations become samples (beats.BEAT_SYMBOLS). Rhythm, signal-quality, comment,
flutter-wave and non-conducted-P marks (``+ ~ | " ! [ ] x`` ...) are never beats.

`beat_inputs` is the one function that turns a record's filtered signal and beat positions into
model inputs (windows and every per-beat feature): the cache build, evaluate.py and predict.py
all go through it, so training and inference cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import signal as sps

import features
from beats import BEAT_SYMBOLS, CLASS_NAMES, LABEL_SCHEMES, RR_FEATURES, rr_dim
from cli import DataError, OutputError, try_write
from config import DATA_DEFAULTS, NORMALIZATIONS
from wfdbio import Header, read_annotations, read_header

PIPELINE_VERSION = 2  # bump whenever the arrays this module produces would change (2: template, RR sets)

# The 48 records of the MIT-BIH Arrhythmia Database (the numbering has gaps).
MITDB_RECORDS: tuple[str, ...] = tuple(str(r) for r in (
    100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 111, 112, 113, 114, 115, 116, 117, 118,
    119, 121, 122, 123, 124, 200, 201, 202, 203, 205, 207, 208, 209, 210, 212, 213, 214, 215,
    217, 219, 220, 221, 222, 223, 228, 230, 231, 232, 233, 234))

# Bytes per sample of the WFDB storage formats we size-check before reading.
_FORMAT_BYTES = {"212": 1.5, "16": 2.0, "80": 1.0, "61": 2.0, "8": 1.0, "310": 4 / 3, "311": 4 / 3}


@dataclass(frozen=True)
class PreprocConfig:
    """Everything that changes the beat arrays. Its fields (plus the record list and the
    pipeline version) make the cache key, and a checkpoint stores it to rebuild the input."""
    fs: int = DATA_DEFAULTS["fs"]
    segment_sec: float = DATA_DEFAULTS["segment_sec"]
    classes: str = DATA_DEFAULTS["classes"]
    normalize: str = DATA_DEFAULTS["normalize"]          # zscore | minmax | none
    band: tuple[float, float] = DATA_DEFAULTS["band"]     # Hz, zero-phase Butterworth band-pass
    filter_order: int = DATA_DEFAULTS["filter_order"]
    lead_policy: tuple[str, ...] = DATA_DEFAULTS["lead_policy"]
    rr_features: str = DATA_DEFAULTS["rr_features"]       # per-beat feature set (beats.RR_FEATURES)
    template: bool = DATA_DEFAULTS["template"]            # + running-median template channel
    template_beats: int = DATA_DEFAULTS["template_beats"]
    template_every: int = DATA_DEFAULTS["template_every"]
    second_lead: bool = DATA_DEFAULTS["second_lead"]      # + the record's other signal (read_signal)

    @property
    def window(self) -> int:
        """Samples per beat window."""
        return int(round(self.segment_sec * self.fs))

    @property
    def leads(self) -> int:
        """Leads read per record: the lead policy's, and the other signal when `second_lead`."""
        return 2 if self.second_lead else 1

    @property
    def beat_shape(self) -> tuple[int, ...]:
        """Shape of one beat's window (and of its template): (T,), or (leads, T) with two leads."""
        return (self.leads, self.window) if self.second_lead else (self.window,)

    @property
    def channels(self) -> int:
        """Input channels per beat: per lead the window, and its template when `template`."""
        return (2 if self.template else 1) * self.leads

    @property
    def rr_dim(self) -> int:
        """Width of the per-beat feature set."""
        return rr_dim(self.rr_features)

    def validate(self) -> None:
        if self.classes not in CLASS_NAMES:
            raise DataError(f"unknown --classes {self.classes!r}; choose one of {sorted(CLASS_NAMES)}")
        if self.normalize not in NORMALIZERS:
            raise DataError(f"unknown normalize {self.normalize!r}; choose one of {sorted(NORMALIZERS)}")
        if self.fs <= 0:
            raise DataError(f"--fs must be positive, got {self.fs}")
        if self.window < 8:
            raise DataError(f"--segment-sec {self.segment_sec} x --fs {self.fs} gives {self.window} "
                            "samples per beat; need at least 8")
        if self.rr_features not in RR_FEATURES:
            raise DataError(f"unknown --rr set {self.rr_features!r}; choose one of {sorted(RR_FEATURES)}")
        if self.template_beats < 1 or self.template_every < 1:
            raise DataError("template_beats and template_every must be >= 1")
        lo, hi = self.band
        if not 0 < lo < hi < self.fs / 2:
            raise DataError(f"band-pass {self.band} Hz must satisfy 0 < low < high < fs/2 = {self.fs / 2}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["band"], d["lead_policy"] = list(self.band), list(self.lead_policy)
        d["window"], d["pipeline_version"] = self.window, PIPELINE_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocConfig":
        """From to_dict()'s output (a checkpoint's or an exported file's). Raises ValueError for the
        preprocessing of a removed research probe, which would otherwise be rebuilt wrongly."""
        from options import LAB_TAG
        if d.get("template_from", "all") != "all" or d.get("rr_features", cls.rr_features) not in RR_FEATURES:
            probe = (f"template_from={d['template_from']}" if d.get("template_from", "all") != "all"
                     else f"rr_features={d['rr_features']}")
            raise ValueError(f"made with {probe}, a research probe that was removed; it runs at git tag {LAB_TAG} "
                             "(docs/lab/README.md)")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["band"] = tuple(kw.get("band", cls.band))
        kw["lead_policy"] = tuple(kw.get("lead_policy", cls.lead_policy))
        return cls(**kw)


@dataclass
class BeatData:
    """All beats of a set of records: one row per annotated beat."""
    x: np.ndarray            # (N, T) float32 windows centred on the R peak; (N, 2, T) with config.second_lead
    y: np.ndarray            # (N,) int64 class index
    record: np.ndarray       # (N,) int32 record number, e.g. 100
    rpeak: np.ndarray        # (N,) int64 R-peak sample in the record
    rr: np.ndarray           # (N, F) float32: the config's feature set, beats.RR_FEATURES[cfg.rr_features]
    symbol: np.ndarray       # (N,) <U1 original annotation symbol
    class_names: list[str]
    config: PreprocConfig
    leads: dict[str, str] = field(default_factory=dict)     # record -> lead used ("MLII+V1": two)
    dropped: dict[str, int] = field(default_factory=dict)   # record -> beats dropped at the edges
    tm: np.ndarray | None = None  # like x: float32 running template on the beat's scale (cfg.template)

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self, idx: np.ndarray | None = None) -> dict[str, int]:
        y = self.y if idx is None else self.y[idx]
        counts = np.bincount(y, minlength=len(self.class_names))
        return {n: int(c) for n, c in zip(self.class_names, counts)}


# ----------------------------------------------------------------------------------------------
# Getting the records
# ----------------------------------------------------------------------------------------------

def _record_files(root: Path, rec: str) -> dict[str, Path]:
    return {ext: root / f"{rec}.{ext}" for ext in ("hea", "dat", "atr")}


def ensure_records(root: str | os.PathLike, records: Sequence[str] = MITDB_RECORDS,
                   download: bool = True, downloader: Callable | None = None,
                   log: Callable[[str], None] = print) -> None:
    """Make sure every record's .hea/.dat/.atr is under `root`.

    Records with none of their files are downloaded from PhysioNet with
    ``wfdb.dl_database('mitdb', root)`` (or `downloader`, a stand-in for tests). A record with
    only some of its files is an error: we never guess which half is right.
    """
    root = Path(root)
    missing, partial = [], []
    for rec in records:
        present = [p.exists() for p in _record_files(root, rec).values()]
        if not any(present):
            missing.append(rec)
        elif not all(present):
            lost = [p.name for p in _record_files(root, rec).values() if not p.exists()]
            partial.append(f"{rec} (missing {', '.join(lost)})")
    if partial:
        raise DataError(f"incomplete records in {root}: {'; '.join(partial)}. Restore those files "
                        "or delete the record's files so it can be downloaded again")
    if not missing:
        return
    how = (f"download the MIT-BIH Arrhythmia Database (https://physionet.org/content/mitdb/1.0.0/) "
           f"and put its .hea/.dat/.atr files in {root}, or point --root at a folder that has them")
    if not download:
        raise DataError(f"{len(missing)} record(s) missing in {root} (e.g. {missing[0]}); {how}")
    log(f"{len(missing)} MIT-BIH record(s) missing in {root}: downloading from PhysioNet "
        f"(about {1.96 * len(missing):.0f} MB)...")
    downloader = downloader or _wfdb_download
    made = [p for p in (root, *root.parents) if not p.exists()]  # folders this download creates
    try:
        root.mkdir(parents=True, exist_ok=True)
        downloader("mitdb", str(root), records=list(missing))
    except Exception as e:  # network down, PhysioNet unreachable, disk full ...
        for p in made:  # a failed run leaves no folder behind (a mistyped --root)
            try:
                p.rmdir()
            except OSError:
                break
        raise DataError(f"download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); {how}") from None
    still = [r for r in missing if not all(p.exists() for p in _record_files(root, r).values())]
    if still:
        raise DataError(f"download finished but {len(still)} record(s) are still missing (e.g. {still[0]}); {how}")
    log(f"downloaded {len(missing)} record(s) into {root}")


def _wfdb_download(db: str, dl_dir: str, records: list[str]) -> None:
    import wfdb
    wfdb.dl_database(db, dl_dir, records=records)


# ----------------------------------------------------------------------------------------------
# Reading and preprocessing one record
# ----------------------------------------------------------------------------------------------

def read_signal(root: str | os.PathLike, rec: str, cfg: PreprocConfig) -> tuple[np.ndarray, str]:
    """One record's lead of `cfg.lead_policy` in physical units (mV): (signal float64 (n,), lead).
    With `cfg.second_lead` also the record's first other signal (V1 in 40 of MIT-BIH's 48
    records): ((2, n), "MLII+V1"). Raises DataError for every way a signal can be unreadable."""
    path = str(Path(root) / rec)
    try:
        hdr = read_header(path)
    except Exception as e:
        raise DataError(f"record {rec}: cannot read header {path}.hea ({type(e).__name__}: {e})") from None
    if hdr.fs != cfg.fs:
        raise DataError(f"record {rec} is sampled at {hdr.fs:g} Hz, not the {cfg.fs} Hz expected; LiteECG "
                        f"does not resample: resample the record to {cfg.fs} Hz first, or train with --fs {hdr.fs:g}")
    names = list(hdr.sig_name or [])
    lead = next((l for l in cfg.lead_policy if l in names), None)
    if lead is None:
        raise DataError(f"record {rec} has leads {names}, none of the lead policy {list(cfg.lead_policy)}")
    ch = names.index(lead)
    if not cfg.second_lead:
        return _read_channel(root, rec, hdr, ch), lead
    other = [i for i in range(len(names)) if i != ch]
    if not other:
        raise DataError(f"record {rec} has one signal ({lead}); --second-lead needs two")
    return np.stack([_read_channel(root, rec, hdr, ch), _read_channel(root, rec, hdr, other[0])]), \
        f"{lead}+{names[other[0]]}"


def _read_channel(root: str | os.PathLike, rec: str, hdr: Header, ch: int) -> np.ndarray:
    """Signal `ch` of a record whose header is `hdr`, in mV: (n,) float64."""
    # A truncated .dat makes wfdb fail with a numpy broadcast error (or read garbage):
    # compare the file size with what the header promises before reading it.
    dat = Path(root) / hdr.file_name[ch]
    if not dat.exists():
        raise DataError(f"record {rec}: signal file {dat} is missing")
    fmt = str(hdr.fmt[ch])
    in_file = [i for i, f in enumerate(hdr.file_name) if f == hdr.file_name[ch]]  # signals sharing the file
    if fmt in _FORMAT_BYTES and hdr.sig_len:
        need = int(np.ceil(hdr.sig_len * len(in_file) * _FORMAT_BYTES[fmt]))
        have = dat.stat().st_size
        if have < need:
            raise DataError(f"record {rec}: {dat.name} is truncated ({have} of {need} bytes); "
                            "download it again")
    try:
        if _plain_212(hdr, in_file):  # every MIT-BIH record
            d = _read_212(dat, hdr.sig_len, len(in_file), in_file.index(ch))
        else:
            import wfdb
            d = wfdb.rdrecord(str(Path(root) / rec), channels=[ch], physical=False).d_signal[:, 0]
    except Exception as e:
        raise DataError(f"record {rec}: cannot read ({type(e).__name__}: {e})") from None
    if len(d) != hdr.sig_len:
        raise DataError(f"record {rec}: read {len(d)} samples, header says {hdr.sig_len}")
    return (d.astype(np.float64) - hdr.baseline[ch]) / hdr.adc_gain[ch]  # ADC units -> mV


def _plain_212(hdr: Header, in_file: list[int]) -> bool:
    """True when the signal file holds only format-212 signals, one sample per frame each, with
    no byte offset or skew: the layout `_read_212` decodes. Anything else goes to wfdb.
    (wfdbio.read_header fills every per-signal field, wfdb's unset ones with their defaults.)"""
    return bool(hdr.sig_len) and all(
        hdr.fmt[i] == "212" and not hdr.byte_offset[i] and not hdr.skew[i] and hdr.samps_per_frame[i] == 1
        for i in in_file)


def _read_212(dat: Path, sig_len: int, n_sig: int, k: int) -> np.ndarray:
    """Signal `k` of a WFDB format-212 file with `n_sig` interleaved signals: (sig_len,) int16.

    Format 212 packs two 12-bit two's-complement samples into 3 bytes: the first is byte 0 plus
    the low nibble of byte 1 as its high bits, the second is byte 2 plus the high nibble of
    byte 1. Samples run frame by frame (s0, s1, ..., s0, s1, ...). wfdb.rdrecord reads the
    same integers (tests compare all 48 records) but parses the header again and costs ~3x.
    """
    total = sig_len * n_sig
    need = (3 * total + 1) // 2
    b = np.fromfile(dat, dtype=np.uint8, count=need)
    if len(b) < need:
        raise ValueError(f"{dat.name} holds {len(b)} bytes, fewer than {sig_len} frames need")
    if total % 2:  # an odd sample count ends with half a triplet: pad it to a whole one
        b = np.concatenate([b, np.zeros(1, np.uint8)])
    trip = b.reshape(-1, 3)  # (ceil(total / 2), 3), a view
    if n_sig % 2 == 0:  # signal k is always the same half of every (n_sig / 2)-th triplet
        trip = trip[k // 2::n_sig // 2]
        parts = [k % 2]
    else:  # the halves alternate: decode both, then pick signal k's samples
        parts = [0, 1]
    mid = trip[:, 1].astype(np.int16)
    halves = [trip[:, 0] | ((mid & 0x0F) << 8) if p == 0 else trip[:, 2] | ((mid & 0xF0) << 4)
              for p in parts]
    d = halves[0] if len(halves) == 1 else np.stack(halves, 1).reshape(-1)[k::n_sig]
    d = d[:sig_len]
    return d - ((d & 0x800) << 1)  # 12-bit two's complement: 2048..4095 -> -2048..-1


def read_record(root: str | os.PathLike, rec: str, cfg: PreprocConfig, ann: str = "atr"):
    """Read one record's chosen lead (mV) and its *beat* annotations (the `ann` file, RECORD.atr by
    default).

    Returns (signal float64 (n,) or (2, n) with cfg.second_lead, beat samples int64 (k,), beat
    symbols <U1 (k,), lead name).
    Raises DataError for every way a record can be unreadable.
    """
    sig, lead = read_signal(root, rec, cfg)
    path = Path(root) / f"{rec}.{ann}"
    if not path.is_file():
        raise DataError(f"record {rec}: annotation file {path} does not exist")
    try:
        samp, sym = read_annotations(path)
    except Exception as e:
        raise DataError(f"record {rec}: cannot read annotations {path.name} ({type(e).__name__}: {e})") from None
    if len(samp) and (samp.min() < 0 or samp.max() >= sig.shape[-1]):
        raise DataError(f"record {rec}: annotations lie outside the signal (corrupt .atr?)")
    is_beat = np.isin(sym, list(BEAT_SYMBOLS))
    return sig, samp[is_beat], sym[is_beat], lead


def bandpass(sig: np.ndarray, cfg: PreprocConfig) -> np.ndarray:
    """Zero-phase Butterworth band-pass over the whole record (filtfilt: no R-peak shift); (n,)
    or (leads, n), each lead filtered along time."""
    sos = sps.butter(cfg.filter_order, cfg.band, btype="bandpass", fs=cfg.fs, output="sos")
    try:
        return sps.sosfiltfilt(sos, sig, axis=-1)
    except ValueError as e:  # filtfilt needs a signal longer than its padding
        raise DataError(f"signal of {sig.shape[-1]} samples is too short to filter ({e})") from None


def _zscore(x: np.ndarray) -> np.ndarray:
    mu, sd = x.mean(1, keepdims=True), x.std(1, keepdims=True)
    x -= mu
    x /= sd + 1e-6
    return x


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    x -= lo
    x /= hi - lo + 1e-6
    return x


# Per-window normalisers, (k, T) -> (k, T), IN PLACE (they return their argument): the cache
# build runs them on cache-sized chunks of the final array, so no 300 MB temporaries.
NORMALIZERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "zscore": _zscore, "minmax": _minmax, "none": lambda x: x}
assert tuple(NORMALIZERS) == NORMALIZATIONS, "config.NORMALIZATIONS names utils.NORMALIZERS"


def windows_inside(rpeaks: np.ndarray, n: int, window: int) -> np.ndarray:
    """Which beats' windows of `window` samples lie wholly inside a record of n samples: (k,) bool."""
    start = rpeaks - window // 2
    return (start >= 0) & (start + window <= n)


def cut_windows(sig: np.ndarray, rpeaks: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of `window` samples centred on each R peak.

    Beats whose window would leave the record are *dropped* (not zero-padded: padding would
    invent signal). Returns (windows (k, window), kept mask (n,)).
    """
    keep = windows_inside(rpeaks, len(sig), window)
    win = np.empty((int(keep.sum()), window), sig.dtype)
    fill_windows(win, sig, rpeaks[keep], "none")
    return win, keep


def fill_windows(out: np.ndarray, sig: np.ndarray, rpeaks: np.ndarray, normalize: str,
                 chunk: int = 1024) -> None:
    """Cut the windows of `rpeaks` (all inside `sig`) into `out` (k, T) and normalise them there.

    Done `chunk` rows at a time (~3 MB, stays in the CPU cache) straight into the final array:
    the cut, the statistics and the in-place normalisation then touch main memory about once
    instead of six times. Values equal NORMALIZERS[normalize] applied to the whole cut.
    """
    window = out.shape[1]
    offs = np.arange(window)
    for a in range(0, len(rpeaks), chunk):
        part = out[a:a + chunk]
        np.take(sig, (rpeaks[a:a + chunk] - window // 2)[:, None] + offs, out=part)  # (chunk, T)
        NORMALIZERS[normalize](part)


def filtered_signal(sig: np.ndarray, cfg: PreprocConfig) -> np.ndarray:
    """The band-passed record as float32 (n,) or (leads, n): what `beat_inputs` cuts windows from. float32
    from here on: half the memory traffic for cutting and normalising."""
    return bandpass(sig, cfg).astype(np.float32)


def padded_windows(sig: np.ndarray, rpeaks: np.ndarray, window: int, normalize: str = "none") -> np.ndarray:
    """Every beat's window (n, window) float32, from the signal edge-padded by half a window (the
    first and last sample repeated), so beats near the record's ends get one too; windows that
    lie inside the record are exactly `fill_windows`' cut."""
    half = window // 2
    out = np.empty((len(rpeaks), window), np.float32)
    fill_windows(out, np.pad(sig, (half, half), mode="edge"), rpeaks + half, normalize)
    return out


def beat_inputs(filt: np.ndarray, rpeaks: np.ndarray, cfg: PreprocConfig, *, pad_edges: bool = False,
                out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """THE record -> model inputs function: (x (k, *cfg.beat_shape) float32 windows, tm (same
    shape) float32 running templates or None, rr (k, F) float32 per-beat features, kept (n,)
    bool: which of the n beats got a row).

    `filt` is the record's filtered signal (`filtered_signal`), (n,) or, with cfg.second_lead,
    (2, n); `rpeaks` *all* its beats in order: the per-beat features and templates use every
    beat, also those whose window is not kept.
    - pad_edges=False (training, evaluation): beats whose window would leave the record are
      dropped (padding would invent signal).
    - pad_edges=True (predict.py: every beat needs a label): windows come from `padded_windows`,
      so every beat is kept; beats away from the ends get exactly the training input.
    - cfg.template: every beat's window is cut once (`padded_windows`); x and tm are the beat and
      the median of the record's previous cfg.template_beats windows (features.running_template),
      both on the template's scale
      (features.relative_scale: amplitude relative to the patient's usual beat is kept);
      otherwise x is normalised per window (cfg.normalize) and tm is None.
    - cfg.second_lead: each lead gets exactly what one lead gets (its own template and scale);
      x[:, l] and tm[:, l] are lead l's.
    `out` (k, *cfg.beat_shape), when given, receives the windows (the cache build cuts straight
    into its array).
    """
    if filt.shape[:-1] != cfg.beat_shape[:-1]:
        raise ValueError(f"signal of shape {filt.shape} for beats of shape {cfg.beat_shape}")
    rr = features.RR_SETS[cfg.rr_features](rpeaks, cfg.fs)  # from *all* beats, before any is dropped
    kept = np.ones(len(rpeaks), bool) if pad_edges else windows_inside(rpeaks, filt.shape[-1], cfg.window)
    x = np.empty((int(kept.sum()), *cfg.beat_shape), np.float32) if out is None else out
    per_lead = x if cfg.second_lead else x[:, None]          # (k, leads, T) view of x
    sigs = filt if cfg.second_lead else filt[None]           # (leads, n)
    tms = [_lead_inputs(sigs[lead], rpeaks, kept, cfg, pad_edges, per_lead[:, lead]) for lead in range(cfg.leads)]
    tm = None if not cfg.template else np.stack(tms, 1) if cfg.second_lead else tms[0]
    return x, tm, rr[kept], kept


def _lead_inputs(filt: np.ndarray, rpeaks: np.ndarray, kept: np.ndarray, cfg: PreprocConfig,
                 pad_edges: bool, out: np.ndarray) -> np.ndarray | None:
    """One lead's part of `beat_inputs`: its windows into `out` (k, T); returns its templates
    (k, T), or None without cfg.template."""
    if not cfg.template:
        if pad_edges:
            out[:] = padded_windows(filt, rpeaks, cfg.window, cfg.normalize)
        else:
            fill_windows(out, filt, rpeaks[kept], cfg.normalize)
        return None
    w = padded_windows(filt, rpeaks, cfg.window)  # (n, T) raw: the template needs every beat's window
    tm = features.running_template(w, cfg.template_beats, cfg.template_every)[kept]
    out[:], tm = features.relative_scale(w[kept], tm)
    return tm


def stack_inputs(x: np.ndarray, tm: np.ndarray | None) -> np.ndarray:
    """`beat_inputs`' windows and templates -> the model's input (N, C, T) float32: one lead
    (N, T) [+ (N, T)] gives channels [beat] or [beat, template]; two leads (N, 2, T) [+ (N, 2, T)]
    give [beat 1, beat 2] or [beat 1, template 1, beat 2, template 2] (engine.swap_templates
    relies on that pairing)."""
    if x.ndim == 2:
        x, tm = x[:, None], None if tm is None else tm[:, None]   # (N, 1, T)
    if tm is None:
        return x.astype(np.float32, copy=False)
    n, leads, t = x.shape
    return np.stack([x, tm], 2).reshape(n, 2 * leads, t).astype(np.float32, copy=False)


def process_record(root: str | os.PathLike, rec: str, cfg: PreprocConfig) -> dict:
    """One record -> its filtered signal, all its beats and symbols, and how many beats keep a
    window (`load_beats` then cuts them with `beat_inputs` straight into the shared array)."""
    sig, samp, sym, lead = read_record(root, rec, cfg)
    filt = filtered_signal(sig, cfg)
    n_kept = int(windows_inside(samp, filt.shape[-1], cfg.window).sum())
    return dict(filt=filt, samp=samp, sym=sym, lead=lead, n_kept=n_kept)


# ----------------------------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------------------------

def cache_key(cfg: PreprocConfig, records: Sequence[str], root: str | os.PathLike) -> str:
    """Hash of everything that changes the arrays: config, record list, pipeline version and
    the size and modification time of every input file (a re-downloaded record rebuilds)."""
    stamp = []
    for rec in records:
        for p in _record_files(Path(root), rec).values():
            st = p.stat()
            stamp.append([p.name, st.st_size, st.st_mtime_ns])
    blob = json.dumps({"cfg": cfg.to_dict(), "records": list(records), "files": stamp}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def default_cache_dir(root: str | os.PathLike) -> Path:
    """The data folder itself when writable (cli.try_write), else ./data/cache (e.g. a read-only
    shared copy)."""
    try:
        try_write(root)
        return Path(root)
    except OSError:
        return Path("data") / "cache"


_ARRAYS = ("x", "y", "record", "rpeak", "rr", "symbol")


def _array_names(cfg: PreprocConfig) -> tuple[str, ...]:
    return _ARRAYS + (("tm",) if cfg.template else ())


def atomic_write(path: str | os.PathLike, write: Callable) -> None:
    """Write a file through a temp file in the same folder, then rename: readers see the old
    file or the whole new one, never half of it. `write(f)` gets a binary file object.

    A write the system refuses (disk full, permission denied, read-only folder) raises
    OutputError naming the file and the reason; the previous file, if any, is untouched."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        cause = _os_error_in(e)
        if cause is None:
            raise
        raise OutputError(f"cannot write {path}: {cause.strerror or cause}") from None


def _os_error_in(e: BaseException | None) -> OSError | None:
    """The OSError behind an exception (torch.save wraps a full disk in a RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _save_cache(path: Path, data: BeatData, key: str) -> None:
    meta = dict(key=key, config=data.config.to_dict(), class_names=data.class_names,
                leads=data.leads, dropped=data.dropped)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, meta=np.array(json.dumps(meta)),
                                          **{k: getattr(data, k) for k in _array_names(data.config)}))


def _load_cache(path: Path, key: str, cfg: PreprocConfig) -> BeatData:
    """Load and verify a cache file; raises ValueError (with the reason) when it is unusable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in _array_names(cfg)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable ({type(e).__name__})") from None
    if meta.get("key") != key:
        raise ValueError("key mismatch")
    n = len(arrays["y"])
    if arrays["x"].shape != (n, *cfg.beat_shape) or arrays["x"].dtype != np.float32 or \
            any(len(a) != n for a in arrays.values()) or arrays["rr"].shape != (n, cfg.rr_dim) or \
            ("tm" in arrays and arrays["tm"].shape != (n, *cfg.beat_shape)):
        raise ValueError("inconsistent arrays")
    if n and (arrays["y"].min() < 0 or arrays["y"].max() >= len(meta["class_names"])):
        raise ValueError("labels out of range")
    return BeatData(**arrays, class_names=meta["class_names"], config=cfg,
                    leads=meta["leads"], dropped=meta["dropped"])


# ----------------------------------------------------------------------------------------------
# The one entry point
# ----------------------------------------------------------------------------------------------

def load_beats(root: str | os.PathLike, cfg: PreprocConfig, records: Sequence[str] | None = None,
               use_cache: bool = True, cache_dir: str | os.PathLike | None = None,
               download: bool = True, downloader: Callable | None = None,
               log: Callable[[str], None] = print) -> BeatData:
    """Beats of `records` (default: all 48) under `root`, from the cache when it is valid.

    A corrupt, truncated or mismatched cache is reported in one line and rebuilt.
    """
    cfg.validate()
    records = [str(r) for r in (records if records is not None else MITDB_RECORDS)]
    if not records:
        raise DataError("no records requested")
    if len(set(records)) != len(records):
        raise DataError(f"record list has duplicates: {records}")
    ensure_records(root, records, download=download, downloader=downloader, log=log)
    key = cache_key(cfg, records, root)
    path = Path(cache_dir or default_cache_dir(root)) / f"cache_{key}.npz"
    if use_cache and path.exists():
        try:
            return _load_cache(path, key, cfg)
        except ValueError as e:
            log(f"cache {path} is unusable ({e}); rebuilding it")

    # Records are independent and the heavy steps (file reads, filtering, cutting) release the
    # GIL, so threads use every core; map keeps record order, so the arrays do not depend on it.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        parts = list(pool.map(lambda rec: process_record(root, rec, cfg), records))
        bounds = np.cumsum([0] + [p["n_kept"] for p in parts])  # record i fills rows bounds[i]:bounds[i+1]
        x = np.empty((int(bounds[-1]), *cfg.beat_shape), np.float32)  # (N, T) or (N, leads, T)

        def fill(i: int) -> None:
            p = parts[i]
            _, p["tm"], p["rr"], kept = beat_inputs(p.pop("filt"), p["samp"], cfg, out=x[bounds[i]:bounds[i + 1]])
            p["rpeak"], p["symbol"], p["dropped"] = p["samp"][kept], p["sym"][kept], int((~kept).sum())
        list(pool.map(fill, range(len(parts))))
    table = LABEL_SCHEMES[cfg.classes]
    cat = lambda k: np.concatenate([p[k] for p in parts])  # noqa: E731
    symbol = cat("symbol")
    data = BeatData(
        x=x, y=np.array([table[s] for s in symbol], dtype=np.int64),
        record=np.concatenate([np.full(p["n_kept"], int(r), np.int32) for r, p in zip(records, parts)]),
        rpeak=cat("rpeak"), rr=cat("rr").reshape(-1, cfg.rr_dim), symbol=symbol,
        tm=np.concatenate([p["tm"] for p in parts]) if cfg.template else None,
        class_names=list(CLASS_NAMES[cfg.classes]), config=cfg,
        leads={r: p["lead"] for r, p in zip(records, parts)},
        dropped={r: p["dropped"] for r, p in zip(records, parts)})
    if use_cache:
        try:
            _save_cache(path, data, key)
        except (OSError, OutputError) as e:  # a cache we cannot write is a lost speed-up, not a failed run
            log(f"could not write cache {path} ({getattr(e, 'strerror', None) or e}); continuing without it")
    return data
