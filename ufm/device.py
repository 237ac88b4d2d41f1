"""Device selection (CUDA when present, else CPU) and the number of CPU threads a process computes with.

On a CPU, results depend on the thread count (reductions are split differently), so reproducible runs
fix it: a study's workers, the notebooks and the tests all call :func:`set_threads`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits

__all__ = ["DEVICE_CHOICES", "check_device", "default_device", "set_threads", "limited_threads"]


# what a device argument accepts (besides a torch.device); the N of "cuda:N" is a GPU index
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _accepted() -> str:
    return ", ".join(repr(c) for c in DEVICE_CHOICES) + " or a torch.device"


def check_device(device) -> torch.device | None:
    """A device argument as a ``torch.device`` (``None`` for ``None`` / ``"auto"``), checked.

    Accepted: :data:`DEVICE_CHOICES` (``"cuda:N"`` with ``N`` a GPU index present on this machine) or a
    ``torch.device`` of type cpu, cuda or mps. The hardware must be there: a CUDA device without CUDA, or
    ``"mps"`` without MPS, is an error too.

    Raises:
        TypeError: not a string or a ``torch.device`` (e.g. an int or a bool).
        ValueError: an unknown device string (``"gpu"``), another device type, or hardware that is absent;
            the message names ``device``, the value and what is accepted.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string ({_accepted()}), got {device!r} ({type(device).__name__})")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"device must be one of {_accepted()}; got {device!r}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be one of {_accepted()}; got {device!r} (device type {dev.type!r})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available on this machine; "
                             "use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} was asked for but MPS is not available on this machine; use 'cpu' or 'auto'")
    return dev


def default_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return ``prefer`` if given (checked by :func:`check_device`), else ``cuda`` when available, else ``cpu``.

    Args:
        prefer: ``None`` or ``"auto"`` (choose), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``.

    Raises:
        TypeError, ValueError: as :func:`check_device` (e.g. ``"gpu"``: the message lists what is accepted).
    """
    dev = check_device(prefer)
    if dev is not None:
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
