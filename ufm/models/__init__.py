"""Models: a registry like the losses' (``build_model(name, num_classes, ...)``), CIFAR ResNet-18/50,
a small ResNet and an MLP; every model returns :class:`ModelOutput` (features, logits, activations).

Every module of this package is imported here so its ``@register_model`` runs (a new architecture is
one new file), and its ``__all__`` is re-exported.
"""

from __future__ import annotations

import importlib
import pkgutil

from ufm.models.base import (  # noqa: F401
    MODELS,
    FeatureNet,
    ModelOutput,
    build_model,
    get_model_factory,
    model_accepts,
    register_model,
)

__all__: list[str] = ["MODELS", "FeatureNet", "ModelOutput", "build_model", "get_model_factory", "model_accepts", "register_model"]
for _mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _mod.name == "base" or _mod.name.startswith("_"):
        continue
    _m = importlib.import_module(f"{__name__}.{_mod.name}")
    for _name in getattr(_m, "__all__", []):
        globals()[_name] = getattr(_m, _name)
        if _name not in __all__:
            __all__.append(_name)
