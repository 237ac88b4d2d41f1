"""Training harness: one loop for every registered loss, per-epoch geometry metrics, atomic
checkpoints with exact resume, DDP with gradient-carrying gathers, configs with ``ci`` / ``paper``
profiles, and the ``python -m ufm train`` command.

    from ufm.train import load_config, train
    cfg = load_config("supcon", profile="ci", overrides=["ratio=10"])
    rows = train(cfg, "runs/supcon_r10")          # also runs/supcon_r10/metrics.jsonl
"""

from __future__ import annotations

from ufm.train.config import PROFILES, TrainConfig, available_configs, config_dir, load_config, parse_overrides
from ufm.train.checkpoint import CheckpointError, RunFolderError, RunState, run_state
from ufm.train.loop import CHECKPOINT, METRIC_KEYS, METRICS_FILE, BatchObjective, build_run, lr_factor, read_metrics, train
from ufm.geometry.seli import centred_gram, mean_pairwise_cosine, seli_grams

__all__ = [
    "TrainConfig",
    "load_config",
    "parse_overrides",
    "available_configs",
    "config_dir",
    "PROFILES",
    "train",
    "run_state",
    "RunState",
    "CheckpointError",
    "RunFolderError",
    "BatchObjective",
    "build_run",
    "read_metrics",
    "lr_factor",
    "METRIC_KEYS",
    "METRICS_FILE",
    "CHECKPOINT",
    "seli_grams",
    "mean_pairwise_cosine",
    "centred_gram",
]
