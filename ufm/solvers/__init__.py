"""Solvers of the SCL unconstrained features model (UFM).

* ``objective``: the objective on the Gram matrix, its gradient, the closed-form OF value.
* ``sdp``: exact convex program over the n x n Gram (cvxpy), any batching, certified.
* ``reduced``: symmetry-reduced exact program over the k x k class-mean Gram (full batch), polished
  and certified.
* ``gd``: gradient descent / L-BFGS in torch on free features (CPU or CUDA), any batching.

Every module's ``__all__`` is re-exported here.
"""

from __future__ import annotations

from ufm._exports import reexport_modules

__all__ = reexport_modules(__name__, __path__, globals(), skip=("cli",))
