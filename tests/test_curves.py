"""ufm.study.curves: per-run summaries of a study table (terminal phase, tail slope, window mean, pairing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ufm.stats import time_to_threshold
from ufm.study.curves import pair_by_seed, run_curves, tail_slope, terminal_phase_start, window_mean


def _table() -> pd.DataFrame:
    """Two arms (a in {0, 1}) x 3 seeds x 10 epochs, evaluated every 2 epochs (odd epochs: None)."""
    rows = []
    for a in (0, 1):
        for seed in range(3):
            for epoch in range(1, 11):
                ev = epoch % 2 == 0
                acc = 1.0 if epoch >= 4 + 2 * seed + a * 2 else 0.9
                rows.append({"run_id": f"a{a}_s{seed}", "a": a, "seed": seed, "status": "complete", "epoch": epoch,
                             "train_acc": acc if ev else None,
                             "delta": (1.0 - 0.05 * epoch - 0.1 * a + 0.01 * seed) if ev else None})
    df = pd.DataFrame(rows)
    df.attrs["keys"] = ["a"]
    return df


def test_terminal_phase_start_and_a_run_that_never_gets_there():
    df = _table()
    start = terminal_phase_start(df)
    assert start.loc["a0_s0", "value"] == 4 and start.loc["a1_s2", "value"] == 10  # acc 1 from epoch 4 / 10
    assert list(start.columns) == ["a", "seed", "value"] and start.loc["a1_s1", "a"] == 1
    df.loc[(df.run_id == "a0_s1") & (df.epoch == 10), "train_acc"] = 0.99
    assert terminal_phase_start(df).loc["a0_s1", "value"] is pd.NA


def test_tail_slope_window_mean_and_pairing():
    df = _table()
    slope = tail_slope(df, "delta", last=6)  # evaluations at epochs 6, 8, 10
    assert np.allclose(slope["value"], -0.05)
    mean = window_mean(df, "delta", 6, 10)
    assert mean.loc["a1_s2", "value"] == pytest.approx(np.mean([1 - 0.05 * e - 0.1 + 0.02 for e in (6, 8, 10)]))
    a0, a1 = mean[mean.a == 0], mean[mean.a == 1]
    x, y, seeds = pair_by_seed(a0, a1)
    assert seeds == [0, 1, 2] and np.allclose(y - x, -0.1)
    with pytest.raises(ValueError, match="one run per seed"):
        pair_by_seed(mean, a1)
    with pytest.raises(ValueError, match="fewer than 2 evaluations"):
        tail_slope(df, "delta", last=1)


def test_run_curves_feed_time_to_threshold():
    df = _table()
    values, epochs, ids = run_curves(df[df.a == 0], "delta")
    assert len(values) == 3 and list(epochs[0]) == [2, 4, 6, 8, 10] and ids[0] == "a0_s0"
    ttt = time_to_threshold(values, 0.515, epochs=epochs)  # seed s at epoch e: 1 - 0.05 e + 0.01 s
    assert ttt.times == [10, 10, 10] and ttt.reached == [True, True, False]
