"""Supervised contrastive loss (Khosla et al. 2020), the loss of the SCL orthogonal-frame paper.

For L2-normalised embeddings z_i of a batch B and temperature tau, with positives
P_i = {j in B : j != i, y_j = y_i}:

    l_i = - 1/|P_i| * sum_{j in P_i} log( exp(z_i.z_j / tau) / sum_{l in B, l != i} exp(z_i.z_l / tau) )
        = logsumexp_{l != i}(z_i.z_l / tau) - 1/|P_i| * sum_{j in P_i} z_i.z_j / tau

and the batch loss is the mean of l_i over the anchors with |P_i| >= 1 (anchors without a positive
contribute nothing; a batch with no such anchor has loss 0, never NaN).

Convention for a zero embedding (a sample whose final-ReLU features are all off): it has no direction,
so it enters as the zero vector, as in the POD loss: cosine 0 with every other sample (a term exp(0) in
the others' denominators, 0 in their positive sums), its own l_i is the constant log(m - 1), and no
gradient flows through its normalisation (where a normalised ``h / ||h||`` would divide by zero). Such
samples are counted: ``zero_embeddings``, the fraction of the epoch's training embeddings that were zero,
joins the metrics (the harness's ``zero_features`` counts them at evaluation). A batch made only of zero
embeddings has loss exactly ``log(m - 1)`` (every cosine is 0, every softmax uniform) and zero gradient.

Half precision: the loss is computed in float32 whatever the input dtype (autocast off). The gradient in z
is ``(I - u u^T) dL/du / ||z||`` (the loss depends on z only through its direction u), with
``||dL/du_j|| <= (1 + 3/|A|) / tau <= 2.5 / tau`` (|A| >= 2 anchors with a positive; times
``tau / base_temperature`` with a base). Below ``||z|| = eps = 4 C / finfo(dtype).max`` with ``C = 2.5 / tau_eff``
this would overflow the input's dtype, so rows are divided by ``max(||z||, eps)``
(:func:`ufm.losses.base.unit_or_zero`) and the gradient is at most ``finfo(dtype).max / 4``: in float16
``eps = 1.5e-3`` at tau = 0.1 (``1.5e-4 / tau``; a float16 row of that norm in a few hundred dimensions
has entries near float16's smallest normal number 6.1e-5, resolved to a few bits anyway), about
``1e-37 / tau`` in bfloat16 / float32 (no change for any other input). Inside that ball the row enters as
``z / eps``, shorter than 1, meeting the zero embedding's convention continuously.

Input: an empty batch raises (the mean over anchors of no sample is not a number the harness should
average), as every loss of the package does; so does a tensor on the meta device.
"""

from __future__ import annotations

import torch

from ufm._checks import check_int, check_label_tensor, check_positive
from ufm.losses.base import HarnessLoss, direction_floor, register_loss, unit_or_zero

__all__ = ["SupConLoss", "supcon_per_anchor", "unit_or_zero"]


def _flatten_views(embeddings: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(embeddings, torch.Tensor):
        raise ValueError(f"embeddings must be a torch.Tensor, got {type(embeddings).__name__}")
    if embeddings.dim() not in (2, 3):
        raise ValueError(f"embeddings must have shape (N, d) or (N, V, d), got {tuple(embeddings.shape)}")
    if not embeddings.dtype.is_floating_point:
        raise ValueError(f"embeddings must be floating point, got {embeddings.dtype}")
    n = embeddings.shape[0]
    if n == 0:
        raise ValueError(f"embeddings are an empty batch (shape {tuple(embeddings.shape)}): the loss needs samples")
    labels = check_label_tensor(labels, n).to(embeddings.device)
    if embeddings.shape[-1] == 0:
        raise ValueError("embeddings have dimension d = 0")
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    if embeddings.dim() == 3:
        v = embeddings.shape[1]
        embeddings = embeddings.reshape(n * v, embeddings.shape[2])
        labels = labels.repeat_interleave(v)
    return embeddings, labels


def supcon_per_anchor(
    embeddings: torch.Tensor, labels, temperature: float = 0.1, chunk_size: int = 4096,
    grad_scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor SupCon terms ``l_i`` (float32) and the mask of anchors that have a positive.

    Computed in float32 whatever the input dtype (cosines / tau reach 1/tau = 100 at tau = 0.01,
    beyond what half precision resolves), one masked row block of the similarity matrix at a time.
    ``grad_scale``: the factor 1/tau_eff of the gradient bound that sets the direction floor (module
    docstring); default ``1 / temperature``.
    """
    z, y = _flatten_views(embeddings, labels)
    inv_t = 1.0 / float(temperature)
    eps = direction_floor(2.5 * (inv_t if grad_scale is None else grad_scale), embeddings.dtype)
    z = unit_or_zero(z.float(), eps)
    m = z.shape[0]
    # positives through class sums: sum_{j in P_i} z_i.z_j = z_i.(S_{y_i} - z_i), so no B x B mask;
    # in float64 (O(B d), cheap) so that removing the self term z_i.z_i loses nothing to cancellation
    _, cls = torch.unique(y, return_inverse=True)
    z64 = z.double()
    sums = torch.zeros(int(cls.max()) + 1, z.shape[1], dtype=z64.dtype, device=z.device).index_add_(0, cls, z64)
    n_pos = torch.bincount(cls)[cls] - 1
    pos_dot = ((z64 * sums[cls]).sum(1) - (z64 * z64).sum(1)).to(z.dtype)
    ok = n_pos > 0
    pos_mean = pos_dot * inv_t / n_pos.clamp(min=1).to(z.dtype)
    lse = []
    for start in range(0, m, chunk_size):
        sim = (z[start:start + chunk_size] @ z.T) * inv_t  # (c, m)
        sim.diagonal(offset=start).fill_(float("-inf"))  # l != i (in place: the product's backward needs z only)
        lse.append(torch.logsumexp(sim, dim=1))
    lse = torch.cat(lse)
    # rows without a positive are replaced by 0 (not multiplied: lse is -inf when m == 1)
    return torch.where(ok, lse - pos_mean, torch.zeros_like(lse)), ok


@register_loss("supcon")
class SupConLoss(HarnessLoss):
    """Supervised contrastive loss, called as ``loss(embeddings, labels)``.

    Args:
        temperature: tau > 0.
        base_temperature: if given, multiply by ``tau / base_temperature`` (the convention of the
            public SupContrast code, base 0.07). Default ``None``: the plain formula.
        chunk_size: rows of the similarity matrix processed at once (bounds transient memory).

    ``embeddings`` has shape (N, d) or (N, V, d) (V views of each sample; views of one sample are
    positives of each other). They are L2-normalised inside.
    """

    views = 2

    def __init__(self, temperature: float = 0.1, base_temperature: float | None = None, chunk_size: int = 4096):
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.base_temperature = None if base_temperature is None else check_positive(base_temperature,
                                                                                      "base_temperature")
        self.chunk_size = check_int(chunk_size, "chunk_size", low=1)

    def forward(self, embeddings: torch.Tensor, labels) -> torch.Tensor:
        # the gradient carries 1/tau, times tau / base_temperature with a base: 1 / base_temperature
        scale = 1.0 / (self.temperature if self.base_temperature is None else self.base_temperature)
        terms, valid = supcon_per_anchor(embeddings, labels, self.temperature, self.chunk_size, grad_scale=scale)
        if self.training:
            flat = embeddings.detach().reshape(-1, embeddings.shape[-1])
            self.record_epoch_stats(weight=flat.shape[0], zero_embeddings=(flat.abs().sum(1) == 0).double().mean())
        count = valid.sum()
        loss = terms.sum() / count.clamp(min=1).to(terms.dtype)  # invalid rows are exactly 0
        if self.base_temperature is not None:
            loss = loss * (self.temperature / self.base_temperature)
        return loss

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, base_temperature={self.base_temperature}"
