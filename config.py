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
    "rr_features": "local",  # per-beat feature set given with --rr (beats.RR_FEATURES): local | patient | robust | sequence | sinus
    "template": False,       # 2nd input channel: the record's running median beat (features.py)
    "template_beats": 256,   # the template is the median of this many previous beats ...
    "template_every": 64,    # ... recomputed every this many beats
    "template_from": "all",  # which of those beats: all | sinus (pre-RR in the recent upper quantile; features.TEMPLATE_FROM)
    "second_lead": False,    # also the record's other signal (V1 in 40 of the 48 records) as input channels
}
# Samples per beat window at the defaults (720): what profiling and benchmarks measure at.
DEFAULT_WINDOW = int(round(DATA_DEFAULTS["segment_sec"] * DATA_DEFAULTS["fs"]))

# --- training defaults ------------------------------------------------------------------------
TRAIN_DEFAULTS = {
    "model": "liteecgnet",
    "epochs": 30,
    "batch_size": 256,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "patience": 7,
    "focal_gamma": 2.0,
    "label_smoothing": 0.0,  # cross-entropy target 1 - eps on the class, eps spread over all (engine.Loss)
    "rr_hidden": 0,         # per-beat feature branch of the head (models.ModelIO)
    "feature_drop": 0.0,    # modality dropout of the waveform features (models.ModelIO)
    "template_mode": "channel",  # how the template reaches the model (models.ModelIO)
    "ema_epochs": 0.0,      # > 0: keep a moving average of the weights over ~this many epochs (engine.WeightAverage)
    "ensemble": 1,          # models averaged (trainer.py --ensemble; models.Ensemble)
    "patient_balance": 0.0,  # > 0: within a class, a beat weighs n_(record, class) ** -p (engine.patient_balance_weights)
    "adapt_norm": 0.0,      # > 0 (--cv-only probe): BN statistics per record from its earlier beats, blocks of s (engine.adapted_predict)
    "adapt_stats": "both",  # which BN statistics --adapt-norm re-estimates: both | mean
    "adapt_prior": 0.0,     # > 0 (--cv-only probe): class priors per record from its earlier beats (engine.prior_adapted)
    "adapt_classes": "",    # with adapt_prior: comma-separated classes whose prior adapts; "" = all
    "template_swap": 0.0,   # > 0: share of training beats moved onto another beat's template (engine.swap_templates)
    "bootstrap": 1000,      # bootstrap resamples for confidence intervals
    "seed": 1337,
    "device": "cuda",
    "split": "stratified",
    "out_dir": "data/records",
}

# --- split presets: defaults that change with --split (flags given on the command line win) ----
# Inter-patient: the inputs chosen by cross-validation inside DS1 (docs/RESULTS.md, "What each input
# and choice moved"; round by round in docs/inter_patient_rounds.md):
# the running template channel, patient-relative RR standardised in the model (the "sequence" set:
# ratios to running means and medians plus the beat-to-beat RR change; over seeds 1337/1/2 mean
# pooled macro-F1 0.428 against 0.421 for "robust", the previous preset), a 1.2 s window (the
# neighbouring beats, i.e. the training patients' rhythms, mostly out of view), AAMI classes and
# no class weights (DS1 cross-validation: none 0.436, sqrt 0.417, inverse 0.373 pooled macro-F1),
# but patients evened out within each class (--patient-balance 0.5: DS1 has most of its S beats in
# one patient, 209; over seeds 1337/1/2 mean pooled macro-F1 0.432 against 0.428 without), and half
# the training beats moved onto another patient's template (--template-swap 0.5: a class should not
# be tied to the few training patients' usual beat shapes; over seeds 1337/1/2 mean pooled macro-F1
# 0.449 against 0.432 without; ecgnet 0.436 against 0.431 and ldcnn 0.462 against 0.448, so they keep it
# too); the template stays the median of all previous beats (`--template-from sinus`, only beats that
# were not early: six seeds, mean 0.450 against 0.441, but lower at two of them; on eight fresh
# seeds fixed in advance 0.436 against 0.439, t -0.62, so not adopted); one lead (`--second-lead`,
# V1 as well: 0.427 against 0.439 on eight fresh seeds, lower at seven) and liteecgnet's own width
# (`--model-set channels=48,72,96`: 0.427, lower at seven) stay as they are, and so does the
# training's regularisation (weight decay 0.05: 0.4385, dropout 0.3: 0.4387, label smoothing 0.1:
# 0.408, against 0.4389 on the same eight seeds). Two liteecgnets averaged (--ensemble 2) scored 0.445
# on those seeds (one-sided paired p 0.017), but the preset stays one model: it costs twice as much.
# `--template-swap 0` gives the previous preset, `--template-swap 0
# --patient-balance 0` the one before; `--rr-features robust` or `patient` the ones before that;
# `--no-template --rr-features local --segment-sec 2 --class-weights sqrt` the earlier inputs.
# "coord" maps a model to its CoordConv setting under the preset; models not named keep their
# config.py setting. bircnn trains without the time coordinates (DS1 cross-validation, seeds
# 1337/1/2: mean pooled macro-F1 0.431 without, 0.422 with); liteecgnet, ldcnn, ecgnet, resnet,
# se_ecgnet and deepecgnet (0.427 with, 0.413 without) were measured inside DS1 too and keep them
# (docs/RESULTS.md).
SPLIT_PRESETS = {
    "interpatient": {"classes": "aami5", "rr": True, "rr_features": "sequence", "template": True,
                     "segment_sec": 1.2, "patient_balance": 0.5, "template_swap": 0.5, "coord": {"bircnn": False}},
}

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
