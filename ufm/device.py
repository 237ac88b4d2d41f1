"""Device selection (CUDA when present, else CPU) and the number of CPU threads a process computes with.

On a CPU, results depend on the thread count (reductions are split differently), so reproducible runs
fix it: a study's workers, the notebooks and the tests all call :func:`set_threads`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits

__all__ = ["default_device", "set_threads", "limited_threads"]


def default_device(prefer: str | None = None) -> torch.device:
    """Return ``prefer`` if given, else ``cuda`` when available, else ``cpu``."""
    if prefer is not None and prefer != "auto":
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {prefer!r} was asked for but CUDA is not available on this machine")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_threads(threads) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    return threads


def set_threads(threads: int) -> None:
    """Fix the intra-op threads of torch and of the BLAS / OpenMP libraries for the rest of the process."""
    threads = _check_threads(threads)
    torch.set_num_threads(threads)
    threadpool_limits(threads)


@contextmanager
def limited_threads(threads: int):
    """:func:`set_threads` inside a ``with`` block; the previous counts are restored after it."""
    threads = _check_threads(threads)
    before = torch.get_num_threads()
    limiter = threadpool_limits(threads)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        limiter.restore_original_limits()
