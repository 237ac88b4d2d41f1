"""Pure geometry of class means: reference frames and distances to them.

Conventions
-----------
* ``features`` are ``(N, d)`` arrays (numpy or torch), ``labels`` are ``(N,)`` integer class indices.
* Frames are returned as ``(k, d)`` arrays whose ROWS are the class vectors.
* Metrics are computed in float64 numpy: they are measurements, precision matters more than speed.

References
----------
Kini et al. (2023), "Supervised-contrastive loss learns orthogonal frames ..." (Delta_OF, Delta_ETF).
The neural-collapse metrics (NC1-NC4) are in :mod:`ufm.geometry.neural_collapse`.
"""

from __future__ import annotations

import numpy as np

from ufm._checks import as_feature_array, as_label_array, check_finite, check_int, check_real

__all__ = [
    "orthogonal_frame_gram",
    "orthogonal_frame",
    "simplex_etf_gram",
    "simplex_etf",
    "sample_gram",
    "normalize_rows",
    "class_means",
    "class_counts",
    "delta_of",
    "delta_etf",
    "delta_of_from_means",
    "delta_etf_from_means",
    "gram_distance",
]


# ----------------------------------------------------------------------------- reference frames
def orthogonal_frame_gram(labels) -> np.ndarray:
    """Sample Gram of the orthogonal frame: ``G_ij = 1[y_i == y_j]`` (``n x n``)."""
    y = as_label_array(labels)
    return (y[:, None] == y[None, :]).astype(np.float64)


def simplex_etf_gram(k: int) -> np.ndarray:
    """Gram of the unit simplex ETF: ones on the diagonal, ``-1/(k-1)`` off it (``k x k``).

    Equals ``k/(k-1) (I - 11^T/k)``.
    """
    k = _check_etf_classes(k)
    return k / (k - 1) * (np.eye(k) - np.ones((k, k)) / k)


def sample_gram(labels, class_gram: np.ndarray) -> np.ndarray:
    """Sample Gram of collapsed features: ``G_ij = class_gram[y_i, y_j]``."""
    y = as_label_array(labels)
    class_gram = np.asarray(class_gram, dtype=np.float64)
    if class_gram.ndim != 2 or class_gram.shape[0] != class_gram.shape[1]:
        raise ValueError(f"class_gram must be a square (k, k) matrix, got shape {class_gram.shape}")
    check_finite(class_gram, "class_gram")
    if y.size and y.max() >= class_gram.shape[0]:
        raise ValueError(f"labels go up to {y.max()} but class_gram is {class_gram.shape}")
    return class_gram[np.ix_(y, y)]


def _check_etf_classes(k) -> int:
    """``k`` as an int >= 2 (a simplex ETF needs two classes); TypeError / ValueError naming ``k`` otherwise."""
    k = check_int(k, "k")
    if k < 2:
        raise ValueError(f"a simplex ETF needs k >= 2 classes, got k={k}")
    return k


def _check_seed(seed) -> int | None:
    """``None`` or a non-negative integer seed (what ``numpy.random.default_rng`` accepts)."""
    return None if seed is None else check_int(seed, "seed", low=0)


def _random_rotation(d: int, seed: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))  # Haar-distributed orthogonal matrix


def orthogonal_frame(k: int, d: int, seed: int | None = None) -> np.ndarray:
    """``k`` orthonormal class vectors in ``R^d`` as rows (``k x d``); needs ``d >= k``.

    ``seed=None`` gives the first ``k`` standard basis vectors (non-negative, as a ReLU network
    can realise); an integer seed applies a seeded random rotation.

    Raises:
        TypeError: ``k``, ``d`` or ``seed`` not an integer.
        ValueError: ``k < 1``, ``d < k`` or a negative seed.
    """
    k, d, seed = check_int(k, "k", low=1), check_int(d, "d", low=1), _check_seed(seed)
    if d < k:
        raise ValueError(f"an orthogonal frame of k={k} classes needs dimension d >= k, got d={d}")
    frame = np.eye(k, d)
    if seed is not None:
        frame = frame @ _random_rotation(d, seed).T
    return frame


def simplex_etf(k: int, d: int, seed: int | None = None) -> np.ndarray:
    """``k`` unit vectors in ``R^d`` with pairwise cosine ``-1/(k-1)`` and zero sum (``k x d``).

    Needs ``d >= k - 1``. Rows of ``sqrt(k/(k-1)) (I - 11^T/k)`` written in an orthonormal basis of
    the ``(k-1)``-dimensional subspace orthogonal to ``1``, padded to ``d`` coordinates, then rotated
    by a seeded Haar rotation when ``seed`` is given.

    Raises:
        TypeError: ``k``, ``d`` or ``seed`` not an integer.
        ValueError: ``k < 2``, ``d < k - 1`` or a negative seed.
    """
    k, seed = _check_etf_classes(k), _check_seed(seed)
    d = check_int(d, "d", low=1)
    if d < k - 1:
        raise ValueError(f"a simplex ETF of k={k} classes needs dimension d >= k-1={k - 1}, got d={d}")
    centred = np.sqrt(k / (k - 1)) * (np.eye(k) - np.ones((k, k)) / k)
    # orthonormal basis of 1^perp: the last k-1 left singular vectors of the centring matrix
    q, _ = np.linalg.qr(np.eye(k)[:, :-1] - 1.0 / k)  # columns span 1^perp (k x (k-1))
    coords = centred @ q  # (k, k-1): same Gram as `centred`
    frame = np.zeros((k, d))
    frame[:, : k - 1] = coords
    if seed is not None:
        frame = frame @ _random_rotation(d, seed).T
    return frame


# ----------------------------------------------------------------------------- class statistics
def normalize_rows(features, eps: float = 0.0) -> np.ndarray:
    """Rows scaled to unit Euclidean norm; a row of norm ``<= eps`` (``eps >= 0``) is an error (it has no direction)."""
    eps = check_real(eps, "eps", low=0.0)
    x = as_feature_array(features)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms <= eps):
        bad = int(np.flatnonzero(norms[:, 0] <= eps)[0])
        raise ValueError(f"feature row {bad} has zero norm: it cannot be normalised")
    return x / norms


def _check_num_classes(num_classes) -> int | None:
    """``None`` or an int >= 1 (TypeError / ValueError naming ``num_classes``)."""
    return None if num_classes is None else check_int(num_classes, "num_classes", low=1)


def class_counts(labels, num_classes: int | None = None) -> np.ndarray:
    """Samples per class ``(k,)``, ``k = num_classes`` or the largest label + 1."""
    num_classes = _check_num_classes(num_classes)
    y = as_label_array(labels, num_classes=num_classes)
    k = num_classes if num_classes is not None else (int(y.max()) + 1 if y.size else 0)
    return np.bincount(y, minlength=k)


def class_means(features, labels, num_classes: int | None = None) -> np.ndarray:
    """Uncentred class means as rows (``k x d``); every class must have a sample."""
    x = as_feature_array(features)
    num_classes = _check_num_classes(num_classes)
    y = as_label_array(labels, n=x.shape[0], num_classes=num_classes)
    counts = class_counts(y, num_classes)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"classes {missing} have no sample: their means are undefined")
    sums = np.zeros((counts.size, x.shape[1]))
    np.add.at(sums, y, x)
    return sums / counts[:, None]


def _present(labels) -> tuple[np.ndarray, np.ndarray]:
    """Labels re-indexed to the classes present (so absent classes do not break the metrics)."""
    y = as_label_array(labels)
    present, inv = np.unique(y, return_inverse=True)
    return present, inv


def _check_means(means, least: int, what: str) -> np.ndarray:
    """Class means as a finite ``(k, d)`` float64 array with ``k >= least`` and ``d >= 1``; the message names the shape."""
    m = np.asarray(means, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < least or m.shape[1] < 1:
        raise ValueError(f"{what} needs class means of shape (k, d) with k >= {least} classes and d >= 1, "
                         f"got shape {m.shape}")
    check_finite(m, "means")
    return m


def delta_of_from_means(means) -> float:
    """``|| M^T M / ||M^T M||_F - I_k / sqrt(k) ||_F`` with ``means`` the ``k x d`` rows ``M^T`` (``k >= 1``)."""
    m = _check_means(means, 1, "Delta_OF")
    g = m @ m.T
    nrm = np.linalg.norm(g)
    if nrm == 0:
        raise ValueError("all class means are zero: Delta_OF is undefined")
    k = g.shape[0]
    return float(np.linalg.norm(g / nrm - np.eye(k) / np.sqrt(k)))


def delta_etf_from_means(means) -> float:
    """Distance of the centred class-mean Gram to the ETF Gram ``(I - 11^T/k)/sqrt(k-1)``.

    Means are centred by the mean of the class means (so that centring an orthogonal frame gives
    exactly a simplex ETF, whatever the class sizes).
    """
    m = _check_means(means, 2, "Delta_ETF")
    k = m.shape[0]
    c = m - m.mean(axis=0, keepdims=True)
    g = c @ c.T
    nrm = np.linalg.norm(g)
    if nrm == 0:
        raise ValueError("the centred class means are all zero: Delta_ETF is undefined")
    ref = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    return float(np.linalg.norm(g / nrm - ref))


def _normalised_class_means(features, labels, what: str) -> np.ndarray:
    """Class means (classes present, in label order) of the L2-normalised features; ``what`` names the
    metric in the error for empty features."""
    x = as_feature_array(features)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{what} needs at least one sample of dimension >= 1, got features of shape {x.shape}")
    z = normalize_rows(x)
    _, y = _present(labels)
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"labels has length {y.shape[0]} but there are {z.shape[0]} samples")
    return class_means(z, y)


def delta_of(features, labels) -> float:
    """Delta_OF of Kini et al.: distance of the normalised Gram of the uncentred class means of the
    L2-normalised features to the orthogonal frame's ``I_k / sqrt(k)``. Zero iff the class means are
    mutually orthogonal with equal norms.
    """
    return delta_of_from_means(_normalised_class_means(features, labels, "Delta_OF"))


def delta_etf(features, labels) -> float:
    """Delta_ETF: like :func:`delta_of` but on centred means against the simplex ETF Gram.

    Built, as Delta_OF, on the means of the L2-normalised features, so it is scale-free but NOT invariant
    to a common shift of the features (normalising after a shift changes the directions): exactly
    collapsed simplex-ETF features plus a common offset score above zero. The shift-invariant distance of
    the raw centred means to the ETF is ``nc2_etf`` (:mod:`ufm.geometry.neural_collapse`)."""
    return delta_etf_from_means(_normalised_class_means(features, labels, "Delta_ETF"))


def gram_distance(gram, reference) -> float:
    """Normalised Gram distance ``|| G/||G||_F - R/||R||_F ||_F`` (scale-free, in ``[0, 2]``)."""
    g = np.asarray(gram, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if g.shape != r.shape:
        raise ValueError(f"Gram shapes differ: {g.shape} vs {r.shape}")
    check_finite(g, "gram")
    check_finite(r, "reference")
    ng, nr = np.linalg.norm(g), np.linalg.norm(r)
    if ng == 0 or nr == 0:
        raise ValueError("a zero Gram matrix has no normalised form")
    return float(np.linalg.norm(g / ng - r / nr))
