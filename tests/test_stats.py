"""Tests of ufm.stats: hand-computed cases, agreement with scipy, degenerate data, bad input."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ufm.stats import (
    Equivalence,
    Interval,
    PairedComparison,
    TimeToThreshold,
    bootstrap_ci,
    mean_ci,
    paired_comparison,
    summarise,
    time_to_threshold,
    tost,
)


def assert_no_nan(obj, path="result"):
    """Walk a to_dict() output: plain python values only, no float NaN/inf anywhere."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert_no_nan(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            assert_no_nan(value, f"{path}[{i}]")
    else:
        assert obj is None or type(obj) in (bool, int, float, str), f"{path} is {type(obj).__name__}"
        if isinstance(obj, float):
            assert math.isfinite(obj), f"{path} is {obj}"


def plain_and_serialisable(result):
    d = result.to_dict()
    assert_no_nan(d)
    json.dumps(d)
    return d


# ----------------------------------------------------------------------------- mean_ci


def test_mean_ci_hand_case():
    ci = mean_ci([1, 2, 3, 4])
    assert ci.estimate == 2.5 and ci.n == 4 and ci.method == "t" and ci.level == 0.95
    assert ci.sd == pytest.approx(1.2909944, abs=1e-6)
    # t_{0.975, 3} = 3.182446; half width = 3.182446 * 1.2910 / 2
    assert ci.half_width == pytest.approx(3.182446 * 1.2909944 / 2, abs=1e-5)
    assert ci.half_width == pytest.approx(2.0543, abs=1e-4)
    assert (ci.low, ci.high) == pytest.approx((2.5 - 2.0542603, 2.5 + 2.0542603), abs=1e-6)
    d = plain_and_serialisable(ci)
    assert d["half_width"] == pytest.approx(ci.half_width)
    assert str(ci) == "2.5000 [0.4457, 4.5543] (n=4)"


@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_mean_ci_matches_scipy_t(level):
    x = np.random.default_rng(1).normal(0.97, 0.01, size=10)
    ci = mean_ci(x, level=level)
    sem = x.std(ddof=1) / np.sqrt(x.size)
    low, high = sps.t.interval(level, x.size - 1, loc=x.mean(), scale=sem)
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)
    assert ci.estimate == pytest.approx(x.mean(), rel=1e-12)
    assert ci.low < ci.estimate < ci.high


def test_mean_ci_equal_values_is_degenerate_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = mean_ci([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert (ci.estimate, ci.low, ci.high, ci.sd, ci.half_width) == (0.1, 0.1, 0.1, 0.0, 0.0)
    plain_and_serialisable(ci)


def test_mean_ci_accepts_list_array_series_and_summarise():
    values = [0.97, 0.975, 0.98, 0.972]
    a = mean_ci(values)
    assert mean_ci(np.array(values)) == a
    assert mean_ci(pd.Series(values, index=[10, 11, 12, 13])) == a
    s = summarise(values, level=0.9)
    assert set(s) == {"mean", "low", "high", "half_width", "n", "sd"}
    assert all(type(v) is float for k, v in s.items() if k != "n") and type(s["n"]) is int
    ci90 = mean_ci(values, level=0.9)
    assert (s["mean"], s["low"], s["high"], s["n"]) == (ci90.estimate, ci90.low, ci90.high, 4)


def test_results_are_frozen():
    ci = mean_ci([1, 2, 3])
    with pytest.raises(AttributeError):
        ci.low = 0.0  # type: ignore[misc]


# ------------------------------------------------------------------------- bootstrap_ci


def test_bootstrap_deterministic_for_a_seed_and_contains_mean():
    x = np.random.default_rng(2).normal(0.9, 0.02, size=12)
    a = bootstrap_ci(x, n_resamples=2000, seed=3)
    b = bootstrap_ci(list(x), n_resamples=2000, seed=3)
    c = bootstrap_ci(x, n_resamples=2000, seed=4)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.low < x.mean() < a.high and a.estimate == pytest.approx(x.mean())
    assert a.method == "BCa" and isinstance(a, Interval)
    plain_and_serialisable(a)


def test_bootstrap_close_to_t_interval_on_large_normal_sample():
    x = np.random.default_rng(5).normal(10.0, 2.0, size=200)
    boot, t = bootstrap_ci(x, n_resamples=4000), mean_ci(x)
    width = t.high - t.low
    assert abs(boot.low - t.low) < 0.1 * width and abs(boot.high - t.high) < 0.1 * width


def test_bootstrap_equal_values_and_bca_fallback():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat = bootstrap_ci([0.5, 0.5, 0.5])
        fallback = bootstrap_ci([0.0, 0.0, 0.0, 0.0, 1.0], statistic="median", n_resamples=999)
    assert (flat.estimate, flat.low, flat.high, flat.sd) == (0.5, 0.5, 0.5, 0.0)
    # BCa is undefined (every jackknife median is 0): percentile on the same resamples
    assert fallback.method == "percentile" and (fallback.low, fallback.high) == (0.0, 1.0)
    plain_and_serialisable(fallback)


def test_bootstrap_median_callable_and_methods():
    x = [1.0, 2.0, 3.0, 4.0, 10.0, 2.5, 3.5]
    med = bootstrap_ci(x, statistic="median", n_resamples=999)
    assert med.estimate == 3.0 and med.low <= 3.0 <= med.high
    trimmed = bootstrap_ci(x, statistic=lambda s, axis: np.sort(s, axis=axis)[..., 1:-1].mean(axis=axis), n_resamples=999)
    assert trimmed.estimate == pytest.approx(np.mean(sorted(x)[1:-1]))
    assert bootstrap_ci(x, method="percentile", n_resamples=999).method == "percentile"
    assert bootstrap_ci(x, method="basic", n_resamples=999).method == "basic"


# -------------------------------------------------------------------- paired_comparison


def test_paired_comparison_hand_case():
    a, b = [1, 2, 3, 4, 5], [2, 3, 5, 4, 7]  # d = [1, 1, 2, 0, 2]
    r = paired_comparison(a, b)
    ref = sps.ttest_rel(b, a)
    assert isinstance(r, PairedComparison)
    assert r.mean_diff == pytest.approx(1.2) and r.n == 5
    assert r.sd_diff == pytest.approx(np.std([1, 1, 2, 0, 2], ddof=1))
    assert r.t_stat == pytest.approx(ref.statistic, rel=1e-12) and r.t_stat > 0
    assert r.p_t == pytest.approx(ref.pvalue, rel=1e-12)
    low, high = ref.confidence_interval(0.95)
    assert (r.low, r.high) == pytest.approx((low, high), rel=1e-12)
    assert (r.n_b_higher, r.n_a_higher, r.n_ties) == (4, 0, 1)
    assert r.p_wilcoxon == pytest.approx(sps.wilcoxon([1, 1, 2, 0, 2]).pvalue)
    assert r.p_sign == pytest.approx(2 / 16)  # 4 of 4 non-zero differences favour B
    assert r.note is None
    plain_and_serialisable(r)
    swapped = paired_comparison(b, a)
    assert swapped.mean_diff == pytest.approx(-1.2) and swapped.t_stat == pytest.approx(-r.t_stat)
    assert (swapped.n_b_higher, swapped.n_a_higher) == (0, 4)


def test_paired_comparison_all_zero_differences():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = paired_comparison([0.9, 0.8, 0.7], pd.Series([0.9, 0.8, 0.7]))
    assert (r.mean_diff, r.low, r.high) == (0.0, 0.0, 0.0)
    assert r.t_stat is None and r.p_t is None and r.p_wilcoxon is None and r.p_sign is None
    assert r.note == "all differences are zero: no evidence of a difference"
    assert (r.n_b_higher, r.n_a_higher, r.n_ties) == (0, 0, 3)
    plain_and_serialisable(r)


def test_paired_comparison_constant_nonzero_difference():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = paired_comparison([1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0])
        # 0.1 + 0.1 is not exactly 0.2: rounding must not create variance
        rounded = paired_comparison([0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    assert (r.mean_diff, r.low, r.high, r.sd_diff) == (2.0, 2.0, 2.0, 0.0)
    assert r.t_stat is None and r.p_t is None
    assert r.p_sign == pytest.approx(2 / 32) and r.p_wilcoxon is not None
    assert "zero variance" in r.note and "5 of 5 seeds" in r.note
    assert rounded.t_stat is None and rounded.n_b_higher == 3
    plain_and_serialisable(r)


def test_paired_comparison_rounding_differences_are_ties():
    r = paired_comparison([0.1 + 0.2, 0.5, 0.6], [0.3, 0.7, 0.9])
    assert (r.n_b_higher, r.n_a_higher, r.n_ties) == (2, 0, 1)


def test_paired_comparison_different_lengths():
    with pytest.raises(ValueError, match=r"a and b must have the same length.*a has 3 values, b has 2"):
        paired_comparison([1, 2, 3], [1, 2])


# -------------------------------------------------------------------------------- tost


def test_tost_clearly_equivalent():
    rng = np.random.default_rng(7)
    a = rng.normal(0.95, 0.01, size=10)
    b = a + rng.normal(0.0, 0.0005, size=10)
    r = tost(a, b, margin=0.01)
    assert isinstance(r, Equivalence) and r.equivalent is True
    assert -0.01 < r.low < r.high < 0.01 and r.interval_level == 0.9
    d = b - a
    assert r.p_lower == pytest.approx(sps.ttest_1samp(d, -0.01, alternative="greater").pvalue)
    assert r.p_upper == pytest.approx(sps.ttest_1samp(d, 0.01, alternative="less").pvalue)
    assert r.p == max(r.p_lower, r.p_upper) and r.p < 0.05
    low, high = sps.t.interval(0.9, d.size - 1, loc=d.mean(), scale=d.std(ddof=1) / np.sqrt(d.size))
    assert (r.low, r.high) == pytest.approx((low, high))
    plain_and_serialisable(r)


def test_tost_clearly_not_equivalent_and_one_sample_form():
    a = np.array([0.90, 0.91, 0.92, 0.93, 0.94])
    b = a - np.array([0.03, 0.05, 0.04, 0.06, 0.02])
    r = tost(a, b, margin=0.01)
    assert r.equivalent is False and r.p == max(r.p_lower, r.p_upper) and r.p > 0.5
    assert r.high < -0.01  # the whole interval is beyond -margin
    one = tost(b - a, margin=0.01)
    assert (one.mean_diff, one.p, one.low, one.high) == pytest.approx((r.mean_diff, r.p, r.low, r.high))


def test_tost_decision_equals_interval_inside_margin():
    rng = np.random.default_rng(11)
    for _ in range(40):
        d = rng.normal(rng.uniform(-0.02, 0.02), rng.uniform(0.002, 0.02), size=8)
        r = tost(d, margin=0.01)
        assert r.equivalent == (-0.01 < r.low and r.high < 0.01)


def test_tost_zero_variance():
    r = tost([1.0, 2.0, 3.0], [1.002, 2.002, 3.002], margin=0.01)
    assert r.equivalent is True and r.p is None and r.p_lower is None and r.p_upper is None
    assert r.mean_diff == pytest.approx(0.002) and "zero variance" in r.note
    far = tost([0.05, 0.05], margin=0.01)
    assert far.equivalent is False and far.low == far.high == 0.05
    plain_and_serialisable(far)


@pytest.mark.parametrize("margin", [0, -0.1, float("nan"), float("inf"), True])
def test_tost_bad_margin(margin):
    with pytest.raises(ValueError, match="margin must be a positive finite number"):
        tost([1, 2, 3], [1, 2, 4], margin=margin)


def test_tost_level_must_exceed_one_half():
    with pytest.raises(ValueError, match=r"level must be a number strictly between 0.5 and 1.*0.4"):
        tost([1, 2, 3], margin=1, level=0.4)


# ------------------------------------------------------------------- time_to_threshold


def test_time_to_threshold_hand_case_median_five():
    curves = [
        [9, 8, 1],  # reaches 2 at epoch 3
        [9, 8, 7, 6, 1.5],  # epoch 5
        [9] * 10,  # censored at 10
        [9] * 8,  # censored at 8
    ]
    r = time_to_threshold(curves, 2)
    assert isinstance(r, TimeToThreshold)
    assert r.times == [3, 5, 10, 8] and r.reached == [True, True, False, False]
    assert (r.n, r.n_reached, r.fraction_reached) == (4, 2, 0.5)
    t, s = r.survival()
    np.testing.assert_array_equal(t, [3, 5, 8, 10])
    np.testing.assert_allclose(s, [3 / 4, 3 / 4 * 2 / 3, 1 / 2, 1 / 2], rtol=0, atol=1e-15)
    assert r.median == 5 and r.median_note is None
    assert r.median_low == 3  # the log-log lower band is 0.128 at t=3
    assert r.median_high is None  # the upper band never falls to 0.5: unbounded
    ci = sps.binomtest(2, 4).proportion_ci(confidence_level=0.95, method="exact")
    assert (r.fraction_low, r.fraction_high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    plain_and_serialisable(r)


def test_time_to_threshold_median_interval_from_log_log_band():
    events, censored = [2, 3, 3, 4, 6, 7, 9, 10, 12, 13, 15], [5, 8, 11, 16, 16]
    curves = [[5.0] * (e - 1) + [0.0] for e in events] + [[5.0] * c for c in censored]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = time_to_threshold(curves, 1.0)
    # scipy: S = .9375 .8125 .75 .75 .68 .61 .61 .54 .46 (t=10); log-log band at 0.95:
    # lower first <= 0.5 at t=4 (0.463), upper first <= 0.5 at t=15 (0.4375)
    assert (r.median_low, r.median, r.median_high) == (4, 10, 15)
    sf = sps.ecdf(sps.CensoredData(uncensored=events, right=censored)).sf
    t, s = r.survival()
    np.testing.assert_allclose(s, sf.probabilities)
    # all runs reach: S falls to 0 at the last event, where the band is undefined (unbounded above)
    alll = time_to_threshold([[5, 0], [5, 5, 0], [5, 5, 5, 0]], 1.0)
    assert (alll.median_low, alll.median, alll.median_high) == (2, 3, None)
    assert alll.fraction_high == 1.0 and alll.median_note is None


def test_time_to_threshold_fewer_than_half_reach():
    r = time_to_threshold([[5, 4, 0.5], [5] * 10, [5] * 7, [5] * 6], 1.0, level=0.9)
    assert r.n_reached == 1 and r.median is None and r.median_high is None
    assert r.median_note.startswith("fewer than half of the runs reached the threshold by epoch 10")
    ci = sps.binomtest(1, 4).proportion_ci(confidence_level=0.9, method="exact")
    assert (r.fraction_low, r.fraction_high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    never = time_to_threshold([[5, 5], [5, 5, 5]], 1.0)
    assert never.n_reached == 0 and never.median is None and never.median_low is None
    assert never.fraction_low == 0.0
    plain_and_serialisable(never)


def test_time_to_threshold_skips_unevaluated_entries_and_above():
    curves = [
        [0.1, None, np.nan, 0.95, 0.96],  # accuracy reaches 0.9 at epoch 4
        pd.Series([0.2, 0.5, 0.8, np.nan, np.nan]),  # last evaluated epoch 3: censored there
        np.array([0.3, 0.91]),
    ]
    r = time_to_threshold(curves, 0.9, direction="above")
    assert r.times == [4, 3, 2] and r.reached == [True, False, True]
    below = time_to_threshold(curves, 0.9, direction="below")
    assert below.times == [1, 1, 1] and all(below.reached)


def test_time_to_threshold_custom_epochs_shared_and_per_run():
    curves = [[3.0, 2.0, 0.5], [3.0, 0.4], np.array([3.0, 3.0, 3.0, 3.0])]
    shared = time_to_threshold(curves, 1.0, epochs=[0, 5, 10, 20])
    assert shared.times == [10, 5, 20] and shared.reached == [True, True, False]
    per_run = time_to_threshold(curves, 1.0, epochs=[[1, 2, 4], [0.5, 1.5], [2, 4, 6, 8]])
    assert per_run.times == [4, 1.5, 8]
    as_matrix = time_to_threshold(np.array([[3.0, 0.5], [3.0, 3.0]]), 1.0)
    assert as_matrix.times == [2, 2] and as_matrix.reached == [True, False]


def test_time_to_threshold_bad_inputs():
    with pytest.raises(ValueError, match=r"curves\[1\] has 1 infinite value \(at position \[2\]\)"):
        time_to_threshold([[1, 2], [1, 2, np.inf]], 1.5)
    with pytest.raises(ValueError, match=r"curves\[0\] has no evaluated entries"):
        time_to_threshold([[None, np.nan], [1.0]], 1.5)
    with pytest.raises(ValueError, match=r"curves\[0\] must be one-dimensional.*single run pass \[curve\]"):
        time_to_threshold([1.0, 2.0, 3.0], 1.5)
    with pytest.raises(ValueError, match="curves is empty"):
        time_to_threshold([], 1.5)
    with pytest.raises(ValueError, match=r"direction must be one of 'below', 'above', got 'up'"):
        time_to_threshold([[1, 2]], 1.5, direction="up")
    with pytest.raises(ValueError, match=r"epochs must be strictly increasing.*\[2\]"):
        time_to_threshold([[1, 2, 3]], 1.5, epochs=[1, 2, 2])
    with pytest.raises(ValueError, match=r"epochs has 2 entries but curves\[1\] has 3"):
        time_to_threshold([[1, 2], [1, 2, 3]], 1.5, epochs=[1, 2])
    with pytest.raises(ValueError, match=r"epochs\[0\] has 3 entries but curves\[0\] has 2"):
        time_to_threshold([[1, 2], [1, 2, 3]], 1.5, epochs=[[1, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        time_to_threshold([[1, 2]], float("nan"))


# -------------------------------------------------------------- bad input, every function

ONE_SAMPLE = {
    "mean_ci": lambda x, **kw: mean_ci(x, **kw),
    "summarise": lambda x, **kw: summarise(x, **kw),
    "bootstrap_ci": lambda x, **kw: bootstrap_ci(x, n_resamples=99, **kw),
}
PAIRED = {
    "paired_comparison": lambda a, b, **kw: paired_comparison(a, b, **kw),
    "tost": lambda a, b, **kw: tost(a, b, margin=0.1, **kw),
}


@pytest.mark.parametrize("name", ONE_SAMPLE)
def test_one_sample_bad_inputs(name):
    fn = ONE_SAMPLE[name]
    with pytest.raises(ValueError, match=r"x has 2 non-finite values \(at positions \[3, 7\]\); drop the runs"):
        fn([1, 2, 3, np.nan, 5, 6, 7, np.inf])
    with pytest.raises(ValueError, match=r"x must be one-dimensional.*shape \(2, 2\)"):
        fn(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"x has 1 value \[0.9\].*needs n >= 2"):
        fn([0.9])
    with pytest.raises(ValueError, match=r"level must be a number strictly between 0 and 1.*1.5"):
        fn([1, 2, 3], level=1.5)
    with pytest.raises(ValueError, match=r"did you mean 0.95"):
        fn([1, 2, 3], level=95)
    with pytest.raises(ValueError, match=r"x must be numbers"):
        fn(["a", "b"])


@pytest.mark.parametrize("name", PAIRED)
def test_paired_bad_inputs(name):
    fn = PAIRED[name]
    with pytest.raises(ValueError, match=r"b has 1 non-finite value \(at position \[1\]\)"):
        fn([1, 2, 3], [1, np.nan, 3])
    with pytest.raises(ValueError, match=r"a must be one-dimensional.*shape \(3, 1\)"):
        fn(np.ones((3, 1)), [1, 2, 3])
    with pytest.raises(ValueError, match=r"a has 1 value.*needs n >= 2"):
        fn([1.0], [2.0])
    with pytest.raises(ValueError, match=r"level must be a number strictly between.*1.5"):
        fn([1, 2, 3], [1, 2, 4], level=1.5)
    with pytest.raises(ValueError, match=r"a and b must have the same length"):
        fn([1, 2, 3], [1, 2, 3, 4])


def test_bootstrap_bad_options():
    with pytest.raises(ValueError, match=r"statistic must be 'mean', 'median' or a callable.*'avg'"):
        bootstrap_ci([1, 2, 3], statistic="avg")
    with pytest.raises(ValueError, match=r"method must be one of 'BCa', 'percentile', 'basic', got 'studentized'"):
        bootstrap_ci([1, 2, 3], method="studentized")
    with pytest.raises(ValueError, match=r"n_resamples must be a positive integer.*0"):
        bootstrap_ci([1, 2, 3], n_resamples=0)


def test_time_to_threshold_bad_level():
    with pytest.raises(ValueError, match=r"level must be a number strictly between 0 and 1.*1.5"):
        time_to_threshold([[1, 2]], 1.5, level=1.5)
