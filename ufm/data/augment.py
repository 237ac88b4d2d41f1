"""Batched, seeded data augmentation on any device, and the multi-view batches of contrastive losses.

Augmentation acts on a whole batch in stored units (before normalisation), the way torchvision's
``RandomCrop(size, padding=p)`` + ``RandomHorizontalFlip()`` act on single images:

* random crop: zero-pad every spatial axis by ``p`` and cut back to the original size at an offset drawn
  uniformly from {0, ..., 2p} per sample and axis (1-D signals: a random shift with zero fill);
* flip: reverse the last axis of each sample with probability 1/2 (only for data whose labels allow it).

All random numbers come from a CPU ``torch.Generator`` passed in by the caller (the harness seeds one per
epoch), in a fixed order, so a batch's augmentation does not depend on the device or on what ran before:
this is what makes a resumed run identical to an uninterrupted one.

A loss with ``views = V`` (SupCon: 2) gets V independently augmented copies of each sample; the harness
stacks them view-major, (V * B, ...), runs the network once, and reshapes features to (B, V, d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ufm._checks import check_int

__all__ = ["BatchAugment", "random_crop", "random_flip"]


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop back at per-sample random offsets; x is (B, C, L) or (B, C, H, W).

    ``pad`` is an integer >= 0 (0: ``x`` unchanged); TypeError / ValueError otherwise.
    """
    if check_int(pad, "pad", low=0) == 0:
        return x
    b, nd = x.shape[0], x.dim() - 2
    if nd not in (1, 2):
        raise ValueError(f"random_crop takes (B, C, L) or (B, C, H, W) batches, got shape {tuple(x.shape)}")
    offs = torch.randint(0, 2 * pad + 1, (b, nd), generator=generator).to(x.device)
    xp = F.pad(x, (pad, pad) * nd)
    ar = torch.arange(b, device=x.device)
    if nd == 1:
        cols = offs[:, 0, None] + torch.arange(x.shape[2], device=x.device)
        return xp[ar[:, None], :, cols].permute(0, 2, 1).contiguous()
    rows = offs[:, 0, None] + torch.arange(x.shape[2], device=x.device)
    cols = offs[:, 1, None] + torch.arange(x.shape[3], device=x.device)
    return xp[ar[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Reverse the last axis of each sample with probability 1/2; ``x`` is a batch (B, ...) with B >= 0."""
    if x.dim() < 2:
        raise ValueError(f"random_flip takes a batch of samples (B, ...), got shape {tuple(x.shape)}")
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view((-1,) + (1,) * (x.dim() - 1)), x.flip(-1), x)


class BatchAugment:
    """Augmentation of a data set's batches (defaults from its :class:`~ufm.data.DataSpec`).

    Args:
        spec: the data set's spec (``crop_pad``, ``flip``).
        enabled: False gives identity views (each view an exact copy).
        crop_pad, flip: override the spec's defaults.
    """

    def __init__(self, spec, enabled: bool = True, crop_pad: int | None = None, flip: bool | None = None):
        self.enabled = bool(enabled)
        self.crop_pad = check_int(spec.crop_pad if crop_pad is None else crop_pad, "crop_pad", low=0)
        self.flip = bool(spec.flip if flip is None else flip)

    @property
    def identity(self) -> bool:
        """Every view an exact copy of the batch (disabled, or no crop and no flip): no random draw."""
        return not self.enabled or (self.crop_pad == 0 and not self.flip)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.enabled:
            return x
        x = random_crop(x, self.crop_pad, generator)
        if self.flip:
            x = random_flip(x, generator)
        return x

    def views(self, x: torch.Tensor, views: int, generator: torch.Generator) -> torch.Tensor:
        """``views`` augmented copies of the batch, stacked view-major: (views * B, ...)."""
        views = check_int(views, "views", low=1)
        return torch.cat([self(x, generator) for _ in range(views)], dim=0)

    def __repr__(self) -> str:
        return f"BatchAugment(enabled={self.enabled}, crop_pad={self.crop_pad}, flip={self.flip})"
