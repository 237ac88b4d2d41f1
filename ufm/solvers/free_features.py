"""The unconstrained features model for ANY registered loss: free features (+ a linear classifier)
trained by a first-order method through the loss's harness contract.

Each sample i owns a free vector h_i in R^d (optionally passed through a ReLU, as after a network's
final ReLU); logits are ``W h_i + b``. The objective of one step is
``loss.harness_objective(ModelOutput(h_B, W h_B + b, {"features": h_B}), y_B, model)``
plus the usual UFM regularisation ``(lambda_H / 2) ||H||_F^2`` (and weight decay on W, b).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ufm._checks import as_label_array, check_int, check_positive
from ufm.device import default_device
from ufm.geometry import delta_etf, delta_of, nc_metrics
from ufm.losses.base import ModelOutput

__all__ = ["FreeFeatures", "FreeFeaturesResult", "train_free_features"]


class FreeFeatures(nn.Module):
    """One free feature vector per sample and a linear classifier: ``forward(idx) -> ModelOutput``."""

    def __init__(self, n: int, dim: int, num_classes: int, relu: bool = False, bias: bool = True,
                 init_scale: float = 1.0, seed: int = 0, dtype=torch.float32):
        super().__init__()
        if n < 1 or dim < 1 or num_classes < 1:
            raise ValueError(f"need n, dim, num_classes >= 1, got {n}, {dim}, {num_classes}")
        gen = torch.Generator().manual_seed(seed)
        h = torch.randn(n, dim, generator=gen, dtype=dtype) * init_scale
        if relu:
            h = h.abs()  # start inside the non-negative orthant so no unit starts dead
        self.H = nn.Parameter(h)
        self.relu = relu
        self.classifier = nn.Linear(dim, num_classes, bias=bias).to(dtype)
        with torch.no_grad():
            w = torch.randn(num_classes, dim, generator=gen, dtype=dtype) / dim**0.5
            self.classifier.weight.copy_(w)
            if bias:
                self.classifier.bias.zero_()

    def features(self, idx=None) -> torch.Tensor:
        h = self.H if idx is None else self.H[idx]
        return torch.relu(h) if self.relu else h

    def forward(self, idx=None) -> ModelOutput:
        h = self.features(idx)
        return ModelOutput(features=h, logits=self.classifier(h), activations={"features": h})


@dataclass
class FreeFeaturesResult:
    model: FreeFeatures
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def features(self) -> np.ndarray:
        with torch.no_grad():
            return self.model.features().detach().cpu().double().numpy()


def _geometry(model: FreeFeatures, y: np.ndarray, loss: nn.Module | None = None) -> dict:
    h = model.features().detach().cpu().double().numpy()
    out = {"feature_norm": float(np.linalg.norm(h, axis=1).mean())}
    try:
        out["delta_of"] = delta_of(h, y)
        out["delta_etf"] = delta_etf(h, y)
    except ValueError:  # a zero feature row has no direction: report NaN-free absence instead
        pass
    with torch.no_grad():
        full = model()
        scores = loss.harness_predict(full, model) if hasattr(loss, "harness_predict") else None
    head = scores is None  # the loss trains the linear classifier: score with it (NC3 is meaningful)
    nc = nc_metrics(h, y, model.classifier.weight if head else None, model.classifier.bias if head else None,
                    num_classes=model.classifier.weight.shape[0])
    out["nc1"] = nc["nc1"]
    if head:  # else the loss predicts by its own rule (e.g. cosine to fixed centroids): the head is unused
        out["nc3_alignment"] = nc["nc3_alignment"]
        scores = full.logits
    out["train_acc"] = float((scores.argmax(1).cpu().numpy() == y).mean())
    return out


def train_free_features(
    loss: nn.Module,
    labels,
    dim: int,
    *,
    num_classes: int | None = None,
    steps: int = 1000,
    lr: float = 0.1,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    feature_decay: float = 0.0,
    classifier_decay: float = 0.0,
    batch_size: int | None = None,
    relu: bool = False,
    bias: bool = True,
    init_scale: float = 1.0,
    seed: int = 0,
    device=None,
    dtype=torch.float32,
    record_every: int = 50,
    extra_metrics: Callable[[FreeFeatures, nn.Module], dict] | None = None,
) -> FreeFeaturesResult:
    """Train free features with ``loss`` (any registered loss) and record geometry.

    One "epoch" is one pass over the samples (a single step for ``batch_size=None``): the loss's
    ``on_epoch_start`` / ``on_epoch_end`` hooks, when defined, are called per epoch, and what
    ``on_epoch_end`` returns is recorded. History rows: step, epoch, loss, feature_norm, delta_of,
    delta_etf, nc1, nc3_alignment (when the loss trains the head), train_acc (+ hook values + ``extra_metrics``).
    """
    y = as_label_array(labels, num_classes=num_classes)
    n = y.size
    k = num_classes if num_classes is not None else int(y.max()) + 1
    dim, steps = check_int(dim, "dim", low=1), check_int(steps, "steps", low=1)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", low=1)
    lr = check_positive(lr, "lr")
    dev = default_device(device)
    model = FreeFeatures(n, dim, k, relu=relu, bias=bias, init_scale=init_scale, seed=seed, dtype=dtype).to(dev)
    loss = loss.to(dev)
    params = [
        {"params": [model.H], "weight_decay": 0.0},  # feature decay added explicitly below (UFM convention)
        {"params": list(model.classifier.parameters()), "weight_decay": classifier_decay},
    ]
    extra = [p for p in loss.parameters() if p.requires_grad]
    if extra:
        params.append({"params": extra, "weight_decay": 0.0})
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}: use 'sgd' or 'adam'")
    yt = torch.as_tensor(y, device=dev)
    gen = torch.Generator().manual_seed(seed + 1)
    bs = n if batch_size is None else min(batch_size, n)
    per_epoch = -(-n // bs)
    history: list[dict] = []
    t0 = time.time()
    step, epoch = 0, 0
    while step < steps:
        if hasattr(loss, "on_epoch_start"):
            loss.on_epoch_start(epoch)
        order = torch.randperm(n, generator=gen) if bs < n else torch.arange(n)
        epoch_loss = []
        for b in range(per_epoch):
            if step >= steps:
                break
            idx = order[b * bs:(b + 1) * bs].to(dev)
            out = model(idx)
            obj = loss.harness_objective(out, yt[idx], model)
            if feature_decay:
                obj = obj + 0.5 * feature_decay * model.H[idx].pow(2).sum() / bs
            if not torch.isfinite(obj):
                raise FloatingPointError(f"the objective became non-finite ({obj.item()}) at step {step}")
            opt.zero_grad(set_to_none=True)
            obj.backward()
            opt.step()
            epoch_loss.append(float(obj.detach()))
            step += 1
            last = step == steps
            if step % record_every == 0 or last or step == 1:
                row = {"step": step, "epoch": epoch, "loss": epoch_loss[-1], **_geometry(model, y, loss)}
                if extra_metrics is not None:
                    row.update(extra_metrics(model, loss))
                history.append(row)
        hook = loss.on_epoch_end(epoch, {"loss": float(np.mean(epoch_loss))}) if hasattr(loss, "on_epoch_end") else None
        if hook and history:
            history[-1].update({f"{key}": val for key, val in hook.items()})
        epoch += 1
    return FreeFeaturesResult(model=model, history=history, seconds=time.time() - t0)
