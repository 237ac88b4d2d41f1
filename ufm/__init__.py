"""ufm: numerical checks of the geometry that classification losses give to learned features.

Layers (each imports only those below it):
    geometry (pure mathematics) < losses < solvers, batching, data, models < train < cli / notebooks
"""

__version__ = "0.1.0"

from ufm.device import default_device  # noqa: E402,F401
