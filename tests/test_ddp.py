"""Two CPU processes on gloo: the gathered objective and its gradients equal single-process training on
the whole batch (ufm.train.distributed), and a 2-rank run of ``ufm.train.train`` ends with the weights
of the 1-process run."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ufm.losses import get_loss
from ufm.models import build_model
from ufm.train import BatchObjective
from ufm.train import distributed as ufm_ddp

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

N, V, SHAPE = 12, 2, (1, 8, 8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(N, V, *SHAPE, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2])  # every class on both ranks' slices
    return x, y


def _model():
    return build_model("mlp", 3, in_channels=1, input_shape=SHAPE, widths=[16, 8], seed=0)


def _views(x):
    """(B, V, ...) -> the harness's view-major stack (V * B, ...)."""
    return x.transpose(0, 1).reshape(V * x.shape[0], *SHAPE)


LOSSES = ("supcon", "ce")


TRAIN_CFG = dict(dataset="digits", model="mlp", model_kwargs={"widths": [32, 16]}, loss="supcon", epochs=1,
                 batch_size=128, lr=0.1, augment=False, device="cpu", amp=False, probe_every=0)


def _worker(rank, world, port, path, train_dir):
    """One spawn for both checks: the gathered objective and its gradients, then a 2-rank ``train``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        x, y = _batch()
        sl = slice(rank, None, world)
        results = {}
        for loss_name in LOSSES:
            model = _model()
            step = torch.nn.parallel.DistributedDataParallel(BatchObjective(model, get_loss(loss_name)(), V),
                                                             find_unused_parameters=True)
            yg = ufm_ddp.gather_with_grad(y[sl])
            obj, _ = step(_views(x[sl]), y[sl])
            obj.backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            results[loss_name] = {"loss": obj.detach(), "labels": yg, "grads": grads}
        if rank == 0:
            torch.save(results, path)
        from ufm.train import TrainConfig, train

        train(TrainConfig(**TRAIN_CFG), train_dir, resume=False)  # uses the initialised group
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(d / "rank0.pt"), str(d / "train")), nprocs=2, join=True)
    return torch.load(d / "rank0.pt"), d / "train"


@pytest.mark.parametrize("loss_name", LOSSES)
def test_two_rank_objective_and_gradients_equal_full_batch(two_rank, loss_name):
    got = two_rank[0][loss_name]
    # single process, whole batch
    x, y = _batch()
    model = _model()
    obj, scoring = BatchObjective(model, get_loss(loss_name)(), V)(_views(x), y, detect=True)
    obj.backward()
    assert scoring == ("ncc" if loss_name == "supcon" else "logits")
    assert sorted(got["labels"].tolist()) == sorted(y.tolist())  # the gathered batch is the whole batch
    assert torch.allclose(got["loss"], obj.detach(), rtol=1e-6, atol=1e-7), (float(got["loss"]), float(obj))
    ref = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(got["grads"]) == set(ref)
    for n, g in ref.items():
        # DDP averages over ranks; the gather's backward sums: together the full-batch gradient
        assert torch.allclose(got["grads"][n], g, rtol=1e-5, atol=1e-7), (n, float((got["grads"][n] - g).abs().max()))
    assert any(float(g.abs().max()) > 1e-4 for g in ref.values())  # the comparison is not between zeros


def test_two_rank_training_matches_one_process(two_rank, tmp_path):
    """No BatchNorm, no augmentation: per-sample computations, so two ranks train the same weights."""
    from ufm.train import TrainConfig, train

    rows = train(TrainConfig(**TRAIN_CFG), tmp_path / "single", resume=False)
    a = torch.load(two_rank[1] / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=False)
    assert a["config"]["model"] == "mlp"
    for k, v in b["model"].items():
        assert torch.allclose(a["model"][k], v, rtol=1e-4, atol=1e-6), (k, float((a["model"][k] - v).abs().max()))
    moved = max(float((v - build_model("mlp", 10, in_channels=1, input_shape=(1, 8, 8), widths=[32, 16],
                                       seed=0).state_dict()[k]).abs().max()) for k, v in b["model"].items())
    assert moved > 1e-3  # training changed the weights, so the equality above is not trivial
    np.testing.assert_allclose(a["metrics"][0]["train_loss"], rows[0]["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(a["metrics"][0]["delta_of"], rows[0]["delta_of"], rtol=1e-4)
