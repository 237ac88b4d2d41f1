"""The decorrelation term's gradient against the cosine term's (theory/pod-loss.md, section 3)."""

from __future__ import annotations

import torch

from ufm.geometry import pedcc
from ufm.losses import PODLoss
from ufm.losses.pod import pod_term_gradient_norms


def _batch(b, d, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randint(0, k, (b,), generator=g)


def test_gradient_norms_match_the_loss_module():
    c = pedcc(5, 8, seed=0)
    x, y = _batch(12, 8, 5, 0)
    g_nac, g_sc = pod_term_gradient_norms(x, y, c, 0.3)
    grads = {}
    for w in (0.0, 1.0):
        xx = x.clone().requires_grad_(True)
        PODLoss(c, delta=0.3, decorrelation_weight=w, schedule=False)(xx, y).backward()
        grads[w] = xx.grad
    assert abs(g_nac - float(grads[0.0].norm())) < 1e-12
    assert abs(g_sc - float((grads[1.0] - grads[0.0]).norm())) < 1e-12


def test_decorrelation_gradient_vanishes_at_collapse_and_is_small_at_the_authors_sizes():
    c = pedcc(100, 512, seed=0)
    x, y = _batch(128, 512, 100, 1)
    _, g_sc = pod_term_gradient_norms(3.0 * c[y], y, c, 0.05)
    assert g_sc < 1e-12
    g_nac, g_sc = pod_term_gradient_norms(x, y, c, 0.05)  # B = 128, d = 512, k = 100, random features
    assert 3e-5 < g_sc / g_nac < 3e-4
