"""Large-margin loss, issue 13: the scaling law of CE + lam L_dis, the authors' L1 ``norm`` option, the centre
memory rule, the held-out margin bound's pieces and vacuity, and the UFM phase table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ufm.geometry.margins import (heldout_margin_bound, informative_sample_size, multiclass_margin_bound,
                                  ramp_margin_loss, score_margins, vacuity_floor)
from ufm.losses import LargeMarginDiscriminativeLoss
from ufm.losses.large_margin import AUTHORS_MEMORY_EPOCHS, large_margin_reference, momentum_for_memory
from ufm.solvers.large_margin_ufm import PHASE_METRICS, large_margin_phase, phase_summary


def _terms(f, y, w, b, dv, dd, norm=2):
    lin = nn.Linear(f.shape[1], w.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    loss = LargeMarginDiscriminativeLoss(w.shape[0], f.shape[1], delta_v=dv, delta_d=dd, momentum_mode="none",
                                         norm=norm).double()
    with torch.no_grad():
        t = loss.terms(f, y, lin)
        ce = F.cross_entropy(lin(f), y)
    return float(ce), float(t["compactness"]), float(t["margin"]), float(t["regulariser"])


# ----------------------------------------------------------------------------- item 2: the true scaling
@pytest.mark.parametrize("s", [0.5, 2.0, 3.7])
def test_scaling_law_of_ce_plus_ldis(s):
    """(f, W, b) -> (s f, W / s, b) keeps CE; with (delta_v, delta_d) -> s (delta_v, delta_d) it maps
    (L_c, L_m, L_r) to (s^2 L_c, s L_m, s L_r): the objective becomes CE + lam (s^2 L_c + s L_m + s gamma L_r)."""
    g = torch.Generator().manual_seed(3)
    f = torch.randn(40, 5, generator=g, dtype=torch.float64) * 2
    y = torch.arange(40) % 4
    w, b = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    ce, lc, lm, lr = _terms(f, y, w, b, 0.3, 1.2)
    assert lc > 0.1 and lm > 0.1  # both hinges active: the identity is not 0 = 0
    ce_s, lc_s, lm_s, lr_s = _terms(s * f, y, w / s, b, 0.3 * s, 1.2 * s)
    assert ce_s == pytest.approx(ce, rel=1e-12)
    assert (lc_s, lm_s, lr_s) == pytest.approx((s**2 * lc, s * lm, s * lr), rel=1e-12)
    # not one curve: at (s dv, s dd) the image of a configuration has a different objective, and the ratio of
    # the compactness to the margin weight changes by s (so the two scales are different problems)
    lam, gamma = 10.0, 1e-3
    obj = ce + lam * (lc + lm + gamma * lr)
    obj_s = ce_s + lam * (lc_s + lm_s + gamma * lr_s)
    assert abs(obj_s - obj) > 1e-3
    assert (lc_s / lm_s) / (lc / lm) == pytest.approx(s, rel=1e-12)


def test_ldis_zero_set_is_scale_free():
    """L_c = L_m = 0 at (f, W, b; dv, dd) iff at (s f, W / s, b; s dv, s dd)."""
    f = torch.tensor([[1.0, 0.2], [2.0, -0.2], [-1.5, 0.1], [-2.5, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    w, b = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for s in (0.1, 1.0, 7.0):
        _, lc, lm, _ = _terms(s * f, y, w / s, b, 0.7 * s, 1.4 * s)
        assert lc == 0 and lm == 0
        _, lc, lm, _ = _terms(s * f, y, w / s, b, 0.3 * s, 1.4 * s)
        assert lc > 0


# ----------------------------------------------------------------------------- item 6: the authors' norm option
@pytest.mark.parametrize("norm, expect", [(1, 1.125 + 0.25 + 0.1 * 2.0),
                                          (2, (math.sqrt(2) - 0.5) ** 2 / 2 + 0.25 + 0.1 * (math.sqrt(5) + 1) / 2)])
def test_norm_option_by_hand(norm, expect):
    """Class 0 at (1, 0), (3, 2) (mean (2, 1), both at L1 distance 2 / L2 distance sqrt 2), class 1 at
    (-1, 0); W = [[1, 0], [-1, 0]], b = 0 (d_01 = x_1). dv = 0.5, dd = 1.5, gamma = 0.1:
    L_c = (h^2 + 0)/2 with h = 2 - 0.5 (L1) or sqrt 2 - 0.5 (L2); L_m = (0 + 0.5)/2 (Euclidean either way);
    L_r = (||(2, 1)|| + ||(-1, 0)||)/2 = 2 (L1) or (sqrt 5 + 1)/2 (L2)."""
    lin = nn.Linear(2, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        lin.bias.zero_()
    loss = LargeMarginDiscriminativeLoss(2, 2, gamma=0.1, delta_v=0.5, delta_d=1.5, norm=norm).double()
    f = torch.tensor([[1.0, 0.0], [3.0, 2.0], [-1.0, 0.0]], dtype=torch.float64)
    assert loss(f, torch.tensor([0, 0, 1]), lin).item() == pytest.approx(expect, abs=1e-12)


@pytest.mark.parametrize("mode", ["partial", "full", "none"])
def test_norm1_gradients_match_autograd(mode):
    gen = torch.Generator().manual_seed(7)
    kw = dict(alpha=1.0, beta=1.0, gamma=0.2, delta_v=0.3, delta_d=2.0, momentum=0.8)
    lin = nn.Linear(4, 3).double()
    loss = LargeMarginDiscriminativeLoss(3, 4, momentum_mode=mode, norm=1, **kw).double()
    for _ in range(4):
        f = torch.randn(15, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, 3, (15,), generator=gen)
        ref = large_margin_reference(f.detach().numpy(), y.numpy(), lin.weight.detach().numpy(),
                                     lin.bias.detach().numpy(), loss.centres.numpy(), loss.seen.numpy(),
                                     momentum_mode=mode, norm=1, **kw)
        lin.zero_grad()
        v = loss(f, y, lin)
        v.backward()
        assert v.item() == pytest.approx(ref["value"], abs=1e-12)
        np.testing.assert_allclose(f.grad.numpy(), ref["grad_features"], atol=1e-12)
        np.testing.assert_allclose(lin.weight.grad.numpy(), ref["grad_weight"], atol=1e-12)


# ----------------------------------------------------------------------------- item 5: the memory rule
def test_momentum_memory_rule():
    assert momentum_for_memory(AUTHORS_MEMORY_EPOCHS, 391) == pytest.approx(0.99, abs=1e-12)
    assert momentum_for_memory(0.5, 20) == pytest.approx(0.9, abs=1e-12)
    assert momentum_for_memory(0.01, 20) == 0.0  # under one step: no momentum
    loss = LargeMarginDiscriminativeLoss(3, 2, momentum_memory=0.5, steps_per_epoch=20)
    assert loss.momentum == pytest.approx(0.9, abs=1e-12)
    assert LargeMarginDiscriminativeLoss(3, 2, momentum=0.7).momentum == 0.7  # `momentum` as before
    with pytest.raises(ValueError, match="go together"):
        LargeMarginDiscriminativeLoss(3, 2, momentum_memory=0.5)
    with pytest.raises(ValueError):
        momentum_for_memory(0.0, 10)
    with pytest.raises(ValueError, match="norm"):
        LargeMarginDiscriminativeLoss(3, 2, norm=3)


# ----------------------------------------------------------------------------- item 1: the held-out bound
def _separated(m, k=3, d=4, seed=0, gap=4.0):
    rng = np.random.default_rng(seed)
    y = np.arange(m) % k
    w = np.eye(k, d) * 2.0
    x = w[y] * gap / 2 + rng.standard_normal((m, d)) * 0.5
    return x, y, w, np.zeros(k)


def test_heldout_bound_pieces():
    x, y, w, b = _separated(300)
    out = heldout_margin_bound(x, y, w, b, delta=0.05)
    z = x @ w.T + b
    sm = score_margins(z, y)
    emp = ramp_margin_loss(sm, out["rho"])
    m, k = 300, 3
    comp = 4 * k / out["rho"] * out["Lambda"] * math.sqrt((x**2).sum() + m) / m
    conf = 3 * math.sqrt(math.log(2 / out["delta_per_cell"]) / (2 * m))
    assert out["delta_per_cell"] == pytest.approx(0.05 / (40 * 31))
    assert (out["empirical_margin_loss"], out["complexity"], out["confidence"]) == pytest.approx((emp, comp, conf), rel=1e-12)
    assert out["bound"] == pytest.approx(emp + comp + conf, rel=1e-12)
    assert out["heldout_error"] == pytest.approx(float((z.argmax(1) != y).mean()))
    assert out["bound"] == multiclass_margin_bound(x, z, y, w, b)["bound"]
    # the floor is a lower bound of the data terms at the chosen rho, and of every rho
    assert out["floor"] <= emp + comp + 1e-12
    for rho in 2.0 ** np.arange(-5, 10):
        fl = vacuity_floor(x, out["Lambda"], rho, k)
        assert fl["floor"] <= ramp_margin_loss(sm, rho) + 4 * k / rho * out["Lambda"] * math.sqrt((x**2).sum() + m) / m + 1e-12
        assert fl["complexity_floor"] == pytest.approx(2 * k / math.sqrt(m) * fl["t"])


def test_bound_vacuous_at_small_m_for_any_head():
    """m <= 4 k^2: Rhat_rho + complexity >= 1 for every rho and every head, even perfectly separated data."""
    x, y, w, b = _separated(36, k=3, gap=50.0)
    out = heldout_margin_bound(x, y, w, b)
    assert out["heldout_error"] == 0 and out["vacuous_at_any_rho"]
    z = x @ w.T
    for rho in 2.0 ** np.arange(-20, 20):
        assert ramp_margin_loss(score_margins(z, y), rho) + 4 * 3 / rho * out["Lambda"] * math.sqrt((x**2).sum() + 36) / 36 >= 1 - 1e-12
    assert out["bound"] >= 1


def test_informative_sample_size():
    """Tiling a held-out sample keeps its margin and norm distribution: the bound falls below 1 exactly
    past m*."""
    x, y, w, b = _separated(60, gap=6.0)
    out = heldout_margin_bound(x, y, w, b)
    m_star = out["m_star"]
    assert out["m"] < m_star < np.inf
    small, big = int(0.9 * m_star / 60), int(1.1 * m_star / 60) + 1
    for reps, below in ((small, False), (big, True)):
        xt, yt = np.tile(x, (reps, 1)), np.tile(y, reps)
        bt = multiclass_margin_bound(xt, xt @ w.T, yt, w, b)
        assert bt["Lambda"] == out["Lambda"]
        assert (bt["bound"] < 1) == below
    assert informative_sample_size(x, x @ w.T, y, out["Lambda"], 3, out["delta_per_cell"]) == m_star


# ----------------------------------------------------------------------------- item 4: the phase table
def test_phase_table_and_summary():
    df = large_margin_phase(delta_v=(0.5,), ratio=(0.5, 2.0), lam=(10.0,), seeds=2, steps=60, per_class=4)
    assert len(df) == 4 and sorted(df["seed"].unique()) == [0, 1]
    assert {"delta_v", "ratio", "lam", "gamma", "seed", "delta_d", *PHASE_METRICS} <= set(df.columns)
    assert (df["min_gap"] >= -1e-6).all()  # Theorem 1 on every run
    assert np.allclose(df["delta_d"], df["ratio"] * df["delta_v"])
    assert np.allclose(df["dv_over_scale"], 0.5 / df["ce_feature_norm"])
    sm = phase_summary(df)
    assert len(sm) == 2 and (sm["n"] == 2).all()
    assert (sm["train_acc_low"] <= sm["train_acc"]).all() and (sm["train_acc"] <= sm["train_acc_high"]).all()
