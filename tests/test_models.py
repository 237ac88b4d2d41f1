"""ufm.models: registry, the CIFAR stem, the final-ReLU switch, the projection head, activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from ufm.losses.base import ModelOutput as LossModelOutput
from ufm.models import MODELS, ModelOutput, build_model, register_model


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registry_and_contract_class():
    assert {"resnet18_cifar", "resnet50_cifar", "small_resnet", "mlp"} <= set(MODELS)
    assert ModelOutput is LossModelOutput
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", 10)
    with pytest.raises(ValueError, match="does not take"):
        build_model("resnet18_cifar", 10, depth=7)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("mlp", 1, input_shape=(1, 8, 8), in_channels=1)
    with pytest.raises(ValueError, match="already registered"):
        register_model("mlp")(lambda **kw: None)


@pytest.mark.parametrize("name, tv, blocks", [("resnet18_cifar", resnet18, 8), ("resnet50_cifar", resnet50, 16)])
def test_cifar_resnet_is_torchvision_with_3x3_stem(name, tv, blocks):
    m = build_model(name, 10, seed=0)
    ref = tv(num_classes=10)
    # only the stem differs: 7x7x3x64 -> 3x3x3x64 weights, no max-pool (it has no parameters)
    assert _count(m) == _count(ref) - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert not any(isinstance(x, nn.MaxPool2d) for x in m.modules())
    assert sum(1 for n, _ in m.named_children() if n.startswith("layer")) == 4
    assert sum(len(getattr(m, f"layer{i}")) for i in range(1, 5)) == blocks
    m.eval()
    out = m(torch.randn(2, 3, 32, 32))
    assert isinstance(out, ModelOutput)
    width = 512 if name == "resnet18_cifar" else 2048
    assert out.features.shape == (2, width) and out.logits.shape == (2, 10)
    assert out.activations["layer4"].shape == (2, width, 4, 4)  # 32 -> 32 -> 16 -> 8 -> 4: no early downsampling
    assert torch.allclose(out.logits, m.classifier(out.features))
    assert isinstance(m.classifier, nn.Linear)


def test_final_relu_switch_same_weights():
    on = build_model("resnet18_cifar", 10, final_relu=True, seed=3).eval()
    off = build_model("resnet18_cifar", 10, final_relu=False, seed=3).eval()
    assert on.state_dict().keys() == off.state_dict().keys()
    assert all(torch.equal(on.state_dict()[k], off.state_dict()[k]) for k in on.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        a, b = on(x), off(x)
    assert float(a.features.min()) >= 0 and float(b.features.min()) < 0
    # removing the last ReLU is the only difference
    assert torch.allclose(a.activations["layer4"], torch.relu(b.activations["layer4"]), atol=1e-6)


@pytest.mark.parametrize("name, shape, kw", [
    ("small_resnet", (1, 8, 8), {}),
    ("small_resnet", (1, 28, 28), {}),
    ("small_resnet", (1, 40), {}),
    ("mlp", (1, 28, 28), {}),
    ("mlp", (1, 40), {"batchnorm": True}),
])
def test_small_models(name, shape, kw):
    for relu in (True, False):
        m = build_model(name, 10, in_channels=1, input_shape=shape, final_relu=relu, seed=0, **kw).eval()
        with torch.no_grad():
            out = m(torch.randn(5, *shape))
        assert out.logits.shape == (5, 10) and out.features.shape == (5, m.feature_dim)
        assert m.feature_dim >= 10  # room for an orthogonal frame of 10 classes
        assert (float(out.features.min()) >= 0) == relu
        assert m.last_stage in out.activations
    wrong = (1, 9) if len(shape) == 3 else (1, 9, 9)  # convolutions take any size, not another rank
    with pytest.raises(ValueError, match="got a batch of shape"):
        m(torch.randn(5, *wrong))


def test_projection_head_and_recorded_activations():
    m = build_model("resnet18_cifar", 10, feature_dim=30, record_activations=["layer2", "layer3"], seed=0).eval()
    out = m(torch.randn(2, 3, 32, 32))
    assert out.features.shape == (2, 30) and m.classifier.in_features == 30 and m.projection.in_features == 512
    assert out.activations["layer2"].shape == (2, 128, 16, 16) and out.activations["layer3"].shape == (2, 256, 8, 8)
    # features = projection of the (ReLU'd) pooled last stage
    pooled = out.activations["layer4"].mean(dim=(2, 3))
    assert torch.allclose(out.features, m.projection(pooled), atol=1e-5)
    with pytest.raises(ValueError, match="no submodule named 'layer9'"):
        build_model("resnet18_cifar", 10, record_activations=["layer9"])


def test_seeded_build_is_reproducible_and_leaves_global_rng():
    torch.manual_seed(11)
    state = torch.get_rng_state()
    a = build_model("small_resnet", 10, in_channels=1, input_shape=(1, 8, 8), seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = build_model("small_resnet", 10, in_channels=1, input_shape=(1, 8, 8), seed=5)
    c = build_model("small_resnet", 10, in_channels=1, input_shape=(1, 8, 8), seed=6)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_densenet40_is_the_papers_network():
    """DenseNet-40, k = 12 (Huang et al. 2017, Table 2: 1.0M parameters on CIFAR-10): 16 + 3 x 12 x 12 = 448
    channels at the end, a non-negative embedding with the final ReLU, the same weights without it."""
    on = build_model("densenet40_cifar", 10, seed=0).eval()
    off = build_model("densenet40_cifar", 10, final_relu=False, seed=0).eval()
    assert on.embed_dim == 448 and 1.00e6 < sum(p.numel() for p in on.parameters()) < 1.03e6
    assert sum(isinstance(m, torch.nn.Conv2d) for m in on.modules()) + 1 == 40  # stem + 36 dense + 2 transitions, + fc
    x = torch.randn(4, 3, 32, 32)
    a, b = on(x), off(x)
    assert a.features.shape == (4, 448) and bool((a.features >= 0).all()) and bool((b.features < 0).any())
    assert a.activations["block3"].shape == (4, 448, 8, 8)
    assert on.state_dict().keys() == off.state_dict().keys()
    assert all(torch.equal(v, off.state_dict()[k]) for k, v in on.state_dict().items())
    with pytest.raises(ValueError, match="depth - 4 divisible by 3"):
        build_model("densenet40_cifar", 10, depth=41)
