"""Command line: ``python -m ufm <command> ...``.

Commands:
    solve   solve the SCL unconstrained features model (exact reduced / exact SDP / gradient descent)
    train   train a network with any registered loss (see ``python -m ufm train --help``)
    sweep   run a study: a config x a grid x seeds, locally or on a Ray cluster, with a summary table
    report  the summary table, or a paired comparison of two arms, of a study folder
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

import numpy as np

SOLVE_HELP = """\
Solve the supervised-contrastive unconstrained features model for given class counts and print the
geometry of the minimiser.

methods:
  reduced  exact convex program over the k x k Gram of class means (full batch only; any size, seconds)
  sdp      exact convex program over the n x n Gram (any batching; n up to about 100)
  gd       L-BFGS (full batch) or Adam (mini-batches) on free features in torch (CPU or CUDA)

Every exact answer is polished and certified by a duality gap the project recomputes itself; a
solver that does not reach a certified optimum is an error, never a result.

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


def _batches(labels: np.ndarray, args):
    """The batching asked for on the command line (None = full batch)."""
    if args.batch_size is None:
        if args.binding:
            raise SystemExit("error: --binding needs --batch-size (binding examples are added to mini-batches)")
        return None
    from ufm import batching

    def epoch_batches(epoch: int):
        b = batching.random_batches(labels, args.batch_size, seed=args.seed + epoch)
        if args.binding:
            b = batching.bind(b, batching.binding_examples(labels, seed=args.seed))
        return b

    return epoch_batches


def run_solve(args) -> int:
    from ufm import solvers
    from ufm.geometry import delta_etf, delta_of

    if args.binding and args.batch_size is None:
        raise SystemExit("error: --binding needs --batch-size (binding examples are added to mini-batches)")
    counts = args.counts
    labels = np.repeat(np.arange(len(counts)), counts)
    t0 = time.time()
    out: dict = {"method": args.method, "counts": counts, "relu": args.relu, "temperature": args.temperature}
    if args.method == "reduced":
        if args.batch_size is not None:
            raise SystemExit("error: --method reduced solves the full-batch problem; use sdp or gd with --batch-size")
        res = solvers.solve_reduced(counts, temperature=args.temperature, relu=args.relu)
        out.update(objective=res.objective, delta_of=res.delta_of, delta_etf=res.delta_etf, status=res.status,
                   certificate=res.certificate, certified=res.certified)
        out["gram_class"] = res.gram_class
    elif args.method == "sdp":
        batches = _batches(labels, args)
        blist = batches(0) if batches is not None else None
        res = solvers.solve_sdp(labels, batches=blist, temperature=args.temperature, relu=args.relu)
        out.update(objective=res.objective, delta_of=res.delta_of, delta_etf=res.delta_etf, status=res.status,
                   certificate=res.certificate, certified=res.certified)
    else:
        batches = _batches(labels, args)
        dim = args.dim if args.dim is not None else len(counts)
        res = solvers.solve_gd(labels, dim, temperature=args.temperature, relu=args.relu,
                               batches=batches if batches is not None else "full",
                               optimizer=args.optimizer or ("lbfgs" if batches is None else "adam"),
                               steps=args.steps, seed=args.seed, device=args.device)
        feats = res.features
        out.update(objective=res.objective, delta_of=delta_of(feats, labels), delta_etf=delta_etf(feats, labels),
                   status=str(res.stop_reason),
                   certificate={"kind": "none (first-order method)",
                                "of_objective": solvers.of_objective(labels, None, args.temperature)
                                if batches is None else None},
                   steps=int(res.steps),
                   device=str(res.device))
    out["seconds"] = time.time() - t0
    if args.json:
        print(json.dumps(_jsonable(out)))
    else:
        for key in ("method", "counts", "relu", "temperature", "objective", "delta_of", "delta_etf", "status",
                    "certificate", "seconds"):
            print(f"{key:>12}: {out.get(key)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ufm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
                   help="mini-batch size (sdp: one random epoch of batches; gd: a fresh shuffle each epoch); "
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
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "temperature", 1.0) is not None and getattr(args, "temperature", 1.0) <= 0:
        parser.error("--temperature must be positive")
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
