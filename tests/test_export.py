"""export.py: a checkpoint becomes an ONNX (or TorchScript) file that runs without this repository.
(Exports of a trained checkpoint, --int8 and predict.py on the file: tests/test_predict.py.)"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import export
from models import MODEL_NAMES, create_model
from checkpoint import CKPT_FORMAT, CKPT_VERSION
from utils import PreprocConfig

# torch 2.13 marks torch.jit.save/load deprecated; the exported file is still TorchScript (see export.py)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")


def make_checkpoint(path: Path, model_name: str = "liteecgnet", rr_dim: int = 0, kind: str = "final",
                    cfg: PreprocConfig = PreprocConfig(), members: int = 1, **extra) -> torch.nn.Module:
    """A final checkpoint as trainer.py writes it, of an untrained model (no data needed); `extra`
    keys go into the file as they are (e.g. an old checkpoint's fields)."""
    torch.manual_seed(0)
    rr_norm = cfg.rr_features != "local" and rr_dim > 0
    model = create_model(model_name, rr_dim=rr_dim, in_channels=cfg.channels, rr_norm=rr_norm, members=members)
    torch.save({"format": CKPT_FORMAT, "version": CKPT_VERSION, "kind": kind, "model_name": model_name,
                "model_config": {}, "num_classes": 4, "rr_dim": rr_dim, "in_channels": cfg.channels,
                "rr_norm": rr_norm, "members": members,
                "class_names": ["N", "SVEB", "VEB", "Other"], "preprocessing": cfg.to_dict(),
                "state_dict": model.state_dict(), **extra}, path)
    return model.eval()


def calibration_beats(cfg: PreprocConfig, n: int = 12, rr_dim: int = 0) -> dict:
    """A checkpoint's calibration sample (trainer.py keeps a few training beats of every class)."""
    g = torch.Generator().manual_seed(2)
    return {"x": torch.randn(n, cfg.channels, cfg.window, generator=g).half(), "rr": torch.rand(n, rr_dim, generator=g),
            "y": torch.arange(n) % 4, "records": ["100"]}


@pytest.mark.parametrize("model_name,rr_dim", [("liteecgnet", 0), ("liteecgnet", 4), ("bircnn", 0)])
def test_exported_file_runs_without_the_repository(tmp_path, model_name, rr_dim):
    cfg = PreprocConfig(segment_sec=1.5)  # 540 samples: the window comes from the checkpoint
    model = make_checkpoint(tmp_path / "m.pt", model_name, rr_dim, cfg=cfg)
    lines = []
    out = export.export(str(tmp_path / "m.pt"), runs=0, fmt="torchscript", log=lines.append)
    assert out == tmp_path / "m.ts" and "checked against the checkpoint" in lines[0]
    assert not list(tmp_path.glob("*.tmp"))
    g = torch.Generator().manual_seed(3)
    x, rr = torch.randn(3, 1, 540, generator=g), torch.rand(3, 4, generator=g) + 0.5
    torch.save({"x": x, "rr": rr}, tmp_path / "in.pt")
    # a fresh interpreter in another folder: only torch, no LiteECG module on the path
    code = ("import json, sys, torch; meta = {'liteecg.json': ''}; "
            "m = torch.jit.load('m.ts', _extra_files=meta); d = torch.load('in.pt'); "
            f"y = m(d['x'], d['rr']) if {rr_dim} else m(d['x']); torch.save(y, 'out.pt'); "
            "print(json.dumps(json.loads(meta['liteecg.json'])))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    with torch.no_grad():
        want = model(x, rr) if rr_dim else model(x)
    assert torch.allclose(torch.load(tmp_path / "out.pt"), want, atol=1e-5, rtol=1e-4)
    assert meta["model"] == model_name and meta["class_names"] == ["N", "SVEB", "VEB", "Other"]
    assert meta["input"]["window_samples"] == 540 and meta["input"]["r_peak_at"] == 270
    assert meta["input"]["fs"] == 360 and meta["preprocessing"] == cfg.to_dict()
    assert (meta["rr"]["shape"] == [None, 4]) if rr_dim else meta["rr"] is None


def test_cli_writes_the_file_and_times_both_forms(tmp_path, capsys):
    make_checkpoint(tmp_path / "m.pt")
    assert export.main([str(tmp_path / "m.pt"), "--format", "torchscript", "--out", str(tmp_path / "lite.ts"),
                        "--runs", "5"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "lite.ts").is_file()
    assert "latency b=1, 1 thread, median of 5: eager" in out and "exported" in out


@pytest.mark.parametrize("case", ["missing", "not-a-checkpoint", "truncated", "onnx-given", "training-state",
                                  "bad-runs", "no-folder", "folder", "int8-torchscript", "int8-no-calibration",
                                  "check-no-data", "over-checkpoint", "removed-probe", "removed-preprocessing"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    ckpt = tmp_path / "m.pt"
    extra = {"removed-probe": {"rr_hidden": 16}}.get(case, {})
    make_checkpoint(ckpt, kind="training-state" if case == "training-state" else "final",
                    cfg=PreprocConfig(template=True) if case == "removed-preprocessing" else PreprocConfig(), **extra)
    if case == "removed-preprocessing":  # an older checkpoint's template of the 'sinus' beats only
        d = torch.load(ckpt, weights_only=True)
        d["preprocessing"]["template_from"] = "sinus"
        torch.save(d, ckpt)
    args = {"bad-runs": ["--runs", "1"], "no-folder": ["--out", str(tmp_path / "nope" / "m.ts")],
            "folder": ["--out", str(tmp_path)], "int8-torchscript": ["--int8", "--format", "torchscript"],
            "int8-no-calibration": ["--int8"], "check-no-data": ["--check"],
            "over-checkpoint": ["--out", str(ckpt)]}.get(case, [])
    says = {"truncated": "truncated or damaged", "onnx-given": "is an exported model",
            "int8-no-calibration": "keeps none", "removed-probe": "rr_hidden=16, a research probe that was removed",
            "removed-preprocessing": "template_from=sinus, a research probe", "check-no-data": "--check needs"}
    if case == "missing":
        ckpt = tmp_path / "absent.pt"
    elif case == "not-a-checkpoint":
        ckpt = tmp_path / "junk.pt"
        ckpt.write_text("not a checkpoint")
    elif case == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:2000])
    elif case == "onnx-given":
        ckpt = tmp_path / "m.onnx"
        ckpt.write_bytes(b"\x08\x07")
    assert export.main([str(ckpt), "--runs", "0", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("export.py: error: ") and "\n" not in err
    assert says.get(case, "") in err
    if case.startswith("removed"):
        assert "lab-rounds-1-18" in err
    assert not list(tmp_path.glob("*.ts")) and not list(tmp_path.glob("m.*.onnx")) and not list(tmp_path.rglob("*.tmp"))


def test_metadata_describes_the_template_input(tmp_path):
    from checkpoint import Checkpoint
    make_checkpoint(tmp_path / "m.pt", "liteecgnet", 0, cfg=PreprocConfig(template=True))
    meta = export.export_metadata(Checkpoint.load(tmp_path / "m.pt"), str(tmp_path / "m.pt"))
    assert "median of the record's previous 256 beat windows" in meta["input"]["normalize"]
    assert "template_from" not in meta["preprocessing"]


def test_template_model_exports_with_its_input_contract(tmp_path):
    """Two input channels and patient-relative RR standardised inside the model: the file takes
    (B, 2, T) and (B, 16), and liteecg.json says what the channels and features are."""
    cfg = PreprocConfig(template=True, rr_features="sequence")
    model = make_checkpoint(tmp_path / "m.pt", "liteecgnet", 16, cfg=cfg)
    lines = []
    out = export.export(str(tmp_path / "m.pt"), runs=5, fmt="torchscript", log=lines.append)  # timing feeds (B, 2, T)
    assert "latency b=1" in lines[-1]
    meta = {"liteecg.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=meta)
    meta = json.loads(meta["liteecg.json"])
    assert meta["input"]["shape"] == [None, 2, 720] and "template" in meta["input"]["normalize"]
    assert meta["rr"]["set"] == "sequence" and len(meta["rr"]["features"]) == 16
    assert meta["rr"]["standardised_inside_the_model"] is True
    x, rr = torch.randn(2, 2, 720), torch.rand(2, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x, rr), model(x, rr), atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_every_model_exports_to_onnx_with_a_dynamic_batch(tmp_path, model_name):
    """All seven: the default export is ONNX; onnxruntime gives the eager logits at batch 1 and 5.
    Without run arguments or data the check runs on random windows, and says so."""
    from deploy import OnnxModel
    cfg = PreprocConfig(segment_sec=1.2, template=True, rr_features="sequence")
    model = make_checkpoint(tmp_path / "m.pt", model_name, 16, cfg=cfg)
    lines = []
    out = export.export(str(tmp_path / "m.pt"), runs=0, log=lines.append)
    assert out == tmp_path / "m.onnx" and "test-part check is skipped" in lines[0] and "random windows" in lines[1]
    m = OnnxModel(out)
    assert (m.name, m.rr_dim, m.preproc) == (model_name, 16, cfg)
    g = torch.Generator().manual_seed(5)
    for b in (1, 5):
        x, rr = torch.randn(b, 2, 432, generator=g), torch.rand(b, 16, generator=g)
        with torch.no_grad():
            want = model(x, rr).numpy()
        got = m.logits(x.numpy(), rr.numpy())
        assert got.shape == (b, 4)
        assert abs(got - want).max() <= export.ATOL + export.RTOL * abs(want).max()
    record = json.loads((tmp_path / "m.export.json").read_text())
    assert "random windows" in record["float"]["check"]["inputs"] and "test" not in record


def test_ensemble_exports_as_one_graph_of_averaged_probabilities(tmp_path):
    """--ensemble 2: one ONNX file whose softmax is the members' mean probability, as in torch."""
    from deploy import OnnxModel, softmax
    cfg = PreprocConfig(segment_sec=1.2, template=True, rr_features="sequence")
    model = make_checkpoint(tmp_path / "m.pt", "liteecgnet", 16, cfg=cfg, members=2)
    out = export.export(str(tmp_path / "m.pt"), runs=0, log=lambda msg: None)
    m = OnnxModel(out)
    assert m.meta["members"] == 2
    g = torch.Generator().manual_seed(7)
    x, rr = torch.randn(6, 2, 432, generator=g), torch.rand(6, 16, generator=g)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(k(x, rr), 1) for k in model.members]).mean(0).numpy()
    assert np.allclose(softmax(m.logits(x.numpy(), rr.numpy())), mean, atol=1e-5)


def test_onnx_file_runs_with_onnxruntime_alone(tmp_path):
    """A fresh interpreter in another folder with torch made unimportable: onnxruntime reads the
    file, its liteecg.json metadata says what the inputs are, and the logits are the eager model's."""
    cfg = PreprocConfig(segment_sec=1.5)
    model = make_checkpoint(tmp_path / "m.pt", "liteecgnet", 4, cfg=cfg)
    export.export(str(tmp_path / "m.pt"), runs=0, log=lambda m: None)
    g = torch.Generator().manual_seed(3)
    x, rr = torch.randn(3, 1, 540, generator=g), torch.rand(3, 4, generator=g) + 0.5
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "rr.npy", rr.numpy())
    code = ("import sys; sys.modules['torch'] = None; import json, numpy as np, onnxruntime as ort; "
            "s = ort.InferenceSession('m.onnx'); "
            "meta = json.loads(s.get_modelmeta().custom_metadata_map['liteecg.json']); "
            "np.save('out.npy', s.run(['logits'], {'x': np.load('x.npy'), 'rr': np.load('rr.npy')})[0]); "
            "print(json.dumps(meta))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    assert meta["format"] == "liteecg-onnx" and meta["quantization"] is None
    assert meta["input"]["shape"] == [None, 1, 540] and meta["rr"]["shape"] == [None, 4]
    assert meta["preprocessing"] == cfg.to_dict()
    with torch.no_grad():
        want = model(x, rr).numpy()
    assert np.allclose(np.load(tmp_path / "out.npy"), want, atol=1e-4, rtol=1e-4)


def test_an_export_that_differs_from_the_checkpoint_is_not_written(tmp_path, monkeypatch, capsys):
    make_checkpoint(tmp_path / "m.pt")
    real = export.onnx_bytes

    def off(model, *a):  # the graph of a perturbed copy: its logits differ from the checkpoint's
        other = copy.deepcopy(model)
        torch.manual_seed(99)
        for p in other.parameters():
            p.data.add_(0.1 * torch.randn_like(p))
        return real(other, *a)
    monkeypatch.setattr(export, "onnx_bytes", off)
    assert export.main([str(tmp_path / "m.pt"), "--runs", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("export.py: error: the ONNX export") and "not written" in err and "\n" not in err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("int8,out,want", [(False, None, "m.onnx"), (True, None, "m.int8.onnx"),
                                           (True, "q.int8.onnx", "q.int8.onnx"), (False, "f.onnx", "f.onnx")])
def test_the_file_asked_for_is_the_one_written(tmp_path, int8, out, want):
    """--out names the file asked for: `--int8 --out q.int8.onnx` writes the int8 model there and
    nothing else beside it (the float graph is built, checked and compared, not written). The
    int8 calibration uses the beats the checkpoint keeps: no data folder is needed."""
    make_checkpoint(tmp_path / "m.pt", calibration=calibration_beats(PreprocConfig()))
    assert export.export(str(tmp_path / "m.pt"), out=str(tmp_path / out) if out else None, runs=0, int8=int8,
                         log=lambda m: None) == tmp_path / want
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == [want]
