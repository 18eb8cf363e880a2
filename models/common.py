"""Shared building blocks for the seven beat classifiers.

Every model is a `BeatClassifier`: `forward_features` maps a `(B, 1, T)` beat window to a pooled
`(B, D)` vector, and one shared head turns it (plus optional RR-interval features) into logits.
Keeping the head here means the RR option behaves identically for all seven architectures.

The blocks below are chosen for this suite's CPU budget (2 cores): the stem downsamples at once
via space-to-depth so every later layer runs on a short sequence, and pooling is done by
reshaping (no `max_pool1d` with indices, which is slow to back-propagate on CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

# The registry: name -> model class, filled by @register in each model's file (models/__init__.py
# imports every module of the package, so a new file registers itself).
MODELS: dict[str, type["BeatClassifier"]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a BeatClassifier available to `models.create_model(name)`."""
    def add(cls: type) -> type:
        if name in MODELS:
            raise ValueError(f"two models registered as {name!r}: {MODELS[name].__name__}, {cls.__name__}")
        MODELS[name] = cls
        return cls
    return add


@dataclass(frozen=True)
class ModelIO:
    """What a model's inputs and outputs are, whatever its architecture (create_model fills it
    from the data; a checkpoint stores it):
    num_classes   logits per beat
    rr_dim        per-beat features joined to the pooled features (0 = none)
    fs            sampling rate of the windows (the CoordConv time unit: seconds)
    in_channels   input channels per beat: 1 = the window, 2 = the window and its running template
                  (twice that with a second lead)
    rr_norm       standardise the per-beat features inside the model (buffers rr_mean / rr_std, set
                  from the training part by `set_rr_stats`, saved in the state_dict) and never drop
                  them out; False: they join unscaled, under dropout (the original --rr)."""
    num_classes: int
    rr_dim: int = 0
    fs: float = 360.0
    in_channels: int = 1
    rr_norm: bool = False


class BeatClassifier(nn.Module):
    """Base class: `forward(x, rr=None)` = head(concat(forward_features(x), rr))."""

    def __init__(self, io: ModelIO, feature_dim: int, head_hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        if io.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {io.num_classes}")
        if io.rr_dim < 0:
            raise ValueError(f"rr_dim must be >= 0, got {io.rr_dim}")
        if io.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {io.in_channels}")
        self.io = io
        self.num_classes, self.rr_dim, self.feature_dim = io.num_classes, io.rr_dim, feature_dim
        self.in_channels, self.rr_norm = io.in_channels, io.rr_norm
        self.dropout = dropout
        d_in = feature_dim + io.rr_dim
        # a small MLP head (LDCNN-style) or a single linear layer; dropout is applied
        # functionally in forward (one module call fewer per layer at batch-1 latency)
        self.hidden = nn.Linear(d_in, head_hidden) if head_hidden else None
        self.fc = nn.Linear(head_hidden or d_in, io.num_classes)
        if io.rr_norm:
            self.register_buffer("rr_mean", torch.zeros(io.rr_dim))
            self.register_buffer("rr_std", torch.ones(io.rr_dim))

    def patch_stem(self, channels: int, stride: int, kernel: int, coord: bool) -> "PatchStem":
        """The input stem for this model's inputs (channels, sampling rate)."""
        return PatchStem(channels, stride, kernel, coord, self.io.fs, self.in_channels)

    @torch.no_grad()
    def set_rr_stats(self, rr: torch.Tensor) -> None:
        """Standardisation of the per-beat features from the training part's (N, rr_dim) values."""
        if not self.rr_norm:
            raise ValueError("set_rr_stats needs a model built with rr_norm=True")
        self.rr_mean.copy_(rr.double().mean(0).float())
        self.rr_std.copy_(rr.double().std(0).float().clamp_min(1e-6))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, feature_dim). Implemented by each architecture."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) beat windows [+ (B, rr_dim) per-beat features] -> (B, num_classes) logits."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape (B, {self.in_channels}, T), got {tuple(x.shape)}")
        f = self.forward_features(x)  # (B, D)
        drop = self.training and self.dropout > 0  # (F.dropout costs a call even when off)
        if self.rr_dim:
            if rr is None or rr.shape != (x.shape[0], self.rr_dim):
                got = None if rr is None else tuple(rr.shape)
                raise ValueError(f"model built with rr_dim={self.rr_dim} needs rr of shape "
                                 f"({x.shape[0]}, {self.rr_dim}), got {got}")
            if self.rr_norm:  # standardised, after the features' dropout: never dropped
                if drop:
                    f = F.dropout(f, self.dropout, True)
                    drop = False
                rr = (rr.to(f.dtype) - self.rr_mean) / self.rr_std
            f = torch.cat([f, rr.to(f.dtype)], dim=1)  # (B, D + rr_dim)
        elif rr is not None:
            raise ValueError("rr features were passed but the model was built with rr_dim=0")
        if drop:
            f = F.dropout(f, self.dropout, True)
        if self.hidden is not None:
            f = torch.relu(self.hidden(f))
            if self.training and self.dropout > 0:
                f = F.dropout(f, self.dropout, True)
        return self.fc(f)  # (B, num_classes)


class Ensemble(nn.Module):
    """K beat classifiers of one architecture and inputs, trained apart (trainer.py --ensemble K,
    one seed each), whose class probabilities are averaged: `forward` returns log(mean_k
    softmax(member_k(x, rr))), (B, num_classes), which are logits as well (their softmax is the
    mean probability, their argmax its class), so evaluation, export and predict.py use an ensemble
    as they use one model. Why: one seed's scores swing by a few hundredths from seed to seed;
    an average of seeds is steadier and usually above their mean."""

    def __init__(self, members: list[BeatClassifier]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        io = members[0].io
        if any(m.io != io or type(m) is not type(members[0]) for m in members):
            raise ValueError("ensemble members must share their architecture and inputs (ModelIO)")
        self.members = nn.ModuleList(members)
        self.io = io
        self.num_classes, self.rr_dim, self.in_channels, self.rr_norm = (io.num_classes, io.rr_dim,
                                                                          io.in_channels, io.rr_norm)

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) [+ (B, rr_dim)] -> (B, num_classes) log of the members' mean probability."""
        logp = torch.stack([F.log_softmax(m(x, rr), 1) for m in self.members])  # (K, B, classes)
        return torch.logsumexp(logp, 0) - math.log(len(self.members))


class ConvBN(nn.Module):
    """Conv1d (no bias) + BatchNorm1d [+ ReLU], 'same' padding for odd kernels.

    In training, or whenever autograd is on, it runs conv -> BN as usual. For inference
    (eval mode and no grad) it runs ONE conv with the BN folded into kernel and bias; the folded
    pair is cached and rebuilt whenever a parameter or BN statistic changes (tensor version
    counters), so an optimizer step or `load_state_dict` can never leave it stale. Folding removes
    a whole pass over the activations, which matters for batch-1 latency on a CPU.

    Subclasses may override `kernel()` to compose the weight from other parameters
    (LiteECGNet's separable kernels); MAC counters read `in_channels`, `out_channels`,
    `kernel_size` and `groups` (profiling.py has a rule for this class).
    """

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1,
                 act: bool = True, weight: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = c_in, c_out, k
        self.stride, self.padding, self.groups, self.act = stride, k // 2, groups, act
        if weight:  # subclasses that compose their kernel pass weight=False
            self.weight = nn.Parameter(torch.empty(c_out, c_in // groups, k))
            nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bn = nn.BatchNorm1d(c_out)
        self._folded: tuple | None = None

    def kernel(self) -> torch.Tensor:
        """The conv weight, (c_out, c_in // groups, k)."""
        return self.weight

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        tensors = (*self._parameters.values(), *bn._parameters.values(),
                   bn.running_mean, bn.running_var)
        # version counters move on every in-place update (optimizer step, load_state_dict, BN
        # statistics); data_ptr moves when .to() gives a tensor new storage
        key = tuple((t._version, t.data_ptr()) for t in tensors)
        cached = self._folded
        if cached is None or cached[0] != key:
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # (c_out,)
            cached = self._folded = (key, self.kernel() * scale[:, None, None],
                                     bn.bias - bn.running_mean * scale)
        return cached[1], cached[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            y = self.bn(F.conv1d(x, self.kernel(), None, self.stride, self.padding, 1, self.groups))
        else:  # inference: one conv with BN folded in
            w, b = self._fold()
            y = F.conv1d(x, w, b, self.stride, self.padding, 1, self.groups)
        return torch.relu_(y) if self.act else y  # y is fresh: in place is safe

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, groups={self.groups}, act={self.act}")


class CoordConvBN(ConvBN):
    """ConvBN whose input is a folded signal (B, r, N) plus r coordinate channels (CoordConv).

    The coordinate of folded step s, phase p is the time of raw sample s*r + p relative to the
    window centre, in seconds at the input's sampling rate `fs`. Conv is linear, so in
    inference conv([x; pos]) = conv(x, W_x) + conv(pos, W_pos) and the second term, which
    depends only on N and the folded weights, is cached: no concatenation and half the input
    channels per beat. (MAC counters count the full conv: an upper bound by r*k*C*N MACs.)
    """

    MAX_T = 1 << 14  # coordinate table length (samples); longer windows compute theirs on the fly

    def __init__(self, r: int, c_out: int, k: int, fs: float, c_sig: int | None = None):
        c_sig = r if c_sig is None else c_sig  # folded signal channels (C * r for C inputs)
        super().__init__(c_sig + r, c_out, k)
        self.r, self.c_sig, self.fs = r, c_sig, float(fs)
        pos = (torch.arange(self.MAX_T, dtype=torch.float32) - self.MAX_T // 2) / self.fs
        self.register_buffer("pos", pos, persistent=False)
        self._pos_cache: tuple | None = None

    def coords(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """(1, r, n) coordinates of a folded sequence of n steps."""
        t = n * self.r
        # an ONNX export computes them: slicing the table would store all MAX_T values in the file
        if t <= self.MAX_T and not torch.onnx.is_in_onnx_export():
            pos = self.pos[self.MAX_T // 2 - t // 2:][:t]
        else:
            pos = (torch.arange(t, device=like.device) - t // 2) / self.fs
        return pos.to(like.dtype).view(1, n, self.r).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        if self.training or torch.is_grad_enabled():
            return super().forward(torch.cat([x, self.coords(n, x).expand(b, -1, -1)], dim=1))
        w, bias = self._fold()  # (C, 2r, k), (C,)
        key = (n, self._folded[0])
        cached = self._pos_cache
        if cached is None or cached[0] != key:
            pos = F.conv1d(self.coords(n, x), w[:, self.c_sig:], bias, 1, self.padding)  # (1, C, N)
            cached = self._pos_cache = (key, pos, w[:, :self.c_sig].contiguous())
        y = F.conv1d(x, cached[2], None, 1, self.padding) + cached[1]
        return torch.relu_(y)


class PatchStem(nn.Module):
    """Strided input stem: (B, C_in, T) -> (B, C, ceil(T / r)).

    Mathematically a Conv1d(1, C, kernel=r*k, stride=r): the signal is folded into r channels
    (space-to-depth) and a dense k-tap conv runs over the folded sequence. A 1-channel strided
    conv maps poorly onto CPU GEMM kernels; the folded form runs about 2x faster and leaves every
    later layer with an r-times shorter sequence. T is zero-padded on the right to a multiple of r
    so any window length works.

    With `coord=True` the conv also sees each sample's time relative to the window centre (the R
    peak), as in CoordConv (Liu et al. 2018; see `CoordConvBN`). Convolutions and global pooling
    are blind to absolute position; the coordinates let a net tell *where* the neighbouring
    beats are, i.e. the RR intervals that separate premature (S/V) beats from normal ones. They
    are in seconds (at sampling rate `fs`), so they mean the same for every T.
    """

    def __init__(self, out_channels: int, stride: int, kernel: int, coord: bool, fs: float,
                 in_channels: int = 1):
        super().__init__()
        self.stride, self.in_channels = stride, in_channels
        c_sig = in_channels * stride
        self.conv = (CoordConvBN(stride, out_channels, kernel, fs, c_sig) if coord
                     else ConvBN(c_sig, out_channels, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        pad = (-t) % self.stride
        if pad:
            x = F.pad(x, (0, pad))
        if c == 1:
            x = x.view(b, -1, self.stride).transpose(1, 2)  # (B, r, T/r): channel p = samples p, p+r, ...
        else:  # (B, C, T) -> (B, C*r, T/r): channel c*r + p = input c's samples p, p+r, ...
            x = x.reshape(b, c, -1, self.stride).transpose(2, 3).reshape(b, c * self.stride, -1)
        return self.conv(x)  # (B, C_out, T/r)


def pool2(x: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Halve the sequence: (B, C, T) -> (B, C, ceil(T/2)), pooling pairs of samples.

    Done as a reshape + reduction because max_pool1d/avg_pool1d are several times slower to
    back-propagate on CPU for these small shapes. Odd T is padded by repeating the last sample.
    """
    if x.shape[-1] % 2:
        x = torch.cat([x, x[..., -1:]], dim=-1)
    x = x.unflatten(-1, (-1, 2))  # (B, C, T/2, 2)
    return x.amax(-1) if mode == "max" else x.mean(-1)


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018): rescale channels by a gate computed from their mean.

    The two small FC layers are applied with F.linear on parameters held here (no nn.Linear
    children): two module calls fewer per block, which is measurable at batch-1 latency.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(4, channels // reduction)
        fc1, fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)  # default init
        self.w1, self.b1 = fc1.weight, fc1.bias  # (H, C), (H,)
        self.w2, self.b2 = fc2.weight, fc2.bias  # (C, H), (C,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu_(F.linear(x.mean(-1), self.w1, self.b1))  # (B, H)
        s = torch.sigmoid_(F.linear(s, self.w2, self.b2))  # (B, C)
        return x * s.unsqueeze(-1)  # (B, C, T)


class AttentionPool(nn.Module):
    """Temporal attention pooling: a learned score per time step, softmax over T, weighted sum.

    Lets the classifier focus on the QRS complex (or the P wave) wherever it falls in the window,
    and works for any T. The 1x1 scoring conv is written as a matmul (cheaper per call on CPU).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.score = nn.Parameter(torch.randn(1, channels) / channels ** 0.5)  # (1, C)
        # no bias: softmax over T is invariant to a constant shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(torch.matmul(self.score, x), dim=-1)  # (B, 1, T)
        return torch.matmul(x, w.transpose(1, 2)).squeeze(-1)  # (B, C)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016), 1-D: two k-tap ConvBNs [+ SE] + shortcut, then ReLU.

    The shortcut is the identity, or a strided 1x1 ConvBN when the shape changes.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, se_reduction: int = 0):
        super().__init__()
        self.conv1 = ConvBN(c_in, c_out, k, stride)
        self.conv2 = ConvBN(c_out, c_out, k, act=False)
        self.se = SqueezeExcite(c_out, se_reduction) if se_reduction else None
        self.short = ConvBN(c_in, c_out, 1, stride, act=False) if (stride != 1 or c_in != c_out) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))  # (B, C_out, T/stride)
        if self.se is not None:
            y = self.se(y)
        return torch.relu_(y + (x if self.short is None else self.short(x)))
