"""BiRCNN: convolutional front end + bidirectional recurrent layer over the feature sequence.

The CNN-RNN hybrid used for beat classification in e.g. Zhang et al. 2019 / Mousavi & Afghah
2019: convolutions extract local morphology and shorten the sequence, a bidirectional GRU (or
LSTM) reads the feature sequence in both directions to model the beat's temporal context, and
attention pooling summarises the recurrent states. The front end downsamples 16x, so the
recurrence runs over 45 steps for a 720-sample beat: the sequential part stays cheap on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .common import AttentionPool, BeatClassifier, ConvBN, ModelIO, register

RNN_TYPES = {"gru": nn.GRU, "lstm": nn.LSTM}


@register("bircnn")
class BiRCNN(BeatClassifier):
    """PatchStem(+coords) -> strided convs -> bidirectional GRU/LSTM -> attention pool."""

    def __init__(self, io: ModelIO, *, stem_channels: int,
                 stem_stride: int, stem_kernel: int, coord: bool, channels: tuple[int, ...],
                 kernel: int, rnn: str, hidden: int, rnn_layers: int, dropout: float):
        if rnn not in RNN_TYPES:
            raise ValueError(f"unknown rnn {rnn!r}; choose one of {sorted(RNN_TYPES)}")
        super().__init__(io, 2 * hidden, dropout=dropout)
        self.stem = self.patch_stem(stem_channels, stem_stride, stem_kernel, coord)
        convs, c = [], stem_channels
        for c_out in channels:  # each halves the sequence
            convs.append(ConvBN(c, c_out, kernel, stride=2))
            c = c_out
        self.convs = nn.Sequential(*convs)
        self.rnn = RNN_TYPES[rnn](c, hidden, num_layers=rnn_layers, batch_first=True,
                                  bidirectional=True)
        self.pool = AttentionPool(2 * hidden)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.stem(x))  # (B, 64, T/16)
        h, _ = self.rnn(x.transpose(1, 2))  # (B, T/16, 2H)
        return self.pool(h.transpose(1, 2))  # (B, 2H)
