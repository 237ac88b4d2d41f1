"""Gradient-based UFM solver on free features: the objective, the OF at any imbalance, the ETF
without ReLU, non-negativity, batchings, reproducibility and errors."""

import numpy as np
import pytest
import torch

from ufm.batching import bind, binding_examples, epoch_seed, random_batches, uniqueness_conditions
from ufm.geometry import delta_etf, delta_of, normalize_rows
from ufm.losses import SupConLoss
from ufm.solvers import gd
from ufm.solvers.gd import GDDivergedError, StopRule, scl_feature_objective, solve_gd, steps_to_of
from ufm.solvers.objective import of_objective, scl_gram_objective

CPU = "cpu"


def step_labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


Y10 = step_labels([40, 40, 4, 4])  # imbalance R = 10, n = 88


# ----------------------------------------------------------------------------- the objective
@pytest.mark.parametrize("tau", [0.1, 0.5, 0.002])
@pytest.mark.parametrize("kind", ["full", "random", "bound", "odd"])
@pytest.mark.parametrize("dense_max", [256, 4])
def test_objective_equals_gram_objective(tau, kind, dense_max):
    rng = np.random.default_rng(1)
    y = step_labels([12, 7, 3, 1])
    h = np.abs(rng.standard_normal((y.size, 6)))
    batches = {
        "full": None,
        "random": random_batches(y, 5, seed=0),
        "bound": bind(random_batches(y, 4, seed=1), binding_examples(y, 0)),
        "odd": [np.array([0, 1]), np.array([22]), np.array([0, 12, 19, 22]), np.array([12, 13, 14, 15, 0, 1])],
    }[kind]
    z = normalize_rows(h)
    ref, ref_grad = scl_gram_objective(z @ z.T, y, batches, tau, grad=True)
    ht = torch.tensor(h, requires_grad=True)
    f = scl_feature_objective(ht, y, batches, tau, dense_max=dense_max, block_entries=37)
    assert abs(f.item() - ref) <= 1e-12 * max(1.0, abs(ref))
    (g,) = torch.autograd.grad(f, ht)
    # chain rule through G = Z Z^T and z = h/||h||: dG contracted with the symmetric Gram gradient
    zt = torch.tensor(z, requires_grad=True)
    gz = 2 * torch.tensor(ref_grad) @ zt
    hn = torch.tensor(h, requires_grad=True)
    zz = hn / hn.norm(dim=1, keepdim=True)
    (expect,) = torch.autograd.grad(zz, hn, grad_outputs=gz.detach())
    assert torch.allclose(g, expect, rtol=1e-9, atol=1e-11)


def test_objective_equals_supcon_full_batch():
    rng = np.random.default_rng(2)
    y = step_labels([30, 10, 5])
    h = torch.tensor(rng.standard_normal((y.size, 8)))
    f = scl_feature_objective(h, y, None, 0.1)
    sup = SupConLoss(temperature=0.1)(h, torch.as_tensor(y))
    assert abs(float(f) - float(sup)) <= 1e-5 * abs(float(f))  # SupConLoss computes in float32
    # and the sum over batches of SupConLoss per batch for a batching
    batches = random_batches(y, 9, seed=3)
    fb = scl_feature_objective(h, y, batches, 0.1)
    ref = sum(float(SupConLoss(0.1)(h[b], torch.as_tensor(y[b]))) for b in batches)
    assert abs(float(fb) - ref) <= 1e-5 * abs(ref)


def test_objective_gradcheck():
    h = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = np.array([0, 0, 1, 1, 1, 2, 2, 0, 3])
    for kw in ({}, {"dense_max": 2, "block_entries": 11}):
        assert torch.autograd.gradcheck(lambda x: scl_feature_objective(x, y, None, 0.3, **kw), (h,))
        assert torch.autograd.gradcheck(
            lambda x: scl_feature_objective(x, y, [np.arange(6), np.array([1, 2, 8]), np.arange(3, 9)], 0.3, **kw),
            (h,))


# ----------------------------------------------------------------------------- the OF with ReLU
def test_lbfgs_full_batch_reaches_of_at_r10():
    f_of = of_objective(Y10, None, 0.1)
    res = solve_gd(Y10, 8, temperature=0.1, relu=True, optimizer="lbfgs", steps=400, seed=0, device=CPU,
                   target_delta_of=1e-6, stop_at_target=True)
    assert res.stop_reason == "target", res.stop_reason
    assert res.delta_of < 1e-5
    assert (res.objective - f_of) / f_of < 1e-6
    assert res.objective >= f_of - 1e-12 * f_of  # the OF is the global minimum: nothing goes below it
    assert res.features.min() >= 0
    # the reported objective is the Gram objective of the normalised features, and SupConLoss
    z = normalize_rows(res.features)
    assert abs(res.objective - scl_gram_objective(z @ z.T, Y10, None, 0.1)) <= 1e-12 * f_of
    sup = float(SupConLoss(0.1)(torch.tensor(res.features), torch.as_tensor(Y10)))
    assert abs(res.objective - sup) <= 1e-5 * f_of
    # collapse: same-class cosines 1, cross-class 0
    g = z @ z.T
    same = Y10[:, None] == Y10[None, :]
    assert np.abs(g[same] - 1).max() < 1e-4 and np.abs(g[~same]).max() < 1e-4
    # history is consistent: delta_of decreases overall and steps_to_target is the first hit
    hist = res.history
    assert hist["step"][0] == 0 and hist["delta_of"][-1] == pytest.approx(res.delta_of)
    first = next(s for s, d in zip(hist["step"], hist["delta_of"]) if d < 1e-6)
    assert res.steps_to_target == first == res.steps


def test_lbfgs_fixed_batching_reaches_batched_of():
    """For ANY batching the OF minimises every batch's term: the batched objective reaches the OF value,
    and with binding (both uniqueness conditions) the features reach the OF."""
    y = step_labels([24, 24, 3, 3])
    batches = bind(random_batches(y, 6, seed=0), binding_examples(y, 0))
    assert uniqueness_conditions(y, batches).unique
    f_of = of_objective(y, batches, 0.1)
    res = solve_gd(y, 6, batches=batches, steps=400, seed=1, device=CPU, target_delta_of=1e-6, stop_at_target=True)
    assert (res.objective - f_of) / f_of < 1e-6
    assert res.objective >= f_of - 1e-12 * f_of
    assert res.delta_of < 1e-5


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_no_relu_balanced_gives_etf(tau):
    k, m_c = 4, 10
    y = step_labels([m_c] * k)
    res = solve_gd(y, 6, temperature=tau, relu=False, steps=300, seed=0, device=CPU)
    assert res.delta_etf < 1e-4
    z = normalize_rows(res.features)
    means = np.stack([z[y == c].mean(0) for c in range(k)])
    cos = means @ means.T / np.outer(np.linalg.norm(means, axis=1), np.linalg.norm(means, axis=1))
    assert np.abs(cos[~np.eye(k, dtype=bool)] + 1 / (k - 1)).max() < 1e-4  # simplex: cosines -1/(k-1)
    assert np.abs(means.sum(0)).max() < 1e-3  # centred at the origin
    # closed form at the collapsed ETF: l = log(m_c - 1 + (n - m_c) exp((-1/(k-1) - 1) / tau))
    n = k * m_c
    f_etf = np.log(m_c - 1 + (n - m_c) * np.exp((-1 / (k - 1) - 1) / tau))
    assert abs(res.objective - f_etf) <= 1e-8 * f_etf
    # without the non-negativity constraint the ETF beats the OF
    assert f_etf < of_objective(y, None, tau) - 1e-5


@pytest.mark.parametrize("relu,tau", [(False, 0.5), (True, 0.1)])
def test_minibatch_objective_reaches_certified_sdp_optimum(relu, tau):
    """Two epochs of random mini-batches (no closed form without ReLU): GD reaches the certified optimum
    of the n x n Gram program."""
    sdp = pytest.importorskip("ufm.solvers.sdp")
    y = step_labels([6, 6, 2, 2])
    batches = random_batches(y, 5, seed=0) + random_batches(y, 5, seed=1)
    opt = sdp.solve_sdp(y, batches, tau, relu=relu)
    res = solve_gd(y, 16, tau, relu=relu, batches=batches, steps=400, seed=0, device=CPU)
    assert abs(res.objective - opt.objective) <= 1e-6 * abs(opt.objective)
    if relu:
        assert abs(opt.objective - of_objective(y, batches, tau)) <= 1e-8 * opt.objective


def test_reduced_solver_agrees_without_relu():
    reduced = pytest.importorskip("ufm.solvers.reduced")
    y = step_labels([20, 10, 5, 5])
    res = solve_gd(y, 8, relu=False, steps=400, seed=0, device=CPU)
    opt = reduced.solve_reduced(np.bincount(y), 0.1, False).objective
    assert abs(res.objective - opt) <= 1e-6 * abs(opt)


# ----------------------------------------------------------------------------- parametrisations
@pytest.mark.parametrize("optimizer,nonneg", [("adam", "relu"), ("adam", "project"), ("sgd", "project"),
                                              ("adam", "square"), ("lbfgs", "square")])
def test_nonnegative_parametrisations(optimizer, nonneg):
    seen = []

    def cb(step, h, loss):
        seen.append(float(h.min()))

    res = solve_gd(Y10, 8, optimizer=optimizer, nonneg=nonneg, steps=60, seed=2, device=CPU,
                   record_every=5, callback=cb)
    assert res.features.min() >= 0 and min(seen) >= 0
    d, loss = res.history["delta_of"], res.history["loss"]
    assert d[-1] < d[0] and loss[-1] < loss[1]  # it does move toward the OF
    f0 = of_objective(Y10, None, 0.1)
    assert res.objective >= f0 - 1e-12 * f0


def test_adam_reaches_of():
    y = step_labels([20, 20, 2, 2])
    res = solve_gd(y, 6, optimizer="adam", lr=0.05, steps=6000, seed=0, device=CPU, record_every=10,
                   target_delta_of=1e-3, stop_at_target=True)
    assert res.steps_to_target is not None and res.delta_of < 1e-3
    f0 = of_objective(y, None, 0.1)
    assert 0 <= (res.objective - f0) / f0 < 1e-4


def test_stochastic_batches_and_steps_to_of():
    y = step_labels([20, 20, 2, 2])
    calls = []

    def epoch_batches(e):
        calls.append(e)
        return random_batches(y, 11, seed=e)

    res = solve_gd(y, 6, optimizer="adam", batches=epoch_batches, steps=12, seed=0, device=CPU)
    assert calls == [0, 1, 2]  # 4 batches per epoch, a new batching each epoch
    assert res.steps == 12 and res.evaluations == 12
    kw = dict(batch_size=8, seed=3, threshold=0.3, check_every=10, device=CPU)
    s1 = steps_to_of(y, 6, binding=True, max_steps=3000, **kw)
    s2 = steps_to_of(y, 6, binding=True, max_steps=3000, **kw)
    assert s1 is not None and s1 == s2 and s1 % 10 == 0
    assert steps_to_of(y, 6, binding=False, max_steps=5, **kw) is None


@pytest.mark.parametrize("binding,drop_last", [(True, False), (False, False), (True, True)])
def test_steps_to_of_epochs(monkeypatch, binding, drop_last):
    # epoch e: random batches seeded epoch_seed(seed, e), plus binding_examples(labels, seed) when bound
    y = step_labels([9, 5, 3])
    seen = {}
    monkeypatch.setattr(gd, "solve_gd", lambda y_, dim, **kw: seen.update(kw) or gd.GDResult(np.zeros(0), 0.0))
    steps_to_of(y, 4, batch_size=4, binding=binding, seed=7, drop_last=drop_last, device=CPU)
    bnd = binding_examples(y, 7)
    for e in range(4):
        expect = random_batches(y, 4, epoch_seed(7, e), drop_last)
        expect = bind(expect, bnd, y.size) if binding else expect
        got = seen["batches"](e)
        assert len(got) == len(expect) and all(np.array_equal(a, b) for a, b in zip(got, expect))


# ----------------------------------------------------------------------------- the stop rule
def test_stop_rule_order_and_tolerance():
    rule = StopRule(steps=10, tol=1e-3, stop_at_target=True, record_every=4)
    # callback, then stall, then tolerance, then target, then the budget
    assert rule.reason(3, True, True, 2, True) == "callback"
    assert rule.reason(3, True, True, 2) == "stalled"
    assert rule.reason(10, True, False, 2) == "tol"
    assert rule.reason(10, True) == "target" and rule.reason(0, True) == "target"
    assert rule.reason(10, False) == "steps" and rule.reason(9, False) is None
    assert StopRule(steps=10).reason(5, True) is None  # a target reached stops only with stop_at_target
    # a decrease of at most tol * max(1, |f|) is small; two in a row stop the run
    assert rule.small_moves(0, None, 5.0) == 0
    assert rule.small_moves(0, 5.0, 5.0 - 4e-3) == 1 and rule.small_moves(1, 5.0, 5.0 - 6e-3) == 0
    assert StopRule(steps=10, tol=0.0).small_moves(1, 5.0, 5.0) == 0
    assert [s for s in range(1, 11) if rule.must_record(s, False, 0)] == [4, 8, 10]
    assert rule.must_record(3, True, 0) and rule.must_record(3, False, 2)


def test_stop_reasons_end_the_history():
    y = step_labels([6, 4, 3])
    res = solve_gd(y, 4, steps=50, seed=0, device=CPU, record_every=2, callback=lambda s, h, loss: s >= 7)
    assert (res.stop_reason, res.steps, res.history["step"][-1]) == ("callback", 8, 8)
    res = solve_gd(y, 4, steps=500, seed=0, device=CPU, tol=1e-6, record_every=1000)
    assert res.stop_reason == "tol" and res.history["step"] == [0, res.steps] and res.steps < 500
    res = solve_gd(y, 4, optimizer="adam", steps=30, seed=0, device=CPU, record_every=7)
    assert (res.stop_reason, res.history["step"]) == ("steps", [0, 7, 14, 21, 28, 30])
    res = solve_gd(y, 4, steps=3000, seed=0, device=CPU, dtype=torch.float32, tol=0.0, record_every=1000)
    assert res.stop_reason == "stalled" and res.history["step"] == [0, res.steps] and res.steps < 3000
    of = np.eye(4)[y]  # the start is the OF: the run stops before its first step
    res = solve_gd(y, 4, steps=5, device=CPU, init=of, target_delta_of=1e-3, stop_at_target=True)
    assert (res.stop_reason, res.steps, res.steps_to_target, res.evaluations) == ("target", 0, 0, 0)


# ----------------------------------------------------------------------------- reproducibility and errors
def test_seeded_and_deterministic():
    a = solve_gd(Y10, 8, steps=20, seed=5, device=CPU)
    b = solve_gd(Y10, 8, steps=20, seed=5, device=CPU)
    c = solve_gd(Y10, 8, steps=20, seed=6, device=CPU)
    assert np.array_equal(a.features, b.features)
    assert np.array_equal(a.history["loss"], b.history["loss"], equal_nan=True)
    assert not np.allclose(a.features, c.features)
    assert a.device == "cpu"


def test_float32_then_float64():
    f0 = of_objective(Y10, None, 0.1)
    a = solve_gd(Y10, 8, steps=200, seed=0, device=CPU, dtype=torch.float32, target_delta_of=1e-6,
                 stop_at_target=True)
    # float32 gets close (its line search cannot resolve the last ~1e-7 of the objective) ...
    assert a.delta_of < 0.05 and 0 <= (a.objective - f0) / f0 < 2e-5
    # ... and a float64 run started from there finishes the job
    b = solve_gd(Y10, 8, steps=300, device=CPU, init=a.features, target_delta_of=1e-6, stop_at_target=True)
    assert b.history["delta_of"][0] == pytest.approx(a.delta_of, rel=1e-6)
    assert b.delta_of < 1e-5 and (b.objective - f0) / f0 < 1e-6


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dim=3), "d >= k"),
        (dict(steps=0), "steps"),
        (dict(optimizer="newton"), "unknown optimizer"),
        (dict(nonneg="abs"), "unknown nonneg"),
        (dict(nonneg="project"), "not supported with L-BFGS"),
        (dict(nonneg="relu"), "not supported with L-BFGS"),
        (dict(batches=lambda e: [np.arange(88)]), "fixed objective"),
        (dict(batches="mini"), "batches must be"),
        (dict(batches=[np.array([0, 40])]), "identically 0"),
        (dict(batches=[np.array([0, 88])]), "outside range"),
        (dict(temperature=0.0), "temperature"),
        (dict(dtype=torch.float16), "dtype"),
        (dict(labels=np.array([0.5, 1.0, 2.0])), "integers"),
        (dict(labels=np.zeros((4, 2), dtype=int)), "one-dimensional"),
        (dict(labels=np.array([0, -1, 1])), "non-negative"),
        (dict(record_every=0), "record_every"),
        (dict(lr=-1.0), "lr"),
        (dict(init=np.ones((88, 7))), "shape"),
        (dict(init=-np.ones((88, 8))), "non-negative"),
        (dict(init=np.vstack([np.zeros((1, 8)), np.ones((87, 8))])), "row 0 is zero"),
    ],
)
def test_errors(kwargs, match):
    args = dict(labels=Y10, dim=8, steps=3, device=CPU)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        solve_gd(**args)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_divergence_raises_with_step():
    # a huge SGD step overflows the free features: never NaN features, an error naming the step
    with pytest.raises(GDDivergedError, match="at step 1: the features became non-finite"):
        solve_gd(Y10, 8, optimizer="sgd", nonneg="relu", lr=1e308, steps=5, device=CPU)


def test_delta_of_in_history_matches_geometry():
    res = solve_gd(Y10, 8, steps=15, seed=0, device=CPU, record_every=5)
    assert res.history["step"] == [0, 5, 10, 15]
    assert res.delta_of == pytest.approx(delta_of(res.features, Y10), abs=0)
    assert res.delta_etf == pytest.approx(delta_etf(res.features, Y10), abs=0)
