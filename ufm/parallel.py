"""Independent computations over worker processes, each with a fixed thread count.

The UFM loops of the notebooks and the phase tables (many small single-threaded solves) leave all but one
core idle; :func:`run_parallel` spreads them over ``jobs`` processes. Every worker fixes its threads first
(``threads``, default 1), so a result is the one the same call gives in a process with that thread count:
on a CPU, a reduction's result depends on how many threads split it, and only this keeps the numbers
identical whether a loop runs here or in workers.

Workers are forked from a fork server that imported ``preload`` once (elsewhere: fresh interpreters), so
nothing of the calling process (its threads, a notebook kernel's state) leaks into them. What a worker
runs must pickle: module-level functions, ``functools.partial`` of them, and picklable arguments (e.g.
:class:`ufm.batching.EpochBatcher`, not a closure).
"""

from __future__ import annotations

import multiprocessing as mp
from contextlib import nullcontext
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Sequence

from ufm.device import _check_threads, limited_threads, set_threads

__all__ = ["run_parallel", "process_context", "broken_pool_message", "PRELOAD"]

# what the fork server imports once (about 4 s: torch, torchvision, ufm); the first pool of a process fixes it
PRELOAD = ("ufm.study.worker", "ufm.train", "ufm.solvers")


def process_context(preload: Sequence[str] = PRELOAD):
    """How worker processes start: where the OS has it, a fork server that has imported ``preload`` once
    forks every worker (a worker starts in a fraction of a second and inherits no threads or state of this
    process); elsewhere a fresh interpreter."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))
        return ctx
    return mp.get_context("spawn")


def _call(fn: Callable[[], object]):
    return fn()


def broken_pool_message(what: str) -> str:
    """Why a pool of workers broke, for a caller that runs ``what`` (e.g. "a study") with jobs > 1."""
    return (f"a worker process died (see its message above); a script that runs {what} with jobs > 1 must do so "
            "under `if __name__ == '__main__':` (Python's multiprocessing imports the main script in every worker), "
            "or the machine ran out of memory")


def run_parallel(calls: Iterable[Callable[[], object]], jobs: int = 1, threads: int | None = None,
                 on_done: Callable[[int], None] | None = None) -> list:
    """``[call() for call in calls]``, computed by ``jobs`` worker processes of ``threads`` threads each.

    Args:
        calls: zero-argument callables that pickle (``functools.partial(solve_gd, labels, ...)``).
        jobs: worker processes (1: here, in this process).
        threads: torch / BLAS threads of each worker (default 1); with ``jobs=1``, of this process during the
            calls (default: as they are), the counts coming back after.
        on_done: called with a call's index as soon as it has finished (for a progress bar).

    Returns:
        The results, in the order of ``calls``. The first call that raises raises here (the others are
        cancelled).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if threads is not None:
        _check_threads(threads)
    calls = list(calls)
    if jobs == 1:
        with limited_threads(threads) if threads is not None else nullcontext():
            out = []
            for i, c in enumerate(calls):
                out.append(c())
                if on_done is not None:
                    on_done(i)
            return out
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(calls)), mp_context=process_context(),
                               initializer=set_threads, initargs=(threads or 1,))
    try:
        futures = {pool.submit(_call, c): i for i, c in enumerate(calls)}
        try:
            for f in as_completed(futures):
                f.result()  # the first failure raises here
                if on_done is not None:
                    on_done(futures[f])
            return [f.result() for f in futures]
        except BrokenProcessPool:
            raise RuntimeError(broken_pool_message("run_parallel")) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
