"""profiling.py: MAC counts against hand arithmetic, the two counters against each other, and
the timing / memory measurements' contracts."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import profiling as P
from models import MODEL_NAMES, create_model

# thop and FlopCounterMode must agree within this relative tolerance for every registered model.
# With the rules in profiling.py they count the same operations and agree exactly; 1% leaves
# room for a future layer whose two formulas differ by rounding, not for a missed layer.
MAC_TOLERANCE = 0.01


def both(module: nn.Module, *inputs: torch.Tensor) -> tuple[int, int]:
    return P.thop_macs(module, inputs), P.flop_counter_macs(module, inputs)


class SelfAttention(nn.Module):
    def __init__(self, e: int, h: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(e, h, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


# --- hand-built modules -----------------------------------------------------------------------

def test_conv1d_macs():
    # 3 -> 8 channels, k=5, stride 2, pad 2 on 50 samples: L_out = (50 + 4 - 5) // 2 + 1 = 25
    # MACs = L_out * C_out * C_in * k = 25 * 8 * 3 * 5 = 3000 (bias adds are not MACs)
    assert both(nn.Conv1d(3, 8, 5, stride=2, padding=2), torch.randn(1, 3, 50)) == (3000, 3000)


def test_depthwise_conv1d_macs():
    # groups = channels = 8, k=7, 'same' padding on 40 samples: each output reads 1 channel
    # MACs = 40 * 8 * (8 / 8) * 7 = 2240
    m = nn.Conv1d(8, 8, 7, padding=3, groups=8)
    assert both(m, torch.randn(1, 8, 40)) == (2240, 2240)


def test_linear_macs():
    # 10 -> 6 features, batch 1: 10 * 6 = 60
    assert both(nn.Linear(10, 6), torch.randn(1, 10)) == (60, 60)


def test_lstm_macs():
    # 2-layer bidirectional LSTM, input 5, hidden 7, 9 time steps, batch 1.
    # Each step and direction: 4 gates * H * (I + H).
    # layer 1: 2 dirs * 4 * 7 * (5 + 7) = 672; layer 2 (input 2H = 14): 2 * 4 * 7 * (14 + 7) = 1176
    # total = 9 steps * (672 + 1176) = 16632
    m = nn.LSTM(5, 7, num_layers=2, bidirectional=True, batch_first=True)
    assert both(m, torch.randn(1, 9, 5)) == (16632, 16632)


def test_gru_macs():
    # GRU, input 5, hidden 7, 9 steps: 3 gates * 7 * (5 + 7) = 252 per step -> 2268
    assert both(nn.GRU(5, 7, batch_first=True), torch.randn(1, 9, 5)) == (2268, 2268)


def test_multihead_attention_macs():
    # self-attention, E=16, 4 heads, L=S=10, batch 1:
    # projections q, k, v, out: 4 * L * E * E = 4 * 10 * 16 * 16 = 10240
    # QK^T and AV (heads together span E): 2 * L * S * E = 2 * 10 * 10 * 16 = 3200
    # total = 13440 (the softmax is not a MAC)
    assert both(SelfAttention(16, 4), torch.randn(1, 10, 16)) == (13440, 13440)


def test_batch_scales_counts():
    assert both(nn.Conv1d(3, 8, 5, stride=2, padding=2), torch.randn(4, 3, 50)) == (12000, 12000)


# --- registered models ------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("rr_dim", [0, 4])
def test_model_macs_nonzero_and_counters_agree(name, rr_dim):
    r = P.count_macs(create_model(name, rr_dim=rr_dim), seq_len=720)
    assert r["macs"] > 0 and r["flop_counter_macs"] > 0
    assert r["flops"] == 2 * r["macs"]
    assert abs(r["thop_macs"] - r["flop_counter_macs"]) <= MAC_TOLERANCE * r["flop_counter_macs"], r


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_macs_grow_with_window_length(name):
    m = create_model(name)
    assert P.count_macs(m, 1440)["macs"] > P.count_macs(m, 720)["macs"] > P.count_macs(m, 360)["macs"]


def test_bircnn_lstm_variant_is_counted():
    r = P.count_macs(create_model("bircnn", rnn="lstm"))
    assert r["thop_macs"] == r["flop_counter_macs"] > P.count_macs(create_model("bircnn"))["macs"]


def test_liteecgnet_budget():
    m = create_model("liteecgnet")
    assert P.count_params(m)["total"] <= 30_000
    assert P.count_macs(m, 720)["macs"] <= 2_500_000


def test_uncountable_model_raises():
    class MeanOnly(nn.Module):
        def forward(self, x):
            return x.mean(-1)

    with pytest.raises(RuntimeError, match="cannot count"):
        P.count_macs(MeanOnly())


def test_layer_without_rule_raises():
    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = nn.EmbeddingBag(10, 4)

        def forward(self, x):
            return self.bag(torch.zeros(x.shape[0], 3, dtype=torch.long))

    with pytest.raises(RuntimeError, match="no MAC rule"):
        P.count_macs(Bag())


# --- parameters, size, timing, memory ---------------------------------------------------------

def test_params_and_state_dict_size():
    m = create_model("ldcnn")
    n = P.count_params(m)
    assert n["total"] == sum(p.numel() for p in m.parameters())
    m.fc.weight.requires_grad_(False)
    assert P.count_params(m)["trainable"] == n["total"] - m.fc.weight.numel()
    assert P.state_dict_bytes(m) >= 4 * n["total"]


def test_latency_contract_and_threads_restored():
    m = create_model("liteecgnet").train()
    old = torch.get_num_threads()
    r = P.measure_latency(m, threads=1, warmup=5, runs=100)
    assert r["threads"] == 1 and r["runs"] == 100 and r["device"] == "cpu"
    assert 0 < r["median_ms"] <= r["p90_ms"]
    assert torch.get_num_threads() == old
    assert m.training  # the caller's mode is restored


def test_throughput_and_memory():
    m = create_model("ldcnn")
    t = P.measure_throughput(m, batch=32, runs=3)
    assert t["beats_per_s"] > 0 and t["batch"] == 32
    mem = P.measure_memory(m, batch=32)
    # at least the output of the stem conv must have existed: 32 beats x 16 ch x 180 steps
    assert mem["peak_bytes"] >= 32 * 16 * 180 * 4
    assert "profiler" in mem["method"]
    assert P.measure_memory(m, batch=64)["peak_bytes"] > mem["peak_bytes"]


def test_memory_profiler_keeps_logs_clean(capfd):
    """The profiler backend's "USDT: ... profiler_start" lines do not reach stderr; anything
    else written to descriptor 2 in that window still does."""
    import os
    P.measure_memory(create_model("liteecgnet", num_classes=4), batch=2)
    with P._kineto_quiet():
        os.write(2, b"USDT: noise\nreal problem\n")
    err = capfd.readouterr().err
    assert "USDT" not in err and "profiler_start" not in err
    assert err == "real problem\n"


def test_training_throughput_leaves_model_alone():
    m = create_model("liteecgnet")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = P.measure_training_throughput(m, batch=32, warmup=1, runs=2)
    assert r["beats_per_s"] > 0
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_profile_model_is_flat_and_complete():
    r = P.profile_model(create_model("liteecgnet", rr_dim=4), runs=20, batch=16)
    for key in ("params_total", "params_trainable", "state_dict_bytes", "macs", "flops",
                "thop_macs", "flop_counter_macs", "latency_median_ms", "latency_p90_ms",
                "latency_threads", "throughput_beats_per_s", "peak_memory_bytes",
                "peak_memory_method"):
        assert key in r
    assert r["rr_dim"] == 4
    assert all(not isinstance(v, (dict, list)) for v in r.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_measurements():
    m = create_model("liteecgnet")
    lat = P.measure_latency(m, device="cuda", warmup=5, runs=20)
    assert lat["device"] == "cuda" and lat["median_ms"] > 0
    assert next(m.parameters()).device.type == "cpu"  # measured on a copy
    mem = P.measure_memory(m, device="cuda", batch=64)
    assert mem["peak_bytes"] > 0 and "max_memory_allocated" in mem["method"]
    assert P.count_macs(m.cuda())["macs"] == P.count_macs(create_model("liteecgnet"))["macs"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_torchscript_export_matches_eager_and_times(name):
    """Every model exports (traced + frozen) with eager outputs on unseen inputs and batch sizes;
    the caller's model keeps its train flag and weights."""
    torch.manual_seed(0)
    m = create_model(name, num_classes=5, rr_dim=4).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ts = P.to_torchscript(m, seq_len=360, rr_dim=4)
    x, rr = torch.randn(4, 1, 360), torch.rand(4, 4)
    m.eval()
    with torch.inference_mode():
        assert torch.allclose(ts(x, rr), m(x, rr), atol=1e-5, rtol=1e-4)
    m.train()
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    r = P.measure_latency(m, seq_len=360, threads=1, warmup=2, runs=5, rr_dim=4, torchscript=True)
    assert r["median_ms"] > 0 and r["threads"] == 1 and m.training


def test_torchscript_export_refuses_a_trace_that_baked_in_its_example():
    class Baked(nn.Module):  # float() turns the example's mean into a constant of the trace
        def forward(self, x):
            return x.flatten(1)[:, :3] * float(x.mean())

    with pytest.raises(RuntimeError, match="differs from the eager model"):
        P.to_torchscript(Baked(), seq_len=16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where CUDA is missing")
def test_bench_models_on_cuda_without_a_gpu_is_a_one_line_error():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "bench" / "models.py"), "--device", "cuda"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == "bench/models.py: --device cuda but CUDA is not available on this machine"
    assert r.stdout == ""


def test_bench_pipeline_floor_stage_covers_every_record_and_beat(mitbih_dir, monkeypatch):
    """The stage behind bench/pipeline.py's cold-build ceilings reads, band-passes and cuts all
    48 whole records (650,000 samples each) and every window the pipeline keeps, not a subset."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "bench" / "pipeline.py"
    monkeypatch.syspath_prepend(str(path.parent))  # as `python bench/pipeline.py` has it (bench/common.py)
    spec = importlib.util.spec_from_file_location("bench_pipeline", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    got = []

    class Q:  # the stage reports through a multiprocessing queue; a list does here
        put = got.append
    bench._stage_floor(str(mitbih_dir), "", Q())
    t_read, t_filter, t_cut, samples, beats = got[0]
    assert samples == 48 * 650_000 and beats == 109_374
    assert all(0 < t < 60 for t in (t_read, t_filter, t_cut))
