"""Exact solvers of the SCL unconstrained features model, side by side in one run.

    python benchmarks/bench_solvers.py [--sizes 12,24,48] [--tau 0.1] [--skip-large]

1. The n x n SDP against the k x k reduced program on the same full-batch problems (class counts
   n/2, n/3, n/6): wall time of each, the ratio, and the largest difference between their Grams.
2. The reduced program alone at scale: counts (5000, 500, 50, 5) and k = 100 classes of 10^4
   samples (10^6 samples), with and without ReLU, and k classes of distinct counts (where the
   equal-count symmetry cannot shrink the program: the k x k PSD cone dominates).
Every answer printed is certified (a failure raises).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from ufm.solvers import of_objective, solve_reduced, solve_sdp


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="12,24,48", help="SDP sizes n (multiples of 6)")
    ap.add_argument("--tau", type=float, default=0.1)
    ap.add_argument("--distinct-k", default="10,20,30", help="k for the distinct-count reduced runs")
    ap.add_argument("--skip-large", action="store_true", help="only the SDP comparison")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Solution may be inaccurate")
    tau = args.tau
    solve_reduced((2, 2), tau)  # warm-up: imports and the first cvxpy compilation

    print("SDP (n x n) vs reduced (k x k), full batch, counts (n/2, n/3, n/6)")
    print(f"{'n':>4} {'relu':>5} {'sdp s':>8} {'reduced s':>10} {'sdp/reduced':>12} {'max|G diff|':>12} "
          f"{'sdp gap':>9} {'reduced gap':>11} {'delta_of':>9} {'delta_etf':>9}")
    for n in [int(s) for s in args.sizes.split(",") if s]:
        counts = (n // 2, n // 3, n - n // 2 - n // 3)
        y = np.repeat(np.arange(3), counts)
        for relu in (True, False):
            sdp, t_sdp = timed(lambda: solve_sdp(y, None, tau, relu=relu))
            red, t_red = timed(lambda: solve_reduced(counts, tau, relu=relu, full_gram=True))
            diff = float(np.abs(sdp.gram - red.gram).max())
            print(f"{n:>4} {str(relu):>5} {t_sdp:>8.2f} {t_red:>10.3f} {t_sdp / t_red:>12.1f} {diff:>12.2e} "
                  f"{sdp.certificate['gap']:>9.1e} {red.certificate['gap']:>11.1e} {red.delta_of:>9.2e} "
                  f"{red.delta_etf:>9.2e}")
    if args.skip_large:
        return 0

    print("\nreduced program at scale")
    print(f"{'problem':>28} {'relu':>5} {'seconds':>8} {'f - f_OF':>10} {'gap':>9} {'delta_of':>9} "
          f"{'delta_etf':>9} {'candidate':>26}")
    problems = [("(5000, 500, 50, 5)", (5000, 500, 50, 5)), ("k=100 x 10^4 (n=10^6)", (10**4,) * 100)]
    for k in [int(s) for s in args.distinct_k.split(",") if s]:
        problems.append((f"k={k} distinct counts", tuple(range(10, 10 + 5 * k, 5))))
    for name, counts in problems:
        y = np.repeat(np.arange(len(counts)), counts)
        f_of = of_objective(y, None, tau)
        for relu in (True, False):
            res, t = timed(lambda: solve_reduced(counts, tau, relu=relu))
            print(f"{name:>28} {str(relu):>5} {t:>8.2f} {res.objective - f_of:>10.2e} {res.certificate['gap']:>9.1e} "
                  f"{res.delta_of:>9.2e} {res.delta_etf:>9.2e} {res.certificate['candidate']:>26}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
