"""Real data that ships inside installed Python packages (no network needed).

* ``digits``: scikit-learn's 1,797 handwritten digits, 8x8, values 0..16 (1 x 8 x 8).
* ``animal_mnist``: PyPI ``animal-mnist``, 10,000 28x28 grayscale animal silhouettes in 10 classes
  (1,000 each), read from its gzipped files directly (its own loader imports TensorFlow).
* ``mnist1d``: PyPI ``mnist1d``, 5,000 1-D signals of length 40 in 10 classes, generated locally by
  ``mnist1d.data.make_dataset`` with its default arguments (``get_dataset_args()``, seed 42, its own
  4,000 / 1,000 train / test split). Its network fetch is never called; the arrays are cached as
  ``<root>/mnist1d/mnist1d_default.npz``.

``digits`` and ``animal_mnist`` ship unsplit: their test split is a fixed stratified 20 % chosen with the
project's split seed (0), so every run sees the same test images.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np

from ufm.data.base import SPLIT_SEED, DataSpec, DatasetNotFoundError, register_dataset, stratified_split

TEST_FRACTION = 0.2

# per-channel statistics of x * scale over the training split (fixed so train and test match)
DIGITS = DataSpec(
    "digits", 10, (1, 8, 8), mean=(0.30548,), std=(0.37611,), scale=1 / 16, crop_pad=1, flip=False,
    description="scikit-learn digits, 1,797 8x8 images (1,438 train / 359 test)",
)
ANIMAL_MNIST = DataSpec(
    "animal_mnist", 10, (1, 28, 28), mean=(0.27282,), std=(0.40563,), scale=1 / 255, crop_pad=2, flip=True,
    description="Animal-MNIST silhouettes, 10,000 28x28 images in 10 classes (8,000 train / 2,000 test)",
)
MNIST1D = DataSpec(
    "mnist1d", 10, (1, 40), mean=(0.0,), std=(1.0,), scale=1.0, crop_pad=2, flip=False,
    description="MNIST-1D, 5,000 generated 1-D signals of length 40 (4,000 train / 1,000 test)",
)


def _carve(x: np.ndarray, y: np.ndarray, part: str):
    keep, held = stratified_split(y, TEST_FRACTION, SPLIT_SEED)
    idx = held if part == "test" else keep
    return x[idx], y[idx]


@register_dataset(DIGITS)
def _load_digits(part: str, root: Path, download: bool):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.reshape(-1, 1, 8, 8).astype(np.float32)
    return _carve(x, d.target.astype(np.int64), part)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays (the Animal-MNIST files hold one ndarray each)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in an Animal-MNIST data file")


def animal_mnist_dir() -> Path:
    """Folder of the installed ``animal_mnist`` package's data files (without importing the package)."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            "animal_mnist: the PyPI package 'animal-mnist' is not installed (looked for it on sys.path). "
            "Install its data files only with `pip install --no-deps animal-mnist` (its loader needs TensorFlow, "
            "which the project does not use; `make setup` does this)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"


@register_dataset(ANIMAL_MNIST)
def _load_animal_mnist(part: str, root: Path, download: bool):
    folder = animal_mnist_dir()
    files = [folder / "animal_data_version_3.gz", folder / "animal_label_version_3.gz"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise DatasetNotFoundError(
            f"animal_mnist: data files missing: {missing}. Reinstall them with "
            "`pip install --force-reinstall --no-deps animal-mnist`."
        )
    arrays = []
    for f in files:
        with gzip.open(f, "rb") as fh:
            arrays.append(np.asarray(_ArrayUnpickler(fh).load()))
    x, y = arrays
    if x.shape != (10000, 28, 28) or y.shape != (10000,):
        raise ValueError(f"animal_mnist: unexpected array shapes {x.shape}, {y.shape} in {folder}")
    return _carve(x.astype(np.uint8)[:, None], y.astype(np.int64), part)


def _mnist1d_cache(root: Path) -> Path:
    return root / "mnist1d" / "mnist1d_default.npz"


def generate_mnist1d() -> dict[str, np.ndarray]:
    """MNIST-1D with the package's default arguments, generated locally (never its network fetch).

    ``make_dataset`` seeds the global ``random`` / ``numpy.random`` generators; their states are
    restored afterwards so that generating the data does not change any other random stream.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise DatasetNotFoundError(
            f"mnist1d: the PyPI package 'mnist1d' could not be imported ({e}); install it with `pip install mnist1d` "
            "(it is in the project's 'data' extra)."
        ) from e
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


@register_dataset(MNIST1D)
def _load_mnist1d(part: str, root: Path, download: bool):
    cache = _mnist1d_cache(root)
    arrays = None
    if cache.exists():
        with np.load(cache) as z:
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    else:
        arrays = generate_mnist1d()
        tmp = None
        try:  # cache atomically; an unwritable root only costs regeneration next time
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".npz")
            os.close(fd)
            np.savez(tmp, **arrays)
            os.replace(tmp, cache)
        except OSError:
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
    x, y = (arrays["x_test"], arrays["y_test"]) if part == "test" else (arrays["x"], arrays["y"])
    return x.astype(np.float32)[:, None, :], y.astype(np.int64)
