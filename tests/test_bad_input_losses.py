"""Bad input to the losses (issue 15): one row per case, each a clear error naming the argument and the value.

A new loss joins by adding rows: constructor arguments to ``CONSTRUCTOR_CASES``, calls to ``CALL_CASES``.
The degenerate-input conventions (numbers, not errors) are tested at the end; the table of them is
theory/degenerate-input.md.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ufm.losses import (
    LOSSES,
    COTLoss,
    CosFaceLoss,
    CrossEntropyLoss,
    DotRegressionLoss,
    GiniKLLoss,
    LargeMarginDiscriminativeLoss,
    ModelOutput,
    PEDCCLoss,
    PODLoss,
    SupConLoss,
)
from ufm.losses.large_margin import momentum_for_memory

Y6 = torch.tensor([0, 0, 1, 1, 2, 2])
P = pytest.param

# ------------------------------------------------------------------------------------------- constructors
CONSTRUCTOR_CASES = [
    P(SupConLoss, {"temperature": "0.1"}, TypeError, r"temperature must be a real number, got '0\.1' \(str\)",
      id="supcon-temperature-string"),
    P(SupConLoss, {"temperature": "abc"}, TypeError, r"temperature must be a real number, got 'abc'",
      id="supcon-temperature-abc"),
    P(SupConLoss, {"temperature": float("inf")}, ValueError, r"temperature must be positive and finite, got inf",
      id="supcon-temperature-inf"),
    P(SupConLoss, {"temperature": float("nan")}, ValueError, r"temperature must be positive and finite, got nan",
      id="supcon-temperature-nan"),
    P(SupConLoss, {"temperature": 0.0}, ValueError, r"temperature must be positive and finite, got 0\.0",
      id="supcon-temperature-zero"),
    P(SupConLoss, {"temperature": None}, TypeError, r"temperature must be a real number, got None",
      id="supcon-temperature-none"),
    P(SupConLoss, {"temperature": True}, TypeError, r"temperature must be a real number, got True \(bool\)",
      id="supcon-temperature-bool"),
    P(SupConLoss, {"base_temperature": "0.07"}, TypeError, r"base_temperature must be a real number, got '0\.07'",
      id="supcon-base-temperature-string"),
    P(SupConLoss, {"base_temperature": -1.0}, ValueError, r"base_temperature must be positive and finite, got -1\.0",
      id="supcon-base-temperature-negative"),
    P(SupConLoss, {"chunk_size": 0}, ValueError, r"chunk_size must be an integer >= 1, got 0", id="supcon-chunk-zero"),
    P(SupConLoss, {"chunk_size": 2.5}, TypeError, r"chunk_size must be an integer, got 2\.5", id="supcon-chunk-float"),
    P(CrossEntropyLoss, {"label_smoothing": "0.1"}, TypeError, r"label_smoothing must be a real number, got '0\.1'",
      id="ce-smoothing-string"),
    P(CrossEntropyLoss, {"label_smoothing": 1.0}, ValueError, r"label_smoothing must be in \[0\.0, 1\.0\), got 1\.0",
      id="ce-smoothing-one"),
    P(CrossEntropyLoss, {"label_smoothing": float("nan")}, ValueError, r"label_smoothing must be in .*got nan",
      id="ce-smoothing-nan"),
    P(COTLoss, {"complement_weight": "1"}, TypeError, r"complement_weight must be a real number, got '1'",
      id="cot-weight-string"),
    P(COTLoss, {"complement_weight": float("inf")}, ValueError, r"complement_weight must be >= 0.0 and finite, got inf",
      id="cot-weight-inf"),
    P(CosFaceLoss, {"num_classes": 3, "dim": 4, "scale": "30"}, TypeError, r"scale must be a real number, got '30'",
      id="cosface-scale-string"),
    P(CosFaceLoss, {"num_classes": 3, "dim": 4, "margin": float("nan")}, ValueError, r"margin must be .*got nan",
      id="cosface-margin-nan"),
    P(CosFaceLoss, {"num_classes": 1, "dim": 4}, ValueError, r"num_classes must be an integer >= 2, got 1",
      id="cosface-one-class"),
    P(CosFaceLoss, {"num_classes": 3, "dim": "4"}, TypeError, r"dim must be an integer, got '4'", id="cosface-dim-string"),
    P(PODLoss, {"num_classes": 3, "dim": 4, "delta": "0.05"}, TypeError, r"delta must be a real number, got '0\.05'",
      id="pod-delta-string"),
    P(PODLoss, {"num_classes": 3, "dim": 4, "delta": float("inf")}, ValueError, r"delta must be positive and finite, got inf",
      id="pod-delta-inf"),
    P(PODLoss, {"num_classes": 3, "dim": 4, "decorrelation_weight": float("nan")}, ValueError,
      r"decorrelation_weight must be >= 0.0 and finite, got nan", id="pod-decorrelation-nan"),
    P(PODLoss, {"num_classes": 3, "dim": 4, "delta_rate": -0.01}, ValueError, r"delta_rate must be positive .*got -0\.01",
      id="pod-delta-rate-negative"),
    P(PODLoss, {"num_classes": "abc", "dim": 4}, TypeError, r"num_classes must be an integer, got 'abc'",
      id="pod-num-classes-string"),
    P(PODLoss, {"num_classes": 3, "dim": 4, "seed": 1.5}, TypeError, r"seed must be an integer, got 1\.5",
      id="pod-seed-float"),
    P(DotRegressionLoss, {"num_classes": 3, "dim": "x"}, TypeError, r"dim must be an integer, got 'x'",
      id="dot-regression-dim-string"),
    P(PEDCCLoss, {"num_classes": 3, "dim": 4, "margin": "0.35"}, TypeError, r"margin must be a real number, got '0\.35'",
      id="pedcc-margin-string"),
    P(PEDCCLoss, {"num_classes": 3, "dim": 4, "bn_momentum": 0.0}, ValueError, r"bn_momentum must be in \(0\.0, 1\.0\], got 0\.0",
      id="pedcc-bn-momentum-zero"),
    P(PEDCCLoss, {"num_classes": 3, "dim": 4, "mse_power": float("nan")}, ValueError, r"mse_power must be positive .*nan",
      id="pedcc-power-nan"),
    P(PEDCCLoss, {"num_classes": 3, "dim": 4, "mse_reduction": "batchmean"}, ValueError,
      r"mse_reduction must be one of 'sum', 'mean'; got 'batchmean'", id="pedcc-reduction"),
    P(LargeMarginDiscriminativeLoss, {"num_classes": 3, "feature_dim": 4, "momentum": 1.0}, ValueError,
      r"momentum must be in \[0\.0, 1\.0\), got 1\.0", id="large-margin-momentum-one"),
    P(LargeMarginDiscriminativeLoss, {"num_classes": 3, "feature_dim": 4, "momentum": "0.9"}, TypeError,
      r"momentum must be a real number, got '0\.9'", id="large-margin-momentum-string"),
    P(LargeMarginDiscriminativeLoss, {"num_classes": 3, "feature_dim": 4, "momentum": float("nan")}, ValueError,
      r"momentum must be in \[0\.0, 1\.0\), got nan", id="large-margin-momentum-nan"),
    P(LargeMarginDiscriminativeLoss, {"num_classes": 3, "feature_dim": 4, "delta_d": float("inf")}, ValueError,
      r"delta_d must be >= 0.0 and finite, got inf", id="large-margin-delta-d-inf"),
    P(LargeMarginDiscriminativeLoss, {"num_classes": 3, "feature_dim": 4, "lam": "1"}, TypeError,
      r"lam must be a real number, got '1'", id="large-margin-lam-string"),
    P(LargeMarginDiscriminativeLoss, {"num_classes": 3, "feature_dim": 4, "norm": 3}, ValueError,
      r"norm must be one of 1, 2; got 3", id="large-margin-norm"),
    P(LargeMarginDiscriminativeLoss, {"num_classes": 3, "feature_dim": 2.5}, TypeError,
      r"feature_dim must be an integer, got 2\.5", id="large-margin-feature-dim-float"),
    P(LargeMarginDiscriminativeLoss, {"num_classes": 3, "feature_dim": 4, "momentum_memory": "0.5", "steps_per_epoch": 10},
      TypeError, r"momentum_memory .* must be a real number, got '0\.5'", id="large-margin-memory-string"),
    P(GiniKLLoss, {"num_classes": 3, "lambda_gini": "0.5"}, TypeError, r"lambda_gini must be a real number, got '0\.5'",
      id="gini-kl-lambda-string"),
    P(GiniKLLoss, {"num_classes": 3, "lambda_kl": float("inf")}, ValueError, r"lambda_kl must be >= 0.0 and finite, got inf",
      id="gini-kl-lambda-inf"),
    P(GiniKLLoss, {"num_classes": 3, "eps": float("nan")}, ValueError, r"eps must be positive and finite, got nan",
      id="gini-kl-eps-nan"),
    P(GiniKLLoss, {"num_classes": 3, "warmup_epochs": 1.5}, TypeError, r"warmup_epochs must be an integer, got 1\.5",
      id="gini-kl-warmup-float"),
]


@pytest.mark.parametrize("cls,kwargs,error,match", CONSTRUCTOR_CASES)
def test_bad_constructor_argument(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_momentum_for_memory_names_its_arguments():
    with pytest.raises(TypeError, match=r"steps_per_epoch must be an integer, got 'x'"):
        momentum_for_memory(0.5, "x")
    with pytest.raises(ValueError, match=r"momentum_memory .* must be positive and finite, got 0\.0"):
        momentum_for_memory(0.0, 10)


# ------------------------------------------------------------------------------------------- calls
def _meta(*shape):
    return torch.zeros(*shape, device="meta")


def _out(features, logits=None):
    return ModelOutput(features=features, logits=logits)


CALL_CASES = [
    P(lambda: SupConLoss()(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), ValueError,
      r"embeddings are an empty batch \(shape \(0, 4\)\)", id="supcon-empty-batch"),
    P(lambda: SupConLoss()(torch.zeros(0, 2, 4), torch.zeros(0, dtype=torch.long)), ValueError,
      r"embeddings are an empty batch \(shape \(0, 2, 4\)\)", id="supcon-empty-batch-views"),
    P(lambda: SupConLoss()(_meta(6, 4), Y6), ValueError, r"embeddings: a tensor on the meta device \(shape \(6, 4\)",
      id="supcon-meta-embeddings"),
    P(lambda: SupConLoss()(torch.randn(6, 4), Y6.to("meta")), ValueError, r"labels: a tensor on the meta device",
      id="supcon-meta-labels"),
    P(lambda: SupConLoss().harness_objective(_out(_meta(6, 2, 4)), Y6, None), ValueError,
      r"embeddings: a tensor on the meta device", id="supcon-harness-meta"),
    P(lambda: PODLoss(num_classes=3, dim=4)(_meta(6, 4), Y6), ValueError, r"features: a tensor on the meta device",
      id="pod-meta"),
    P(lambda: GiniKLLoss(3)({"layer4": _meta(6, 4)}, Y6), ValueError,
      r"activations\['layer4'\]: a tensor on the meta device", id="gini-kl-meta-dict"),
    P(lambda: CrossEntropyLoss().harness_objective(_out(torch.zeros(2, 3), torch.tensor([[float("nan"), 0.0], [0.0, 1.0]])),
                                                   torch.tensor([0, 1]), None),
      ValueError, r"logits contain NaN or infinite values", id="ce-harness-nan-logits"),
    P(lambda: CrossEntropyLoss()(torch.tensor([[float("inf"), 0.0]]), torch.tensor([0])), ValueError,
      r"logits contain NaN or infinite values", id="ce-inf-logits"),
]


@pytest.mark.parametrize("call,error,match", CALL_CASES)
def test_bad_call(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------------------------------- conventions
# Degenerate input with a meaningful answer: the number (theory/degenerate-input.md gives the table).
def test_supcon_one_zero_embedding_has_term_log_m_minus_1_and_no_gradient():
    from ufm.losses.supcon import supcon_per_anchor

    z = torch.randn(6, 4).relu() + 0.1
    z[2] = 0.0  # a dead-unit sample after a final ReLU
    z.requires_grad_(True)
    terms, valid = supcon_per_anchor(z, Y6, 0.1)
    assert bool(valid.all())
    assert terms[2].item() == pytest.approx(math.log(5), rel=1e-6)  # m = 6: log(m - 1)
    SupConLoss(0.1)(z, Y6).backward()
    assert torch.equal(z.grad[2], torch.zeros(4))  # no gradient through its normalisation
    assert bool(torch.isfinite(z.grad).all()) and z.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("views", [1, 2])
def test_supcon_all_zero_batch_is_log_m_minus_1(dtype, views):
    m = 6 * views
    shape = (6, views, 4) if views > 1 else (6, 4)
    z = torch.zeros(shape, dtype=dtype, requires_grad=True)
    loss = SupConLoss(0.1)
    value = loss(z, Y6)
    assert value.item() == pytest.approx(math.log(m - 1), rel=1e-6)
    value.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_supcon_counts_zero_embeddings_in_the_epoch_metrics():
    loss = SupConLoss(0.1).train()
    loss.on_epoch_start(0)
    a = torch.rand(6, 2, 4) + 0.1
    a[0, 1] = 0.0  # one view of one sample dead: 1 of 12 embeddings
    b = torch.rand(3, 2, 4) + 0.1
    b[:, 0] = 0.0  # 3 of 6 embeddings
    loss(a, Y6)
    loss(b, torch.tensor([0, 0, 1]))
    row = loss.on_epoch_end(0, {})
    assert row["zero_embeddings"] == pytest.approx((1 + 3) / (12 + 6), rel=1e-12)  # a mean over embeddings
    loss.eval()
    loss(torch.zeros(6, 4), Y6)  # evaluation is not counted
    assert loss.on_epoch_end(0, {})["zero_embeddings"] == pytest.approx(4 / 18, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("rows", ["one", "all"])
def test_pod_zero_feature_gradient_is_the_cosine_term_alone(dtype, rows):
    """Issue 15: 5e9 (float32, bfloat16), 1.5e10 for one zero row, inf in float16; now -2 u_y / (B Delta)."""
    loss = PODLoss(num_classes=3, dim=4, delta=0.05)
    x = torch.randn(6, 4)
    x[0] = 0.0
    if rows == "all":
        x.zero_()
    x = x.to(dtype).requires_grad_(True)
    value = loss(x, Y6)
    value.backward()
    assert math.isfinite(value.item())
    expected = -2 * loss.centroids[0] / (6 * 0.05)  # norm 2 / (B Delta) = 6.67
    tol = 1e-6 if dtype in (torch.float32, torch.float64) else 2e-2
    torch.testing.assert_close(x.grad[0].double(), expected, rtol=tol, atol=tol)
    if rows == "all":  # every row: the bound 2 / (B Delta) holds for the whole gradient
        assert float(x.grad.double().norm(dim=1).max()) <= 2 / (6 * 0.05) * (1 + tol)


def test_pod_one_dimensional_features_have_no_decorrelation_term():
    loss = PODLoss(num_classes=2, dim=1)
    x = torch.tensor([[1.0], [2.0], [-1.0], [-0.5]])
    nac, sc = loss.terms(x, torch.tensor([0, 0, 1, 1]))
    assert sc.item() == 0.0 and math.isfinite(nac.item())


# ------------------------------------------------------------------------------------------- every loss
def _build(name, **extra):
    """The registered loss with the sizes the harness fills in (3 classes, dimension 8)."""
    import inspect

    cls = LOSSES[name]
    params = inspect.signature(cls.__init__).parameters
    kw = {k: v for k, v in (("num_classes", 3), ("feature_dim", 8), ("dim", 8)) if k in params}
    return cls(**{**kw, **extra}).train()


def _harness(loss, f, net):
    first = f if f.dim() == 2 else f[:, 0]
    return loss.harness_objective(ModelOutput(features=f, logits=net.classifier(f), activations={"a": first}), Y6, net)


def _net(bias: bool = True):
    net = nn.Module()
    net.classifier = nn.Linear(8, 3, bias=bias)
    return net


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_every_loss_refuses_non_finite_features(name, bad):
    """NaN/inf features (and so logits) in the harness objective: a ValueError, never a NaN loss."""
    loss = _build(name)
    f = torch.randn((6, loss.views, 8) if loss.views > 1 else (6, 8))
    f[1, ..., 2] = bad
    with pytest.raises(ValueError, match=r"(features|embeddings|logits|activations) contain NaN or infinite values"):
        _harness(loss, f, _net())


@pytest.mark.parametrize("name,extra", [("gini_kl", {"warmup_epochs": 3}), ("large_margin", {"lam": 0.0})],
                         ids=["gini-kl-warmup", "large-margin-lam0"])
def test_cross_entropy_alone_refuses_non_finite_logits(name, extra):
    """When the objective is the cross-entropy alone (warm-up, lam = 0) the logits are still checked."""
    loss = _build(name, **extra)
    logits = torch.zeros(6, 3)
    logits[0, 0] = float("nan")
    out = ModelOutput(features=torch.randn(6, 8), logits=logits, activations={"a": torch.rand(6, 8)})
    with pytest.raises(ValueError, match="logits contain NaN or infinite values"):
        loss.harness_objective(out, Y6, _net())


# the number each loss returns for a batch of zero features, through its harness objective with a
# bias-free classifier (logits 0): theory/degenerate-input.md, column "zero features"
ZERO_FEATURES = [
    P("supcon", math.log(11), id="supcon"),  # 6 samples x 2 views: every term log(m - 1)
    P("ce", math.log(3), id="ce"),  # logits 0: log k
    P("cot", math.log(3) - math.log(2) / 3, id="cot"),  # log k - log(k - 1) / k
    P("pod", None, id="pod"),  # 1 + L_SC(R = -U_y): checked on the terms below
    P("large_margin", math.log(3) + 1.5, id="large-margin"),  # CE log k + lam * beta * delta_d (c = mu = 0)
    P("gini_kl", math.log(3), id="gini-kl"),  # every filter silent: the terms are 0, the CE log k
    P("cosface", ValueError, id="cosface"),
    P("dot_regression", ValueError, id="dot-regression"),
    P("pedcc_loss", ValueError, id="pedcc-loss"),
]


@pytest.mark.parametrize("name,expected", ZERO_FEATURES)
def test_zero_features_convention(name, expected):
    assert {p.values[0] for p in ZERO_FEATURES} == set(LOSSES), "a new loss adds its row"
    loss = _build(name)
    f = torch.zeros((6, loss.views, 8) if loss.views > 1 else (6, 8), requires_grad=True)
    if expected is ValueError:
        with pytest.raises(ValueError, match="is zero"):
            _harness(loss, f, _net(bias=False))
        return
    value = _harness(loss, f, _net(bias=False))
    value.backward()
    assert bool(torch.isfinite(f.grad).all())
    if name == "pod":
        nac, _ = loss.terms(f.detach(), Y6)
        assert nac.item() == 1.0
    else:
        assert value.item() == pytest.approx(expected, rel=1e-6)


def test_supcon_absent_classes_do_not_matter():
    """Only equality of labels enters: classes 0, 5, 10 (1-4, 6-9 absent) give the loss of 0, 1, 2."""
    z = torch.randn(6, 2, 4)
    loss = SupConLoss(0.1)
    assert torch.equal(loss(z, Y6), loss(z, Y6 * 5))


def test_large_margin_absent_class_and_singleton():
    """Means over the classes present; a class seen once for the first time has c = mu = f: compactness 0."""
    from ufm.losses.large_margin import large_margin_reference

    lin = nn.Linear(4, 3)
    f = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 2])  # class 1 absent, class 2 a singleton
    loss = LargeMarginDiscriminativeLoss(3, 4).double()
    terms = loss.terms(f, y, lin.double())
    ref = large_margin_reference(f, y, lin.weight.detach(), lin.bias.detach(), torch.zeros(3, 4), torch.zeros(3, dtype=bool))
    assert terms["compactness"].item() == pytest.approx(ref["compactness"], rel=1e-12)
    assert terms["margin"].item() == pytest.approx(ref["margin"], rel=1e-12)
    single = loss.terms(f[4:], y[4:], lin.double(), update=False)
    assert single["compactness"].item() == 0.0
