"""PEDCC: predefined evenly-distributed class centroids (Zhu et al., PEDCC-Loss 2020 and POD loss 2022).

``k`` fixed unit vectors ``u_1..u_k`` in ``R^d`` used as class targets. "Evenly distributed" means the
minimisers of a repulsive energy on the unit sphere; for ``k <= d + 1`` these are the vertices of a
regular simplex, i.e. a simplex ETF:

    u_i . u_j = -1/(k-1)  (i != j),   sum_i u_i = 0,   rank = k - 1.

Two generators:

* ``method="closed_form"`` (``k <= d + 1``): ``M = sqrt(k/(k-1)) (I_k - 11^T/k) Q V^T`` where ``Q``
  (``k x (k-1)``) is an orthonormal basis of ``1^perp`` and ``V`` (``d x (k-1)``) has orthonormal
  columns drawn from the Haar measure with the given seed (a seeded random rotation). Exact to
  rounding: pairwise cosines equal ``-1/(k-1)`` to ~1e-15.
* ``method="repulsion"`` (any ``k``, ``d``): the charge model on the sphere. Minimises the Riesz
  ``s``-energy ``E = sum_{i<j} ||u_i - u_j||^{-s}`` (``s = 1``: Coulomb charges) by Riemannian gradient
  descent with an adaptive step, until the largest tangential force is below ``tol`` times the
  mean force. :func:`pedcc_repulsion` returns the convergence report; ``scheme="authors"`` runs
  PEDCC-Loss's original undamped velocity update (step ``G = 0.01``, 200 iterations) for comparison.

Whose generator is whose: the 200-iteration charge model is PEDCC-Loss's (Zhu et al. 2020, code
ZLeopard/PEDCC-Loss, ``utils/PEDCC.py``); POD's own generator (TianYuZu/POD-Loss, ``PEDCC_maker.py``) is a
closed-form recursive simplex followed by a random rotation, i.e. ``method="closed_form"`` up to the
rotation. The charge model's non-convergence at ``k = 100, d = 512`` is a fact about PEDCC-Loss, not POD.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ufm._checks import check_finite, check_int, check_positive
from ufm.device import check_device

__all__ = ["pedcc", "pedcc_repulsion", "RepulsionReport", "pedcc_etf_error"]


def _check_kd(num_classes, dim) -> tuple[int, int]:
    for name, v in (("num_classes", num_classes), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    k, d = int(num_classes), int(dim)
    if k < 2:
        raise ValueError(f"PEDCC needs num_classes >= 2, got {k}")
    if d < 1:
        raise ValueError(f"PEDCC needs dim >= 1, got {d}")
    return k, d


def _stiefel(d: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-distributed ``d x m`` matrix with orthonormal columns (``m <= d``)."""
    q, r = np.linalg.qr(rng.standard_normal((d, m)))
    return q * np.sign(np.diag(r))


def _closed_form(k: int, d: int, seed: int | None) -> np.ndarray:
    if k > d + 1:
        raise ValueError(
            f"the closed-form PEDCC (a regular simplex) needs num_classes <= dim + 1, got k={k}, d={d}; "
            "use method='repulsion' for more classes than dim + 1"
        )
    # orthonormal basis of 1^perp (k x (k-1)); Gram of rows of sqrt(k/(k-1)) Q is k/(k-1)(I - 11^T/k)
    q, _ = np.linalg.qr(np.eye(k)[:, :-1] - 1.0 / k)
    coords = np.sqrt(k / (k - 1)) * q
    if seed is None:
        v = np.eye(d, k - 1)
    else:
        v = _stiefel(d, k - 1, np.random.default_rng(seed))
    m = coords @ v.T
    return m / np.linalg.norm(m, axis=1, keepdims=True)  # unit rows (already unit up to rounding)


@dataclass
class RepulsionReport:
    """Outcome of the charge model.

    converged: the relative tangential force fell below ``tol``.
    iterations: iterations run.
    tangential_force: max_i ||tangential force on u_i|| / mean_i ||force on u_i|| at the end
        (zero exactly at a critical point of the energy).
    energy: final Riesz energy.
    cos_min, cos_max: extreme pairwise cosines.
    etf_error: max |cos_ij + 1/(k-1)| (the distance to the optimum when k <= d + 1, else None).
    seconds: wall time.
    """

    converged: bool
    iterations: int
    tangential_force: float
    energy: float
    cos_min: float
    cos_max: float
    etf_error: float | None
    seconds: float
    scheme: str = "gradient"
    history: list[float] = field(default_factory=list)


def _energy_and_force(u: np.ndarray, s: float, floor: float = 0.0):
    """Riesz s-energy, the force ``-grad E`` on each point, and pairwise distances."""
    g = u @ u.T
    d2 = np.clip(2.0 - 2.0 * g, 0.0, None)
    np.fill_diagonal(d2, np.inf)
    dist = np.sqrt(d2)
    if floor:
        dist = np.maximum(dist, floor)
    if np.any(dist == 0):
        raise ValueError("two charges coincide: the repulsion energy is infinite")
    energy = float(np.sum(np.triu(dist ** (-s), 1)))
    w = dist ** (-s - 2)  # force on i: s * sum_j (u_i - u_j) / ||u_i - u_j||^(s+2)
    np.fill_diagonal(w, 0.0)
    force = s * (u * w.sum(1, keepdims=True) - w @ u)
    return energy, force


def _tangential(u: np.ndarray, f: np.ndarray) -> np.ndarray:
    return f - np.sum(f * u, axis=1, keepdims=True) * u


def _report(u, s, k, d, converged, it, t0, scheme, history) -> RepulsionReport:
    energy, force = _energy_and_force(u, s)
    ft = _tangential(u, force)
    rel = float(np.linalg.norm(ft, axis=1).max() / np.linalg.norm(force, axis=1).mean())
    cos = u @ u.T
    off = cos[~np.eye(k, dtype=bool)]
    etf = float(np.abs(off + 1.0 / (k - 1)).max()) if k <= d + 1 else None
    return RepulsionReport(bool(converged), int(it), rel, energy, float(off.min()), float(off.max()), etf,
                           time.time() - t0, scheme, history)


def pedcc_repulsion(num_classes: int, dim: int, seed: int = 0, *, s: float = 1.0, tol: float = 1e-8,
                    max_iter: int = 20000, scheme: str = "gradient") -> tuple[np.ndarray, RepulsionReport]:
    """The charge model on the unit sphere: ``(centroids (k, d) float64 numpy, report)``.

    ``scheme="gradient"``: Riemannian gradient descent on ``E = sum_{i<j} ||u_i - u_j||^{-s}``,
    ``u_i <- normalise(u_i + eta * F_i^tan)`` with ``F = -grad E``; ``eta`` grows by 1.2 after an
    energy decrease and halves (the step rejected) after an increase (where the energy is flat to
    rounding, a step must reduce the tangential force instead). Stops when
    ``max_i ||F_i^tan|| <= tol * mean_i ||F_i||``.

    ``scheme="authors"``: PEDCC-Loss's original update (POD's generator is closed-form), ``u <- normalise(u + v)``, ``v <- v + G F^tan``
    (``G = 0.01``, no damping, distances floored at 0.01) for ``max_iter`` iterations (200 in the
    original); ``converged`` then reports whether the same force criterion holds at the end.

    Never raises on non-convergence: the report says so (``pedcc(method="repulsion")`` raises).
    """
    k, d = _check_kd(num_classes, dim)
    s, tol = check_positive(s, "s (the Riesz exponent)"), check_positive(tol, "tol")
    max_iter, seed = check_int(max_iter, "max_iter", low=0), check_int(seed, "seed", low=0)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((k, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    t0 = time.time()
    history: list[float] = []
    if scheme == "authors":
        v = np.zeros_like(u)
        for it in range(max_iter):
            _, f = _energy_and_force(u, 1.0, floor=1e-2)
            ft = _tangential(u, f)
            u = u + v
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            v = v + 1e-2 * ft
        _, f = _energy_and_force(u, s)
        rel = np.linalg.norm(_tangential(u, f), axis=1).max() / np.linalg.norm(f, axis=1).mean()
        return u, _report(u, s, k, d, rel <= tol, max_iter, t0, scheme, history)
    if scheme != "gradient":
        raise ValueError(f"unknown scheme {scheme!r}: use 'gradient' or 'authors'")
    energy, f = _energy_and_force(u, s)
    eta = 0.1 / k
    it, converged = 0, False
    while it < max_iter:
        ft = _tangential(u, f)
        rel = np.linalg.norm(ft, axis=1).max() / np.linalg.norm(f, axis=1).mean()
        history.append(float(rel))
        if rel <= tol:
            converged = True
            break
        it += 1
        cand = u + eta * ft
        cand /= np.linalg.norm(cand, axis=1, keepdims=True)
        e_new, f_new = _energy_and_force(cand, s)
        # accept a decrease; within the rounding of the energy (flat to machine precision near the
        # optimum) accept only a step that reduces the tangential force
        flat = e_new <= energy + 8 * np.finfo(float).eps * abs(energy)
        if e_new < energy or (flat and np.linalg.norm(_tangential(cand, f_new)) < np.linalg.norm(ft)):
            u, energy, f = cand, e_new, f_new
            eta *= 1.2
        else:
            eta *= 0.5
            if eta < 1e-30:  # stalled
                break
    return u, _report(u, s, k, d, converged, it, t0, scheme, history)


def pedcc_etf_error(centroids) -> dict[str, float]:
    """Distance of ``centroids`` (k, d) to a unit simplex ETF: max |norm - 1|, max |cos + 1/(k-1)|,
    ||sum_i u_i||, and the rank deficit ``k - 1 - rank``."""
    m = centroids.detach().cpu().double().numpy() if isinstance(centroids, torch.Tensor) else np.asarray(centroids, float)
    if m.ndim != 2 or m.shape[0] < 2:
        raise ValueError(f"centroids must have shape (k, d) with k >= 2, got {m.shape}")
    check_finite(m, "centroids")
    k = m.shape[0]
    g = m @ m.T
    off = g[~np.eye(k, dtype=bool)]
    return {
        "norm_error": float(np.abs(np.sqrt(np.diag(g)) - 1).max()),
        "cosine_error": float(np.abs(off + 1.0 / (k - 1)).max()),
        "sum_norm": float(np.linalg.norm(m.sum(0))),
        "rank_deficit": int(k - 1 - np.linalg.matrix_rank(m, tol=1e-8)),
    }


def pedcc(num_classes: int, dim: int, seed: int | None = 0, method: str = "closed_form", *,
          dtype: torch.dtype = torch.float64, device=None, **repulsion_kwargs) -> torch.Tensor:
    """``(num_classes, dim)`` tensor of unit class centroids, evenly distributed on the sphere.

    ``method="closed_form"`` (needs ``k <= d + 1``): the simplex ETF
    ``sqrt(k/(k-1)) (I - 11^T/k) Q V^T`` (see module docstring), ``V`` a Haar-random set of
    orthonormal columns from ``seed`` (``seed=None``: the first ``k-1`` coordinate axes).
    ``method="repulsion"``: :func:`pedcc_repulsion` (keyword arguments passed on); a run that did
    not converge raises ``ValueError`` with its report.
    """
    k, d = _check_kd(num_classes, dim)
    seed = None if seed is None else check_int(seed, "seed", low=0)
    if method == "closed_form":
        m = _closed_form(k, d, seed)
    elif method == "repulsion":
        m, rep = pedcc_repulsion(k, d, 0 if seed is None else seed, **repulsion_kwargs)
        if not rep.converged:
            raise ValueError(
                f"the charge model did not converge for k={k}, d={d} after {rep.iterations} iterations: "
                f"relative tangential force {rep.tangential_force:.2e}, cosines in [{rep.cos_min:.4f}, "
                f"{rep.cos_max:.4f}]; raise max_iter or use method='closed_form' (k <= d + 1)"
            )
    else:
        raise ValueError(f"unknown method {method!r}: use 'closed_form' or 'repulsion'")
    return torch.as_tensor(m, dtype=dtype, device=check_device(device))
