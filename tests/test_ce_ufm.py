"""The regularised cross-entropy UFM solved over class features: equal to the per-sample program, the simplex
ETF at equal counts, and SELI approached as the decay vanishes under imbalance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ufm.geometry import delta_etf_from_means, gram_distance
from ufm.geometry.seli import centred_gram, seli_grams
from ufm.solvers.ce_ufm import solve_ce_ufm


def _per_sample_objective(h, w, y, lam):
    h, w = torch.as_tensor(h), torch.as_tensor(w)
    ce = torch.nn.functional.cross_entropy(h @ w.T, torch.as_tensor(y))
    return float(ce + 0.5 * lam * (w.pow(2).sum() + h.pow(2).sum(1).mean()))


def test_class_features_solve_the_per_sample_program():
    y = np.repeat(np.arange(3), [7, 3, 2])
    res = solve_ce_ufm(y, 1e-2, dim=5)
    assert res.grad_norm < 1e-8
    assert abs(_per_sample_objective(res.features, res.classifier, y, 1e-2) - res.objective) < 1e-12
    # no per-sample move lowers it: the per-sample gradient at the collapsed point vanishes
    h = torch.tensor(res.features, requires_grad=True)
    w = torch.tensor(res.classifier, requires_grad=True)
    obj = torch.nn.functional.cross_entropy(h @ w.T, torch.as_tensor(y)) + 0.5e-2 * (w.pow(2).sum() + h.pow(2).sum(1).mean())
    obj.backward()
    assert float(h.grad.abs().max()) < 1e-9 and float(w.grad.abs().max()) < 1e-8


def test_equal_counts_give_the_simplex_etf():
    res = solve_ce_ufm(np.repeat(np.arange(4), 5), 1e-3)
    assert delta_etf_from_means(res.class_means) < 1e-6   # L-BFGS stops at gradient ~1e-10
    assert gram_distance(res.classifier @ res.classifier.T, res.class_means @ res.class_means.T) < 1e-6  # self-dual


def test_imbalance_moves_towards_seli_as_the_decay_vanishes():
    counts = [50, 50, 5, 5]
    y = np.repeat(np.arange(4), counts)
    g_h, _ = seli_grams(counts)
    dist = [gram_distance(centred_gram(solve_ce_ufm(y, lam).class_means), g_h) for lam in (1e-2, 1e-3, 1e-4)]
    assert dist[0] > dist[1] > dist[2] > 0.05, dist      # closer to SELI, slowly, never there at lambda > 0


@pytest.mark.parametrize("kw, message", [
    (dict(labels=[0, 0, 2], weight_decay=1e-3), "labels must cover every class 0..2"),
    (dict(labels=[0, 1], weight_decay=0.0), "weight_decay must be a positive finite number, got 0.0"),
    (dict(labels=[], weight_decay=1e-3), "labels must not be empty"),
])
def test_bad_input_is_a_clear_error(kw, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        solve_ce_ufm(**kw)
