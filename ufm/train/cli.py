"""``python -m ufm train``: train a network with any registered loss from a config file.

``register(subparsers)`` adds the ``train`` sub-command to the project's command line (``ufm/cli.py``).
"""

from __future__ import annotations

import argparse
import json

from ufm.train.config import FIELD_HELP, PROFILES, available_configs

TRAIN_HELP = """\
Train a network with a registered loss and write, under --out:
  metrics.jsonl   one JSON object per epoch: epoch, lr, train_loss, train_acc, test_acc, ncc_acc,
                  delta_of, delta_etf, nc1 (+ probe_acc for contrastive losses, imbalance metrics,
                  values returned by the loss's on_epoch_end), seconds
  run.json        the resolved config, class counts after imbalance, sizes, device
  checkpoint.pt   written atomically after every epoch; running the same command again resumes
                  (and says so), or says the run is already complete; --restart starts afresh

A config file has top-level fields and a `profiles` section (ci: minutes on a CPU; paper: the paper's
protocol, for a GPU). Any field can be overridden as key=value (YAML values; dict entries with dots).

examples:
  python -m ufm train --config supcon --profile ci --out runs/supcon_ci ratio=10
  python -m ufm train --config ce --profile ci --out runs/ce_ci imbalance=step ratio=100 final_relu=false
  python -m ufm train --config supcon --profile paper --out runs/scl_cifar10_r10 ratio=10 data_root=/data
  torchrun --nproc_per_node=2 -m ufm train --config supcon --profile paper --out runs/ddp ratio=10

fields (key=value):
""" + "\n".join(f"  {k:<16}{v}" for k, v in FIELD_HELP.items())


def run_train(args) -> int:
    import sys

    from ufm.train.config import load_config
    from ufm.train.loop import train

    cfg = load_config(args.config, args.profile, args.overrides)
    quiet = args.progress is False
    # on a terminal: a bar over batches and one line per epoch; otherwise one line per epoch; --quiet: neither
    cfg = cfg.replace(progress=bool(args.progress) if args.progress is not None else sys.stdout.isatty())
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    log = None if quiet else (lambda line: print(line, flush=True))
    rows = train(cfg, args.out, resume=not args.restart, stop_after=args.stop_after, log=log)
    if rows:
        last = rows[-1]
        keys = [k for k in ("epoch", "train_loss", "train_acc", "test_acc", "probe_acc", "ncc_acc", "delta_of",
                            "delta_etf", "nc1") if last.get(k) is not None]
        print("final: " + "  ".join(f"{k}={last[k]:.4g}" if isinstance(last[k], float) else f"{k}={last[k]}" for k in keys))
    print(f"metrics: {args.out}/metrics.jsonl")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to an ``argparse`` sub-parsers object; returns its parser."""
    p = subparsers.add_parser("train", help="train a network with any registered loss (configs with ci / paper profiles)",
                              description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help=f"config name in ufm/configs ({', '.join(available_configs())}) or a path to a YAML file")
    p.add_argument("--profile", default="ci", choices=list(PROFILES),
                   help="profile section of the config: ci (minutes on a CPU, packaged data) or paper (the paper's "
                        "full protocol, for a GPU); default ci")
    p.add_argument("--out", required=True, help="output folder (metrics.jsonl, run.json, checkpoint.pt)")
    p.add_argument("--restart", action="store_true",
                   help="ignore a checkpoint in --out and start from epoch 0 (default: resume from it)")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N epochs of this invocation (the run resumes later from its checkpoint)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="a progress bar over each epoch's batches and one line per epoch (default on a terminal; "
                        "elsewhere one line per epoch without the bar)")
    p.add_argument("--quiet", dest="progress", action="store_false",
                   help="print only the final metrics (for scripts): no bar, no per-epoch or resume lines")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. ratio=10 epochs=5 loss_kwargs.temperature=0.2 (YAML values)")
    p.set_defaults(func=run_train)
    return p
