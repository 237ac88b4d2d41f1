"""One training loop for every registered loss.

Per epoch e (0-based):

1. ``loss.on_epoch_start(e)`` if the loss defines it;
2. the batches of ``BindingBatchSampler(labels, batch_size, seed, binding).batches(e)`` (a seeded
   shuffle per epoch; with binding, one fixed example per class appended to every batch); under
   ``torchrun`` each rank takes ``batch[rank::world]``;
3. for each batch: ``loss.views`` augmented views (augmentation drawn from a CPU generator seeded by
   (seed, e, rank)), one forward pass of the stacked views, the outputs reshaped to (B, V, ...) when
   V > 1 and gathered over ranks with gradients, ``obj = loss.harness_objective(out, labels, model)``,
   SGD step (float16 autocast + grad scaler on CUDA when ``amp``);
4. the learning rate of epoch e is ``lr * warm(e) * lr_gamma^(#milestones <= e)``;
5. evaluation every ``eval_every`` epochs and at the last (see :mod:`ufm.train.metrics`), then
   ``loss.on_epoch_end(e, row)`` whose returned values join the epoch's row;
6. the row is appended to ``out_dir/metrics.jsonl`` and a checkpoint (model, optimizer, scheduler,
   loss state, grad scaler, RNG states, sampler seeds, metrics so far) is written atomically to
   ``out_dir/checkpoint.pt`` (temporary file + ``os.replace``).

``train(config, out_dir, resume=True)`` continues from ``out_dir/checkpoint.pt`` when it exists. Every
random stream is either restored from the checkpoint or re-derived from (seed, epoch), so on CPU a run
interrupted after any epoch and resumed gives exactly the metrics of an uninterrupted run.
"""

from __future__ import annotations

import inspect
import json
import os
import platform
import random
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ufm.batching import BindingBatchSampler
from ufm.data import BatchAugment, load_dataset, make_imbalanced
from ufm.data.imbalance import minority_classes
from ufm.device import default_device
from ufm.losses import get_loss
from ufm.losses.base import ModelOutput
from ufm.models import build_model, model_accepts
from ufm.train import distributed as ddp
from ufm.train.config import RESUME_FREE, TrainConfig
from ufm.train.metrics import accuracy_metrics, evaluate_geometry, extract

__all__ = ["train", "BatchObjective", "lr_factor", "METRIC_KEYS", "CHECKPOINT", "METRICS_FILE", "read_metrics", "build_run"]

CHECKPOINT = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
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


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    def w(tmp):
        with open(tmp, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")

    _atomic_write(path, w)


def read_metrics(out_dir) -> list[dict]:
    """The rows of ``out_dir/metrics.jsonl``."""
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {METRICS_FILE} in {out_dir}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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

    def forward(self, x: torch.Tensor, y: torch.Tensor, detect: bool = False):
        o = _split_views(self.model(x), self.views)
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
    run.use_amp = bool(cfg.amp and run.device.type == "cuda")
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.use_amp)
    run.sampler = BindingBatchSampler(run.train.labels, cfg.batch_size, seed=cfg.seed, binding=cfg.binding)
    run.augment = BatchAugment(spec, enabled=cfg.augment)
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
    now = cfg.to_dict()
    return [f"{k}: saved {saved.get(k)!r} vs now {now[k]!r}" for k in now if k not in RESUME_FREE and saved.get(k) != now[k]]


def train(config, out_dir, resume: bool = True, stop_after: int | None = None, log=None) -> list[dict]:
    """Train ``config`` (a :class:`TrainConfig` or a dict of its fields), writing ``out_dir/metrics.jsonl``,
    ``out_dir/run.json`` and ``out_dir/checkpoint.pt``; return the per-epoch metric rows.

    Args:
        resume: continue from ``out_dir/checkpoint.pt`` when present (the saved config must match in
            every field that changes results; ``epochs`` may grow). False starts afresh.
        stop_after: stop after this many epochs in this call (an interruption; resume continues).
        log: callable receiving one line per epoch (default: ``print`` when ``config.progress``).
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**dict(config))
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if log is None and cfg.progress:
        log = print
    device = default_device(None if cfg.device == "auto" else cfg.device)
    distributed = ddp.init_from_env(device)
    r, w = ddp.rank(), ddp.world_size()
    if distributed and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    main = r == 0

    ckpt_path = out / CHECKPOINT
    state = None
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        diff = _config_diff(state["config"], cfg)
        if diff:
            raise ValueError(f"{ckpt_path} holds a run with another config ({'; '.join(diff)}); "
                             "use another output folder or resume=False")
        if state["epoch"] + 1 >= cfg.epochs:
            return list(state["metrics"])[: cfg.epochs]

    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    torch.manual_seed(cfg.seed)
    if distributed and cfg.download and not main:
        torch.distributed.barrier()  # rank 0 downloads first
    run = build_run(cfg, device)
    if distributed and cfg.download and main:
        torch.distributed.barrier()
    model, loss, opt, sched, scaler = run.model, run.loss, run.optimizer, run.scheduler, run.scaler
    k = run.spec.num_classes
    if distributed and cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        run.model = model
    step_fn = BatchObjective(model, loss, run.views)
    if distributed:
        step_fn = nn.parallel.DistributedDataParallel(
            step_fn, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    metrics: list[dict] = []
    scoring = None if cfg.scoring == "auto" else cfg.scoring
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        loss.load_state_dict(state["loss"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], device)
        metrics = list(state["metrics"])
        scoring = state["scoring"] or scoring
        start = state["epoch"] + 1
    if main:
        info = {"config": cfg.to_dict(), "class_counts": run.counts.tolist(), "minority_classes": run.minority.tolist(),
                "n_train": len(run.train), "n_test": len(run.test), "dataset": run.spec.description,
                "parameters": sum(p.numel() for p in model.parameters()), "views": run.views,
                "device": str(device), "world_size": w, "torch": torch.__version__, "python": platform.python_version()}
        (out / RUN_FILE).write_text(json.dumps(info, indent=1) + "\n")
        _write_jsonl(out / METRICS_FILE, metrics)
        if log and state is None:
            log(f"[train] {cfg.name or cfg.loss} on {cfg.dataset} ({cfg.imbalance}, R={cfg.ratio:g}): "
                f"class counts {run.counts.tolist()}, {info['parameters']} parameters, device {device}")

    train_x, train_y = run.train.x.to(device), run.train.y.to(device)
    amp_ctx = (lambda: torch.autocast("cuda", dtype=torch.float16)) if run.use_amp else nullcontext
    done = 0
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        if hasattr(loss, "on_epoch_start"):
            loss.on_epoch_start(epoch)
        lr = float(opt.param_groups[0]["lr"])
        model.train()
        loss.train()
        gen = torch.Generator().manual_seed(_seed_from(cfg.seed, epoch, r, 7))
        batches = run.sampler.batches(epoch)
        it = batches
        if cfg.progress and main:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        total, count = 0.0, 0
        for step, idx in enumerate(it):
            if len(idx) < 2 * w:  # a rank would get fewer than 2 samples (BatchNorm cannot train on 1)
                continue
            local = torch.as_tensor(np.asarray(idx[r::w]), device=device)
            xb, yb = train_x[local], train_y[local]
            x = run.train.to_input(run.augment.views(xb.float(), run.views, gen))
            with amp_ctx():
                obj, detected = step_fn(x, yb, detect=scoring is None)
            if not torch.isfinite(obj.detach()).all():
                raise ValueError(f"the training objective is {float(obj.detach())} at epoch {epoch}, step {step} "
                                 f"(diverged: lower lr, or check the loss options {cfg.loss_kwargs})")
            scoring = scoring or detected
            opt.zero_grad(set_to_none=True)
            scaler.scale(obj).backward()
            scaler.step(opt)
            scaler.update()
            total += float(obj.detach()) * len(idx)
            count += len(idx)
        sched.step()

        row: dict = {"epoch": epoch + 1, "lr": lr, "train_loss": total / max(count, 1)}
        last = epoch == cfg.epochs - 1
        if (epoch + 1) % cfg.eval_every == 0 or last:
            row.update(_evaluate(run, cfg, model, loss, device, scoring or "logits", epoch, last))
        else:
            row.update({key: None for key in _EVAL_KEYS})
        if hasattr(loss, "on_epoch_end"):
            extra = loss.on_epoch_end(epoch, dict(row))
            for key, v in (extra or {}).items():
                row[key if key not in row else f"{cfg.loss}_{key}"] = v
        row["seconds"] = time.time() - t0
        row = {key: _clean(v) for key, v in row.items()}
        metrics.append(row)
        if main:
            _save_checkpoint(ckpt_path, cfg, epoch, model, opt, sched, loss, scaler, device, metrics, scoring, run)
            _write_jsonl(out / METRICS_FILE, metrics)
            if log:
                log(_format_row(row))
        done += 1
        if stop_after is not None and done >= stop_after and not last:
            break
    if distributed:
        torch.distributed.barrier()
    return metrics


def _evaluate(run, cfg, model, loss, device, scoring, epoch, last) -> dict:
    bs = cfg.eval_batch_size
    tr = extract(model, run.train, device, loss, bs, run.use_amp)
    te = extract(model, run.test, device, loss, bs, run.use_amp)
    n_eval = (epoch + 1) // cfg.eval_every
    probe = scoring == "ncc" and (last or (cfg.probe_every > 0 and n_eval % cfg.probe_every == 0))
    row = accuracy_metrics(scoring, tr, te, run.spec.num_classes, probe, run.minority)
    weight = bias = None
    if scoring == "logits" and isinstance(getattr(model, "classifier", None), nn.Linear):
        weight = model.classifier.weight.detach().cpu().double().numpy()
        bias = model.classifier.bias.detach().cpu().double().numpy() if model.classifier.bias is not None else None
    row.update(evaluate_geometry(tr[0], tr[3], run.spec.num_classes, weight, bias, run.minority))
    if run.val is not None:
        va = extract(model, run.val, device, loss, bs, run.use_amp)
        row["val_acc"] = accuracy_metrics(scoring, tr, va, run.spec.num_classes, False)["test_acc"]
    return row


def _save_checkpoint(path, cfg, epoch, model, opt, sched, loss, scaler, device, metrics, scoring, run) -> None:
    state = {
        "format": 1,
        "config": cfg.to_dict(),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "loss": loss.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": _rng_state(device),
        "sampler": {"seed": run.sampler.seed, "next_epoch": epoch + 1, "binding": None if run.sampler.binding is None
                    else run.sampler.binding.tolist()},
        "augment_seeds": [_seed_from(cfg.seed, e, 0, 7) for e in range(epoch + 1)],
        "metrics": metrics,
        "scoring": scoring,
        "class_counts": run.counts.tolist(),
    }
    _atomic_write(path, lambda tmp: torch.save(state, tmp))


def _format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']:>3}", f"lr {row['lr']:.3g}", f"loss {row['train_loss']:.4f}"]
    for key in ("train_acc", "test_acc", "probe_acc", "delta_of", "delta_etf", "nc1"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)
