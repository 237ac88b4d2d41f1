"""AM-softmax / CosFace (Wang et al. 2018) through pytorch-metric-learning's ``CosFaceLoss``.

With a learnable class matrix ``W = [w_1..w_k]`` (a parameter of the loss, trained by the harness's
optimiser), ``cos_ij = x_i . w_j / (||x_i|| ||w_j||)``, scale s and margin m:

    L = 1/B sum_i -log( exp(s (cos_{i y_i} - m)) / (exp(s (cos_{i y_i} - m)) + sum_{j != y_i} exp(s cos_ij)) )

The formula is computed by ``pytorch_metric_learning.losses.CosFaceLoss`` (mean reduction); this file
adds the harness contract, input checks and prediction by argmax_j cos_ij. Defaults s = 30, m = 0.35
(AM-softmax's); the library's default scale is 64.

Input: a zero feature raises (its cosine is undefined). Half precision: computed in float32 (autocast off);
the gradient in x is ``dL/du / ||x||`` with ``||dL/du_i|| <= s sqrt(2k) / B``, beyond float16's range for
small ``||x||``: rows below ``eps = 4 s sqrt(2k) / (B finfo(dtype).max)`` (about 1.4e-3 at s = 30, k = 10,
B = 6 in float16; about 1e-37 from bfloat16 on) enter the library at norm eps
(:func:`ufm.losses.base.lift_small_rows`): same value, the gradient scaled by ``||x|| / eps``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ufm._checks import check_int, check_label_tensor, check_positive, check_real
from ufm.losses.base import HarnessLoss, direction_floor, lift_small_rows, register_loss

__all__ = ["CosFaceLoss"]


@register_loss("cosface")
class CosFaceLoss(HarnessLoss):
    """CosFace / AM-softmax with a learnable W, called as ``loss(features, labels)``.

    Args:
        num_classes, dim: k and the feature dimension (filled in by the harness).
        margin: m >= 0; scale: s > 0.
        seed: seed of the initialisation of W (normal, as the library's default).
    """

    def __init__(self, num_classes: int, dim: int, margin: float = 0.35, scale: float = 30.0, seed: int = 0):
        super().__init__()
        from pytorch_metric_learning.losses import CosFaceLoss as _PMLCosFace

        num_classes, dim = check_int(num_classes, "num_classes", low=2), check_int(dim, "dim", low=1)
        margin, scale = check_real(margin, "margin", low=0.0), check_positive(scale, "scale")
        seed = check_int(seed, "seed", low=0)
        self.inner = _PMLCosFace(num_classes=int(num_classes), embedding_size=int(dim), margin=float(margin),
                                 scale=float(scale))
        with torch.no_grad():
            gen = torch.Generator().manual_seed(seed)
            self.inner.W.copy_(torch.randn(self.inner.W.shape, generator=gen))
        self.num_classes, self.dim = int(num_classes), int(dim)

    @property
    def weight(self) -> torch.Tensor:
        """The class vectors as rows (k, d)."""
        return self.inner.W.T

    def _check(self, features, labels=None):
        if not isinstance(features, torch.Tensor) or not features.dtype.is_floating_point or features.dim() != 2:
            raise ValueError("features must be a floating-point tensor of shape (N, d)")
        if features.shape[1] != self.dim:
            raise ValueError(f"features have dimension {features.shape[1]} but the loss was built for dim={self.dim}")
        if features.shape[0] == 0:
            raise ValueError("features are empty (N = 0)")
        if not bool(torch.isfinite(features).all()):
            raise ValueError("features contain NaN or infinite values")
        x = features.float()  # (the zero test in float32: a float16 square underflows to 0)
        if bool((x.detach().pow(2).sum(1) == 0).any()):
            raise ValueError("a feature vector is zero: its cosine is undefined")
        if labels is not None:
            labels = check_label_tensor(labels, features.shape[0], self.num_classes).to(features.device).long()
        bound = self.inner.scale * (2 * self.num_classes) ** 0.5 / features.shape[0]
        return lift_small_rows(x, direction_floor(bound, features.dtype)), labels

    def forward(self, features: torch.Tensor, labels) -> torch.Tensor:
        x, y = self._check(features, labels)
        return self.inner(x, y)

    def harness_predict(self, out, model) -> torch.Tensor:
        x, _ = self._check(out.features)
        return F.normalize(x, dim=1) @ F.normalize(self.inner.W, dim=0)

    def extra_repr(self) -> str:
        return f"k={self.num_classes}, d={self.dim}, margin={self.inner.margin}, scale={self.inner.scale}"
