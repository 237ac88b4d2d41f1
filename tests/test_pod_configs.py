"""The POD configs' networks match the authors' (theory/pod-loss.md, "Final ReLU"): the embedding ends
with a ReLU (non-negative), the features are the linear projection's output (signed)."""

from __future__ import annotations

import pytest
import torch

from ufm.models import build_model
from ufm.train import load_config

POD_CONFIGS = ["pod", "pod_ce", "pod_cosface", "pod_pedcc_loss", "pod_cot", "pod_dot_regression"]


@pytest.mark.parametrize("name", POD_CONFIGS)
@pytest.mark.parametrize("profile", ["ci", "paper"])
def test_every_pod_config_keeps_the_final_relu_before_the_projection(name, profile):
    cfg = load_config(name, profile)
    assert cfg.final_relu and cfg.feature_dim is not None


def test_paper_profile_embedding_is_nonnegative_and_features_signed():
    cfg = load_config("pod", "paper")
    model = build_model(cfg.model, num_classes=100, in_channels=3, feature_dim=cfg.feature_dim,
                        final_relu=cfg.final_relu, seed=0, **cfg.model_kwargs)
    model.eval()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # tiny input, no data set
    with torch.no_grad():
        e, _ = model.embed(x)       # (4, 2048): pooled output of the last Bottleneck
        h = model(x).features       # (4, 512): the fc projection of e
    assert e.shape == (4, 2048) and h.shape == (4, cfg.feature_dim)
    assert float(e.min()) >= 0 and float(e.max()) > 0
    assert float(h.min()) < 0 < float(h.max())
    assert torch.allclose(h, model.projection(e), atol=1e-6)
