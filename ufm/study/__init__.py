"""Studies: a base config x a grid x seeds, run on this machine or on a Ray cluster, collected into one
table, summarised with intervals over seeds.

    from ufm.study import StudySpec, run_study, collect, summarise, compare
    spec = StudySpec("large_margin", "ci", grid={"loss_kwargs.delta_d": [1.0, 1.5]}, seeds=5)
    study = run_study(spec, "runs/delta_d", jobs=2)        # resumable: a second call trains nothing
    df = collect(study)                                     # every epoch of every run (results.csv)
    summarise(df)                                           # mean and 95% interval per grid point
    compare(df, "loss_kwargs.delta_d", 1.0, 1.5, "test_acc")  # paired by seed

Command line: ``python -m ufm sweep`` and ``python -m ufm report`` (``ufm/study/cli.py``).
"""

from __future__ import annotations

from ufm.study.executors import BACKENDS, LocalExecutor, RayExecutor, available_cores, make_executor
from ufm.study.report import format_comparison, format_interval, format_summary
from ufm.study.curves import pair_by_seed, run_curves, tail_slope, terminal_phase_start, window_mean
from ufm.study.results import (
    DEFAULT_METRICS,
    RESULTS_FILE,
    IncompleteStudyWarning,
    collect,
    compare,
    final_rows,
    metric_columns,
    summarise,
)
from ufm.study.spec import RunSpec, StudySpec, parse_grid, parse_grid_values
from ufm.study.study import STUDY_FILE, Study, run_study
from ufm.study.worker import RunOutcome, RunTask, execute_run

__all__ = [
    "StudySpec", "RunSpec", "Study", "run_study", "collect", "final_rows", "summarise", "compare",
    "metric_columns", "parse_grid", "parse_grid_values", "format_summary", "format_comparison",
    "format_interval", "LocalExecutor", "RayExecutor", "make_executor", "available_cores", "execute_run",
    "RunTask", "RunOutcome", "IncompleteStudyWarning", "BACKENDS", "STUDY_FILE", "RESULTS_FILE",
    "DEFAULT_METRICS", "terminal_phase_start", "tail_slope", "window_mean", "run_curves", "pair_by_seed",
]
