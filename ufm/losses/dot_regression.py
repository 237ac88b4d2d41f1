"""Fixed simplex-ETF classifier with the dot-regression loss (Yang et al., NeurIPS 2022, "Inducing
neural collapse in imbalanced learning: do we really need a learnable classifier at the end of deep
neural network?").

The classifier is a fixed simplex ETF ``w_1..w_k`` (unit vectors, a buffer: never trained). With
``E_W = E_H = 1`` (unit classifier vectors, L2-normalised features ``h_i / ||h_i||``):

    L_DR = 1/B sum_i 1/2 ( w_{y_i} . h_i / ||h_i|| - 1 )^2 = 1/B sum_i 1/2 (1 - cos(h_i, w_{y_i}))^2

Input: a zero feature raises (its cosine is undefined). Half precision: computed in float32 (autocast
off); ``||dL/du_i|| <= 2 / B``, so the direction is ``h / max(||h||, eps)`` with
``eps = max(1e-12, 8 / (B finfo(dtype).max))`` (:func:`ufm.losses.base.direction_floor`): unchanged from
bfloat16 on, about 2e-5 at B = 6 in float16, where the gradient would otherwise overflow.

Only the target class enters (no pull-away from the other classes, unlike cross-entropy): this is half
of the cosine term of POD loss v1. Prediction: argmax_j cos(h, w_j).
"""

from __future__ import annotations

import torch

from ufm.losses.base import HarnessLoss, direction_floor, register_loss
from ufm.losses.pod import centroid_cosines, check_features, resolve_centroids

__all__ = ["DotRegressionLoss"]


@register_loss("dot_regression")
class DotRegressionLoss(HarnessLoss):
    """``1/B sum_i (1 - cos(h_i, w_{y_i}))^2 / 2`` against a fixed ETF, called as ``loss(features, labels)``.

    Args:
        centroids: (k, d) unit classifier vectors; or None with ``num_classes`` and ``dim`` for the
            seeded closed-form simplex ETF (``ufm.geometry.pedcc``). Stored as a buffer.
    """

    def __init__(self, centroids=None, *, num_classes: int | None = None, dim: int | None = None, seed: int = 0):
        super().__init__()
        self.register_buffer("centroids", resolve_centroids(centroids, num_classes, dim, seed))

    def forward(self, features: torch.Tensor, labels) -> torch.Tensor:
        features, labels = check_features(features, labels, self.centroids)
        x = features.float() if features.dtype in (torch.float16, torch.bfloat16) else features
        if bool((x.detach().pow(2).sum(1) == 0).any()):
            raise ValueError("a feature vector is zero: its cosine to the classifier is undefined")
        eps = direction_floor(2.0 / x.shape[0], features.dtype, 1e-12)
        cos = centroid_cosines(x, self.centroids, eps).gather(1, labels[:, None]).squeeze(1)
        return 0.5 * (1 - cos).pow(2).mean()

    def harness_predict(self, out, model) -> torch.Tensor:
        return centroid_cosines(out.features.float(), self.centroids)

    def extra_repr(self) -> str:
        return f"k={self.centroids.shape[0]}, d={self.centroids.shape[1]}"
