"""export.py: a checkpoint becomes a TorchScript file that runs without this repository."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import export
from models import create_model
from checkpoint import CKPT_FORMAT, CKPT_VERSION
from utils import PreprocConfig

# torch 2.13 marks torch.jit.save/load deprecated; the exported file is still TorchScript (see export.py)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")


def make_checkpoint(path: Path, model_name: str = "liteecgnet", rr_dim: int = 0, kind: str = "final",
                    cfg: PreprocConfig = PreprocConfig()) -> torch.nn.Module:
    """A final checkpoint as trainer.py writes it, of an untrained model (no data needed)."""
    torch.manual_seed(0)
    rr_norm = cfg.rr_features == "patient" and rr_dim > 0
    model = create_model(model_name, rr_dim=rr_dim, in_channels=cfg.channels, rr_norm=rr_norm)
    torch.save({"format": CKPT_FORMAT, "version": CKPT_VERSION, "kind": kind, "model_name": model_name,
                "model_config": {}, "num_classes": 4, "rr_dim": rr_dim, "in_channels": cfg.channels,
                "rr_norm": rr_norm,
                "class_names": ["N", "SVEB", "VEB", "Other"], "preprocessing": cfg.to_dict(),
                "state_dict": model.state_dict()}, path)
    return model.eval()


@pytest.mark.parametrize("model_name,rr_dim", [("liteecgnet", 0), ("liteecgnet", 4), ("bircnn", 0)])
def test_exported_file_runs_without_the_repository(tmp_path, model_name, rr_dim):
    cfg = PreprocConfig(segment_sec=1.5)  # 540 samples: the window comes from the checkpoint
    model = make_checkpoint(tmp_path / "m.pt", model_name, rr_dim, cfg=cfg)
    lines = []
    out = export.export(str(tmp_path / "m.pt"), runs=0, log=lines.append)
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
    assert export.main([str(tmp_path / "m.pt"), "--out", str(tmp_path / "lite.ts"), "--runs", "5"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "lite.ts").is_file()
    assert "latency b=1, 1 thread, median of 5: eager" in out and "exported" in out


@pytest.mark.parametrize("case", ["missing", "not-a-checkpoint", "training-state", "bad-runs", "no-folder", "folder"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    ckpt = tmp_path / "m.pt"
    make_checkpoint(ckpt, kind="training-state" if case == "training-state" else "final")
    extra = {"bad-runs": ["--runs", "1"], "no-folder": ["--out", str(tmp_path / "nope" / "m.ts")],
             "folder": ["--out", str(tmp_path)]}.get(case, [])
    if case == "missing":
        ckpt = tmp_path / "absent.pt"
    elif case == "not-a-checkpoint":
        ckpt = tmp_path / "junk.pt"
        ckpt.write_text("not a checkpoint")
    assert export.main([str(ckpt), "--runs", "0", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("export.py: error: ") and "\n" not in err
    assert not list(tmp_path.glob("*.ts")) and not list(tmp_path.rglob("*.tmp"))


def test_template_model_exports_with_its_input_contract(tmp_path):
    """Two input channels and patient-relative RR standardised inside the model: the file takes
    (B, 2, T) and (B, 8), and liteecg.json says what the channels and features are."""
    cfg = PreprocConfig(template=True, rr_features="patient")
    model = make_checkpoint(tmp_path / "m.pt", "liteecgnet", 8, cfg=cfg)
    lines = []
    out = export.export(str(tmp_path / "m.pt"), runs=5, log=lines.append)  # timing feeds (B, 2, T) too
    assert "latency b=1" in lines[-1]
    meta = {"liteecg.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=meta)
    meta = json.loads(meta["liteecg.json"])
    assert meta["input"]["shape"] == [None, 2, 720] and "template" in meta["input"]["normalize"]
    assert meta["rr"]["set"] == "patient" and len(meta["rr"]["features"]) == 8
    assert meta["rr"]["standardised_inside_the_model"] is True
    x, rr = torch.randn(2, 2, 720), torch.rand(2, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x, rr), model(x, rr), atol=1e-5, rtol=1e-4)
