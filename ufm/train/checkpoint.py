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

__all__ = ["CHECKPOINT", "METRICS_FILE", "RUN_FILE", "CheckpointError", "RunFolderError", "RunState", "atomic_write",
           "write_jsonl", "read_metrics", "read_run_record", "load_checkpoint", "save_checkpoint",
           "prepare_run_folder", "remove_stale_temporaries", "run_state"]

CHECKPOINT = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
_CHECKPOINT_KEYS = ("config", "epoch", "model", "optimizer", "scheduler", "loss", "scaler", "rng", "metrics")


_HINT = "run again with --restart (or resume=False) to start this run afresh, or delete the file"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (truncated, corrupt, a folder, or not one of this project's)."""


class RunFolderError(ValueError):
    """An output folder that cannot hold a run (it is a file, or files cannot be written in it)."""


def prepare_run_folder(out_dir) -> Path:
    """Create the run folder ``out_dir`` (and its parents) and check that it can hold a run.

    The check writes and removes one temporary file (named like the temporaries that
    :func:`remove_stale_temporaries` clears), so a read-only folder or file system is found before any
    training, whoever runs it (permission bits alone do not stop the superuser).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        RunFolderError: ``out_dir`` is a file, or it cannot be created or written; names the path and why.
        CheckpointError: ``out_dir/checkpoint.pt`` exists but is not a file (a folder): neither resuming
            nor ``--restart`` could use it.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"output folder (--out) {out} is a file, not a folder: choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=f".{RUN_FILE}.", suffix=".tmp")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise RunFolderError(f"output folder (--out) {out} cannot be written ({why}): choose another --out "
                             "or make it writable") from None
    ck = out / CHECKPOINT
    if ck.exists() and not ck.is_file():
        raise CheckpointError(f"checkpoint {ck} is a folder, not a checkpoint file: delete it "
                              "(neither resuming nor --restart can use it)")
    return out


def _zip_without_end(path: Path) -> bool:
    """Whether ``path`` starts like a zip archive (torch's format) but lacks the archive's end record:
    the signature of a file cut short (a copy interrupted, a full disk)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head == b"PK\x03\x04" and not zipfile.is_zipfile(path)


def _zip_damaged_member(path: Path) -> str | None:
    """The first member of torch's zip archive whose CRC-32 does not match its bytes, or None.

    ``torch.load`` does not check the checksums, so bytes damaged inside a tensor would load silently;
    reading the file once more costs far less than an epoch trained from damaged weights.
    """
    if not zipfile.is_zipfile(path):
        return None  # the legacy pickle format: the unpickler finds its own damage
    with zipfile.ZipFile(path) as archive:
        return archive.testzip()


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
        CheckpointError: one line naming the file, what is wrong with it (a folder, unreadable, empty,
            truncated, corrupt, or a torch file of something else) and ``--restart``.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file: delete it "
                              "(neither resuming nor --restart can use it)")
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt (empty: 0 bytes); {_HINT}")
        if _zip_without_end(path):
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt (cut short: a torch archive without its end); {_HINT}")
        damaged = _zip_damaged_member(path)
        if damaged is not None:
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt (damaged bytes: the checksum of its part "
                                  f"{damaged.split('/', 1)[-1]!r} does not match); {_HINT}")
        state = torch.load(path, map_location="cpu", weights_only=False)
    except CheckpointError:
        raise
    except OSError as err:  # unreadable, or torch's reader refused the archive
        why = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"checkpoint {path} cannot be read ({why}); {_HINT}") from None
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, AttributeError,
            ImportError, IndexError, KeyError, TypeError, UnicodeDecodeError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0].split(". ")[0][:120]
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason}); {_HINT}") from None
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        what = f"a {type(state).__name__}" + (f" with keys {sorted(map(str, state))[:6]}" if isinstance(state, dict) else "")
        raise CheckpointError(f"{path} is not a checkpoint of a ufm training run ({what}; missing {missing}); {_HINT}")
    if not isinstance(state["config"], dict) or not isinstance(state["epoch"], int):
        raise CheckpointError(f"{path} is not a checkpoint of a ufm training run (its 'config' is not a mapping "
                              f"or its 'epoch' not an integer); {_HINT}")
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
