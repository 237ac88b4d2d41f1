"""A run's folder on disk: atomic writes, the checkpoint, the metrics file, and what state a run is in.

A run folder holds ``run.json`` (the resolved config and what the data turned out to be),
``metrics.jsonl`` (one JSON object per finished epoch) and ``checkpoint.pt`` (everything needed to
continue exactly). Every file is written to a temporary file in the same folder and moved into place
with ``os.replace``, so a crash leaves the previous version intact; temporaries left by a killed
process (``.checkpoint.pt.*.tmp``) are removed by :func:`remove_stale_temporaries` when the run starts
again.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["CHECKPOINT", "METRICS_FILE", "RUN_FILE", "CheckpointError", "RunState", "atomic_write", "write_jsonl",
           "read_metrics", "read_run_record", "load_checkpoint", "save_checkpoint", "remove_stale_temporaries",
           "run_state"]

CHECKPOINT = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
_CHECKPOINT_KEYS = ("config", "epoch", "model", "optimizer", "scheduler", "loss", "scaler", "rng", "metrics")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (truncated, corrupt, or not one of this project's)."""


def atomic_write(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then move it onto ``path`` (``os.replace``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temporaries(out_dir) -> list[Path]:
    """Delete the temporaries (``.<file>.*.tmp``) that a killed writer left in ``out_dir``; return them."""
    stale = [p for name in (CHECKPOINT, METRICS_FILE, RUN_FILE) for p in Path(out_dir).glob(f".{name}.*.tmp")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_jsonl(path: Path, rows: list[dict]) -> None:
    def w(tmp):
        with open(tmp, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")

    atomic_write(path, w)


def read_metrics(out_dir) -> list[dict]:
    """The rows of ``out_dir/metrics.jsonl`` (one dict per finished epoch)."""
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {METRICS_FILE} in {out_dir}")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {i}: not valid JSON ({err.msg})") from None
    return rows


def read_run_record(out_dir) -> dict | None:
    """``out_dir/run.json`` as a dict, or None when the run has not started."""
    path = Path(out_dir) / RUN_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg}): delete the run folder to start it again") from None


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU).

    Raises:
        CheckpointError: one line naming the file and ``--restart`` when it is truncated or corrupt.
    """
    path = Path(path)
    hint = "run again with --restart (or resume=False) to start this run afresh, or delete the file"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, AttributeError,
            ImportError, IndexError, KeyError, TypeError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0].split(". ")[0][:120]
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason}); {hint}") from None
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of a ufm training run (missing {missing}); {hint}")
    return state


def save_checkpoint(path, state: dict) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


@dataclass(frozen=True)
class RunState:
    """Where a run folder stands: ``status`` is "new" (nothing trained), "partial" (some epochs, can
    resume) or "complete" (``epochs_done >= epochs``); ``epochs_done`` counts the finished epochs."""

    status: str
    epochs_done: int
    epochs: int | None


def run_state(out_dir, epochs: int | None = None) -> RunState:
    """The state of ``out_dir`` for a run of ``epochs`` epochs (default: the epochs in its run.json).

    Cheap (reads the JSON files, never the checkpoint): used to decide what a study still has to run.
    """
    out = Path(out_dir)
    if not (out / CHECKPOINT).exists():
        return RunState("new", 0, epochs)
    if epochs is None:
        record = read_run_record(out) or {}
        epochs = record.get("config", {}).get("epochs")
    done = len(read_metrics(out)) if (out / METRICS_FILE).exists() else 0
    complete = epochs is not None and done >= epochs
    return RunState("complete" if complete else "partial", done, epochs)
