"""One training loop for every registered loss.

Per epoch e (0-based):

1. ``loss.on_epoch_start(e)`` (the loss's hooks: :class:`ufm.losses.HarnessLoss`);
2. the batches of ``BindingBatchSampler(labels, batch_size, seed, binding).batches(e)`` (a seeded
   shuffle per epoch; with binding, one fixed example per class appended to every batch); under
   ``torchrun`` each rank takes ``batch[rank::world]``;
3. for each batch: ``loss.views`` augmented views (augmentation drawn from a CPU generator seeded by
   (seed, e, rank)), one forward pass of the stacked views, the outputs reshaped to (B, V, ...) when
   V > 1 (views that are exact copies: one pass of the batch, tiled, see :func:`shares_views`) and
   gathered over ranks with gradients, ``obj = loss.harness_objective(out, labels, model)``,
   SGD step (under ``amp``: float16 autocast + grad scaler on CUDA for fp16 / true, bfloat16 autocast
   without a scaler on CUDA or CPU for bf16; :func:`ufm.train.config.amp_dtype`);
4. the learning rate of epoch e is ``lr * warm(e) * lr_gamma^(#milestones <= e)``;
5. evaluation every ``eval_every`` epochs and at the last (see :mod:`ufm.train.metrics`), then
   ``loss.on_epoch_end(e, row)`` whose returned values join the epoch's row;
6. the row is appended to ``out_dir/metrics.jsonl`` and a checkpoint (model, optimizer, scheduler,
   loss state, grad scaler, RNG states, sampler seeds, metrics so far) is written atomically to
   ``out_dir/checkpoint.pt`` (temporary file + ``os.replace``).

``train(config, out_dir, resume=True)`` continues from ``out_dir/checkpoint.pt`` when it exists. Every
random stream is either restored from the checkpoint or re-derived from (seed, epoch), so on CPU a run
interrupted after any epoch and resumed gives exactly the metrics of an uninterrupted run.

:func:`train` orchestrates (placement, resume, building, the record, checkpoints); one epoch is
:func:`run_epoch` (hooks, :func:`train_one_epoch`, evaluation). The run folder's files are handled by
:mod:`ufm.train.checkpoint`.
"""

from __future__ import annotations

import inspect
import json
import platform
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ufm._checks import check_int
from ufm.batching import BindingBatchSampler
from ufm.data import BatchAugment, load_dataset, make_imbalanced
from ufm.data.imbalance import minority_classes
from ufm.device import default_device
from ufm.losses import get_loss
from ufm.losses.base import ModelOutput
from ufm.models import build_model, model_accepts
from ufm.train import distributed as ddp
from ufm.train.checkpoint import (
    CHECKPOINT,
    METRICS_FILE,
    RUN_FILE,
    load_checkpoint,
    prepare_run_folder,
    read_metrics,
    remove_stale_temporaries,
    save_checkpoint,
    write_jsonl,
)
from ufm.train.config import RESUME_FREE, TrainConfig, amp_dtype
from ufm.train.metrics import accuracy_metrics, evaluate_geometry, extract

__all__ = ["train", "train_one_epoch", "run_epoch", "BatchObjective", "lr_factor", "METRIC_KEYS", "CHECKPOINT",
           "METRICS_FILE", "read_metrics", "build_run"]

METRIC_KEYS = ("epoch", "lr", "train_loss", "train_acc", "test_acc", "ncc_acc", "delta_of", "delta_etf", "nc1", "seconds")
_EVAL_KEYS = ("train_acc", "test_acc", "ncc_acc", "delta_of", "delta_etf", "nc1")


def lr_factor(epoch: int, milestones, gamma: float, warmup: int = 0) -> float:
    """Learning-rate multiplier of epoch ``epoch``: ``(e + 1)/(warmup + 1)`` during warm-up, times
    ``gamma`` per milestone already reached (``m <= e``, as ``torch.optim.lr_scheduler.MultiStepLR``)."""
    warm = (epoch + 1) / (warmup + 1) if epoch < warmup else 1.0
    return warm * gamma ** sum(1 for m in milestones if m <= epoch)


def _seed_from(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def _clean(v):
    """JSON-friendly scalar: numpy -> python, non-finite float -> None."""
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _in_graph(root: torch.Tensor, t: torch.Tensor) -> bool:
    """Whether tensor ``t`` is an input of the autograd graph of ``root``."""
    target = t.grad_fn if t is not None else None
    if target is None or root.grad_fn is None:
        return False
    seen, stack = set(), [root.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        if fn is target:
            return True
        seen.add(fn)
        stack.extend(f for f, _ in fn.next_functions)
    return False


def _split_views(out: ModelOutput, views: int) -> ModelOutput:
    """(V * B, ...) view-major outputs -> (B, V, ...)."""
    if views == 1:
        return out

    def split(t):
        if t is None:
            return None
        return t.reshape((views, t.shape[0] // views) + tuple(t.shape[1:])).transpose(0, 1)

    return ModelOutput(split(out.features), split(out.logits), {k: split(v) for k, v in (out.activations or {}).items()})


def _tile_views(out: ModelOutput, views: int) -> ModelOutput:
    """(B, ...) outputs of one batch -> (B, V, ...): the V identical views of :func:`_split_views`."""
    def tile(t):
        return None if t is None else torch.stack([t] * views, dim=1)

    return ModelOutput(tile(out.features), tile(out.logits), {k: tile(v) for k, v in (out.activations or {}).items()})


def _random_in_training(model: nn.Module) -> bool:
    """Whether a training-mode forward pass draws random numbers (dropout with p > 0, RReLU)."""
    return any((isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0) or isinstance(m, nn.RReLU)
               for m in model.modules())


def shares_views(run) -> bool:
    """Whether training computes the loss's views by one forward pass (config ``shared_views``): the views are
    exact copies (several views, an identity augmentation) and the model draws no randomness in training.

    Exact in exact arithmetic: with V identical copies stacked, BatchNorm's batch mean and (biased) variance
    are those of one copy, so the network maps the stack to V copies of its output for every weight, and the
    objective and its gradient are those of the one pass tiled. What differs: the running variance's unbiased
    correction n / (n - 1) counts B rows, not V * B, and float rounding."""
    return bool(run.cfg.shared_views and run.views > 1 and run.augment.identity and not _random_in_training(run.model))


def _fill_kwargs(cls, kwargs: dict, num_classes: int, feature_dim: int) -> dict:
    """Fill ``num_classes`` / ``feature_dim`` / ``dim`` when the loss takes them and the config does not set them."""
    kw = dict(kwargs)
    params = inspect.signature(cls.__init__).parameters
    if "num_classes" in params and "num_classes" not in kw and kw.get("centroids") is None:
        kw["num_classes"] = num_classes
    if "feature_dim" in params and "feature_dim" not in kw:
        kw["feature_dim"] = feature_dim
    if "dim" in params and "dim" not in kw and kw.get("centroids") is None:
        kw["dim"] = feature_dim
    return kw


class BatchObjective(nn.Module):
    """``forward(x, y) -> objective`` of one batch: model on the stacked views, outputs reshaped to
    (B, V, ...), gathered over ranks with gradients, ``loss.harness_objective``.

    Training wraps THIS module (model and loss together) in DistributedDataParallel, so DDP sees the
    objective as the forward's output: parameters the objective does not use (e.g. the classifier under
    SupCon) are found unused instead of stalling the gradient all-reduce, and the loss's own parameters
    and buffers are synchronised with the model's.

    With ``detect=True`` it also returns the scoring rule the loss implies: "scores" when
    ``loss.harness_predict`` gives class scores, "logits" when the objective depends on the logits,
    else "ncc" (nearest class centre).
    """

    def __init__(self, model: nn.Module, loss: nn.Module, views: int = 1):
        super().__init__()
        self.model, self.loss, self.views = model, loss, int(views)

    def forward(self, x: torch.Tensor, y: torch.Tensor, detect: bool = False, shared: bool = False):
        # shared: x is one copy of the batch, its outputs tiled into the views (see shares_views)
        o = (_tile_views if shared else _split_views)(self.model(x), self.views)
        if not _finite_output(o):  # before the loss, whose own check would not say why
            raise DivergedError("the model's features or logits are NaN or infinite")
        og, yg = ddp.gather_output(o, y)
        obj = self.loss.harness_objective(og, yg, self.model)
        scoring = None
        if detect:
            with torch.no_grad():
                sc = self.loss.harness_predict(og, self.model)
            uses_logits = og.logits is not None and _in_graph(obj, og.logits)
            scoring = "scores" if sc is not None else ("logits" if uses_logits else "ncc")
        return obj, scoring


class _Run:
    """Everything built from a config (data, model, loss, optimizer, ...), see :func:`build_run`."""


def build_run(cfg: TrainConfig, device: torch.device | None = None) -> _Run:
    """Data, model, loss, optimizer, scheduler and sampler of a config (no training): used by
    :func:`train` and by benchmarks / notebooks that need the same objects."""
    cfg.validate()
    run = _Run()
    run.cfg = cfg
    run.device = device if device is not None else default_device(None if cfg.device == "auto" else cfg.device)
    train_full = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, cfg.val_fraction)
    run.test = load_dataset(cfg.dataset, "test", cfg.data_root, cfg.download)
    run.val = load_dataset(cfg.dataset, "val", cfg.data_root, False, cfg.val_fraction) if cfg.val_fraction > 0 else None
    if cfg.imbalance != "none" or cfg.n_per_class is not None:
        run.train, counts = make_imbalanced(train_full, cfg.imbalance, cfg.ratio, cfg.seed, cfg.n_per_class)
    else:
        run.train, counts = train_full, train_full.class_counts()
    run.counts = np.asarray(counts)
    run.minority = minority_classes(run.counts) if cfg.imbalance != "none" else np.zeros(0, dtype=np.int64)
    spec = run.train.spec
    run.spec = spec
    k = spec.num_classes
    mkw = dict(cfg.model_kwargs)
    if "input_shape" not in mkw and model_accepts(cfg.model, "input_shape"):
        mkw["input_shape"] = spec.input_shape
    model = build_model(cfg.model, k, in_channels=spec.in_channels, feature_dim=cfg.feature_dim,
                        final_relu=cfg.final_relu, seed=cfg.seed, **mkw)
    run.model = model.to(run.device)
    loss_cls = get_loss(cfg.loss)
    lkw = _fill_kwargs(loss_cls, cfg.loss_kwargs, k, getattr(model, "feature_dim", None))
    try:
        loss = loss_cls(**lkw)
    except TypeError as e:
        raise ValueError(f"loss {cfg.loss!r} does not take the options {sorted(lkw)}: {e}") from None
    run.loss = loss.to(run.device)
    run.views = int(getattr(loss, "views", 1))
    if run.views < 1:
        raise ValueError(f"loss {cfg.loss!r} asks for views={run.views}; it must be >= 1")
    params = [p for p in model.parameters() if p.requires_grad] + [p for p in loss.parameters() if p.requires_grad]
    run.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                    nesterov=cfg.nesterov)
    milestones, gamma, warmup = list(cfg.milestones), cfg.lr_gamma, cfg.warmup
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda e: lr_factor(e, milestones, gamma, warmup))
    run.amp_dtype = amp_dtype(cfg.amp, run.device.type)
    run.use_amp = run.amp_dtype is not None
    # the scaler only for float16 (its gradients underflow); bfloat16 has float32's range and needs none
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.amp_dtype == torch.float16)
    run.sampler = BindingBatchSampler(run.train.labels, cfg.batch_size, seed=cfg.seed, binding=cfg.binding)
    run.augment = BatchAugment(spec, enabled=cfg.augment)
    run.train_x, run.train_y = run.train.x.to(run.device), run.train.y.to(run.device)
    return run


def _rng_state(device: torch.device) -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state_all(st["cuda"])


def _config_diff(saved: dict, cfg: TrainConfig) -> list[str]:
    """Fields that differ and change results; a field the saved config predates counts as its default."""
    now, default = cfg.to_dict(), TrainConfig().to_dict()
    saved = {**default, **saved}
    return [f"{k}: saved {saved.get(k)!r} vs now {now[k]!r}" for k in now if k not in RESUME_FREE and saved.get(k) != now[k]]


@dataclass
class _Place:
    """Where this process trains: device, rank r of w, and whether it is the main (writing) rank."""

    device: torch.device
    rank: int
    world: int
    distributed: bool

    @property
    def main(self) -> bool:
        return self.rank == 0


def _place(cfg: TrainConfig) -> _Place:
    device = default_device(None if cfg.device == "auto" else cfg.device)
    distributed = ddp.init_from_env(device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    return _Place(device, ddp.rank(), ddp.world_size(), distributed)


def _resume_state(out: Path, cfg: TrainConfig, resume: bool) -> dict | None:
    """The checkpoint to continue from (checked against ``cfg``), or None to start afresh."""
    path = out / CHECKPOINT
    if not (resume and path.exists()):
        return None
    state = load_checkpoint(path)
    diff = _config_diff(state["config"], cfg)
    if diff:
        raise ValueError(f"{path} holds a run with another config ({'; '.join(diff)}); "
                         "use another output folder or --restart (resume=False)")
    return state


def _build(cfg: TrainConfig, place: _Place):
    """Seed every generator, build the run (rank 0 downloads first) and wrap model + loss for DDP."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    if place.distributed and cfg.download and not place.main:
        torch.distributed.barrier()  # rank 0 downloads first
    run = build_run(cfg, place.device)
    if place.distributed and cfg.download and place.main:
        torch.distributed.barrier()
    if place.distributed and cfg.sync_bn:
        run.model = nn.SyncBatchNorm.convert_sync_batchnorm(run.model)
    step_fn = BatchObjective(run.model, run.loss, run.views)
    if place.distributed:
        step_fn = nn.parallel.DistributedDataParallel(
            step_fn, device_ids=[place.device.index] if place.device.type == "cuda" else None,
            find_unused_parameters=True)
    return run, step_fn


def _restore(run, state: dict | None, cfg: TrainConfig, place: _Place) -> tuple[list[dict], str | None, int]:
    """Load a checkpoint into the run; returns (metrics so far, scoring rule, first epoch to train)."""
    scoring = None if cfg.scoring == "auto" else cfg.scoring
    if state is None:
        return [], scoring, 0
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.loss.load_state_dict(state["loss"])
    run.scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"], place.device)
    return list(state["metrics"]), state["scoring"] or scoring, state["epoch"] + 1


def _write_run_record(out: Path, cfg: TrainConfig, run, place: _Place) -> dict:
    info = {"config": cfg.to_dict(), "class_counts": run.counts.tolist(), "minority_classes": run.minority.tolist(),
            "n_train": len(run.train), "n_test": len(run.test), "dataset": run.spec.description,
            "parameters": sum(p.numel() for p in run.model.parameters()), "views": run.views,
            "views_shared": shares_views(run), "device": str(place.device), "world_size": place.world, "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads()}
    (out / RUN_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return info


def train(config, out_dir, resume: bool = True, stop_after: int | None = None, log=None) -> list[dict]:
    """Train ``config`` (a :class:`TrainConfig` or a dict of its fields), writing ``out_dir/metrics.jsonl``,
    ``out_dir/run.json`` and ``out_dir/checkpoint.pt``; return the per-epoch metric rows.

    Args:
        resume: continue from ``out_dir/checkpoint.pt`` when present (the saved config must match in
            every field that changes results; ``epochs`` may grow). False starts afresh.
        stop_after: stop after this many epochs in this call, an integer >= 1 (an interruption; resume
            continues); None trains to the end.
        log: callable receiving what the run does (start, resume, already complete) and one line per
            epoch (default: ``print`` when ``config.progress``; None: silent).

    Raises:
        RunFolderError: ``out_dir`` is a file or cannot be written (found before any training).
        CheckpointError: the checkpoint in ``out_dir`` is a folder, empty, truncated, corrupt or not a
            run's (one line naming the file, with the ``--restart`` hint).
        ValueError: the checkpoint holds another config, the batching would take no step (every batch
            smaller than 2 samples per process), or the objective diverged.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**dict(config))
    cfg.validate()
    if stop_after is not None:
        stop_after = check_int(stop_after, "stop_after (--stop-after)", low=1)
    out = prepare_run_folder(out_dir)
    log = log if log is not None else (print if cfg.progress else None)
    place = _place(cfg)
    if place.main and remove_stale_temporaries(out) and log:
        log(f"[train] {out}: removed temporary files left by an interrupted write")
    state = _resume_state(out, cfg, resume)
    if state is not None and state["epoch"] + 1 >= cfg.epochs:
        if place.main:
            write_jsonl(out / METRICS_FILE, list(state["metrics"]))
            if log:
                log(f"[train] {out} is already complete ({state['epoch'] + 1} epochs): nothing to train "
                    "(--restart trains it again)")
        return list(state["metrics"])[: cfg.epochs]
    run, step_fn = _build(cfg, place)
    _check_steps(run, place)
    metrics, scoring, start = _restore(run, state, cfg, place)
    if place.main:
        info = _write_run_record(out, cfg, run, place)
        write_jsonl(out / METRICS_FILE, metrics)
        if log:
            log(f"[train] resuming {out} after epoch {start} of {cfg.epochs}" if start else
                f"[train] {cfg.name or cfg.loss} on {cfg.dataset} ({cfg.imbalance}, R={cfg.ratio:g}): class counts "
                f"{run.counts.tolist()}, {info['parameters']} parameters, device {place.device} -> {out}")
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        row, scoring = run_epoch(run, step_fn, epoch, scoring, place)
        row["seconds"] = time.time() - t0
        metrics.append(row)
        if place.main:
            save_checkpoint(out / CHECKPOINT, _checkpoint_state(cfg, epoch, run, place, metrics, scoring))
            write_jsonl(out / METRICS_FILE, metrics)
            if log:
                log(_format_row(row))
        if stop_after is not None and epoch + 1 - start >= stop_after and epoch < cfg.epochs - 1:
            break
    if place.distributed:
        torch.distributed.barrier()
    return metrics


class DivergedError(ValueError):
    """The model's outputs on a training batch are NaN or infinite (the weights diverged)."""


def _finite_output(out) -> bool:
    """True when the features and logits of a :class:`ModelOutput` are all finite."""
    return all(bool(torch.isfinite(t.detach()).all()) for t in (out.features, out.logits) if t is not None)


def _min_batch(world: int) -> int:
    """The fewest samples of a batch that trains: 2 per rank (BatchNorm cannot train on one sample, and the
    pair losses need two); smaller batches are skipped."""
    return 2 * world


def _check_steps(run, place: _Place) -> None:
    """Refuse a run whose epochs would take no step (every batch smaller than :func:`_min_batch`).

    Raises:
        ValueError: naming ``batch_size``, the samples per batch and the world size.
    """
    sizes = [len(b) for b in run.sampler.batches(0)]
    if not any(s >= _min_batch(place.world) for s in sizes):
        raise ValueError(f"batch_size={run.cfg.batch_size} gives batches of at most {max(sizes, default=0)} samples "
                         f"for {place.world} process(es): a batch needs >= {_min_batch(place.world)} (2 per process: "
                         "BatchNorm and the pair losses need two samples), so no step would be taken; raise batch_size")


def run_epoch(run, step_fn, epoch: int, scoring: str | None, place: _Place) -> tuple[dict, str | None]:
    """One epoch of a built run: the loss's start hook, :func:`train_one_epoch`, the scheduler step,
    evaluation (every ``eval_every`` epochs and at the last) and the loss's end hook.

    Returns:
        (the epoch's metrics row without ``seconds``, the scoring rule found so far).
    """
    cfg = run.cfg
    run.loss.on_epoch_start(epoch)
    lr = float(run.optimizer.param_groups[0]["lr"])
    train_loss, scoring = train_one_epoch(run, step_fn, epoch, scoring, place)
    run.scheduler.step()
    row: dict = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss}
    last = epoch == cfg.epochs - 1
    if (epoch + 1) % cfg.eval_every == 0 or last:
        row.update(_evaluate(run, cfg, run.model, run.loss, place.device, scoring or "logits", epoch, last))
    else:
        row.update({key: None for key in _EVAL_KEYS})
    for key, v in (run.loss.on_epoch_end(epoch, dict(row)) or {}).items():
        row[key if key not in row else f"{cfg.loss}_{key}"] = v  # a hook never overwrites a metric
    return {key: _clean(v) for key, v in row.items()}, scoring


def train_one_epoch(run, step_fn, epoch: int, scoring: str | None, place: _Place) -> tuple[float, str | None]:
    """The SGD steps of epoch ``epoch``: the sampler's batches (rank r takes ``batch[r::w]``), augmented
    views from a generator seeded by (seed, epoch, rank), the objective, the optimizer step.

    Returns:
        (the mean objective over the epoch's samples, the scoring rule: detected on the first batch
        when ``scoring`` is None).

    Raises:
        ValueError: the objective is not finite (diverged), or no batch was large enough to take a step.
    """
    cfg, r, w = run.cfg, place.rank, place.world
    run.model.train()
    run.loss.train()
    amp_ctx = (lambda: torch.autocast(place.device.type, dtype=run.amp_dtype)) if run.use_amp else nullcontext
    gen = torch.Generator().manual_seed(_seed_from(cfg.seed, epoch, r, 7))
    batches = run.sampler.batches(epoch)
    if cfg.progress and place.main:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
    total, count, shared = 0.0, 0, shares_views(run)
    for step, idx in enumerate(batches):
        if len(idx) < _min_batch(w):  # a rank would get fewer than 2 samples (BatchNorm cannot train on 1)
            continue
        local = torch.as_tensor(np.asarray(idx[r::w]), device=place.device)
        xb, yb = run.train_x[local], run.train_y[local]
        x = run.train.to_input(xb.float() if shared else run.augment.views(xb.float(), run.views, gen))
        with amp_ctx():
            try:
                obj, detected = step_fn(x, yb, detect=scoring is None, shared=shared)
            except DivergedError as err:
                raise ValueError(f"training diverged at epoch {epoch}, step {step}: {err}; lower lr, or check the loss "
                                 f"options {cfg.loss_kwargs}") from None
        if not torch.isfinite(obj.detach()).all():
            raise ValueError(f"the training objective is {float(obj.detach())} at epoch {epoch}, step {step} "
                             f"(diverged: lower lr, or check the loss options {cfg.loss_kwargs})")
        scoring = scoring or detected
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(obj).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        total += float(obj.detach()) * len(idx)
        count += len(idx)
    if count == 0:  # never a silent epoch without steps (train() refuses such a batching up front)
        raise ValueError(f"epoch {epoch} took no step: every batch had fewer than {_min_batch(w)} samples "
                         f"(batch_size={cfg.batch_size}, {w} process(es))")
    return total / count, scoring


def _evaluate(run, cfg, model, loss, device, scoring, epoch, last) -> dict:
    bs = cfg.eval_batch_size
    tr = extract(model, run.train, device, loss, bs, run.amp_dtype)
    te = extract(model, run.test, device, loss, bs, run.amp_dtype)
    n_eval = (epoch + 1) // cfg.eval_every
    probe = scoring == "ncc" and (last or (cfg.probe_every > 0 and n_eval % cfg.probe_every == 0))
    row = accuracy_metrics(scoring, tr, te, run.spec.num_classes, probe, run.minority)
    weight = bias = None
    if scoring == "logits" and isinstance(getattr(model, "classifier", None), nn.Linear):
        weight = model.classifier.weight.detach().cpu().double().numpy()
        bias = model.classifier.bias.detach().cpu().double().numpy() if model.classifier.bias is not None else None
    row.update(evaluate_geometry(tr[0], tr[3], run.spec.num_classes, weight, bias, run.minority, cfg.nc_centring))
    if run.val is not None:
        va = extract(model, run.val, device, loss, bs, run.amp_dtype)
        row["val_acc"] = accuracy_metrics(scoring, tr, va, run.spec.num_classes, False)["test_acc"]
    return row


def _checkpoint_state(cfg, epoch, run, place: _Place, metrics, scoring) -> dict:
    return {
        "format": 1,
        "config": cfg.to_dict(),
        "epoch": epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "loss": run.loss.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": _rng_state(place.device),
        "sampler": {"seed": run.sampler.seed, "next_epoch": epoch + 1, "binding": None if run.sampler.binding is None
                    else run.sampler.binding.tolist()},
        "augment_seeds": [_seed_from(cfg.seed, e, 0, 7) for e in range(epoch + 1)],
        "metrics": metrics,
        "scoring": scoring,
        "class_counts": run.counts.tolist(),
    }


def _format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']:>3}", f"lr {row['lr']:.3g}", f"loss {row['train_loss']:.4f}"]
    for key in ("train_acc", "test_acc", "probe_acc", "delta_of", "delta_etf", "nc1"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)
