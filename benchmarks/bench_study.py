"""Wall time of one study of 8 short runs with ``jobs = 2`` against ``jobs = 1``, side by side in one run.

    python benchmarks/bench_study.py [--config large_margin] [--epochs 12] [--repeats 3] [--jobs 2]

The study is the config's ``ci`` profile with ``loss_kwargs.delta_d in {1.0, 1.5}`` x 4 seeds (8 runs),
every run with one torch thread. ``jobs = 1`` trains the runs one after the other in this process;
``jobs = J`` spreads them over J worker processes forked from a fork server that imports the training
code once per process (the first parallel study pays that start: timed on its own as "cold"). Each
repeat then runs both arms into fresh folders, in alternating order, so that a change of machine load
hits both alike; the table gives the median seconds and the speed-up ``time(jobs = 1) / time(jobs = J)``. Both arms must produce identical metrics (checked): the workers
change where the runs execute, not what they compute.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ufm.study import StudySpec, available_cores, run_study
from ufm.train import read_metrics


def _timed(spec: StudySpec, root: Path, jobs: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    study = run_study(spec, root, jobs=jobs, threads=1, progress=False)
    seconds = time.perf_counter() - t0
    metrics = {r.run_id: [{k: v for k, v in m.items() if k != "seconds"} for m in read_metrics(study.run_dir(r))]
               for r in study.runs}
    return seconds, metrics


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="large_margin", help="config name (its ci profile is used)")
    ap.add_argument("--epochs", type=int, default=12, help="epochs per run")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of the side-by-side pair")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel arm")
    args = ap.parse_args(argv)
    spec = StudySpec(args.config, "ci", [f"epochs={args.epochs}"], {"loss_kwargs.delta_d": [1.0, 1.5]}, seeds=4)
    times: dict[int, list[float]] = {1: [], args.jobs: []}
    with tempfile.TemporaryDirectory(prefix="bench_study_") as tmp:
        cold, _ = _timed(spec, Path(tmp) / "cold", args.jobs)
        for rep in range(args.repeats):
            order = (1, args.jobs) if rep % 2 == 0 else (args.jobs, 1)
            results = {}
            for jobs in order:
                seconds, results[jobs] = _timed(spec, Path(tmp) / f"r{rep}_j{jobs}", jobs)
                times[jobs].append(seconds)
            if results[1] != results[args.jobs]:
                raise SystemExit("the two arms gave different metrics: the executors must not change results")
    one, many = statistics.median(times[1]), statistics.median(times[args.jobs])
    print(f"study: {args.config} (ci), 8 runs of {args.epochs} epochs, 1 thread per run, {available_cores()} cores here")
    print(f"{'jobs':>5} {'median s':>9}   all repeats")
    for jobs in (1, args.jobs):
        print(f"{jobs:>5} {statistics.median(times[jobs]):9.2f}   {', '.join(f'{t:.2f}' for t in times[jobs])}")
    print(f"cold: the first jobs={args.jobs} study of this process (starts the fork server): {cold:.2f} s")
    print(f"speed-up jobs={args.jobs} vs jobs=1: {one / many:.2f}x (medians; identical metrics in both arms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
