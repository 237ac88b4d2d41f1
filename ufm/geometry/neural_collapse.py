"""Neural-collapse metrics: one definition per name, each following a named reference.

References (their code is what researchers compare against; theory/nc-metrics.md has the full table):

* Papyan, Han, Donoho (2020), PNAS, and the authors' Colab notebook ("the Colab code" below).
* tding1/Neural-Collapse (Zhu et al. 2021), ``validate_NC.py`` and ``plot.py`` ("tding1").
* rhubarbwu/neural-collapse (Wu and Papyan 2024), ``neural_collapse/measure.py`` ("rhubarbwu").
* Galanti, Gyorgy, Hutter (2022) for the class-distance normalised variance (CDNV).

Notation. Features ``h_i`` (N, d) with labels ``y_i`` in {0, ..., K-1}; ``n_c`` the class counts;
``mu_c`` the class means, rows of M (K, d); ``W`` (K, d) the classifier rows, ``b`` (K,) its bias.

* Global mean ``mu_G``, an explicit choice (``centring``):
  ``"balanced"`` (default): ``mu_G = (1/K) sum_c mu_c``, the plain mean of the class means (the Colab
  code, rhubarbwu's default, this project's ``delta_etf`` and SELI geometry). It makes the centred means
  of exactly collapsed features a simplex ETF whatever the class sizes.
  ``"weighted"``: ``mu_G = (1/N) sum_i h_i = sum_c n_c mu_c / N`` (tding1). Under imbalance it differs,
  and so does every metric built on centred means.
* ``M~ = M - mu_G`` (K, d), the centred means.
* ``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` (d, d), the within-class covariance (all
  three references); ``Sigma_B = (1/K) M~^T M~`` (d, d); ``v_c = (1/n_c) sum_{y_i = c} ||h_i - mu_c||^2``.
* ``E = (I_K - 11^T/K) / sqrt(K - 1)``, the simplex-ETF Gram at unit Frobenius norm, and
  ``etf_distance(A) = || A/||A||_F - E ||_F``.

Statistics stream: :class:`ClassMoments` accumulates counts, means, the within-class scatter and the
per-class scatter traces batch by batch on the features' device (float64, merged with the update of
Chan, Golub and LeVeque, so a data set never has to fit in memory); the metrics are functions of the
resulting :class:`ClassStats`. Only NC4 needs the samples again (with the means): :func:`nc4_ncc_mismatch`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ufm._checks import as_feature_array, as_label_array, check_finite, check_int
from ufm.device import check_device

__all__ = [
    "CENTRINGS",
    "ClassMoments",
    "ClassStats",
    "class_stats",
    "global_mean",
    "centred_means",
    "etf_distance",
    "nc1",
    "nc1_colab",
    "nc1_quotient",
    "cdnv",
    "equinorm",
    "max_angle",
    "equiangular_std",
    "nc2_etf",
    "nc2_etf_w",
    "nc2_etf_w_centred",
    "nc3_alignment",
    "nc3_self_duality",
    "nc3_duality_var",
    "nc3_distance_norms",
    "nc4_ncc_mismatch",
    "bias_residual",
    "ncc_predict",
    "nc_metrics",
    "nc_metrics_from_stats",
    "NC_METRIC_NAMES",
]

CENTRINGS = ("balanced", "weighted")

# the keys of nc_metrics, in the order of theory/nc-metrics.md (W-free ones first)
NC_METRIC_NAMES = (
    "nc1", "nc1_colab", "nc1_quotient", "cdnv",
    "nc2_equinorm", "nc2_equiangular_std", "nc2_maxangle", "nc2_etf",
    "nc2_equinorm_w", "nc2_equiangular_std_w", "nc2_maxangle_w", "nc2_etf_w", "nc2_etf_w_centred",
    "nc3_alignment", "nc3_self_duality", "nc3_duality_var", "nc3_distance_mean",
    "nc4_ncc_mismatch", "bias_residual",
)  # fmt: skip


# ----------------------------------------------------------------------------- class statistics
@dataclass(frozen=True)
class ClassStats:
    """Class statistics of a feature set (float64 numpy).

    Attributes:
        counts: (K,) samples per class (all > 0).
        means: (K, d) class means ``mu_c``.
        within_cov: (d, d) ``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T``.
        variances: (K,) ``v_c = (1/n_c) sum_{y_i = c} ||h_i - mu_c||^2`` (trace of the class covariance).
    """

    counts: np.ndarray
    means: np.ndarray
    within_cov: np.ndarray
    variances: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.counts.shape[0])


class ClassMoments:
    """Streaming class statistics: ``update(features, labels)`` batch by batch, then :meth:`stats`.

    State on ``device`` in ``dtype`` (float64 by default): counts (K,), means (K, d), the within-class
    scatter ``S = sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` (d, d) and its per-class traces (K,). A batch
    is reduced to its own class means and centred scatter (a two-pass computation on the batch), then
    merged: for class c with ``n_a`` samples so far and ``n_b`` in the batch, ``delta = mean_b - mean_a``,
    ``S += S_b + (n_a n_b / (n_a + n_b)) delta delta^T`` (Chan, Golub, LeVeque 1983), which stays exact
    where the one-pass ``sum h h^T - n mu mu^T`` loses the digits of a nearly collapsed class.

    Args:
        num_classes: K.
        dim: d, the feature dimension.
        device: where the statistics live (default: the first batch's device).
        dtype: accumulation precision (float64; float32 on backends without float64).
    """

    def __init__(self, num_classes: int, dim: int, device=None, dtype: torch.dtype = torch.float64):
        num_classes, dim = check_int(num_classes, "num_classes"), check_int(dim, "dim")
        if num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2 (neural collapse compares classes), got {num_classes!r}")
        if dim < 1:
            raise ValueError(f"dim must be a positive integer (the feature dimension), got {dim!r}")
        self.num_classes, self.dim, self.dtype = int(num_classes), int(dim), dtype
        self.device = check_device(device)  # None: the first batch's device
        self._state = None

    def _init_state(self, device: torch.device):
        k, d, dt = self.num_classes, self.dim, self.dtype
        self.device = device
        self._state = {"counts": torch.zeros(k, dtype=dt, device=device), "means": torch.zeros(k, d, dtype=dt, device=device),
                       "scatter": torch.zeros(d, d, dtype=dt, device=device), "traces": torch.zeros(k, dtype=dt, device=device)}

    @torch.no_grad()
    def update(self, features, labels) -> "ClassMoments":
        """Add a batch: ``features`` (B, d) tensor or array, ``labels`` (B,) in ``[0, K)``."""
        h = features if isinstance(features, torch.Tensor) else torch.as_tensor(as_feature_array(features))
        if h.dim() != 2 or h.shape[1] != self.dim:
            raise ValueError(f"features must have shape (B, dim={self.dim}), got {tuple(h.shape)}")
        if self._state is None:
            self._init_state(self.device or h.device)
        h = h.detach().to(self.device, self.dtype)
        if not bool(torch.isfinite(h).all()):
            raise ValueError("features contain NaN or infinite values")
        y = torch.as_tensor(as_label_array(labels, n=h.shape[0], num_classes=self.num_classes), device=self.device)
        self._merge(*self._batch_moments(h, y))
        return self

    def _batch_moments(self, h: torch.Tensor, y: torch.Tensor):
        k = self.num_classes
        n_b = torch.bincount(y, minlength=k).to(self.dtype)  # (K,)
        mean_b = torch.zeros(k, self.dim, dtype=self.dtype, device=self.device).index_add_(0, y, h)
        mean_b = mean_b / n_b.clamp(min=1)[:, None]  # (K, d)
        dev = h - mean_b[y]  # (B, d)
        trace_b = torch.zeros(k, dtype=self.dtype, device=self.device).index_add_(0, y, (dev * dev).sum(1))
        return n_b, mean_b, dev.T @ dev, trace_b

    def _merge(self, n_b, mean_b, scatter_b, trace_b) -> None:
        st = self._state
        n_a = st["counts"]
        n = n_a + n_b
        delta = mean_b - st["means"]  # (K, d)
        weight = torch.where(n_b > 0, n_a * n_b / n.clamp(min=1), torch.zeros_like(n))  # (K,)
        st["scatter"] += scatter_b + (delta * weight[:, None]).T @ delta
        st["traces"] += trace_b + weight * (delta * delta).sum(1)
        st["means"] += torch.where((n_b > 0)[:, None], delta * (n_b / n.clamp(min=1))[:, None], torch.zeros_like(delta))
        st["counts"] = n

    def stats(self) -> ClassStats:
        """The statistics as :class:`ClassStats`; every class must have a sample."""
        if self._state is None:
            raise ValueError("no batch was added: the class statistics are undefined")
        st = {k: v.detach().cpu().double().numpy() for k, v in self._state.items()}
        counts = st["counts"].round().astype(np.int64)
        if np.any(counts == 0):
            raise ValueError(f"classes {np.flatnonzero(counts == 0).tolist()} have no sample: neural-collapse metrics "
                             "need every class (pass num_classes equal to the classes present)")
        return ClassStats(counts, st["means"], st["scatter"] / counts.sum(), st["traces"] / counts)


def class_stats(features, labels, num_classes: int | None = None) -> ClassStats:
    """:class:`ClassStats` of an in-memory feature set (one batch of :class:`ClassMoments`: exact two-pass)."""
    x = as_feature_array(features)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must hold at least one sample of dimension >= 1, got shape {x.shape}: the class "
                         "statistics are undefined")
    y = as_label_array(labels, n=x.shape[0], num_classes=num_classes)
    k = num_classes if num_classes is not None else int(y.max()) + 1 if y.size else 0
    return ClassMoments(k, x.shape[1], device="cpu").update(torch.as_tensor(x), y).stats()


# ----------------------------------------------------------------------------- shared pieces
def _check_centring(centring: str) -> str:
    if centring not in CENTRINGS:
        raise ValueError(f"centring must be one of {CENTRINGS} (the global mean: mean of the class means, or "
                         f"sample-weighted), got {centring!r}")
    return centring


def global_mean(stats: ClassStats, centring: str = "balanced") -> np.ndarray:
    """``mu_G`` (d,): the mean of the class means ("balanced") or of the samples ("weighted")."""
    if _check_centring(centring) == "balanced":
        return stats.means.mean(axis=0)
    return stats.counts @ stats.means / stats.counts.sum()


def centred_means(stats: ClassStats, centring: str = "balanced") -> np.ndarray:
    """``M~ = M - mu_G`` (K, d)."""
    return stats.means - global_mean(stats, centring)


def _between_class_means(stats: ClassStats, centring: str) -> np.ndarray:
    """``M~``, refused when the class means coincide: then ``Sigma_B = 0`` and every metric that inverts it or
    reads the directions of the centred means is undefined (not 0, which would read as perfect collapse).

    "Coincide" is up to rounding: ``max_c ||mu~_c||^2 <= 16 eps max_c ||mu_c||^2`` (the test of :func:`cdnv` for
    two means), since means that are equal in exact arithmetic differ in float64 by the rounding of their sums,
    and a pseudo-inverse of that rounding gives values near 1e33 instead of 0.
    """
    mc = centred_means(stats, centring)
    spread, scale = float((mc * mc).sum(1).max()), float((stats.means * stats.means).sum(1).max())
    if spread <= 16 * np.finfo(float).eps * scale:
        raise ValueError(f"the {stats.num_classes} class means coincide (max ||mu_c - mu_G||^2 = {spread:.3g}, at most "
                         f"rounding of max ||mu_c||^2 = {scale:.3g}): the between-class covariance Sigma_B is zero and "
                         "the metric is undefined")
    return mc


def etf_distance(a) -> float:
    """``|| A/||A||_F - E ||_F`` with ``E = (I - 11^T/K)/sqrt(K-1)`` for a (K, K) matrix A (a Gram, or the
    cross-Gram ``W M~^T``); in [0, 2], zero iff A is a positive multiple of the simplex-ETF Gram."""
    a = np.asarray(a, dtype=np.float64)
    k = a.shape[0] if a.ndim else 0
    if a.ndim != 2 or a.shape != (k, k) or k < 2:
        raise ValueError(f"etf_distance needs a square (K, K) matrix with K >= 2, got shape {a.shape}")
    check_finite(a, "the matrix")
    nrm = np.linalg.norm(a)
    if nrm == 0:
        raise ValueError("a zero matrix has no direction: its distance to the simplex ETF is undefined")
    e = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    return float(np.linalg.norm(a / nrm - e))


def _rows(vectors, name: str) -> np.ndarray:
    """``vectors`` as a finite (K, d) float64 array with K >= 2 (the NC2 metrics compare rows)."""
    try:
        v = np.asarray(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (K, d) array of numbers, got {vectors!r:.60}") from None
    if v.ndim != 2 or v.shape[0] < 2:
        raise ValueError(f"{name} must have shape (K, d) with K >= 2 rows, got shape {v.shape}")
    check_finite(v, name)
    return v


def _weight(weight, stats: ClassStats | None = None) -> np.ndarray:
    try:
        w = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"weight must be the (K, d) classifier rows (numbers), got {weight!r:.60}") from None
    if w.ndim != 2:
        raise ValueError(f"weight must be the (K, d) classifier rows, got shape {w.shape}")
    if stats is not None and w.shape != stats.means.shape:
        raise ValueError(f"weight must have shape (K, d) = {stats.means.shape} to match the class means, got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weight (the classifier rows) contains NaN or infinite values")
    return w


def _bias(bias, k: int) -> np.ndarray:
    b = bias.detach().cpu().double().numpy() if isinstance(bias, torch.Tensor) else np.asarray(bias, dtype=np.float64)
    if b.shape != (k,):
        raise ValueError(f"bias must have shape (K,) = ({k},), one entry per classifier row, got shape {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("bias (the classifier's) contains NaN or infinite values")
    return b


def _pinv(a: np.ndarray) -> np.ndarray:
    """Moore-Penrose pseudo-inverse of a symmetric PSD matrix (cut-off ``max(shape) eps lambda_max``, as
    numpy, scipy and torch do by default)."""
    return np.linalg.pinv(a, hermitian=True)


# ----------------------------------------------------------------------------- NC1: within-class variability
def nc1(stats: ClassStats, centring: str = "balanced") -> float:
    """``tr(Sigma_W Sigma_B^+) / K``: Papyan et al. (2020, the plotted ``Tr(Sigma_W Sigma_B^+/C)``),
    tding1's ``collapse_metric`` (with ``centring="weighted"``), rhubarbwu's ``covariance_ratio(metric="pinv")``
    (``nc1_pinv``, with the default ``"balanced"``). Undefined (ValueError) when the class means coincide:
    ``Sigma_B = 0`` and its pseudo-inverse 0 would give 0, the value of perfect collapse."""
    mc = _between_class_means(stats, centring)
    sigma_b = mc.T @ mc / stats.num_classes
    return float(np.trace(stats.within_cov @ _pinv(sigma_b)) / stats.num_classes)


def nc1_colab(stats: ClassStats, centring: str = "balanced") -> float:
    """``tr(Sigma_W Sigma_B^{+(K-1)})``, the Colab code's ``Sw_invSb``: no ``1/K``, and ``Sigma_B`` inverted on
    its top K-1 eigenpairs (the Colab's ``svds(Sb, k=C-1)``). Either centring leaves one linear relation
    among the centred means (``sum_c mu~_c = 0``, or ``sum_c n_c mu~_c = 0``), so ``Sigma_B`` has rank at most
    K-1, its top-(K-1) inverse is its pseudo-inverse, and this is exactly ``K * nc1`` (same centring)."""
    k = stats.num_classes
    mc = _between_class_means(stats, centring)
    vals, vecs = np.linalg.eigh(mc.T @ mc / k)
    top_vals, top_vecs = vals[-(k - 1):], vecs[:, -(k - 1):]
    if top_vals[0] <= max(vals.size, 1) * np.finfo(float).eps * max(vals[-1], 0.0):  # pinv's cut-off
        raise ValueError("Sigma_B has fewer than K-1 directions (class means on a lower-dimensional set): "
                         "nc1_colab is undefined")
    inv = (top_vecs / top_vals) @ top_vecs.T
    return float(np.trace(stats.within_cov @ inv))


def nc1_quotient(stats: ClassStats, centring: str = "balanced") -> float:
    """``tr(Sigma_W) / tr(Sigma_B)``: rhubarbwu's ``covariance_ratio(metric="quotient")`` (Tirer et al. 2023)."""
    mc = _between_class_means(stats, centring)
    tr_b = float((mc * mc).sum() / stats.num_classes)
    if tr_b == 0:
        raise ValueError("all class means coincide: tr(Sigma_B) = 0 and nc1_quotient is undefined")
    return float(np.trace(stats.within_cov) / tr_b)


def cdnv(stats: ClassStats) -> float:
    """Mean over class pairs c < c' of ``(v_c + v_c') / (2 ||mu_c - mu_c'||^2)``: the class-distance normalised
    variance of Galanti et al. (2022), rhubarbwu's ``variability_cdnv`` (``nc1_cdnv``). Independent of centring."""
    m, v = stats.means, stats.variances
    i, j = np.triu_indices(stats.num_classes, k=1)
    dist2 = ((m[i] - m[j]) ** 2).sum(1)
    if np.any(dist2 <= 16 * np.finfo(float).eps * (m * m).sum(1).max()):  # equal up to rounding
        raise ValueError("two class means coincide: their CDNV is infinite")
    return float(np.mean((v[i] + v[j]) / (2 * dist2)))


# ----------------------------------------------------------------------------- NC2: geometry of means and classifiers
def _unit_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"a {what} vector is zero: it has no direction")
    return vectors / norms[:, None]


def equinorm(vectors) -> float:
    """``std(||v_c||) / mean(||v_c||)`` with the sample std (ddof = 1), as the Colab code's ``norm_M_CoV`` /
    ``norm_W_CoV`` (``torch.std``). Rows of ``vectors`` (K, d): centred means or classifier rows."""
    norms = np.linalg.norm(_rows(vectors, "vectors"), axis=1)
    if norms.mean() == 0:
        raise ValueError("all vectors are zero: their equinormness is undefined")
    return float(norms.std(ddof=1) / norms.mean())


def _cosines(vectors, what: str) -> np.ndarray:
    u = _unit_rows(_rows(vectors, "vectors"), what)
    i, j = np.triu_indices(u.shape[0], k=1)
    return (u @ u.T)[i, j]  # (K(K-1)/2,)


def max_angle(vectors) -> float:
    """Mean over pairs c != c' of ``|cos(v_c, v_c') + 1/(K-1)|``: the Colab code's ``coherence`` (``cos_M``,
    ``cos_W``), Papyan et al.'s "maximal angle" panel. Zero iff the rows are equiangular at the ETF's angle."""
    k = np.asarray(vectors).shape[0]
    return float(np.abs(_cosines(vectors, "class") + 1.0 / (k - 1)).mean())


def equiangular_std(vectors) -> float:
    """Sample std (ddof = 1) of the K(K-1)/2 pairwise cosines of the rows: Papyan et al.'s "equiangularity"
    panel (``Std_{c,c'} cos``; the Colab code does not compute it). Zero for any equiangular set.
    Undefined (ValueError) for K = 2: one pair, no spread to estimate."""
    cos = _cosines(vectors, "class")
    if cos.size < 2:
        raise ValueError(f"equiangularity needs at least 3 classes (2 pairs of cosines), got {np.asarray(vectors).shape[0]}")
    return float(cos.std(ddof=1))


def nc2_etf(stats: ClassStats, centring: str = "balanced") -> float:
    """``etf_distance(M~ M~^T)``: tding1's ETF metric applied to the centred means, rhubarbwu's
    ``simplex_etf_error`` (``nc2_etf_err``). Invariant to a common shift and to the scale of the features."""
    mc = _between_class_means(stats, centring)
    return etf_distance(mc @ mc.T)


def nc2_etf_w(weight) -> float:
    """``etf_distance(W W^T)`` on the uncentred classifier rows: tding1's ``compute_ETF`` (their NC2 plot)."""
    w = _weight(weight)
    return etf_distance(w @ w.T)


def nc2_etf_w_centred(weight) -> float:
    """``etf_distance`` of the Gram of the centred classifier rows ``W - mean_c w_c`` (the ETF side of the
    SELI comparison; zero for any simplex ETF whatever the shift of its rows). Not tding1's metric."""
    w = _weight(weight)
    wc = w - w.mean(axis=0)
    return etf_distance(wc @ wc.T)


# ----------------------------------------------------------------------------- NC3: classifier and means
def nc3_alignment(weight, stats: ClassStats, centring: str = "balanced") -> float:
    """``|| W/||W||_F - M~/||M~||_F ||_F^2``, the Colab code's ``W_M_dist`` (squared; W uncentred)."""
    w, mc = _weight(weight, stats), _between_class_means(stats, centring)
    nw, nm = np.linalg.norm(w), np.linalg.norm(mc)
    if nw == 0 or nm == 0:
        raise ValueError("W or the centred means are zero: nc3_alignment is undefined")
    return float(np.linalg.norm(w / nw - mc / nm) ** 2)


def nc3_self_duality(weight, stats: ClassStats, centring: str = "balanced") -> float:
    """``etf_distance(W M~^T)``: tding1's ``compute_W_H_relation`` (with ``"weighted"``), rhubarbwu's
    ``self_duality_error`` (``nc3_dual_err``, with ``"balanced"``). Zero iff the cross-Gram of classifiers
    and centred means is a positive multiple of the simplex-ETF Gram."""
    w, mc = _weight(weight, stats), _between_class_means(stats, centring)
    return etf_distance(w @ mc.T)


def nc3_duality_var(weight, stats: ClassStats, centring: str = "balanced") -> float:
    """Sample variance (ddof = 1) over classes of ``w_c . mu~_c``: rhubarbwu's ``similarities(W, M, m_G).var()``
    (``nc3u_uni_dual``, uniform duality). Undefined when the class means coincide (every ``w_c . mu~_c`` is 0)."""
    w, mc = _weight(weight, stats), _between_class_means(stats, centring)
    return float(np.var((w * mc).sum(1), ddof=1))


def nc3_distance_norms(weight, stats: ClassStats, centring: str = "balanced") -> np.ndarray:
    """Per class, ``|| w_c/||w_c|| - mu~_c/||mu~_c|| ||`` (K,): rhubarbwu's ``distance_norms(norm=True)``.
    ``nc_metrics`` reports their mean as ``nc3_distance_mean``."""
    w, mc = _weight(weight, stats), _between_class_means(stats, centring)
    return np.linalg.norm(_unit_rows(w, "classifier") - _unit_rows(mc, "centred class-mean"), axis=1)


# ----------------------------------------------------------------------------- NC4 and the bias
def ncc_predict(features, means) -> np.ndarray:
    """Nearest-class-centre prediction (Euclidean) of each row of ``features`` (N, d) among ``means`` (K, d)."""
    x = as_feature_array(features)
    m = np.asarray(means, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != x.shape[1]:
        raise ValueError(f"means must have shape (K, d) with d = {x.shape[1]} (the features'), got {m.shape}")
    check_finite(m, "means")
    d2 = (x**2).sum(1)[:, None] - 2 * x @ m.T + (m**2).sum(1)[None, :]
    return np.argmin(d2, axis=1)


def nc4_ncc_mismatch(features, means, weight, bias=None) -> float:
    """Fraction of samples where the classifier's decision ``argmax_c (w_c . h + b_c)`` differs from the
    nearest class centre (uncentred means ``mu_c``): the Colab code's ``NCC_mismatch`` (which scores with the
    network's output, bias included). rhubarbwu's ``clf_ncc_agreement`` is ``1 -`` this with ``bias=None``.
    Over several batches: average the batch values weighted by their sizes. Undefined (ValueError) when all
    the class centres coincide (to rounding, as :func:`nc1`): the nearest centre is then a tie of all."""
    x = as_feature_array(features)
    w = _weight(weight)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"weight must have shape (K, d) with d = {x.shape[1]} (the features'), got {w.shape}")
    m = np.asarray(means, dtype=np.float64)
    spread = float(((m - m.mean(axis=0)) ** 2).sum(1).max()) if m.size else 0.0
    if spread <= 16 * np.finfo(float).eps * float((m * m).sum(1).max(initial=0.0)):
        raise ValueError(f"the {m.shape[0]} class centres coincide: the nearest class centre is undefined, so is "
                         "nc4_ncc_mismatch")
    logits = x @ w.T + (0.0 if bias is None else _bias(bias, w.shape[0]))
    return float((np.argmax(logits, axis=1) != ncc_predict(x, means)).mean())


def bias_residual(weight, bias, stats: ClassStats, centring: str = "balanced") -> float:
    """``|| W mu_G + b ||_2``: tding1's residual (their "NC4" plot, with ``"weighted"``), zero when the bias
    cancels the classifier's response to the global mean."""
    w = _weight(weight, stats)
    return float(np.linalg.norm(w @ global_mean(stats, centring) + _bias(bias, w.shape[0])))


# ----------------------------------------------------------------------------- all of them
def _try(out: dict, why: dict, name: str, fn, *args) -> None:
    """``out[name] = fn(*args)``, or None with the reason in ``why`` when the metric is undefined here."""
    try:
        out[name] = fn(*args)
    except ValueError as err:
        out[name], why[name] = None, str(err)


def nc_metrics_from_stats(stats: ClassStats, weight=None, bias=None, centring: str = "balanced") -> dict:
    """Every metric of :data:`NC_METRIC_NAMES` that the statistics (and the classifier, when given) define,
    except NC4 (it needs the samples: :func:`nc4_ncc_mismatch`).

    A metric that is undefined for these features is None, never NaN, and ``nc_undefined`` names it with the
    reason (the function of the same name raises with that message). Undefined: every metric built on the
    centred means (NC1 but CDNV, NC2 of the means, NC3) when all class means coincide (``Sigma_B = 0``, e.g. at
    initialisation or for constant features: NC1 is then None, not 0, the value of perfect collapse); CDNV
    when two means coincide; a zero class-mean vector; fewer than K-1 directions in Sigma_B (``nc1_colab``);
    equiangularity for K = 2. Bad input (a classifier of the wrong shape, NaN or infinite ``weight`` or
    ``bias``) is not an undefined metric: it raises ValueError.
    """
    _check_centring(centring)
    out: dict = {}
    why: dict = {}

    def of_centred(fn):  # a metric of the rows of M~, undefined when the class means coincide
        return lambda: fn(_between_class_means(stats, centring))

    for name, fn, args in [("nc1", nc1, (stats, centring)), ("nc1_colab", nc1_colab, (stats, centring)),
                           ("nc1_quotient", nc1_quotient, (stats, centring)), ("cdnv", cdnv, (stats,)),
                           ("nc2_equinorm", of_centred(equinorm), ()),
                           ("nc2_equiangular_std", of_centred(equiangular_std), ()),
                           ("nc2_maxangle", of_centred(max_angle), ()), ("nc2_etf", nc2_etf, (stats, centring))]:
        _try(out, why, name, fn, *args)
    if weight is not None:
        w = _weight(weight, stats)
        if bias is not None:
            _bias(bias, w.shape[0])  # bad input raises here, before _try would read it as an undefined metric
        for name, fn, args in [("nc2_equinorm_w", equinorm, (w,)), ("nc2_equiangular_std_w", equiangular_std, (w,)),
                               ("nc2_maxangle_w", max_angle, (w,)), ("nc2_etf_w", nc2_etf_w, (w,)),
                               ("nc2_etf_w_centred", nc2_etf_w_centred, (w,)),
                               ("nc3_alignment", nc3_alignment, (w, stats, centring)),
                               ("nc3_self_duality", nc3_self_duality, (w, stats, centring)),
                               ("nc3_duality_var", nc3_duality_var, (w, stats, centring)),
                               ("nc3_distance_mean", lambda *a: float(nc3_distance_norms(*a).mean()), (w, stats, centring))]:
            _try(out, why, name, fn, *args)
        if bias is not None:
            _try(out, why, "bias_residual", bias_residual, w, bias, stats, centring)
    if why:
        out["nc_undefined"] = "; ".join(f"{k}: {v}" for k, v in why.items())
    return out


def nc_metrics(features, labels, weight=None, bias=None, centring: str = "balanced",
               num_classes: int | None = None) -> dict[str, float]:
    """All neural-collapse metrics of an in-memory feature set (module docstring; theory/nc-metrics.md).

    Args:
        features: (N, d) raw features (the classifier's input).
        labels: (N,) class indices; every class in ``[0, K)`` must have a sample.
        weight, bias: the linear classifier ``(K, d)``, ``(K,)``; the W-metrics and NC4 need it.
        centring: "balanced" (the mean of the class means, default) or "weighted" (the sample mean).
        num_classes: K (default: the largest label + 1).
    Returns:
        name -> value for the keys of :data:`NC_METRIC_NAMES` that apply (None where undefined, with
        ``nc_undefined`` saying why: :func:`nc_metrics_from_stats`).
    """
    stats = class_stats(features, labels, num_classes)
    out = nc_metrics_from_stats(stats, weight, bias, centring)
    if weight is not None:
        why: dict = {}
        _try(out, why, "nc4_ncc_mismatch", nc4_ncc_mismatch, features, stats.means, weight, bias)
        if why:  # the nearest class centre is undefined when all the centres coincide
            out["nc_undefined"] = "; ".join(filter(None, [out.get("nc_undefined"), f"nc4_ncc_mismatch: {why['nc4_ncc_mismatch']}"]))
    return out
