"""Plotting: where figures go (per profile), and the two plots of a study.

* :func:`savefig` writes ``figures/<name>.png`` for the ``ci`` profile (the committed figures) and
  ``runs/figures/<profile>/<name>.png`` for any other, so a ``paper`` run never overwrites them.
* :func:`plot_curves`: a metric over epochs, the mean over seeds with its 95% t-band, one curve per
  value of a swept key.
* :func:`phase_diagram`: a heatmap of a final metric over two swept keys, each cell printed with its
  mean and the half-width of its 95% interval.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["repo_root", "figures_dir", "savefig", "plot_curves", "phase_diagram", "epoch_band"]


def repo_root() -> Path:
    """The project root (the folder holding pyproject.toml above this package, or the cwd's)."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for p in (start, *start.parents):
            if (p / "pyproject.toml").exists() and (p / "ufm").is_dir():
                return p
    return Path.cwd()


def figures_dir(profile: str = "ci") -> Path:
    """``ci``: ``$UFM_FIGURES`` if set, else ``<repo>/figures``; any other profile:
    ``<repo>/runs/figures/<profile>``. Created when missing."""
    if not isinstance(profile, str) or not profile:
        raise ValueError(f"profile must be a profile name such as 'ci' or 'paper', got {profile!r}")
    if profile == "ci":
        d = Path(os.environ.get("UFM_FIGURES", repo_root() / "figures"))
    else:
        d = repo_root() / "runs" / "figures" / profile
    d.mkdir(parents=True, exist_ok=True)
    return d


def savefig(fig, name: str, profile: str = "ci", dpi: int = 120) -> Path:
    """Save ``fig`` as ``<figures_dir(profile)>/<name>.png`` (no timestamp in the metadata, so the bytes
    depend only on the figure) and return the path."""
    path = figures_dir(profile) / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def epoch_band(df, metric: str, level: float = 0.95):
    """Per epoch: the mean of ``metric`` over runs and its t-interval (``low``/``high`` NaN-free: equal
    to the mean where fewer than 2 runs have a value). Epochs where no run evaluated it are left out.

    Returns:
        a DataFrame with columns ``epoch``, ``mean``, ``low``, ``high``, ``n``.
    """
    import pandas as pd

    from ufm import stats

    rows = []
    for epoch, part in df.groupby("epoch", sort=True):
        x = part[metric].dropna().to_numpy(dtype=float)
        if x.size == 0:
            continue
        ci = stats.mean_ci(x, level) if x.size > 1 else None
        m = float(x.mean())
        rows.append({"epoch": epoch, "mean": m, "low": ci.low if ci else m, "high": ci.high if ci else m, "n": x.size})
    return pd.DataFrame(rows, columns=["epoch", "mean", "low", "high", "n"])


def plot_curves(df, metric: str, by: str | None = None, ax=None, level: float = 0.95, label=None, **line_kw):
    """``metric`` over epochs from a study's table (:func:`ufm.study.collect`): for each value of the
    swept key ``by`` (all runs together when None) the mean over seeds and a shaded 95% t-band.

    Args:
        label: callable value -> legend label (default ``"<key> = <value>"``).
    Returns:
        the axes.
    """
    import matplotlib.pyplot as plt

    if metric not in df.columns:
        raise ValueError(f"metric {metric!r} is not in the table; columns: {list(df.columns)}")
    if by is not None and by not in df.columns:
        raise ValueError(f"by={by!r} is not a column of the table (swept keys: {df.attrs.get('keys', [])})")
    ax = ax if ax is not None else plt.gca()
    groups = df.groupby(by, sort=False) if by is not None else [(None, df)]
    for value, part in groups:
        band = epoch_band(part, metric, level)
        text = None if by is None else (label(value) if label else f"{by.rsplit('.', 1)[-1]} = {value}")
        (line,) = ax.plot(band["epoch"], band["mean"], label=text, **line_kw)
        ax.fill_between(band["epoch"], band["low"], band["high"], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if by is not None:
        ax.legend()
    return ax


def phase_diagram(df, x: str, y: str, metric: str, ax=None, level: float = 0.95, cmap: str = "viridis", fmt=None):
    """Heatmap of the final ``metric`` over swept keys ``x`` (columns) and ``y`` (rows) of a study's
    table, each cell annotated with ``mean`` and ``± half-width`` of its 95% interval over seeds.

    Returns:
        (axes, the grid of means as a DataFrame indexed by y, columns x).
    """
    import matplotlib.pyplot as plt

    from ufm.study.report import format_interval
    from ufm.study.results import summarise

    keys = df.attrs.get("keys", [])
    for name, key in (("x", x), ("y", y)):
        if key not in keys:
            raise ValueError(f"{name}={key!r} is not a swept key of the study; swept keys: {keys}")
    cells = summarise(df, [metric], level)
    xs = list(dict.fromkeys(c["params"][x] for c in cells))
    ys = list(dict.fromkeys(c["params"][y] for c in cells))
    means = np.full((len(ys), len(xs)), np.nan)
    ax = ax if ax is not None else plt.gca()
    for c in cells:
        i, j = ys.index(c["params"][y]), xs.index(c["params"][x])
        st = c["metrics"][metric]
        if st["mean"] is None:
            continue
        means[i, j] = st["mean"]
        text = fmt(st) if fmt else format_interval(st["mean"], st["half_width"]).replace(" ± ", "\n± ")
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color="w")
    lo, hi = (np.nanmin(means), np.nanmax(means)) if np.isfinite(means).any() else (0.0, 1.0)
    if lo == hi:  # a constant map (e.g. the orthogonal frame in every cell): a colour scale around it
        lo, hi = lo - 0.5 * abs(lo) - 1e-12, hi + 0.5 * abs(hi) + 1e-12
    im = ax.imshow(np.ma.masked_invalid(means), cmap=cmap, aspect="auto", origin="lower", vmin=lo, vmax=hi)
    ax.figure.colorbar(im, ax=ax, label=metric)
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    import pandas as pd

    return ax, pd.DataFrame(means, index=pd.Index(ys, name=y), columns=pd.Index(xs, name=x))
