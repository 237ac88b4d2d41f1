"""The main job: execute every notebook under notebooks/ and write figures/.

    python scripts/run_notebooks.py [--profile ci|paper] [notebooks ...]

The ``ci`` profile executes the notebooks in place (their saved outputs are what the test command's
nbval pass checks). Any other profile injects ``PROFILE`` into the notebook's ``parameters`` cell and
writes the executed copy to ``runs/notebooks/<profile>/`` so the committed ci-profile outputs stay.
"""

from __future__ import annotations

import argparse
import sys
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
    for nb in nbs:
        nb = nb.resolve()
        if args.profile == "ci":
            out, params = nb, None
        else:
            outdir = ROOT / "runs" / "notebooks" / args.profile
            outdir.mkdir(parents=True, exist_ok=True)
            out, params = outdir / nb.name, {"PROFILE": args.profile}
        t0 = time.time()
        print(f"[run_notebooks] {nb.name} (profile {args.profile}) ...", flush=True)
        pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), kernel_name="python3",
                            progress_bar=False, request_save_on_cell_execute=False)
        print(f"[run_notebooks] {nb.name} done in {time.time() - t0:.0f} s -> {out.relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
