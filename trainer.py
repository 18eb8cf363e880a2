"""Train and evaluate one lightweight beat classifier on MIT-BIH.

    python trainer.py --model liteecgnet --epochs 30 --cache
    python trainer.py --config experiments/interpatient_cv.toml     # an experiment file (flags win)

Reads beats through utils.load_beats (cached), splits them (dataset.load_split), trains with
AdamW + warm-up/cosine schedule and early stopping on validation macro-F1 (engine.fit), restores
the best weights, touches the test part once, and writes (atomically) into --out-dir:

    ecg_lightweight_{model}_{timestamp}.pt        checkpoint that rebuilds model + preprocessing
    eval_report_{model}_{timestamp}.json          evaluation report (schema in docs/REPORT.md)
    ecg_lightweight_{model}_{timestamp}.last.pt   training state for --resume (removed when done)

The run reads top to bottom in `train`: configuration -> data -> [cross-validation] -> model ->
fit -> test -> write. `--eval-only CKPT` hands over to evaluate.py.
"""
from __future__ import annotations

import sys

if __name__ == "__main__":  # --help and a mistyped flag answer before torch is imported (about 2 s)
    from options import preflight
    preflight(sys.argv[1:])

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import evaluate  # noqa: E402
from checkpoint import FINAL, TRAINING_KEYS, TRAINING_STATE, Checkpoint  # noqa: E402
from cli import UsageError, log, run_cli  # noqa: E402
from crossval import cross_validate  # noqa: E402
from dataset import BeatTensors, load_split  # noqa: E402
from distributed import World, exit_process, launch_env  # noqa: E402
from engine import FitOptions, fit_members, new_state  # noqa: E402
from models import create_from_spec  # noqa: E402
from options import RunConfig, describe_preset, from_saved, parse_args  # noqa: E402
from report import environment, result_lines, run_stamp, versions, write_json, write_report  # noqa: E402


def train(cfg: RunConfig, given: set[str], log=log, world: World | None = None) -> int:
    """A training run (new, or resumed from cfg.resume): data -> model -> fit -> test -> write.
    `world`: this process's place in a distributed run (torchrun); rank 0 writes everything."""
    world = world or World()
    resumed = Checkpoint.load(cfg.resume) if cfg.resume else None
    if resumed:
        if resumed.kind != TRAINING_STATE:
            raise UsageError(f"{cfg.resume} is a final checkpoint; resume from the .last.pt file of the run")
        cfg = from_saved(cfg, given, resumed.args, cfg.resume)
    device, out_dir = evaluate.prepare_run(cfg, log, world)
    if world.distributed:
        if cfg.cv:
            raise UsageError("--cv trains its folds in one process: run it with python trainer.py, not torchrun")
        if cfg.batch_size < world.size:
            raise UsageError(f"--batch-size {cfg.batch_size} is the global batch, split over {world.size} "
                             f"processes: give at least {world.size}")
    device = world.start(device)  # torchrun: joins the process group (gloo on the CPU, nccl on GPUs)
    if describe_preset(cfg):
        log(describe_preset(cfg))
    preproc = resumed.preproc if resumed else cfg.preproc()
    t_start = time.perf_counter()

    # data
    data, splits = load_split(cfg.root, preproc, cfg.split, cfg.seed, log=log, **cfg.data_kwargs())
    cv = resumed.cv if resumed else (cross_validate(cfg, data, device, log) if cfg.cv else None)
    if cfg.cv_only:  # exploring: the folds' scores, no final model, DS2 untouched
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"cv_report_{cfg.model}_{run_stamp(out_dir)}.json"
        write_json({"model": cfg.model, "args": cfg.to_dict(), "preprocessing": preproc.to_dict(),
                    "classes": data.class_names, "cv": cv,
                    "environment": environment(device, cfg.seed, world.describe())}, path)
        log(f"wrote {path} (cross-validation inside DS1 only; DS2 was not evaluated)")
        return 0

    # model: the spec rebuilds it (ensemble members, the checkpoint); beats of every class for int8 calibration
    spec = cfg.model_spec(preproc, len(data.class_names))
    if world.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    stamp = resumed.stamp if resumed else run_stamp(out_dir)
    ckpt_path = out_dir / f"ecg_lightweight_{cfg.model}_{stamp}.pt"
    report_path = out_dir / f"eval_report_{cfg.model}_{stamp}.json"
    last_path = out_dir / f"ecg_lightweight_{cfg.model}_{stamp}.last.pt"
    ckpt = Checkpoint(model_name=cfg.model, **{k: v for k, v in spec.items() if k not in ("name", "fs")},
                      class_names=data.class_names, members=cfg.ensemble, preprocessing=preproc.to_dict(),
                      args=cfg.to_dict(), versions=versions(), stamp=stamp, cv=cv,
                      calibration=Checkpoint.calibration_sample(data, splits.train, cfg.seed))
    state = new_state()
    if resumed:  # model, optimizer, scheduler, RNG and early-stopping state (and finished members)
        state.update(resumed.training, best_val=resumed.best_val)
        best = state["best_val"].get("macro_f1")
        log(f"resuming {cfg.model}" + (f" member {len(state['members']) + 1}/{cfg.ensemble}" if cfg.ensemble > 1
                                        else "")
            + f" after epoch {state['epoch']}" + (f" (best val F1 {best:.4f})" if best is not None else ""))

    def save_state(s: dict) -> None:
        Checkpoint(**{**vars(ckpt), "kind": TRAINING_STATE, "best_val": s["best_val"], "calibration": None,
                      "training": {k: s[k] for k in TRAINING_KEYS}}).save(last_path)

    # fit
    tr = BeatTensors(data, splits.train, device)
    # none: --cv's final fit; in a distributed run only rank 0 validates
    va = BeatTensors(data, splits.val, device) if len(splits.val) and world.is_main else None
    opts = FitOptions.from_config(cfg)
    opts.quiet = opts.quiet or not world.is_main  # one progress bar
    if cv:
        opts.stop_epoch = cv["chosen_epochs"]  # the folds' schedule, stopped where the folds peaked
    n_params = sum(p.numel() for p in create_from_spec(spec).parameters())
    log(f"training {cfg.model} ({n_params:,} parameters{f', ensemble of {cfg.ensemble}' if cfg.ensemble > 1 else ''})"
        f" on {world.where(device, cfg.batch_size)}, {len(tr)} beats/epoch"
        + (f", {opts.stop_epoch} epochs (chosen by cross-validation)" if cv else ""))
    try:
        model, state = fit_members(opts, cfg.ensemble, lambda: create_from_spec(spec).to(device), tr, va,
                                   data.class_names, state, save_state, device, log, world)
    except Exception:
        if world.is_main and last_path.exists():
            log(f"the last complete epoch's training state is kept: continue with --resume {last_path}")
        raise
    interrupted = bool(state.get("interrupted"))
    if not world.is_main:  # rank 0 evaluates and writes
        return 130 if interrupted else 0
    if interrupted and last_path.exists():
        log(f"resume with --resume {last_path}")
    if model is None:
        log(f"interrupted during ensemble member {len(state['members']) + 1}/{cfg.ensemble}: nothing evaluated or "
            "written" if cfg.ensemble > 1 and (state["members"] or state["best_state"] is not None) else
            "stopped before the first epoch finished: nothing to evaluate, nothing written")
        return 130
    if cv:  # no validation part: what the folds measured at the chosen epoch stands in
        state["best_val"] = {**({"members": state["best_val"]["members"]} if cfg.ensemble > 1 else {}),
                             "epoch": cv["chosen_epochs"], "macro_f1": cv["best"]["macro_f1"],
                             "source": f"{cv['k']}-fold cross-validation inside DS1"}
    ckpt.state_dict, ckpt.best_val, ckpt.kind = state["best_state"], state["best_val"], FINAL
    if cv:  # the folds' held-out predictions (100 KB for DS1) are the report's; the model does not need them
        ckpt.cv = {k: v for k, v in cv.items() if k != "held_out"}
    ckpt.save(ckpt_path)

    # test, write
    test = evaluate.test_and_report(model, data, splits, ckpt, ckpt_path, report_path, cfg, device,
                                    stamp=stamp, history=state["history"], t_start=t_start, interrupted=interrupted,
                                    extra={"cv": cv} if cv else None, world=world.describe(), log=log)
    if not interrupted:
        last_path.unlink(missing_ok=True)  # finished: the training state is no longer needed
    evaluate.log_result(test, data.class_names, splits, log)
    log(f"wrote {ckpt_path}")
    log(f"wrote {report_path}")
    return 130 if interrupted else 0


# settings of a full training run that the patient-specific protocol's fixed recipe replaces
NOT_PATIENT_SPECIFIC = ("epochs", "lr", "batch_size", "weight_decay", "patience", "focal", "class_weights", "augment",
                        "ema_epochs", "ensemble", "cv", "cv_only", "class_limit", "resume", "patient_balance",
                        "template_swap")


def train_patient_specific(cfg: RunConfig, given: set[str], log=log) -> int:
    """--split patient-specific, the literature's protocol: for each test record a new model trained on
    the common set (records 100-124 but this one) and the record's first `minutes`, tested on the rest
    once (patient.py); one report of all test minutes pooled, gross and per record. No checkpoint: each
    model serves one record (calibrate.py makes the checkpoint a user keeps)."""
    import patient
    from utils import load_beats
    bad = sorted(k for k in given if k in NOT_PATIENT_SPECIFIC)
    if bad:
        raise UsageError(f"--split patient-specific trains with a fixed recipe (patient.FROM_SCRATCH): "
                         f"{', '.join('--' + k.replace('_', '-') for k in bad)} does not apply")
    device, out_dir = evaluate.prepare_run(cfg, log)
    if describe_preset(cfg):
        log(describe_preset(cfg))
    records, t_start, preproc = patient.protocol_records(cfg.test_recs), time.perf_counter(), cfg.preproc()
    data = load_beats(cfg.root, preproc, records=sorted(set(records) | set(patient.COMMON_RECORDS), key=int),
                      use_cache=cfg.cache, download=not cfg.no_download, log=log)
    spec = cfg.model_spec(preproc, len(data.class_names))
    log(f"patient-specific: {len(records)} records, a {cfg.model} each on the common set and its first "
        f"{cfg.minutes:g} minutes ({patient.FROM_SCRATCH.steps} steps of {patient.FROM_SCRATCH.batch} beats)")

    def fit(record: str, cal: np.ndarray):
        rows = np.union1d(patient.common_set(data, record, cfg.seed), cal)
        return patient.from_scratch(lambda: create_from_spec(spec).to(device), BeatTensors(data, rows, device),
                                    cfg.seed * 1000 + int(record))
    result = patient.per_record(data, records, fit, cfg.minutes, cfg.batch_size, device, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = run_stamp(out_dir)
    path = out_dir / f"eval_report_{cfg.model}_{stamp}.json"
    report = patient.build(result, data, model=create_from_spec(spec), model_name=cfg.model, stamp=stamp,
                           source="none: a model per record, not kept", args=cfg.to_dict(), split=cfg.split,
                           train_records=list(patient.COMMON_RECORDS), minutes=cfg.minutes,
                           recipe=patient.FROM_SCRATCH, bootstrap=cfg.bootstrap, seed=cfg.seed, device=device,
                           t_start=t_start, extra={"common_set": {**patient.COMMON_SET, "F": "all", "Q": "all"}})
    write_report(report, path)
    for line in result_lines(report["test"], data.class_names, f"minutes {cfg.minutes:g}-end of {len(records)} records"):
        log(line)
    log(f"wrote {path}")
    return 0


def run(cfg: RunConfig, given: set[str], log=log) -> int:
    world = World.from_env()
    if cfg.split == "patient-specific" and not cfg.eval_only:
        if world.distributed:
            raise UsageError("--split patient-specific trains small models one after another: run it without torchrun")
        return train_patient_specific(cfg, given, log)
    if cfg.eval_only:
        if world.distributed:
            raise UsageError("--eval-only evaluates in one process: python evaluate.py CKPT, not torchrun")
        return evaluate.evaluate_checkpoint(cfg, given, log)
    with world:  # ends the process group; a lost peer becomes one line
        return train(cfg, given, log, world)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: one line on stderr and a non-zero exit for every user error. Under torchrun,
    rank 0 prints the progress, the first process on each machine a user error (every process
    reads the same arguments), and every process its own failure, its rank in front."""
    prog = Path(sys.argv[0]).name if argv is None else "trainer.py"
    try:
        rank, local_rank, size = launch_env()
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if size > 1:
        prog = f"{prog} [rank {rank}/{size}]"
    return run_cli(prog, lambda: run(*parse_args(argv), log=log if rank == 0 else lambda msg: None),
                   user_errors=local_rank == 0)


if __name__ == "__main__":
    exit_process(main())  # sys.exit, minus the interpreter teardown after a process group
