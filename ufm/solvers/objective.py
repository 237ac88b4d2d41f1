"""The SCL objective of the unconstrained features model written on the Gram matrix.

With G = Z^T Z the Gram of the normalised features (diag G = 1), a batching {B} (index arrays) and
temperature tau, the objective is the sum over batches of each batch's mean over its anchors
A_B = {i in B : |P_i| >= 1}, P_i = {j in B \\ {i} : y_j = y_i}:

    f(G) = sum_B 1/|A_B| sum_{i in A_B} [ log sum_{l in B, l != i} exp(G_il / tau)
                                          - 1/|P_i| sum_{j in P_i} G_ij / tau ]

Each anchor term is convex in G (log-sum-exp of a linear map minus a linear map), so f is convex.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ufm._checks import as_label_array

__all__ = ["normalize_batching", "scl_gram_objective", "of_objective", "batch_class_counts"]


def normalize_batching(n: int, batches=None) -> list[np.ndarray]:
    """Validate a batching: a list of 1-D integer index arrays into ``range(n)``, no repeats in a batch.

    ``None`` means one full batch.
    """
    if batches is None:
        return [np.arange(n)]
    out = []
    for t, b in enumerate(batches):
        b = np.asarray(b)
        if b.ndim != 1 or (b.size and not np.issubdtype(b.dtype, np.integer)):
            raise ValueError(f"batch {t} must be a 1-D array of integer sample indices, got {b.dtype} {b.shape}")
        b = b.astype(np.int64)
        if b.size and (b.min() < 0 or b.max() >= n):
            raise ValueError(f"batch {t} has indices outside range(0, {n})")
        if np.unique(b).size != b.size:
            raise ValueError(f"batch {t} repeats a sample index; a sample may appear once per batch")
        out.append(b)
    if not out:
        raise ValueError("the batching is empty")
    return out


def batch_class_counts(labels, batches=None) -> list[np.ndarray]:
    y = as_label_array(labels)
    k = int(y.max()) + 1
    return [np.bincount(y[b], minlength=k) for b in normalize_batching(y.size, batches)]


def scl_gram_objective(gram, labels, batches=None, temperature: float = 0.1, grad: bool = False):
    """Value of ``f(G)`` (and, with ``grad=True``, its symmetric gradient ``(D + D^T)/2``).

    The gradient is the matrix ``A`` with ``f(G + E) = f(G) + <A, E> + o(E)`` for every symmetric
    ``E``; the diagonal of ``A`` is zero since ``f`` does not read ``diag G``.
    """
    g = np.asarray(gram, dtype=np.float64)
    y = as_label_array(labels)
    n = y.size
    if g.shape != (n, n):
        raise ValueError(f"gram must be ({n}, {n}) for {n} labels, got {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("gram contains NaN or infinite values")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    inv_t = 1.0 / temperature
    total = 0.0
    d = np.zeros_like(g) if grad else None
    for b in normalize_batching(n, batches):
        yb = y[b]
        s = g[np.ix_(b, b)] * inv_t
        eye = np.eye(b.size, dtype=bool)
        pos = (yb[:, None] == yb[None, :]) & ~eye
        npos = pos.sum(1)
        anchors = npos > 0
        if not anchors.any():
            continue
        masked = np.where(eye, -np.inf, s)
        lse = logsumexp(masked[anchors], axis=1)
        pos_mean = (s * pos).sum(1)[anchors] / npos[anchors]
        total += float(np.mean(lse - pos_mean))
        if grad:
            soft = np.exp(masked[anchors] - lse[:, None])
            rows = (soft - pos[anchors] / npos[anchors][:, None]) * (inv_t / anchors.sum())
            idx = b[anchors]
            d[np.ix_(idx, b)] += rows
    if grad:
        return total, (d + d.T) / 2
    return total


def of_objective(labels, batches=None, temperature: float = 0.1) -> float:
    """Closed form of ``f`` at the orthogonal frame (G_ij = 1[y_i = y_j]).

    In a batch with class counts m_c (m = sum m_c), every anchor of a class with m_c >= 2 has
        l_c = log( (m_c - 1) e^{1/tau} + (m - m_c) ) - 1/tau = log( m_c - 1 + (m - m_c) e^{-1/tau} ),
    and the batch contributes sum_c m_c l_c / sum_{c : m_c >= 2} m_c.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    total = 0.0
    for m_c in batch_class_counts(labels, batches):
        m = m_c.sum()
        a = m_c >= 2
        if not a.any():
            continue
        l_c = np.log(m_c[a] - 1 + (m - m_c[a]) * np.exp(-1.0 / temperature))
        total += float((m_c[a] * l_c).sum() / m_c[a].sum())
    return total
