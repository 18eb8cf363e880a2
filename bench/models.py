"""Benchmark the cost of every registered model at one window length.

    python bench/models.py [--seq-len 720] [--models liteecgnet resnet ...] [--device cuda]

Per model: parameters, MACs, CPU latency at batch 1 (1 thread and all threads; median of
>= 100 runs after warm-up; at 1 thread also of the traced + frozen TorchScript deployment form), inference beats/s at batch 256, training beats/s (forward +
backward + AdamW step, batch 256, all threads; median step), peak memory of one inference batch of 256.
With `--device cuda` the same model costs are measured on the GPU instead (latency by CUDA events,
no thread or TorchScript columns; throughput also at `--big-batch`, where a GPU has room to spare).
Prints a Markdown table with the machine facts and appends one JSON line to bench/results.jsonl.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from common import machine, parser, print_table_head, run_script  # noqa: E402  (puts the repository on sys.path)

from config import DEFAULT_WINDOW  # noqa: E402
from models import MODEL_NAMES, create_model  # noqa: E402
from profiling import (count_macs, count_params, measure_latency, measure_memory,  # noqa: E402
                       measure_throughput, measure_training_throughput)

# The public reference implementation's training speed (beats/s, batch 256, forward + backward +
# AdamW, 2 threads) as given in issue 6, measured on the 2-core CPU the issue was filed on: the
# `vs reference` column is only a like-for-like ratio on that machine.
REFERENCE_TRAIN_BEATS_PER_S = {"liteecgnet": 234, "deepecgnet": 155, "ecgnet": 70, "se_ecgnet": 46,
                               "bircnn": 15, "ldcnn": 426, "resnet": 102}


def seeded_model(name: str, seq_len: int) -> tuple[torch.nn.Module, int]:
    """The model with seed-0 weights, and its MACs per beat (counted on the CPU: cuDNN hides its work)."""
    torch.manual_seed(0)
    model = create_model(name)
    return model, count_macs(model, seq_len=seq_len)["macs"]


def main() -> int:
    ap = parser(__doc__, root=False)
    ap.add_argument("--seq-len", type=int, default=DEFAULT_WINDOW, help=f"window length in samples (default: {DEFAULT_WINDOW})")
    ap.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES,
                    help="models to measure (default: all)")
    ap.add_argument("--train-steps", type=int, default=10, help="timed training steps per model, median reported (default: 10)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to measure (default: cpu)")
    ap.add_argument("--big-batch", type=int, default=4096, help="second batch size for GPU throughput (default: 4096)")
    args = ap.parse_args()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("bench/models.py: --device cuda but CUDA is not available on this machine", file=sys.stderr)
            return 2
        return gpu_table(args)
    threads = torch.get_num_threads()
    head = machine(extra=f", {threads} threads; T = {args.seq_len}")
    print_table_head(head, ["model", "params", "MACs (M)", "latency b=1, 1 thread (ms)",
                            "TorchScript b=1, 1 thread (ms)", "latency b=1, all threads (ms)",
                            "infer beats/s b=256", "train beats/s b=256", "vs reference", "peak mem b=256 (MB)"])
    rows = []
    for name in args.models:
        model, macs = seeded_model(name, args.seq_len)
        lat1 = measure_latency(model, seq_len=args.seq_len, threads=1)
        lat_ts = measure_latency(model, seq_len=args.seq_len, threads=1, torchscript=True)
        latn = measure_latency(model, seq_len=args.seq_len, threads=threads)
        inf = measure_throughput(model, seq_len=args.seq_len, batch=256)
        mem = measure_memory(model, seq_len=args.seq_len, batch=256)
        trn = measure_training_throughput(model, seq_len=args.seq_len, batch=256, runs=args.train_steps)["beats_per_s"]
        ref = REFERENCE_TRAIN_BEATS_PER_S.get(name)
        row = dict(model=name, params=count_params(model)["total"], macs=macs,
                   latency_ms_1thread=lat1["median_ms"], latency_ms_p90_1thread=lat1["p90_ms"],
                   latency_ms_torchscript_1thread=lat_ts["median_ms"],
                   latency_ms_all=latn["median_ms"], infer_beats_per_s=inf["beats_per_s"],
                   train_beats_per_s=trn, reference_train_beats_per_s=ref,
                   speedup_vs_reference=trn / ref if ref else None, peak_memory_bytes=mem["peak_bytes"])
        rows.append(row)
        print(f"| {name} | {row['params']:,} | {macs / 1e6:.2f} | {lat1['median_ms']:.3f} | "
              f"{lat_ts['median_ms']:.3f} | {latn['median_ms']:.3f} | {inf['beats_per_s']:,.0f} | {trn:,.0f} | "
              f"{row['speedup_vs_reference']:.1f}x | {mem['peak_bytes'] / 2**20:.1f} |", flush=True)
    with open(Path(__file__).with_name("results.jsonl"), "a") as f:
        f.write(json.dumps({"bench": "models", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": head,
                            "seq_len": args.seq_len, "threads": threads, "rows": rows}) + "\n")
    return 0


def gpu_table(args) -> int:
    """The GPU variant: latency at batch 1, throughput at 256 and --big-batch, peak memory."""
    dev, big = "cuda", args.big_batch
    props = torch.cuda.get_device_properties(0)
    head = machine(extra=f", CUDA {torch.version.cuda}; GPU {props.name} "
                         f"({props.total_memory / 2**30:.0f} GiB); T = {args.seq_len}")
    print_table_head(head, ["model", "params", "MACs (M)", "latency b=1 (ms)", "infer beats/s b=256",
                            f"infer beats/s b={big}", "train beats/s b=256", f"train beats/s b={big}",
                            "peak mem b=256 (MB)"])
    rows = []
    for name in args.models:
        model, macs = seeded_model(name, args.seq_len)
        model = model.to(dev)
        lat = measure_latency(model, seq_len=args.seq_len, device=dev)
        inf = measure_throughput(model, seq_len=args.seq_len, batch=256, device=dev)["beats_per_s"]
        inf_big = measure_throughput(model, seq_len=args.seq_len, batch=big, device=dev)["beats_per_s"]
        mem = measure_memory(model, seq_len=args.seq_len, batch=256, device=dev)
        trn = measure_training_throughput(model, seq_len=args.seq_len, batch=256, device=dev,
                                          runs=args.train_steps)["beats_per_s"]
        trn_big = measure_training_throughput(model, seq_len=args.seq_len, batch=big, device=dev,
                                              runs=args.train_steps)["beats_per_s"]
        row = dict(model=name, params=count_params(model)["total"], macs=macs, latency_ms=lat["median_ms"],
                   latency_ms_p90=lat["p90_ms"], infer_beats_per_s=inf, infer_beats_per_s_big=inf_big,
                   train_beats_per_s=trn, train_beats_per_s_big=trn_big, big_batch=big,
                   peak_memory_bytes=mem["peak_bytes"])
        rows.append(row)
        print(f"| {name} | {row['params']:,} | {macs / 1e6:.2f} | {lat['median_ms']:.3f} | {inf:,.0f} | "
              f"{inf_big:,.0f} | {trn:,.0f} | {trn_big:,.0f} | {mem['peak_bytes'] / 2**20:.1f} |", flush=True)
    with open(Path(__file__).with_name("results.jsonl"), "a") as f:
        f.write(json.dumps({"bench": "models", "device": "cuda", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "machine": head, "seq_len": args.seq_len, "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
