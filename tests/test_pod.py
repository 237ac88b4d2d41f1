"""PEDCC centroids and POD loss: exact simplex ETF, the charge model, the loss's formulas, its delta
schedule, its minimiser in the unconstrained features model, and clear errors on bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ufm.geometry import delta_etf, nc_metrics, pedcc, pedcc_etf_error, pedcc_repulsion
from ufm.losses import ModelOutput, PODLoss, get_loss
from ufm.losses.pod import pod_optimal_norm


# ----------------------------------------------------------------------------- PEDCC
@pytest.mark.parametrize("k,d", [(2, 1), (3, 2), (5, 4), (10, 9), (10, 64), (100, 99), (100, 512)])
def test_closed_form_is_a_simplex_etf(k, d):
    m = pedcc(k, d, seed=3).numpy()
    assert m.shape == (k, d)
    g = m @ m.T
    off = g[~np.eye(k, dtype=bool)]
    assert np.abs(np.diag(g) - 1).max() < 1e-12
    assert np.abs(off + 1 / (k - 1)).max() < 1e-12
    assert np.linalg.norm(m.sum(0)) < 1e-10
    assert np.linalg.matrix_rank(m, tol=1e-8) == k - 1
    err = pedcc_etf_error(m)
    assert err["cosine_error"] < 1e-12 and err["rank_deficit"] == 0


def test_closed_form_seeding():
    a, b, c = pedcc(6, 20, seed=1), pedcc(6, 20, seed=1), pedcc(6, 20, seed=2)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1  # another rotation
    # same Gram whatever the rotation
    assert (a @ a.T - c @ c.T).abs().max() < 1e-12
    # seed=None: the first k-1 coordinate axes only
    z = pedcc(6, 20, seed=None)
    assert z[:, 5:].abs().max() == 0
    assert pedcc(4, 3, dtype=torch.float32).dtype == torch.float32


def test_closed_form_rejects_too_many_classes_and_bad_args():
    with pytest.raises(ValueError, match="num_classes <= dim \\+ 1"):
        pedcc(5, 3)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        pedcc(1, 3)
    with pytest.raises(ValueError, match="dim >= 1"):
        pedcc(3, 0)
    with pytest.raises(ValueError, match="integer"):
        pedcc(3.5, 4)
    with pytest.raises(ValueError, match="unknown method"):
        pedcc(3, 4, method="spiral")


@pytest.mark.parametrize("k,d", [(4, 3), (10, 20)])
def test_repulsion_converges_to_the_simplex(k, d):
    u, rep = pedcc_repulsion(k, d, seed=0, tol=1e-9)
    assert rep.converged and rep.tangential_force <= 1e-9
    assert rep.etf_error < 1e-6  # the simplex is the unique minimiser of the Riesz energy for k <= d+1
    assert np.abs(np.linalg.norm(u, axis=1) - 1).max() < 1e-12
    # energy of the regular simplex: C(k,2) pairs at distance sqrt(2k/(k-1))
    assert abs(rep.energy - k * (k - 1) / 2 / math.sqrt(2 * k / (k - 1))) < 1e-6


def test_repulsion_beyond_the_simplex_finds_the_octahedron():
    # 6 charges on the 2-sphere (Thomson problem): the regular octahedron, cosines {-1, 0}
    u, rep = pedcc_repulsion(6, 3, seed=1, tol=1e-9)
    assert rep.converged and rep.etf_error is None
    g = u @ u.T
    off = np.sort(g[~np.eye(6, dtype=bool)])
    assert np.abs(off[:6] + 1).max() < 1e-6 and np.abs(off[6:]).max() < 1e-6
    m = pedcc(6, 3, seed=1, method="repulsion", tol=1e-9)
    assert np.allclose(m.numpy(), u)


def test_authors_repulsion_scheme_does_not_converge_and_pedcc_raises():
    _, rep = pedcc_repulsion(10, 64, seed=0, scheme="authors", max_iter=200)
    assert not rep.converged and rep.etf_error > 1e-5
    _, good = pedcc_repulsion(10, 64, seed=0)
    assert good.converged and good.etf_error < 1e-6 < rep.etf_error
    with pytest.raises(ValueError, match="did not converge"):
        pedcc(10, 64, method="repulsion", max_iter=3)
    with pytest.raises(ValueError, match="unknown scheme"):
        pedcc_repulsion(4, 3, scheme="leapfrog")


# ----------------------------------------------------------------------------- POD loss formulas
def _reference_pod(x, y, c, delta, weight):
    """The digest's formulas written independently, in float64 with an explicit d x d covariance."""
    x, c = x.double(), c.double()
    b, d = x.shape
    xa = torch.cat([x, torch.full((b, 1), delta, dtype=torch.float64)], 1)  # (x, Delta)
    ua = torch.cat([c[y], torch.zeros(b, 1, dtype=torch.float64)], 1)      # (u, 0)
    cos_aug = (xa * ua).sum(1) / xa.norm(dim=1)
    nac = ((1 - cos_aug) ** 2).mean()
    r = x / x.norm(dim=1, keepdim=True) - c[y]
    sigma = r.T @ r / (b - 1)
    sc = (sigma.pow(2).sum() - torch.diagonal(sigma).pow(2).sum()) / (d - 1)
    return nac + weight * sc, nac, sc


@pytest.mark.parametrize("b,d,k", [(12, 16, 5), (40, 6, 3)])  # B < d and B > d branches
def test_pod_matches_the_digest_formulas(b, d, k):
    g = torch.Generator().manual_seed(b)
    x = torch.randn(b, d, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, k, (b,), generator=g)
    c = pedcc(k, d, seed=1)
    for delta, w in [(0.05, 1.0), (2.0, 0.3)]:
        loss = PODLoss(c, delta=delta, decorrelation_weight=w)
        nac, sc = loss.terms(x, y)
        ref, rnac, rsc = _reference_pod(x, y, c, delta, w)
        assert abs(float(nac) - float(rnac)) < 1e-6 * max(1, float(rnac))
        assert abs(float(sc) - float(rsc)) < 1e-6 * max(1, float(rsc))
        assert abs(float(loss(x, y)) - float(ref)) < 1e-6 * float(ref)
        assert float(sc) > 0  # random residuals are correlated


def test_pod_values_at_collapse_and_gradient():
    k, d, delta = 4, 6, 0.3
    c = pedcc(k, d, seed=0)
    y = torch.arange(12) % k
    for r in (0.5, 2.0, 10.0):
        x = (r * c[y]).clone()
        nac, sc = PODLoss(c, delta=delta).terms(x, y)
        assert abs(float(nac) - (1 - r / math.sqrt(r * r + delta * delta)) ** 2) < 1e-12
        assert abs(float(sc)) < 1e-24  # residuals vanish: no covariance at all
    # gradient of the full loss, float64
    x = torch.randn(9, d, dtype=torch.float64, requires_grad=True)
    loss = PODLoss(c, delta=delta)
    assert torch.autograd.gradcheck(lambda t: loss(t, torch.arange(9) % k), (x,))


def test_pod_cosine_term_is_quadratic_in_the_angle_at_fixed_norm():
    """At norm r, L_NaC(t) - L_NaC(0) = g (1 - g) t^2 + O(t^4), g = r / sqrt(r^2 + Delta^2): a
    non-degenerate minimum in the angle t (dot regression's is quartic)."""
    c = pedcc(3, 4, seed=0)
    perp = c[1] - (c[1] @ c[0]) * c[0]
    perp = perp / perp.norm()
    r, delta = 1.5, 0.5
    g = r / math.sqrt(r * r + delta * delta)
    loss = PODLoss(c, delta=delta, decorrelation_weight=0.0)
    base = float(loss(r * c[0][None], torch.tensor([0])))
    for t in (1e-3, 3e-3):
        x = r * (math.cos(t) * c[0] + math.sin(t) * perp)[None]
        excess = float(loss(x, torch.tensor([0]))) - base
        assert abs(excess / (g * (1 - g) * t * t) - 1) < 1e-3


def test_pod_prediction_is_the_cosine_argmax():
    c = pedcc(5, 8, seed=2)
    x = torch.randn(30, 8, dtype=torch.float64)
    loss = PODLoss(c)
    s = loss.harness_predict(ModelOutput(features=x), None)
    assert s.shape == (30, 5)
    assert torch.equal(s.argmax(1), (x @ c.T).argmax(1))
    assert torch.allclose(s.double(), (x / x.norm(dim=1, keepdim=True)) @ c.T, atol=1e-6)


def test_pod_registered_and_harness_objective():
    assert get_loss("pod") is PODLoss
    c = pedcc(3, 4, seed=0)
    x, y = torch.randn(8, 4), torch.arange(8) % 3
    loss = PODLoss(c)
    assert float(loss.harness_objective(ModelOutput(features=x, logits=torch.zeros(8, 3)), y, None)) == float(loss(x, y))


# ----------------------------------------------------------------------------- delta schedule
def test_delta_schedule_and_buffers():
    k, d = 3, 5
    loss = PODLoss(num_classes=k, dim=d, seed=4)
    c = loss.centroids.double()
    assert {n for n, _ in loss.named_buffers()} >= {"centroids", "delta"}
    assert not list(loss.parameters())
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(6, d, generator=g) * s for s in (1.0, 4.0)]
    y = torch.arange(6) % k
    loss.on_epoch_start(0)
    for xb in batches:
        loss(xb.requires_grad_(), y)
    with torch.no_grad():  # evaluation passes do not count
        loss(torch.randn(6, d) * 100, y)
    loss.eval()
    loss(torch.randn(6, d, requires_grad=True) * 100, y)
    loss.train()
    expected_mean = torch.cat([(b.detach().double() @ c.T).norm(dim=1) for b in batches]).mean().item()
    out = loss.on_epoch_end(0, {})
    assert out["pod_delta"] == pytest.approx(0.05)
    assert out["pod_projection_norm"] == pytest.approx(expected_mean, rel=1e-6)
    assert out["pod_next_delta"] == pytest.approx(0.01 * 1 * expected_mean, rel=1e-6)
    assert float(loss.delta) == pytest.approx(0.01 * expected_mean, rel=1e-6)
    # explicit update, epoch e -> factor (e + 1)
    assert loss.update_delta(4, mean_projection_norm=2.0) == pytest.approx(0.01 * 5 * 2.0)
    # the state travels with state_dict
    other = PODLoss(num_classes=k, dim=d, seed=4)
    other.load_state_dict(loss.state_dict())
    assert float(other.delta) == pytest.approx(0.1)
    loss.on_epoch_start(1)
    with pytest.raises(ValueError, match="no training batch"):
        loss.update_delta(1)
    fixed = PODLoss(num_classes=k, dim=d, schedule=False)
    fixed(batches[0].clone().requires_grad_(), y)
    assert "pod_next_delta" not in fixed.on_epoch_end(0, {}) and float(fixed.delta) == pytest.approx(0.05)


# ----------------------------------------------------------------------------- bad input
def test_pod_bad_input():
    c = pedcc(3, 4, seed=0)
    with pytest.raises(ValueError, match="unit vectors"):
        PODLoss(c * 2)
    with pytest.raises(ValueError, match="shape \\(k, d\\)"):
        PODLoss(c[0])
    with pytest.raises(ValueError, match="NaN"):
        PODLoss(torch.full((3, 4), float("nan")))
    with pytest.raises(ValueError, match="either centroids"):
        PODLoss()
    with pytest.raises(ValueError, match="num_classes=4"):
        PODLoss(c, num_classes=4)
    with pytest.raises(ValueError, match="delta"):
        PODLoss(c, delta=0.0)
    with pytest.raises(ValueError, match="decorrelation_weight"):
        PODLoss(c, decorrelation_weight=-1.0)
    loss = PODLoss(c)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="dimension 5 but the centroids have dimension 4"):
        loss(torch.randn(4, 5), y)
    with pytest.raises(ValueError, match="out of range"):
        loss(torch.randn(4, 4), torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="non-negative"):
        loss(torch.randn(4, 4), torch.tensor([0, -1, 2, 0]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        loss(torch.tensor([[1.0, 0, 0, 0], [float("inf"), 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]), y)
    with pytest.raises(ValueError, match="shape \\(N, d\\)"):
        loss(torch.randn(4, 2, 4), y)
    # a zero feature (dead after a ReLU) follows the documented convention: finite value and gradient
    xz = torch.cat([torch.zeros(1, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)]).requires_grad_()
    val = loss(xz, y)
    val.backward()
    assert torch.isfinite(val) and torch.isfinite(xz.grad).all()
    nac, sc = loss.terms(xz.detach(), y)
    z = torch.cat([torch.zeros(1, 4, dtype=torch.float64), xz.detach()[1:] / xz.detach()[1:].norm(dim=1, keepdim=True)])
    r = z - c[y]
    sig = r.T @ r / 3
    assert abs(float(sc) - float((sig.pow(2).sum() - torch.diagonal(sig).pow(2).sum()) / 3)) < 1e-12
    with pytest.raises(ValueError, match="at least 2"):
        loss(torch.randn(1, 4), y[:1])
    with pytest.raises(ValueError, match="length"):
        loss(torch.randn(4, 4), y[:3])
    with pytest.raises(ValueError, match="floating point"):
        loss(torch.ones(4, 4, dtype=torch.long), y)
    assert torch.isfinite(PODLoss(c, decorrelation_weight=0.0)(torch.randn(1, 4), y[:1]))


# ----------------------------------------------------------------------------- the UFM minimiser
def test_optimal_norm_solves_the_stationarity_equation():
    for delta, lam in [(0.05, 1e-2), (0.5, 1e-2), (1.0, 5e-4), (3.0, 0.1)]:
        r = pod_optimal_norm(delta, lam)
        s = r * r + delta * delta
        assert abs(lam * r - 2 * (1 - r / math.sqrt(s)) * delta**2 / s**1.5) < 1e-12 * max(1.0, lam * r)
        f = lambda t: (1 - t / math.sqrt(t * t + delta * delta)) ** 2 + lam / 2 * t * t  # noqa: E731
        assert f(r) < min(f(0.99 * r), f(1.01 * r))
    # r >> Delta: r* ~ (Delta^4 / lambda)^(1/6)
    assert pod_optimal_norm(1e-3, 1e-12) == pytest.approx((1e-12 / 1e-12) ** (1 / 6), rel=1e-3)
    with pytest.raises(ValueError, match="feature_decay > 0"):
        pod_optimal_norm(0.1, 0.0)


@pytest.mark.parametrize("counts", [[6, 6, 6], [12, 3, 2]])
def test_ufm_features_collapse_onto_the_centroids_with_the_predicted_norm(counts):
    from ufm.solvers.free_features import train_free_features

    k, d, delta, lam = 3, 5, 0.5, 1e-2
    y = np.repeat(np.arange(k), counts)
    loss = PODLoss(num_classes=k, dim=d, delta=delta, schedule=False, seed=1)
    res = train_free_features(loss, y, d, steps=600, lr=2.0, feature_decay=lam, record_every=600, seed=0)
    h = res.features
    c = loss.centroids.double().numpy()
    norms = np.linalg.norm(h, axis=1)
    r_star = pod_optimal_norm(delta, lam)
    assert np.abs(norms / r_star - 1).max() < 1e-4  # every sample, whatever its class size
    cos = (h / norms[:, None] * c[y]).sum(1)
    assert 1 - cos.min() < 1e-6
    assert delta_etf(h, y) < 1e-5  # class means form the simplex ETF at any imbalance
    assert nc_metrics(h, y)["nc1"] < 1e-8


def test_nonnegative_features_cannot_reach_the_centroids():
    """x >= 0 gives cos(x, u) <= ||u_+|| (u_+ the positive part), and two simplex vertices cannot both be
    non-negative (their cosine is negative): after a final ReLU at most one class can collapse."""
    from ufm.solvers.free_features import train_free_features

    k, d = 4, 6
    y = np.repeat(np.arange(k), 3)
    loss = PODLoss(num_classes=k, dim=d, delta=0.5, schedule=False, seed=3)
    res = train_free_features(loss, y, d, steps=300, lr=2.0, feature_decay=1e-2, relu=True, record_every=300)
    h = res.features
    c = loss.centroids.numpy()
    bound = np.linalg.norm(np.clip(c, 0, None), axis=1)
    assert (bound < 1 - 1e-3).sum() >= k - 1
    norms = np.linalg.norm(h, axis=1)
    cos = (h * c[y]).sum(1) / np.where(norms > 0, norms, 1.0)  # a dead (zero) feature has cosine 0
    assert np.all(cos <= bound[y] + 1e-9)
    assert np.sum(cos < 1 - 1e-3) >= (k - 1) * 3
