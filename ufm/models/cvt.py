"""A convolutional vision transformer in the style of CvT (Wu et al. 2021): stages that start with a
convolutional token embedding and continue with transformer blocks whose query / key / value projections are
depthwise convolutions on the token map.

Stage s (input map (B, C_{s-1}, H, W)):

* token embedding: ``Conv2d(C_{s-1}, C_s, kernel, stride, padding=kernel // 2)`` then LayerNorm over channels,
  giving an (H_s x W_s) map of C_s-d tokens;
* ``depth_s`` blocks ``x <- x + Attn(LN x)``, ``x <- x + MLP(LN x)`` with ``heads_s`` heads; in Attn the
  token map is passed through a 3x3 depthwise convolution + BatchNorm (stride 1 for queries, ``kv_stride``
  for keys and values, which shortens the key sequence) and a linear projection; MLP is
  ``Linear(C, r C) -> GELU -> Linear(r C, C)``.

The stage's output map (B, C_s, H_s, W_s) is ``activations["stage<s>"]`` (the last one always, the others with
``record_activations``). Embedding: LayerNorm of the mean token of the last stage, then the final ReLU
(``final_relu=True``, the project's convention that features are non-negative) — no class token.

Registered: ``cvt_small`` (widths 16/32/64, one block per stage: seconds per epoch on CPU for 8x8 or 28x28
images) and ``cvt_cifar`` (64/192/384, depths 1/2/10, heads 1/3/6 as CvT-13, strides 2/2/2 so a 32x32
image gives 16x16, 8x8 and 4x4 maps).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ufm.models.base import FeatureNet, register_model

__all__ = ["CvT", "ConvAttention", "CvTBlock"]


class _ConvProjection(nn.Module):
    """Depthwise 3x3 convolution + BatchNorm on the token map, then a linear map of the channels."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, stride=stride, padding=1, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.lin = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, N', C)
        return self.lin(self.bn(self.dw(x)).flatten(2).transpose(1, 2))


class ConvAttention(nn.Module):
    """Multi-head attention whose q / k / v are convolutional projections of the (B, C, H, W) token map."""

    def __init__(self, dim: int, heads: int, kv_stride: int = 2):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the width {dim} must be divisible by the number of heads {heads}")
        self.heads = heads
        self.q = _ConvProjection(dim, 1)
        self.k = _ConvProjection(dim, kv_stride)
        self.v = _ConvProjection(dim, kv_stride)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        m = x.transpose(1, 2).reshape(b, c, *hw)
        q, k, v = self.q(m), self.k(m), self.v(m)

        def split(t):
            return t.reshape(b, t.shape[1], self.heads, c // self.heads).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.out(o.transpose(1, 2).reshape(b, n, c))


class CvTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, kv_stride: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ConvAttention(dim, heads, kv_stride)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), hw)
        return x + self.mlp(self.norm2(x))


class _Stage(nn.Module):
    def __init__(self, cin: int, dim: int, depth: int, heads: int, kernel: int, stride: int, mlp_ratio: float,
                 kv_stride: int):
        super().__init__()
        self.embed = nn.Conv2d(cin, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList([CvTBlock(dim, heads, mlp_ratio, kv_stride) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        b, c, h, w = x.shape
        t = self.norm(x.flatten(2).transpose(1, 2))
        for blk in self.blocks:
            t = blk(t, (h, w))
        return t.transpose(1, 2).reshape(b, c, h, w)


class CvT(FeatureNet):
    """Stages ``stage1..stageS`` (module docstring); embedding = LN(mean token) [+ ReLU]."""

    def __init__(self, num_classes: int, in_channels: int = 3, feature_dim: int | None = None, final_relu: bool = True,
                 dims: Sequence[int] = (16, 32, 64), depths: Sequence[int] = (1, 1, 1), heads: Sequence[int] = (1, 2, 4),
                 kernels: Sequence[int] = (3, 3, 3), strides: Sequence[int] = (1, 2, 2), mlp_ratio: float = 4.0,
                 kv_stride: int = 2, record_activations: Iterable[str] = ()):
        super().__init__()
        dims, depths, heads = [int(v) for v in dims], [int(v) for v in depths], [int(v) for v in heads]
        kernels, strides = [int(v) for v in kernels], [int(v) for v in strides]
        lens = {len(dims), len(depths), len(heads), len(kernels), len(strides)}
        if len(lens) != 1 or not dims:
            raise ValueError(f"dims, depths, heads, kernels, strides must have one equal, non-zero length; got "
                             f"{dims}, {depths}, {heads}, {kernels}, {strides}")
        if min(dims + depths + heads + kernels + strides) < 1 or kv_stride < 1 or not mlp_ratio > 0:
            raise ValueError("widths, depths, heads, kernels, strides, kv_stride and mlp_ratio must be positive")
        cin = in_channels
        for s, args in enumerate(zip(dims, depths, heads, kernels, strides), start=1):
            d, dep, h, k, st = args
            setattr(self, f"stage{s}", _Stage(cin, d, dep, h, k, st, mlp_ratio, kv_stride))
            cin = d
        self.n_stages = len(dims)
        self.last_stage = f"stage{self.n_stages}"
        self.norm = nn.LayerNorm(cin)
        self.final_relu = bool(final_relu)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self._init_head(cin, num_classes, feature_dim, record_activations)

    def embed(self, x: torch.Tensor):
        if x.dim() != 4:
            raise ValueError(f"cvt takes image batches (B, C, H, W), got shape {tuple(x.shape)}")
        for s in range(1, self.n_stages + 1):
            x = getattr(self, f"stage{s}")(x)
        e = self.norm(x.flatten(2).mean(2))
        return (torch.relu(e) if self.final_relu else e), x


@register_model("cvt_small")
def cvt_small(num_classes: int, in_channels: int = 3, feature_dim: int | None = None, final_relu: bool = True,
              dims: Sequence[int] = (16, 32, 64), depths: Sequence[int] = (1, 1, 1), heads: Sequence[int] = (1, 2, 4),
              kernels: Sequence[int] = (3, 3, 3), strides: Sequence[int] = (1, 2, 2), mlp_ratio: float = 2.0,
              kv_stride: int = 2, record_activations: Iterable[str] = ()) -> CvT:
    """Small CvT for CPU runs (64-d embedding): 8x8 digits give 8x8, 4x4, 2x2 stage maps."""
    return CvT(num_classes, in_channels, feature_dim, final_relu, dims, depths, heads, kernels, strides, mlp_ratio,
               kv_stride, record_activations)


@register_model("cvt_cifar")
def cvt_cifar(num_classes: int, in_channels: int = 3, feature_dim: int | None = None, final_relu: bool = True,
              dims: Sequence[int] = (64, 192, 384), depths: Sequence[int] = (1, 2, 10), heads: Sequence[int] = (1, 3, 6),
              kernels: Sequence[int] = (3, 3, 3), strides: Sequence[int] = (2, 2, 2), mlp_ratio: float = 4.0,
              kv_stride: int = 2, record_activations: Iterable[str] = ()) -> CvT:
    """CvT-13-sized network for 32x32 images (384-d embedding, 4x4 last map)."""
    return CvT(num_classes, in_channels, feature_dim, final_relu, dims, depths, heads, kernels, strides, mlp_ratio,
               kv_stride, record_activations)
