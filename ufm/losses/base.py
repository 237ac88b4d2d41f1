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
* Epoch hooks, called by the harness around every epoch: ``on_epoch_start(epoch)`` before the first
  batch and ``on_epoch_end(epoch, row) -> dict`` after evaluation; what ``on_epoch_end`` returns joins
  the epoch's metrics row.
* Epoch statistics, the one way a loss reports per-batch quantities: call
  ``self.record_epoch_stats(name=value, ...)`` during the forward pass; the default hooks reset the
  running sums at the start of an epoch and return their (optionally weighted) epoch means at its end.
  A loss that overrides a hook calls ``super()`` to keep this.
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
    """Class decorator: make a loss available to the harness and the command line as ``name``.

    The class must subclass :class:`HarnessLoss` (the harness calls its contract's methods)."""

    def deco(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, HarnessLoss)):
            raise TypeError(f"register_loss({name!r}): {cls!r} must subclass ufm.losses.HarnessLoss")
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

    # ------------------------------------------------------------------ epoch hooks
    def on_epoch_start(self, epoch: int) -> None:
        """Before the first batch of epoch ``epoch`` (0-based): clears the epoch statistics."""
        self.reset_epoch_stats()

    def on_epoch_end(self, epoch: int, row: dict) -> dict:
        """After the evaluation of epoch ``epoch``; ``row`` is a copy of the epoch's metrics so far.

        Returns:
            values to add to the row: by default the epoch means of :meth:`record_epoch_stats`.
        """
        return self.epoch_stats()

    # ------------------------------------------------------------------ epoch statistics
    def record_epoch_stats(self, weight: float | torch.Tensor = 1.0, **values) -> None:
        """Add one batch's values to the epoch's running sums (detached; no host sync on GPU).

        Args:
            weight: the batch's weight in the epoch mean (1: a plain mean over batches; the batch
                size: a mean over samples).
            values: name -> scalar tensor or float.
        """
        sums = self.__dict__.setdefault("_epoch_sums", {})
        for name, v in values.items():
            v = torch.as_tensor(v).detach()
            acc = torch.float32 if v.device.type == "mps" else torch.float64
            w = torch.as_tensor(weight, dtype=acc, device=v.device)
            s, n = sums.get(name, (0.0, 0.0))
            sums[name] = (s + w * v.to(acc), n + w)

    def epoch_stats(self) -> dict[str, float]:
        """Weighted means of the values recorded since the last reset: ``sum_b w_b v_b / sum_b w_b``."""
        sums = self.__dict__.get("_epoch_sums", {})
        return {name: float(s / n) for name, (s, n) in sums.items() if float(n) > 0}

    def reset_epoch_stats(self) -> None:
        self.__dict__["_epoch_sums"] = {}
