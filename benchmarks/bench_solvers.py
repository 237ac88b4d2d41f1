"""Exact solvers of the SCL unconstrained features model, side by side in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_solvers.py [--sizes 500,1000,2000] [--sdp-sizes 24,48,96]
        [--taus 0.1] [--distinct-k 100,1000] [--repeats 3] [--skip-slow]

1. ``solve_sdp`` (method "auto": n > 120 is the low-rank path) at n samples in counts 1000:500:300:200
   (k = 4), one epoch of random batches of 64 (``epoch_batcher(labels, 64, seed=0)(0)``) and the same
   with batch binding (``binding=True``), with and without ReLU: time, certified gap / accepted bound,
   verdict (proof), delta_of of the minimiser (exact) or its range over the minimisers exhibited
   (not unique).
2. Today's interior-point n x n SDP (``method="interior"``) against ``method="low-rank"`` on the same
   problems at n = 24, 48, 96 (same counts ratio; one full batch, and one epoch of random batches of
   16): both times, their ratio, and max |G_interior - G_lowrank| where both verdicts are exact (in
   parentheses otherwise: a minimiser that is not unique, or not proved unique, need not be the same).
3. ``solve_reduced`` with all-distinct counts 1000 - 9 i (k = 100) and 10000 - 9 i (k = 1,000), with
   and without ReLU (default: first order above 60 distinct counts); and at k = 100 the interior point
   (``max_ip_k=1000``) side by side with the default.

Every answer printed is certified (gap <= bound); a SolverError prints its first line, not a traceback.
Times are medians of ``--repeats`` runs for cases whose first run took under 5 s, else one run.
``--skip-slow`` skips the runs of minutes: the interior point above n = 48 and at k = 100.
Targets: n = 2,000 (any batching) and k = 1,000 distinct counts each in under a minute.

Last measured run (2026-11-25, 2-core CPU, shared; OMP_NUM_THREADS=1; ``--skip-slow``, defaults otherwise):

    1. solve_sdp (auto) at scale, counts 1000:500:300:200, one epoch of random batches of 64 (seed 0)
        n   tau  batching  relu  seconds runs         gap/bound              verdict (proof) delta_of or range
      500   0.1    random  True     0.12    3   5.4e-13/2.3e-06 not unique (flat directions)    [0.000, 0.048]
      500   0.1    random False     0.27    3   2.1e-14/2.3e-06 not unique (flat directions)    [0.490, 0.786]
      500   0.1   binding  True     0.17    3   5.0e-13/2.3e-06              exact (theorem)          0.00e+00
      500   0.1   binding False     5.52    1            FAILED
          SolverError: n x n program (relu=False, tau=0.1) was not certified to tol=1e-07: best lower bound on f* 23.2907509877085; candidates: components: reduced program per batch, burer_monteiro otherwise: f=23.2966236976117, own gap=0.00587, feasible=True, min_eig=-1.14e-13; solver status low-rank
     1000   0.1    random  True     0.68    3   2.4e-12/4.6e-06 not unique (flat directions)    [0.000, 0.049]
     1000   0.1    random False     0.81    3   1.1e-13/4.6e-06 not unique (flat directions)    [0.491, 0.751]
     1000   0.1   binding  True     1.04    3   3.3e-12/4.7e-06              exact (theorem)          0.00e+00
     1000   0.1   binding False     4.84    1            FAILED
          SolverError: n x n program (relu=False, tau=0.1) was not certified to tol=1e-07: best lower bound on f* 46.649023701666; candidates: components: reduced program per batch, burer_monteiro otherwise: f=46.6607965269303, own gap=0.0118, feasible=True, min_eig=-2.84e-13; solver status low-rank
     2000   0.1    random  True     5.32    1   1.4e-11/9.2e-06 not unique (flat directions)    [0.000, 0.045]
     2000   0.1    random False     3.61    3   6.0e-13/9.2e-06 not unique (flat directions)    [0.491, 0.747]
     2000   0.1   binding  True     7.60    1   2.3e-11/9.3e-06              exact (theorem)          0.00e+00
     2000   0.1   binding False    40.56    1            FAILED
          SolverError: n x n program (relu=False, tau=0.1) was not certified to tol=1e-07: best lower bound on f* 92.9396789800675; candidates: components: reduced program per batch, burer_monteiro otherwise: f=93.0213421604039, own gap=0.0817, feasible=True, min_eig=-1.12e-12; solver status low-rank

    2. today's SDP (method='interior') vs method='low-rank', counts 1000:500:300:200, tau 0.1
       n batches  relu interior s low-rank s    ratio  max|G diff|             interior verdict             low-rank verdict
      24    full  True       0.32       0.00      127      0.0e+00              exact (theorem)              exact (theorem)
      24    full False       0.27       0.04        7      3.2e-15         exact (second order)         exact (second order)
      24      16  True       0.16       0.00       51    (8.3e-01) not unique (flat directions) not unique (flat directions)
      24      16 False       0.20       0.07        3    (4.6e-15) not unique (flat directions) not unique (flat directions)
      48    full  True       3.29       0.00     1021      0.0e+00              exact (theorem)              exact (theorem)
      48    full False       2.34       0.02       97      1.2e-15         exact (second order)         exact (second order)
      48      16  True       2.12       0.00      568    (8.8e-01) not unique (flat directions) not unique (flat directions)
      48      16 False       1.98       0.08       25    (7.9e-14) not unique (flat directions) not unique (flat directions)
      96    full  True        nan       0.01        -            -        skipped (--skip-slow)              exact (theorem)
      96    full False        nan       0.03        -            -        skipped (--skip-slow)                   unresolved
      96      16  True        nan       0.01        -            -        skipped (--skip-slow) not unique (flat directions)
      96      16 False        nan       0.15        -            -        skipped (--skip-slow) not unique (flat directions)

    3. solve_reduced, all-distinct counts (k = 100: 1000 - 9 i; k = 1,000: 10000 - 9 i), tau 0.1
        k  relu                   method  seconds runs         gap/bound              verdict (proof)  delta_of
      100  True                  default     0.01    3   8.0e-15/6.4e-09              exact (theorem)  0.00e+00
      100  True interior (max_ip_k=1000)           skipped (--skip-slow: minutes)
      100 False                  default     0.05    3   2.2e-12/6.4e-09                   unresolved         -
      100 False interior (max_ip_k=1000)           skipped (--skip-slow: minutes)
     1000  True                  default     1.17    3   7.6e-13/8.8e-09              exact (theorem)  0.00e+00
     1000 False                  default    19.95    1   1.1e-10/8.8e-09                   unresolved         -

The rows ``--skip-slow`` skips, from the full run of the same day (solver code before the last verdict
changes; the interior point itself did not change): interior point at n = 96: 55.7 s (full, ReLU), 75.1 s (full,
no ReLU), 73.0 s and 51.5 s (batches of 16); reduced interior point at k = 100 distinct counts: 96.2 s (ReLU),
81.2 s (no ReLU), against 0.01 s / 0.05 s by default.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

from ufm.batching import epoch_batcher
from ufm.solvers import SolverError, solve_reduced, solve_sdp

RATIO = (1000, 500, 300, 200)


def ratio_counts(n: int, ratio=RATIO) -> np.ndarray:
    """n samples split in the ratio (largest remainders)."""
    w = np.asarray(ratio, dtype=float)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    return counts


def run(fn, repeats: int):
    """(result or SolverError, median seconds, runs): repeated only while a run takes under 5 s."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        try:
            out = fn()
        except SolverError as e:
            out = e
        times.append(time.perf_counter() - t)
        if times[0] >= 5.0 or isinstance(out, SolverError):
            break
    return out, statistics.median(times), len(times)


def first_line(err: Exception) -> str:
    return f"SolverError: {str(err).splitlines()[0] if str(err) else type(err).__name__}"


def geometry_cell(res) -> str:
    g = res.geometry
    if g.verdict == "exact":
        return f"{g.delta_of:.2e}"
    if g.verdict == "not unique" and g.delta_of_range is not None:
        lo, hi = g.delta_of_range
        return f"[{lo:.3f}, {hi:.3f}]"
    return "-"


def verdict_cell(res) -> str:
    g = res.geometry
    return f"{g.verdict} ({g.proof})" if g.proof else g.verdict


def gap_cell(res) -> str:
    return f"{res.certificate.gap:.1e}/{res.certificate.bound:.1e}"


def section_batchings(args, taus) -> None:
    print("1. solve_sdp (auto) at scale, counts 1000:500:300:200, one epoch of random batches of 64 (seed 0)")
    print(f"{'n':>5} {'tau':>5} {'batching':>9} {'relu':>5} {'seconds':>8} {'runs':>4} {'gap/bound':>17} "
          f"{'verdict (proof)':>28} {'delta_of or range':>17}")
    for n in [int(s) for s in args.sizes.split(",") if s]:
        y = np.repeat(np.arange(len(RATIO)), ratio_counts(n))
        for tau in taus:
            for binding in (False, True):
                batches = epoch_batcher(y, 64, seed=0, binding=binding)(0)
                for relu in (True, False):
                    res, t, r = run(lambda: solve_sdp(y, batches, tau, relu=relu), args.repeats)
                    head = f"{n:>5} {tau:>5g} {'binding' if binding else 'random':>9} {str(relu):>5} {t:>8.2f} {r:>4}"
                    if isinstance(res, SolverError):
                        print(f"{head} {'FAILED':>17}\n      {first_line(res)}")
                        continue
                    print(f"{head} {gap_cell(res):>17} {verdict_cell(res):>28} {geometry_cell(res):>17}")


def section_interior(args, tau) -> None:
    print(f"\n2. today's SDP (method='interior') vs method='low-rank', counts 1000:500:300:200, tau {tau:g}")
    print(f"{'n':>4} {'batches':>7} {'relu':>5} {'interior s':>10} {'low-rank s':>10} {'ratio':>8} "
          f"{'max|G diff|':>12} {'interior verdict':>28} {'low-rank verdict':>28}")
    for n in [int(s) for s in args.sdp_sizes.split(",") if s]:
        y = np.repeat(np.arange(len(RATIO)), ratio_counts(n))
        for bname, batches in (("full", None), ("16", epoch_batcher(y, 16, seed=0)(0))):
            for relu in (True, False):
                head = f"{n:>4} {bname:>7} {str(relu):>5}"
                lr, t_lr, _ = run(lambda: solve_sdp(y, batches, tau, relu=relu, method="low-rank"), args.repeats)
                if args.skip_slow and n > 48:
                    ip, t_ip = None, float("nan")
                else:
                    ip, t_ip, _ = run(lambda: solve_sdp(y, batches, tau, relu=relu, method="interior"), args.repeats)
                cells = []
                for res in (ip, lr):
                    cells.append("skipped (--skip-slow)" if res is None else
                                 "FAILED" if isinstance(res, SolverError) else verdict_cell(res))
                ok = all(res is not None and not isinstance(res, SolverError) for res in (ip, lr))
                diff = "-"
                if ok:
                    d = float(np.abs(ip.gram - lr.gram).max())
                    both_exact = ip.geometry.verdict == lr.geometry.verdict == "exact"
                    diff = f"{d:.1e}" if both_exact else f"({d:.1e})"
                ratio = f"{t_ip / t_lr:.0f}" if ip is not None else "-"
                print(f"{head} {t_ip:>10.2f} {t_lr:>10.2f} {ratio:>8} {diff:>12} {cells[0]:>28} {cells[1]:>28}")
                for res in (ip, lr):
                    if isinstance(res, SolverError):
                        print(f"      {first_line(res)}")


def section_reduced(args, tau) -> None:
    print(f"\n3. solve_reduced, all-distinct counts (k = 100: 1000 - 9 i; k = 1,000: 10000 - 9 i), tau {tau:g}")
    print(f"{'k':>5} {'relu':>5} {'method':>24} {'seconds':>8} {'runs':>4} {'gap/bound':>17} "
          f"{'verdict (proof)':>28} {'delta_of':>9}")
    for k in [int(s) for s in args.distinct_k.split(",") if s]:
        counts = (1000 if k <= 100 else 10000) - 9 * np.arange(k)
        methods = [("default", {})]
        if k == 100:
            methods.append(("interior (max_ip_k=1000)", {"max_ip_k": 1000}))
        for relu in (True, False):
            for name, kw in methods:
                head = f"{k:>5} {str(relu):>5} {name:>24}"
                if kw and args.skip_slow:
                    print(f"{head} {'skipped (--skip-slow: minutes)':>40}")
                    continue
                res, t, r = run(lambda: solve_reduced(counts, tau, relu=relu, **kw), args.repeats)
                if isinstance(res, SolverError):
                    print(f"{head} {t:>8.2f} {r:>4} {'FAILED':>17}\n      {first_line(res)}")
                    continue
                print(f"{head} {t:>8.2f} {r:>4} {gap_cell(res):>17} {verdict_cell(res):>28} {geometry_cell(res):>9}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="500,1000,2000", help="n for section 1")
    ap.add_argument("--sdp-sizes", default="24,48,96", help="n for section 2 (interior point vs low-rank)")
    ap.add_argument("--taus", default="0.1", help="temperatures for section 1 (sections 2, 3 use the first)")
    ap.add_argument("--distinct-k", default="100,1000", help="k for section 3 (k = 100 adds the interior point)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per case under 5 s (the median is printed)")
    ap.add_argument("--skip-slow", action="store_true", help="skip the interior point above n = 48 and at k = 100")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Solution may be inaccurate")
    taus = [float(s) for s in args.taus.split(",") if s]
    # warm-up: imports and the first cvxpy compilation of each program
    solve_reduced((2, 2), taus[0])
    solve_sdp(np.repeat(np.arange(2), 3), None, taus[0], method="interior")
    section_batchings(args, taus)
    section_interior(args, taus[0])
    section_reduced(args, taus[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
