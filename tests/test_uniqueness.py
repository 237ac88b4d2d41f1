"""The exact uniqueness rule of ``ufm.batching.uniqueness_conditions`` against MEASURED uniqueness.

Measured uniqueness (``ufm.solvers.departure.max_departure``): the largest departure ``D(delta)`` from the
orthogonal frame (OF) among Grams within ``delta`` of the optimal objective. The OF is the unique minimiser
iff ``D(delta) -> 0`` as ``delta -> 0`` (like ``delta`` or ``sqrt(delta)``); otherwise ``D`` stays of order
one. Judged at two deltas: unique when ``D(1e-7) < 0.1 D(1e-3)`` and ``D(1e-7) < 0.2``, not unique when
``D(1e-7) > 0.3``. Theory: ``theory/scl-orthogonal-frame.md``, Theorem 2.
"""

import numpy as np
import pytest

from ufm.batching import VERDICTS, bind, binding_examples, random_batches, uniqueness_conditions
from ufm.solvers.departure import max_departure

TAU = 0.1
A = np.array


def lab(counts):
    return np.repeat(np.arange(len(counts)), counts)


def measured(y, batches):
    """'unique' / 'not unique' from the departure at two deltas (None when neither test passes)."""
    d3 = max_departure(y, batches, TAU, delta=1e-3).departure
    d7 = max_departure(y, batches, TAU, delta=1e-7).departure
    if d7 < 0.1 * d3 and d7 < 0.2:
        return "unique", d3, d7
    if d7 > 0.3:
        return "not unique", d3, d7
    return None, d3, d7


Y4 = lab([4, 4, 2, 2])
Y6611 = lab([6, 6, 1, 1])
FAMILY = {
    # single-class batch [0,1,2] forces G01 = G02 = G12; the mixed batch forces G01 = 1: unique
    "counterexample": (A([0, 0, 0, 1, 1]), [A([0, 1, 3, 4]), A([0, 1, 2])], "unique"),
    # a single-class batch of two pins nothing: sample 2 is free
    "single-class pair (m = 2)": (A([0, 0, 0, 1, 1]), [A([0, 1, 3, 4]), A([0, 2])], "not unique"),
    # three single-class batches merge class 0 step by step (the fixpoint needs several passes)
    "single-class chain": (A([0, 0, 0, 0, 0, 1, 1]),
                           [A([3, 4, 0]), A([1, 2, 3]), A([0, 1, 2]), A([0, 1, 5, 6]), A([2, 5, 6]), A([3, 5, 6]),
                            A([4, 5, 6])], "unique"),
    # a single-class batch ties three components to one common cosine t, which stays free
    "single-class ties three components": (A([0, 0, 0, 1, 1, 1]),
                                           [A([0, 1, 2]), A([0, 3, 4, 5]), A([1, 3, 4, 5]), A([2, 3, 4, 5])],
                                           "not unique"),
    "full batch": (Y4, None, "unique"),
    "classes kept apart": (Y4, [np.flatnonzero(Y4 < 2), np.flatnonzero(Y4 >= 2)], "not unique"),
    "random (3 epochs of 4), seed 0": (Y4, [b for s in (0, 100, 200) for b in random_batches(Y4, 4, s)],
                                       "not unique"),
    "random (3 epochs of 4), seed 3": (Y4, [b for s in (3, 103, 203) for b in random_batches(Y4, 4, s)], "unique"),
    "random of 3 + binding": (Y4, bind(random_batches(Y4, 3, 0), binding_examples(Y4, 0)), "unique"),
    # binding puts classes 2 and 3 in every batch, but neither ever has a positive: (2, 3) is never read
    "6,6,1,1 + binding": (Y6611, bind(random_batches(Y6611, 4, 0), binding_examples(Y6611, 0)), "not unique"),
}


@pytest.mark.parametrize("name", list(FAMILY))
def test_verdict_agrees_with_measured_uniqueness(name):
    y, batches, expect = FAMILY[name]
    u = uniqueness_conditions(y, batches)
    assert u.verdict == expect and u.unique == (expect == "unique")
    got, d3, d7 = measured(y, batches)
    assert got == u.verdict, f"{name}: rule {u.verdict!r}, departures {d3:.4g} (1e-3), {d7:.4g} (1e-7)"


def _random_batching(seed):
    """A small random batching with single-class batches mixed in (n <= 8)."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(5, 9)), int(rng.integers(2, 4))
    y = np.sort(np.concatenate([np.arange(k), rng.integers(0, k, n - k)]))
    batches = []
    for _ in range(int(rng.integers(4, 10))):
        m = int(rng.integers(2, 5))
        idx = np.flatnonzero(y == rng.integers(0, k))
        if rng.random() < 0.3 and idx.size >= 2:
            batches.append(rng.choice(idx, min(m, idx.size), replace=False))
        else:
            batches.append(rng.choice(n, m, replace=False))
    return y, batches


def test_random_batchings_agree_with_measured_uniqueness():
    verdicts, merges = [], 0
    for seed in range(100, 130):
        y, batches = _random_batching(seed)
        u = uniqueness_conditions(y, batches)
        got, d3, d7 = measured(y, batches)
        assert got == u.verdict, f"seed {seed}: rule {u.verdict!r}, departures {d3:.4g}, {d7:.4g}"
        verdicts.append(u.verdict)
        if u.unique:  # the paper's plain rule is necessary (not sufficient)
            assert uniqueness_conditions(y, batches, refined=False).conditions_hold
        merges += bool(u.single_class_merges)
    # the sample covers both answers and single-class merges
    assert 5 <= verdicts.count("unique") <= 25 and merges >= 3


def test_counterexample_departure_shrinks_like_sqrt_delta():
    y, batches, _ = FAMILY["counterexample"]
    d = [max_departure(y, batches, TAU, delta=dl).departure for dl in (1e-3, 1e-5, 1e-7)]
    # the single-class equality is second order: each factor 100 in delta divides D by about 10
    assert 5 < d[1] / d[2] < 20 and d[0] > d[1]
    u = uniqueness_conditions(y, batches)
    # the mixed batch alone leaves sample 2 apart; the single-class batch merges it
    assert u.graph_components == {0: 2, 1: 1} and u.class_components == {0: 1, 1: 1}
    assert u.single_class_merges == [1] and "single-class" in u.reason


def test_not_unique_maximiser_is_another_minimiser():
    y, batches, _ = FAMILY["classes kept apart"]
    r = max_departure(y, batches, TAU, delta=1e-7)
    assert r.f_maximiser - r.f_reference < 2e-7
    assert np.abs(r.gram_class - np.eye(4)).max() > 0.5  # class means no longer an OF
    # the same answer with the OF passed explicitly
    ref = (y[:, None] == y[None, :]).astype(float)
    assert max_departure(y, batches, TAU, delta=1e-7, reference=ref).departure == pytest.approx(r.departure, rel=1e-3)
    with pytest.raises(ValueError, match="linear only"):
        max_departure(y, batches, TAU, reference=0.5 * ref + 0.5 * np.eye(y.size))


def test_fixpoint_order_does_not_matter():
    y, batches, _ = FAMILY["single-class chain"]
    u = uniqueness_conditions(y, batches)
    # the mixed batch joins 0 and 1; then batch 2 = [0,1,2] merges 2, batch 1 = [1,2,3] merges 3 and only
    # then batch 0 = [3,4,0] merges 4: three passes
    assert u.unique and u.single_class_merges == [2, 1, 0] and u.graph_components[0] == 4
    assert uniqueness_conditions(y, batches[::-1]).unique


def test_unknown_where_the_construction_does_not_fit():
    # class 0 in three components tied by one single-class batch: the construction puts them at a common
    # cosine t < 1 and needs k + 3 - 1 = 4 directions
    y, batches, _ = FAMILY["single-class ties three components"]
    assert uniqueness_conditions(y, batches).directions_needed == 4
    for dim, verdict in [(1, "unknown"), (2, "unknown"), (3, "unknown"), (4, "not unique"), (None, "not unique")]:
        u = uniqueness_conditions(y, batches, dim=dim)
        assert u.verdict == verdict and not u.unique and u.dim == dim
    assert "dim = 1 < k = 2" in uniqueness_conditions(y, batches, dim=1).reason
    # a class split into two unlinked groups: one spare direction (k + 1)
    y, batches, _ = FAMILY["single-class pair (m = 2)"]
    assert [uniqueness_conditions(y, batches, dim=d).verdict for d in (2, 3)] == ["unknown", "not unique"]
    # an untied pair of classes: the construction stays in the k class directions
    y, batches, _ = FAMILY["6,6,1,1 + binding"]
    u = uniqueness_conditions(y, batches, dim=4)
    assert u.verdict == "not unique" and u.directions_needed == 4 and u.missing_pairs == [(2, 3)]
    # unique needs only that the OF fits (d >= k)
    y, batches, _ = FAMILY["counterexample"]
    assert uniqueness_conditions(y, batches, dim=2).verdict == "unique"
    assert uniqueness_conditions(y, batches, dim=1).verdict == "unknown"
    assert {uniqueness_conditions(y, batches, dim=d).verdict for d in (1, 2, None)} <= set(VERDICTS)
    with pytest.raises(ValueError, match="dim"):
        uniqueness_conditions(y, batches, dim=0)
