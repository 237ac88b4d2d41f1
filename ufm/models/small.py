"""Small networks for CPU runs on 8x8 digits, 28x28 images and 1-D signals (MNIST-1D, length 40).

* ``small_resnet``: a 3x3 (or width-3 for 1-D) convolution stem and three residual stages of
  basic blocks (two 3x3 convolutions + BN, identity or 1x1 shortcut), widths ``(16, 32, 64)``, strides
  ``(1, 2, 2)``, global average pool: a 64-d embedding. ``input_shape`` (C, H, W) or (C, L) chooses
  2-D or 1-D convolutions.
* ``mlp``: the input flattened, then ``Linear -> [BatchNorm1d] -> ReLU`` layers of the given widths; the
  last layer's output is the embedding (its ReLU is the "final ReLU").
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ufm.models.base import FeatureNet, register_model

__all__ = ["SmallResNet", "MLP", "ResidualBlock"]


def _layers(spatial_dims: int):
    if spatial_dims == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d
    if spatial_dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d
    raise ValueError(f"small_resnet takes 1-D (C, L) or 2-D (C, H, W) inputs, got {spatial_dims} spatial dimensions")


class ResidualBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x))``; the outer ReLU is skipped when ``final_relu=False``."""

    def __init__(self, cin: int, cout: int, stride: int, spatial_dims: int, final_relu: bool = True):
        super().__init__()
        conv, bn, _ = _layers(spatial_dims)
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(cout)
        self.conv2 = conv(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = bn(cout)
        self.shortcut = (
            nn.Sequential(conv(cin, cout, 1, stride=stride, bias=False), bn(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )
        self.final_relu = final_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return torch.relu(out) if self.final_relu else out


class SmallResNet(FeatureNet):
    """Stem + ``len(widths)`` residual stages (``layer1`` ..) + global average pool."""

    def __init__(self, num_classes: int, in_channels: int = 1, feature_dim: int | None = None, final_relu: bool = True,
                 input_shape: Sequence[int] | None = None, widths: Sequence[int] = (16, 32, 64),
                 strides: Sequence[int] | None = None, blocks_per_stage: int = 1, record_activations: Iterable[str] = ()):
        super().__init__()
        spatial_dims = 2 if input_shape is None else len(input_shape) - 1
        if input_shape is not None and int(input_shape[0]) != in_channels:
            raise ValueError(f"input_shape {tuple(input_shape)} has {input_shape[0]} channels but in_channels={in_channels}")
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive integers, got {widths}")
        strides = [1] + [2] * (len(widths) - 1) if strides is None else [int(s) for s in strides]
        if len(strides) != len(widths):
            raise ValueError(f"strides {strides} and widths {widths} must have the same length")
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        conv, bn, pool = _layers(spatial_dims)
        self.spatial_dims = spatial_dims
        self.stem = nn.Sequential(conv(in_channels, widths[0], 3, padding=1, bias=False), bn(widths[0]), nn.ReLU())
        cin = widths[0]
        for s, (w, st) in enumerate(zip(widths, strides), start=1):
            blocks = []
            for b in range(blocks_per_stage):
                last = s == len(widths) and b == blocks_per_stage - 1
                blocks.append(ResidualBlock(cin, w, st if b == 0 else 1, spatial_dims, final_relu or not last))
                cin = w
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.n_stages = len(widths)
        self.last_stage = f"layer{len(widths)}"
        self.pool = pool(1)
        self.final_relu = bool(final_relu)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._init_head(cin, num_classes, feature_dim, record_activations)

    def embed(self, x: torch.Tensor):
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"small_resnet built for {self.spatial_dims}-D inputs (B, C, ...) got a batch of shape {tuple(x.shape)}"
            )
        x = self.stem(x)
        for s in range(1, self.n_stages + 1):
            x = getattr(self, f"layer{s}")(x)
        return torch.flatten(self.pool(x), 1), x


class MLP(FeatureNet):
    """Flatten -> ``layer1`` .. ``layerL`` (Linear -> [BatchNorm1d] -> ReLU); the embedding is layer L's output."""

    def __init__(self, num_classes: int, in_channels: int = 1, feature_dim: int | None = None, final_relu: bool = True,
                 input_shape: Sequence[int] | None = None, widths: Sequence[int] = (256, 128), batchnorm: bool = False,
                 record_activations: Iterable[str] = ()):
        super().__init__()
        if input_shape is None:
            raise ValueError("mlp needs input_shape, e.g. (1, 28, 28) (the harness passes the data set's shape)")
        if int(input_shape[0]) != in_channels:
            raise ValueError(f"input_shape {tuple(input_shape)} has {input_shape[0]} channels but in_channels={in_channels}")
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive integers, got {widths}")
        self.input_shape = tuple(int(s) for s in input_shape)
        cin = int(np.prod(self.input_shape))
        for i, w in enumerate(widths, start=1):
            layers: list[nn.Module] = [nn.Linear(cin, w)]
            if batchnorm:
                layers.append(nn.BatchNorm1d(w))
            if final_relu or i < len(widths):
                layers.append(nn.ReLU())
            setattr(self, f"layer{i}", nn.Sequential(*layers))
            cin = w
        self.n_layers = len(widths)
        self.last_stage = f"layer{len(widths)}"
        self.final_relu = bool(final_relu)
        self._init_head(cin, num_classes, feature_dim, record_activations)

    def embed(self, x: torch.Tensor):
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"mlp built for inputs of shape {self.input_shape}, got a batch of shape {tuple(x.shape)}")
        x = torch.flatten(x, 1)
        for i in range(1, self.n_layers + 1):
            x = getattr(self, f"layer{i}")(x)
        return x, x


@register_model("small_resnet")
def small_resnet(num_classes: int, in_channels: int = 1, feature_dim: int | None = None, final_relu: bool = True,
                 input_shape: Sequence[int] | None = None, widths: Sequence[int] = (16, 32, 64),
                 strides: Sequence[int] | None = None, blocks_per_stage: int = 1,
                 record_activations: Iterable[str] = ()) -> SmallResNet:
    """Small ResNet for 8x8 / 28x28 images and 1-D signals (64-d embedding by default)."""
    return SmallResNet(num_classes, in_channels, feature_dim, final_relu, input_shape, widths, strides,
                       blocks_per_stage, record_activations)


@register_model("mlp")
def mlp(num_classes: int, in_channels: int = 1, feature_dim: int | None = None, final_relu: bool = True,
        input_shape: Sequence[int] | None = None, widths: Sequence[int] = (256, 128), batchnorm: bool = False,
        record_activations: Iterable[str] = ()) -> MLP:
    """MLP on the flattened input (128-d embedding by default)."""
    return MLP(num_classes, in_channels, feature_dim, final_relu, input_shape, widths, batchnorm, record_activations)
