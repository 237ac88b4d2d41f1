"""Complement objective training, COT (Chen et al., ICLR 2019).

Besides cross-entropy on the softmax ``p_i = softmax(z_i)`` of the logits, COT flattens the predicted
distribution over the WRONG classes: with ``q_ij = p_ij / (1 - p_{i y_i})`` for ``j != y_i`` (the softmax
of the non-target logits), the complement entropy ``H_i = - sum_{j != y_i} q_ij log q_ij`` is maximised.
The term minimised here is, as in the authors' implementation, normalised by the batch size and k:

    L_comp = 1/(B k) sum_i sum_{j != y_i} q_ij log q_ij       (= - 1/(B k) sum_i H_i, >= -log(k-1)/k)
    L      = CE + complement_weight * L_comp

The original alternates two optimiser steps per batch (one on CE, one on the complement term); the
harness takes one step per batch on the sum, a common single-step form of COT. ``q`` is computed as a
log-softmax over the non-target logits (the target masked to -inf), stable when p_{i y_i} -> 1.
Prediction: the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ufm._checks import check_label_tensor, check_real
from ufm.losses.base import HarnessLoss, register_loss

__all__ = ["COTLoss", "complement_entropy_term"]


def complement_entropy_term(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``1/(B k) sum_i sum_{j != y_i} q_ij log q_ij`` (no input checks)."""
    b, k = logits.shape
    target = F.one_hot(labels, k).bool()
    # -inf at the target, then replaced by 0 BEFORE any product (a where() on 0 * -inf would still
    # send NaN through the backward pass)
    logq = F.log_softmax(logits.masked_fill(target, float("-inf")), dim=1).masked_fill(target, 0.0)
    q = logq.exp().masked_fill(target, 0.0)
    return (q * logq).sum() / (b * k)


@register_loss("cot")
class COTLoss(HarnessLoss):
    """Cross-entropy + ``complement_weight`` x the complement-entropy term, called as ``loss(logits, labels)``."""

    def __init__(self, complement_weight: float = 1.0):
        super().__init__()
        self.complement_weight = check_real(complement_weight, "complement_weight", low=0.0)

    def forward(self, logits: torch.Tensor, labels) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point or logits.dim() != 2:
            raise ValueError("logits must be a floating-point tensor of shape (N, k)")
        n, k = logits.shape
        if n == 0:
            raise ValueError("COT of an empty batch is undefined")
        if k < 2:
            raise ValueError(f"COT needs k >= 2 classes, got {k}")
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("logits contain NaN or infinite values")
        labels = check_label_tensor(labels, n, k).to(logits.device).long()
        z = logits.float()
        ce = F.cross_entropy(z, labels)
        if not self.complement_weight:
            return ce  # (for k = 2 the complement term is exactly 0: one wrong class, a point mass)
        return ce + self.complement_weight * complement_entropy_term(z, labels)

    def harness_objective(self, out, labels, model) -> torch.Tensor:
        if out.logits is None:
            raise ValueError("COT needs logits: the model output has none (no classifier)")
        return self(out.logits, labels)

    def harness_predict(self, out, model):
        return None

    def extra_repr(self) -> str:
        return f"complement_weight={self.complement_weight}"
