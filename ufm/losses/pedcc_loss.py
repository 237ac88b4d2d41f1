"""PEDCC-Loss (Zhu et al., IEEE Access 2020): AM-softmax on the cosines to FIXED PEDCC centroids plus
a mean-squared pull of the normalised feature onto its centroid.

Features x_i pass through BatchNorm1d without affine parameters (``feature_batchnorm=True``, as the
authors' network does before the loss) and are L2-normalised: ``z_i = BN(x)_i / ||BN(x)_i||``. With
fixed unit centroids u_1..u_k, ``cos_ij = z_i . u_j``, scale s and margin m:

    L_AM  = 1/B sum_i -log( exp(s (cos_{i y_i} - m)) / (exp(s (cos_{i y_i} - m)) + sum_{j != y_i} exp(s cos_ij)) )
    L_MSE = 1/(B d) sum_i ||z_i - u_{y_i}||^2                                (torch's mean-reduced MSE)
    L     = L_AM + mse_weight * L_MSE^mse_power                              (authors: s = 7.5, m = 0.35, 1, 1)

The centroids and the BatchNorm running statistics are buffers. Prediction: argmax_j cos_ij with the
running statistics (BatchNorm in inference form, whatever the module's mode).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ufm.losses.base import HarnessLoss, register_loss
from ufm.losses.pod import check_features, resolve_centroids

__all__ = ["PEDCCLoss"]


@register_loss("pedcc_loss")
class PEDCCLoss(HarnessLoss):
    """AM-softmax on cosines to fixed PEDCC centroids + MSE to the centroid; ``loss(features, labels)``.

    Args:
        centroids: (k, d) unit centroids, or None with ``num_classes`` and ``dim`` (seeded closed form).
        scale, margin: AM-softmax s > 0 and m >= 0.
        mse_weight, mse_power: weight (>= 0) and exponent (> 0) of the MSE term.
        feature_batchnorm: normalise the features with BatchNorm1d(affine=False) first.
        bn_momentum: momentum of the running statistics.
    """

    def __init__(self, centroids=None, scale: float = 7.5, margin: float = 0.35, mse_weight: float = 1.0,
                 mse_power: float = 1.0, feature_batchnorm: bool = True, bn_momentum: float = 0.1, *,
                 num_classes: int | None = None, dim: int | None = None, seed: int = 0):
        super().__init__()
        for name, v, ok in (("scale", scale, scale > 0), ("margin", margin, margin >= 0),
                            ("mse_weight", mse_weight, mse_weight >= 0), ("mse_power", mse_power, mse_power > 0),
                            ("bn_momentum", bn_momentum, 0 < bn_momentum <= 1)):
            if not (math.isfinite(v) and ok):
                raise ValueError(f"{name} out of range: {v!r}")
        c = resolve_centroids(centroids, num_classes, dim, seed)
        self.register_buffer("centroids", c)
        d = c.shape[1]
        self.feature_batchnorm = bool(feature_batchnorm)
        self.register_buffer("running_mean", torch.zeros(d))
        self.register_buffer("running_var", torch.ones(d))
        self.scale, self.margin = float(scale), float(margin)
        self.mse_weight, self.mse_power = float(mse_weight), float(mse_power)
        self.bn_momentum = float(bn_momentum)

    def normalised(self, features: torch.Tensor, update: bool) -> torch.Tensor:
        """``z = BN(x) / ||BN(x)||``; batch statistics (and a running-statistics update) when ``update``."""
        x = features.float()
        if self.feature_batchnorm:
            if update and x.shape[0] < 2:
                raise ValueError("BatchNorm of the features needs a batch of at least 2 samples")
            x = F.batch_norm(x, self.running_mean, self.running_var, None, None, training=update,
                             momentum=self.bn_momentum, eps=1e-5)
        if bool((x.detach().pow(2).sum(1) == 0).any()):
            raise ValueError("a (normalised) feature vector is zero: its direction is undefined")
        return F.normalize(x, dim=1)

    def forward(self, features: torch.Tensor, labels) -> torch.Tensor:
        features, labels = check_features(features, labels, self.centroids)
        update = self.training and torch.is_grad_enabled()
        z = self.normalised(features, update)
        c = self.centroids.to(z.dtype)
        cos = z @ c.T
        target = F.one_hot(labels, c.shape[0]).to(cos.dtype)
        am = F.cross_entropy(self.scale * (cos - self.margin * target), labels)
        mse = (z - c[labels]).pow(2).mean()
        return am + self.mse_weight * mse.pow(self.mse_power)

    def harness_predict(self, out, model) -> torch.Tensor:
        x, _ = check_features(out.features, torch.zeros(out.features.shape[0], dtype=torch.long), self.centroids)
        z = self.normalised(x, update=False)
        return z @ self.centroids.to(z.dtype).T

    def extra_repr(self) -> str:
        return (f"k={self.centroids.shape[0]}, d={self.centroids.shape[1]}, scale={self.scale}, margin={self.margin}, "
                f"mse_weight={self.mse_weight}, mse_power={self.mse_power}, feature_batchnorm={self.feature_batchnorm}")
