"""What a beat is to LiteECG: annotation symbols, label schemes, key classes, per-beat features.

The one place for these facts; utils, metrics, predict, export and summarize read them here.
Pure Python, no imports beyond the standard library.
"""
from __future__ import annotations

from typing import Sequence

# WFDB's QRS (beat) annotation codes, i.e. the codes for which the WFDB library's isqrs() is
# true: N L R B A a J S V r F e j n E / f Q ?. Everything else in an .atr file ('+' rhythm,
# '~' noise, '|' artifact, '"' comment, 'x' non-conducted P, '!' flutter wave, '[' ']' ...)
# is not a beat and never becomes a sample.
BEAT_SYMBOLS: frozenset[str] = frozenset("NLRBAaJSVrFejnE/fQ?")

# label scheme -> class names, in class-index order
CLASS_NAMES: dict[str, list[str]] = {
    "seed4": ["N", "SVEB", "VEB", "Other"],
    "aami5": ["N", "S", "V", "F", "Q"],
}
AAMI5 = CLASS_NAMES["aami5"]


def _scheme(groups: Sequence[str], rest: int | None) -> dict[str, int]:
    """Map every beat symbol to a class index; symbols not listed go to class `rest`."""
    table = {s: i for i, g in enumerate(groups) for s in g}
    if rest is not None:
        table.update({s: rest for s in BEAT_SYMBOLS if s not in table})
    return table


# label scheme -> {beat symbol: class index}
LABEL_SCHEMES: dict[str, dict[str, int]] = {
    # The product's original 4 classes: N, supraventricular, ventricular, every other beat.
    "seed4": _scheme(["NLRej", "AaJS", "VE"], rest=3),
    # AAMI EC57. B, n, r and ? do not occur in MIT-BIH; they follow EC57's grouping
    # (B->N, n->S, r->V, ?->Q) so that other databases label sensibly.
    "aami5": _scheme(["NLRejB", "AaJSn", "VEr", "F", "/fQ?"], rest=None),
}

# The two classes EC57 and the literature report on: supraventricular (S) and ventricular (V)
# ectopic beats, by their name in each scheme.
KEY_CLASSES: dict[str, dict[str, str]] = {
    "seed4": {"S": "SVEB", "V": "VEB"},
    "aami5": {"S": "S", "V": "V"},
}

# Output symbol of each class name: one representative MIT-BIH code, so that any WFDB tool can
# read predicted labels.
CLASS_SYMBOL: dict[str, str] = {"N": "N", "S": "A", "SVEB": "A", "V": "V", "VEB": "V",
                                "F": "F", "Q": "Q", "Other": "Q"}

# Per-beat feature sets (features.py computes them, utils.beat_inputs gives them to the models):
# set name -> {column name: meaning}, in column order. A set's width is len() of its dict.
_PATIENT = {  # relative to the patient's own rhythm (dimensionless; from the beat's past and its own post-RR)
    "pre_long": "pre-RR / mean RR of the past 5 min (de Chazal's average RR, made causal)",
    "post_long": "post-RR / the same long-term mean",
    "pre_local": "pre-RR / mean of the last 10 RR intervals (this beat's pre-RR included)",
    "post_local": "post-RR / the same local mean",
    "post_pre": "post-RR / pre-RR (compensatory pause)",
    "local_long": "local mean / long-term mean (rate change)",
    "irr_cv": "std / mean of the last 32 RR intervals (irregularity: atrial fibrillation is high)",
    "irr_mad": "median |dRR| / mean over the last 32 RR intervals (irregularity)",
}
_MEDIANS = {  # the same ratios to running *medians*, which a run of ectopic beats or a pause moves less
    "pre_long_med": "pre-RR / median RR of the past 5 min",
    "post_long_med": "post-RR / the same long-term median",
    "pre_local_med": "pre-RR / median of the last 10 RR intervals (this beat's pre-RR included)",
    "post_local_med": "post-RR / the same local median",
    "local_long_med": "local median / long-term median (rate change)",
}
_CHANGE = {  # how abruptly the rhythm changes at this beat and the one before (against sinus arrhythmia's drift)
    "pre_prev": "pre-RR / the previous beat's pre-RR (abruptness)",
    "prev_pre_local": "the previous beat's pre-RR / its local mean (was the previous beat early?)",
    "prev_pre_prev": "the previous beat's pre-RR / the pre-RR before it",
}
RR_FEATURES: dict[str, dict[str, str]] = {
    # the original --rr inputs: seconds and ratios to the local rhythm
    "local": {
        "pre_rr_s": "pre-RR (s)",
        "post_rr_s": "post-RR (s)",
        "pre_rr_local": "pre-RR / mean of the 10 RR intervals ending at this beat",
        "post_rr_local": "post-RR / the same mean",
    },
    # patient-relative context, standardised inside the model (the inter-patient preset's)
    "sequence": {**_PATIENT, **_MEDIANS, **_CHANGE},
}


def rr_dim(feature_set: str) -> int:
    """Width of a per-beat feature set."""
    return len(RR_FEATURES[feature_set])


def scheme_of(class_names: Sequence[str]) -> str | None:
    """The label scheme whose class names these are, or None."""
    return next((s for s, names in CLASS_NAMES.items() if list(class_names) == names), None)


def key_class(class_names: Sequence[str], key: str) -> str | None:
    """Name of key class `key` ("S" or "V") among `class_names`, or None when it has none."""
    names = list(class_names)
    return next((k[key] for k in KEY_CLASSES.values() if k[key] in names), None)
