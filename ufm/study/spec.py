"""What a study is: a base config x a grid x seeds, expanded into runs with stable ids.

A study is ``StudySpec(config, profile, overrides, grid, seeds)``: the config file (name in
``ufm/configs`` or a path) with a profile and base overrides, crossed with every combination of the
grid's values (any config field, dotted keys such as ``loss_kwargs.temperature`` included) and with
every seed. :meth:`StudySpec.expand` resolves each combination into a validated
:class:`~ufm.train.TrainConfig` and gives it a run id::

    <swept values>_s<seed>-<hash>        e.g.  delta_d=1.5_s2-9c1f0e7a2b

The hash is the first 10 hex digits of the SHA-256 of the resolved config's fields that decide what
the run computes (every field but :data:`ufm.train.config.RUN_IDENTITY_FREE`: device, data folder,
progress display, ...). The same spec therefore always gives the same ids, on any machine, and two
runs share a folder only if they compute the same thing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field

from ufm.train.config import RUN_IDENTITY_FREE, TrainConfig, load_config, parse_overrides

__all__ = ["StudySpec", "RunSpec", "parse_grid", "parse_grid_values", "run_hash"]

_SAFE = re.compile(r"[^A-Za-z0-9.+\-]+")
_MAX_SLUG = 80


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: its id, its swept values (keyed as in the grid), its seed and config."""

    run_id: str
    params: dict
    seed: int
    config: TrainConfig

    def to_dict(self) -> dict:
        return {"id": self.run_id, "params": dict(self.params), "seed": self.seed}


def run_hash(cfg: TrainConfig) -> str:
    """10 hex digits of the SHA-256 of the fields of ``cfg`` that decide what the run computes."""
    data = {k: v for k, v in cfg.to_dict().items() if k not in RUN_IDENTITY_FREE}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _slug(params: dict, seed: int) -> str:
    parts = [f"{key.rsplit('.', 1)[-1]}={_SAFE.sub('-', json.dumps(v) if not isinstance(v, str) else v)}"
             for key, v in params.items()]
    text = "_".join(parts + [f"s{seed}"])
    return text if len(text) <= _MAX_SLUG else text[: _MAX_SLUG - 1] + "~"


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and braces: ``"[1, 2],[3]" -> ["[1, 2]", "[3]"]``."""
    items, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [i.strip() for i in items]


def parse_grid_values(key: str, text: str) -> list:
    """``"1.0,1.5"`` -> ``[1.0, 1.5]`` (each value YAML-parsed as a ``key=value`` override)."""
    items = _split_top_level(text)
    if any(not i for i in items):
        raise ValueError(f"grid {key}={text!r}: empty value in the list (write KEY=V1,V2,...)")
    return [parse_overrides([f"{key}={i}"])[key] for i in items]


def parse_grid(items) -> dict[str, list]:
    """``["loss_kwargs.delta_d=1.0,1.5", "lr=0.1,0.05"]`` -> ``{"loss_kwargs.delta_d": [1.0, 1.5], "lr": [...]}``."""
    grid: dict[str, list] = {}
    for item in items or []:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"a grid entry must look like KEY=V1,V2,..., got {item!r}")
        key, text = (s.strip() for s in item.split("=", 1))
        if not key:
            raise ValueError(f"a grid entry has an empty key: {item!r}")
        if key in grid:
            raise ValueError(f"grid key {key!r} is given twice; list all its values once: {key}=V1,V2,...")
        grid[key] = parse_grid_values(key, text)
    return grid


def _check_seeds(seeds) -> tuple[int, ...]:
    if isinstance(seeds, bool):
        raise ValueError(f"seeds must be a number of seeds >= 1 or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1 (the number of seeds per grid point), got {seeds}")
        return tuple(range(seeds))
    try:
        out = tuple(seeds)
    except TypeError:
        raise ValueError(f"seeds must be a number of seeds >= 1 or a list of seeds, got {seeds!r}") from None
    if not out or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in out):
        raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {list(out)!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct, got {list(out)!r}")
    return out


def _check_grid(grid: dict, overrides: dict) -> dict[str, tuple]:
    if not isinstance(grid, dict):
        raise ValueError(f"grid must map config keys to lists of values, got {grid!r}")
    out = {}
    for key, values in grid.items():
        if key == "seed":
            raise ValueError("'seed' cannot be a grid key: give the seeds with seeds= (--seeds N)")
        if key in overrides:
            raise ValueError(f"{key!r} is both a base override ({overrides[key]!r}) and a grid key: keep one")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"grid[{key!r}] must be a list of values, got {values!r}")
        values = tuple(values)
        if not values:
            raise ValueError(f"grid[{key!r}] is empty: give at least one value")
        canon = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(canon)) != len(canon):
            raise ValueError(f"grid[{key!r}] repeats a value: {list(values)!r}")
        out[key] = values
    return out


@dataclass(frozen=True)
class StudySpec:
    """A base config x a grid x seeds (see the module docstring).

    Args:
        config: config name in ``ufm/configs`` or a path to a YAML file.
        profile: ``ci`` or ``paper`` (the config's profile section).
        overrides: base ``key=value`` overrides (a dict or a list of strings), applied to every run.
        grid: key -> list of values; every combination is a grid point.
        seeds: a number of seeds N (0..N-1) or a list of seeds; every grid point runs every seed.
    """

    config: str
    profile: str = "ci"
    overrides: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    seeds: tuple = (0,)

    def __post_init__(self):
        if not isinstance(self.config, str) or not self.config:
            raise ValueError(f"config must be a config name or a path, got {self.config!r}")
        overrides = parse_overrides(self.overrides)
        if "seed" in overrides:
            raise ValueError("'seed' cannot be a base override of a study: give the seeds with seeds= (--seeds N)")
        object.__setattr__(self, "config", str(self.config))
        object.__setattr__(self, "overrides", overrides)
        object.__setattr__(self, "grid", _check_grid(self.grid, overrides))
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))

    @property
    def keys(self) -> list[str]:
        return list(self.grid)

    def points(self) -> list[dict]:
        """Every grid point as {key: value} (the cartesian product, in grid order)."""
        return [dict(zip(self.grid, combo)) for combo in itertools.product(*self.grid.values())]

    def base_config(self) -> TrainConfig:
        return load_config(self.config, self.profile, self.overrides)

    def expand(self) -> list[RunSpec]:
        """The runs: every grid point x every seed, each config resolved and validated."""
        base = self.base_config()
        runs, seen = [], {}
        for point in self.points():
            try:
                cfg_point = base.replace(**point)
                cfg_point.validate()
            except ValueError as err:
                shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
                raise ValueError(f"grid point {shown}: {err}") from None
            for seed in self.seeds:
                cfg = cfg_point.replace(seed=seed)
                run_id = f"{_slug(point, seed)}-{run_hash(cfg)}"
                if run_id in seen:
                    raise ValueError(f"grid points {seen[run_id]} and {point} give the same run (id {run_id}): "
                                     "a value is repeated in another spelling")
                seen[run_id] = point
                runs.append(RunSpec(run_id, point, seed, cfg))
        return runs

    def to_dict(self) -> dict:
        return {"config": self.config, "profile": self.profile, "overrides": dict(self.overrides),
                "grid": {k: list(v) for k, v in self.grid.items()}, "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, data: dict) -> "StudySpec":
        return cls(config=data["config"], profile=data.get("profile", "ci"), overrides=data.get("overrides", {}),
                   grid=data.get("grid", {}), seeds=tuple(data.get("seeds", (0,))))

    def base_differences(self, other: "StudySpec") -> list[str]:
        """What differs from ``other`` in what a study folder is for: config, profile, base overrides,
        grid keys (the seeds and the grid's values may change: the study then grows or shrinks)."""
        diffs = []
        for name in ("config", "profile", "overrides"):
            a, b = getattr(other, name), getattr(self, name)
            if a != b:
                diffs.append(f"{name}: {a!r} in the folder vs {b!r} now")
        if list(other.grid) != list(self.grid):
            diffs.append(f"grid keys: {list(other.grid)} in the folder vs {list(self.grid)} now")
        return diffs
