"""Gini-impurity and KL terms on high-level features (Croitoru, Grigore, Ionescu 2022, "discriminability-
enforcing loss"), added to cross-entropy.

For an activation map ``A`` of one layer, shape (B, F, H, W) (or (B, F), or (B, F, *) in general), labels
``y`` of the batch and ``k`` classes:

1. ``a_{i,f} = mean_{h,w} |A_{i,f,h,w}|``                       per-sample, per-filter activation
2. ``S_{f,c} = (1 / n_c) sum_{i : y_i = c} a_{i,f}``             class-conditional mean in the batch
3. ``p_{f,c} = S_{f,c} / sum_{c'} S_{f,c'}``                     the filter's distribution over classes
4. ``L_G = (1 / |F+|) sum_{f in F+} (1 - sum_c p_{f,c}^2)``        Gini impurity, mean over filters
5. ``q_c = sum_{f in F+} p_{f,c} / |F+|``  and  ``L_KL = KL(t || q) = sum_{c : t_c > 0} t_c log(t_c / q_c)``
   with ``t`` the class frequencies of the batch (``target=None``) or a fixed distribution.
6. ``loss(A, y) = lambda_gini * L_G + lambda_kl * L_KL``; for several layers the mean over layers.

Conventions that keep every batch NaN-free (the formulas above are otherwise the authors'):

* **absent class** (``n_c = 0``): ``S_{f,c} = 0`` (the batch has no evidence of class ``c``; this is the
  limit of the authors' ``sum / (n_c + eps)``). Then ``p_{f,c} = 0``, ``q_c = 0``. With a fixed target the KL
  term is taken over the classes present in the batch, the target restricted to them and renormalised
  (``q_c = 0`` is forced by the batch, so ``t_c log(t_c / 0)`` would be an infinite constant without a
  gradient). A batch with a single present class has ``L_KL = 0`` (and ``L_G = 0``: every filter is pure);
  a batch none of whose classes carries target mass has ``L_KL = 0`` (nothing to compare).
* **silent filter** (``sum_c S_{f,c} <= eps``, i.e. ``a_{i,f} = 0`` for the whole batch): ``p_{f,.}`` is
  undefined (0/0) and the filter carries no class information. Silent filters are left out: ``F+`` is the
  set of firing filters, ``L_G`` and ``q`` average over ``F+`` only. A batch in which every filter is
  silent gives ``L_G = L_KL = 0`` (with zero gradient). The authors' code instead gives a silent filter
  ``p_{f,.} = 0`` and impurity 1, above the largest impurity ``1 - 1/k`` a firing filter can have.
* ``q_c`` is floored at ``eps`` inside the logarithm, so a present class to which no firing filter responds
  gives a large finite ``L_KL`` (``t_c log(t_c / eps)``), never ``inf``.

Both terms are invariant under a positive rescaling of any one filter (``p_{f,.}`` is a ratio): they shape
which classes a filter responds to, never the size of the features.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ufm._checks import check_finite, check_int, check_label_tensor, check_positive, check_real
from ufm.losses.base import HarnessLoss, register_loss

__all__ = [
    "GiniKLLoss",
    "GiniKLTerms",
    "filter_activations",
    "filter_class_distribution",
    "gini_kl_terms",
    "filter_purity",
    "filter_assignment",
    "gini_kl_geometry",
    "gini_gradient",
    "assignment_objective",
    "pure_minimum",
    "one_split_minimum",
    "impurity_threshold",
    "local_impurity_threshold",
]


def filter_activations(activations: torch.Tensor, name: str = "activations") -> torch.Tensor:
    """``a_{i,f} = mean over the trailing (spatial) dims of |A_{i,f,...}|`` as a (B, F) float tensor.

    Accepts (B, F) and (B, F, d_1, ..., d_m); raises ``ValueError`` on anything else, on an empty batch or
    filter axis, on non-floating dtypes and on non-finite values. Half precision is computed in float32.
    """
    if not isinstance(activations, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(activations).__name__}")
    if activations.dim() < 2:
        raise ValueError(f"{name} must have shape (B, F) or (B, F, H, W), got {tuple(activations.shape)}")
    if not activations.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point, got {activations.dtype}")
    b, f = activations.shape[:2]
    if b == 0:
        raise ValueError(f"{name} is an empty batch (B = 0)")
    if f == 0:
        raise ValueError(f"{name} has no filters (F = 0)")
    if activations[0].numel() == 0:
        raise ValueError(f"{name} has an empty spatial extent: shape {tuple(activations.shape)}")
    if not bool(torch.isfinite(activations).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    a = activations.abs()
    if a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()
    if a.dim() > 2:
        a = a.flatten(2).mean(dim=2)
    return a


def _class_sums(a: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``S`` (F, k) class-conditional means (0 for absent classes) and the counts ``n_c`` (k,)."""
    onehot = F.one_hot(labels, num_classes).to(a.dtype)  # (B, k)
    counts = onehot.sum(0)  # (k,)
    sums = a.T @ onehot  # (F, k)
    return sums / counts.clamp(min=1.0), counts


def filter_class_distribution(activations: torch.Tensor, labels, num_classes: int, eps: float = 1e-10):
    """``p`` (F, k) of every filter over the classes, and the mask (F,) of firing filters.

    Rows of silent filters (``sum_c S_{f,c} <= eps``) are returned as zeros and marked False.
    """
    r = gini_kl_terms(activations, labels, num_classes, None, eps)
    return r["p"], r["firing"]


class GiniKLTerms(dict):
    """Result of :func:`gini_kl_terms`: keys ``gini``, ``kl`` (scalar tensors), ``p`` (F, k), ``firing`` (F,),
    ``q`` (k,), ``target`` (k,) (the distribution the KL term compared ``q`` with, zeros off the support)."""


def gini_kl_terms(activations: torch.Tensor, labels, num_classes: int, target: torch.Tensor | None = None,
                  eps: float = 1e-10) -> GiniKLTerms:
    """``L_G`` and ``L_KL`` of one activation map (module docstring: formulas and conventions)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    a = filter_activations(activations)
    y = check_label_tensor(labels, a.shape[0], num_classes).to(a.device).long()
    s, counts = _class_sums(a, y, num_classes)
    tot = s.sum(1)
    firing = tot > eps
    p = torch.where(firing[:, None], s / torch.where(firing, tot, torch.ones_like(tot))[:, None], torch.zeros_like(s))
    present = counts > 0
    n_fire = firing.sum()
    nf = n_fire.clamp(min=1).to(p.dtype)
    gini = (firing.to(p.dtype) * (1.0 - (p * p).sum(1))).sum() / nf
    q = p.sum(0) / nf  # (k,) sums to 1 when some filter fires
    if target is None:
        t = counts / counts.sum()
    else:
        t = target.to(device=p.device, dtype=p.dtype) * present.to(p.dtype)
        tot_t = t.sum()
        # no target mass on the classes of this batch: nothing to compare, the KL term is 0
        t = t / tot_t.clamp(min=torch.finfo(p.dtype).tiny)
    log_ratio = torch.log(t.clamp(min=torch.finfo(p.dtype).tiny)) - torch.log(q.clamp(min=eps))
    kl = torch.where(t > 0, t * log_ratio, torch.zeros_like(t)).sum()
    if int(n_fire) == 0:  # every filter silent: nothing to measure (values and gradients 0)
        gini = gini * 0.0
        kl = kl * 0.0
    return GiniKLTerms(gini=gini, kl=kl, p=p, firing=firing, q=q, target=t)


def filter_purity(activations: torch.Tensor, labels, num_classes: int, eps: float = 1e-10) -> torch.Tensor:
    """``max_c p_{f,c}`` of each firing filter (1 = the filter responds to one class only)."""
    p, firing = filter_class_distribution(activations, labels, num_classes, eps)
    return p[firing].max(1).values


def filter_assignment(activations: torch.Tensor, labels, num_classes: int, eps: float = 1e-10) -> torch.Tensor:
    """Fraction (k,) of the firing filters whose dominant class (argmax_c p_{f,c}) is c."""
    p, firing = filter_class_distribution(activations, labels, num_classes, eps)
    if not bool(firing.any()):
        raise ValueError("no filter fires on this batch: the assignment is undefined")
    dom = p[firing].argmax(1)
    return torch.bincount(dom, minlength=num_classes).to(p.dtype) / dom.numel()


def gini_kl_geometry(activations: torch.Tensor, labels, num_classes: int, target=None, tol: float = 1e-6,
                     eps: float = 1e-10) -> dict:
    """Measurements of what the terms ask for, on one activation map of a whole data set (floats / lists):

    * ``gini``, ``kl``: ``L_G`` and ``L_KL`` of the map (``target`` as in :func:`gini_kl_terms`).
    * ``purity_min``, ``purity_mean``: ``max_c p_{f,c}`` over the firing filters (1 = one class per filter).
    * ``support_overlap``: fraction of the firing filters on which two or more class means exceed
      ``tol * max`` of the class-mean matrix (the class supports are disjoint iff it is 0).
    * ``max_cross_cos``: largest cosine between two class means of ``a`` (0 iff mutually orthogonal).
    * ``assignment``: fraction of the firing filters whose dominant class is c (compare with ``t``).
    * ``firing``: number of firing filters.
    """
    a = filter_activations(activations).detach().double()
    y = check_label_tensor(labels, a.shape[0], num_classes).to(a.device).long()
    tt = None if target is None else torch.as_tensor(target, dtype=torch.float64, device=a.device)
    r = gini_kl_terms(a, y, num_classes, tt, eps)
    p, firing = r["p"], r["firing"]
    s, counts = _class_sums(a, y, num_classes)
    present = counts > 0
    m = s[:, present].T  # (k', F) class means of a
    out = {"gini": float(r["gini"]), "kl": float(r["kl"]), "firing": int(firing.sum())}
    if bool(firing.any()):
        pur = p[firing].max(1).values
        out["purity_min"] = float(pur.min())
        out["purity_mean"] = float(pur.mean())
        on = m > tol * m.max()
        out["support_overlap"] = float((on.sum(0)[firing] >= 2).double().mean())
        out["assignment"] = (torch.bincount(p[firing].argmax(1), minlength=num_classes).double()
                             / int(firing.sum())).tolist()
    norms = m.norm(dim=1)
    if m.shape[0] >= 2 and bool((norms > 0).all()):
        u = m / norms[:, None]
        c = u @ u.T
        out["max_cross_cos"] = float((c - torch.diag(torch.diag(c))).max())
    return out


def gini_gradient(activations: torch.Tensor, labels, num_classes: int, eps: float = 1e-10) -> torch.Tensor:
    """Closed form of ``dL_G / da_{i,f}`` (B, F) (theory/gini-kl.md, Claim 6)::

        dL_G / da_{i,f} = 2 (sum_c p_{f,c}^2 - p_{f,y_i}) / (|F+| n_{y_i} T_f),   T_f = sum_c S_{f,c}

    for a firing filter f, 0 for a silent one. It vanishes as ``p_f`` tends to uniform (class-blind filters)
    and falls like ``1 / T_f`` as the filter's total response grows.

    Args:
        activations: (B, F) or (B, F, *) map; the gradient is taken in ``a`` (:func:`filter_activations`).
        labels: (B,) integer labels in [0, num_classes).
        num_classes: k >= 2.
    Returns:
        (B, F) tensor in the dtype of ``a``.
    """
    a = filter_activations(activations).detach()
    y = check_label_tensor(labels, a.shape[0], num_classes).to(a.device).long()
    s, counts = _class_sums(a, y, num_classes)  # (F, k), (k,)
    tot = s.sum(1)  # (F,)
    firing = tot > eps
    p = s / torch.where(firing, tot, torch.ones_like(tot))[:, None]  # (F, k)
    n_fire = firing.sum().clamp(min=1).to(a.dtype)
    coef = 2.0 * ((p * p).sum(1)[None, :] - p[:, y].T)  # (B, F): sum_c p_fc^2 - p_{f, y_i}
    grad = coef / (n_fire * counts[y][:, None] * torch.where(firing, tot, torch.ones_like(tot))[None, :])
    return grad * firing.to(a.dtype)[None, :]


# ------------------------------------------------------------------ minimisers over filter-to-class assignments
def _check_target(num_filters: int, target) -> np.ndarray:
    t = np.asarray(target, dtype=float).ravel()
    if isinstance(num_filters, bool) or int(num_filters) != num_filters or num_filters < 1:
        raise ValueError(f"num_filters must be a positive integer, got {num_filters!r}")
    if t.size < 2 or not np.all(np.isfinite(t)) or np.any(t < 0) or abs(t.sum() - 1.0) > 1e-9:
        raise ValueError(f"target must be a distribution over >= 2 classes, got {target!r}")
    return t


def _kl(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(t || q) over the last axis (q broadcast), +inf where q_c = 0 < t_c."""
    with np.errstate(divide="ignore"):
        terms = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1.0)) - np.log(q)), 0.0)
    return terms.sum(-1)


def assignment_objective(p, target, ratio: float) -> float:
    """``L_G + ratio * L_KL`` (ratio = lambda_KL / lambda_G) of filters with class distributions ``p`` (F, k),
    every filter firing and every class present (then ``q = mean_f p_f``)."""
    p = np.asarray(p, dtype=float)
    t = _check_target(p.shape[0], target)
    gini = float(np.mean(1.0 - (p * p).sum(1)))
    return gini + ratio * float(_kl(t, p.mean(0)))


def _compositions(total: int, parts: int):
    """Every vector of ``parts`` non-negative integers summing to ``total``."""
    for cuts in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1,) + cuts + (total + parts - 1,)
        yield np.array([edges[i + 1] - edges[i] - 1 for i in range(parts)])


def pure_minimum(num_filters: int, target) -> tuple[np.ndarray, float]:
    """Best pure assignment: the counts ``n`` (k,) (sum F) minimising ``KL(t || n / F)`` and that KL.

    Enumerates the C(F + k - 1, k - 1) compositions (small F, k). Ties: the first in enumeration order.
    """
    t = _check_target(num_filters, target)
    best, best_kl = None, math.inf
    for n in _compositions(int(num_filters), t.size):
        v = float(_kl(t, n / num_filters))
        if v < best_kl - 1e-15:
            best, best_kl = n, v
    return best, best_kl


def _split_curve(s: np.ndarray, m: np.ndarray, a: int, b: int, t: np.ndarray, ratio: float) -> np.ndarray:
    """Objective (len(s),) of F - 1 pure filters with counts m and one filter split s / (1 - s) over a / b."""
    f = m.sum() + 1
    q = np.repeat(m[None, :] / f, s.size, axis=0)  # (S, k)
    q[:, a] += s / f
    q[:, b] += (1.0 - s) / f
    gini = 2.0 * s * (1.0 - s) / f
    return gini + ratio * _kl(t, q) if ratio > 0 else gini  # rho = 0: no KL term (and no 0 * inf)


def one_split_minimum(num_filters: int, target, ratio: float, grid: int = 2001) -> dict:
    """Minimum of ``L_G + ratio L_KL`` over states with F - 1 pure filters and one filter split between two
    classes (``s`` on class ``a``, ``1 - s`` on ``b``; s in {0, 1} are the pure states). For k = 2 this is
    the minimum over ALL states (theory/gini-kl.md, Claim 5: at most k - 1 filters are impure).

    1-D minimisation in s for every (counts of the pure filters, a, b): a grid of ``grid`` points, refined by
    a bounded scalar search around the best grid point.

    Returns:
        dict: ``objective``, ``s``, ``classes`` (a, b), ``counts`` (k,) of the pure filters, ``pure`` (s at 0/1).
    """
    from scipy.optimize import minimize_scalar

    t = _check_target(num_filters, target)
    if not ratio >= 0:
        raise ValueError(f"ratio must be >= 0, got {ratio}")
    k, f = t.size, int(num_filters)
    grid_s = np.linspace(0.0, 1.0, grid)
    best = {"objective": math.inf}
    for m in _compositions(f - 1, k):
        for a, b in itertools.combinations(range(k), 2):
            vals = _split_curve(grid_s, m, a, b, t, ratio)
            j = int(np.argmin(vals))
            s_opt, v_opt = grid_s[j], float(vals[j])
            lo, hi = grid_s[max(j - 1, 0)], grid_s[min(j + 1, grid - 1)]
            if np.isfinite(v_opt):  # refine next to the best grid point (an end point included)
                r = minimize_scalar(lambda x: float(_split_curve(np.array([x]), m, a, b, t, ratio)[0]),
                                    bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
                if r.fun < v_opt:
                    s_opt, v_opt = float(r.x), float(r.fun)
            if v_opt < best["objective"] - 1e-15:
                best = {"objective": v_opt, "s": float(s_opt), "classes": (a, b), "counts": m.copy()}
    best["pure"] = best["s"] in (0.0, 1.0)
    return best


def local_impurity_threshold(num_filters: int, target) -> float:
    """Closed form, k = 2: the ratio at which the best pure assignment stops being a local minimum,
    ``2 / (t_b / q_b - t_a / q_a)`` (q = n / F of that assignment, b the class with the larger t / q), i.e.
    where moving part of one filter from a to b starts to lower ``L_G + rho L_KL`` (theory, Claim 5).
    ``inf`` when ``q = t``."""
    t = _check_target(num_filters, target)
    if t.size != 2:
        raise ValueError("the closed form is for k = 2 classes")
    n, kl = pure_minimum(num_filters, t)
    if kl <= 1e-14:
        return math.inf
    q = n / num_filters
    gain = t / q  # (2,) the KL slope of adding mass to each class (up to 1/F)
    return 2.0 / float(gain.max() - gain.min())


def impurity_threshold(num_filters: int, target, tol: float = 1e-9) -> float:
    """The ratio ``rho* = lambda_KL / lambda_G`` above which a state with one split filter beats every pure
    assignment (``inf`` when a pure assignment has ``L_KL = 0``, i.e. ``F t`` integer).

    ``D(rho) = min_one-split (L_G + rho L_KL) - rho min_pure L_KL`` is concave in rho, 0 at rho = 0 and <= 0,
    so ``{D < 0}`` is an interval ``(rho*, inf)``: found by doubling then bisection. Exact for k = 2
    (Claim 5); for k > 2 an upper bound on where the minimiser stops being pure.
    """
    _, kl_pure = pure_minimum(num_filters, target)
    if kl_pure <= 1e-14:
        return math.inf

    def impure_wins(rho: float) -> bool:
        return one_split_minimum(num_filters, target, rho)["objective"] < rho * kl_pure - 1e-13

    lo, hi = 0.0, 1.0
    while not impure_wins(hi):
        lo, hi = hi, 2.0 * hi
    while hi - lo > tol * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if impure_wins(mid) else (mid, hi)
    return 0.5 * (lo + hi)


def _as_maps(activations) -> list[torch.Tensor]:
    if isinstance(activations, torch.Tensor):
        return [activations]
    if isinstance(activations, Mapping):
        maps = list(activations.values())
    elif isinstance(activations, Sequence) and not isinstance(activations, str):
        maps = list(activations)
    else:
        raise ValueError(f"activations must be a tensor, a sequence or a dict of tensors, got {type(activations).__name__}")
    if not maps:
        raise ValueError("no activation map was given")
    return maps


@register_loss("gini_kl")
class GiniKLLoss(HarnessLoss):
    """``lambda_gini * L_G + lambda_kl * L_KL`` on one or several activation maps (mean over maps), added to
    cross-entropy by the harness.

    ``loss(activations, labels)``: ``activations`` a (B, F, H, W) or (B, F) tensor, or a list / dict of them
    (several layers: the mean over layers of ``lambda_gini L_G + lambda_kl L_KL``).

    Harness objective of one batch (``out`` a :class:`ufm.losses.base.ModelOutput`)::

        CE(out.logits, y) + [epoch >= warmup_epochs] * mean_{l in layers} (lambda_gini L_G + lambda_kl L_KL)(A_l, y)

    Args:
        num_classes: k >= 2.
        lambda_gini, lambda_kl: weights >= 0 (authors' defaults 0.5 and 0.2).
        target: None (the batch's class frequencies) or a fixed distribution over the k classes.
        layers: names of ``out.activations`` the terms act on (a string or a sequence). ``None``: every map
            in ``out.activations``.
        warmup_epochs: the number of CE-only epochs: the terms are off while the harness's 0-based
            ``epoch < warmup_epochs``. The authors count epochs from 1 and switch the terms off while
            ``epoch < start_epoch = 10``: 9 CE-only epochs, i.e. ``warmup_epochs = 9`` here (the paper
            configs). The epoch is set by the harness through :meth:`on_epoch_start` and kept in a buffer.
        ce_weight: weight of the cross-entropy term (1).
        eps: silence threshold of a filter and floor of ``q`` in the logarithm.
    """

    def __init__(self, num_classes: int, lambda_gini: float = 0.5, lambda_kl: float = 0.2, target=None,
                 layers: str | Sequence[str] | None = None, warmup_epochs: int = 0, ce_weight: float = 1.0,
                 eps: float = 1e-10):
        super().__init__()
        num_classes = check_int(num_classes, "num_classes", low=2)
        lambda_gini, lambda_kl, ce_weight = (check_real(v, nm, low=0.0) for nm, v in (
            ("lambda_gini", lambda_gini), ("lambda_kl", lambda_kl), ("ce_weight", ce_weight)))
        warmup_epochs = check_int(warmup_epochs, "warmup_epochs", low=0)
        eps = check_positive(eps, "eps")
        self.num_classes = num_classes
        self.lambda_gini = float(lambda_gini)
        self.lambda_kl = float(lambda_kl)
        self.ce_weight = float(ce_weight)
        self.warmup_epochs = warmup_epochs
        self.eps = float(eps)
        if isinstance(layers, str):
            layers = [layers]
        if layers is not None:
            layers = list(layers)
            if not layers or not all(isinstance(n, str) for n in layers):
                raise ValueError(f"layers must be a non-empty list of names of out.activations, got {layers!r}")
        self.layers = layers
        if target is not None:
            t = torch.as_tensor(target, dtype=torch.float64).flatten()
            if t.numel() != num_classes:
                raise ValueError(f"target must have num_classes={num_classes} entries, got {t.numel()}")
            if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
                raise ValueError("target must be finite and non-negative")
            if abs(float(t.sum()) - 1.0) > 1e-5:
                raise ValueError(f"target must sum to 1, got {float(t.sum())}")
            self.register_buffer("target", t.float())
        else:
            self.register_buffer("target", None)
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))

    # --------------------------------------------------------------------------------------- the terms
    @property
    def terms_active(self) -> bool:
        """True from the 0-based epoch ``warmup_epochs`` on (the authors' 1-based epoch ``warmup_epochs + 1``)."""
        return int(self.epoch) >= self.warmup_epochs

    def terms(self, activations, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over the given maps of ``L_G`` and of ``L_KL`` (unweighted)."""
        maps = _as_maps(activations)
        gs, ks = [], []
        for i, m in enumerate(maps):
            try:
                r = gini_kl_terms(m, labels, self.num_classes, self.target, self.eps)
            except ValueError as e:
                raise ValueError(f"activation map {i}: {e}") from None
            gs.append(r["gini"])
            ks.append(r["kl"])
        return torch.stack(gs).mean(), torch.stack(ks).mean()

    def forward(self, activations, labels) -> torch.Tensor:
        g, k = self.terms(activations, labels)
        return self.lambda_gini * g + self.lambda_kl * k

    # --------------------------------------------------------------------------------------- harness
    def _select(self, out) -> list[torch.Tensor]:
        acts = out.activations or {}
        names = self.layers if self.layers is not None else list(acts)
        if not names:
            raise ValueError("the model output carries no activations for the Gini/KL terms")
        missing = [n for n in names if n not in acts]
        if missing:
            raise ValueError(f"activations {missing} not in the model output (it has {sorted(acts)})")
        return [acts[n] for n in names]

    def harness_objective(self, out, labels: torch.Tensor, model: nn.Module) -> torch.Tensor:
        if out.logits is None:
            raise ValueError("GiniKLLoss adds to cross-entropy: the model output has no logits")
        logits = out.logits
        y = check_label_tensor(labels, logits.shape[0], self.num_classes).to(logits.device).long()
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have shape (N, {self.num_classes}), got {tuple(logits.shape)}")
        check_finite(logits, "logits")  # (during the warm-up the objective is the cross-entropy alone)
        obj = self.ce_weight * F.cross_entropy(logits.float(), y)
        if not self.terms_active or (self.lambda_gini == 0 and self.lambda_kl == 0):
            return obj
        g, k = self.terms(self._select(out), y)
        self.record_epoch_stats(gini=g, kl=k)  # epoch means over the batches where the terms act
        return obj + self.lambda_gini * g + self.lambda_kl * k

    def harness_predict(self, out, model: nn.Module):
        return None

    def on_epoch_start(self, epoch: int) -> None:
        """Sets the epoch buffer (the warm-up counts epochs) and clears the epoch statistics."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        super().on_epoch_start(epoch)
        self.epoch.fill_(int(epoch))

    def on_epoch_end(self, epoch: int, row: dict) -> dict:
        """``gini`` and ``kl`` (epoch means, when the terms acted) and ``gini_kl_active``."""
        return {"gini_kl_active": float(self.terms_active), **super().on_epoch_end(epoch, row)}

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, lambda_gini={self.lambda_gini}, lambda_kl={self.lambda_kl}, "
                f"target={'batch' if self.target is None else 'fixed'}, layers={self.layers}, "
                f"warmup_epochs={self.warmup_epochs}")
