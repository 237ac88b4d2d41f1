"""A cache of complete runs that several studies share: one computation trained once per cache.

Studies in different folders often hold the same run: notebook 02's SCL arm at R = 10, notebook 06's
``tau = 0.15`` and notebook 07's middle temperature are one config, one seed. With a cache folder
(``run_study(..., cache=DIR)``, or the environment variable ``UFM_RUN_CACHE``), a study looks there before
training a run, copies a complete run of the same computation into its own folder instead of training it, and
stores every run it completes: its worker stores the run as soon as it is complete, and looks in the cache once
more just before it trains, so that studies running at the same time (two notebooks executed at once, say) share
runs while they run, not only at their ends. The test command and the figures job give each invocation one fresh cache, so
every number still comes from the current code, computed once.

The key is :func:`ufm.study.spec.run_hash` (every config field that decides what the run computes) plus the
torch thread count and the device field: CPU numbers depend on the thread count, and a GPU run is not a CPU
run. A cache entry is written complete or not at all (copied to a temporary name, then renamed), so two
processes that finish the same run keep one copy and a killed one leaves no half entry.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from ufm.study.spec import run_hash
from ufm.train import TrainConfig, run_state

__all__ = ["CACHE_ENV", "cache_folder", "cache_key", "fetch_run", "store_run"]

CACHE_ENV = "UFM_RUN_CACHE"


def cache_folder(cache=None) -> Path | None:
    """The cache folder: ``cache`` if given, else ``$UFM_RUN_CACHE`` if set and not empty, else None (no cache)."""
    value = cache if cache is not None else os.environ.get(CACHE_ENV) or None
    return Path(value).resolve() if value is not None else None


def cache_key(config: TrainConfig, threads: int) -> str:
    """``<run hash>-t<threads>-<device>``: the computation, the thread count and the device it ran with."""
    device = "".join(c if c.isalnum() else "-" for c in str(config.device))
    return f"{run_hash(config)}-t{int(threads)}-{device}"


def fetch_run(cache: Path, key: str, run_dir: Path, epochs: int) -> bool:
    """Copy the complete cached run ``key`` into ``run_dir`` (replacing a partial run there).

    Returns:
        True if the cache held the run complete (``run_dir`` now holds it), False otherwise.
    """
    entry = cache / key
    if not entry.is_dir() or run_state(entry, epochs).status != "complete":
        return False
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(entry, run_dir)
    return True


def store_run(cache: Path, key: str, run_dir: Path) -> None:
    """Put the complete run in ``run_dir`` into the cache as ``key`` (kept as is if the key is there)."""
    entry = cache / key
    if entry.exists():
        return
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{key}.{uuid.uuid4().hex}"
    shutil.copytree(run_dir, tmp)
    try:
        tmp.rename(entry)
    except OSError:  # another process stored it first
        shutil.rmtree(tmp, ignore_errors=True)
