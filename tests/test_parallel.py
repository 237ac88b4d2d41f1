"""ufm.parallel.run_parallel: independent solves over worker processes give the numbers of one thread here.

The notebooks' UFM loops and the phase tables run through it; what nbval compares is only stable if a
worker's result is bit for bit the one the same call gives in a process of one thread.
"""

import pickle
from functools import partial

import numpy as np
import pytest

from ufm import limited_threads
from ufm.batching import EpochBatcher, epoch_batcher
from ufm.guidelines import phase_table
from ufm.parallel import run_parallel
from ufm.solvers import solve_gd
from ufm.solvers.large_margin_ufm import large_margin_phase

LABELS = np.repeat(np.arange(4), [10, 10, 2, 2])


def _gd(seed: int, binding: bool):
    return partial(solve_gd, LABELS, 6, temperature=0.2, relu=True, optimizer="adam", lr=0.05,
                   batches=epoch_batcher(LABELS, 6, seed, binding=binding), steps=60, seed=seed, record_every=20)


def _fail_on(x: int) -> int:
    if x == 2:
        raise ValueError(f"bad item {x}")
    return x * x


def test_workers_give_the_numbers_of_one_thread_in_the_order_of_the_calls():
    calls = [_gd(seed, binding) for seed in (0, 1, 2) for binding in (False, True)]
    with limited_threads(1):
        here = [c() for c in calls]
    done = []
    there = run_parallel(calls, jobs=2, on_done=done.append)
    assert sorted(done) == list(range(len(calls)))
    for a, b in zip(here, there):
        assert np.array_equal(a.history["delta_of"], b.history["delta_of"])
        assert np.array_equal(a.features, b.features)
    # the arms differ, so a shuffled order would show
    assert not np.array_equal(here[0].features, here[1].features)


def test_a_failing_call_raises_its_own_error_from_a_worker():
    with pytest.raises(ValueError, match="bad item 2"):
        run_parallel([partial(_fail_on, x) for x in range(4)], jobs=2)
    assert run_parallel([partial(_fail_on, x) for x in (0, 1, 3)], jobs=1) == [0, 1, 9]


@pytest.mark.parametrize("jobs", [0, -1, True, 1.5])
def test_jobs_must_be_a_positive_integer(jobs):
    with pytest.raises(ValueError, match=rf"jobs must be an integer >= 1, got {jobs!r}"):
        run_parallel([], jobs=jobs)


def test_epoch_batcher_pickles_and_batches_as_before():
    f = epoch_batcher(LABELS, 5, seed=3, binding=True)
    g = pickle.loads(pickle.dumps(f))
    assert isinstance(f, EpochBatcher)
    for e in range(3):
        assert all(np.array_equal(a, b) for a, b in zip(f(e), g(e)))


def test_phase_table_over_workers_is_the_table_of_one_thread():
    grid = {"temperature": [0.5], "ratio": [3], "batch_size": [4], "binding": [False, True]}
    with limited_threads(1):
        here = phase_table("supcon", grid, relu=True, seeds=2)
    there = phase_table("supcon", grid, relu=True, seeds=2, jobs=2)
    assert here.equals(there)
    assert there["reached"].notna().all() and len(there) == 4


def test_large_margin_phase_over_workers_is_the_table_of_one_thread():
    kw = dict(delta_v=(0.5,), ratio=(0.5, 2.0), lam=(10.0,), seeds=2, steps=60, per_class=4)
    with limited_threads(1):
        here = large_margin_phase(**kw)
    there = large_margin_phase(**kw, jobs=2)
    assert here.equals(there) and len(there) == 4
