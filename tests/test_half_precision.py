"""Half precision over EVERY registered loss (issue 15): a loss registered in ``ufm.losses.LOSSES`` joins.

For float16 and bfloat16 features of random direction and norm 1, 1e-6, 0, 1e3 and 1e4, the harness
objective ``harness_objective(out, labels, model)`` and its gradient in the features are finite (a loss
whose documented convention for a zero feature is an error lists it in ``ZERO_RAISES``), and under
``torch.autocast`` (CPU: this torch runs both float16 and bfloat16 autocast on CPU, so both are tested)
the objective is float32, finite, and equal to the same objective computed outside autocast (every loss
switches autocast off inside: ufm/losses/base.py).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from ufm.losses import LOSSES, LargeMarginDiscriminativeLoss, ModelOutput, PODLoss, SupConLoss

K, D, B = 3, 8, 6
HALF = (torch.float16, torch.bfloat16)
#: losses whose convention for a zero feature is a ValueError (theory/degenerate-input.md), with its message
ZERO_RAISES = {"cosface": "is zero", "dot_regression": "is zero", "pedcc_loss": "is zero"}


def build(name: str):
    """The registered loss with the sizes the harness fills in (num_classes, feature_dim / dim)."""
    cls = LOSSES[name]
    params = inspect.signature(cls.__init__).parameters
    kw = {k: v for k, v in (("num_classes", K), ("feature_dim", D), ("dim", D)) if k in params}
    return cls(**kw).train()


class Net(nn.Module):
    """A body (features) and the final linear ``classifier`` the harness contract expects."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(D, D)
        self.classifier = nn.Linear(D, K)


def features(loss, norm: float, dtype, seed: int = 0) -> torch.Tensor:
    """(B, D), or (B, V, D) for a loss with V views: random directions scaled to ``norm``, as a leaf."""
    g = torch.Generator().manual_seed(seed)
    shape = (B, loss.views, D) if loss.views > 1 else (B, D)
    f = torch.randn(shape, generator=g)
    f = f / f.norm(dim=-1, keepdim=True) * norm
    return f.to(dtype).requires_grad_(True)


def output(f: torch.Tensor, net: Net) -> ModelOutput:
    first = f if f.dim() == 2 else f[:, 0]
    return ModelOutput(features=f, logits=net.classifier(f), activations={"layer4": first})


LABELS = torch.arange(B) % K


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("norm", [1.0, 1e-6, 0.0, 1e3, 1e4])
def test_value_and_gradient_finite(name, dtype, norm):
    torch.manual_seed(0)
    loss, net = build(name), Net().to(dtype)
    f = features(loss, norm, dtype)
    if norm == 0.0 and name in ZERO_RAISES:
        with pytest.raises(ValueError, match=ZERO_RAISES[name]):
            loss.harness_objective(output(f, net), LABELS, net)
        return
    obj = loss.harness_objective(output(f, net), LABELS, net)
    assert obj.dtype == torch.float32, "a half-precision input is computed and returned in float32"
    assert math.isfinite(obj.item())
    obj.backward()
    assert f.grad is not None and bool(torch.isfinite(f.grad).all()), float(f.grad.float().abs().max())


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("norm", [1.0, 1e3])
def test_autocast_forward(name, dtype, norm):
    torch.manual_seed(0)
    loss, net = build(name), Net()
    x = features(loss, norm, torch.float32).detach()
    with torch.autocast("cpu", dtype=dtype):
        f = net.body(x)  # the features come out of autocast in half precision
        f.retain_grad()
        out = ModelOutput(features=f, logits=net.classifier(f), activations={"layer4": f if f.dim() == 2 else f[:, 0]})
        obj = loss.harness_objective(out, LABELS, net)
    assert f.dtype == dtype
    assert obj.dtype == torch.float32
    assert math.isfinite(obj.item())
    if not isinstance(loss, (LargeMarginDiscriminativeLoss, PODLoss)):  # (their state moved on with the call)
        assert torch.equal(obj, loss.harness_objective(out, LABELS, net)), "autocast reached inside the loss"
    obj.backward()
    # the gradient the loss returns; the body's own weight gradient is autocast's (a grad scaler's business)
    assert bool(torch.isfinite(f.grad).all())


# ------------------------------------------------------------------------------------------- the cases
@pytest.mark.parametrize("tau,norm", [(0.001, 4e-4), (0.001, 1e-2), (0.01, 4e-6), (0.1, 1e-7), (0.07, 1e-5)])
def test_supcon_float16_small_norms_finite_gradient(tau, norm):
    """Issue 15: the gradient was inf below ||z|| = 4e-4 at tau = 0.001 and 4e-6 at tau = 0.01."""
    loss = SupConLoss(tau)
    f = features(loss, norm, torch.float16)
    value = loss(f, LABELS)
    value.backward()
    assert math.isfinite(value.item())
    assert float(f.grad.float().norm(dim=-1).max()) <= torch.finfo(torch.float16).max / 4


def test_supcon_half_floor_leaves_normal_norms_alone():
    """Above the floor eps = 4 / (tau 65504) the float16 loss is the float32 loss of the same (rounded) input."""
    loss = SupConLoss(0.1)
    f = features(loss, 1.0, torch.float16)
    assert torch.equal(loss(f, LABELS), loss(f.detach().float(), LABELS))


def test_large_margin_float16_is_computed_in_float32():
    """Issue 15: in float16 the loss was inf once ||f - c|| exceeded about 256."""
    loss = LargeMarginDiscriminativeLoss(K, D)
    lin = nn.Linear(D, K)
    f = features(loss, 1e3, torch.float16)
    value = loss(f, LABELS, lin.half())
    assert value.dtype == torch.float32 and math.isfinite(value.item()) and value.item() > 1e4
    loss.reset_centres()
    assert torch.equal(value, loss(f.detach().float(), LABELS, lin.float()))
