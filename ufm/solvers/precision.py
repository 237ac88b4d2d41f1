"""Deciding the geometry of a small reduced program in extended precision, where float64 cannot.

Without ReLU under imbalance at small tau the forces that fix the optimum are ~exp(-1/tau): over a whole
region around a float64 optimum the objective changes by less than float64 resolves, and the second-order
radius ``sqrt(2 g / mu)`` (``ufm.solvers.verdict``) exceeds the tolerance. The program itself is small
(k x k), so it is solved again in ``mpmath`` arithmetic with ``dps`` digits:

1. Burer-Monteiro on the face of the float64 optimum: K = Z Z^T with Z (k x r) of unit rows (every diagonal
   pinned at 1; r the rank of the float64 optimum), Newton's method on the rows' spheres (the Hessian by
   central differences of the exact gradient with step 10^(-dps/3)), until the gradient is ~10^(-dps/2);
2. the objective's certificate at that K in the same arithmetic (complementary-slackness multipliers, the
   smallest eigenvalue of the dual slack, the gap);
3. the curvature mu of f on the face (Hessian in the same arithmetic), and the radius sqrt(2 g / mu) + g / sigma.

The verdict is ``exact`` when that radius is below the tolerance: every minimiser then lies within it of the
extended-precision K, whose float64 rounding is returned. Only the case where every diagonal is pinned at 1
and no non-negativity bound is active is handled (the no-ReLU optimum under imbalance), for k <= 5 and tau >= 0.01 (the cost
grows like k^4 r^2 in extended arithmetic and with the digits); anything else is left ``unresolved``. ``dps`` defaults to
40 + 1.8 / tau: the multipliers are ~exp(-1/tau) (0.43 / tau digits) and the curvature about their square.
"""

from __future__ import annotations

import numpy as np

__all__ = ["refine_reduced_in_extended_precision"]


def _mp_objective_grad(mp, kmat, counts, tau):
    """f(K) and its symmetric gradient (``ufm.solvers.reduced.reduced_objective``) in mpmath."""
    k = len(counts)
    anc = [c for c in range(k) if counts[c] >= 2]
    n_a = sum(counts[c] for c in anc)
    a_diag = [(counts[c] * kmat[c, c] - 1) / (counts[c] - 1) if counts[c] >= 2 else mp.mpf(1) for c in range(k)]
    f = mp.mpf(0)
    dmat = mp.zeros(k, k)
    for c in anc:
        logits = [(a_diag[c] if d == c else kmat[c, d]) / tau
                  + mp.log(counts[c] - 1 if d == c else counts[d]) for d in range(k)]
        top = max(logits)
        ex = [mp.exp(v - top) for v in logits]
        tot = mp.fsum(ex)
        w = mp.mpf(counts[c]) / n_a
        f += w * (top + mp.log(tot) - a_diag[c] / tau)
        for d in range(k):
            dmat[c, d] = w * ex[d] / tot / tau
        dmat[c, c] -= w / tau
    grad = mp.zeros(k, k)
    for c in range(k):
        for d in range(k):
            grad[c, d] = (dmat[c, d] + dmat[d, c]) / 2
        grad[c, c] = dmat[c, c] * counts[c] / (counts[c] - 1) if counts[c] >= 2 else mp.mpf(0)
    return f, grad


def _gram(mp, z):
    k = z.rows
    out = mp.zeros(k, k)
    for i in range(k):
        for j in range(i, k):
            out[i, j] = out[j, i] = mp.fsum(z[i, t] * z[j, t] for t in range(z.cols))
    return out


def _unit_rows(mp, u):
    z = u.copy()
    for i in range(u.rows):
        nrm = mp.sqrt(mp.fsum(u[i, t] ** 2 for t in range(u.cols)))
        for t in range(u.cols):
            z[i, t] = u[i, t] / nrm
    return z


def _riemannian_grad(mp, u, counts, tau):
    """Gradient of F(U) = f(Z Z^T), Z = U with unit rows, as a flat list (tangent to each row's sphere)."""
    z = _unit_rows(mp, u)
    _, a = _mp_objective_grad(mp, _gram(mp, z), counts, tau)
    k, r = u.rows, u.cols
    out = []
    for i in range(k):
        gz = [2 * mp.fsum(a[i, j] * z[j, t] for j in range(k)) for t in range(r)]
        radial = mp.fsum(gz[t] * z[i, t] for t in range(r))
        nrm = mp.sqrt(mp.fsum(u[i, t] ** 2 for t in range(r)))
        out += [(gz[t] - radial * z[i, t]) / nrm for t in range(r)]
    return out


def _newton(mp, u, counts, tau, dps, iters=60):
    """Newton on the spheres (a slightly damped step: the rotations Z -> Z Q are a null space of the Hessian),
    with a backtracking line search."""
    k, r = u.rows, u.cols
    h = mp.mpf(10) ** (-(dps // 3))
    for _ in range(iters):
        g = _riemannian_grad(mp, u, counts, tau)
        gn = mp.sqrt(mp.fsum(x ** 2 for x in g))
        if gn < mp.mpf(10) ** (-(dps // 2)):
            break
        n = k * r
        hess = mp.zeros(n, n)
        for j in range(n):
            up, um = u.copy(), u.copy()
            up[j // r, j % r] += h
            um[j // r, j % r] -= h
            gp, gm = _riemannian_grad(mp, up, counts, tau), _riemannian_grad(mp, um, counts, tau)
            for i in range(n):
                hess[i, j] = (gp[i] - gm[i]) / (2 * h)
        hess = (hess + hess.T) / 2
        # far from the optimum the Hessian in U is indefinite: shift it to positive definite (a descent step)
        lam = min(mp.eigsy(hess, eigvals_only=True))
        damp = max(mp.mpf(0), -2 * lam) + mp.mpf(10) ** (-(dps // 2)) * max(mp.mpf(1), mp.mnorm(hess, 1))
        step = mp.lu_solve(hess + damp * mp.eye(n), mp.matrix([-x for x in g]))
        u = _line_search(mp, u, step, counts, tau)
    return u, gn


def _line_search(mp, u, step, counts, tau):
    """Backtracking: the largest t in 1, 1/2, 1/4, ... that lowers F (from far away the full Newton step of
    a nearly flat objective overshoots)."""
    def value(uu):
        return _mp_objective_grad(mp, _gram(mp, _unit_rows(mp, uu)), counts, tau)[0]

    r = u.cols
    f0, t = value(u), mp.mpf(1)
    for _ in range(60):
        cand = u.copy()
        for j in range(len(step)):
            cand[j // r, j % r] += t * step[j]
        if value(cand) < f0:
            return _unit_rows(mp, cand)
        t /= 2
    return u


def _certificate(mp, kmat, counts, tau):
    """Gap of the analytic multipliers at K (no ReLU): S = A - Diag(w), w_c from (S K)_c. = 0; w_c < 0 is the
    multiplier of K_cc <= 1, w_c > 0 that of K_cc >= 0 (inactive: it costs w_c K_cc), a singleton's K_cc = 1
    takes either sign; the PSD shift t = max(0, -lambda_min(S)) costs k t. Returns (f, gap, spectrum of S)."""
    k = len(counts)
    f, a = _mp_objective_grad(mp, kmat, counts, tau)
    w = []
    for c in range(k):
        num = mp.fsum(mp.fsum(a[c, j] * kmat[j, t] for j in range(k)) * kmat[c, t] for t in range(k))
        den = mp.fsum(kmat[c, t] ** 2 for t in range(k))
        w.append(num / den)
    s = a - mp.diag(w)
    eig = sorted(mp.eigsy(s, eigvals_only=True))
    shift = max(mp.mpf(0), -eig[0])
    ax = mp.fsum(a[i, j] * kmat[i, j] for i in range(k) for j in range(k))
    lower = mp.fsum(w[c] for c in range(k) if w[c] < 0 or counts[c] == 1)
    pinned = all(w[c] < 0 or counts[c] == 1 for c in range(k))  # every diagonal at its bound 1
    vals, vecs = mp.eigsy(s)
    return f, ax - lower + k * shift, eig, pinned, (vals, vecs)


def _face_curvature(mp, kmat, counts, tau, directions, dps):
    """Smallest eigenvalue of the Hessian of f on the span of ``directions`` (Frobenius-orthonormal float64
    k x k symmetric matrices), by central differences of the exact gradient."""
    h = mp.mpf(10) ** (-(dps // 3))
    mats = [mp.matrix(d.tolist()) for d in directions]
    p = len(mats)
    hess = mp.zeros(p, p)
    for j, e in enumerate(mats):
        gp = _mp_objective_grad(mp, kmat + h * e, counts, tau)[1]
        gm = _mp_objective_grad(mp, kmat - h * e, counts, tau)[1]
        hv = (gp - gm) / (2 * h)
        for i, ei in enumerate(mats):
            hess[i, j] = mp.fsum(ei[a, b] * hv[a, b] for a in range(ei.rows) for b in range(ei.cols))
    hess = (hess + hess.T) / 2
    return min(mp.eigsy(hess, eigvals_only=True)) if p else mp.inf


def refine_reduced_in_extended_precision(program, x, rank: int, face_directions, dps: int | None = None):
    """Re-solve the reduced ``program`` near its float64 optimum ``x`` (of rank ``rank``) in ``dps`` digits
    and bound the distance of every minimiser from the result (module docstring). ``face_directions(v)``
    returns an orthonormal basis of the face's tangent directions for a range ``v`` (k x r) with every diagonal
    pinned (``ufm.solvers.verdict``). Returns ``(K float64, numbers)`` with ``radius`` among the numbers, or
    ``None`` when the case is not handled or not certified."""
    import mpmath

    counts = [int(c) for c in program.counts]
    if program.relu or program.counts.size > 5 or program.temperature < 0.01 or rank < 1 or not np.all(program.hi == 1):
        return None
    if dps is None:  # the multipliers are ~exp(-1/tau) and the curvature their square: room for both
        dps = int(40 + 1.8 / program.temperature)
    mp = mpmath.mp
    old = mp.dps
    mp.dps = dps
    try:
        tau = mp.mpf(program.temperature)
        w, q = np.linalg.eigh(x)
        v = q[:, -rank:] * np.sqrt(np.maximum(w[-rank:], 0.0))
        u = _unit_rows(mp, mp.matrix(v.tolist()))
        u, gn = _newton(mp, u, counts, tau, dps)
        kmat = _gram(mp, _unit_rows(mp, u))
        f, gap, eig, pinned, (vals, vecs) = _certificate(mp, kmat, counts, tau)
        if not (pinned and 0 <= gap < mp.mpf(10) ** (-(dps // 3))):
            return None
        small = mp.mpf(10) ** (-(dps // 4)) * max(abs(e) for e in vals)  # relative: the slack is ~exp(-1/tau)
        null = [j for j in range(len(vals)) if vals[j] <= small]
        v_face = np.array([[float(vecs[i, j]) for j in null] for i in range(vecs.rows)])
        mu = _face_curvature(mp, kmat, counts, tau, face_directions(v_face), dps)
        sigma = min([e for e in eig if e > small], default=mp.inf)
        if not mu > 0:
            return None
        radius = mp.sqrt(2 * gap / mu) + gap / sigma
        kf = np.array([[float(kmat[i, j]) for j in range(kmat.cols)] for i in range(kmat.rows)])
        return kf, {"dps": dps, "gap": float(gap), "curvature": float(mu), "slack_eigenvalue": float(sigma),
                    "gradient_norm": float(gn), "face_rank": len(null), "radius_extended": float(radius),
                    "radius": float(radius) + float(np.finfo(np.float64).eps * np.abs(kf).max())}  # + rounding to float64
    finally:
        mp.dps = old
