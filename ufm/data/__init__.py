"""Data: packaged real data (digits, Animal-MNIST, MNIST-1D), torchvision image sets (CIFAR-10/100,
MNIST, Fashion-MNIST), seeded class imbalance and batched augmentation.

    from ufm.data import load_dataset, make_imbalanced
    train = load_dataset("animal_mnist", "train")            # ArrayDataset: .x, .y, .spec
    train, counts = make_imbalanced(train, "step", ratio=10, seed=0)

Every module of this package is imported here (a new data set is one module with
``@register_dataset(spec)``) and its ``__all__`` re-exported.
"""

from __future__ import annotations

from ufm._exports import reexport_modules

from ufm.data.base import (  # noqa: F401
    DATASETS,
    SPLITS,
    ArrayDataset,
    DatasetNotFoundError,
    DataSpec,
    data_root,
    get_spec,
    load_dataset,
    register_dataset,
    stratified_split,
)

__all__ = reexport_modules(__name__, __path__, globals(), first="base")
