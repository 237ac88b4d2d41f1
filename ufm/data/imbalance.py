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

from ufm._checks import as_label_array

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
    if isinstance(k, bool) or int(k) != k or k < 2:
        raise ValueError(f"imbalance needs an integer number of classes k >= 2, got {k}")
    if isinstance(n_per_class, bool) or int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class}")
    ratio = float(ratio)
    if not np.isfinite(ratio) or ratio < 1:
        raise ValueError(f"the imbalance ratio R = n_max / n_min must be a finite number >= 1, got {ratio}")
    return int(n_per_class), ratio, int(k)


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
    """Indices of the classes with fewer samples than the largest class (empty when balanced)."""
    c = np.asarray(counts)
    return np.flatnonzero(c < c.max())


def imbalanced_indices(labels, counts, seed: int) -> np.ndarray:
    """Sorted indices keeping ``counts[c]`` seeded-random samples of each class c.

    Raises ValueError if a class has fewer than ``counts[c]`` samples or ``counts`` has the wrong length.
    """
    y = as_label_array(labels)
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts.size and not np.issubdtype(counts.dtype, np.integer)) or np.any(counts < 0):
        raise ValueError(f"counts must be a 1-D array of non-negative integers, got {counts!r}")
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
    """
    available = dataset.class_counts()
    if n_per_class is None:
        n_per_class = int(available.min())
    counts = imbalance_counts(kind, n_per_class, ratio, dataset.num_classes)
    idx = imbalanced_indices(dataset.labels, counts, seed)
    sub = dataset.subset(idx)
    return sub, sub.class_counts()
