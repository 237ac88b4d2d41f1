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
    """What a worker needs: the run's id and folder, its resolved config (a dict), its torch threads."""

    run_id: str
    run_dir: str
    config: dict
    threads: int


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
    """Train (or resume, or find complete) one run with ``task.threads`` threads; never raises."""
    from ufm.train import TrainConfig, train

    set_threads(task.threads)
    out = Path(task.run_dir)
    t0 = time.time()
    host = os.uname().nodename if hasattr(os, "uname") else ""
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
    return RunOutcome(task.run_id, status, time.time() - t0, done, None if status == "complete" else "stopped early", host)


def _epochs_on_disk(out: Path) -> int:
    from ufm.train import run_state

    try:
        return run_state(out).epochs_done
    except ValueError:
        return 0
