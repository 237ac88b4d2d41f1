"""Gini/KL theory beyond the terms themselves (theory/gini-kl.md, Claims 4-6): the minimiser over filter
states can be impure (the pure/impure boundary in lambda_KL / lambda_G), the closed form of the Gini gradient
and its decay on class-blind maps, and the warm-up counted as the authors count it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ufm.losses import GiniKLLoss
from ufm.losses.gini_kl import (
    assignment_objective,
    gini_gradient,
    gini_kl_terms,
    impurity_threshold,
    local_impurity_threshold,
    one_split_minimum,
    pure_minimum,
)
from ufm.train import load_config


# ----------------------------------------------------------------------------- Claim 5: impure minimisers
def _map_with_distributions(p: np.ndarray, per_class: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A (B, F) map whose filters have exactly the class distributions p (F, k): a_{i,f} = p_{f, y_i}."""
    k = p.shape[1]
    y = np.repeat(np.arange(k), per_class)
    return torch.tensor(p.T[y]), torch.tensor(y)


def test_objective_is_the_loss_of_a_map_with_those_distributions():
    p = np.array([[1.0, 0.0], [0.3, 0.7], [0.0, 1.0]])
    a, y = _map_with_distributions(p)
    r = gini_kl_terms(a, y, 2)
    for ratio in (0.0, 1.0, 5.0):
        assert assignment_objective(p, [0.5, 0.5], ratio) == pytest.approx(float(r["gini"] + ratio * r["kl"]), abs=1e-14)


def test_three_filters_half_half_pure_at_one_split_at_five():
    """The issue's example: F = 3, t = (1/2, 1/2): pure at lambda_KL / lambda_G = 1, one filter 50/50 at 5."""
    n, kl = pure_minimum(3, [0.5, 0.5])
    assert sorted(n.tolist()) == [1, 2] and kl == pytest.approx(0.5 * math.log(9 / 8), abs=1e-15)
    at1 = one_split_minimum(3, [0.5, 0.5], 1.0)
    assert at1["pure"] and at1["objective"] == pytest.approx(kl, abs=1e-15)
    at5 = one_split_minimum(3, [0.5, 0.5], 5.0)
    assert not at5["pure"] and at5["s"] == pytest.approx(0.5, abs=1e-6)
    assert at5["objective"] == pytest.approx(1 / 6, abs=1e-12)  # L_KL = 0, one filter of impurity 1/2 among 3


@pytest.mark.parametrize("ratio", [1.0, 2.0, 2.6, 2.7, 3.0, 5.0])
def test_one_split_minimum_is_the_global_minimum_for_two_classes(ratio):
    """k = 2: at most one impure filter at a minimiser, so the 1-D family is exact; checked against a brute
    force over every (p_1, p_2, p_3) on a 1/100 grid (the grid can only be above the true minimum)."""
    g = np.linspace(0.0, 1.0, 101)
    p1 = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)  # (N, F): p_{f, class 0}
    gini = np.mean(2 * p1 * (1 - p1), axis=1)
    q0 = p1.mean(1)
    with np.errstate(divide="ignore"):
        kl = 0.5 * np.log(0.5 / q0) + 0.5 * np.log(0.5 / (1 - q0))
    brute = float(np.min(gini + ratio * kl))
    exact = one_split_minimum(3, [0.5, 0.5], ratio)["objective"]
    assert exact <= brute + 1e-12 and brute - exact < 2e-3


@pytest.mark.parametrize("num_filters, expected", [(3, 8 / 3), (5, 4.8), (7, 48 / 7)])
def test_threshold_half_half_equals_the_closed_form(num_filters, expected):
    assert local_impurity_threshold(num_filters, [0.5, 0.5]) == pytest.approx(expected, rel=1e-12)
    rho = impurity_threshold(num_filters, [0.5, 0.5])
    assert rho == pytest.approx(expected, rel=1e-5)
    assert one_split_minimum(num_filters, [0.5, 0.5], 0.99 * rho)["pure"]
    assert not one_split_minimum(num_filters, [0.5, 0.5], 1.01 * rho)["pure"]


def test_threshold_can_lie_below_the_local_one_a_jump():
    """For a skewed target the impure minimiser appears far from the pure one (a first-order jump):
    the global threshold is below the point where the pure state stops being a local minimum."""
    t = [0.1, 0.9]
    rho, rho_loc = impurity_threshold(2, t), local_impurity_threshold(2, t)
    assert rho < 0.1 * rho_loc
    n_pure, _ = pure_minimum(2, t)
    just_above = one_split_minimum(2, t, 1.05 * rho)
    q = just_above["counts"].astype(float)
    a, b = just_above["classes"]
    q[a] += just_above["s"]
    q[b] += 1 - just_above["s"]
    assert not just_above["pure"] and np.abs(q - n_pure).max() / 2 > 0.2  # q jumps by more than 0.2


def test_threshold_is_infinite_when_a_pure_assignment_is_exact():
    assert impurity_threshold(4, [0.5, 0.5]) == math.inf
    assert impurity_threshold(8, [0.375, 0.375, 0.125, 0.125]) == math.inf
    assert local_impurity_threshold(4, [0.25, 0.75]) == math.inf


def test_at_most_k_minus_1_impure_filters_three_classes():
    """Claim 5's vertex argument for k = 3: the best state found by a random search over all (F, k)
    distributions is never better than the best with one split filter + pure ones by more than the
    search's resolution, and with the target reachable only through a split the minimiser is impure."""
    t = np.array([0.5, 0.3, 0.2])
    rng = np.random.default_rng(0)
    best = one_split_minimum(4, t, 20.0)
    p = rng.dirichlet(np.ones(3) * 0.3, size=(20000, 4))  # (N, F, k)
    vals = np.mean(1 - (p * p).sum(-1), 1) + 20.0 * np.sum(t * np.log(t / p.mean(1)), -1)
    assert not best["pure"]
    assert best["objective"] <= vals.min() + 1e-9


@pytest.mark.parametrize("bad", [dict(num_filters=0, target=[0.5, 0.5]), dict(num_filters=3, target=[1.0]),
                                 dict(num_filters=3, target=[0.6, 0.6])])
def test_bad_input(bad):
    with pytest.raises(ValueError):
        pure_minimum(**bad)
    with pytest.raises(ValueError):
        one_split_minimum(bad["num_filters"], bad["target"], -1.0 if bad["num_filters"] == 3 else 1.0)


# ----------------------------------------------------------------------------- Claim 6: the Gini gradient
@pytest.mark.parametrize("shape, silent", [((40, 16), False), ((30, 6, 2, 2), False), ((24, 8), True)])
def test_gini_gradient_closed_form_matches_autograd(shape, silent):
    g = torch.Generator().manual_seed(1)
    A = torch.rand(*shape, generator=g, dtype=torch.float64) - 0.3
    if silent:
        A[:, 2] = 0.0
    y = torch.arange(shape[0]) % 4
    y[y == 3] = 2  # class 3 absent from the batch
    a = A.abs().flatten(2).mean(2) if A.dim() > 2 else A.abs()
    a = a.clone().requires_grad_()
    gini_kl_terms(a, y, 4)["gini"].backward()
    closed = gini_gradient(A, y, 4)
    assert torch.allclose(closed, a.grad, rtol=1e-10, atol=1e-15)
    if silent:
        assert float(closed[:, 2].abs().max()) == 0.0


def test_gini_gradient_vanishes_on_class_blind_offset():
    """a + c: p_f tends to uniform and T_f grows, so |grad| falls like 1 / c^2 for large c."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(40, 16, generator=g, dtype=torch.float64)
    y = torch.arange(40) % 4
    norms = [float(gini_gradient(base + c, y, 4).norm()) for c in (0.0, 1.0, 10.0, 100.0)]
    assert all(b < a for a, b in zip(norms, norms[1:]))
    assert norms[2] / norms[0] < 1e-2
    assert norms[3] / norms[2] == pytest.approx((10.5 / 100.5) ** 2, rel=0.05)  # 1 / (c + mean a)^2


# ----------------------------------------------------------------------------- warm-up counted as the authors
@pytest.mark.parametrize("config", ["gini_kl", "gini_kl_cvt", "gini_kl_resnet17", "gini_kl_resnet18"])
def test_paper_warmup_has_the_authors_nine_ce_only_epochs(config):
    """Authors: ``for epoch in range(1, E + 1)`` with the terms off while ``epoch < start_epoch = 10``."""
    cfg = load_config(config, "paper")
    loss = GiniKLLoss(100, **{k: v for k, v in cfg.loss_kwargs.items() if k != "target"})
    ours, authors = [], []
    for epoch in range(cfg.epochs):  # the harness's 0-based epochs
        loss.on_epoch_start(epoch)
        ours.append(loss.terms_active)
        authors.append(not (epoch + 1 < 10))
    assert ours == authors and ours.count(False) == 9
