"""Large-margin discriminative loss (Nguyen, Gamboa, Zhang, Chhaibi, Gratton, Giaccone 2024):
compactness + margin + centre-norm regulariser, with partial momentum updating of class centres.

Batch: features ``f_i`` (N, d), labels ``y_i``, classifier ``z = W f + b`` (W: (K, d)).
``C_B`` = classes present in the batch, ``n_k`` their counts, ``mu_k = mean_{i: y_i = k} f_i``.

Momentum centres (buffers): the first time class k is seen ``c_k = mu_k``; afterwards

    c_k = m * sg(c_k_prev) + (1 - m) * mu_k          (sg = stop-gradient; the buffer stores sg(c_k))

Terms (means over the classes present):

    L_c = 1/|C_B| sum_{k in C_B} 1/n_k sum_{i: y_i = k} [ ||f_i - c_k||_2 - delta_v ]_+^2
    d_kj(x) = ((w_k - w_j)^T x + b_k - b_j) / ||w_k - w_j||_2
    L_m = 1/|C_B| sum_{k in C_B} max_{j != k} [ delta_d - d_kj(M_k) ]_+
    L_r = 1/|C_B| sum_{k in C_B} ||c_k||_2
    L_dis = alpha L_c + beta L_m + gamma L_r

with ``M_k = mu_k`` (the fresh batch mean; ``momentum_mode="partial"``, the paper's choice).
``norm = 1`` (the authors' code's L1 option) puts ``||.||_1`` in ``L_c`` and ``L_r``; the margin term
always measures Euclidean distances to the boundaries.

Centre memory: the stored centre averages about ``1/(1 - m)`` batches. ``momentum_memory`` (a fraction
of an epoch, with ``steps_per_epoch``) sets ``m`` from that rule instead of ``momentum``:
``m = 1 - 1 / max(1, momentum_memory * steps_per_epoch)`` (:func:`momentum_for_memory`); the authors'
``m = 0.99`` on CIFAR-10 (391 steps per epoch) is ``AUTHORS_MEMORY_EPOCHS = 100 / 391`` of an epoch.
Ablations: ``"full"`` uses the momentum centre also in the margin term (``M_k = c_k``); ``"none"``
uses no momentum anywhere (``c_k = mu_k``). The harness objective is ``CE(logits) + lam * L_dis``.

Precision: half-precision features (float16 / bfloat16) are computed in float32 and the loss returned in
float32 (autocast off), as torch's own losses do under autocast: in float16 ``||f - c||^2`` overflows once
``||f - c||`` exceeds 256 and the margin's dot products lose digits. float32 and float64 input are computed
in their own dtype, exactly as before.

Gradients of every term (derived in theory/large-margin.md, section 2) are implemented
independently of autograd in :func:`large_margin_reference` for the tests.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ufm._checks import (as_feature_array, as_label_array, check_choice, check_finite, check_int, check_label_tensor,
                         check_real)
from ufm.losses.base import HarnessLoss, register_loss, upcast_half

__all__ = ["LargeMarginDiscriminativeLoss", "large_margin_reference", "momentum_for_memory", "MOMENTUM_MODES",
           "AUTHORS_MEMORY_EPOCHS"]

MOMENTUM_MODES = ("partial", "full", "none")
#: the authors' centre memory 1/(1 - 0.99) = 100 steps, as a fraction of their epoch (50,000 / 128 -> 391 steps)
AUTHORS_MEMORY_EPOCHS = 100 / 391


def momentum_for_memory(memory_epochs: float, steps_per_epoch: int) -> float:
    """The centre momentum whose memory ``1/(1 - m)`` is ``memory_epochs`` of an epoch.

    Args:
        memory_epochs: the memory as a fraction of an epoch (> 0).
        steps_per_epoch: optimiser steps (batches) per epoch (>= 1).

    Returns:
        ``m = 1 - 1 / max(1, memory_epochs * steps_per_epoch)`` in ``[0, 1)`` (a memory under one step is
        no momentum).
    """
    memory_epochs = check_real(memory_epochs, "momentum_memory (a fraction of an epoch)", low=0.0, low_open=True)
    steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch", low=1)
    return 1.0 - 1.0 / max(1.0, memory_epochs * steps_per_epoch)


def _p_norm(x: torch.Tensor, p: int) -> torch.Tensor:
    """``||x||_p`` over the last axis (p in {1, 2}); subgradient 0 at 0."""
    return x.abs().sum(-1) if p == 1 else torch.linalg.vector_norm(x, dim=-1)


def _classifier_params(classifier, num_classes: int, feature_dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(classifier, nn.Linear) or hasattr(classifier, "weight"):
        w, b = classifier.weight, getattr(classifier, "bias", None)
    elif isinstance(classifier, (tuple, list)) and len(classifier) == 2:
        w, b = classifier
    else:
        raise ValueError("classifier must be the final nn.Linear (or a (weight, bias) pair), "
                         f"got {type(classifier).__name__}")
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or tuple(w.shape) != (num_classes, feature_dim):
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise ValueError(f"classifier weight must have shape (num_classes, feature_dim) = "
                         f"{(num_classes, feature_dim)}, got {shape}")
    if b is not None and (not isinstance(b, torch.Tensor) or tuple(b.shape) != (num_classes,)):
        shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f"classifier bias must have shape ({num_classes},), got {shape}")
    if not bool(torch.isfinite(w).all()) or (b is not None and not bool(torch.isfinite(b).all())):
        raise ValueError("classifier weight or bias contain NaN or infinite values")
    return w, b


@register_loss("large_margin")
class LargeMarginDiscriminativeLoss(HarnessLoss):
    """``L_dis = alpha L_c + beta L_m + gamma L_r`` (module docstring), called as
    ``loss(features, labels, classifier)`` with ``classifier`` the final ``nn.Linear``.

    Args:
        num_classes, feature_dim: K and d (the centre buffers are (K, d)).
        alpha, beta, gamma: weights of compactness, margin, centre-norm terms (>= 0).
        delta_v: compactness radius (>= 0). delta_d: margin (>= 0). Guideline: delta_d > delta_v
            (theory/large-margin.md, Theorem 1).
        momentum: m in [0, 1) for the centres.
        lam: weight of L_dis in the harness objective ``CE + lam * L_dis``.
        momentum_mode: "partial" (paper), "full" (momentum centre also in the margin term) or
            "none" (batch means everywhere).
        norm: 2 (default) or 1: the norm of ``f_i - c_k`` in ``L_c`` and of ``c_k`` in ``L_r`` (the
            authors' code's ``norm`` option; the margin term is Euclidean either way).
        momentum_memory, steps_per_epoch: when given (both), ``momentum`` is replaced by
            :func:`momentum_for_memory` ``(momentum_memory, steps_per_epoch)``: the centre memory as a
            fraction of an epoch (theory/large-margin.md, section 2).

    State: buffers ``centres`` (K, d) and ``seen`` (K,) bool, updated on every call in training
    mode (in eval mode the loss is evaluated with the stored centres and nothing is written).
    :meth:`reset_centres` forgets them. After each call ``last_terms`` holds the detached
    ``(L_c, L_m, L_r)``; the epoch statistics (``ldis_compactness``, ``ldis_margin``,
    ``ldis_regulariser``, ``centre_step``: means over the epoch's training batches of the three terms
    and of the mean centre step ``||c_k^t - c_k^{t-1}||``) join the harness's metrics.
    """

    def __init__(self, num_classes: int, feature_dim: int, alpha: float = 1.0, beta: float = 1.0,
                 gamma: float = 1e-3, delta_v: float = 0.5, delta_d: float = 1.5, momentum: float = 0.99,
                 lam: float = 1.0, momentum_mode: str = "partial", norm: int = 2,
                 momentum_memory: float | None = None, steps_per_epoch: int | None = None):
        super().__init__()
        if (momentum_memory is None) != (steps_per_epoch is None):
            raise ValueError("momentum_memory and steps_per_epoch go together (the memory is a fraction of an epoch)")
        if momentum_memory is not None:
            momentum = momentum_for_memory(momentum_memory, steps_per_epoch)
        norm = check_choice(norm, "norm", (1, 2))
        num_classes = check_int(num_classes, "num_classes (the margin needs a second class)", low=2)
        feature_dim = check_int(feature_dim, "feature_dim", low=1)
        alpha, beta, gamma, delta_v, delta_d, lam = (
            check_real(v, name, low=0.0) for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma),
                                                         ("delta_v", delta_v), ("delta_d", delta_d), ("lam", lam)))
        momentum = check_real(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        check_choice(momentum_mode, "momentum_mode", MOMENTUM_MODES)
        self.num_classes, self.feature_dim = int(num_classes), int(feature_dim)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.delta_v, self.delta_d = float(delta_v), float(delta_d)
        self.momentum, self.lam, self.momentum_mode = float(momentum), float(lam), momentum_mode
        self.norm = int(norm)
        self.momentum_memory = None if momentum_memory is None else float(momentum_memory)
        self.register_buffer("centres", torch.zeros(self.num_classes, self.feature_dim))
        self.register_buffer("seen", torch.zeros(self.num_classes, dtype=torch.bool))
        self.last_terms: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ state
    def reset_centres(self) -> None:
        self.centres.zero_()
        self.seen.zero_()

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feature_dim={self.feature_dim}, alpha={self.alpha}, "
                f"beta={self.beta}, gamma={self.gamma}, delta_v={self.delta_v}, delta_d={self.delta_d}, "
                f"momentum={self.momentum}, lam={self.lam}, momentum_mode={self.momentum_mode!r}, norm={self.norm}")

    # ------------------------------------------------------------------ the loss
    def _check(self, features, labels, classifier):
        if not isinstance(features, torch.Tensor):
            raise ValueError(f"features must be a torch.Tensor, got {type(features).__name__}")
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must have shape (N, feature_dim={self.feature_dim}), got {tuple(features.shape)}")
        if features.shape[0] == 0:
            raise ValueError("the batch is empty")
        if not features.dtype.is_floating_point:
            raise ValueError(f"features must be floating point, got {features.dtype}")
        if not bool(torch.isfinite(features).all()):
            raise ValueError("features contain NaN or infinite values")
        labels = check_label_tensor(labels, features.shape[0], self.num_classes).to(features.device)
        w, b = _classifier_params(classifier, self.num_classes, self.feature_dim)
        return labels.long(), w, b

    def terms(self, features: torch.Tensor, labels, classifier, update: bool | None = None) -> dict[str, torch.Tensor]:
        """The three terms (differentiable) and the centres used; updates the buffers when
        ``update`` (default: ``self.training``)."""
        y, w, b = self._check(features, labels, classifier)
        f = upcast_half(features)  # float16 squares overflow at 256 (module docstring)
        present, inv, counts = torch.unique(y, return_inverse=True, return_counts=True)
        kb = present.numel()
        cnt = counts.to(f.dtype)
        mu = torch.zeros(kb, f.shape[1], dtype=f.dtype, device=f.device).index_add(0, inv, f) / cnt[:, None]
        prev = self.centres[present].to(f.dtype).detach()
        if self.momentum_mode == "none":
            c = mu
        else:
            was_seen = self.seen[present][:, None]
            c = torch.where(was_seen, self.momentum * prev + (1.0 - self.momentum) * mu, mu)
        # compactness: mean over the classes of the mean over their samples
        r = _p_norm(f - c[inv], self.norm)  # subgradient 0 at r = 0
        hinge_v = torch.clamp(r - self.delta_v, min=0).pow(2)
        l_c = (torch.zeros(kb, dtype=f.dtype, device=f.device).index_add(0, inv, hinge_v) / cnt).mean()
        # margin at M_k against every other class's boundary
        m_pts = c if self.momentum_mode == "full" else mu
        wk = w.to(f.dtype)
        a = wk[present][:, None, :] - wk[None, :, :]  # (kb, K, d): w_k - w_j
        an = a.pow(2).sum(2)
        own = present[:, None] == torch.arange(self.num_classes, device=f.device)[None, :]
        if bool(((an == 0) & ~own).any()):
            i, j = torch.nonzero((an == 0) & ~own)[0].tolist()
            raise ValueError(f"classifier rows {int(present[i])} and {j} coincide: their boundary is undefined")
        an = torch.where(own, torch.ones_like(an), an).sqrt()
        z = m_pts @ wk.T + (b.to(f.dtype) if b is not None else 0.0)  # (kb, K)
        zk = z.gather(1, present[:, None])
        dist = (zk - z) / an
        viol = (self.delta_d - dist).masked_fill(own, float("-inf")).amax(1)
        l_m = torch.clamp(viol, min=0).mean()
        l_r = _p_norm(c, self.norm).mean()
        if update is None:
            update = self.training
        if update:
            with torch.no_grad():
                step = (c.detach() - prev).norm(dim=1)[self.seen[present]]
                self.centres[present] = c.detach().to(self.centres.dtype)
                self.seen[present] = True
                self.record_epoch_stats(ldis_compactness=l_c, ldis_margin=l_m, ldis_regulariser=l_r,
                                        centre_step=step.mean() if step.numel() else torch.zeros((), device=l_c.device))
        self.last_terms = {"compactness": l_c.detach(), "margin": l_m.detach(), "regulariser": l_r.detach()}
        return {"compactness": l_c, "margin": l_m, "regulariser": l_r, "centres": c, "means": mu,
                "present": present}

    def forward(self, features: torch.Tensor, labels, classifier) -> torch.Tensor:
        t = self.terms(features, labels, classifier)
        return self.alpha * t["compactness"] + self.beta * t["margin"] + self.gamma * t["regulariser"]

    # ------------------------------------------------------------------ harness contract
    def harness_objective(self, out, labels: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """``CE(out.logits, labels) + lam * L_dis(out.features, labels, model.classifier)``."""
        if out.logits is None:
            raise ValueError("the large-margin loss needs logits from a linear classifier (model.classifier)")
        if not hasattr(model, "classifier"):
            raise ValueError("the model has no `classifier` (final nn.Linear) for the margin term")
        check_finite(out.logits, "logits")  # (with lam = 0 the objective is the cross-entropy alone)
        feats = out.features
        if feats.dim() != 2:
            raise ValueError(f"the large-margin loss takes one view: features of shape (N, d), got {tuple(feats.shape)}")
        ce = F.cross_entropy(upcast_half(out.logits), labels)
        if self.lam == 0:
            return ce
        return ce + self.lam * self(feats, labels, model.classifier)

    def harness_predict(self, out, model: nn.Module) -> torch.Tensor | None:
        return None


def large_margin_reference(features, labels, weight, bias, centres, seen, *, alpha=1.0, beta=1.0, gamma=1e-3,
                           delta_v=0.5, delta_d=1.5, momentum=0.99, momentum_mode="partial", norm=2) -> dict:
    """Float64 numpy value and analytic gradients of ``L_dis`` (theory/large-margin.md, section 2).

    Returns ``value``, ``compactness``, ``margin``, ``regulariser``, ``grad_features`` (N, d),
    ``grad_weight`` (K, d), ``grad_bias`` (K,), ``new_centres`` (K, d). Written without autograd,
    from the closed-form gradients (subgradient 0 at the kinks of the hinges):

    * rho_k = dc_k/dmu_k = 1 if k is new or mode is "none", else 1 - m; u_i = (f_i - c_k)/||f_i - c_k||;
      h_i = [||f_i - c_k|| - delta_v]_+;
      dL_c/df_i = 2/(|C_B| n_k) [ h_i u_i - (rho_k / n_k) sum_{l: y_l = k} h_l u_l ].
    * for each k whose hinge is active at j* = argmax_j (delta_d - d_kj(M_k)), with a = w_k - w_j*,
      nu = a/||a||, d = d_kj*(M_k): dL_m/dM_k = -nu / |C_B| (reaching f_i, y_i = k, as 1/n_k times
      that, times rho_k in mode "full"); dL_m/dw_k = -(M_k - d nu) / (|C_B| ||a||) = -dL_m/dw_j*;
      dL_m/db_k = -1 / (|C_B| ||a||) = -dL_m/db_j*.
    * dL_r/df_i = rho_k / (|C_B| n_k) * c_k / ||c_k||.
    * ``norm = 1``: ``||.||_1`` in L_c and L_r, with u_i = sign(f_i - c_k) and sign(c_k) for c_k/||c_k||.
    """
    f = as_feature_array(features)
    w = np.asarray(weight, dtype=np.float64)
    k_all, d = w.shape
    b = np.zeros(k_all) if bias is None else np.asarray(bias, dtype=np.float64)
    y = as_label_array(labels, n=f.shape[0], num_classes=k_all)
    centres = np.asarray(centres, dtype=np.float64)
    seen = np.asarray(seen, dtype=bool)
    present = np.unique(y)
    kb = present.size
    gf, gw, gb = np.zeros_like(f), np.zeros_like(w), np.zeros_like(b)
    l_c = l_m = l_r = 0.0
    new_centres = centres.copy()
    for k in present:
        idx = np.flatnonzero(y == k)
        nk = idx.size
        mu = f[idx].mean(0)
        if momentum_mode == "none" or not seen[k]:
            c, rho = mu, 1.0
        else:
            c, rho = momentum * centres[k] + (1 - momentum) * mu, 1.0 - momentum
        new_centres[k] = c
        diff = f[idx] - c
        if norm == 1:
            r, u = np.abs(diff).sum(1), np.sign(diff)
        else:
            r = np.linalg.norm(diff, axis=1)
            u = np.where(r[:, None] > 0, diff / np.where(r > 0, r, 1.0)[:, None], 0.0)
        h = np.maximum(r - delta_v, 0.0)
        l_c += (h**2).mean() / kb
        hu = h[:, None] * u
        gf[idx] += alpha * 2.0 / (kb * nk) * (hu - rho / nk * hu.sum(0))
        # margin
        mk, rho_m = (c, rho) if momentum_mode == "full" else (mu, 1.0)
        best_j, best_v = None, -np.inf
        for j in range(k_all):
            if j == k:
                continue
            a = w[k] - w[j]
            v = delta_d - (a @ mk + b[k] - b[j]) / np.linalg.norm(a)
            if v > best_v:
                best_j, best_v = j, v
        if best_v > 0:
            l_m += best_v / kb
            a = w[k] - w[best_j]
            na = np.linalg.norm(a)
            nu = a / na
            dist = delta_d - best_v
            gf[idx] += beta * (-nu / kb) * rho_m / nk
            gw[k] += beta * -(mk - dist * nu) / (kb * na)
            gw[best_j] -= beta * -(mk - dist * nu) / (kb * na)
            gb[k] += beta * -1.0 / (kb * na)
            gb[best_j] -= beta * -1.0 / (kb * na)
        # regulariser
        nc = np.abs(c).sum() if norm == 1 else np.linalg.norm(c)
        l_r += nc / kb
        if nc > 0:
            gf[idx] += gamma * rho / (kb * nk) * (np.sign(c) if norm == 1 else c / nc)
    value = alpha * l_c + beta * l_m + gamma * l_r
    return {"value": value, "compactness": l_c, "margin": l_m, "regulariser": l_r, "grad_features": gf,
            "grad_weight": gw, "grad_bias": gb, "new_centres": new_centres}
