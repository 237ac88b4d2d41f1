"""Time of one training step of every registered loss against cross-entropy, side by side in one run.

    python benchmarks/bench_training.py [--batch 128 512] [--model small_resnet] [--dataset digits]
                                        [--repeats 7] [--device cpu|cuda] [--losses ce supcon ...] [--threads N]

A step is what the harness does per batch: the loss's ``views`` augmented views, one forward pass of
the network, ``loss.harness_objective``, backward, SGD step (``ufm.train.BatchObjective``). Steps of
the different losses are interleaved (loss 1, loss 2, ..., loss 1, ...) so that a change of machine
load hits all of them alike; the table gives the median milliseconds per step and the ratio to
cross-entropy at each batch size. Default: the small ResNet on 8x8 digits (real images from the
packaged data set), on CUDA when present.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ufm import default_device
from ufm.data import BatchAugment, load_dataset
from ufm.losses import LOSSES, get_loss
from ufm.models import build_model, model_accepts
from ufm.train import BatchObjective
from ufm.train.loop import _fill_kwargs


def make_step(loss_name: str, model_name: str, data, batch: int, device: torch.device, seed: int = 0):
    spec = data.spec
    kw = {"input_shape": spec.input_shape} if model_accepts(model_name, "input_shape") else {}
    model = build_model(model_name, spec.num_classes, in_channels=spec.in_channels, seed=seed, **kw).to(device)
    cls = get_loss(loss_name)
    loss = cls(**_fill_kwargs(cls, {}, spec.num_classes, model.feature_dim)).to(device)
    views = int(getattr(loss, "views", 1))
    step_fn = BatchObjective(model, loss, views)
    params = list(model.parameters()) + [p for p in loss.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    aug = BatchAugment(spec)
    rng = np.random.default_rng(seed)
    x_all, y_all = data.x.to(device), data.y.to(device)
    gen = torch.Generator().manual_seed(seed)

    def step():
        idx = torch.as_tensor(rng.choice(len(data), size=batch, replace=len(data) < batch), device=device)
        x = data.to_input(aug.views(x_all[idx].float(), views, gen))
        obj, _ = step_fn(x, y_all[idx])
        opt.zero_grad(set_to_none=True)
        obj.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step, views


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[128, 512], help="batch sizes (default 128 512)")
    ap.add_argument("--model", default="small_resnet", help="registered model (default small_resnet)")
    ap.add_argument("--dataset", default="digits", help="data set for the inputs (default digits, 8x8)")
    ap.add_argument("--repeats", type=int, default=7, help="timed steps per loss and batch size (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--losses", nargs="*", default=None, help="losses to time (default: every registered loss)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device(args.device)
    data = load_dataset(args.dataset, "train")
    names = args.losses or sorted(LOSSES)
    if "ce" not in names:
        names = ["ce"] + names
    names = ["ce"] + [n for n in names if n != "ce"]
    print(f"device {device}, model {args.model}, data {args.dataset} {tuple(data.spec.input_shape)}, "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats} steps")
    print(f"{'loss':<14}{'views':>6}" + "".join(f"{'ms/step B=' + str(b):>16}{'x CE':>8}" for b in args.batch))
    table = {n: {} for n in names}
    views = {}
    for b in args.batch:
        steps = {}
        for n in names:
            steps[n], views[n] = make_step(n, args.model, data, b, device)
            for _ in range(args.warmup):
                steps[n]()
        times = {n: [] for n in names}
        for _ in range(args.repeats):
            for n in names:
                t = time.perf_counter()
                steps[n]()
                times[n].append(time.perf_counter() - t)
        for n in names:
            table[n][b] = statistics.median(times[n]) * 1e3
    for n in names:
        row = f"{n:<14}{views[n]:>6}"
        for b in args.batch:
            row += f"{table[n][b]:>16.1f}{table[n][b] / table['ce'][b]:>8.2f}"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
