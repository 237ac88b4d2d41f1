"""Baselines of the POD comparison: CosFace (pytorch-metric-learning), PEDCC-Loss, COT and the fixed-ETF
classifier with dot regression. Each against its formula written independently, its harness
contract, its fixed parts as buffers, and clear errors on bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ufm.geometry import pedcc
from ufm.losses import COTLoss, CosFaceLoss, DotRegressionLoss, ModelOutput, PEDCCLoss, get_loss


def _data(n=24, d=6, k=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.arange(n) % k


def test_registry_names():
    for name, cls in [("cosface", CosFaceLoss), ("pedcc_loss", PEDCCLoss), ("cot", COTLoss),
                      ("dot_regression", DotRegressionLoss)]:
        assert get_loss(name) is cls


# ----------------------------------------------------------------------------- dot regression
def test_dot_regression_formula_minimiser_and_prediction():
    x, y = _data()
    c = pedcc(4, 6, seed=1)
    loss = DotRegressionLoss(c)
    cos = (x / x.norm(dim=1, keepdim=True) * c[y]).sum(1)
    assert abs(float(loss(x, y)) - float(0.5 * ((cos - 1) ** 2).mean())) < 1e-12
    # zero exactly on features along their class vector, any norm
    assert float(loss(3.7 * c[y], y)) < 1e-24
    # a feature exactly opposite its class vector costs (1 - (-1))^2 / 2 = 2
    assert abs(float(loss(-c[y], y)) - 2.0) < 1e-12
    s = loss.harness_predict(ModelOutput(features=x), None)
    assert torch.equal(s.argmax(1), (x @ c.T).argmax(1))
    assert not list(loss.parameters()) and "centroids" in dict(loss.named_buffers())


def test_dot_regression_bad_input():
    loss = DotRegressionLoss(num_classes=3, dim=4)
    with pytest.raises(ValueError, match="dimension"):
        loss(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        loss(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.tensor([[float("nan"), 1.0, 0, 0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="is zero"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unit vectors"):
        DotRegressionLoss(torch.ones(3, 4))


def test_dot_regression_minimum_is_quartic_in_the_angle():
    """(1 - cos t)^2 / 2 = t^4 / 8 + O(t^6): a degenerate minimum (POD's Delta makes it quadratic)."""
    c = pedcc(3, 4, seed=0)
    loss = DotRegressionLoss(c)
    perp = c[1] - (c[1] @ c[0]) * c[0]
    perp = perp / perp.norm()
    for t in (1e-2, 3e-2):
        x = (math.cos(t) * c[0] + math.sin(t) * perp)[None]
        assert abs(float(loss(x, torch.tensor([0]))) / (t**4 / 8) - 1) < 1e-3


# ----------------------------------------------------------------------------- COT
def test_cot_matches_the_complement_entropy_formula():
    z, y = _data(n=10, d=5, k=5, seed=3)
    z = z * 3
    p = torch.softmax(z, 1)
    py = p.gather(1, y[:, None])
    q = p / (1 - py)
    mask = F.one_hot(y, 5).bool()
    comp = torch.where(mask, torch.zeros_like(q), q * torch.log(q)).sum() / (10 * 5)
    ce = F.cross_entropy(z, y)
    for w in (0.0, 1.0, 2.5):
        assert abs(float(COTLoss(w)(z, y)) - float(ce + w * comp)) < 1e-5
    # lower bound -log(k-1)/k per sample, attained when the non-target logits are equal
    flat = torch.zeros(4, 5)
    flat[torch.arange(4), torch.arange(4)] = 7.0
    yy = torch.arange(4)
    lower = -math.log(4) / 5
    val = float(COTLoss(1.0)(flat, yy) - F.cross_entropy(flat, yy))
    assert abs(val - lower) < 1e-6
    assert float(COTLoss(1.0)(z, y) - ce) > lower


def test_cot_is_stable_for_confident_logits_and_checks_input():
    z = torch.tensor([[200.0, 0.0, -5.0], [0.0, 150.0, 3.0]], requires_grad=True)
    val = COTLoss()(z, torch.tensor([0, 1]))
    val.backward()
    assert torch.isfinite(val) and torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="NaN"):
        COTLoss()(torch.tensor([[float("inf"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="out of range"):
        COTLoss()(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="shape \\(N, k\\)"):
        COTLoss()(torch.zeros(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="complement_weight"):
        COTLoss(-1.0)
    with pytest.raises(ValueError, match="needs logits"):
        COTLoss().harness_objective(ModelOutput(features=torch.zeros(2, 3)), torch.tensor([0, 1]), None)
    assert COTLoss().harness_predict(ModelOutput(features=torch.zeros(2, 3)), None) is None


# ----------------------------------------------------------------------------- PEDCC-Loss
def test_pedcc_loss_formula_without_and_with_batchnorm():
    x, y = _data(n=16, d=6, k=4, seed=4, dtype=torch.float32)
    c = pedcc(4, 6, seed=0)
    s, m = 7.5, 0.35

    def ref(xx):
        z = xx.double() / xx.double().norm(dim=1, keepdim=True)
        cos = z @ c.T
        logits = s * (cos - m * F.one_hot(y, 4))
        return F.cross_entropy(logits, y) + ((z - c[y]) ** 2).mean()

    plain = PEDCCLoss(c, feature_batchnorm=False, mse_reduction="mean")
    assert abs(float(plain(x, y)) - float(ref(x))) < 1e-5
    bn = PEDCCLoss(c, mse_reduction="mean")
    xb = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    assert abs(float(bn(x, y)) - float(ref(xb))) < 1e-5
    # the running statistics moved (momentum 0.1 towards the batch mean), and only in training
    assert torch.allclose(bn.running_mean, 0.1 * x.mean(0), atol=1e-6)
    before = bn.running_mean.clone()
    with torch.no_grad():
        bn(x + 10, y)
    assert torch.equal(bn.running_mean, before)
    # prediction uses the running statistics, whatever the module mode
    scores = bn.harness_predict(ModelOutput(features=x), None)
    xr = (x - bn.running_mean) / torch.sqrt(bn.running_var + 1e-5)
    assert torch.allclose(scores.double(), (xr / xr.norm(dim=1, keepdim=True)).double() @ c.T, atol=1e-5)
    assert not list(bn.parameters())
    assert {"centroids", "running_mean", "running_var"} <= set(dict(bn.named_buffers()))
    # at its target the loss is the AM-softmax of perfectly separated cosines (MSE term zero)
    at = plain(c[y].float(), y)
    gap = s * (1 - m + 1 / 3)  # target cosine 1 - m, the others -1/(k-1)
    assert abs(float(at) - math.log(1 + 3 * math.exp(-gap))) < 1e-5


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pedcc_loss_mse_reduction_against_a_hand_computation(reduction):
    # two samples in d = 2, centroids of k = 2 (a simplex: u_0 = e_1, u_1 = -e_1), no BatchNorm, s = 1, m = 0
    c = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])  # z_0 = (0.6, 0.8), z_1 = (0, -1)
    y = torch.tensor([0, 1])
    # squared residual entries: (0.6 - 1)^2, 0.8^2 | (0 + 1)^2, (-1)^2 -> 0.16 + 0.64 + 1 + 1 = 2.8
    # (= 2 sum_i (1 - cos_i) = 2 (0.4 + 1): unit vectors)
    mse = {"sum": 2.8, "mean": 2.8 / 4}[reduction]  # sum over the B x d = 4 entries, or their mean
    # AM-softmax with s = 1, m = 0: cosines (0.6, -0.6) and (0, 0)
    am = (math.log(1 + math.exp(-1.2)) + math.log(2)) / 2
    loss = PEDCCLoss(c, scale=1.0, margin=0.0, feature_batchnorm=False, mse_reduction=reduction)
    assert abs(float(loss(x, y)) - (am + mse)) < 1e-6


def test_pedcc_loss_default_reduction_is_the_authors_sum_and_magnitudes():
    assert PEDCCLoss(num_classes=3, dim=4).mse_reduction == "sum"
    # CIFAR-100 sizes, features orthogonal to every centroid (cosines 0): the MSE term is 2/d under the
    # mean (0.0039) and 2B under the sum (256), the AM-softmax part log(1 + 99 e^{s m}) = 7.22
    k, d, b = 100, 512, 128
    c = pedcc(k, d, seed=0)
    y = torch.arange(b) % k
    basis = torch.linalg.qr(torch.cat([c.T, torch.randn(d, 1, dtype=torch.float64)], 1))[0][:, k]
    x = basis.expand(b, d).float()  # (B, d), each orthogonal to the k centroids
    parts = {}
    for red in ("sum", "mean"):
        full = PEDCCLoss(c, feature_batchnorm=False, mse_reduction=red)(x, y)
        am = PEDCCLoss(c, feature_batchnorm=False, mse_weight=0.0, mse_reduction=red)(x, y)
        parts[red] = float(full - am)
    assert abs(float(am) - math.log(1 + 99 * math.exp(7.5 * 0.35))) < 1e-4
    assert abs(parts["mean"] - 2 / d) < 1e-6 and abs(parts["sum"] - 2 * b) < 1e-3


def test_pedcc_loss_bad_input():
    loss = PEDCCLoss(num_classes=3, dim=4)
    with pytest.raises(ValueError, match="at least 2"):
        loss(torch.randn(1, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="dimension"):
        loss(torch.randn(4, 5), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="scale"):
        PEDCCLoss(num_classes=3, dim=4, scale=0.0)
    with pytest.raises(ValueError, match="mse_reduction"):
        PEDCCLoss(num_classes=3, dim=4, mse_reduction="batchmean")
    with pytest.raises(ValueError, match="num_classes <= dim \\+ 1"):
        PEDCCLoss(num_classes=10, dim=4)


# ----------------------------------------------------------------------------- CosFace
def test_cosface_wraps_pytorch_metric_learning_and_matches_the_formula():
    x, y = _data(n=20, d=6, k=4, seed=5, dtype=torch.float32)
    loss = CosFaceLoss(num_classes=4, dim=6, margin=0.35, scale=30.0, seed=1)
    w = loss.weight.detach()
    assert w.shape == (4, 6)
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    ref = F.cross_entropy(30.0 * (cos - 0.35 * F.one_hot(y, 4)), y)
    assert abs(loss(x, y).item() - float(ref)) < 1e-4
    # W is learnable (the harness optimises loss parameters): the gradient reaches it
    params = list(loss.parameters())
    assert len(params) == 1 and params[0].shape == (6, 4)
    loss(x, y).backward()
    assert params[0].grad is not None and params[0].grad.abs().sum() > 0
    s = loss.harness_predict(ModelOutput(features=x), None)
    assert torch.allclose(s, cos, atol=1e-6)
    # seeded initialisation
    assert torch.equal(CosFaceLoss(4, 6, seed=1).weight, CosFaceLoss(4, 6, seed=1).weight)


def test_cosface_bad_input():
    loss = CosFaceLoss(3, 4)
    with pytest.raises(ValueError, match="dim=4"):
        loss(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="out of range"):
        loss(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full((2, 4), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="margin"):
        CosFaceLoss(3, 4, margin=-0.1)


def test_pedcc_loss_in_double_precision_matches_float32():
    """After ``.double()`` the running statistics are float64: the loss computes in float64, not a mixed-dtype error."""
    import torch

    from ufm.losses import get_loss

    x, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 0, 1, 1, 2, 2])
    loss64 = get_loss("pedcc_loss")(num_classes=3, dim=4).double()(x.double(), y)
    loss32 = get_loss("pedcc_loss")(num_classes=3, dim=4)(x, y)
    assert loss64.dtype == torch.float64 and abs(float(loss64) - float(loss32)) < 1e-4
