"""POD loss (Zhu and Zu, "A softmax-free loss function based on predefined optimal-distribution of
latent features", IEEE TCSVT 2022): constrain the latent features only, towards fixed PEDCC centroids.

For unnormalised features x_i in R^d, fixed unit centroids u_1..u_k (rows of C, ``W = C^T``), labels y_i
and a batch of B samples:

    L_NaC = 1/B sum_i ( 1 - x_i . u_{y_i} / sqrt(||x_i||^2 + Delta^2) )^2          (norm-adaptive cosine)
    r_i   = x_i / ||x_i|| - u_{y_i},   Sigma = R^T R / (B - 1)   (d x d, not mean-centred)
    L_SC  = ( ||Sigma||_F^2 - ||diag Sigma||_2^2 ) / (d - 1)                          (decorrelation; 0 when d = 1)
    L     = L_NaC + decorrelation_weight * L_SC

Convention: a zero feature (possible after a final ReLU) has direction 0 in the decorrelation term
(residual ``-u_y``) and cosine term ``(1 - 0)^2 = 1``, and no gradient flows through its direction
(the direction is not differentiable at 0; 0 is the subgradient taken). Its gradient is the cosine term's
alone, ``d/dx_i (1 - x_i.u / sqrt(||x_i||^2 + Delta^2))^2 / B = -2 u_{y_i} / (B Delta)`` at ``x_i = 0``:
norm exactly ``2 / (B Delta)``. (Dividing by ``max(||x||, 1e-12)`` instead, as F.normalize does, gave
gradients of order 1e10 there.)

Small features: the direction ``x / max(||x||, eps)`` has gradient ``1 / ||x||``; with
``||dL_SC/dr_i|| <= 32 B / ((B - 1)^2 (d - 1))`` (``dL_SC/dr_i = 4 (G - diag G) r_i / ((B-1)^2 (d-1))``,
``G = R^T R``, ``||G||_2 <= tr G <= 4B``, ``||r_i|| <= 2``) times ``decorrelation_weight``, ``eps`` is
``max(1e-12, 4 C / finfo(dtype).max)`` (:func:`ufm.losses.base.direction_floor`): 1e-12 from bfloat16 on
(float32 and float64 results unchanged), about 7e-5 at B = 6, d = 8 in float16, so that the gradient
stays within the input's dtype. Half-precision input is computed in float32, and autocast is off.

``x . u / sqrt(||x||^2 + Delta^2)`` is the cosine between ``(x, Delta)`` and ``(u, 0)`` in R^{d+1}: it
is below the cosine of x and u, the more so the smaller ||x||, so the term keeps pushing norms up.

Delta schedule (authors): Delta = 0.05 during epoch 0; after epoch e (counted from 0)
``Delta <- rate * (e + 1) * mean_{i in epoch e} ||W^T x_i||`` with rate 0.01. The mean is accumulated
by the forward passes made with gradients enabled in training mode; the update is the explicit
call :meth:`PODLoss.update_delta`, made by the harness hook :meth:`PODLoss.on_epoch_end`, whose
return value (the Delta used, the next Delta, the mean projection norm) goes into the epoch's metrics.

Prediction: argmax_j cos(x, u_j) (= argmax_j x . u_j, the centroids have equal norms).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ufm._checks import check_int, check_label_tensor, check_positive, check_real
from ufm.geometry.pedcc import pedcc
from ufm.losses.base import HarnessLoss, direction_floor, register_loss, unit_or_zero

__all__ = ["PODLoss", "pod_terms", "pod_term_gradient_norms", "pod_optimal_norm", "check_centroids", "check_features",
           "resolve_centroids", "centroid_cosines"]


# ----------------------------------------------------------------------------- shared helpers
def check_centroids(centroids, tol: float = 1e-5) -> torch.Tensor:
    """Centroids as a (k, d) float tensor with unit rows (checked in float64 to ``tol``), k >= 2."""
    if not isinstance(centroids, torch.Tensor):
        centroids = torch.as_tensor(centroids)
    if centroids.dim() != 2 or centroids.shape[0] < 2 or centroids.shape[1] < 1:
        raise ValueError(f"centroids must have shape (k, d) with k >= 2, got {tuple(centroids.shape)}")
    if not centroids.dtype.is_floating_point:
        raise ValueError(f"centroids must be floating point, got {centroids.dtype}")
    c64 = centroids.detach().double()
    if not bool(torch.isfinite(c64).all()):
        raise ValueError("centroids contain NaN or infinite values")
    err = float((c64.norm(dim=1) - 1).abs().max())
    if err > tol:
        raise ValueError(f"centroids must be unit vectors: the largest | ||u_j|| - 1 | is {err:.3g} (tol {tol:g})")
    return centroids.detach().clone()


def resolve_centroids(centroids, num_classes, dim, seed, method="closed_form") -> torch.Tensor:
    """Given centroids, or ``num_classes`` and ``dim`` to build PEDCC centroids (seeded)."""
    num_classes = None if num_classes is None else check_int(num_classes, "num_classes", low=2)
    dim = None if dim is None else check_int(dim, "dim", low=1)
    seed = check_int(seed, "seed", low=0)
    if centroids is None:
        if num_classes is None or dim is None:
            raise ValueError("give either centroids (k, d) or both num_classes and dim")
        centroids = pedcc(num_classes, dim, seed=seed, method=method)
    c = check_centroids(centroids)
    if num_classes is not None and c.shape[0] != num_classes:
        raise ValueError(f"centroids have {c.shape[0]} rows but num_classes={num_classes}")
    if dim is not None and c.shape[1] != dim:
        raise ValueError(f"centroids have dimension {c.shape[1]} but dim={dim}")
    return c.to(torch.float64)  # cast to the features' dtype at each call


def check_features(features, labels, centroids: torch.Tensor, name: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, d) finite floating tensor matching the centroids; labels in range, on its device."""
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 2:
        raise ValueError(f"{name} must have shape (N, d), got {tuple(features.shape)}")
    if not features.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point, got {features.dtype}")
    k, d = centroids.shape
    if features.shape[1] != d:
        raise ValueError(f"{name} have dimension {features.shape[1]} but the centroids have dimension {d}")
    if features.shape[0] == 0:
        raise ValueError(f"{name} are empty (N = 0)")
    if not bool(torch.isfinite(features).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    labels = check_label_tensor(labels, features.shape[0], k).to(features.device)
    return features, labels


def centroid_cosines(features: torch.Tensor, centroids: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(N, k) cosines between the features and the (unit) centroids; a zero feature has cosine 0.

    ``eps``: the floor of ``||x||`` in the direction ``x / max(||x||, eps)`` (1e-12: F.normalize's).
    """
    return unit_or_zero(features, eps) @ centroids.to(features.dtype).T


# ----------------------------------------------------------------------------- the formulas
def pod_terms(features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, delta: float,
              eps: float = 1e-12):
    """``(L_NaC, L_SC)`` of the module docstring (no input checks: see :class:`PODLoss`).

    ``eps``: the floor of ``||x||`` in the direction ``x / max(||x||, eps)`` (module docstring); a zero
    feature has direction 0 and passes no gradient through it.
    """
    c = centroids.to(features.dtype)
    target = c[labels]  # (B, d)
    sq = features.pow(2).sum(1)
    dot = (features * target).sum(1)
    nac = (1 - dot / torch.sqrt(sq + delta**2)).pow(2).mean()
    b, d = features.shape
    r = unit_or_zero(features, eps) - target  # a zero feature has direction 0 (residual -u_y), no gradient
    diag = r.pow(2).sum(0)  # (B-1) * diag(Sigma)
    # ||R^T R||_F = ||R R^T||_F: use the smaller of the two Gram matrices
    gram = r @ r.T if b <= d else r.T @ r
    if d == 1:  # Sigma is 1 x 1: no off-diagonal entry, nothing to decorrelate (not 0/0)
        return nac, r.sum() * 0.0
    sc = (gram.pow(2).sum() - diag.pow(2).sum()) / ((b - 1) ** 2 * (d - 1))
    return nac, sc


def decorrelation_gradient_bound(batch: int, dim: int) -> float:
    """``32 B / ((B - 1)^2 (d - 1))``: a bound on ``||dL_SC / dr_i||`` (module docstring); 0 when d = 1."""
    return 32.0 * batch / ((batch - 1) ** 2 * (dim - 1)) if dim > 1 and batch > 1 else 0.0


def pod_term_gradient_norms(features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor,
                            delta: float) -> tuple[float, float]:
    """Frobenius norms of the gradients of L_NaC and of L_SC with respect to the (B, d) features.

    Args:
        features: (B, d) features; labels: (B,) class indices; centroids: (k, d) unit rows; delta: Delta.
    Returns:
        ``(||dL_NaC/dX||_F, ||dL_SC/dX||_F)``, computed in float64.
    """
    x = features.detach().double().requires_grad_(True)
    nac, sc = pod_terms(x, labels, centroids, delta)
    g_nac, = torch.autograd.grad(nac, x, retain_graph=True)
    g_sc, = torch.autograd.grad(sc, x)
    return float(g_nac.norm()), float(g_sc.norm())


def pod_optimal_norm(delta: float, feature_decay: float) -> float:
    """The norm r* of the minimiser of the per-sample UFM objective at collapse,
    ``f(r) = (1 - r / sqrt(r^2 + Delta^2))^2 + (lambda/2) r^2``.

    ``f'(r) = lambda r - 2 (1 - r/sqrt(r^2+Delta^2)) Delta^2 / (r^2+Delta^2)^{3/2}``: the second term
    decreases from ``2/Delta`` (r = 0) to 0, the first increases, so the root is unique and lies in
    ``(0, 2/(lambda Delta)]``. For ``r >> Delta``: ``r* ~ (Delta^4 / lambda)^{1/6}``.
    """
    from scipy.optimize import brentq

    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    if not feature_decay > 0:
        raise ValueError(f"the minimiser exists only for feature_decay > 0, got {feature_decay}")
    lam, dl = float(feature_decay), float(delta)

    def fprime(r):
        s = r * r + dl * dl
        return lam * r - 2 * (1 - r / math.sqrt(s)) * dl * dl / s**1.5

    return float(brentq(fprime, 0.0, 2.0 / (lam * dl) * (1 + 1e-12), xtol=1e-15, rtol=1e-14, maxiter=500))


# ----------------------------------------------------------------------------- the loss
@register_loss("pod")
class PODLoss(HarnessLoss):
    """POD loss ``L_NaC + decorrelation_weight * L_SC`` at the current ``delta`` (see module docstring).

    Args:
        centroids: (k, d) unit centroids (e.g. ``ufm.geometry.pedcc(k, d)``); or None with
            ``num_classes`` and ``dim`` to build the seeded closed-form PEDCC.
        delta: initial Delta > 0 (authors: 0.05).
        decorrelation_weight: weight of L_SC (>= 0; authors: 1).
        delta_rate: the 0.01 of the schedule; ``schedule=False`` keeps Delta fixed.
    Centroids, Delta and the epoch accumulators are buffers (moved by ``.to``, saved by ``state_dict``).
    Called as ``loss(features, labels)``; needs B >= 2 when decorrelation_weight > 0.
    """

    def __init__(self, centroids=None, delta: float = 0.05, decorrelation_weight: float = 1.0, *,
                 num_classes: int | None = None, dim: int | None = None, seed: int = 0,
                 delta_rate: float = 0.01, schedule: bool = True):
        super().__init__()
        delta = check_positive(delta, "delta")
        decorrelation_weight = check_real(decorrelation_weight, "decorrelation_weight", low=0.0)
        delta_rate = check_positive(delta_rate, "delta_rate")
        self.register_buffer("centroids", resolve_centroids(centroids, num_classes, dim, seed))
        self.register_buffer("delta", torch.tensor(float(delta), dtype=torch.float64))
        self.register_buffer("_proj_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("_proj_count", torch.zeros((), dtype=torch.float64))
        self.decorrelation_weight = float(decorrelation_weight)
        self.delta_rate = float(delta_rate)
        self.schedule = bool(schedule)

    @property
    def num_classes(self) -> int:
        return self.centroids.shape[0]

    def terms(self, features: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked ``(L_NaC, L_SC)`` at the current Delta (also accumulates the schedule's mean)."""
        features, labels = check_features(features, labels, self.centroids)
        b, d = features.shape
        eps = direction_floor(self.decorrelation_weight * decorrelation_gradient_bound(b, d), features.dtype, 1e-12)
        if features.dtype in (torch.float16, torch.bfloat16):
            features = features.float()  # norms and (B-1)^2 (d-1) denominators need float32 at least
        if self.decorrelation_weight > 0 and b < 2:
            raise ValueError("the decorrelation term needs a batch of at least 2 samples (it divides by B - 1)")
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                proj = (features.detach() @ self.centroids.to(features.dtype).T).norm(dim=1)
                self._proj_sum += proj.double().sum()
                self._proj_count += b
        return pod_terms(features, labels, self.centroids, float(self.delta), eps)

    def forward(self, features: torch.Tensor, labels) -> torch.Tensor:
        nac, sc = self.terms(features, labels)
        return nac + self.decorrelation_weight * sc if self.decorrelation_weight else nac

    # --- schedule
    def mean_projection_norm(self) -> float:
        """Mean of ||W^T x_i|| over the training forward passes since the last reset."""
        if float(self._proj_count) == 0:
            raise ValueError("no training batch was seen since the last reset: the mean of ||W^T x|| is undefined")
        return float(self._proj_sum / self._proj_count)

    def reset_epoch(self) -> None:
        self._proj_sum.zero_()
        self._proj_count.zero_()

    def update_delta(self, epoch: int, mean_projection_norm: float | None = None) -> float:
        """``Delta <- delta_rate * (epoch + 1) * mean ||W^T x||`` (the accumulated mean when not given)."""
        if epoch < 0:
            raise ValueError(f"epoch counts from 0, got {epoch}")
        m = self.mean_projection_norm() if mean_projection_norm is None else float(mean_projection_norm)
        new = self.delta_rate * (epoch + 1) * m
        if not (math.isfinite(new) and new > 0):
            raise ValueError(f"the schedule gives a non-positive or non-finite Delta ({new}) from mean ||W^T x|| = {m}")
        self.delta.fill_(new)
        return new

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.reset_epoch()

    def on_epoch_end(self, epoch: int, row: dict) -> dict:
        """``pod_delta`` (the Delta this epoch used), ``pod_projection_norm`` (the epoch's mean ||W^T x||)
        and, with the schedule, ``pod_next_delta`` (the Delta of the next epoch, set here)."""
        out = {"pod_delta": float(self.delta), **super().on_epoch_end(epoch, row)}
        if float(self._proj_count) > 0:
            out["pod_projection_norm"] = self.mean_projection_norm()
            if self.schedule:
                out["pod_next_delta"] = self.update_delta(epoch)
        return out

    # --- harness contract
    def harness_objective(self, out, labels, model) -> torch.Tensor:
        return self(out.features, labels)

    def harness_predict(self, out, model) -> torch.Tensor:
        """Cosines to the centroids (N, k)."""
        x, _ = check_features(out.features, torch.zeros(out.features.shape[0], dtype=torch.long), self.centroids)
        return centroid_cosines(x.float(), self.centroids)

    def extra_repr(self) -> str:
        return (f"k={self.centroids.shape[0]}, d={self.centroids.shape[1]}, delta={float(self.delta):.4g}, "
                f"decorrelation_weight={self.decorrelation_weight}, delta_rate={self.delta_rate}, schedule={self.schedule}")
