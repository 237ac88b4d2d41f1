"""Command line: ``python -m ufm <command> ...``.

Commands:
    solve   solve the SCL unconstrained features model (exact reduced / exact SDP / gradient descent)
    train   train a network with any registered loss (see ``python -m ufm train --help``)
    sweep   run a study: a config x a grid x seeds, locally or on a Ray cluster, with a summary table
    report  the summary table, or a paired comparison of two arms, of a study folder
    phase   a loss's hyperparameters mapped to the UFM minimiser's geometry (table, heatmaps)

A user mistake (a bad option, value, config, file or folder) prints one line ``error: ...`` on stderr
and exits with status 2, never a traceback; ``--debug`` (or ``UFM_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import numpy as np

SOLVE_HELP = """\
Solve the supervised-contrastive unconstrained features model for given class counts and print the
geometry of the minimiser.

methods:
  reduced  exact convex program over the k x k Gram of class means (full batch only; any size, seconds)
  sdp      exact convex program over the n x n Gram (any batching: interior point up to n = 120, above it
           each read component solved on its own, or the orthogonal frame with ReLU; certified either way)
  gd       L-BFGS (full batch) or Adam (mini-batches) on free features in torch (CPU or CUDA)

Every exact answer is polished and its objective certified by a duality gap the project recomputes
itself; a solver that does not reach a certified optimum is an error, never a result. The geometry
is judged separately and printed first: exact (the unique minimiser, within a stated radius),
not unique (the range of delta_of over minimisers exhibited) or unresolved (float64 cannot tell).

example:
  python -m ufm solve --counts 5000,500,50,5 --relu --method reduced --json
"""


def _counts(text: str) -> list[int]:
    try:
        counts = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--counts must be comma-separated integers, got {text!r}") from None
    if len(counts) < 2:
        raise argparse.ArgumentTypeError("--counts needs at least two classes")
    if min(counts) < 1:
        raise argparse.ArgumentTypeError(f"every class count must be >= 1, got {counts}")
    return counts


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


def _epochs(labels: np.ndarray, args):
    """The batching asked for on the command line: ``None`` (one full batch) or the library's epoch batcher
    (epoch e: random batches seeded ``epoch_seed(seed, e)``, plus the binding examples when asked)."""
    if args.batch_size is None:
        if args.binding:
            raise ValueError("--binding needs --batch-size (binding examples are added to mini-batches)")
        return None
    from ufm.batching import epoch_batcher

    return epoch_batcher(labels, args.batch_size, args.seed, binding=args.binding)


def _exact(args, labels):
    """reduced / sdp: the solver's result as a dict, the geometry verdict first."""
    from ufm import solvers

    if args.method == "reduced":
        if args.batch_size is not None:
            raise ValueError("--method reduced solves the full-batch problem; use sdp or gd with --batch-size")
        res = solvers.solve_reduced(args.counts, temperature=args.temperature, relu=args.relu)
    else:
        epochs = _epochs(labels, args)
        res = solvers.solve_sdp(labels, batches=epochs(0) if epochs is not None else None,
                                temperature=args.temperature, relu=args.relu, seed=args.seed)
    return res.to_dict()


def _gradient_descent(args, labels):
    """gd: a first-order run, with no certificate and no geometry verdict."""
    from ufm import solvers
    from ufm.geometry import delta_etf, delta_of

    epochs = _epochs(labels, args)
    dim = args.dim if args.dim is not None else len(args.counts)
    res = solvers.solve_gd(labels, dim, temperature=args.temperature, relu=args.relu,
                           batches=epochs if epochs is not None else "full",
                           optimizer=args.optimizer or ("lbfgs" if epochs is None else "adam"),
                           steps=args.steps, seed=args.seed, device=args.device)
    return {"geometry": {"verdict": "not certified (first-order method: no certificate)"},
            "objective": res.objective,
            "certificate": {"kind": "none (first-order method)",
                            "of_objective": solvers.of_objective(labels, None, args.temperature)
                            if epochs is None else None},
            "returned": {"delta_of": delta_of(res.features, labels), "delta_etf": delta_etf(res.features, labels)},
            "status": str(res.stop_reason), "steps": int(res.steps), "device": str(res.device)}


def _print_table(out: dict) -> None:
    geo = out["geometry"]
    print(f"{'geometry':>12}: {geo['verdict']}" + (f" ({geo['proof']})" if geo.get("proof") else ""))
    if geo.get("reason"):
        print(f"{'why':>12}: {geo['reason']}")
    if geo.get("verdict") == "exact":
        print(f"{'delta_of':>12}: {geo['delta_of']:.6g} (the minimiser's; within {geo['radius']:.1e})")
        if geo.get("delta_etf") is not None:
            print(f"{'delta_etf':>12}: {geo['delta_etf']:.6g}")
    elif geo.get("delta_of_range"):
        lo, hi = geo["delta_of_range"]
        print(f"{'delta_of':>12}: from {lo:.4g} to {hi:.4g} over the minimisers exhibited")
    cert = out["certificate"]
    print(f"{'objective':>12}: {out['objective']:.12g}")
    if "gap" in cert:
        print(f"{'certificate':>12}: gap {cert['gap']:.2e} <= bound {cert['bound']:.2e} (lower bound on f* "
              f"{cert['lower_bound']:.12g}; candidate {cert['candidate']})")
    else:
        print(f"{'certificate':>12}: {cert['kind']}")
    for key in ("method", "counts", "relu", "temperature", "status", "seconds"):
        print(f"{key:>12}: {out.get(key)}")


def run_solve(args) -> int:
    if args.binding and args.batch_size is None:
        raise ValueError("--binding needs --batch-size (binding examples are added to mini-batches)")
    labels = np.repeat(np.arange(len(args.counts)), args.counts)
    t0 = time.time()
    out = _gradient_descent(args, labels) if args.method == "gd" else _exact(args, labels)
    out.update(method=args.method, counts=args.counts, relu=args.relu, temperature=args.temperature,
               seconds=time.time() - t0)
    if args.json:
        print(json.dumps(_jsonable(out)))
    else:
        _print_table(out)
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``error: <command>: <message> (see <command> --help)``,
    with exit status 2 (argparse's own: the usage, then the message). Sub-command parsers are of this
    class too (``add_subparsers`` takes the parent's class)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {_one_line(message)} (see {self.prog} --help)\n")


# the mistakes a user can make: bad values (ValueError, TypeError and the project's errors that subclass
# them), files and folders (OSError), solvers that cannot certify an answer (SolverError, a RuntimeError)
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError)


def _one_line(text) -> str:
    """A message on one line: its non-empty lines joined (YAML and torch write several)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def error_line(err: BaseException) -> str:
    """The line ``error: ...`` printed for a user mistake ``err``.

    An OSError from the system names its file and the reason ("Not a directory"); other errors give
    their message (on one line), or their type when they have none.
    """
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = _one_line(err) or type(err).__name__
    if isinstance(err, RuntimeError) and not type(err).__module__.startswith("ufm"):
        text += " (--debug shows the traceback)"  # from a library: possibly a bug rather than a mistake
    return f"error: {text}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ufm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the Python traceback instead of the one line 'error: ...' "
                             "(also UFM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("solve", help="solve the SCL unconstrained features model", description=SOLVE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=_counts, required=True,
                   help="samples per class, comma-separated, e.g. 100,10,10 (imbalance ratio = max/min)")
    p.add_argument("--relu", action="store_true",
                   help="non-negative features (the features after a final ReLU): G >= 0 entrywise")
    p.add_argument("--temperature", type=float, default=0.1, help="SCL temperature tau > 0 (default 0.1)")
    p.add_argument("--method", choices=["reduced", "sdp", "gd"], default="reduced",
                   help="reduced (exact, k x k), sdp (exact, n x n, any batching) or gd (torch); default reduced")
    p.add_argument("--batch-size", type=int, default=None,
                   help="mini-batch size (sdp: epoch 0 of the library's epoch batcher; gd: every epoch of it); "
                        "default: one full batch")
    p.add_argument("--binding", action="store_true",
                   help="add one fixed binding example per class to every mini-batch (needs --batch-size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batching and of the gd initialisation")
    p.add_argument("--dim", type=int, default=None, help="gd: feature dimension d (default k)")
    p.add_argument("--steps", type=int, default=500, help="gd: optimisation steps (default 500)")
    p.add_argument("--optimizer", choices=["lbfgs", "adam", "sgd"], default=None,
                   help="gd: optimiser (default lbfgs for full batch, adam for mini-batches)")
    p.add_argument("--device", default=None, help="gd: torch device (default cuda when present, else cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run_solve)
    importlib.import_module("ufm.train.cli").register(sub)  # train: with the training harness
    importlib.import_module("ufm.study.cli").register(sub)  # sweep, report: with the study engine
    importlib.import_module("ufm.guidelines.cli").register(sub)  # phase: hyperparameter guidelines on the UFM
    return parser


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    A bad command line exits through ``SystemExit(2)`` (argparse) with one line ``error: ...``; a user
    mistake found later (:data:`USER_ERRORS`) prints one line ``error: ...`` on stderr and returns 2;
    ``--debug`` or ``UFM_DEBUG=1`` re-raises it with its traceback. Ctrl-C returns 130 (a training run
    resumes from its last checkpoint). Any other exception is a bug and keeps its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "temperature", 1.0) is not None and getattr(args, "temperature", 1.0) <= 0:
        parser.error(f"--temperature must be positive, got {args.temperature!r}")
    debug = args.debug or os.environ.get("UFM_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if debug:
            raise
        print(error_line(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
