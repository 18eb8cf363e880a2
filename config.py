"""Configuration: one plain dict per model plus the data and training defaults.

`models.create_model(name, **overrides)` merges the model's dict below with any overrides;
trainer.py's argparse defaults come from TRAIN_DEFAULTS / DATA_DEFAULTS so the help strings,
the README and the code cannot drift apart.
"""

# --- data / preprocessing defaults (see utils.PreprocConfig) -----------------------------------
DATA_DEFAULTS = {
    "root": "./data/mitbih",
    "fs": 360,              # Hz; MIT-BIH is recorded at 360 Hz
    "segment_sec": 2.0,     # window length centred on the R peak
    "classes": "seed4",     # label scheme: seed4 | aami5
    "normalize": "zscore",  # per-window normalisation: zscore | minmax | none
}

# --- training defaults ------------------------------------------------------------------------
TRAIN_DEFAULTS = {
    "model": "liteecgnet",
    "epochs": 30,
    "batch_size": 256,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "patience": 7,
    "seed": 1337,
    "device": "cuda",
    "split": "stratified",
    "out_dir": "data/records",
}

# --- model configurations (BEGIN MODEL CONFIGS; owned by models/) -----------------------------
# (filled in by the models work: LITEECGNET_CONFIG = {...} etc. and MODEL_CONFIGS mapping)
# --- (END MODEL CONFIGS) ----------------------------------------------------------------------
