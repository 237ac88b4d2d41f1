"""Margins of a linear classifier on features, class spread, and a multiclass margin bound.

Conventions: a linear head scores ``z = W f + b`` with ``W`` of shape ``(k, d)`` (rows ``w_j``) and
``b`` of shape ``(k,)``. For classes ``y != j`` the signed distance of a point ``x`` to the ``y/j``
decision boundary is

    d_yj(x) = ((w_y - w_j)^T x + b_y - b_j) / ||w_y - w_j||_2 ,

an affine function of ``x`` whose gradient has unit norm, hence 1-Lipschitz. The *geometric margin*
of ``(x, y)`` is ``gamma(x, y) = min_{j != y} d_yj(x)`` (positive iff ``y`` is the strict argmax of
``z``); the *score margin* is ``rho(x, y) = z_y - max_{j != y} z_j`` (what margin bounds use).

The bound (:func:`multiclass_margin_bound`) is the multiclass Rademacher margin bound of
Koltchinskii & Panchenko (2002) in the form with a linear dependence on the number of classes
(Kuznetsov, Mohri & Syed 2015, Thm 1; Mohri, Rostamizadeh & Talwalkar, *Foundations of Machine
Learning*, 2nd ed. 2018, Thm 9.2), empirical-Rademacher version, for linear heads
``{(x, y) -> w_y^T phi'(x) : max_y ||w_y|| <= Lambda}`` on ``phi'(x) = (phi(x), 1)`` (bias folded in):
with probability at least ``1 - delta`` over an i.i.d. sample of size ``m``, for every such head,

    R(h) <= Rhat_rho(h) + (4 k / rho) * Lambda * sqrt(sum_i ||phi'(x_i)||^2) / m
            + 3 sqrt(log(2 / delta) / (2 m)),

where ``Rhat_rho`` is the empirical ramp loss ``mean min(1, max(0, 1 - rho_i / rho))`` (at most the
fraction of samples with score margin ``<= rho``). ``rho`` and ``Lambda`` must be fixed before seeing
the data: the function takes a finite grid of each and pays a union bound (``delta`` split evenly
over the grid), then reports the smallest value. See theory/large-margin.md, section 3.

The bound needs a sample drawn independently of ``phi``: :func:`heldout_margin_bound` evaluates it on a
held-out split (features of a network trained on another split). :func:`vacuity_floor` is the lower
bound ``Rhat_rho + complexity >= 1 + t (2k / sqrt(m) - 1)``, ``t = 2 Lambda mean_i ||phi'(x_i)|| / rho``,
valid for every head and every ``rho``: at ``m <= 4 k^2`` the bound is vacuous whatever the features.
"""

from __future__ import annotations

import math

import numpy as np

from ufm._checks import as_feature_array, as_label_array, check_int, check_positive, check_real

__all__ = [
    "boundary_distances",
    "geometric_margins",
    "score_margins",
    "class_spread",
    "ramp_margin_loss",
    "linear_head_rademacher",
    "multiclass_margin_bound",
    "margin_report",
    "heldout_margin_bound",
    "vacuity_floor",
    "informative_sample_size",
]


def _head(weight, bias, d: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    w = weight.detach().cpu().double().numpy() if hasattr(weight, "detach") else np.asarray(weight, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weight must have shape (k, d), got {tuple(w.shape)}")
    if d is not None and w.shape[1] != d:
        raise ValueError(f"weight has {w.shape[1]} columns but the features have dimension {d}")
    if bias is None:
        b = np.zeros(w.shape[0])
    else:
        b = bias.detach().cpu().double().numpy() if hasattr(bias, "detach") else np.asarray(bias, dtype=np.float64)
        if b.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},), got {tuple(b.shape)}")
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
        raise ValueError("classifier weight or bias contain NaN or infinite values")
    return w, b


def boundary_distances(points, labels, weight, bias=None) -> np.ndarray:
    """Signed distances ``D[i, j] = d_{y_i j}(x_i)`` to every pairwise boundary, ``(n, k)``.

    The entry ``j = y_i`` is ``+inf`` (no boundary with itself), so ``D.min(1)`` is the geometric
    margin. Raises if two weight rows involved coincide (the boundary is undefined).
    """
    x = as_feature_array(points, "points")
    w, b = _head(weight, bias, x.shape[1])
    k = w.shape[0]
    if k < 2:
        raise ValueError(f"margins need at least 2 classes, the classifier has {k}")
    y = as_label_array(labels, n=x.shape[0], num_classes=k)
    a = w[y][:, None, :] - w[None, :, :]  # (n, k, d): w_{y_i} - w_j
    norms = np.linalg.norm(a, axis=2)
    own = np.arange(k)[None, :] == y[:, None]
    if np.any((norms == 0) & ~own):
        i, j = np.argwhere((norms == 0) & ~own)[0]
        raise ValueError(f"weight rows {int(y[i])} and {int(j)} coincide: their decision boundary is undefined")
    z = x @ w.T + b
    num = z[np.arange(x.shape[0]), y][:, None] - z
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = num / norms
    dist[own] = np.inf
    return dist


def geometric_margins(features, labels, weight, bias=None) -> np.ndarray:
    """``gamma_i = min_{j != y_i} d_{y_i j}(f_i)``: Euclidean distance to the nearest pairwise
    boundary, signed (negative when misclassified), ``(n,)``."""
    return boundary_distances(features, labels, weight, bias).min(axis=1)


def score_margins(logits, labels) -> np.ndarray:
    """``rho_i = z_{i, y_i} - max_{j != y_i} z_{i j}`` for logits ``(n, k)``, ``(n,)``."""
    z = as_feature_array(logits, "logits")
    if z.shape[1] < 2:
        raise ValueError(f"score margins need at least 2 classes, got logits of shape {z.shape}")
    y = as_label_array(labels, n=z.shape[0], num_classes=z.shape[1])
    own = z[np.arange(z.shape[0]), y]
    other = z.copy()
    other[np.arange(z.shape[0]), y] = -np.inf
    return own - other.max(axis=1)


def class_spread(features, labels, centres=None) -> np.ndarray:
    """``||f_i - c_{y_i}||`` for every sample, with ``c`` the class means unless ``centres`` (k, d)
    is given, ``(n,)``."""
    x = as_feature_array(features)
    y = as_label_array(labels, n=x.shape[0])
    if centres is None:
        present = np.unique(y)
        c = np.zeros((int(y.max()) + 1, x.shape[1]))
        for k in present:
            c[k] = x[y == k].mean(0)
    else:
        c = as_feature_array(centres, "centres")
        if c.shape[1] != x.shape[1] or y.max() >= c.shape[0]:
            raise ValueError(f"centres of shape {c.shape} do not match features {x.shape} / labels up to {y.max()}")
    return np.linalg.norm(x - c[y], axis=1)


def ramp_margin_loss(margins, rho: float) -> float:
    """Empirical ramp loss ``mean min(1, max(0, 1 - rho_i / rho))`` (``<= P_S(rho_i <= rho)``)."""
    rho = check_positive(rho, "rho")
    m = np.asarray(margins, dtype=np.float64)
    if m.ndim != 1 or m.size == 0 or not np.all(np.isfinite(m)):
        raise ValueError("margins must be a non-empty finite 1-D array")
    return float(np.clip(1.0 - m / rho, 0.0, 1.0).mean())


def linear_head_rademacher(features, lam: float) -> float:
    """Upper bound ``Lambda * sqrt(sum_i ||phi'(x_i)||^2) / m`` on the empirical Rademacher complexity
    of ``{x -> w^T phi'(x) : ||w|| <= Lambda}``, ``phi' = (phi, 1)`` (Cauchy-Schwarz + Jensen)."""
    x = as_feature_array(features)
    lam = check_positive(lam, "lam (Lambda)")
    m = x.shape[0]
    return float(lam * math.sqrt(float((x**2).sum()) + m) / m)


def multiclass_margin_bound(features, logits, labels, weight, bias=None, delta: float = 0.05,
                            rho_grid=None, lambda_grid=None) -> dict:
    """Evaluate the multiclass margin bound of the module docstring for a trained linear head.

    Args:
        features: ``phi(x_i)`` on the sample the bound is about, ``(m, d)``.
        logits: ``W phi(x_i) + b``, ``(m, k)`` (checked against ``weight``, ``bias``).
        weight, bias: the head; ``Lambda_hat = max_y ||(w_y, b_y)||``.
        delta: confidence parameter.
        rho_grid: margins tried (default: 40 values ``2^(-20 .. 19)``, fixed in advance).
        lambda_grid: norm bounds tried (default: ``2^(-10 .. 20)``, fixed in advance); the
            smallest grid value ``>= Lambda_hat`` is used.

    Returns a dict: ``bound`` (the smallest value over ``rho``), ``rho``, ``empirical_margin_loss``,
    ``complexity``, ``confidence``, ``Lambda``, ``Lambda_hat``, ``train_error``, ``m``, ``k``,
    ``delta_per_cell`` (= delta / (|rho_grid| |lambda_grid|)).
    """
    x = as_feature_array(features)
    z = as_feature_array(logits, "logits")
    w, b = _head(weight, bias, x.shape[1])
    m, k = x.shape[0], w.shape[0]
    if z.shape != (m, k):
        raise ValueError(f"logits have shape {z.shape}, expected {(m, k)}")
    if not np.allclose(z, x @ w.T + b, rtol=1e-3, atol=1e-3 * (1 + np.abs(z).max())):
        raise ValueError("logits are not W features + b: the bound is about the linear head on these features")
    delta = check_real(delta, "delta", low=0.0, high=1.0, low_open=True, high_open=True)
    y = as_label_array(labels, n=m, num_classes=k)
    rho_grid = np.asarray(2.0 ** np.arange(-20, 20) if rho_grid is None else rho_grid, dtype=np.float64)
    lambda_grid = np.asarray(2.0 ** np.arange(-10, 21) if lambda_grid is None else lambda_grid, dtype=np.float64)
    if rho_grid.ndim != 1 or rho_grid.size == 0 or np.any(rho_grid <= 0):
        raise ValueError("rho_grid must be a non-empty 1-D array of positive values")
    lam_hat = float(np.sqrt((w**2).sum(1) + b**2).max())
    fits = lambda_grid[lambda_grid >= lam_hat]
    if fits.size == 0:
        raise ValueError(f"the head's norm {lam_hat:.3g} exceeds every value of lambda_grid")
    lam = float(fits.min())
    cells = rho_grid.size * lambda_grid.size
    dcell = delta / cells
    margins = score_margins(z, y)
    rad = linear_head_rademacher(x, lam)
    conf = 3.0 * math.sqrt(math.log(2.0 / dcell) / (2.0 * m))
    best = None
    for rho in rho_grid:
        emp = ramp_margin_loss(margins, float(rho))
        comp = 4.0 * k / float(rho) * rad
        val = emp + comp + conf
        if best is None or val < best["bound"]:
            best = {"bound": val, "rho": float(rho), "empirical_margin_loss": emp, "complexity": comp}
    best.update({"confidence": conf, "Lambda": lam, "Lambda_hat": lam_hat, "train_error": float((margins <= 0).mean()),
                 "m": m, "k": k, "delta_per_cell": dcell})
    return best


def margin_report(features, logits, labels, weight, bias=None, delta: float = 0.05) -> dict:
    """Margins, spread and the margin bound of a trained linear head on one sample, as one row.

    ``min_margin`` / ``median_margin``: geometric margins ``gamma_i``; ``mean_margin_to_spread``: the
    median margin divided by the mean distance to the class mean (scale free); ``max_spread`` /
    ``mean_spread``: ``||f_i - mu_{y_i}||``; ``mean_margin_means``: mean over classes of
    ``min_j d_kj(mu_k)``; ``feature_norm``: mean ``||f_i||``; then the keys of
    :func:`multiclass_margin_bound` prefixed ``bound_`` (``bound`` itself unprefixed).
    """
    x = as_feature_array(features)
    y = as_label_array(labels, n=x.shape[0])
    gm = geometric_margins(x, y, weight, bias)
    spread = class_spread(x, y)
    present = np.unique(y)
    mu = np.stack([x[y == k].mean(0) for k in present])
    mm = geometric_margins(mu, present, weight, bias)
    b = multiclass_margin_bound(x, logits, y, weight, bias, delta=delta)
    row = {"min_margin": float(gm.min()), "median_margin": float(np.median(gm)),
           "mean_margin_to_spread": float(np.median(gm) / spread.mean()) if spread.mean() > 0 else float("inf"),
           "max_spread": float(spread.max()), "mean_spread": float(spread.mean()),
           "mean_margin_means": float(mm.mean()), "feature_norm": float(np.linalg.norm(x, axis=1).mean()),
           "bound": b["bound"]}
    row.update({f"bound_{k}": v for k, v in b.items() if k != "bound"})
    # the same bound at a grid rho just below the 10 % quantile of the score margins (a grid cell, so
    # covered by the same union bound): the comparison of its terms is meaningful even when vacuous
    sm = score_margins(logits, y)
    q = float(np.quantile(sm, 0.1))
    grid = 2.0 ** np.arange(-20, 20)
    below = grid[grid <= q]
    if below.size:
        rho = float(below.max())
        emp = ramp_margin_loss(sm, rho)
        comp = 4.0 * b["k"] / rho * linear_head_rademacher(x, b["Lambda"])
        row.update({"rho_q10": rho, "emp_q10": emp, "complexity_q10": comp, "bound_q10": emp + comp + b["confidence"]})
    return row


def vacuity_floor(features, lam: float, rho: float, k: int) -> dict:
    """Lower bound on ``Rhat_rho + complexity`` for ANY head with ``max_y ||(w_y, b_y)|| <= lam``.

    Every score margin obeys ``rho_i <= 2 lam ||phi'(x_i)||``, so the ramp loss is at least ``1 - t`` and
    the complexity term at least ``2 k t / sqrt(m)`` (``sqrt(sum a_i^2) >= sum a_i / sqrt(m)``), with
    ``t = 2 lam mean_i ||phi'(x_i)|| / rho``.

    Args:
        features: ``phi(x_i)``, ``(m, d)``. lam: the norm bound Lambda. rho: the margin. k: classes.

    Returns:
        ``t``, ``complexity_floor`` (``2 k t / sqrt(m)``), ``floor`` (``1 + t (2k/sqrt(m) - 1)``) and
        ``vacuous_at_any_rho`` (``m <= 4 k^2``).
    """
    x = as_feature_array(features)
    m = x.shape[0]
    lam, rho, k = check_positive(lam, "lam"), check_positive(rho, "rho"), check_int(k, "k", low=1)
    t = 2.0 * lam * float(np.sqrt((x**2).sum(1) + 1.0).mean()) / rho
    c = 2.0 * k / math.sqrt(m)
    return {"t": t, "complexity_floor": c * t, "floor": 1.0 + t * (c - 1.0), "vacuous_at_any_rho": m <= 4 * k * k}


def informative_sample_size(features, logits, labels, lam: float, k: int, delta_per_cell: float,
                            rho_grid=None) -> float:
    """The held-out size ``m*`` above which the bound would fall below 1 if the per-sample margins and
    feature norms kept their measured distribution: ``min_rho ((A_rho + 3 sqrt(log(2/delta_cell)/2))
    / (1 - Rhat_rho))^2`` with ``A_rho = 4 k lam RMS_i ||phi'(x_i)|| / rho`` (inf where ``Rhat_rho = 1``).

    Args:
        features: ``(m, d)``; logits ``(m, k)``; labels ``(m,)``; lam: Lambda; k: classes;
        delta_per_cell: the confidence per grid cell; rho_grid: margins tried (default ``2^(-20..19)``).

    Returns:
        ``m*`` (float, ``inf`` when no ``rho`` has a ramp loss below 1).
    """
    x = as_feature_array(features)
    lam, k = check_positive(lam, "lam"), check_int(k, "k", low=1)
    delta_per_cell = check_real(delta_per_cell, "delta_per_cell", low=0.0, high=1.0, low_open=True, high_open=True)
    rms = float(np.sqrt(((x**2).sum(1) + 1.0).mean()))
    sm = score_margins(logits, labels)
    conf = 3.0 * math.sqrt(math.log(2.0 / delta_per_cell) / 2.0)
    best = math.inf
    for rho in np.asarray(2.0 ** np.arange(-20, 20) if rho_grid is None else rho_grid, dtype=np.float64):
        emp = ramp_margin_loss(sm, float(rho))
        if emp < 1:
            best = min(best, ((4.0 * k * lam * rms / rho + conf) / (1.0 - emp)) ** 2)
    return best


def heldout_margin_bound(features, labels, weight, bias=None, delta: float = 0.05) -> dict:
    """The margin bound on a held-out split, for a head fitted on another split.

    What it bounds: with ``phi`` (the network's features) and the head ``(W, b)`` fixed by the training
    split, the held-out sample ``(x_i, y_i)`` is i.i.d. and independent of both, so with probability
    ``>= 1 - delta`` over it the population error ``P(argmax_j (W phi(x) + b)_j != y)`` of the frozen network
    (and of every head of norm ``<= Lambda`` on ``phi``) is at most ``bound``.

    Args:
        features: ``phi(x_i)`` of the held-out split, ``(m, d)``. labels: ``(m,)``.
        weight, bias: the head, ``(k, d)`` and ``(k,)``. delta: confidence parameter.

    Returns:
        The keys of :func:`multiclass_margin_bound`, plus ``heldout_error`` (the error on this split),
        ``t``, ``complexity_floor``, ``floor``, ``vacuous_at_any_rho`` (:func:`vacuity_floor` at the
        chosen ``rho``) and ``m_star`` (:func:`informative_sample_size`).
    """
    x = as_feature_array(features)
    w, b = _head(weight, bias, x.shape[1])
    z = x @ w.T + b  # (m, k)
    y = as_label_array(labels, n=x.shape[0], num_classes=w.shape[0])
    out = multiclass_margin_bound(x, z, y, w, b, delta=delta)
    out["heldout_error"] = float((z.argmax(1) != y).mean())
    out.update(vacuity_floor(x, out["Lambda"], out["rho"], out["k"]))
    out["m_star"] = float(informative_sample_size(x, z, y, out["Lambda"], out["k"], out["delta_per_cell"]))
    return out
