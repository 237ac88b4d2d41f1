"""The Gini + KL terms' knobs on the UFM: lambda_G x lambda_KL x filters per class x imbalance.

One cell: two classes of ``R * 10`` and ``10`` samples (target ``t = (R, 1) / (R + 1)``), free non-negative
features with ``F = 2 * filters_per_class`` filters, trained with CE + ``lambda_G L_G + lambda_KL L_KL`` on
the features themselves (:func:`ufm.solvers.free_features.train_free_features`, Adam, 500 steps, the
setting of notebook 05). Measured: ``gini``, ``kl``, ``purity_min`` (the least pure firing filter),
``impure_filters`` (firing filters with purity below 0.999), ``support_overlap``, ``train_acc``. Predicted
(``theory/gini-kl.md``, Claim 5, exact for two classes): ``rho_star``, the ratio ``lambda_KL / lambda_G``
above which the minimiser of the terms has one split filter, ``predicted_impure`` (1 when
``lambda_KL / lambda_G > rho_star``), and ``terms_minimum``, the minimum of ``lambda_G L_G + lambda_KL L_KL``
over every assignment of at most F firing filters (for two classes the one-split minimum is the global one),
beside the trained state's ``terms`` value. The trained cell is CE + terms from a random start and can stop
away from the terms' minimiser (a filter shared between the classes below ``rho_star``): read
``impure_filters`` against ``predicted_impure`` together with ``terms - terms_minimum``, which is ``>= 0``
whenever the theory is right and ``~0`` when the trainer reached the minimiser.
"""

from __future__ import annotations

import math

import numpy as np

from ufm.guidelines.base import Knob, PhaseLoss, register_phase_loss

MINORITY, STEPS = 10, 500

KNOBS = (
    Knob("lambda_g", float, 0.5, "weight lambda_G of the Gini term", low=0.0, high=100.0),
    Knob("lambda_kl", float, 0.2, "weight lambda_KL of the KL term", low=0.0, high=100.0),
    Knob("filters_per_class", int, 2, "filters per class (F = 2 x this, two classes)", low=1, high=32),
    Knob("ratio", float, 1.0, "imbalance R: majority count / minority count", low=1.0, high=100.0),
)


def gini_kl_cell(seed: int, relu: bool, lambda_g: float, lambda_kl: float, filters_per_class: int,
                 ratio: float) -> dict:
    """One cell of the Gini/KL phase table (see the module docstring). Features are always non-negative."""
    import torch

    from ufm.losses import GiniKLLoss
    from ufm.losses.gini_kl import filter_purity, gini_kl_geometry, impurity_threshold, one_split_minimum
    from ufm.solvers.free_features import train_free_features

    counts = [int(round(ratio * MINORITY)), MINORITY]
    y = np.repeat(np.arange(2), counts)
    f = 2 * filters_per_class
    res = train_free_features(GiniKLLoss(2, lambda_g, lambda_kl), y, f, steps=STEPS, lr=0.02, optimizer="adam",
                              feature_decay=5e-3, classifier_decay=5e-3, relu=True, seed=seed, record_every=STEPS)
    h = res.model.features().detach().double()  # (n, F)
    geo = gini_kl_geometry(h, y, 2)
    purity = filter_purity(h, torch.as_tensor(y), 2).numpy()
    firing = h.sum(0).numpy() > 0
    t = np.array(counts) / sum(counts)
    rho = lambda_kl / lambda_g if lambda_g > 0 else math.inf
    rho_star = impurity_threshold(f, t)
    if lambda_g > 0:
        best = min(one_split_minimum(m, t, lambda_kl / lambda_g)["objective"] for m in range(1, f + 1))
        minimum = lambda_g * best
    else:
        minimum = 0.0  # lambda_KL L_KL alone: any split reaching q = t gives 0
    return {"solver_status": "separated" if res.history[-1]["train_acc"] == 1.0 else "not separated",
            "gini": geo["gini"], "kl": geo["kl"], "purity_min": geo.get("purity_min", float("nan")),
            "impure_filters": float(((purity < 0.999) & firing).sum()), "support_overlap": geo.get("support_overlap", float("nan")),
            "train_acc": res.history[-1]["train_acc"], "rho_star": rho_star,
            "predicted_impure": float(lambda_kl > 0 and rho > rho_star),
            "terms": lambda_g * geo["gini"] + lambda_kl * geo["kl"], "terms_minimum": minimum}


GINI_KL = register_phase_loss(PhaseLoss(
    name="gini_kl", knobs=KNOBS, cell=gini_kl_cell,
    quantities=("purity_min", "impure_filters", "predicted_impure", "gini", "kl"),
    seeded=True, description=__doc__.split("\n\n")[0]))
