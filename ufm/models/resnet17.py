"""ResNet-17 for 32x32 images (the Gini/KL paper lists a "ResNet-17" without a public definition; this is ours).

Layers with weights, counted as for ResNet-18 (1x1 projection shortcuts not counted):

* a stem of two 3x3 convolutions (stride 1, ``width`` channels, BN + ReLU after each): 2 layers;
* four stages of torchvision basic blocks with depths ``(2, 2, 2, 1)``, widths ``width * (1, 2, 4, 8)`` and
  strides ``(1, 2, 2, 2)``: 14 layers (a 32x32 input reaches ``layer4`` as a 4x4 map);
* global average pool and the linear classifier: 1 layer.

2 + 14 + 1 = 17. With ``width=64`` the embedding is 512-d, as for the CIFAR ResNet-18. ``final_relu=False``
drops the ReLU after the last residual addition (the same parameters). Activations: ``layer4`` always (the
map the Gini/KL terms act on), any other stage through ``record_activations``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from ufm.models.base import FeatureNet, register_model
from ufm.models.resnet_cifar import BasicBlockNoFinalReLU

__all__ = ["ResNet17"]


class ResNet17(FeatureNet):
    """Two-convolution stem + basic-block stages ``layer1..layer4`` of depths ``depths`` + average pool."""

    last_stage = "layer4"

    def __init__(self, num_classes: int, in_channels: int = 3, feature_dim: int | None = None, final_relu: bool = True,
                 width: int = 64, depths: Sequence[int] = (2, 2, 2, 1), record_activations: Iterable[str] = (),
                 dropout: float = 0.0):
        super().__init__()
        if isinstance(width, bool) or int(width) != width or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        depths = [int(d) for d in depths]
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError(f"depths must be four positive integers, got {depths}")
        w = int(width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        )
        cin = w
        for s, (mult, depth, stride) in enumerate(zip((1, 2, 4, 8), depths, (1, 2, 2, 2)), start=1):
            cout = w * mult
            blocks = []
            for b in range(depth):
                st = stride if b == 0 else 1
                down = None
                if st != 1 or cin != cout:
                    down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=st, bias=False), nn.BatchNorm2d(cout))
                blocks.append(BasicBlock(cin, cout, st, down))
                cin = cout
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.final_relu = bool(final_relu)
        if not self.final_relu:
            self.layer4[-1].__class__ = BasicBlockNoFinalReLU
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.depths = tuple(depths)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._init_head(cin, num_classes, feature_dim, record_activations, dropout)

    @property
    def weighted_layers(self) -> int:
        """Convolutions on the main path + the classifier (the "17")."""
        return 2 + 2 * sum(self.depths) + 1

    def embed(self, x: torch.Tensor):
        if x.dim() != 4:
            raise ValueError(f"resnet17 takes image batches (B, C, H, W), got shape {tuple(x.shape)}")
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1), x


@register_model("resnet17")
def resnet17(num_classes: int, in_channels: int = 3, feature_dim: int | None = None, final_relu: bool = True,
             width: int = 64, depths: Sequence[int] = (2, 2, 2, 1), record_activations: Iterable[str] = (),
             dropout: float = 0.0) -> ResNet17:
    """ResNet-17 (2-conv stem, basic-block depths (2, 2, 2, 1)); ``width=64`` for CIFAR, smaller for CPU runs;
    ``dropout``: p before the classifier (0: none)."""
    return ResNet17(num_classes, in_channels, feature_dim, final_relu, width, depths, record_activations, dropout)
