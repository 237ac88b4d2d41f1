"""Bad input on the command line (``python -m ufm ...``): every user mistake prints ONE line ``error: ...``
on stderr and exits with status 2, never a traceback. One row per case; a new mistake joins by adding a row.

The rows call ``ufm.cli.main(argv)`` in-process (a Python start with torch costs seconds); one subprocess
check confirms that ``python -m ufm`` itself prints no traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ufm.cli import main

TRAIN = ["train", "--config", "ce", "--quiet", "--out"]
SOLVE = ["solve", "--counts", "5,5"]


def _run(argv, capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``main(argv)``: argparse exits through SystemExit, later errors return."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def _assert_one_error_line(rc, err, message):
    import re

    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert rc == 2, (rc, err)
    assert len(errors) == 1 and lines[-1] == errors[0], err  # one error line, the last thing printed
    assert re.search(message, errors[0]), errors[0]
    assert "Traceback" not in err


# argv (with {tmp} for a fresh folder, {file} for an existing file) and a regex on the error line
CASES = [
    # the command line itself (argparse): one line, not the usage block
    pytest.param([], r"^error: python -m ufm: the following arguments are required: COMMAND \(see python -m ufm --help\)$",
                 id="no-command"),
    pytest.param(["nope"], r"argument COMMAND: invalid choice: 'nope'", id="unknown-command"),
    pytest.param([*SOLVE, "--temperature", "abc"], r"python -m ufm solve: argument --temperature: invalid float value: 'abc'",
                 id="solve-temperature-not-a-number"),
    pytest.param([*SOLVE, "--temperature", "0"], r"--temperature must be positive, got 0.0", id="solve-temperature-0"),
    pytest.param(["solve", "--counts", "a,b"], r"--counts must be comma-separated integers, got 'a,b'", id="solve-counts-not-integers"),
    pytest.param(["solve", "--counts", "5,0"], r"every class count must be >= 1", id="solve-count-0"),
    pytest.param([*SOLVE, "--method", "newton"], r"argument --method: invalid choice: 'newton'", id="solve-unknown-method"),
    # solve: found by the command or the solvers
    pytest.param([*SOLVE, "--binding"], r"^error: --binding needs --batch-size", id="solve-binding-without-batches"),
    pytest.param([*SOLVE, "--batch-size", "2"], r"^error: --method reduced solves the full-batch problem", id="solve-reduced-with-batches"),
    pytest.param([*SOLVE, "--method", "sdp", "--batch-size", "0"], r"batch_size must be >= 1, got 0", id="solve-batch-size-0"),
    pytest.param([*SOLVE, "--method", "gd", "--steps", "-1"], r"steps must be an integer >= 1, got -1", id="solve-steps--1"),
    pytest.param([*SOLVE, "--method", "gd", "--dim", "0"], r"dim must be a positive integer, got 0", id="solve-dim-0"),
    pytest.param([*SOLVE, "--method", "sdp", "--batch-size", "4", "--seed", "-1"], r"seed must be a non-negative integer, got -1",
                 id="solve-seed--1"),
    pytest.param([*SOLVE, "--method", "gd", "--device", "gpu", "--steps", "5"], r"device must be one of .*; got 'gpu'",
                 id="solve-device-gpu"),
    pytest.param([*SOLVE, "--method", "gd", "--batch-size", "1", "--steps", "5"],
                 r"no batch of epoch 0 of the batching has an anchor", id="solve-gd-batches-without-anchors"),
    pytest.param([*SOLVE, "--temperature", "1e-300"], r"temperature must be >= .*got 1e-300", id="solve-temperature-1e-300"),
    pytest.param([*SOLVE, "--temperature", "nan"], r"temperature must be positive and finite, got nan", id="solve-temperature-nan"),
    # train: configs, overrides, folders and checkpoints
    pytest.param(["train", "--config", "nope", "--out", "{tmp}"], r"config 'nope' not found", id="train-unknown-config"),
    pytest.param(["train", "--config", "{bad_yaml}", "--out", "{tmp}"], r"^error: config \S+bad.yaml: not valid YAML \(.*line 2",
                 id="train-config-not-yaml"),
    pytest.param([*TRAIN, "{tmp}", "lr"], r"an override must look like key=value, got 'lr'", id="train-override-without-value"),
    pytest.param([*TRAIN, "{tmp}", "lrr=1"], r"config: unknown field 'lrr'", id="train-unknown-field"),
    pytest.param([*TRAIN, "{tmp}", "lr=abc"], r"config: lr must be a positive number, got 'abc'", id="train-lr-not-a-number"),
    pytest.param([*TRAIN, "{tmp}", "batch_size=1"], r"config: batch_size must be >= 2 \(or binding=true\), got 1", id="train-batch-size-1"),
    pytest.param([*TRAIN, "{tmp}", "amp=fp32"], r"config: amp must be one of none \(or false\), fp16 \(or true\), bf16; got 'fp32'",
                 id="train-amp-unknown"),
    pytest.param([*TRAIN, "{tmp}", "--stop-after", "-1"], r"stop_after \(--stop-after\) must be an integer >= 1, got -1",
                 id="train-stop-after--1"),
    pytest.param([*TRAIN, "{tmp}", "--stop-after", "x"], r"argument --stop-after: invalid int value: 'x'", id="train-stop-after-x"),
    pytest.param([*TRAIN, "{file}"], r"output folder \(--out\) \S+afile is a file, not a folder", id="train-out-is-a-file"),
    pytest.param([*TRAIN, "{garbage_run}"], r"checkpoint \S+checkpoint.pt is truncated or corrupt .*--restart",
                 id="train-garbage-checkpoint"),
    pytest.param([*TRAIN, "{empty_run}"], r"checkpoint \S+checkpoint.pt is truncated or corrupt \(empty: 0 bytes\).*--restart",
                 id="train-empty-checkpoint"),
    pytest.param([*TRAIN, "{folder_run}"], r"checkpoint \S+checkpoint.pt is a folder, not a checkpoint file: delete it",
                 id="train-checkpoint-is-a-folder"),
    pytest.param([*TRAIN, "{tmp}", "dataset=cifar10", "data_root={tmp}"], r"cifar10: data not found", id="train-data-missing"),
    # sweep and report
    pytest.param(["sweep", "--config", "ce", "--out", "{tmp}", "--grid", "xx"], r"a grid entry must look like KEY=V1,V2,..., got 'xx'",
                 id="sweep-bad-grid"),
    pytest.param(["sweep", "--config", "ce", "--out", "{file}", "--grid", "lr=0.1"], r"--out \S+afile is a file, not a study folder",
                 id="sweep-out-is-a-file"),
    pytest.param(["sweep", "--config", "ce", "--out", "{tmp}", "--seeds", "0"], r"--seeds must be >= 1", id="sweep-seeds-0"),
    pytest.param(["report", "{tmp}"], r"\S+ is not a study folder \(no study.json\)", id="report-not-a-study"),
    # phase (its own checks, and the command line's wrapper)
    pytest.param(["phase", "--loss", "nope", "--out", "{tmp}"], r"unknown loss 'nope'", id="phase-unknown-loss"),
    pytest.param(["phase", "--loss", "supcon", "--out", "{file}"], r"--out \S+afile exists and is not a directory", id="phase-out-is-a-file"),
    pytest.param(["phase", "--loss", "supcon", "--grid", "tau=1", "--out", "{tmp}"], r"unknown knob 'tau'", id="phase-unknown-knob"),
    pytest.param(["phase", "--loss", "supcon", "--jobs", "0", "--out", "{tmp}"], r"--jobs must be >= 1, got 0", id="phase-jobs-0"),
    pytest.param(["phase", "--loss", "supcon", "--jobs", "two", "--out", "{tmp}"],
                 r"--jobs must be a number of worker processes >= 1, got 'two'", id="phase-jobs-not-a-number"),
]


@pytest.fixture
def places(tmp_path):
    """The folders and files the rows name."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    runs = {}
    for name, make in (("garbage_run", lambda ck: ck.write_bytes(b"\x00garbage" * 8)),
                       ("empty_run", lambda ck: ck.write_bytes(b"")),
                       ("folder_run", lambda ck: ck.mkdir())):
        (tmp_path / name).mkdir()
        make(tmp_path / name / "checkpoint.pt")
        runs[name] = str(tmp_path / name)
    return {"tmp": str(tmp_path / "new"), "file": str(tmp_path / "afile"), "bad_yaml": str(tmp_path / "bad.yaml"), **runs}


@pytest.mark.parametrize("argv, message", CASES)
def test_a_user_mistake_is_one_error_line_and_status_2(places, capsys, argv, message):
    rc, err = _run([a.format(**places) for a in argv], capsys)
    _assert_one_error_line(rc, err, message)


def test_debug_shows_the_traceback(monkeypatch, capsys):
    with pytest.raises(ValueError, match="--binding needs --batch-size"):
        main(["--debug", *SOLVE, "--binding"])
    monkeypatch.setenv("UFM_DEBUG", "1")
    with pytest.raises(ValueError, match="--binding needs --batch-size"):
        main([*SOLVE, "--binding"])
    monkeypatch.setenv("UFM_DEBUG", "0")
    assert main([*SOLVE, "--binding"]) == 2


def test_errors_from_libraries_and_the_system_are_one_line(monkeypatch, capsys):
    import ufm.cli as cli

    def fail(exc):
        def run(args):
            raise exc
        return run

    cases = [
        (NotADirectoryError(20, "Not a directory", "/x/afile"), r"^error: /x/afile: Not a directory$"),
        (PermissionError(13, "Permission denied", "/ro"), r"^error: /ro: Permission denied$"),
        (RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be reported later"),
         r"^error: CUDA error: out of memory CUDA kernel errors might be reported later \(--debug shows the traceback\)$"),
        (TypeError("temperature must be a real number, got 'a' (str)"), r"^error: temperature must be a real number"),
        (ValueError(""), r"^error: ValueError$"),
    ]
    for exc, message in cases:
        monkeypatch.setattr(cli, "run_solve", fail(exc))
        rc, err = _run(SOLVE, capsys)
        _assert_one_error_line(rc, err, message)
    monkeypatch.setattr(cli, "run_solve", fail(KeyboardInterrupt()))
    assert _run(SOLVE, capsys) == (130, "error: interrupted\n")
    monkeypatch.setattr(cli, "run_solve", fail(KeyError("a bug")))  # a bug keeps its traceback
    with pytest.raises(KeyError):
        main(SOLVE)


def test_python_m_ufm_prints_no_traceback(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    res = subprocess.run([sys.executable, "-m", "ufm", *TRAIN, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"error: checkpoint {tmp_path / 'checkpoint.pt'} is truncated or corrupt")
    assert res.stderr.count("\n") == 1, res.stderr
