"""A study on disk: its folder, which runs are done, and running what is missing.

Layout of a study folder::

    <study>/study.json          the spec (config, profile, overrides, grid, seeds) and the run ids
    <study>/<run id>/            one training run (ufm.train: run.json, metrics.jsonl, checkpoint.pt)
    <study>/results.csv          one row per run and epoch (written by ``collect``)

Running a study again runs only the runs that are not complete (new, interrupted, or failed); a
complete run is never retrained. The folder may grow (more seeds, more grid values) but keeps its
config, profile, base overrides and grid keys; a run folder that holds another config is refused.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sys
from pathlib import Path

import ufm
from ufm.study.cache import cache_folder, cache_key, fetch_run, store_run
from ufm.study.executors import make_executor
from ufm.study.progress import RunProgress
from ufm.study.spec import RunSpec, StudySpec, run_hash
from ufm.study.worker import RunOutcome, RunTask
from ufm.train import TrainConfig, run_state
from ufm.train.checkpoint import read_run_record
from ufm.train.config import RUN_IDENTITY_FREE

__all__ = ["Study", "run_study", "STUDY_FILE"]

STUDY_FILE = "study.json"
LOCK_FILE = ".study.lock"


class Study:
    """A :class:`StudySpec` bound to a folder (see the module docstring)."""

    def __init__(self, spec: StudySpec, root):
        self.spec = spec
        self.root = Path(root).resolve()
        self.runs: list[RunSpec] = spec.expand()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, root) -> "Study":
        """The study recorded in ``root/study.json``."""
        path = Path(root) / STUDY_FILE
        if not path.exists():
            raise ValueError(f"{root} is not a study folder (no {STUDY_FILE}); create one with `python -m ufm sweep`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err.msg})") from None
        return cls(StudySpec.from_dict(data["spec"]), root)

    def run_dir(self, run: RunSpec) -> Path:
        return self.root / run.run_id

    # ------------------------------------------------------------------ state
    def states(self) -> dict:
        """run id -> :class:`ufm.train.RunState` (new / partial / complete) of every run of the spec."""
        return {r.run_id: run_state(self.run_dir(r), r.config.epochs) for r in self.runs}

    def pending(self) -> list[RunSpec]:
        """The runs that are not complete, in spec order."""
        states = self.states()
        return [r for r in self.runs if states[r.run_id].status != "complete"]

    def prepare(self) -> None:
        """Check the folder against the spec (refusing another study or another run config) and
        write ``study.json``."""
        path = self.root / STUDY_FILE
        if path.exists():
            old = Study.open(self.root).spec
            diffs = self.spec.base_differences(old)
            if diffs:
                raise ValueError(f"{self.root} holds a study with another spec ({'; '.join(diffs)}); "
                                 "use another output folder")
        elif self.root.exists() and any(p for p in self.root.iterdir() if not p.name.startswith(".")):
            raise ValueError(f"{self.root} exists and is not a study folder (no {STUDY_FILE}); use a new or empty folder")
        for run in self.runs:
            self._check_run_folder(run)
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"format": 1, "spec": self.spec.to_dict(), "runs": [r.to_dict() for r in self.runs],
                  "ufm": ufm.__version__, "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        if not path.exists() or json.loads(path.read_text()).get("runs") != record["runs"]:
            path.write_text(json.dumps(record, indent=1) + "\n")

    def _check_run_folder(self, run: RunSpec) -> None:
        record = read_run_record(self.run_dir(run))
        if record is None:
            return
        try:
            saved = TrainConfig(**{**TrainConfig().to_dict(), **record["config"]})  # fields it predates: defaults
            same = run_hash(saved) == run_hash(run.config)
        except (TypeError, KeyError):
            saved, same = None, False
        if not same:
            now = run.config.to_dict()
            old = saved.to_dict() if saved is not None else record.get("config", {})
            diffs = [f"{k}: {old.get(k)!r} there vs {now[k]!r} now" for k in now
                     if k not in RUN_IDENTITY_FREE and old.get(k) != now[k]] or ["unreadable config"]
            raise ValueError(f"run folder {self.run_dir(run)} holds another config ({'; '.join(diffs)}); "
                             "use another study folder")

    # ------------------------------------------------------------------ running
    def tasks(self, runs: list[RunSpec], threads: int, cache: Path | None = None) -> list[RunTask]:
        """One worker task per run (with the run cache's folder and the run's key there, if a cache is used)."""
        return [RunTask(r.run_id, str(self.run_dir(r)), r.config.replace(progress=False).to_dict(), threads,
                        None if cache is None else str(cache),
                        None if cache is None else cache_key(r.config, threads))
                for r in runs]

    def run(self, backend: str = "local", *, jobs: int | None = None, threads: int | None = None,
            address: str | None = None, num_gpus: float = 0, progress: bool = True, cache=None) -> list[RunOutcome]:
        """Run every run that is not complete; returns the outcomes of the runs started by this call.

        Args:
            backend: "local" (``jobs`` processes here) or "ray" (tasks on the cluster at ``address``).
            jobs: runs at once (local; ray: at most this many tasks in flight, default all).
            threads: torch threads per run (local default ``cores // jobs``; ray default 1).
            num_gpus: GPUs per run (ray).
            progress: show done / running / left with elapsed and estimated time on stderr.
            cache: a folder of complete runs shared with other studies (default ``$UFM_RUN_CACHE``, none if
                unset): a run found there is copied, not trained, and every run completed here is stored
                (``ufm.study.cache``).
        """
        if "__mp_main__" in sys.modules and sys.modules["__mp_main__"] is not sys.modules.get("__main__"):
            raise RuntimeError("a study was started while a worker process imported the main script: put the call "
                               "under `if __name__ == '__main__':` (worker processes import the main script first)")
        executor = make_executor(backend, jobs=jobs, threads=threads, address=address, num_gpus=num_gpus)
        self.prepare()
        cache = cache_folder(cache)
        with self._lock():
            todo = self._from_cache(self.pending(), cache, executor.threads)
            if not todo:
                return []
            bar = RunProgress(len(todo), enabled=progress)
            outcomes = []
            try:
                for outcome in executor.run(self.tasks(todo, executor.threads, cache), on_start=bar.started):
                    bar.finished(outcome)
                    outcomes.append(outcome)
            finally:
                bar.close()
            self._to_cache(todo, outcomes, cache, executor.threads)
        return outcomes

    def _from_cache(self, runs: list[RunSpec], cache, threads: int) -> list[RunSpec]:
        """The runs of ``runs`` that the cache does not hold complete (those it holds are copied in)."""
        if cache is None:
            return runs
        return [r for r in runs if not fetch_run(cache, cache_key(r.config, threads), self.run_dir(r), r.config.epochs)]

    def _to_cache(self, runs: list[RunSpec], outcomes: list[RunOutcome], cache, threads: int) -> None:
        """Store the runs of ``runs`` that this call completed (a local worker has stored them already, unless it
        could not write there: a store error surfaces here, in the driver)."""
        if cache is None:
            return
        done = {o.run_id for o in outcomes if o.status == "complete"}
        for r in runs:
            if r.run_id in done:
                store_run(cache, cache_key(r.config, threads), self.run_dir(r))

    @contextlib.contextmanager
    def _lock(self):
        """One driver at a time per study folder (two would train the same runs twice)."""
        try:
            import fcntl
        except ImportError:  # no advisory locks on this OS: run unguarded
            yield
            return
        with open(self.root / LOCK_FILE, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ValueError(f"another sweep is running on {self.root}; wait for it or use another folder") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def run_study(spec: StudySpec, out, backend: str = "local", **options) -> Study:
    """Build the :class:`Study` of ``spec`` in folder ``out`` and run what is missing (see :meth:`Study.run`)."""
    study = Study(spec, out)
    study.last_outcomes = study.run(backend, **options)
    return study
