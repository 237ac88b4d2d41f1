"""Exact solver of the SCL unconstrained features model over the n x n sample Gram, any batching.

    minimise  f(G) = sum_B 1/|A_B| sum_{i in A_B} [ log sum_{l in B, l != i} exp(G_il / tau)
                                                    - 1/|P_i| sum_{j in P_i} G_ij / tau ]
    over      G symmetric PSD, diag G = 1, and G >= 0 entrywise with ReLU (non-negative features).

(``ufm.solvers.objective`` has the notation.) The program is written for cvxpy without a Python loop
over anchors: for each batch size m, the off-diagonal entries of every anchor row of every batch of
that size are gathered by one constant sparse selection of vec(G) into a (rows x (m - 1)) matrix and
go through one ``log_sum_exp(axis=1)``; the positive term is <W, G>/tau with a constant W. Every entry
of every anchor row costs one exponential cone, plus one PSD cone of order n.

The solver's answer is never trusted: it is polished (made exactly feasible; samples whose Gram rows
coincide are merged, the merged Gram is moved to its active bounds and re-optimised by Burer-Monteiro
+ Newton) and each candidate is certified by ``certify_gram`` (Frank-Wolfe gap with a dual bound,
recomputed by the project from f and its gradient). An answer that is not certified raises
:class:`SolverError`, whatever status the solver reported.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import scipy.sparse as sp

from ufm._checks import as_label_array
from ufm.solvers.certificate import (
    SolveResult,
    SolverError,
    _numerical_ranks,
    bm_refine,
    certify_gram,
    class_gram_deltas,
    class_mean_gram,
    select_certified,
)
from ufm.solvers.objective import normalize_batching, scl_gram_objective

__all__ = ["solve_sdp", "sdp_memory_estimate"]


def sdp_memory_estimate(n: int, n_exp_cones: int, solver: str = "CLARABEL") -> int:
    """Rough peak memory (bytes) of the n x n program: the interior-point KKT system holds a dense
    block for the PSD cone (its scaling couples all n(n+1)/2 entries: (n(n+1)/2)^2 numbers, stored
    and factorised, with indices) plus a few hundred bytes per exponential cone, and cvxpy's own
    canonicalisation of the selection matrices. Calibrated on Clarabel at n = 24..72 (about 400 MB
    above the baseline at n = 72); it predicts ~26 GB at n = 200, where a 24 GiB machine ran out."""
    t = n * (n + 1) // 2
    per_entry = 64 if solver.upper() == "CLARABEL" else 16
    return int(per_entry * t * t + 600 * n_exp_cones + 200e6)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _structure(y, batches):
    """Per batch: anchor rows, their off-diagonal entries, the positive weights; exp-cone count."""
    n = y.size
    rows_by_m: dict[int, list] = {}
    wpos = np.zeros((n, n))
    n_exp = 0
    for b in batches:
        m = b.size
        yb = y[b]
        same = yb[:, None] == yb[None, :]
        npos = same.sum(1) - 1
        anchors = np.flatnonzero(npos > 0)
        if anchors.size == 0:
            continue
        inv_a = 1.0 / anchors.size
        for i in anchors:
            others = np.delete(np.arange(m), i)
            rows_by_m.setdefault(m, []).append((b[i], b[others], inv_a))
            pos = b[others][yb[others] == yb[i]]
            wpos[b[i], pos] += inv_a / pos.size
        n_exp += anchors.size * (m - 1)
    return rows_by_m, wpos, n_exp


def _build_problem(n, rows_by_m, wpos, tau, relu):
    import cvxpy as cp

    g = cp.Variable((n, n), PSD=True)
    vg = cp.vec(g, order="F")  # entry (i, j) at i + j n
    obj = -cp.sum(cp.multiply(wpos, g)) / tau
    for m, rows in sorted(rows_by_m.items()):
        r = len(rows)
        ii = np.repeat([row[0] for row in rows], m - 1)
        jj = np.concatenate([row[1] for row in rows])
        sel = sp.csr_matrix((np.ones(ii.size), (np.arange(ii.size), ii + jj * n)), shape=(ii.size, n * n))
        mat = cp.reshape(sel @ vg, (r, m - 1), order="C")
        w = np.array([row[2] for row in rows])
        obj = obj + w @ cp.log_sum_exp(mat / tau, axis=1)
    cons = [cp.diag(g) == 1]
    if relu:
        cons.append(g >= 0)
    return cp.Problem(cp.Minimize(obj), cons), g


def _project_gram(g, relu):
    """Exactly feasible Gram near G: eigenvalue clipping, unit diagonal by D^{-1/2} G D^{-1/2}, ReLU clip."""
    x = (g + g.T) / 2
    w, q = np.linalg.eigh(x)
    if w[0] < 0:
        x = (q * np.maximum(w, 0.0)) @ q.T
    d = np.sqrt(np.maximum(np.diag(x), 1e-300))
    x = x / d[:, None] / d[None, :]
    x = (x + x.T) / 2
    np.fill_diagonal(x, 1.0)
    if relu:
        x = np.maximum(x, 0.0)
    return x


def _clusters(g, delta):
    """Samples whose Gram entries are within delta of 1 (coinciding features), as an index array;
    None unless every pair inside a connected component is within 2 delta of 1."""
    from scipy.sparse.csgraph import connected_components

    adj = sp.csr_matrix(g >= 1.0 - delta)
    m, lab = connected_components(adj, directed=False)
    same = lab[:, None] == lab[None, :]
    if np.any(g[same] < 1.0 - 2 * delta):
        return None
    return lab


def _cluster_candidates(g0, y, batches, tau, relu):
    """Polished candidates (a generator): merge coinciding samples, pin the merged Gram's active
    bounds, re-optimise the free entries."""
    n = y.size
    seen = set()
    # last level: merge each class and pin every bound the gradient's sign points to (at small tau
    # the objective saturates and the interior point stops anywhere on a nearly flat plateau)
    levels = ((1e-6, 1e-7, 1e-4), (1e-4, 1e-6, 1e-2), (1e-2, 1e-5, 1e-1), (None, 1e-5, np.inf))
    for delta, small, big in levels:
        lab = _clusters(g0, delta) if delta is not None else np.unique(y, return_inverse=True)[1]
        if lab is None:
            continue
        m = int(lab.max()) + 1
        e = np.zeros((n, m))
        e[np.arange(n), lab] = 1.0
        cnt = e.sum(0)
        h0 = (e.T @ g0 @ e) / np.outer(cnt, cnt)
        np.fill_diagonal(h0, 1.0)

        def fg(h, e=e):
            gg = e @ h @ e.T
            np.fill_diagonal(gg, 1.0)
            f, a = scl_gram_objective(gg, y, batches, tau, grad=True)
            return f, e.T @ a @ e

        off = ~np.eye(m, dtype=bool)
        zpin = np.zeros((m, m), dtype=bool)
        if relu and m > 1:
            _, ah = fg(h0)
            zpin = off & ((h0 <= small) | ((ah > 0) & (h0 <= big)))
            zpin &= zpin.T
        key = (lab.tobytes(), zpin.tobytes())
        if key in seen:
            continue
        seen.add(key)

        def expand(h, e=e):
            gg = e @ h @ e.T
            gg = (gg + gg.T) / 2
            np.fill_diagonal(gg, 1.0)
            return gg

        if m == 1:
            yield f"merged(delta={delta})", expand(np.ones((1, 1)))
        elif relu and np.all(zpin[off]):
            yield f"merged+bounds(delta={delta})", expand(np.eye(m))
        elif not zpin.any():
            for r in _numerical_ranks(h0)[:3]:
                try:
                    h, _ = bm_refine(fg, h0, np.ones(m), r)
                except (FloatingPointError, ValueError, np.linalg.LinAlgError):
                    continue
                if relu:
                    if h[off].min() < -1e-12:
                        continue
                    h = np.maximum(h, 0.0)
                yield f"merged+burer_monteiro(rank={r})(delta={delta})", expand(h)
        else:
            h = _project_gram(np.where(zpin, 0.0, h0), relu)
            yield f"merged+projected(delta={delta})", expand(np.where(zpin, 0.0, h))


def solve_sdp(labels, batches=None, temperature: float = 0.1, relu: bool = True, solver: str = "CLARABEL",
              max_n: int = 120, tol: float = 1e-7, polish: bool = True, max_memory: int | None = None,
              max_dual_sdp_n: int = 60, verbose: bool = False, **opts) -> SolveResult:
    """Certified minimiser of the n x n Gram program (module docstring) for any batching.

    labels: (n,) class indices; batches: list of index arrays (``None``: one full batch);
    relu: add G >= 0. ``opts`` go to cvxpy's ``solve`` (solver settings). Sizes above ``max_n`` or
    whose estimated memory (:func:`sdp_memory_estimate`) exceeds ``max_memory`` (default: half the
    available memory) are refused: full-batch problems of any size go to ``solve_reduced(counts)``,
    mini-batch problems at scale to gradient descent (``ufm.solvers.solve_gd``).

    Returns a :class:`SolveResult` (``gram``, ``objective`` = f recomputed at ``gram``, ``certificate``
    from :func:`certify_gram` with every candidate's lower bound combined, ``delta_of`` / ``delta_etf``
    of the class means implied by the Gram). Raises :class:`SolverError` when the solver fails or no
    candidate is certified to ``tol * max(1, |f|)``.
    """
    t0 = time.perf_counter()
    y = as_label_array(labels)
    n = y.size
    if n < 2:
        raise ValueError(f"the SDP needs at least two samples, got {n}")
    tau = float(temperature)
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be positive, got {tol}")
    blist = normalize_batching(n, batches)
    if n > max_n:
        raise ValueError(
            f"n={n} samples exceeds max_n={max_n} for the n x n SDP (the interior-point method's memory grows "
            f"like n^4). For one full batch use ufm.solvers.solve_reduced(counts) (exact, any n, seconds); "
            f"for mini-batches at this size use gradient descent on free features (ufm.solvers.solve_gd)")
    rows_by_m, wpos, n_exp = _structure(y, blist)
    if n_exp == 0:
        raise ValueError("no batch has an anchor (a sample with a same-class partner in its batch): "
                         "the objective is identically zero")
    need = sdp_memory_estimate(n, n_exp, solver)
    budget = max_memory if max_memory is not None else _available_memory() // 2
    if need > budget:
        raise ValueError(
            f"the n x n SDP with n={n} and {n_exp} exponential cones needs about {need / 2**30:.1f} GiB, over the "
            f"budget of {budget / 2**30:.1f} GiB. For one full batch use ufm.solvers.solve_reduced(counts); "
            f"for mini-batches use gradient descent on free features (ufm.solvers.solve_gd)")
    import cvxpy as cp

    prob, gvar = _build_problem(n, rows_by_m, wpos, tau, relu)
    if solver.upper() == "CLARABEL":
        opts = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "max_iter": 500, **opts}
    try:
        with warnings.catch_warnings():  # an inaccurate status is judged by our certificate instead
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            prob.solve(solver=solver, verbose=verbose, **opts)
    except cp.error.SolverError as err:
        raise SolverError(f"{solver} failed on the n={n} SDP: {err}") from err
    status = str(prob.status)
    if gvar.value is None or status not in ("optimal", "optimal_inaccurate"):
        raise SolverError(f"{solver} did not solve the n={n} SDP: status {status}")
    g0 = np.asarray(gvar.value, dtype=np.float64)
    g0 = (g0 + g0.T) / 2

    raw = _project_gram(g0, relu)
    chosen, evals, lower = select_certified(
        ("interior_point(projected)", raw), _cluster_candidates(raw, y, blist, tau, relu),
        lambda g, dual: certify_gram(g, y, blist, tau, relu, tol, dual_sdp=dual),
        polish=polish, dual_fallback=n <= max_dual_sdp_n)
    if chosen is None:
        summary = "; ".join(
            f"{nm}: f={c['objective']:.12g}, own gap={c['gap']:.3g}, min_eig={c['feasibility']['min_eig']:.3g}, "
            f"feasible={c['feasibility']['feasible']}" for nm, _, c in evals)
        raise SolverError(
            f"{solver} reported '{status}' on the n={n} SDP (relu={relu}, tau={tau}) but no answer is certified to "
            f"tol={tol}: best lower bound on f* {lower:.12g}; {summary}")
    name, g, cert = chosen
    f = cert["objective"]
    kmat = class_mean_gram(g, y)
    d_of, d_etf = class_gram_deltas(kmat)
    return SolveResult(
        gram=g, objective=f, status=status, certificate=cert, certified=True, seconds=time.perf_counter() - t0,
        solver=solver, method="sdp", delta_of=d_of, delta_etf=d_etf, gram_class=kmat,
        counts=np.bincount(np.unique(y, return_inverse=True)[1]), temperature=tau, relu=relu,
        polished=not name.startswith("interior_point"),
        info={"raw_gram": g0, "n_exp_cones": n_exp, "memory_estimate": need},
    )
