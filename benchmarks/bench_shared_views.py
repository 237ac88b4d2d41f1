"""What computing an un-augmented SCL batch's views once saves: one step of the `supcon` ci config with its two
identical views pushed through the network (``shared_views=false``) against one forward pass whose outputs are
tiled into the two views (``shared_views=true``, the default: the same objective and gradient in exact
arithmetic; BatchNorm's running variance differs, its unbiased correction counting B rows instead of 2B), side
by side in one run, through the training loop's own step function.

    python benchmarks/bench_shared_views.py [--config supcon] [--profile ci] [--repeats 15] [--steps 20] [--threads 1]

Prints the median milliseconds per step of each arm over ``repeats`` interleaved blocks of ``steps`` steps, and
their ratio. The arms share the model and optimizer, so they time the same computation at the same weights.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ufm.train import BatchObjective, build_run, load_config


def make_arms(config: str, profile: str):
    """The two step functions on the config's first training batch, and the batch size."""
    cfg = load_config(config, profile)
    run = build_run(cfg)
    model, loss = run.model, run.loss
    views = int(getattr(loss, "views", 1))
    if views != 2:
        raise SystemExit(f"--config {config}: its loss takes {views} view(s); this compares two views with one")
    b = cfg.batch_size
    x = run.train.to_input(run.train_x[:b].float())
    y = run.train_y[:b]
    step_fn = BatchObjective(model, loss, views)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step(xv, shared):
        obj, _ = step_fn(xv, y, shared=shared)
        opt.zero_grad(set_to_none=True)
        obj.backward()
        opt.step()

    def pushed_twice():
        step(torch.cat([x, x]), False)

    def computed_once():
        step(x, True)

    return {"two views through the network": pushed_twice, "one forward, tiled": computed_once}, b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="supcon")
    ap.add_argument("--profile", default="ci")
    ap.add_argument("--repeats", type=int, default=15, help="interleaved timed blocks per arm (median)")
    ap.add_argument("--steps", type=int, default=20, help="steps per block")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the notebooks' studies)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    arms, b = make_arms(args.config, args.profile)
    for step in arms.values():
        step()  # warm-up
    times = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, step in arms.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - t) / args.steps * 1e3)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"{args.config} {args.profile}: batch {b}, {args.threads} thread(s), median of {args.repeats} blocks of "
          f"{args.steps} steps")
    for name, m in med.items():
        print(f"  {name:<32}{m:8.2f} ms/step")
    once, twice = med["one forward, tiled"], med["two views through the network"]
    print(f"  ratio one/two: {once / twice:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
