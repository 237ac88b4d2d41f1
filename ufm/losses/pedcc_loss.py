"""PEDCC-Loss (Zhu et al., IEEE Access 2020): AM-softmax on the cosines to FIXED PEDCC centroids plus
a mean-squared pull of the normalised feature onto its centroid.

Features x_i pass through BatchNorm1d without affine parameters (``feature_batchnorm=True``, as the
authors' network does before the loss) and are L2-normalised: ``z_i = BN(x)_i / ||BN(x)_i||``. With
fixed unit centroids u_1..u_k, ``cos_ij = z_i . u_j``, scale s and margin m:

    L_AM  = 1/B sum_i -log( exp(s (cos_{i y_i} - m)) / (exp(s (cos_{i y_i} - m)) + sum_{j != y_i} exp(s cos_ij)) )
    L_MSE = sum_i ||z_i - u_{y_i}||^2 = sum_{i<=B} sum_{j<=d} (z_ij - u_{y_i j})^2     (mse_reduction="sum")
          = 1/(B d) sum_i ||z_i - u_{y_i}||^2                                     (mse_reduction="mean")
    L     = L_AM + mse_weight * L_MSE^mse_power                              (authors: s = 7.5, m = 0.35, 1, 1)

The reduction: the authors' current code (ZLeopard/PEDCC-Loss, ``tools/train_net.py`` since Jan 2023) uses
``MSELoss(reduction='sum')``, the sum over the B x d entries, not divided by B nor d; their first version
used torch's default mean over the B x d entries. ``sum`` is the default here. Since ``||z_i|| = ||u|| = 1``,
``||z_i - u_{y_i}||^2 = 2 (1 - cos_{i y_i})``: the sum is ``2 sum_i (1 - cos_{i y_i})`` (up to ``4B``), the mean
``2 mean_i (1 - cos_{i y_i}) / d`` (up to ``4/d``). At CIFAR-100 sizes (B = 128, d = 512, cosines near 0 at
the start) the mean is about ``2/512 = 0.0039`` against about 7.3 for L_AM: with the mean the term hardly
acts and the loss is AM-softmax on fixed centroids; with the sum it is about 256 and dominates.

Input: a zero (normalised) feature raises. Half precision: computed in float32 (autocast off); the
direction is ``z / max(||z||, eps)`` with ``eps = max(1e-12, 4 C / finfo(dtype).max)``,
``C = (s sqrt(2k) / B + 4 mse_weight mse_power max(1, 4B)^(mse_power - 1)) / sqrt(1e-5)`` (a bound on the
gradient in the direction, times the largest gain 1/sqrt(var + 1e-5) of the batch normalisation):
unchanged from bfloat16 on; in float16 it keeps the gradient of a nearly constant batch finite.

The centroids and the BatchNorm running statistics are buffers. Prediction: argmax_j cos_ij with the
running statistics (BatchNorm in inference form, whatever the module's mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ufm._checks import check_choice, check_positive, check_real
from ufm.losses.base import HarnessLoss, direction_floor, register_loss, unit_or_zero
from ufm.losses.pod import check_features, resolve_centroids

__all__ = ["PEDCCLoss", "MSE_REDUCTIONS", "pedcc_mse"]

MSE_REDUCTIONS = ("sum", "mean")


def pedcc_mse(z: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
    """The MSE term: ``sum`` or ``mean`` of ``(z - targets)^2`` over all B x d entries.

    Args:
        z: (B, d) normalised features; targets: (B, d) their centroids; reduction: "sum" or "mean".
    Returns:
        a scalar tensor.
    """
    sq = (z - targets).pow(2)  # (B, d)
    return sq.sum() if reduction == "sum" else sq.mean()


@register_loss("pedcc_loss")
class PEDCCLoss(HarnessLoss):
    """AM-softmax on cosines to fixed PEDCC centroids + MSE to the centroid; ``loss(features, labels)``.

    Args:
        centroids: (k, d) unit centroids, or None with ``num_classes`` and ``dim`` (seeded closed form).
        scale, margin: AM-softmax s > 0 and m >= 0.
        mse_weight, mse_power: weight (>= 0) and exponent (> 0) of the MSE term.
        mse_reduction: "sum" (over the B x d entries, the authors' current code) or "mean" (divided by B d).
        feature_batchnorm: normalise the features with BatchNorm1d(affine=False) first.
        bn_momentum: momentum of the running statistics.
    """

    def __init__(self, centroids=None, scale: float = 7.5, margin: float = 0.35, mse_weight: float = 1.0,
                 mse_power: float = 1.0, feature_batchnorm: bool = True, bn_momentum: float = 0.1,
                 mse_reduction: str = "sum", *, num_classes: int | None = None, dim: int | None = None, seed: int = 0):
        super().__init__()
        self.mse_reduction = check_choice(mse_reduction, "mse_reduction", MSE_REDUCTIONS)
        scale, mse_power = check_positive(scale, "scale"), check_positive(mse_power, "mse_power")
        margin, mse_weight = check_real(margin, "margin", low=0.0), check_real(mse_weight, "mse_weight", low=0.0)
        bn_momentum = check_real(bn_momentum, "bn_momentum", low=0.0, high=1.0, low_open=True)
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
        # float32 at least, the buffers' dtype where wider (after ``.double()`` the running statistics are float64)
        x = features.to(torch.promote_types(torch.float32, self.running_mean.dtype))
        b, k = x.shape[0], self.centroids.shape[0]
        bound = (self.scale * (2 * k) ** 0.5 / b
                 + 4 * self.mse_weight * self.mse_power * max(1.0, 4.0 * b) ** max(self.mse_power - 1, 0.0))
        eps = direction_floor(bound / (1e-5 ** 0.5 if self.feature_batchnorm else 1.0), features.dtype, 1e-12)
        if self.feature_batchnorm:
            if update and x.shape[0] < 2:
                raise ValueError("BatchNorm of the features needs a batch of at least 2 samples")
            x = F.batch_norm(x, self.running_mean, self.running_var, None, None, training=update,
                             momentum=self.bn_momentum, eps=1e-5)
        if bool((x.detach().pow(2).sum(1) == 0).any()):
            raise ValueError("a (normalised) feature vector is zero: its direction is undefined")
        return unit_or_zero(x, eps)

    def forward(self, features: torch.Tensor, labels) -> torch.Tensor:
        features, labels = check_features(features, labels, self.centroids)
        update = self.training and torch.is_grad_enabled()
        z = self.normalised(features, update)
        c = self.centroids.to(z.dtype)
        cos = z @ c.T
        target = F.one_hot(labels, c.shape[0]).to(cos.dtype)
        am = F.cross_entropy(self.scale * (cos - self.margin * target), labels)
        mse = pedcc_mse(z, c[labels], self.mse_reduction)
        return am + self.mse_weight * mse.pow(self.mse_power)

    def harness_predict(self, out, model) -> torch.Tensor:
        x, _ = check_features(out.features, torch.zeros(out.features.shape[0], dtype=torch.long), self.centroids)
        z = self.normalised(x, update=False)
        return z @ self.centroids.to(z.dtype).T

    def extra_repr(self) -> str:
        return (f"k={self.centroids.shape[0]}, d={self.centroids.shape[1]}, scale={self.scale}, margin={self.margin}, "
                f"mse_weight={self.mse_weight}, mse_power={self.mse_power}, mse_reduction={self.mse_reduction!r}, "
                f"feature_batchnorm={self.feature_batchnorm}")
