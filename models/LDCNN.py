"""LDCNN: a lightweight deep CNN - conv + pooling stages and a small MLP head.

The classic compact 1-D CNN for heartbeat classification (e.g. Kiranyaz et al. 2016,
"Real-Time Patient-Specific ECG Classification by 1-D Convolutional Neural Networks"; Acharya
et al. 2017): a stack of convolution + max-pooling stages, then a small fully connected head.
Global average + max pooling (instead of flattening) makes it work for any window length.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .common import BeatClassifier, ConvBN, ModelIO, pool2, register


@register("ldcnn")
class LDCNN(BeatClassifier):
    """PatchStem(+coords) -> [conv + max-pool] x 3 -> avg+max pool -> MLP head."""

    def __init__(self, io: ModelIO, *, stem_channels: int,
                 stem_stride: int, stem_kernel: int, coord: bool, channels: tuple[int, ...],
                 kernel: int, head_hidden: int, dropout: float):
        super().__init__(io, 2 * channels[-1], head_hidden=head_hidden,
                         dropout=dropout)
        self.stem = self.patch_stem(stem_channels, stem_stride, stem_kernel, coord)
        convs, c = [], stem_channels
        for c_out in channels:
            convs.append(ConvBN(c, c_out, kernel))
            c = c_out
        self.convs = nn.ModuleList(convs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 16, T/4)
        for conv in self.convs:  # conv then max-pool by 2: T/8, T/16, T/32
            x = pool2(conv(x))
        return torch.cat([x.mean(-1), x.amax(-1)], dim=1)  # (B, 128) avg + max pooling
