"""Model registry and the common head of every network of the project.

A network is ``backbone -> embedding e (B, F) -> [projection P: Linear(F, feature_dim)] -> features h ->
classifier: Linear(d, k) -> logits``. ``forward`` returns :class:`ufm.losses.base.ModelOutput`:

* ``features``: h, the input of ``model.classifier`` (B, d): the pooled embedding after the optional
  final ReLU, or, with ``feature_dim``, its projection P(e) (the large-margin paper's head is
  ReLU -> Linear(512, 30) -> Linear(30, 10): ``feature_dim=30``);
* ``logits``: ``model.classifier(h)`` (B, k), ``model.classifier`` the final ``nn.Linear`` (with the model
  option ``dropout=p > 0``: ``model.classifier(dropout_p(h))``, a parameter-free module, so the state-dict
  keys are the same; ``features`` stays h);
* ``activations``: ``{model.last_stage: map of the last stage}`` always (e.g. "layer4" (B, F, H, W) for
  the CIFAR ResNets, the map whose pooled form is e), plus every submodule named in
  ``record_activations`` (names as in ``model.named_modules()``, e.g. "layer3").

``final_relu=False`` removes the ReLU that ends the embedding (for a ResNet, the one after the last
residual addition), so features may be negative; the state-dict keys are the same either way.

A new architecture is one module in ``ufm/models/`` with a factory decorated ``@register_model("name")``
returning a :class:`FeatureNet` subclass; ``ufm.models`` imports every module of the package.
"""

from __future__ import annotations

import inspect
from typing import Callable, Iterable

import torch
from torch import nn

from ufm.losses.base import ModelOutput

__all__ = ["ModelOutput", "FeatureNet", "MODELS", "register_model", "get_model_factory", "build_model", "model_accepts"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register a model factory (or class) under ``name``.

    The factory is called as ``factory(num_classes=..., in_channels=..., feature_dim=..., final_relu=...,
    **kw)`` and returns an ``nn.Module`` whose forward returns a ``ModelOutput``.
    """

    def deco(fn: Callable) -> Callable:
        if name in MODELS and MODELS[name] is not fn:
            raise ValueError(f"a model named {name!r} is already registered")
        MODELS[name] = fn
        return fn

    return deco


def get_model_factory(name: str) -> Callable[..., nn.Module]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}") from None


def model_accepts(name: str, arg: str) -> bool:
    """Whether the factory of model ``name`` takes keyword ``arg`` (or ``**kwargs``)."""
    params = inspect.signature(get_model_factory(name)).parameters
    return arg in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    feature_dim: int | None = None,
    final_relu: bool = True,
    seed: int | None = None,
    **kw,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (see ``ufm.models.MODELS``): "resnet18_cifar", "resnet50_cifar",
            "small_resnet", "mlp", ...
        num_classes: k, the classifier's output size.
        in_channels: input channels (3 for CIFAR, 1 for the grayscale and 1-D sets).
        feature_dim: if given, a Linear(embedding, feature_dim) projection before the classifier.
        final_relu: keep (True) or remove (False) the ReLU that ends the embedding.
        seed: if given, initialise the weights from ``torch.manual_seed(seed)`` without touching the
            global random state; otherwise the global torch generator is used.
        **kw: model-specific options (``record_activations``, ``input_shape``, widths, ...).
    """
    factory = get_model_factory(name)
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}")
    if isinstance(in_channels, bool) or int(in_channels) != in_channels or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels}")
    if feature_dim is not None and (isinstance(feature_dim, bool) or int(feature_dim) != feature_dim or feature_dim < 1):
        raise ValueError(f"feature_dim must be a positive integer or None, got {feature_dim}")
    args = dict(num_classes=int(num_classes), in_channels=int(in_channels), feature_dim=feature_dim, final_relu=bool(final_relu))
    try:
        inspect.signature(factory).bind(**args, **kw)
    except TypeError as e:
        raise ValueError(f"model {name!r} does not take these options {sorted(kw)}: {e}") from None
    if seed is None:
        return factory(**args, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return factory(**args, **kw)


class FeatureNet(nn.Module):
    """Common head: optional projection, the classifier, activation recording.

    Subclasses set up their layers, then call :meth:`_init_head` with the embedding width, and implement
    ``embed(x) -> (e (B, F), last_stage_map)``.
    """

    last_stage: str = "layer4"

    def _init_head(self, embed_dim: int, num_classes: int, feature_dim: int | None, record_activations: Iterable[str],
                   dropout: float = 0.0):
        """Projection, classifier and activation hooks; ``dropout`` in [0, 1): p of a dropout on h before the
        classifier (the Gini/KL authors' ResNet-50 uses 0.4); 0 adds no module (state dict and outputs unchanged)."""
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.head_dropout = nn.Dropout(float(dropout)) if dropout > 0 else None
        self.embed_dim = int(embed_dim)
        self.projection = nn.Linear(self.embed_dim, int(feature_dim)) if feature_dim else None
        self.feature_dim = int(feature_dim) if feature_dim else self.embed_dim
        self.num_classes = int(num_classes)
        self.classifier = nn.Linear(self.feature_dim, self.num_classes)
        self._recorded: dict[str, torch.Tensor] = {}
        modules = dict(self.named_modules())
        self.record_activations = tuple(record_activations or ())
        for name in self.record_activations:
            if name not in modules or name == "":
                raise ValueError(
                    f"record_activations: no submodule named {name!r}; available: "
                    f"{[n for n in modules if n and '.' not in n]}"
                )
            modules[name].register_forward_hook(self._make_hook(name))

    def _make_hook(self, name: str):
        def hook(module, inputs, output):
            self._recorded[name] = output

        return hook

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> ModelOutput:
        self._recorded = {}
        e, last = self.embed(x)
        h = self.projection(e) if self.projection is not None else e
        logits = self.classifier(h if self.head_dropout is None else self.head_dropout(h))  # features stay h
        acts = dict(self._recorded)
        acts[self.last_stage] = last
        self._recorded = {}
        return ModelOutput(features=h, logits=logits, activations=acts)
