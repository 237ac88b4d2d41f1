"""The cross-loss atlas: each loss's UFM minimiser against the imbalance R, with its distance to the frame
its theory predicts.

Counts: the step imbalance of :func:`ufm.guidelines.supcon.step_counts` (4 classes, 2 majorities of
``R * 5`` samples). One row per (loss, R, seed):

=================  ================================  ==============================================
loss               solved by                          frame and distance reported
=================  ================================  ==============================================
SCL + ReLU         exact reduced program              orthogonal frame (Theorem 1): ``delta_of``
SCL (no ReLU)      exact reduced program              simplex ETF (Theorem 3, equal counts only):
                                                      ``delta_etf``; no closed form under imbalance
CE + decay         L-BFGS stationary point            SELI (lambda -> 0 limit): ``gram_distance`` of
                   (:func:`ufm.solvers.ce_ufm...`)    the centred class-mean Gram to SELI's
POD                L-BFGS (``ufm.guidelines.pod``)    the PEDCC (a simplex ETF) at norm r*:
                                                      ``delta_etf``
CE + Gini/KL       free features, ReLU, Adam          orthogonal class means (disjoint supports):
                                                      the largest cosine between two class means
=================  ================================  ==============================================

``distance`` is the scale-free distance named in ``metric``; ``etf_distance`` (the class means' ``delta_etf``)
is given for every loss, so the rows can also be read against one common frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ufm.guidelines.supcon import step_counts

__all__ = ["ATLAS_LOSSES", "atlas_row", "geometry_atlas"]

ATLAS_LOSSES = ("SCL + ReLU", "SCL", "CE + decay", "POD", "CE + Gini/KL")
CE_DECAY = 1e-3


def _scl(counts, relu: bool, temperature: float) -> dict:
    from ufm.solvers import solve_reduced

    res = solve_reduced(counts, temperature=temperature, relu=relu)
    exact = res.verdict == "exact"
    d_of = res.delta_of if exact else res.returned_delta_of
    d_etf = res.delta_etf if exact else res.returned_delta_etf
    return {"frame": "OF" if relu else "ETF", "metric": "delta_of" if relu else "delta_etf",
            "distance": d_of if relu else d_etf, "etf_distance": d_etf, "status": res.verdict}


def _ce(counts, seed: int) -> dict:
    from ufm.geometry import delta_etf_from_means, gram_distance
    from ufm.geometry.seli import centred_gram, seli_grams
    from ufm.solvers.ce_ufm import solve_ce_ufm

    res = solve_ce_ufm(np.repeat(np.arange(len(counts)), counts), CE_DECAY, seed=seed)
    g_h, _ = seli_grams(counts)
    return {"frame": "SELI", "metric": "gram_distance", "distance": gram_distance(centred_gram(res.class_means), g_h),
            "etf_distance": delta_etf_from_means(res.class_means),
            "status": "stationary" if res.grad_norm < 1e-6 else "not stationary"}


def _pod(ratio: float, seed: int) -> dict:
    from ufm.guidelines.pod import pod_cell

    cell = pod_cell(seed=seed, relu=False, delta=0.5, weight_decay=1e-2, decorrelation_weight=1.0, ratio=ratio)
    return {"frame": "PEDCC", "metric": "delta_etf", "distance": cell["delta_etf"], "etf_distance": cell["delta_etf"],
            "status": cell["solver_status"]}


def _gini_kl(counts, seed: int) -> dict:
    from ufm.geometry import class_means, delta_etf_from_means
    from ufm.losses import GiniKLLoss
    from ufm.losses.gini_kl import gini_kl_geometry
    from ufm.solvers.free_features import train_free_features

    y = np.repeat(np.arange(len(counts)), counts)
    res = train_free_features(GiniKLLoss(len(counts), 0.5, 0.2), y, 16, steps=500, lr=0.02, optimizer="adam",
                              feature_decay=5e-3, classifier_decay=5e-3, relu=True, seed=seed, record_every=500)
    h = res.model.features().detach().double()  # (n, 16); dead rows (all zero after the ReLU) allowed
    geo = gini_kl_geometry(h, y, len(counts))
    return {"frame": "orthogonal means", "metric": "max_cross_cos", "distance": geo["max_cross_cos"],
            "etf_distance": delta_etf_from_means(class_means(h.numpy(), y)),
            "status": "trained" if res.history[-1]["train_acc"] == 1.0 else "not separated"}


def atlas_row(loss: str, ratio: float, seed: int = 0, temperature: float = 0.1) -> dict:
    """One (loss, R, seed) row of the atlas (see the module docstring)."""
    counts = step_counts(ratio)
    if loss == "SCL + ReLU":
        out = _scl(counts, True, temperature)
    elif loss == "SCL":
        out = _scl(counts, False, temperature)
    elif loss == "CE + decay":
        out = _ce(counts, seed)
    elif loss == "POD":
        out = _pod(ratio, seed)
    elif loss == "CE + Gini/KL":
        out = _gini_kl(counts, seed)
    else:
        raise ValueError(f"unknown atlas loss {loss!r}; accepted: {list(ATLAS_LOSSES)}")
    return {"loss": loss, "ratio": float(ratio), "seed": seed, **out}


def geometry_atlas(ratios=(1, 10, 100), seeds=3, losses=ATLAS_LOSSES) -> pd.DataFrame:
    """The atlas table: one row per (loss, R, seed); the exact SCL rows are computed once per R (seed 0).

    Args:
        ratios: imbalance ratios R >= 1.
        seeds: a count (0..n-1) for the trained losses.
        losses: a subset of :data:`ATLAS_LOSSES`.
    """
    rows = []
    for loss in losses:
        for r in ratios:
            for s in (range(1) if loss.startswith("SCL") else range(int(seeds))):
                rows.append(atlas_row(loss, r, s))
    return pd.DataFrame(rows)
