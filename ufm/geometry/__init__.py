"""Geometry (pure mathematics): reference frames, class statistics and distances to frames.

Every module of this package is imported here and its ``__all__`` re-exported, so adding a file
(e.g. ``pedcc.py``) adds to ``ufm.geometry`` without editing this one.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []
for _mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "core", m.name)):
    if _mod.name.startswith("_"):
        continue
    _m = importlib.import_module(f"{__name__}.{_mod.name}")
    for _name in getattr(_m, "__all__", []):
        globals()[_name] = getattr(_m, _name)
        __all__.append(_name)
