"""Benchmark the beat pipeline: cold cache build and warm load of all 48 records, against a
straightforward per-beat Python loop over the same records, measured side by side.

    MITBIH_DIR=/path/to/mitdb python bench/pipeline.py [--repeats 3]

Each stage runs in a fresh subprocess (so peak memory is that stage's own ru_maxrss and no
stage profits from another's warm Python state); files stay in the OS page cache in all of
them. Each row also gives the stage's user and system CPU seconds (the run whose wall time is the
median). A fourth stage times the cold build's computing on one thread, step by step (reading,
the band-pass that both pipelines share, cutting and normalising): divided by the cores, it bounds
how much faster than the baseline a cold build with these steps can be. Prints a
Markdown table and appends one JSON line to bench/results.jsonl.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

from common import machine, parser, records_missing, run_script  # noqa: E402  (puts the repository on sys.path)


def _clock() -> tuple[float, float, float]:
    """(wall s, user CPU s, system CPU s) of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime, r.ru_stime


def _result(t0: tuple[float, float, float], n: int) -> tuple:
    """(wall, beats, peak RSS bytes, user CPU, system CPU) since t0. System time is the kernel's:
    page faults on fresh memory and page-cache writes, which on a virtual machine can cost as
    much as the computing."""
    t1 = _clock()
    return (t1[0] - t0[0], n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            t1[1] - t0[1], t1[2] - t0[2])


def _stage_pipeline(root: str, cache_dir: str, q) -> None:
    from utils import PreprocConfig, load_beats
    t = _clock()
    d = load_beats(root, PreprocConfig(), cache_dir=cache_dir, download=False, log=lambda m: None)
    q.put(_result(t, len(d)))


def _stage_loop(root: str, cache_dir: str, q) -> None:
    """The baseline: what a first implementation looks like - wfdb objects, a Python loop per beat."""
    import numpy as np
    import wfdb
    from beats import BEAT_SYMBOLS, LABEL_SCHEMES
    from utils import MITDB_RECORDS, PreprocConfig, bandpass
    cfg, table = PreprocConfig(), LABEL_SCHEMES["seed4"]
    half = cfg.window // 2
    t = _clock()
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
    arrays = np.stack(xs), np.array(ys)  # (x, y): the arrays a cache would hold
    q.put(_result(t, len(arrays[0])))


def _stage_floor(root: str, cache_dir: str, q) -> None:
    """The cold build's computing, one thread, step by step: read the 48 records (the pipeline's
    readers), band-pass them (the same scipy call the baseline makes), cut and normalise every
    window into one array (the pipeline's own cutter). Each step is its thread's *user* CPU time:
    the kernel's work (page faults on fresh memory, file reads) and the cache write are left out,
    as if they cost nothing. A build with these steps cannot take less wall time than their sum
    divided by the cores."""
    import numpy as np
    from utils import MITDB_RECORDS, PreprocConfig, bandpass, fill_windows, read_record, windows_inside
    cfg = PreprocConfig()
    user = lambda: resource.getrusage(resource.RUSAGE_THREAD).ru_utime  # noqa: E731
    t = user()
    recs = [read_record(root, rec, cfg) for rec in MITDB_RECORDS]
    t_read = user() - t
    t = user()
    filt = [bandpass(r[0], cfg).astype(np.float32) for r in recs]
    t_filter = user() - t
    peaks = [r[1][windows_inside(r[1], len(f), cfg.window)] for r, f in zip(recs, filt)]
    bounds = np.cumsum([0] + [len(p) for p in peaks])
    x = np.empty((int(bounds[-1]), cfg.window), np.float32)
    t = user()
    for i, (f, p) in enumerate(zip(filt, peaks)):
        fill_windows(x[bounds[i]:bounds[i + 1]], f, p, cfg.normalize)
    t_cut = user() - t
    q.put((t_read, t_filter, t_cut, sum(len(r[0]) for r in recs), len(x)))


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
    ap = parser(__doc__)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each stage; the median is reported (default: 3)")
    args = ap.parse_args()
    if records_missing(args.root, "bench/pipeline.py"):
        return 2
    rows = {"cold build (48 records, writes cache)": [], "warm load (cache)": [], "per-beat loop baseline": []}
    floor = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            rows["cold build (48 records, writes cache)"].append(_run(_stage_pipeline, args.root, tmp))
            rows["warm load (cache)"].append(_run(_stage_pipeline, args.root, tmp))
        rows["per-beat loop baseline"].append(_run(_stage_loop, args.root, ""))
        floor.append(_run(_stage_floor, args.root, ""))
    med = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
    base = med["per-beat loop baseline"][0]
    cores = os.cpu_count() or 1
    read_s, filt_s, cut_s = (sorted(f[i] for f in floor)[len(floor) // 2] for i in range(3))  # medians
    ceiling = base * cores / filt_s  # the filter split perfectly over every core, nothing else
    work_s = read_s + filt_s + cut_s
    ceiling_work = base * cores / work_s  # all three split perfectly, no kernel time, no write
    print(f"{machine(cores)}; median of {args.repeats}\n")
    print("| stage | wall s | user CPU s | system CPU s | beats | peak RSS MB | speed-up vs loop |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, (sec, n, rss, usr, sys_) in med.items():
        print(f"| {k} | {sec:.2f} | {usr:.2f} | {sys_:.2f} | {n} | {rss / 2**20:.0f} | {base / sec:.1f}x |")
    print(f"\nThe cold build's computing on one thread, in user CPU seconds (the kernel's share left out): "
          f"reading {read_s:.2f}, band-pass {filt_s:.2f} (`sosfiltfilt`, the call both pipelines make once "
          f"per record), cutting and normalising the windows {cut_s:.2f}; {work_s:.2f} in all. The band-pass "
          f"alone, split perfectly over {cores} cores, needs {filt_s / cores:.2f} s: a ceiling of "
          f"{ceiling:.1f}x on the cold build's speed-up. All three need {work_s / cores:.2f} s with every "
          f"core busy, no kernel time and no cache write: a ceiling of {ceiling_work:.1f}x for a build "
          f"made of these steps.")
    rec = {"bench": "pipeline", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "repeats": args.repeats,
           "cores": cores, "bandpass_1thread_user_seconds": filt_s, "read_1thread_user_seconds": read_s,
           "cut_1thread_user_seconds": cut_s, "floor_all_user_seconds": [list(f[:3]) for f in floor],
           "cold_speedup_ceiling": ceiling, "cold_speedup_ceiling_all_steps": ceiling_work,
           **{k: {"seconds": v[0], "beats": v[1], "peak_rss_bytes": v[2], "user_cpu_seconds": v[3],
                  "system_cpu_seconds": v[4], "all_seconds": [r[0] for r in rows[k]],
                  "all_user_system": [[r[3], r[4]] for r in rows[k]]}
              for k, v in med.items()}}
    with open(Path(__file__).with_name("results.jsonl"), "a") as f:
        f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    run_script(main)
