"""The command line of trainer.py and evaluate.py, and the one typed run configuration.

    cfg, given = parse_args(["--split", "interpatient", "--epochs", "15"])   # -> RunConfig

A run's settings come, lowest first, from config.py's defaults, the split's preset file
(config.SPLIT_PRESETS, e.g. experiments/interpatient.toml), a `--config` file (TOML, or a report
or cv report whose run to repeat), and the flags on the command line. The result is one frozen
`RunConfig`; nothing below the run functions sees argparse. Every setting can be given in a
config file; the flags cover those a user reaches for (docs/OPTIONS.md lists both).

Imports no torch and no scipy: `trainer.py --help` and a mistyped flag answer at once, and
run_all_models.sh checks a sweep's flags once (`python options.py check ARGS...`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from beats import CLASS_NAMES, RR_FEATURES
from cli import CliParser, UsageError, try_write
from config import (CLASS_WEIGHTINGS, DATA_DEFAULTS, MODEL_CONFIGS, NORMALIZATIONS, SPLIT_MODES, SPLIT_PRESETS,
                    TRAIN_DEFAULTS)

ROOT = Path(__file__).resolve().parent
MODEL_NAMES = tuple(MODEL_CONFIGS)
D, T = DATA_DEFAULTS, TRAIN_DEFAULTS

# The research probes of the inter-patient rounds left the product after their results were
# recorded (docs/lab/README.md). A checkpoint or report that used one is refused with this tag,
# whose commit still runs them.
LAB_TAG = "lab-rounds-1-18"
REMOVED = {"adapt_norm": 0.0, "adapt_stats": "both", "adapt_prior": 0.0, "adapt_classes": "", "cv_offsets": False,
           "template_from": "all", "template_mode": "channel", "rr_hidden": 0, "feature_drop": 0.0,
           "label_smoothing": 0.0}
OBSOLETE = {"num_workers", "coord", "no_stratified"}  # gone without changing any result (coord: --model-set)


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a training or evaluation run. Field names are the config-file keys."""
    # essentials
    model: str = T["model"]
    split: str = T["split"]
    epochs: int = T["epochs"]
    batch_size: int = T["batch_size"]
    lr: float = T["lr"]
    seed: int = T["seed"]
    device: str = T["device"]
    threads: int | None = None
    # data and inputs (utils.PreprocConfig)
    root: str = D["root"]                   # the MIT-BIH folder; downloaded when missing
    no_download: bool = False               # missing records fail instead
    cache: bool = False                     # keep the preprocessed beats as cache_<key>.npz
    fs: int = D["fs"]                       # Hz the records must have (no resampling)
    segment_sec: float = D["segment_sec"]   # the beat window, centred on the R peak
    normalize: str = D["normalize"]         # per window, without the template: zscore | minmax | none
    classes: str = D["classes"]             # label scheme: seed4 | aami5
    rr: bool = False                        # the per-beat RR features join the model's head ...
    rr_features: str = D["rr_features"]     # ... this set of them: local | sequence
    template: bool = D["template"]          # the running median beat as a 2nd channel
    second_lead: bool = D["second_lead"]    # the record's other signal as more channels
    # training (engine.FitOptions)
    weight_decay: float = T["weight_decay"]  # AdamW's
    patience: int = T["patience"]           # early stopping: epochs without a validation macro-F1 gain
    focal: bool = False                     # focal loss instead of cross-entropy ...
    focal_gamma: float = T["focal_gamma"]   # ... with this gamma
    class_weights: str | None = None        # loss weights: inverse | sqrt of the class frequencies, or None
    patient_balance: float = T["patient_balance"]  # within a class, a beat weighs n_(record, class) ** -P
    template_swap: float = T["template_swap"]  # share of training beats moved onto another beat's template
    augment: bool = False                   # R-peak jitter, amplitude, baseline wander, noise
    ema_epochs: float = T["ema_epochs"]     # > 0: a moving average of the weights over about this many epochs
    ensemble: int = T["ensemble"]           # models averaged
    model_set: tuple = ()                   # ((key, value), ...): the model's config.py settings overridden
    # protocol
    train_recs: tuple | None = None
    val_recs: tuple | None = None
    test_recs: tuple | None = None
    class_limit: int | None = None
    cv: int | None = None
    cv_only: bool = False
    # outputs and modes
    out_dir: str = T["out_dir"]
    resume: str | None = None
    eval_only: str | None = None
    bootstrap: int = T["bootstrap"]
    minutes: float = T["minutes"]     # --split patient-specific: the calibration minutes of each record
    quiet: bool = False
    config: str | None = None         # the --config file the run read, if any
    # what the split's preset file set (no flag or --config file overrode it): printed, not a setting
    applied: tuple = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready (what checkpoints and reports store as "args")."""
        d = dataclasses.asdict(self)
        del d["applied"]
        d["model_set"] = [list(kv) for kv in self.model_set]
        for k in ("train_recs", "val_recs", "test_recs"):
            d[k] = None if d[k] is None else list(d[k])
        return d

    def preproc(self):
        """The utils.PreprocConfig of this run's inputs."""
        from utils import PreprocConfig  # scipy: not needed to parse a command line
        return PreprocConfig(fs=self.fs, segment_sec=self.segment_sec, classes=self.classes,
                             normalize=self.normalize, rr_features=self.rr_features, template=self.template,
                             second_lead=self.second_lead)

    def data_kwargs(self) -> dict:
        """The keyword arguments of dataset.load_split that the data settings give."""
        explicit = ({"train": list(self.train_recs), "val": list(self.val_recs), "test": list(self.test_recs)}
                    if self.train_recs else None)
        return dict(explicit=explicit, class_limit=self.class_limit, use_cache=self.cache,
                    download=not self.no_download, cv=self.cv)

    def model_spec(self, preproc, num_classes: int) -> dict:
        """models.create_from_spec's argument: the model, its inputs and outputs (the data's), and
        its settings (config.py's, with --model-set on top). Every feature set but 'local' is
        standardised inside the model (rr_norm); 'local' keeps its original treatment."""
        return dict(name=self.model, num_classes=num_classes, rr_dim=preproc.rr_dim if self.rr else 0,
                    fs=preproc.fs, in_channels=preproc.channels,
                    rr_norm=self.rr and preproc.rr_features != "local",
                    model_config={**MODEL_CONFIGS[self.model], **dict(self.model_set)})


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig) if f.name != "applied"}
DEFAULTS = RunConfig().to_dict()


# ----------------------------------------------------------------------------------------------
# The parser
# ----------------------------------------------------------------------------------------------

def _setting(text: str) -> tuple[str, object]:
    """'channels=48,72,96' -> ('channels', (48, 72, 96)): a Python literal (lists become tuples,
    as in config.py), else the text itself ('rnn=lstm' -> 'lstm')."""
    import ast
    key, eq, value = text.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        v = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        v = value.strip()
    return key.strip(), tuple(v) if isinstance(v, list) else v


class _RR(argparse.Action):
    """--rr [SET]: the per-beat features on (with SET, that set), --rr off: without them."""

    def __call__(self, parser, ns, value, option_string=None):
        if value == "off":
            setattr(ns, "rr", False)
            return
        setattr(ns, "rr", True)
        if value not in (None, "on"):
            setattr(ns, "rr_features", value)


class _Focal(argparse.Action):
    """--focal [GAMMA]: focal loss, with gamma GAMMA."""

    def __call__(self, parser, ns, value, option_string=None):
        setattr(ns, "focal", True)
        if value is not None:
            setattr(ns, "focal_gamma", value)


def _preset_note(key: str) -> str:
    """'; interpatient: X' where a split's preset file sets `key`."""
    out = ""
    for split in SPLIT_PRESETS:
        v = preset(split).get(key)
        if v is not None:
            out += f"; {split}: {({True: 'on', False: 'off'}.get(v, v) if isinstance(v, bool) else v)}"
    return out


def build_parser() -> argparse.ArgumentParser:
    """The CLI, in groups a user can scan. It sets no defaults (RunConfig has them, the help
    says them): the namespace holds exactly the flags given."""
    p = CliParser(prog="trainer.py", description="Train (or evaluate) a lightweight ECG beat classifier on MIT-BIH. "
                  "Every setting can also come from a --config file; docs/OPTIONS.md lists them all.",
                  argument_default=argparse.SUPPRESS, allow_abbrev=False)  # --epoch is a typo, not --epochs
    g = p

    def add(*flags, dest=None, **kw):  # the defaults live in RunConfig; the help says them
        g.add_argument(*flags, **({"dest": dest} if dest else {}), **kw)

    g = p.add_argument_group("essentials")
    add("--config", metavar="FILE", help="settings from a TOML file (experiments/*.toml) or from a report whose "
        "run to repeat; flags given here win (default: none)")
    add("--model", choices=MODEL_NAMES, help=f"architecture (default: {T['model']})")
    add("--split", choices=SPLIT_MODES, help="protocol: stratified (beat-wise, optimistic), random (record-wise), "
        f"interpatient (DS1 -> DS2, applies {SPLIT_PRESETS['interpatient']}), patient-specific (a model per record "
        f"from a common set and its first minutes, tested on the rest) (default: {T['split']})")
    add("--epochs", type=int, help=f"maximum epochs (default: {T['epochs']})")
    add("--batch-size", type=int, help=f"batch size; under torchrun the global batch (default: {T['batch_size']})")
    add("--lr", type=float, help=f"peak AdamW learning rate (default: {T['lr']})")
    add("--seed", type=int, help=f"seed for splits, initialisation and shuffling (default: {T['seed']})")
    add("--device", choices=("cuda", "cpu"), help=f"cuda falls back to cpu when absent (default: {T['device']})")
    add("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    g = p.add_argument_group("data and inputs")
    add("--root", help=f"folder with the MIT-BIH records; downloaded when missing (default: {D['root']})")
    add("--no-download", action="store_true", help="never download missing records: fail instead (default: off)")
    add("--cache", action="store_true", help="cache the preprocessed beats in the data folder (default: off)")
    add("--fs", type=int, help=f"sampling rate the records must have, Hz (default: {D['fs']})")
    add("--segment-sec", type=float, help="beat window in seconds, centred on the R peak (default: "
        f"{D['segment_sec']}{_preset_note('segment_sec')})")
    add("--classes", choices=sorted(CLASS_NAMES), help=f"label scheme (default: {D['classes']}{_preset_note('classes')})")
    add("--rr", nargs="?", action=_RR, choices=("on", "off", *RR_FEATURES), metavar="SET",
        help=f"per-beat RR features: 'local' (pre/post RR and their ratios to the local mean) or 'sequence' "
        f"(patient-relative: ratios to running means and medians, irregularity, beat-to-beat change); bare: "
        f"{D['rr_features']}; 'off' (default: off{_preset_note('rr_features')})")
    add("--template", action=argparse.BooleanOptionalAction, help="2nd input channel: the record's running median "
        f"beat (causal), beat and template on the template's scale (default: off{_preset_note('template')})")
    add("--second-lead", action="store_true", help="also the record's other signal (V1 in 40 of 48 records) as "
        "input channels (default: off)")
    g = p.add_argument_group("training")
    add("--weight-decay", type=float, help=f"AdamW weight decay (default: {T['weight_decay']})")
    add("--patience", type=int, help=f"early stopping: epochs without a validation macro-F1 gain (default: {T['patience']})")
    add("--focal", nargs="?", type=float, action=_Focal, metavar="GAMMA", help="focal loss instead of "
        f"cross-entropy; bare: gamma {T['focal_gamma']} (default: off)")
    add("--class-weights", nargs="?", const="inverse", choices=(*CLASS_WEIGHTINGS, "none"), help="loss weights: "
        "'inverse' class frequency (bare flag) or its 'sqrt' (default: none)")
    add("--augment", action="store_true", help="R-peak jitter, amplitude scaling, baseline wander, noise (default: off)")
    add("--ema-epochs", type=float, metavar="H", help="keep and evaluate a moving average of the weights over "
        f"about H epochs; 0 = off (default: {T['ema_epochs']})")
    add("--ensemble", type=int, metavar="K", help="train K models (seeds --seed, --seed + 10007, ...) and average "
        f"their probabilities (default: {T['ensemble']})")
    add("--model-set", action="append", type=_setting, metavar="KEY=VALUE", help="override a config.py setting of "
        "the model, e.g. channels=48,72,96 or coord=False; repeatable (default: none)")
    g = p.add_argument_group("protocol")
    add("--no-stratified", action="store_true", help="the same as --split random (default: off)")
    add("--train-recs", nargs="+", help="explicit training records; with --val-recs and --test-recs they replace "
        "--split's parts (default: none)")
    add("--val-recs", nargs="+", help="explicit validation records (default: none)")
    add("--test-recs", nargs="+", help="explicit test records (default: none)")
    add("--class-limit", type=int, help="cap each class of the training part at N beats (default: no cap)")
    add("--cv", type=int, metavar="K", help="inter-patient: choose the epochs by K patient-grouped folds inside "
        "DS1, then train on DS1 and test DS2 once (default: off)")
    add("--cv-only", action="store_true", help="with --cv: stop after the folds (cv_report_*.json); DS2 is not "
        "touched (default: off)")
    g = p.add_argument_group("output")
    add("--out-dir", help=f"where checkpoints and reports go (default: {T['out_dir']})")
    add("--resume", metavar="PATH", help="continue an interrupted run from its .last.pt (default: none)")
    add("--eval-only", metavar="PATH", help="evaluate a checkpoint instead of training (default: none)")
    return p


# ----------------------------------------------------------------------------------------------
# Config files
# ----------------------------------------------------------------------------------------------

_PRESETS: dict[str, dict] = {}


def preset(split: str) -> dict:
    """The settings a split's preset file applies ({} for a split without one)."""
    if split not in SPLIT_PRESETS:
        return {}
    if split not in _PRESETS:
        _PRESETS[split] = read_config(ROOT / SPLIT_PRESETS[split])
    return _PRESETS[split]


def _check_removed(key: str, value, where: str) -> None:
    """A removed probe's setting is accepted at its 'off' value only."""
    if value not in (REMOVED[key], None, [], ()):
        raise UsageError(f"{where} uses {key}={value}, a research probe that was removed; it runs at git tag "
                         f"{LAB_TAG} (docs/lab/README.md)")


def _check_value(key: str, value, where: str):
    """A config-file value of field `key`, checked against the field's type -> the value to use."""
    if key not in FIELDS:
        raise UsageError(f"{where}: unknown setting {key!r}; valid settings: {', '.join(FIELDS)}")
    default, kind = DEFAULTS[key], FIELDS[key].type  # kind: the annotation's text, e.g. "int | None"
    if value is None or (key == "class_weights" and value == "none"):
        return None
    if key.endswith("_recs"):
        if not isinstance(value, list):
            raise UsageError(f"{where}: {key} must be a list of record names")
        return tuple(str(v) for v in value)
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind.startswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise UsageError(f"{where}: {key} = {value!r} has the wrong type (default: {default!r})")
    return value


def _settings(pairs) -> tuple:
    """Model settings as RunConfig keeps them: sorted ((key, value), ...), lists as tuples."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in items))


def _saved_model_set(args: dict) -> list[tuple]:
    """A saved run's model settings ((key, value), ...): its model_set, and its coord flag from
    before --model-set coord=, when CoordConv had a flag of its own."""
    pairs = [tuple(kv) for kv in args.get("model_set") or []]
    if args.get("coord") is not None:
        pairs.append(("coord", args["coord"]))
    return pairs


def read_config(path: str | os.PathLike) -> dict:
    """A config file -> {field: value}, and "model_set" -> {model: ((setting, value), ...)}.

    TOML: top-level keys are RunConfig fields; `[model_set.<model>]` tables hold model settings
    that apply when that model runs. JSON: a report or cv report (its "args": the resolved
    configuration of the run to repeat), or such a dict itself."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read --config {p} ({e.strerror or e})") from None
    where = f"--config {p}"
    if p.suffix.lower() == ".json":
        try:
            d = json.loads(text)
        except ValueError as e:
            raise UsageError(f"{where} is not valid JSON ({e})") from None
        d = dict(d.get("args", d)) if isinstance(d, dict) else None
        if not d:
            raise UsageError(f"{where} holds no run settings")
        pairs = _saved_model_set(d)
        d = {k: v for k, v in d.items() if k not in OBSOLETE | {"model_set"}}
        d["model_set"] = {d.get("model", T["model"]): dict(pairs)} if pairs else {}
    else:
        try:
            d = tomllib.loads(text.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{where} is not valid TOML ({e})") from None
    out: dict = {}
    for k, v in d.items():
        if k == "model_set":
            if not isinstance(v, dict) or any(not isinstance(t, dict) for t in v.values()):
                raise UsageError(f"{where}: model settings go in per-model tables, e.g. [model_set.liteecgnet] "
                                 "channels = [24, 36, 48]")
            bad = sorted(set(v) - set(MODEL_NAMES))
            if bad:
                raise UsageError(f"{where}: [model_set.{bad[0]}] names no model; models: {', '.join(MODEL_NAMES)}")
            out[k] = {m: _settings(t) for m, t in v.items()}
        elif k in REMOVED:
            _check_removed(k, v, where)
        else:
            out[k] = _check_value(k, v, where)
    return out


# ----------------------------------------------------------------------------------------------
# Command line -> RunConfig
# ----------------------------------------------------------------------------------------------

def _given(argv: list[str]) -> dict:
    """The fields the command line sets, with their values."""
    ns = vars(build_parser().parse_args(argv))
    if ns.pop("no_stratified", False):
        if ns.get("split", "random") != "random":
            raise UsageError(f"--no-stratified means --split random, but --split {ns['split']} was given")
        ns["split"] = "random"
    if "class_weights" in ns and ns["class_weights"] == "none":
        ns["class_weights"] = None
    for k in ("train_recs", "val_recs", "test_recs"):
        if k in ns:
            ns[k] = tuple(ns[k])
    if "model_set" in ns:
        keys = [k for k, _ in ns["model_set"]]
        if len(set(keys)) != len(keys):
            raise UsageError("--model-set names a setting twice")
        ns["model_set"] = tuple(ns["model_set"])
    return ns


def parse_args(argv: list[str] | None = None) -> tuple[RunConfig, set[str]]:
    """-> (the run's configuration, the fields the command line or --config file set).
    Lowest first: defaults, the split's preset, the --config file, the flags."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cli = _given(argv)
    file = read_config(cli["config"]) if "config" in cli else {}
    split = cli.get("split", file.get("split", T["split"]))
    model = cli.get("model", file.get("model", T["model"]))
    pre = preset(split)
    layers = [{k: v for k, v in d.items() if k != "model_set"} for d in (pre, file, cli)]
    settings = {k: v for d in layers for k, v in d.items()}
    given = set(layers[1]) | set(layers[2])
    mine = {**dict(file.get("model_set", {}).get(model, ())), **dict(cli.get("model_set", ()))}
    preset_ms = dict(pre.get("model_set", {}).get(model, ()))
    if mine:
        given.add("model_set")
    if not settings.get("template", D["template"]) and "template_swap" not in given:
        settings["template_swap"] = 0.0  # a preset's swap goes with its template
    applied = [(k, v) for k, v in layers[0].items() if k not in given and k != "split"]
    applied += [(f"model_set.{k}", v) for k, v in preset_ms.items() if k not in mine]
    return RunConfig(**settings, model_set=_settings({**preset_ms, **mine}), applied=tuple(applied)), given


def describe_preset(cfg: RunConfig) -> str | None:
    """One line naming what the split's preset applied, or None."""
    if not cfg.applied:
        return None
    shown = lambda v: "none" if v is None else {True: "on", False: "off"}[v] if isinstance(v, bool) else v  # noqa: E731
    return (f"preset {SPLIT_PRESETS[cfg.split]}: " + ", ".join(f"{k}={shown(v)}" for k, v in cfg.applied)
            + " (a flag or --config file overrides any)")


def check_args(cfg: RunConfig) -> None:
    """Reject impossible values with one clear line (no torch: --model-set is checked by
    trainer.check_model_set when the run starts)."""
    for name in ("epochs", "batch_size", "patience", "ensemble"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    checks = [
        (cfg.lr > 0 and math.isfinite(cfg.lr), f"--lr must be a positive number, got {cfg.lr}"),
        (cfg.weight_decay >= 0, f"--weight-decay must be >= 0, got {cfg.weight_decay}"),
        (cfg.segment_sec > 0 and round(cfg.segment_sec * cfg.fs) >= 8,
         f"--segment-sec {cfg.segment_sec} at --fs {cfg.fs} gives {round(cfg.segment_sec * cfg.fs)} samples per "
         "beat; need at least 8"),
        (cfg.fs > 0, f"--fs must be positive, got {cfg.fs}"),
        (cfg.class_limit is None or cfg.class_limit >= 1, f"--class-limit must be >= 1, got {cfg.class_limit}"),
        (cfg.threads is None or cfg.threads >= 1, f"--threads must be >= 1, got {cfg.threads}"),
        (0 <= cfg.template_swap <= 1, f"template_swap must be a number in [0, 1], got {cfg.template_swap}"),
        (not cfg.template_swap or cfg.template, "template_swap moves beats between templates: add --template"),
        (0 <= cfg.patient_balance <= 1, f"patient_balance must be a number in [0, 1], got {cfg.patient_balance}"),
        (0 <= cfg.ema_epochs < math.inf, f"--ema-epochs must be a number >= 0, got {cfg.ema_epochs}"),
        (cfg.focal_gamma >= 0, f"--focal gamma must be >= 0, got {cfg.focal_gamma}"),
        (cfg.bootstrap >= 0, f"bootstrap must be >= 0, got {cfg.bootstrap}"),
        (cfg.model in MODEL_NAMES, f"unknown model {cfg.model!r}; choose one of {', '.join(MODEL_NAMES)}"),
        (cfg.split in SPLIT_MODES, f"unknown split {cfg.split!r}; choose one of {', '.join(SPLIT_MODES)}"),
        (cfg.classes in CLASS_NAMES, f"unknown classes {cfg.classes!r}; choose one of {', '.join(CLASS_NAMES)}"),
        (cfg.normalize in NORMALIZATIONS, f"unknown normalize {cfg.normalize!r}; choose one of "
         f"{', '.join(NORMALIZATIONS)}"),
        (cfg.rr_features in RR_FEATURES, f"unknown rr_features {cfg.rr_features!r}; choose one of "
         f"{', '.join(RR_FEATURES)}"),
        (cfg.class_weights in (None, *CLASS_WEIGHTINGS), f"unknown class_weights {cfg.class_weights!r}; choose "
         f"one of {', '.join(CLASS_WEIGHTINGS)} or none"),
        (cfg.device in ("cuda", "cpu"), f"unknown device {cfg.device!r}; choose cuda or cpu"),
        (not cfg.second_lead or not cfg.augment, "--second-lead and --augment do not combine (augmentation "
         "assumes one beat channel)"),
        (bool(cfg.train_recs) == bool(cfg.val_recs) == bool(cfg.test_recs) or
         (cfg.split == "patient-specific" and not cfg.train_recs and not cfg.val_recs),
         "--train-recs, --val-recs and --test-recs go together: give all three (patient-specific: --test-recs alone)"),
        (cfg.minutes > 0 and math.isfinite(cfg.minutes), f"minutes must be a positive number, got {cfg.minutes}"),
        (not cfg.cv_only or cfg.cv, "--cv-only needs --cv K"),
        (cfg.cv is None or (cfg.cv >= 2 and cfg.split == "interpatient" and not cfg.train_recs),
         "--cv K needs K >= 2 and --split interpatient (it runs inside DS1), without explicit record lists"),
        (not (cfg.resume and cfg.eval_only), "--resume and --eval-only exclude each other"),
        (cfg.out_dir.strip() != "", "--out-dir is empty: give a folder"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def from_saved(cfg: RunConfig, given: set[str], saved: dict, what: str) -> RunConfig:
    """The run configuration of a checkpoint (`saved`: its "args"), with the settings given now
    winning; a --model / --classes that contradicts it, or a removed probe it used, is refused."""
    for key in ("model", "classes"):
        if key in given and getattr(cfg, key) != saved.get(key):
            raise UsageError(f"{what} holds a {saved.get('model')}/{saved.get('classes')} checkpoint, but "
                             f"--{key} {getattr(cfg, key)} was given")
    for key in REMOVED:
        _check_removed(key, saved.get(key), what)
    if saved.get("rr_features", D["rr_features"]) not in RR_FEATURES:
        raise UsageError(f"{what} uses the per-beat feature set {saved['rr_features']!r}, which was removed; it "
                         f"runs at git tag {LAB_TAG} (docs/lab/README.md)")
    old = {k: v for k, v in saved.items() if k in FIELDS and k != "model_set"}
    if isinstance(old.get("class_weights"), bool):  # checkpoints from before the modes: a flag
        old["class_weights"] = "inverse" if old["class_weights"] else None
    old.update({k: tuple(old[k]) for k in ("train_recs", "val_recs", "test_recs") if old.get(k) is not None})
    now = {k: getattr(cfg, k) for k in given | {"resume", "eval_only", "config"} if k in FIELDS}
    return RunConfig(**{**old, "model_set": _settings(_saved_model_set(saved)), **now})


def saved_run(saved: dict, path: str | os.PathLike, root: str | None = None) -> RunConfig:
    """The configuration to evaluate a checkpoint's run again (`saved`: its "args"; a tool that
    rebuilds its data, e.g. export.py, calibrate.py), --root winning when given; the defaults for
    a checkpoint without one (not written by trainer.py)."""
    cfg, given = parse_args(["--eval-only", str(path), *(["--root", root] if root else [])])
    return from_saved(cfg, given, saved, str(path)) if saved else cfg


# ----------------------------------------------------------------------------------------------
# Where outputs go
# ----------------------------------------------------------------------------------------------

def check_writable(folder: str | os.PathLike, what: str = "--out-dir") -> Path:
    """Refuse (one line) an output folder this process cannot write, without creating it: the
    write is tried (cli.try_write) in the folder or, when it does not exist yet, in the nearest
    existing parent. -> the folder (created later, when the first file is written)."""
    p = Path(folder)
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"cannot write to {what} {p}: {probe} is not a folder")
    try:
        try_write(probe)
    except OSError as e:
        raise UsageError(f"cannot write to {what} {p} ({e.strerror or e})") from None
    return p


# ----------------------------------------------------------------------------------------------
# The option reference (docs/OPTIONS.md) and the preflight check
# ----------------------------------------------------------------------------------------------

def option_reference() -> str:
    """docs/OPTIONS.md: every flag (from the parser) and every config-file setting (RunConfig)."""
    p = build_parser()
    lines = ["# trainer.py options", "",
             "Generated from the parser by `python options.py reference > docs/OPTIONS.md` (a test keeps it in "
             "sync). Every setting is also a key of a `--config` TOML file (experiments/*.toml); settings without "
             "a flag are set there.", ""]
    flagged = set()
    for group in p._action_groups:
        acts = [a for a in group._group_actions if a.dest != "help"]
        if not acts:
            continue
        lines += [f"## {group.title}", "", "| flag | meaning |", "|---|---|"]
        for a in acts:
            flagged.add(a.dest)
            flag = ", ".join(f"`{s}`" for s in a.option_strings)
            lines.append(f"| {flag} | {(a.help or '').replace('|', '/')} |")
        lines.append("")
    flagged |= {"rr_features", "focal_gamma"}  # set through --rr SET and --focal GAMMA
    rest = [k for k in FIELDS if k not in flagged]
    lines += ["## Config-file settings without a flag", "", "| key | default | meaning |", "|---|---|---|"]
    meaning = {"normalize": f"per-window normalisation without --template: {', '.join(NORMALIZATIONS)}",
               "patient_balance": "within a class, weight a training beat by n ** -P, n = its record's beats of "
               "that class (class totals kept): patients count more evenly",
               "template_swap": "with --template: move this share of training beats onto the template of another "
               "beat of the batch (mostly another patient's)",
               "bootstrap": "bootstrap resamples for the confidence intervals; 0 = off",
               "quiet": "no progress bars (they are off anyway when the output is not a terminal)",
               "minutes": "--split patient-specific: each record's first minutes (R peak before) train its model; "
               "the rest is its test part",
               "split": "", "config": ""}
    for k in rest:
        if meaning.get(k, None) == "":
            continue
        lines.append(f"| `{k}` | `{DEFAULTS[k]}`{_preset_note(k).replace('; ', ' (') + ')' if _preset_note(k) else ''} | "
                     f"{meaning.get(k, '')} |")
    return "\n".join(lines) + "\n"


def preflight(argv: list[str], prog: str | None = None) -> None:
    """trainer.py's first step, before torch is imported: --help prints and exits 0, a bad
    command line prints one line and exits 2."""
    if "-h" in argv or "--help" in argv:
        build_parser().print_help()
        sys.exit(0)
    try:
        check_args(parse_args(argv)[0])
    except UsageError as e:
        print(f"{prog or Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    # python options.py reference         -> docs/OPTIONS.md
    # python options.py check ARGS...     -> exit 0, or one line and exit 2 (run_all_models.sh)
    if sys.argv[1:2] == ["reference"]:
        sys.stdout.write(option_reference())
    elif sys.argv[1:2] == ["check"]:
        preflight(sys.argv[2:], "trainer.py")
    else:
        print("usage: python options.py reference | check ARGS...", file=sys.stderr)
        sys.exit(2)
