"""ufm.data: packaged data, torchvision on-disk formats (tiny fixtures, download=False), imbalance counts
and subsampling, splits, augmentation, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.torchvision_format import cifar_md5_patch, write_cifar, write_mnist
from ufm.data import (
    BatchAugment,
    DatasetNotFoundError,
    exp_imbalance_counts,
    imbalance_counts,
    imbalanced_indices,
    load_dataset,
    make_imbalanced,
    minority_classes,
    random_crop,
    random_flip,
    step_imbalance_counts,
)


# ----------------------------------------------------------------------------- imbalance counts
def test_step_counts_half_minority():
    assert step_imbalance_counts(5000, 100, 10).tolist() == [5000] * 5 + [50] * 5
    assert step_imbalance_counts(5000, 10, 10).tolist() == [5000] * 5 + [500] * 5
    assert step_imbalance_counts(800, 1, 10).tolist() == [800] * 10
    # odd k: k // 2 minority classes (the last ones), floor(n / R)
    assert step_imbalance_counts(100, 3, 5).tolist() == [100, 100, 100, 33, 33]
    c = step_imbalance_counts(500, 100, 10)
    assert c.max() / c.min() == 100 and minority_classes(c).tolist() == [5, 6, 7, 8, 9]


def test_exp_counts_match_cifar10_lt():
    # CIFAR-10-LT with R = 100 (Cao et al. 2019) has these 12,406 training images
    c = exp_imbalance_counts(5000, 100, 10)
    assert c.tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert c.sum() == 12406
    assert np.all(np.diff(c) < 0)


@pytest.mark.parametrize("args, msg", [
    ((5000, 0.5, 10), "ratio"),
    ((5000, float("nan"), 10), "ratio"),
    ((50, 100, 10), "empty"),
    ((5000, 10, 1), "k >= 2"),
    ((0, 10, 10), "n_per_class"),
])
def test_bad_imbalance_arguments(args, msg):
    with pytest.raises(ValueError, match=msg):
        step_imbalance_counts(*args)


def test_imbalance_kind_checks():
    assert imbalance_counts("none", 7, 1, 3).tolist() == [7, 7, 7]
    with pytest.raises(ValueError, match="ratio 1"):
        imbalance_counts("none", 7, 10, 3)
    with pytest.raises(ValueError, match="unknown imbalance"):
        imbalance_counts("zipf", 7, 10, 3)


def test_imbalanced_indices_seeded_and_exact():
    y = np.repeat(np.arange(4), 50)
    counts = step_imbalance_counts(40, 10, 4)
    a = imbalanced_indices(y, counts, seed=3)
    b = imbalanced_indices(y, counts, seed=3)
    c = imbalanced_indices(y, counts, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(y[a], minlength=4).tolist() == counts.tolist() == [40, 40, 4, 4]
    assert np.unique(a).size == a.size and np.all(np.diff(a) > 0)
    with pytest.raises(ValueError, match="class 0 has 50 samples but 60"):
        imbalanced_indices(y, np.array([60, 1, 1, 1]), seed=0)
    with pytest.raises(ValueError, match="counts has 2 entries"):
        imbalanced_indices(y, np.array([1, 1]), seed=0)


def test_make_imbalanced_on_real_data_reports_counts():
    train = load_dataset("digits", "train")
    sub, counts = make_imbalanced(train, "step", 10, seed=0, n_per_class=100)
    assert counts.tolist() == [100] * 5 + [10] * 5
    assert sub.class_counts().tolist() == counts.tolist()
    # the kept samples are rows of the original split, with their labels
    idx = imbalanced_indices(train.labels, counts, 0)
    assert torch.equal(sub.x, train.x[torch.as_tensor(idx)]) and np.array_equal(sub.labels, train.labels[idx])
    # default n_per_class: the smallest class of the split
    _, c2 = make_imbalanced(train, "exp", 10, seed=0)
    assert c2[0] == train.class_counts().min() and c2[-1] == c2[0] // 10


# ----------------------------------------------------------------------------- packaged data
def test_digits_splits():
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert tr.x.shape == (1438, 1, 8, 8) and te.x.shape == (359, 1, 8, 8)
    assert tr.num_classes == 10 and tr.x.dtype == torch.float32
    # stratified 20 %: every class keeps about 80 % of its ~180 samples
    frac = tr.class_counts() / (tr.class_counts() + te.class_counts())
    assert np.all(np.abs(frac - 0.8) < 0.01)
    xin = tr.to_input(tr.x)
    assert abs(float(xin.mean())) < 1e-3 and abs(float(xin.std()) - 1) < 1e-3  # spec mean / std are the train stats


def test_validation_split_is_held_out_from_train():
    full = load_dataset("digits", "train")
    tr = load_dataset("digits", "train", val_fraction=0.25)
    va = load_dataset("digits", "val", val_fraction=0.25)
    assert len(tr) + len(va) == len(full)
    assert np.array_equal(tr.class_counts() + va.class_counts(), full.class_counts())
    rows = {tuple(r) for r in full.x.reshape(len(full), -1).tolist()}
    assert all(tuple(r) in rows for r in va.x.reshape(len(va), -1).tolist())
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", "val")


def test_animal_mnist_read_from_package_files():
    tr, te = load_dataset("animal_mnist", "train"), load_dataset("animal_mnist", "test")
    assert tr.x.shape == (8000, 1, 28, 28) and te.x.shape == (2000, 1, 28, 28)
    assert tr.x.dtype == torch.uint8 and tr.class_counts().tolist() == [800] * 10
    assert te.class_counts().tolist() == [200] * 10
    xin = tr.to_input(tr.x[:4000])
    assert abs(float(xin.mean())) < 0.05 and abs(float(xin.std()) - 1) < 0.05


def test_mnist1d_generated_cached_and_rng_untouched(tmp_path):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    tr = load_dataset("mnist1d", "train", root=tmp_path)
    assert np.array_equal(np.random.get_state()[1], before)  # make_dataset's seeding was undone
    assert (tmp_path / "mnist1d" / "mnist1d_default.npz").exists()
    te = load_dataset("mnist1d", "test", root=tmp_path)  # from the cache
    assert tr.x.shape == (4000, 1, 40) and te.x.shape == (1000, 1, 40)
    assert len(np.unique(tr.labels)) == 10
    tr2 = load_dataset("mnist1d", "train", root=tmp_path)
    assert torch.equal(tr.x, tr2.x) and np.array_equal(tr.labels, tr2.labels)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("digits", "dev")


# ----------------------------------------------------------------------------- torchvision formats
@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist"])
def test_missing_files_say_where_and_how(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(name, "train", root=tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, ValueError)
    assert str(tmp_path) in msg and "download=True" in msg and "UFM_DATA" in msg


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_fixture_loads_without_download(tmp_path, monkeypatch, name):
    import torchvision.datasets as tvd

    fx = write_cifar(tmp_path, name)
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    for attr, value in cifar_md5_patch(name, fx["md5"]).items():
        monkeypatch.setattr(cls, attr, value)
    monkeypatch.setenv("UFM_DATA", str(tmp_path))  # root from the environment
    tr = load_dataset(name, "train")
    te = load_dataset(name, "test")
    data, labels = fx["train"]
    assert tr.x.shape == (len(labels), 3, 32, 32) and tr.x.dtype == torch.uint8
    assert tr.labels.tolist() == labels and te.labels.tolist() == fx["test"][1]
    # channel c, row h, column w of image i is byte c*1024 + h*32 + w of its row
    i, c, h, w = len(labels) - 1, 2, 7, 30
    assert int(tr.x[i, c, h, w]) == int(data[i, c * 1024 + h * 32 + w])
    assert torch.equal(tr.x.reshape(len(tr), -1), torch.from_numpy(data))


def test_cifar_fixture_rejected_without_matching_checksums(tmp_path):
    write_cifar(tmp_path, "cifar10")
    with pytest.raises(DatasetNotFoundError, match="rejected by torchvision"):
        load_dataset("cifar10", "train", root=tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_fixture_loads_without_download(tmp_path, name):
    fx = write_mnist(tmp_path, name)
    tr = load_dataset(name, "train", root=tmp_path)
    te = load_dataset(name, "test", root=tmp_path)
    assert tr.x.shape == (30, 1, 28, 28) and te.x.shape == (10, 1, 28, 28)
    assert np.array_equal(tr.x[:, 0].numpy(), fx["train"][0]) and np.array_equal(te.labels, fx["test"][1])


# ----------------------------------------------------------------------------- augmentation
def test_random_crop_is_a_window_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    out = random_crop(x, 2, g)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        hits = [(a, b) for a in range(5) for b in range(5) if torch.equal(out[i], xp[i, :, a:a + 6, b:b + 6])]
        assert len(hits) == 1
    # 1-D signals: a shift with zero fill
    s = torch.arange(1, 11, dtype=torch.float32).reshape(1, 1, 10)
    o1 = random_crop(s, 3, torch.Generator().manual_seed(1))
    sp = torch.nn.functional.pad(s, (3, 3))
    assert any(torch.equal(o1[0], sp[0, :, a:a + 10]) for a in range(7))


def test_augmentation_seeded_views_and_flip():
    spec = load_dataset("animal_mnist", "test").spec
    aug = BatchAugment(spec)
    x = load_dataset("animal_mnist", "test").x[:16].float()
    a = aug.views(x, 2, torch.Generator().manual_seed(5))
    b = aug.views(x, 2, torch.Generator().manual_seed(5))
    assert a.shape == (32, 1, 28, 28) and torch.equal(a, b)
    assert not torch.equal(a[:16], a[16:])  # two independent views
    off = BatchAugment(spec, enabled=False).views(x, 2, torch.Generator().manual_seed(5))
    assert torch.equal(off[:16], x) and torch.equal(off[16:], x)
    f = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(f[i], x[i].flip(-1)) for i in range(16)]
    assert all(flipped[i] or torch.equal(f[i], x[i]) for i in range(16)) and 0 < sum(flipped) < 16
