"""``python -m ufm sweep`` and ``python -m ufm report``: run a study, and read one back.

``register(subparsers)`` adds both sub-commands to the project's command line (``ufm/cli.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ufm.train.config import PROFILES, available_configs

SWEEP_HELP = """\
Run a study: a config x a grid of values x seeds, each run a resumable `train` in DIR/<run id>/.
Running the same command again trains only what is missing or was interrupted; complete runs are
never retrained. At the end: a table of the final-epoch metrics per grid point, mean ± half-width of
the 95% t-interval over seeds (or, with --json, one JSON object: `runs` and `summary`).

examples:
  python -m ufm sweep --config large_margin --grid loss_kwargs.delta_d=1.0,1.5 --seeds 5 --jobs 2 --out runs/dd
  python -m ufm sweep --config supcon --grid loss_kwargs.temperature=0.1,0.5 --grid ratio=1,10 --seeds 5 \\
      --out runs/tau epochs=40
  ray start --head --port 6379 ...   # then, from any node that sees the study folder:
  python -m ufm sweep --config supcon --profile paper --grid ratio=10,100 --seeds 5 --out /shared/scl \\
      --backend ray --address HEAD:6379 --num-gpus 1
"""

REPORT_HELP = """\
Print the table of a study's final-epoch metrics (mean ± half-width of the 95% interval per grid point),
or, with --compare KEY=A,B, arm B against arm A paired by seed: mean difference B - A, its 95% interval,
paired t and Wilcoxon p-values, and how many seeds went each way. Works on a half-finished study (it
says which runs are missing).

examples:
  python -m ufm report runs/dd
  python -m ufm report runs/dd --compare loss_kwargs.delta_d=1.0,1.5 --metric test_acc --json
"""


def _count_parser(flag: str, what: str):
    """An argparse type: an integer >= 1 (``what``: what it counts), with an error that names ``flag``."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number of {what} >= 1, got {text!r}") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be >= 1, got {n}")
        return n
    return parse


_seeds = _count_parser("--seeds", "seeds")


def _runs_json(study, df) -> list[dict]:
    from ufm.study.results import final_rows

    fin = final_rows(df).set_index("run_id") if len(df) else None
    failed, partial, missing = (set(df.attrs.get(k, [])) for k in ("failed", "partial", "missing"))
    out = []
    for run in study.runs:
        status = ("failed" if run.run_id in failed else "partial" if run.run_id in partial
                  else "missing" if run.run_id in missing else "complete")
        final = None
        if status == "complete" and fin is not None:
            row = fin.loc[run.run_id]
            final = {k: _json_value(row[k]) for k in fin.columns
                     if k not in (*study.spec.keys, "seed", "status") and _json_value(row[k]) is not None}
        out.append({"id": run.run_id, "params": run.params, "seed": run.seed, "status": status, "final": final})
    return out


def _json_value(v):
    import math

    if hasattr(v, "item"):
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _collect(study):
    from ufm.study.results import IncompleteStudyWarning, collect

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IncompleteStudyWarning)
        df = collect(study)
    for w in caught:
        print(f"[study] {w.message}", file=sys.stderr)
    return df


def run_sweep(args) -> int:
    from pathlib import Path

    from ufm.study import Study, StudySpec, format_summary, metric_columns, parse_grid, summarise

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file, not a study folder: choose another --out")
    spec = StudySpec(args.config, args.profile, args.overrides, parse_grid(args.grid),
                     tuple(range(args.first_seed, args.first_seed + args.seeds)))
    study = Study(spec, args.out)
    todo = len(study.pending())
    points = len(spec.points())
    where = (f"{args.jobs or 1} job(s) here" if args.backend == "local" else f"Ray at {args.address}")
    print(f"[sweep] {len(study.runs)} runs ({points} grid point(s) x {len(spec.seeds)} seed(s)) in {study.root}: "
          f"{len(study.runs) - todo} complete, {todo} to run ({where})", file=sys.stderr)
    outcomes = study.run(args.backend, jobs=args.jobs, threads=args.threads, address=args.address,
                         num_gpus=args.num_gpus, progress=not args.quiet)
    for o in outcomes:
        if o.status != "complete":
            print(f"[sweep] run {o.run_id} failed: {o.error} (details: {study.root / o.run_id}/error.txt)", file=sys.stderr)
    df = _collect(study)
    metrics = metric_columns(df, args.metric) if len(df) else []
    summary = summarise(df, metrics) if len(df) else []
    if args.json:
        print(json.dumps({"study": str(study.root), "runs": _runs_json(study, df), "summary": summary}, allow_nan=False))
    else:
        print(format_summary(summary, metrics))
    complete = sum(r.status == "complete" for r in study.states().values())
    return 0 if complete == len(study.runs) else 1


def run_report(args) -> int:
    from ufm.study import Study, compare, format_comparison, format_summary, metric_columns, parse_grid_values, summarise

    study = Study.open(args.dir)
    df = _collect(study)
    if args.compare:
        key, sep, text = args.compare.partition("=")
        values = parse_grid_values(key.strip(), text) if sep else []
        if len(values) != 2:
            raise ValueError(f"--compare must look like KEY=A,B (two values of a swept key), got {args.compare!r}")
        result = compare(df, key.strip(), values[0], values[1], args.metric[0] if args.metric else "test_acc")
        print(json.dumps({"study": str(study.root), "comparisons": result}, allow_nan=False) if args.json
              else format_comparison(result))
        return 0
    metrics = metric_columns(df, args.metric) if len(df) else []
    summary = summarise(df, metrics) if len(df) else []
    print(json.dumps({"study": str(study.root), "runs": _runs_json(study, df), "summary": summary}, allow_nan=False)
          if args.json else format_summary(summary, metrics))
    return 0


def register(subparsers) -> None:
    """Add ``sweep`` and ``report`` to an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser("sweep", help="run a study: a config x a grid x seeds, resumable, with a summary table",
                              description=SWEEP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help=f"config name in ufm/configs ({', '.join(available_configs())}) or a path to a YAML file")
    p.add_argument("--profile", default="ci", choices=list(PROFILES), help="profile of the config (default ci)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a swept key and its values (repeat for more keys; every combination runs), e.g. "
                        "loss_kwargs.temperature=0.1,0.5 or milestones=[10],[20]")
    p.add_argument("--seeds", type=_seeds, default=1, metavar="N", help="seeds per grid point (default 1)")
    p.add_argument("--first-seed", type=int, default=0, metavar="S", help="seeds are S, S+1, ..., S+N-1 (default 0)")
    p.add_argument("--out", required=True, help="the study folder (created; reused to resume)")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: worker processes here (default); ray: tasks on a running Ray cluster (--address)")
    p.add_argument("--jobs", type=int, default=None, metavar="J",
                   help="runs at once (local, default 1; ray: default as many as the cluster's CPUs / GPUs hold)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch threads per run (local default: cores // jobs; ray default 1; CPU results depend on it)")
    p.add_argument("--address", default=None, help="ray: HOST:PORT of the head (`ray start --head` prints it) or 'auto'")
    p.add_argument("--num-gpus", type=float, default=0, metavar="G", help="ray: GPUs per run (default 0)")
    p.add_argument("--metric", action="append", default=None, metavar="M",
                   help="a final metric for the table (repeatable; default: the accuracies and the geometry)")
    p.add_argument("--json", action="store_true", help="print one JSON object (runs and summary) instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress report on stderr")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="base overrides for every run, e.g. epochs=24")
    p.set_defaults(func=run_sweep)

    r = subparsers.add_parser("report", help="the summary table, or a paired comparison, of a study folder",
                              description=REPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("dir", help="a study folder (written by `sweep`)")
    r.add_argument("--metric", action="append", default=None, metavar="M",
                   help="metric(s) for the table; with --compare the one compared (default test_acc)")
    r.add_argument("--compare", default=None, metavar="KEY=A,B", help="compare arm B with arm A of a swept key, paired by seed")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(func=run_report)
