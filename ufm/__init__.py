"""ufm: numerical checks of the geometry that classification losses give to learned features.

Layers (each imports only those below it):
    geometry (pure mathematics), stats < losses < solvers, batching, data, models < train, study < cli / notebooks
"""

__version__ = "0.1.0"

from ufm.device import default_device, limited_threads, set_threads  # noqa: E402,F401
