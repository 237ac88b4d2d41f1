"""Phase tables: a loss's knobs x a grid x seeds -> the UFM minimiser's geometry, one row per cell and seed.

A loss joins by registering a :class:`PhaseLoss`: its knobs (name, type, accepted range, default) and a
``cell`` function that, given one value per knob and a seed, returns the measured quantities of one UFM
solve. :func:`phase_table` expands the grid, checks every value against its knob, runs the cells and
returns a tidy table with the columns of a study's table (``run_id``, ``seed``, ``epoch``, ``status``,
the swept knobs, the quantities), so that :func:`ufm.study.summarise` (mean and 95% interval over seeds
per grid point) and :func:`ufm.plotting.phase_diagram` read it unchanged.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable

import pandas as pd

from ufm.parallel import run_parallel

__all__ = ["Knob", "PhaseLoss", "PHASE_LOSSES", "register_phase_loss", "get_phase_loss", "check_grid",
           "phase_table", "phase_tasks"]



def _article(word: str) -> str:
    """'an int', 'a float'."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"

@dataclass(frozen=True)
class Knob:
    """One hyperparameter of a loss as the phase command sees it.

    Args:
        name: the name on the command line (``--grid NAME=...``).
        kind: ``float``, ``int`` or ``bool``.
        low, high: accepted closed range (``None``: unbounded); ``low_open``: ``low`` itself is refused.
        default: the value a cell uses when the knob is not swept.
        help: one line: what the knob is (shown in errors and ``--help``).
    """

    name: str
    kind: type
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def accepted(self) -> str:
        if self.kind is bool:
            return "true or false"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low_open or self.low is None else "["
        return f"{self.kind.__name__} in {left}{lo}, {hi}]"

    def parse(self, value):
        """``value`` (a string from the command line or a Python value) as this knob's type, range checked."""
        try:
            v = _cast(self.kind, value)
        except (TypeError, ValueError):
            raise ValueError(f"knob {self.name}={value!r} is not {_article(self.kind.__name__)}; accepted: "
                             f"{self.accepted()}") from None
        if self.kind is not bool:
            bad = (not math.isfinite(v) or (self.low is not None and (v < self.low or (self.low_open and v == self.low)))
                   or (self.high is not None and v > self.high))
            if bad:
                raise ValueError(f"knob {self.name}={value!r} is out of range; accepted: {self.accepted()}")
        return v


def _cast(kind: type, value):
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if isinstance(value, bool):
        raise TypeError(value)
    if kind is int:
        f = float(value)
        if f != int(f):
            raise ValueError(value)
        return int(f)
    return float(value)


@dataclass(frozen=True)
class PhaseLoss:
    """A loss as the phase command sees it.

    Args:
        name: the loss's name (``--loss NAME``).
        knobs: its knobs, in the order the table lists them.
        cell: ``cell(seed=..., relu=..., **knob values) -> dict`` of measured quantities (floats) and the
            ``solver_status`` (a string: the exact solver's geometry verdict, or the trainer's stop reason);
            must be deterministic given the seed.
        quantities: the quantities drawn as heatmaps by default.
        seeded: whether a cell depends on the seed (an exact solver's cell does not: its first seed only is
            run), or a function of the cell's knob values that says it.
        description: one paragraph: what one cell solves.
        validate: optional check of the swept knobs taken together (raises ValueError).
    """

    name: str
    knobs: tuple[Knob, ...]
    cell: Callable[..., dict]
    quantities: tuple[str, ...]
    seeded: bool | Callable[[dict], bool] = True
    description: str = ""
    validate: Callable[[dict], None] | None = None

    def knob(self, name: str) -> Knob:
        for k in self.knobs:
            if k.name == name:
                return k
        listing = ", ".join(f"{k.name} ({k.accepted()})" for k in self.knobs)
        raise ValueError(f"unknown knob {name!r} for loss {self.name!r}; its knobs: {listing}")


PHASE_LOSSES: dict[str, PhaseLoss] = {}


def register_phase_loss(spec: PhaseLoss) -> PhaseLoss:
    PHASE_LOSSES[spec.name] = spec
    return spec


def get_phase_loss(name: str) -> PhaseLoss:
    if name not in PHASE_LOSSES:
        raise ValueError(f"unknown loss {name!r} for a phase table; accepted: {sorted(PHASE_LOSSES)}")
    return PHASE_LOSSES[name]


def check_grid(loss: PhaseLoss, grid: dict[str, Iterable]) -> dict[str, list]:
    """Each swept knob's values parsed and range checked (in the order given, duplicates refused)."""
    out = {}
    for name, values in grid.items():
        knob = loss.knob(name)
        vals = [knob.parse(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
        if not vals:
            raise ValueError(f"knob {name!r} has no values")
        if len(set(vals)) != len(vals):
            raise ValueError(f"knob {name!r} has repeated values: {vals}")
        out[name] = vals
    if loss.validate is not None:
        loss.validate(out)
    return out


def _seeds(seeds) -> list[int]:
    seeds = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) else list(seeds)
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a positive count or a list of non-negative integers, got {seeds!r}")
    return seeds


def _is_seeded(spec: PhaseLoss, values: dict) -> bool:
    return bool(spec.seeded(values) if callable(spec.seeded) else spec.seeded)


def phase_tasks(spec: PhaseLoss, grid: dict[str, list], seeds) -> list[tuple[dict, int]]:
    """The (grid point, seed) pairs a phase table runs: the product of the swept knobs' values (``grid``
    already checked), every seed for a seeded cell, the first seed only otherwise."""
    seeds = _seeds(seeds)
    defaults = {k.name: k.default for k in spec.knobs}
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    return [(p, s) for p in points for s in (seeds if _is_seeded(spec, {**defaults, **p}) else seeds[:1])]


def _row(spec: PhaseLoss, point: dict, seed: int, measured: dict) -> dict:
    """One row of the table: the cell's identity, its swept knobs and what it measured."""
    clash = sorted(set(measured) & {"run_id", "seed", "epoch", "status", *point})
    if clash:
        raise RuntimeError(f"phase cell of {spec.name!r} returned reserved column(s) {clash}")
    slug = ",".join(f"{k}={v}" for k, v in point.items()) or "default"
    return {"run_id": f"{slug}/s{seed}", "seed": seed, "epoch": 0, "status": "complete", **point, **measured}


def phase_table(loss: str | PhaseLoss, grid: dict[str, Iterable], seeds=1, relu: bool = False,
                progress: Callable[[int, int, dict], None] | None = None, jobs: int = 1) -> pd.DataFrame:
    """Run every cell of ``grid`` (a product over the swept knobs) for every seed.

    Args:
        loss: a registered loss name or a :class:`PhaseLoss`.
        grid: ``{knob: values}``; knobs not swept take their defaults.
        seeds: a count (seeds 0..n-1) or a list; an unseeded cell runs the first seed only.
        relu: non-negative features (post-ReLU), for the losses where it matters.
        progress: called as ``progress(done, total, cell params)`` after each cell.
        jobs: worker processes that run the cells (:func:`ufm.parallel.run_parallel`: one thread each, the
            table that ``jobs=1`` gives in a process of one thread); the cell function must then pickle.

    Returns:
        One row per (grid point, seed): ``run_id``, ``seed``, ``epoch`` (0), ``status`` ("complete"),
        the swept knobs, the cell's quantities; ``attrs["keys"]`` lists the swept knobs.
    """
    spec = get_phase_loss(loss) if isinstance(loss, str) else loss
    grid = check_grid(spec, grid)
    defaults = {k.name: k.default for k in spec.knobs}
    tasks = phase_tasks(spec, grid, seeds)
    calls = [partial(spec.cell, seed=seed, relu=bool(relu), **{**defaults, **point}) for point, seed in tasks]
    done = []

    def report(i: int) -> None:
        done.append(i)
        if progress is not None:
            progress(len(done), len(tasks), tasks[i][0])

    measured = run_parallel(calls, jobs=jobs, on_done=report)
    rows = [_row(spec, point, seed, m) for (point, seed), m in zip(tasks, measured)]
    df = pd.DataFrame(rows)
    df.attrs["keys"] = list(grid)
    df.attrs["loss"] = spec.name
    return df
