"""Pure geometry of class means: reference frames and distances to them.

Conventions
-----------
* ``features`` are ``(N, d)`` arrays (numpy or torch), ``labels`` are ``(N,)`` integer class indices.
* Frames are returned as ``(k, d)`` arrays whose ROWS are the class vectors.
* Metrics are computed in float64 numpy: they are measurements, precision matters more than speed.

References
----------
Papyan, Han, Donoho (2020), "Prevalence of neural collapse ..." (NC1-NC4).
Kini et al. (2023), "Supervised-contrastive loss learns orthogonal frames ..." (Delta_OF).
"""

from __future__ import annotations

import numpy as np

from ufm._checks import as_feature_array, as_label_array

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
    "nc_metrics",
    "ncc_predict",
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
    if k < 2:
        raise ValueError(f"a simplex ETF needs k >= 2 classes, got k={k}")
    return k / (k - 1) * (np.eye(k) - np.ones((k, k)) / k)


def sample_gram(labels, class_gram: np.ndarray) -> np.ndarray:
    """Sample Gram of collapsed features: ``G_ij = class_gram[y_i, y_j]``."""
    y = as_label_array(labels)
    class_gram = np.asarray(class_gram, dtype=np.float64)
    if y.size and y.max() >= class_gram.shape[0]:
        raise ValueError(f"labels go up to {y.max()} but class_gram is {class_gram.shape}")
    return class_gram[np.ix_(y, y)]


def _random_rotation(d: int, seed: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))  # Haar-distributed orthogonal matrix


def orthogonal_frame(k: int, d: int, seed: int | None = None) -> np.ndarray:
    """``k`` orthonormal class vectors in ``R^d`` as rows (``k x d``); needs ``d >= k``.

    ``seed=None`` gives the first ``k`` standard basis vectors (non-negative, as a ReLU network
    can realise); an integer seed applies a seeded random rotation.
    """
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
    """
    if k < 2:
        raise ValueError(f"a simplex ETF needs k >= 2 classes, got k={k}")
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
    """Rows scaled to unit Euclidean norm; a zero row is an error (it has no direction)."""
    x = as_feature_array(features)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms <= eps):
        bad = int(np.flatnonzero(norms[:, 0] <= eps)[0])
        raise ValueError(f"feature row {bad} has zero norm: it cannot be normalised")
    return x / norms


def class_counts(labels, num_classes: int | None = None) -> np.ndarray:
    y = as_label_array(labels, num_classes=num_classes)
    k = num_classes if num_classes is not None else (int(y.max()) + 1 if y.size else 0)
    return np.bincount(y, minlength=k)


def class_means(features, labels, num_classes: int | None = None) -> np.ndarray:
    """Uncentred class means as rows (``k x d``); every class must have a sample."""
    x = as_feature_array(features)
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


def delta_of_from_means(means) -> float:
    """``|| M^T M / ||M^T M||_F - I_k / sqrt(k) ||_F`` with ``means`` the ``k x d`` rows ``M^T``."""
    m = np.asarray(means, dtype=np.float64)
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
    m = np.asarray(means, dtype=np.float64)
    k = m.shape[0]
    if k < 2:
        raise ValueError("Delta_ETF needs at least two classes")
    c = m - m.mean(axis=0, keepdims=True)
    g = c @ c.T
    nrm = np.linalg.norm(g)
    if nrm == 0:
        raise ValueError("the centred class means are all zero: Delta_ETF is undefined")
    ref = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    return float(np.linalg.norm(g / nrm - ref))


def _normalised_class_means(features, labels) -> np.ndarray:
    """Class means (classes present, in label order) of the L2-normalised features."""
    z = normalize_rows(features)
    _, y = _present(labels)
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"labels has length {y.shape[0]} but there are {z.shape[0]} samples")
    return class_means(z, y)


def delta_of(features, labels) -> float:
    """Delta_OF of Kini et al.: distance of the normalised Gram of the uncentred class means of the
    L2-normalised features to the orthogonal frame's ``I_k / sqrt(k)``. Zero iff the class means are
    mutually orthogonal with equal norms.
    """
    return delta_of_from_means(_normalised_class_means(features, labels))


def delta_etf(features, labels) -> float:
    """Delta_ETF: like :func:`delta_of` but on centred means against the simplex ETF Gram."""
    return delta_etf_from_means(_normalised_class_means(features, labels))


def gram_distance(gram, reference) -> float:
    """Normalised Gram distance ``|| G/||G||_F - R/||R||_F ||_F`` (scale-free, in ``[0, 2]``)."""
    g = np.asarray(gram, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if g.shape != r.shape:
        raise ValueError(f"Gram shapes differ: {g.shape} vs {r.shape}")
    ng, nr = np.linalg.norm(g), np.linalg.norm(r)
    if ng == 0 or nr == 0:
        raise ValueError("a zero Gram matrix has no normalised form")
    return float(np.linalg.norm(g / ng - r / nr))


# ----------------------------------------------------------------------------- neural collapse
def ncc_predict(features, means) -> np.ndarray:
    """Nearest-class-centre prediction (Euclidean)."""
    x = as_feature_array(features)
    m = np.asarray(means, dtype=np.float64)
    d2 = (x**2).sum(1)[:, None] - 2 * x @ m.T + (m**2).sum(1)[None, :]
    return np.argmin(d2, axis=1)


def nc_metrics(features, labels, weight=None, bias=None) -> dict[str, float]:
    """Neural-collapse metrics of Papyan, Han and Donoho (2020) on raw (unnormalised) features.

    * ``nc1`` = tr(Sigma_W Sigma_B^+) / k, Sigma_W the within-class covariance (averaged over all N
      samples), Sigma_B the covariance of the class means around the global mean.
    * ``nc2_equinorm`` = std/mean of ||mu_c - mu_G||; ``nc2_equiangular`` = std of the pairwise cosines
      of the centred means; ``nc2_maxangle`` = mean |cos + 1/(k-1)|; ``nc2_etf`` = Delta_ETF of the
      means centred at the global mean.
    * ``nc3`` (needs ``weight`` (k, d)) = || W/||W||_F - M~/||M~||_F ||_F with M~ the centred means.
    * ``nc4`` (needs ``weight``) = fraction of samples where argmax(Wh + b) differs from the
      nearest class centre.
    * ``ncc_accuracy`` = accuracy of the nearest class centre rule.
    """
    x = as_feature_array(features)
    _, y = _present(labels)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"labels has length {y.shape[0]} but there are {x.shape[0]} samples")
    k = int(y.max()) + 1
    if k < 2:
        raise ValueError("neural-collapse metrics need at least two classes")
    means = class_means(x, y)
    mu_g = x.mean(axis=0)
    centred = means - mu_g
    within = x - means[y]
    sigma_w = within.T @ within / x.shape[0]
    sigma_b = centred.T @ centred / k
    out: dict[str, float] = {}
    out["nc1"] = float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, hermitian=True)) / k)
    norms = np.linalg.norm(centred, axis=1)
    out["nc2_equinorm"] = float(norms.std() / norms.mean()) if norms.mean() > 0 else float("nan")
    unit = centred / np.where(norms[:, None] > 0, norms[:, None], 1.0)
    cos = unit @ unit.T
    off = cos[~np.eye(k, dtype=bool)]
    out["nc2_equiangular"] = float(off.std())
    out["nc2_maxangle"] = float(np.abs(off + 1.0 / (k - 1)).mean())
    g = centred @ centred.T
    ref = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    out["nc2_etf"] = float(np.linalg.norm(g / np.linalg.norm(g) - ref))
    pred_ncc = ncc_predict(x, means)
    out["ncc_accuracy"] = float((pred_ncc == y).mean())
    if weight is not None:
        w = np.asarray(weight.detach().cpu().double() if hasattr(weight, "detach") else weight, dtype=np.float64)
        if w.shape != (k, x.shape[1]):
            raise ValueError(f"weight must have shape (k, d) = {(k, x.shape[1])}, got {w.shape}")
        out["nc3"] = float(np.linalg.norm(w / np.linalg.norm(w) - centred / np.linalg.norm(centred)))
        logits = x @ w.T
        if bias is not None:
            b = np.asarray(bias.detach().cpu().double() if hasattr(bias, "detach") else bias, dtype=np.float64)
            logits = logits + b
        out["nc4"] = float((np.argmax(logits, axis=1) != pred_ncc).mean())
    return out
