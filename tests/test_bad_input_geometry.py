"""Bad input to the geometry layer: one row per case, each a clear error naming the argument and the value.

A new public function joins by adding a row to ``CASES``: ``pytest.param(call, error type, message regex,
id=...)``. The regex must name the argument (and, where there is one, the value) so the test fails when the
message stops saying what was wrong. Conventions for degenerate input (a documented number instead of an
error) are asserted by value at the end of the module.
"""

from __future__ import annotations

import numpy as np
import pytest

from ufm.geometry import (
    ClassMoments,
    centred_gram,
    class_counts,
    class_means,
    equinorm,
    etf_distance,
    gram_distance,
    max_angle,
    mean_pairwise_cosine,
    ncc_predict,
    normalize_rows,
    pedcc_etf_error,
    sample_gram,
    class_stats,
    delta_etf,
    delta_of,
    delta_of_from_means,
    nc1,
    nc4_ncc_mismatch,
    nc_metrics,
    nc_metrics_from_stats,
    linear_head_rademacher,
    multiclass_margin_bound,
    orthogonal_frame,
    pedcc,
    pedcc_repulsion,
    ramp_margin_loss,
    seli_grams,
    simplex_etf,
    simplex_etf_gram,
    vacuity_floor,
)

RNG = np.random.default_rng(0)
Y = np.arange(20) % 4
X = RNG.standard_normal((20, 5))
W = RNG.standard_normal((4, 5))
W_NAN = W.copy()
W_NAN[1, 2] = np.nan
SAME_MEANS = np.ones((20, 5))  # every class mean is (1, ..., 1)

CASES = [
    # ---- sizes of the reference frames (issue 15: orthogonal_frame(-1, 3) was numpy's "negative dimensions")
    pytest.param(lambda: orthogonal_frame(-1, 3), ValueError, r"k must be an integer >= 1, got -1", id="of-k-negative"),
    pytest.param(lambda: orthogonal_frame(3, -2), ValueError, r"d must be an integer >= 1, got -2", id="of-d-negative"),
    pytest.param(lambda: orthogonal_frame(2.5, 3), TypeError, r"k must be an integer, got 2\.5", id="of-k-float"),
    pytest.param(lambda: orthogonal_frame("3", 3), TypeError, r"k must be an integer, got '3'", id="of-k-str"),
    pytest.param(lambda: orthogonal_frame(3, 3, seed=-1), ValueError, r"seed must be an integer >= 0, got -1",
                 id="of-seed-negative"),
    pytest.param(lambda: simplex_etf(3, -1), ValueError, r"d must be an integer >= 1, got -1", id="etf-d-negative"),
    pytest.param(lambda: simplex_etf(-3, 4), ValueError, r"k >= 2 classes, got k=-3", id="etf-k-negative"),
    pytest.param(lambda: simplex_etf(None, 4), TypeError, r"k must be an integer, got None", id="etf-k-none"),
    pytest.param(lambda: simplex_etf_gram("a"), TypeError, r"k must be an integer, got 'a'", id="etf-gram-k-str"),
    pytest.param(lambda: simplex_etf_gram(-1), ValueError, r"k >= 2 classes, got k=-1", id="etf-gram-k-negative"),
    pytest.param(lambda: pedcc(3, -2), ValueError, r"dim >= 1, got -2", id="pedcc-dim-negative"),
    pytest.param(lambda: pedcc(-3, 4), ValueError, r"num_classes >= 2, got -3", id="pedcc-k-negative"),
    pytest.param(lambda: pedcc(3, 4, seed=-1), ValueError, r"seed must be an integer >= 0, got -1",
                 id="pedcc-seed-negative"),
    pytest.param(lambda: pedcc_repulsion(3, 4, tol="x"), TypeError, r"tol must be a real number, got 'x'",
                 id="repulsion-tol-str"),
    pytest.param(lambda: pedcc_repulsion(3, 4, s=0), ValueError, r"s \(the Riesz exponent\) must be positive.*got 0",
                 id="repulsion-s-zero"),
    pytest.param(lambda: pedcc_repulsion(3, 4, max_iter=-1), ValueError, r"max_iter must be an integer >= 0, got -1",
                 id="repulsion-max-iter-negative"),
    pytest.param(lambda: seli_grams("abc"), TypeError, r"counts must be .*class sizes.*'abc'", id="seli-counts-str"),
    pytest.param(lambda: seli_grams([3, 0]), ValueError, r"counts must be positive.*\[3\.0, 0\.0\]", id="seli-counts-zero"),
    # ---- margins: scalars named with their value
    pytest.param(lambda: ramp_margin_loss([0.1, 0.2], "abc"), TypeError, r"rho must be a real number, got 'abc'",
                 id="ramp-rho-str"),
    pytest.param(lambda: ramp_margin_loss([0.1, 0.2], -1.0), ValueError, r"rho must be positive.*got -1\.0",
                 id="ramp-rho-negative"),
    pytest.param(lambda: linear_head_rademacher(X, 0.0), ValueError, r"lam \(Lambda\) must be positive.*got 0\.0",
                 id="rademacher-lam-zero"),
    pytest.param(lambda: vacuity_floor(X, 1.0, float("nan"), 4), ValueError, r"rho must be positive.*got nan",
                 id="vacuity-rho-nan"),
    pytest.param(lambda: multiclass_margin_bound(X, X @ W.T, Y, W, delta=1.5), ValueError,
                 r"delta must be in \(0\.0, 1\.0\), got 1\.5", id="margin-bound-delta"),


    # ---- neural-collapse metrics: the classifier and the features (issue 15: a broadcast error, nc3 = NaN)
    pytest.param(lambda: nc_metrics(X, Y, W, np.zeros(3)), ValueError,
                 r"bias must have shape \(K,\) = \(4,\).*got shape \(3,\)", id="nc-bias-shape"),
    pytest.param(lambda: nc_metrics(X, Y, W, np.zeros((4, 1))), ValueError,
                 r"bias must have shape \(K,\) = \(4,\).*got shape \(4, 1\)", id="nc-bias-2d"),
    pytest.param(lambda: nc_metrics(X, Y, W, np.array([0.0, np.nan, 0.0, 0.0])), ValueError,
                 r"bias .*contains NaN", id="nc-bias-nan"),
    pytest.param(lambda: nc_metrics_from_stats(class_stats(X, Y), W, np.zeros(3)), ValueError,
                 r"bias must have shape \(K,\) = \(4,\)", id="nc-from-stats-bias-shape"),
    pytest.param(lambda: nc_metrics(X, Y, W_NAN), ValueError, r"weight \(the classifier rows\) contains NaN",
                 id="nc-weight-nan"),
    pytest.param(lambda: nc_metrics(X, Y, W[:, :3]), ValueError, r"weight must have shape \(K, d\) = \(4, 5\).*\(4, 3\)",
                 id="nc-weight-shape"),
    pytest.param(lambda: nc_metrics(np.zeros((0, 5)), []), ValueError, r"features .*got shape \(0, 5\)", id="nc-empty"),
    pytest.param(lambda: nc_metrics(X, Y[:-1]), ValueError, r"labels has length 19 but there are 20 samples",
                 id="nc-labels-length"),
    pytest.param(lambda: nc_metrics(np.where(np.eye(20, 5) > 0, np.nan, X), Y), ValueError, r"features contain NaN",
                 id="nc-features-nan"),
    pytest.param(lambda: nc1(class_stats(SAME_MEANS, Y)), ValueError, r"4 class means coincide.*Sigma_B is zero",
                 id="nc1-same-means"),
    pytest.param(lambda: nc4_ncc_mismatch(SAME_MEANS, np.ones((4, 5)), W), ValueError, r"4 class centres coincide",
                 id="nc4-same-centres"),
    # ---- Delta_OF / Delta_ETF on empty input (issue 15: "all class means are zero")
    pytest.param(lambda: delta_of(np.zeros((0, 5)), []), ValueError, r"Delta_OF needs at least one sample.*shape \(0, 5\)",
                 id="delta-of-empty"),
    pytest.param(lambda: delta_etf(np.zeros((0, 5)), []), ValueError, r"Delta_ETF needs at least one sample.*\(0, 5\)",
                 id="delta-etf-empty"),
    pytest.param(lambda: delta_of(np.zeros((3, 0)), [0, 1, 2]), ValueError, r"Delta_OF .*shape \(3, 0\)",
                 id="delta-of-no-columns"),
    pytest.param(lambda: delta_of_from_means(np.zeros((0, 5))), ValueError, r"Delta_OF needs class means.*\(0, 5\)",
                 id="delta-of-means-empty"),
    # ---- class statistics and Grams: sizes, shapes and NaN named
    pytest.param(lambda: class_means(X, Y, num_classes=-1), ValueError, r"num_classes must be an integer >= 1, got -1",
                 id="class-means-num-classes-negative"),
    pytest.param(lambda: class_counts(Y, "a"), TypeError, r"num_classes must be an integer, got 'a'", id="class-counts-num-classes-str"),
    pytest.param(lambda: class_means(np.where(X > 2, np.nan, X), Y), ValueError, r"features contain NaN", id="class-means-nan"),
    pytest.param(lambda: class_means(X, ["a"] * 20), ValueError, r"labels must be integers", id="class-means-labels-str"),
    pytest.param(lambda: normalize_rows(X, eps="a"), TypeError, r"eps must be a real number, got 'a'", id="normalize-eps-str"),
    pytest.param(lambda: sample_gram(Y, np.ones(4)), ValueError, r"class_gram must be a square \(k, k\) matrix, got shape \(4,\)",
                 id="sample-gram-1d"),
    pytest.param(lambda: sample_gram(Y, np.full((4, 4), np.nan)), ValueError, r"class_gram contain NaN", id="sample-gram-nan"),
    pytest.param(lambda: gram_distance(np.full((2, 2), np.nan), np.eye(2)), ValueError, r"gram contain NaN",
                 id="gram-distance-nan"),
    pytest.param(lambda: centred_gram(np.ones(3)), ValueError, r"rows must be a \(k, d\) matrix, got shape \(3,\)",
                 id="centred-gram-1d"),
    pytest.param(lambda: mean_pairwise_cosine(np.eye(3), [0, 5]), ValueError, r"classes must be indices in \[0, 3\), got \[0, 5\]",
                 id="pairwise-cosine-index"),
    pytest.param(lambda: pedcc_etf_error(np.full((3, 3), np.nan)), ValueError, r"centroids contain NaN", id="pedcc-etf-error-nan"),
    pytest.param(lambda: etf_distance(np.full((3, 3), np.nan)), ValueError, r"contain NaN", id="etf-distance-nan"),
    pytest.param(lambda: equinorm(np.ones(3)), ValueError, r"vectors must have shape \(K, d\) with K >= 2 rows, got shape \(3,\)",
                 id="equinorm-1d"),
    pytest.param(lambda: equinorm(np.full((3, 3), np.nan)), ValueError, r"vectors contain NaN", id="equinorm-nan"),
    pytest.param(lambda: max_angle(np.ones((1, 3))), ValueError, r"K >= 2 rows, got shape \(1, 3\)", id="max-angle-one-row"),
    pytest.param(lambda: ClassMoments("a", 5), TypeError, r"num_classes must be an integer, got 'a'", id="moments-k-str"),
    pytest.param(lambda: ClassMoments(4, 5).update(X, Y + 0.5), ValueError, r"labels must be integers", id="moments-labels-float"),
    pytest.param(lambda: nc_metrics(X, Y, "abc"), TypeError, r"weight must be the \(K, d\) classifier rows .*'abc'",
                 id="nc-weight-str"),
    pytest.param(lambda: ncc_predict(X, W[:, :3]), ValueError, r"means must have shape \(K, d\) with d = 5.*\(4, 3\)",
                 id="ncc-means-shape"),
    pytest.param(lambda: nc4_ncc_mismatch(X, W, W[:, :3]), ValueError, r"weight must have shape \(K, d\) with d = 5.*\(4, 3\)",
                 id="nc4-weight-shape"),
    pytest.param(lambda: delta_of(X, Y[:5]), ValueError, r"labels has length 5 but there are 20 samples",
                 id="delta-of-labels-length"),
]


@pytest.mark.parametrize("call,error,match", CASES)
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- conventions (numbers, not errors)
CENTRED_METRICS = ("nc1", "nc1_colab", "nc1_quotient", "nc2_equinorm", "nc2_equiangular_std", "nc2_maxangle",
                   "nc2_etf", "nc3_alignment", "nc3_self_duality", "nc3_duality_var", "nc3_distance_mean")


@pytest.mark.parametrize("features", [SAME_MEANS, np.zeros((20, 5)), np.tile(RNG.standard_normal((5, 5)), (4, 1))],
                         ids=["constant", "zero", "same-rows-per-class"])
def test_nc_metrics_with_coinciding_class_means_are_none_not_zero(features):
    """Coinciding class means (exactly, or up to the rounding of their sums): every metric built on the centred
    means is None with its reason, never 0 (perfect collapse), 1e33 (the pseudo-inverse of rounding) or NaN;
    the metrics of the classifier alone and the bias residual stay numbers."""
    out = nc_metrics(features, Y, W, np.zeros(4))
    for name in CENTRED_METRICS + ("cdnv", "nc4_ncc_mismatch"):
        assert out[name] is None, name
        assert f"{name}: " in out["nc_undefined"]
    assert "Sigma_B is zero" in out["nc_undefined"]
    assert out["nc2_etf_w"] == pytest.approx(nc_metrics(X, Y, W)["nc2_etf_w"], rel=0, abs=0)
    assert isinstance(out["bias_residual"], float)
    assert not any(isinstance(v, float) and np.isnan(v) for v in out.values())


def test_nc_metrics_of_distinct_means_unchanged():
    out = nc_metrics(X, Y, W, np.zeros(4))
    assert "nc_undefined" not in out
    assert all(isinstance(out[name], float) and np.isfinite(out[name]) for name in CENTRED_METRICS)
