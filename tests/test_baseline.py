"""baseline.py: features checked by hand on synthetic records, the nets' rows and report schema, the
one-line errors, and DS2 never taking part in a choice."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import baseline
import summarize
from beats import CLASS_NAMES
from dataset import DS1, DS2
from report import validate_report
from utils import BeatData, PreprocConfig, load_beats

FS = 360
CFG = PreprocConfig(segment_sec=1.2, classes="aami5")


def write_record(folder: Path, name: str, rpeaks: np.ndarray, n: int, qrs: float = 1.0, t: float = 0.3,
                 base: float = 0.5) -> None:
    """An MLII record of n samples (format 212, 200 counts per mV) on a constant baseline `base`,
    with two rectangular 36-sample pulses per beat: `qrs` mV over R-9 .. R+26 and `t` mV over
    R+95 .. R+130; and an .atr with a normal beat at each R peak."""
    import wfdb
    d = np.full(n, int(base * 200), np.int16)
    for r in rpeaks:
        d[r - 9:r + 27] += int(qrs * 200)
        d[r + 95:r + 131] += int(t * 200)
    wfdb.wrsamp(name, fs=FS, units=["mV"], sig_name=["MLII"], d_signal=d[:, None], fmt=["212"], adc_gain=[200.0],
                baseline=[0], write_dir=str(folder))
    wfdb.wrann(name, "atr", sample=np.asarray(rpeaks), symbol=["N"] * len(rpeaks), write_dir=str(folder))


def test_features_by_hand_on_a_synthetic_record(tmp_path):
    """RR intervals of 1 s, one premature beat (0.6 s, then a 1.4 s pause) and a 6 s sinus pause;
    amplitudes 1 mV (QRS) and 0.3 mV (T) on a 0.5 mV baseline."""
    rr = np.ones(700)
    rr[399], rr[400] = 0.6, 1.4         # beat 400 comes early, beat 401 after a compensatory pause
    rr[449] = 6.0                        # a sinus pause ending at beat 450, inside beat 400's +-5 min
    rpeaks = np.round((2.0 + np.concatenate([[0.0], np.cumsum(rr)])) * FS).astype(np.int64)
    write_record(tmp_path, "900", rpeaks, int(rpeaks[-1] + 3 * FS))
    data, short = baseline.load_features(tmp_path, CFG, ["900"], download=False, log=lambda m: None)
    assert short == {} and len(data) == len(rpeaks) and not np.isnan(data.x).any()
    f = {n: data.x[:, i] for i, n in enumerate(baseline.FEATURES)}
    p = 400
    assert f["pre_rr_s"][p] == pytest.approx(0.6) and f["post_rr_s"][p] == pytest.approx(1.4)
    assert f["pre_rr_s"][p + 1] == pytest.approx(1.4) and f["post_rr_s"][p + 1] == pytest.approx(1.0)
    assert f["local_rr_s"][p] == pytest.approx((9 * 1.0 + 0.6) / 10)          # the last 10 intervals
    assert f["local_rr_s"][p + 1] == pytest.approx((8 * 1.0 + 0.6 + 1.4) / 10)
    # beat 400 at t = 2 + 399 + 0.6 = 401.6 s: the intervals ending within [101.6, 701.6] s end at beats
    # 100 (102 s) .. 694 (403 + 48 + 6 + 244 = 701 s): 595 of them, 1 s each but 0.6, 1.4 and the 6 s pause
    n_int = 694 - 100 + 1
    avg = (n_int - 3 + 0.6 + 1.4 + 6.0) / n_int
    assert f["avg_rr_s"][p] == pytest.approx(avg)
    assert f["pre_rr_mean"][p] == pytest.approx(0.6 / avg) and f["post_rr_mean"][p] == pytest.approx(1.4 / avg)
    assert f["local_rr_mean"][p] == pytest.approx(0.96 / avg)
    assert f["pre_rr_median"][p] == pytest.approx(0.6) and f["local_rr_median"][p] == pytest.approx(0.96)
    assert avg > 1.0 and f["avg_rr_s"][50] == pytest.approx(1.0)  # the pause inflates the mean, not the median
    # the first beat: only the intervals ending within its next 5 min (beats 1 .. 300), all 1 s
    assert f["avg_rr_s"][0] == pytest.approx(1.0) and f["pre_rr_s"][0] == pytest.approx(1.0)
    # morphology: baseline gone, the pulses' flat interiors read back exactly, outside them 0
    # (columns at the nearest sample: -50 ms = R-18, 0, +17 ms = R+6, ..., +100 ms = R+36; the 12-tap filter
    # averages R-6 .. R+5 around each, so a column reads a pulse's height where those all lie inside it)
    for name, want in (("qrs_m50ms", 0.0), ("qrs_p0ms", 1.0), ("qrs_p17ms", 1.0), ("qrs_p33ms", 1.0),
                       ("qrs_p50ms", 1.0), ("qrs_p100ms", 0.0), ("t_p150ms", 0.0), ("t_p194ms", 0.0),
                       ("t_p238ms", 0.0), ("t_p281ms", 0.3), ("t_p325ms", 0.3), ("t_p412ms", 0.0), ("t_p500ms", 0.0)):
        assert f[name][p] == pytest.approx(want, abs=1e-9), name
    assert data.y.tolist() == [0] * len(rpeaks) and data.leads == {"900": "MLII"}


def test_a_record_too_short_for_the_five_minute_average_is_flagged_never_nan(tmp_path):
    rpeaks = np.arange(1, 120) * FS                           # two minutes of 1 s beats
    write_record(tmp_path, "901", rpeaks, 121 * FS)
    data, short = baseline.load_features(tmp_path, CFG, ["901"], download=False, log=lambda m: None)
    assert "901" in short and "10 min" in short["901"] and not np.isnan(data.x).any()
    assert np.allclose(data.x[:, list(baseline.FEATURES).index("avg_rr_s")], 1.0)
    for n in (0, 1):  # no interval at all: neutral values, flagged
        x, why = baseline.rr_columns(np.arange(n) * FS + 500, FS)
        assert x.shape == (n, 10) and np.all(x == 1.0) and "fewer than two beats" in why


def test_rows_are_the_nets_rows(mitbih_dir):
    """The same beats (records, R peaks, labels, dropped counts) as the nets' BeatData of the window."""
    quiet = dict(use_cache=False, log=lambda m: None)
    for cfg in (CFG, PreprocConfig(classes="seed4")):
        nets = load_beats(mitbih_dir, cfg, records=["100", "207"], **quiet)
        data, _ = baseline.load_features(mitbih_dir, cfg, ["100", "207"], download=False, log=lambda m: None)
        assert np.array_equal(data.record, nets.record) and np.array_equal(data.rpeak, nets.rpeak)
        assert np.array_equal(data.y, nets.y) and data.dropped == nets.dropped and data.leads == nets.leads


# ----------------------------------------------------------------------------------------------
# Runs on stand-in features (every DS1 and DS2 record, a few synthetic beats each): fast, and what
# a run does with the features is all that is checked here
# ----------------------------------------------------------------------------------------------

def fake_features(seed: int = 0) -> BeatData:
    """Class-dependent Gaussian features for 80 beats of every DS1 and DS2 record (aami5)."""
    rng = np.random.default_rng(seed)
    recs = [*DS1, *DS2]
    y = np.concatenate([rng.choice(5, 80, p=[0.8, 0.08, 0.08, 0.03, 0.01]) for _ in recs])
    y[:5] = [0, 1, 2, 3, 4]  # every class in training
    centre = rng.normal(0, 1, (5, len(baseline.FEATURES)))
    x = centre[y] + rng.normal(0, 1.5, (len(y), len(baseline.FEATURES)))
    n = len(y)
    return BeatData(x=x, y=y.astype(np.int64), record=np.repeat([int(r) for r in recs], 80).astype(np.int32),
                    rpeak=np.tile(np.arange(80) * 360 + 400, len(recs)), rr=np.zeros((n, 0), np.float32),
                    symbol=np.array(["N"] * n), class_names=list(CLASS_NAMES["aami5"]), config=CFG,
                    leads={r: "MLII" for r in recs}, dropped={r: 0 for r in recs})


@pytest.fixture
def fake(monkeypatch):
    """baseline.load_features returns fake_features(); the data handed over is kept for inspection."""
    given = {}

    def load(root, cfg, records, download=True, log=print):
        given["data"] = given.get("make", fake_features)()
        assert set(records) == set(DS1 + DS2)
        return given["data"], {"232": "a note"}
    monkeypatch.setattr(baseline, "load_features", load)
    return given


def _report(folder: Path) -> dict:
    (path,) = folder.glob("eval_report_*.json")
    return json.loads(path.read_text())


def test_report_validates_and_shows_as_a_leaderboard_row(fake, tmp_path, capsys):
    out = tmp_path / "out"
    assert baseline.main(["--split", "interpatient", "--out-dir", str(out), "--bootstrap", "50"]) == 0
    rep = _report(out)
    validate_report(rep)
    assert rep["model"] == "lda" and rep["classes"] == CLASS_NAMES["aami5"] and rep["history"] == []
    assert rep["dataset"]["records"]["train"] == sorted(DS1, key=int) and rep["dataset"]["records"]["val"] == []
    assert rep["dataset"]["records"]["test"] == sorted(DS2, key=int)
    assert rep["test"]["n_beats"] == 80 * len(DS2) and "key_classes_without_232" in rep["test"]
    assert rep["test"]["ci"]["method"] == "bootstrap-record"
    f = rep["features"]
    assert f["variant"] == "paper" and f["count"] == 23 == len(f["names"]) and f["short_records"] == {"232": "a note"}
    assert set(f["non_causal"]) == {"avg_rr_s"}
    mm = rep["model_metrics"]
    assert mm["params_total"] == 23 * 5 + 5 and mm["macs"] == 23 * 5 and mm["latency_median_ms"] > 0
    model = np.load(next(out.glob("baseline_lda_*.npz")))   # the written linear function is the classifier
    d = fake["data"]
    x = d.x[np.isin(d.record, [int(r) for r in DS2])][:, baseline.columns("paper")]
    pred = model["classes"][np.argmax(x @ model["W"].T + model["b"], 1)]
    assert hashlib.sha256(pred.astype(np.int8).tobytes()).hexdigest() == rep["test"]["predictions_sha256"]
    assert summarize.main([str(out), "--no-plots"]) == 0
    table = capsys.readouterr().out
    assert "| lda | interpatient | aami5 | 1337 |" in table and (out / "leaderboard_records.md").exists()


def test_both_classifiers_and_every_protocol_run(monkeypatch, tmp_path):
    """Stratified and random use the nets' splits (the same test beats for the same seed)."""
    from dataset import make_splits
    data = fake_features()
    monkeypatch.setattr(baseline, "load_features", lambda root, cfg, records, download=True, log=print: (data, {}))
    for split in ("stratified", "random", "interpatient"):
        for model in ("lda", "logreg"):
            out = tmp_path / f"{split}_{model}"
            assert baseline.main(["--split", split, "--model", model, "--out-dir", str(out), "--bootstrap", "0",
                                  "--classes", "aami5"]) == 0
            rep = _report(out)
            validate_report(rep)
            nets = make_splits(data, split, 1337)
            assert rep["test"]["n_beats"] == len(nets.test) and rep["dataset"]["split"] == split
            assert rep["dataset"]["beats"]["train"] == len(nets.train) + len(nets.val)
            assert (rep["test"]["ci"] if "ci" in rep["test"] else None) is None


def test_the_test_section_is_the_nets_by_hand():
    """baseline.py builds its `test` section with metrics.test_metrics, as engine.evaluate_part does
    the nets': per record, without record 232 (present here) and the digest, by hand."""
    import hashlib
    from metrics import test_metrics
    y, pred = np.array([0, 1, 1, 2, 0]), np.array([0, 1, 0, 2, 1])
    record = np.array([100, 232, 232, 233, 233])
    t = test_metrics(y, pred, record, CLASS_NAMES["aami5"], grouped=True, bootstrap=0, seed=5)
    assert t["n_beats"] == 5 and t["accuracy"] == pytest.approx(3 / 5) and "ci" not in t
    assert t["per_record"]["232"]["beats"] == 2 and t["per_record"]["232"]["accuracy"] == 0.5
    assert (t["per_record"]["232"]["key_classes"]["S"]["TP"], t["per_record"]["232"]["key_classes"]["S"]["FN"]) == (1, 1)
    out = t["key_classes_without_232"]  # rows 0, 3, 4: no S beat, one N beat called S
    assert (out["S"]["n"], out["S"]["TP"], out["S"]["FP"]) == (0, 0, 1) and out["V"]["TP"] == 1
    assert t["predictions_sha256"] == hashlib.sha256(bytes([0, 1, 0, 2, 1])).hexdigest()


def test_ds2_never_takes_part_in_the_cv_choice(fake, tmp_path):
    """--cv: the choice and every cross-validation score are the same when DS2's labels and features
    are scrambled; the cross-validation refuses rows outside DS1."""
    def scrambled():
        d = fake_features()
        ds2 = np.isin(d.record, [int(r) for r in DS2])
        rng = np.random.default_rng(9)
        d.y[ds2] = rng.permutation(d.y[ds2])
        d.x[ds2] = rng.normal(5, 3, d.x[ds2].shape)
        return d
    cvs = []
    for i, make in enumerate((fake_features, scrambled)):
        fake["make"] = make
        out = tmp_path / str(i)
        assert baseline.main(["--split", "interpatient", "--cv", "2", "--out-dir", str(out), "--bootstrap", "0"]) == 0
        rep = _report(out)
        cvs.append(rep["cv"])
        assert rep["best_val"]["variant"] == rep["cv"]["chosen"]["variant"] == rep["features"]["variant"]
    assert [r["macro_f1"] for r in cvs[0]["scores"]] == [r["macro_f1"] for r in cvs[1]["scores"]]
    assert cvs[0]["chosen"] == cvs[1]["chosen"] and len(cvs[0]["scores"]) == len(baseline.VARIANTS) * 4
    d = fake_features()
    with pytest.raises(AssertionError, match="outside DS1"):
        baseline.cross_validate(d.x, d.y, d.record, d.class_names, "lda", ["paper"], 2)


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, no output folder
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,match", [
    (["--nope"], "unrecognized arguments: --nope"),
    (["--model", "svm"], "invalid choice: 'svm'"),
    (["--cv", "4"], "--cv K needs 2 <= K <= 22 (DS1's records) and --split interpatient"),
    (["--cv", "23", "--split", "interpatient"], "--cv K needs 2 <= K <= 22"),
    (["--model", "logreg", "--lda-pool", "beats"], "--lda-pool sets how LDA pools"),
    (["--bootstrap", "-1"], "--bootstrap must be >= 0"),
])
def test_bad_options_are_one_line(tmp_path, capsys, argv, match):
    out = tmp_path / "out"
    assert baseline.main([*argv, "--root", str(tmp_path), "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and err.startswith("baseline.py: error:"), err
    assert not out.exists()


def test_missing_records_and_unwritable_out_dir_are_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert baseline.main(["--root", str(tmp_path / "none"), "--no-download", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "record(s) missing" in err and not out.exists(), err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert baseline.main(["--root", str(tmp_path), "--out-dir", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write to --out-dir" in err, err
