"""SupConLoss: formula, agreement with pytorch-metric-learning, conventions, stability, bad input."""

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss

from ufm.losses import SupConLoss, get_loss
from ufm.losses.supcon import supcon_per_anchor
from ufm.solvers.objective import of_objective, scl_gram_objective


def naive_supcon(z, y, tau):
    """Anchor-by-anchor transcription of the formula (float64)."""
    z = torch.nn.functional.normalize(z.double(), dim=1)
    terms = []
    for i in range(len(y)):
        others = [l for l in range(len(y)) if l != i]
        pos = [j for j in others if y[j] == y[i]]
        if not pos:
            continue
        denom = torch.logsumexp(torch.stack([z[i] @ z[l] / tau for l in others]), 0)
        terms.append(-torch.stack([z[i] @ z[j] / tau - denom for j in pos]).mean())
    return torch.stack(terms).mean()


@pytest.mark.parametrize("tau", [0.05, 0.1, 1.0])
def test_matches_formula_with_anchor_without_positive(tau):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(13, 5, generator=g)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 1, 0])  # classes 2 and 4 have no positive
    got = SupConLoss(tau)(z, y)
    assert torch.allclose(got.double(), naive_supcon(z, y, tau), rtol=1e-5)


@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5])
def test_agrees_with_pytorch_metric_learning(tau):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(96, 16, generator=g)
    y = torch.arange(8).repeat(12)  # every anchor has a positive
    ours = SupConLoss(tau)(z, y)
    theirs = PMLSupConLoss(temperature=tau)(z, y)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    z.requires_grad_(True)
    (ga,) = torch.autograd.grad(SupConLoss(tau)(z, y), z)
    (gb,) = torch.autograd.grad(PMLSupConLoss(temperature=tau)(z, y), z)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-6)


def test_views_are_positives_and_equal_flattened_batch():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(6, 2, 4, generator=g)
    y = torch.arange(6)  # every class once: only the other view is a positive
    loss = SupConLoss(0.1)
    flat = loss(z.reshape(12, 4), y.repeat_interleave(2))
    assert torch.allclose(loss(z, y), flat)
    assert torch.isfinite(loss(z, y))


def test_no_positive_anywhere_is_zero_not_nan_and_has_gradient():
    z = torch.randn(4, 3, requires_grad=True)
    loss = SupConLoss(0.1)(z, torch.arange(4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(torch.isfinite(z.grad))
    single = torch.randn(1, 3, requires_grad=True)
    assert SupConLoss(0.1)(single, torch.tensor([0])).item() == 0.0


def test_equals_gram_objective_and_of_closed_form():
    y = np.repeat(np.arange(3), [6, 3, 2])
    z = torch.tensor(np.eye(3)[y] * 2.5)  # collapsed orthogonal frame, unnormalised
    assert SupConLoss(0.1)(z, torch.tensor(y)).item() == pytest.approx(of_objective(y, temperature=0.1), rel=1e-6)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((y.size, 5))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert SupConLoss(0.2)(torch.tensor(x), torch.tensor(y)).item() == pytest.approx(
        scl_gram_objective(xn @ xn.T, y, temperature=0.2), rel=1e-6)


def test_chunked_rows_equal_unchunked():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(50, 8, generator=g)
    y = torch.randint(0, 5, (50,), generator=g)
    assert torch.allclose(SupConLoss(0.1, chunk_size=7)(z, y), SupConLoss(0.1)(z, y), rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_and_low_temperature_are_stable(dtype):
    g = torch.Generator().manual_seed(4)
    z = torch.randn(64, 32, generator=g)
    y = torch.randint(0, 4, (64,), generator=g)
    ref = SupConLoss(0.01)(z, y)
    zl = z.to(dtype).requires_grad_(True)
    got = SupConLoss(0.01)(zl, y)
    assert torch.isfinite(got)
    # the only error is the rounding of the inputs: ~1e-2 relative in half precision
    assert abs(got.item() - ref.item()) / ref.item() < 3e-2
    got.backward()
    assert torch.all(torch.isfinite(zl.grad))


def test_base_temperature_convention():
    z = torch.randn(10, 3)
    y = torch.tensor([0, 1] * 5)
    assert torch.allclose(SupConLoss(0.1, base_temperature=0.07)(z, y), SupConLoss(0.1)(z, y) * (0.1 / 0.07))


def test_registry_and_views():
    assert get_loss("supcon") is SupConLoss
    assert SupConLoss.views == 2


@pytest.mark.parametrize(
    "emb,labels,match",
    [
        (torch.randn(5), torch.zeros(5, dtype=torch.long), "shape"),
        (torch.randn(2, 2, 2, 2), torch.zeros(2, dtype=torch.long), "shape"),
        (torch.randn(5, 3), torch.zeros(4, dtype=torch.long), "length"),
        (torch.randn(5, 3), torch.zeros(5), "integer"),
        (torch.randn(5, 3), torch.tensor([0, 1, -1, 0, 1]), "non-negative"),
        (torch.full((5, 3), float("nan")), torch.zeros(5, dtype=torch.long), "NaN"),
        (torch.randint(0, 3, (5, 3)), torch.zeros(5, dtype=torch.long), "floating"),
    ],
)
def test_bad_input_is_a_clear_error(emb, labels, match):
    with pytest.raises(ValueError, match=match):
        SupConLoss(0.1)(emb, labels)


def test_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(0.0)


def test_a_zero_embedding_is_the_zero_vector_with_no_gradient():
    """A sample whose final-ReLU features are all off: cosine 0 with everything, l_i = log(m - 1), finite
    gradients, none through its own normalisation; counted in the epoch statistics."""
    torch.manual_seed(0)
    z = torch.randn(6, 4).abs()
    z[2] = 0.0
    z.requires_grad_(True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = SupConLoss(0.5)
    loss.on_epoch_start(0)
    value = loss(z, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all() and torch.all(z.grad[2] == 0)
    terms, ok = supcon_per_anchor(z.detach(), y, 0.5)
    assert torch.isclose(terms[2], torch.log(torch.tensor(5.0)))  # log(m - 1): all five cosines are 0
    u = torch.nn.functional.normalize(z.detach(), dim=1)
    u[2] = 0.0  # the reference: the same formula with the zero vector in place
    sim = u @ u.T / 0.5
    i = 3  # an anchor whose only positive is the zero sample
    lse = torch.logsumexp(torch.cat([sim[i, :i], sim[i, i + 1:]]), 0)
    assert torch.isclose(terms[i], lse - sim[i, 2], atol=1e-6)
    assert loss.on_epoch_end(0, {})["zero_embeddings"] == pytest.approx(1 / 6)
    # an all-zero batch: a finite constant, no gradient
    zz = torch.zeros(4, 3, requires_grad=True)
    out = SupConLoss(0.1)(zz, torch.tensor([0, 0, 1, 1]))
    out.backward()
    assert torch.isclose(out, torch.log(torch.tensor(3.0))) and torch.all(zz.grad == 0)
