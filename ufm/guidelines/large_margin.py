"""The large-margin loss's knobs on the UFM: delta_d / delta_v x lambda x delta_v (relative to the feature
scale) x gamma.

One cell: :func:`ufm.solvers.large_margin_ufm.large_margin_ufm_run` (free 2-d features of 4 balanced classes
and a linear classifier trained with ``CE + lambda L_dis``, Adam, partial momentum centres), measured as in
``theory/large-margin.md``: ``train_acc``, ``margin_over_dv`` (minimum sample margin / delta_v),
``spread_over_dv`` (largest distance to the stored centre / delta_v), ``min_gap`` (Theorem 1's slack,
``>= 0`` by the theorem), ``feature_norm``, and ``dv_over_scale`` (delta_v over the mean feature norm that
cross-entropy alone reaches from the same seed: where delta_v sits against the features' own scale).
``delta_d`` is given directly or as ``ratio * delta_v`` (sweep one of the two). ``gamma_effective`` is
``gamma (1 - m)``: under partial momentum the centre-norm term reaches the features only through the centres'
``1 - m`` share. ``beta = 0`` drops the margin term: ``L_c + L_r`` alone is minimised by putting every feature
and every centre at the origin (the trivial solutions of the paper's second version), which only the
cross-entropy part prevents; ``feature_norm`` and ``centre_norm`` show how far. ``solver_status`` is
"separated" when every sample is classified and "not separated" otherwise.
"""

from __future__ import annotations

from functools import lru_cache

from ufm.guidelines.base import Knob, PhaseLoss, register_phase_loss

STEPS = 400

KNOBS = (
    Knob("delta_v", float, 0.5, "compactness radius delta_v", low=0.0, low_open=True, high=100.0),
    Knob("delta_d", float, 0.0, "margin target delta_d (0: ratio x delta_v)", low=0.0, high=1000.0),
    Knob("ratio", float, 3.0, "delta_d / delta_v (used when delta_d is 0)", low=0.0, high=100.0),
    Knob("lambda", float, 1.0, "weight of L_dis in CE + lambda L_dis", low=0.0, high=1e4),
    Knob("gamma", float, 1e-3, "weight of the centre-norm term L_r", low=0.0, high=100.0),
    Knob("beta", float, 1.0, "weight of the margin term L_m (0: L_c + L_r only, the trivial solutions)", low=0.0,
         high=100.0),
    Knob("momentum", float, 0.99, "centre momentum m (gamma acts on the features at gamma (1 - m))", low=0.0,
         high=0.9999),
)


def check_knobs(grid: dict) -> None:
    """delta_d and ratio say the same thing: at most one of them is swept."""
    if "delta_d" in grid and "ratio" in grid:
        raise ValueError("knobs delta_d and ratio both set delta_d (ratio = delta_d / delta_v): sweep one of them")


@lru_cache(maxsize=64)
def ce_feature_scale(seed: int) -> float:
    """Mean feature norm that cross-entropy alone (lambda = 0) reaches from ``seed`` in ``STEPS`` steps."""
    from ufm.solvers.large_margin_ufm import large_margin_ufm_run

    return float(large_margin_ufm_run(1.0, 1.0, 0.0, 0.0, steps=STEPS, seed=seed, record_every=STEPS)["feature_norm"])


def large_margin_cell(seed: int, relu: bool, delta_v: float, delta_d: float, ratio: float, gamma: float,
                      beta: float, momentum: float, **knobs) -> dict:
    """One cell of the large-margin phase table (see the module docstring); ``knobs["lambda"]`` is lambda."""
    from ufm.solvers.large_margin_ufm import large_margin_ufm_run

    if relu:
        raise ValueError("--relu does not apply to the large-margin UFM (its features are signed)")
    lam = knobs["lambda"]
    dd = delta_d if delta_d > 0 else ratio * delta_v
    run = large_margin_ufm_run(delta_v, dd, lam, gamma, steps=STEPS, seed=seed, record_every=STEPS, beta=beta,
                               momentum=momentum)
    return {"solver_status": "separated" if run["train_acc"] == 1.0 else "not separated",
            "delta_d_used": dd, "ratio_used": dd / delta_v, "train_acc": run["train_acc"],
            "margin_over_dv": run["min_margin"] / delta_v, "spread_over_dv": run["max_spread"] / delta_v,
            "min_gap": run["min_gap"], "feature_norm": run["feature_norm"], "centre_norm": run["centre_norm"],
            "gamma_effective": gamma * (1.0 - momentum), "dv_over_scale": delta_v / ce_feature_scale(seed)}


LARGE_MARGIN = register_phase_loss(PhaseLoss(
    name="large_margin", knobs=KNOBS, cell=large_margin_cell,
    quantities=("train_acc", "margin_over_dv", "spread_over_dv", "min_gap", "dv_over_scale"),
    seeded=True, description=__doc__.split("\n\n")[0], validate=check_knobs))
