"""Multi-process training (``torchrun``, DistributedDataParallel) and the gather that makes a batch
objective over W ranks equal to the single-process objective over the whole batch.

Each rank holds a slice of the global batch (samples ``r, r + W, r + 2W, ...`` of it). Before the loss,
the model's outputs (features, logits, activations) and the labels of all ranks are concatenated with
:func:`gather_with_grad`, so every rank evaluates the SAME objective L on the SAME full batch.

Gradients. Rank r's autograd graph reaches only its own slice z_r, and ``gather_with_grad``'s backward
all-reduces (sums) the incoming gradient over ranks and keeps the slice of z_r: the gradient reaching
z_r is ``sum_s dL_s/dz_r = W dL/dz_r`` (every L_s equals L). DDP then averages parameter gradients
over the W ranks, which gives exactly ``sum_r (dL/dz_r)(dz_r/dtheta) = dL/dtheta``: the gradient of
single-process training on the full batch. (gloo has no reduce-scatter, hence all-reduce + slice.)

Batch statistics: BatchNorm normalises with per-rank statistics unless the config asks for
``sync_bn`` (SyncBatchNorm), so with BN layers the equality above holds for the loss given the
features, not bit-for-bit for the features themselves.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ufm.losses.base import ModelOutput

__all__ = ["is_distributed", "rank", "world_size", "init_from_env", "gather_with_grad", "gather_output", "local_slice"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env(device: torch.device | None = None) -> bool:
    """Initialise the default process group from ``torchrun``'s environment (WORLD_SIZE > 1).

    Backend: NCCL on CUDA, gloo otherwise; on CUDA each process uses ``cuda:LOCAL_RANK``.
    Returns True when running distributed. Does nothing if a group is already initialised.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    use_cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def local_slice(indices: list[int], r: int | None = None, w: int | None = None) -> list[int]:
    """This rank's share of a global batch: ``indices[r::w]``."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    return list(indices)[r::w]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 (sizes may differ per rank); backward: all-reduce SUM, keep own slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        w, r = dist.get_world_size(), dist.get_rank()
        n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
        sizes = [torch.zeros_like(n) for _ in range(w)]
        dist.all_gather(sizes, n)
        sizes = [int(s.item()) for s in sizes]
        m = max(sizes)
        xp = x.contiguous()
        if x.shape[0] < m:
            xp = torch.cat([xp, xp.new_zeros((m - x.shape[0],) + tuple(x.shape[1:]))])
        parts = [torch.empty_like(xp) for _ in range(w)]
        dist.all_gather(parts, xp)
        ctx.sizes, ctx.rank = sizes, r
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return g[start : start + ctx.sizes[ctx.rank]]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N_r, ...) of all ranks along dim 0 (rank order), differentiably.

    Identity when not distributed. Tensors without ``requires_grad`` (labels) are gathered the same way.
    """
    if not is_distributed():
        return x
    if x.requires_grad:
        return _GatherWithGrad.apply(x)
    with torch.no_grad():
        return _GatherWithGrad.apply(x)


def gather_output(out: ModelOutput, labels: torch.Tensor) -> tuple[ModelOutput, torch.Tensor]:
    """The model output and labels of the whole global batch (every field gathered along dim 0)."""
    if not is_distributed():
        return out, labels
    acts = {k: gather_with_grad(v) for k, v in (out.activations or {}).items()}
    logits = gather_with_grad(out.logits) if out.logits is not None else None
    return ModelOutput(gather_with_grad(out.features), logits, acts), gather_with_grad(labels)
