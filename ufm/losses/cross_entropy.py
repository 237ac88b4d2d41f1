"""Cross-entropy on the logits of the model's final linear classifier: the baseline of every experiment.

For logits ``z_i = W h_i + b`` (N, k) and labels y_i:

    L = 1/N sum_i [ log sum_c exp(z_ic) - z_{i y_i} ]          (with label smoothing eps: the target
                                                                 is (1 - eps) e_{y_i} + eps/k 1)

Computed in float32 whatever the logits' dtype (autocast off); NaN or infinite logits raise a ValueError.
Several views (logits (N, V, k)) count as N * V samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ufm._checks import check_finite, check_label_tensor, check_real
from ufm.losses.base import HarnessLoss, register_loss

__all__ = ["CrossEntropyLoss"]


@register_loss("ce")
class CrossEntropyLoss(HarnessLoss):
    """Softmax cross-entropy, called as ``loss(logits, labels)``; in the harness on ``out.logits``.

    Args:
        label_smoothing: eps in [0, 1) (0: plain cross-entropy).
    """

    views = 1

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = check_real(label_smoothing, "label_smoothing", low=0.0, high=1.0, high_open=True)

    def forward(self, logits: torch.Tensor, labels) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point:
            raise ValueError("logits must be a floating-point tensor")
        if logits.dim() == 3:  # (N, V, k): V views of each sample
            n, v, k = logits.shape
            labels = check_label_tensor(labels, n, k).to(logits.device).repeat_interleave(v)
            logits = logits.reshape(n * v, k)
        if logits.dim() != 2:
            raise ValueError(f"logits must have shape (N, k) or (N, V, k), got {tuple(logits.shape)}")
        n, k = logits.shape
        if n == 0:
            raise ValueError("cross-entropy of an empty batch is undefined")
        check_finite(logits, "logits")  # a NaN logit would give a NaN loss, silently
        labels = check_label_tensor(labels, n, k).to(logits.device).long()
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def harness_objective(self, out, labels: torch.Tensor, model) -> torch.Tensor:
        if out.logits is None:
            raise ValueError("cross-entropy needs logits: the model output has none (no classifier)")
        return self(out.logits, labels)

    def harness_predict(self, out, model):
        return None

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"
