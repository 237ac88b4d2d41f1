"""SCL's knobs on the UFM: temperature x imbalance (exact solver), batch size x binding (gradient descent).

One cell: ``k`` classes, the first half of them majorities of ``ratio * minority`` samples, the rest
minorities of ``minority`` samples (``ratio = R``, the imbalance of the papers' step imbalance).

* Full batch (``batch_size = 0``): the reduced exact program (:func:`ufm.solvers.solve_reduced`) gives the
  certified minimiser; reported are the geometry verdict (``solver_status``), ``delta_of`` / ``delta_etf`` of the
  minimiser when the verdict is exact (of the returned Gram otherwise), the duality ``gap``, and the
  cosines between class means: within the majorities, within the minorities, across. With ReLU every cell
  is the orthogonal frame (Theorem 1); without it the geometry depends on R and the temperature.
* Mini-batches (``batch_size > 0``, ReLU only: the orthogonal frame is the target): Adam steps on free
  features until ``Delta_OF < 1e-3`` (:func:`ufm.solvers.gd.steps_to_of`), with or without the ``k``
  binding examples appended to every batch; ``reached`` is 1 when the frame was reached within the
  budget (``GD_BUDGET`` steps) and 0 otherwise (``solver_status`` "censored"), ``steps`` the count when
  reached (NaN otherwise: its mean is over the runs that reached the frame; read it with ``reached``).
"""

from __future__ import annotations

import numpy as np

from ufm.guidelines.base import Knob, PhaseLoss, register_phase_loss

CLASSES = 4
MINORITY = 5
GD_BUDGET = 5000

KNOBS = (
    Knob("temperature", float, 0.1, "the SCL temperature tau", low=0.01, high=100.0),
    Knob("ratio", float, 1.0, "imbalance R: majority count / minority count", low=1.0, high=1000.0),
    Knob("batch_size", int, 0, "mini-batch size for gradient descent (0: full batch, the exact solver)",
         low=0, high=100000),
    Knob("binding", bool, False, "append the k binding examples to every mini-batch"),
)


def check_knobs(grid: dict) -> None:
    """batch_size is 0 (full batch) or at least 2: a batch of one sample has no anchor, so no step moves."""
    if 1 in grid.get("batch_size", []):
        raise ValueError("knob batch_size=1: a batch of one sample has no positive pair, so gradient descent takes "
                         "no step; accepted: 0 (full batch, the exact solver) or >= 2")


def step_counts(ratio: float, classes: int = CLASSES, minority: int = MINORITY) -> list[int]:
    """Class counts of a step imbalance: ``classes // 2`` majorities of ``round(ratio * minority)``."""
    major = classes // 2
    return [int(round(ratio * minority))] * major + [minority] * (classes - major)


def class_cosines(class_gram: np.ndarray, majors: int) -> dict:
    """Mean cosine between class means within the first ``majors`` classes, within the rest, and across."""
    g = np.asarray(class_gram, dtype=float)  # (k, k)
    d = np.sqrt(np.clip(np.diag(g), 1e-300, None))
    cos = g / np.outer(d, d)
    k = g.shape[0]

    def mean_off(rows, cols):
        vals = [cos[i, j] for i in rows for j in cols if i != j]
        return float(np.mean(vals)) if vals else float("nan")

    a, b = range(majors), range(majors, k)
    return {"cos_majority": mean_off(a, a), "cos_minority": mean_off(b, b), "cos_across": mean_off(a, b)}


def supcon_cell(seed: int, relu: bool, temperature: float, ratio: float, batch_size: int, binding: bool) -> dict:
    """One cell of the SCL phase table (see the module docstring)."""
    from ufm.solvers import solve_reduced
    from ufm.solvers.gd import steps_to_of

    counts = step_counts(ratio)
    if batch_size == 0:
        if binding:
            raise ValueError("knob binding=true needs batch_size > 0 (binding examples join mini-batches)")
        res = solve_reduced(counts, temperature=temperature, relu=relu)
        exact = res.verdict == "exact"
        return {"solver_status": res.verdict, "delta_of": res.delta_of if exact else res.returned_delta_of,
                "delta_etf": res.delta_etf if exact else res.returned_delta_etf, "gap": res.gap,
                **class_cosines(res.gram_class, CLASSES // 2)}
    if not relu:
        raise ValueError(f"knob batch_size={batch_size}: steps to the orthogonal frame are measured with --relu "
                         "only (without the ReLU the minimiser under imbalance is not the frame)")
    labels = np.repeat(np.arange(CLASSES), counts)
    steps = steps_to_of(labels, dim=CLASSES + 2, batch_size=batch_size, binding=binding, seed=seed,
                        temperature=temperature, max_steps=GD_BUDGET, check_every=5)
    return {"solver_status": "reached" if steps is not None else "censored", "reached": float(steps is not None),
            "steps": float(steps) if steps is not None else float("nan")}


SUPCON = register_phase_loss(PhaseLoss(
    name="supcon", knobs=KNOBS, cell=supcon_cell, quantities=("delta_of", "delta_etf", "cos_minority", "reached", "steps"),
    seeded=lambda v: v["batch_size"] > 0, description=__doc__.split("\n\n")[0], validate=check_knobs))
