"""Shared test settings."""

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster and steadier on a shared 2-core machine (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_shared_run_cache(monkeypatch):
    """The test command shares one run cache among the notebooks (UFM_RUN_CACHE); unit tests count the runs
    they train, so they never see it (the notebooks' kernels start outside this fixture and keep it)."""
    monkeypatch.delenv("UFM_RUN_CACHE", raising=False)
