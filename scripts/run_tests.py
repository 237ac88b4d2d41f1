"""The test command (``make test``): the unit tests and the notebooks under nbval, in parallel streams.

    python scripts/run_tests.py

Two pytest processes run side by side, one per core of this 2-core machine:

* ``unit``: ``pytest tests`` (single-threaded, about 4.5 minutes);
* ``notebooks``: every notebook in file order, so that a run two notebooks share is trained by the first and read
  from the run cache by the next (07 reads 06's runs, 06 reads 02's); each study in them runs 2 workers.

:data:`STREAMS` can split notebooks off into streams of their own. Four streams (the unit tests; 02; 06 then 07;
the rest) kept both cores busy all along but did not make the command faster here: more processes than cores
cost CPU time of their own (theory/deep-experiments.md, section 7, has the measurements), so it is empty.

The notebook streams run nbval with the project's options (``--nbval-lax``: the cells marked
``# NBVAL_CHECK_OUTPUT`` are compared with their committed outputs, sanitised by ``tests/nbval_sanitize.cfg``),
share one fresh run cache (``.test-runs/``) and draw their figures into ``.test-figures/``, never ``figures/``.
Every stream fixes its thread counts, so running side by side changes no printed number, only the time.
A stream's report goes to ``.test-logs/<stream>.log``; all are printed whole once every stream has ended, then one
line per stream (exit status, wall time). The exit status is 0 only when every stream passed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# notebook streams besides the rest, by name prefix, e.g. {"notebooks-02": ("02_",), "notebooks-06-07": ("06_", "07_")};
# notebooks that read each other's runs from the cache (02 -> 06 -> 07) belong in one stream, in this order
STREAMS: dict[str, tuple[str, ...]] = {}
NBVAL = ["--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]


def notebook_streams(notebooks: list[Path]) -> dict[str, list[Path]]:
    """The notebooks split into streams, each in file order (empty streams left out).

    Args:
        notebooks: the notebooks to test.

    Returns:
        ``{stream: [notebooks]}``: one entry per stream of :data:`STREAMS` (the notebooks whose name starts
        with one of its prefixes), then ``"notebooks"``, the rest.
    """
    ordered = sorted(notebooks, key=lambda p: p.name)
    streams = {name: [p for p in ordered if p.name.startswith(prefixes)] for name, prefixes in STREAMS.items()}
    taken = {p for nbs in streams.values() for p in nbs}
    streams["notebooks"] = [p for p in ordered if p not in taken]
    return {name: nbs for name, nbs in streams.items() if nbs}


def commands(python: str = sys.executable) -> dict[str, list[str]]:
    """The pytest command line of every stream, run from the repository root."""
    pytest = [python, "-m", "pytest", "-p", "no:cacheprovider"]
    cmds = {"unit": pytest + ["tests", "--durations=10"]}
    nbs = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    for name, stream in notebook_streams(nbs).items():
        cmds[name] = pytest + [str(p.relative_to(ROOT)) for p in stream] + NBVAL
    return cmds


def run_streams(cmds: dict[str, list[str]], logs: Path, env: dict[str, str]) -> dict[str, tuple[int, float]]:
    """Start every stream at once, each writing to ``logs/<stream>.log``; wait for all of them.

    Returns:
        ``{stream: (exit status, wall seconds)}``. An interrupt stops every stream that is still running, with
        the kernels and study workers it started (each stream is a process group of its own).
    """
    logs.mkdir(parents=True, exist_ok=True)
    procs, t0, done = {}, time.time(), {}
    try:
        for name, cmd in cmds.items():
            with open(logs / f"{name}.log", "wb") as out:
                procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True)
        while len(done) < len(procs):
            for name, p in procs.items():
                if name not in done and p.poll() is not None:
                    done[name] = (p.returncode, time.time() - t0)
                    print(f"[test] {name}: exit {p.returncode} after {done[name][1]:.0f} s", flush=True)
            time.sleep(1.0)
    finally:
        for name, p in procs.items():
            if name not in done:
                _stop_group(p)
    return done


def _stop_group(p: subprocess.Popen) -> None:
    """Terminate the process group of ``p`` (its kernels and workers too), whether or not ``p`` itself ended."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, summed over its cores, from /proc/stat
    (None where there is none): two readings give how much of the machine a command kept busy."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields[:8]]
    # idle only: iowait (ticks[4]) counts as busy, since the kernel's iowait counter can go backwards (proc(5)),
    # which made busy grow faster than total between two readings
    idle = ticks[3]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def main() -> int:
    for folder in (".test-runs", ".test-logs"):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
    env = dict(os.environ, UFM_FIGURES=str(ROOT / ".test-figures"), UFM_RUN_CACHE=str(ROOT / ".test-runs"))
    cmds = commands()
    print(f"[test] {len(cmds)} streams side by side: {', '.join(cmds)}; reports in .test-logs/", flush=True)
    before = machine_busy()
    done = run_streams(cmds, ROOT / ".test-logs", env)
    after = machine_busy()
    for name in cmds:
        print(f"\n{'=' * 30} {name} {'=' * 30}", flush=True)
        sys.stdout.write((ROOT / ".test-logs" / f"{name}.log").read_text(errors="replace"))
    print()
    for name, (rc, wall) in done.items():
        print(f"[test] {name:<17} {'passed' if rc == 0 else f'FAILED (exit {rc})':<16} {wall / 60:5.1f} min")
    if before and after:  # every process on the machine counts, not only the test command's
        busy, total = after[0] - before[0], after[1] - before[1]
        print(f"[test] the machine's {os.cpu_count()} cores were busy {busy:.0f} of {total:.0f} core-seconds "
              f"({busy / max(total, 1e-9):.0%}) while the streams ran")
    return 0 if all(rc == 0 for rc, _ in done.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
