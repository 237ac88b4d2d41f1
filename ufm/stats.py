"""Statistics for judging claims about networks trained over several seeds.

Every function here takes one number per training run (per seed) and answers one
question a paper's claim raises; scipy.stats does the arithmetic underneath.

What each function is for
-------------------------
``mean_ci(x)``
    "Test accuracy is 97.5%": the mean over seeds with its Student-t interval.
``bootstrap_ci(x, statistic=...)``
    The same for a median or any other statistic, or when the t interval's
    normality is doubtful: a seeded ``scipy.stats.bootstrap`` interval (BCa).
``paired_comparison(a, b)``
    "Loss B beats loss A": both arms trained on the same seeds; the difference
    ``d = b - a`` with its t interval, the paired t-test, the Wilcoxon signed-rank
    test, the exact sign test and how many seeds favour each arm.
``tost(a, b, margin=...)``
    "X costs no accuracy": equivalence within ``±margin`` by two one-sided t-tests.
``time_to_threshold(curves, threshold)``
    "Converges in fewer epochs": the epoch at which each run first reaches a
    threshold, runs that never reach it right-censored, summarised by the
    Kaplan-Meier median and the fraction of runs that got there.
``summarise(x)``
    ``mean_ci`` as a plain dict, for tables.

Conventions
-----------
* Inputs are 1-D lists, numpy arrays or pandas Series, one value per seed.
  ``paired_comparison`` and ``tost`` pair ``a[i]`` with ``b[i]`` (same seed ``i``).
* Differences are always **B minus A** (``d = b - a``): positive means B is higher.
* ``level`` is the two-sided confidence level, strictly between 0 and 1.
* Bad input raises ``ValueError`` naming the argument, what it got (its value or
  shape) and what is accepted. NaN/inf values are refused, never silently
  dropped: a run that failed or diverged is a decision for the caller (except in
  ``time_to_threshold``, where None/NaN means "not evaluated at that epoch").
* Results are frozen dataclasses with ``to_dict()`` (JSON-serialisable: python
  floats, ints, bools, str, None and lists) and a short ``str()``. They never hold
  NaN: a quantity that is undefined (a t-test on differences with zero variance,
  a median the survival curve never reaches) is ``None`` and a ``note`` says why.
* Differences smaller than 8 machine epsilons of the data's magnitude
  (``|d| <= 8 * eps * max(|a|, |b|)``) are rounding error and count as exact ties,
  so that e.g. ``0.3 - (0.1 + 0.2)`` is not reported as "A higher on every seed".
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, fields
from numbers import Real
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

__all__ = [
    "Interval",
    "PairedComparison",
    "Equivalence",
    "TimeToThreshold",
    "mean_ci",
    "bootstrap_ci",
    "paired_comparison",
    "tost",
    "time_to_threshold",
    "summarise",
]

_ROUNDING_ULPS = 8  # differences within 8 eps of the data's magnitude are ties
_PROB_TOL = 1e-12  # S(t) <= 0.5 is tested as S(t) <= 0.5 + 1e-12 (KM products round)
_MAX_LISTED = 10  # how many bad positions an error message lists
_BOOTSTRAP_METHODS = {"bca": "BCa", "percentile": "percentile", "basic": "basic"}
_BAND_METHOD = "log-log"  # pointwise band of the Kaplan-Meier curve
_BOOTSTRAP_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


# --------------------------------------------------------------------------- results


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> python scalars and lists (JSON-serialisable)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fmt(value: float | None) -> str:
    if value is None:
        return "unbounded"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.4g}"


def _fmt_p(p: float | None) -> str:
    return "undefined" if p is None else f"{p:.3g}"


class _Result:
    """Shared behaviour of the result dataclasses: a NaN guard and ``to_dict``."""

    _derived: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            values = getattr(self, f.name)
            for v in values if isinstance(values, (list, tuple)) else [values]:
                if isinstance(v, (float, np.floating)) and not math.isfinite(v):
                    raise RuntimeError(f"internal error: {type(self).__name__}.{f.name} is {v}; please report this")

    def to_dict(self) -> dict[str, Any]:
        """All fields (and derived properties) as plain python values."""
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
        out.update({name: _plain(getattr(self, name)) for name in self._derived})
        return out


@dataclass(frozen=True)
class Interval(_Result):
    """An estimate over seeds with a two-sided confidence interval.

    Attributes:
        estimate: the statistic on the data (the mean for ``mean_ci``).
        low, high: the interval's end points.
        n: number of seeds.
        sd: sample standard deviation of the data (ddof=1); 0 when all values are equal.
        level: confidence level, e.g. 0.95.
        method: "t" for ``mean_ci``; the bootstrap method actually used
            ("BCa", "percentile" or "basic") for ``bootstrap_ci``.
    """

    estimate: float
    low: float
    high: float
    n: int
    sd: float
    level: float
    method: str

    _derived = ("half_width",)

    @property
    def half_width(self) -> float:
        """(high - low) / 2; for an asymmetric bootstrap interval, half its width."""
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"{_fmt(self.estimate)} [{_fmt(self.low)}, {_fmt(self.high)}] (n={self.n})"


@dataclass(frozen=True)
class PairedComparison(_Result):
    """Arm B against arm A on the same seeds; every difference is ``d = b - a``.

    Attributes:
        mean_diff: mean of d.
        low, high: Student-t interval of the mean of d at ``level``.
        n: number of seeds (pairs).
        sd_diff: sample standard deviation of d (ddof=1).
        t_stat, p_t: paired t statistic and two-sided p-value (None when d has zero variance).
        p_wilcoxon: two-sided Wilcoxon signed-rank p-value on d (zeros dropped);
            None when every difference is zero.
        p_sign: two-sided exact sign test (binomial, p = 1/2) on the non-zero
            differences; None when every difference is zero.
        n_b_higher, n_a_higher, n_ties: seeds with d > 0, d < 0, d == 0.
        level: confidence level of the interval.
        note: why a quantity is None, or None when everything is defined.
    """

    mean_diff: float
    low: float
    high: float
    n: int
    sd_diff: float
    t_stat: float | None
    p_t: float | None
    p_wilcoxon: float | None
    p_sign: float | None
    n_b_higher: int
    n_a_higher: int
    n_ties: int
    level: float
    note: str | None = None

    def __str__(self) -> str:
        return (
            f"B - A = {_fmt(self.mean_diff)} [{_fmt(self.low)}, {_fmt(self.high)}] (n={self.n}); "
            f"p_t={_fmt_p(self.p_t)}, p_wilcoxon={_fmt_p(self.p_wilcoxon)}, p_sign={_fmt_p(self.p_sign)}; "
            f"B higher on {self.n_b_higher}, A higher on {self.n_a_higher}, ties {self.n_ties}"
        )


@dataclass(frozen=True)
class Equivalence(_Result):
    """Result of two one-sided t-tests (TOST) for ``|mean difference| < margin``.

    Attributes:
        mean_diff: mean of d (``b - a``, or ``a`` itself in the one-sample form).
        low, high: the (1 - 2 alpha) t interval of the mean, alpha = 1 - level
            (the 90% interval for level 0.95); see ``interval_level``.
        margin: the equivalence margin (> 0).
        p_lower: p-value of H0: mu <= -margin against mu > -margin.
        p_upper: p-value of H0: mu >= margin against mu < margin.
        p: max(p_lower, p_upper), the TOST p-value for H0: |mu| >= margin.
        equivalent: p < alpha, i.e. the (1 - 2 alpha) interval lies inside (-margin, margin).
        n: number of seeds.
        level: 1 - alpha.
        note: set when d has zero variance (the p-values are then None).
    """

    mean_diff: float
    low: float
    high: float
    margin: float
    p_lower: float | None
    p_upper: float | None
    p: float | None
    equivalent: bool
    n: int
    level: float
    note: str | None = None

    _derived = ("interval_level",)

    @property
    def interval_level(self) -> float:
        """Confidence level of [low, high]: 1 - 2 (1 - level) = 2 level - 1 (0.9 for level 0.95)."""
        return round(2 * self.level - 1, 12)

    def __str__(self) -> str:
        verdict = "equivalent" if self.equivalent else "not shown equivalent"
        return (
            f"{verdict} within ±{self.margin:g}: {_fmt(self.mean_diff)} "
            f"[{_fmt(self.low)}, {_fmt(self.high)}] ({self.interval_level:.0%} CI, n={self.n}), p={_fmt_p(self.p)}"
        )


@dataclass(frozen=True)
class TimeToThreshold(_Result):
    """Epochs until each run first reaches a threshold, with right-censoring.

    Attributes:
        times: per run, the first epoch at which it reached the threshold, or
            (when it never did) its last evaluated epoch, where it is censored.
        reached: per run, whether it reached the threshold.
        n, n_reached: number of runs, and of runs that reached the threshold.
        fraction_reached: n_reached / n.
        fraction_low, fraction_high: Clopper-Pearson (exact) interval of the fraction.
        median: Kaplan-Meier median, the smallest time t with S(t) <= 0.5;
            None when S never falls to 0.5 (see ``median_note``).
        median_low, median_high: interval of the median: the first times at which
            the lower / upper pointwise log-log band of S falls to <= 0.5; None
            means unbounded (the band never gets there).
        median_note: why ``median`` is None, or a caveat; None otherwise.
        level: confidence level of the two intervals.
        threshold, direction: what "reached" meant ("below": value <= threshold,
            "above": value >= threshold).
    """

    times: list
    reached: list
    n: int
    n_reached: int
    fraction_reached: float
    fraction_low: float
    fraction_high: float
    median: float | None
    median_low: float | None
    median_high: float | None
    median_note: str | None
    level: float
    threshold: float
    direction: str

    def survival(self) -> tuple[np.ndarray, np.ndarray]:
        """Kaplan-Meier curve for plotting: ``plt.step(t, s, where="post")``.

        Returns:
            (t, s): the distinct observed times (events and censorings), sorted,
            and S(t), the estimated fraction of runs that have not yet reached the
            threshold just after time t. S = 1 before the first time.
        """
        sf = _kaplan_meier(self.times, self.reached)
        return np.asarray(sf.quantiles, dtype=float), np.asarray(sf.probabilities, dtype=float)

    def __str__(self) -> str:
        median = "not reached" if self.median is None else f"{self.median:g}"
        low = "unbounded" if self.median_low is None else f"{self.median_low:g}"
        high = "unbounded" if self.median_high is None else f"{self.median_high:g}"
        return (
            f"median {median} [{low}, {high}] epochs; reached {self.n_reached}/{self.n} "
            f"({self.fraction_reached:.0%} [{self.fraction_low:.0%}, {self.fraction_high:.0%}])"
        )


# ------------------------------------------------------------------------ validation


def _describe(x: Any) -> str:
    text = repr(x)
    return f"{type(x).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _positions(idx: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:_MAX_LISTED])
    more = f", ... {idx.size - _MAX_LISTED} more" if idx.size > _MAX_LISTED else ""
    return f"at position{'s' if idx.size > 1 else ''} [{shown}{more}]"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _to_float_array(x: Any, name: str) -> np.ndarray:
    """Any list / numpy array / pandas object as a float array (None and pd.NA -> NaN)."""
    try:
        if hasattr(x, "to_numpy"):  # pandas Series (nullable dtypes included)
            return np.asarray(x.to_numpy(dtype=float, na_value=np.nan), dtype=float)
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be numbers (a list, numpy array or pandas Series of floats), got {_describe(x)} ({err})"
        ) from err


def _require_1d(arr: np.ndarray, name: str, what: str = "one value per seed") -> None:
    if arr.ndim != 1:
        got = "a scalar" if arr.ndim == 0 else f"shape {arr.shape}"
        raise ValueError(f"{name} must be one-dimensional ({what}), got {got}")


def _require_finite(arr: np.ndarray, name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"{name} has {_plural(bad.size, 'non-finite value')} ({_positions(bad)}); "
            "drop the runs that failed or diverged first"
        )


def _as_sample(x: Any, name: str, min_n: int = 2, purpose: str = "a confidence interval") -> np.ndarray:
    """Validated 1-D float array of finite values, one per seed, with at least ``min_n`` values."""
    arr = _to_float_array(x, name)
    _require_1d(arr, name)
    _require_finite(arr, name)
    if arr.size < min_n:
        raise ValueError(
            f"{name} has {_plural(arr.size, 'value')} {arr.tolist()}; {purpose} needs n >= {min_n} seeds "
            "(the spread across seeds cannot be estimated from fewer)"
        )
    return arr


def _check_level(level: Any, low: float = 0.0, name: str = "level") -> float:
    ok = isinstance(level, Real) and not isinstance(level, bool) and low < float(level) < 1.0
    if not ok:
        hint = ""
        if isinstance(level, Real) and not isinstance(level, bool) and 1 < level < 100:
            hint = f" (did you mean {level / 100:g}?)"
        raise ValueError(f"{name} must be a number strictly between {low:g} and 1 (e.g. 0.95), got {level!r}{hint}")
    return float(level)


def _check_positive(value: Any, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number ({what}), got {value!r}")
    return float(value)


def _check_choice(value: Any, name: str, choices: dict[str, str]) -> str:
    key = value.lower() if isinstance(value, str) else None
    if key not in choices:
        accepted = ", ".join(repr(c) for c in choices.values())
        raise ValueError(f"{name} must be one of {accepted}, got {value!r}")
    return choices[key]


def _paired_differences(a: Any, b: Any) -> tuple[np.ndarray, float]:
    """d = b - a with rounding-error differences set to 0, and that tolerance.

    Formula: d_i = b_i - a_i; d_i := 0 where |d_i| <= 8 eps max(|a|, |b|).
    """
    a_arr = _as_sample(a, "a", min_n=0)
    b_arr = _as_sample(b, "b", min_n=0)
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"a and b must have the same length (a[i] and b[i] are the two arms on seed i): "
            f"a has {a_arr.size} values, b has {b_arr.size}"
        )
    _as_sample(a_arr, "a", purpose="a paired comparison")  # n >= 2
    scale = float(max(np.max(np.abs(a_arr)), np.max(np.abs(b_arr))))
    return _clean_differences(b_arr - a_arr, scale)


def _one_sample_differences(a: Any) -> tuple[np.ndarray, float]:
    arr = _as_sample(a, "a", purpose="an equivalence test")
    return _clean_differences(arr, float(np.max(np.abs(arr))))


def _clean_differences(d: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    tol = _ROUNDING_ULPS * np.finfo(float).eps * scale
    d = np.where(np.abs(d) <= tol, 0.0, d)
    return d, tol


def _is_constant(d: np.ndarray, tol: float) -> bool:
    """True when d has zero variance up to rounding: max(d) - min(d) <= tol."""
    return bool(np.ptp(d) <= tol)


def _constant_value(d: np.ndarray) -> float:
    return float(d[0]) if np.all(d == d[0]) else float(np.mean(d))


# ------------------------------------------------------------------ mean and bootstrap


def mean_ci(x: Any, level: float = 0.95) -> Interval:
    """Mean over seeds with its Student-t confidence interval.

    Formula: mean ± t_{(1+level)/2, n-1} * sd / sqrt(n), sd with ddof=1
    (``scipy.stats.t.interval``). When all values are equal the interval is
    exactly [x, x] with sd = 0 (the limit of the formula), without warnings.

    Args:
        x: one value per seed (list, numpy array or pandas Series), n >= 2, finite.
        level: confidence level in (0, 1).

    Returns:
        Interval with method "t".
    """
    x = _as_sample(x, "x")
    level = _check_level(level)
    n = x.size
    if np.all(x == x[0]):
        value = float(x[0])
        return Interval(value, value, value, n, 0.0, level, "t")
    mean, sd = float(np.mean(x)), float(np.std(x, ddof=1))
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return Interval(mean, float(low), float(high), n, sd, level, "t")


def summarise(x: Any, level: float = 0.95) -> dict[str, float | int]:
    """``mean_ci`` as a plain dict for tables.

    Args:
        x: one value per seed, n >= 2.
        level: confidence level in (0, 1).

    Returns:
        {"mean", "low", "high", "half_width", "n", "sd"}: python floats (n an int).
    """
    ci = mean_ci(x, level)
    return {"mean": ci.estimate, "low": ci.low, "high": ci.high, "half_width": ci.half_width, "n": ci.n, "sd": ci.sd}


def _takes_axis(fn: Callable) -> bool:
    """Whether scipy.stats.bootstrap will treat ``fn`` as vectorised (it has an ``axis`` parameter)."""
    try:
        return "axis" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _resolve_statistic(statistic: Any) -> Callable:
    if callable(statistic):
        return statistic
    named = {"mean": np.mean, "median": np.median}
    if isinstance(statistic, str) and statistic.lower() in named:
        return named[statistic.lower()]
    raise ValueError(
        f"statistic must be 'mean', 'median' or a callable f(sample, axis) returning the statistic "
        f"along axis, got {statistic!r}"
    )


def _apply_statistic(fn: Callable, x: np.ndarray) -> float:
    value = np.asarray(fn(x, axis=-1) if _takes_axis(fn) else fn(x), dtype=float)
    if value.size != 1 or not np.isfinite(value).all():
        raise ValueError(f"statistic must return one finite number on x, got {value.tolist()!r}")
    return float(value.reshape(()))


def _check_n_resamples(n_resamples: Any) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer (e.g. 9999), got {n_resamples!r}")
    return int(n_resamples)


def bootstrap_ci(
    x: Any,
    statistic: str | Callable = "mean",
    level: float = 0.95,
    n_resamples: int = 9999,
    seed: int | None = 0,
    method: str = "BCa",
) -> Interval:
    """Bootstrap confidence interval of a statistic over seeds (``scipy.stats.bootstrap``).

    Resamples the seeds with replacement ``n_resamples`` times, recomputes the
    statistic, and forms the interval with ``method``: "BCa" (bias-corrected and
    accelerated, default), "percentile" (the (1-level)/2 and (1+level)/2 quantiles
    of the bootstrap distribution) or "basic" (2 theta_hat - those quantiles).
    BCa is undefined when the jackknife values of the statistic are all equal
    (e.g. a median over mostly tied values); scipy then returns NaN and this
    function falls back to "percentile" on the same resamples, recording the
    method actually used in ``Interval.method``. When all values are equal every
    resample equals the data, so the interval is exactly [stat, stat] and
    bootstrap is not called (method "percentile" when BCa was asked for).

    Args:
        x: one value per seed, n >= 2, finite.
        statistic: "mean", "median", or a callable taking an array and ``axis``
            (a callable without ``axis`` is called once per resample: slower).
        level: confidence level in (0, 1).
        n_resamples: number of bootstrap resamples.
        seed: seed of ``np.random.default_rng``; the result is deterministic given it.
        method: "BCa", "percentile" or "basic" (case-insensitive).

    Returns:
        Interval: estimate = statistic(x), sd = sample sd of x (ddof=1).
    """
    x = _as_sample(x, "x", purpose="a bootstrap interval")
    level = _check_level(level)
    fn = _resolve_statistic(statistic)
    method = _check_choice(method, "method", _BOOTSTRAP_METHODS)
    n_resamples = _check_n_resamples(n_resamples)
    estimate = _apply_statistic(fn, x)
    if np.all(x == x[0]):
        used = "percentile" if method == "BCa" else method
        return Interval(estimate, estimate, estimate, x.size, 0.0, level, used)
    low, high, used = _bootstrap_interval(x, fn, level, n_resamples, seed, method)
    return Interval(estimate, low, high, x.size, float(np.std(x, ddof=1)), level, used)


def _bootstrap_interval(
    x: np.ndarray, fn: Callable, level: float, n_resamples: int, seed: Any, method: str
) -> tuple[float, float, str]:
    """(low, high, method used); BCa -> percentile on the same resamples when BCa is NaN."""
    common = {"confidence_level": level, _BOOTSTRAP_RNG_KW: np.random.default_rng(seed)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.bootstrap((x,), fn, n_resamples=n_resamples, method=method, **common)
    low, high = (float(v) for v in res.confidence_interval)
    if method == "BCa" and not (math.isfinite(low) and math.isfinite(high)):
        # scipy's DegenerateDataWarning is answered by the fallback: not re-emitted
        res = stats.bootstrap((x,), fn, n_resamples=0, bootstrap_result=res, method="percentile", **common)
        low, high = (float(v) for v in res.confidence_interval)
        method = "percentile"
    else:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("statistic returned non-finite values on some bootstrap resamples of x; it must be finite")
    return low, high, method


# ------------------------------------------------------------------ paired comparison


def _sign_counts(d: np.ndarray) -> tuple[int, int, int]:
    """(n_b_higher, n_a_higher, n_ties) = (#d > 0, #d < 0, #d == 0)."""
    return int(np.sum(d > 0)), int(np.sum(d < 0)), int(np.sum(d == 0))


def _sign_test(n_b_higher: int, n_a_higher: int) -> float | None:
    """Two-sided exact sign test: binomtest(#d>0, #d!=0, p=1/2); None if all d == 0."""
    nonzero = n_b_higher + n_a_higher
    return float(stats.binomtest(n_b_higher, nonzero, 0.5).pvalue) if nonzero else None


def _wilcoxon_p(d: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p on d (zeros dropped); None when all d == 0.

    scipy chooses the method: exact without ties/zeros for n <= 50; with ties or
    zeros an exhaustive (deterministic) permutation test for n <= 13, else the
    normal approximation.
    """
    if not np.any(d):
        return None  # scipy would return p = 1.0 with a division-by-zero warning
    p = float(stats.wilcoxon(d).pvalue)
    return p if math.isfinite(p) else None


def paired_comparison(a: Any, b: Any, level: float = 0.95) -> PairedComparison:
    """Compare arm B with arm A trained on the same seeds (a[i], b[i] share seed i).

    Formulas, on d = b - a:
        mean_diff ± t_{(1+level)/2, n-1} * sd_diff / sqrt(n);
        t_stat = mean_diff / (sd_diff / sqrt(n)), two-sided p_t on n-1 df
        (the paired t-test, identical to ``scipy.stats.ttest_rel(b, a)``);
        p_wilcoxon = ``scipy.stats.wilcoxon(d)`` (two-sided, zeros dropped);
        p_sign = ``scipy.stats.binomtest(#d>0, #d!=0, 0.5)`` (two-sided, exact).

    Degenerate cases (never NaN):
        all d == 0: interval [0, 0], every p-value None, note
            "all differences are zero: no evidence of a difference";
        d the same non-zero value on every seed: interval [d, d], t_stat and p_t
            None (the t-test is undefined at zero variance), p_wilcoxon and p_sign
            from scipy, and a note giving the sign test.

    Args:
        a, b: one value per seed for arm A and arm B, same length n >= 2, finite.
        level: confidence level in (0, 1).

    Returns:
        PairedComparison.
    """
    d, tol = _paired_differences(a, b)
    level = _check_level(level)
    counts = _sign_counts(d)
    p_sign = _sign_test(counts[0], counts[1])
    if _is_constant(d, tol):
        return _constant_paired(d, counts, p_sign, level)
    res = stats.ttest_1samp(d, 0.0)
    low, high = res.confidence_interval(confidence_level=level)
    return PairedComparison(
        float(np.mean(d)), float(low), float(high), d.size, float(np.std(d, ddof=1)),
        float(res.statistic), float(res.pvalue), _wilcoxon_p(d), p_sign, *counts, level, None,
    )  # fmt: skip


def _constant_paired(d: np.ndarray, counts: tuple[int, int, int], p_sign: float | None, level: float):
    value, n = _constant_value(d), d.size
    if value == 0:
        note = "all differences are zero: no evidence of a difference"
        return PairedComparison(0.0, 0.0, 0.0, n, 0.0, None, None, None, p_sign, *counts, level, note)
    winner, wins = ("B", counts[0]) if value > 0 else ("A", counts[1])
    note = (
        "the difference is the same on every seed (zero variance): the t-test is undefined; "
        f"the sign test: {winner} higher on {wins} of {n} seeds (p_sign={_fmt_p(p_sign)})"
    )
    return PairedComparison(value, value, value, n, 0.0, None, None, _wilcoxon_p(d), p_sign, *counts, level, note)


# -------------------------------------------------------------------------------- TOST


def tost(a: Any, b: Any = None, *, margin: float, level: float = 0.95) -> Equivalence:
    """Equivalence test "the difference is within ±margin" (two one-sided t-tests).

    With ``b`` the test is paired on d = b - a (a[i], b[i] share seed i);
    without it, on the values of ``a`` themselves (e.g. per-seed differences
    computed elsewhere). H0: |mu| >= margin; H1: -margin < mu < margin.

    Formulas, alpha = 1 - level:
        p_lower = ``ttest_1samp(d, -margin, alternative="greater")``.pvalue;
        p_upper = ``ttest_1samp(d, margin, alternative="less")``.pvalue;
        p = max(p_lower, p_upper); equivalent = p < alpha, which is the same as
        the (1 - 2 alpha) t interval mean ± t_{1-alpha, n-1} sd/sqrt(n) lying
        inside (-margin, margin). For level 0.95 that is the 90% interval.
    Zero-variance d (the same difference on every seed): the t-tests are
    undefined, so the p-values are None, the interval is [d, d], equivalent is
    |d| < margin, and ``note`` says so.

    Args:
        a: arm A per seed, or the per-seed differences when b is None; n >= 2.
        b: arm B per seed (same length as a), or None.
        margin: equivalence margin > 0, on the scale of the data (0.01 = one accuracy point).
        level: 1 - alpha, strictly between 0.5 and 1.

    Returns:
        Equivalence.
    """
    level = _check_level(level, low=0.5)
    margin = _check_positive(margin, "margin", "the largest difference that still counts as equivalent")
    d, tol = _one_sample_differences(a) if b is None else _paired_differences(a, b)
    alpha = 1 - level
    if _is_constant(d, tol):
        value = _constant_value(d)
        note = (
            f"the difference is the same on every seed ({value:g}; zero variance): the t-tests are undefined; "
            f"equivalent iff |{value:g}| < margin {margin:g}"
        )
        return Equivalence(value, value, value, margin, None, None, None, abs(value) < margin, d.size, level, note)
    p_lower = float(stats.ttest_1samp(d, -margin, alternative="greater").pvalue)
    p_upper = float(stats.ttest_1samp(d, margin, alternative="less").pvalue)
    low, high = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=1 - 2 * alpha)
    p = max(p_lower, p_upper)
    return Equivalence(
        float(np.mean(d)), float(low), float(high), margin, p_lower, p_upper, p, bool(p < alpha), d.size, level
    )


# ------------------------------------------------------------------- time to threshold


def _as_curve(curve: Any, name: str) -> np.ndarray:
    """One run's metric over epochs: 1-D floats, None/NaN = not evaluated, no inf."""
    arr = _to_float_array(curve, name)
    if arr.ndim != 1:
        hint = "; for a single run pass [curve]" if arr.ndim == 0 else ""
        _require_1d(arr, name, "a run's metric over epochs" + hint)
    inf = np.flatnonzero(np.isinf(arr))
    if inf.size:
        raise ValueError(
            f"{name} has {_plural(inf.size, 'infinite value')} ({_positions(inf)}); for a diverged run replace "
            "them with NaN (not evaluated) to censor it at its last finite epoch, or drop the run"
        )
    if np.all(np.isnan(arr)):
        raise ValueError(
            f"{name} has no evaluated entries (all {arr.size} are None/NaN); "
            "a run needs at least one evaluated epoch to be counted, even as censored"
        )
    return arr


def _as_curves(curves: Any) -> list[np.ndarray]:
    if isinstance(curves, (str, bytes)) or hasattr(curves, "columns"):
        raise ValueError(
            f"curves must be a sequence of per-run 1-D arrays (a list, or a 2-D array with one row per run), "
            f"got {_describe(curves)}; for a DataFrame with one column per run pass [df[c] for c in df]"
        )
    try:
        runs = list(curves)
    except TypeError as err:
        raise ValueError(f"curves must be a sequence of per-run 1-D arrays, got {_describe(curves)}") from err
    if not runs:
        raise ValueError("curves is empty; it needs at least one run (a 1-D array of the metric over epochs)")
    return [_as_curve(c, f"curves[{i}]") for i, c in enumerate(runs)]


def _as_epoch_vector(e: Any, name: str) -> np.ndarray:
    arr = _to_float_array(e, name)
    _require_1d(arr, name, "one epoch number per entry of the curve")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} has {_plural(bad.size, 'non-finite epoch number')} ({_positions(bad)})")
    steps = np.flatnonzero(np.diff(arr) <= 0)
    if steps.size:
        raise ValueError(f"{name} must be strictly increasing, but does not increase {_positions(steps + 1)}")
    return arr


def _is_flat(epochs: Any) -> bool:
    """One shared epoch vector (True) or one vector per run (False)?"""
    if isinstance(epochs, np.ndarray) or hasattr(epochs, "to_numpy"):
        return np.ndim(epochs) == 1
    return all(np.ndim(e) == 0 for e in epochs)


def _as_epochs(epochs: Any, runs: list[np.ndarray]) -> list[np.ndarray]:
    """Epoch number of every entry of every run (default 1, 2, ...)."""
    if epochs is None:
        return [np.arange(1, r.size + 1, dtype=float) for r in runs]
    if isinstance(epochs, (str, bytes)) or not hasattr(epochs, "__len__"):
        raise ValueError(f"epochs must be one 1-D sequence shared by all runs or one per run, got {_describe(epochs)}")
    if _is_flat(epochs):
        shared = _as_epoch_vector(epochs, "epochs")
        longest = int(np.argmax([r.size for r in runs]))
        if shared.size < runs[longest].size:
            raise ValueError(
                f"epochs has {shared.size} entries but curves[{longest}] has {runs[longest].size}; "
                "give one epoch number per entry of the longest run"
            )
        return [shared[: r.size] for r in runs]
    if len(epochs) != len(runs):
        raise ValueError(f"epochs has {len(epochs)} per-run vectors but curves has {len(runs)} runs")
    out = [_as_epoch_vector(e, f"epochs[{i}]") for i, e in enumerate(epochs)]
    for i, (e, r) in enumerate(zip(out, runs)):
        if e.size != r.size:
            raise ValueError(f"epochs[{i}] has {e.size} entries but curves[{i}] has {r.size}")
    return out


def _epoch_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _first_crossing(values: np.ndarray, epochs: np.ndarray, threshold: float, direction: str):
    """(time, reached): first evaluated epoch with value <= / >= threshold, else the last evaluated one."""
    evaluated = ~np.isnan(values)
    v, e = values[evaluated], epochs[evaluated]
    hit = np.flatnonzero(v <= threshold if direction == "below" else v >= threshold)
    if hit.size:
        return _epoch_number(e[hit[0]]), True
    return _epoch_number(e[-1]), False


def _kaplan_meier(times: Sequence[float], reached: Sequence[bool]):
    """Kaplan-Meier survival S(t) = prod_{t_i <= t} (1 - events_i / at_risk_i) (scipy ``ecdf(...).sf``)."""
    t = np.asarray(times, dtype=float)
    r = np.asarray(reached, dtype=bool)
    return stats.ecdf(stats.CensoredData(uncensored=t[r], right=t[~r])).sf


def _survival_band(sf, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise log-log band of S at sf.quantiles, with scipy's NaNs resolved.

    scipy leaves the band NaN where it is undefined: before the first event
    (S = 1, Greenwood variance 0: the band is [1, 1]) and where S = 0 (variance
    infinite: the limit of the log-log band is [0, 1]). Other NaNs get [0, 1].
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The confidence interval is undefined", category=RuntimeWarning)
        ci = sf.confidence_interval(confidence_level=level, method=_BAND_METHOD)
    s = np.asarray(sf.probabilities, dtype=float)
    low, high = np.asarray(ci.low.probabilities, float), np.asarray(ci.high.probabilities, float)
    low = np.where(np.isnan(low), np.where(s >= 1, 1.0, 0.0), low)
    high = np.where(np.isnan(high), 1.0, high)
    return low, high


def _first_time_at_or_below_half(t: np.ndarray, s: np.ndarray) -> int | float | None:
    hit = np.flatnonzero(s <= 0.5 + _PROB_TOL)
    return _epoch_number(t[hit[0]]) if hit.size else None


def _median_note(median: Any, times: list, n: int, n_reached: int) -> str | None:
    if median is None:
        return (
            f"fewer than half of the runs reached the threshold by epoch {max(times):g} "
            f"({n_reached} of {n}): the Kaplan-Meier survival never falls to 0.5"
        )
    if 2 * n_reached < n:
        return f"only {n_reached} of {n} runs reached the threshold: the median leans on runs censored early"
    return None


def time_to_threshold(
    curves: Any,
    threshold: float,
    *,
    direction: str = "below",
    epochs: Any = None,
    level: float = 0.95,
) -> TimeToThreshold:
    """Epochs until each run reaches a threshold, as right-censored survival data.

    A run's time is the first epoch whose value is <= threshold ("below", e.g. a
    loss) or >= threshold ("above", e.g. an accuracy). A run that never reaches
    it is right-censored at its last evaluated epoch: it counts as "not yet by
    then", neither dropped nor capped. None/NaN entries mean "not evaluated at
    that epoch" and are skipped; inf is refused (a diverged run: use NaN or drop it).

    Formulas:
        fraction_reached = k / n with the Clopper-Pearson interval
            (``binomtest(k, n).proportion_ci(method="exact")``);
        S(t) = prod_{t_i <= t} (1 - d_i / r_i) (Kaplan-Meier, ``scipy.stats.ecdf``
            on ``CensoredData``); median = min{t : S(t) <= 0.5} (the smallest such
            time, not R's midpoint rule when S = 0.5 on an interval);
        median_low / median_high = min{t : band_low(t) <= 0.5} / min{t : band_high(t) <= 0.5}
            (Brookmeyer-Crowley style), band = scipy's pointwise log-log interval
            of S at ``level`` (kept inside [0, 1], better than "linear" for few runs).

    Args:
        curves: sequence of per-run 1-D arrays of the metric over epochs (runs may
            differ in length), or a 2-D array with one row per run.
        threshold: finite number.
        direction: "below" or "above".
        epochs: epoch number of each entry: one strictly increasing 1-D sequence
            shared by all runs (at least as long as the longest run), or one per
            run of the same length as that run. Default 1, 2, 3, ...
        level: confidence level in (0, 1) of both intervals.

    Returns:
        TimeToThreshold (its ``survival()`` gives the curve for plotting).
    """
    level = _check_level(level)
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    direction = _check_choice(direction, "direction", {"below": "below", "above": "above"})
    runs = _as_curves(curves)
    run_epochs = _as_epochs(epochs, runs)
    crossings = [_first_crossing(v, e, float(threshold), direction) for v, e in zip(runs, run_epochs)]
    times, reached = [c[0] for c in crossings], [c[1] for c in crossings]
    n, k = len(times), sum(reached)
    fraction = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    sf = _kaplan_meier(times, reached)
    t = np.asarray(sf.quantiles, dtype=float)
    band_low, band_high = _survival_band(sf, level)
    median = _first_time_at_or_below_half(t, np.asarray(sf.probabilities, dtype=float))
    return TimeToThreshold(
        times, reached, n, k, k / n, float(fraction.low), float(fraction.high), median,
        _first_time_at_or_below_half(t, band_low), _first_time_at_or_below_half(t, band_high),
        _median_note(median, times, n, k), level, float(threshold), direction,
    )  # fmt: skip
