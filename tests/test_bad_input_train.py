"""Bad input to the training harness: each a clear error (type + message naming the argument, the value
and what to do), one row per case; a new case joins by adding a row.

Issue 15: run folders that cannot hold a run, checkpoints that cannot be resumed, a batch size that lets
no step happen, ``stop_after`` out of range, and the ``amp`` modes.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch

from ufm.train import CheckpointError, RunFolderError, TrainConfig, train
from ufm.train import checkpoint as ckmod

TINY = dict(dataset="digits", model="mlp", model_kwargs={"widths": [16, 8]}, batch_size=128, lr=0.1,
            device="cpu", amp=False, augment=False, probe_every=0, loss="ce", epochs=2)
HINT = r"--restart .*delete the file"


@pytest.fixture(scope="module")
def half_run(tmp_path_factory):
    """A run folder after 1 of 2 epochs: its checkpoint is the one the cases below spoil."""
    out = tmp_path_factory.mktemp("half_run")
    train(TrainConfig(**TINY), out, stop_after=1)
    return out


# ----------------------------------------------------------------------------- run folders and checkpoints
def _garbage(ck, good):
    ck.write_bytes(b"\x00garbage\xff" * 10)


def _empty(ck, good):
    ck.write_bytes(b"")


def _other_dict(ck, good):
    torch.save({"weights": torch.zeros(2)}, ck)


def _other_tensor(ck, good):
    torch.save(torch.zeros(3), ck)


def _bad_config(ck, good):
    state = torch.load(ck, weights_only=False)
    torch.save({**state, "config": 3}, ck)


def _folder(ck, good):
    ck.unlink()
    ck.mkdir()


def _cut(fraction):
    def cut(ck, good):
        ck.write_bytes(good[: int(len(good) * fraction)])
    return cut


def _damaged_middle(ck, good):  # a bit flip inside a tensor: torch.load alone would load it silently
    bad = bytearray(good)
    bad[len(bad) // 3: len(bad) // 3 + 64] = b"\xff" * 64
    ck.write_bytes(bytes(bad))


def _pickle_cut(ck, good):  # the legacy (non-zip) format cut short
    import io
    import pickle

    buf = io.BytesIO()
    pickle.dump({"config": {}, "epoch": 0}, buf)
    ck.write_bytes(buf.getvalue()[:10])


CHECKPOINT_CASES = [
    pytest.param(_garbage, r"checkpoint \S+checkpoint.pt is truncated or corrupt \(invalid load key", id="garbage"),
    pytest.param(_empty, r"checkpoint \S+checkpoint.pt is truncated or corrupt \(empty: 0 bytes\)", id="empty"),
    pytest.param(_other_dict, r"\S+checkpoint.pt is not a checkpoint of a ufm training run \(a dict with keys "
                 r"\['weights'\]; missing \['config'", id="torch-file-of-a-dict"),
    pytest.param(_other_tensor, r"\S+checkpoint.pt is not a checkpoint of a ufm training run \(a Tensor",
                 id="torch-file-of-a-tensor"),
    pytest.param(_bad_config, r"not a checkpoint of a ufm training run \(its 'config' is not a mapping", id="config-not-a-dict"),
    pytest.param(_cut(1 / 3), r"checkpoint \S+checkpoint.pt is truncated or corrupt \(cut short: a torch archive without its end\)", id="third"),
    pytest.param(_cut(1 / 2), r"checkpoint \S+checkpoint.pt is truncated or corrupt \(cut short: a torch archive without its end\)", id="half"),
    pytest.param(_cut(0.99), r"checkpoint \S+checkpoint.pt is truncated or corrupt \(cut short", id="all-but-the-end"),
    pytest.param(_damaged_middle, r"checkpoint \S+checkpoint.pt is truncated or corrupt \(damaged bytes: the checksum "
                 r"of its part '[^']+' does not match\)", id="damaged-bytes-inside"),
    pytest.param(_pickle_cut, r"checkpoint \S+checkpoint.pt is truncated or corrupt", id="legacy-pickle-cut"),
]


@pytest.mark.parametrize("spoil, message", CHECKPOINT_CASES)
def test_a_checkpoint_that_cannot_be_resumed_is_one_clear_error(half_run, tmp_path, spoil, message):
    out = tmp_path / "run"
    shutil.copytree(half_run, out)
    ck = out / "checkpoint.pt"
    spoil(ck, (half_run / "checkpoint.pt").read_bytes())
    with pytest.raises(CheckpointError) as err:
        train(TrainConfig(**TINY), out)
    text = str(err.value)
    assert re.search(message, text), text
    assert str(ck) in text and "\n" not in text and re.search(HINT, text), text
    assert isinstance(err.value, ValueError)
    # --restart (resume=False) recovers the run
    assert len(train(TrainConfig(**TINY), out, resume=False)) == 2


def test_a_checkpoint_that_is_a_folder_names_it_and_what_to_do(half_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(half_run, out)
    _folder(out / "checkpoint.pt", b"")
    for resume in (True, False):  # neither resuming nor --restart could write over a folder
        with pytest.raises(CheckpointError, match=r"checkpoint \S+checkpoint.pt is a folder, not a checkpoint file: "
                                                  r"delete it \(neither resuming nor --restart"):
            train(TrainConfig(**TINY), out, resume=resume)


def _out_is_file(tmp_path, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    return f


def _parent_is_file(tmp_path, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    return f / "run"


def _not_writable(tmp_path, monkeypatch):
    """A read-only folder or file system: writing a file there fails (simulated, so that the row also
    runs as the superuser, whom permission bits do not stop)."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ckmod.tempfile, "mkstemp", refuse)
    return tmp_path / "ro"


def _read_only_folder(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("permission bits do not stop the superuser (the simulated row covers it)")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return ro


FOLDER_CASES = [
    pytest.param(_out_is_file, r"output folder \(--out\) \S+afile is a file, not a folder: choose another --out",
                 id="out-is-a-file"),
    pytest.param(_parent_is_file, r"output folder \(--out\) \S+afile/run cannot be written \(Not a directory\)",
                 id="parent-is-a-file"),
    pytest.param(_not_writable, r"output folder \(--out\) \S+ro cannot be written \(Permission denied\): "
                 r"choose another --out or make it writable", id="read-only-simulated"),
    pytest.param(_read_only_folder, r"output folder \(--out\) \S+ro cannot be written \(Permission denied\)",
                 id="read-only-folder"),
]


@pytest.mark.parametrize("make, message", FOLDER_CASES)
def test_an_output_folder_that_cannot_hold_a_run_is_found_before_training(tmp_path, monkeypatch, make, message):
    out = make(tmp_path, monkeypatch)
    with pytest.raises(RunFolderError, match=message):
        train(TrainConfig(**TINY), out)
    try:
        assert not (out / "run.json").exists()
    finally:
        if out.name == "ro" and out.exists():
            out.chmod(0o700)


# ----------------------------------------------------------------------------- configs and arguments of train()
CONFIG_CASES = [
    pytest.param(dict(batch_size=1), ValueError,
                 r"batch_size must be >= 2 \(or binding=true\), got 1: a batch of one sample takes no step", id="batch-size-1"),
    pytest.param(dict(batch_size=0), ValueError, r"batch_size must be an integer >= 1, got 0", id="batch-size-0"),
]


@pytest.mark.parametrize("override, error, message", CONFIG_CASES)
def test_a_config_that_cannot_train_is_refused_up_front(tmp_path, override, error, message):
    with pytest.raises(error, match=message):
        train(TrainConfig(**{**TINY, **override}), tmp_path / "run")
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_batching_that_takes_no_step_is_an_error_not_a_silent_epoch(tmp_path, monkeypatch):
    """Two processes with batches of 3: each would get fewer than 2 samples, so no batch trains."""
    from ufm.train import loop

    monkeypatch.setattr(loop, "_place", lambda cfg: loop._Place(torch.device("cpu"), 0, 2, False))
    with pytest.raises(ValueError, match=r"batch_size=3 gives batches of at most 3 samples for 2 process\(es\): "
                                         r"a batch needs >= 4 .* no step would be taken; raise batch_size"):
        train(TrainConfig(**{**TINY, "batch_size": 3}), tmp_path / "run")


def test_an_epoch_without_a_step_raises(tmp_path):
    from ufm.train import loop

    run = loop.build_run(TrainConfig(**TINY))
    run.sampler.batches = lambda epoch: [[0], [1]]  # only batches too small to train
    step_fn = loop.BatchObjective(run.model, run.loss, run.views)
    with pytest.raises(ValueError, match=r"epoch 0 took no step: every batch had fewer than 2 samples "
                                         r"\(batch_size=128, 1 process"):
        loop.train_one_epoch(run, step_fn, 0, None, loop._Place(torch.device("cpu"), 0, 1, False))


def test_batch_size_1_with_binding_still_trains(tmp_path):
    """The binding examples join every batch (k = 10 of them), so batch_size=1 takes steps."""
    rows = train(TrainConfig(**{**TINY, "batch_size": 1, "binding": True, "epochs": 1, "loss": "supcon", "n_per_class": 5,
                                "final_relu": False}), tmp_path, stop_after=1)
    assert rows[0]["train_loss"] > 0


TRAIN_ARGUMENT_CASES = [
    pytest.param(dict(stop_after=-1), ValueError, r"stop_after \(--stop-after\) must be an integer >= 1, got -1", id="stop-after--1"),
    pytest.param(dict(stop_after=0), ValueError, r"stop_after \(--stop-after\) must be an integer >= 1, got 0", id="stop-after-0"),
    pytest.param(dict(stop_after=1.5), TypeError, r"stop_after \(--stop-after\) must be an integer, got 1.5", id="stop-after-1.5"),
    pytest.param(dict(stop_after="2"), TypeError, r"stop_after \(--stop-after\) must be an integer, got '2'", id="stop-after-str"),
]


@pytest.mark.parametrize("kwargs, error, message", TRAIN_ARGUMENT_CASES)
def test_bad_arguments_of_train(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        train(TrainConfig(**TINY), tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()  # refused before anything is written


# ----------------------------------------------------------------------------- mixed precision modes
AMP_BAD = [
    pytest.param("fp32", id="fp32"),
    pytest.param("float16", id="float16-spelled-out"),
    pytest.param(1, id="int-1"),
    pytest.param(None, id="null"),
]


@pytest.mark.parametrize("value", AMP_BAD)
def test_a_bad_amp_value_lists_the_accepted_ones(tmp_path, value):
    with pytest.raises(ValueError, match=re.escape(f"config: amp must be one of none (or false), fp16 (or true), bf16; "
                                                   f"got {value!r}")):
        train(TrainConfig(**{**TINY, "amp": value}), tmp_path / "run")


@pytest.mark.parametrize("value, cpu, cuda", [
    pytest.param(False, None, None, id="false"), pytest.param("none", None, None, id="none"),
    pytest.param(True, None, torch.float16, id="true"), pytest.param("fp16", None, torch.float16, id="fp16"),
    pytest.param("bf16", torch.bfloat16, torch.bfloat16, id="bf16")])
def test_amp_modes_and_their_dtypes(value, cpu, cuda):
    from ufm.train.config import amp_dtype, load_config

    assert amp_dtype(value, "cpu") is cpu and amp_dtype(value, "cuda") is cuda
    assert load_config("ce", "ci", [f"amp={str(value).lower()}"]).amp == value  # YAML spelling of each


def test_bf16_trains_under_cpu_autocast_without_a_grad_scaler(tmp_path):
    from ufm.losses.base import HarnessLoss
    from ufm.train import loop

    cfg = TrainConfig(**{**TINY, "amp": "bf16", "n_per_class": 30, "imbalance": "none"})
    run = loop.build_run(cfg)
    assert run.amp_dtype is torch.bfloat16 and not run.scaler.is_enabled()
    seen = set()

    class Spy(HarnessLoss):
        def harness_objective(self, out, labels, model):
            seen.add(out.logits.dtype)
            return torch.nn.functional.cross_entropy(out.logits, labels)

    run.loss = Spy()
    step_fn = loop.BatchObjective(run.model, run.loss, run.views)
    before = [p.detach().clone() for p in run.model.parameters()]
    loss, _ = loop.train_one_epoch(run, step_fn, 0, "logits", loop._Place(torch.device("cpu"), 0, 1, False))
    assert seen == {torch.bfloat16}  # the model's forward ran under bfloat16 autocast (the losses compute in float32)
    assert np.isfinite(loss) and loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters()))  # steps were taken
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # the weights stay float32
    # the whole run: it learns as in full precision, not bit for bit (autocast is on), and records its mode
    bf16 = [r["train_loss"] for r in train(cfg.replace(batch_size=32), tmp_path / "bf16")]
    fp32 = [r["train_loss"] for r in train(cfg.replace(batch_size=32, amp=False), tmp_path / "fp32")]
    assert all(np.isfinite(bf16)) and bf16[1] < bf16[0] - 0.1 and bf16 != fp32
    assert np.allclose(bf16, fp32, atol=0.02)
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["config"]["amp"] == "bf16"


def test_amp_true_on_cpu_is_full_precision_as_before(tmp_path):
    """``amp: true`` (float16) is ignored on a CPU: the metrics equal those of ``amp: false``."""
    cfg = TrainConfig(**{**TINY, "n_per_class": 30, "imbalance": "none", "epochs": 1})
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(train(cfg.replace(amp=True), tmp_path / "a")) == strip(train(cfg, tmp_path / "b"))
