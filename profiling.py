"""Model cost metrics: parameters, size, MACs/FLOPs, latency, throughput, peak memory.

Pure functions over an `nn.Module` that maps `(B, C, T)` (+ optional `(B, rr_dim)` RR features)
to logits; used by trainer.py (the report's "model_metrics") and by bench/.

Definitions
- MACs: multiply-accumulates of the weight and activation products - convolutions, linear
  layers, matmuls (attention pooling, scaled dot-product attention), the gate products of
  LSTM/GRU cells - for ONE sample (batch 1). FLOPs = 2 x MACs. Element-wise work (BN, which is
  folded into the conv at inference anyway, activations, softmax, pooling, bias adds) is not a
  MAC and is counted by neither counter, so the two can agree exactly.
- The count comes from two independent counters, reconciled:
  * `thop` (ultralytics-thop: module hooks + its functional matmul/linear/sdpa counter), with
    the rules in `THOP_RULES` replacing thop's defaults where those mix in non-MAC operations
    (norms, softmax, RNN bias/gate arithmetic, the softmax inside its MultiheadAttention rule)
    or do not exist (`models.common.ConvBN`, whose conv runs functionally);
  * `torch.utils.flop_counter.FlopCounterMode` (aten-level: mm/addmm/bmm/convolution/sdpa),
    plus the formulas in `FLOP_COUNTER_RULES` for kernels it cannot see into: the CPU oneDNN
    LSTM kernel (`aten.mkldnn_rnn_layer`, else an LSTM counts 0), cuDNN RNNs, and CPU
    flash attention (`aten._scaled_dot_product_flash_attention_for_cpu`, which
    `nn.TransformerEncoderLayer` uses). It is run with autograd enabled so PyTorch's fused
    inference fast paths (`_native_multi_head_attention`, `_transformer_encoder_layer_fwd`,
    opaque to it) are not taken.
  `macs` is the thop count; `count_macs` raises if either counter finds nothing, and callers
  can compare `thop_macs` with `flop_counter_macs` (the tests require agreement within 1%;
  for the seven models they agree exactly).
- Latency: batch 1, `torch.inference_mode`, eval mode, median and p90 of `runs` timed calls after
  `warmup` untimed ones; wall clock on CPU, CUDA events (synchronised) on GPU. Measured for the
  eager model and, on CPU at 1 thread, for its traced + frozen TorchScript form (`to_torchscript`,
  how a model would be deployed): at batch 1 most eager time is Python overhead, not arithmetic.
- Peak memory of one inference batch: on CUDA `torch.cuda.max_memory_allocated` minus what was
  allocated before the call; on CPU the peak of the running sum of allocator events recorded by
  `torch.profiler(profile_memory=True)` during the forward pass. Both count activations, kernel
  workspaces and the output - not the weights or the input batch, which exist beforehand - and
  neither is the process RSS.
"""

from __future__ import annotations

import copy
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn
from thop import profile as thop_profile
from torch.utils.flop_counter import FlopCounterMode

from config import DEFAULT_WINDOW
from models.common import ConvBN

aten = torch.ops.aten


# --------------------------------------------------------------------------------------------
# Parameters and size
# --------------------------------------------------------------------------------------------

def count_params(model: nn.Module) -> dict:
    """{"total": all parameters, "trainable": those with requires_grad}."""
    ps = list(model.parameters())
    return {"total": sum(p.numel() for p in ps),
            "trainable": sum(p.numel() for p in ps if p.requires_grad)}


def state_dict_bytes(model: nn.Module) -> int:
    """Size in bytes of `torch.save(model.state_dict())`, i.e. of the saved weights."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


# --------------------------------------------------------------------------------------------
# MACs: thop rules
# --------------------------------------------------------------------------------------------

def _rnn_macs(m: nn.RNNBase, evaluations: int) -> int:
    """Gate products of a (multi-layer, maybe bidirectional) LSTM/GRU/RNN per cell evaluation.

    Each layer and direction multiplies its input (I) and hidden state (H, or proj_size) by every
    gate's weights: gates * H * (I + H_r) per step, plus H * proj for an LSTM projection.
    """
    gates = {"LSTM": 4, "GRU": 3}.get(m.mode, 1)
    h_r = m.proj_size or m.hidden_size
    dirs = 2 if m.bidirectional else 1
    total = 0
    for layer in range(m.num_layers):
        i = m.input_size if layer == 0 else h_r * dirs
        total += dirs * (gates * m.hidden_size * (i + h_r) + m.hidden_size * m.proj_size)
    return evaluations * total


def _thop_rnn(m: nn.RNNBase, x: tuple, y) -> None:
    inp = x[0]
    if isinstance(inp, nn.utils.rnn.PackedSequence):
        n = int(inp.batch_sizes.sum())
    else:
        n = inp.shape[0] if inp.dim() == 2 else inp.shape[0] * inp.shape[1]
    m.total_ops += _rnn_macs(m, n)


def _thop_mha(m: nn.MultiheadAttention, x: tuple, y) -> None:
    """Projections (q, k, v, out) + QK^T + AV of nn.MultiheadAttention, without the softmax."""
    q, k = x[0], x[1]
    seq = 1 if m.batch_first else 0  # unbatched input is (L, E)
    L = q.shape[0] if q.dim() == 2 else q.shape[seq]
    S = k.shape[0] if k.dim() == 2 else k.shape[seq]
    B = 1 if q.dim() == 2 else q.shape[1 - seq]
    E = m.embed_dim
    S_att = S + (m.bias_k is not None) + bool(m.add_zero_attn)  # keys appended after projection
    proj = L * E * E + S * E * (m.kdim + m.vdim) + L * E * E
    m.total_ops += B * (proj + 2 * L * S_att * E)


def _thop_convbn(m: ConvBN, x: tuple, y: torch.Tensor) -> None:
    """ConvBN runs F.conv1d (BN folded at inference): output elements x (C_in / groups) x k."""
    m.total_ops += y.numel() * (m.in_channels // m.groups) * m.kernel_size


def _thop_zero(m: nn.Module, x: tuple, y) -> None:
    """Element-wise layers: no multiply-accumulates."""


THOP_RULES = {
    ConvBN: _thop_convbn,
    nn.LSTM: _thop_rnn, nn.GRU: _thop_rnn, nn.RNN: _thop_rnn,
    nn.MultiheadAttention: _thop_mha,
    nn.modules.batchnorm._NormBase: _thop_zero, nn.LayerNorm: _thop_zero, nn.GroupNorm: _thop_zero,
    nn.Softmax: _thop_zero, nn.LogSoftmax: _thop_zero,
    nn.modules.pooling._AvgPoolNd: _thop_zero, nn.modules.pooling._AdaptiveAvgPoolNd: _thop_zero,
}
# thop's Conv1d/2d and Linear rules are already pure MAC counts (no bias, groups handled), and
# its functional counter covers torch.matmul / F.linear / bmm / einsum / sdpa outside modules.


# --------------------------------------------------------------------------------------------
# MACs: FlopCounterMode rules (FLOPs = 2 x MACs, aten-level shapes)
# --------------------------------------------------------------------------------------------

def _fc_mkldnn_rnn_layer(inp, w_ih, w_hh, *args, out_shape=None, **kw) -> int:
    """aten.mkldnn_rnn_layer (one layer, one direction): every cell evaluation (time steps x
    batch) multiplies by all of W_ih (gates*H, I) and W_hh (gates*H, H)."""
    steps = inp[0] * inp[1] if len(inp) == 3 else inp[0]
    return 2 * steps * (w_ih[0] * w_ih[1] + w_hh[0] * w_hh[1])


def _fc_cudnn_rnn(inp, weights, weight_stride0, *args, out_shape=None, **kw) -> int:
    """aten._cudnn_rnn: every 2-D weight (W_ih, W_hh, W_hr of each layer/direction) is applied
    once per cell evaluation (time steps x batch)."""
    steps = inp[0] * inp[1] if len(inp) == 3 else inp[0]
    return 2 * steps * sum(w[0] * w[1] for w in weights if len(w) == 2)


def _fc_sdpa_cpu(q, k, v, *args, out_shape=None, **kw) -> int:
    """aten._scaled_dot_product_flash_attention_for_cpu: QK^T and AV, (B, H, L, d) layout."""
    b, h, l, d = q
    s, dv = k[2], v[3]
    return 2 * b * h * l * s * (d + dv)


FLOP_COUNTER_RULES = {
    aten.mkldnn_rnn_layer: _fc_mkldnn_rnn_layer,
    aten._cudnn_rnn: _fc_cudnn_rnn,
    aten._scaled_dot_product_flash_attention_for_cpu: _fc_sdpa_cpu,
}

# parameter-free layers that do no multiply-accumulates (a leaf layer that has parameters must
# have a counting rule, or count_macs refuses to guess)
_FREE = (nn.ReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Identity, nn.Flatten,
         nn.MaxPool1d, nn.AdaptiveMaxPool1d)


def _example(model: nn.Module, seq_len: int, batch: int, rr_dim: int, device, seed: int = 0,
             in_channels: int | None = None) -> tuple:
    """Random inputs for `model`; a frozen ScriptModule keeps no in_channels: pass it."""
    rr_dim = rr_dim or getattr(model, "rr_dim", 0)
    c = in_channels or getattr(model, "in_channels", 1)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c, seq_len, generator=g).to(device)  # (B, C, T)
    return (x, torch.rand(batch, rr_dim, generator=g).to(device)) if rr_dim else (x,)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextmanager
def _eval(model: nn.Module):
    """Eval mode for the duration, then the caller's train/eval flags back."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, f in flags.items():
            m.training = f


def _check_rules(model: nn.Module) -> None:
    from thop.profile import register_hooks
    known = (*THOP_RULES, *register_hooks, *_FREE)
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if own and not isinstance(m, known) and type(m).__module__.startswith("torch.nn"):
            raise RuntimeError(f"no MAC rule for layer {name} ({type(m).__name__}); add one to "
                               "profiling.THOP_RULES")


def thop_macs(module: nn.Module, inputs: tuple) -> int:
    """MACs of module(*inputs) by thop with THOP_RULES (eval mode, no grad), whole batch."""
    _check_rules(module)
    with _eval(module):
        macs, _ = thop_profile(module, inputs=inputs, custom_ops=THOP_RULES, verbose=False)
    return int(round(macs))


def flop_counter_macs(module: nn.Module, inputs: tuple) -> int:
    """MACs of module(*inputs) by FlopCounterMode + FLOP_COUNTER_RULES (forward, eval mode)."""
    # grad on (even inside a caller's inference_mode): keeps PyTorch off its opaque fast paths
    with _eval(module), torch.inference_mode(False), torch.enable_grad():
        counter = FlopCounterMode(display=False, custom_mapping=FLOP_COUNTER_RULES)
        with counter:
            module(*inputs)
    return counter.get_total_flops() // 2


def count_macs(model: nn.Module, seq_len: int = DEFAULT_WINDOW, rr_dim: int = 0) -> dict:
    """{"macs", "flops" (= 2 x macs), "thop_macs", "flop_counter_macs"} for one beat of seq_len.

    Raises RuntimeError when either counter finds no work (a model whose cost cannot be
    counted), or a parameterised torch layer has no counting rule.
    """
    if _device_of(model).type != "cpu":  # count on CPU: cuDNN/fused kernels hide their work
        model = copy.deepcopy(model).cpu()
    inputs = _example(model, seq_len, 1, rr_dim, "cpu")
    t, f = thop_macs(model, inputs), flop_counter_macs(model, inputs)
    if t <= 0 or f <= 0:
        raise RuntimeError(f"cannot count the cost of {type(model).__name__}: thop found {t} MACs, "
                           f"FlopCounterMode {f}; add a rule for its layers in profiling.py")
    return {"macs": t, "flops": 2 * t, "thop_macs": t, "flop_counter_macs": f}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

@contextmanager
def _threads(n: int | None):
    """torch.set_num_threads(n) for the duration (None: leave as is), then restore."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def _on(model: nn.Module, device: str | torch.device) -> nn.Module:
    """The model on `device` (a copy if it lives elsewhere: the caller's model is not moved)."""
    device = torch.device(device)
    here = _device_of(model)
    same = here.type == device.type and (device.index is None or here.index == device.index)
    return model if same else copy.deepcopy(model).to(device)


def _time_calls(model: nn.Module, inputs: tuple, warmup: int, runs: int, cuda: bool) -> list[float]:
    """Seconds per call of model(*inputs), `runs` times after `warmup` untimed calls."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(*inputs)
        if cuda:
            torch.cuda.synchronize()
            for _ in range(runs):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(*inputs)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000.0)
        else:
            for _ in range(runs):
                t0 = time.perf_counter()
                model(*inputs)
                times.append(time.perf_counter() - t0)
    return times


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[-1]


def measure_latency(model: nn.Module, seq_len: int = DEFAULT_WINDOW, device: str = "cpu",
                    threads: int | None = None, warmup: int = 20, runs: int = 100,
                    rr_dim: int = 0, torchscript: bool = False, in_channels: int | None = None) -> dict:
    """Batch-1 inference latency: {"median_ms", "p90_ms", "threads", "runs", "device"}.
    torchscript=True times the deployment form (`to_torchscript`) instead of the eager model; a
    ScriptModule (e.g. a file written by export.py, loaded back; give its `in_channels`) is timed
    as it is."""
    if runs < 2:
        raise ValueError("runs must be >= 2")
    example = _example(model, seq_len, 1, rr_dim, device, in_channels=in_channels)
    if isinstance(model, torch.jit.ScriptModule):  # frozen in eval form already: no flags to set
        target, mode = model.to(device), nullcontext()
    elif torchscript:  # an eval-mode copy already: the caller's model is left as it is
        target, mode = to_torchscript(model, seq_len, rr_dim, device), nullcontext()
    else:
        target = _on(model, device)
        mode = _eval(target)
    cuda = torch.device(device).type == "cuda"
    with _threads(threads) as n, mode:
        times = _time_calls(target, example, warmup, runs, cuda)
    return {"median_ms": statistics.median(times) * 1e3, "p90_ms": _p90(times) * 1e3,
            "threads": n, "runs": runs, "device": str(device)}


def to_torchscript(model: nn.Module, seq_len: int = DEFAULT_WINDOW, rr_dim: int = 0,
                   device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The deployment form: an eval-mode copy traced for `seq_len`-sample windows and frozen.

    Why: at batch 1 a 10k-parameter model spends most of its time in the Python interpreter
    (module calls, shape checks, the folded-BN cache lookup). Tracing records the tensor ops
    once, freezing inlines the weights as constants. The result serves windows of exactly
    `seq_len` samples (the trainer's window length); its outputs are checked against the eager
    model here and a mismatch raises.
    """
    model = copy.deepcopy(_on(model, device)).eval()
    example = _example(model, seq_len, 2, rr_dim, device)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # shape checks and the BN cache turn into constants: expected for a fixed window length.
        # torch 2.13 warns that trace/freeze are deprecated for torch.export/compile; those
        # cannot trace the folded-BN cache (it keys on storage pointers), and TorchScript is
        # still what runs on a CPU without a compiler, so it stays until they can.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # check_trace=False: its re-trace sees the BN/CoordConv caches already filled and calls
        # that a different graph; the check below, on an input the trace never saw, is the real one
        traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
        check_outputs(traced, model, seq_len, rr_dim, device, f"TorchScript export of {type(model).__name__}",
                      inputs=(example,))
    return traced


def check_outputs(candidate, model: nn.Module, seq_len: int, rr_dim: int = 0, device: str | torch.device = "cpu",
                  what: str = "the export", inputs: tuple = ()) -> None:
    """Raise RuntimeError unless `candidate` (e.g. a traced or reloaded export) gives the eager
    model's outputs (atol 1e-5, rtol 1e-4) on each of `inputs` and on a fresh random batch."""
    fresh = _example(model, seq_len, 3, rr_dim, device, seed=1)
    with torch.inference_mode(False), torch.no_grad():
        for x in (*inputs, fresh):
            want, got = model(*x), candidate(*x)
            if not torch.allclose(got, want, atol=1e-5, rtol=1e-4):
                raise RuntimeError(f"{what} differs from the eager model by {(got - want).abs().max().item():.2e}")


def measure_throughput(model: nn.Module, seq_len: int = DEFAULT_WINDOW, batch: int = 256, device: str = "cpu",
                       threads: int | None = None, warmup: int = 3, runs: int = 10,
                       rr_dim: int = 0) -> dict:
    """Inference beats per second at `batch` (median over runs): {"beats_per_s", "batch", ...}."""
    model = _on(model, device)
    cuda = torch.device(device).type == "cuda"
    with _threads(threads) as n, _eval(model):
        times = _time_calls(model, _example(model, seq_len, batch, rr_dim, device), warmup, runs, cuda)
    return {"beats_per_s": batch / statistics.median(times), "batch": batch, "threads": n,
            "runs": runs, "device": str(device)}


def measure_training_throughput(model: nn.Module, seq_len: int = DEFAULT_WINDOW, batch: int = 256,
                                device: str = "cpu", threads: int | None = None, warmup: int = 3,
                                runs: int = 10, rr_dim: int = 0, lr: float = 1e-3) -> dict:
    """Training beats per second (forward + cross-entropy + backward + AdamW step) at `batch`,
    median over runs, on a copy of the model (the caller's weights are not touched)."""
    model = copy.deepcopy(model).to(device).train()
    cuda = torch.device(device).type == "cuda"
    inputs = _example(model, seq_len, batch, rr_dim, device)
    y = torch.randint(0, model.num_classes if hasattr(model, "num_classes") else 2, (batch,),
                      generator=torch.Generator().manual_seed(0)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr)
    times = []
    with _threads(threads) as n:
        for i in range(warmup + runs):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(*inputs), y).backward()
            opt.step()
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {"beats_per_s": batch / statistics.median(times), "batch": batch, "threads": n,
            "runs": runs, "device": str(device)}


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------

@contextmanager
def _kineto_quiet():
    """Drop the profiler backend's own status lines ("USDT: ... profiler_start") from stderr.

    Kineto writes them from C++ straight to file descriptor 2 on every profiler start and stop,
    so they would land in every training log. Descriptor 2 goes to a temporary file for the
    duration, and every other line written there is passed on to stderr afterwards.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (e.g. an embedding host): leave it be
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = [l for l in tmp.read().decode(errors="replace").splitlines(keepends=True)
                    if not l.startswith(("USDT:", "INFO:"))]
            if rest:
                sys.stderr.write("".join(rest))


def _cpu_peak_bytes(model: nn.Module, inputs: tuple) -> int:
    """Peak of the running sum of CPU allocator events (allocations +, frees -) in one forward."""
    from torch.profiler import ProfilerActivity, profile
    with torch.inference_mode():
        model(*inputs)  # warm-up: lazily built caches (folded BN) are not part of a batch's cost
        with _kineto_quiet(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model(*inputs)
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.unlink(path)
    mem = sorted((e["ts"], e["args"]["Bytes"]) for e in events
                 if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0)
    if not mem:
        raise RuntimeError("the profiler recorded no CPU memory events")
    cur = peak = 0
    for _, b in mem:
        cur += b
        peak = max(peak, cur)
    return int(peak)


def measure_memory(model: nn.Module, seq_len: int = DEFAULT_WINDOW, batch: int = 256, device: str = "cpu",
                   rr_dim: int = 0) -> dict:
    """Peak memory of one inference batch beyond weights and input: {"peak_bytes", "method"}."""
    model = _on(model, device)
    inputs = _example(model, seq_len, batch, rr_dim, device)
    with _eval(model):
        if torch.device(device).type == "cuda":
            with torch.inference_mode():
                model(*inputs)
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                model(*inputs)  # the output is freed after this line; the peak is recorded
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated() - base
            return {"peak_bytes": int(peak), "method": "torch.cuda.max_memory_allocated minus "
                    "memory allocated before the forward (activations, workspace, output)"}
        peak = _cpu_peak_bytes(model, inputs)
    return {"peak_bytes": peak, "method": "torch.profiler(profile_memory=True): peak running sum of "
            "CPU allocations minus frees during one forward (activations, workspace, output)"}


# --------------------------------------------------------------------------------------------
# Everything, flattened for the report
# --------------------------------------------------------------------------------------------

def profile_model(model: nn.Module, seq_len: int = DEFAULT_WINDOW, device: str = "cpu", rr_dim: int = 0,
                  batch: int = 256, runs: int = 100) -> dict:
    """All metrics above as one flat dict (the report's "model_metrics" section)."""
    device = str(device)
    rr_dim = rr_dim or getattr(model, "rr_dim", 0)
    params, macs = count_params(model), count_macs(model, seq_len, rr_dim)
    lat = measure_latency(model, seq_len, device, runs=runs, rr_dim=rr_dim)
    thr = measure_throughput(model, seq_len, batch, device, rr_dim=rr_dim)
    mem = measure_memory(model, seq_len, batch, device, rr_dim=rr_dim)
    out = {
        "seq_len": seq_len, "rr_dim": rr_dim, "device": device,
        "params_total": params["total"], "params_trainable": params["trainable"],
        "state_dict_bytes": state_dict_bytes(model),
        "macs": macs["macs"], "flops": macs["flops"], "thop_macs": macs["thop_macs"],
        "flop_counter_macs": macs["flop_counter_macs"],
        "latency_median_ms": lat["median_ms"], "latency_p90_ms": lat["p90_ms"],
        "latency_threads": lat["threads"], "latency_runs": lat["runs"],
        "throughput_beats_per_s": thr["beats_per_s"], "throughput_batch": thr["batch"],
        "throughput_threads": thr["threads"],
        "peak_memory_bytes": mem["peak_bytes"], "peak_memory_method": mem["method"],
    }
    out["state_dict_mb"] = out["state_dict_bytes"] / 2 ** 20
    if torch.device(device).type == "cpu" and lat["threads"] != 1:
        one = measure_latency(model, seq_len, device, threads=1, runs=runs, rr_dim=rr_dim)
        out["latency_1thread_median_ms"], out["latency_1thread_p90_ms"] = one["median_ms"], one["p90_ms"]
    if torch.device(device).type == "cpu":  # the wearable question: 1 core, exported model
        ts = measure_latency(model, seq_len, device, threads=1, runs=runs, rr_dim=rr_dim, torchscript=True)
        out["latency_torchscript_1thread_median_ms"] = ts["median_ms"]
    return out
