"""Test-session settings for the whole repository (unit tests under tests/, notebooks under nbval).

The test command runs on two pytest-xdist workers with ``--dist loadgroup``. Every cell of a notebook must
run in one kernel, in order, so each notebook is one group; and the notebooks that train the same runs (02's
SCL arm at R = 10 is 06's tau = 0.15; 07's three temperatures are 06's) form one group, run on one worker in
file order, so that the later ones find those runs in the shared run cache instead of training them again.
Unit tests carry no group and are spread over both workers test by test.
"""

import pytest

# notebooks that share training runs through the run cache (file-name prefixes, run in this order)
SHARED_RUNS = ("02_", "06_", "07_")


def notebook_group(path) -> str | None:
    """The xdist group of a collected file: its own name for a notebook, "scl-runs" for SHARED_RUNS."""
    name = path.name
    if not name.endswith(".ipynb"):
        return None
    return "scl-runs" if name.startswith(SHARED_RUNS) else name


def pytest_collection_modifyitems(config, items):
    for item in items:
        group = notebook_group(item.path)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
