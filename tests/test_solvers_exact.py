"""Exact solvers of the SCL unconstrained features model: the n x n SDP, the k x k reduced program and
their certificates. The numbers asserted are the theorem's: distances to the predicted frame, the
closed-form OF objective, certified duality gaps (and that the gap bounds the true suboptimality)."""

from __future__ import annotations

import numpy as np
import pytest

from ufm.batching import uniqueness_conditions
from ufm.geometry import delta_etf_from_means, delta_of_from_means, orthogonal_frame_gram, sample_gram, simplex_etf_gram
from ufm.solvers import (
    SolverError,
    certify_class_gram,
    certify_gram,
    class_gram_deltas,
    class_gram_to_gram,
    class_mean_gram,
    of_objective,
    reduced_objective,
    scl_gram_objective,
    solve_reduced,
    solve_sdp,
)

TAU = 0.1


def labels_of(counts):
    return np.repeat(np.arange(len(counts)), counts)


def random_class_gram(counts, seed, relu):
    """A feasible class-mean Gram: K = Gram of the class means of random unit features (block form)."""
    rng = np.random.default_rng(seed)
    k = len(counts)
    m = rng.standard_normal((k, k + 2))
    if relu:
        m = np.abs(m)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    within = rng.uniform(0.2, 0.9, size=k)
    kmat = m @ m.T * 0.6
    n = np.asarray(counts, dtype=float)
    np.fill_diagonal(kmat, within + (1 - within) / n)
    return kmat


# ----------------------------------------------------------------------------- reduced objective
def test_reduced_objective_is_the_gram_objective_and_its_gradient():
    counts = (4, 3, 2, 1)
    y = labels_of(counts)
    kmat = random_class_gram(counts, seed=0, relu=False)
    g = class_gram_to_gram(kmat, counts)
    assert np.min(np.linalg.eigvalsh(g)) > 0
    np.testing.assert_allclose(class_mean_gram(g, y), kmat, atol=1e-14)
    f_red, a = reduced_objective(kmat, counts, TAU, grad=True)
    assert abs(f_red - scl_gram_objective(g, y, None, TAU)) < 1e-12
    rng = np.random.default_rng(1)
    e = rng.standard_normal((4, 4))
    e = (e + e.T) / 2
    e[3, 3] = 0.0  # the singleton's K_cc is fixed
    h = 1e-6
    fd = (reduced_objective(kmat + h * e, counts, TAU) - reduced_objective(kmat - h * e, counts, TAU)) / (2 * h)
    assert abs(fd - (a * e).sum()) < 1e-7 * max(1.0, abs(fd))


def test_class_gram_deltas_match_the_geometry_metrics():
    rng = np.random.default_rng(3)
    means = rng.standard_normal((5, 7))
    d_of, d_etf = class_gram_deltas(means @ means.T)
    assert abs(d_of - delta_of_from_means(means)) < 1e-12
    assert abs(d_etf - delta_etf_from_means(means)) < 1e-12


# ----------------------------------------------------------------------------- ReLU: the orthogonal frame
@pytest.mark.parametrize("counts", [(20, 20, 20), (50, 5, 5, 1), (100, 10, 1), (5000, 500, 50, 5)],
                         ids=["R1", "R10-singleton", "R100-singleton", "5000-500-50-5"])
def test_relu_reduced_optimum_is_the_orthogonal_frame(counts):
    res = solve_reduced(counts, TAU, relu=True)
    y = labels_of(counts)
    assert res.certified
    assert abs(res.objective - of_objective(y, None, TAU)) < 1e-9
    assert res.delta_of < 1e-6
    assert res.certificate.gap < 1e-10
    assert res.certificate.lower_bound <= res.objective
    assert np.all(np.abs(res.across) < 1e-9) and np.all(np.abs(res.within[np.array(counts) > 1] - 1) < 1e-9)
    assert res.certificate.feasibility.min_eig >= -1e-9


def test_relu_of_certificate_is_exact_and_rejects_a_perturbed_frame():
    counts = (30, 3, 1)
    cert = certify_class_gram(np.eye(3), counts, TAU, relu=True)
    assert cert.certified and abs(cert.gap) < 1e-12
    k_bad = np.eye(3)
    k_bad[0, 1] = k_bad[1, 0] = 0.05
    bad = certify_class_gram(k_bad, counts, TAU, relu=True)
    f_star = of_objective(labels_of(counts), None, TAU)
    assert not bad.certified
    assert bad.gap >= bad.objective - f_star - 1e-12 > 0  # the gap bounds the true suboptimality


# ----------------------------------------------------------------------------- SDP vs reduced
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "no-relu"])
@pytest.mark.parametrize("counts", [(4, 3, 2), (5, 5, 5)])
def test_sdp_agrees_with_reduced(counts, relu):
    y = labels_of(counts)
    sdp = solve_sdp(y, None, TAU, relu=relu)
    red = solve_reduced(counts, TAU, relu=relu, full_gram=True)
    assert sdp.certified and red.certified
    assert np.abs(sdp.gram - red.gram).max() < 1e-6
    assert abs(sdp.objective - red.objective) < 1e-9
    assert sdp.certificate.gap <= 1e-7 * max(1.0, abs(sdp.objective))
    if relu:
        assert sdp.delta_of < 1e-6 and abs(sdp.objective - of_objective(y, None, TAU)) < 1e-9
    elif len(set(counts)) == 1:
        assert sdp.delta_etf < 1e-6 and red.delta_etf < 1e-6


def test_class_symmetry_reduction_agrees_with_the_plain_reduced_program():
    for relu in (True, False):
        a = solve_reduced((6, 6, 3, 3), TAU, relu=relu, symmetry=True)
        b = solve_reduced((6, 6, 3, 3), TAU, relu=relu, symmetry=False)
        assert np.abs(a.gram_class - b.gram_class).max() < 1e-6
        assert abs(a.objective - b.objective) < 1e-12


# ----------------------------------------------------------------------------- no ReLU
def test_no_relu_balanced_is_the_simplex_etf():
    res = solve_reduced((8, 8, 8, 8), TAU, relu=False)
    assert res.certified and res.delta_etf < 1e-6
    etf = simplex_etf_gram(4)
    assert np.abs(res.gram_class - etf).max() < 1e-6  # within-class collapse (K_cc = 1) and K = ETF Gram
    assert abs(res.objective - reduced_objective(etf, (8, 8, 8, 8), TAU)) < 1e-12


def test_no_relu_imbalanced_is_neither_etf_nor_of():
    counts = (20, 2, 2)
    y = labels_of(counts)
    res = solve_reduced(counts, TAU, relu=False)
    assert res.certified
    assert res.delta_etf > 0.01 and res.delta_of > 0.1
    # the PSD constraint is active (singular K) and the explicit dual SDP also certifies it
    assert np.linalg.eigvalsh(res.gram_class)[0] < 1e-9
    assert certify_class_gram(res.gram_class, counts, TAU, relu=False, dual_sdp=True).gaps["dual_sdp"] <= 1e-7
    # both frames are feasible without ReLU and provably suboptimal: f(frame) > lower bound on f*
    # (the loss is flat at tau = 0.1: the ETF is worse by only ~2e-7, far above the certified gap)
    f_etf = scl_gram_objective(sample_gram(y, simplex_etf_gram(3)), y, None, TAU)
    f_of = of_objective(y, None, TAU)
    lower = res.certificate.lower_bound
    assert res.certificate.gap < 1e-9
    assert f_etf - lower > 1e-7 and f_of - lower > 1e-5
    bad = certify_class_gram(simplex_etf_gram(3), counts, TAU, relu=False)
    assert not bad.certified and bad.gap >= f_etf - res.objective - 1e-12


# ----------------------------------------------------------------------------- mini-batches
def test_minibatch_meeting_the_conditions_gives_the_of():
    y = labels_of((3, 3, 3))
    batches = [np.arange(0, 6), np.arange(3, 9), np.array([0, 1, 2, 6, 7, 8])]
    assert uniqueness_conditions(y, batches).unique
    res = solve_sdp(y, batches, TAU, relu=True)
    assert res.certified and res.delta_of < 1e-6
    assert abs(res.objective - of_objective(y, batches, TAU)) < 1e-9
    assert np.abs(res.gram - orthogonal_frame_gram(y)).max() < 1e-6


def test_minibatch_violating_the_conditions_still_has_the_of_as_a_minimiser():
    y = labels_of((3, 3, 3))
    batches = [np.arange(0, 6), np.arange(3, 9)]  # classes 0 and 2 never share a batch
    assert uniqueness_conditions(y, batches).missing_pairs == [(0, 2)]
    res = solve_sdp(y, batches, TAU, relu=True)
    f_of = of_objective(y, batches, TAU)
    assert res.certified
    assert abs(res.objective - f_of) <= res.certificate.gap + 1e-12
    assert abs(res.objective - f_of) < 1e-9
    cert = certify_gram(orthogonal_frame_gram(y), y, batches, TAU, relu=True)
    assert cert.certified and abs(cert.gap) < 1e-12


# ----------------------------------------------------------------------------- wrong answers are caught
def test_certificate_rejects_wrong_grams_under_relu():
    counts = (6, 4, 2)
    y = labels_of(counts)
    f_star = of_objective(y, None, TAU)
    etf = certify_gram(sample_gram(y, simplex_etf_gram(3)), y, None, TAU, relu=True)
    assert not etf.certified and not etf.feasibility.feasible and etf.feasibility.min_entry < 0
    loose = 0.8 * orthogonal_frame_gram(y) + 0.2 * np.eye(y.size)  # within-class similarity 0.8
    cert = certify_gram(loose, y, None, TAU, relu=True)
    assert cert.feasibility.feasible and not cert.certified
    assert cert.gap >= cert.objective - f_star > 1e-4
    rng = np.random.default_rng(0)
    for _ in range(3):
        z = np.abs(rng.standard_normal((y.size, 4)))
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        c = certify_gram(z @ z.T, y, None, TAU, relu=True)
        assert c.gap >= c.objective - f_star - 1e-12 and not c.certified
        assert c.lower_bound <= f_star + 1e-12


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
def test_scs_at_loose_accuracy_is_never_returned_as_is():
    y = labels_of((6, 4, 2))
    loose = {"solver": "SCS", "eps_abs": 1e-2, "eps_rel": 1e-2}
    with pytest.raises(SolverError, match="certified"):
        solve_sdp(y, None, TAU, relu=True, polish=False, **loose)
    # with polishing the answer is either refused or moved to an exactly certified point (the OF)
    try:
        res = solve_sdp(y, None, TAU, relu=True, **loose)
    except SolverError:
        return
    assert res.polished and res.delta_of < 1e-6 and abs(res.objective - of_objective(y, None, TAU)) < 1e-9
    raw = certify_gram(res.info["raw_gram"], y, None, TAU, relu=True)  # what SCS itself returned
    assert not raw.certified


def test_dual_sdp_bound_is_valid_and_tight_at_the_of():
    y = labels_of((4, 3, 2))
    cert = certify_gram(orthogonal_frame_gram(y), y, None, TAU, relu=True, dual_sdp=True)
    assert 0 <= cert.gaps["dual_sdp"] < 1e-7
    assert cert.certified


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_are_refused_with_clear_errors():
    for counts in [(5, 0, 3), (5, -1, 3), (5,), (1, 1, 1), (2.5, 3)]:
        with pytest.raises(ValueError):
            solve_reduced(counts)
    for tau in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            solve_reduced((3, 3), tau)
        with pytest.raises(ValueError, match="temperature"):
            solve_sdp(labels_of((3, 3)), None, tau)
    with pytest.raises(ValueError, match="low-rank"):
        solve_sdp(labels_of((100, 100)), None, TAU, max_n=120, method="interior")
    with pytest.raises(ValueError, match="method"):
        solve_sdp(labels_of((3, 3)), None, TAU, method="newton")
    with pytest.raises(ValueError, match="solve_reduced"):
        solve_sdp(labels_of((3, 3)), None, TAU, max_memory=1000)
    with pytest.raises(ValueError, match="outside range"):
        solve_sdp(labels_of((3, 3)), [np.array([0, 1, 6])], TAU)
    with pytest.raises(ValueError, match="anchor"):
        solve_sdp(np.arange(4), None, TAU)
    with pytest.raises(ValueError, match="full_gram"):
        solve_reduced((5000, 500, 50, 5), TAU, full_gram=True)
    with pytest.raises(ValueError):
        certify_class_gram(np.eye(2), (3, 3, 3))


def test_small_temperature_plateau_returns_the_theorems_minimiser():
    # at tau = 0.02 the loss saturates (gradients ~ e^{-50}): the interior point stops anywhere on the
    # plateau; the verdict comes from the theorem, and the returned Gram is the OF, not the solver's point
    counts = (5000, 500, 50, 5)
    res = solve_reduced(counts, 0.02, relu=True)
    assert res.certified and res.verdict == "exact" and res.geometry.proof == "theorem"
    assert res.delta_of == 0.0 and np.array_equal(res.gram_class, np.eye(4))
    assert abs(res.objective - of_objective(labels_of(counts), None, 0.02)) < 1e-12
    assert 0 < res.geometry.details["min_pinning_weight"] < 1e-15  # far below what float64 resolves in f
    y = labels_of((6, 4, 2))
    sdp = solve_sdp(y, None, 0.02, relu=True)
    assert sdp.verdict == "exact" and np.array_equal(sdp.gram, orthogonal_frame_gram(y))
