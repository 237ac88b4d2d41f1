"""The geometry verdict of a certified Gram program: what the certificate proves about the MINIMISER.

A certificate bounds f(X) - f*; it does not say that X is near a minimiser. At small temperatures the
objective changes by less than float64 resolves over whole regions (gradients ~ e^{-margin/tau}), and
some batchings leave entries that no anchor reads, so the minimiser is not unique. Three answers:

* ``exact``: the minimiser is unique and the returned Gram is within ``radius`` of it (max over entries
  of the class-mean Gram). Two proofs:
    - ``theorem``: a theorem names the unique minimiser (with ReLU: Theorem 1, the orthogonal frame attains
      f*, and the uniqueness rule of ``ufm.batching.uniqueness_conditions`` says it is the only one); the
      pipeline certifies the theorem's point and returns it (``radius`` 0). This is decided in exact
      arithmetic, whatever float64 resolves: at the OF the multipliers N_cd = A_cd > 0 and
      u_c = -A_cc > 0 make f rise at least linearly away from it (``min_pinning_weight`` reports how
      steeply; at tau = 0.02 it is ~e^{-50}, far below what float64 resolves in f).
    - ``second order``: the first-order conditions (the certificate's multipliers) confine every
      minimiser to the face {Y = V W V^T} of the range V of X with the pinned bounds, and the objective's
      Hessian on that face has smallest eigenvalue mu > 0. With g = max(gap, float64 resolution of f),
      every minimiser Y satisfies 0 >= f(Y) - f(X) >= -g + (mu/2) ||Y - X||^2 on the face (convexity plus
      the Frank-Wolfe inequality <A, Y - X> >= -gap), so ``radius`` = sqrt(2 g / mu) plus the first-order
      part g / sigma (sigma the smallest non-zero eigenvalue of the dual slack). mu is measured at X (a
      local estimate, not a bound over the whole face).
* ``not unique``: feasible points with the same objective as the returned one and a different class-mean
  Gram are exhibited: moves of entries that no anchor term reads (f is unchanged bit for bit), or a
  minimiser a theorem provides. ``delta_of_range`` is the range over the points exhibited (a lower bound
  on the true range).
* ``unresolved``: neither: say why (curvature below what float64 resolves, face too large to analyse).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ufm.solvers.certificate import class_gram_deltas, feasibility_of

__all__ = ["GeometryVerdict", "EXACT", "NOT_UNIQUE", "UNRESOLVED", "decide_geometry"]

EXACT, NOT_UNIQUE, UNRESOLVED = "exact", "not unique", "unresolved"
_EPS = np.finfo(np.float64).eps
_MAX_FACE = 1500  # the second-order check forms the Hessian on faces of at most this dimension


@dataclass(frozen=True)
class GeometryVerdict:
    """What is proved about the minimiser's geometry (module docstring).

    verdict: ``exact``, ``not unique`` or ``unresolved``; proof: ``theorem``, ``second order``,
    ``first order``, ``flat directions`` or ``""``; reason: one sentence with the numbers.
    delta_of / delta_etf: the minimiser's (``exact`` only, else ``None``).
    radius: bound on max_cd |K*_cd - K_cd| between the minimiser's class-mean Gram and the returned one.
    delta_of_range / delta_etf_range: over the minimisers exhibited (``not unique``).
    """

    verdict: str
    proof: str
    reason: str
    delta_of: float | None = None
    delta_etf: float | None = None
    radius: float | None = None
    delta_of_range: tuple | None = None
    delta_etf_range: tuple | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def decide_geometry(program, x, cert, name: str, tol: float, geometry_tol: float, certify_opts: dict):
    """Verdict for a certified point X (module docstring), in order: theorem, exhibited minimisers,
    second order. Returns ``(x, certificate, verdict, name)`` (X replaced by the theorem's minimiser when
    one is certified)."""
    known = _theorem(program, x, cert, tol, certify_opts)
    if known is not None:
        return known
    verdict = _exhibited(program, x, cert, name, geometry_tol)
    if verdict is None:
        verdict = _second_order(program, x, cert, geometry_tol)
    if verdict.verdict == UNRESOLVED and program.kind == "reduced":
        extended = _extended_precision(program, x, cert, tol, geometry_tol, certify_opts)
        if extended is not None:
            return extended + (name + " + extended precision",)
    return x, cert, verdict, name


# ----------------------------------------------------------------------------- 1. a theorem's minimiser
def _theorem(program, x, cert, tol, certify_opts):
    from ufm.solvers.pipeline import certify

    known = program.known_minimiser()
    if known is None:
        return None
    xs, reason = known
    c = certify(program, xs, tol, "auto", **certify_opts)
    lower = max(cert.lower_bound, c.lower_bound)
    if not (c.feasibility.feasible and c.objective - lower <= c.bound):
        return None  # cannot happen if the theorem holds; the other routes then decide
    c = replace(c, lower_bound=float(lower), gap=float(max(0.0, c.objective - lower)), certified=True,
                candidate="theorem", candidates={**cert.candidates, "theorem": {
                    "objective": c.objective, "gap": c.gap, "feasible": True}})
    d_of, d_etf = class_gram_deltas(program.class_gram(xs))
    returned = class_gram_deltas(program.class_gram(x))[0]
    w = _min_pinning_weight(c)
    verdict = GeometryVerdict(
        EXACT, "theorem", f"{reason}; its objective is certified (gap {c.gap:.1e}); f rises at least linearly away "
        f"from it with slope >= {w:.2e}", delta_of=d_of, delta_etf=d_etf, radius=0.0,
        details={"min_pinning_weight": w, "solver_point_delta_of": returned,
                 "solver_point_objective_minus_minimiser": cert.objective - c.objective})
    return xs, c, verdict, "theorem"


def _min_pinning_weight(cert) -> float:
    """Smallest strictly positive multiplier of an active bound (N_cd on zero entries, u_c / l_c on the
    diagonal): the slope of the certificate's linear lower bound on f away from X."""
    d = cert.duals or {}
    vals = [np.asarray(d.get(k, []), dtype=np.float64).ravel() for k in ("N", "u", "l")]
    vals = np.concatenate(vals) if vals else np.zeros(0)
    vals = vals[vals > 0]
    return float(vals.min()) if vals.size else 0.0


# ----------------------------------------------------------------------------- 2. exhibited minimisers
def _exhibited(program, x, cert, name, geometry_tol):
    """``not unique`` when a flat move of X (or a theorem's minimiser) has the same objective to within the
    certificate's bound and a different class-mean Gram; else ``None``."""
    k0 = program.class_gram(x)
    points = [(name, k0, cert.objective)]
    for nm, xm in program.flat_moves(x):
        feas = feasibility_of(xm, program.lo, program.hi, program.nonneg, program.represented_min_eig(xm))
        f = float(program.objective(xm))
        if feas.feasible and f - cert.lower_bound <= cert.bound:
            points.append((nm, program.class_gram(xm), f))
    moved = max(float(np.abs(k - k0).max()) for _, k, _ in points)
    if moved <= geometry_tol:
        return None
    deltas = [class_gram_deltas(k) for _, k, _ in points]
    of = [d[0] for d in deltas]
    etf = [d[1] for d in deltas if np.isfinite(d[1])]
    names = ", ".join(nm for nm, _, _ in points[1:])
    return GeometryVerdict(
        NOT_UNIQUE, "flat directions",
        f"{len(points)} minimisers exhibited ({names}; each within the certified bound {cert.bound:.1e} of f*) "
        f"whose class-mean Grams differ by up to {moved:.3g}",
        delta_of_range=(min(of), max(of)), delta_etf_range=(min(etf), max(etf)) if etf else None,
        details={"points": [nm for nm, _, _ in points], "max_class_gram_difference": moved})


# ----------------------------------------------------------------------------- 4. extended precision
def _extended_precision(program, x, cert, tol, geometry_tol, certify_opts):
    """The small reduced program re-solved and certified in mpmath (``ufm.solvers.precision``): ``(x, cert,
    verdict)`` when its radius is within the tolerance, else ``None``."""
    from ufm.solvers.pipeline import certify
    from ufm.solvers.precision import refine_reduced_in_extended_precision

    w = np.linalg.eigvalsh(x)
    rank = int((w > 1e-6 * max(1.0, w[-1])).sum())

    def face_directions(v):
        rows = np.array([_sym_coords(v[i], v[i]) for i in range(v.shape[0])])  # every diagonal pinned
        _, sv, vt = np.linalg.svd(rows, full_matrices=True)
        basis = vt[int((sv > 1e-10 * max(1.0, sv.max())).sum()):].T
        return [v @ _from_coords(basis[:, j], v.shape[1]) @ v.T for j in range(basis.shape[1])]

    out = refine_reduced_in_extended_precision(program, x, rank, face_directions)
    if out is None or out[1]["radius"] > geometry_tol:
        return None
    kf, numbers = out
    c = certify(program, kf, tol, "auto", **certify_opts)
    lower = max(cert.lower_bound, c.lower_bound)
    if not (c.feasibility.feasible and c.objective - lower <= c.bound):
        return None
    c = replace(c, lower_bound=float(lower), gap=float(max(0.0, c.objective - lower)), certified=True,
                candidate=cert.candidate + " + extended precision", candidates=cert.candidates)
    d_of, d_etf = class_gram_deltas(kf)
    verdict = GeometryVerdict(
        EXACT, f"second order, extended precision ({numbers['dps']} digits)",
        f"float64 cannot resolve it; in {numbers['dps']} digits the optimum is certified with gap {numbers['gap']:.1e} and "
        f"curvature {numbers['curvature']:.2e} on its face: every minimiser lies within {numbers['radius']:.1e}",
        delta_of=d_of, delta_etf=d_etf, radius=numbers["radius"], details=numbers)
    return kf, c, verdict


# ----------------------------------------------------------------------------- 3. second order
def _second_order(program, x, cert, geometry_tol):
    """``exact`` (second order) or ``unresolved`` from the face of X and the Hessian on it."""
    f = cert.objective
    g = max(cert.gap, 64 * _EPS * max(1.0, abs(f)))
    face = _face(program, x, cert)
    if isinstance(face, str):
        return GeometryVerdict(UNRESOLVED, "", face)
    basis, v, sigma = face
    radius1 = g / sigma if sigma > 0 else np.inf
    if basis.shape[1] == 0:
        mu, radius2 = np.inf, 0.0
    else:
        mu = _face_curvature(program, x, v, basis)
        radius2 = float(np.sqrt(2 * g / mu)) if mu > 0 else np.inf
    radius = float(program.class_radius(radius1 + radius2))
    details = {"face_dimension": int(basis.shape[1]), "face_rank": int(v.shape[1]), "curvature": mu,
               "slack_eigenvalue": sigma, "resolution": g}
    if radius <= geometry_tol:
        d_of, d_etf = class_gram_deltas(program.class_gram(x))
        proof = "second order" if basis.shape[1] else "first order"
        return GeometryVerdict(EXACT, proof, f"every minimiser lies within {radius:.1e} of the returned Gram "
                               f"(face of dimension {basis.shape[1]}, curvature {mu:.2e}, resolution {g:.1e})",
                               delta_of=d_of, delta_etf=d_etf, radius=radius, details=details)
    why = (f"the objective cannot tell the candidates apart in float64: over a radius {radius:.1e} around the "
           f"returned Gram it changes by at most {g:.1e} (curvature on the face {mu:.2e}, smallest dual slack "
           f"eigenvalue {sigma:.2e}, e.g. exp(-1/tau) = {np.exp(-1 / program.temperature):.1e})")
    return GeometryVerdict(UNRESOLVED, "", why, radius=radius, details=details)


def _face(program, x, cert):
    """Orthonormal basis of the face's tangent directions E = V W V^T (V: null space of the dual slack S,
    W symmetric) with every bound that has a positive multiplier kept; or a sentence saying why not."""
    d = cert.duals
    s = np.asarray(d["S"])
    m = s.shape[0]
    if m > 4000:
        return f"the program has {m} variables per side: too large for the second-order check"
    w, q = np.linalg.eigh(s)
    scale = max(1.0, float(np.abs(w).max()))
    null = w <= 1e-8 * scale
    v = q[:, null]
    r = v.shape[1]
    sigma = float(w[~null].min()) if (~null).any() else np.inf
    if r * (r + 1) // 2 > _MAX_FACE:
        return f"the face has rank {r} ({r * (r + 1) // 2} directions): too large for the second-order check"
    thr = 1e-12 * max(1.0, float(np.abs(d["A"]).max()))
    diag_pinned = (program.lo == program.hi) | (np.asarray(d["l"]) > thr) | (np.asarray(d["u"]) > thr)
    rows = [_sym_coords(v[i], v[i]) for i in np.flatnonzero(diag_pinned)]
    if program.nonneg:
        iu = np.argwhere(np.triu(np.asarray(d["N"]) > thr, 1))
        if iu.shape[0] > 200_000:
            return f"{iu.shape[0]} active non-negativity bounds: too many for the second-order check"
        rows += [_sym_coords(v[i], v[j]) for i, j in iu]
    p0 = r * (r + 1) // 2
    if not rows:
        return np.eye(p0), v, sigma
    mat = np.array(rows)
    _, sv, vt = np.linalg.svd(mat, full_matrices=True)
    rank = int((sv > 1e-10 * max(1.0, sv.max() if sv.size else 1.0)).sum())
    return vt[rank:].T, v, sigma


def _sym_coords(a, b):
    """Coordinates of the functional W -> a^T W b (W symmetric) in the orthonormal basis
    {e_i e_i^T} U {(e_i e_j^T + e_j e_i^T)/sqrt 2, i < j}."""
    outer = np.outer(a, b)
    sym = outer + outer.T
    iu = np.triu_indices(a.size, 1)
    return np.concatenate([np.diag(outer), sym[iu] / np.sqrt(2)])


def _from_coords(c, r):
    w = np.zeros((r, r))
    w[np.diag_indices(r)] = c[:r]
    iu = np.triu_indices(r, 1)
    w[iu] = c[r:] / np.sqrt(2)
    return w + np.triu(w, 1).T


def _face_curvature(program, x, v, basis) -> float:
    """Smallest eigenvalue of the Hessian of f on the face (central differences of the exact gradient)."""
    r, p = v.shape[1], basis.shape[1]
    h = 1e-4 * program.temperature
    cols = np.zeros((basis.shape[0], p))
    for j in range(p):
        e = v @ _from_coords(basis[:, j], r) @ v.T
        hv = (program.objective(x + h * e, grad=True)[1] - program.objective(x - h * e, grad=True)[1]) / (2 * h)
        cols[:, j] = _sym_coords_matrix(v.T @ hv @ v)
    hess = basis.T @ cols
    return float(np.linalg.eigvalsh((hess + hess.T) / 2)[0])


def _sym_coords_matrix(y):
    """Coordinates of the functional W -> <W, Y> (Y symmetric) in the basis of :func:`_sym_coords`."""
    y = (y + y.T) / 2
    iu = np.triu_indices(y.shape[0], 1)
    return np.concatenate([np.diag(y), np.sqrt(2) * y[iu]])
