"""UFM check of the compactness-margin relation of the large-margin discriminative loss.

Free features + a linear classifier (``ufm.solvers.free_features``) trained with
``CE + lam * L_dis``; at the end we measure, per sample, the geometric margin
``gamma_i = min_{j != y_i} d_{y_i j}(f_i)`` and the spread ``||f_i - c_{y_i}||``, and compare them
with theory/large-margin.md, Theorem 1:

    gamma_i >= delta_d - delta_v - s_i - t_{y_i} - ||c_{y_i} - mu_{y_i}||,
    s_i = [||f_i - c_{y_i}|| - delta_v]_+ ,  t_k = max_{j != k} [delta_d - d_kj(mu_k)]_+ ,

whose zero-loss form is ``gamma_i >= delta_d - delta_v`` (tight: attained by an explicit
configuration): ``delta_d > delta_v`` is a sufficient condition for every zero-loss configuration to
classify with margin, and the only ratio for which that guarantee holds; trained with cross-entropy the
features may classify at any ratio (CE dominates at small ``lam``).

:func:`large_margin_phase` runs the phase diagram (ratio x lam x delta_v x gamma x seeds) as one tidy
table, one row per run, with the cross-entropy-alone feature norm of the same seed as the scale;
:func:`phase_summary` gives per-cell means with 95% intervals over seeds.
"""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pandas as pd
import torch

from ufm._checks import check_int
from ufm.geometry.margins import boundary_distances
from ufm.losses.large_margin import LargeMarginDiscriminativeLoss
from ufm.parallel import run_parallel
from ufm.solvers.free_features import train_free_features
from ufm.stats import mean_ci

__all__ = ["large_margin_ufm_run", "large_margin_ufm_grid", "theorem1_slack", "large_margin_phase", "phase_summary",
           "PHASE_METRICS"]

#: the per-run columns :func:`phase_summary` summarises by default
PHASE_METRICS = ("train_acc", "margin_over_dv", "spread_over_dv", "min_gap", "feature_norm", "dv_over_scale")


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
                         batch_size: int | None = None, seed: int = 0, record_every: int = 100,
                         alpha: float = 1.0, beta: float = 1.0) -> dict:
    """Train free features with ``CE + lam L_dis`` and measure Theorem 1's quantities at the end.

    Returns a dict with the settings, ``min_margin``, ``max_spread``, ``predicted_margin``
    (= delta_d - delta_v), ``min_gap`` (min_i gamma_i - bound_i, >= 0 by the theorem), ``max_slack``,
    ``train_acc``, ``feature_norm`` (mean ||f_i||), ``centre_norm`` (mean ||c_k||), final loss terms
    and the training ``history``. ``lam = 0`` is cross-entropy alone.
    """
    num_classes, per_class = check_int(num_classes, "num_classes", low=2), check_int(per_class, "per_class", low=1)
    labels = np.repeat(np.arange(num_classes), per_class)
    loss = LargeMarginDiscriminativeLoss(num_classes, dim, alpha=alpha, beta=beta, gamma=gamma, delta_v=delta_v,
                                         delta_d=delta_d, momentum=momentum, lam=lam, momentum_mode=momentum_mode)
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
            "lam": lam, "gamma": gamma, "alpha": alpha, "beta": beta, "momentum": momentum, "seed": seed,
            "momentum_mode": momentum_mode,
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


def _seed_list(seeds) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]


def large_margin_phase(delta_v=(0.25, 1.0), ratio=(0.5, 1.0, 1.5, 2.0, 3.0), lam=(1.0, 10.0, 100.0), gamma=(1e-3,),
                       seeds=5, steps: int = 400, jobs: int = 1, **run_kwargs) -> pd.DataFrame:
    """The UFM phase diagram of ``CE + lam L_dis``: one row per (delta_v, ratio, lam, gamma, seed).

    Args:
        delta_v: compactness radii. ratio: ``delta_d / delta_v`` values. lam: weights of ``L_dis``.
        gamma: centre-norm weights. seeds: a count (``0 .. seeds-1``) or the seeds themselves.
        steps: optimiser steps per run. run_kwargs: passed to :func:`large_margin_ufm_run` (``per_class``,
            ``dim``, ``lr``, ``momentum``, ...).
        jobs: worker processes (:func:`ufm.parallel.run_parallel`; one thread each: the table that ``jobs=1``
            gives in a process of one thread).

    Returns:
        A DataFrame with the knobs, ``delta_d``, ``train_acc``, ``min_margin``, ``margin_over_dv``
        (min sample margin / delta_v), ``max_spread``, ``spread_over_dv``, ``min_gap`` (Theorem 1's slack,
        ``>= 0``), ``feature_norm``, ``ce_feature_norm`` (cross-entropy alone, same seed and steps: the
        feature scale) and ``dv_over_scale`` (= delta_v / ce_feature_norm).
    """
    seeds = _seed_list(seeds)
    run = partial(large_margin_ufm_run, steps=steps, record_every=steps, **run_kwargs)
    cells = list(itertools.product(delta_v, ratio, lam, gamma, seeds))
    calls = [partial(run, 1.0, 1.0, 0.0, 0.0, seed=s) for s in seeds]             # CE alone: the feature scale
    calls += [partial(run, dv, r * dv, lm, g, seed=s) for dv, r, lm, g, s in cells]
    done = run_parallel(calls, jobs=jobs)
    scale = {s: r["feature_norm"] for s, r in zip(seeds, done)}
    rows = []
    for (dv, r, lm, g, s), res in zip(cells, done[len(seeds):]):
        rows.append({"delta_v": dv, "ratio": r, "lam": lm, "gamma": g, "seed": s, "delta_d": r * dv,
                     "train_acc": res["train_acc"], "min_margin": res["min_margin"],
                     "margin_over_dv": res["min_margin"] / dv, "max_spread": res["max_spread"],
                     "spread_over_dv": res["max_spread"] / dv, "min_gap": res["min_gap"],
                     "feature_norm": res["feature_norm"], "ce_feature_norm": scale[s],
                     "dv_over_scale": dv / scale[s]})
    return pd.DataFrame(rows)


def phase_summary(df: pd.DataFrame, metrics=PHASE_METRICS, by=("delta_v", "ratio", "lam", "gamma")) -> pd.DataFrame:
    """Per cell of :func:`large_margin_phase`: ``n`` seeds, and per metric its mean and 95% t-interval
    (``<metric>``, ``<metric>_low``, ``<metric>_high``; an all-equal column gives ``[x, x]``)."""
    out = []
    for key, g in df.groupby(list(by), sort=True):
        row = dict(zip(by, key), n=len(g))
        for m in metrics:
            ci = mean_ci(g[m].to_numpy())
            row.update({m: ci.estimate, f"{m}_low": ci.low, f"{m}_high": ci.high})
        out.append(row)
    return pd.DataFrame(out)
