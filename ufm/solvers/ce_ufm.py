"""Cross-entropy on the unconstrained features model, with weight decay: a stationary point by L-BFGS.

    minimise_{H, W}  (1/n) sum_i CE(W h_i, y_i) + (lambda/2) (||W||_F^2 + (1/n) sum_i ||h_i||^2)

(no bias). For a fixed ``W`` each ``h_i`` solves ``min_h CE(W h, y_i) + (lambda/2) ||h||^2``, which is
strictly convex and depends on ``i`` only through ``y_i``: at every minimiser (global or local in ``h``) the
samples of a class share one feature ``h_c`` (NC1 holds exactly). The program is therefore solved over the
``k`` class features with weights ``n_c / n``:

    minimise_{h_1..h_k, W}  sum_c (n_c/n) [CE(W h_c, c) + (lambda/2) ||h_c||^2] + (lambda/2) ||W||_F^2,

which costs the same for any n. It is non-convex and no certificate is computed: what is returned is the
point where full-batch L-BFGS (strong Wolfe line search, float64) stops, with the largest gradient entry
there, so a reader can judge stationarity. Its geometry is compared with SELI (``ufm.geometry.seli``), the limit of the
normalised solution as ``lambda -> 0``: at a finite ``lambda`` the distance to SELI is not zero under
imbalance and shrinks slowly (like ``1 / log(1/lambda)``) as ``lambda`` decreases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ufm._checks import as_label_array, check_int

__all__ = ["CEUFMResult", "solve_ce_ufm"]


@dataclass(frozen=True)
class CEUFMResult:
    """features (n, d), class_means (k, d), classifier (k, d), objective, grad_norm (max-abs gradient
    entry at the end point), iterations."""

    features: np.ndarray
    class_means: np.ndarray
    classifier: np.ndarray
    objective: float
    grad_norm: float
    iterations: int


def solve_ce_ufm(labels, weight_decay: float = 1e-3, dim: int | None = None, seed: int = 0,
                 max_iter: int = 5000) -> CEUFMResult:
    """Stationary point of the regularised cross-entropy UFM (see the module docstring).

    Args:
        labels: (n,) class indices; every class in 0..k-1 present.
        weight_decay: lambda > 0 on both the classifier and the features.
        dim: feature dimension (default k + 4, enough for every geometry of k classes).
        seed: the Gaussian start (scale 0.1).
        max_iter: L-BFGS iterations at most.
    """
    y = as_label_array(labels)
    if y.size == 0:
        raise ValueError("labels must not be empty")
    k = int(y.max()) + 1
    if np.bincount(y, minlength=k).min() == 0:
        raise ValueError(f"labels must cover every class 0..{k - 1}, counts {np.bincount(y, minlength=k).tolist()}")
    if not (isinstance(weight_decay, (int, float)) and np.isfinite(weight_decay) and weight_decay > 0):
        raise ValueError(f"weight_decay must be a positive finite number, got {weight_decay!r}")
    max_iter = check_int(max_iter, "max_iter", low=1)  # 0 would return the random start as the answer
    d = k + 4 if dim is None else check_int(dim, "dim", low=1)
    weights = torch.as_tensor(np.bincount(y, minlength=k) / y.size)  # (k,) n_c / n
    gen = torch.Generator().manual_seed(seed)
    Hc = (0.1 * torch.randn(k, d, generator=gen, dtype=torch.float64)).requires_grad_(True)  # (k, d)
    W = (0.1 * torch.randn(k, d, generator=gen, dtype=torch.float64)).requires_grad_(True)   # (k, d)
    classes = torch.arange(k)
    opt = torch.optim.LBFGS([Hc, W], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=1e-12,
                            tolerance_change=1e-16, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        ce = torch.nn.functional.cross_entropy(Hc @ W.T, classes, reduction="none")  # (k,)
        obj = (weights * (ce + 0.5 * weight_decay * Hc.pow(2).sum(1))).sum() + 0.5 * weight_decay * W.pow(2).sum()
        obj.backward()
        return obj

    opt.step(closure)
    obj = closure()
    grad = max(float(Hc.grad.abs().max()), float(W.grad.abs().max()))
    means = Hc.detach().numpy().copy()
    return CEUFMResult(means[y], means, W.detach().numpy().copy(), float(obj.detach()), grad, int(opt.state[Hc]["n_iter"]))
