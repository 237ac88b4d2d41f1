"""Device selection: CUDA when present, else CPU."""

from __future__ import annotations

import torch


def default_device(prefer: str | None = None) -> torch.device:
    """Return ``prefer`` if given, else ``cuda`` when available, else ``cpu``."""
    if prefer is not None and prefer != "auto":
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {prefer!r} was asked for but CUDA is not available on this machine")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
