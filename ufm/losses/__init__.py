"""Losses. Every module of this package is imported here so that its ``@register_loss`` runs;
each registered class is exported under its class name (``ufm.losses.SupConLoss``)."""

from __future__ import annotations

import importlib
import pkgutil

from ufm.losses.base import LOSSES, HarnessLoss, ModelOutput, get_loss, register_loss

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base" and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

for _cls in LOSSES.values():
    globals()[_cls.__name__] = _cls

__all__ = ["LOSSES", "HarnessLoss", "ModelOutput", "get_loss", "register_loss", *(c.__name__ for c in LOSSES.values())]
