"""Benchmark the beat pipeline: cold cache build and warm load of all 48 records, against a
straightforward per-beat Python loop over the same records, measured side by side.

    MITBIH_DIR=../shared/mitdb python bench/pipeline.py [--repeats 3]

Each stage runs in a fresh subprocess (so peak memory is that stage's own ru_maxrss and no
stage profits from another's warm Python state); files stay in the OS page cache in all of
them. A fourth stage times the band-pass filter alone (one thread), which both pipelines share:
it bounds how much faster than the baseline any cold build with that filter can be. Prints a
Markdown table and appends one JSON line to bench/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _stage_pipeline(root: str, cache_dir: str, q) -> None:
    from utils import PreprocConfig, load_beats
    t = time.perf_counter()
    d = load_beats(root, PreprocConfig(), cache_dir=cache_dir, download=False, log=lambda m: None)
    q.put((time.perf_counter() - t, len(d), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def _stage_loop(root: str, cache_dir: str, q) -> None:
    """The baseline: what a first implementation looks like - wfdb objects, a Python loop per beat."""
    import numpy as np
    import wfdb
    from utils import BEAT_SYMBOLS, LABEL_SCHEMES, MITDB_RECORDS, PreprocConfig, bandpass
    cfg, table = PreprocConfig(), LABEL_SCHEMES["seed4"]
    half = cfg.window // 2
    t = time.perf_counter()
    xs, ys = [], []
    for rec in MITDB_RECORDS:
        r = wfdb.rdrecord(os.path.join(root, rec))
        ann = wfdb.rdann(os.path.join(root, rec), "atr")
        lead = next(l for l in cfg.lead_policy if l in r.sig_name)
        sig = bandpass(r.p_signal[:, r.sig_name.index(lead)], cfg)
        for s, sym in zip(ann.sample, ann.symbol):
            if sym not in BEAT_SYMBOLS or s - half < 0 or s + half > len(sig):
                continue
            w = sig[s - half:s + half]
            xs.append(((w - w.mean()) / (w.std() + 1e-6)).astype(np.float32))
            ys.append(table[sym])
    x, y = np.stack(xs), np.array(ys)  # the arrays a cache would hold
    q.put((time.perf_counter() - t, len(x), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def _stage_filter(root: str, cache_dir: str, q) -> None:
    """The band-pass alone, one thread: the same scipy call both pipelines make once per record.
    No pipeline that keeps this filter can build faster than (this time / cores)."""
    from utils import MITDB_RECORDS, PreprocConfig, bandpass, read_record
    cfg = PreprocConfig()
    sigs = [read_record(root, rec, cfg)[0] for rec in MITDB_RECORDS]  # untimed: reading is not filtering
    t = time.perf_counter()
    for sig in sigs:
        bandpass(sig, cfg)
    q.put((time.perf_counter() - t, sum(len(s) for s in sigs), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def _run(stage, root: str, cache_dir: str):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=stage, args=(root, cache_dir, q))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"bench/pipeline.py: stage {stage.__name__} failed (exit {p.exitcode})")
    return q.get()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.environ.get("MITBIH_DIR", "data/mitbih"),
                    help="MIT-BIH folder (default: $MITBIH_DIR or data/mitbih)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each stage; the median is reported (default: 3)")
    args = ap.parse_args()
    if not (Path(args.root) / "100.hea").exists():
        print(f"bench/pipeline.py: error: no MIT-BIH records in {args.root} (set MITBIH_DIR)", file=sys.stderr)
        return 2
    rows = {"cold build (48 records, writes cache)": [], "warm load (cache)": [], "per-beat loop baseline": []}
    filt = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            rows["cold build (48 records, writes cache)"].append(_run(_stage_pipeline, args.root, tmp))
            rows["warm load (cache)"].append(_run(_stage_pipeline, args.root, tmp))
        rows["per-beat loop baseline"].append(_run(_stage_loop, args.root, ""))
        filt.append(_run(_stage_filter, args.root, "")[0])
    med = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
    base = med["per-beat loop baseline"][0]
    filt_s, cores = sorted(filt)[len(filt) // 2], os.cpu_count() or 1
    ceiling = base * cores / filt_s  # the filter split perfectly over every core, nothing else
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, "
          f"Python {platform.python_version()}; median of {args.repeats}\n")
    print("| stage | wall s | beats | peak RSS MB | speed-up vs loop |")
    print("|---|---:|---:|---:|---:|")
    for k, (sec, n, rss) in med.items():
        print(f"| {k} | {sec:.2f} | {n} | {rss / 2**20:.0f} | {base / sec:.1f}x |")
    print(f"\nThe band-pass alone (`sosfiltfilt`, the call both pipelines make once per record) took "
          f"{filt_s:.2f} s on one thread, {filt_s / base:.0%} of the baseline. With {cores} cores no build "
          f"that keeps this filter can take under {filt_s / cores:.2f} s: a ceiling of "
          f"{ceiling:.1f}x on the cold build's speed-up.")
    rec = {"bench": "pipeline", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "repeats": args.repeats,
           "bandpass_1thread_seconds": filt_s, "bandpass_all_seconds": filt, "cores": cores,
           "cold_speedup_ceiling": ceiling,
           **{k: {"seconds": v[0], "beats": v[1], "peak_rss_bytes": v[2], "all_seconds": [r[0] for r in rows[k]]}
              for k, v in med.items()}}
    with open(Path(__file__).with_name("results.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
