"""One certified-solver pipeline for the convex Gram programs of the SCL unconstrained features model.

A program (``GramProgram``) is ``min f(X)`` over ``C = {X PSD, lo <= diag X <= hi, X_cd >= 0 off the
diagonal (ReLU only)}``; it supplies its objective and gradient, its bounds, the class-mean Gram a point
represents, and (optionally) points that mathematics rather than a solver provides: a minimiser known
by a theorem, and moves along directions the objective does not read. The n x n program
(``ufm.solvers.sdp``) and the k x k reduced program (``ufm.solvers.reduced``) are two such programs.

One driver, :func:`solve_program`, takes a program, the solver's point and a stream of polished
candidates, and

1. certifies the objective (:func:`certify`: Frank-Wolfe gap with a dual bound, ``ufm.solvers.certificate``)
   and keeps the best certified candidate (:func:`select_certified`);
2. decides the geometry (``ufm.solvers.verdict.decide_geometry``): ``exact``, ``not unique`` or
   ``unresolved``;
3. returns a :class:`SolveResult` whose objective certificate and geometry verdict are separate,
   typed objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ufm._checks import check_choice, check_positive
from ufm.solvers.certificate import Certificate, SolverError, class_gram_deltas, dual_gap_bound, feasibility_of
from ufm.solvers.objective import check_temperature

__all__ = ["GramProgram", "SolveResult", "certify", "select_certified", "solve_program", "solve_conic", "check_solver",
           "project_to_bounds"]

# interior-point accuracy asked of Clarabel: the certificate judges the answer, but polishing needs a close start
_CLARABEL_DEFAULTS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "max_iter": 500}


def solve_conic(prob, solver: str, what: str, verbose: bool = False, *, temperature: float | None = None, **opts) -> str:
    """Solve a cvxpy problem with ``solver`` (Clarabel: tight defaults unless ``opts`` override them); the
    status, or :class:`SolverError` naming ``what`` (and the ``temperature``, when given, with what to try)
    when the solver fails or returns no optimum. An inaccurate optimum is accepted here: the project's
    certificate judges it."""
    import warnings

    import cvxpy as cp

    check_solver(solver)
    if solver.upper() == "CLARABEL":
        opts = {**_CLARABEL_DEFAULTS, **opts}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            prob.solve(solver=solver, verbose=verbose, **opts)
    except cp.error.SolverError as err:
        raise SolverError(f"{solver} failed on {what}: {err}{_temperature_hint(temperature)}") from err
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise SolverError(f"{solver} did not solve {what}: status {prob.status}{_temperature_hint(temperature)}")
    return str(prob.status)


def check_solver(solver: str) -> str:
    """``solver`` if cvxpy has it installed (case-insensitive, as cvxpy reads it); else a ValueError listing them."""
    import cvxpy as cp

    installed = tuple(cp.installed_solvers())
    if not isinstance(solver, str) or solver.upper() not in installed:
        check_choice(solver, "solver (an installed cvxpy solver)", installed)
    return solver


def _temperature_hint(temperature: float | None) -> str:
    """What a conic failure says about the temperature: the program's data scale as 1 / temperature."""
    if temperature is None:
        return ""
    hint = f" (temperature={temperature:g}: the program's entries are G / temperature, up to {1 / temperature:.3g} in size"
    if temperature < 1e-2:  # where failures were seen: the entries' scale, not the solver, is the likely cause
        hint += "; try a larger temperature, another solver, or the first-order method"
    return hint + ")"


class GramProgram:
    """``min f(X)`` over ``C = {X PSD, lo <= diag X <= hi, X_offdiag >= 0 if nonneg}`` (module docstring).

    Subclasses implement :meth:`objective` and may override the other hooks; each hook's default is the
    honest "nothing known".
    """

    kind = "gram"

    def __init__(self, lo, hi, nonneg: bool, temperature: float, relu: bool, counts):
        self.lo = np.asarray(lo, dtype=np.float64)
        self.hi = np.asarray(hi, dtype=np.float64)
        self.nonneg = bool(nonneg)
        self.temperature = check_temperature(temperature)  # in [TEMPERATURE_MIN, inf): ufm.solvers.objective
        self.relu = bool(relu)
        self.counts = np.asarray(counts)

    def objective(self, x, grad: bool = False):
        """f(X), and with ``grad`` its symmetric gradient A: f(X + E) = f(X) + <A, E> + o(E)."""
        raise NotImplementedError

    def class_gram(self, x) -> np.ndarray:
        """The k x k Gram of the class means that X represents (the geometry the verdict is about)."""
        return np.asarray(x, dtype=np.float64)

    def represented_min_eig(self, x) -> float | None:
        """Smallest eigenvalue of the Gram X stands for, when that is not X itself (``None``: X itself)."""
        return None

    def known_minimiser(self):
        """``(X*, reason)`` when a theorem names the unique minimiser, else ``None``."""
        return None

    def flat_moves(self, x):
        """Yield ``(name, X')``: feasible points with f(X') = f(X) in exact arithmetic (the objective does not
        read the entries that moved), or minimisers a theorem provides. Default: none."""
        return iter(())

    def class_radius(self, radius: float) -> float:
        """A bound on max_cd |K'_cd - K_cd| for the class-mean Grams of two points X, X' with
        ||X' - X||_F <= radius (X is the class Gram itself by default)."""
        return float(radius)


def project_to_bounds(kmat, lo, hi, relu: bool, dpin=None, zpin=None) -> np.ndarray:
    """A feasible Gram near K (either program): pins applied, PSD by eigenvalue clipping, the diagonal brought
    into [lo, hi] by a congruence D K D (keeps PSD and signs), exact diagonal, ReLU clip."""
    k = kmat.shape[0]
    x = (kmat + kmat.T) / 2
    if zpin is not None:
        x = np.where(zpin, 0.0, x)
    target = np.clip(np.diag(x), lo, hi)
    if dpin is not None:
        target = np.where(np.isnan(dpin), target, dpin)
    np.fill_diagonal(x, target)
    w, q = np.linalg.eigh(x)
    if w[0] < 0:
        x = (q * np.maximum(w, 0.0)) @ q.T
    dg = np.diag(x)
    scale = np.sqrt(np.where(dg > 0, target / np.where(dg > 0, dg, 1.0), 1.0))
    x = scale[:, None] * x * scale[None, :]
    x = (x + x.T) / 2
    np.fill_diagonal(x, target)
    if zpin is not None:
        x = np.where(zpin, 0.0, x)
        np.fill_diagonal(x, target)
    if relu:
        off = ~np.eye(k, dtype=bool)
        x[off] = np.maximum(x[off], 0.0)
    return x


def certify(program: GramProgram, x, tol: float, dual_sdp: bool | str = "auto", solver: str = "CLARABEL",
            feas_tol: float = 1e-9, diag_tol: float = 1e-12) -> Certificate:
    """Certificate of the objective at X (``ufm.solvers.certificate`` for the bound): ``gap`` bounds
    f(X) - f*, ``certified`` when X is feasible and the gap is at most ``tol * max(1, |f(X)|)``."""
    tol = check_positive(tol, "tol")
    x = np.asarray(x, dtype=np.float64)
    f, a = program.objective(x, grad=True)
    target = tol * max(1.0, abs(f))
    dg = dual_gap_bound(a, x, program.lo, program.hi, program.nonneg, dual_sdp=dual_sdp, target=target,
                        solver=solver)
    feas = feasibility_of(x, program.lo, program.hi, program.nonneg, program.represented_min_eig(x), feas_tol,
                          diag_tol)
    return Certificate(objective=float(f), lower_bound=float(f - dg["gap"]), gap=float(dg["gap"]), bound=target,
                       tolerance=tol, certified=bool(feas.feasible and dg["gap"] <= target), feasibility=feas,
                       method=dg["method"], gaps=dg["gaps"], lambda_min_S=dg["lambda_min_S"],
                       duals=dict(dg["duals"], A=a))


def select_certified(first, candidates, certify_fn, polish: bool = True, dual_fallback: bool = True,
                     margin: float = 1e-3):
    """Certify the solver's point and the polished candidates; return the certified one.

    ``first`` is ``(name, x)``; ``candidates`` yields ``(name, x)`` lazily (not started when ``first`` is
    certified with the margin ``gap <= margin * bound``, stopped once a candidate is); ``certify_fn(x, dual_sdp)`` returns a :class:`Certificate`. Every candidate's dual
    bound is a valid lower bound on f*, so the best of them (``lower``) certifies the chosen point: the
    feasible candidate with the lowest objective (near-ties go to the earlier, more polished one) is
    accepted when ``f - lower <= bound``. Otherwise, if ``dual_fallback``, the best feasible point is
    certified once more with the explicit dual SDP. Returns ``(chosen, evals, lower)`` with ``chosen`` =
    ``(name, x, certificate)`` (the certificate carrying the combined bound) or ``None``.
    """
    name, x = first
    cert = certify_fn(x, False)
    evals = [(name, x, cert)]
    lower = cert.lower_bound
    if polish and not (cert.feasibility.feasible and cert.gap <= margin * cert.bound):
        for name, x in candidates:
            cert = certify_fn(x, False)
            evals.insert(len(evals) - 1, (name, x, cert))
            lower = max(lower, cert.lower_bound)
            if cert.feasibility.feasible and cert.gap <= 1e-3 * cert.bound:
                break
    feasible = [e for e in evals if e[2].feasibility.feasible]
    chosen = None
    if feasible:
        fmin = min(e[2].objective for e in feasible)
        best = next(e for e in feasible if e[2].objective <= fmin + 1e-14 * max(1.0, abs(fmin)))
        if best[2].objective - lower <= best[2].bound:
            chosen = best
    if chosen is None and feasible and dual_fallback:
        name, x, _ = min(feasible, key=lambda e: e[2].objective)
        cert = certify_fn(x, True)
        lower = max(lower, cert.lower_bound)
        if cert.feasibility.feasible and cert.objective - lower <= cert.bound:
            chosen = (name, x, cert)
    if chosen is None:
        return None, evals, lower
    name, x, cert = chosen
    summary = {nm: {"objective": c.objective, "gap": c.gap, "feasible": c.feasibility.feasible} for nm, _, c in evals}
    cert = replace(cert, gap=float(max(0.0, cert.objective - lower)), lower_bound=float(lower), certified=True,
                   candidate=name, candidates=summary)
    return (name, x, cert), evals, lower


@dataclass
class SolveResult:
    """Answer of an exact solver of the SCL unconstrained features model.

    certificate: the OBJECTIVE's certificate (:class:`~ufm.solvers.certificate.Certificate`): f at the
        returned Gram, a proved lower bound on f*, the gap.
    geometry: the GEOMETRY verdict (:class:`~ufm.solvers.verdict.GeometryVerdict`): ``exact`` (unique
        minimiser, the returned Gram within ``geometry.radius`` of it), ``not unique`` (with the range of
        ``delta_of`` over minimisers exhibited) or ``unresolved``.
    gram: the n x n sample Gram returned (``None`` for the reduced program unless ``full_gram=True``).
    gram_class: the k x k Gram of the class means of the returned Gram.
    delta_of / delta_etf: the MINIMISER's distances to the orthogonal frame / simplex ETF: set only when
        the verdict is ``exact`` (``None`` otherwise); ``returned_delta_of`` is the returned Gram's.
    within / across: a_c and b_cd of the returned class Gram (reduced program).
    """

    gram: np.ndarray | None
    gram_class: np.ndarray
    objective: float
    certificate: Certificate
    geometry: object
    status: str
    seconds: float
    solver: str
    method: str
    counts: np.ndarray | None = None
    temperature: float = 0.1
    relu: bool = True
    polished: bool = False
    within: np.ndarray | None = None
    across: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def certified(self) -> bool:
        """The objective is certified (always True for a returned result: otherwise the solver raises)."""
        return bool(self.certificate.certified)

    @property
    def gap(self) -> float:
        return float(self.certificate.gap)

    @property
    def verdict(self) -> str:
        return self.geometry.verdict

    @property
    def delta_of(self) -> float | None:
        return self.geometry.delta_of

    @property
    def delta_etf(self) -> float | None:
        return self.geometry.delta_etf

    @property
    def returned_delta_of(self) -> float:
        return class_gram_deltas(self.gram_class)[0]

    @property
    def returned_delta_etf(self) -> float:
        return class_gram_deltas(self.gram_class)[1]

    def to_dict(self) -> dict:
        """The verdict first, then the objective's certificate, then the returned point (for JSON)."""
        return {"geometry": self.geometry.to_dict(), "objective": self.objective,
                "certificate": self.certificate.to_dict(), "certified_objective": self.certified,
                "returned": {"delta_of": self.returned_delta_of, "delta_etf": self.returned_delta_etf,
                             "gram_class": self.gram_class},
                "status": self.status, "method": self.method, "solver": self.solver, "seconds": self.seconds}


def solve_program(program: GramProgram, first, candidates, *, tol: float, polish: bool = True,
                  dual_fallback: bool = True, geometry_tol: float = 1e-4, status: str = "",
                  certify_opts: dict | None = None, margin: float = 1e-3) -> tuple:
    """The pipeline (module docstring): certify the candidates, decide the geometry.

    Returns ``(x, certificate, verdict, name)``: the Gram returned (the known minimiser when a theorem
    names it), its certificate with the combined lower bound, and the geometry verdict.
    Raises :class:`SolverError` when no candidate is certified.
    """
    from ufm.solvers.verdict import decide_geometry

    opts = certify_opts or {}
    chosen, evals, lower = select_certified(first, candidates, lambda x, d: certify(program, x, tol, d, **opts),
                                            polish=polish, dual_fallback=dual_fallback, margin=margin)
    if chosen is None:
        summary = "; ".join(f"{nm}: f={c.objective:.15g}, own gap={c.gap:.3g}, feasible={c.feasibility.feasible}, "
                            f"min_eig={c.feasibility.min_eig:.3g}" for nm, _, c in evals)
        raise SolverError(f"{program.kind} program (relu={program.relu}, temperature={program.temperature}) was not certified "
                          f"to tol={tol}: best lower bound on f* {lower:.15g}; candidates: {summary}; "
                          f"solver status {status}")
    name, x, cert = chosen
    x, cert, verdict, name = decide_geometry(program, x, cert, name, tol, geometry_tol, opts)
    return x, cert, verdict, name

