"""The command line of trainer.py and evaluate.py: flags, their checks, and what they mean.

Defaults come from config.py (stated once there); a bad flag or value is one UsageError line.
"""
from __future__ import annotations

import argparse
import ast
import math
import sys
import tempfile
from pathlib import Path

from beats import CLASS_NAMES
from cli import CliParser, UsageError, resolve_device
from beats import RR_FEATURES
from config import DATA_DEFAULTS, SPLIT_PRESETS, TRAIN_DEFAULTS
from dataset import SPLIT_MODES
from engine import CLASS_WEIGHTINGS
from features import TEMPLATE_FROM
from models import MODEL_NAMES, TEMPLATE_MODES, create_model
from utils import NORMALIZERS, PreprocConfig


def _names(text: str) -> list[str]:
    """'N,S,V' -> ['N', 'S', 'V'] ('' -> [])."""
    return [c.strip() for c in text.split(",") if c.strip()]


def _setting(text: str) -> tuple[str, object]:
    """'channels=48,72,96' -> ('channels', (48, 72, 96)): a Python literal (lists become tuples,
    as in config.py), else the text itself ('rnn=lstm' -> 'lstm')."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        v = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        v = value.strip()
    return key.strip(), tuple(v) if isinstance(v, list) else v


def _preset(key: str) -> str:
    """'; interpatient: X' for each split preset that sets `key` (config.SPLIT_PRESETS)."""
    shown = lambda v: {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v  # noqa: E731
    text = lambda v: (", ".join(f"{shown(x)} for {m}" for m, x in v.items())  # noqa: E731
                      if isinstance(v, dict) else shown(v))  # a per-model setting: {model: value}
    return "".join(f"; {split}: {text(v)}" for split, preset in SPLIT_PRESETS.items()
                   for k, v in preset.items() if k == key)


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    """The CLI. With suppress=True no defaults are set, which tells which flags were given."""
    p = CliParser(description="Train / evaluate a lightweight ECG beat classifier on MIT-BIH.",
                argument_default=argparse.SUPPRESS if suppress else None)
    D, T = DATA_DEFAULTS, TRAIN_DEFAULTS

    def add(*flags, default=None, **kw):  # into the current group `g`
        if not suppress and default is not None:
            kw["default"] = default
        g.add_argument(*flags, **kw)

    g = p.add_argument_group("model and training")
    add("--model", default=T["model"], choices=MODEL_NAMES, help=f"architecture (default: {T['model']})")
    add("--epochs", type=int, default=T["epochs"], help=f"maximum epochs (default: {T['epochs']})")
    add("--batch-size", type=int, default=T["batch_size"], help=f"batch size; under torchrun the global batch, split over the processes (default: {T['batch_size']})")
    add("--lr", type=float, default=T["lr"], help=f"peak learning rate of AdamW (default: {T['lr']})")
    add("--weight-decay", type=float, default=T["weight_decay"], help=f"AdamW weight decay (default: {T['weight_decay']})")
    add("--patience", type=int, default=T["patience"], help=f"early-stopping patience in epochs on val macro-F1 (default: {T['patience']})")
    add("--focal", action="store_true", help="focal loss (gamma --focal-gamma) instead of cross-entropy (default: off)")
    add("--focal-gamma", type=float, default=T["focal_gamma"], help=f"focal loss gamma (default: {T['focal_gamma']})")
    add("--label-smoothing", type=float, default=T["label_smoothing"], metavar="EPS",
        help="cross-entropy against a target of 1 - EPS on the beat's class plus EPS spread evenly over all "
             f"classes, so the net is not pushed to certainty; not with --focal (default: {T['label_smoothing']})")
    add("--class-weights", nargs="?", const="inverse", choices=[*CLASS_WEIGHTINGS, "none"],
        help="class weights in the loss: 'inverse' frequency (the bare flag) or its 'sqrt', gentler "
             "when a class has only a few training beats, or 'none' (default: off" + _preset("class_weights") + ")")
    add("--patient-balance", type=float, default=T["patient_balance"], metavar="P", help="within each class, "
        "weight a training beat by n ** -P, n = its record's beats of that class, rescaled so the class keeps "
        "its total weight: each patient counts more evenly, class priors unchanged; 0 = off (default: "
        f"{T['patient_balance']}" + _preset("patient_balance") + ")")
    add("--ema-epochs", type=float, default=T["ema_epochs"], metavar="H", help="validate, choose and "
        "save an exponential moving average of the weights over about the last H epochs instead of the "
        f"last step's weights; 0 = off (default: {T['ema_epochs']}" + _preset("ema_epochs") + ")")
    add("--ensemble", type=int, default=T["ensemble"], metavar="K", help="train K models from seeds "
        "--seed, --seed + 10007, ... one after the other and average their class probabilities; the checkpoint "
        f"holds all K (default: {T['ensemble']})")
    add("--adapt-norm", type=float, default=T["adapt_norm"], metavar="S", help="a probe for --cv-only: predict "
        "each held-out record's beats with BatchNorm statistics re-estimated, without labels, from that record's "
        "earlier beats, updated every S seconds (the first S seconds keep the training statistics); 0 = off "
        f"(default: {T['adapt_norm']})")
    add("--adapt-stats", default=T["adapt_stats"], choices=("both", "mean"), help="with --adapt-norm: "
        f"re-estimate BatchNorm means and variances, or the means only (default: {T['adapt_stats']})")
    add("--adapt-prior", type=float, default=T["adapt_prior"], metavar="S", help="a probe for --cv-only: "
        "re-weight each held-out record's class probabilities for that record's own class prior, estimated "
        "without labels (EM) from the outputs on its earlier beats, updated every S seconds; 0 = off "
        f"(default: {T['adapt_prior']})")
    add("--adapt-classes", type=_names, default=T["adapt_classes"], metavar="C,C", help="with --adapt-prior: "
        "the classes whose prior is re-estimated, comma-separated (e.g. N,S,V); the others keep the training "
        "prior (default: all)")
    add("--template-swap", type=float, default=T["template_swap"], metavar="P", help="train time, with "
        "--template: move each training beat with probability P onto the template of a random beat of its batch, "
        "mostly another patient's (beat - its template + that template, which becomes its template): the beat's "
        "deviation from its patient's usual beat is kept, the patient's own morphology is not; 0 = off "
        f"(default: {T['template_swap']}" + _preset("template_swap") + ")")
    add("--augment", action="store_true", help="train-time R-peak jitter, amplitude scaling, baseline wander and noise (default: off)")
    add("--rr", action=argparse.BooleanOptionalAction, help="feed the per-beat RR features (--rr-features) "
        "to the model (default: off" + _preset("rr") + ")")
    add("--rr-features", choices=sorted(RR_FEATURES), help=f"per-beat feature set: 'local' = pre/post RR in s and "
        f"their ratios to the local mean; 'patient' = dimensionless, relative to the record's own rhythm "
        f"over minutes, with RR irregularity, standardised inside the model; 'robust' = 'patient' plus the "
        f"same ratios to running medians; 'sequence' = 'robust' plus the beat-to-beat RR change; 'sinus' = 'sequence' plus "
        f"ratios to an upper quantile of the recent RRs (default: {D['rr_features']}"
        + _preset("rr_features") + ")")
    add("--rr-hidden", type=int, default=T["rr_hidden"], help="standardised per-beat features also pass "
        "through a Linear + ReLU branch of this width into the head (needs --rr-features other than local) (default: "
        f"{T['rr_hidden']}" + _preset("rr_hidden") + ")")
    add("--feature-drop", type=float, default=T["feature_drop"], help="training: probability of zeroing a beat's "
        "waveform features so the head also learns from the per-beat features alone (needs --rr-features "
        f"other than local) (default: {T['feature_drop']}" + _preset("feature_drop") + ")")
    add("--template", action=argparse.BooleanOptionalAction, help="give the model a 2nd channel: the record's "
        f"running median beat (previous {D['template_beats']} beats, causal), beat and template on the template's scale "
        "instead of --normalize (default: off" + _preset("template") + ")")
    add("--template-from", choices=sorted(TEMPLATE_FROM), default=D["template_from"], help="which of the previous "
        "beats make the template: 'all'; 'sinus' = only those whose pre-RR is at least the 0.8 quantile of the last "
        "32, i.e. not premature, so frequent ectopic beats do not become the usual beat (needs --template) "
        f"(default: {D['template_from']}" + _preset("template_from") + ")")
    add("--second-lead", action="store_true", help="also give the model the record's other signal (V1 in 40 of "
        "the 48 records; V2 in 102, 103, 104 and 117; V5 in 100, 114 and 123; V4 in 124), each lead with its own template when "
        f"--template: 2 or 4 input channels (default: {'on' if D['second_lead'] else 'off'})")
    add("--template-mode", choices=TEMPLATE_MODES, default=T["template_mode"], help="how the model sees the "
        "template: 'channel' = as the stem's 2nd input channel; 'difference' = one feature extractor runs on beat "
        "and template and the head gets the difference of their features, so morphology counts only relative to "
        "the patient's usual beat (twice the extractor's MACs; needs --template) (default: "
        f"{T['template_mode']}" + _preset("template_mode") + ")")
    add("--model-set", action="append", type=_setting, metavar="KEY=VALUE", help="override one of the model's "
        "config.py settings, e.g. --model-set channels=48,72,96; repeatable; the checkpoint keeps the merged "
        "settings (default: none)")
    add("--coord", action=argparse.BooleanOptionalAction, help="CoordConv time coordinates in the model's "
        "stem (default: the model's config.py setting" + _preset("coord") + ")")
    add("--seed", type=int, default=T["seed"], help=f"seed for splits, init and shuffling (default: {T['seed']})")
    add("--device", default=T["device"], choices=("cuda", "cpu"), help=f"device; cuda falls back to cpu when unavailable (default: {T['device']})")
    add("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    add("--num-workers", type=int, default=0, help="unused: batches are sliced from in-memory tensors, no loader workers are needed; accepted for compatibility (default: 0)")
    g = p.add_argument_group("data")
    add("--root", default=D["root"], help=f"folder with the MIT-BIH records; downloaded when missing (default: {D['root']})")
    add("--no-download", action="store_true", help="never download missing records, fail instead (default: off)")
    add("--cache", action="store_true", help="cache preprocessed beats as cache_<key>.npz in the data folder (default: off)")
    add("--fs", type=int, default=D["fs"], help=f"sampling rate the records must have, Hz (default: {D['fs']})")
    add("--segment-sec", type=float, default=D["segment_sec"], help=f"beat window length in seconds, centred on the R peak (default: {D['segment_sec']}"
        + _preset("segment_sec") + ")")
    add("--normalize", default=D["normalize"], choices=sorted(NORMALIZERS), help=f"per-window normalisation (default: {D['normalize']})")
    add("--classes", default=D["classes"], choices=sorted(CLASS_NAMES), help=f"label scheme (default: {D['classes']}" + _preset("classes") + ")")
    add("--split", default=T["split"], choices=SPLIT_MODES, help=f"split protocol (default: {T['split']})")
    add("--no-stratified", action="store_true", help="same as --split random (record-wise) (default: off)")
    add("--train-recs", nargs="+", help="explicit training records; with --val-recs and --test-recs overrides --split (default: none)")
    add("--val-recs", nargs="+", help="explicit validation records (default: none)")
    add("--test-recs", nargs="+", help="explicit test records (default: none)")
    add("--class-limit", type=int, help="cap each class in the training part at N beats (default: no cap)")
    add("--cv", type=int, metavar="K", help="with --split interpatient: choose the number of epochs by K-fold "
        "cross-validation inside DS1 (patient-grouped folds), then train on all of DS1 and test DS2 once "
        "(default: off: 4 DS1 records validate, early stopping)")
    add("--cv-only", action="store_true", help="with --cv: stop after the cross-validation and write its "
        "scores (cv_report_*.json); no final model, DS2 not evaluated: for choosing inputs and settings "
        "(default: off)")
    add("--cv-offsets", action="store_true", help="with --cv: also choose additive offsets of the S and V "
        "log-probabilities (grid -2..4) on the folds' pooled held-out outputs, report their cross-fitted "
        "effect, and add them to the final model's output layer (default: off)")
    g = p.add_argument_group("outputs and modes")
    add("--out-dir", default=T["out_dir"], help=f"where checkpoints and reports go (default: {T['out_dir']})")
    add("--resume", metavar="PATH", help="continue an interrupted run from its .last.pt file (default: none)")
    add("--eval-only", metavar="PATH", help="evaluate a saved checkpoint on the test part, no training (default: none)")
    add("--bootstrap", type=int, default=T["bootstrap"], help=f"bootstrap resamples for confidence intervals, 0 = off (default: {T['bootstrap']})")
    add("--quiet", action="store_true", help="no progress bars (default: off)")
    return p


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, set[str]]:
    """Parsed args (with config.SPLIT_PRESETS filling the flags not given) and the set of flags
    the user actually gave."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    given = set(vars(build_parser(suppress=True).parse_args(argv)))
    split = "random" if args.no_stratified else args.split
    for k, v in SPLIT_PRESETS.get(split, {}).items():
        if k not in given:  # a {model: value} setting applies to the models it names only
            setattr(args, k, v.get(args.model, getattr(args, k)) if isinstance(v, dict) else v)
    if args.class_weights == "none":
        args.class_weights = None
    for k in ("rr", "template"):  # BooleanOptionalAction: absent is None
        if getattr(args, k) is None:
            setattr(args, k, DATA_DEFAULTS.get(k, False))
    if args.rr_features is None:
        args.rr_features = DATA_DEFAULTS["rr_features"]
    if not args.template and "template_swap" not in given:  # a preset's swap goes with its template
        args.template_swap = 0.0
    return args, given


def check_args(args: argparse.Namespace) -> None:
    """Reject impossible values with one clear line."""
    for name in ("epochs", "batch_size", "patience"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.lr > 0 or not math.isfinite(args.lr):
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    if args.weight_decay < 0:
        raise UsageError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if not 0 <= args.label_smoothing < 1:  # NaN fails too
        raise UsageError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if args.label_smoothing and args.focal:
        raise UsageError("--label-smoothing smooths the cross-entropy: it does not combine with --focal")
    if args.segment_sec <= 0 or round(args.segment_sec * args.fs) < 8:
        raise UsageError(f"--segment-sec {args.segment_sec} at --fs {args.fs} gives "
                         f"{round(args.segment_sec * args.fs)} samples per beat; need at least 8")
    if args.class_limit is not None and args.class_limit < 1:
        raise UsageError(f"--class-limit must be >= 1, got {args.class_limit}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.rr_hidden < 0 or not 0 <= args.feature_drop < 1:
        raise UsageError(f"--rr-hidden must be >= 0 and --feature-drop in [0, 1), got {args.rr_hidden}, "
                         f"{args.feature_drop}")
    if (args.rr_hidden or args.feature_drop) and not (args.rr and args.rr_features != "local"):
        raise UsageError("--rr-hidden and --feature-drop act on standardised per-beat features: use them with "
                         f"--rr --rr-features {' | '.join(s for s in RR_FEATURES if s != 'local')}")
    if args.template_mode != "channel" and not args.template:
        raise UsageError(f"--template-mode {args.template_mode} needs the template: add --template")
    settings = dict(args.model_set or [])
    if len(settings) != len(args.model_set or []):
        raise UsageError("--model-set names a setting twice")
    if settings:
        if "coord" in settings:
            raise UsageError("--model-set coord=...: use --coord / --no-coord")
        try:  # the constructor's own checks (unknown key, impossible shapes) and one forward pass, as one line
            import torch
            with torch.no_grad():
                create_model(args.model, **settings).train()(torch.zeros(2, 1, round(args.segment_sec * args.fs)))
        except (ValueError, TypeError, RuntimeError) as e:
            raise UsageError(f"--model-set: {e}") from None
    if args.second_lead and (args.template_mode != "channel" or args.augment):
        raise UsageError("--second-lead works with --template-mode channel and without --augment (both assume "
                         "one beat channel)")
    for flag in ("adapt_norm", "adapt_prior"):
        v = getattr(args, flag)
        if not (v == 0 or 1 <= v < math.inf):  # NaN fails both
            raise UsageError(f"--{flag.replace('_', '-')} must be 0 (off) or a number of seconds >= 1, got {v}")
        if v and not args.cv_only:  # neither a checkpoint nor evaluate.py / predict.py adapts
            raise UsageError(f"--{flag.replace('_', '-')} is a cross-validation probe (DS1 held-out records only): "
                             "add --cv 4 --cv-only")
    if args.adapt_classes:
        valid = CLASS_NAMES[args.classes]
        if not args.adapt_prior:
            raise UsageError("--adapt-classes chooses what --adapt-prior adapts: add --adapt-prior S")
        bad = [c for c in args.adapt_classes if c not in valid]
        if bad or len(set(args.adapt_classes)) != len(args.adapt_classes) or len(args.adapt_classes) < 2:
            raise UsageError(f"--adapt-classes needs two or more distinct names of --classes {args.classes} "
                             f"({', '.join(valid)}), got {','.join(args.adapt_classes)}")
    if args.adapt_stats != "both" and not args.adapt_norm:
        raise UsageError(f"--adapt-stats {args.adapt_stats} chooses what --adapt-norm adapts: add --adapt-norm S")
    if not 0 <= args.template_swap <= 1:
        raise UsageError(f"--template-swap must be a number in [0, 1], got {args.template_swap}")
    if args.template_from != DATA_DEFAULTS["template_from"] and not args.template:
        raise UsageError(f"--template-from {args.template_from} chooses the template's beats: add --template")
    if args.template_swap and not args.template:
        raise UsageError("--template-swap moves beats between templates: add --template")
    if not 0 <= args.patient_balance <= 1:
        raise UsageError(f"--patient-balance must be a number in [0, 1], got {args.patient_balance}")
    if not 0 <= args.ema_epochs < math.inf:
        raise UsageError(f"--ema-epochs must be a number >= 0, got {args.ema_epochs}")
    if args.ensemble < 1:
        raise UsageError(f"--ensemble must be >= 1, got {args.ensemble}")
    if args.ensemble > 1 and args.cv_offsets:
        raise UsageError("--cv-offsets shifts one model's output layer: it does not combine with --ensemble")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    recs = [args.train_recs, args.val_recs, args.test_recs]
    if any(recs) and not all(recs):
        raise UsageError("--train-recs, --val-recs and --test-recs go together: give all three")
    if (args.cv_only or args.cv_offsets) and not args.cv:
        raise UsageError("--cv-only and --cv-offsets need --cv K")
    if args.cv is not None and (args.cv < 2 or args.split != "interpatient" or args.train_recs):
        raise UsageError("--cv K needs K >= 2 and --split interpatient (it runs inside DS1), without "
                         "explicit record lists")
    if args.resume and args.eval_only:
        raise UsageError("--resume and --eval-only exclude each other")


def preproc_from_args(args: argparse.Namespace) -> PreprocConfig:
    return PreprocConfig(fs=args.fs, segment_sec=args.segment_sec, classes=args.classes,
                         normalize=args.normalize, rr_features=args.rr_features, template=args.template,
                         template_from=args.template_from, second_lead=args.second_lead)


def explicit_records(args: argparse.Namespace) -> dict | None:
    """--train-recs/--val-recs/--test-recs as a dict, or None."""
    return ({"train": args.train_recs, "val": args.val_recs, "test": args.test_recs}
            if args.train_recs else None)


def data_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of dataset.load_split that the data flags set."""
    return dict(explicit=explicit_records(args), class_limit=args.class_limit, use_cache=args.cache,
                download=not args.no_download, cv=getattr(args, "cv", None))


def prepare_run(args: argparse.Namespace, log, make_out_dir: bool = True) -> tuple:
    """Check the arguments, set the CPU threads, pick the device and make --out-dir writable
    -> (device, out_dir). The common start of a training and an evaluation run.
    `make_out_dir` False: a process that writes nothing (a distributed run's ranks but 0)."""
    import torch
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device, log), (prepare_out_dir(args.out_dir) if make_out_dir else Path(args.out_dir))


def prepare_out_dir(out_dir: str) -> Path:
    p = Path(out_dir)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to --out-dir {p} ({e.strerror or e})") from None
    return p


def adopt_checkpoint_args(args, given: set[str], saved: dict, what: str) -> argparse.Namespace:
    """Use a checkpoint's run arguments `saved`, refusing a --model/--classes that contradicts them."""
    for flag in ("model", "classes"):
        if flag in given and getattr(args, flag) != saved[flag]:
            raise UsageError(f"{what} holds a {saved['model']}/{saved['classes']} checkpoint, but "
                             f"--{flag} {getattr(args, flag)} was given")
    # flags given now win; everything else (root, split, seed, ...) is what the run used
    keep = given | {"resume", "eval_only"}
    # options newer than the checkpoint take their config.py default, not a split preset's: the run
    # that wrote it did not use them (a resumed pre---template-swap run goes on without swaps)
    newer = {k: TRAIN_DEFAULTS[k] for k in vars(args) if k in TRAIN_DEFAULTS and k not in saved}
    merged = {**vars(args), **newer, **{k: v for k, v in saved.items() if k in vars(args)},
              **{k: getattr(args, k) for k in keep if hasattr(args, k)}}
    if isinstance(merged.get("class_weights"), bool):  # checkpoints from before the modes: a flag
        merged["class_weights"] = "inverse" if merged["class_weights"] else None
    return argparse.Namespace(**merged)
