"""Solvers of the SCL unconstrained features model (UFM).

* ``objective``: the objective on the Gram matrix, its gradient, the closed-form OF value.
* ``sdp``: exact convex program over the n x n Gram (cvxpy), any batching, certified.
* ``reduced``: symmetry-reduced exact program over the k x k class-mean Gram (full batch), polished
  and certified.
* ``gd``: gradient descent / L-BFGS in torch on free features (CPU or CUDA), any batching.

Every module's ``__all__`` is re-exported here.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []
for _mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _mod.name.startswith("_") or _mod.name == "cli":
        continue
    _m = importlib.import_module(f"{__name__}.{_mod.name}")
    for _name in getattr(_m, "__all__", []):
        globals()[_name] = getattr(_m, _name)
        __all__.append(_name)
