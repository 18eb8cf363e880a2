"""ECGNet: multi-scale convolution branches feeding residual blocks.

After Murugesan et al. 2018, "ECGNet: Deep Network for Arrhythmia Classification" (IEEE
MeMeA): parallel convolutions with several kernel sizes look at the beat at several time scales
at once, their maps are concatenated and refined by residual blocks, then globally pooled.
Here the branches run after a 4x folding stem (see `PatchStem`), so a 9-tap branch spans 36
samples (100 ms, a QRS) and the whole net trains fast on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .common import BasicBlock, BeatClassifier, ConvBN, ModelIO, register


class MultiScale(nn.Module):
    """Parallel strided ConvBN branches with different kernel sizes, concatenated."""

    def __init__(self, c_in: int, c_branch: int, kernels: tuple[int, ...], stride: int = 2):
        super().__init__()
        self.branches = nn.ModuleList(ConvBN(c_in, c_branch, k, stride) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)  # (B, n * c_branch, T/stride)


@register("ecgnet")
class ECGNet(BeatClassifier):
    """PatchStem(+coords) -> parallel k=3/5/9 branches -> residual blocks -> global average pool."""

    def __init__(self, io: ModelIO, *, stem_channels: int,
                 stem_stride: int, stem_kernel: int, coord: bool, branch_kernels: tuple[int, ...],
                 branch_channels: int, channels: tuple[int, ...], kernel: int, se_reduction: int,
                 dropout: float):
        super().__init__(io, channels[-1], dropout=dropout)
        self.stem = self.patch_stem(stem_channels, stem_stride, stem_kernel, coord)
        self.multiscale = MultiScale(stem_channels, branch_channels, tuple(branch_kernels))
        blocks, c = [], branch_channels * len(branch_kernels)
        for c_out in channels:  # each residual block halves the sequence
            blocks.append(BasicBlock(c, c_out, kernel, 2, se_reduction))
            c = c_out
        self.blocks = nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 32, T/4)
        x = self.multiscale(x)  # (B, 48, T/8)
        x = self.blocks(x)  # (B, 96, T/32)
        return x.mean(-1)  # (B, 96)
