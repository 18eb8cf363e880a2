"""Configuration: one plain dict per model plus the data and training defaults.

The one place for every default a user tunes. `models.create_model(name, **overrides)` merges
the model's dict below with any overrides (the model constructors have no defaults of their
own); utils.PreprocConfig and trainer.py's argparse read DATA_DEFAULTS / TRAIN_DEFAULTS, so the
help strings, the README and the code cannot drift apart.

Adding a model: its file in models/ (decorated with `@register("name")`) and its dict here,
added to MODEL_CONFIGS; the order of MODEL_CONFIGS is the order the suite lists models in.
"""

# --- data / preprocessing defaults (see utils.PreprocConfig) -----------------------------------
DATA_DEFAULTS = {
    "root": "./data/mitbih",
    "fs": 360,              # Hz; MIT-BIH is recorded at 360 Hz
    "segment_sec": 2.0,     # window length centred on the R peak
    "classes": "seed4",     # label scheme: seed4 | aami5
    "normalize": "zscore",  # per-window normalisation: zscore | minmax | none
    "band": (0.5, 40.0),    # Hz band-pass: baseline wander below, EMG/mains above
    "filter_order": 2,      # Butterworth order (doubled by the zero-phase forward-backward pass)
    # Lead choice by name: MLII when present (it is the *second* signal of record 114); records
    # 102 and 104 have no MLII, then V5 (the first signal of both), then the others.
    "lead_policy": ("MLII", "V5", "V2", "V1", "V4"),
    "rr_features": "local",  # per-beat feature set given with --rr (beats.RR_FEATURES): local | sequence
    "template": False,       # 2nd input channel: the record's running median beat (features.py)
    "template_beats": 256,   # the template is the median of this many previous beats ...
    "template_every": 64,    # ... recomputed every this many beats
    "second_lead": False,    # also the record's other signal (V1 in 40 of the 48 records) as input channels
}
# Samples per beat window at the defaults (720): what profiling and benchmarks measure at.
DEFAULT_WINDOW = int(round(DATA_DEFAULTS["segment_sec"] * DATA_DEFAULTS["fs"]))
NORMALIZATIONS = ("zscore", "minmax", "none")   # utils.NORMALIZERS implements them

# --- training defaults ------------------------------------------------------------------------
TRAIN_DEFAULTS = {
    "model": "liteecgnet",
    "epochs": 30,
    "batch_size": 256,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "patience": 7,
    "focal_gamma": 2.0,
    "ema_epochs": 0.0,      # > 0: keep a moving average of the weights over ~this many epochs (engine.WeightAverage)
    "ensemble": 1,          # models averaged (engine.fit_members; models.Ensemble)
    "patient_balance": 0.0,  # > 0: within a class, a beat weighs n_(record, class) ** -p (engine.patient_balance_weights)
    "template_swap": 0.0,   # > 0: share of training beats moved onto another beat's template (engine.swap_templates)
    "bootstrap": 1000,      # bootstrap resamples for confidence intervals
    "minutes": 5.0,         # --split patient-specific: each record's first minutes train its model (EC57's learning period)
    "seed": 1337,
    "device": "cuda",
    "split": "stratified",
    "out_dir": "data/records",
}
# dataset.SPLITTERS implements the first three; patient-specific trains a model per test record (patient.py)
SPLIT_MODES = ("stratified", "random", "interpatient", "patient-specific")
CLASS_WEIGHTINGS = {"inverse": 1.0, "sqrt": 0.5}          # --class-weights mode -> power of N / (C * n_c)

# --- split presets: experiment files that --split applies (a --config file or a flag wins) ----
# The inter-patient preset holds the inputs and settings chosen by cross-validation inside DS1;
# docs/lab/README.md says how, and which commit reproduces every round of that choice.
SPLIT_PRESETS = {"interpatient": "experiments/interpatient.toml",
                 "patient-specific": "experiments/patient_specific.toml"}

# --- model configurations (BEGIN MODEL CONFIGS; owned by models/) -----------------------------
# Constructor settings of each architecture (models/<Name>.py documents every key); the registry
# (models.create_model) merges overrides on top, and a checkpoint stores the merged dict.
LITEECGNET_CONFIG = {
    "stem_channels": 16, "stem_stride": 4, "stem_kernel": 3, "coord": True,
    "channels": (32, 48, 64), "strides": (2, 2, 2), "kernels": (3, 5, 7),
    "se": (False, True, True), "se_reduction": 4, "dropout": 0.1,
}
ECGNET_CONFIG = {
    "stem_channels": 32, "stem_stride": 4, "stem_kernel": 3, "coord": True,
    "branch_kernels": (3, 5, 9), "branch_channels": 16, "channels": (64, 96), "kernel": 5,
    "se_reduction": 0, "dropout": 0.2,
}
SE_ECGNET_CONFIG = {**ECGNET_CONFIG, "se_reduction": 4}
BIRCNN_CONFIG = {
    "stem_channels": 32, "stem_stride": 4, "stem_kernel": 3, "coord": True,
    "channels": (48, 64), "kernel": 5, "rnn": "gru", "hidden": 48, "rnn_layers": 1, "dropout": 0.2,
}
RESNET_CONFIG = {
    "stem_channels": 32, "stem_stride": 8, "stem_kernel": 3, "coord": True,
    "channels": (32, 48, 64, 96), "blocks": (2, 2, 2, 2), "kernel": 3, "dropout": 0.1,
}
DEEPECGNET_CONFIG = {
    "stem_channels": 32, "stem_stride": 4, "stem_kernel": 3, "coord": True, "d_model": 64,
    "conv_strides": (2, 2, 2), "kernel": 5, "heads": 4, "layers": 2, "ff_dim": 128,
    "attn_dropout": 0.0, "dropout": 0.1, "max_tokens": 512,
}
LDCNN_CONFIG = {
    "stem_channels": 16, "stem_stride": 4, "stem_kernel": 3, "coord": True,
    "channels": (32, 48, 64), "kernel": 5, "head_hidden": 64, "dropout": 0.2,
}
MODEL_CONFIGS = {
    "liteecgnet": LITEECGNET_CONFIG,
    "ecgnet": ECGNET_CONFIG,
    "se_ecgnet": SE_ECGNET_CONFIG,
    "bircnn": BIRCNN_CONFIG,
    "resnet": RESNET_CONFIG,
    "deepecgnet": DEEPECGNET_CONFIG,
    "ldcnn": LDCNN_CONFIG,
}
# --- (END MODEL CONFIGS) ----------------------------------------------------------------------
