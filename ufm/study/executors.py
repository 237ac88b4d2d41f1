"""Where the runs of a study execute: worker processes on this machine, or tasks on a Ray cluster.

Both executors take the same list of :class:`~ufm.study.worker.RunTask` and yield one
:class:`~ufm.study.worker.RunOutcome` per task as it finishes; the study code above them is the same.

* :class:`LocalExecutor` (default): ``jobs`` worker processes (forked from a clean fork server, or
  spawned, so safe from a notebook or a process that already holds threads), each run with ``threads``
  torch threads (default ``cores // jobs``). ``jobs=1`` trains in this process (no start-up cost; threads
  restored after).
* :class:`RayExecutor`: each run is a Ray task on an existing cluster (``address``), with ``threads``
  CPUs and ``num_gpus`` GPUs; the study folder must be on storage that every node sees.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator

from ufm.device import limited_threads
from ufm.parallel import broken_pool_message, process_context
from ufm.study.worker import RunOutcome, RunTask, execute_run

__all__ = ["LocalExecutor", "RayExecutor", "make_executor", "available_cores", "BACKENDS"]

BACKENDS = ("local", "ray")
_RAY_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 as the node address


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class LocalExecutor:
    """``jobs`` processes on this machine, ``threads`` torch threads each (default ``cores // jobs``)."""

    name = "local"

    def __init__(self, jobs: int = 1, threads: int | None = None):
        self.jobs = _positive_int("jobs", jobs)
        self.threads = _positive_int("threads", threads) if threads is not None else max(1, available_cores() // self.jobs)

    @property
    def slots(self) -> int:
        return self.jobs

    def run(self, tasks: list[RunTask], on_start: Callable[[RunTask], None] | None = None) -> Iterator[RunOutcome]:
        if not tasks:
            return
        if self.jobs == 1:
            yield from self._inline(tasks, on_start)
        else:
            yield from self._pool(tasks, on_start)

    def _inline(self, tasks, on_start):
        with limited_threads(self.threads):  # this process's thread counts come back afterwards
            for task in tasks:
                if on_start:
                    on_start(task)
                yield execute_run(task)

    def _pool(self, tasks, on_start):
        pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(tasks)), mp_context=_worker_context())
        queue, running = list(tasks), {}

        def refill():  # submit only what can start now, so that "running" is honest
            while queue and len(running) < self.jobs:
                task = queue.pop(0)
                try:
                    running[pool.submit(execute_run, task)] = task
                except BrokenProcessPool:
                    raise RuntimeError(_BROKEN_POOL) from None
                if on_start:
                    on_start(task)

        try:
            refill()
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                outcomes = [_outcome_of(fut, running.pop(fut)) for fut in finished]
                refill()
                yield from outcomes
        finally:
            for fut in running:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


_BROKEN_POOL = broken_pool_message("a study")


def _worker_context():
    """How worker processes start (:func:`ufm.parallel.process_context`): forked from a fork server that has
    imported the training code once, where the OS has one; fresh interpreters elsewhere."""
    return process_context()


def _outcome_of(fut, task: RunTask) -> RunOutcome:
    """The worker's outcome (a failed run is an outcome); a worker process that died breaks the pool: an
    error that says what usually causes it (the runs done so far are kept; the study resumes)."""
    try:
        return fut.result()
    except BrokenProcessPool:
        raise RuntimeError(_BROKEN_POOL) from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail within seconds, with a clear message, when nothing listens at ``host:port``."""
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--address must be HOST:PORT of a Ray head (or 'auto'), got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ValueError(f"cannot reach a Ray cluster at {address} ({err.strerror or err}); start one with "
                         "`ray start --head --port PORT` and pass the address it prints") from None


class RayExecutor:
    """Each run a Ray task on the cluster at ``address`` (``threads`` CPUs and ``num_gpus`` GPUs a run)."""

    name = "ray"

    def __init__(self, address: str | None = None, threads: int | None = None, num_gpus: float = 0, jobs: int | None = None):
        if address is None:
            raise ValueError("the ray backend needs the address of a running cluster (--address HOST:PORT, or 'auto')")
        self.address = str(address)
        self.threads = _positive_int("threads", threads) if threads is not None else 1
        if isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float)) or num_gpus < 0:
            raise ValueError(f"num_gpus must be a number >= 0 (GPUs per run), got {num_gpus!r}")
        self.num_gpus = num_gpus
        self.jobs = _positive_int("jobs", jobs) if jobs is not None else None

    @property
    def slots(self) -> int | None:
        return self.jobs

    def _connect(self):
        _check_reachable(self.address)
        loopback = self.address.rpartition(":")[0].strip("[]") in ("127.0.0.1", "localhost", "::1")
        if loopback and "ray" not in sys.modules:
            # a head on the loopback address (a local-only cluster): Ray must not swap 127.0.0.1 for this
            # machine's external address, which such a head does not listen on
            os.environ.setdefault(_RAY_LOCAL_ONLY, "0")
        try:
            import ray
        except ImportError:
            raise ValueError("the ray backend needs Ray: pip install 'ufm[ray]' (or ray==2.60.0)") from None
        if loopback and os.environ.get(_RAY_LOCAL_ONLY) != "0":
            raise ValueError(f"Ray was imported before this study could mark {self.address} as a local-only head: "
                             f"set {_RAY_LOCAL_ONLY}=0 before importing ray, or pass the head's external address")
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
        return ray, started

    def _cluster_slots(self, ray) -> int:
        """Runs the cluster can hold at once (so that "running" counts runs, not queued tasks)."""
        res = ray.cluster_resources()
        slots = res.get("CPU", 0) // self.threads
        if self.num_gpus > 0:
            slots = min(slots, res.get("GPU", 0) // self.num_gpus)
        if slots < 1:
            raise ValueError(f"the Ray cluster at {self.address} has {res.get('CPU', 0):g} CPUs and {res.get('GPU', 0):g} "
                             f"GPUs: a run needs {self.threads} CPU(s) and {self.num_gpus:g} GPU(s)")
        return int(slots)

    def run(self, tasks: list[RunTask], on_start: Callable[[RunTask], None] | None = None) -> Iterator[RunOutcome]:
        if not tasks:
            return
        ray, started = self._connect()
        remote = ray.remote(num_cpus=self.threads, num_gpus=self.num_gpus, max_retries=2)(execute_run)
        try:
            limit = self.jobs or self._cluster_slots(ray)
        except ValueError:
            if started:
                ray.shutdown()
            raise
        queue, running = list(tasks), {}
        try:
            while queue or running:
                while queue and len(running) < limit:
                    task = queue.pop(0)
                    running[remote.remote(task)] = task
                    if on_start:
                        on_start(task)
                done, _ = ray.wait(list(running), num_returns=1)
                task = running.pop(done[0])
                try:
                    yield ray.get(done[0])
                except Exception as err:  # noqa: BLE001 - a node or worker lost for good
                    yield RunOutcome(task.run_id, "failed", 0.0, 0, f"the Ray task failed: {type(err).__name__}: {err}")
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def make_executor(backend: str = "local", *, jobs: int | None = None, threads: int | None = None,
                  address: str | None = None, num_gpus: float = 0):
    """The executor named ``backend`` ("local" or "ray") with its options checked."""
    if backend == "local":
        if address is not None:
            raise ValueError("--address is for the ray backend; add --backend ray")
        return LocalExecutor(jobs if jobs is not None else 1, threads)
    if backend == "ray":
        return RayExecutor(address, threads, num_gpus, jobs)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
