"""Certificates of global optimality for the convex Gram programs of the SCL unconstrained features model.

Both exact solvers (``sdp``: the n x n sample Gram, ``reduced``: the k x k class-mean Gram) minimise a
convex differentiable function ``f`` over a set of the form

    C = { X symmetric PSD,  lo_c <= X_cc <= hi_c,  X_cd >= 0 for c != d (only with ReLU) }.

n x n program: lo = hi = 1. Reduced program: hi_c = 1, lo_c = 1/n_c with ReLU, lo_c = 0 without (PSD
already forces X_cc >= 0), lo_c = hi_c = 1 for a class with a single sample.

Frank-Wolfe gap. For any X (feasible or not) and A = grad f(X), convexity of f on all symmetric
matrices gives, for every Y in C, ``f(Y) >= f(X) + <A, Y - X>``; hence

    f(X) - f*  <=  <A, X> - min_{Y in C} <A, Y>.

Dual lower bound (weak duality). For multipliers l, u >= 0 (lower / upper diagonal bounds) and
N >= 0 symmetric with zero diagonal (N = 0 without ReLU), write ``S = A - Diag(l - u) - N``. If S is
PSD, every Y in C satisfies

    <A, Y> = <S, Y> + sum_c (l_c - u_c) Y_cc + <N, Y>  >=  sum_c l_c lo_c - sum_c u_c hi_c =: L(l, u).

Any (l, u, N) is made exactly dual feasible by adding t = max(0, -lambda_min(S)) (plus a rounding
margin for the computed eigenvalue) to the diagonal of S: lower l_c by min(l_c, t) and raise u_c by
the rest, which lowers L by at most t * sum_c hi_c (t * n for the n x n program). The certified gap is

    gap = <A, X> - L(l, u) + (cost of the shift) + (floating-point allowance),

and equals the sum of the complementary-slackness terms <S, X> + <N, X> + sum l_c (X_cc - lo_c) +
sum u_c (hi_c - X_cc) plus the shift: it is zero exactly when (l, u, N) are the KKT multipliers of X.
Multipliers come from (i) complementary slackness at X (analytic: N_cd = max(A_cd, 0) on the entries
where X_cd = 0, l - u from the rows of S X = 0; at the orthogonal frame this is the block-diagonal
graph-Laplacian construction and the gap is exactly zero), (ii) the explicit dual SDP
``max L(l, u) s.t. A - Diag(l - u) - N PSD`` solved with cvxpy. The smallest valid gap wins.

A certificate is ``certified`` when X is feasible (lambda_min(X) >= -feas_tol, diagonal within
``diag_tol`` of its bounds, entries >= 0 with ReLU) and ``gap <= tol * max(1, |f(X)|)``.

What a certificate does not say. It bounds the objective, not the geometry: at small temperatures the loss
saturates (gradients ~ e^{-margin/tau}) and very different Grams have objectives equal to within the
tolerance, or to within rounding, so a certified Gram need not be near a minimiser. Which minimiser, and
whether there is only one, is decided separately (``ufm.solvers.verdict``) and reported as a geometry
verdict: ``exact``, ``not unique`` or ``unresolved``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "SolverError",
    "Feasibility",
    "Certificate",
    "dual_gap_bound",
    "class_mean_gram",
    "class_gram_deltas",
    "feasibility_of",
]

_EPS = np.finfo(np.float64).eps


class SolverError(RuntimeError):
    """A convex solver did not return a certified optimum (the numbers are in the message)."""


@dataclass(frozen=True)
class Feasibility:
    """How feasible a Gram is: ``min_eig`` (smallest eigenvalue of the Gram the point represents: for the
    reduced program the n x n block Gram), ``max_diag_err`` (largest violation of the diagonal bounds),
    ``min_entry`` (smallest off-diagonal entry, ``None`` without ReLU) and the verdict ``feasible``."""

    min_eig: float
    max_diag_err: float
    min_entry: float | None
    feasible: bool


@dataclass(frozen=True)
class Certificate:
    """Certificate of the OBJECTIVE at a Gram X of a convex Gram program (module docstring).

    objective: f(X), recomputed by the project. lower_bound: a proved lower bound on f* (the best of the
    dual bounds of every candidate tried). gap: objective - lower_bound (>= f(X) - f*). bound: the
    accepted gap, ``tolerance * max(1, |objective|)``. certified: X feasible and gap <= bound.
    method: which multipliers gave the bound (``analytic`` or ``dual_sdp``); gaps: every bound tried.
    lambda_min_S: smallest eigenvalue of the dual slack before the shift. candidate: which polished
    candidate X is; candidates: name -> (objective, own gap, feasible) of every candidate certified.
    duals: the multipliers (l, u, N) and the shifted dual slack S (arrays; not part of ``to_dict``).
    """

    objective: float
    lower_bound: float
    gap: float
    bound: float
    tolerance: float
    certified: bool
    feasibility: Feasibility
    method: str
    gaps: dict
    lambda_min_S: float
    candidate: str = ""
    candidates: dict = field(default_factory=dict)
    duals: dict | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """Everything but the multipliers, as plain Python values (for JSON)."""
        out = {f: getattr(self, f) for f in ("objective", "lower_bound", "gap", "bound", "tolerance", "certified",
                                             "method", "gaps", "lambda_min_S", "candidate", "candidates")}
        out["feasibility"] = asdict(self.feasibility)
        return out


# ----------------------------------------------------------------------------- class-mean geometry
def class_mean_gram(gram, labels) -> np.ndarray:
    """k x k Gram of the class means implied by a sample Gram: K_cd = mean of the (c, d) block of G.

    Classes are the labels present, in increasing order. Since mu_c = (1/n_c) sum_{y_i = c} z_i,
    ``mu_c . mu_d = (1/(n_c n_d)) sum_{y_i = c, y_j = d} G_ij``.
    """
    from ufm._checks import as_label_array

    g = np.asarray(gram, dtype=np.float64)
    y = as_label_array(labels)
    if g.shape != (y.size, y.size):
        raise ValueError(f"gram must be ({y.size}, {y.size}) for {y.size} labels, got {g.shape}")
    _, inv = np.unique(y, return_inverse=True)
    k = int(inv.max()) + 1
    e = np.zeros((y.size, k))
    e[np.arange(y.size), inv] = 1.0
    counts = e.sum(0)
    return (e.T @ g @ e) / np.outer(counts, counts)


def class_gram_deltas(class_gram) -> tuple[float, float]:
    """(Delta_OF, Delta_ETF) from the k x k Gram K = M M^T of the class means (rows of M).

    Delta_OF = || K/||K||_F - I/sqrt(k) ||_F; Delta_ETF uses the centred Gram J K J (J = I - 11^T/k,
    centring at the mean of the class means) against (I - 11^T/k)/sqrt(k-1). Same numbers as
    ``ufm.geometry.delta_of_from_means`` / ``delta_etf_from_means`` on any factor M, without factoring.
    """
    k_mat = np.asarray(class_gram, dtype=np.float64)
    k = k_mat.shape[0]
    if k_mat.ndim != 2 or k_mat.shape != (k, k):
        raise ValueError(f"class_gram must be square, got {k_mat.shape}")
    nrm = np.linalg.norm(k_mat)
    if nrm == 0:
        raise ValueError("all class means are zero: Delta_OF is undefined")
    d_of = float(np.linalg.norm(k_mat / nrm - np.eye(k) / np.sqrt(k)))
    if k < 2:
        return d_of, float("nan")
    j = np.eye(k) - np.ones((k, k)) / k
    c = j @ k_mat @ j
    nc = np.linalg.norm(c)
    d_etf = float(np.linalg.norm(c / nc - j / np.sqrt(k - 1))) if nc > 0 else float("nan")
    return d_of, d_etf


# ----------------------------------------------------------------------------- the dual bound
def _sym(x: np.ndarray) -> np.ndarray:
    return (x + x.T) / 2


def _eig_margin(s: np.ndarray) -> float:
    """Allowance for the rounding of a computed eigenvalue of symmetric S (backward-stable eigvalsh:
    the computed spectrum is exact for S + E with ||E||_2 <= p(n) eps ||S||_2; p(n) = 8 n here)."""
    return 8.0 * s.shape[0] * _EPS * float(np.linalg.norm(s))


def _bound_from_duals(a, x, lo, hi, nonneg, l, u, nmat):
    """Valid lower bound on min_{Y in C} <A, Y> from any (l, u, N), after the PSD shift."""
    k = a.shape[0]
    l = np.maximum(np.nan_to_num(np.asarray(l, dtype=np.float64)), 0.0)
    u = np.maximum(np.nan_to_num(np.asarray(u, dtype=np.float64)), 0.0)
    if nonneg:
        nmat = np.maximum(_sym(np.nan_to_num(np.asarray(nmat, dtype=np.float64))), 0.0)
        np.fill_diagonal(nmat, 0.0)
    else:
        nmat = np.zeros_like(a)
    s = _sym(a - np.diag(l - u) - nmat)
    lam = float(np.linalg.eigvalsh(s)[0])
    t = max(0.0, -lam) + _eig_margin(s)
    dl = np.minimum(l, t)
    l = l - dl
    u = u + (t - dl)
    lower = float(l @ lo - u @ hi)
    # floating-point allowance for the sums below (a few ulps of the magnitudes involved)
    mag = float(np.abs(a * x).sum() + np.abs(l * lo).sum() + np.abs(u * hi).sum())
    slack = 4.0 * (k + 2) * _EPS * mag
    # the dual slack after the shift: A - Diag(l - u) - N = S + t I (PSD up to the rounding margin)
    return lower - slack, {"lambda_min_S": lam, "shift": t, "l": l, "u": u, "N": nmat, "S": s + t * np.eye(k)}


def _complementary_duals(a, x, lo, hi, nonneg, zero_tol):
    """Multipliers from complementary slackness at X: N where X_cd ~ 0, l - u from (S X)_c. = 0."""
    k = a.shape[0]
    nmat = np.zeros_like(a)
    if nonneg:
        off = ~np.eye(k, dtype=bool)
        pin = off & (x <= zero_tol)
        nmat[pin] = np.maximum(a[pin], 0.0)
        nmat = _sym(nmat)
    r = (a - nmat) @ x
    den = (x * x).sum(1)
    w = np.where(den > 0, (r * x).sum(1) / np.where(den > 0, den, 1.0), 0.0)
    # split w = l - u at the least complementary-slackness cost
    l = np.maximum(w, 0.0)
    u = np.maximum(-w, 0.0)
    return l, u, nmat


def _dual_sdp_duals(a, lo, hi, nonneg, solver="CLARABEL", **opts):
    """Explicit dual SDP: max sum_c h_c(w_c) s.t. A - Diag(w) - N PSD, N >= 0 (zero diagonal),
    with h_c(w) = hi_c w - (hi_c - lo_c) pos(w) (= l lo - u hi at the best split w = l - u)."""
    import cvxpy as cp

    k = a.shape[0]
    w = cp.Variable(k)
    s = cp.Variable((k, k), PSD=True)
    cons = []
    expr = a - cp.diag(w)
    if nonneg:
        nmat = cp.Variable((k, k), symmetric=True)
        cons += [nmat >= 0, cp.diag(nmat) == 0]
        expr = expr - nmat
    cons.append(s == expr)
    gapw = hi - lo
    obj = hi @ w - (gapw @ cp.pos(w) if np.any(gapw > 0) else 0)
    prob = cp.Problem(cp.Maximize(obj), cons)
    with warnings.catch_warnings():  # whatever it returns is made exactly feasible and re-checked
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        prob.solve(solver=solver, **opts)
    if w.value is None:
        raise SolverError(f"dual SDP of the certificate failed: status {prob.status}")
    wv = np.asarray(w.value, dtype=np.float64)
    nv = np.asarray(nmat.value, dtype=np.float64) if nonneg else np.zeros((k, k))
    return np.maximum(wv, 0.0), np.maximum(-wv, 0.0), nv


def feasibility_of(x, lo, hi, nonneg: bool, represented_min_eig: float | None = None, feas_tol: float = 1e-9,
                   diag_tol: float = 1e-12) -> Feasibility:
    """Feasibility of X in C (module docstring); ``represented_min_eig`` replaces X's own smallest eigenvalue
    when X stands for a larger Gram (the reduced program's block Gram)."""
    f = _feasibility(x, lo, hi, nonneg)
    min_eig = f["min_eig"] if represented_min_eig is None else min(f["min_eig"], represented_min_eig)
    ok = _is_feasible(dict(f, min_eig=min_eig), nonneg, feas_tol, diag_tol)
    return Feasibility(min_eig=float(min_eig), max_diag_err=float(max(f["max_diag_violation"], f["asymmetry"])),
                       min_entry=f["min_entry"] if nonneg else None, feasible=ok)


def _feasibility(x, lo, hi, nonneg) -> dict:
    x = np.asarray(x, dtype=np.float64)
    k = x.shape[0]
    d = np.diag(x)
    off = x[~np.eye(k, dtype=bool)]
    return {
        "min_eig": float(np.linalg.eigvalsh(_sym(x))[0]),
        "max_diag_violation": float(max(0.0, np.max(lo - d), np.max(d - hi))),
        "min_entry": float(off.min()) if off.size else float("nan"),
        "asymmetry": float(np.abs(x - x.T).max()),
    }


def _is_feasible(feas: dict, nonneg: bool, feas_tol: float, diag_tol: float) -> bool:
    return bool(
        feas["min_eig"] >= -feas_tol
        and feas["max_diag_violation"] <= diag_tol
        and feas["asymmetry"] <= diag_tol
        and (not nonneg or not (feas["min_entry"] < 0))
    )


def dual_gap_bound(grad, point, lo, hi, nonneg: bool, dual_sdp: bool | str = "auto", target: float | None = None,
                   solver: str = "CLARABEL", zero_tols=(0.0, 1e-9, 1e-7, 1e-5), **solver_opts) -> dict:
    """Certified upper bound on ``<A, X> - min_{Y in C} <A, Y>`` (see the module docstring).

    grad: A (symmetric), point: X, lo/hi: diagonal bounds (arrays), nonneg: off-diagonal Y >= 0.
    dual_sdp: True (always also solve the dual SDP), False (analytic multipliers only) or "auto"
    (solve it when the analytic gap exceeds ``target``).
    Returns ``gap`` (the smallest valid one), ``gaps`` by construction, ``lower`` (the bound on the
    min) and the multipliers used (``duals``).
    """
    a = _sym(np.asarray(grad, dtype=np.float64))
    x = np.asarray(point, dtype=np.float64)
    k = a.shape[0]
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (k,)).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (k,)).copy()
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(x))):
        raise ValueError("the certificate needs a finite gradient and point")
    ax = float((a * x).sum())
    best = None
    gaps: dict = {}
    for zt in zero_tols if nonneg else (0.0,):
        l, u, nmat = _complementary_duals(a, x, lo, hi, nonneg, zt)
        lower, info = _bound_from_duals(a, x, lo, hi, nonneg, l, u, nmat)
        gap = ax - lower
        gaps[f"analytic(zero_tol={zt:g})"] = float(gap)
        if best is None or gap < best[0]:
            best = (gap, lower, "analytic", info)
        if not nonneg:
            break
    run_sdp = dual_sdp is True or (dual_sdp == "auto" and target is not None and best[0] > target)
    if run_sdp:
        try:
            l, u, nmat = _dual_sdp_duals(a, lo, hi, nonneg, solver=solver, **solver_opts)
            lower, info = _bound_from_duals(a, x, lo, hi, nonneg, l, u, nmat)
            gap = ax - lower
            gaps["dual_sdp"] = float(gap)
            if gap < best[0]:
                best = (gap, lower, "dual_sdp", info)
        except Exception as err:  # the analytic bound stays valid; record why the SDP bound is missing
            gaps["dual_sdp"] = f"failed: {err}"
    gap, lower, how, info = best
    # first-order spread of <A, .> over the feasible set (entries of Y and X lie in [-max hi, max hi])
    spread = float(2.0 * max(1.0, float(np.max(hi))) * np.abs(a).sum())
    return {"gap": float(gap), "spread": spread, "lower": lower, "linear_value": ax, "method": how,
            "gaps": gaps, "lambda_min_S": info["lambda_min_S"], "shift": info["shift"],
            "duals": {"l": info["l"], "u": info["u"], "N": info["N"], "S": info["S"]}}


# ----------------------------------------------------------------------------- polishing helpers
def _factor(x: np.ndarray, rank: int) -> np.ndarray:
    """k x r factor V with V V^T the best rank-r PSD approximation of X."""
    w, q = np.linalg.eigh(_sym(x))
    w = np.maximum(w[::-1][:rank], 0.0)
    return q[:, ::-1][:, :rank] * np.sqrt(w)


def _numerical_ranks(x: np.ndarray) -> list[int]:
    """Candidate ranks of a nearly-PSD X from the gaps of its spectrum (largest gaps first)."""
    w = np.sort(np.linalg.eigvalsh(_sym(x)))[::-1]
    k = w.size
    top = max(w[0], 1e-300)
    ranks = []
    for thr in (1e-3, 1e-4, 1e-5, 1e-6, 1e-8):
        r = int((w > thr * top).sum())
        if 1 <= r <= k and r not in ranks:
            ranks.append(r)
    return ranks or [k]


def bm_refine(fun_grad, x0: np.ndarray, diag: np.ndarray, rank: int, newton_steps: int = 12,
              maxiter: int = 3000, seed: int = 0) -> tuple[np.ndarray, float]:
    """Refine a PSD X with fixed diagonal by Burer-Monteiro: X = V V^T, V (k x rank) with rows of norm
    sqrt(diag_c), minimising f(V V^T): L-BFGS, then Newton-CG steps on the gradient (finite-difference
    Hessian-vector products) that reach the accuracy the function values alone cannot resolve.

    fun_grad(X) -> (f, A) with A the symmetric gradient. Returns (X, norm of the final gradient).
    """
    from scipy.optimize import minimize

    k = x0.shape[0]
    s = np.sqrt(np.asarray(diag, dtype=np.float64))
    v0 = _factor(x0, rank)
    nr = np.linalg.norm(v0, axis=1)
    if np.any(nr < 1e-12):  # an empty row: give it a small seeded direction
        rng = np.random.default_rng(seed)
        v0[nr < 1e-12] = rng.standard_normal((int((nr < 1e-12).sum()), rank)) * 1e-3

    def to_x(vec):
        u = vec.reshape(k, rank)
        nu = np.linalg.norm(u, axis=1)
        vh = u / nu[:, None]
        v = vh * s[:, None]
        x = v @ v.T
        np.fill_diagonal(x, s * s)
        return x, u, nu, vh, v

    def fg(vec):
        x, u, nu, vh, v = to_x(vec)
        f, a = fun_grad(x)
        gv = 2.0 * _sym(a) @ v
        gv = gv - (gv * vh).sum(1)[:, None] * vh  # tangent to the sphere of each row
        return f, (gv * (s / nu)[:, None]).ravel()

    vec = v0.ravel() / np.repeat(np.linalg.norm(v0, axis=1), rank)  # unit rows
    res = minimize(fg, vec, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "maxcor": 30, "ftol": 1e-16, "gtol": 1e-15})
    vec = res.x
    vec = (vec.reshape(k, rank) / np.linalg.norm(vec.reshape(k, rank), axis=1)[:, None]).ravel()
    f0, g0 = fg(vec)
    gn = float(np.linalg.norm(g0))
    for _ in range(newton_steps):
        if gn == 0.0:
            break
        h = 1e-6 / max(1.0, float(np.linalg.norm(vec)))

        def hv(p, vec=vec):
            nrm = float(np.linalg.norm(p))
            if nrm == 0:
                return np.zeros_like(p)
            e = h / nrm
            return (fg(vec + e * p)[1] - fg(vec - e * p)[1]) / (2 * e)

        step = _cg(hv, -g0, iters=min(200, vec.size), tol=1e-3)
        cand = vec + step
        cand = (cand.reshape(k, rank) / np.linalg.norm(cand.reshape(k, rank), axis=1)[:, None]).ravel()
        f1, g1 = fg(cand)
        g1n = float(np.linalg.norm(g1))
        if not (g1n < gn and f1 <= f0 + 1e-12 * max(1.0, abs(f0))):
            break
        vec, f0, g0, gn = cand, f1, g1, g1n
    return to_x(vec)[0], gn


def _cg(hv, b, iters: int, tol: float) -> np.ndarray:
    """Conjugate gradient for H p = b (H symmetric PSD, possibly singular); stops on negative curvature."""
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = float(r @ r)
    b0 = np.sqrt(rr)
    for _ in range(iters):
        hp = hv(p)
        php = float(p @ hp)
        if php <= 0:
            break
        alpha = rr / php
        x = x + alpha * p
        r = r - alpha * hp
        rr_new = float(r @ r)
        if np.sqrt(rr_new) <= tol * b0:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x if np.any(x) else b
