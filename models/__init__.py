"""Model registry: the seven architectures by name, built from config.py's dicts.

    model = create_model("liteecgnet", num_classes=4, rr_dim=0, dropout=0.2)

Every model maps (B, 1, T) float32 beat windows (any T, 1-4 s at 360 Hz) to (B, num_classes)
logits and subclasses `models.common.BeatClassifier`.
"""

from __future__ import annotations

import inspect

import torch.nn as nn

from config import MODEL_CONFIGS

from .BiRCNN import BiRCNN
from .common import BeatClassifier
from .DeepECGNet import DeepECGNet
from .ECGNet import ECGNet
from .LDCNN import LDCNN
from .LiteECGNet import LiteECGNet
from .ResNet import ResNet
from .SE_ECGNet import SE_ECGNet

# name -> constructor, in README order
MODELS: dict[str, type[BeatClassifier]] = {
    "liteecgnet": LiteECGNet,
    "ecgnet": ECGNet,
    "se_ecgnet": SE_ECGNet,
    "bircnn": BiRCNN,
    "resnet": ResNet,
    "deepecgnet": DeepECGNet,
    "ldcnn": LDCNN,
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


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
    return names - {"self", "num_classes", "rr_dim"}


def create_model(name: str, num_classes: int = 4, rr_dim: int = 0, **overrides) -> nn.Module:
    """Build model `name` from config.MODEL_CONFIGS[name] merged with `overrides`."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    cls = MODELS[name]
    cfg = {**MODEL_CONFIGS.get(name, {}), **overrides}
    unknown = sorted(set(cfg) - _accepted(cls))
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(unknown)}; "
                         f"its settings are: {', '.join(sorted(_accepted(cls)))}")
    return cls(num_classes=num_classes, rr_dim=rr_dim, **cfg)


__all__ = ["MODELS", "MODEL_NAMES", "BeatClassifier", "create_model"]
