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

Precision (every registered loss, by :class:`HarnessLoss`): ``forward`` and ``harness_objective`` run with
autocast switched off on the device of their tensor inputs, so that a loss's reductions are computed in
the precision it is written for (float32 at least; half-precision inputs are upcast inside each loss), as
torch's own losses do under autocast. Outside autocast nothing changes. A tensor input on the ``meta``
device (a shape without values) is refused there with a ValueError naming the argument.

Directions of small vectors (:func:`unit_or_zero`, :func:`direction_floor`): a loss that depends on a
feature only through its direction ``z / ||z||`` has a gradient of size ``|dL/du| / ||z||``, beyond the
range of float16 (65504) once ``||z||`` is small enough. Such losses divide by ``max(||z||, eps)`` with
``eps = 4 C / finfo(dtype).max`` (C a bound on ``|dL/du|`` per row), so the gradient reaching an input of
that dtype is at most a quarter of its largest value; ``eps`` is below 1e-36 from float32 on, where
nothing changes for any feature of a normal norm. A zero row stays zero and passes no gradient.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ufm._checks import check_has_values


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


# ----------------------------------------------------------------------------- precision helpers
def unit_or_zero(z: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Rows ``z / max(||z||, eps)``; a zero row stays zero and passes no gradient.

    Args:
        z: (N, d) rows.
        eps: the floor of the divisor (:func:`direction_floor`); rows with ``||z|| >= eps`` are exactly
            ``z / ||z||`` (the same operations, bit for bit), rows inside the ball are ``z / eps``
            (shorter than 1, meeting the zero row's value continuously).
    Returns:
        (N, d) rows of norm 1 (or ``||z|| / eps`` below the floor, 0 for a zero row).
    """
    norms = z.norm(dim=1, keepdim=True)
    nonzero = norms > 0
    denom = torch.where(nonzero, norms.clamp_min(eps) if eps > 0 else norms, torch.ones_like(norms))
    return torch.where(nonzero, z / denom, torch.zeros_like(z))


def direction_floor(grad_bound: float, dtype: torch.dtype, at_least: float = 0.0) -> float:
    """``max(at_least, 4 grad_bound / finfo(dtype).max)``, the range capped at float32's.

    Args:
        grad_bound: C, a bound on the norm of the loss's gradient in a row's direction ``u = z / ||z||``
            (the gradient in z is at most ``C / max(||z||, eps)``, so at most a quarter of the dtype's range).
        dtype: the dtype of the input the gradient is returned in.
        at_least: a floor the loss already had (POD: F.normalize's 1e-12), kept so valid input is unchanged.
    Returns:
        eps for :func:`unit_or_zero`: 6.1e-5 C in float16, about 1.2e-38 C in bfloat16 / float32.
    """
    top = min(torch.finfo(dtype).max, torch.finfo(torch.float32).max) if dtype.is_floating_point else \
        torch.finfo(torch.float32).max
    return max(float(at_least), 4.0 * float(grad_bound) / top)


def lift_small_rows(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Rows with ``0 < ||z|| < eps`` rescaled to norm ``eps`` in value, the identity in the backward pass.

    For a loss that normalises inside code it does not own (a library): its value, which depends on the
    direction only, is unchanged (to rounding), and the gradient it returns for such a row is the exact one
    times ``||z|| / eps`` (same direction, at most ``C / eps``). Other rows are returned as they are.
    """
    if eps <= 0:
        return z
    norms = z.detach().norm(dim=1, keepdim=True)
    small = (norms > 0) & (norms < eps)
    if not bool(small.any()):
        return z
    factor = torch.where(small, eps / torch.where(small, norms, torch.ones_like(norms)), torch.ones_like(norms))
    return z + (z.detach() * (factor - 1)).detach()


def upcast_half(x: torch.Tensor) -> torch.Tensor:
    """float16 / bfloat16 -> float32; any other dtype unchanged (the same tensor)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _tensor_args(fn, args, kwargs):
    """(name, tensor) for every tensor among the call's arguments, in lists, tuples, dicts and ModelOutput."""
    names = list(getattr(fn, "_arg_names", ()))
    pairs = list(zip(names, args)) + [(f"argument {i + 1}", a) for i, a in enumerate(args[len(names):])]
    pairs += list(kwargs.items())
    stack = list(pairs)
    while stack:
        name, v = stack.pop(0)
        if isinstance(v, torch.Tensor):
            yield name, v
        elif isinstance(v, ModelOutput):
            stack += [(f"{name}.features", v.features), (f"{name}.logits", v.logits),
                      *((f"{name}.activations[{k!r}]", a) for k, a in (v.activations or {}).items())]
        elif isinstance(v, dict):
            stack += [(f"{name}[{k!r}]", a) for k, a in v.items()]
        elif isinstance(v, (list, tuple)):
            stack += [(f"{name}[{i}]", a) for i, a in enumerate(v)]


def _full_precision(fn):
    """Wrap a loss method: meta-device inputs refused, autocast off on the inputs' device (module docstring)."""
    fn._arg_names = [p for p in inspect.signature(fn).parameters][1:]  # without self

    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        device = None
        for name, t in _tensor_args(fn, args, kwargs):
            check_has_values(t, name)
            device = device or t.device.type
        if device is not None and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return fn(self, *args, **kwargs)
        return fn(self, *args, **kwargs)

    call._full_precision = True
    return call


class HarnessLoss(nn.Module):
    """Defaults of the harness contract (see module docstring)."""

    views: int = 1
    registry_name: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for meth in ("forward", "harness_objective"):
            fn = cls.__dict__.get(meth)
            if callable(fn) and not getattr(fn, "_full_precision", False):
                setattr(cls, meth, _full_precision(fn))

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
