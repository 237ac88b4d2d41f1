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

import numpy as np
import scipy.sparse as sp

from ufm._checks import as_label_array, check_int, check_positive
from ufm.geometry import orthogonal_frame_gram
from ufm.solvers.certificate import Certificate, SolverError, _numerical_ranks, bm_refine, class_mean_gram
from ufm.solvers.objective import check_has_anchor, check_temperature, normalize_batching, scl_gram_objective
from ufm.solvers.pipeline import (GramProgram, SolveResult, certify, check_solver, project_to_bounds, solve_conic,
                                  solve_program)

__all__ = ["SampleGramProgram", "solve_sdp", "sdp_memory_estimate", "certify_gram", "read_components"]


# ----------------------------------------------------------------------------- the program
def read_components(labels, batches) -> np.ndarray:
    """Connected components of the graph of READ pairs: i ~ j when some batch holds both and one of them has
    a same-class partner there (an anchor term then reads G_ij). Entries between two components are read
    by no anchor term. Returns the component label of every sample."""
    from scipy.sparse.csgraph import connected_components

    y = as_label_array(labels)
    rows, cols = [], []
    for b in normalize_batching(y.size, batches):
        yb = y[b]
        anchors = b[np.bincount(yb)[yb] >= 2] if b.size else b
        if anchors.size:  # every sample of b is read by this anchor: join b to it
            rows.append(b)
            cols.append(np.full(b.size, anchors[0]))
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    graph = sp.csr_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(y.size, y.size))
    return connected_components(graph, directed=False)[1]


class SampleGramProgram(GramProgram):
    """The n x n program of the module docstring as a :class:`~ufm.solvers.pipeline.GramProgram`."""

    kind = "n x n"

    def __init__(self, labels, batches, temperature: float, relu: bool):
        y = as_label_array(labels)
        ones = np.ones(y.size)
        super().__init__(ones, ones, relu, temperature, relu, np.bincount(np.unique(y, return_inverse=True)[1]))
        self.labels = y
        self.batches = normalize_batching(y.size, batches)
        self.components = read_components(y, self.batches)
        self._uniqueness = None

    def objective(self, x, grad: bool = False):
        return scl_gram_objective(x, self.labels, self.batches, self.temperature, grad=grad)

    def class_gram(self, x) -> np.ndarray:
        return class_mean_gram(x, self.labels)

    def class_radius(self, radius: float) -> float:
        """K_cd is the mean of the (c, d) block: |dK_cd| <= ||dX_cd||_F / sqrt(n_c n_d) <= radius / min_c n_c."""
        return float(radius) / float(self.counts.min())

    def uniqueness(self):
        from ufm.batching import uniqueness_conditions

        if self._uniqueness is None:
            self._uniqueness = uniqueness_conditions(self.labels, self.batches)
        return self._uniqueness

    def known_minimiser(self):
        """With ReLU and a batching the uniqueness rule proves unique: the orthogonal frame."""
        if not self.relu or not self.uniqueness().unique:
            return None
        return orthogonal_frame_gram(self.labels), ("Theorem 1 (with ReLU the orthogonal frame attains f* for every "
                                                    "batching) and the uniqueness rule (ufm.batching."
                                                    "uniqueness_conditions: unique for this batching)")

    def flat_moves(self, x):
        """Entries between two read components are read by no anchor: zero them (block-diagonal, feasible), or
        (no ReLU) flip the sign of every other component. With ReLU and a batching the uniqueness rule proves
        NOT unique, the orthogonal frame (a minimiser by Theorem 1) is exhibited too, and for each pair of
        classes no anchor reads (at most 10) the OF with the two classes on one vector."""
        comp = self.components
        if self.relu and self.uniqueness().verdict == "not unique":
            of = orthogonal_frame_gram(self.labels)
            yield "orthogonal frame (Theorem 1)", of
            for a, b in self.uniqueness().missing_pairs[:10]:  # no anchor reads a pair of a and b: merge them
                merged = of.copy()
                ia, ib = np.flatnonzero(self.labels == a), np.flatnonzero(self.labels == b)
                merged[np.ix_(ia, ib)] = merged[np.ix_(ib, ia)] = 1.0
                yield f"orthogonal frame with classes {a} and {b} on one vector", merged
        if comp.max() == 0:
            return
        same = comp[:, None] == comp[None, :]
        yield "block-diagonal over the read components", np.where(same, x, 0.0)
        if not self.relu:
            sign = np.where(comp % 2 == 0, 1.0, -1.0)
            yield "every other read component negated", x * sign[:, None] * sign[None, :]
            yield "the read components' factors in one shared space", _shared_space(x, comp)


def _shared_space(x, comp) -> np.ndarray:
    """Factor each component's diagonal block, X_CC = V_C V_C^T, and stack the factors in one space:
    the within-component blocks are unchanged (to rounding), the cross-component entries become
    V_C V_D^T (without ReLU every such Gram is feasible)."""
    factors = []
    for c in np.unique(comp):
        idx = np.flatnonzero(comp == c)
        w, q = np.linalg.eigh(x[np.ix_(idx, idx)])
        keep = w > 1e-12 * max(1.0, w[-1])
        factors.append((idx, q[:, keep] * np.sqrt(w[keep])))
    r = max(f.shape[1] for _, f in factors)
    v = np.zeros((x.shape[0], r))
    for idx, f in factors:
        v[idx, :f.shape[1]] = f
    g = v @ v.T
    np.fill_diagonal(g, 1.0)
    return g


def certify_gram(gram, labels, batches=None, temperature: float = 0.1, relu: bool = True, tol: float = 1e-7,
                 dual_sdp: bool | str = "auto", solver: str = "CLARABEL") -> Certificate:
    """Certificate of the objective of the n x n program ``min f(G) s.t. G PSD, diag G = 1 (, G >= 0 with
    relu)`` at G (any batching): ``gap`` bounds f(G) - f*, ``lower_bound`` = f(G) - gap <= f*."""
    g = np.asarray(gram, dtype=np.float64)
    y = as_label_array(labels)
    if g.shape != (y.size, y.size):
        raise ValueError(f"gram must be ({y.size}, {y.size}) for {y.size} labels, got {g.shape}")
    return certify(SampleGramProgram(y, batches, temperature, relu), g, tol, dual_sdp, solver=solver)


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
            h = project_to_bounds(np.where(zpin, 0.0, h0), np.ones(m), np.ones(m), relu)
            yield f"merged+projected(delta={delta})", expand(np.where(zpin, 0.0, h))


def _component_problems(program: SampleGramProgram):
    """The read components with their batches (restricted to the component, re-indexed): f is the sum of
    the components' objectives, which read disjoint sets of entries."""
    comp = program.components
    for c in np.unique(comp):
        idx = np.flatnonzero(comp == c)
        local = np.full(comp.size, -1)
        local[idx] = np.arange(idx.size)
        batches = [local[b[comp[b] == c]] for b in program.batches if np.any(comp[b] == c)]
        yield idx, program.labels[idx], [b for b in batches if b.size >= 2]


def _component_optimum(y, batches, program, rank, seed, steps) -> np.ndarray:
    """An (approximate) optimum of one read component: a single batch is a full-batch problem, solved by the
    exact reduced program; several overlapping batches by Burer-Monteiro (L-BFGS on free features, then
    Newton polishing, ``ufm.solvers.certificate.bm_refine``)."""
    from ufm.solvers.gd import solve_gd
    from ufm.solvers.reduced import class_gram_to_gram, solve_reduced

    m = y.size
    classes, yi = np.unique(y, return_inverse=True)
    if m == 1 or not batches:
        return np.eye(m)
    if len(batches) == 1 and batches[0].size == m:
        if classes.size == 1:  # a single-class batch: minimal when all its entries are equal; take 1
            return np.ones((m, m))
        counts = np.bincount(yi)
        kmat = solve_reduced(counts, program.temperature, relu=program.relu, dual_sdp=False).gram_class
        order = np.argsort(yi, kind="stable")
        g = np.empty((m, m))
        g[np.ix_(order, order)] = class_gram_to_gram(kmat, counts)
        return g
    r = int(rank) if rank is not None else classes.size + 2
    res = solve_gd(yi, r, temperature=program.temperature, relu=program.relu, batches=batches, optimizer="lbfgs",
                   steps=steps, seed=seed, tol=1e-15)
    z = res.features / np.linalg.norm(res.features, axis=1, keepdims=True)
    g = z @ z.T
    if not program.relu:
        def fg(x):
            return scl_gram_objective(x, yi, batches, program.temperature, grad=True)
        g, _ = bm_refine(fg, g, np.ones(m), r, newton_steps=8, maxiter=500)
    np.fill_diagonal(g, 1.0)
    return np.maximum(g, 0.0) if program.relu else g


def _interior_point(program, n, solver, max_memory, verbose, opts):
    """The conic program of the module docstring; returns (raw Gram, status, memory estimate)."""
    rows_by_m, wpos, n_exp = _structure(program.labels, program.batches)
    need = sdp_memory_estimate(n, n_exp, solver)
    budget = max_memory if max_memory is not None else _available_memory() // 2
    if need > budget:
        raise ValueError(
            f"the interior-point n x n SDP with n={n} and {n_exp} exponential cones needs about {need / 2**30:.1f} GiB, "
            f"over the budget of {budget / 2**30:.1f} GiB: use method='low-rank' (any n), or for one full batch "
            "ufm.solvers.solve_reduced(counts)")
    prob, gvar = _build_problem(n, rows_by_m, wpos, program.temperature, program.relu)
    status = solve_conic(prob, solver, f"the n={n} SDP", verbose, temperature=program.temperature, **opts)
    g0 = np.asarray(gvar.value, dtype=np.float64)
    return (g0 + g0.T) / 2, status, need


def solve_sdp(labels, batches=None, temperature: float = 0.1, relu: bool = True, solver: str = "CLARABEL",
              method: str = "auto", max_n: int = 120, tol: float = 1e-7, polish: bool = True,
              max_memory: int | None = None, max_dual_sdp_n: int = 60, rank: int | None = None, seed: int = 0,
              steps: int = 3000, geometry_tol: float = 1e-4, verbose: bool = False, **opts) -> SolveResult:
    """Certified minimiser of the n x n Gram program (module docstring) for any batching.

    labels: (n,) class indices; batches: list of index arrays (``None``: one full batch); relu: G >= 0.
    method: ``"interior"`` (cvxpy, ``solver``; n up to ``max_n`` and the memory estimate), ``"low-rank"``
        (Burer-Monteiro: L-BFGS on n x ``rank`` features, default rank k + 2, any n; the rank is doubled
        while the certificate's dual slack has a negative eigenvalue) or ``"auto"`` (interior up to
        ``max_n`` samples, low-rank above). Whatever found the point, the project certifies it.
    With ReLU above ``max_n`` (or ``method="low-rank"``) no solver runs: the orthogonal frame attains f* for
    every batching (Theorem 1) and is the candidate the pipeline certifies. ``opts`` go to cvxpy's ``solve``.

    Returns a :class:`~ufm.solvers.pipeline.SolveResult`: ``certificate`` (the objective: gap, lower bound),
    ``geometry`` (the verdict: ``exact``, ``not unique`` with the range of ``delta_of`` over exhibited
    minimisers, or ``unresolved``), ``gram``, ``gram_class``. Raises :class:`SolverError` when no
    candidate is certified to ``tol * max(1, |f|)`` (its message names the temperature); TypeError /
    ValueError naming ``temperature`` outside ``[TEMPERATURE_MIN, inf)`` = ``[1e-6, inf)``
    (``ufm.solvers.objective``), and ValueError for a batching in which no batch has an anchor.
    """
    t0 = time.perf_counter()
    y = as_label_array(labels)
    n = y.size
    if n < 2:
        raise ValueError(f"the SDP needs at least two samples, got {n}")
    tau = check_temperature(temperature)
    tol, geometry_tol = check_positive(tol, "tol"), check_positive(geometry_tol, "geometry_tol")
    max_n, max_dual_sdp_n = check_int(max_n, "max_n", low=0), check_int(max_dual_sdp_n, "max_dual_sdp_n", low=0)
    steps, seed, solver = check_int(steps, "steps", low=1), check_int(seed, "seed"), check_solver(solver)
    if rank is not None:
        rank = check_int(rank, "rank", low=1)
    if method not in ("auto", "interior", "low-rank"):
        raise ValueError(f"method must be 'auto', 'interior' or 'low-rank', got {method!r}")
    program = SampleGramProgram(y, batches, tau, relu)
    if np.unique(y).size < 2:
        raise ValueError(f"labels must hold at least two classes (the geometry compares classes), got one class "
                         f"({y.size} samples of class {int(y[0])})")
    check_has_anchor(y, program.batches)
    if method == "interior" and n > max_n:
        raise ValueError(
            f"n={n} samples exceeds max_n={max_n} for the interior-point n x n SDP (its memory grows like n^4): use "
            f"method='low-rank' (any n), or for one full batch ufm.solvers.solve_reduced(counts) (exact, any n)")
    info: dict = {}
    candidates = iter(())
    if relu and (method == "low-rank" or (method == "auto" and n > max_n)):
        # Theorem 1: with ReLU the orthogonal frame attains f* for every batching; the certificate checks it
        first, status = ("orthogonal frame (Theorem 1)", orthogonal_frame_gram(y)), "not run"
    elif method == "interior" or (method == "auto" and n <= max_n):
        g0, status, need = _interior_point(program, n, solver, max_memory, verbose, opts)
        info = {"raw_gram": g0, "memory_estimate": need}
        raw = project_to_bounds(g0, program.lo, program.hi, relu)
        first = ("interior_point(projected)", raw)
        candidates = _cluster_candidates(raw, y, program.batches, tau, relu)
    else:
        first, status = _low_rank(program, rank, seed, steps), "low-rank"
    g, cert, verdict, name = solve_program(
        program, first, candidates, tol=tol, polish=polish, geometry_tol=geometry_tol, status=status,
        dual_fallback=n <= max_dual_sdp_n, certify_opts={"solver": solver})
    return SolveResult(
        gram=g, gram_class=program.class_gram(g), objective=cert.objective, certificate=cert, geometry=verdict,
        status=status, seconds=time.perf_counter() - t0, solver=solver if status != "low-rank" else "L-BFGS",
        method="sdp", counts=program.counts, temperature=tau, relu=relu,
        polished=not name.startswith("interior_point"), info=info)


def _low_rank(program: SampleGramProgram, rank, seed, steps):
    """The first-order candidate: each read component solved on its own, assembled block-diagonally
    (entries between components are read by no anchor term, and a block-diagonal of PSD blocks is PSD)."""
    n = program.labels.size
    g = np.zeros((n, n))
    for idx, y, batches in _component_problems(program):
        g[np.ix_(idx, idx)] = _component_optimum(y, batches, program, rank, seed, steps)
    return "components: reduced program per batch, burer_monteiro otherwise", g
