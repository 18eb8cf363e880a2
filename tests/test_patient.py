"""patient.py, calibrate.py and --split patient-specific: the recipes' loop by hand, the minutes and
the common set, no test-minute beat in any fit, and one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import calibrate
import patient
import trainer
from dataset import BeatTensors
from models import create_model
from utils import BeatData, PreprocConfig

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(steps=3)  # the loops' steps in these tests: what is checked does not depend on how many


def _data(records=(100, 101), n=40, fs=360, classes=(0, 1, 2)) -> BeatData:
    """Synthetic beats: n per record, one every 10 s, labels cycling through `classes`."""
    k = n * len(records)
    rng = np.random.default_rng(0)
    return BeatData(x=rng.standard_normal((k, 432)).astype(np.float32), y=np.resize(np.array(classes), k),
                    record=np.repeat(np.array(records, np.int32), n), rpeak=np.tile(np.arange(n) * 10 * fs, len(records)),
                    rr=rng.standard_normal((k, 16)).astype(np.float32), symbol=np.full(k, "N"),
                    class_names=["N", "S", "V", "F", "Q"], config=PreprocConfig(segment_sec=1.2, classes="aami5"))


def test_minutes_split_is_a_partition_by_r_peak_time():
    d = _data()
    cal, test = patient.minutes_split(d, "101", 5.0)
    assert np.all(d.record[cal] == 101) and np.all(d.record[test] == 101)
    assert np.all(d.rpeak[cal] < 300 * 360) and np.all(d.rpeak[test] >= 300 * 360)
    assert len(cal) == 30 and len(cal) + len(test) == 40 and not set(cal) & set(test)  # beats at 0, 10, ... 290 s


def test_common_set_never_holds_the_test_record_and_takes_every_f_and_q():
    recs = (100, 101, 103, 200)
    d = _data(records=recs, n=200, classes=(0, 0, 1, 2, 3, 4))
    rows = patient.common_set(d, "101", seed=3)
    assert not np.isin(d.record[rows], [101, 200]).any()       # not the test record, not outside 100-124
    counts = np.bincount(d.y[rows], minlength=5)
    pool = np.isin(d.record, [100, 103])
    assert counts[:3].tolist() == [75, 66, 66]                  # N: 75 drawn of 132; S and V: all 66 (< 75)
    assert counts[3] == (d.y[pool] == 3).sum() and counts[4] == (d.y[pool] == 4).sum()
    assert np.array_equal(rows, patient.common_set(d, "101", seed=3))   # seeded
    assert not np.array_equal(rows, patient.common_set(d, "101", seed=4))


def test_calibration_leaves_the_classes_it_has_not_seen_alone():
    """CALIBRATE's loss runs over the classes present: an absent class's logits get no gradient, so
    its output bias is untouched (AdamW without decay moves nothing on a zero gradient); a plain
    loss pushes it down. The model given is left as it was."""
    torch.manual_seed(0)
    model = create_model("liteecgnet", num_classes=5, rr_dim=16, in_channels=1, rr_norm=True).eval()
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([5.0, 5.0, 0.0, 0.0, 0.0]))  # it calls every beat N or S
    d = _data(classes=(0, 1))                                   # the patient shows N and S only
    beats = BeatTensors(d, np.arange(len(d.y)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = patient.adapt(model, beats, replace(patient.CALIBRATE, **FAST), seed=1)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(tuned.fc.bias[2:], model.fc.bias[2:]) and not torch.equal(tuned.fc.bias[:2], model.fc.bias[:2])
    assert all(torch.equal(tuned.state_dict()[k], v) for k, v in before.items() if "running" in k)  # BN kept
    plain = patient.adapt(model, beats, replace(patient.CALIBRATE, present_only=False, **FAST), seed=1)
    assert (plain.fc.bias[2:] < model.fc.bias[2:]).all()
    assert not tuned.training
    with torch.no_grad():  # now it calls every beat V: V stays learnable (called on >= 10 % of them) and drops
        model.fc.bias.copy_(torch.tensor([0.0, 0.0, 9.0, 0.0, 0.0]))
    tuned = patient.adapt(model, beats, replace(patient.CALIBRATE, **FAST), seed=1)
    assert tuned.fc.bias[2] < model.fc.bias[2] and torch.equal(tuned.fc.bias[3:], model.fc.bias[3:])


def test_calibration_depends_on_its_seed_alone():
    """The same seed gives the same calibrated weights whatever ran before in the process (dropout
    draws from `seed`), and the caller's random state is left as it was."""
    model = create_model("liteecgnet", num_classes=5, rr_dim=16, in_channels=1, rr_norm=True).eval()
    beats = BeatTensors(_data(), np.arange(80))
    recipe = replace(patient.CALIBRATE, **FAST)
    torch.manual_seed(1)
    a = patient.adapt(model, beats, recipe, seed=7)
    state = torch.get_rng_state()
    torch.rand(5)
    b = patient.adapt(model, beats, recipe, seed=7)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    torch.manual_seed(1)
    patient.adapt(model, beats, recipe, seed=7)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_recipes_are_the_ones_chosen_inside_ds1():
    """docs/lab/calibration.md: what was chosen, so a change here is a change of the product."""
    assert (patient.CALIBRATE.steps, patient.CALIBRATE.batch, patient.CALIBRATE.lr, patient.CALIBRATE.present_only,
            patient.CALIBRATE.called_share, patient.CALIBRATE.freeze_bn, patient.CALIBRATE.weight_decay) == \
        (100, 64, 1e-3, True, 0.1, True, 0.0)
    assert (patient.FROM_SCRATCH.steps, patient.FROM_SCRATCH.lr, patient.FROM_SCRATCH.warmup,
            patient.FROM_SCRATCH.class_weights) == (150, 3e-3, 50, "sqrt")


def _recording(monkeypatch, seen: list):
    """patient.adapt that records every beat it trains on (record, R peak) and runs FAST."""
    real = patient.adapt

    def adapt(model, beats, recipe, seed):
        seen.append(np.stack([beats.record, beats.rpeak], 1))
        return real(model, beats, replace(recipe, **FAST), seed)
    monkeypatch.setattr(patient, "adapt", adapt)


def test_patient_specific_never_trains_on_a_test_minute(mitbih_dir, tmp_path, monkeypatch, capsys):
    """--split patient-specific: each record's model sees the common set (never that record) and the
    record's beats before minute 5 only; every beat after is tested, once, and reported."""
    seen: list = []
    _recording(monkeypatch, seen)
    recs = ["106", "232"]
    assert trainer.main(["--split", "patient-specific", "--test-recs", *recs, "--root", str(mitbih_dir), "--no-download",
                         "--device", "cpu", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    assert len(seen) == 2
    for r, beats in zip(recs, seen):
        own = beats[:, 0] == int(r)
        assert own.any() and np.all(beats[own, 1] < 300 * 360)                    # its first minutes only
        assert set(np.unique(beats[~own, 0]).astype(str)) <= set(patient.COMMON_RECORDS)
    (rep,) = tmp_path.glob("eval_report_*.json")
    report = json.loads(rep.read_text())
    assert report["dataset"]["split"] == "patient-specific" and report["dataset"]["records"]["test"] == recs
    test_beats = sum(v["test_beats"] for v in report["patient_specific"]["records"].values())
    assert report["test"]["n_beats"] == test_beats == report["dataset"]["beats"]["test"]
    assert "232" in report["test"]["per_record"] and "key_classes_without_232" in report["test"]
    assert "EC57 gross" in capsys.readouterr().out


@pytest.mark.parametrize("extra,match", [
    (["--epochs", "3"], "--epochs does not apply"),
    (["--test-recs", "102"], "leaves out the paced records: 102"),
    (["--train-recs", "100", "--test-recs", "101"], "go together"),
])
def test_patient_specific_refuses_what_does_not_apply(mitbih_dir, tmp_path, capsys, extra, match):
    assert trainer.main(["--split", "patient-specific", "--root", str(mitbih_dir), "--no-download",
                         "--out-dir", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def interpatient_ckpt(mitbih_dir, tmp_path_factory) -> Path:
    """A small inter-patient liteecgnet (one epoch on three DS1 records; DS2 records to test)."""
    out = tmp_path_factory.mktemp("ckpt")
    assert trainer.main(["--split", "interpatient", "--train-recs", "101", "106", "208", "--val-recs", "119",
                         "--test-recs", "200", "207", "--epochs", "1", "--class-limit", "300", "--device", "cpu",
                         "--threads", "1", "--root", str(mitbih_dir), "--no-download", "--out-dir", str(out)]) == 0
    (ckpt,) = [p for p in out.glob("*.pt") if not p.name.endswith(".last.pt")]
    return ckpt


def test_calibrate_one_record_then_predict_and_export_the_rest(interpatient_ckpt, mitbih_dir, tmp_path, capsys):
    """calibrate.py RECORD: a checkpoint like any other (it rebuilds and says what it was calibrated
    on), a report of the beats used and the fit; predict.py --start labels from minute 5 on;
    export.py makes its int8 file from the .pt alone."""
    import export
    import predict
    from checkpoint import Checkpoint
    out = tmp_path / "cal"
    assert calibrate.main([str(mitbih_dir / "207"), "--checkpoint", str(interpatient_ckpt), "--out", str(out),
                           "--threads", "1"]) == 0
    said = capsys.readouterr().out
    assert "no beat of S, F, Q in the calibration minutes" in said and "calibrated in" in said
    info = json.loads((out / "207_calibration.json").read_text())
    assert info["minutes"] == 5.0 and info["absent_classes"] == ["S", "F", "Q"] and info["beats"]["V"] > 0
    ck = Checkpoint.load(out / "207_calibrated.pt")
    assert ck.calibrated["record"].endswith("207") and ck.build_model() is not None
    res = predict.predict_record(out / "207_calibrated.pt", str(mitbih_dir / "207"), out_dir=tmp_path / "p",
                                 start=300, log=lambda m: None)
    assert res["samples"].min() >= 300 * 360 and res["comparison"]["matched"] == len(res["samples"])
    q = export.export(str(out / "207_calibrated.pt"), runs=0, int8=True, log=lambda m: None)
    assert q.name == "207_calibrated.int8.onnx" and q.is_file()


def test_calibrate_evaluate_tests_only_the_later_minutes(interpatient_ckpt, mitbih_dir, tmp_path, monkeypatch):
    """--evaluate: the checkpoint's test records by default; each is calibrated on beats before minute
    5 only, and the report scores the calibrated and the uncalibrated model on the same later beats."""
    seen: list = []
    _recording(monkeypatch, seen)
    assert calibrate.main(["--evaluate", "--checkpoint", str(interpatient_ckpt), "--out", str(tmp_path),
                           "--threads", "1"]) == 0
    assert [int(np.unique(b[:, 0])[0]) for b in seen] == [200, 207]
    assert all(np.all(b[:, 1] < 300 * 360) for b in seen)
    (rep,) = tmp_path.glob("eval_report_*_calibrated.json")
    report = json.loads(rep.read_text())
    assert report["uncalibrated"]["n_beats"] == report["test"]["n_beats"] == report["dataset"]["beats"]["test"]
    assert report["dataset"]["records"]["test"] == ["200", "207"]


@pytest.mark.parametrize("args,match", [
    (["--minutes", "0"], "--minutes must be a positive number"),
    (["--minutes", "40"], "is not shorter than record 207"),
    (["--ann", "qrs"], "annotation file"),
    (["--ann", "a/b"], "--ann must be letters"),
    (["--evaluate"], "not both"),
    ([], "beats in the first"),
])
def test_calibrate_bad_input_is_one_line(interpatient_ckpt, mitbih_dir, tmp_path, capsys, args, match):
    rec = tmp_path / "207"
    for ext in ("hea", "dat"):
        (tmp_path / f"207.{ext}").write_bytes((mitbih_dir / f"207.{ext}").read_bytes())
    # a foreign annotation file: the reference's first two annotations only (too few beats to calibrate on)
    from wfdbio import annotation_bytes, read_annotations
    samp, sym = read_annotations(mitbih_dir / "207.atr")
    (tmp_path / "207.atr").write_bytes(annotation_bytes(samp[:2], list(sym[:2]), 360))
    assert calibrate.main([str(rec), "--checkpoint", str(interpatient_ckpt), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("calibrate.py: error:") and match in err, err
    assert not (tmp_path / "o").exists()


def test_calibrate_without_the_shipped_model_says_how_to_build_it(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import calibrate, sys; from pathlib import Path; "
                        f"calibrate.WEIGHTS = Path({str(tmp_path / 'absent.pt')!r}); "
                        "sys.exit(calibrate.main(['x', '--checkpoint', str(calibrate.WEIGHTS)]))"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "bash weights/build.sh" in r.stderr and len(r.stderr.strip().splitlines()) == 1
