"""Large-margin discriminative loss: hand-computed values, state across calls, gradients against
autograd, the compactness-margin theorem, scale / translation structure, the margin bound, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ufm.losses as L
from ufm.geometry import boundary_distances, geometric_margins, multiclass_margin_bound, ramp_margin_loss, score_margins
from ufm.losses import LargeMarginDiscriminativeLoss, ModelOutput
from ufm.losses.large_margin import large_margin_reference
from ufm.solvers.large_margin_ufm import large_margin_ufm_run, theorem1_slack


def _head_1d():
    """K = 2, d = 1, W = [[1], [-1]], b = 0: d_01(x) = x, d_10(x) = -x."""
    lin = nn.Linear(1, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        lin.bias.zero_()
    return lin


def _t(x):
    return torch.tensor(x, dtype=torch.float64)[:, None]


# ----------------------------------------------------------------------------- values by hand
@pytest.mark.parametrize("mode, second", [("partial", 0.8), ("full", 0.55), ("none", 0.575)])
def test_hand_computed_two_calls(mode, second):
    lin = _head_1d()
    loss = LargeMarginDiscriminativeLoss(2, 1, gamma=0.1, delta_v=0.5, delta_d=1.5, momentum=0.5,
                                         momentum_mode=mode).double()
    # call 1: class 0 at {1, 3} (mean 2), class 1 at {-1}. L_c = (0.25 + 0)/2, L_m = (0 + 0.5)/2,
    # L_r = (2 + 1)/2 -> 0.125 + 0.25 + 0.15
    v1 = loss(_t([1.0, 3.0, -1.0]), torch.tensor([0, 0, 1]), lin)
    assert float(v1.detach()) == pytest.approx(0.525, abs=1e-12)
    assert loss.centres[:, 0].tolist() == pytest.approx([2.0, -1.0])
    # call 2: class 0 at {0, 2} (mean 1), class 1 at {-3}; partial: c = (1.5, -2), L_c = (1 + 0)/2 ... see
    # theory/large-margin.md: partial 0.375 + 0.25 + 0.175; full 0.375 + 0 + 0.175; none 0.125 + 0.25 + 0.2
    v2 = loss(_t([0.0, 2.0, -3.0]), torch.tensor([0, 0, 1]), lin)
    assert float(v2.detach()) == pytest.approx(second, abs=1e-12)
    expect = [1.0, -3.0] if mode == "none" else [1.5, -2.0]
    assert loss.centres[:, 0].tolist() == pytest.approx(expect)
    assert loss.seen.tolist() == [True, True]


def test_multiclass_margin_takes_nearest_boundary():
    # K = 3 in the plane, b = 0; class 0 mean at (1, 0).
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    lin = nn.Linear(2, 3, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(w)
    loss = LargeMarginDiscriminativeLoss(3, 2, alpha=0.0, gamma=0.0, delta_d=2.0).double()
    f = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    # d_01 = (1 - 0)/sqrt(2), d_02 = 2/2 = 1 -> nearest is j = 1: hinge 2 - 1/sqrt(2)
    assert loss(f, torch.tensor([0]), lin).item() == pytest.approx(2.0 - 2**-0.5, abs=1e-12)
    d = boundary_distances(f, [0], w)
    assert d[0, 1] == pytest.approx(2**-0.5) and d[0, 2] == pytest.approx(1.0) and d[0, 0] == np.inf


def test_classes_present_and_new_class_starts_at_batch_mean():
    torch.manual_seed(0)
    lin = nn.Linear(3, 5).double()
    loss = LargeMarginDiscriminativeLoss(5, 3, momentum=0.9).double()
    f1 = torch.randn(6, 3, dtype=torch.float64)
    y1 = torch.tensor([0, 0, 2, 2, 2, 0])
    loss(f1, y1, lin)
    assert loss.seen.tolist() == [True, False, True, False, False]
    assert torch.allclose(loss.centres[0], f1[y1 == 0].mean(0))
    assert torch.equal(loss.centres[1], torch.zeros(3, dtype=torch.float64))
    f2 = torch.randn(4, 3, dtype=torch.float64)
    y2 = torch.tensor([1, 1, 0, 0])
    c0 = loss.centres[0].clone()
    loss(f2, y2, lin)
    assert torch.allclose(loss.centres[1], f2[:2].mean(0))  # first time: the batch mean
    assert torch.allclose(loss.centres[0], 0.9 * c0 + 0.1 * f2[2:].mean(0))  # later: momentum
    assert torch.allclose(loss.centres[2], f1[2:5].mean(0))  # absent: untouched


def test_eval_mode_does_not_write_state_and_state_dict_roundtrip():
    torch.manual_seed(1)
    lin = nn.Linear(4, 3)
    loss = LargeMarginDiscriminativeLoss(3, 4)
    f, y = torch.randn(9, 4), torch.tensor([0, 1, 2] * 3)
    loss(f, y, lin)
    sd = {k: v.clone() for k, v in loss.state_dict().items()}
    assert set(sd) == {"centres", "seen"}
    loss.eval()
    v_eval = loss(torch.randn(9, 4), y, lin)
    assert torch.equal(loss.centres, sd["centres"]) and torch.isfinite(v_eval)
    loss.train()
    loss(torch.randn(9, 4), y, lin)
    assert not torch.equal(loss.centres, sd["centres"])
    fresh = LargeMarginDiscriminativeLoss(3, 4)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.centres, sd["centres"]) and bool(fresh.seen.all())
    assert fresh.double().centres.dtype == torch.float64  # buffers move with .to()


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("mode", ["partial", "full", "none"])
def test_analytic_gradients_match_autograd_over_calls(mode):
    gen = torch.Generator().manual_seed(3)
    k, d = 5, 4
    lin = nn.Linear(d, k).double()
    kw = dict(alpha=1.3, beta=0.7, gamma=0.2, delta_v=0.4, delta_d=2.5, momentum=0.8, momentum_mode=mode)
    loss = LargeMarginDiscriminativeLoss(k, d, **kw).double()
    active = 0
    for call in range(4):
        f = torch.randn(14, d, generator=gen, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, k - call % 2, (14,), generator=gen)
        ref = large_margin_reference(f.detach().numpy(), y.numpy(), lin.weight.detach().numpy(),
                                     lin.bias.detach().numpy(), loss.centres.numpy(), loss.seen.numpy(), **kw)
        lin.zero_grad()
        v = loss(f, y, lin)
        v.backward()
        active += ref["margin"] > 0 and ref["compactness"] > 0
        assert float(v.detach()) == pytest.approx(ref["value"], rel=1e-12)
        np.testing.assert_allclose(f.grad.numpy(), ref["grad_features"], atol=1e-12)
        np.testing.assert_allclose(lin.weight.grad.numpy(), ref["grad_weight"], atol=1e-12)
        np.testing.assert_allclose(lin.bias.grad.numpy(), ref["grad_bias"], atol=1e-12)
        np.testing.assert_allclose(loss.centres.numpy(), ref["new_centres"], atol=1e-12)
    assert active >= 3  # the hinges were active: the check is not vacuous


def test_gradient_structure_margin_reaches_samples_through_mean():
    """Every sample of class k gets the same margin gradient -nu/(|C_B| n_k); with momentum, the
    compactness gradients of a class sum to m * 2/(|C_B| n_k) sum h u (a pull of the mean toward
    the stored centre); without momentum they sum to zero."""
    gen = torch.Generator().manual_seed(4)
    lin = nn.Linear(3, 3).double()
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    for mode, m in (("partial", 0.9), ("none", 0.9)):
        loss = LargeMarginDiscriminativeLoss(3, 3, alpha=0.0, beta=1.0, gamma=0.0, delta_d=50.0, momentum=m,
                                             momentum_mode=mode).double()
        loss(torch.randn(6, 3, generator=gen, dtype=torch.float64), y, lin)
        f = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
        loss(f, y, lin).backward()
        g = f.grad[:3]
        assert torch.allclose(g, g[0].expand_as(g), atol=1e-14)
        assert float(g[0].norm()) == pytest.approx(1.0 / (3 * 3), rel=1e-12)  # ||nu|| = 1, |C_B| = 3, n_0 = 3
        comp = LargeMarginDiscriminativeLoss(3, 3, beta=0.0, gamma=0.0, delta_v=0.0, momentum=m,
                                             momentum_mode=mode).double()
        comp(torch.randn(6, 3, generator=gen, dtype=torch.float64), y, lin)
        f2 = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
        prev = comp.centres.clone()
        comp(f2, y, lin).backward()
        s = f2.grad[:3].sum(0)
        if mode == "none":
            assert float(s.norm()) < 1e-14
        else:  # delta_v = 0: h u = f - c, sum = n_0 (mu - c) = n_0 m (mu - c_prev)
            mu = f2.detach()[:3].mean(0)
            expect = m * 2.0 / (3 * 3) * 3 * m * (mu - prev[0])
            assert torch.allclose(s, expect, atol=1e-12)


# ----------------------------------------------------------------------------- theorem 1
def test_theorem1_bound_holds_on_random_batches():
    rng = np.random.default_rng(5)
    for trial in range(40):
        k, d = int(rng.integers(2, 6)), int(rng.integers(1, 5))
        dv, dd = float(rng.uniform(0, 2)), float(rng.uniform(0, 3))
        f = rng.standard_normal((20, d)) * rng.uniform(0.2, 3)
        y = rng.integers(0, k, 20)
        w, b = rng.standard_normal((k, d)), rng.standard_normal(k)
        c = rng.standard_normal((k, d))
        th = theorem1_slack(f, y, w, b, c, dv, dd)
        assert th["min_gap"] >= -1e-12  # gamma_i >= delta_d - delta_v - s_i - t_k - ||c_k - mu_k||


@pytest.mark.parametrize("dv, dd", [(0.5, 1.5), (0.5, 0.5), (0.8, 0.3)])
def test_theorem1_is_tight_zero_loss_configuration(dv, dd):
    """Zero L_c and L_m with samples at mu_k -/+ delta_v nu: the minimum margin is exactly
    delta_d - delta_v, so delta_d <= delta_v allows zero loss with a sample on/over the boundary."""
    lin = _head_1d()
    f = _t([dd - dv, dd + dv, -dd - dv, -dd + dv])
    y = torch.tensor([0, 0, 1, 1])
    loss = LargeMarginDiscriminativeLoss(2, 1, gamma=0.0, delta_v=dv, delta_d=dd).double()
    assert loss(f, y, lin).item() == pytest.approx(0.0, abs=1e-12)
    gm = geometric_margins(f, y, lin.weight, lin.bias)
    assert gm.min() == pytest.approx(dd - dv, abs=1e-12)
    assert (gm.min() > 0) == (dd > dv)


def test_scale_and_translation_structure():
    gen = torch.Generator().manual_seed(6)
    k, d = 4, 3
    lin = nn.Linear(d, k).double()
    f = torch.randn(16, d, generator=gen, dtype=torch.float64)
    y = torch.arange(4).repeat(4)
    base = LargeMarginDiscriminativeLoss(k, d, delta_v=0.3, delta_d=2.0).double().terms(f, y, lin, update=False)
    s = 2.5
    lin_s = nn.Linear(d, k).double()
    with torch.no_grad():
        lin_s.weight.copy_(7.0 * lin.weight)  # W scale does not matter for d_kj
        lin_s.bias.copy_(7.0 * s * lin.bias)
    scaled = LargeMarginDiscriminativeLoss(k, d, delta_v=0.3 * s, delta_d=2.0 * s).double().terms(s * f, y, lin_s,
                                                                                                  update=False)
    assert scaled["compactness"].item() == pytest.approx(s**2 * base["compactness"].item(), rel=1e-10)
    assert scaled["margin"].item() == pytest.approx(s * base["margin"].item(), rel=1e-10)
    assert scaled["regulariser"].item() == pytest.approx(s * base["regulariser"].item(), rel=1e-10)
    assert base["margin"].item() > 0 and base["compactness"].item() > 0
    # translation f -> f + v, b -> b - W v leaves L_c, L_m and the logits unchanged, not L_r
    v = torch.randn(d, generator=gen, dtype=torch.float64) * 5
    lin_t = nn.Linear(d, k).double()
    with torch.no_grad():
        lin_t.weight.copy_(lin.weight)
        lin_t.bias.copy_(lin.bias - lin.weight @ v)
    moved = LargeMarginDiscriminativeLoss(k, d, delta_v=0.3, delta_d=2.0).double().terms(f + v, y, lin_t, update=False)
    assert moved["compactness"].item() == pytest.approx(base["compactness"].item(), rel=1e-10)
    assert moved["margin"].item() == pytest.approx(base["margin"].item(), rel=1e-10)
    assert torch.allclose(lin_t(f + v), lin(f))
    assert abs(moved["regulariser"].item() - base["regulariser"].item()) > 0.5


def test_ufm_run_meets_theorem1():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest on a shared CPU
    try:
        r = large_margin_ufm_run(0.5, 1.5, lam=5.0, gamma=1e-3, steps=400, record_every=400, per_class=8)
    finally:
        torch.set_num_threads(threads)
    assert r["min_gap"] >= -1e-6  # every sample above its Theorem-1 bound
    assert r["train_acc"] == 1.0
    assert r["max_slack"] < 0.5  # settling: hinge violations and the centre lag are small
    assert r["min_margin"] >= r["predicted_margin"] - 0.05  # the zero-loss bound delta_d - delta_v


# ----------------------------------------------------------------------------- margins and the bound
def test_margins_and_bound():
    rng = np.random.default_rng(7)
    f = rng.standard_normal((50, 3))
    w, b = rng.standard_normal((4, 3)), rng.standard_normal(4)
    y = (f @ w.T + b).argmax(1)
    z = f @ w.T + b
    sm, gm = score_margins(z, y), geometric_margins(f, y, w, b)
    assert np.all(sm > 0) and np.all(gm > 0)
    # score margin = min_j ||w_y - w_j|| d_yj >= a_min * gamma
    amin = min(np.linalg.norm(w[i] - w[j]) for i in range(4) for j in range(4) if i != j)
    assert np.all(sm >= amin * gm - 1e-12)
    assert ramp_margin_loss(sm, float(amin * gm.min())) == 0.0
    out = multiclass_margin_bound(f, z, y, w, b, delta=0.05)
    lam = np.sqrt((w**2).sum(1) + b**2).max()
    conf = 3 * np.sqrt(np.log(2 / (0.05 / (40 * 31))) / (2 * 50))
    assert out["Lambda"] >= lam and out["Lambda"] < 2 * lam and out["confidence"] == pytest.approx(conf)
    rad = out["Lambda"] * np.sqrt((f**2).sum() + 50) / 50
    assert out["complexity"] == pytest.approx(4 * 4 / out["rho"] * rad)
    assert out["bound"] == pytest.approx(out["empirical_margin_loss"] + out["complexity"] + conf)
    # misclassifying everything cannot lower the bound below the training error
    bad = multiclass_margin_bound(f, z, (y + 1) % 4, w, b)
    assert bad["bound"] >= 1.0 and bad["train_error"] == 1.0


# ----------------------------------------------------------------------------- harness and errors
def test_registered_and_harness_objective():
    assert L.get_loss("large_margin") is LargeMarginDiscriminativeLoss
    assert L.LargeMarginDiscriminativeLoss is LargeMarginDiscriminativeLoss
    torch.manual_seed(2)
    model = nn.Module()
    model.classifier = nn.Linear(5, 3)
    h = torch.randn(12, 5)
    y = torch.tensor([0, 1, 2] * 4)
    out = ModelOutput(features=h, logits=model.classifier(h))
    loss = LargeMarginDiscriminativeLoss(3, 5, lam=0.7)
    twin = LargeMarginDiscriminativeLoss(3, 5)
    got = loss.harness_objective(out, y, model)
    want = nn.functional.cross_entropy(out.logits, y) + 0.7 * twin(h, y, model.classifier)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert loss.harness_predict(out, model) is None
    stats = loss.on_epoch_end(0, {})
    assert set(stats) == {"ldis_compactness", "ldis_margin", "ldis_regulariser", "centre_step"}


def test_errors():
    lin = nn.Linear(3, 4)
    loss = LargeMarginDiscriminativeLoss(4, 3)
    f = torch.randn(5, 3)
    with pytest.raises(ValueError, match="out of range"):
        loss(f, torch.tensor([0, 1, 2, 3, 4]), lin)
    with pytest.raises(ValueError, match="non-negative"):
        loss(f, torch.tensor([0, 1, 2, 3, -1]), lin)
    with pytest.raises(ValueError, match="classifier weight must have shape"):
        loss(f, torch.tensor([0, 1, 2, 3, 0]), nn.Linear(3, 5))
    with pytest.raises(ValueError, match="feature_dim"):
        loss(torch.randn(5, 2), torch.tensor([0, 1, 2, 3, 0]), lin)
    bad = f.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        loss(bad, torch.tensor([0, 1, 2, 3, 0]), lin)
    with pytest.raises(ValueError, match="length"):
        loss(f, torch.tensor([0, 1]), lin)
    with pytest.raises(ValueError, match="empty"):
        loss(torch.randn(0, 3), torch.tensor([], dtype=torch.long), lin)
    same = nn.Linear(3, 4)
    with torch.no_grad():
        same.weight[1] = same.weight[0]
    with pytest.raises(ValueError, match="coincide"):
        loss(f, torch.tensor([0, 1, 2, 3, 0]), same)
    with pytest.raises(ValueError, match="momentum"):
        LargeMarginDiscriminativeLoss(4, 3, momentum=1.0)
    with pytest.raises(ValueError, match="momentum_mode"):
        LargeMarginDiscriminativeLoss(4, 3, momentum_mode="half")
    with pytest.raises(ValueError, match="num_classes"):
        LargeMarginDiscriminativeLoss(1, 3)
    with pytest.raises(ValueError, match="delta_v"):
        LargeMarginDiscriminativeLoss(4, 3, delta_v=-1.0)
    assert not bool(loss.seen.any())  # failed calls wrote no state
