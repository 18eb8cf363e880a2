"""Evaluate a saved checkpoint on any split or record list; writes a report with the trainer's schema.

    python evaluate.py data/records/ecg_lightweight_liteecgnet_<stamp>.pt
    python evaluate.py CKPT --split interpatient
    python evaluate.py CKPT --train-recs 101 --val-recs 103 --test-recs 100 105

Same as ``trainer.py --eval-only CKPT``: preprocessing and model come from the checkpoint; split
flags default to the ones the model was trained with. `test_and_report` is also the last step of
every training run, so a trained model and a re-evaluated one are measured by the same code.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from checkpoint import Checkpoint
from cli import log, run_cli
from dataset import BeatTensors, load_split
from engine import evaluate_part
from options import adopt_checkpoint_args, data_kwargs, parse_args, prepare_run
from profiling import profile_model
from report import build_report, run_stamp, write_report


def test_and_report(model, data, splits, ckpt: Checkpoint, ckpt_path, report_path: Path,
                    args: argparse.Namespace, device, *, stamp: str, history: list[dict], t_start: float,
                    interrupted: bool = False, extra: dict | None = None, world: dict | None = None,
                    log=log) -> dict:
    """Evaluate `model` once on the split's test part, profile it, write the report -> test metrics.
    `world`: where a distributed run trained (distributed.World.describe()); default one process."""
    te = BeatTensors(data, splits.test, device)
    test = evaluate_part(model, te, data.y[splits.test], data.record[splits.test], data.class_names,
                         grouped=splits.mode != "stratified", bootstrap=args.bootstrap, seed=args.seed,
                         batch_size=args.batch_size)
    mm = profile_model(model, seq_len=data.config.window, device=str(device), rr_dim=model.rr_dim)
    report = build_report(
        model_name=ckpt.model_name, stamp=stamp, ckpt_path=ckpt_path,
        args=vars(args), class_names=data.class_names, preprocessing=data.config.to_dict(),
        dataset={**splits.summary(data), "leads": data.leads}, test=test, best_val=ckpt.best_val,
        history=history, model_metrics=mm, device=device, seed=args.seed,
        t_total=time.perf_counter() - t_start, interrupted=interrupted, world=world)
    write_report({**report, **(extra or {})}, report_path)
    return test


def log_result(test: dict, log=log) -> None:
    ci = test.get("ci", {}).get("macro_f1", {})
    ci_txt = f" [{ci['low']:.4f}, {ci['high']:.4f}]" if ci.get("low") is not None else ""
    log(f"test: accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}{ci_txt}  "
        f"({test['n_beats']} beats)")


def evaluate_checkpoint(args: argparse.Namespace, given: set[str], log=log) -> int:
    """The --eval-only run: the checkpoint's model on the test part of the requested split."""
    ckpt = Checkpoint.load(args.eval_only)
    ckpt.require_final(args.eval_only)  # before any data is loaded
    args = adopt_checkpoint_args(args, given, ckpt.args, args.eval_only)
    device, out_dir = prepare_run(args, log)
    t_start = time.perf_counter()
    data, splits = load_split(args.root, ckpt.preproc, args.split, args.seed, log=log, **data_kwargs(args))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = ckpt.build_model(device, args.eval_only)
    stamp = run_stamp(out_dir)
    report_path = out_dir / f"eval_report_{ckpt.model_name}_{stamp}_evalonly.json"
    test = test_and_report(model, data, splits, ckpt, Path(args.eval_only), report_path, args, device,
                           stamp=stamp, history=[], t_start=t_start, log=log)
    log_result(test, log)
    log(f"wrote {report_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            print(__doc__.strip())
            print("\nAll data and output flags of trainer.py apply (python trainer.py --help).")
            return 0
        print("evaluate.py: error: give the checkpoint first: python evaluate.py CKPT [trainer flags]",
              file=sys.stderr)
        return 2
    return run_cli("evaluate.py", lambda: evaluate_checkpoint(*parse_args(["--eval-only", *argv])))


if __name__ == "__main__":
    sys.exit(main())
