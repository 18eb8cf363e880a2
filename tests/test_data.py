"""The beat pipeline (utils.py) and the three split modes (dataset.py, stratified_dataset.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dataset import DS1, DS2, PACED, PARTS, make_splits, records_for
from beats import BEAT_SYMBOLS, CLASS_NAMES, LABEL_SCHEMES
from utils import (MITDB_RECORDS, DataError,
                   NORMALIZERS, PreprocConfig, _read_212, cache_key, cut_windows, fill_windows,
                   load_beats, read_annotations, read_record, read_signal)
from features import rr_features

CFG = PreprocConfig()


@pytest.fixture(scope="module")
def all_beats(mitbih_dir, cache_dir):
    return load_beats(mitbih_dir, CFG, cache_dir=cache_dir, download=False)


@pytest.fixture(scope="module")
def all_beats_aami(mitbih_dir, cache_dir):
    return load_beats(mitbih_dir, PreprocConfig(classes="aami5"), cache_dir=cache_dir, download=False)


def copy_records(src: Path, dst: Path, records, exts=("hea", "dat", "atr")) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for r in records:
        for e in exts:
            shutil.copy(src / f"{r}.{e}", dst / f"{r}.{e}")
            (dst / f"{r}.{e}").chmod(0o644)
    return dst


# --- label schemes and beat selection ---------------------------------------------------------

def test_label_schemes_cover_exactly_the_beat_symbols():
    for name, table in LABEL_SCHEMES.items():
        assert set(table) == set(BEAT_SYMBOLS), name
        assert set(table.values()) == set(range(len(CLASS_NAMES[name])))
    s4, a5 = LABEL_SCHEMES["seed4"], LABEL_SCHEMES["aami5"]
    assert [s4[c] for c in "NLRejAaJSVEF/fQ"] == [0] * 5 + [1] * 4 + [2] * 2 + [3] * 4
    assert [a5[c] for c in "NLRejAaJSVEF/fQ"] == [0] * 5 + [1] * 4 + [2] * 2 + [3] + [4] * 3
    for mark in '+~|"x![]':
        assert mark not in BEAT_SYMBOLS


def test_labels_follow_the_symbols(all_beats, all_beats_aami):
    for d, name in ((all_beats, "seed4"), (all_beats_aami, "aami5")):
        table = LABEL_SCHEMES[name]
        assert d.y.tolist() == [table[s] for s in d.symbol], name


def test_annotation_reader_matches_wfdb(mitbih_dir):
    import wfdb
    for rec in MITDB_RECORDS:
        ann = wfdb.rdann(str(mitbih_dir / rec), "atr")
        samples, symbols = read_annotations(mitbih_dir / f"{rec}.atr")
        assert np.array_equal(samples, ann.sample), rec
        assert symbols.tolist() == ann.symbol, rec


def test_signal_reader_matches_wfdb(mitbih_dir):
    """The format-212 decoder gives wfdb's integers for both signals of all 48 records, and
    read_signal the same mV values as wfdb's header fields applied to them."""
    import wfdb
    for rec in MITDB_RECORDS:
        r = wfdb.rdrecord(str(mitbih_dir / rec), physical=False)
        for k in range(r.n_sig):
            assert np.array_equal(_read_212(mitbih_dir / f"{rec}.dat", r.sig_len, r.n_sig, k),
                                  r.d_signal[:, k]), (rec, k)
        sig, lead = read_signal(mitbih_dir, rec, CFG)
        ch = r.sig_name.index(lead)
        assert np.array_equal(sig, (r.d_signal[:, ch] - r.baseline[ch]) / r.adc_gain[ch]), rec


@pytest.mark.parametrize("n_sig,length", [(1, 7), (3, 101), (3, 100), (4, 9)])
def test_212_decoder_odd_layouts(tmp_path, n_sig, length):
    """Layouts MIT-BIH does not have (odd signal counts, odd sample totals), written by wfdb."""
    import wfdb
    d = np.random.default_rng(n_sig * length).integers(-2048, 2048, (length, n_sig)).astype(np.int16)
    d[0] = [-2048, 2047, -1, 0][:n_sig] + [5] * max(0, n_sig - 4)  # the 12-bit extremes
    wfdb.wrsamp("syn", fs=360, units=["mV"] * n_sig, sig_name=[f"s{i}" for i in range(n_sig)],
                d_signal=d, fmt=["212"] * n_sig, adc_gain=[200.0] * n_sig, baseline=[0] * n_sig,
                write_dir=str(tmp_path))
    for k in range(n_sig):
        assert np.array_equal(_read_212(tmp_path / "syn.dat", length, n_sig, k), d[:, k]), k


def test_other_formats_still_read_through_wfdb(tmp_path):
    """A format-16 record (not MIT-BIH's 212) takes wfdb's reader and gives the same values."""
    import wfdb
    d = np.random.default_rng(0).integers(-3000, 3000, (800, 2)).astype(np.int16)
    wfdb.wrsamp("r16", fs=360, units=["mV", "mV"], sig_name=["V5", "MLII"], d_signal=d,
                fmt=["16", "16"], adc_gain=[100.0, 100.0], baseline=[7, 7], write_dir=str(tmp_path))
    sig, lead = read_signal(tmp_path, "r16", CFG)
    assert lead == "MLII" and np.array_equal(sig, (d[:, 1] - 7) / 100.0)


@pytest.mark.parametrize("normalize", sorted(NORMALIZERS))
def test_fill_windows_equals_cut_then_normalise(normalize):
    """The chunked in-place build gives bit-identical windows to the plain composition."""
    rng = np.random.default_rng(1)
    sig = rng.standard_normal(5000).astype(np.float32) * 3 + 1
    r = np.sort(rng.choice(np.arange(100, 4900), 300, replace=False))
    expect = NORMALIZERS[normalize](cut_windows(sig, r, 180)[0].copy())
    out = np.full((300, 180), np.nan, np.float32)
    fill_windows(out, sig, r, normalize, chunk=7)  # chunks that do not divide 300
    assert np.array_equal(out, expect)
    if normalize == "zscore":  # and the in-place normaliser is the textbook formula, exactly
        w = cut_windows(sig, r, 180)[0]
        assert np.array_equal(expect, (w - w.mean(1, keepdims=True)) / (w.std(1, keepdims=True) + 1e-6))


def _counts(rec_dir, rec):
    _, _, sym, _ = read_record(rec_dir, rec, CFG)
    return {s: int(n) for s, n in zip(*np.unique(sym, return_counts=True))}


def test_published_beat_counts(mitbih_dir):
    assert _counts(mitbih_dir, "100") == {"N": 2239, "A": 33, "V": 1}
    c208 = _counts(mitbih_dir, "208")
    assert (c208["V"], c208["F"]) == (992, 373)
    assert _counts(mitbih_dir, "232")["A"] == 1382
    # record 207: 472 flutter waves '!' are not beats; 1,860 beats remain
    assert sum(_counts(mitbih_dir, "207").values()) == 1860


def test_all_records_beats_and_no_marks(all_beats):
    d = all_beats
    assert len(d) + sum(d.dropped.values()) == 109_494
    assert set(np.unique(d.symbol)) <= BEAT_SYMBOLS
    assert d.x.shape == (len(d), 720) and d.x.dtype == np.float32
    assert np.isfinite(d.x).all()
    # z-scored windows
    assert np.allclose(d.x.mean(1), 0, atol=1e-3) and np.allclose(d.x.std(1), 1, atol=1e-2)
    assert d.class_counts() == {"N": 90527, "SVEB": 2780, "VEB": 7232, "Other": 8835}
    r100 = d.record == 100
    assert r100.sum() + d.dropped["100"] == 2273


def test_lead_choice(all_beats):
    assert all_beats.leads["114"] == "MLII"  # second signal of record 114
    assert all_beats.leads["102"] == "V5" and all_beats.leads["104"] == "V5"
    assert sum(v == "MLII" for v in all_beats.leads.values()) == 46


def test_windows_are_centred_on_r_peaks(mitbih_dir, all_beats):
    d = all_beats
    i = np.flatnonzero(d.record == 100)[5]
    sig, samp, _, _ = read_record(mitbih_dir, "100", CFG)
    from utils import bandpass
    f = bandpass(sig, CFG)
    w = f[d.rpeak[i] - 360:d.rpeak[i] + 360]
    expect = (w - w.mean()) / (w.std() + 1e-6)
    assert np.allclose(d.x[i], expect, atol=1e-4)


def test_cut_windows_drops_edge_beats():
    sig = np.arange(20.0)
    win, keep = cut_windows(sig, np.array([1, 2, 10, 17, 18]), 4)
    # window = [r-2, r+2): r=1 starts at -1 (drop), r=18 ends at 20 (keep), r=17 keep
    assert keep.tolist() == [False, True, True, True, True]
    assert win[0].tolist() == [0, 1, 2, 3] and win[-1].tolist() == [16, 17, 18, 19]


def test_rr_features_hand_computed():
    r = np.array([0, 360, 540, 900])  # RR = 1.0, 0.5, 1.0 s
    f = rr_features(r, 360, local=2)
    pre = [1.0, 1.0, 0.5, 1.0]
    post = [1.0, 0.5, 1.0, 1.0]
    local = [1.0, 1.0, 0.75, 0.75]  # mean of the previous <= 2 pre-RRs (incl. own)
    assert np.allclose(f[:, 0], pre) and np.allclose(f[:, 1], post)
    assert np.allclose(f[:, 2], np.divide(pre, local)) and np.allclose(f[:, 3], np.divide(post, local))


# --- splits -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1337, 1, 2, 3, 4, 5])
def test_random_split_is_record_wise(all_beats, seed):
    s = make_splits(all_beats, "random", seed)
    sets = [set(all_beats.record[s.part(p)].tolist()) for p in PARTS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == {int(r) for r in MITDB_RECORDS}
    assert any({201, 202} <= x for x in sets)  # one patient, one part
    assert [len(s.records[p]) for p in PARTS] in ([33, 7, 7], [34, 7, 7], [33, 8, 7], [33, 7, 8])


def test_stratified_split_keeps_class_ratios(all_beats):
    s = make_splits(all_beats, "stratified", 1337)
    idx = np.concatenate([s.train, s.val, s.test])
    assert len(np.unique(idx)) == len(all_beats) == len(idx)
    total = np.bincount(all_beats.y)
    for part, frac in zip(PARTS, (0.7, 0.15, 0.15)):
        got = np.bincount(all_beats.y[s.part(part)], minlength=len(total))
        assert np.all(np.abs(got - frac * total) <= 1.5), (part, got, total)
    assert "intra-patient" in s.warning


def test_interpatient_split(all_beats_aami):
    d = all_beats_aami
    s = make_splits(d, "interpatient", 1337)
    assert s.records["test"] == sorted(DS2, key=int)
    assert sorted(s.records["train"] + s.records["val"], key=int) == sorted(DS1, key=int)
    assert not set(s.records["train"]) & set(s.records["val"])
    seen = set(d.record[np.concatenate([s.train, s.val, s.test])].tolist())
    assert not seen & {int(r) for r in PACED}
    # validation holds every frequent class, training keeps most of each
    val_counts = np.bincount(d.y[s.val], minlength=5)
    assert (val_counts[:4] > 0).all()
    assert set(records_for("interpatient")) == set(DS1) | set(DS2)


@pytest.mark.parametrize("mode", ["stratified", "random", "interpatient"])
def test_same_seed_same_indices(all_beats, mode):
    a, b = make_splits(all_beats, mode, 1337), make_splits(all_beats, mode, 1337)
    for p in PARTS:
        assert a.part(p).tobytes() == b.part(p).tobytes()
    c = make_splits(all_beats, mode, 7)
    assert any(a.part(p).tobytes() != c.part(p).tobytes() for p in PARTS)


def test_explicit_records_override(all_beats):
    s = make_splits(all_beats, "stratified", 1337,
                    explicit={"train": ["100", "101"], "val": ["103"], "test": ["105", "106"]})
    assert set(all_beats.record[s.test].tolist()) == {105, 106}
    assert set(all_beats.record[s.train].tolist()) == {100, 101}
    with pytest.raises(DataError, match="both"):
        make_splits(all_beats, "random", 1, explicit={"train": ["100"], "val": ["100"], "test": ["101"]})
    s = make_splits(all_beats, "random", 1, explicit={"train": ["201"], "val": ["100"], "test": ["202"]})
    assert "leakage" in s.warning


def test_class_limit_caps_training_only(all_beats):
    full = make_splits(all_beats, "stratified", 1337)
    s = make_splits(all_beats, "stratified", 1337, class_limit=50)
    assert np.bincount(all_beats.y[s.train]).max() == 50
    assert np.array_equal(s.test, full.test) and np.array_equal(s.val, full.val)
    assert set(s.train) <= set(full.train)


def test_empty_split_is_an_error(mitbih_dir, cache_dir):
    d = load_beats(mitbih_dir, CFG, records=["100", "101"], cache_dir=cache_dir, download=False)
    with pytest.raises(DataError, match="empty"):
        make_splits(d, "random", 1337)  # two records cannot fill three parts


# --- cache ------------------------------------------------------------------------------------

def test_cache_key_changes_with_every_parameter(mitbih_dir):
    recs = ["100", "101"]
    base = cache_key(CFG, recs, mitbih_dir)
    variants = [PreprocConfig(fs=250), PreprocConfig(segment_sec=1.0), PreprocConfig(classes="aami5"),
                PreprocConfig(normalize="minmax"), PreprocConfig(band=(1.0, 40.0)),
                PreprocConfig(filter_order=3), PreprocConfig(lead_policy=("V5", "MLII")),
                PreprocConfig(template=True), PreprocConfig(rr_features="sequence"),
                PreprocConfig(second_lead=True)]
    keys = {cache_key(v, recs, mitbih_dir) for v in variants} | {cache_key(CFG, ["100"], mitbih_dir)}
    assert base not in keys and len(keys) == len(variants) + 1
    assert cache_key(CFG, recs, mitbih_dir) == base
    import utils
    old = utils.PIPELINE_VERSION
    try:
        utils.PIPELINE_VERSION = old + 1
        assert cache_key(CFG, recs, mitbih_dir) != base
    finally:
        utils.PIPELINE_VERSION = old


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_key"])
def test_corrupt_cache_is_rebuilt(mitbih_dir, tmp_path, damage):
    msgs = []
    recs = ["100"]
    fresh = load_beats(mitbih_dir, CFG, records=recs, cache_dir=tmp_path, download=False, log=msgs.append)
    (cache,) = tmp_path.glob("cache_*.npz")
    if damage == "truncate":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    elif damage == "garbage":
        cache.write_bytes(b"not a zip file at all")
    else:  # a valid cache of another configuration under this name
        other = load_beats(mitbih_dir, PreprocConfig(normalize="none"), records=recs, cache_dir=tmp_path,
                           download=False)
        (o,) = [p for p in tmp_path.glob("cache_*.npz") if p != cache]
        o.replace(cache)
        assert not np.array_equal(other.x, fresh.x)
    again = load_beats(mitbih_dir, CFG, records=recs, cache_dir=tmp_path, download=False, log=msgs.append)
    assert any("rebuilding" in m for m in msgs), msgs
    assert np.array_equal(again.x, fresh.x) and np.array_equal(again.y, fresh.y)
    third = load_beats(mitbih_dir, CFG, records=recs, cache_dir=tmp_path, download=False, log=msgs.append)
    assert np.array_equal(third.x, fresh.x)
    assert sum("rebuilding" in m for m in msgs) == 1  # the rebuilt cache is good again
    assert not list(tmp_path.glob("*.tmp"))  # nothing half-written left behind


# --- getting the data and bad input -----------------------------------------------------------

def test_missing_root_tries_download_then_explains(tmp_path):
    calls = []

    def offline(db, dl_dir, records):
        calls.append((db, dl_dir, tuple(records)))
        raise ConnectionError("no network")

    with pytest.raises(DataError) as e:
        load_beats(tmp_path / "nowhere", CFG, records=["100"], downloader=offline, log=lambda m: None)
    assert calls == [("mitdb", str(tmp_path / "nowhere"), ("100",))]
    msg = str(e.value)
    assert "\n" not in msg and "physionet.org" in msg and str(tmp_path / "nowhere") in msg


def test_stub_download_fills_the_root(mitbih_dir, tmp_path):
    def fake(db, dl_dir, records):
        copy_records(mitbih_dir, Path(dl_dir), records)

    logs = []
    d = load_beats(tmp_path / "fresh", CFG, records=["100"], downloader=fake, log=logs.append)
    assert (d.record == 100).sum() + d.dropped["100"] == 2273
    assert any("downloading" in m for m in logs)


@pytest.mark.parametrize("problem,match", [
    ("no_dat", "missing 100.dat"),
    ("no_atr", "missing 100.atr"),
    ("truncated", "truncated"),
    ("fs", "sampled at 250 Hz"),
    ("no_lead", "none of the lead policy"),
])
def test_bad_records(mitbih_dir, tmp_path, problem, match):
    root = copy_records(mitbih_dir, tmp_path / "db", ["100"])
    if problem == "no_dat":
        (root / "100.dat").unlink()
    elif problem == "no_atr":
        (root / "100.atr").unlink()
    elif problem == "truncated":
        (root / "100.dat").write_bytes((root / "100.dat").read_bytes()[:100_000])
    elif problem == "fs":
        h = root / "100.hea"
        h.write_text(h.read_text().replace("100 2 360 650000", "100 2 250 650000"))
    elif problem == "no_lead":
        h = root / "100.hea"
        h.write_text(h.read_text().replace(" MLII", " X1").replace(" V5", " X2"))
    with pytest.raises(DataError, match=match) as e:
        load_beats(root, CFG if problem != "fs" else PreprocConfig(), records=["100"], download=False,
                   cache_dir=tmp_path)
    assert "\n" not in str(e.value)
    assert not list(tmp_path.glob("cache_*"))


@pytest.mark.parametrize("cfg,match", [
    (PreprocConfig(classes="nope"), "unknown --classes"),
    (PreprocConfig(normalize="nope"), "unknown normalize"),
    (PreprocConfig(rr_features="sinus"), "unknown --rr set"),
    (PreprocConfig(segment_sec=0.001), "samples per beat"),
    (PreprocConfig(fs=60), "band-pass"),
])
def test_bad_config(mitbih_dir, cfg, match):
    with pytest.raises(DataError, match=match):
        load_beats(mitbih_dir, cfg, records=["100"], download=False)


def test_ds1_beat_table_matches_the_annotations(mitbih_dir):
    """dataset.DS1_BEATS (what the --cv folds are built from) is what the .atr files say."""
    from dataset import DS1_BEATS, interpatient_folds
    table = LABEL_SCHEMES["aami5"]
    for r in DS1:
        _, sym = read_annotations(mitbih_dir / f"{r}.atr")
        y = np.array([table[s] for s in sym if s in BEAT_SYMBOLS])
        assert DS1_BEATS[r] == ((y == 1).sum(), (y == 2).sum(), len(y)), r
    for k in (2, 4, 5):
        folds = interpatient_folds(k)
        assert len(folds) == k and sorted(r for f in folds for r in f) == sorted(DS1)
    assert interpatient_folds(4) == interpatient_folds(4)  # a function of K alone


def test_template_and_patient_features_are_finite_on_a_v5_record(mitbih_dir, tmp_path):
    """Record 104 has no MLII (read in V5): its template comes from its own lead; every
    feature is defined (no NaN, no inf), also for the first beats, which have no history."""
    cfg = PreprocConfig(template=True, rr_features="sequence", segment_sec=1.2)
    d = load_beats(mitbih_dir, cfg, records=["104"], use_cache=False, download=False, log=lambda m: None)
    assert d.leads == {"104": "V5"} and d.tm.shape == d.x.shape == (len(d.y), 432) and d.rr.shape == (len(d.y), 16)
    assert np.isfinite(d.x).all() and np.isfinite(d.tm).all() and np.isfinite(d.rr).all()
    # cached and rebuilt arrays agree (tm travels in the cache)
    again = load_beats(mitbih_dir, cfg, records=["104"], cache_dir=tmp_path, download=False, log=lambda m: None)
    cached = load_beats(mitbih_dir, cfg, records=["104"], cache_dir=tmp_path, download=False, log=lambda m: None)
    assert np.array_equal(again.tm, cached.tm) and np.array_equal(again.tm, d.tm)


def test_second_lead_gives_each_lead_what_one_lead_gets(mitbih_dir, tmp_path):
    """--second-lead: x and tm are (N, 2, T); lead 0 is bit for bit the one-lead input, lead 1
    the record's other signal through the same steps (its own template and scale); the RR
    features do not change; the arrays travel in the cache; the lead names say which two."""
    from utils import beat_inputs, filtered_signal, read_record, stack_inputs
    one = PreprocConfig(template=True, rr_features="sequence", segment_sec=1.2)
    two = PreprocConfig(template=True, rr_features="sequence", segment_sec=1.2, second_lead=True)
    quiet = dict(download=False, log=lambda m: None)
    d1 = load_beats(mitbih_dir, one, records=["114", "124"], use_cache=False, **quiet)
    d2 = load_beats(mitbih_dir, two, records=["114", "124"], cache_dir=tmp_path, **quiet)
    assert d2.leads == {"114": "MLII+V5", "124": "MLII+V4"} and two.channels == 4 and one.channels == 2
    assert d2.x.shape == d2.tm.shape == (len(d1.y), 2, 432)
    assert np.array_equal(d2.x[:, 0], d1.x) and np.array_equal(d2.tm[:, 0], d1.tm) and np.array_equal(d2.rr, d1.rr)
    sig, samp, _, _ = read_record(mitbih_dir, "124", two)   # (2, n): MLII, V4
    sig_v4, _, _, _ = read_record(mitbih_dir, "124", PreprocConfig(lead_policy=("V4",)))
    assert sig.shape[0] == 2 and np.array_equal(sig[1], sig_v4)
    x4, tm4, _, _ = beat_inputs(filtered_signal(sig_v4, one), samp, one)
    rows = d2.record == 124
    assert np.array_equal(d2.x[rows, 1], x4) and np.array_equal(d2.tm[rows, 1], tm4)
    assert not np.allclose(d2.x[:, 1], d2.x[:, 0])
    cached = load_beats(mitbih_dir, two, records=["114", "124"], cache_dir=tmp_path, **quiet)
    assert np.array_equal(cached.x, d2.x) and np.array_equal(cached.tm, d2.tm)
    s = stack_inputs(d2.x[:3], d2.tm[:3])                    # channels: beat, template of each lead
    assert s.shape == (3, 4, 432) and all(np.array_equal(s[:, c], a) for c, a in
                                          enumerate((d2.x[:3, 0], d2.tm[:3, 0], d2.x[:3, 1], d2.tm[:3, 1])))
    assert np.array_equal(stack_inputs(d2.x[:3], None), d2.x[:3]) and stack_inputs(d1.x[:3], None).shape == (3, 1, 432)


def test_second_lead_of_a_one_signal_record_is_one_line(tmp_path):
    import wfdb
    d = np.random.default_rng(0).integers(-300, 300, (800, 1)).astype(np.int16)
    wfdb.wrsamp("one", fs=360, units=["mV"], sig_name=["MLII"], d_signal=d, fmt=["16"], adc_gain=[100.0],
                baseline=[0], write_dir=str(tmp_path))
    assert read_signal(tmp_path, "one", CFG)[0].shape == (800,)
    with pytest.raises(DataError, match="record one has one signal \\(MLII\\); --second-lead needs two"):
        read_signal(tmp_path, "one", PreprocConfig(second_lead=True))
