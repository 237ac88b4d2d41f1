"""SupConLoss forward+backward against pytorch-metric-learning's, side by side in one run.

    python benchmarks/bench_supcon.py [--batch 1024] [--dim 128] [--repeats 20] [--device cpu|cuda]

Prints the median time of each and the ratios, and the floor: the forward+backward of the B x B
similarity matrix product alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss

from ufm import default_device
from ufm.losses import SupConLoss


def timeit(fn, repeats, device):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    dev = default_device(args.device)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(args.batch, args.dim, generator=g).to(dev).requires_grad_(True)
    y = torch.randint(0, args.classes, (args.batch,), generator=g).to(dev)
    ours, peer = SupConLoss(args.temperature), PMLSupConLoss(temperature=args.temperature)

    def run(loss):
        def f():
            z.grad = None
            loss(z, y).backward()
        return f

    def floor():
        z.grad = None
        zn = torch.nn.functional.normalize(z, dim=1)
        (zn @ zn.T).sum().backward()

    t_ours = timeit(run(ours), args.repeats, dev)
    t_peer = timeit(run(peer), args.repeats, dev)
    t_floor = timeit(floor, args.repeats, dev)
    print(f"device={dev} B={args.batch} d={args.dim} threads={torch.get_num_threads()}")
    print(f"ufm SupConLoss fwd+bwd           {t_ours * 1e3:8.2f} ms")
    print(f"pytorch-metric-learning fwd+bwd  {t_peer * 1e3:8.2f} ms")
    print(f"similarity matmul floor fwd+bwd  {t_floor * 1e3:8.2f} ms")
    print(f"speed-up over pml: {t_peer / t_ours:.2f}x   ours / floor: {t_ours / t_floor:.2f}x")


if __name__ == "__main__":
    main()
