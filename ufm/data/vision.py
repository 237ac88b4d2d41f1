"""Image data sets read through torchvision: CIFAR-10, CIFAR-100, MNIST, Fashion-MNIST.

Files live under the data root (``root`` argument, else ``$UFM_DATA``, else ``./data``) in torchvision's
own layout:

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}
    <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    <root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte

``download=True`` uses torchvision's checksummed download into that root; it is never done unless asked
(``load_dataset(..., download=True)`` or ``download=true`` on the command line). torchvision checks the
CIFAR files' MD5 sums when it reads them.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from ufm.data.base import DataSpec, DatasetNotFoundError, register_dataset

CIFAR10 = DataSpec(
    "cifar10", 10, (3, 32, 32), mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), scale=1 / 255,
    crop_pad=4, flip=True, source="torchvision", description="CIFAR-10, 50,000 / 10,000 32x32 colour images",
)
CIFAR100 = DataSpec(
    "cifar100", 100, (3, 32, 32), mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), scale=1 / 255,
    crop_pad=4, flip=True, source="torchvision", description="CIFAR-100, 50,000 / 10,000 32x32 colour images",
)
MNIST = DataSpec(
    "mnist", 10, (1, 28, 28), mean=(0.1307,), std=(0.3081,), scale=1 / 255, crop_pad=2, flip=False,
    source="torchvision", description="MNIST, 60,000 / 10,000 28x28 digits",
)
FASHION_MNIST = DataSpec(
    "fashion_mnist", 10, (1, 28, 28), mean=(0.2860,), std=(0.3530,), scale=1 / 255, crop_pad=2, flip=True,
    source="torchvision", description="Fashion-MNIST, 60,000 / 10,000 28x28 clothing images",
)

# name -> (torchvision class name, folder under root, files torchvision reads)
_LAYOUT = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]),
    "cifar100": ("CIFAR100", "cifar-100-python", ["train", "test", "meta"]),
    "mnist": ("MNIST", "MNIST/raw", [f"{p}-{k}-ubyte" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]),
    "fashion_mnist": (
        "FashionMNIST", "FashionMNIST/raw",
        [f"{p}-{k}-ubyte" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")],
    ),
}


def expected_files(name: str, root) -> list[Path]:
    """The files torchvision reads for data set ``name`` under ``root``."""
    _, folder, files = _LAYOUT[name]
    return [Path(root) / folder / f for f in files]


def _not_found(name: str, root: Path, detail: str) -> DatasetNotFoundError:
    """The error for data set ``name`` under ``root``: which files are missing, or (all present) that
    torchvision rejected them (a checksum that does not match, a file cut short or corrupt), and how to
    get them."""
    _, folder, files = _LAYOUT[name]
    missing = [str(p) for p in expected_files(name, root) if not p.exists()]
    where = f"looked in {root / folder} for {files}"
    what = (f"missing: {missing}" if missing else
            f"files present but rejected by torchvision ({detail}): a file is corrupt, cut short or not the official one")
    headline = "data not found" if missing else "data unreadable"
    return DatasetNotFoundError(
        f"{name}: {headline} ({where}; {what}). Get it with "
        f"`ufm.data.load_dataset({name!r}, 'train', root={str(root)!r}, download=True)` or "
        f"`python -m ufm train ... dataset={name} download=true` on a machine with network access, "
        "or copy torchvision's extracted files there; point UFM_DATA (or root=...) at another folder if they are elsewhere."
    )


def _load_torchvision(name: str, part: str, root: Path, download: bool):
    import torchvision.datasets as tvd

    cls_name, _, _ = _LAYOUT[name]
    cls = getattr(tvd, cls_name)
    try:
        ds = cls(root=str(root), train=(part == "train"), download=download)
    except (RuntimeError, ValueError, AssertionError, EOFError, IndexError, KeyError, TypeError,
            pickle.UnpicklingError, struct.error) as e:
        # torchvision: "Dataset not found or corrupted" (missing files, CIFAR checksums), or the reader's own
        # error on a file that passed the checksum but is cut short or corrupt (pickle, IDX header asserts)
        detail = (str(e).splitlines() or [""])[0][:160] or type(e).__name__
        raise _not_found(name, root, detail) from None
    x = np.asarray(ds.data)
    y = np.asarray(ds.targets, dtype=np.int64)
    if x.ndim == 4:  # CIFAR: (N, H, W, C) uint8
        x = x.transpose(0, 3, 1, 2)
    else:  # MNIST family: (N, H, W)
        x = x[:, None]
    return np.ascontiguousarray(x.astype(np.uint8)), y


def _make_loader(name: str):
    def loader(part: str, root: Path, download: bool):
        return _load_torchvision(name, part, root, download)

    loader.__name__ = f"_load_{name}"
    return loader


for _spec in (CIFAR10, CIFAR100, MNIST, FASHION_MNIST):
    register_dataset(_spec)(_make_loader(_spec.name))
