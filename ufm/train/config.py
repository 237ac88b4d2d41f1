"""Training configuration: a dataclass, YAML files with profiles, and ``key=value`` overrides.

A config file (``ufm/configs/<name>.yaml`` or any path) holds TrainConfig fields at the top level and
a ``profiles`` section whose entries override them::

    description: SupCon under STEP imbalance (the SCL paper's protocol)
    loss: supcon
    loss_kwargs: {temperature: 0.1}
    imbalance: step
    profiles:
      ci:    {dataset: animal_mnist, model: mlp, epochs: 12, ...}     # minutes on a laptop CPU
      paper: {dataset: cifar10, model: resnet18_cifar, epochs: 350, milestones: [116, 232], ...}

``load_config(name, profile, overrides)`` merges: dataclass defaults < file top level < the profile's
section < overrides (a dict, or ``["key=value", ...]`` with YAML-parsed values; ``loss_kwargs.temperature=0.5``
sets one entry of a dict field). ``*_kwargs`` dicts are merged key by key, not replaced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainConfig", "load_config", "parse_overrides", "config_dir", "available_configs", "PROFILES", "FIELD_HELP",
           "RESUME_FREE", "RUN_IDENTITY_FREE", "AMP_MODES", "amp_mode", "amp_dtype"]

PROFILES = ("ci", "paper")

# mixed precision: the accepted values of ``amp`` and the mode each one means
AMP_MODES = ("none", "fp16", "bf16")
_AMP_ALIASES = {False: "none", True: "fp16", "none": "none", "fp16": "fp16", "bf16": "bf16"}

FIELD_HELP: dict[str, str] = {
    "dataset": "data set name (ufm.data): digits, animal_mnist, mnist1d, cifar10, cifar100, mnist, fashion_mnist",
    "data_root": "data folder (default $UFM_DATA or ./data)",
    "download": "let torchvision download missing files (checksummed); off unless asked",
    "val_fraction": "share of the training data held out as a validation split (0: none); adds val_acc",
    "model": "model name (ufm.models): resnet18_cifar, resnet50_cifar, small_resnet, mlp, ...",
    "model_kwargs": "extra model options, e.g. {widths: [32, 64, 128]}",
    "loss": "loss name (ufm.losses): ce, supcon, ...",
    "loss_kwargs": "loss options, e.g. {temperature: 0.1}; num_classes / feature_dim / dim are filled in when the loss takes them",
    "epochs": "number of training epochs",
    "batch_size": "global batch size (before batch binding adds k samples; split over ranks under torchrun); >= 2 "
                  "samples per rank (a smaller batch takes no step)",
    "lr": "SGD learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay (L2), also on loss parameters",
    "nesterov": "Nesterov momentum",
    "milestones": "epochs at which the learning rate is multiplied by lr_gamma",
    "lr_gamma": "learning-rate factor at each milestone",
    "warmup": "epochs of linear learning-rate warm-up (lr * (e + 1) / (warmup + 1) for e < warmup)",
    "imbalance": "none | step (half the classes minority) | exp (exponential profile)",
    "ratio": "imbalance ratio R = n_max / n_min (1 for none)",
    "n_per_class": "n_max (majority size) before imbalance; default: the smallest class of the training split",
    "seed": "seed of weights, imbalance subsampling, batches and augmentation",
    "final_relu": "keep the ReLU that ends the embedding (false: features may be negative)",
    "feature_dim": "add a Linear projection to this dimension before the classifier",
    "binding": "batch binding: append one fixed example per class to every batch",
    "augment": "random crop (+ flip where labels allow) of every view",
    "shared_views": "when a loss's views are exact copies (augment false, or no crop and no flip) and the model draws "
                    "no randomness in training (no dropout): one forward pass, its outputs tiled into the views (the "
                    "same objective and gradient as the copies pushed through the network, about 0.7 of the step's "
                    "time with two views; BatchNorm's running variance counts B rows, not V * B, in its unbiased "
                    "correction). false: every copy through the network",
    "device": "auto | cpu | cuda | cuda:N",
    "amp": "mixed precision: none (or false) | fp16 (or true: float16 autocast + grad scaler, on CUDA only, ignored "
           "elsewhere) | bf16 (bfloat16 autocast, no grad scaler, on CUDA and CPU; Hopper-class GPUs prefer it). "
           "The paper profiles keep true (float16, the papers' era of GPUs); amp=bf16 selects bfloat16",
    "num_workers": "kept for configs of file-backed data; data here are in-memory tensors, batches are built on the device",
    "eval_every": "evaluate (accuracy, geometry) every this many epochs and at the last one",
    "eval_batch_size": "batch size of the evaluation passes",
    "probe_every": "fit the linear probe (contrastive losses) every this many evaluations (0: last epoch only)",
    "scoring": "auto | logits | ncc: how accuracy is scored (auto: loss scores, else logits if the objective trains the classifier, else nearest class centre)",
    "nc_centring": "global mean of the neural-collapse metrics: balanced (mean of the class means) | weighted (sample mean); theory/nc-metrics.md",
    "sync_bn": "SyncBatchNorm across ranks under torchrun",
    "progress": "show a progress bar and one line per epoch",
}

# fields that may differ between a checkpoint and the config that resumes it (they do not change results)
RESUME_FREE = ("epochs", "device", "num_workers", "progress", "data_root", "download", "eval_batch_size")
# fields left out of a run's identity (ufm.study run ids): where and how it runs, how it is labelled
RUN_IDENTITY_FREE = tuple(f for f in RESUME_FREE if f != "epochs") + ("name", "profile")


@dataclass
class TrainConfig:
    """Everything a training run depends on (see ``FIELD_HELP`` for each field)."""

    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    val_fraction: float = 0.0
    model: str = "small_resnet"
    model_kwargs: dict = field(default_factory=dict)
    loss: str = "ce"
    loss_kwargs: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    milestones: list = field(default_factory=list)
    lr_gamma: float = 0.1
    warmup: int = 0
    imbalance: str = "none"
    ratio: float = 1.0
    n_per_class: int | None = None
    seed: int = 0
    final_relu: bool = True
    feature_dim: int | None = None
    binding: bool = False
    augment: bool = True
    shared_views: bool = True
    device: str = "auto"
    amp: bool | str = True
    num_workers: int = 0
    eval_every: int = 1
    eval_batch_size: int = 1024
    probe_every: int = 1
    scoring: str = "auto"
    nc_centring: str = "balanced"
    sync_bn: bool = False
    progress: bool = False
    name: str = ""
    profile: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **kw) -> "TrainConfig":
        return apply_overrides(self, kw)

    def validate(self) -> "TrainConfig":
        """Check types, ranges and registry names; raise ValueError naming the problem. Returns self."""
        from ufm.data import DATASETS
        from ufm.data.imbalance import IMBALANCE_KINDS
        from ufm.losses import LOSSES
        from ufm.models import MODELS

        def need(ok: bool, msg: str):
            if not ok:
                raise ValueError(f"config: {msg}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")

        need(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; available: {sorted(DATASETS)}")
        need(self.model in MODELS, f"unknown model {self.model!r}; available: {sorted(MODELS)}")
        need(self.loss in LOSSES, f"unknown loss {self.loss!r}; available: {sorted(LOSSES)}")
        for name in ("model_kwargs", "loss_kwargs"):
            need(isinstance(getattr(self, name), dict), f"{name} must be a mapping, got {getattr(self, name)!r}")
        for name in ("download", "nesterov", "final_relu", "binding", "augment", "shared_views", "sync_bn",
                     "progress"):
            need(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        amp_mode(self.amp)
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            v = getattr(self, name)
            need(is_int(v) and v >= 1, f"{name} must be an integer >= 1, got {v!r}")
        for name in ("warmup", "num_workers", "seed", "probe_every"):
            v = getattr(self, name)
            need(is_int(v) and v >= 0, f"{name} must be an integer >= 0, got {v!r}")
        # a batch of one sample is skipped by the loop (BatchNorm and the pair losses need two): without the
        # binding examples that join every batch, batch_size=1 would train nothing
        need(self.binding or self.batch_size >= 2,
             f"batch_size must be >= 2 (or binding=true), got {self.batch_size!r}: a batch of one sample takes no "
             "step (BatchNorm and the pair losses need two samples)")
        need(is_num(self.lr) and self.lr > 0, f"lr must be a positive number, got {self.lr!r}")
        need(is_num(self.momentum) and 0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum!r}")
        need(is_num(self.weight_decay) and self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(is_num(self.lr_gamma) and self.lr_gamma > 0, f"lr_gamma must be positive, got {self.lr_gamma!r}")
        need(not self.nesterov or self.momentum > 0, "nesterov needs momentum > 0")
        need(isinstance(self.milestones, (list, tuple)) and all(is_int(m) and m >= 1 for m in self.milestones),
             f"milestones must be a list of positive epoch numbers, got {self.milestones!r}")
        need(list(self.milestones) == sorted(set(self.milestones)),
             f"milestones must be strictly increasing, got {self.milestones!r}")
        need(self.imbalance in IMBALANCE_KINDS, f"imbalance must be one of {IMBALANCE_KINDS}, got {self.imbalance!r}")
        need(is_num(self.ratio) and self.ratio >= 1, f"ratio must be a number >= 1, got {self.ratio!r}")
        need(self.imbalance != "none" or self.ratio == 1,
             f"ratio={self.ratio} has no effect with imbalance='none' (set imbalance=step or exp)")
        need(self.n_per_class is None or (is_int(self.n_per_class) and self.n_per_class >= 1),
             f"n_per_class must be a positive integer or null, got {self.n_per_class!r}")
        need(self.feature_dim is None or (is_int(self.feature_dim) and self.feature_dim >= 1),
             f"feature_dim must be a positive integer or null, got {self.feature_dim!r}")
        need(is_num(self.val_fraction) and 0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        need(self.scoring in ("auto", "logits", "ncc"), f"scoring must be auto, logits or ncc, got {self.scoring!r}")
        need(self.nc_centring in ("balanced", "weighted"),
             f"nc_centring must be balanced (mean of the class means) or weighted (sample mean), got {self.nc_centring!r}")
        need(isinstance(self.device, str) and (self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps")),
             f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        need(self.data_root is None or isinstance(self.data_root, str), f"data_root must be a path or null, got {self.data_root!r}")
        return self


def amp_mode(amp) -> str:
    """The mixed-precision mode a config's ``amp`` value asks for: one of :data:`AMP_MODES`.

    ``false`` and ``"none"`` mean "none"; ``true`` (the value configs have always used) and ``"fp16"``
    mean "fp16"; ``"bf16"`` means "bf16".

    Raises:
        ValueError: any other value, listing the accepted ones.
    """
    if isinstance(amp, (bool, str)) and amp in _AMP_ALIASES:
        return _AMP_ALIASES[amp]
    raise ValueError(f"config: amp must be one of none (or false), fp16 (or true), bf16; got {amp!r}")


def amp_dtype(amp, device_type: str):
    """The autocast dtype of ``amp`` on a device of type ``device_type``, or None (full precision).

    fp16 -> ``torch.float16`` on "cuda" only (a CPU has no fast float16; as before the mode is ignored
    there); bf16 -> ``torch.bfloat16`` on "cuda" and "cpu" (both autocast in bfloat16); none -> None.
    A float16 run needs a grad scaler (gradients underflow in float16); a bfloat16 run does not (it has
    float32's exponent range).
    """
    import torch

    mode = amp_mode(amp)
    if mode == "fp16" and device_type == "cuda":
        return torch.float16
    if mode == "bf16" and device_type in ("cuda", "cpu"):
        return torch.bfloat16
    return None


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def config_dir() -> Path:
    """The folder of the project's config files (``ufm/configs``)."""
    return Path(__file__).resolve().parents[1] / "configs"


def available_configs() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def parse_overrides(items) -> dict[str, Any]:
    """``["lr=0.05", "loss_kwargs.temperature=0.5", "milestones=[5, 8]"]`` -> a dict (YAML-parsed values)."""
    if items is None:
        return {}
    if isinstance(items, dict):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"an override must look like key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"an override has an empty key: {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ValueError(f"override {item!r}: the value is not valid YAML ({e})") from None
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string: accept plain numbers
            for conv in (int, float):
                try:
                    value = conv(value)
                    break
                except ValueError:
                    pass
        out[key] = value
    return out


def _coerce(name: str, value):
    """Light coercion of YAML values to the field's type (ints given for floats, ...)."""
    if name in ("lr", "momentum", "weight_decay", "lr_gamma", "ratio", "val_fraction") and isinstance(value, int) \
            and not isinstance(value, bool):
        return float(value)
    if name == "milestones" and isinstance(value, tuple):
        return list(value)
    return value


def apply_overrides(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """A new config with ``overrides`` applied (dotted keys set one entry of a dict field)."""
    data = cfg.to_dict()
    for key, value in overrides.items():
        if "." in key:
            head, sub = key.split(".", 1)
            if head not in _FIELDS or not isinstance(data.get(head), dict):
                raise ValueError(f"config: {key!r}: {head!r} is not a mapping field (model_kwargs, loss_kwargs)")
            data[head] = {**data[head], sub: value}
            continue
        if key not in _FIELDS:
            raise ValueError(f"config: unknown field {key!r}; fields are: {sorted(_FIELDS)}")
        if key in ("model_kwargs", "loss_kwargs"):
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ValueError(f"config: {key} must be a mapping, got {value!r}")
            data[key] = {**data[key], **value}
        else:
            data[key] = _coerce(key, value)
    return TrainConfig(**data)


def _resolve(name_or_path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    cand = config_dir() / f"{name_or_path}.yaml"
    if cand.exists():
        return cand
    raise ValueError(
        f"config {str(name_or_path)!r} not found (looked for the file {p} and for {cand}); "
        f"project configs: {available_configs()}"
    )


def load_config(name_or_path, profile: str | None = "ci", overrides=None) -> TrainConfig:
    """Load a config file (name in ``ufm/configs`` or a path), apply a profile and overrides, validate."""
    path = _resolve(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"config {path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config {path}: the top level must be a mapping of fields")
    raw = dict(raw)
    raw.pop("description", None)
    profiles = raw.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise ValueError(f"config {path}: 'profiles' must map profile names to field overrides")
    cfg = apply_overrides(TrainConfig(), raw)
    if profile:
        if profile not in profiles:
            raise ValueError(f"config {path}: no profile {profile!r}; it has {sorted(profiles)}")
        cfg = apply_overrides(cfg, profiles[profile] or {})
    cfg = apply_overrides(cfg, parse_overrides(overrides))
    cfg = apply_overrides(cfg, {"name": cfg.name or path.stem, "profile": profile or ""})
    return cfg.validate()
