"""Geometry (pure mathematics): reference frames, class statistics and distances to frames.

Every module of this package is imported here and its ``__all__`` re-exported, so adding a file
(e.g. ``pedcc.py``) adds to ``ufm.geometry`` without editing this one.
"""

from __future__ import annotations

from ufm._exports import reexport_modules

__all__ = reexport_modules(__name__, __path__, globals(), first="core")
