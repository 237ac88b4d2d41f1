"""The notebooks' outputs are checked, not only run: every notebook has result tables marked for nbval's
output comparison, their committed outputs exist and hold no unsanitised timings, and a stale committed
table makes the test command fail (checked on a small notebook, with the project's own nbval options)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
MARK = "# NBVAL_CHECK_OUTPUT"


def _test_command():
    """``scripts/run_tests.py``, the test command, as a module."""
    spec = importlib.util.spec_from_file_location("run_tests", ROOT / "scripts" / "run_tests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _text(cell: dict) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")))
    return "".join(out)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_checked_result_tables_with_committed_outputs(path):
    checked = [c for c in _code_cells(path) if "".join(c["source"]).startswith(MARK)]
    assert len(checked) >= 3, f"{path.name}: result tables must be marked {MARK!r}"
    for cell in checked:
        text = _text(cell)
        assert text.strip(), f"{path.name}: a checked cell has no committed output (run `make figures`)"
        assert not any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        # tracebacks, warnings and object addresses would make the comparison flaky
        assert "Warning" not in text and not re.search(r"0x[0-9a-f]{6,}", text), text[:200]


def test_figures_go_through_the_profile():
    """A notebook that saves a figure passes its PROFILE, so a paper run never writes over figures/."""
    for path in NOTEBOOKS:
        for cell in _code_cells(path):
            for call in re.findall(r"savefig\([^)]*\)", "".join(cell["source"])):
                assert call.rstrip(")").endswith("PROFILE"), (path.name, call)


def test_a_stale_checked_table_fails_the_test_command(tmp_path):
    cell = {"cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {},
            "source": [f"{MARK}\n", "print(f'mean {sum([1, 2, 3]) / 3:.4f}')"], "outputs": []}
    nb = {"cells": [cell], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                       "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}

    def nbval(committed: str) -> int:
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": [committed]}]
        (tmp_path / "t.ipynb").write_text(json.dumps(nb))
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "t.ipynb")] + nbval_options
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=300).returncode

    nbval_options = _test_command().NBVAL  # the options the test command passes (paths from the repository root)

    assert nbval("mean 2.0000\n") == 0
    assert nbval("mean 2.0001\n") != 0  # a committed number that the code no longer produces


def test_the_test_command_runs_every_notebook_once_and_07_after_06(monkeypatch):
    """Notebook 07 reads notebook 06's runs from the cache (and 06 reads 02's): one stream, in that order, with
    the default streams and with notebooks split off; no notebook left out or run twice; nbval's options on
    every notebook stream."""
    tc = _test_command()
    split = {"notebooks-02": ("02_",), "notebooks-06-07": ("06_", "07_")}
    for streams_conf in ({}, split):
        monkeypatch.setattr(tc, "STREAMS", streams_conf)
        streams = tc.notebook_streams(NOTEBOOKS)
        names = [p.name for s in streams.values() for p in s]
        assert sorted(names) == [p.name for p in NOTEBOOKS] and len(set(names)) == len(names)
        (home,) = [s for s in streams.values() if any(p.name.startswith("06_") for p in s)]
        order = [p.name[:3] for p in home]
        assert "07_" in order and order.index("06_") < order.index("07_")
        assert all(s == sorted(s) for s in streams.values())
        cmds = tc.commands()
        assert set(cmds) == {"unit", "notebooks", *streams_conf}
        for name in set(cmds) - {"unit"}:
            assert cmds[name][-len(tc.NBVAL):] == tc.NBVAL


def test_the_test_command_fails_when_one_stream_fails(tmp_path):
    tc = _test_command()
    cmds = {"ok": [sys.executable, "-c", "print('fine')"],
            "bad": [sys.executable, "-c", "import sys; print('broken'); sys.exit(3)"]}
    done = tc.run_streams(cmds, tmp_path, dict(__import__("os").environ))
    assert {k: rc for k, (rc, _) in done.items()} == {"ok": 0, "bad": 3}
    assert (tmp_path / "bad.log").read_text().strip() == "broken"


def test_the_test_command_reads_how_busy_the_machine_was():
    tc = _test_command()
    before = tc.machine_busy()
    if before is None:
        pytest.skip("no /proc/stat on this system")
    sum(i * i for i in range(300_000))
    after = tc.machine_busy()
    assert 0 <= after[0] - before[0] <= after[1] - before[1]
