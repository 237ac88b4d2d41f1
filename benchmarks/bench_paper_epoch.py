"""Cost of one epoch of a `paper`-profile run, measured on this machine, and what it projects to on a GPU.

    python benchmarks/bench_paper_epoch.py [--config supcon] [--ratio 10] [--steps 5] [--threads N]

Builds the config's `paper` profile (model, loss, batch size, views) and times full training steps (views,
forward, objective, backward, SGD) on CIFAR-shaped inputs drawn at random (the timing does not depend on the
pixels; CIFAR itself cannot be downloaded here). Prints the median seconds per step, the steps of one epoch at
the given STEP ratio (``n_maj = 5000``: 5 x 5000 + 5 x 5000 / R images), the seconds per epoch and for the whole
schedule on this CPU; then the floating-point operations of one step (``torch.utils.flop_counter``, forward and
backward) and the time they take at a sustained GPU throughput given by ``--gpu-tflops`` (an assumption, not a
measurement: the project has not run the paper profile on a GPU).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ufm.data.imbalance import step_imbalance_counts
from ufm.losses import get_loss
from ufm.models import build_model
from ufm.train import BatchObjective, load_config
from ufm.train.loop import _fill_kwargs


def make_step(cfg, num_classes: int = 10):
    model = build_model(cfg.model, num_classes, in_channels=3, feature_dim=cfg.feature_dim, final_relu=cfg.final_relu, seed=0)
    cls = get_loss(cfg.loss)
    loss = cls(**_fill_kwargs(cls, cfg.loss_kwargs, num_classes, model.feature_dim))
    views = int(getattr(loss, "views", 1))
    step_fn = BatchObjective(model, loss, views)
    opt = torch.optim.SGD(list(model.parameters()) + list(loss.parameters()), lr=cfg.lr, momentum=cfg.momentum)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(views * cfg.batch_size, 3, 32, 32, generator=gen)
    y = torch.randint(0, num_classes, (cfg.batch_size,), generator=gen)

    def step():
        obj, _ = step_fn(x, y)
        opt.zero_grad(set_to_none=True)
        obj.backward()
        opt.step()

    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="supcon")
    ap.add_argument("--ratio", type=float, default=10)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--gpu-tflops", type=float, nargs="+", default=[50.0, 200.0],
                    help="assumed sustained GPU throughputs (TFLOP/s) for the projection")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, "paper", [f"ratio={args.ratio:g}", "device=cpu", "amp=false"])
    step = make_step(cfg)
    step()  # warm-up
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    per_step = statistics.median(times)
    n_train = int(step_imbalance_counts(cfg.n_per_class, args.ratio, 10).sum())
    steps = math.ceil(n_train / cfg.batch_size)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    print(f"{cfg.loss} / {cfg.model} / batch {cfg.batch_size}, paper profile, R = {args.ratio:g}: {n_train} training images, "
          f"{steps} steps per epoch, {cfg.epochs} epochs; {torch.get_num_threads()} CPU threads")
    print(f"CPU: {per_step:.2f} s per step (median of {args.steps}) -> {per_step * steps / 60:.1f} min per epoch, "
          f"{per_step * steps * cfg.epochs / 3600 / 24:.1f} days for the schedule")
    print(f"work: {flops / 1e12:.3f} TFLOP per step (forward + backward), {flops * steps / 1e15:.2f} PFLOP per epoch")
    for tf in args.gpu_tflops:
        sec = flops * steps / (tf * 1e12)
        print(f"projected at {tf:g} TFLOP/s sustained: {sec:.0f} s per epoch, {sec * cfg.epochs / 3600:.1f} h for the schedule")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
