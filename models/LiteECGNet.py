"""LiteECGNet: the suite's own lightweight single-lead beat classifier.

Idea: depthwise-separable 1-D convolutions (MobileNet, Howard et al. 2017) whose depthwise part
is multi-scale in the MixConv manner (Tan & Le 2019: channel groups get different kernel sizes,
so one layer sees both the narrow QRS and the wider P/T waves), channel attention by
squeeze-and-excitation (Hu et al. 2018) and temporal attention pooling over the beat window.

As in Xception (Chollet 2017) there is no nonlinearity between the depthwise and pointwise parts,
so their product is itself a (rank-structured) dense kernel, and we *execute* it as that one
dense conv: on this CPU a depthwise conv call costs several times a dense conv of the same shape,
while the factorised parameters (~7x fewer) keep the inductive bias. MACs are reported as
executed (dense), not as the smaller factorised count.

The stem folds the signal 4x at once and adds CoordConv time coordinates (see
`models.common.PatchStem`); each block then halves the sequence, so a 720-sample beat is 23
steps long before attention pooling. Budget (720 samples): ~10 k parameters, ~1.4 M MACs;
batch-1 CPU latency is dominated by per-op overhead, which is why there are only four convs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .common import AttentionPool, BeatClassifier, ConvBN, ModelIO, register, SqueezeExcite


class MixSeparableConv(ConvBN):
    """Multi-scale depthwise-separable conv + BN + ReLU, run as one conv with a composed kernel.

    Parameters: one depthwise filter per input channel (channel groups use the kernel sizes in
    `kernels`, centred) and a pointwise matrix. Kernel: W[o, i, t] = pw[o, i] * dw[i, t].
    """

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...], stride: int = 1):
        super().__init__(c_in, c_out, max(kernels), stride, weight=False)
        n, k_max = len(kernels), max(kernels)
        splits = [c_in // n + (1 if i < c_in % n else 0) for i in range(n)]
        # flat depthwise taps (exactly sum(c_g * k_g) parameters) and where each lands in the
        # (c_in, k_max) kernel; index n_taps points at an appended zero.
        n_taps = sum(c * k for c, k in zip(splits, kernels))
        index = torch.full((c_in, k_max), n_taps, dtype=torch.long)
        bound, pos, ch = torch.empty(n_taps), 0, 0
        for c, k in zip(splits, kernels):
            off = (k_max - k) // 2
            index[ch:ch + c, off:off + k] = torch.arange(pos, pos + c * k).view(c, k)
            bound[pos:pos + c * k] = 1 / math.sqrt(k)  # PyTorch's default depthwise init
            pos, ch = pos + c * k, ch + c
        self.register_buffer("index", index, persistent=False)
        self.dw = nn.Parameter((torch.rand(n_taps) * 2 - 1) * bound)
        self.pw = nn.Parameter(torch.empty(c_out, c_in, 1))
        nn.init.kaiming_uniform_(self.pw, a=math.sqrt(5))

    def kernel(self) -> torch.Tensor:
        dw = torch.cat([self.dw, self.dw.new_zeros(1)])[self.index]  # (c_in, k_max)
        return self.pw * dw.unsqueeze(0)  # (c_out, c_in, k_max)


class MSDSBlock(nn.Module):
    """MixSeparableConv (+BN+ReLU) [-> SE] (+ identity skip when shapes allow)."""

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...], stride: int,
                 se_reduction: int):
        super().__init__()
        self.conv = MixSeparableConv(c_in, c_out, kernels, stride)
        self.se = SqueezeExcite(c_out, se_reduction) if se_reduction else nn.Identity()
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.conv(x))
        return x + y if self.residual else y


@register("liteecgnet")
class LiteECGNet(BeatClassifier):
    """PatchStem(+coords) -> 3 multi-scale separable blocks (SE on the last two) -> attention pool."""

    def __init__(self, io: ModelIO, *, stem_channels: int,
                 stem_stride: int, stem_kernel: int, coord: bool, channels: tuple[int, ...],
                 strides: tuple[int, ...], kernels: tuple[int, ...], se: tuple[bool, ...],
                 se_reduction: int, dropout: float):
        if not len(channels) == len(strides) == len(se) >= 1:
            raise ValueError(f"liteecgnet needs one stride and one se flag per block: channels {tuple(channels)}, "
                             f"strides {tuple(strides)}, se {tuple(se)}")
        super().__init__(io, channels[-1], dropout=dropout)
        self.stem = self.patch_stem(stem_channels, stem_stride, stem_kernel, coord)
        blocks, c = [], stem_channels
        for c_out, s, use_se in zip(channels, strides, se):
            blocks.append(MSDSBlock(c, c_out, tuple(kernels), s, se_reduction if use_se else 0))
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = AttentionPool(c)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 16, T/4)
        x = self.blocks(x)  # (B, 64, T/32)
        return self.pool(x)  # (B, 64)
