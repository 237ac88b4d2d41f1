"""``python -m ufm phase``: a loss's knobs x a grid x seeds -> a table (CSV), heatmaps (PNG), JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ufm.guidelines.base import PHASE_LOSSES, check_grid, get_phase_loss, phase_table, phase_tasks
from ufm.study.cli import _count_parser, _seeds  # the same --seeds parser as sweep

TABLE_FILE = "phase.csv"

PHASE_HELP = """\
Map a loss's hyperparameters to the geometry of the unconstrained-features minimiser: every cell of the grid
is solved (exactly where an exact solver applies, by seeded gradient descent elsewhere) for every seed; the
table (one row per cell and seed) goes to DIR/phase.csv, one heatmap per measured quantity to DIR/<q>.png
(mean over seeds; 95% interval in each cell), and the summary to stdout (--json: one JSON object).

knobs:
{knobs}
example:
  python -m ufm phase --loss supcon --grid temperature=0.05,0.1,0.5 --grid ratio=1,10,100 --out runs/phase
"""


def _knob_listing() -> str:
    lines = []
    for name, spec in PHASE_LOSSES.items():
        lines.append(f"  {name}: " + "; ".join(f"{k.name} ({k.accepted()}, default {k.default})" for k in spec.knobs))
    return "\n".join(lines) + "\n"


def _grid_item(text: str) -> tuple[str, list[str]]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--grid must be KNOB=V1,V2,..., got {text!r}")
    key, values = text.split("=", 1)
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not key.strip() or not vals:
        raise argparse.ArgumentTypeError(f"--grid must be KNOB=V1,V2,..., got {text!r}")
    return key.strip(), vals


def _plain(v):
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def summary_cells(df) -> list[dict]:
    """One entry per grid point: the knob values, the seeds run, the statuses seen and, per numeric
    quantity, the mean and the 95% t-interval over seeds (``ufm.study.summarise``)."""
    from ufm.study.results import summarise

    keys = df.attrs["keys"]
    skip = {"run_id", "seed", "epoch", "status", "solver_status", *keys}
    numeric = [c for c in df.columns if c not in skip and np.issubdtype(df[c].dtype, np.number)]
    cells = summarise(df, numeric) if numeric else []
    groups = df.groupby(keys, sort=False) if keys else [((), df)]
    out = []
    for cell, (_, part) in zip(cells, groups):
        entry = {**{k: _plain(v) for k, v in cell["params"].items()}, "n": cell["n"],
                 "solver_status": sorted(set(part["solver_status"].astype(str)))
                 if "solver_status" in part else []}
        for q, st in cell["metrics"].items():
            entry[q] = _plain(st["mean"])
            entry[f"{q}_half_width"] = _plain(st["half_width"])
        out.append(entry)
    return out


def format_cells(cells: list[dict], keys: list[str]) -> str:
    """The summary as a text table: knobs, seeds, solver status, each quantity as mean ± half-width."""
    import pandas as pd

    from ufm.study.report import format_interval

    rows = []
    for c in cells:
        row = {k: c[k] for k in keys}
        row["n"] = c["n"]
        row["solver_status"] = "/".join(c["solver_status"])
        for q in [q for q in c if q.endswith("_half_width")]:
            name = q[: -len("_half_width")]
            row[name] = format_interval(c[name], c[q]) if c[name] is not None else "-"
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def draw_heatmaps(df, out: Path, quantities) -> list[Path]:
    """One PNG per quantity: x = the last swept knob, y = the one before it (a single row when only one
    knob is swept); further knobs become one panel per combination of their values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ufm.plotting import phase_diagram

    keys = list(df.attrs["keys"])
    if not keys:
        return []
    frame = df.copy()
    if len(keys) == 1:
        frame["_"] = ""
        x, y, rest = keys[0], "_", []
    else:
        x, y, rest = keys[-1], keys[-2], keys[:-2]
    frame.attrs = {**df.attrs, "keys": [*rest, y, x]}
    panels = list(frame.groupby(rest, sort=False)) if rest else [((), frame)]
    paths = []
    for q in quantities:
        if q not in frame.columns or not frame[q].notna().any():
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.8), squeeze=False)
        for ax, (vals, part) in zip(axes[0], panels):
            part = part.copy()
            part.attrs = {**frame.attrs, "keys": [y, x]}
            phase_diagram(part, x, y, q, ax=ax)
            vals = vals if isinstance(vals, tuple) else (vals,)
            title = ", ".join(f"{k}={v}" for k, v in zip(rest, vals))
            ax.set_title(f"{df.attrs['loss']}: {q}" + (f" ({title})" if title else ""), fontsize=9)
            if y == "_":
                ax.set_ylabel("")
        fig.tight_layout()
        path = out / f"{q}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def run_phase(args) -> int:
    try:
        spec = get_phase_loss(args.loss)
        grid = check_grid(spec, dict(args.grid or []))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} exists and is not a directory", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    from ufm.study.progress import RunProgress

    bar = RunProgress(len(phase_tasks(spec, grid, args.seeds)), enabled=not args.quiet, label=f"phase {spec.name}")

    def progress(_done, _total, point):
        bar.finished(SimpleNamespace(status="complete", run_id=",".join(f"{k}={v}" for k, v in point.items())))

    try:
        df = phase_table(spec, grid, seeds=args.seeds, relu=args.relu, progress=progress, jobs=args.jobs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    df.to_csv(out / TABLE_FILE, index=False)
    pngs = draw_heatmaps(df, out, spec.quantities)
    cells = summary_cells(df)
    if args.json:
        print(json.dumps({"loss": spec.name, "relu": bool(args.relu), "seeds": args.seeds, "knobs": list(grid),
                          "table": str(out / TABLE_FILE), "heatmaps": [str(p) for p in pngs], "cells": cells}))
    else:
        print(format_cells(cells, list(grid)))
        print(f"table: {out / TABLE_FILE}; heatmaps: {', '.join(p.name for p in pngs) or 'none'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("phase", help="phase table of a loss's hyperparameters on the UFM",
                              description=PHASE_HELP.format(knobs=_knob_listing()),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loss", required=True, help=f"one of {sorted(PHASE_LOSSES)}")
    p.add_argument("--grid", action="append", type=_grid_item, metavar="KNOB=V1,V2,...",
                   help="a swept knob and its values (repeat for more knobs)")
    p.add_argument("--seeds", type=_seeds, default=1, help="seeds per cell (exact cells run once)")
    p.add_argument("--relu", action="store_true", help="non-negative (post-ReLU) features")
    p.add_argument("--jobs", type=_count_parser("--jobs", "worker processes"), default=1, metavar="J",
                   help="worker processes of one thread each, for the cells (default 1: this process)")
    p.add_argument("--out", required=True, help="folder for phase.csv and the heatmaps")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress report")
    p.set_defaults(func=run_phase)
