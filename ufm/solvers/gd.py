"""Gradient-based solver of the SCL unconstrained features model (UFM) on free features, in torch.

Every sample ``i`` owns a free vector ``h_i in R^d``; ``z_i = h_i / ||h_i||``. For a batching ``{B}``
and temperature ``tau`` the objective is the one of :mod:`ufm.solvers.objective`,

    f(H) = sum_B 1/|A_B| sum_{i in A_B} [ log sum_{l in B, l != i} exp(z_i.z_l / tau)
                                           - 1/|P_i| sum_{j in P_i} z_i.z_j / tau ],

``P_i = {j in B \\ {i}: y_j = y_i}``, ``A_B = {i in B: |P_i| >= 1}``: for one full batch it is
``SupConLoss`` of the features, and it equals ``scl_gram_objective(Z Z^T)``.

Non-negativity (``relu=True``, the UFM+ of Kini et al.): the minimisers are then the orthogonal
frame (OF) for any class sizes, which needs ``d >= k``. Three ways to keep ``H >= 0``:

* ``nonneg="relu"`` (default for Adam/SGD): ``H = relu(W)``, ``W`` initialised ``|N(0, 1)|``. An
  entry whose ``W`` becomes negative is *dead* (zero gradient) and stays at 0 -- what the OF wants
  off its class's support, but a sample whose entries die on its class's support cannot come back:
  the run can stall short of the OF, and a row whose entries all die has no direction (an error).
  Not offered with L-BFGS: its long line-search steps kill units (at n = 200, d = 16 two seeds out
  of four stalled at Delta_OF 0.009 and 0.04).
* ``nonneg="square"`` (default for L-BFGS): ``H = W * W``, ``W ~ N(0, 1)``. Smooth, no dead units;
  an entry reaches 0 only in the limit ``W -> 0`` (the final approach to the OF is linear, slow
  once ``Delta_OF`` is below ~1e-6).
* ``nonneg="project"``: ``H = W``, projected onto ``H >= 0`` after every step (projected gradient).
  Adam and SGD only: a projection does not fit the L-BFGS line search.

Without ReLU (``relu=False``) ``H = W`` is free (balanced classes: the simplex ETF, Graf et al.).

The loss is evaluated in the requested dtype (float64 by default: relative accuracy ``1e-6`` of
the objective and ``Delta_OF < 1e-5`` need it). A batch larger than ``dense_max`` is evaluated one
block of anchor rows at a time with an explicit gradient (``O(n d)`` memory besides one block, so
``n = 10^4`` fits); smaller batches are evaluated together as one padded ``(batches, m, m)`` tensor.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ufm._checks import as_label_array, check_int, check_positive, check_real
from ufm.batching import epoch_batcher
from ufm.device import default_device
from ufm.geometry import delta_etf, delta_of
from ufm.solvers.objective import check_has_anchor, check_temperature, normalize_batching

__all__ = ["GDResult", "GDDivergedError", "scl_feature_objective", "solve_gd", "steps_to_of"]

_NONNEG = ("relu", "square", "project")
_OPTIMIZERS = ("lbfgs", "adam", "sgd")
_DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.05, "sgd": 1.0}


class GDDivergedError(FloatingPointError, ValueError):
    """The optimisation produced a non-finite loss or a feature row without direction."""


# ----------------------------------------------------------------------------- the objective
# Both evaluators split each anchor term as  lse_i - (1/tau) z_i . (S_{B, y_i} - z_i) / |P_i|,  with
# S_{B, c} the sum of the batch's class-c features: the positive part costs O(|B| d) (autograd), the
# log-sum-exp part is formed with its gradient in one pass (no n x n matrix kept for backward):
#     d/dz [sum_i w_i lse_i] = (W P) Z / tau + (W P)^T Z / tau,  P_il = softmax_{l in B, l != i}(z_i.z_l/tau).

def _no_shift(inv_t: float, m: int, dtype) -> bool:
    """``|s_il| <= 1/tau`` for unit ``z``: ``exp(s)`` needs no max-shift while ``m e^{1/tau}`` and
    ``e^{-1/tau}`` stay in the dtype's normal range (tau = 0.1: both dtypes; tau = 0.01: float64 only)."""
    info = torch.finfo(dtype)
    return inv_t + math.log(max(m, 1)) < math.log(info.max) - 4.0 and -inv_t > math.log(info.tiny) + 4.0


class _LSEBlock(torch.autograd.Function):
    """``sum_i w_i logsumexp_{l != i}(z_i . z_l / tau)`` over the anchor rows ``rows`` of one batch
    ``z`` (m x d), one block of ``block`` rows at a time."""

    @staticmethod
    def forward(ctx, z, rows, w, inv_t, block):
        m, d = z.shape
        dev = z.device
        grad = torch.zeros_like(z)
        total = torch.zeros((), dtype=z.dtype, device=dev)
        no_shift = _no_shift(inv_t, m, z.dtype)
        zs = z * inv_t
        z1t = torch.cat([z, torch.ones((m, 1), dtype=z.dtype, device=dev)], dim=1).T.contiguous()  # (d + 1, m)
        buf = torch.empty((min(block, rows.numel()), m), dtype=z.dtype, device=dev)
        for start in range(0, rows.numel(), block):
            r = rows[start:start + block]
            wr = w[start:start + block]
            c = r.numel()
            e = torch.mm(zs[r], z.T, out=buf[:c])  # s_il = z_i . z_l / tau
            e[torch.arange(c, device=dev), r] = -math.inf
            shift = 0.0
            if not no_shift:
                shift = e.max(dim=1, keepdim=True).values
                e.sub_(shift)
                shift = shift[:, 0]
            e.exp_()
            # the products are written with the thin (d x .) factor on the left: a faster GEMM shape
            ez = z1t @ e.T  # (d + 1, c): (E z)^T and the row sums in one pass
            tot = ez[d]
            total += (wr * (tot.log() + shift)).sum()
            coef = wr * inv_t / tot  # rows of W P / tau are coef * E
            grad.index_add_(0, r, (ez[:d] * coef).T)
            grad.add_(((coef[:, None] * z[r]).T @ e).T)  # (W P / tau)^T z
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return g * grad, None, None, None, None


class _LSEDense(torch.autograd.Function):
    """The same for a group of padded batches ``zb`` (B x m x d): ``cols`` (B x m x m) marks the
    entries ``l != i`` of real samples in anchor rows, ``w`` (B x m) is ``1/|A_B|`` on anchors, else 0."""

    @staticmethod
    def forward(ctx, zb, cols, w, inv_t):
        s = torch.bmm(zb * inv_t, zb.transpose(1, 2))
        s.masked_fill_(~cols, -math.inf)
        shift = 0.0
        if not _no_shift(inv_t, zb.shape[1], zb.dtype):
            shift = s.max(dim=2, keepdim=True).values.clamp_min(-1e30)  # rows of -inf (non-anchors) stay -inf
            s.sub_(shift)
            shift = shift[..., 0]
        e = s.exp_()
        tot = e.sum(2)
        live = w > 0
        tot = torch.where(live, tot, torch.ones_like(tot))
        total = (w * (tot.log() + shift)).sum()
        coef = (w * inv_t / tot)[..., None]
        grad = coef * torch.bmm(e, zb) + torch.bmm(e.transpose(1, 2), coef * zb)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return g * grad, None, None, None


def _normalise(h: torch.Tensor) -> torch.Tensor:
    """Rows of ``h`` scaled to unit norm; a zero row has no direction and is an error."""
    norms = h.norm(dim=1, keepdim=True)
    if not bool(torch.isfinite(norms).all()):
        raise GDDivergedError("the features became non-finite or their norm overflows (step size too large?)")
    if bool((norms == 0).any()):
        bad = int(torch.nonzero(norms[:, 0] == 0)[0, 0])
        raise GDDivergedError(f"feature row {bad} is zero (all its entries are dead or projected to 0): "
                              "it has no direction")
    return h / norms


class _Plan:
    """A batching prepared on a device: padded groups of small batches, row blocks for large ones.

    Per sample slot it stores the anchor weight ``w = 1/|A_B|`` (0 for non-anchors and padding), the
    positive weight ``w / |P_i|`` and the slot of its (batch, class) sum ``S_{B, y_i}``.
    """

    def __init__(self, y: np.ndarray, batches: list[np.ndarray], device, dense_max: int, block_entries: int):
        big, small = [], []
        for b in batches:
            counts = np.bincount(y[b])
            if not np.any(counts[y[b]] >= 2):
                continue  # no anchor: the batch contributes 0
            (big if b.size > dense_max else small).append(b)
        self.big = [self._big(y, b, device, block_entries) for b in big]
        self.groups = []
        small.sort(key=len)
        group, width = [], 0
        for b in small:
            if group and (len(group) + 1) * max(width, b.size) ** 2 > block_entries:
                self.groups.append(self._dense(y, group, device))
                group, width = [], 0
            group.append(b)
            width = max(width, b.size)
        if group:
            self.groups.append(self._dense(y, group, device))

    @staticmethod
    def _weights(yb: np.ndarray):
        _, inv, counts = np.unique(yb, return_inverse=True, return_counts=True)
        npos = counts[inv] - 1
        anchor = npos > 0
        w = np.where(anchor, 1.0 / max(anchor.sum(), 1), 0.0)
        return inv, int(counts.size), w, np.where(anchor, w / np.maximum(npos, 1), 0.0)

    @staticmethod
    def _dense(y, group, device):
        nb, m = len(group), max(b.size for b in group)
        idx = np.zeros((nb, m), dtype=np.int64)
        valid = np.zeros((nb, m), dtype=bool)
        w = np.zeros((nb, m))
        bpos = np.zeros((nb, m))
        slot = np.zeros((nb, m), dtype=np.int64)
        nslots = 0
        for t, b in enumerate(group):
            inv, kb, wb, pb = _Plan._weights(y[b])
            idx[t, :b.size] = b
            valid[t, :b.size] = True
            w[t, :b.size] = wb
            bpos[t, :b.size] = pb
            slot[t, :b.size] = nslots + inv
            nslots += kb
        slot[~valid] = nslots  # padding sums into a spare slot that no real sample reads
        eye = np.eye(m, dtype=bool)[None]
        cols = valid[:, None, :] & ~eye & (w > 0)[:, :, None]
        t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        return dict(idx=t(idx), valid=t(valid), cols=t(cols), w=t(w), bpos=t(bpos), slot=t(slot),
                    nslots=nslots + 1)

    @staticmethod
    def _big(y, b, device, block_entries):
        inv, kb, w, bpos = _Plan._weights(y[b])
        rows = np.flatnonzero(w > 0)
        t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        return dict(idx=t(b), slot=t(inv), nslots=kb, rows=t(rows), w=t(w[rows]), bpos=t(bpos),
                    block=max(1, block_entries // b.size))

    @property
    def empty(self) -> bool:
        return not self.groups and not self.big

    def __call__(self, z: torch.Tensor, inv_t: float) -> torch.Tensor:
        total = z.new_zeros(())
        dt = z.dtype
        for g in self.groups:
            zb = z[g["idx"]] * g["valid"][..., None].to(dt)  # (B, m, d), padding rows 0
            lse = _LSEDense.apply(zb, g["cols"], g["w"].to(dt), inv_t)
            flat = zb.reshape(-1, zb.shape[2])
            slot = g["slot"].reshape(-1)
            sums = flat.new_zeros((g["nslots"], flat.shape[1])).index_add(0, slot, flat)
            pos = ((sums[slot] - flat) * flat).sum(1)  # z_i . sum_{j in P_i} z_j
            total = total + lse - inv_t * (g["bpos"].reshape(-1).to(dt) * pos).sum()
        for g in self.big:
            zb = z[g["idx"]]
            lse = _LSEBlock.apply(zb, g["rows"], g["w"].to(dt), inv_t, g["block"])
            sums = zb.new_zeros((g["nslots"], zb.shape[1])).index_add(0, g["slot"], zb)
            pos = ((sums[g["slot"]] - zb) * zb).sum(1)
            total = total + lse - inv_t * (g["bpos"].to(dt) * pos).sum()
        return total


def scl_feature_objective(features: torch.Tensor, labels, batches=None, temperature: float = 0.1,
                          dense_max: int = 256, block_entries: int = 1 << 20) -> torch.Tensor:
    """``f(H)`` of the module docstring for features ``H`` (n x d, any float dtype, differentiable).

    ``batches``: ``None`` (one full batch) or a list of index arrays. Each batch contributes the mean
    of its anchors' SupCon terms, so for one batch this is ``SupConLoss(temperature)(H, labels)``
    (computed here in ``H``'s dtype rather than in float32).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or not features.dtype.is_floating_point:
        raise ValueError("features must be a floating-point torch tensor of shape (n, d)")
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features contain NaN or infinite values")
    n = features.shape[0]
    y = as_label_array(labels, n=n)
    inv_t = 1.0 / check_positive(temperature, "temperature")
    plan = _Plan(y, normalize_batching(n, batches), features.device, dense_max, block_entries)
    return plan(_normalise(features), inv_t)


# ----------------------------------------------------------------------------- the solver
@dataclass
class GDResult:
    """Outcome of :func:`solve_gd`.

    features: final ``H`` (n x d, float64 numpy; ``>= 0`` with ReLU).
    objective: ``f(H)`` in float64 on the batching that was minimised (the full batch for a
        stochastic run, i.e. ``batches`` a callable): the convention of ``scl_gram_objective``.
    history: lists ``step``, ``loss`` (the objective the step saw: ``f`` for a fixed batching, the
        mini-batch's mean for a stochastic run), ``delta_of``, ``delta_etf``, ``seconds``; row 0 is
        the start (loss NaN), then every ``record_every`` steps and the last one.
    steps_to_target: first recorded step with ``delta_of < target_delta_of`` (``None`` if never).
    delta_of, delta_etf: of the final features; ``delta_etf`` (and the history's) is None when the labels
        hold a single class: Delta_ETF compares classes (a one-class problem arises inside ``solve_sdp``'s
        components).
    steps: optimiser steps taken (L-BFGS: iterations; each may evaluate ``f`` several times).
    evaluations: evaluations of the objective (and its gradient).
    stop_reason: ``"steps"``, ``"tol"``, ``"target"``, ``"stalled"`` or ``"callback"``.
    """

    features: np.ndarray
    objective: float
    history: dict[str, list] = field(default_factory=dict)
    steps_to_target: int | None = None
    seconds: float = 0.0
    device: str = "cpu"
    steps: int = 0
    evaluations: int = 0
    stop_reason: str = "steps"
    delta_of: float = float("nan")
    delta_etf: float | None = float("nan")


# ----------------------------------------------------------------------------- checking the arguments
def _check_problem(labels, dim, relu: bool, temperature) -> tuple[np.ndarray, int, float]:
    """Check the problem of :func:`solve_gd`: labels, feature dimension, temperature.

    Returns:
        ``y`` (n,) the labels, ``k`` the number of classes, ``1 / tau``.

    Raises:
        ValueError: fewer than 2 samples, ``dim`` not a positive integer (or ``< k`` with ReLU),
        a bad temperature.
    """
    y = as_label_array(labels)
    n = y.size
    if n < 2:
        raise ValueError(f"need at least 2 samples, got {n}")
    k = np.unique(y).size
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if relu and dim < k:
        raise ValueError(f"dim={dim} < k={k} classes: with ReLU the minimiser is an orthogonal frame, "
                         f"which needs d >= k non-negative orthogonal directions")
    return y, k, 1.0 / check_temperature(temperature)


def _check_sizes(seed, target_delta_of, history_size, dense_max, block_entries) -> None:
    """The remaining scalars of :func:`solve_gd`: TypeError / ValueError naming the argument and the value."""
    check_int(seed, "seed")
    if target_delta_of is not None:
        check_positive(target_delta_of, "target_delta_of")
    check_int(history_size, "history_size", low=1)
    check_int(dense_max, "dense_max", low=0)
    check_int(block_entries, "block_entries", low=1)


def _check_nonneg(nonneg: str | None, relu: bool, optimizer: str) -> str:
    """The parametrisation of ``H >= 0``: the given one, or the optimizer's default (module docstring).

    Raises:
        ValueError: an unknown one, or one other than ``"square"`` with L-BFGS and ReLU.
    """
    if nonneg is None:
        nonneg = "square" if optimizer == "lbfgs" else "relu"
    if nonneg not in _NONNEG:
        raise ValueError(f"unknown nonneg {nonneg!r}: use one of {_NONNEG}")
    if relu and nonneg != "square" and optimizer == "lbfgs":
        raise ValueError(f"nonneg={nonneg!r} is not supported with L-BFGS (a projection breaks its line search, "
                         "and long line-search steps kill ReLU units): use nonneg='square', or adam/sgd")
    return nonneg


@dataclass(frozen=True)
class _Method:
    """The checked optimisation settings of :func:`solve_gd`, defaults filled in.

    ``batches``: ``None`` (full batch), a list of index arrays, or a callable ``epoch -> batches``.
    """

    optimizer: str
    nonneg: str
    lr: float
    batches: object
    tol: float

    @property
    def stochastic(self) -> bool:
        return callable(self.batches)


def _check_method(optimizer, nonneg, relu: bool, steps, record_every, dtype, lr, batches, tol) -> _Method:
    """Check the optimisation arguments of :func:`solve_gd` (in the order its errors are documented).

    Returns:
        the settings, with the default parametrisation, ``lr`` and ``tol`` of the optimizer and
        ``batches="full"`` read as ``None``.

    Raises:
        ValueError: the first bad argument.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    check_int(record_every, "record_every", low=1)
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {_OPTIMIZERS}")
    nonneg = _check_nonneg(nonneg, relu, optimizer)
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    lr = _DEFAULT_LR[optimizer] if lr is None else lr
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if callable(batches) and optimizer == "lbfgs":
        raise ValueError("L-BFGS needs a fixed objective: pass a fixed batching, or use adam/sgd with a callable")
    if isinstance(batches, str):
        if batches != "full":
            raise ValueError(f"batches must be None, 'full', a list of index arrays or a callable, got {batches!r}")
        batches = None
    if tol is None:
        tol = 1e-13 if optimizer == "lbfgs" else 0.0
    else:
        check_real(tol, "tol", low=0.0)  # 0: no early stop
    return _Method(optimizer, nonneg, lr, batches, tol)


# ----------------------------------------------------------------------------- the optimiser
def _init(n: int, dim: int, relu: bool, nonneg: str, seed: int, dtype, device, init=None) -> torch.Tensor:
    """The free parameter ``W`` (n x d), a leaf that requires grad.

    Args:
        init: ``None`` for a seeded ``N(0, 1)`` start (``|N(0, 1)|`` for relu/project, drawn in
            float64 on the CPU whatever the dtype and device, so that runs are comparable), or
            starting features ``H`` (n x d), mapped back to ``W`` (``W = sqrt(H)`` for ``square``).

    Raises:
        ValueError: ``init`` of the wrong shape, non-finite, negative with ReLU or with a zero row.
    """
    if init is None:
        gen = torch.Generator().manual_seed(seed)
        w = torch.randn(n, dim, generator=gen, dtype=torch.float64)
        if relu and nonneg in ("relu", "project"):
            w = w.abs()  # start inside the orthant: no entry starts dead
    else:
        h = np.asarray(init.detach().cpu() if isinstance(init, torch.Tensor) else init, dtype=np.float64)
        if h.shape != (n, dim):
            raise ValueError(f"init must have shape (n, dim) = {(n, dim)}, got {h.shape}")
        if not np.all(np.isfinite(h)):
            raise ValueError("init contains NaN or infinite values")
        if relu and h.min() < 0:
            raise ValueError("init must be non-negative with relu=True")
        if np.any(np.linalg.norm(h, axis=1) == 0):
            raise ValueError(f"init row {int(np.flatnonzero(np.linalg.norm(h, axis=1) == 0)[0])} is zero: "
                             "it has no direction")
        w = torch.tensor(np.sqrt(h) if relu and nonneg == "square" else h)
    return w.to(dtype=dtype, device=device).requires_grad_(True)


@dataclass(frozen=True)
class _Parametrisation:
    """The map ``W -> H`` from the free parameter to the features (module docstring)."""

    relu: bool
    nonneg: str

    def features(self, w: torch.Tensor) -> torch.Tensor:
        """``H`` (n x d): ``W``, ``relu(W)`` or ``W * W``."""
        if not self.relu or self.nonneg == "project":
            return w
        if self.nonneg == "relu":
            return torch.relu(w)
        return w * w

    def project_(self, w: torch.Tensor) -> None:
        """After a step, ``W <- max(W, 0)`` in place for projected gradient; nothing otherwise."""
        if self.relu and self.nonneg == "project":
            with torch.no_grad():
                w.clamp_(min=0.0)


def _torch_optimizer(w: torch.Tensor, optimizer: str, lr: float, history_size: int) -> torch.optim.Optimizer:
    """The torch optimiser of ``W``.

    L-BFGS takes one iteration per ``step()`` (strong Wolfe line search, at most 26 evaluations) and
    has its own tolerances switched off: when to stop is the :class:`StopRule`'s decision.
    """
    if optimizer == "lbfgs":
        return torch.optim.LBFGS([w], lr=lr, max_iter=1, max_eval=26, history_size=history_size,
                                 tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
    if optimizer == "adam":
        return torch.optim.Adam([w], lr=lr)
    return torch.optim.SGD([w], lr=lr)


class _FeatureOptimizer:
    """Takes the steps on the free parameter ``W`` (n x d) of the features ``H = param(W)``.

    It counts the evaluations of ``f`` and, for L-BFGS, remembers the last three (point, loss,
    gradient): the line search ends at a point it has evaluated, and the loss reported for the step
    is read back from there instead of being computed again.
    """

    def __init__(self, w: torch.Tensor, param: _Parametrisation, inv_t: float, optimizer: str, lr: float,
                 history_size: int):
        self.w = w
        self.param = param
        self.inv_t = inv_t
        self.lbfgs = optimizer == "lbfgs"
        self.opt = _torch_optimizer(w, optimizer, lr, history_size)
        self.evaluations = 0
        self.step_index = 0  # the step being taken, named by the errors
        self._memo: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def features(self) -> torch.Tensor:
        """The current ``H`` (n x d), detached."""
        with torch.no_grad():
            return self.param.features(self.w).detach()

    def evaluate(self, plan: _Plan) -> torch.Tensor:
        """``f`` of ``plan`` at the current ``W``, its gradient left in ``W.grad``.

        Returns:
            the loss, a detached 0-d tensor.

        Raises:
            GDDivergedError: non-finite features, loss or gradient, or a zero feature row.
        """
        for wc, loss_c, grad_c in self._memo:  # L-BFGS re-evaluates the accepted point of its line search
            if torch.equal(wc, self.w.detach()):
                self.w.grad = grad_c.clone()
                return loss_c
        self.opt.zero_grad(set_to_none=True)
        self.evaluations += 1
        if plan.empty:  # a mini-batch without an anchor: loss 0, gradient 0
            self.w.grad = torch.zeros_like(self.w)
            return torch.zeros((), dtype=self.w.dtype, device=self.w.device)
        loss = self._backward(plan)
        if self.lbfgs:
            self._memo.append((self.w.detach().clone(), loss.detach(), self.w.grad.clone()))
            del self._memo[:-3]
        return loss.detach()

    def _backward(self, plan: _Plan) -> torch.Tensor:
        """``f`` of ``plan`` (attached, 0-d) after ``backward()`` into ``W.grad``; checked finite."""
        step = self.step_index
        try:
            z = _normalise(self.param.features(self.w))  # (n, d), unit rows
        except GDDivergedError as e:
            raise GDDivergedError(f"at step {step}: {e}") from None
        loss = plan(z, self.inv_t)
        if not bool(torch.isfinite(loss)):
            raise GDDivergedError(f"the objective became non-finite ({float(loss)}) at step {step}")
        loss.backward()
        if not bool(torch.isfinite(self.w.grad).all()):
            raise GDDivergedError(f"the gradient became non-finite at step {step}")
        return loss

    def step(self, step: int, plan: _Plan) -> tuple[float, bool]:
        """Take step number ``step`` on the objective of ``plan``.

        Returns:
            the loss the step saw (L-BFGS: at the point it accepted; Adam/SGD: before the step),
            and whether L-BFGS stalled (its line search could not move ``W``).
        """
        self.step_index = step
        stalled = False
        if self.lbfgs:
            before = self.w.detach().clone()
            self.opt.step(lambda: self.evaluate(plan))
            loss = self.evaluate(plan)  # at the accepted point (from the memo)
            stalled = torch.equal(before, self.w.detach())
        else:
            loss = self.evaluate(plan)  # at the point before the step
            self.opt.step()
        self.param.project_(self.w)
        return float(loss), stalled


def _stochastic_batches(batches, y, first: list[np.ndarray]):
    """Yield the batches of ``first`` (``batches(0)``, already checked), then of ``batches(1)``, ... forever."""
    bl, epoch = first, 0
    while True:
        for b in bl:
            yield b
        epoch += 1
        bl = normalize_batching(y.size, batches(epoch))


def _plan_source(y: np.ndarray, batches, device, dense_max: int, block_entries: int) -> Callable[[], _Plan]:
    """The objective of each step, as a function called once per step.

    Args:
        batches: ``None`` or a list of index arrays (a fixed batching: the same plan every step), or
            a callable ``epoch -> batches`` (a new one-batch plan per step, epoch after epoch).

    Raises:
        ValueError: a fixed batching in which no batch has an anchor (``f = 0`` identically), or a stochastic
            one whose epoch 0 has none (e.g. ``batch_size=1``: every step would be a no-op and the random
            start would come back as the answer).
    """
    if callable(batches):
        first = normalize_batching(y.size, batches(0))
        check_has_anchor(y, first, "epoch 0 of the batching")
        stream = _stochastic_batches(batches, y, first)
        return lambda: _Plan(y, [next(stream)], device, dense_max, block_entries)
    fixed = normalize_batching(y.size, batches)
    check_has_anchor(y, fixed)
    plan = _Plan(y, fixed, device, dense_max, block_entries)
    return lambda: plan


# ----------------------------------------------------------------------------- when to stop
@dataclass(frozen=True)
class StopRule:
    """When a run of :func:`solve_gd` ends, and why.

    Attributes:
        steps: the budget of steps (>= 1).
        tol: stop once two steps in a row each lower the loss by at most ``tol * max(1, |f|)``;
            ``<= 0`` (or NaN) never (stochastic runs: their losses are of different mini-batches).
        stop_at_target: stop at the first recorded step with ``Delta_OF`` below the target.
        record_every: record the history (and call the callback) every this many steps.
    """

    steps: int
    tol: float = 0.0
    stop_at_target: bool = False
    record_every: int = 1

    def small_moves(self, count: int, prev: float | None, loss: float) -> int:
        """How many steps in a row, this one included, lowered the loss by at most the tolerance.

        Args:
            count: the count after the previous step; prev: its loss (``None`` before the first).
        """
        if not self.tol > 0:
            return 0
        small = prev is not None and prev - loss <= self.tol * max(1.0, abs(loss))
        return count + 1 if small else 0

    def must_record(self, step: int, stalled: bool, small_moves: int) -> bool:
        """Record every ``record_every`` steps and at the last one, whatever ends the run there."""
        return step % self.record_every == 0 or step == self.steps or stalled or small_moves >= 2

    def reason(self, step: int, reached_target: bool, stalled: bool = False, small_moves: int = 0,
               called_off: bool = False) -> str | None:
        """Why the run stops after ``step`` steps (``None``: it goes on).

        The causes are checked in this order: the callback asked (``"callback"``), L-BFGS stalled,
        the tolerance, the target reached (also at step 0), the budget spent (``"steps"``).
        """
        if called_off:
            return "callback"
        if stalled:
            return "stalled"
        if small_moves >= 2:
            return "tol"
        if self.stop_at_target and reached_target:
            return "target"
        return "steps" if step >= self.steps else None


# ----------------------------------------------------------------------------- the history
def _geometry(h: torch.Tensor, y: np.ndarray, k: int, step: int) -> tuple[np.ndarray, float, float]:
    """The features ``h`` (n x d) as float64 numpy, with ``Delta_OF`` and ``Delta_ETF`` (None if k = 1: undefined).

    Raises:
        GDDivergedError: non-finite features or a zero row, naming ``step``.
    """
    h = h.to(torch.float64).cpu().numpy()
    if not np.all(np.isfinite(np.linalg.norm(h, axis=1))):
        raise GDDivergedError(f"at step {step}: the features became non-finite or their norm "
                              "overflows (step size too large?)")
    try:
        return h, delta_of(h, y), (delta_etf(h, y) if k >= 2 else None)
    except ValueError as e:
        raise GDDivergedError(f"at step {step}: {e}") from None


class _Recorder:
    """The history of a run (:class:`GDResult`) and its first recorded step below the target.

    The clock starts when the recorder is made.
    """

    def __init__(self, y: np.ndarray, k: int, target_delta_of: float | None):
        self.y, self.k, self.target = y, k, target_delta_of
        self.history: dict[str, list] = {"step": [], "loss": [], "delta_of": [], "delta_etf": [], "seconds": []}
        self.steps_to_target: int | None = None
        self.t0 = time.perf_counter()

    def record(self, step: int, loss: float, h: torch.Tensor) -> None:
        """Append step ``step`` with its ``loss`` and the geometry of its features ``h`` (n x d)."""
        _, d_of, d_etf = _geometry(h, self.y, self.k, step)
        for name, val in zip(self.history, (step, loss, d_of, d_etf, time.perf_counter() - self.t0)):
            self.history[name].append(val)
        if self.target is not None and self.steps_to_target is None and d_of < self.target:
            self.steps_to_target = step


# ----------------------------------------------------------------------------- the solver
def _run(optimiser: _FeatureOptimizer, next_plan: Callable[[], _Plan], rule: StopRule, recorder: _Recorder,
         callback: Callable | None) -> tuple[int, str]:
    """Take steps until ``rule`` stops the run, recording the start and the steps it asks for.

    Returns:
        the number of steps taken and the stop reason.
    """
    recorder.record(0, float("nan"), optimiser.features())
    step, small, prev = 0, 0, None
    reason = rule.reason(0, recorder.steps_to_target is not None)  # the start may be at the target
    while reason is None:
        step += 1
        loss, stalled = optimiser.step(step, next_plan())
        small, prev = rule.small_moves(small, prev, loss), loss
        called_off = False
        if rule.must_record(step, stalled, small):
            recorder.record(step, loss, optimiser.features())
            called_off = callback is not None and bool(callback(step, optimiser.features(), loss))
        reason = rule.reason(step, recorder.steps_to_target is not None, stalled, small, called_off)
    return step, reason


def _float64_objective(h: np.ndarray, y: np.ndarray, batches, temperature: float, device, dense_max: int,
                       block_entries: int) -> float:
    """``f(H)`` of the final features ``h`` (n x d) in float64, whatever dtype the run used."""
    with torch.no_grad():
        h64 = torch.as_tensor(h, device=device)
        return float(scl_feature_objective(h64, y, batches, temperature, dense_max, block_entries))


def solve_gd(
    labels,
    dim: int,
    temperature: float = 0.1,
    relu: bool = True,
    nonneg: str | None = None,
    batches=None,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    steps: int = 500,
    seed: int = 0,
    device=None,
    dtype: torch.dtype = torch.float64,
    record_every: int = 1,
    tol: float | None = None,
    target_delta_of: float | None = None,
    stop_at_target: bool = False,
    callback: Callable | None = None,
    init=None,
    history_size: int = 50,
    dense_max: int = 256,
    block_entries: int = 1 << 20,
) -> GDResult:
    """Minimise ``f(H)`` (module docstring) over free features from a seeded random start.

    Args:
        labels: (n,) integer class labels.
        dim: feature dimension ``d`` (``d >= k`` with ``relu``: the OF needs ``k`` orthogonal
            non-negative directions).
        temperature: ``tau`` in ``[TEMPERATURE_MIN, inf)`` = ``[1e-6, inf)`` (``ufm.solvers.objective``).
        relu: keep ``H >= 0`` (the UFM+); ``nonneg`` says how: ``"square"`` (default with L-BFGS),
            ``"relu"`` (default with Adam/SGD) or ``"project"`` (module docstring).
        batches: ``None`` / ``"full"`` (one full batch), a list of index arrays (a fixed batching:
            every step uses the gradient of the whole sum), or a callable ``epoch -> list of
            batches`` (stochastic: one step per batch, a new batching per epoch; Adam/SGD only).
            Some batch must hold an anchor (two samples of one class): of the fixed batching, or of
            epoch 0 of a callable one.
        optimizer: ``"lbfgs"`` (``torch.optim.LBFGS``, strong Wolfe line search, one iteration per
            step), ``"adam"`` or ``"sgd"``. Default ``lr``: 1 for L-BFGS and SGD, 0.05 for Adam.
        steps: maximal number of steps (>= 1).
        tol: stop when a step lowers the objective by less than ``tol * max(1, |f|)`` twice in a row
            (fixed batchings only). Default: ``1e-13`` for L-BFGS, no early stop for Adam/SGD.
            L-BFGS also stops when a line search cannot move (``"stalled"``).
        target_delta_of: record ``steps_to_target``, the first recorded step with ``Delta_OF`` below
            it (``Delta_OF`` is computed every ``record_every`` steps); ``stop_at_target`` ends the
            run there.
        callback: ``callback(step, H, loss)`` after every recorded step (``H`` a detached tensor);
            returning ``True`` stops the run.
        init: starting features ``H`` (n x d) instead of the seeded random start, e.g. the result of
            a float32 run continued in float64.
        dtype: float64 (default) or float32: about twice as fast at large ``n``, but the objective
            then resolves only ~1e-7 relative changes, so L-BFGS stalls near ``Delta_OF ~ 1e-2``
            (objective ~3e-6 above the optimum at n = 200 to 2000); continue in float64 (``init``)
            to reach the OF.

    Raises:
        TypeError: a temperature or device of the wrong type (``'abc'``, ``0``).
        ValueError: bad labels, ``dim``, ``steps``, temperature, device (``"gpu"``: ``ufm.device``),
        optimizer, parametrisation or batching (one without an anchor, e.g. mini-batches of size 1);
        GDDivergedError (a ValueError): a non-finite loss or a zero feature row, with the step.
    """
    y, k, inv_t = _check_problem(labels, dim, relu, temperature)
    method = _check_method(optimizer, nonneg, relu, steps, record_every, dtype, lr, batches, tol)
    _check_sizes(seed, target_delta_of, history_size, dense_max, block_entries)
    dev = default_device(device)
    w = _init(y.size, dim, relu, method.nonneg, int(seed), dtype, dev, init)
    optimiser = _FeatureOptimizer(w, _Parametrisation(relu, method.nonneg), inv_t, optimizer, method.lr,
                                  history_size)
    next_plan = _plan_source(y, method.batches, dev, dense_max, block_entries)
    # the tolerance compares losses of consecutive steps: meaningless across mini-batches
    rule = StopRule(steps, 0.0 if method.stochastic else method.tol, stop_at_target, record_every)
    recorder = _Recorder(y, k, target_delta_of)
    taken, reason = _run(optimiser, next_plan, rule, recorder, callback)
    seconds = time.perf_counter() - recorder.t0
    h, d_of, d_etf = _geometry(optimiser.features(), y, k, taken)
    # a stochastic run is scored on the full batch
    objective = _float64_objective(h, y, None if method.stochastic else method.batches, temperature, dev,
                                   dense_max, block_entries)
    return GDResult(features=h, objective=objective, history=recorder.history,
                    steps_to_target=recorder.steps_to_target, seconds=seconds, device=str(dev), steps=int(taken),
                    evaluations=optimiser.evaluations, stop_reason=reason, delta_of=d_of, delta_etf=d_etf)


def steps_to_of(
    labels,
    dim: int,
    batch_size: int,
    binding: bool,
    seed: int,
    temperature: float = 0.1,
    threshold: float = 1e-3,
    max_steps: int = 20000,
    lr: float = 0.05,
    relu: bool = True,
    nonneg: str = "relu",
    drop_last: bool = False,
    check_every: int = 1,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> int | None:
    """Adam steps (one per mini-batch) until ``Delta_OF < threshold``, or ``None`` within ``max_steps``.

    Epoch ``e`` is ``random_batches(labels, batch_size, epoch_seed(seed, e))``; with ``binding`` the
    ``k`` binding examples ``binding_examples(labels, seed)`` are appended to every batch. The
    features start from the seeded initialisation of :func:`solve_gd` (seed ``seed``), so binding
    and no binding with the same seed start from the same point. ``Delta_OF`` is checked every
    ``check_every`` steps (the count is a multiple of it).
    """
    y = as_label_array(labels)
    threshold = check_positive(threshold, "threshold")
    # bool(): epoch_batcher reads an array as explicit binding indices; here binding is a yes/no
    epoch_batches = epoch_batcher(y, batch_size, seed, binding=bool(binding), drop_last=drop_last)
    epoch_batches(0)  # validates batch_size (and drop_last) before the run starts
    res = solve_gd(y, dim, temperature=temperature, relu=relu, nonneg=nonneg, batches=epoch_batches,
                   optimizer="adam", lr=lr, steps=max_steps, seed=seed, device=device, dtype=dtype,
                   record_every=check_every, target_delta_of=threshold, stop_at_target=True)
    return res.steps_to_target
