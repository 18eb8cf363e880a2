"""ResNet: a 1-D residual network for single-lead ECG beats.

After He et al. 2016 ("Deep Residual Learning for Image Recognition"), ResNet-18 layout: four
stages of [2, 2, 2, 2] basic blocks, channels doubling as the sequence halves, global average
pooling. As used for ECG by e.g. Hannun et al. 2019 (Nature Medicine). The stem folds the
signal 8x (a strided conv, see `PatchStem`) so the blocks run on a 90-step sequence for a
720-sample beat, which keeps training fast on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .common import BasicBlock, BeatClassifier, ModelIO, register


@register("resnet")
class ResNet(BeatClassifier):
    """PatchStem(+coords) -> 4 stages of basic blocks ([2, 2, 2, 2]) -> global average pool."""

    def __init__(self, io: ModelIO, *, stem_channels: int,
                 stem_stride: int, stem_kernel: int, coord: bool, channels: tuple[int, ...],
                 blocks: tuple[int, ...], kernel: int, dropout: float):
        if not len(channels) == len(blocks) >= 1:
            raise ValueError(f"resnet needs one block count per stage: channels {tuple(channels)}, blocks {tuple(blocks)}")
        super().__init__(io, channels[-1], dropout=dropout)
        self.stem = self.patch_stem(stem_channels, stem_stride, stem_kernel, coord)
        layers, c = [], stem_channels
        for i, (c_out, n) in enumerate(zip(channels, blocks)):
            for j in range(n):  # first block of every stage but the first halves the sequence
                layers.append(BasicBlock(c, c_out, kernel, 2 if (i > 0 and j == 0) else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 32, T/8)
        x = self.layers(x)  # (B, 96, T/64)
        return x.mean(-1)  # (B, 96) global average pooling
