"""Data: packaged real data (digits, Animal-MNIST, MNIST-1D), torchvision image sets (CIFAR-10/100,
MNIST, Fashion-MNIST), seeded class imbalance and batched augmentation.

    from ufm.data import load_dataset, make_imbalanced
    train = load_dataset("animal_mnist", "train")            # ArrayDataset: .x, .y, .spec
    train, counts = make_imbalanced(train, "step", ratio=10, seed=0)

Every module of this package is imported here (a new data set is one module with
``@register_dataset(spec)``) and its ``__all__`` re-exported.
"""

from __future__ import annotations

import importlib
import pkgutil

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

__all__: list[str] = []
for _mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "base", m.name)):
    if _mod.name.startswith("_"):
        continue
    _m = importlib.import_module(f"{__name__}.{_mod.name}")
    for _name in getattr(_m, "__all__", []):
        globals()[_name] = getattr(_m, _name)
        __all__.append(_name)
