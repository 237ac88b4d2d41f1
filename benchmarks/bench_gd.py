"""Gradient solver of the SCL UFM on free features (``ufm.solvers.solve_gd``), side by side in one run.

    python benchmarks/bench_gd.py [--sizes 200,1000,5000,10000] [--skip-large] [--threads N]

1. Gradient evaluations per second of the full-batch objective (value + gradient w.r.t. the free
   features) by n, float32 vs float64, on the CPU and on CUDA when present; next to them the same
   with ``SupConLoss`` + autograd (float32, the loss module's own precision) and the ratio.
2. Time to the orthogonal frame from a random start, full batch, class counts in the proportions
   (4, 2, 1, 1), d = 16, tau = 0.1: L-BFGS (float64; and float32 continued in float64) at n = 200
   and n = 10,000, Adam (lr 0.05) at n = 200. Target Delta_OF < 1e-5; the objective is compared
   with the closed-form OF value.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ufm.losses import SupConLoss
from ufm.solvers import of_objective
from ufm.solvers.gd import _normalise, _Plan, solve_gd


def labels_for(n: int) -> np.ndarray:
    counts = np.array([4, 2, 1, 1]) * n // 8
    counts[0] += n - counts.sum()
    return np.repeat(np.arange(4), counts)


def evals_per_second(fn, min_seconds: float = 1.0, max_reps: int = 20) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    reps = 0
    while reps < max_reps and (reps < 2 or time.perf_counter() - t0 < min_seconds):
        fn()
        reps += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return reps / (time.perf_counter() - t0)


def ours(y, dev, dtype, d=16):
    plan = _Plan(y, [np.arange(y.size)], dev, 256, 1 << 20)
    h = torch.randn(y.size, d, dtype=dtype, device=dev, generator=None).abs().requires_grad_(True)

    def step():
        h.grad = None
        plan(_normalise(h), 10.0).backward()

    return step


def supcon(y, dev, d=16):
    loss = SupConLoss(0.1)
    h = torch.randn(y.size, d, dtype=torch.float32, device=dev).abs().requires_grad_(True)
    yt = torch.as_tensor(y, device=dev)

    def step():
        h.grad = None
        loss(h, yt).backward()

    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200,1000,5000,10000")
    ap.add_argument("--skip-large", action="store_true", help="time-to-OF at n = 200 only")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, devices {devices}")

    print("\n1. full-batch objective + gradient, evaluations per second (counts 4:2:1:1, d = 16, tau = 0.1)")
    print(f"{'device':>6} {'n':>6} {'f64 /s':>9} {'f32 /s':>9} {'f32/f64':>8} {'SupCon f32 /s':>14} "
          f"{'ours f32 / SupCon':>18}")
    for dev in devices:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            y = labels_for(n)
            r64 = evals_per_second(ours(y, dev, torch.float64))
            r32 = evals_per_second(ours(y, dev, torch.float32))
            rsc = evals_per_second(supcon(y, dev))
            print(f"{dev:>6} {n:>6} {r64:>9.2f} {r32:>9.2f} {r32 / r64:>8.2f} {rsc:>14.2f} {r32 / rsc:>18.2f}",
                  flush=True)

    print("\n2. time to the OF from a random start (full batch, d = 16, tau = 0.1, target Delta_OF < 1e-5)")
    print(f"{'n':>6} {'device':>6} {'method':>26} {'seconds':>8} {'steps':>6} {'evals':>6} {'delta_of':>9} "
          f"{'(f - f_OF)/f_OF':>16}")
    for dev in devices:  # warm-up: first calls (allocator, thread pools, L-BFGS code paths)
        solve_gd(labels_for(200), 16, steps=5, device=dev)
    runs = [(200, "lbfgs f64"), (200, "lbfgs f32 -> f64"), (200, "adam f64 lr 0.05")]
    if not args.skip_large:
        runs += [(10_000, "lbfgs f64"), (10_000, "lbfgs f32 -> f64")]
    for dev in devices:
        for n, method in runs:
            y = labels_for(n)
            f_of = of_objective(y, None, 0.1)
            kw = dict(temperature=0.1, device=dev, seed=0, target_delta_of=1e-5, stop_at_target=True)
            t0 = time.perf_counter()
            if method == "lbfgs f64":
                res = solve_gd(y, 16, steps=1000, **kw)
                steps, evals = res.steps, res.evaluations
            elif method == "lbfgs f32 -> f64":
                a = solve_gd(y, 16, steps=1000, dtype=torch.float32, **kw)
                res = solve_gd(y, 16, steps=1000, init=a.features, **kw)
                steps, evals = a.steps + res.steps, a.evaluations + res.evaluations
            else:
                res = solve_gd(y, 16, optimizer="adam", lr=0.05, steps=20_000, record_every=10, **kw)
                steps, evals = res.steps, res.evaluations
            secs = time.perf_counter() - t0
            print(f"{n:>6} {dev:>6} {method:>26} {secs:>8.2f} {steps:>6} {evals:>6} {res.delta_of:>9.1e} "
                  f"{(res.objective - f_of) / f_of:>16.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
