"""Batchings and the batch-interaction graph (uniqueness conditions of the OF minimiser)."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ufm.batching import (
    BindingBatchSampler,
    batch_graph,
    bind,
    binding_examples,
    epoch_seed,
    epochs_of_batches,
    full_batch,
    random_batches,
    uniqueness_conditions,
)


def step_labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


Y = step_labels([40, 40, 4, 4, 4])  # R = 10, n = 92


# ----------------------------------------------------------------------------- batchings
def test_full_batch():
    (b,) = full_batch(7)
    assert b.tolist() == list(range(7))
    with pytest.raises(ValueError, match="positive integer"):
        full_batch(0)


@pytest.mark.parametrize("bs,drop_last", [(10, False), (10, True), (92, False), (200, False), (1, False)])
def test_random_batches_cover_each_sample_once(bs, drop_last):
    batches = random_batches(Y, bs, seed=3, drop_last=drop_last)
    sizes = [b.size for b in batches]
    full = Y.size // bs
    assert sizes[:full] == [bs] * full
    assert len(batches) == (full if drop_last else -(-Y.size // bs))
    allidx = np.concatenate(batches)
    assert np.unique(allidx).size == allidx.size  # no sample twice in an epoch
    assert allidx.size == (full * bs if drop_last else Y.size)
    # class counts of the epoch equal the dataset's (without drop_last)
    if not drop_last:
        assert np.array_equal(np.bincount(Y[allidx]), np.bincount(Y))


def test_random_batches_seeded():
    a = random_batches(Y, 16, seed=5)
    b = random_batches(Y, 16, seed=5)
    c = random_batches(Y, 16, seed=6)
    assert all(np.array_equal(x, z) for x, z in zip(a, b))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c))


def test_epochs_reproducible_and_different():
    e1 = list(epochs_of_batches(Y, 16, seed=1, epochs=3))
    e2 = list(epochs_of_batches(Y, 16, seed=1, epochs=3))
    assert len(e1) == 3
    for x, z in zip(e1, e2):
        assert all(np.array_equal(p, q) for p, q in zip(x, z))
    assert not np.array_equal(np.concatenate(e1[0]), np.concatenate(e1[1]))
    # epoch e is random_batches with the derived seed
    assert all(np.array_equal(p, q) for p, q in zip(e1[2], random_batches(Y, 16, epoch_seed(1, 2))))
    assert epoch_seed(1, 2) != epoch_seed(2, 1)


def test_binding_examples_one_per_class_and_seeded():
    bnd = binding_examples(Y, seed=0)
    assert bnd.shape == (5,)
    assert Y[bnd].tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(bnd, binding_examples(Y, seed=0))
    picks = {tuple(binding_examples(Y, seed=s)) for s in range(20)}
    assert len(picks) > 1  # random within classes


def test_bind_appends_without_duplicates():
    bnd = binding_examples(Y, seed=0)
    batches = random_batches(Y, 10, seed=2)
    bound = bind(batches, bnd, n=Y.size)
    for b, bb in zip(batches, bound):
        assert np.array_equal(bb[: b.size], b)  # the batch itself is kept, in order
        assert set(bnd) <= set(bb.tolist())  # every binding example present
        assert np.unique(bb).size == bb.size  # nothing twice
        assert bb.size == b.size + np.setdiff1d(bnd, b).size
        assert np.array_equal(np.unique(Y[bb]), np.arange(5))  # every class in every batch


def test_binding_sampler_with_dataloader():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    sampler = BindingBatchSampler(Y, batch_size=10, seed=4, binding=True)
    assert len(sampler) == 10
    ds = TensorDataset(torch.arange(Y.size), torch.as_tensor(Y))
    loader = DataLoader(ds, batch_sampler=sampler)
    sampler.set_epoch(3)
    seen = []
    for idx, lab in loader:
        assert set(sampler.binding.tolist()) <= set(idx.tolist())
        assert len(set(idx.tolist())) == idx.numel()
        assert sorted(set(lab.tolist())) == [0, 1, 2, 3, 4]
        seen.append(idx.numpy())
    assert len(seen) == len(sampler)
    expect = sampler.batches(3)
    assert all(np.array_equal(a, b) for a, b in zip(seen, expect))
    # every sample of the epoch appears (the binding examples in each batch)
    assert np.array_equal(np.unique(np.concatenate(seen)), np.arange(Y.size))
    # iteration advances the epoch; set_epoch reproduces it
    assert sampler.epoch == 4
    first = [list(b) for b in sampler]
    sampler.set_epoch(4)
    assert [list(b) for b in sampler] == first
    plain = BindingBatchSampler(Y, batch_size=10, seed=4, binding=False, drop_last=True)
    assert len(plain) == 9 and all(len(b) == 10 for b in plain)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: random_batches(Y, 0, 0), "batch_size"),
        (lambda: random_batches(Y, 2.5, 0), "batch_size"),
        (lambda: random_batches(np.ones((3, 2), dtype=int), 2, 0), "one-dimensional"),
        (lambda: random_batches(np.array([0.5, 1.0]), 2, 0), "integers"),
        (lambda: random_batches(Y, 4, -1), "seed"),
        (lambda: random_batches(Y, 100, 0, drop_last=True), "no batch"),
        (lambda: binding_examples(Y, 0, num_classes=6), r"classes \[5\] have no sample"),
        (lambda: binding_examples(np.array([0, 0, 2]), 0), r"classes \[1\] have no sample"),
        (lambda: bind([np.array([0, 1])], np.array([0, 99]), n=92), "outside range"),
        (lambda: bind([np.array([0, 0])], np.array([1]), n=92), "repeats"),
        (lambda: uniqueness_conditions(Y, [np.array([0, 92])]), "outside range"),
        (lambda: uniqueness_conditions(Y, [np.array([0.0, 1.0])]), "integer"),
        (lambda: batch_graph(Y, []), "empty"),
        (lambda: BindingBatchSampler(Y, 0), "batch_size"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- interaction graph
def test_two_classes_never_together():
    y = step_labels([3, 3, 3])
    # classes 0,1 together and 1,2 together, never 0 with 2
    batches = [np.array([0, 1, 2, 3, 4, 5]), np.array([3, 4, 5, 6, 7, 8])]
    u = uniqueness_conditions(y, batches)
    assert u.missing_pairs == [(0, 2)]
    assert u.all_connected and not u.unique


def test_class_split_in_two_halves():
    y = step_labels([4, 4])
    # class 0 = {0,1,2,3}: {0,1} and {2,3} never share a batch
    batches = [np.array([0, 1, 4, 5]), np.array([2, 3, 6, 7]), np.array([4, 6, 0])]
    u = uniqueness_conditions(y, batches)
    assert u.class_connected == {0: False, 1: True}
    assert u.class_components == {0: 2, 1: 1}
    assert u.missing_pairs == [] and not u.unique
    bound = bind(batches, np.array([0, 4]), n=y.size)
    ub = uniqueness_conditions(y, bound)
    assert ub.unique and ub.class_components == {0: 1, 1: 1}


def test_binding_makes_random_small_batches_unique():
    y = step_labels([60, 60, 6, 6])  # R = 10
    found_bad = False
    for seed in range(10):
        batches = random_batches(y, 4, seed)
        plain = uniqueness_conditions(y, batches)
        found_bad |= not plain.unique
        bound = uniqueness_conditions(y, bind(batches, binding_examples(y, seed)))
        assert bound.unique and bound.missing_pairs == []
        assert all(v == 1 for v in bound.class_components.values())
    assert found_bad  # batches of 4 under imbalance do fail the conditions


def test_refined_rule_single_class_batch():
    y = step_labels([2, 2])
    # the pair {0,1} of class 0 shares only a single-class batch; class pairs are covered
    batches = [np.array([0, 1]), np.array([0, 2, 3]), np.array([1, 2])]
    refined = uniqueness_conditions(y, batches, refined=True)
    plain = uniqueness_conditions(y, batches, refined=False)
    # the paper's plain rule says "unique"; it is wrong here: a single-class batch of two samples pins nothing,
    # so class 0 may split (the verdict never follows the plain rule; tests/test_uniqueness.py measures it)
    assert plain.conditions_hold and not plain.unique and plain.verdict == "not unique"
    assert not refined.unique and refined.class_connected == {0: False, 1: True}
    g_ref = batch_graph(y, batches, refined=True).toarray()
    g_plain = batch_graph(y, batches, refined=False).toarray()
    assert g_plain[0, 1] == 1 and g_ref[0, 1] == 0
    assert g_ref[0, 2] == 1 and g_ref[1, 2] == 1 and g_ref[2, 3] == 1  # cross edges and mixed-batch edges kept
    # adding another class to that batch makes the pair count under the refined rule too
    fixed = uniqueness_conditions(y, [np.array([0, 1, 3]), *batches[1:]], refined=True)
    assert fixed.unique


@pytest.mark.parametrize("refined", [True, False])
@pytest.mark.parametrize("bs,binding", [(3, False), (5, False), (5, True)])
def test_graph_agrees_with_conditions(refined, bs, binding):
    """Union-find conditions versus connected components of the sparse batch graph."""
    y = step_labels([12, 12, 3, 3])
    batches = random_batches(y, bs, seed=7)
    batches = batches + random_batches(y, bs, seed=8)
    if binding:
        batches = bind(batches, binding_examples(y, 0))
    u = uniqueness_conditions(y, batches, refined=refined)
    g = batch_graph(y, batches, refined=refined)
    assert (g != g.T).nnz == 0 and g.diagonal().sum() == 0
    for c in range(4):
        idx = np.flatnonzero(y == c)
        ncomp, _ = connected_components(g[idx][:, idx], directed=False)
        assert ncomp == u.graph_components[c]
        # single-class batches can only merge components of the graph, never split them
        assert u.class_components[c] <= ncomp if refined else u.class_components[c] == ncomp
    # class pairs co-occur iff some cross edge joins them (refined: in a batch holding a positive)
    onehot = sp.csr_matrix((np.ones(y.size), (np.arange(y.size), y)))
    co = (onehot.T @ g @ onehot).toarray() > 0
    if refined:
        cnt = np.array([np.bincount(y[b], minlength=4) for b in batches])
        co &= np.array([[any(c[a] and c[b] and max(c[a], c[b]) >= 2 for c in cnt) for b in range(4)]
                        for a in range(4)])
    missing = [(a, b) for a in range(4) for b in range(a + 1, 4) if not co[a, b]]
    assert missing == u.missing_pairs


def test_graph_scale():
    y = np.repeat(np.arange(10), 1000)
    batches = random_batches(y, 100, seed=0)
    g = batch_graph(y, batches)
    assert g.shape == (10_000, 10_000)
    assert g.nnz == 100 * 100 * 99  # each batch a clique, batches disjoint
    u = uniqueness_conditions(y, batches)
    assert not u.all_connected  # one epoch of disjoint batches leaves each class in 100 pieces
    assert all(v == 100 for v in u.class_components.values())
    assert uniqueness_conditions(y, bind(batches, binding_examples(y, 0))).unique


def test_refined_pairs_need_an_anchor_with_a_positive():
    # classes 2 and 3 meet only as single samples: no anchor term reads their cosine
    y = np.array([0, 0, 1, 1, 2, 3])
    batches = [np.array([0, 1, 2, 3]), np.array([0, 1, 4]), np.array([2, 3, 5]), np.array([4, 5])]
    refined = uniqueness_conditions(y, batches)
    plain = uniqueness_conditions(y, batches, refined=False)
    assert (2, 3) in refined.missing_pairs and not refined.unique
    assert (2, 3) not in plain.missing_pairs and not plain.unique  # the verdict is the exact rule's in both


def test_epoch_batcher_matches_the_generator():
    from ufm.batching import epoch_batcher, epochs_of_batches

    y = np.repeat(np.arange(4), [20, 20, 2, 2])
    for binding in (False, True):
        f = epoch_batcher(y, 6, seed=3, binding=binding)
        gen = epochs_of_batches(y, 6, seed=3, epochs=3, binding=binding)
        for e, batches in enumerate(gen):
            assert all(np.array_equal(a, b) for a, b in zip(f(e), batches))


@pytest.mark.parametrize("binding,drop_last", [(False, False), (True, False), (True, True)])
def test_three_epoch_batchings_are_one(binding, drop_last):
    """epochs_of_batches, epoch_batcher and BindingBatchSampler.batches share one implementation: the same
    batches for the same seed and epoch."""
    from ufm.batching import epoch_batcher

    y = np.repeat(np.arange(4), [20, 20, 2, 2])
    f = epoch_batcher(y, 6, seed=11, binding=binding, drop_last=drop_last)
    sampler = BindingBatchSampler(y, 6, seed=11, binding=binding, drop_last=drop_last)
    gen = epochs_of_batches(y, 6, seed=11, epochs=4, binding=binding, drop_last=drop_last)
    for e, batches in enumerate(gen):
        for other in (f(e), sampler.batches(e)):
            assert len(other) == len(batches)
            assert all(np.array_equal(a, b) for a, b in zip(other, batches))
    if binding:
        assert np.array_equal(sampler.binding, binding_examples(y, 11))
