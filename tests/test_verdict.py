"""The geometry verdict of the exact solvers: ``exact`` only when the minimiser is unique and the returned
Gram is proved near it, ``not unique`` with minimisers exhibited, ``unresolved`` otherwise. The cases are
the ones a review found reported as certified with a wrong geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ufm.batching import epoch_batcher, uniqueness_conditions
from ufm.cli import main
from ufm.solvers.certificate import bm_refine
from ufm.geometry import orthogonal_frame_gram
from ufm.solvers import of_objective, reduced_objective, scl_gram_objective, solve_reduced, solve_sdp


def labels_of(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_review_case_is_the_exact_orthogonal_frame(capsys):
    # reported before as certified with delta_of 0.479: f(returned) - f(OF) = +1.6e-16, below float64
    counts = (73, 44, 42, 16, 15, 15, 12, 11)
    assert main(["solve", "--counts", ",".join(map(str, counts)), "--relu", "--temperature", "0.02", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out)[0] == "geometry" and "delta_of" not in out
    geo = out["geometry"]
    assert geo["verdict"] == "exact" and geo["proof"] == "theorem" and geo["delta_of"] == 0.0 and geo["radius"] == 0
    assert np.array_equal(np.array(out["returned"]["gram_class"]), np.eye(8))
    assert out["certificate"]["gap"] <= out["certificate"]["bound"]


@pytest.mark.parametrize("counts, tau", [((1000, 1), 0.01), ((4,) * 10, 0.01)])
def test_other_review_cases_return_the_of(counts, tau):
    res = solve_reduced(counts, tau, relu=True)
    assert res.verdict == "exact" and res.delta_of == 0.0
    if sum(counts) <= 40:
        sdp = solve_sdp(labels_of(counts), None, tau, relu=True)
        assert sdp.verdict == "exact" and np.array_equal(sdp.gram, orthogonal_frame_gram(labels_of(counts)))


def _random_setting(rng):
    k = int(rng.integers(2, 11))
    counts = np.maximum(1, np.round(np.exp(rng.uniform(0, np.log(100), k)))).astype(int)
    if counts.max() < 2:
        counts[0] = 2
    return counts, float(np.exp(rng.uniform(np.log(0.005), 0.0))), bool(rng.integers(2))


def _reference(counts, tau, seed):
    """An independent optimum without ReLU: Burer-Monteiro from a random start (unit diagonal)."""
    k = counts.size
    v = np.random.default_rng(seed).standard_normal((k, k))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    x, _ = bm_refine(lambda x: reduced_objective(x, counts, tau, grad=True), v @ v.T, np.ones(k), k)
    return x


def test_random_grid_of_500_reduced_settings_never_reports_a_wrong_geometry():
    rng = np.random.default_rng(0)
    seen = {}
    for i in range(500):
        counts, tau, relu = _random_setting(rng)
        res = solve_reduced(counts, tau, relu=relu)
        geo = res.geometry
        seen[relu, geo.verdict] = seen.get((relu, geo.verdict), 0) + 1
        singletons = int((counts == 1).sum())
        if relu:  # Theorem 1 + the uniqueness rule decide every ReLU case
            assert geo.verdict == ("exact" if singletons <= 1 else "not unique"), (counts, tau)
            if geo.verdict == "exact":
                assert np.array_equal(res.gram_class, np.eye(counts.size)) and res.delta_of == 0.0
            else:
                assert geo.delta_of_range[0] == 0.0 < geo.delta_of_range[1] and res.delta_of is None
        elif geo.verdict == "exact":
            assert geo.radius <= 1e-4
            if i % 5 == 0 and geo.proof == "second order":  # an independent optimum agrees within the radius
                ref = _reference(counts, tau, i)
                if reduced_objective(ref, counts, tau) <= res.objective + 1e-12:
                    assert np.abs(ref - res.gram_class).max() < 2e-4, (counts, tau)
            elif i % 5 == 0 and "extended" in geo.proof:  # float64 cannot order them; extended arithmetic can
                excess = _mp_excess(res.gram_class, _reference(counts, tau, i), counts, tau)
                assert excess >= -_rounding(res.gram_class, counts, tau), (counts, tau, excess)
        else:
            assert res.delta_of is None
    assert seen[True, "exact"] > 150 and seen[False, "exact"] > 50 and seen[False, "unresolved"] > 50, seen


def test_unresolved_says_why():
    res = solve_reduced((9, 5, 3), 0.005, relu=False)
    assert res.verdict == "unresolved" and res.delta_of is None and "float64" in res.geometry.reason
    assert res.certified  # the objective is certified all the same


def _rounding(kmat, counts, tau):
    """How much rounding a Gram's entries to float64 can move f: eps * sum |grad f|, with a factor 4."""
    return 4 * np.finfo(np.float64).eps * float(np.abs(reduced_objective(kmat, counts, tau, grad=True)[1]).sum())


def _mp_excess(kmat, other, counts, tau, dps=140):
    """f(other) - f(kmat) in ``dps`` digits, as a float (the difference is taken before rounding)."""
    import mpmath

    from ufm.solvers.precision import _mp_objective_grad

    with mpmath.workdps(dps):
        f = [_mp_objective_grad(mpmath.mp, mpmath.matrix(np.asarray(k).tolist()), list(map(int, counts)),
                                mpmath.mpf(tau))[0] for k in (kmat, other)]
        return float(f[1] - f[0])


@pytest.mark.parametrize("tau", [0.05, 0.02])
def test_extended_precision_decides_what_float64_cannot(tau):
    counts = np.array((200, 200, 20, 20))
    res = solve_reduced(counts, tau, relu=False)
    geo = res.geometry
    assert geo.verdict == "exact" and geo.proof.startswith("second order, extended precision") and geo.radius < 1e-12
    # in extended arithmetic the returned Gram is below the interior point's and an independent float64 optimum,
    # which float64 itself cannot order
    raw = res.info["raw_class_gram"]
    ref = _reference(counts, tau, 0)
    assert _mp_excess(res.gram_class, raw, counts, tau) > 1e-12  # the interior point's: float64 called it optimal
    assert _mp_excess(res.gram_class, ref, counts, tau) >= -_rounding(res.gram_class, counts, tau)


def test_single_class_batch_counterexample_is_unique():
    y = np.array([0, 0, 0, 1, 1])
    batches = [np.array([0, 1, 3, 4]), np.array([0, 1, 2])]
    assert uniqueness_conditions(y, batches).unique
    res = solve_sdp(y, batches, 0.1, relu=True)
    assert res.verdict == "exact" and np.array_equal(res.gram, orthogonal_frame_gram(y))


@pytest.mark.parametrize("counts, batches", [
    ((6, 6, 1, 1), None),  # two singleton classes: their cross entry is read by no anchor
    ((4, 4) + (1,) * 25, None),  # 25 singleton classes: their 300 cross entries are read by no anchor
    ((4, 4, 2, 2), [np.arange(8), np.arange(8, 12)]),  # classes kept apart
])
def test_not_unique_exhibits_minimisers_with_other_geometry(counts, batches):
    y = labels_of(counts)
    res = solve_sdp(y, batches, 0.1, relu=True)
    geo = res.geometry
    assert geo.verdict == "not unique" and res.delta_of is None
    lo, hi = geo.delta_of_range
    assert lo == 0.0 and hi > 0.1  # the OF and a minimiser far from it
    assert abs(res.objective - of_objective(y, batches, 0.1)) <= res.certificate.bound


def test_n2000_minibatches_without_relu_are_certified_with_a_verdict():
    counts = (1000, 500, 300, 200)
    y = labels_of(counts)
    batches = epoch_batcher(y, 64, seed=0)(0)
    res = solve_sdp(y, batches, 0.1, relu=False)
    assert res.certified and res.certificate.gap <= res.certificate.bound
    # batches of one epoch never share a sample: the cross-batch entries are read by no anchor
    assert res.verdict == "not unique" and res.geometry.delta_of_range[1] - res.geometry.delta_of_range[0] > 0.1
    f = scl_gram_objective(res.gram, y, batches, 0.1)
    assert abs(f - res.objective) < 1e-9
