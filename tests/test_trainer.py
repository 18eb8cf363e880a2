"""trainer.py end to end on a few real records: outputs, reproducibility, resume, bad input."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint
import engine
import options
import report as report_mod
import trainer
from cli import UsageError
from config import MODEL_CONFIGS
from dataset import BeatTensors, make_splits
from metrics import classification_metrics
from models import create_model
from utils import PreprocConfig, load_beats

ROOT = Path(__file__).resolve().parents[1]
RECS = ["--train-recs", "101", "106", "208", "--val-recs", "119", "--test-recs", "100", "105"]


def base_args(mitbih_dir, out, *extra, model="liteecgnet", epochs=1):
    return ["--model", model, "--epochs", str(epochs), "--device", "cpu", "--root", str(mitbih_dir),
            "--no-download", "--out-dir", str(out), "--class-limit", "300", "--threads", "1", *RECS, *extra]


def run_cli(args, **kw):
    return subprocess.run([sys.executable, str(ROOT / "trainer.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, **kw)


def outputs(out: Path):
    ckpts = sorted(p for p in out.glob("ecg_lightweight_*.pt") if not p.name.endswith(".last.pt"))
    reports = sorted(out.glob("eval_report_*.json"))
    return ckpts, reports


@pytest.fixture(scope="module")
def one_run(mitbih_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    # default --device (cuda) must fall back to CPU with a message on this machine
    args = [a for a in base_args(mitbih_dir, out) if a not in ("--device", "cpu")]
    r = run_cli(args)
    assert r.returncode == 0, r.stderr
    (ckpt,), (rep,) = outputs(out)
    return out, ckpt, json.loads(rep.read_text()), r


def test_one_epoch_writes_checkpoint_and_report(one_run):
    out, ckpt, report, r = one_run
    if not torch.cuda.is_available():
        assert "CUDA is not available on this machine: running on CPU" in r.stdout
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.last.pt"))
    report_mod.validate_report(report)  # the schema documented in README.md
    assert report["model"] == "liteecgnet" and report["classes"] == ["N", "SVEB", "VEB", "Other"]
    assert report["dataset"]["records"]["test"] == ["100", "105"]
    assert len(report["history"]) == 1 and report["best_val"]["epoch"] == 1
    cm = np.array(report["test"]["confusion_matrix"]["matrix"])
    assert cm.sum() == report["test"]["n_beats"] == sum(report["dataset"]["class_counts"]["test"].values())
    assert report["test"]["ci"]["method"] == "bootstrap-record"
    assert report["model_metrics"]["macs"] > 0 and report["model_metrics"]["params_total"] > 0


def test_checkpoint_rebuilds_and_reproduces_predictions(one_run, mitbih_dir):
    _, ckpt_path, report, _ = one_run
    raw = torch.load(ckpt_path, weights_only=True)  # plain data only, loads without our code
    for k in ("state_dict", "model_name", "model_config", "class_names", "preprocessing", "args",
              "best_epoch", "best_val_f1", "versions"):
        assert k in raw
    model, ckpt = checkpoint.load_model(ckpt_path)
    data = load_beats(mitbih_dir, ckpt.preproc,
                      records=["101", "106", "208", "119", "100", "105"], use_cache=False, download=False)
    s = make_splits(data, "stratified", 1337, explicit={"train": ["101", "106", "208"], "val": ["119"],
                                                        "test": ["100", "105"]})
    pred, _, _ = engine.predict(model, BeatTensors(data, s.test), 256, use_rr=False)
    import hashlib
    assert hashlib.sha256(pred.astype(np.int8).tobytes()).hexdigest() == report["test"]["predictions_sha256"]
    assert float((pred == data.y[s.test]).mean()) == pytest.approx(report["test"]["accuracy"], abs=0)


def test_eval_only_and_evaluate_py_reproduce_the_report(one_run, tmp_path):
    out, ckpt, report, _ = one_run
    r = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), str(ckpt), "--out-dir", str(tmp_path),
                        "--device", "cpu"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    (rep,) = tmp_path.glob("eval_report_*.json")
    again = json.loads(rep.read_text())
    report_mod.validate_report(again)
    assert again["test"]["predictions_sha256"] == report["test"]["predictions_sha256"]
    assert again["test"]["macro_f1"] == report["test"]["macro_f1"]


def test_same_seed_same_metrics(one_run, mitbih_dir, tmp_path):
    _, _, first, _ = one_run
    # The fixture runs on the default device, which is the GPU where CUDA is present; a GPU's
    # sums round differently from the CPU's, so there the CPU reference is a run of its own.
    if first["environment"]["device"] != "cpu":
        assert trainer.main(base_args(mitbih_dir, tmp_path / "ref")) == 0
        first = json.loads(outputs(tmp_path / "ref")[1][0].read_text())
    assert trainer.main(base_args(mitbih_dir, tmp_path / "again")) == 0
    _, (rep,) = outputs(tmp_path / "again")
    second = json.loads(rep.read_text())
    for k in ("accuracy", "macro_f1", "predictions_sha256", "confusion_matrix"):
        assert second["test"][k] == first["test"][k]
    assert second["history"][0]["train_loss"] == first["history"][0]["train_loss"]


@pytest.mark.parametrize("extra", [[], ["--ema-epochs", "0.5"]], ids=["plain", "ema"])
def test_resume_after_interrupt_ends_like_uninterrupted(mitbih_dir, tmp_path, extra):
    full, part = tmp_path / "full", tmp_path / "part"
    # enough beats that an epoch lasts about a second: the interrupt lands inside epoch 2
    args = lambda out: [*base_args(mitbih_dir, out, epochs=3), "--class-limit", "1500", *extra]  # noqa: E731
    assert trainer.main(args(full)) == 0
    # interrupt a subprocess with Ctrl-C (SIGINT) once the first epoch is reported
    # SIGINT back to default in the child: a test run started in the background by a shell
    # (`bash .ci/run &`) inherits SIGINT ignored, and Python then installs no Ctrl-C handler
    p = subprocess.Popen([sys.executable, str(ROOT / "trainer.py"), *args(part)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in p.stdout:
        if line.startswith("epoch   1/"):
            p.send_signal(signal.SIGINT)
            break
    rest, err = p.communicate(timeout=300)
    assert "epoch   3/" not in rest, "the interrupt arrived after training ended"
    assert p.returncode == 130, err
    assert "interrupted" in rest
    (last,) = part.glob("*.last.pt")
    ckpts, reports = outputs(part)
    assert len(ckpts) == 1 and len(reports) == 1  # the best-so-far model was evaluated and written
    assert trainer.main(["--resume", str(last)]) == 0
    assert not list(part.glob("*.last.pt"))
    _, (a,) = outputs(full)
    _, (b,) = outputs(part)
    a, b = json.loads(a.read_text()), json.loads(b.read_text())
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["test"]["predictions_sha256"] == b["test"]["predictions_sha256"]
    assert a["test"]["macro_f1"] == b["test"]["macro_f1"]


# --- bad input: one line on stderr, non-zero exit, nothing written ----------------------------

@pytest.mark.parametrize("extra,match", [
    (["--model", "nope"], "invalid choice: 'nope'"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--batch-size", "-4"], "--batch-size must be >= 1"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--segment-sec", "0.001"], "samples per beat"),
    (["--resume", "/nonexistent/x.last.pt"], "does not exist"),
    (["--eval-only", "/nonexistent/x.pt"], "does not exist"),
    (["--train-recs", "100"], "go together"),
    (["--classes", "nope"], "invalid choice"),
    (["--rr", "sinus"], "invalid choice: 'sinus'"),
    (["--ema-epochs", "-1"], "--ema-epochs must be a number >= 0"),
    (["--ensemble", "0"], "--ensemble must be >= 1"),
    (["--focal", "-1"], "--focal gamma must be >= 0"),
    (["--cv-only"], "--cv-only needs --cv K"),
    (["--cv", "4"], "--cv K needs K >= 2 and --split interpatient"),
    (["--split", "interpatient", "--no-stratified"], "--no-stratified means --split random"),
    (["--out-dir", " "], "--out-dir is empty"),
    (["--adapt-norm", "300"], "unrecognized arguments: --adapt-norm"),
    (["--label-smoothing", "0.1"], "unrecognized arguments: --label-smoothing"),
    (["--model-set", "channels=48,72"], "--model-set: liteecgnet needs one stride and one se flag per block"),
    (["--model-set", "width=2"], "--model-set: liteecgnet does not take width; its settings are: channels"),
    (["--model-set", "channels"], "argument --model-set: expected KEY=VALUE, got 'channels'"),
    (["--model-set", "dropout=0.1", "--model-set", "dropout=0.2"], "--model-set names a setting twice"),
    (["--model", "resnet", "--model-set", "blocks=2,2"], "--model-set: resnet needs one block count per stage"),
    (["--second-lead", "--augment"], "--second-lead and --augment do not combine"),
])
def test_bad_arguments(mitbih_dir, tmp_path, capsys, extra, match):
    out = tmp_path / "out"
    args = ["--root", str(mitbih_dir), "--no-download", "--out-dir", str(out), "--device", "cpu", *extra]
    assert trainer.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()  # a run that fails creates no folder


@pytest.mark.parametrize("text,match", [
    ("epochs = 'three'", "epochs = 'three' has the wrong type"),
    ("wings = 2", "unknown setting 'wings'"),
    ("label_smoothing = 0.1", "a research probe that was removed; it runs at git tag lab-rounds-1-18"),
    ("[model_set]\nchannels = [1, 2]", "model settings go in per-model tables"),
    ("[model_set.nope]\ncoord = false", "[model_set.nope] names no model"),
    ("epochs = ", "is not valid TOML"),
])
def test_bad_config_files(mitbih_dir, tmp_path, capsys, text, match):
    (tmp_path / "c.toml").write_text(text + "\n")
    assert trainer.main(["--config", str(tmp_path / "c.toml"), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not (tmp_path / "out").exists()


def test_bad_input_from_a_real_shell(tmp_path):
    r = run_cli(["--model", "nope"])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and "liteecgnet" in r.stderr
    r = run_cli(["--root", str(tmp_path / "none"), "--no-download", "--out-dir", str(tmp_path / "o"),
                 "--device", "cpu"])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "missing" in r.stderr and "physionet.org" in r.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "none").exists()


def test_a_failed_download_leaves_no_folder(tmp_path, monkeypatch, capsys):
    """A mistyped --root (downloads allowed, no internet): one line, and neither the data folder
    the download would have made nor the output folder is left behind."""
    import utils

    def offline(db, dl_dir, records):
        raise OSError("network unreachable")
    monkeypatch.setattr(utils, "_wfdb_download", offline)
    root, out = tmp_path / "typo" / "mitbih", tmp_path / "o"
    assert trainer.main(["--root", str(root), "--out-dir", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "download failed (OSError: network unreachable)" in err
    assert not (tmp_path / "typo").exists() and not out.exists()


def test_help_is_fast_grouped_and_short():
    """--help imports no torch, lists its options in groups, and stays short."""
    import time
    t0 = time.perf_counter()
    r = run_cli(["--help"])
    assert r.returncode == 0 and time.perf_counter() - t0 < 10  # (about 0.2 s; a loaded CI machine is slower)
    for group in ("essentials:", "data and inputs:", "training:", "protocol:", "output:"):
        assert group in r.stdout
    flags = {a for a in options.build_parser()._option_string_actions}
    assert len(flags) <= 40, sorted(flags)
    code = "import sys, runpy; sys.argv = ['trainer.py', '--help']\ntry:\n    runpy.run_path('trainer.py', " \
           "run_name='__main__')\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr


def test_unwritable_out_dir(mitbih_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert trainer.main(["--root", str(mitbih_dir), "--out-dir", str(blocker / "sub"), "--device", "cpu"]) == 2
    assert "cannot write to --out-dir" in capsys.readouterr().err


def test_non_checkpoint_and_mismatched_checkpoint(one_run, tmp_path, capsys):
    _, ckpt, _, _ = one_run
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    assert trainer.main(["--eval-only", str(junk), "--out-dir", str(tmp_path / "o")]) == 2
    assert "cannot be read as a checkpoint: the file is truncated or damaged" in capsys.readouterr().err
    short = tmp_path / "short.pt"
    short.write_bytes(ckpt.read_bytes()[:5000])
    assert trainer.main(["--eval-only", str(short), "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "truncated or damaged" in err and "OSError" not in err
    assert trainer.main(["--eval-only", str(tmp_path / "m.onnx"), "--out-dir", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07onnx")
    assert trainer.main(["--eval-only", str(tmp_path / "m.onnx"), "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is an exported model (.onnx)" in err and "UnpicklingError" not in err
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    assert trainer.main(["--eval-only", str(other), "--out-dir", str(tmp_path / "o")]) == 2
    assert "not a LiteECG checkpoint" in capsys.readouterr().err
    for flag in (["--model", "resnet"], ["--classes", "aami5"]):
        assert trainer.main(["--eval-only", str(ckpt), "--out-dir", str(tmp_path / "o"), *flag]) == 2
        assert "checkpoint, but" in capsys.readouterr().err
    assert trainer.main(["--resume", str(ckpt), "--out-dir", str(tmp_path / "o")]) == 2
    assert "final checkpoint" in capsys.readouterr().err
    state = tmp_path / "run.last.pt"  # a training state given where a final checkpoint is needed
    torch.save({**torch.load(ckpt, weights_only=True), "kind": "training-state"}, state)
    assert trainer.main(["--eval-only", str(state), "--out-dir", str(tmp_path / "o")]) == 2
    assert "is a training state (.last.pt)" in capsys.readouterr().err
    removed = tmp_path / "probe.pt"  # a checkpoint that used a research probe since removed
    raw = torch.load(ckpt, weights_only=True)
    torch.save({**raw, "args": {**raw["args"], "label_smoothing": 0.1}}, removed)
    assert trainer.main(["--eval-only", str(removed), "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "label_smoothing=0.1, a research probe that was removed" in err and "lab-rounds-1-18" in err
    assert not (tmp_path / "o").exists()


def test_checkpoints_from_before_weighting_modes_map_their_flag():
    cfg, given = options.parse_args([])
    for old, new in ((True, "inverse"), (False, None)):
        saved = {**cfg.to_dict(), "class_weights": old}
        assert options.from_saved(cfg, given, saved, "x.pt").class_weights == new


def test_older_checkpoint_arguments_still_read():
    """An older checkpoint's args: a flag that left without changing any result is dropped
    (num_workers), --coord becomes a --model-set setting, and the probes at their 'off' value are
    accepted."""
    cfg, given = options.parse_args([])
    saved = {**cfg.to_dict(), "num_workers": 0, "coord": False, "model": "bircnn", "label_smoothing": 0.0,
             "adapt_norm": 0.0, "template_mode": "channel", "rr_hidden": 0, "cv_offsets": False}
    got = options.from_saved(cfg, given, saved, "x.pt")
    assert got.model == "bircnn" and got.model_set == (("coord", False),)


def test_focal_class_weights_and_rr_options_train(mitbih_dir, tmp_path):
    assert trainer.main(base_args(mitbih_dir, tmp_path, "--focal", "--class-weights", "--rr",
                                  "--classes", "aami5")) == 0
    (ckpt,), (rep,) = outputs(tmp_path)
    report = json.loads(rep.read_text())
    assert report["classes"] == ["N", "S", "V", "F", "Q"] and report["args"]["rr"] is True
    model, c = checkpoint.load_model(ckpt)
    assert c.rr_dim == 4 and model.rr_dim == 4


def test_focal_loss_matches_cross_entropy_at_gamma_zero():
    logits, y = torch.randn(16, 4), torch.randint(0, 4, (16,))
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    ce = torch.nn.functional.cross_entropy(logits, y, weight=w)
    assert torch.allclose(engine.Loss(True, 0.0, w)(logits, y), ce, atol=1e-6)
    # gamma > 0 down-weights easy beats: loss never above CE
    assert engine.Loss(True, 2.0, None)(logits, y) <= torch.nn.functional.cross_entropy(logits, y)


def test_class_weights_inverse_frequency():
    w = engine.class_weights(np.array([0, 0, 0, 1]), 3)
    # N / (C * n_c): 4 / (3*3), 4 / (3*1), absent class -> 0
    assert torch.allclose(w, torch.tensor([4 / 9, 4 / 3, 0.0]))


def test_class_weights_sqrt_and_cli_modes():
    w = engine.class_weights(np.array([0, 0, 0, 1]), 3, "sqrt")
    assert torch.allclose(w, torch.tensor([(4 / 9) ** 0.5, (4 / 3) ** 0.5, 0.0]))
    # the bare flag keeps its old meaning; a mode may follow it; absent means no weights
    assert options.parse_args(["--class-weights"])[0].class_weights == "inverse"
    assert options.parse_args(["--class-weights", "sqrt", "--rr"])[0].class_weights == "sqrt"
    assert options.parse_args([])[0].class_weights is None
    with pytest.raises(UsageError, match="invalid choice"):
        options.parse_args(["--class-weights", "square"])


def test_interpatient_preset_fills_the_settings_not_given(tmp_path):
    a = options.parse_args(["--split", "interpatient"])[0]
    assert (a.classes, a.rr, a.rr_features, a.template, a.segment_sec, a.patient_balance, a.class_weights,
            a.template_swap) == ("aami5", True, "sequence", True, 1.2, 0.5, None, 0.5)
    assert dict(a.applied)["template_swap"] == 0.5 and "classes=aami5" in options.describe_preset(a)
    # the preset's swap goes with its template: --no-template turns both off
    assert options.parse_args(["--split", "interpatient", "--no-template"])[0].template_swap == 0.0
    assert options.parse_args([])[0].template_swap == 0.0 and not options.parse_args([])[0].applied
    # a flag given wins, and the preset no longer claims it
    b = options.parse_args(["--split", "interpatient", "--classes", "seed4", "--rr", "local"])[0]
    assert (b.classes, b.rr_features) == ("seed4", "local") and "classes" not in dict(b.applied)
    # a --config file wins over the preset, a flag over the file
    (tmp_path / "c.toml").write_text("split = 'interpatient'\npatient_balance = 0\nepochs = 3\n")
    c, given = options.parse_args(["--config", str(tmp_path / "c.toml"), "--epochs", "4"])
    assert (c.split, c.patient_balance, c.template_swap, c.epochs) == ("interpatient", 0.0, 0.5, 4)
    assert {"patient_balance", "epochs", "split", "config"} <= given
    # a checkpoint from before a setting existed gets the setting's default, not the preset's (its
    # run did not use it), unless it is given now
    cfg, given = options.parse_args(["--split", "interpatient"])
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("template_swap", "patient_balance")}
    merged = options.from_saved(cfg, given, {**old, "template": False}, "old.pt")
    assert (merged.template_swap, merged.patient_balance, merged.template) == (0.0, 0.0, False)
    options.check_args(merged)  # a consistent run: no swap asked of a run without templates
    c, given = options.parse_args(["--config", str(tmp_path / "c.toml")])
    assert options.from_saved(c, given, {**old, "patient_balance": 0.3}, "old.pt").patient_balance == 0.0


@pytest.mark.parametrize("argv,coord", [
    (["--split", "interpatient", "--model", "bircnn"], False),        # the preset turns it off for bircnn
    (["--split", "interpatient", "--model", "ldcnn"], None),          # others: config.py's setting
    (["--split", "interpatient", "--model", "bircnn", "--model-set", "coord=True"], True),  # the command line wins
    (["--model", "bircnn"], None),                                    # stratified: no preset
])
def test_interpatient_preset_sets_coordconv_per_model(argv, coord):
    cfg = options.parse_args(argv)[0]
    assert dict(cfg.model_set).get("coord") is coord
    built = cfg.model_spec(cfg.preproc(), 5)["model_config"]["coord"]
    assert built is (MODEL_CONFIGS[cfg.model]["coord"] if coord is None else coord)


def test_a_report_reruns_as_a_config_file(one_run, tmp_path):
    """--config REPORT.json repeats the run the report describes: the same settings, the same test
    predictions."""
    out, _, report, _ = one_run
    (rep,) = out.glob("eval_report_*.json")
    cfg, given = options.parse_args(["--config", str(rep), "--out-dir", str(tmp_path)])
    assert {k: v for k, v in cfg.to_dict().items() if k not in ("out_dir", "config", "device")} == \
        {k: v for k, v in report["args"].items() if k not in ("out_dir", "config", "device")}
    assert trainer.main(["--config", str(rep), "--out-dir", str(tmp_path), "--device", "cpu"]) == 0
    (again,) = tmp_path.glob("eval_report_*.json")
    assert json.loads(again.read_text())["test"]["predictions_sha256"] == report["test"]["predictions_sha256"]


def test_patient_balance_weights_hand_computed():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    rec = np.array([100, 100, 101, 100, 101, 101, 101])
    # class 0: record 100 has 2 beats, 101 has 1; power 0.5 -> raw 2**-0.5, 2**-0.5, 1, rescaled to sum 3
    s0 = 3 / (2 * 2 ** -0.5 + 1)
    # class 1: record 100 has 1 beat, 101 has 3 -> raw 1, 3**-0.5 x 3, rescaled to sum 4
    s1 = 4 / (1 + 3 * 3 ** -0.5)
    expected = [2 ** -0.5 * s0, 2 ** -0.5 * s0, s0, s1, *(3 ** -0.5 * s1,) * 3]
    assert np.allclose(engine.patient_balance_weights(y, rec, 0.5), expected)
    # power 1: each record an equal share of each class it has (class 1: 2 and 3 x 2/3)
    assert np.allclose(engine.patient_balance_weights(y, rec, 1.0), [0.75, 0.75, 1.5, 2, 2 / 3, 2 / 3, 2 / 3])
    assert np.array_equal(engine.patient_balance_weights(y, rec, 0.0), np.ones(7, np.float32))


def test_beat_weighted_loss_is_the_weighted_mean():
    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(9, 3, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1])
    w, cw = torch.rand(9, generator=g) + 0.1, torch.tensor([0.5, 2.0, 1.0])
    per = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(engine.Loss(False, 2.0, None)(logits, y, w), (per * w).sum() / w.sum())
    both = cw[y] * w
    assert torch.allclose(engine.Loss(False, 2.0, cw)(logits, y, w), (per * both).sum() / both.sum())
    # weights of one: the plain loss
    assert torch.allclose(engine.Loss(False, 2.0, cw)(logits, y, torch.ones(9)),
                          torch.nn.functional.cross_entropy(logits, y, weight=cw))


def test_patient_balance_trains_on_the_weights_and_is_recorded(mitbih_dir, tmp_path):
    """patient_balance (a --config setting): recorded in the report, and it changes the first
    epoch's loss (the weights reach the loss)."""
    runs = {}
    (tmp_path / "balanced.toml").write_text("patient_balance = 1.0\n")
    for name, extra in (("plain", []), ("balanced", ["--config", str(tmp_path / "balanced.toml")])):
        assert trainer.main(base_args(mitbih_dir, tmp_path / name, *extra)) == 0
        _, (rep,) = outputs(tmp_path / name)
        runs[name] = json.loads(rep.read_text())
    assert runs["plain"]["args"]["patient_balance"] == 0.0 and runs["balanced"]["args"]["patient_balance"] == 1.0
    assert runs["plain"]["history"][0]["train_loss"] != runs["balanced"]["history"][0]["train_loss"]


def test_augment_is_seeded_bounded_and_keeps_shape():
    x = torch.randn(8, 1, 720)
    a1 = engine.augment(x, 360, torch.Generator().manual_seed(3))
    a2 = engine.augment(x, 360, torch.Generator().manual_seed(3))
    a3 = engine.augment(x, 360, torch.Generator().manual_seed(4))
    assert a1.shape == x.shape and torch.equal(a1, a2) and not torch.equal(a1, a3)
    # a perturbation, not a new signal: close to the input (jitter <= 9 samples of a smooth beat)
    t = torch.arange(720) / 360.0
    smooth = torch.sin(2 * torch.pi * 1.0 * t).expand(8, 1, 720)
    d = engine.augment(smooth, 360, torch.Generator().manual_seed(0)) - smooth
    assert d.abs().mean() < 0.5 and d.abs().mean() > 0.01


def test_augment_option_trains_and_is_recorded(mitbih_dir, tmp_path):
    assert trainer.main(base_args(mitbih_dir, tmp_path, "--augment")) == 0
    (_, rep) = outputs(tmp_path)
    assert json.loads(rep[0].read_text())["args"]["augment"] is True


def test_training_and_prediction_read_back_once_per_pass(monkeypatch):
    """No per-batch .item() / .cpu(): on a GPU each would stall the queue of kernels. One pass of
    several batches reads the loss sum once and copies predictions once (synthetic data)."""
    from models import create_model
    from utils import BeatData
    rng = np.random.default_rng(0)
    n = 300
    data = BeatData(x=rng.standard_normal((n, 720)).astype(np.float32), y=rng.integers(0, 4, n),
                    record=np.full(n, 100, np.int32), rpeak=np.arange(n), rr=np.ones((n, 4), np.float32),
                    symbol=np.full(n, "N"), class_names=["N", "SVEB", "VEB", "Other"], config=PreprocConfig())
    part = BeatTensors(data, np.arange(n))
    model = create_model("liteecgnet", num_classes=4)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    reads = {"item": 0, "cpu": 0}
    for name in reads:
        orig = getattr(torch.Tensor, name)
        def counted(self, *a, _orig=orig, _name=name, **k):
            # only the training code's own reads (AdamW reads its CPU step counters, which a GPU never waits for)
            reads[_name] += sys._getframe(1).f_globals.get("__name__") == "engine"
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    loss, (pred, y) = engine.train_one_epoch(model, part, opt, sched, engine.Loss(False, 2.0, None),
                                              64, False, torch.Generator().manual_seed(0), "t", quiet=True)
    assert reads == {"item": 1, "cpu": 2}  # 5 batches: loss sum once, predictions + labels once
    assert np.isfinite(loss) and len(pred) == len(y) == n
    reads.update(item=0, cpu=0)
    p, prob, vloss = engine.predict(model, part, 64, False, engine.Loss(False, 2.0, None))
    assert reads == {"item": 1, "cpu": 1} and prob.shape == (n, 4) and np.isfinite(vloss)


def test_full_disk_while_saving_is_one_line_and_keeps_the_last_good_state(mitbih_dir, tmp_path, capsys,
                                                                          monkeypatch):
    """A write refused by the system (here: a full disk on the 2nd epoch's .last.pt, as torch.save
    reports it: an OSError wrapped in a RuntimeError) ends the run with one line naming the file
    and the reason, exit 1; the epoch-1 state stays whole and --resume finishes the run."""
    import checkpoint as ckpt_mod
    real_save, calls = torch.save, []

    def full_disk(obj, f):
        calls.append(obj.get("kind"))
        if len(calls) == 2:
            f.write(b"half a checkpoint")
            try:
                raise OSError(28, "No space left on device")
            except OSError as e:
                raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 64") from e
        real_save(obj, f)
    monkeypatch.setattr(ckpt_mod.torch, "save", full_disk)
    assert trainer.main(base_args(mitbih_dir, tmp_path, epochs=2)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and ".last.pt" in err, err
    assert "Traceback" not in err
    (last,) = tmp_path.glob("*.last.pt")
    assert not list(tmp_path.glob("*.tmp")) and outputs(tmp_path) == ([], [])
    state = checkpoint.Checkpoint.load(last)
    assert state.kind == "training-state" and state.training["epoch"] == 1
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert trainer.main(["--resume", str(last)]) == 0
    ckpts, reports = outputs(tmp_path)
    assert len(ckpts) == 1 and len(reports) == 1 and not list(tmp_path.glob("*.last.pt"))


def test_unwritable_report_folder_is_one_line(tmp_path):
    """atomic_write turns a refused write into OutputError naming the file; nothing is left."""
    from cli import OutputError
    from utils import atomic_write
    with pytest.raises(OutputError, match=r"cannot write .*missing.*report\.json"):
        atomic_write(tmp_path / "missing" / "report.json", lambda f: f.write(b"{}"))
    target = tmp_path / "r.json"
    target.write_bytes(b"old")

    def fails(f):
        f.write(b"new, half")
        raise OSError(28, "No space left on device")
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write(target, fails)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_cv_chooses_inside_ds1_and_tests_ds2_once(mitbih_dir, tmp_path, monkeypatch):
    """--cv: every part anything is trained or chosen on (fold training parts, held-out folds,
    the final training part) holds DS1 records only; DS2 is evaluated exactly once, at the end."""
    import evaluate
    from dataset import DS1, DS2
    seen = {"trainer": [], "evaluate": []}

    def recording(where):
        class Recorded(BeatTensors):
            def __init__(self, data, idx, device="cpu"):
                seen[where].append({str(r) for r in np.unique(data.record[idx])})
                super().__init__(data, idx, device)
        return Recorded
    import crossval
    monkeypatch.setattr(crossval, "BeatTensors", recording("trainer"))
    monkeypatch.setattr(trainer, "BeatTensors", recording("trainer"))
    monkeypatch.setattr(evaluate, "BeatTensors", recording("evaluate"))
    args = ["--split", "interpatient", "--classes", "aami5", "--cv", "2", "--epochs", "2", "--class-limit", "100",
            "--rr", "--device", "cpu", "--root", str(mitbih_dir), "--no-download", "--out-dir", str(tmp_path),
            "--threads", "1"]
    assert trainer.main(args) == 0
    assert len(seen["trainer"]) == 2 * 2 + 1  # two folds (train + held out), then all of DS1
    assert all(part <= set(DS1) for part in seen["trainer"])
    assert set().union(*seen["trainer"][:4]) == set(DS1)  # the held-out folds cover DS1
    assert seen["evaluate"] == [set(DS2)]
    (rep,) = tmp_path.glob("eval_report_*.json")
    report = json.loads(rep.read_text())
    cv = report["cv"]
    assert sorted(r for f in cv["folds"] for r in f) == sorted(DS1) and cv["k"] == 2
    assert 1 <= cv["chosen_epochs"] <= 2 and len(cv["per_epoch"]) == 2
    # the chosen epoch's held-out predictions are stored, one per DS1 beat, and score as reported
    h = cv["held_out"]
    y, pred = (np.array(list(h[k]), int) for k in ("y", "pred"))
    assert [str(r) for r, _ in h["records"]] == sorted(DS1, key=int) and sum(n for _, n in h["records"]) == len(y)
    assert classification_metrics(y, pred, report["classes"])["macro_f1"] == pytest.approx(cv["best"]["macro_f1"])
    assert report["best_val"]["epoch"] == cv["chosen_epochs"] == len(report["history"])
    assert report["dataset"]["records"]["val"] == [] and report["dataset"]["records"]["test"] == sorted(DS2, key=int)


def test_cv_needs_the_interpatient_split(mitbih_dir, tmp_path, capsys):
    for bad in (["--cv", "3"], ["--split", "interpatient", "--cv", "1"], ["--cv", "3", *RECS, "--split", "interpatient"],
                ["--split", "interpatient", "--cv-only"]):
        assert trainer.main(["--root", str(mitbih_dir), "--out-dir", str(tmp_path), *bad]) == 2
        assert "--cv" in capsys.readouterr().err


def test_augment_keeps_the_template_channel_aligned_and_clean():
    x = torch.randn(4, 2, 720)
    a = engine.augment(x, 360, torch.Generator().manual_seed(0))
    one = engine.augment(x[:, :1], 360, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a[:, :1], one)  # the beat channel as for one channel
    ratio = a[:, 1] / x[:, 1]  # the template: one amplitude factor per beat, no shift, no noise
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-4)
    assert ((ratio[:, 0] >= 0.8 - 1e-6) & (ratio[:, 0] <= 1.2 + 1e-6)).all()


def test_swap_templates_keeps_each_beats_difference_from_its_template():
    """engine.swap_templates: with p = 1 every row gets another row's template (a permutation of
    the batch's templates) and keeps beat - template; with p = 0 nothing moves, bit for bit;
    seeded; only (B, 2, T) accepted."""
    x = torch.randn(32, 2, 100)
    y = engine.swap_templates(x, 1.0, torch.Generator().manual_seed(7))
    assert y.shape == x.shape
    assert torch.allclose(y[:, 0] - y[:, 1], x[:, 0] - x[:, 1], atol=1e-5)
    src = [[j for j in range(32) if torch.equal(y[i, 1], x[j, 1])] for i in range(32)]
    assert all(len(s) == 1 for s in src) and sorted(s[0] for s in src) == list(range(32))  # a permutation
    assert sum(s[0] != i for i, s in enumerate(src)) > 16  # most rows moved to another beat's template
    assert torch.equal(engine.swap_templates(x, 0.0, torch.Generator().manual_seed(7)), x)
    half = engine.swap_templates(x, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(half, engine.swap_templates(x, 0.5, torch.Generator().manual_seed(7)))
    kept = (half == x).flatten(1).all(1)  # rows not drawn: untouched; the drawn ones keep their difference
    assert 4 < int(kept.sum()) < 28
    assert torch.allclose(half[:, 0] - half[:, 1], x[:, 0] - x[:, 1], atol=1e-5)
    with pytest.raises(ValueError, match="beat and template"):
        engine.swap_templates(x[:, :1], 0.5, torch.Generator())


def test_model_set_reaches_the_model_and_the_checkpoint_rebuilds_it(mitbih_dir, tmp_path):
    """--model-set channels=48,72,96: the model trained is the wider one, the checkpoint's merged
    settings rebuild it without the flag, and the report records the flag."""
    assert trainer.main(base_args(mitbih_dir, tmp_path, "--model-set", "channels=48,72,96",
                                  "--model-set", "dropout=0.2")) == 0
    (ckpt,), (rep,) = outputs(tmp_path)
    model, ck = checkpoint.load_model(ckpt)
    assert ck.model_config["channels"] == (48, 72, 96) and ck.model_config["dropout"] == 0.2
    assert ck.model_config["strides"] == MODEL_CONFIGS["liteecgnet"]["strides"]
    wide = create_model("liteecgnet", num_classes=4, channels=(48, 72, 96))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in wide.parameters())
    assert json.loads(rep.read_text())["args"]["model_set"] == [["channels", [48, 72, 96]], ["dropout", 0.2]]


def test_swap_templates_moves_both_leads_onto_the_same_other_row():
    """Two leads, channels (beat 1, template 1, beat 2, template 2): a moved row takes both
    templates from one other row and keeps each lead's beat - template; lead 1 alone moves
    exactly as a one-lead batch with the same draws."""
    x = torch.randn(32, 4, 50)
    y = engine.swap_templates(x, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(y[:, :2], engine.swap_templates(x[:, :2].contiguous(), 0.5, torch.Generator().manual_seed(3)))
    for lead in (0, 2):
        assert torch.allclose(y[:, lead] - y[:, lead + 1], x[:, lead] - x[:, lead + 1], atol=1e-5)
    src = lambda c: [next(j for j in range(32) if torch.equal(y[i, c], x[j, c])) for i in range(32)]  # noqa: E731
    assert src(1) == src(3) and sum(j != i for i, j in enumerate(src(1))) > 4
    with pytest.raises(ValueError, match="beat and template"):
        engine.swap_templates(x[:, :3], 0.5, torch.Generator())


def test_template_swap_trains_and_is_recorded(mitbih_dir, tmp_path):
    """template_swap (a --config setting) reaches the training batches (the first epoch's loss
    moves) and is recorded in the report; the model and checkpoint are a plain --template run's."""
    runs = {}
    (tmp_path / "swap.toml").write_text("template_swap = 0.5\n")
    for name, extra in (("plain", []), ("swapped", ["--config", str(tmp_path / "swap.toml")])):
        assert trainer.main(base_args(mitbih_dir, tmp_path / name, "--template", *extra)) == 0
        (ckpt,), (rep,) = outputs(tmp_path / name)
        runs[name] = json.loads(rep.read_text())
        assert checkpoint.load_model(ckpt)[1].in_channels == 2
    assert runs["plain"]["args"]["template_swap"] == 0.0 and runs["swapped"]["args"]["template_swap"] == 0.5
    assert runs["plain"]["history"][0]["train_loss"] != runs["swapped"]["history"][0]["train_loss"]


def test_weight_average_is_the_hand_computed_moving_average():
    """engine.WeightAverage: every float tensor (weights, BN statistics, RR standardisation) follows
    a <- d a + (1 - d) w with d = min(exp(-1/tau), (1 + t) / (10 + t)) after step t, integer
    buffers are copied, and the averaged model's folded inference kernels follow its weights."""
    from config import MODEL_CONFIGS
    from models import create_model
    torch.manual_seed(0)
    make = lambda: create_model("liteecgnet", num_classes=5, rr_dim=3, fs=360, in_channels=2,  # noqa: E731
                                rr_norm=True, **MODEL_CONFIGS["liteecgnet"])
    model, tau = make(), 4.0
    avg = engine.WeightAverage(model, tau)
    x, rr = torch.randn(6, 2, 128), torch.randn(6, 3)
    with torch.inference_mode():
        before = avg.model(x, rr)  # builds (and caches) the folded kernels of the initial weights
    ref = {k: v.double().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for t in range(1, 6):
        model.train()
        opt.zero_grad()
        model(x, rr).logsumexp(1).mean().backward()
        opt.step()
        avg.update()
        d = min(np.exp(-1 / tau), (1 + t) / (10 + t))
        ref = {k: d * ref[k] + (1 - d) * v.double() if v.is_floating_point() else v.clone()
               for k, v in model.state_dict().items()}
    got = avg.model.state_dict()
    for k, v in ref.items():
        assert torch.allclose(got[k].double(), v.double(), atol=1e-6), k
    assert got["blocks.0.conv.bn.num_batches_tracked"] == 5
    fresh = make().eval()
    fresh.load_state_dict(got)
    with torch.inference_mode():
        after, expect = avg.model(x, rr), fresh(x, rr)
    assert not torch.allclose(after, before)
    assert torch.allclose(after, expect, atol=1e-5)
    state = avg.state_dict()
    again = engine.WeightAverage(make(), tau)
    again.load_state_dict(state)
    assert again.steps == 5 and all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(), got.values()))


# --- --ensemble K ---------------------------------------------------------------------------------

def test_ensemble_member_one_is_the_single_run_and_the_checkpoint_holds_both(one_run, mitbih_dir, tmp_path):
    """Member 1 trains from the run's seed exactly as a single model does (same weights); the
    checkpoint rebuilds the ensemble, whose predictions are the argmax of the mean probability,
    and the report counts both members' parameters and MACs."""
    from checkpoint import load_model
    from models import Ensemble
    _, single_ckpt, single, _ = one_run
    assert trainer.main(base_args(mitbih_dir, tmp_path, "--ensemble", "2")) == 0
    (ckpt,), (rep,) = outputs(tmp_path)
    ens, c = load_model(ckpt)
    assert isinstance(ens, Ensemble) and c.members == 2
    report = json.loads(rep.read_text())
    assert report["args"]["ensemble"] == 2 and [h["member"] for h in report["history"]] == [0, 1]
    assert report["model_metrics"]["params_total"] == 2 * single["model_metrics"]["params_total"]
    assert report["model_metrics"]["macs"] == 2 * single["model_metrics"]["macs"]
    assert [m["epoch"] for m in report["best_val"]["members"]] == [1, 1]
    if single["environment"]["device"] == "cpu":  # a GPU's sums round differently (see test_same_seed_same_metrics)
        one, _ = load_model(single_ckpt)
        a, b = one.state_dict(), ens.members[0].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert report["history"][0]["train_loss"] == single["history"][0]["train_loss"]
        assert report["history"][1]["train_loss"] != single["history"][0]["train_loss"]  # member 2: its own seed
    data = load_beats(str(mitbih_dir), c.preproc, records=["100"], cache_dir=tmp_path, download=False,
                      log=lambda msg: None)
    part = BeatTensors(data, np.arange(len(data)))
    pred, prob, _ = engine.predict(ens, part, 256, False)
    mean = np.mean([engine.predict(m, part, 256, False)[1] for m in ens.members], 0)
    assert np.allclose(prob, mean, atol=1e-5) and (pred == mean.argmax(1)).all()


def test_ensemble_cv_reports_each_member_alone(mitbih_dir, tmp_path):
    """--cv with --ensemble 2: member 1's pooled per-epoch scores are those of the single run of
    the same seed; the ensemble's pooled predictions are those stored and scored."""
    args = ["--split", "interpatient", "--classes", "aami5", "--cv", "2", "--cv-only", "--epochs", "2",
            "--class-limit", "60", "--device", "cpu", "--root", str(mitbih_dir), "--no-download", "--threads", "1"]
    for name, extra in (("one", []), ("two", ["--ensemble", "2"])):
        assert trainer.main([*args, "--out-dir", str(tmp_path / name), *extra]) == 0
    one, two = (json.loads(next((tmp_path / n).glob("cv_report_*.json")).read_text())["cv"] for n in ("one", "two"))
    assert "members" not in one and [m["seed"] for m in two["members"]] == [1337, 1337 + engine.MEMBER_SEED_STEP]
    assert two["members"][0]["per_epoch_macro_f1"] == [r["macro_f1"] for r in one["per_epoch"]]
    y, pred = (np.array(list(two["held_out"][k]), int) for k in ("y", "pred"))
    assert classification_metrics(y, pred, ["N", "S", "V", "F", "Q"])["macro_f1"] == pytest.approx(two["best"]["macro_f1"])


def test_ensemble_resumed_in_its_second_member_ends_like_uninterrupted(mitbih_dir, tmp_path):
    """Ctrl-C during member 2: nothing is evaluated (the ensemble is incomplete), the training
    state carries member 1's weights, and --resume ends exactly where an uninterrupted run does."""
    full, part = tmp_path / "full", tmp_path / "part"
    args = lambda out: [*base_args(mitbih_dir, out, epochs=3), "--class-limit", "1500", "--ensemble", "2"]  # noqa: E731
    assert trainer.main(args(full)) == 0
    p = subprocess.Popen([sys.executable, str(ROOT / "trainer.py"), *args(part)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    second = False
    for line in p.stdout:
        second = second or line.startswith("ensemble member 2/2")
        if second and line.startswith("epoch   1/"):
            p.send_signal(signal.SIGINT)
            break
    rest, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert "interrupted during ensemble member 2/2" in rest and "epoch   3/" not in rest
    (last,) = part.glob("*.last.pt")
    assert outputs(part) == ([], [])
    assert len(checkpoint.Checkpoint.load(last).training["members"]) == 1
    assert trainer.main(["--resume", str(last)]) == 0
    _, (a,) = outputs(full)
    _, (b,) = outputs(part)
    a, b = json.loads(a.read_text()), json.loads(b.read_text())
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["test"]["predictions_sha256"] == b["test"]["predictions_sha256"]


def test_runs_started_in_the_same_second_keep_their_own_files(mitbih_dir, tmp_path, monkeypatch):
    """Two runs into one folder within one second (the clock is frozen here) write two checkpoints
    and two reports; another process in that second is told apart by its process id."""
    import time
    monkeypatch.setattr(time, "strftime", lambda *a, **k: "20261203_000000")
    for seed in ("1", "2"):
        assert trainer.main(base_args(mitbih_dir, tmp_path, "--seed", seed)) == 0
    ckpts, reports = outputs(tmp_path)
    assert len(ckpts) == 2 and len(reports) == 2
    assert sorted(json.loads(r.read_text())["args"]["seed"] for r in reports) == [1, 2]
    assert {checkpoint.Checkpoint.load(c).args["seed"] for c in ckpts} == {1, 2}
    monkeypatch.setattr(report_mod.os, "getpid", lambda: 999999)
    assert report_mod.run_stamp(tmp_path) == "20261203_000000_999999"
