"""Loss registry and the contract between a loss and the training harness.

A new loss is ONE file in ``ufm/losses/``: it defines an ``nn.Module`` and registers it with
``@register_loss("name")``. ``ufm.losses`` imports every module of the package, so the loss becomes
``ufm.losses.<ClassName>`` and ``ufm.losses.get_loss("name")`` without touching any other file.

The harness (``ufm.train``) talks to a registered loss through :class:`HarnessLoss`:

* ``views``: how many augmented views of each sample a batch must carry (SupCon: 2).
* ``harness_objective(out, labels, model)``: the full differentiable training objective for one
  batch, where ``out`` is the model's output (``out.features`` (N, d) or (N, V, d), ``out.logits``,
  ``out.activations`` a dict of named intermediate maps). The default is the loss itself on the
  features; losses that add to cross-entropy override it.
* ``harness_predict(out, model)``: class scores (N, k) for accuracy, or ``None`` to use the model's
  logits (SupCon returns ``None`` and is scored by nearest class centre / linear probe instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


@dataclass
class ModelOutput:
    """What every model of the project (and the free-features model of the UFM) returns.

    features: (N, d) embedding (after the optional final ReLU), or (N, V, d) for V views.
    logits: (N, k) scores of the final linear classifier ``model.classifier`` (None if the model has none).
    activations: named intermediate maps, e.g. ``{"layer4": (B, F, H, W)}``.
    """

    features: torch.Tensor
    logits: torch.Tensor | None = None
    activations: dict[str, torch.Tensor] = field(default_factory=dict)


LOSSES: dict[str, type] = {}


def register_loss(name: str) -> Callable[[type], type]:
    """Class decorator: make a loss available to the harness and the command line as ``name``."""

    def deco(cls: type) -> type:
        if name in LOSSES and LOSSES[name] is not cls:
            raise ValueError(f"a loss named {name!r} is already registered ({LOSSES[name].__name__})")
        LOSSES[name] = cls
        cls.registry_name = name
        return cls

    return deco


def get_loss(name: str) -> type:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; registered losses: {sorted(LOSSES)}") from None


class HarnessLoss(nn.Module):
    """Defaults of the harness contract (see module docstring)."""

    views: int = 1
    registry_name: str = ""

    def harness_objective(self, out, labels: torch.Tensor, model: nn.Module) -> torch.Tensor:
        return self(out.features, labels)

    def harness_predict(self, out, model: nn.Module) -> torch.Tensor | None:
        return None
