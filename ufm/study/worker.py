"""One run of a study, as a worker executes it: threads fixed, ``train`` called, the outcome returned.

:func:`execute_run` is the only function an executor ships to a worker (a local process or a Ray
task). It never raises for a failed run: the error is written to ``<run>/error.txt`` (with the
traceback) and returned as one line, so that one diverged configuration does not stop a study.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from ufm.device import set_threads

__all__ = ["RunTask", "RunOutcome", "execute_run", "ERROR_FILE"]

ERROR_FILE = "error.txt"


@dataclass(frozen=True)
class RunTask:
    """What a worker needs: the run's id and folder, its resolved config (a dict), its torch threads, and the
    run cache shared with other studies (its folder and this run's key; ``None``: no cache)."""

    run_id: str
    run_dir: str
    config: dict
    threads: int
    cache: str | None = None
    cache_key: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """``status``: "complete" or "failed"; ``error``: one line when failed; ``seconds``: wall time here."""

    run_id: str
    status: str
    seconds: float
    epochs_done: int
    error: str | None = None
    host: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def execute_run(task: RunTask) -> RunOutcome:
    """Train (or resume, or find complete) one run with ``task.threads`` threads; never raises.

    With a cache, the worker looks there once more just before it trains (a study running beside this one may
    have completed the run since this study started) and stores the run there as soon as it is complete, so
    that the other studies find it without waiting for the end of this one.
    """
    from ufm.study.cache import fetch_run, store_run
    from ufm.train import TrainConfig, train

    set_threads(task.threads)
    out = Path(task.run_dir)
    t0 = time.time()
    host = os.uname().nodename if hasattr(os, "uname") else ""
    cache = Path(task.cache) if task.cache is not None and task.cache_key is not None else None
    if cache is not None and fetch_run(cache, task.cache_key, out, task.config["epochs"]):
        return RunOutcome(task.run_id, "complete", time.time() - t0, task.config["epochs"], None, host)
    try:
        rows = train(TrainConfig(**task.config), out, log=None)
    except Exception as err:  # noqa: BLE001 - a failed run is an outcome of the study, not a crash of it
        out.mkdir(parents=True, exist_ok=True)
        (out / ERROR_FILE).write_text(traceback.format_exc())
        line = (str(err).splitlines() or [""])[0]
        return RunOutcome(task.run_id, "failed", time.time() - t0, _epochs_on_disk(out), f"{type(err).__name__}: {line}", host)
    (out / ERROR_FILE).unlink(missing_ok=True)
    done = len(rows)
    status = "complete" if done >= task.config["epochs"] else "failed"
    if status == "complete" and cache is not None:
        try:
            store_run(cache, task.cache_key, out)
        except OSError:  # the run is complete all the same; the study stores it again when it ends (and says why)
            pass
    return RunOutcome(task.run_id, status, time.time() - t0, done, None if status == "complete" else "stopped early", host)


def _epochs_on_disk(out: Path) -> int:
    from ufm.train import run_state

    try:
        return run_state(out).epochs_done
    except ValueError:
        return 0
