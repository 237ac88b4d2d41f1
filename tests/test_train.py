"""ufm.train: configs and their errors, the loop (learning, metrics, hooks, loss state), exact resume,
the command line, and the SELI reference geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ufm.data import step_imbalance_counts
from ufm.geometry import simplex_etf
from ufm.losses import LOSSES
from ufm.losses.base import HarnessLoss, register_loss
from ufm.train import (
    METRIC_KEYS,
    TrainConfig,
    load_config,
    lr_factor,
    mean_pairwise_cosine,
    parse_overrides,
    read_metrics,
    seli_grams,
    train,
)
from ufm.train.metrics import accuracy_metrics, evaluate_geometry

TINY = dict(dataset="digits", model="mlp", model_kwargs={"widths": [32, 16]}, batch_size=64, lr=0.1,
            device="cpu", amp=False, augment=True, probe_every=0)


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


# ----------------------------------------------------------------------------- configs
def test_profiles_of_the_project_configs():
    ci = load_config("supcon", "ci")
    assert ci.loss == "supcon" and ci.loss_kwargs == {"temperature": 0.15} and ci.dataset == "animal_mnist"
    paper = load_config("supcon", "paper")
    # the SCL paper's protocol
    assert (paper.dataset, paper.model, paper.epochs, paper.batch_size) == ("cifar10", "resnet18_cifar", 350, 128)
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.milestones, paper.lr_gamma) == (0.1, 0.9, 5e-4, [116, 232], 0.1)
    assert (paper.imbalance, paper.n_per_class, paper.final_relu, paper.augment) == ("step", 5000, True, True)
    ce = load_config("ce", "paper")
    assert ce.loss == "ce" and {f: getattr(ce, f) for f in ("epochs", "lr", "milestones", "batch_size")} == \
        {f: getattr(paper, f) for f in ("epochs", "lr", "milestones", "batch_size")}


def test_overrides():
    cfg = load_config("supcon", "ci", ["ratio=100", "loss_kwargs.temperature=0.5", "milestones=[3, 5]",
                                       "weight_decay=1e-4", "final_relu=false", "model_kwargs.widths=[8, 8]"])
    assert cfg.ratio == 100.0 and isinstance(cfg.ratio, float)
    assert cfg.loss_kwargs == {"temperature": 0.5} and cfg.milestones == [3, 5]
    assert cfg.weight_decay == 1e-4 and cfg.final_relu is False
    assert cfg.model_kwargs["widths"] == [8, 8] and cfg.model_kwargs["batchnorm"] is True  # merged, not replaced
    assert parse_overrides({"a": 1}) == {"a": 1}


@pytest.mark.parametrize("overrides, msg", [
    (["ratoi=10"], "unknown field 'ratoi'"),
    (["ratio=0.5"], "ratio must be a number >= 1"),
    (["imbalance=zipf"], "imbalance must be one of"),
    (["imbalance=none", "ratio=10"], "no effect with imbalance='none'"),
    (["loss=focal"], "unknown loss 'focal'"),
    (["model=vgg"], "unknown model 'vgg'"),
    (["dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["epochs=0"], "epochs must be an integer >= 1"),
    (["milestones=[8, 4]"], "strictly increasing"),
    (["lr=-1"], "lr must be a positive number"),
    (["final_relu=maybe"], "final_relu must be true or false"),
    (["momentum=1.5"], "momentum must be in"),
    (["nc_centring=global"], "nc_centring must be balanced"),
    (["batch_size"], "key=value"),
    (["loss_kwargs=3"], "must be a mapping"),
])
def test_bad_configs_say_what_is_wrong(overrides, msg):
    with pytest.raises(ValueError, match=msg):
        load_config("supcon", "ci", overrides)


def test_config_not_found_and_profile_missing(tmp_path):
    with pytest.raises(ValueError, match="not found.*project configs"):
        load_config("no_such_config")
    p = tmp_path / "x.yaml"
    p.write_text("loss: ce\nprofiles:\n  ci: {epochs: 2}\n")
    assert load_config(p, "ci").epochs == 2 and load_config(p, "ci").name == "x"
    with pytest.raises(ValueError, match="no profile 'paper'"):
        load_config(p, "paper")
    p.write_text("loss: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(p, "ci")


def test_lr_schedule():
    assert [lr_factor(e, [3, 5], 0.1) for e in range(7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    assert [lr_factor(e, [], 0.1, warmup=3) for e in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1, 1])


# ----------------------------------------------------------------------------- a loss with state and hooks
class _EmaCE(HarnessLoss):
    """CE + 0.1 ||mean feature - ema||^2 with an EMA buffer; hooks record into the metrics."""

    views = 1

    def __init__(self, num_classes: int, feature_dim: int, bad: bool = False):
        super().__init__()
        self.bad = bad
        self.register_buffer("ema", torch.zeros(feature_dim))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.num_classes = num_classes
        self.started = []

    def harness_objective(self, out, labels, model):
        m = out.features.mean(0)
        obj = F.cross_entropy(out.logits, labels) + 0.1 * ((m - self.ema) ** 2).sum()
        with torch.no_grad():
            self.ema.mul_(0.5).add_(0.5 * m.detach())
            self.calls += 1
        return obj * float("nan") if self.bad else obj

    def on_epoch_start(self, epoch):
        self.started.append(epoch)

    def on_epoch_end(self, epoch, stats):
        assert stats["epoch"] == epoch + 1 and "test_acc" in stats
        return {"ema_norm": float(self.ema.norm()), "calls": int(self.calls), "test_acc": -1.0}


@pytest.fixture
def ema_loss():
    register_loss("_test_ema_ce")(_EmaCE)
    yield "_test_ema_ce"
    LOSSES.pop("_test_ema_ce", None)


def test_training_learns_and_writes_metrics(tmp_path, ema_loss):
    cfg = TrainConfig(**{**TINY, "augment": False}, loss=ema_loss, epochs=3, eval_every=2)
    rows = train(cfg, tmp_path / "balanced")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in METRIC_KEYS:
        assert key in rows[-1]
    assert rows[0]["test_acc"] is None and rows[1]["test_acc"] is not None  # eval_every=2, and the last epoch
    assert rows[-1]["test_acc"] > 0.85  # an MLP on 8x8 digits learns in three epochs
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert "test_acc_minority" not in rows[-1] and "delta_seli" not in rows[-1]  # no imbalance, no minority
    # hook values recorded; one that clashes with a metric is renamed, the metric is kept
    assert rows[-1]["calls"] == 3 * -(-1438 // 64)
    assert rows[-1]["_test_ema_ce_test_acc"] == -1.0 and rows[-1]["test_acc"] > 0
    assert _strip(read_metrics(tmp_path / "balanced")) == _strip(rows)


def test_imbalanced_run_reports_counts_and_minority_metrics(tmp_path):
    cfg = TrainConfig(**TINY, loss="ce", epochs=1, imbalance="step", ratio=4, n_per_class=100)
    rows = train(cfg, tmp_path)
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["class_counts"] == step_imbalance_counts(100, 4, 10).tolist() == [100] * 5 + [25] * 5
    assert info["minority_classes"] == [5, 6, 7, 8, 9] and info["n_train"] == 625
    last = rows[-1]
    for key in ("test_acc_minority", "test_acc_majority", "cos_minority", "cos_majority", "delta_seli",
                "cos_minority_w", "delta_seli_w", "nc2_etf_w_centred"):
        assert last[key] is not None, key
    # the full neural-collapse set, with the centring recorded in run.json
    from ufm.geometry import NC_METRIC_NAMES

    assert all(last[key] is not None for key in NC_METRIC_NAMES), [k for k in NC_METRIC_NAMES if last.get(k) is None]
    assert info["config"]["nc_centring"] == "balanced"
    weighted = train(cfg.replace(nc_centring="weighted"), tmp_path / "weighted")[-1]
    assert weighted["nc1"] != last["nc1"] and weighted["train_acc"] == last["train_acc"]  # only the metric moves


def test_resume_gives_the_same_metrics_as_one_run(tmp_path, ema_loss):
    """2 epochs, then resume to 4 == 4 straight (CPU, exact), with augmentation, a loss buffer and milestones."""
    cfg = TrainConfig(**TINY, loss=ema_loss, epochs=4, milestones=[2], imbalance="step", ratio=4, n_per_class=100)
    straight = train(cfg, tmp_path / "a")
    first = train(cfg.replace(epochs=2), tmp_path / "b")
    assert len(first) == 2
    resumed = train(cfg, tmp_path / "b")
    assert _strip(resumed) == _strip(straight)
    # an interruption inside a run (stop_after) resumes the same way
    part = train(cfg, tmp_path / "c", stop_after=3)
    assert len(part) == 3
    assert _strip(train(cfg, tmp_path / "c")) == _strip(straight)
    ck_a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    ck_b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(ck_a["model"][k], ck_b["model"][k]) for k in ck_a["model"])
    assert torch.equal(ck_a["loss"]["ema"], ck_b["loss"]["ema"]) and int(ck_b["loss"]["calls"]) > 0
    # the comparison can fail: another seed gives other metrics
    other = train(cfg.replace(seed=1, epochs=2), tmp_path / "d")
    assert _strip(other) != _strip(straight[:2])


def test_resume_refuses_another_config(tmp_path):
    cfg = TrainConfig(**TINY, loss="ce", epochs=1)
    train(cfg, tmp_path)
    with pytest.raises(ValueError, match="another config.*lr: saved 0.1 vs now 0.05"):
        train(cfg.replace(lr=0.05, epochs=2), tmp_path)
    assert len(train(cfg.replace(lr=0.05, epochs=1), tmp_path, resume=False)) == 1


def test_diverging_objective_is_an_error(tmp_path, ema_loss):
    with pytest.raises(ValueError, match="training objective is nan"):
        train(TrainConfig(**TINY, loss=ema_loss, loss_kwargs={"bad": True}, epochs=1), tmp_path)


def test_supcon_is_scored_by_class_centres_and_probe(tmp_path):
    rows = train(TrainConfig(**TINY, loss="supcon", epochs=2, final_relu=False, val_fraction=0.2), tmp_path)
    last = rows[-1]
    assert last["test_acc"] == last["ncc_acc"] and last["probe_acc"] > 0.5 and "probe_acc" not in rows[0]
    assert 0.5 < last["val_acc"] <= 1 and json.loads((tmp_path / "run.json").read_text())["n_train"] == 1438 - 287
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["scoring"] == "ncc"
    assert "delta_seli_w" not in last  # the classifier is not trained: no classifier geometry


def test_command_line(tmp_path, capsys):
    import argparse

    from ufm.train.cli import register

    cfgfile = tmp_path / "tiny.yaml"
    cfgfile.write_text("dataset: digits\nmodel: mlp\nmodel_kwargs: {widths: [16, 16]}\nloss: ce\ndevice: cpu\n"
                       "profiles:\n  ci: {epochs: 2, batch_size: 128}\n  paper: {epochs: 200}\n")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    p = register(sub)
    assert all(a.help for a in p._actions)  # every option documented
    out = tmp_path / "run"
    args = parser.parse_args(["train", "--config", str(cfgfile), "--out", str(out), "lr=0.05", "--quiet"])
    assert args.func(args) == 0
    assert "final: epoch=2" in capsys.readouterr().out
    assert len(read_metrics(out)) == 2 and json.loads((out / "run.json").read_text())["config"]["lr"] == 0.05
    args = parser.parse_args(["train", "--config", str(cfgfile), "--profile", "paper", "--out", str(out), "--print-config"])
    assert args.func(args) == 0 and '"epochs": 200' in capsys.readouterr().out


# ----------------------------------------------------------------------------- reference geometry and metrics
def test_seli_closed_form_matches_the_sel_matrix_factorisation():
    counts = np.array([6, 6, 6, 2, 2])
    k = counts.size
    y = np.repeat(np.arange(k), counts)
    z = np.eye(k)[:, y] - 1.0 / k  # simplex-encoded labels (k x n)
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    keep = s > 1e-10
    w = u[:, keep] * np.sqrt(s[keep])  # rows: classifier vectors
    h = (np.sqrt(s[keep])[:, None] * vt[keep]).T  # rows: features
    means = np.stack([h[y == c].mean(0) for c in range(k)])
    g_h, g_w = seli_grams(counts)
    assert np.allclose(g_w, w @ w.T, atol=1e-10) and np.allclose(g_h, means @ means.T, atol=1e-10)
    assert np.allclose(np.stack([h[y == c] for c in range(k) for _ in [0]][0]), means[0])  # features collapse
    assert np.allclose(g_w @ g_h, np.eye(k) - 1.0 / k, atol=1e-10)
    # balanced: the simplex ETF
    g_h1, g_w1 = seli_grams([4] * k)
    etf = simplex_etf(k, k)
    assert np.allclose(g_w1 / g_w1[0, 0], etf @ etf.T, atol=1e-10)
    # STEP imbalance: minority classifiers align as R grows (toward minority collapse), but stay < 1
    cos = [mean_pairwise_cosine(seli_grams(step_imbalance_counts(1000, r, 10))[1], range(5, 10)) for r in (1, 10, 100, 1000)]
    assert cos[0] == pytest.approx(-1 / 9) and all(a < b for a, b in zip(cos, cos[1:])) and cos[-1] < 1
    with pytest.raises(ValueError, match="positive"):
        seli_grams([3, 0, 2])


def test_geometry_metrics_on_exact_frames():
    k, n, d = 4, 6, 8
    y = np.repeat(np.arange(k), n)
    of = np.eye(k, d)[y]  # collapsed orthogonal frame
    g = evaluate_geometry(of + 1e-9, y, k)
    assert g["delta_of"] < 1e-6 and g["delta_etf"] < 1e-6 and "delta_seli" not in g
    etf = simplex_etf(k, d, seed=0)[y]
    g = evaluate_geometry(etf, y, k)
    assert g["delta_etf"] < 1e-9 and g["delta_of"] > 0.3
    # features and classifier at the SELI solution of STEP counts: zero distance to SELI, not to the ETF
    counts = np.array([8, 8, 2, 2])
    yy = np.repeat(np.arange(k), counts)
    z = np.eye(k)[:, yy] - 1.0 / k
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    w, h = u[:, :3] * np.sqrt(s[:3]), (np.sqrt(s[:3])[:, None] * vt[:3]).T
    g = evaluate_geometry(h, yy, k, weight=w, minority=[2, 3])
    assert g["delta_seli"] < 1e-9 and g["delta_seli_w"] < 1e-9 and g["nc2_etf_w_centred"] > 0.05
    acc = accuracy_metrics("logits", (h, h @ w.T, None, yy), (h, h @ w.T, None, yy), k, probe=True, minority=[2, 3])
    assert acc["test_acc"] == acc["ncc_acc"] == acc["probe_acc"] == acc["test_acc_minority"] == 1.0


# ----------------------------------------------------------------------------- what train says, and bad checkpoints
def test_train_says_when_it_starts_resumes_or_is_complete(tmp_path):
    cfg = TrainConfig(**TINY, loss="ce", epochs=2)
    lines = []
    train(cfg, tmp_path, stop_after=1, log=lines.append)
    assert lines[0].startswith("[train] ce on digits") and lines[1].startswith("epoch   1")
    lines.clear()
    train(cfg, tmp_path, log=lines.append)
    assert lines[0] == f"[train] resuming {tmp_path} after epoch 1 of 2" and lines[1].startswith("epoch   2")
    lines.clear()
    rows = train(cfg, tmp_path, log=lines.append)
    assert len(rows) == 2 and lines == [f"[train] {tmp_path} is already complete (2 epochs): nothing to train "
                                        "(--restart trains it again)"]


def test_corrupt_checkpoint_is_one_clear_error_and_stale_temporaries_go(tmp_path):
    from ufm.train import CheckpointError, run_state

    cfg = TrainConfig(**TINY, loss="ce", epochs=2)
    train(cfg, tmp_path, stop_after=1)
    assert run_state(tmp_path, 2).status == "partial" and run_state(tmp_path, 2).epochs_done == 1
    ck = tmp_path / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:500])  # truncated by a crash of the disk, or a copy cut short
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half")
    with pytest.raises(CheckpointError, match=f"checkpoint {ck} is truncated or corrupt .*--restart"):
        train(cfg, tmp_path)
    assert not stale.exists()
    ck.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(cfg, tmp_path)
    torch.save({"weights": 1}, ck)
    with pytest.raises(CheckpointError, match="not a checkpoint of a ufm training run"):
        train(cfg, tmp_path)
    assert len(train(cfg, tmp_path, resume=False)) == 2 and run_state(tmp_path).status == "complete"


def test_train_command_line_on_a_corrupt_checkpoint(tmp_path, capsys):
    from ufm.cli import main

    out = tmp_path / "run"
    argv = ["train", "--config", "large_margin", "--out", str(out), "epochs=1", "--quiet"]
    assert main(argv) == 0
    (out / "checkpoint.pt").write_bytes(b"garbage")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated or corrupt" in err and "--restart" in err
    assert main(argv + ["--restart"]) == 0


def test_losses_report_epoch_statistics_one_way():
    """record_epoch_stats: weighted epoch means, reset by the start hook, returned by the end hook."""
    loss = HarnessLoss()
    loss.on_epoch_start(0)
    loss.record_epoch_stats(a=torch.tensor(1.0), b=2.0)
    loss.record_epoch_stats(weight=3, a=torch.tensor(5.0))
    assert loss.on_epoch_end(0, {}) == {"a": pytest.approx((1 + 15) / 4), "b": 2.0}
    loss.on_epoch_start(1)
    assert loss.on_epoch_end(1, {}) == {}
    with pytest.raises(TypeError, match="must subclass ufm.losses.HarnessLoss"):
        register_loss("_not_a_harness_loss")(torch.nn.MSELoss)


# ----------------------------------------------------------------------------- views computed once
_BN = dict(TINY, augment=False, loss="supcon", model_kwargs={"widths": [32, 16], "batchnorm": True})


def _flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_shared_views_give_the_objective_and_gradient_of_the_copies():
    """Two identical views through a BatchNorm network, or one pass tiled: the same function of the weights,
    so the same objective and gradient up to float rounding (not a comparison between zeros)."""
    import copy

    from ufm.train import BatchObjective, build_run
    from ufm.train.loop import shares_views

    run = build_run(TrainConfig(**_BN))
    assert run.views == 2 and shares_views(run)
    twin = copy.deepcopy(run.model)
    x, y = run.train.to_input(run.train_x[:64].float()), run.train_y[:64]
    a, _ = BatchObjective(run.model, run.loss, 2)(torch.cat([x, x]), y)
    b, _ = BatchObjective(twin, run.loss, 2)(x, y, shared=True)
    a.backward()
    b.backward()
    ga, gb = _flat_grad(run.model), _flat_grad(twin)
    assert abs(a.item() - b.item()) <= 1e-6 * abs(a.item()) and float(ga.norm()) > 1e-2
    assert float((ga - gb).norm()) <= 1e-5 * float(ga.norm())
    # the running variance's unbiased correction counts 64 rows, not 128: that, and only that, differs
    bn = [n for n, _ in run.model.named_buffers() if n.endswith("running_var")]
    ra, rb = dict(run.model.named_buffers()), dict(twin.named_buffers())
    assert bn and all(not torch.equal(ra[n], rb[n]) for n in bn)
    assert all(torch.allclose(ra[n], rb[n], rtol=5e-3) for n in bn)


def test_views_are_shared_only_when_they_are_exact_copies():
    from torch import nn

    from ufm.train import build_run
    from ufm.train.loop import _random_in_training, shares_views

    assert not shares_views(build_run(TrainConfig(**{**_BN, "shared_views": False})))
    assert not shares_views(build_run(TrainConfig(**{**_BN, "loss": "ce"})))               # one view
    assert not shares_views(build_run(TrainConfig(**{**_BN, "augment": True})))            # random crops
    assert _random_in_training(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)))
    assert not _random_in_training(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0), nn.BatchNorm1d(2)))


def test_training_with_shared_views_follows_the_copies(tmp_path):
    """Whole epochs: the training loss of the two ways agrees to float rounding on the first epoch (no
    evaluation statistic enters it); the run record says which way it trained."""
    one = train(TrainConfig(**_BN, epochs=1), tmp_path / "shared")
    two = train(TrainConfig(**{**_BN, "shared_views": False}, epochs=1), tmp_path / "copies")
    assert abs(one[0]["train_loss"] - two[0]["train_loss"]) <= 1e-4 * abs(two[0]["train_loss"])
    assert json.loads((tmp_path / "shared" / "run.json").read_text())["views_shared"] is True
    assert json.loads((tmp_path / "copies" / "run.json").read_text())["views_shared"] is False
