"""In-memory data sets, the dataset registry and ``load_dataset``.

Every data set of the project fits in memory (the largest, CIFAR, is 50,000 x 3 x 32 x 32 bytes), so a
split is held as two tensors: ``x`` (N, C, H, W) or (N, C, L) in its storage dtype (``uint8`` images,
``float32`` signals) and ``y`` (N,) int64. The harness gathers a batch by indexing these tensors and
turns it into network input with :meth:`ArrayDataset.to_input`:

    input = (x.float() * spec.scale - mean_c) / std_c        (per channel c)

with the per-channel ``mean`` and ``std`` of the data set's (full, balanced) training split, fixed in the
dataset's :class:`DataSpec` so that the train and test splits are normalised identically.

A new data set is one function decorated with ``@register_dataset(spec)`` in a module of this package;
``ufm.data`` imports every module, so it becomes ``load_dataset(spec.name, ...)`` without other edits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ufm._checks import as_index_array, as_label_array, check_int, check_real

__all__ = [
    "DataSpec",
    "ArrayDataset",
    "DatasetNotFoundError",
    "DATASETS",
    "register_dataset",
    "get_spec",
    "load_dataset",
    "data_root",
    "stratified_split",
    "SPLITS",
]

SPLITS = ("train", "val", "test")
SPLIT_SEED = 0  # the project's fixed seed for carving test / validation splits out of unsplit data


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """A data set's files are missing; the message says where they were looked for and how to get them.

    A ``FileNotFoundError`` (an ``OSError``) and a ``ValueError`` (the project's error for bad input), so the
    command line reports it as a one-line error."""


@dataclass(frozen=True)
class DataSpec:
    """What the harness needs to know about a data set.

    name: registry name (``load_dataset(name, ...)``).
    num_classes: k.
    input_shape: (C, H, W) for images, (C, L) for 1-D signals.
    mean, std: per-channel normalisation of ``x * scale`` (statistics of the full training split).
    scale: factor turning the stored values into [0, 1]-ish floats (1/255 for uint8 images).
    crop_pad: padding of the random-crop augmentation (pixels / samples); 0 disables it.
    flip: whether a horizontal (last-axis) flip preserves the label (CIFAR, silhouettes: yes; digits: no).
    source: "packaged" (ships with an installed Python package) or "torchvision" (files on disk).
    description: one line for ``--help`` texts and error messages.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0
    crop_pad: int = 0
    flip: bool = False
    source: str = "packaged"
    description: str = ""
    class_names: tuple[str, ...] = field(default=(), compare=False)

    @property
    def in_channels(self) -> int:
        return int(self.input_shape[0])

    @property
    def spatial_dims(self) -> int:
        return len(self.input_shape) - 1


class ArrayDataset(torch.utils.data.Dataset):
    """One split of a data set held as tensors ``x`` (storage dtype) and ``y`` (int64).

    ``dataset[i]`` returns the normalised float input and the label (for generic PyTorch use);
    the harness indexes ``x`` / ``y`` directly and normalises whole batches with :meth:`to_input`.
    """

    def __init__(self, x: torch.Tensor, y, spec: DataSpec, split: str = "train"):
        x = torch.as_tensor(x)
        if x.dim() != len(spec.input_shape) + 1 or tuple(x.shape[1:]) != tuple(spec.input_shape):
            raise ValueError(
                f"{spec.name}: inputs must have shape (N, {', '.join(map(str, spec.input_shape))}), got {tuple(x.shape)}"
            )
        y_np = as_label_array(y, n=x.shape[0], num_classes=spec.num_classes, name=f"{spec.name} labels")
        if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{spec.name}: inputs contain NaN or infinite values")
        self.x = x
        self.y = torch.from_numpy(y_np.copy())
        self.spec = spec
        self.split = split
        self._mean = torch.tensor(spec.mean, dtype=torch.float32)
        self._std = torch.tensor(spec.std, dtype=torch.float32)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i):
        return self.to_input(self.x[i : i + 1])[0], int(self.y[i])

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def labels(self) -> np.ndarray:
        return self.y.numpy()

    def class_counts(self) -> np.ndarray:
        """Number of samples of each class (length k, zeros for absent classes)."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def subset(self, indices) -> "ArrayDataset":
        """The samples ``indices`` (integers in ``[0, len(self))``, in that order; none gives an empty split).

        Raises:
            ValueError: indices that are not integers, not 1-D, or out of range (named with the first bad one).
        """
        return ArrayDataset(*self._take(indices), self.spec, self.split)

    def _take(self, indices):
        idx = torch.from_numpy(as_index_array(indices, len(self), f"{self.spec.name} subset indices"))
        return self.x[idx], self.y[idx]

    def to_input(self, xb: torch.Tensor) -> torch.Tensor:
        """Stored values (B, C, ...) -> normalised float32 network input on ``xb``'s device."""
        shape = (1, -1) + (1,) * self.spec.spatial_dims
        mean = self._mean.to(xb.device).view(shape)
        std = self._std.to(xb.device).view(shape)
        return (xb.float() * self.spec.scale - mean) / std

    def __repr__(self) -> str:
        return f"ArrayDataset({self.spec.name!r}, split={self.split!r}, n={len(self)}, counts={self.class_counts().tolist()})"


# ----------------------------------------------------------------------------- registry
# loader(split_kind, root, download) -> (x, y) where split_kind is "train" or "test" (official or carved)
DATASETS: dict[str, tuple[DataSpec, Callable]] = {}


def register_dataset(spec: DataSpec) -> Callable[[Callable], Callable]:
    """Decorator registering ``loader(part, root: Path, download: bool) -> (x, y)`` for ``spec.name``;
    ``part`` is "train" or "test"."""

    def deco(fn: Callable) -> Callable:
        if spec.name in DATASETS and DATASETS[spec.name][1] is not fn:
            raise ValueError(f"a dataset named {spec.name!r} is already registered")
        DATASETS[spec.name] = (spec, fn)
        return fn

    return deco


def get_spec(name: str) -> DataSpec:
    """The :class:`DataSpec` of registered data set ``name``.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: no data set of that name (the message lists the registered ones).
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {name!r} ({type(name).__name__}); "
                        f"registered datasets: {sorted(DATASETS)}")
    try:
        return DATASETS[name][0]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; registered datasets: {sorted(DATASETS)}") from None


def data_root(root=None) -> Path:
    """The data root: ``root`` if given, else ``$UFM_DATA``, else ``./data`` (relative to the cwd).

    Raises:
        TypeError: ``root`` is not a path (a string or ``os.PathLike``).
    """
    if root is None or root == "":
        root = os.environ.get("UFM_DATA") or "data"
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root (the data folder) must be a path, got {root!r} ({type(root).__name__})")
    return Path(root).expanduser().resolve()


def stratified_split(labels, fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held_out) with ``round(fraction * n_c)`` held-out samples of each class c
    (at least one kept per class), chosen by a seeded permutation; both index arrays sorted.

    Empty ``labels`` give two empty arrays (nothing to split).

    Raises:
        TypeError / ValueError: ``fraction`` not a number in [0, 1), ``seed`` not an integer >= 0, or
            labels that are not non-negative integers (each named with its value).
    """
    y = as_label_array(labels)
    fraction = check_real(fraction, "fraction (the held-out share of each class)", low=0.0, high=1.0, high_open=True)
    rng = np.random.default_rng(check_int(seed, "seed", low=0))
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_out = min(int(round(fraction * idx.size)), idx.size - 1)
        if n_out > 0:
            held.append(rng.permutation(idx)[:n_out])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(y.size, dtype=bool)
    mask[held_out] = False
    return np.flatnonzero(mask), held_out


def load_dataset(
    name: str,
    split: str = "train",
    root=None,
    download: bool = False,
    val_fraction: float = 0.0,
    split_seed: int = SPLIT_SEED,
) -> ArrayDataset:
    """Load one split of a registered data set as an :class:`ArrayDataset`.

    Args:
        name: "digits", "animal_mnist", "mnist1d" (packaged, no download), "cifar10", "cifar100",
            "mnist", "fashion_mnist" (torchvision files under ``root``), or any registered name.
        split: "train", "val" or "test". The test split is the data set's official one (or a fixed
            seeded stratified part for data that ships unsplit). With ``val_fraction > 0`` a seeded
            stratified ``val_fraction`` of the training data is held out: "val" returns it and "train"
            returns the rest.
        root: data folder (default ``$UFM_DATA`` or ``./data``); packaged data sets only cache there.
        download: let torchvision download missing files (checksummed). Never done unless asked.
        val_fraction, split_seed: the validation split.

    Raises:
        ValueError: unknown name or split, ``val_fraction`` outside [0, 1), ``split_seed`` < 0.
        TypeError: a name, fraction or seed of the wrong type.
        DatasetNotFoundError: missing or unreadable files (the message says where they were looked for and
            how to get them).
    """
    spec = get_spec(name)
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    val_fraction = check_real(val_fraction, "val_fraction", low=0.0, high=1.0, high_open=True)
    split_seed = check_int(split_seed, "split_seed", low=0)
    if split == "val" and not val_fraction > 0:
        raise ValueError("split='val' needs val_fraction > 0 (the share of the training data held out)")
    loader = DATASETS[name][1]
    part = "test" if split == "test" else "train"
    x, y = loader(part, data_root(root), bool(download))
    x = torch.as_tensor(x)
    if part == "train" and val_fraction > 0:
        keep, held = stratified_split(y, val_fraction, split_seed)
        idx = held if split == "val" else keep
        x, y = x[torch.as_tensor(idx)], np.asarray(y)[idx]
    return ArrayDataset(x, y, spec, split)
