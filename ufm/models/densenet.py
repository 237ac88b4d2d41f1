"""DenseNet-40 for 32x32 images (Huang et al. 2017, "Densely connected convolutional networks", the CIFAR
network with L = 40 layers and growth rate k = 12), the SCL paper's second network.

Layers: a 3x3 convolution to 16 channels; three dense blocks of (L - 4)/3 = 12 layers each, every layer
``BN -> ReLU -> Conv3x3(k)`` whose k = 12 output maps are concatenated to its input (so a block adds 144
channels); between blocks a transition ``BN -> ReLU -> Conv1x1 (same width) -> AvgPool 2x2`` (no
compression: DenseNet, not DenseNet-BC); after the last block ``BN -> ReLU`` and a global average pool. The
embedding has 16 + 3 x 144 = 448 dimensions. That last ReLU is the final ReLU: with ``final_relu=True``
the embedding is non-negative (the SCL paper's setting); ``final_relu=False`` drops it (same parameters).
Widths and depth: ``growth_rate`` and ``depth`` (depth - 4 divisible by 3).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ufm.models.base import FeatureNet, register_model

__all__ = ["DenseNet"]


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(torch.relu(self.bn(x)))], dim=1)


class _Transition(nn.Sequential):
    def __init__(self, channels: int):
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False), nn.AvgPool2d(2))


class DenseNet(FeatureNet):
    """Stem + ``block1`` .. ``block3`` (transitions ``trans1``, ``trans2`` between) + BN [+ ReLU] + pool."""

    last_stage = "block3"

    def __init__(self, num_classes: int, in_channels: int = 3, feature_dim: int | None = None, final_relu: bool = True,
                 depth: int = 40, growth_rate: int = 12, record_activations: Iterable[str] = ()):
        super().__init__()
        if isinstance(depth, bool) or int(depth) != depth or depth < 7 or (depth - 4) % 3:
            raise ValueError(f"depth must be an integer >= 7 with depth - 4 divisible by 3 (40 for DenseNet-40), got {depth!r}")
        if isinstance(growth_rate, bool) or int(growth_rate) != growth_rate or growth_rate < 1:
            raise ValueError(f"growth_rate must be a positive integer, got {growth_rate!r}")
        per_block, channels = (int(depth) - 4) // 3, 16
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        for b in (1, 2, 3):
            layers = []
            for _ in range(per_block):
                layers.append(_DenseLayer(channels, int(growth_rate)))
                channels += int(growth_rate)
            setattr(self, f"block{b}", nn.Sequential(*layers))
            if b < 3:
                setattr(self, f"trans{b}", _Transition(channels))
        self.final_bn = nn.BatchNorm2d(channels)
        self.final_relu = bool(final_relu)
        self.pool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._init_head(channels, num_classes, feature_dim, record_activations)

    def embed(self, x: torch.Tensor):
        x = self.trans2(self.block2(self.trans1(self.block1(self.stem(x)))))
        last = self.block3(x)
        e = self.final_bn(last)
        if self.final_relu:
            e = torch.relu(e)
        return torch.flatten(self.pool(e), 1), last


@register_model("densenet40_cifar")
def densenet40_cifar(num_classes: int, in_channels: int = 3, feature_dim: int | None = None, final_relu: bool = True,
                     depth: int = 40, growth_rate: int = 12, record_activations: Iterable[str] = ()) -> DenseNet:
    """DenseNet-40 (k = 12) for CIFAR, 448-d embedding, about 1.0M parameters for 10 classes."""
    return DenseNet(num_classes, in_channels, feature_dim, final_relu, depth, growth_rate, record_activations)
