"""torchrun / DistributedDataParallel training (distributed.py) on the CPU with gloo: the
sharding and loss arithmetic exactly, a 2-process run against a 1-process run, its checkpoint,
a process killed mid-run, --resume, and the refusals.

Run as a script under torchrun (`_worker`), this file is also the 2-process half of
test_ddp_step_equals_one_process_step."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # also when torchrun runs this file as the worker

import checkpoint  # noqa: E402
import engine  # noqa: E402
import report as report_mod  # noqa: E402
import trainer  # noqa: E402
from dataset import BeatTensors  # noqa: E402
from distributed import World, exit_process  # noqa: E402

RECS = ["--train-recs", "101", "106", "208", "--val-recs", "119", "--test-recs", "100", "105"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


# --- the arithmetic, in one process ------------------------------------------------------------

def test_shards_cover_a_batch_evenly_rank_0_never_empty():
    for n in (1, 2, 5, 8, 9, 256):
        for size in (2, 3, 4):
            parts = [World(r, r, size).shard(n) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n and parts[0][1] > 0
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # contiguous, no overlap
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("focal", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("beat_weights", [False, True], ids=["", "patient-balance"])
def test_loss_shares_add_up_to_the_batch_mean(focal, weighted, beat_weights):
    """Each process's sum / the whole batch's normaliser: the shares add up to the one-process
    mean, uneven shards, class weights and beat weights included (the shards' own weighted means do not)."""
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(11, 4, generator=g), torch.tensor([0, 0, 0, 0, 1, 2, 2, 3, 0, 1, 0])
    w = torch.rand(11, generator=g) + 0.1 if beat_weights else None
    cut = lambda lo, hi: None if w is None else w[lo:hi]  # noqa: E731
    loss = engine.Loss(focal, 2.0, torch.tensor([0.5, 3.0, 1.5, 8.0]) if weighted else None)
    shares = [loss.sum(logits[lo:hi], y[lo:hi], cut(lo, hi)) / loss.normaliser(y, w)
              for lo, hi in ((0, 4), (4, 8), (8, 11))]
    assert torch.allclose(sum(shares), loss(logits, y, w), rtol=1e-6)
    if weighted:  # why not average the shards' means: weighted, they differ from the batch mean
        means = [loss(logits[lo:hi], y[lo:hi]) for lo, hi in ((0, 4), (4, 8), (8, 11))]
        assert not torch.allclose(sum(means) / 3, loss(logits, y), rtol=1e-3)


def test_augmenting_a_shard_perturbs_its_rows_as_one_process_would():
    x = torch.randn(9, 2, 300)
    whole = engine.augment(x, 360, torch.Generator().manual_seed(5))
    for lo, hi in ((0, 5), (5, 9), (0, 1)):
        part = engine.augment(x[lo:hi], 360, torch.Generator().manual_seed(5), rows=(lo, hi, 9))
        assert torch.equal(part, whole[lo:hi])


# --- the refusals (torchrun's environment, no process group needed) ------------------------------

@pytest.mark.parametrize("extra,match", [
    (["--cv", "2", "--split", "interpatient"], "--cv trains its folds in one process"),
    (["--batch-size", "1"], "--batch-size 1 is the global batch, split over 2 processes"),
    (["--eval-only", "x.pt"], "--eval-only evaluates in one process"),
])
def test_distributed_refusals_are_one_line_from_the_first_process(mitbih_dir, tmp_path, capsys, monkeypatch,
                                                                   extra, match):
    args = ["--root", str(mitbih_dir), "--no-download", "--out-dir", str(tmp_path / "o"), "--device", "cpu", *extra]
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, lines in (("1", 0), ("0", 1)):  # the second process says nothing: the first says it
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        assert trainer.main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == lines and all(e.startswith(f"trainer.py [rank {rank}/2]: error: ") and match in e
                                         for e in err), err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# --- real processes ----------------------------------------------------------------------------

def _worker() -> int:
    """Under torchrun: one epoch of engine.train_one_epoch on a 2-process DDP model against the
    same epoch in one process, with SGD (which, unlike AdamW, passes a gradient's scale on to
    the weights). No BatchNorm, no dropout: the one-process result is then the exact target."""
    torch.set_num_threads(1)
    world = World.from_env()
    world.start(torch.device("cpu"))

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv1d(2, 6, 5), torch.nn.Linear(6 + 3, 4)

        def forward(self, x, rr=None):
            return self.fc(torch.cat([torch.relu(self.conv(x)).mean(2), rr], 1))

    g = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 9 + [2] * 6 + [3] * 2)  # 37 beats: batches of 9, 9, 9, 9, 1
    part = BeatTensors.from_arrays(g.standard_normal((37, 64)).astype(np.float32),
                                   g.standard_normal((37, 64)).astype(np.float32),
                                   g.standard_normal((37, 3)).astype(np.float32), y)
    with world:
        for focal, augment, swap in ((False, True, 0.0), (True, False, 0.0), (False, True, 0.5)):
            loss = engine.Loss(focal, 2.0, engine.class_weights(y, 4, "inverse"))
            out = []
            for w in (None, world):  # one process (no collectives), then both together
                torch.manual_seed(0)
                model = Tiny()
                net = w.wrap(model) if w else model
                opt = torch.optim.SGD(model.parameters(), lr=0.5)
                sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
                avg = engine.WeightAverage(model, 2.0)  # --ema-epochs: every process keeps the same average
                mean, (pred, lab) = engine.train_one_epoch(net, part, opt, sched, loss, 9, True,
                                                           torch.Generator().manual_seed(1), "t", True,
                                                           augment_fs=360 if augment else None, world=w,
                                                           average=avg, template_swap=swap)
                cm = np.zeros((4, 4), int)
                np.add.at(cm, (lab, pred), 1)
                out.append((mean, cm, torch.cat([p.detach().flatten() for m in (model, avg.model)
                                                 for p in m.parameters()])))
            (m1, cm1, p1), (m2, cm2, p2) = out
            diff = (p1 - p2).abs().max().item()
            if world.is_main:
                print(f"focal={focal} augment={augment} swap={swap}: max |weight difference| {diff:.2e}, "
                      f"loss {m1:.8f} / {m2:.8f}", flush=True)
            assert diff < 1e-6 and abs(m1 - m2) < 1e-6 * abs(m1) and (cm1 == cm2).all(), (diff, m1, m2)
    return 0


def test_ddp_step_equals_one_process_step():
    """Sharding, the loss shares, the weight-0 row of an empty shard (the last batch holds one
    beat), the shared augmentation and --template-swap draws and the gathered predictions: an
    epoch over 2 gloo processes moves the weights, and their moving average, as one process
    does, to float rounding."""
    r = subprocess.run([*TORCHRUN, str(Path(__file__))], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("max |weight difference|") == 3, r.stdout


def _args(mitbih_dir, out: Path, *extra) -> list[str]:
    # one training part of ~1,600 beats, batches of 128 (64 per process): 13 steps per epoch
    return ["--model", "liteecgnet", "--epochs", "3", "--batch-size", "128", "--device", "cpu", "--root",
            str(mitbih_dir), "--no-download", "--out-dir", str(out),
            "--class-limit", "600", "--threads", "1", *RECS, *extra]


def _outputs(out: Path):
    files = sorted(p.name for p in out.iterdir())
    final = [out / f for f in files if f.endswith(".pt") and not f.endswith(".last.pt")]
    return files, final, [out / f for f in files if f.startswith("eval_report_")]


@pytest.fixture(scope="module")
def runs(mitbih_dir, tmp_path_factory):
    """The same run in one process and in two (torchrun, gloo)."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    r1 = subprocess.run([sys.executable, "trainer.py", *_args(mitbih_dir, one)], capture_output=True, text=True,
                        cwd=ROOT, timeout=600)
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run([*TORCHRUN, "trainer.py", *_args(mitbih_dir, two)], capture_output=True, text=True,
                        cwd=ROOT, timeout=600)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    return one, two, r2


def test_two_processes_train_like_one(runs):
    """Same optimiser steps (the global batch), losses and test metrics within the tolerance that
    BatchNorm's per-process statistics and other dropout masks leave (all else is exact:
    test_ddp_step_equals_one_process_step). Measured on the 2-core machine it was written on,
    seed 1337: train losses 0.6-1.1 % apart, test accuracy 0.012, macro-F1 0.003 (seeds 1-3:
    up to 4.1 %, 0.024, 0.006)."""
    one, two, r = runs
    files, (ckpt,), (rep,) = _outputs(two)
    assert files == sorted([ckpt.name, rep.name]), files  # one checkpoint, one report, nothing else
    assert r.stdout.count("wrote ") == 2 and r.stdout.count("epoch   1/3") == 1  # rank 0 alone prints
    assert "2 processes (gloo, 1 machine(s)), global batch 128 = 64 beats per process" in r.stdout
    a, b = (json.loads(_outputs(d)[2][0].read_text()) for d in (one, two))
    report_mod.validate_report(b)
    env = b["environment"]
    assert (env["world_size"], env["backend"], len(env["devices"])) == (2, "gloo", 2)
    assert all(d.startswith("cpu@") for d in env["devices"])
    assert (a["environment"]["world_size"], a["environment"]["backend"]) == (1, None)
    assert [h["lr"] for h in a["history"]] == [h["lr"] for h in b["history"]]  # the same steps
    for ha, hb in zip(a["history"], b["history"]):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=0.05)
    assert len(b["history"]) == 3
    assert b["test"]["accuracy"] == pytest.approx(a["test"]["accuracy"], abs=0.04)
    assert b["test"]["macro_f1"] == pytest.approx(a["test"]["macro_f1"], abs=0.03)


def test_distributed_checkpoint_loads_in_one_process_and_evaluates_the_same(runs, tmp_path):
    _, two, _ = runs
    _, (ckpt,), (rep,) = _outputs(two)
    raw = torch.load(ckpt, weights_only=True)
    assert raw["state_dict"] and not any(k.startswith("module.") for k in raw["state_dict"])
    checkpoint.load_model(ckpt)  # rebuilds without DDP
    r = subprocess.run([sys.executable, "evaluate.py", str(ckpt), "--out-dir", str(tmp_path),
                        "--device", "cpu", "--threads", "1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    (again,) = tmp_path.glob("eval_report_*.json")
    a, b = json.loads(rep.read_text())["test"], json.loads(again.read_text())["test"]
    assert (b["predictions_sha256"], b["macro_f1"], b["accuracy"]) == (a["predictions_sha256"], a["macro_f1"],
                                                                       a["accuracy"])


def _child_with_rank(parent: int, rank: int, timeout: float = 60) -> int:
    """The pid of torchrun's worker with RANK=rank (Linux /proc)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                env = (d / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent and f"RANK={rank}".encode() in env:
                return int(d.name)
        time.sleep(0.1)
    raise AssertionError(f"no worker with RANK={rank}")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds torchrun's workers through /proc")
def test_a_killed_process_ends_the_run_in_one_line_and_resume_finishes_it(runs, mitbih_dir, tmp_path):
    """Rank 1 killed (SIGKILL) after epoch 1: the job exits non-zero, rank 0 says why in one line,
    the folder holds only the last complete epoch's .last.pt (no report, no checkpoint, no temp
    file), and --resume under torchrun ends exactly like the uninterrupted 2-process run."""
    _, two, _ = runs
    out = tmp_path / "killed"
    p = subprocess.Popen([*TORCHRUN, "trainer.py", *_args(mitbih_dir, out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        # Rank 0 prints epoch 1's line before the epoch's shared decision, which rank 1 waits for:
        # rank 1 cannot have finished the run when the line appears.
        for line in p.stdout:
            if line.startswith("epoch   1/3"):
                os.kill(_child_with_rank(p.pid, 1), signal.SIGKILL)
                break
        rest, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith("trainer.py [rank")]  # not torchrun's
    assert len(ours) == 1 and ours[0].startswith("trainer.py [rank 0/2]: error: "), err
    assert "lost contact with another process" in ours[0] or "SIGTERM" in ours[0], ours
    assert 'trainer.py", line' not in err  # no traceback of ours (torchrun prints its own summary)
    (last,) = out.glob("*.last.pt")
    assert sorted(q.name for q in out.iterdir()) == [last.name]
    assert f"continue with --resume {last}" in rest
    state = checkpoint.Checkpoint.load(last)
    assert state.kind == "training-state" and state.training["epoch"] >= 1
    r = subprocess.run([*TORCHRUN, "trainer.py", "--resume", str(last)], capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    files, (ckpt,), (rep,) = _outputs(out)
    assert files == sorted([ckpt.name, rep.name])
    a, b = (json.loads(_outputs(d)[2][0].read_text()) for d in (two, out))
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["test"]["predictions_sha256"] == b["test"]["predictions_sha256"]


if __name__ == "__main__":
    exit_process(_worker())


def test_an_ensemble_trains_under_torchrun(mitbih_dir, tmp_path):
    """--ensemble 2 in two processes: both members train (every process goes on to member 2; only
    rank 0 keeps the state) and rank 0 writes one checkpoint of both."""
    args = _args(mitbih_dir, tmp_path, "--ensemble", "2", "--epochs", "1")  # the last --epochs wins
    r = subprocess.run([*TORCHRUN, "trainer.py", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    files, (ckpt,), (rep,) = _outputs(tmp_path)
    assert files == sorted([ckpt.name, rep.name]), files
    assert r.stdout.count("ensemble member 2/2") == 1
    assert [h["member"] for h in json.loads(rep.read_text())["history"]] == [0, 1]
    assert checkpoint.Checkpoint.load(ckpt).members == 2
