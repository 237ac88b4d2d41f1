"""Measured uniqueness of a minimiser: how far can a near-minimiser move from a reference Gram?

For a batching and temperature, let ``f`` be the SCL objective on the ``n x n`` Gram (``ufm.solvers.objective``)
and ``R`` a reference minimiser (default: the orthogonal frame ``G_OF = [1{y_i = y_j}]``, a minimiser with
non-negative features by Theorem 1 of ``theory/scl-orthogonal-frame.md``). The convex program

    maximise   D(Y) = sum_{i < j} |Y_ij - R_ij|
    subject to Y PSD, diag Y = 1, (Y >= 0 with ReLU),  f(Y) <= f(R) + delta

has a linear objective because ``R`` sits on the bounds of every entry: ``|Y_ij| <= 1``, and with ReLU
``0 <= Y_ij <= 1``, so ``|Y_ij - 1| = 1 - Y_ij`` and ``|Y_ij - 0| = Y_ij``; without ReLU an entry ``-1`` of ``R``
gives ``Y_ij + 1``. Its optimum ``D(delta)`` is the largest departure from ``R`` among ``delta``-minimisers.

* ``R`` is the unique minimiser  =>  ``D(delta) -> 0`` as ``delta -> 0``. Near ``R`` the objective grows
  linearly along the entries with a non-zero derivative and quadratically along the others (the equalities
  that single-class batches impose), so ``D`` shrinks like ``delta`` or like ``sqrt(delta)``.
* The minimiser set contains another point ``G != R``  =>  ``D(delta) >= D(G) > 0`` for every ``delta``: it stays
  of order one.

Comparing two values of ``delta`` (e.g. ``1e-3`` and ``1e-7``) therefore measures uniqueness without trusting
any combinatorial rule; ``tests/test_uniqueness.py`` uses it as the arbiter of
``ufm.batching.uniqueness_conditions``. The program is one PSD cone of order ``n`` plus one exponential cone
per entry of every anchor row: keep ``n`` small (``n <= 14`` solves in well under a second with Clarabel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ufm._checks import as_label_array, check_finite, check_positive
from ufm.solvers.certificate import SolverError, class_mean_gram
from ufm.solvers.objective import check_has_anchor, check_temperature, normalize_batching, of_objective, scl_gram_objective
from ufm.solvers.pipeline import solve_conic
from ufm.solvers.sdp import _build_problem, _structure

__all__ = ["DepartureResult", "max_departure"]


@dataclass(frozen=True)
class DepartureResult:
    """Answer of :func:`max_departure`.

    departure: ``D(delta) = max sum_{i<j} |Y_ij - R_ij|`` over the ``delta``-minimisers ``Y``.
    gram_class: class-mean Gram (``k x k``) of the maximiser ``Y`` (the OF has the identity).
    gram: the maximiser ``Y`` itself (``n x n``, as returned by the solver).
    f_reference: ``f(R)``; f_maximiser: ``f(Y)`` recomputed by the project (``<= f(R) + delta`` up to the
    solver's tolerance). delta, status: as given / as reported by the solver.
    """

    departure: float
    gram_class: np.ndarray
    gram: np.ndarray
    f_reference: float
    f_maximiser: float
    delta: float
    status: str


def max_departure(labels, batches, temperature: float = 0.1, relu: bool = True, delta: float = 1e-5,
                  reference=None, solver: str = "CLARABEL", **opts) -> DepartureResult:
    """Largest departure ``sum_{i<j} |Y_ij - R_ij|`` from ``reference`` among Grams ``Y`` within ``delta`` of
    the reference's objective (module docstring).

    labels: (n,) class indices; batches: list of index arrays (``None``: one full batch); reference: an
    ``n x n`` symmetric Gram with entries on the bounds (``0`` or ``1`` with ReLU, ``-1`` or ``1`` without),
    default the orthogonal frame (which requires ``relu=True`` to be a minimiser; without ReLU pass the
    minimiser you want to test). ``opts`` go to cvxpy's ``solve``. Raises :class:`SolverError` when the
    solver does not return an optimal point.
    """
    import cvxpy as cp

    y = as_label_array(labels)
    n = y.size
    if n < 2:
        raise ValueError(f"max_departure needs at least two samples, got {n}")
    tau = check_temperature(temperature)
    delta = check_positive(delta, "delta")
    blist = normalize_batching(n, batches)
    if reference is None:
        ref = (y[:, None] == y[None, :]).astype(np.float64)
        f_ref = of_objective(y, blist, tau)
    else:
        ref = np.asarray(reference, dtype=np.float64)
        check_finite(ref, "reference")
        if ref.shape != (n, n) or not np.allclose(ref, ref.T, atol=0):
            raise ValueError(f"reference must be a symmetric ({n}, {n}) matrix, got shape {ref.shape}")
        f_ref = scl_gram_objective(ref, y, blist, tau)
    lower = 0.0 if relu else -1.0
    iu = np.triu_indices(n, 1)
    vals = ref[iu]
    at_top, at_bottom = vals == 1.0, vals == lower
    if not np.all(at_top | at_bottom):
        raise ValueError(f"the departure is linear only when every off-diagonal entry of reference is 1 or {lower:g} "
                         f"(relu={relu}); found {vals[~(at_top | at_bottom)][:3].tolist()}")
    check_has_anchor(y, blist)  # else f = 0 identically and every Gram minimises it
    rows_by_m, wpos, _ = _structure(y, blist)
    prob, g = _build_problem(n, rows_by_m, wpos, tau, relu)
    # D(Y) = sum_{top} (1 - Y_ij) + sum_{bottom} (Y_ij - lower); as a matrix inner product over i < j
    w = np.zeros((n, n))
    w[iu] = np.where(at_top, -1.0, 1.0)
    const = float(at_top.sum() - lower * at_bottom.sum())
    departure = cp.sum(cp.multiply(w, g)) + const
    cons = list(prob.constraints) + [prob.objective.expr <= f_ref + delta]
    problem = cp.Problem(cp.Maximize(departure), cons)
    what = f"the departure program (n={n})"
    try:
        status = solve_conic(problem, solver, what, temperature=tau, **opts)
    except SolverError:
        if solver.upper() != "CLARABEL":
            raise
        # Clarabel sometimes stalls at the tight tolerances; its own defaults (1e-8) then
        status = solve_conic(problem, solver, what, temperature=tau, **{"tol_gap_abs": 1e-8, "tol_gap_rel": 1e-8, "tol_feas": 1e-8,
                                                       **opts})
    gv = np.asarray(g.value, dtype=np.float64)
    gv = (gv + gv.T) / 2
    d = float(np.sum(w * gv) + const)
    return DepartureResult(departure=max(d, 0.0), gram_class=class_mean_gram(gv, y), gram=gv, f_reference=f_ref,
                           f_maximiser=float(scl_gram_objective(gv, y, blist, tau)), delta=delta, status=status)
