"""Evaluate a saved checkpoint on any split or record list; writes a report with the trainer's schema.

    python evaluate.py data/records/ecg_lightweight_liteecgnet_<stamp>.pt
    python evaluate.py CKPT --split interpatient
    python evaluate.py CKPT --train-recs 101 --val-recs 103 --test-recs 100 105

Same as ``trainer.py --eval-only CKPT``: preprocessing and model come from the checkpoint; split
flags default to the ones the model was trained with. `test_and_report` is also the last step of
every training run, so a trained model and a re-evaluated one are measured by the same code.
"""
from __future__ import annotations

import sys


def _usage(argv: list[str]) -> None:
    """evaluate.py's own command-line front, before torch is imported: help, or the checkpoint first."""
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nAll data and output flags of trainer.py apply (python trainer.py --help).")
        sys.exit(0)
    if not argv or argv[0].startswith("-"):
        print("evaluate.py: error: give the checkpoint first: python evaluate.py CKPT [trainer flags]",
              file=sys.stderr)
        sys.exit(2)
    from options import preflight
    preflight(["--eval-only", *argv])


if __name__ == "__main__":
    _usage(sys.argv[1:])

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from checkpoint import Checkpoint  # noqa: E402
from cli import UsageError, log, resolve_device, run_cli  # noqa: E402
from dataset import BeatTensors, Splits, load_split  # noqa: E402
from distributed import World  # noqa: E402
from engine import evaluate_part  # noqa: E402
from options import RunConfig, check_args, check_writable, from_saved, parse_args  # noqa: E402
from profiling import profile_model  # noqa: E402
from report import build_report, result_lines, run_stamp, write_report  # noqa: E402


def check_model_set(cfg: RunConfig) -> None:
    """--model-set values, before any data is read: the constructor's own checks (unknown key,
    impossible shapes) and one forward pass, as one line."""
    if not cfg.model_set:
        return
    from models import create_model
    try:
        with torch.no_grad():
            create_model(cfg.model, **dict(cfg.model_set)).train()(torch.zeros(2, 1, round(cfg.segment_sec * cfg.fs)))
    except (ValueError, TypeError, RuntimeError) as e:
        raise UsageError(f"--model-set: {e}") from None


def prepare_run(cfg: RunConfig, log=log, world: World | None = None) -> tuple[torch.device, Path]:
    """The common start of a training and an evaluation run: check the configuration, set the CPU
    threads, pick the device, check that --out-dir can be written (it is created with the first
    file, so a run that fails early leaves no folder) -> (device, out_dir)."""
    check_args(cfg)
    check_model_set(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    main = world is None or world.is_main  # the other processes of a distributed run write nothing
    out_dir = check_writable(cfg.out_dir) if main else Path(cfg.out_dir)
    return resolve_device(cfg.device, log), out_dir


def test_and_report(model, data, splits: Splits, ckpt: Checkpoint, ckpt_path, report_path: Path, cfg: RunConfig,
                    device, *, stamp: str, history: list[dict], t_start: float, interrupted: bool = False,
                    extra: dict | None = None, world: dict | None = None, log=log) -> dict:
    """Evaluate `model` once on the split's test part, profile it, write the report -> test metrics.
    `world`: where a distributed run trained (distributed.World.describe()); default one process."""
    te = BeatTensors(data, splits.test, device)
    test = evaluate_part(model, te, data.y[splits.test], data.record[splits.test], data.class_names,
                         grouped=splits.mode != "stratified", bootstrap=cfg.bootstrap, seed=cfg.seed,
                         batch_size=cfg.batch_size)
    mm = profile_model(model, seq_len=data.config.window, device=str(device), rr_dim=model.rr_dim)
    report = build_report(
        model_name=ckpt.model_name, stamp=stamp, ckpt_path=ckpt_path,
        args=cfg.to_dict(), class_names=data.class_names, preprocessing=data.config.to_dict(),
        dataset={**splits.summary(data), "leads": data.leads}, test=test, best_val=ckpt.best_val,
        history=history, model_metrics=mm, device=device, seed=cfg.seed,
        t_total=time.perf_counter() - t_start, interrupted=interrupted, world=world)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    write_report({**report, **(extra or {})}, report_path)
    return test


def log_result(test: dict, class_names: list[str], splits: Splits, log=log) -> None:
    what = {"interpatient": "DS2", "explicit": "records " + " ".join(splits.records.get("test", []))}.get(
        splits.mode, f"{splits.mode} test part")
    for line in result_lines(test, class_names, what, by_record=splits.mode != "stratified"):
        log(line)


def evaluate_checkpoint(cfg: RunConfig, given: set[str], log=log) -> int:
    """The --eval-only run: the checkpoint's model on the test part of the requested split."""
    ckpt = Checkpoint.load(cfg.eval_only)
    ckpt.require_final(cfg.eval_only)  # before any data is loaded
    cfg = from_saved(cfg, given, ckpt.args, cfg.eval_only)
    if cfg.split == "patient-specific":
        raise UsageError("a checkpoint meets new patients one by one with calibrate.py --evaluate (calibrated on "
                         "each record's first minutes, tested on the rest), not with --split patient-specific")
    device, out_dir = prepare_run(cfg, log)
    t_start = time.perf_counter()
    data, splits = load_split(cfg.root, ckpt.preproc, cfg.split, cfg.seed, log=log, **cfg.data_kwargs())
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = ckpt.build_model(device, cfg.eval_only)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = run_stamp(out_dir)
    report_path = out_dir / f"eval_report_{ckpt.model_name}_{stamp}_evalonly.json"
    test = test_and_report(model, data, splits, ckpt, Path(cfg.eval_only), report_path, cfg, device,
                           stamp=stamp, history=[], t_start=t_start, log=log)
    log_result(test, data.class_names, splits, log)
    log(f"wrote {report_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-"):
        try:
            _usage(argv)
        except SystemExit as e:
            return int(e.code or 0)
    return run_cli("evaluate.py", lambda: evaluate_checkpoint(*parse_args(["--eval-only", *argv])))


if __name__ == "__main__":
    sys.exit(main())
