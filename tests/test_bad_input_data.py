"""Bad input to the data and batching layers (``ufm.data``, ``ufm.batching``): each a clear error whose
type and message name the argument and the value. One row per case; a new function joins by adding a row.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from fixtures.torchvision_format import cifar_md5_patch, write_cifar, write_mnist
from ufm import batching as B
from ufm.data import ArrayDataset, DatasetNotFoundError, data_root, get_spec, load_dataset, stratified_split
from ufm.data import augment as A
from ufm.data import imbalance as I

Y = np.repeat(np.arange(3), [4, 3, 2])
SPEC = get_spec("digits")
GEN = torch.Generator().manual_seed(0)


def _digits_test():
    return load_dataset("digits", "test")


def _empty_digits():
    return ArrayDataset(torch.zeros(0, 1, 8, 8), np.zeros(0, dtype=np.int64), SPEC)


BATCHING = [
    # sizes and seeds
    pytest.param(lambda: B.random_batches(Y, 0, 0), ValueError, r"batch_size must be >= 1, got 0", id="random-batches-size-0"),
    pytest.param(lambda: B.random_batches(Y, 2.5, 0), ValueError, r"batch_size must be an integer, got 2.5", id="random-batches-size-2.5"),
    pytest.param(lambda: B.random_batches(Y, "4", 0), ValueError, r"batch_size must be an integer, got '4'", id="random-batches-size-str"),
    pytest.param(lambda: B.random_batches(Y, 4, -1), ValueError, r"seed must be a non-negative integer, got -1", id="random-batches-seed--1"),
    pytest.param(lambda: B.random_batches(Y, 4, 1.5), ValueError, r"seed must be a non-negative integer, got 1.5", id="random-batches-seed-1.5"),
    pytest.param(lambda: B.random_batches(Y, 20, 0, drop_last=True), ValueError, r"drop_last with batch_size=20 > n=9 leaves no batch",
                 id="random-batches-drop-last-all"),
    pytest.param(lambda: B.full_batch(0), ValueError, r"n must be a positive integer, got 0", id="full-batch-0"),
    pytest.param(lambda: B.epoch_seed(0, -1), ValueError, r"epoch must be a non-negative integer, got -1", id="epoch-seed-epoch--1"),
    pytest.param(lambda: B.epoch_batcher(Y, 2, 0)(-1), ValueError, r"epoch must be a non-negative integer, got -1", id="epoch-batcher-epoch--1"),
    pytest.param(lambda: B.BindingBatchSampler(Y, 2).set_epoch(1.5), ValueError, r"epoch must be a non-negative integer, got 1.5",
                 id="sampler-set-epoch-1.5"),
    pytest.param(lambda: B.BindingBatchSampler(Y, 0), ValueError, r"batch_size must be >= 1, got 0", id="sampler-size-0"),
    pytest.param(lambda: next(B.epochs_of_batches(Y, 2, 0, epochs=-1)), ValueError,
                 r"epochs must be a non-negative integer or None, got -1", id="epochs-of-batches-epochs--1"),
    pytest.param(lambda: B.batch_graph(Y, [[0, 5]], max_entries=0), ValueError, r"max_entries must be an integer >= 1, got 0",
                 id="batch-graph-max-entries-0"),
    pytest.param(lambda: B.uniqueness_conditions(Y, None, dim=0), ValueError, r"dim must be a positive integer or None, got 0",
                 id="uniqueness-dim-0"),
    # labels
    pytest.param(lambda: B.random_batches([], 2, 0), ValueError, r"labels is empty", id="labels-empty"),
    pytest.param(lambda: B.random_batches([0, -1, 1], 2, 0), ValueError, r"labels must be non-negative class indices, found -1",
                 id="labels-negative"),
    pytest.param(lambda: B.random_batches([0, 0.5, 1], 2, 0), ValueError, r"labels must be integers, got dtype float64", id="labels-float"),
    pytest.param(lambda: B.random_batches([0, np.nan], 2, 0), ValueError, r"labels must be integers, got dtype float64", id="labels-nan"),
    pytest.param(lambda: B.random_batches([[0, 1]], 2, 0), ValueError, r"labels must be one-dimensional, got shape \(1, 2\)", id="labels-2d"),
    pytest.param(lambda: B.random_batches(["a", "b"], 2, 0), ValueError, r"labels must be integers, got dtype <U1", id="labels-str"),
    pytest.param(lambda: B.uniqueness_conditions([], None), ValueError, r"labels is empty", id="uniqueness-labels-empty"),
    # binding and batchings
    pytest.param(lambda: B.binding_examples(Y, 0, num_classes=0), ValueError, r"num_classes must be an integer >= 1, got 0",
                 id="binding-num-classes-0"),
    pytest.param(lambda: B.binding_examples(Y, 0, num_classes=3.5), TypeError, r"num_classes must be an integer, got 3.5",
                 id="binding-num-classes-3.5"),
    pytest.param(lambda: B.binding_examples([0, 2], 0), ValueError, r"classes \[1\] have no sample", id="binding-absent-class"),
    pytest.param(lambda: B.binding_examples([], 0), ValueError, r"labels is empty: there is no example to bind", id="binding-labels-empty"),
    pytest.param(lambda: B.bind(None, [0]), TypeError, r"batches must be a list of index arrays \(one per batch\), got None",
                 id="bind-batches-none"),
    pytest.param(lambda: B.bind(np.array([0, 1]), [0]), ValueError, r"batches must be a list of index arrays .*single 1-D array",
                 id="bind-batches-one-array"),
    pytest.param(lambda: B.bind([[0, 1]], [5], n=3), ValueError, r"binding has index 5 outside range\(0, 3\)", id="bind-out-of-range"),
    pytest.param(lambda: B.bind([[0, 1]], []), ValueError, r"binding is empty", id="bind-empty-binding"),
    pytest.param(lambda: B.bind([[0.5]], [0]), ValueError, r"batch 0 must hold integer sample indices, got dtype float64", id="bind-float-batch"),
    pytest.param(lambda: next(B.epochs_of_batches(Y, 2, 0, binding="yes")), TypeError,
                 r"binding must be True, False or an array of sample indices, got 'yes'", id="binding-str"),
    pytest.param(lambda: B.batch_graph(Y, 7), TypeError, r"batches must be a list of index arrays \(one per batch\), got 7",
                 id="batch-graph-batches-int"),
    pytest.param(lambda: B.batch_graph(Y, []), ValueError, r"the batching is empty", id="batch-graph-no-batch"),
    pytest.param(lambda: B.uniqueness_conditions(Y, [[0, 0]]), ValueError, r"batch 0 repeats a sample index", id="uniqueness-repeated-index"),
    pytest.param(lambda: B.uniqueness_conditions(Y, [[0, 99]]), ValueError, r"batch 0 has index 99 outside range\(0, 9\)",
                 id="uniqueness-index-out-of-range"),
]

DATA = [
    # load_dataset and the registry
    pytest.param(lambda: load_dataset("nope"), ValueError, r"unknown dataset 'nope'; registered datasets: \[", id="load-unknown-name"),
    pytest.param(lambda: load_dataset(["digits"]), TypeError, r"dataset name must be a string, got \['digits'\] \(list\)", id="load-name-list"),
    pytest.param(lambda: load_dataset("digits", "dev"), ValueError, r"unknown split 'dev'", id="load-unknown-split"),
    pytest.param(lambda: load_dataset("digits", "val"), ValueError, r"split='val' needs val_fraction > 0", id="load-val-without-fraction"),
    pytest.param(lambda: load_dataset("digits", val_fraction=-0.1), ValueError, r"val_fraction must be in \[0.0, 1.0\), got -0.1",
                 id="load-val-fraction-negative"),
    pytest.param(lambda: load_dataset("digits", val_fraction=1.0), ValueError, r"val_fraction must be in \[0.0, 1.0\), got 1.0",
                 id="load-val-fraction-1"),
    pytest.param(lambda: load_dataset("digits", val_fraction=float("nan")), ValueError, r"val_fraction must be in .*got nan",
                 id="load-val-fraction-nan"),
    pytest.param(lambda: load_dataset("digits", val_fraction="0.2"), TypeError, r"val_fraction must be a real number, got '0.2'",
                 id="load-val-fraction-str"),
    pytest.param(lambda: load_dataset("digits", val_fraction=0.2, split_seed=-1), ValueError, r"split_seed must be an integer >= 0, got -1",
                 id="load-split-seed--1"),
    pytest.param(lambda: data_root(3), TypeError, r"root \(the data folder\) must be a path, got 3 \(int\)", id="data-root-int"),
    pytest.param(lambda: stratified_split(Y, 1.0), ValueError, r"fraction \(the held-out share of each class\) must be in \[0.0, 1.0\), got 1.0",
                 id="split-fraction-1"),
    pytest.param(lambda: stratified_split(Y, "0.5"), TypeError, r"fraction .* must be a real number, got '0.5'", id="split-fraction-str"),
    pytest.param(lambda: stratified_split(Y, 0.5, seed=-1), ValueError, r"seed must be an integer >= 0, got -1", id="split-seed--1"),
    pytest.param(lambda: stratified_split([0, -2], 0.5), ValueError, r"labels must be non-negative class indices, found -2",
                 id="split-labels-negative"),
    # ArrayDataset
    pytest.param(lambda: ArrayDataset(torch.zeros(3, 8, 8), [0, 1, 2], SPEC), ValueError,
                 r"digits: inputs must have shape \(N, 1, 8, 8\), got \(3, 8, 8\)", id="dataset-input-shape"),
    pytest.param(lambda: ArrayDataset(torch.zeros(3, 1, 8, 8), [0, 1], SPEC), ValueError,
                 r"digits labels has length 2 but there are 3 samples", id="dataset-labels-wrong-length"),
    pytest.param(lambda: ArrayDataset(torch.zeros(2, 1, 8, 8), [0, 10], SPEC), ValueError,
                 r"digits labels out of range: found class 10 with num_classes=10", id="dataset-label-out-of-range"),
    pytest.param(lambda: ArrayDataset(torch.zeros(2, 1, 8, 8), [0, -1], SPEC), ValueError,
                 r"digits labels must be non-negative class indices, found -1", id="dataset-label-negative"),
    pytest.param(lambda: ArrayDataset(torch.zeros(2, 1, 8, 8), [0, 0.5], SPEC), ValueError,
                 r"digits labels must be integers, got dtype float64", id="dataset-label-float"),
    pytest.param(lambda: ArrayDataset(torch.full((2, 1, 8, 8), float("nan")), [0, 1], SPEC), ValueError,
                 r"digits: inputs contain NaN or infinite values", id="dataset-inputs-nan"),
    pytest.param(lambda: _digits_test().subset([10**6]), ValueError, r"digits subset indices has index 1000000 outside range\(0, 359\)",
                 id="subset-index-out-of-range"),
    pytest.param(lambda: _digits_test().subset([-1]), ValueError, r"digits subset indices has index -1 outside range\(0, 359\)", id="subset-index-negative"),
    pytest.param(lambda: _digits_test().subset([0.5]), ValueError, r"digits subset indices must hold integer sample indices, got dtype float64",
                 id="subset-index-float"),
    # imbalance
    pytest.param(lambda: I.step_imbalance_counts(10, 0.5, 4), ValueError,
                 r"the imbalance ratio R = n_max / n_min must be >= 1.0 and finite, got 0.5", id="step-ratio-below-1"),
    pytest.param(lambda: I.step_imbalance_counts(10, float("inf"), 4), ValueError, r"imbalance ratio .* got inf", id="step-ratio-inf"),
    pytest.param(lambda: I.step_imbalance_counts(10, "x", 4), TypeError, r"imbalance ratio .* must be a real number, got 'x'",
                 id="step-ratio-str"),
    pytest.param(lambda: I.step_imbalance_counts(0, 2, 4), ValueError, r"n_per_class must be an integer >= 1, got 0", id="step-n-0"),
    pytest.param(lambda: I.step_imbalance_counts(2.5, 2, 4), TypeError, r"n_per_class must be an integer, got 2.5", id="step-n-2.5"),
    pytest.param(lambda: I.step_imbalance_counts(10, 2, 1), ValueError, r"number of classes k >= 2, got 1", id="step-k-1"),
    pytest.param(lambda: I.exp_imbalance_counts(10, 2, None), TypeError, r"k \(the number of classes\) must be an integer, got None",
                 id="exp-k-none"),
    pytest.param(lambda: I.step_imbalance_counts(10, 20, 4), ValueError, r"n_maj=10 and R=20 leaves the minority classes empty",
                 id="step-minority-empty"),
    pytest.param(lambda: I.imbalance_counts("zipf", 10, 2, 4), ValueError, r"unknown imbalance kind 'zipf'", id="imbalance-kind"),
    pytest.param(lambda: I.imbalance_counts("none", 10, 2, 4), ValueError, r"imbalance='none' takes ratio 1, got ratio=2",
                 id="imbalance-none-with-ratio"),
    pytest.param(lambda: I.minority_classes([]), ValueError, r"counts must be a non-empty 1-D array .* got \[\]", id="minority-empty"),
    pytest.param(lambda: I.minority_classes([3, -1]), ValueError, r"counts must be .*non-negative integers .* got \[3, -1\]",
                 id="minority-negative"),
    pytest.param(lambda: I.minority_classes([[1, 2]]), ValueError, r"counts must be .*1-D array .* got \[\[1, 2\]\]", id="minority-2d"),
    pytest.param(lambda: I.imbalanced_indices(Y, [1.5, 1, 1], 0), ValueError, r"counts must be a 1-D array of non-negative integers",
                 id="indices-counts-float"),
    pytest.param(lambda: I.imbalanced_indices(Y, [1, 1], 0), ValueError, r"labels go up to class 2 but counts has 2 entries",
                 id="indices-counts-short"),
    pytest.param(lambda: I.imbalanced_indices(Y, [5, 1, 1], 0), ValueError, r"class 0 has 4 samples but 5 were asked for",
                 id="indices-too-many"),
    pytest.param(lambda: I.imbalanced_indices(Y, [1, 1, 1], -1), ValueError, r"seed must be an integer >= 0, got -1", id="indices-seed--1"),
    pytest.param(lambda: I.make_imbalanced(_empty_digits(), "step", 2, 0), ValueError,
                 r"make_imbalanced: the dataset .* is empty: there is nothing to subsample", id="make-imbalanced-empty"),
    pytest.param(lambda: I.make_imbalanced(_digits_test().subset(np.flatnonzero(_digits_test().labels != 3)), "step", 2, 0),
                 ValueError, r"class 3 has no sample, so the default n_per_class .* would be 0", id="make-imbalanced-absent-class"),
    pytest.param(lambda: I.make_imbalanced(_digits_test(), "step", 2, -1), ValueError, r"seed must be an integer >= 0, got -1",
                 id="make-imbalanced-seed--1"),
    # augmentation
    pytest.param(lambda: A.BatchAugment(SPEC, crop_pad=-1), ValueError, r"crop_pad must be an integer >= 0, got -1", id="augment-crop-pad--1"),
    pytest.param(lambda: A.BatchAugment(SPEC, crop_pad=1.5), TypeError, r"crop_pad must be an integer, got 1.5", id="augment-crop-pad-1.5"),
    pytest.param(lambda: A.BatchAugment(SPEC).views(torch.zeros(2, 1, 8, 8), 0, GEN), ValueError, r"views must be an integer >= 1, got 0",
                 id="augment-views-0"),
    pytest.param(lambda: A.random_crop(torch.zeros(2, 1, 8, 8), 1.5, GEN), TypeError, r"pad must be an integer, got 1.5", id="crop-pad-1.5"),
    pytest.param(lambda: A.random_crop(torch.zeros(2, 8), 2, GEN), ValueError, r"random_crop takes \(B, C, L\) or \(B, C, H, W\) batches",
                 id="crop-shape"),
    pytest.param(lambda: A.random_flip(torch.zeros(()), GEN), ValueError, r"random_flip takes a batch of samples \(B, ...\), got shape \(\)",
                 id="flip-scalar"),
]


@pytest.mark.parametrize("call, error, message", BATCHING + DATA)
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_degenerate_input_with_a_meaning():
    """Documented conventions: an empty label set splits into two empty parts; a subset of no index is an
    empty split; a padding of 0 leaves the batch unchanged."""
    kept, held = stratified_split(np.zeros(0, dtype=np.int64), 0.5)
    assert kept.size == 0 and held.size == 0
    assert len(_digits_test().subset([])) == 0
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(A.random_crop(x, 0, GEN), x)


# ----------------------------------------------------------------------------- torchvision files
def _cifar_corrupt_but_checksummed(root, monkeypatch):
    """A file cut short whose checksum matches (torchvision's check passes, its reader fails)."""
    import torchvision.datasets as tvd

    fx = write_cifar(root, "cifar10")
    f = root / "cifar-10-batches-py" / "data_batch_2"
    f.write_bytes(f.read_bytes()[:100])
    fx["md5"]["data_batch_2"] = hashlib.md5(f.read_bytes()).hexdigest()
    for attr, value in cifar_md5_patch("cifar10", fx["md5"]).items():
        monkeypatch.setattr(tvd.CIFAR10, attr, value)
    return "cifar10"


def _cifar_one_missing(root, monkeypatch):
    write_cifar(root, "cifar10")
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    return "cifar10"


def _cifar_checksum_mismatch(root, monkeypatch):
    write_cifar(root, "cifar10")  # the fixture's bytes are not the official files
    return "cifar10"


def _mnist_cut_short(root, monkeypatch):
    write_mnist(root, "mnist")
    f = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:1000])
    return "mnist"


def _mnist_garbage_labels(root, monkeypatch):
    write_mnist(root, "mnist")
    (root / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(b"garbage!")
    return "mnist"


def _mnist_header_only(root, monkeypatch):
    write_mnist(root, "mnist")
    (root / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 4)
    return "mnist"


def _mnist_one_missing(root, monkeypatch):
    write_mnist(root, "mnist")
    (root / "MNIST" / "raw" / "train-labels-idx1-ubyte").unlink()
    return "mnist"


TORCHVISION = [
    pytest.param(_cifar_corrupt_but_checksummed, r"cifar10: data unreadable .*rejected by torchvision \(pickle data was truncated\)",
                 id="cifar-cut-short-checksum-ok"),
    pytest.param(_cifar_one_missing, r"cifar10: data not found .*missing: \[\S+data_batch_3'\]", id="cifar-one-file-missing"),
    pytest.param(_cifar_checksum_mismatch, r"cifar10: data unreadable .*rejected by torchvision \(Dataset not found or corrupted",
                 id="cifar-checksum-mismatch"),
    pytest.param(_mnist_cut_short, r"mnist: data unreadable .*rejected by torchvision \(shape '\[30, 28, 28\]' is invalid",
                 id="mnist-images-cut-short"),
    pytest.param(_mnist_garbage_labels, r"mnist: data unreadable .*rejected by torchvision \(AssertionError\)", id="mnist-labels-garbage"),
    pytest.param(_mnist_header_only, r"mnist: data unreadable .*rejected by torchvision", id="mnist-labels-header-only"),
    pytest.param(_mnist_one_missing, r"mnist: data not found .*missing: \[\S+train-labels-idx1-ubyte'\]", id="mnist-one-file-missing"),
]


@pytest.mark.parametrize("make, message", TORCHVISION)
def test_torchvision_files_missing_or_corrupt_are_one_clear_error(tmp_path, monkeypatch, make, message):
    name = make(tmp_path, monkeypatch)
    with pytest.raises(DatasetNotFoundError, match=message) as err:
        load_dataset(name, "train", root=tmp_path)
    text = str(err.value)
    assert str(tmp_path) in text and "download=True" in text and "\n" not in text
    assert isinstance(err.value, ValueError) and isinstance(err.value, FileNotFoundError)
