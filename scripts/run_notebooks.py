"""The main job: execute every notebook under notebooks/ and write figures/.

    python scripts/run_notebooks.py [--profile ci|paper] [notebooks ...]

The ``ci`` profile executes the notebooks in place (their saved outputs are what the test command's
nbval pass checks). Any other profile injects ``PROFILE`` into the notebook's ``parameters`` cell and
writes the executed copy to ``runs/notebooks/<profile>/`` so the committed ci-profile outputs stay.

The notebooks of one invocation share one fresh run cache (``ufm.study.cache``; ``UFM_RUN_CACHE`` if set,
else a temporary folder removed at the end): a training run that two notebooks both need is trained once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import papermill as pm

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="ci", help="notebook profile: ci (default, CPU minutes) or paper (GPU)")
    ap.add_argument("notebooks", nargs="*", help="notebooks to run (default: all under notebooks/)")
    args = ap.parse_args(argv)
    nbs = [Path(p) for p in args.notebooks] or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if not nbs:
        print("no notebooks found under notebooks/", file=sys.stderr)
        return 1
    own_cache = not os.environ.get("UFM_RUN_CACHE")
    if own_cache:  # the kernels inherit this process's environment
        os.environ["UFM_RUN_CACHE"] = tempfile.mkdtemp(prefix="ufm_run_cache_")
    try:
        for nb in nbs:
            run_one(nb.resolve(), args.profile)
    finally:
        if own_cache:
            shutil.rmtree(os.environ.pop("UFM_RUN_CACHE"), ignore_errors=True)
    return 0


def run_one(nb: Path, profile: str) -> None:
    """Execute ``nb`` with ``profile`` (in place for ci, to ``runs/notebooks/<profile>/`` otherwise)."""
    if profile == "ci":
        out, params = nb, None
    else:
        outdir = ROOT / "runs" / "notebooks" / profile
        outdir.mkdir(parents=True, exist_ok=True)
        out, params = outdir / nb.name, {"PROFILE": profile}
    t0 = time.time()
    print(f"[run_notebooks] {nb.name} (profile {profile}) ...", flush=True)
    pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), kernel_name="python3",
                        progress_bar=False, request_save_on_cell_execute=False)
    print(f"[run_notebooks] {nb.name} done in {time.time() - t0:.0f} s -> {out.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
