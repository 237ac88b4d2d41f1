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
]


@pytest.mark.parametrize("call,error,match", CASES)
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
