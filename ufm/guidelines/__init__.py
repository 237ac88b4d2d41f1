"""Hyperparameter guidelines: each loss's knobs mapped to the geometry of the UFM minimiser.

    from ufm.guidelines import phase_table
    df = phase_table("supcon", {"temperature": [0.05, 0.1, 0.5], "ratio": [1, 10, 100]})
    ufm.study.summarise(df, ["delta_of"])          # mean and 95% interval per grid point
    ufm.plotting.phase_diagram(df, "ratio", "temperature", "delta_of")

Command line: ``python -m ufm phase --loss NAME --grid KNOB=V1,V2 ... --out DIR`` (``ufm/guidelines/cli.py``).
A loss joins with one module here that registers a :class:`PhaseLoss`.
"""

from __future__ import annotations

from ufm.guidelines.base import PHASE_LOSSES, Knob, PhaseLoss, check_grid, get_phase_loss, phase_table, register_phase_loss
from ufm.guidelines import gini_kl, large_margin, pod, supcon  # noqa: F401  (each registers its loss)

__all__ = ["PHASE_LOSSES", "Knob", "PhaseLoss", "check_grid", "get_phase_loss", "phase_table", "register_phase_loss"]
