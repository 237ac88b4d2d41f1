"""CIFAR-style ResNet-18 and ResNet-50: torchvision's networks with the ImageNet stem (7x7 stride-2
convolution + max-pool) replaced by a 3x3 stride-1 convolution and no max-pool, so a 32x32 input keeps
its resolution through ``layer1`` and reaches ``layer4`` as a 4x4 map.

Embedding: global average pool of ``layer4`` (512-d for ResNet-18, 2048-d for ResNet-50). With
``final_relu=True`` (torchvision's network) the last residual block ends with a ReLU, so the embedding is
non-negative (the SCL paper's setting); ``final_relu=False`` drops that one ReLU. ``dropout=p``: dropout on
the embedding before the classifier (the Gini/KL authors' ResNet-50 has p = 0.4; default 0: none).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, resnet18, resnet50

from ufm.models.base import FeatureNet, register_model

__all__ = ["CifarResNet", "BasicBlockNoFinalReLU", "BottleneckNoFinalReLU"]


class BasicBlockNoFinalReLU(BasicBlock):
    """torchvision's BasicBlock without the ReLU after the residual addition (same parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return out + identity


class BottleneckNoFinalReLU(Bottleneck):
    """torchvision's Bottleneck without the ReLU after the residual addition (same parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + identity


class CifarResNet(FeatureNet):
    """A torchvision ResNet with a 3x3 stem and no max-pool; its ``fc`` becomes ``classifier``.

    The layers are held under torchvision's names (``conv1, bn1, layer1..layer4``) so that
    ``record_activations=["layer3"]`` and the state-dict keys read as in torchvision.
    """

    last_stage = "layer4"

    def __init__(self, arch: str, num_classes: int, in_channels: int = 3, feature_dim: int | None = None,
                 final_relu: bool = True, record_activations: Iterable[str] = (), zero_init_residual: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        builders = {"resnet18": resnet18, "resnet50": resnet50}
        if arch not in builders:
            raise ValueError(f"unknown CIFAR ResNet {arch!r}; use one of {sorted(builders)}")
        tv = builders[arch](weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        self.bn1, self.relu = tv.bn1, tv.relu
        self.layer1, self.layer2, self.layer3, self.layer4 = tv.layer1, tv.layer2, tv.layer3, tv.layer4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.final_relu = bool(final_relu)
        if not self.final_relu:
            last = self.layer4[-1]
            last.__class__ = BasicBlockNoFinalReLU if isinstance(last, BasicBlock) else BottleneckNoFinalReLU
        embed_dim = tv.fc.in_features
        self._init_head(embed_dim, num_classes, feature_dim, record_activations, dropout)
        if feature_dim is None:  # keep torchvision's fc initialisation for the classifier
            self.classifier.load_state_dict(tv.fc.state_dict())
        self.arch = arch

    def embed(self, x: torch.Tensor):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1), x


@register_model("resnet18_cifar")
def resnet18_cifar(num_classes: int, in_channels: int = 3, feature_dim: int | None = None, final_relu: bool = True,
                   record_activations: Iterable[str] = (), zero_init_residual: bool = False,
                   dropout: float = 0.0) -> CifarResNet:
    """CIFAR ResNet-18 (11.2M parameters for k = 10), 512-d embedding."""
    return CifarResNet("resnet18", num_classes, in_channels, feature_dim, final_relu, record_activations, zero_init_residual,
                       dropout)


@register_model("resnet50_cifar")
def resnet50_cifar(num_classes: int, in_channels: int = 3, feature_dim: int | None = None, final_relu: bool = True,
                   record_activations: Iterable[str] = (), zero_init_residual: bool = False,
                   dropout: float = 0.0) -> CifarResNet:
    """CIFAR ResNet-50 (23.5M parameters for k = 10), 2048-d embedding."""
    return CifarResNet("resnet50", num_classes, in_channels, feature_dim, final_relu, record_activations, zero_init_residual,
                       dropout)
