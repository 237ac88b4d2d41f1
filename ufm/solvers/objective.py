"""The SCL objective of the unconstrained features model written on the Gram matrix.

With G = Z^T Z the Gram of the normalised features (diag G = 1), a batching {B} (index arrays) and
temperature tau, the objective is the sum over batches of each batch's mean over its anchors
A_B = {i in B : |P_i| >= 1}, P_i = {j in B \\ {i} : y_j = y_i}:

    f(G) = sum_B 1/|A_B| sum_{i in A_B} [ log sum_{l in B, l != i} exp(G_il / tau)
                                          - 1/|P_i| sum_{j in P_i} G_ij / tau ]

Each anchor term is convex in G (log-sum-exp of a linear map minus a linear map), so f is convex.

Temperatures. Evaluating f accepts any positive finite temperature (``check_positive``). The solvers
(``solve_reduced``, ``solve_sdp``, ``solve_gd``, the certificates, ``max_departure``) accept
``temperature >= TEMPERATURE_MIN = 1e-6`` (:func:`check_temperature`). Why that bound: every program
reads G only through ``G / tau``, and float64 rounds each scaled entry to about ``eps / tau`` (``eps`` =
2.2e-16) -- 2.2e-10 at ``tau = 1e-6``, below the certificates' default tolerance 1e-9 (reduced) and 1e-7
(n x n); at ``tau = 1e-7`` the rounding (2.2e-9) exceeds the reduced tolerance. Measured with Clarabel:
certified down to 1e-6 on every program tried (k up to 7, n up to 9, with and without ReLU); below it the
interior-point solver fails (``1e-7``: an n x n program without ReLU not certified; ``1e-9``: the reduced
program without ReLU, counts (5, 3, 2)). With ReLU nothing is lost: the orthogonal frame is the minimiser
at every temperature (Theorem 1 of Kini et al.).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ufm._checks import as_label_array, check_positive, check_real

__all__ = ["normalize_batching", "scl_gram_objective", "of_objective", "batch_class_counts", "TEMPERATURE_MIN",
           "check_temperature", "has_anchor", "check_has_anchor"]

# the smallest temperature the solvers accept (module docstring: float64 rounding of G / tau)
TEMPERATURE_MIN = 1e-6


def check_temperature(temperature) -> float:
    """The temperature of a solver as a float in ``[TEMPERATURE_MIN, inf)`` (module docstring).

    Raises:
        TypeError: not a real number (``'abc'``, None); the message names ``temperature`` and the value.
        ValueError: NaN, infinite, non-positive or below :data:`TEMPERATURE_MIN`; the message names
            ``temperature``, the value and the accepted range.
    """
    tau = check_positive(temperature, "temperature")
    if tau < TEMPERATURE_MIN:
        # check_real's own wording ("must be >= 1e-06 and finite") plus the reason
        try:
            check_real(tau, "temperature", low=TEMPERATURE_MIN)
        except ValueError as err:
            raise ValueError(f"{err}: below it float64 cannot resolve the program's entries G / temperature to the "
                             "certificates' tolerance and the conic solver fails (ufm.solvers.objective): "
                             f"use temperature >= {TEMPERATURE_MIN:g}") from None
    return tau


def normalize_batching(n: int, batches=None) -> list[np.ndarray]:
    """Validate a batching: a list of 1-D integer index arrays into ``range(n)``, no repeats in a batch.

    ``None`` means one full batch.
    """
    if batches is None:
        return [np.arange(n)]
    if isinstance(batches, (str, bytes, np.ndarray)) or not hasattr(batches, "__iter__"):
        raise TypeError(f"batches must be None or a list of 1-D integer index arrays, got {type(batches).__name__} "
                        f"{batches!r:.60}")
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


def has_anchor(labels, batches) -> bool:
    """Whether some batch holds an anchor: a sample with a same-class partner in its batch."""
    y = as_label_array(labels)
    return any(np.any(np.bincount(y[b])[y[b]] >= 2) for b in batches if np.size(b))


def check_has_anchor(labels, batches, what: str = "the batching") -> None:
    """Refuse a batching in which no batch has an anchor: ``f`` is then identically 0 and no solver can move.

    Args:
        labels: (n,) class indices. batches: a list of index arrays (checked by :func:`normalize_batching`).
        what: how the message names the batching (e.g. ``"epoch 0 of the batching"``).

    Raises:
        ValueError: when no class has two samples, saying so; else naming the largest batch size and what is
            needed (a batch_size of at least 2 that puts two samples of a class together, or binding examples).
    """
    y = as_label_array(labels)
    if y.size and np.bincount(y).max() < 2:
        raise ValueError(f"no class of labels has two samples ({y.size} samples, {np.unique(y).size} classes): no "
                         "sample has a same-class partner (an anchor), so the objective is identically 0")
    if not has_anchor(y, batches):
        largest = max((int(np.size(b)) for b in batches), default=0)
        raise ValueError(f"no batch of {what} has an anchor (a sample with a same-class partner in its batch): the "
                         f"objective is identically 0 and no solver can move the features; its largest batch holds "
                         f"{largest} sample(s): use a larger batch_size (at least 2, enough to put two samples of a "
                         "class together) or binding examples")


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
    inv_t = 1.0 / check_positive(temperature, "temperature")
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
    temperature = check_positive(temperature, "temperature")
    total = 0.0
    for m_c in batch_class_counts(labels, batches):
        m = m_c.sum()
        a = m_c >= 2
        if not a.any():
            continue
        l_c = np.log(m_c[a] - 1 + (m - m_c[a]) * np.exp(-1.0 / temperature))
        total += float((m_c[a] * l_c).sum() / m_c[a].sum())
    return total
