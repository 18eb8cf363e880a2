"""predict.py on real MIT-BIH records with a checkpoint trained here (one tiny epoch)."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import predict
import trainer
from metrics import confusion_matrix
from beats import LABEL_SCHEMES
from utils import PreprocConfig, cut_windows, read_record

N_BEATS_100 = 2273  # beat annotations of record 100
EDGE_100 = [0, N_BEATS_100 - 2, N_BEATS_100 - 1]  # beats whose 2 s window leaves record 100


@pytest.fixture(scope="module")
def trained(mitbih_dir, tmp_path_factory):
    """A one-epoch liteecgnet whose test part is record 100 alone -> (checkpoint, report)."""
    out = tmp_path_factory.mktemp("train")
    rc = trainer.main(["--model", "liteecgnet", "--epochs", "1", "--device", "cpu", "--root", str(mitbih_dir),
                       "--no-download", "--out-dir", str(out),
                       "--class-limit", "400", "--batch-size", "32", "--train-recs", "101", "106", "--val-recs", "103",
                       "--test-recs", "100"])
    assert rc == 0
    (ckpt,) = [p for p in out.glob("ecg_lightweight_*.pt") if not p.name.endswith(".last.pt")]
    (rep,) = out.glob("eval_report_*.json")
    return ckpt, json.loads(rep.read_text())


@pytest.fixture(scope="module")
def on_100(trained, mitbih_dir, tmp_path_factory):
    """predict.py on record 100 at the reference positions -> (result dict, printed lines, out dir)."""
    ckpt, _ = trained
    out = tmp_path_factory.mktemp("pred")
    lines: list[str] = []
    res = predict.predict_record(ckpt, str(mitbih_dir / "100"), out_dir=out, log=lines.append)
    return res, lines, out


def test_annotation_file_has_one_label_per_reference_beat(on_100, mitbih_dir):
    import wfdb
    res, _, out = on_100
    _, ref_samp, _, _ = read_record(mitbih_dir, "100", PreprocConfig())
    ann = wfdb.rdann(str(out / "100"), "pred")
    assert len(ann.sample) == len(ref_samp) == N_BEATS_100
    np.testing.assert_array_equal(ann.sample, ref_samp)
    assert ann.symbol == res["symbols"]
    assert set(ann.symbol) <= {"N", "A", "V", "Q"}  # seed4 -> representative beat codes
    assert ann.fs == 360
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_csv_has_one_row_per_beat_with_probabilities(on_100):
    res, _, out = on_100
    with open(out / "100.pred.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N_BEATS_100
    assert list(rows[0])[:5] == ["sample", "time_s", "label", "symbol", "edge_padded"]
    names = res["class_names"]
    p = np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-4)
    assert [r["label"] for r in rows] == [names[k] for k in p.argmax(1)]
    assert int(rows[5]["sample"]) == res["samples"][5]
    assert float(rows[5]["time_s"]) == pytest.approx(res["samples"][5] / 360, abs=1e-4)
    assert [i for i, r in enumerate(rows) if r["edge_padded"] == "1"] == EDGE_100


def test_statistics_equal_the_report_for_record_100(on_100, trained, mitbih_dir):
    """The pipeline drops the 3 beats whose 2 s window leaves the record (samples 77, 649734,
    649991 of 650000); predict labels them on an edge-padded window. On the other 2,270 the
    predictions are exactly the report's."""
    res, lines, _ = on_100
    _, report = trained
    cfg = PreprocConfig.from_dict(report["preprocessing"])
    sig, samp, sym, _ = read_record(mitbih_dir, "100", cfg)
    _, kept = cut_windows(sig, samp, cfg.window)
    assert list(np.flatnonzero(~kept)) == EDGE_100
    np.testing.assert_array_equal(res["edge_padded"], ~kept)

    y = np.array([LABEL_SCHEMES[cfg.classes][s] for s in sym])
    pred = res["pred"]
    assert report["test"]["n_beats"] == kept.sum() == report["test"]["per_record"]["100"]["beats"]
    # same windows, same model: bit-identical predictions on the kept beats
    assert hashlib.sha256(pred[kept].astype(np.int8).tobytes()).hexdigest() == report["test"]["predictions_sha256"]
    assert float((pred[kept] == y[kept]).mean()) == report["test"]["per_record"]["100"]["accuracy"]

    # the printed comparison covers all 2,273 beats: minus the 3 edge beats it is the report's
    c = res["comparison"]
    assert (c["matched"], c["missed"], c["extra"]) == (N_BEATS_100, 0, 0)
    np.testing.assert_array_equal(c["y_true"], y)
    cm_all = np.array(c["metrics"]["confusion_matrix"]["matrix"])
    cm_edge = confusion_matrix(y[~kept], pred[~kept], len(res["class_names"]))
    np.testing.assert_array_equal(cm_all - cm_edge, report["test"]["confusion_matrix"]["matrix"])
    kept_cm = np.array(report["test"]["confusion_matrix"]["matrix"])
    for name, g in c["ec57"]["gross"].items():
        k = res["class_names"].index(name)
        assert g["TP"] == kept_cm[k, k] + cm_edge[k, k]
    text = "\n".join(lines)
    assert f"accuracy {c['metrics']['accuracy']:.4f}" in text
    assert "confusion (rows = reference, columns = predicted)" in text and "EC57 gross" in text
    assert "2273 paired, 0 reference beats missed, 0 extra beats" in text


def test_detect_matches_xqrs_beats_to_the_reference(trained, mitbih_dir, tmp_path):
    ckpt, _ = trained
    lines: list[str] = []
    res = predict.predict_record(ckpt, str(mitbih_dir / "100"), out_dir=tmp_path, detect=True, log=lines.append)
    assert res["source"] == "xqrs" and any("XQRS" in l for l in lines)
    c = res["comparison"]
    assert c["matched"] + c["missed"] == N_BEATS_100 and c["matched"] + c["extra"] == len(res["samples"])
    assert c["matched"] >= N_BEATS_100 - 5  # XQRS finds record 100's beats
    assert c["metrics"]["accuracy"] > 0.5


def test_match_beats_is_one_to_one_within_the_window():
    ref = np.array([100, 200, 300, 400])
    test = np.array([105, 260, 290, 398, 402, 900])
    ri, ti = predict.match_beats(ref, test, tol=54)
    # 200 has nothing within 54 samples (260 is 60 away); 290 is closer to 300 than 260 is;
    # 398 and 402 tie for 400: one of them pairs, the other is extra
    assert ri.tolist() == [0, 2, 3] and ti.tolist()[:2] == [0, 2] and ti[2] in (3, 4)
    ri, ti = predict.match_beats(np.array([], np.int64), test, 54)
    assert len(ri) == len(ti) == 0


def test_record_without_annotations_falls_back_to_xqrs(trained, mitbih_dir, tmp_path, capsys):
    ckpt, _ = trained
    for ext in ("hea", "dat"):
        shutil.copy(mitbih_dir / f"100.{ext}", tmp_path / f"100.{ext}")
    out = tmp_path / "out"
    assert predict.main([str(ckpt), str(tmp_path / "100"), "--out-dir", str(out), "--out-ext", "xq"]) == 0
    stdout = capsys.readouterr().out
    assert "no reference annotations (100.atr): detecting beats with wfdb.processing XQRS" in stdout
    assert "beat-by-beat" not in stdout  # nothing to compare with
    import wfdb
    ann = wfdb.rdann(str(out / "100"), "xq")
    _, ref, _, _ = read_record(mitbih_dir, "100", PreprocConfig())
    ri, _ = predict.match_beats(ref, ann.sample, 54)
    assert abs(len(ann.sample) - N_BEATS_100) <= 5 and len(ri) >= N_BEATS_100 - 5
    assert (out / "100.xq.csv").read_text().count("\n") == len(ann.sample) + 1


def test_record_at_another_sampling_rate_is_refused(trained, mitbih_dir, tmp_path, capsys):
    ckpt, _ = trained
    hea = (mitbih_dir / "100.hea").read_text().splitlines()
    first = hea[0].split()
    assert first[2] == "360"
    first[2] = "250"
    (tmp_path / "100.hea").write_text("\n".join([" ".join(first), *hea[1:]]) + "\n")
    shutil.copy(mitbih_dir / "100.dat", tmp_path / "100.dat")
    shutil.copy(mitbih_dir / "100.atr", tmp_path / "100.atr")
    assert predict.main([str(ckpt), str(tmp_path / "100"), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "250 Hz" in err and "360 Hz" in err and "does not resample" in err
    assert not (tmp_path / "out" / "100.pred").exists()


@pytest.mark.parametrize("case", ["missing-ckpt", "not-a-ckpt", "missing-record", "bad-ext"])
def test_bad_input_is_one_line_exit_2(case, trained, mitbih_dir, tmp_path, capsys):
    ckpt, _ = trained
    rec = str(mitbih_dir / "100")
    extra = []
    if case == "missing-ckpt":
        ckpt = tmp_path / "nope.pt"
    elif case == "not-a-ckpt":
        ckpt = tmp_path / "junk.pt"
        ckpt.write_text("not a checkpoint")
    elif case == "missing-record":
        rec = str(tmp_path / "999")
    else:
        extra = ["--out-ext", "a/b"]
    assert predict.main([str(ckpt), rec, "--out-dir", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("predict.py: error:")
    assert {"missing-ckpt": "does not exist", "not-a-ckpt": "cannot be read as a checkpoint",
            "missing-record": "not found", "bad-ext": "--out-ext"}[case] in err


@pytest.mark.parametrize("extra", [[], ["--second-lead"]], ids=["one-lead", "two-leads"])
def test_template_and_patient_rr_model_predicts_as_it_was_evaluated(mitbih_dir, tmp_path, extra):
    """The patient-context inputs (template channel, patient-relative RR standardised in the
    model; with --second-lead also record 100's V5 and its template) reach predict.py through the
    same utils.beat_inputs as training: on record 100's kept beats its predictions are the
    report's, bit for bit."""
    out = tmp_path / "train"
    assert trainer.main(["--model", "liteecgnet", "--epochs", "1", "--device", "cpu", "--root", str(mitbih_dir),
                         "--no-download", "--out-dir", str(out), "--class-limit", "300",
                         "--template", "--rr", "sequence", "--classes", "aami5",
                         "--train-recs", "101", "106", "--val-recs", "103", "--test-recs", "100", *extra]) == 0
    (ckpt,) = [p for p in out.glob("ecg_lightweight_*.pt") if not p.name.endswith(".last.pt")]
    (rep,) = out.glob("eval_report_*.json")
    report = json.loads(rep.read_text())
    assert report["preprocessing"]["template"] is True and report["preprocessing"]["rr_features"] == "sequence"
    res = predict.predict_record(ckpt, str(mitbih_dir / "100"), out_dir=tmp_path / "pred", log=lambda m: None)
    kept = ~res["edge_padded"]
    assert res["lead"] == ("MLII+V5" if extra else "MLII")
    assert report["preprocessing"]["second_lead"] is bool(extra) and report["dataset"]["leads"]["100"] == res["lead"]
    if extra:  # XQRS looks for beats on the lead policy's lead, not on both
        found = predict.predict_record(ckpt, str(mitbih_dir / "100"), out_dir=tmp_path / "det", detect=True,
                                       log=lambda m: None)
        assert found["comparison"]["matched"] > 0.99 * len(res["samples"])
        import export  # the ONNX file takes (B, 4, T) and predicts what the checkpoint predicts
        onnx_file = export.export(str(ckpt), str(tmp_path / "two.onnx"), runs=2, log=lambda m: None)
        got = predict.predict_record(onnx_file, str(mitbih_dir / "100"), out_dir=tmp_path / "onnx", log=lambda m: None)
        np.testing.assert_array_equal(got["pred"], res["pred"])
        np.testing.assert_allclose(got["prob"], res["prob"], atol=1e-4)
    assert hashlib.sha256(res["pred"][kept].astype(np.int8).tobytes()).hexdigest() == \
        report["test"]["predictions_sha256"]


# ----------------------------------------------------------------------------------------------
# The ONNX file (export.py) on onnxruntime
# ----------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """export.py (float), then export.py --int8, of the trained checkpoint -> (float .onnx, int8 .onnx,
    the int8 export's record)."""
    import export
    ckpt, _ = trained
    out = tmp_path_factory.mktemp("onnx") / "lite.onnx"
    assert export.export(str(ckpt), str(out), runs=0, log=lambda m: None) == out
    lines: list[str] = []
    q = out.with_name("lite.int8.onnx")
    assert export.export(str(ckpt), str(q), runs=5, int8=True, log=lines.append) == q
    assert any("| ONNX int8 |" in line for line in lines)
    return out, q, json.loads(out.with_name("lite.int8.export.json").read_text())


def test_onnx_file_predicts_what_the_checkpoint_predicts(on_100, exported, mitbih_dir, tmp_path):
    res, _, _ = on_100
    onnx_file, _, _ = exported
    got = predict.predict_record(onnx_file, str(mitbih_dir / "100"), out_dir=tmp_path, log=lambda m: None)
    np.testing.assert_array_equal(got["pred"], res["pred"])
    np.testing.assert_allclose(got["prob"], res["prob"], atol=1e-4)
    assert got["comparison"]["metrics"] == res["comparison"]["metrics"]


def test_export_record_compares_float_and_int8_on_the_test_part(exported, trained):
    """The float file is checked on every test beat (same class as the checkpoint), scores side by
    side, and int8 calibration used training beats only (records 101 and 106, never 100)."""
    from deploy import OnnxModel
    _, q, record = exported
    _, report = trained
    assert record["float"]["check"]["argmax_identical"] and record["float"]["check"]["beats"] == report["test"]["n_beats"]
    assert record["float"]["check"]["max_abs_logit_diff"] <= 1e-3
    t = record["test"]
    assert t["eager"] == t["float"] and t["eager"]["macro_f1"] == pytest.approx(report["test"]["macro_f1"])
    assert set(t["int8"]) == {"macro_f1", "S_F1", "V_F1"} and 0 <= t["int8"]["macro_f1"] <= 1
    assert set(record["latency_ms"]) >= {"eager", "float", "int8"}
    cal = OnnxModel(q).meta["quantization"]["calibration"]
    assert cal["part"] == "train" and set(cal["records"]) <= {"101", "106"} and cal == record["int8"]["calibration"]
    assert cal["source"] == "checkpoint" and 0 < cal["beats"] <= 16 * 4


def _run_without_torch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """predict.py in a fresh interpreter where `import torch` fails (an import hook refuses it;
    sys.modules['torch'] = None would also fool scipy's checks for torch arrays)."""
    code = ("import runpy, sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError('torch is not importable here')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            f"sys.argv = ['predict.py', *{args!r}]\n"
            "try:\n"
            "    runpy.run_path('predict.py', run_name='__main__')\n"
            "finally:\n"
            "    assert 'torch' not in sys.modules\n")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_onnx_predict_never_imports_torch(exported, on_100, mitbih_dir, tmp_path):
    """The whole path, read -> filter -> XQRS detection (no .atr) -> patient context -> classify
    -> write, runs with torch unimportable; with the reference beats the labels are the checkpoint's."""
    res, _, _ = on_100
    onnx_file, q, _ = exported
    r = _run_without_torch([str(onnx_file), str(mitbih_dir / "100"), "--out-dir", str(tmp_path / "ref")], ROOT)
    assert r.returncode == 0, r.stderr
    import wfdb
    assert wfdb.rdann(str(tmp_path / "ref" / "100"), "pred").symbol == res["symbols"]
    for ext in ("hea", "dat"):
        shutil.copy(mitbih_dir / f"100.{ext}", tmp_path / f"100.{ext}")
    r = _run_without_torch([str(q), str(tmp_path / "100"), "--out-dir", str(tmp_path / "xq")], ROOT)
    assert r.returncode == 0, r.stderr
    assert "detecting beats with wfdb.processing XQRS" in r.stdout
    assert abs(len(wfdb.rdann(str(tmp_path / "xq" / "100"), "pred").sample) - N_BEATS_100) <= 5


@pytest.mark.parametrize("case", ["truncated", "not-onnx", "no-metadata", "other-window", "other-fs"])
def test_bad_onnx_input_is_one_line_exit_2(case, exported, mitbih_dir, tmp_path, capsys):
    import onnx
    onnx_file, _, _ = exported
    model, rec = tmp_path / "m.onnx", str(mitbih_dir / "100")
    if case == "truncated":
        b = onnx_file.read_bytes()
        model.write_bytes(b[:len(b) // 2])
    elif case == "not-onnx":
        model.write_text("not a model")
    elif case == "no-metadata":
        m = onnx.load(str(onnx_file))
        del m.metadata_props[:]
        onnx.save(m, str(model))
    elif case == "other-window":  # metadata that promises 1 s windows to a graph built for 2 s
        m = onnx.load(str(onnx_file))
        meta = json.loads(m.metadata_props[0].value)
        meta["preprocessing"]["segment_sec"] = 1.0
        m.metadata_props[0].value = json.dumps(meta)
        onnx.save(m, str(model))
    else:
        shutil.copy(onnx_file, model)
        hea = (mitbih_dir / "100.hea").read_text().splitlines()
        first = hea[0].split()
        first[2] = "250"
        (tmp_path / "100.hea").write_text("\n".join([" ".join(first), *hea[1:]]) + "\n")
        for ext in ("dat", "atr"):
            shutil.copy(mitbih_dir / f"100.{ext}", tmp_path / f"100.{ext}")
        rec = str(tmp_path / "100")
    assert predict.main([str(model), rec, "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("predict.py: error:")
    assert {"truncated": "not a readable ONNX model", "not-onnx": "not a readable ONNX model",
            "no-metadata": "no LiteECG metadata", "other-window": "the metadata's preprocessing gives (batch, 1, 360)",
            "other-fs": "does not resample"}[case] in err
    assert not list((tmp_path / "out").glob("100.*")) if (tmp_path / "out").exists() else True


# ----------------------------------------------------------------------------------------------
# The detector
# ----------------------------------------------------------------------------------------------

def test_local_peaks_are_wfdbs():
    """Same peaks as wfdb.processing.peaks.find_local_peaks, ties and plateaus included (small
    integer signals have many); wfdb's own loop needs more than radius + 1 samples."""
    from wfdb.processing.peaks import find_local_peaks
    rng = np.random.default_rng(0)
    for _ in range(300):
        r = int(rng.integers(1, 20))
        x = rng.integers(0, 5, int(rng.integers(r + 2, 300))).astype(float)
        np.testing.assert_array_equal(predict.local_peaks(x, r), np.asarray(find_local_peaks(x, r), int))
    assert len(predict.local_peaks(np.ones(50), 3)) == 0


def test_detection_is_xqrs_unchanged(mitbih_dir):
    """detect_beats gives exactly wfdb's XQRS beats on record 232 and leaves wfdb as it was."""
    from wfdb import processing
    from wfdb.processing import qrs
    original = qrs.find_local_peaks
    sig, _, _, _ = read_record(mitbih_dir, "232", PreprocConfig())
    sig = sig[:360 * 300]  # 5 minutes: wfdb's own loop takes ~0.5 s per minute
    np.testing.assert_array_equal(predict.detect_beats(sig, 360),
                                  np.unique(processing.xqrs_detect(sig=sig, fs=360, verbose=False)))
    assert qrs.find_local_peaks is original
