"""Input validation shared by the whole package: clear errors, never a silent NaN."""

from __future__ import annotations

import numpy as np
import torch


def _is_integer_dtype(x) -> bool:
    if isinstance(x, torch.Tensor):
        return not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool)
    return np.issubdtype(np.asarray(x).dtype, np.integer)


def as_label_array(labels, n: int | None = None, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Labels as a 1-D int64 numpy array; checks type, length and range."""
    if isinstance(labels, torch.Tensor):
        if not _is_integer_dtype(labels):
            raise ValueError(f"{name} must be integers, got a tensor of dtype {labels.dtype}")
        arr = labels.detach().cpu().numpy()
    else:
        arr = np.asarray(labels)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(arr.shape)}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but there are {n} samples")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative class indices, found {int(arr.min())}")
    if num_classes is not None and arr.size and arr.max() >= num_classes:
        raise ValueError(f"{name} out of range: found class {int(arr.max())} with num_classes={num_classes}")
    return arr


def check_label_tensor(labels, n: int, num_classes: int | None = None, name: str = "labels") -> torch.Tensor:
    """Labels as a 1-D integer torch tensor of length n (range checked when num_classes is given)."""
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(as_label_array(labels, n, num_classes, name))
    if not _is_integer_dtype(labels):
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if labels.dim() != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(labels.shape)}")
    if labels.shape[0] != n:
        raise ValueError(f"{name} has length {labels.shape[0]} but there are {n} samples")
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0:
            raise ValueError(f"{name} must be non-negative class indices, found {lo}")
        if num_classes is not None and hi >= num_classes:
            raise ValueError(f"{name} out of range: found class {hi} with num_classes={num_classes}")
    return labels


def check_finite(x, name: str = "features") -> None:
    if isinstance(x, torch.Tensor):
        ok = bool(torch.isfinite(x).all())
    else:
        ok = bool(np.all(np.isfinite(np.asarray(x))))
    if not ok:
        raise ValueError(f"{name} contain NaN or infinite values")


def as_feature_array(features, name: str = "features") -> np.ndarray:
    """Features (N, d) as float64 numpy, finite."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d), got {tuple(arr.shape)}")
    check_finite(arr, name)
    return arr
