"""Per-run summaries of a study's curves (a table from :func:`ufm.study.collect`): where the terminal phase
starts, whether a metric has stopped moving, its mean over a window, and the curves themselves for
:func:`ufm.stats.time_to_threshold`.

Every function returns one row per run, indexed by ``run_id`` with the swept keys and the seed as columns,
so two arms of a study pair up by seed with :func:`pair_by_seed`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["terminal_phase_start", "tail_slope", "window_mean", "run_curves", "pair_by_seed", "run_table"]


def _evaluated(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    if metric not in df.columns:
        raise ValueError(f"metric {metric!r} is not in the table; columns: {list(df.columns)}")
    return df[df[metric].notna()]


def run_table(df: pd.DataFrame, values: dict, dtype=None) -> pd.DataFrame:
    """``values`` (run id -> value) as a table with each run's swept keys and seed (column ``value``)."""
    keys = df.attrs.get("keys", [])
    heads = df.drop_duplicates("run_id").set_index("run_id")[[*keys, "seed"]]
    out = heads.loc[list(values)].copy()
    out["value"] = pd.array(list(values.values()), dtype=dtype)
    out.attrs["keys"] = keys
    return out


def terminal_phase_start(df: pd.DataFrame, metric: str = "train_acc", value: float = 1.0) -> pd.DataFrame:
    """Per run, the first evaluated epoch from which ``metric`` equals ``value`` at every later evaluation
    (the start of the terminal phase for ``train_acc``); ``pd.NA`` (an integer column's missing value) when
    the last evaluation is not at ``value``."""
    out = {}
    for run_id, g in _evaluated(df, metric).groupby("run_id", sort=False):
        g = g.sort_values("epoch")
        off = g["epoch"][g[metric] != value]
        if len(off) and off.iloc[-1] == g["epoch"].iloc[-1]:
            out[run_id] = None
        else:
            later = g["epoch"][g["epoch"] > off.iloc[-1]] if len(off) else g["epoch"]
            out[run_id] = int(later.iloc[0])
    return run_table(df, out, dtype="Int64")


def tail_slope(df: pd.DataFrame, metric: str, last: int) -> pd.DataFrame:
    """Per run, the least-squares slope (per epoch) of ``metric`` over the evaluations in its last ``last``
    epochs: near 0 when the metric has stopped moving."""
    out = {}
    for run_id, g in _evaluated(df, metric).groupby("run_id", sort=False):
        tail = g[g["epoch"] > g["epoch"].max() - last]
        if len(tail) < 2:
            raise ValueError(f"run {run_id}: fewer than 2 evaluations of {metric} in its last {last} epochs")
        out[run_id] = float(np.polyfit(tail["epoch"].to_numpy(float), tail[metric].to_numpy(float), 1)[0])
    return run_table(df, out)


def window_mean(df: pd.DataFrame, metric: str, first: int, last: int) -> pd.DataFrame:
    """Per run, the mean of ``metric`` over its evaluations at epochs ``first..last`` (inclusive)."""
    out = {}
    for run_id, g in _evaluated(df, metric).groupby("run_id", sort=False):
        win = g[(g["epoch"] >= first) & (g["epoch"] <= last)][metric]
        if win.empty:
            raise ValueError(f"run {run_id}: no evaluation of {metric} in epochs {first}..{last}")
        out[run_id] = float(win.mean())
    return run_table(df, out)


def run_curves(df: pd.DataFrame, metric: str) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(values, epochs, run ids): each run's evaluated ``metric`` and the epochs of those evaluations, in
    run order, ready for :func:`ufm.stats.time_to_threshold` (``curves=values, epochs=epochs``)."""
    values, epochs, ids = [], [], []
    for run_id, g in _evaluated(df, metric).groupby("run_id", sort=False):
        g = g.sort_values("epoch")
        values.append(g[metric].to_numpy(float))
        epochs.append(g["epoch"].to_numpy(float))
        ids.append(run_id)
    return values, epochs, ids


def pair_by_seed(a: pd.DataFrame, b: pd.DataFrame, column: str = "value") -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The values of two per-run tables on their common seeds: (a values, b values, seeds), seed order."""
    sa, sb = a.set_index("seed")[column], b.set_index("seed")[column]
    if sa.index.has_duplicates or sb.index.has_duplicates:
        raise ValueError("each table must hold one run per seed: select one grid point first")
    seeds = sorted(set(sa.index) & set(sb.index))
    if len(seeds) < 2:
        raise ValueError(f"{len(seeds)} common seed(s): a paired comparison needs at least 2")
    return sa.loc[seeds].to_numpy(float), sb.loc[seeds].to_numpy(float), [int(s) for s in seeds]
