"""POD's knobs on the UFM: the Delta of the cosine term x the feature decay (and the L_SC weight, imbalance).

One cell: free features ``h_i`` in ``R^DIM`` for ``CLASSES`` classes (a step imbalance of ratio R, as for
SCL), full-batch L-BFGS (at most ``STEPS`` iterations) on the POD objective with a fixed ``Delta`` (no schedule) plus
feature decay ``(lambda/2) mean ||h_i||^2``. Claim 3 of ``theory/pod-loss.md``:
the unique minimiser puts every sample at ``r*(Delta, lambda) u_{y_i}`` whatever the counts, so each cell
reports the measured mean norm, the predicted ``r*`` (:func:`ufm.losses.pod.pod_optimal_norm`), the worst
relative norm error, ``delta_etf`` of the class means and NC1. ``solver_status`` is "converged" when every
norm is within 1e-3 of ``r*`` and every sample within 1e-4 (1 - cosine) of its centroid, "not converged"
otherwise (the trainer's step budget ran out: the cell is then the state it reached, not the minimiser).
"""

from __future__ import annotations

import numpy as np
import torch

from ufm.guidelines.base import Knob, PhaseLoss, register_phase_loss
from ufm.guidelines.supcon import step_counts

CLASSES, DIM, MINORITY, STEPS = 4, 6, 3, 3000

KNOBS = (
    Knob("delta", float, 0.5, "Delta of the cosine term (fixed: no epoch schedule)", low=1e-3, high=100.0),
    Knob("weight_decay", float, 1e-2, "feature decay lambda", low=1e-4, high=10.0),
    Knob("decorrelation_weight", float, 1.0, "weight of the decorrelation term L_SC", low=0.0, high=100.0),
    Knob("ratio", float, 1.0, "imbalance R: majority count / minority count", low=1.0, high=1000.0),
)


def minimise_features(loss, labels: np.ndarray, weight_decay: float, relu: bool, seed: int,
                      steps: int = STEPS) -> np.ndarray:
    """argmin_H loss(relu?(H), y) + (lambda/2) mean_i ||h_i||^2 by full-batch L-BFGS (strong Wolfe line
    search) from a seeded Gaussian start.

    Returns:
        the features (n, DIM) the run ends at (float64).
    """
    gen = torch.Generator().manual_seed(seed)
    H = torch.randn(labels.size, DIM, generator=gen, dtype=torch.float64).requires_grad_(True)
    y = torch.as_tensor(labels)
    opt = torch.optim.LBFGS([H], lr=1.0, max_iter=steps, max_eval=2 * steps, tolerance_grad=1e-13,
                            tolerance_change=1e-16, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        h = torch.relu(H) if relu else H
        obj = loss(h, y) + 0.5 * weight_decay * h.pow(2).sum(1).mean()
        obj.backward()
        return obj

    opt.step(closure)
    with torch.no_grad():
        return (torch.relu(H) if relu else H).numpy().copy()


def pod_cell(seed: int, relu: bool, delta: float, weight_decay: float, decorrelation_weight: float,
             ratio: float) -> dict:
    """One cell of the POD phase table (see the module docstring)."""
    from ufm.geometry import delta_etf, nc_metrics
    from ufm.losses.pod import PODLoss, pod_optimal_norm

    y = np.repeat(np.arange(CLASSES), step_counts(ratio, CLASSES, MINORITY))
    loss = PODLoss(num_classes=CLASSES, dim=DIM, delta=delta, decorrelation_weight=decorrelation_weight,
                   schedule=False, seed=seed).double()
    h = minimise_features(loss, y, weight_decay, relu, seed)  # (n, d)
    norms = np.linalg.norm(h, axis=1)
    r_star = pod_optimal_norm(delta, weight_decay)
    cos = (h / np.clip(norms[:, None], 1e-300, None) * loss.centroids.double().numpy()[y]).sum(1)
    norm_error = float(np.abs(norms / r_star - 1).max())
    converged = norm_error < 1e-3 and float(1 - cos.min()) < 1e-4
    return {"solver_status": "converged" if converged else "not converged", "feature_norm": float(norms.mean()),
            "r_star": r_star, "norm_error": norm_error, "one_minus_cos": float(1 - cos.min()),
            "delta_etf": float(delta_etf(h, y)), "nc1": float(nc_metrics(h, y)["nc1"])}


POD = register_phase_loss(PhaseLoss(
    name="pod", knobs=KNOBS, cell=pod_cell, quantities=("feature_norm", "r_star", "norm_error", "delta_etf"),
    seeded=True, description=__doc__.split("\n\n")[0]))
