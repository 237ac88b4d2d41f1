"""ResNet-17 and the CvT-style models: registry, shapes, activations for the Gini/KL terms, layer count,
final ReLU, gradients through the terms, bad input."""

from __future__ import annotations

import pytest
import torch

from ufm.losses import GiniKLLoss
from ufm.models import MODELS, build_model
from ufm.models.cvt import CvT
from ufm.models.resnet17 import ResNet17


def test_registered():
    for name in ("resnet17", "cvt_small", "cvt_cifar"):
        assert name in MODELS


@pytest.mark.parametrize("final_relu", [True, False])
def test_resnet17_shapes_layer_count_and_final_relu(final_relu):
    m = build_model("resnet17", 10, in_channels=3, final_relu=final_relu, seed=0, width=8,
                    record_activations=["layer3"])
    assert isinstance(m, ResNet17)
    assert m.weighted_layers == 17
    convs_main = sum(1 for n, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d) and "downsample" not in n)
    assert convs_main + 1 == 17  # + the classifier
    m.eval()
    with torch.no_grad():
        out = m(torch.randn(4, 3, 32, 32))
    assert out.features.shape == (4, 64) and out.logits.shape == (4, 10)
    assert out.activations["layer4"].shape == (4, 64, 4, 4)
    assert out.activations["layer3"].shape == (4, 32, 8, 8)
    assert torch.allclose(out.logits, m.classifier(out.features))
    pooled = out.activations["layer4"].mean((2, 3))
    assert torch.allclose(out.features, pooled, atol=1e-6)
    if final_relu:
        assert float(out.activations["layer4"].min()) >= 0.0
    else:
        assert float(out.activations["layer4"].min()) < 0.0


def test_resnet17_default_is_512d_and_same_state_dict_keys():
    a = build_model("resnet17", 100, seed=0)
    b = build_model("resnet17", 100, seed=0, final_relu=False)
    assert a.embed_dim == 512
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


@pytest.mark.parametrize("final_relu", [True, False])
def test_cvt_small_shapes_on_digits_and_final_relu(final_relu):
    m = build_model("cvt_small", 10, in_channels=1, final_relu=final_relu, seed=0, record_activations=["stage2"])
    assert isinstance(m, CvT)
    m.eval()
    with torch.no_grad():
        out = m(torch.randn(5, 1, 8, 8))
    assert out.features.shape == (5, 64) and out.logits.shape == (5, 10)
    assert out.activations["stage3"].shape == (5, 64, 2, 2)
    assert out.activations["stage2"].shape == (5, 32, 4, 4)
    assert torch.allclose(out.logits, m.classifier(out.features))
    if final_relu:
        assert float(out.features.min()) >= 0.0
    else:
        assert float(out.features.min()) < 0.0


def test_cvt_cifar_shapes():
    m = build_model("cvt_cifar", 100, seed=0, depths=(1, 1, 1))  # shallower for the test's speed
    m.eval()
    out = m(torch.randn(2, 3, 32, 32))
    assert out.features.shape == (2, 384) and out.logits.shape == (2, 100)
    assert out.activations["stage3"].shape == (2, 384, 4, 4)


def test_cvt_attention_mixes_tokens():
    """A change of one input pixel moves every token of the last map (attention is global)."""
    m = build_model("cvt_small", 3, in_channels=1, seed=0, strides=(1, 1, 1), kernels=(1, 1, 1))
    m.eval()
    x = torch.randn(1, 1, 8, 8)
    y = x.clone()
    y[0, 0, 0, 0] += 1.0
    with torch.no_grad():
        d = (m(x).activations["stage3"] - m(y).activations["stage3"]).abs().flatten(2).amax(1)
    assert float(d.min()) > 0.0  # 1x1 token embeddings: only attention can carry the change far away


@pytest.mark.parametrize("name,shape", [("resnet17", (6, 3, 16, 16)), ("cvt_small", (6, 1, 8, 8))])
def test_gini_kl_gradients_reach_the_backbone(name, shape):
    k = 3
    kw = {"width": 4} if name == "resnet17" else {}
    m = build_model(name, k, in_channels=shape[1], seed=0, **kw)
    out = m(torch.randn(*shape))
    y = torch.arange(shape[0]) % k
    obj = GiniKLLoss(k, 0.5, 0.2).harness_objective(out, y, m)
    obj.backward()
    first = next(p for n, p in m.named_parameters() if n.startswith(("stem", "stage1")))
    assert first.grad is not None and torch.isfinite(first.grad).all() and float(first.grad.abs().sum()) > 0


def test_seeded_builds_are_identical():
    a = build_model("cvt_small", 4, in_channels=1, seed=3)
    b = build_model("cvt_small", 4, in_channels=1, seed=3)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


@pytest.mark.parametrize("name,kw,match", [
    ("resnet17", {"width": 0}, "width"),
    ("resnet17", {"depths": (2, 2, 2)}, "depths"),
    ("cvt_small", {"dims": (16, 32, 66)}, "divisible"),
    ("cvt_small", {"depths": (1, 1)}, "length"),
    ("cvt_small", {"kv_stride": 0}, "positive"),
    ("cvt_small", {"record_activations": ["nope"]}, "record_activations"),
    ("cvt_small", {"bogus": 1}, "does not take"),
])
def test_bad_options(name, kw, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, 10, in_channels=1, **kw)


@pytest.mark.parametrize("name,x", [("resnet17", torch.randn(2, 3, 32)), ("cvt_small", torch.randn(2, 8, 8))])
def test_bad_input_shape(name, x):
    m = build_model(name, 10, in_channels=x.shape[1] if x.dim() == 3 and name == "resnet17" else 1, width=4) \
        if name == "resnet17" else build_model(name, 10, in_channels=1)
    with pytest.raises(ValueError, match="image batches"):
        m(x)


# ----------------------------------------------------------------------------- dropout before the classifier
@pytest.mark.parametrize("name, kw, shape", [("resnet18_cifar", {}, (3, 3, 8, 8)), ("resnet17", {"width": 8}, (3, 3, 8, 8))])
def test_dropout_option_keeps_state_dict_and_acts_only_in_training(name, kw, shape):
    """model_kwargs dropout: p before the classifier (the Gini/KL authors' ResNet-50 has 0.4); p = 0 adds
    no module, the state-dict keys are the same, eval outputs are unchanged, features are never dropped."""
    plain = build_model(name, 10, seed=0, **kw)
    drop = build_model(name, 10, seed=0, dropout=0.4, **kw)
    assert plain.head_dropout is None and drop.head_dropout.p == 0.4
    assert list(plain.state_dict()) == list(drop.state_dict())
    drop.load_state_dict(plain.state_dict())
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    plain.eval(), drop.eval()
    with torch.no_grad():
        assert torch.equal(plain(x).logits, drop(x).logits)
        drop.classifier.train(), drop.head_dropout.train()  # dropout on, batch norm still in eval
        out = drop(x)
    assert torch.equal(out.features, plain(x).features)
    assert not torch.equal(out.logits, plain(x).logits)


def test_dropout_bad_values_and_the_paper_config():
    for bad in (-0.1, 1.0, True):
        with pytest.raises(ValueError, match="dropout"):
            build_model("resnet17", 10, width=8, dropout=bad)
    from ufm.train import load_config

    assert load_config("gini_kl", "paper").model_kwargs == {"dropout": 0.4}
    assert load_config("gini_kl", "ci").model_kwargs == {}
