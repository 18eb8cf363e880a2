"""DeepECGNet: convolutional stem + Transformer encoder + attentive pooling.

The conv-then-self-attention design of e.g. Natarajan et al. 2020 ("A Wide and Deep
Transformer Neural Network for 12-Lead ECG Classification") and Yan et al. 2019, for one lead:
a strided conv stem turns the beat into a short sequence of local-morphology tokens, a pre-norm
Transformer encoder (Vaswani et al. 2017) relates them across the whole window (the beat and
its neighbours), and learned attention pooling weights the tokens into one vector.
Sinusoidal position encodings are added because attention alone is blind to order.

CPU budget: the stem and three strided convs cut a 720-sample beat to 23 tokens, and the encoder
runs without internal dropout (regularisation comes from the head's dropout): dropout on the
attention weights forces PyTorch's unfused attention path and costs more than attention itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .common import AttentionPool, BeatClassifier, ConvBN, ModelIO, register


def sinusoid(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoidal position encodings (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


@register("deepecgnet")
class DeepECGNet(BeatClassifier):
    """PatchStem(+coords) -> strided convs (tokens) -> pre-norm Transformer -> attention pool."""

    def __init__(self, io: ModelIO, *, stem_channels: int,
                 stem_stride: int, stem_kernel: int, coord: bool, d_model: int,
                 conv_strides: tuple[int, ...], kernel: int, heads: int, layers: int, ff_dim: int,
                 attn_dropout: float, dropout: float, max_tokens: int):
        super().__init__(io, d_model, dropout=dropout)
        self.stem = self.patch_stem(stem_channels, stem_stride, stem_kernel, coord)
        convs, c = [], stem_channels
        for s in conv_strides:
            convs.append(ConvBN(c, d_model, kernel, stride=s))
            c = d_model
        self.convs = nn.Sequential(*convs)
        self.register_buffer("pos", sinusoid(max_tokens, d_model), persistent=False)
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, heads, ff_dim, attn_dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.pool = AttentionPool(d_model)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.stem(x)).transpose(1, 2)  # (B, L, D) tokens, L = T/32
        n = x.shape[1]
        pos = self.pos[:n] if n <= self.pos.shape[0] else sinusoid(n, x.shape[2]).to(x)
        x = x + pos
        for layer in self.encoder:
            x = layer(x)  # (B, L, D)
        return self.pool(self.norm(x).transpose(1, 2))  # (B, D)
