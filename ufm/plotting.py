"""Thin plotting helpers: where figures go, and a consistent style."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The project root (the folder holding pyproject.toml above this package, or the cwd's)."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for p in (start, *start.parents):
            if (p / "pyproject.toml").exists() and (p / "ufm").is_dir():
                return p
    return Path.cwd()


def figures_dir() -> Path:
    """``$UFM_FIGURES`` if set, else ``<repo>/figures``; created when missing."""
    d = Path(os.environ.get("UFM_FIGURES", repo_root() / "figures"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def savefig(fig, name: str, dpi: int = 120) -> Path:
    """Save ``fig`` as ``figures/<name>.png`` (deterministic metadata) and return the path."""
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path
