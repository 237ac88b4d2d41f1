"""Gini-impurity and KL terms: the digest's formulas, the NaN-free conventions, the theory's claims
(theory/gini-kl.md), the harness hooks and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ufm.losses import GiniKLLoss, ModelOutput, get_loss
from ufm.losses.gini_kl import (
    filter_activations,
    filter_assignment,
    filter_class_distribution,
    filter_purity,
    gini_kl_geometry,
    gini_kl_terms,
)


# ----------------------------------------------------------------------------- reference (the digest, float64)
def reference_terms(A: np.ndarray, y: np.ndarray, k: int, target=None, eps: float = 1e-10):
    """Steps 1-5 of the paper digest, written independently in numpy with the authors' eps."""
    a = np.abs(A).reshape(A.shape[0], A.shape[1], -1).mean(axis=2)  # (B, F)
    onehot = np.eye(k)[y]  # (B, k)
    n = onehot.sum(0)
    S = a.T @ onehot / (n + eps)  # (F, k)
    p = S / (S.sum(1, keepdims=True) + eps)
    L_G = np.mean(1.0 - (p**2).sum(1))
    q = p.sum(0) / p.sum()
    t = n / n.sum() if target is None else np.asarray(target, dtype=np.float64)
    m = t > 0
    L_KL = float(np.sum(t[m] * np.log(t[m] / q[m])))
    return float(L_G), L_KL


def _batch(seed, b=24, f=7, k=4, hw=(3, 3), all_classes=True):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((b, f, *hw))
    y = rng.integers(0, k, size=b)
    if all_classes:
        y[:k] = np.arange(k)
    return A, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("hw", [(3, 3), (1, 5), ()])
def test_matches_digest_formulas(seed, hw):
    k = 4
    A, y = _batch(seed, hw=hw, k=k)
    g_ref, kl_ref = reference_terms(A, y, k)
    r = gini_kl_terms(torch.tensor(A), torch.tensor(y), k)
    assert float(r["gini"].detach()) == pytest.approx(g_ref, rel=1e-9, abs=1e-12)
    assert float(r["kl"].detach()) == pytest.approx(kl_ref, rel=1e-8, abs=1e-12)
    loss = GiniKLLoss(k, lambda_gini=0.5, lambda_kl=0.2)
    assert float(loss(torch.tensor(A), torch.tensor(y))) == pytest.approx(0.5 * g_ref + 0.2 * kl_ref, rel=1e-8)


def test_matches_digest_with_fixed_target_and_float32():
    k = 5
    A, y = _batch(3, b=40, f=9, k=k)
    t = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    g_ref, kl_ref = reference_terms(A, y, k, target=t)
    loss = GiniKLLoss(k, lambda_gini=0.8, lambda_kl=0.5, target=t)
    got = float(loss(torch.tensor(A, dtype=torch.float32), torch.tensor(y)))
    assert got == pytest.approx(0.8 * g_ref + 0.5 * kl_ref, rel=1e-5)


def test_flat_map_equals_1x1_map_and_sign_is_ignored():
    A, y = _batch(4, hw=())
    t1 = gini_kl_terms(torch.tensor(A), torch.tensor(y), 4)
    t2 = gini_kl_terms(torch.tensor(-A[:, :, None, None]), torch.tensor(y), 4)
    assert float(t1["gini"]) == pytest.approx(float(t2["gini"]), rel=1e-12)
    assert float(t1["kl"]) == pytest.approx(float(t2["kl"]), rel=1e-12)


def test_several_layers_is_mean_over_layers():
    k = 3
    A1, y = _batch(5, b=18, f=6, k=k)
    A2 = np.random.default_rng(6).standard_normal((18, 11))
    loss = GiniKLLoss(k, 0.5, 0.2)
    yt = torch.tensor(y)
    single = [float(loss(torch.tensor(A), yt)) for A in (A1, A2)]
    both = float(loss([torch.tensor(A1), torch.tensor(A2)], yt))
    assert both == pytest.approx(np.mean(single), rel=1e-12)
    as_dict = float(loss({"a": torch.tensor(A1), "b": torch.tensor(A2)}, yt))
    assert as_dict == pytest.approx(both, rel=1e-12)


# ----------------------------------------------------------------------------- NaN-free conventions
def test_absent_classes_give_the_terms_of_the_present_classes():
    """Classes 1 and 4 absent: the value equals the digest's value on the 3 present classes (re-indexed)."""
    k = 5
    rng = np.random.default_rng(7)
    A = rng.standard_normal((20, 6, 2, 2))
    y = rng.choice([0, 2, 3], size=20)
    y[:3] = [0, 2, 3]
    remap = np.array([0, -1, 1, 2, -1])
    g_ref, kl_ref = reference_terms(A, remap[y], 3)
    At = torch.tensor(A, requires_grad=True)
    r = gini_kl_terms(At, torch.tensor(y), k)
    assert float(r["gini"].detach()) == pytest.approx(g_ref, rel=1e-9)
    assert float(r["kl"].detach()) == pytest.approx(kl_ref, rel=1e-8)
    (r["gini"] + r["kl"]).backward()
    assert torch.isfinite(At.grad).all()
    # fixed target: restricted to the present classes and renormalised
    t = np.array([0.3, 0.1, 0.2, 0.3, 0.1])
    t_present = t[[0, 2, 3]] / t[[0, 2, 3]].sum()
    _, kl_ref_t = reference_terms(A, remap[y], 3, target=t_present)
    r = gini_kl_terms(torch.tensor(A), torch.tensor(y), k, target=torch.tensor(t))
    assert float(r["kl"].detach()) == pytest.approx(kl_ref_t, rel=1e-8)


def test_single_class_batch_is_zero_and_finite():
    A = torch.randn(6, 4, 3, 3, requires_grad=True)
    y = torch.full((6,), 2)
    for target in (None, torch.tensor([0.25, 0.25, 0.25, 0.25])):
        r = gini_kl_terms(A, y, 4, target=target)
        assert float(r["gini"].detach()) == 0.0 and float(r["kl"].detach()) == 0.0
    loss = GiniKLLoss(4)(A, y)
    loss.backward()
    assert torch.isfinite(A.grad).all()


def test_target_without_mass_on_present_classes_gives_zero_kl():
    A = torch.rand(6, 4)
    y = torch.tensor([0, 0, 1, 1, 0, 1])
    r = gini_kl_terms(A, y, 3, target=torch.tensor([0.0, 0.0, 1.0]))
    assert float(r["kl"].detach()) == 0.0


def test_silent_filters_are_left_out():
    """Filters 1 and 3 are zero on the whole batch: the terms equal those of the map without them."""
    k = 3
    rng = np.random.default_rng(8)
    A = np.abs(rng.standard_normal((15, 5, 2, 2)))
    y = np.arange(15) % k
    A[:, [1, 3]] = 0.0
    g_ref, kl_ref = reference_terms(A[:, [0, 2, 4]], y, k)
    At = torch.tensor(A, requires_grad=True)
    r = gini_kl_terms(At, torch.tensor(y), k)
    assert r["firing"].tolist() == [True, False, True, False, True]
    assert float(r["gini"].detach()) == pytest.approx(g_ref, rel=1e-9)
    assert float(r["kl"].detach()) == pytest.approx(kl_ref, rel=1e-8)
    (r["gini"] + r["kl"]).backward()
    assert torch.isfinite(At.grad).all()
    assert float(At.grad[:, [1, 3]].abs().max()) == 0.0


def test_all_silent_and_unanswered_class_stay_finite():
    A = torch.zeros(8, 4, 2, 2, requires_grad=True)
    y = torch.arange(8) % 4
    r = gini_kl_terms(A, y, 4)
    assert float(r["gini"].detach()) == 0.0 and float(r["kl"].detach()) == 0.0
    (r["gini"] + r["kl"]).backward()
    assert torch.isfinite(A.grad).all() and float(A.grad.abs().max()) == 0.0
    # class 3 present but no filter responds to it: q_3 = 0, the KL term is large and finite
    B = torch.rand(8, 4, dtype=torch.float64)
    B[y == 3] = 0.0
    B.requires_grad_(True)
    r = gini_kl_terms(B, y, 4, eps=1e-10)
    assert math.isfinite(float(r["kl"].detach()))
    q = r["q"].detach().numpy()
    assert q[3] == 0.0
    expected = 0.25 * math.log(0.25 / 1e-10) + sum(0.25 * math.log(0.25 / q[c]) for c in range(3))
    assert float(r["kl"].detach()) == pytest.approx(expected, rel=1e-12)
    assert float(r["kl"].detach()) >= 0.25 * math.log(0.25 / 1e-10) + 0.75 * math.log(0.75) - 1e-9  # Gibbs on the rest
    (r["gini"] + r["kl"]).backward()
    assert torch.isfinite(B.grad).all()


@pytest.mark.parametrize("seed", range(5))
def test_random_batches_with_missing_classes_never_nan(seed):
    """Small batches from many classes (most classes absent), post-ReLU maps with dead units, half precision."""
    g = torch.Generator().manual_seed(seed)
    k = 100
    for dtype in (torch.float32, torch.float16):
        A = torch.relu(torch.randn(8, 16, 4, 4, generator=g) - 1.0).to(dtype).requires_grad_(True)
        y = torch.randint(0, k, (8,), generator=g)
        loss = GiniKLLoss(k, 0.5, 0.2)(A, y)
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(A.grad).all()


# ----------------------------------------------------------------------------- theory (theory/gini-kl.md)
def test_gini_zero_iff_each_filter_fires_for_one_class():
    k, F, per = 3, 6, 4
    owner = np.array([0, 0, 1, 1, 2, 2])  # filter -> class
    rng = np.random.default_rng(9)
    y = np.repeat(np.arange(k), per)
    H = rng.uniform(0.1, 2.0, size=(k * per, F)) * (owner[None, :] == y[:, None])  # disjoint supports
    r = gini_kl_terms(torch.tensor(H), torch.tensor(y), k)
    assert float(r["gini"].detach()) == 0.0
    # disjoint supports of non-negative features => class means mutually orthogonal (no collapse needed)
    geo = gini_kl_geometry(torch.tensor(H), y, k)
    assert geo["max_cross_cos"] == 0.0 and geo["support_overlap"] == 0.0 and geo["purity_min"] == 1.0
    M = np.stack([H[y == c].mean(0) for c in range(k)])
    assert np.abs(M @ M.T - np.diag(np.diag(M @ M.T))).max() == 0.0
    # ...and L_G does not force within-class collapse: the features above are spread within classes
    within = np.linalg.norm(H - M[y], axis=1).mean()
    assert within > 0.3
    # one sample of class 0 firing a little on filter 2 (owned by class 1) makes L_G > 0, by the exact amount
    H2 = H.copy()
    H2[0, 2] = 0.8
    S = np.stack([H2[y == c].mean(0) for c in range(k)], axis=1)
    p2 = S[2] / S[2].sum()
    expected = (1.0 - (p2**2).sum()) / F
    assert float(gini_kl_terms(torch.tensor(H2), torch.tensor(y), k)["gini"]) == pytest.approx(expected, rel=1e-12)


def test_gini_upper_bound_attained_by_class_blind_filters():
    """L_G <= 1 - 1/k, with equality iff every filter has the same class-conditional mean for all classes."""
    k = 4
    rng = np.random.default_rng(10)
    for _ in range(20):
        A, y = _batch(int(rng.integers(1e6)), k=k)
        assert float(gini_kl_terms(torch.tensor(A), torch.tensor(y), k)["gini"]) <= 1 - 1 / k + 1e-12
    y = np.repeat(np.arange(k), 3)
    H = np.tile(rng.uniform(0.5, 1.0, size=(3, 5)), (k, 1))  # same three rows in each class
    assert float(gini_kl_terms(torch.tensor(H), torch.tensor(y), k)["gini"]) == pytest.approx(1 - 1 / k, rel=1e-12)


def test_terms_invariant_to_per_filter_scaling():
    A, y = _batch(11, k=4)
    scale = np.random.default_rng(12).uniform(0.01, 100.0, size=(1, A.shape[1], 1, 1))
    r1 = gini_kl_terms(torch.tensor(A), torch.tensor(y), 4)
    r2 = gini_kl_terms(torch.tensor(A * scale), torch.tensor(y), 4)
    assert float(r1["gini"]) == pytest.approx(float(r2["gini"]), rel=1e-10)
    assert float(r1["kl"]) == pytest.approx(float(r2["kl"]), rel=1e-10)


@pytest.mark.parametrize("counts,owners", [((5, 5, 5, 5), (2, 2, 2, 2)), ((30, 30, 10, 10), (6, 6, 2, 2)),
                                           ((12, 6, 6), (4, 2, 2))])
def test_kl_zero_iff_filters_assigned_in_proportion_to_t(counts, owners):
    """Pure filters: q_c = (# filters of class c) / F, so L_KL = KL(t || q) = 0 iff the counts follow t."""
    k = len(counts)
    y = np.repeat(np.arange(k), counts)
    owner = np.repeat(np.arange(k), owners)
    rng = np.random.default_rng(13)
    H = rng.uniform(0.5, 1.5, size=(y.size, owner.size)) * (owner[None, :] == y[:, None])
    r = gini_kl_terms(torch.tensor(H), torch.tensor(y), k)
    assert float(r["gini"].detach()) == 0.0
    assert float(r["kl"].detach()) == pytest.approx(0.0, abs=1e-14)
    assert filter_assignment(torch.tensor(H), y, k).tolist() == pytest.approx(np.array(owners) / owner.size)
    # moving one filter to another class gives exactly KL(t || q') > 0
    owners2 = np.array(owners)
    owners2[0] -= 1
    owners2[-1] += 1
    owner2 = np.repeat(np.arange(k), owners2)
    H2 = rng.uniform(0.5, 1.5, size=(y.size, owner2.size)) * (owner2[None, :] == y[:, None])
    t = np.array(counts) / sum(counts)
    q = owners2 / owners2.sum()
    assert float(gini_kl_terms(torch.tensor(H2), torch.tensor(y), k)["kl"]) == pytest.approx(
        float(np.sum(t * np.log(t / q))), rel=1e-12)


def test_batching_zero_per_batch_but_not_on_the_union():
    """A filter firing for class 0 in one batch and for class 1 in another is pure on each batch."""
    y = np.array([0, 0, 1, 1])
    H = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    H[2:, 0] = 1.0  # filter 0 also fires for the class-1 samples
    b1, b2 = [0, 1], [2, 3]  # single-class batches: filter 0 looks pure in each
    for b in (b1, b2):
        assert float(gini_kl_terms(torch.tensor(H[b]), torch.tensor(y[b]), 2)["gini"]) == 0.0
    full = float(gini_kl_terms(torch.tensor(H), torch.tensor(y), 2)["gini"])
    assert full == pytest.approx(0.5 * (1 - 0.5**2 - 0.5**2), rel=1e-12)  # filter 0: p = (1/2, 1/2)


def test_ufm_check_disjoint_supports_and_assignment():
    """Free non-negative features + CE + the terms (imbalanced 3:3:1:1): L_G -> 0, class means orthogonal,
    filters assigned to classes in proportion t = (3, 3, 1, 1) / 8."""
    from ufm.solvers.free_features import train_free_features

    counts = (30, 30, 10, 10)
    y = np.repeat(np.arange(4), counts)
    loss = GiniKLLoss(4, lambda_gini=0.5, lambda_kl=2.0)
    res = train_free_features(loss, y, 16, steps=500, lr=0.02, optimizer="adam", feature_decay=5e-3,
                              classifier_decay=5e-3, relu=True, seed=0, record_every=500)
    geo = gini_kl_geometry(res.model.features(), y, 4)
    assert geo["gini"] < 1e-3
    assert geo["support_overlap"] == 0.0
    assert geo["max_cross_cos"] < 1e-6
    assert geo["assignment"] == pytest.approx([0.375, 0.375, 0.125, 0.125], abs=1e-12)
    assert geo["kl"] < 1e-3
    # CE alone on the same features leaves shared filters and correlated class means
    ce = train_free_features(GiniKLLoss(4, 0.0, 0.0), y, 16, steps=500, lr=0.02, optimizer="adam",
                             feature_decay=5e-3, classifier_decay=5e-3, relu=True, seed=0, record_every=500)
    geo_ce = gini_kl_geometry(ce.model.features(), y, 4)
    assert geo_ce["gini"] > 0.1 and geo_ce["max_cross_cos"] > 0.1


def test_purity_and_distribution_helpers():
    y = torch.tensor([0, 0, 1, 1])
    H = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    p, firing = filter_class_distribution(H, y, 2)
    assert firing.tolist() == [True, True, False]
    assert np.allclose(p.numpy(), [[1.0, 0.0], [1 / 3, 2 / 3], [0.0, 0.0]], rtol=1e-6)
    assert filter_purity(H, y, 2).tolist() == pytest.approx([1.0, 2 / 3])
    assert filter_assignment(H, y, 2).tolist() == [0.5, 0.5]


# ----------------------------------------------------------------------------- harness contract
def _out(A, k=3, n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ModelOutput(features=A.flatten(1), logits=torch.randn(n, k, generator=g), activations={"layer4": A, "x": A})


def test_registered_and_warmup_through_epoch_hooks():
    assert get_loss("gini_kl") is GiniKLLoss
    k, n = 3, 9
    A = torch.rand(n, 5, 2, 2)
    y = torch.arange(n) % k
    out = _out(A, k, n)
    loss = GiniKLLoss(k, 0.5, 0.2, layers="layer4", warmup_epochs=2)
    ce = float(torch.nn.functional.cross_entropy(out.logits, y))
    terms = float(GiniKLLoss(k, 0.5, 0.2)(A, y))
    for epoch, on in [(0, False), (1, False), (2, True), (5, True)]:
        loss.on_epoch_start(epoch)
        val = float(loss.harness_objective(out, y, None))
        assert val == pytest.approx(ce + (terms if on else 0.0), rel=1e-6)
        stats = loss.on_epoch_end(epoch, {})
        assert stats["gini_kl_active"] == float(on)
        if on:
            assert stats["gini"] == pytest.approx(float(gini_kl_terms(A, y, k)["gini"]), rel=1e-6)
    assert loss.harness_predict(out, None) is None
    # the epoch travels with the state dict
    sd = loss.state_dict()
    fresh = GiniKLLoss(k, 0.5, 0.2, layers="layer4", warmup_epochs=2)
    fresh.load_state_dict(sd)
    assert int(fresh.epoch) == 5 and fresh.terms_active


def test_harness_mean_over_layers_and_default_all_maps():
    k, n = 3, 9
    A = torch.rand(n, 5, 2, 2)
    B = torch.rand(n, 7)
    y = torch.arange(n) % k
    out = ModelOutput(features=B, logits=torch.zeros(n, k), activations={"a": A, "b": B})
    ce = math.log(k)
    both = GiniKLLoss(k, layers=["a", "b"]).harness_objective(out, y, None)
    default = GiniKLLoss(k).harness_objective(out, y, None)
    ref = ce + 0.5 * float(GiniKLLoss(k)(A, y) + GiniKLLoss(k)(B, y))
    assert float(both) == pytest.approx(ref, rel=1e-6) and float(default) == pytest.approx(ref, rel=1e-6)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": 1}, "num_classes"),
    ({"num_classes": 3, "lambda_gini": -1.0}, "lambda_gini"),
    ({"num_classes": 3, "lambda_kl": float("nan")}, "lambda_kl"),
    ({"num_classes": 3, "target": [0.5, 0.5]}, "entries"),
    ({"num_classes": 3, "target": [0.5, 0.6, -0.1]}, "non-negative"),
    ({"num_classes": 3, "target": [0.5, 0.6, 0.1]}, "sum to 1"),
    ({"num_classes": 3, "warmup_epochs": -1}, "warmup"),
    ({"num_classes": 3, "layers": []}, "layers"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GiniKLLoss(**kwargs)


@pytest.mark.parametrize("A,y,match", [
    (torch.rand(6), torch.zeros(6, dtype=torch.long), "shape"),
    (torch.rand(6, 4).long(), torch.zeros(6, dtype=torch.long), "floating"),
    (torch.rand(0, 4), torch.zeros(0, dtype=torch.long), "empty"),
    (torch.rand(6, 0), torch.zeros(6, dtype=torch.long), "no filters"),
    (torch.tensor([[1.0, float("nan")]] * 6), torch.zeros(6, dtype=torch.long), "NaN"),
    (torch.tensor([[1.0, float("inf")]] * 6), torch.zeros(6, dtype=torch.long), "NaN or infinite"),
    (torch.rand(6, 4), torch.zeros(5, dtype=torch.long), "length"),
    (torch.rand(6, 4), torch.tensor([0, 1, 2, 3, 0, 1]), "out of range"),
    (torch.rand(6, 4), torch.tensor([0, 1, -1, 0, 0, 1]), "non-negative"),
    (torch.rand(6, 4), torch.zeros(6), "integer"),
    ("not a tensor", torch.zeros(6, dtype=torch.long), "tensor"),
])
def test_bad_forward_input(A, y, match):
    with pytest.raises(ValueError, match=match):
        GiniKLLoss(3)(A, y)


def test_bad_harness_input():
    k, n = 3, 6
    y = torch.arange(n) % k
    A = torch.rand(n, 4)
    loss = GiniKLLoss(k, layers="layer4")
    with pytest.raises(ValueError, match="not in the model output"):
        loss.harness_objective(ModelOutput(features=A, logits=torch.zeros(n, k), activations={"x": A}), y, None)
    with pytest.raises(ValueError, match="no logits"):
        loss.harness_objective(ModelOutput(features=A, activations={"layer4": A}), y, None)
    with pytest.raises(ValueError, match="logits must have shape"):
        loss.harness_objective(ModelOutput(features=A, logits=torch.zeros(n, 5), activations={"layer4": A}), y, None)
    with pytest.raises(ValueError, match="no activations"):
        GiniKLLoss(k).harness_objective(ModelOutput(features=A, logits=torch.zeros(n, k)), y, None)
    with pytest.raises(ValueError, match="map 1"):
        loss([A, torch.rand(n - 1, 4)], y)
    with pytest.raises(ValueError, match="epoch"):
        loss.on_epoch_start(-1)


def test_filter_activations_shape():
    a = filter_activations(torch.ones(2, 3, 4, 5))
    assert a.shape == (2, 3) and float(a.sum()) == 6.0
