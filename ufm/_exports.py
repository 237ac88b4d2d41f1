"""Packages whose ``__init__`` re-exports the ``__all__`` of every module they hold, so that adding a
module (a data set, a frame, a solver) needs no edit of the package's ``__init__``."""

from __future__ import annotations

import importlib
import pkgutil


def reexport_modules(package: str, path, namespace: dict, first: str | None = None,
                     skip: tuple[str, ...] = ()) -> list[str]:
    """Import every public module of ``package`` (``first`` before the others, then by name, ``skip``
    left out), copy its ``__all__`` names into ``namespace`` and return them."""
    names: list[str] = []
    for mod in sorted(pkgutil.iter_modules(path), key=lambda m: (m.name != first, m.name)):
        if mod.name.startswith("_") or mod.name in skip:
            continue
        module = importlib.import_module(f"{package}.{mod.name}")
        for name in getattr(module, "__all__", []):
            namespace[name] = getattr(module, name)
            names.append(name)
    return names
