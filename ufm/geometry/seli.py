"""Reference geometries that trained networks are measured against under class imbalance.

SELI (Thrampoulidis, Kini, Vakilian, Behnia 2022, "Imbalance trouble"). For cross-entropy on the
unconstrained features model without bias, trained to vanishing regularisation, the normalised
solution has logits ``W^T H`` equal to the simplex-encoded label matrix ``Z`` (k x n),
``Z[c, i] = 1[y_i = c] - 1/k``, and ``W, H`` the balanced factorisation of ``Z``
(``Z = U S V^T``, ``W^T = U S^(1/2)``, ``H = S^(1/2) V^T`` up to a rotation). Since all samples of
class c have the same column of Z, features collapse to class means h_c, and with ``P = I - 11^T/k``
and ``D = diag(n_1, ..., n_k)``,  ``Z Z^T = P D P``, so in closed form

    Gram of the classifier rows   G_W = (P D P)^(1/2)
    Gram of the class means       G_H = ((P D P)^+)^(1/2)        (G_W G_H = P)

Balanced data (D = (n/k) I) gives G_W, G_H proportional to P: the simplex ETF. Under STEP imbalance
G_H and G_W depart from it: minority class means get larger norms and more negative mutual cosines,
minority classifier rows get smaller norms and positive mutual cosines that grow with R (SELI at
k = 10: cos 0.03 at R = 10, 0.34 at R = 100, 0.67 at R = 1000) without reaching 1.

Minority collapse (Fang, He, Long, Su 2021, layer-peeled model with norm constraints, i.e. finite
regularisation): beyond a finite ratio R the minority classifier rows become parallel (cosine 1), the
limit that SELI's growing cosine approaches only as R -> infinity.

The measured counterparts use centred class means (minus the mean of the class means) and centred
classifier rows (minus their mean), compared scale-free with
:func:`ufm.geometry.gram_distance`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["seli_grams", "mean_pairwise_cosine", "centred_gram"]


def seli_grams(counts) -> tuple[np.ndarray, np.ndarray]:
    """``(G_H, G_W)``: the SELI Grams of the class means and of the classifier rows (k x k) for class
    counts ``counts`` (module docstring). Needs k >= 2 positive counts."""
    try:
        n = np.asarray(counts, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"counts must be a 1-D array of class sizes (numbers), got {counts!r}") from None
    if n.ndim != 1 or n.size < 2:
        raise ValueError(f"counts must be a 1-D array of at least two class sizes, got {counts!r}")
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError(f"class counts must be positive and finite, got {n.tolist()}")
    k = n.size
    p = np.eye(k) - np.ones((k, k)) / k
    a = p @ np.diag(n) @ p
    a = (a + a.T) / 2
    w, u = np.linalg.eigh(a)
    keep = w > 1e-10 * w.max()  # rank k - 1: the null vector is 1
    u, w = u[:, keep], w[keep]
    g_w = (u * np.sqrt(w)) @ u.T
    g_h = (u / np.sqrt(w)) @ u.T
    return g_h, g_w


def centred_gram(rows) -> np.ndarray:
    """Gram of the rows minus their mean row (k x k)."""
    m = np.asarray(rows, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"rows must be a (k, d) matrix, got shape {m.shape}")
    c = m - m.mean(axis=0, keepdims=True)
    return c @ c.T


def mean_pairwise_cosine(gram, classes) -> float:
    """Mean cosine between distinct members of ``classes`` from a Gram matrix (NaN if fewer than 2)."""
    g = np.asarray(gram, dtype=np.float64)
    idx = np.asarray(classes, dtype=np.int64)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"gram must be a square (k, k) matrix, got shape {g.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= g.shape[0]):
        raise ValueError(f"classes must be indices in [0, {g.shape[0]}), got {idx.tolist()}")
    if idx.size < 2:
        return float("nan")
    d = np.sqrt(np.clip(np.diag(g), 0, None))
    if np.any(d[idx] == 0):
        raise ValueError("a vector of zero norm has no cosine")
    c = g[np.ix_(idx, idx)] / np.outer(d[idx], d[idx])
    return float(c[~np.eye(idx.size, dtype=bool)].mean())
