"""Model registry: the seven architectures by name, built from config.py's dicts.

    model = create_model("liteecgnet", num_classes=4, rr_dim=0, dropout=0.2)

Every model maps (B, 1, T) float32 beat windows (any T, 1-4 s at 360 Hz) to (B, num_classes)
logits and subclasses `models.common.BeatClassifier`. A model registers itself with
`@register("name")` in its own file; its settings live in config.MODEL_CONFIGS, whose order is
the order the suite lists models in. Adding one touches its file and config.py only.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import torch.nn as nn

from beats import CLASS_NAMES
from config import DATA_DEFAULTS, MODEL_CONFIGS

from .common import MODELS, BeatClassifier, Ensemble, ModelIO

for _m in pkgutil.iter_modules(__path__):  # every model file registers its class on import
    importlib.import_module(f"{__name__}.{_m.name}")

_missing = sorted(set(MODEL_CONFIGS) ^ set(MODELS))
if _missing:
    raise ImportError(f"models and config.MODEL_CONFIGS disagree on: {', '.join(_missing)} "
                      "(each model needs a registered class and a config dict)")
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_CONFIGS)  # in config.py's order


def _accepted(cls: type) -> set[str]:
    """Keyword arguments a model constructor accepts (following **kw up its base classes)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is BeatClassifier:
            break
        params = inspect.signature(klass.__init__).parameters
        names |= {p for p, v in params.items() if v.kind is v.POSITIONAL_OR_KEYWORD or v.kind is v.KEYWORD_ONLY}
        if not any(v.kind is v.VAR_KEYWORD for v in params.values()):
            break
    return names - {"self", "io"}


def create_model(name: str, num_classes: int = len(CLASS_NAMES[DATA_DEFAULTS["classes"]]),
                 rr_dim: int = 0, fs: float = DATA_DEFAULTS["fs"], in_channels: int = 1,
                 rr_norm: bool = False, members: int = 1, **overrides) -> nn.Module:
    """Build model `name` from config.MODEL_CONFIGS[name] merged with `overrides`; the other
    arguments describe its inputs and outputs (models.common.ModelIO: `fs` scales the CoordConv
    time coordinates to seconds, `in_channels` 2 adds the template channel, `rr_norm`
    standardises the per-beat features inside the model). `members` > 1: an Ensemble of that
    many, each freshly initialised."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    cls = MODELS[name]
    cfg = {**MODEL_CONFIGS[name], **overrides}
    unknown = sorted(set(cfg) - _accepted(cls))
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(unknown)}; "
                         f"its settings are: {', '.join(sorted(_accepted(cls)))}")
    io = ModelIO(num_classes=num_classes, rr_dim=rr_dim, fs=float(fs), in_channels=in_channels, rr_norm=rr_norm)
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    if members > 1:
        return Ensemble([cls(io, **cfg) for _ in range(members)])
    return cls(io, **cfg)


def create_from_spec(spec: dict, members: int = 1) -> nn.Module:
    """create_model from a run's spec (options.RunConfig.model_spec): the model's name, its inputs
    and outputs, and its settings (`model_config`)."""
    io = {k: v for k, v in spec.items() if k not in ("name", "model_config")}
    return create_model(spec["name"], **io, members=members, **spec["model_config"])


__all__ = ["MODELS", "MODEL_NAMES", "BeatClassifier", "Ensemble", "ModelIO", "create_from_spec", "create_model"]
