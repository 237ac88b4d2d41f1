"""Exact full-batch solver of the SCL unconstrained features model over the k x k class-mean Gram.

Reduction. With one full batch, f(G) and the feasible set {G PSD, diag G = 1 (, G >= 0)} are invariant
under the permutations of the samples inside each class. f is convex, so the average of P G* P^T
over that group is feasible and, by Jensen, no worse than an optimum G*: some optimum is constant on
each class block, with within-class off-diagonal value a_c and cross-class value b_cd. Writing
K = Gram of the class means of the normalised features,

    K_cd = b_cd (c != d),      K_cc = a_c + (1 - a_c) / n_c,

the sample Gram is G = Diag_i(1 - a_{y_i}) + E B E^T (E the n x k class indicator, B_cc = a_c,
B_cd = b_cd). Its within-class directions orthogonal to the class indicators have eigenvalue
1 - a_c; on the span of the indicators x = E y gives x^T G x = (D y)^T K (D y), D = Diag(n_c).
Hence

    G PSD  <=>  K PSD and a_c <= 1 (K_cc <= 1),

and the spectrum of G is that of D^{1/2} K D^{1/2} together with 1 - a_c (multiplicity n_c - 1).
ReLU adds a_c >= 0 (K_cc >= 1/n_c) and b_cd >= 0. A class with a single sample has no within-class
entry and K_cc = 1. With anchors the classes with n_c >= 2 (|A| = sum_{n_c >= 2} n_c):

    f(K) = (1/|A|) sum_{c: n_c >= 2} n_c [ log( (n_c - 1) e^{a_c/tau} + sum_{d != c} n_d e^{b_cd/tau} )
                                           - a_c / tau ].

Why a certificate of the k x k problem certifies the n x n problem: the block-constant Grams are a
subset of the n x n feasible set, so the reduced optimum is >= f*; by the averaging argument it is
also <= f* (an optimum can be averaged into a block-constant one). The two optimal values coincide,
so a lower bound on the reduced optimum (from the k x k dual certificate) is a lower bound on f*, and
f at the returned K equals f at the n x n Gram it represents: the reduced gap bounds f(G) - f* for the
full problem. (With ReLU the program is over doubly non-negative G; at the orthogonal frame the
optimum is completely positive, i.e. realised by non-negative features.)
"""

from __future__ import annotations

import time

import numpy as np
from scipy.special import logsumexp

from ufm._checks import check_int, check_positive
from ufm.solvers.certificate import Certificate, SolverError, _numerical_ranks, bm_refine
from ufm.solvers.pipeline import (GramProgram, SolveResult, certify, check_solver, project_to_bounds, solve_conic,
                                  solve_program)

__all__ = [
    "ReducedProgram",
    "solve_reduced",
    "reduced_objective",
    "certify_class_gram",
    "class_gram_to_gram",
    "class_gram_bounds",
]


# ----------------------------------------------------------------------------- inputs
def _check_counts(counts) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.ndim != 1:
        raise ValueError(f"counts must be a 1-D sequence of class sizes, got {counts!r:.80} of shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"counts must be integers, got {arr.tolist()}")
    arr = arr.astype(np.int64)
    if arr.size < 2:
        raise ValueError(f"the reduced program needs at least two classes, got counts {arr.tolist()}")
    if np.any(arr < 1):
        bad = np.flatnonzero(arr < 1).tolist()
        raise ValueError(f"every class count must be >= 1; classes {bad} have counts {arr[bad].tolist()} "
                         "(drop empty classes)")
    if not np.any(arr >= 2):
        raise ValueError("no class has two samples: there is no anchor and the objective is identically zero")
    return arr


def class_gram_bounds(counts, relu: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal bounds (lo, hi) of the class-mean Gram: hi = 1; lo = 1/n_c with ReLU, else 0 (PSD);
    lo = hi = 1 for a singleton class."""
    n = _check_counts(counts)
    hi = np.ones(n.size)
    lo = 1.0 / n if relu else np.zeros(n.size)
    lo = np.where(n == 1, 1.0, lo)
    return lo, hi


# ----------------------------------------------------------------------------- objective
def reduced_objective(class_gram, counts, temperature: float = 0.1, grad: bool = False):
    """f(K) of the module docstring (equal to ``scl_gram_objective`` at the block Gram of K).

    With ``grad=True`` also the symmetric gradient A_K: f(K + E) = f(K) + <A_K, E> + o(E). With
    X = K except X_cc = a_c = (n_c K_cc - 1)/(n_c - 1), L_cd = X_cd/tau + log m_cd (m_cc = n_c - 1,
    m_cd = n_d), P = row softmax of L and D_cd = (n_c/|A|) (P_cd - [c = d]) / tau on anchor rows:
    A_cd = (D_cd + D_dc)/2 (c != d), A_cc = D_cc n_c/(n_c - 1) (0 for a singleton).
    """
    n = _check_counts(counts)
    tau = check_positive(temperature, "temperature")
    kmat = np.asarray(class_gram, dtype=np.float64)
    k = n.size
    if kmat.shape != (k, k):
        raise ValueError(f"class_gram must be ({k}, {k}) for {k} classes, got {kmat.shape}")
    if not np.all(np.isfinite(kmat)):
        raise ValueError("class_gram contains NaN or infinite values")
    anc = n >= 2
    idx = np.flatnonzero(anc)
    n_a = float(n[anc].sum())
    x = kmat.copy()
    d = np.diag(kmat)
    a_diag = np.where(anc, (n * d - 1.0) / np.maximum(n - 1, 1), 1.0)
    np.fill_diagonal(x, a_diag)
    logm = np.broadcast_to(np.log(n.astype(np.float64)), (k, k)).copy()
    np.fill_diagonal(logm, np.log(np.maximum(n - 1, 1).astype(np.float64)))
    lg = x[idx] / tau + logm[idx]
    lse = logsumexp(lg, axis=1)
    w = n[idx] / n_a
    f = float(w @ (lse - a_diag[idx] / tau))
    if not grad:
        return f
    p = np.exp(lg - lse[:, None])
    dmat = np.zeros((k, k))
    dmat[idx] = w[:, None] * p / tau
    dmat[idx, idx] -= w / tau
    a = (dmat + dmat.T) / 2
    diag = np.zeros(k)
    diag[idx] = dmat[idx, idx] * n[idx] / (n[idx] - 1.0)
    np.fill_diagonal(a, diag)
    return f, a


def class_gram_to_gram(class_gram, counts) -> np.ndarray:
    """The n x n block Gram of K: 1 on the diagonal, a_c inside class c, K_cd across (labels sorted)."""
    n = _check_counts(counts)
    kmat = np.asarray(class_gram, dtype=np.float64)
    if kmat.shape != (n.size, n.size):
        raise ValueError(f"class_gram must be ({n.size}, {n.size}) for {n.size} classes, got {kmat.shape}")
    a = np.where(n >= 2, (n * np.diag(kmat) - 1.0) / np.maximum(n - 1, 1), 1.0)
    b = kmat.copy()
    np.fill_diagonal(b, a)
    y = np.repeat(np.arange(n.size), n)
    g = b[np.ix_(y, y)]
    np.fill_diagonal(g, 1.0)
    return g


def _within_across(kmat, n):
    within = np.where(n >= 2, (n * np.diag(kmat) - 1.0) / np.maximum(n - 1, 1), np.nan)
    across = kmat.copy()
    np.fill_diagonal(across, 0.0)
    return within, across


def _full_feasibility(kmat, n, relu) -> dict:
    """Feasibility of the n x n Gram represented by K, without forming it."""
    within, across = _within_across(kmat, n)
    sq = np.sqrt(n.astype(np.float64))
    lam_span = float(np.linalg.eigvalsh(sq[:, None] * kmat * sq[None, :])[0])
    anc = n >= 2
    lam_perp = float(np.min(1.0 - within[anc])) if anc.any() else np.inf
    entries = [across[~np.eye(n.size, dtype=bool)].min()]
    if anc.any():
        entries.append(within[anc].min())
    return {"min_eig": min(lam_span, lam_perp), "max_diag_err": 0.0,
            "min_entry": float(min(entries)) if relu else None}


# ----------------------------------------------------------------------------- the program
class ReducedProgram(GramProgram):
    """The k x k program of the module docstring as a :class:`~ufm.solvers.pipeline.GramProgram`."""

    kind = "reduced"

    def __init__(self, counts, temperature: float, relu: bool):
        n = _check_counts(counts)
        lo, hi = class_gram_bounds(n, relu)
        super().__init__(lo, hi, relu, temperature, relu, n)  # GramProgram checks the temperature
        single = n == 1
        self.unread = np.triu(single[:, None] & single[None, :], 1)  # K_cd of two singletons: no anchor reads it

    def objective(self, x, grad: bool = False):
        return reduced_objective(x, self.counts, self.temperature, grad=grad)

    def represented_min_eig(self, x) -> float:
        return _full_feasibility(x, self.counts, self.relu)["min_eig"]

    def known_minimiser(self):
        """With ReLU: the orthogonal frame K = I (Theorem 1), the only minimiser when at most one class is a
        singleton (full batch: every other cross-class entry is read by an anchor with a strictly positive
        multiplier, every anchor class's diagonal has one too). Without ReLU and with equal counts >= 2: the
        simplex ETF (Theorem 3, unique)."""
        from ufm.geometry import simplex_etf_gram

        n = self.counts
        if not self.relu and n.min() >= 2 and np.all(n == n[0]):
            return simplex_etf_gram(n.size), ("Theorem 3 (no ReLU, equal class counts, one full batch): the collapsed "
                                              "simplex ETF is the unique minimiser")
        if not self.relu or self.unread.any():
            return None
        return np.eye(self.counts.size), ("Theorem 1 (with ReLU the orthogonal frame attains f* for any class sizes) "
                                          "and the uniqueness rule for one full batch with at most one singleton "
                                          "class: the orthogonal frame is the unique minimiser")

    def flat_moves(self, x):
        """The entries between two singleton classes are read by no anchor: set them all to 0 or all to 1
        (all singletons on one vector), from X and, with ReLU, from the orthogonal frame (Theorem 1)."""
        if not self.unread.any():
            return
        block = self.unread | self.unread.T
        starts = [("returned", x)] + ([("orthogonal frame", np.eye(self.counts.size))] if self.relu else [])
        for name, x0 in starts:
            for value in (0.0, 1.0):
                xm = np.where(block, value, x0)
                yield f"{name} with the singleton-pair entries at {value:g}", xm


def certify_class_gram(class_gram, counts, temperature: float = 0.1, relu: bool = True, tol: float = 1e-9,
                       dual_sdp: bool | str = "auto", solver: str = "CLARABEL") -> Certificate:
    """Certificate of the objective at a class Gram K: Frank-Wolfe gap with the dual bound over
    C_K = {K PSD, lo_c <= K_cc <= 1, K_cd >= 0 with ReLU} (``class_gram_bounds``): for l, u, N >= 0
    with S = A_K - Diag(l - u) - N PSD, <A_K, Y> >= sum_c l_c lo_c - sum_c u_c for all Y in C_K. It bounds
    f - f* of the full n x n problem (module docstring); feasibility is that of the n x n Gram K stands for.
    """
    program = ReducedProgram(counts, temperature, relu)
    kmat = np.asarray(class_gram, dtype=np.float64)
    if kmat.shape != (program.counts.size,) * 2:
        raise ValueError(f"class_gram must be ({program.counts.size}, {program.counts.size}) for "
                         f"{program.counts.size} classes, got {kmat.shape}")
    return certify(program, kmat, tol, dual_sdp, solver=solver)


# ----------------------------------------------------------------------------- interior point
def _logm(n):
    k = n.size
    logm = np.broadcast_to(np.log(n.astype(np.float64)), (k, k)).copy()
    np.fill_diagonal(logm, np.log(np.maximum(n - 1, 1).astype(np.float64)))
    return logm


def _solve_ip(n, tau, relu, solver, pins=None, verbose=False, **opts):
    """The k x k conic program (one log_sum_exp over the anchor rows)."""
    import cvxpy as cp

    k = n.size
    anc = n >= 2
    idx = np.flatnonzero(anc)
    n_a = float(n[anc].sum())
    kv = cp.Variable((k, k), PSD=True)
    d = cp.diag(kv)
    alpha = np.where(anc, 1.0 / np.maximum(n - 1, 1), 0.0)
    # X = K + diag(alpha * diag K - alpha): X_cc = (n_c K_cc - 1)/(n_c - 1) on anchors
    x = kv + cp.diag(cp.multiply(alpha, d) - alpha)
    logits = (x / tau + _logm(n))[idx, :]
    w = n[idx] / n_a
    lse = cp.log_sum_exp(logits, axis=1)
    a_diag = cp.multiply(1.0 + alpha[idx], d[idx]) - alpha[idx]
    obj = w @ lse - (w / tau) @ a_diag
    cons = [d <= 1]
    if relu:
        cons += [kv >= 0, d >= 1.0 / n]
    single = np.flatnonzero(n == 1)
    if single.size:
        cons.append(d[single] == 1)
    if pins is not None:
        dpin, zpin = pins
        di = np.flatnonzero(~np.isnan(dpin))
        if di.size:
            cons.append(d[di] == dpin[di])
        zi = np.argwhere(np.triu(zpin, 1))
        if zi.size:
            cons.append(kv[zi[:, 0], zi[:, 1]] == 0)
    prob = cp.Problem(cp.Minimize(obj), cons)
    status = solve_conic(prob, solver, f"the reduced program (k={k})", verbose, temperature=tau, **opts)
    kval = np.asarray(kv.value, dtype=np.float64)
    return (kval + kval.T) / 2, status


def _solve_ip_groups(n, tau, relu, solver, verbose=False, **opts):
    """The same program with classes of equal size merged (a second exact symmetry reduction).

    f and the constraints are also invariant under permutations of classes of EQUAL size, so (same
    averaging argument) some optimum K is constant on the blocks of the groups g of equal count nu_g
    (s_g classes): K_cc = p_g, K_cd = q_g inside a group, K_cd = r_gh across groups. As for G -> K,
    K PSD <=> Q PSD and p_g >= q_g, with Q_gg = q_g + (p_g - q_g)/s_g, Q_gh = r_gh (m x m, m the
    number of distinct counts). Variables: Q PSD and t = p - q >= 0 (t_g = 0 when s_g = 1). An anchor
    of group g sees a_g (nu_g - 1 positives), q_g ((s_g - 1) nu_g samples) and r_gh (s_h nu_h).
    Returns the expanded k x k K.
    """
    import cvxpy as cp

    nu, inv, s = np.unique(n, return_inverse=True, return_counts=True)
    m = nu.size
    anc = nu >= 2
    multi = s >= 2
    n_a = float((s * nu)[anc].sum())
    qv = cp.Variable((m, m), PSD=True)
    t = cp.Variable(m, nonneg=True)
    qd = cp.diag(qv)
    q = qd - cp.multiply(1.0 / s, t)
    p = qd + cp.multiply(1.0 - 1.0 / s, t)
    cons = [p <= 1]
    if np.any(~multi):
        cons.append(t[np.flatnonzero(~multi)] == 0)
    if relu:
        cons += [qv >= 0, p >= 1.0 / nu]
        if multi.any():
            cons.append(q[np.flatnonzero(multi)] >= 0)
    if np.any(nu == 1):
        cons.append(p[np.flatnonzero(nu == 1)] == 1)
    alpha = np.where(anc, 1.0 / np.maximum(nu - 1, 1), 0.0)
    a = cp.multiply(1.0 + alpha, p) - alpha  # a_g = (nu_g p_g - 1)/(nu_g - 1) on anchor groups
    cmat = np.broadcast_to(np.log((s * nu).astype(np.float64)), (m, m)).copy()
    np.fill_diagonal(cmat, np.log(np.maximum(nu - 1, 1).astype(np.float64)))
    wmat = qv / tau + cmat + cp.diag(a / tau - qd / tau)  # diagonal replaced by a_g / tau + log(nu_g - 1)
    w = (s * nu) / n_a
    obj = 0
    rows_multi = np.flatnonzero(anc & multi)
    rows_single = np.flatnonzero(anc & ~multi)
    if rows_multi.size:
        extra = q[rows_multi] / tau + np.log(((s - 1) * nu)[rows_multi].astype(np.float64))
        mat = cp.hstack([wmat[rows_multi, :], cp.reshape(extra, (rows_multi.size, 1), order="C")])
        obj = obj + w[rows_multi] @ cp.log_sum_exp(mat, axis=1)
    if rows_single.size:
        obj = obj + w[rows_single] @ cp.log_sum_exp(wmat[rows_single, :], axis=1)
    ia = np.flatnonzero(anc)
    obj = obj - (w[ia] / tau) @ a[ia]
    prob = cp.Problem(cp.Minimize(obj), cons)
    status = solve_conic(prob, solver, f"the class-symmetric reduced program ({m} distinct counts)", verbose,
                         temperature=tau, **opts)
    qval = np.asarray(qv.value, dtype=np.float64)
    qval = (qval + qval.T) / 2
    tval = np.where(multi, np.maximum(np.asarray(t.value, dtype=np.float64), 0.0), 0.0)
    qg = np.diag(qval) - tval / s
    pg = np.diag(qval) + (1.0 - 1.0 / s) * tval
    kmat = qval[np.ix_(inv, inv)].copy()
    same = inv[:, None] == inv[None, :]
    kmat[same] = qg[np.broadcast_to(inv[:, None], kmat.shape)[same]]
    np.fill_diagonal(kmat, pg[inv])
    return kmat, status


# ----------------------------------------------------------------------------- polishing
def _pins(k0, a0, lo, hi, relu, small, big):
    """Active bounds read off the solution and the sign of the gradient (the multipliers' sign)."""
    k = k0.shape[0]
    d = np.diag(k0)
    dpin = np.full(k, np.nan)
    eq = lo == hi
    dpin[eq] = hi[eq]
    up = ~eq & ((hi - d <= small) | ((np.diag(a0) < 0) & (hi - d <= big)))
    dpin[up] = hi[up]
    if relu:
        down = ~eq & ~up & ((d - lo <= small) | ((np.diag(a0) > 0) & (d - lo <= big)))
        dpin[down] = lo[down]
    zpin = np.zeros((k, k), dtype=bool)
    if relu:
        off = ~np.eye(k, dtype=bool)
        zpin = off & ((k0 <= small) | ((a0 > 0) & (k0 <= big)))
        zpin = zpin & zpin.T
        # K_cd between two singleton classes is read by no anchor: any feasible value is optimal, and
        # zero (the orthogonal frame's) is tried
        single = eq & (lo == 1.0)
        zpin |= off & single[:, None] & single[None, :]
    return dpin, zpin


def _polish_candidates(k0, n, tau, relu, lo, hi, solver, **opts):
    """Polished candidates (a generator of (name, K)): moved to the active bounds, free entries
    re-optimised."""
    _, a0 = reduced_objective(k0, n, tau, grad=True)
    k = n.size
    off = ~np.eye(k, dtype=bool)
    seen = set()
    # the last level pins every bound the gradient's sign points to, however far the solution is from
    # it: at small tau the objective saturates (gradients ~ e^{-margin/tau}) and the interior point
    # stops anywhere on a nearly flat plateau
    for small, big in ((1e-7, 1e-4), (1e-6, 1e-2), (1e-5, 1e-1), (1e-5, np.inf)):
        dpin, zpin = _pins(k0, a0, lo, hi, relu, small, big)
        key = (tuple(np.nan_to_num(dpin, nan=-1.0)), zpin.tobytes())
        if key in seen:
            continue
        seen.add(key)
        all_diag = not np.any(np.isnan(dpin))
        if relu and np.all(zpin[off]):
            # every cross entry at zero: K diagonal, each free K_cc a one-dimensional convex problem
            # that the (monotone) objective settles at a bound; keep the projected value otherwise
            yield f"bounds(big={big:g})", project_to_bounds(k0, lo, hi, relu, dpin, zpin)
            continue
        if all_diag and not np.any(zpin):
            def fg(x):
                return reduced_objective(x, n, tau, grad=True)

            for r in _numerical_ranks(k0)[:3]:
                try:
                    x, gn = bm_refine(fg, k0, dpin, r)
                except (FloatingPointError, ValueError, np.linalg.LinAlgError):
                    continue
                if relu:
                    neg = x[off].min()
                    if neg < -1e-12:
                        continue
                    x[off] = np.maximum(x[off], 0.0)
                yield f"burer_monteiro(rank={r})", x
            continue
        try:  # mixed face: re-solve with the active bounds imposed as equalities
            k1, _ = _solve_ip(n, tau, relu, solver, pins=(dpin, zpin), **opts)
        except SolverError:
            continue
        yield f"face_resolve(big={big:g})", project_to_bounds(k1, lo, hi, relu, dpin, zpin)


# ----------------------------------------------------------------------------- the solver
def _first_order_start(program: ReducedProgram):
    """Without an interior point (large k): Burer-Monteiro with unit diagonal from the simplex ETF, rank k - 1
    (the balanced optimum; the certificate says whether the diagonal bounds are right), with one Newton step;
    returns the point and a lazy candidate polished by further Newton steps (used only if the point is not
    certified with a wide margin)."""
    from ufm.geometry import simplex_etf_gram

    k = program.counts.size
    x0 = simplex_etf_gram(k) if not program.relu else np.eye(k)

    def refine(x, steps, maxiter):
        x, _ = bm_refine(lambda x: program.objective(x, grad=True), x, np.ones(k), max(1, k - 1),
                         newton_steps=steps, maxiter=maxiter)
        return np.maximum(x, 0.0) if program.relu else x

    x = refine(x0, 1, 2000)

    def more():
        yield "burer_monteiro(+ Newton)", refine(x, 6, 200)

    return x, more()


def _interior_point_start(program, n, relu, lo, hi, symmetry, solver, verbose, opts):
    """The conic program (grouped over equal counts when asked) and its projection onto C_K."""
    tau = program.temperature
    if symmetry and np.unique(n).size < n.size:
        k0, status = _solve_ip_groups(n, tau, relu, solver, verbose=verbose, **opts)
    else:
        k0, status = _solve_ip(n, tau, relu, solver, verbose=verbose, **opts)
    return k0, project_to_bounds(k0, lo, hi, relu), status


def solve_reduced(counts, temperature: float = 0.1, relu: bool = True, tol: float = 1e-9, polish: bool = True,
                  solver: str = "CLARABEL", full_gram: bool = False, max_full_n: int = 5000,
                  symmetry: bool = True, dual_sdp: bool | str = "auto", max_dual_sdp_k: int = 40,
                  max_ip_k: int = 60, geometry_tol: float = 1e-4, verbose: bool = False, **opts) -> SolveResult:
    """Exact full-batch minimiser of the SCL UFM for class counts ``counts`` (module docstring).

    Starting point: with ReLU and a unique minimiser, the orthogonal frame (Theorem 1: no solver needed);
    otherwise the k x k conic program (one ``log_sum_exp(axis=1)`` over the anchor rows, K PSD, bounds) when
    it has at most ``max_ip_k`` distinct counts, else Burer-Monteiro from the simplex ETF. Candidates are
    polished onto their active face (bounds b_cd = 0, K_cc = 1, K_cc = 1/n_c read off the solution and the
    gradient signs; free entries re-optimised by Burer-Monteiro + Newton, or re-solved with the bounds
    imposed), the objective certified by the k x k dual certificate, and the geometry decided
    (``ufm.solvers.verdict``). Returns a :class:`~ufm.solvers.pipeline.SolveResult`: ``certificate`` (the
    objective), ``geometry`` (the verdict), ``gram_class`` (K returned), ``within`` (a_c), ``across`` (b),
    ``gram`` only with ``full_gram=True`` (refused above ``max_full_n`` samples). Raises
    :class:`SolverError` when no candidate is certified to ``tol * max(1, |f|)`` (its message names the
    temperature); TypeError / ValueError naming ``temperature`` outside ``[TEMPERATURE_MIN, inf)`` = ``[1e-6, inf)``
    (``ufm.solvers.objective``: below it float64 cannot resolve ``K / temperature`` to the tolerance).

    symmetry: when several classes have the same count, solve the smaller program over the distinct counts
        (``_solve_ip_groups``; exact by the same averaging argument) and expand it to k x k.
    dual_sdp: "auto" also solves the explicit k x k dual SDP when the analytic multipliers do not certify,
        for k <= ``max_dual_sdp_k``; True always; False never.
    geometry_tol: the largest distance (max entry of K) between the returned Gram and the minimiser that
        the verdict ``exact`` accepts.
    """
    t0 = time.perf_counter()
    program = ReducedProgram(counts, temperature, relu)
    n, tau = program.counts, program.temperature
    tol, geometry_tol = check_positive(tol, "tol"), check_positive(geometry_tol, "geometry_tol")
    max_full_n, max_ip_k = check_int(max_full_n, "max_full_n", low=0), check_int(max_ip_k, "max_ip_k", low=0)
    max_dual_sdp_k, solver = check_int(max_dual_sdp_k, "max_dual_sdp_k", low=0), check_solver(solver)
    if full_gram and int(n.sum()) > max_full_n:
        raise ValueError(f"full_gram=True would build a {int(n.sum())} x {int(n.sum())} Gram (max_full_n={max_full_n}); "
                         "use gram_class / within / across, or ufm.solvers.class_gram_to_gram on fewer samples")
    lo, hi = program.lo, program.hi
    distinct = np.unique(n).size if symmetry else n.size
    known = program.known_minimiser()
    k0, candidates, status = None, iter(()), "not run"
    if known is not None and n.size > max_ip_k:
        first = ("orthogonal frame (Theorem 1)", known[0])
    elif distinct <= max_ip_k:
        k0, raw, status = _interior_point_start(program, n, relu, lo, hi, symmetry, solver, verbose, opts)
        first = ("interior_point(projected)", raw)
        candidates = _polish_candidates(k0, n, tau, relu, lo, hi, solver, **opts)
    else:
        x, candidates = _first_order_start(program)
        first = ("burer_monteiro(from the simplex ETF)", x)
    kmat, cert, verdict, name = solve_program(
        program, first, candidates, tol=tol, polish=polish, geometry_tol=geometry_tol, status=status,
        dual_fallback=dual_sdp is not False and n.size <= max_dual_sdp_k,
        certify_opts={"solver": solver}, margin=1.0 if k0 is None else 1e-3)  # first-order start: polish if needed
    within, across = _within_across(kmat, n)
    return SolveResult(
        gram=class_gram_to_gram(kmat, n) if full_gram else None, gram_class=kmat, objective=cert.objective,
        certificate=cert, geometry=verdict, status=status, seconds=time.perf_counter() - t0, solver=solver,
        method="reduced", counts=n, temperature=tau, relu=relu, polished=not name.startswith("interior_point"),
        within=within, across=across, info={"raw_class_gram": k0},
    )
