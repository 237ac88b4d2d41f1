"""Class imbalance by seeded subsampling of a training split.

Imbalance ratio R = n_max / n_min >= 1.

* STEP (Buda et al. 2018; the SCL paper's setting): the first ``k - k // 2`` classes are majority
  classes with ``n_maj`` samples, the last ``k // 2`` (half the classes for even k) are minority classes
  with ``floor(n_maj / R)`` samples.
* Exponential (Cao et al. 2019): ``n_c = floor(n_max * R^(-c / (k - 1)))`` for c = 0..k-1, so class 0 has
  ``n_max`` and class k-1 has ``floor(n_max / R)``.

The samples kept in each class are the first ``n_c`` of a permutation drawn with
``numpy.random.default_rng(seed)``, so the subset is a deterministic function of (labels, counts, seed).
"""

from __future__ import annotations

import numpy as np

from ufm._checks import as_label_array, check_int, check_real

__all__ = [
    "IMBALANCE_KINDS",
    "step_imbalance_counts",
    "exp_imbalance_counts",
    "imbalance_counts",
    "imbalanced_indices",
    "make_imbalanced",
    "minority_classes",
]

IMBALANCE_KINDS = ("none", "step", "exp")


def _check(n_per_class, ratio, k) -> tuple[int, float, int]:
    """(n_per_class, ratio, k) as (int >= 1, finite float >= 1, int >= 2); TypeError / ValueError naming each."""
    k = check_int(k, "k (the number of classes)")
    if k < 2:
        raise ValueError(f"imbalance needs an integer number of classes k >= 2, got {k}")
    n = check_int(n_per_class, "n_per_class", low=1)
    ratio = check_real(ratio, "the imbalance ratio R = n_max / n_min", low=1.0)
    return n, ratio, k


def _check_counts(counts, allow_empty: bool = True) -> np.ndarray:
    """Class counts as a 1-D int64 array of non-negative integers (non-empty unless ``allow_empty``)."""
    c = np.asarray(counts)
    if (c.ndim != 1 or (c.size and not np.issubdtype(c.dtype, np.integer)) or np.any(c < 0)
            or (c.size == 0 and not allow_empty)):
        raise ValueError(f"counts must be a {'' if allow_empty else 'non-empty '}1-D array of non-negative "
                         f"integers (samples per class), got {counts!r}")
    return c.astype(np.int64)


def _floor_div(n: float, ratio: float) -> int:
    return int(np.floor(n / ratio + 1e-9))


def step_imbalance_counts(n_per_class: int, ratio: float, k: int) -> np.ndarray:
    """STEP counts: ``n_per_class`` for classes ``0 .. k - k//2 - 1``, ``floor(n_per_class / ratio)`` for
    the last ``k // 2`` classes. Raises ValueError if a minority class would be empty."""
    n, ratio, k = _check(n_per_class, ratio, k)
    n_min = _floor_div(n, ratio)
    if n_min < 1:
        raise ValueError(f"STEP imbalance with n_maj={n} and R={ratio:g} leaves the minority classes empty (n_maj / R < 1)")
    counts = np.full(k, n, dtype=np.int64)
    counts[k - k // 2 :] = n_min
    return counts


def exp_imbalance_counts(n_per_class: int, ratio: float, k: int) -> np.ndarray:
    """Exponential counts ``floor(n_per_class * ratio^(-c/(k-1)))``, c = 0..k-1."""
    n, ratio, k = _check(n_per_class, ratio, k)
    counts = np.array([int(np.floor(n * ratio ** (-c / (k - 1)) + 1e-9)) for c in range(k)], dtype=np.int64)
    if counts.min() < 1:
        raise ValueError(f"exponential imbalance with n_max={n} and R={ratio:g} leaves a class empty (n_max / R < 1)")
    return counts


def imbalance_counts(kind: str, n_per_class: int, ratio: float, k: int) -> np.ndarray:
    """Counts for ``kind`` in ("none", "step", "exp"); "none" gives ``n_per_class`` for every class."""
    if kind == "none":
        n, ratio, k = _check(n_per_class, ratio, k)
        if ratio != 1:
            raise ValueError(f"imbalance='none' takes ratio 1, got ratio={ratio:g} (use imbalance='step' or 'exp')")
        return np.full(k, n, dtype=np.int64)
    if kind == "step":
        return step_imbalance_counts(n_per_class, ratio, k)
    if kind == "exp":
        return exp_imbalance_counts(n_per_class, ratio, k)
    raise ValueError(f"unknown imbalance kind {kind!r}; use one of {IMBALANCE_KINDS}")


def minority_classes(counts) -> np.ndarray:
    """Indices of the classes with fewer samples than the largest class (empty when balanced).

    Raises:
        ValueError: ``counts`` empty, not 1-D, or not non-negative integers.
    """
    c = _check_counts(counts, allow_empty=False)
    return np.flatnonzero(c < c.max())


def imbalanced_indices(labels, counts, seed: int) -> np.ndarray:
    """Sorted indices keeping ``counts[c]`` seeded-random samples of each class c.

    Raises ValueError if a class has fewer than ``counts[c]`` samples or ``counts`` has the wrong length.
    """
    y = as_label_array(labels)
    counts = _check_counts(counts)
    seed = check_int(seed, "seed", low=0)
    if y.size and y.max() >= counts.size:
        raise ValueError(f"labels go up to class {y.max()} but counts has {counts.size} entries")
    available = np.bincount(y, minlength=counts.size)
    short = np.flatnonzero(available < counts)
    if short.size:
        c = int(short[0])
        raise ValueError(f"class {c} has {available[c]} samples but {counts[c]} were asked for")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(y == c))[: counts[c]] for c in range(counts.size)]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def make_imbalanced(dataset, kind: str, ratio: float, seed: int, n_per_class: int | None = None):
    """Seeded imbalanced subset of an :class:`~ufm.data.ArrayDataset`.

    ``n_per_class`` (n_maj / n_max) defaults to the smallest class size of ``dataset``.
    Returns ``(subset, counts)``; ``counts`` are the resulting class counts (also ``subset.class_counts()``).

    Raises:
        ValueError: an empty ``dataset``, a class asked for more samples than it has, or a bad kind, ratio,
            ``n_per_class`` or seed (each named with its value).
    """
    if len(dataset) == 0:
        raise ValueError(f"make_imbalanced: the dataset {dataset!r} is empty: there is nothing to subsample")
    available = dataset.class_counts()
    if n_per_class is None:
        if available.min() == 0:
            raise ValueError(f"make_imbalanced: class {int(np.argmin(available))} has no sample, so the default "
                             "n_per_class (the smallest class size) would be 0; every class needs samples")
        n_per_class = int(available.min())
    counts = imbalance_counts(kind, n_per_class, ratio, dataset.num_classes)
    idx = imbalanced_indices(dataset.labels, counts, seed)
    sub = dataset.subset(idx)
    return sub, sub.class_counts()
