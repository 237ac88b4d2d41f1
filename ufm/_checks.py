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


def as_index_array(indices, n: int | None, name: str = "indices") -> np.ndarray:
    """Sample indices as a 1-D int64 numpy array, each in ``range(0, n)`` (unchecked above when ``n`` is None).

    Raises:
        ValueError: not 1-D, not integers, or an index outside the range (the message names ``name`` and
            the first offending index).
    """
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of sample indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer sample indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or (n is not None and arr.max() >= n)):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise ValueError(f"{name} has index {bad} outside range(0, {n})")
    return arr


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


# ----------------------------------------------------------------------------- scalars
def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_real(value, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """``value`` as a Python float, checked against ``[low, high]`` (ends open where asked).

    Raises:
        TypeError: ``value`` is not a real number (a string, None, a bool, a tensor of several entries).
        ValueError: NaN, an infinity (when ``finite``) or outside the accepted range; the message names
            ``name``, the value and the range accepted.
    """
    if isinstance(value, bool) or isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    if isinstance(value, (torch.Tensor, np.ndarray)) and np.size(value) != 1:
        raise TypeError(f"{name} must be a real number, got an array of shape {tuple(np.shape(value))}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}") from None
    accepted = _range_text(low, high, low_open, high_open, finite)
    if np.isnan(x) or (finite and not np.isfinite(x)):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    if low is not None and (x < low or (low_open and x == low)):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    if high is not None and (x > high or (high_open and x == high)):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return x


def check_positive(value, name: str) -> float:
    """A positive finite real (temperatures, learning rates, margins): ``check_real(low=0, low_open=True)``."""
    return check_real(value, name, low=0.0, low_open=True)


def check_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int (an integral float such as 3.0 is accepted) in ``[low, high]``.

    Raises:
        TypeError: not an integer (a string, a bool, 2.5, None).
        ValueError: outside ``[low, high]``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    if isinstance(value, (float, np.floating)) and not (np.isfinite(value) and float(value).is_integer()):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    k = int(value)
    if (low is not None and k < low) or (high is not None and k > high):
        raise ValueError(f"{name} must be an integer {_range_text(low, high, False, False, False)}, got {value!r}")
    return k


def check_choice(value, name: str, choices) -> object:
    """``value`` if it is one of ``choices``; else a ValueError that lists them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def _range_text(low, high, low_open, high_open, finite) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        what = "positive" if (low == 0 and low_open) else f"{'>' if low_open else '>='} {low}"
        return f"{what}{' and finite' if finite else ''}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "finite" if finite else "a number"


def check_has_values(x, name: str) -> None:
    """Raise a ValueError when the tensor ``x`` has a shape but no values (the ``meta`` device).

    A meta tensor fails deep inside torch at the first value read (``Tensor.item() cannot be called on meta
    tensors``); this names the argument and the device instead. Anything that is not a tensor passes.
    """
    if isinstance(x, torch.Tensor) and x.device.type == "meta":
        raise ValueError(f"{name}: a tensor on the meta device (shape {tuple(x.shape)}, no values); "
                         "move it to a device that holds data (cpu, cuda, ...)")
