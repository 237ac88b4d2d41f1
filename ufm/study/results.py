"""A study's results as tables: every epoch of every run, the final epochs, and their statistics.

* :func:`collect` -> one row per run and epoch (columns: ``run_id``, each swept key as in the grid,
  ``seed``, ``status``, then every metric of ``metrics.jsonl``; a metric named like a swept key, e.g. the
  per-epoch ``lr`` of a study that sweeps ``lr``, becomes ``metric_lr``), also written to ``results.csv``.
  Works on a half-finished study: the runs not started are listed in ``df.attrs["missing"]``, the
  interrupted ones in ``df.attrs["partial"]``, and a warning says so.
* :func:`final_rows` -> the last epoch of every complete run.
* :func:`summarise` -> per grid point, for each metric: n, mean and the 95% t-interval over seeds.
* :func:`compare` -> arm A against arm B of one swept key, paired by seed (and by every other swept
  key): mean difference B - A, its interval, paired t and Wilcoxon p-values, seeds each way.

Grid values that are not scalars (``milestones=[5, 8]``) are kept as their JSON text, so that they
group and compare like any value.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from ufm import stats
from ufm.study.study import Study
from ufm.study.worker import ERROR_FILE
from ufm.train import read_metrics, run_state

__all__ = ["collect", "final_rows", "summarise", "compare", "metric_columns", "IncompleteStudyWarning",
           "RESULTS_FILE", "DEFAULT_METRICS"]

RESULTS_FILE = "results.csv"
DEFAULT_METRICS = ("train_acc", "test_acc", "probe_acc", "val_acc", "ncc_acc", "delta_of", "delta_etf", "nc1")
_ID_COLUMNS = ("run_id", "seed", "status", "epoch")


class IncompleteStudyWarning(UserWarning):
    """Some runs of the study are missing or unfinished; the table holds what exists."""


def _value(v):
    """A grid value as a table cell: scalars as they are, anything else as its JSON text."""
    return v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v, sort_keys=True)


def _as_study(study) -> Study:
    return study if isinstance(study, Study) else Study.open(study)


def collect(study, write: bool = True) -> pd.DataFrame:
    """Every epoch of every run of ``study`` (a :class:`Study` or its folder) as a DataFrame.

    Args:
        write: also write ``<study>/results.csv``.
    Returns:
        one row per (run, epoch); ``attrs``: ``keys`` (the swept keys), ``missing`` / ``partial`` /
        ``failed`` (run ids), ``epochs`` (planned epochs per run).
    """
    study = _as_study(study)
    rows, missing, partial, failed = [], [], [], []
    for run in study.runs:
        folder = study.run_dir(run)
        state = run_state(folder, run.config.epochs)
        if (folder / ERROR_FILE).exists() and state.status != "complete":
            failed.append(run.run_id)
        if state.status == "new":
            missing.append(run.run_id)
            continue
        if state.status == "partial":
            partial.append(run.run_id)
        head = {"run_id": run.run_id, **{k: _value(v) for k, v in run.params.items()}, "seed": run.seed,
                "status": state.status}
        reserved = set(head) - {"epoch"}
        rows += [{**head, **{(f"metric_{k}" if k in reserved else k): v for k, v in m.items()}}
                 for m in read_metrics(folder)]
    keys = study.spec.keys
    df = pd.DataFrame(rows, columns=_columns(rows, keys))
    df.attrs.update(keys=keys, missing=missing, partial=partial, failed=failed,
                    epochs={r.run_id: r.config.epochs for r in study.runs})
    if write:
        df.to_csv(study.root / RESULTS_FILE, index=False)
    if missing or partial:
        warnings.warn(_incomplete_message(len(study.runs), missing, partial, failed), IncompleteStudyWarning, stacklevel=2)
    return df


def _columns(rows: list[dict], keys: list[str]) -> list[str]:
    first = ["run_id", *keys, "seed", "status", "epoch"]
    rest = []
    for row in rows:
        rest += [c for c in row if c not in first and c not in rest]
    return first + rest


def _incomplete_message(total, missing, partial, failed) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {total} runs not started: {', '.join(missing)}")
    if partial:
        parts.append(f"{len(partial)} unfinished: {', '.join(partial)}")
    if failed:
        parts.append(f"{len(failed)} failed (see their {ERROR_FILE})")
    return "; ".join(parts) + "; run the sweep again to finish them"


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last epoch of every complete run (one row per run)."""
    done = df[df["status"] == "complete"]
    if done.empty:
        return done.copy()
    last = done.loc[done.groupby("run_id", sort=False)["epoch"].idxmax()]
    return last.reset_index(drop=True)


def metric_columns(df: pd.DataFrame, metrics=None) -> list[str]:
    """The metrics to report: ``metrics`` if given (each checked), else the default ones present."""
    if metrics:
        unknown = [m for m in metrics if m not in df.columns]
        if unknown:
            known = [c for c in df.columns if c not in (*_ID_COLUMNS, *df.attrs.get("keys", []))]
            raise ValueError(f"unknown metric(s) {unknown}; the runs logged: {known}")
        return list(metrics)
    return [m for m in DEFAULT_METRICS if m in df.columns and df[m].notna().any()]


def summarise(df: pd.DataFrame, metrics=None, level: float = 0.95) -> list[dict]:
    """Per grid point (in spec order): ``params``, ``n`` (complete runs) and, per metric, the mean and
    the t-interval over seeds (``low``/``high``/``half_width`` are None with fewer than 2 values)."""
    fin = final_rows(df)
    keys = df.attrs.get("keys", [])
    metrics = metric_columns(df, metrics)
    out = []
    groups = fin.groupby(keys, sort=False, dropna=False) if keys else [((), fin)]
    for point, part in groups:
        point = point if isinstance(point, tuple) else (point,)
        entry = {"params": {k: _plain(v) for k, v in zip(keys, point)}, "n": int(len(part)), "metrics": {}}
        for m in metrics:
            entry["metrics"][m] = _interval(part[m].dropna().to_numpy(dtype=float), level)
        out.append(entry)
    return out


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _interval(x: np.ndarray, level: float) -> dict:
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "half_width": None, "n": 0}
    if x.size == 1:
        return {"mean": float(x[0]), "low": None, "high": None, "half_width": None, "n": 1}
    ci = stats.mean_ci(x, level=level)
    return {"mean": ci.estimate, "low": ci.low, "high": ci.high, "half_width": ci.half_width, "n": int(x.size)}


def compare(df: pd.DataFrame, key: str, a, b, metric: str = "test_acc", level: float = 0.95) -> list[dict]:
    """Arm ``key == b`` against arm ``key == a`` on ``metric`` (final epoch), paired by seed within
    each combination of the other swept keys.

    Returns:
        one dict per combination: ``params`` (the other keys), ``n`` (paired seeds), ``mean_a``,
        ``mean_b``, and the :func:`ufm.stats.paired_comparison` of B - A.
    """
    keys = df.attrs.get("keys", [])
    if key not in keys:
        raise ValueError(f"--compare key {key!r} is not swept in this study; swept keys: {keys}")
    metric_columns(df, [metric])
    fin = final_rows(df)
    a, b = _value(a), _value(b)
    for v in (a, b):
        if not (fin[key] == v).any():
            raise ValueError(f"{key}={v!r} has no complete run; values with complete runs: {sorted(fin[key].unique().tolist())}")
    others = [k for k in keys if k != key]
    groups = fin.groupby(others, sort=False, dropna=False) if others else [((), fin)]
    out = []
    for point, part in groups:
        point = point if isinstance(point, tuple) else (point,)
        arms = part.pivot_table(index="seed", columns=key, values=metric, aggfunc="first")
        if a not in arms.columns or b not in arms.columns:
            continue
        pair = arms[[a, b]].dropna()
        if len(pair) < 2:
            raise ValueError(f"{dict(zip(others, point))}: {len(pair)} seed(s) with both arms complete; "
                             "a paired comparison needs at least 2")
        res = stats.paired_comparison(pair[a].to_numpy(float), pair[b].to_numpy(float), level=level)
        out.append({"params": {k: _plain(v) for k, v in zip(others, point)}, "metric": metric, "key": key,
                    "a": _plain(a), "b": _plain(b), "seeds": [int(s) for s in pair.index],
                    "mean_a": float(pair[a].mean()), "mean_b": float(pair[b].mean()), **res.to_dict()})
    return out
