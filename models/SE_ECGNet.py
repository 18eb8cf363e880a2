"""SE-ECGNet: ECGNet with squeeze-and-excitation in every residual block.

The multi-scale ECGNet of Murugesan et al. 2018 (see ECGNet.py) with the channel attention of
Hu et al. 2018, "Squeeze-and-Excitation Networks": each residual block rescales its channels
by a gate computed from their global average before the skip connection is added.
"""

from __future__ import annotations

from .common import ModelIO, register
from .ECGNet import ECGNet


@register("se_ecgnet")
class SE_ECGNet(ECGNet):
    """ECGNet whose residual blocks carry squeeze-and-excitation (se_reduction >= 1)."""

    def __init__(self, io: ModelIO, *, se_reduction: int, **kw):
        if se_reduction < 1:
            raise ValueError("se_ecgnet needs se_reduction >= 1 (that is what makes it SE)")
        super().__init__(io, se_reduction=se_reduction, **kw)
