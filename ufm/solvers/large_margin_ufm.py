"""UFM check of the compactness-margin relation of the large-margin discriminative loss.

Free features + a linear classifier (``ufm.solvers.free_features``) trained with
``CE + lam * L_dis``; at the end we measure, per sample, the geometric margin
``gamma_i = min_{j != y_i} d_{y_i j}(f_i)`` and the spread ``||f_i - c_{y_i}||``, and compare them
with theory/large-margin.md, Theorem 1:

    gamma_i >= delta_d - delta_v - s_i - t_{y_i} - ||c_{y_i} - mu_{y_i}||,
    s_i = [||f_i - c_{y_i}|| - delta_v]_+ ,  t_k = max_{j != k} [delta_d - d_kj(mu_k)]_+ ,

whose zero-loss form is ``gamma_i >= delta_d - delta_v`` (tight: attained by an explicit
configuration), so correct classification with margin is guaranteed iff ``delta_d > delta_v``.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ufm.geometry.margins import boundary_distances
from ufm.losses.large_margin import LargeMarginDiscriminativeLoss
from ufm.solvers.free_features import train_free_features

__all__ = ["large_margin_ufm_run", "large_margin_ufm_grid", "theorem1_slack"]


def theorem1_slack(features, labels, weight, bias, centres, delta_v: float, delta_d: float) -> dict:
    """Per-sample quantities of Theorem 1 (float64): ``margin`` gamma_i, ``spread`` ||f_i - c||,
    ``bound`` = delta_d - delta_v - s_i - t_k - ||c_k - mu_k||, and their extremes."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    c = np.asarray(centres, dtype=np.float64)
    gamma = boundary_distances(f, y, weight, bias).min(1)
    present = np.unique(y)
    mu = np.zeros_like(c)
    for k in present:
        mu[k] = f[y == k].mean(0)
    t = np.zeros(c.shape[0])
    t[present] = np.maximum(delta_d - boundary_distances(mu[present], present, weight, bias).min(1), 0.0)
    spread = np.linalg.norm(f - c[y], axis=1)
    s = np.maximum(spread - delta_v, 0.0)
    lag = np.linalg.norm(c - mu, axis=1)
    bound = delta_d - delta_v - s - t[y] - lag[y]
    return {"margin": gamma, "spread": spread, "bound": bound, "min_margin": float(gamma.min()),
            "max_spread": float(spread.max()), "min_gap": float((gamma - bound).min()),
            "max_slack": float((s + t[y] + lag[y]).max()), "train_acc": float((gamma > 0).mean())}


def large_margin_ufm_run(delta_v: float, delta_d: float, lam: float = 1.0, gamma: float = 1e-3, *,
                         num_classes: int = 4, per_class: int = 16, dim: int = 2, steps: int = 600,
                         lr: float = 0.05, optimizer: str = "adam", feature_decay: float = 0.0,
                         init_scale: float = 3.0, momentum: float = 0.99, momentum_mode: str = "partial",
                         batch_size: int | None = None, seed: int = 0, record_every: int = 100) -> dict:
    """Train free features with ``CE + lam L_dis`` and measure Theorem 1's quantities at the end.

    Returns a dict with the settings, ``min_margin``, ``max_spread``, ``predicted_margin``
    (= delta_d - delta_v), ``min_gap`` (min_i gamma_i - bound_i, >= 0 by the theorem), ``max_slack``,
    ``train_acc``, ``feature_norm`` (mean ||f_i||), ``centre_norm`` (mean ||c_k||), final loss terms
    and the training ``history``.
    """
    labels = np.repeat(np.arange(num_classes), per_class)
    loss = LargeMarginDiscriminativeLoss(num_classes, dim, gamma=gamma, delta_v=delta_v, delta_d=delta_d,
                                         momentum=momentum, lam=lam, momentum_mode=momentum_mode)
    res = train_free_features(loss, labels, dim, num_classes=num_classes, steps=steps, lr=lr, optimizer=optimizer,
                              feature_decay=feature_decay, batch_size=batch_size, init_scale=init_scale, seed=seed,
                              record_every=record_every)
    f = res.features
    w = res.model.classifier.weight.detach().cpu().double().numpy()
    b = res.model.classifier.bias.detach().cpu().double().numpy()
    c = loss.centres.detach().cpu().double().numpy()
    th = theorem1_slack(f, labels, w, b, c, delta_v, delta_d)
    with torch.no_grad():
        loss.eval()
        t = loss.terms(res.model.features(), torch.as_tensor(labels, device=res.model.H.device), res.model.classifier)
    return {"delta_v": delta_v, "delta_d": delta_d, "ratio": delta_d / delta_v if delta_v > 0 else float("inf"),
            "lam": lam, "gamma": gamma, "seed": seed, "momentum_mode": momentum_mode,
            "predicted_margin": delta_d - delta_v, **{k: v for k, v in th.items() if k not in ("margin", "spread", "bound")},
            "feature_norm": float(np.linalg.norm(f, axis=1).mean()), "centre_norm": float(np.linalg.norm(c, axis=1).mean()),
            "compactness": float(t["compactness"]), "margin_term": float(t["margin"]),
            "seconds": res.seconds, "history": res.history}


def large_margin_ufm_grid(delta_v=(0.5,), delta_d=(0.25, 0.5, 1.0, 1.5), lam=(1.0,), gamma=(1e-3,), seeds=(0,),
                          **kwargs) -> list[dict]:
    """:func:`large_margin_ufm_run` over the Cartesian grid (histories dropped)."""
    rows = []
    for dv, dd, lm, gm, sd in itertools.product(delta_v, delta_d, lam, gamma, seeds):
        r = large_margin_ufm_run(dv, dd, lm, gm, seed=sd, **kwargs)
        r.pop("history")
        rows.append(r)
    return rows
