"""The command line: `python -m ufm solve` prints one JSON object: the geometry verdict first, then the
objective's certificate, then the returned point."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ufm.cli import main
from ufm.solvers import of_objective


def run_json(capsys, *argv):
    assert main(["solve", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_reduced_relu_is_the_certified_orthogonal_frame(capsys):
    counts = [5000, 500, 50, 5]
    out = run_json(capsys, "--counts", ",".join(map(str, counts)), "--relu", "--method", "reduced")
    assert list(out)[:2] == ["geometry", "objective"]
    for key in ("certificate", "returned", "status", "seconds"):
        assert key in out
    assert out["geometry"]["verdict"] == "exact" and out["geometry"]["delta_of"] == 0 and out["certified_objective"]
    labels = np.repeat(np.arange(4), counts)
    assert out["objective"] == pytest.approx(of_objective(labels, temperature=0.1), rel=1e-12)
    assert out["certificate"]["gap"] <= 1e-9 * abs(out["objective"])


def test_reduced_without_relu_balanced_is_the_etf(capsys):
    out = run_json(capsys, "--counts", "10,10,10,10", "--method", "reduced")
    geo = out["geometry"]
    assert geo["verdict"] == "exact" and geo["delta_etf"] < 1e-6 and geo["delta_of"] > 0.5


def test_sdp_with_binding_batches_and_gd(capsys):
    out = run_json(capsys, "--counts", "8,4,4", "--relu", "--method", "sdp", "--batch-size", "6", "--binding")
    assert out["certified_objective"] and out["geometry"]["verdict"] == "exact" and out["geometry"]["delta_of"] == 0
    out = run_json(capsys, "--counts", "20,4,4", "--relu", "--method", "gd", "--dim", "6", "--steps", "300")
    assert out["returned"]["delta_of"] < 1e-4 and out["geometry"]["verdict"].startswith("not certified")
    assert out["objective"] == pytest.approx(out["certificate"]["of_objective"], rel=1e-6)


def test_errors_are_clear(capsys):
    """Exit status 2 with one line ``error: ...`` (more cases: tests/test_bad_input_cli.py)."""
    assert main(["solve", "--counts", "5,5", "--method", "reduced", "--batch-size", "2"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["solve", "--counts", "5,0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["solve", "--counts", "5,5", "--temperature", "0"])
    assert exc.value.code == 2
    assert main(["solve", "--counts", "5,5", "--binding"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "ufm", "solve", "--help"], capture_output=True, text=True, check=True)
    for opt in ("--counts", "--relu", "--temperature", "--method", "--batch-size", "--binding", "--seed", "--json"):
        assert opt in out.stdout


def test_the_command_line_draws_the_librarys_batches():
    from ufm.batching import epoch_batcher
    from ufm.cli import _epochs, build_parser

    args = build_parser().parse_args(["solve", "--counts", "9,5,3", "--batch-size", "4", "--binding", "--seed", "7"])
    labels = np.repeat(np.arange(3), [9, 5, 3])
    mine, library = _epochs(labels, args), epoch_batcher(labels, 4, 7, binding=True)
    for epoch in range(3):
        assert all(np.array_equal(a, b) for a, b in zip(mine(epoch), library(epoch), strict=True))


def test_the_table_prints_the_verdict_first_and_no_minimiser_delta_when_not_unique(capsys):
    assert main(["solve", "--counts", "6,6,1,1", "--relu", "--method", "sdp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(":")[0].strip() == "geometry" and "not unique" in lines[0]
    delta = next(line for line in lines if line.strip().startswith("delta_of"))
    assert "over the minimisers exhibited" in delta and "the minimiser's" not in delta
