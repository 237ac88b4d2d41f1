"""Batchings of a labelled training set: full batch, random mini-batches, batch binding, and the
batch-interaction graph that decides whether the orthogonal frame (OF) is the UNIQUE minimiser of
the supervised contrastive loss (SCL) of the unconstrained features model with non-negativity.

Everything here is pure index logic (numpy, seeded). A batching is a list of 1-D ``int64`` index
arrays into ``range(n)``; one epoch of random mini-batches is a seeded permutation of ``range(n)``
cut into consecutive pieces of ``batch_size``.

Batch binding (Kini et al. 2023): choose ``k`` fixed "binding" examples, one per class, and append
them to every batch (a binding example already in the batch is not repeated). Then every batch
holds every class, which makes both uniqueness conditions below hold.

Uniqueness of the OF (see :func:`uniqueness_conditions`). Write the objective on the Gram matrix
``G = Z^T Z`` of the normalised features, ``f(G) = sum_B f_B(G)``. At the OF point ``G*`` (``G*_ij =
1[y_i = y_j]``), in a batch ``B`` with class counts ``m_c`` (``m = sum_c m_c``), the derivative of
the anchor term of ``i`` (class ``c``; it exists only when ``i`` has a positive in ``B``) is

    d/dG_il  =  (1/tau) e^{G*_il/tau} / sum_{l' != i} e^{G*_il'/tau}            for y_l != c   (> 0)
    d/dG_ij  =  (1/tau) [ e^{1/tau} / ((m_c - 1) e^{1/tau} + m - m_c)  -  1/(m_c - 1) ]   for y_j = c

The second one is < 0 iff ``m > m_c``, i.e. iff the batch holds a sample of another class; it is 0
when the batch holds class ``c`` only. Since ``0 <= G_ij <= 1`` for non-negative unit features and
``f`` is convex, ``f(G) - f(G*) >= <grad f(G*), G - G*> >= 0``, with equality only if ``G_ij = 1`` on
every same-class pair that shares a batch WITH A NEGATIVE, and ``G_ij = 0`` on every cross-class pair
that shares a batch in which one of the two has a positive (otherwise no anchor term reads the pair). ``G_ij = 1`` for unit vectors means ``z_i = z_j``, which is transitive; so the
minimiser is unique (``G = G*``) when

1. every class's same-class graph is connected (edges: pairs sharing a batch that also holds
   another class -- the *refined* rule; the *plain* rule counts every shared batch), and
2. every pair of classes *interacts*: some batch holds both, and (refined rule) holds at least two
   samples of one of them, so that an anchor of that class sees the other as a negative.

Both are sufficient. Condition 2 is also necessary: if classes ``a`` and ``b`` never interact,
moving class ``b`` to ``(w_a + w_b)/sqrt 2`` changes no anchor term's value. Condition 1 (refined) is
necessary when ``d > k``: a component of a class that never meets its class-mates in a batch with a
negative can be moved to a spare orthogonal direction without changing any batch's loss. The plain
rule can declare a batching "unique" that is not (a single-class batch exerts no pull at the OF).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ufm._checks import as_label_array

__all__ = [
    "full_batch",
    "epoch_seed",
    "random_batches",
    "epochs_of_batches",
    "epoch_batcher",
    "binding_examples",
    "bind",
    "BindingBatchSampler",
    "batch_graph",
    "UniquenessConditions",
    "uniqueness_conditions",
]


# ----------------------------------------------------------------------------- validation
def _labels(labels) -> np.ndarray:
    y = as_label_array(labels)
    if y.size == 0:
        raise ValueError("labels is empty: there is nothing to batch")
    return y


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _index_array(b, n: int, what: str) -> np.ndarray:
    arr = np.asarray(b)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of sample indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must hold integer sample indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or (n is not None and arr.max() >= n)):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise ValueError(f"{what} has index {bad} outside range(0, {n})")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"{what} repeats a sample index; a sample may appear once per batch")
    return arr


def _batches(batches, n: int) -> list[np.ndarray]:
    if batches is None:
        return [np.arange(n, dtype=np.int64)]
    if isinstance(batches, np.ndarray) and batches.ndim == 1:
        raise ValueError("batches must be a list of index arrays (one per batch), got a single 1-D array")
    out = [_index_array(b, n, f"batch {t}") for t, b in enumerate(batches)]
    if not out:
        raise ValueError("the batching is empty")
    return out


# ----------------------------------------------------------------------------- batchings
def full_batch(n: int) -> list[np.ndarray]:
    """One batch holding every sample: ``[arange(n)]``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return [np.arange(int(n), dtype=np.int64)]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` derived from one run seed (``numpy.random.SeedSequence([seed, epoch])``):
    reproducible, and statistically independent across epochs."""
    seed, epoch = _check_seed(seed), _check_seed(epoch)
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])


def random_batches(labels, batch_size: int, seed: int, drop_last: bool = False) -> list[np.ndarray]:
    """One epoch: a seeded permutation of ``range(n)`` cut into consecutive batches of ``batch_size``.

    The last batch is shorter when ``batch_size`` does not divide ``n`` (dropped with ``drop_last``).
    Every sample appears in exactly one batch (at most one when ``drop_last``).
    """
    y = _labels(labels)
    bs = _check_batch_size(batch_size)
    perm = np.random.default_rng(_check_seed(seed)).permutation(y.size)
    stop = (y.size // bs) * bs if drop_last else y.size
    out = [perm[s:s + bs].astype(np.int64) for s in range(0, stop, bs)]
    if not out:
        raise ValueError(f"drop_last with batch_size={bs} > n={y.size} leaves no batch")
    return out


def binding_examples(labels, seed: int, num_classes: int | None = None) -> np.ndarray:
    """``k`` fixed binding examples, one per class, drawn uniformly within each class (seeded).

    Returns the indices ordered by class (entry ``c`` is a sample of class ``c``). Classes are
    ``0..k-1`` with ``k = num_classes`` or ``max(labels) + 1``; a class with no sample is an error.
    """
    y = as_label_array(labels, num_classes=num_classes)
    if y.size == 0:
        raise ValueError("labels is empty: there is no example to bind")
    k = num_classes if num_classes is not None else int(y.max()) + 1
    counts = np.bincount(y, minlength=k)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"classes {missing} have no sample: they cannot have a binding example")
    rng = np.random.default_rng(_check_seed(seed))
    order = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    picks = starts + np.floor(rng.random(k) * counts).astype(np.int64)
    return order[picks].astype(np.int64)


def bind(batches, binding, n: int | None = None) -> list[np.ndarray]:
    """Append the binding examples to every batch, skipping those already in the batch.

    The result's batch ``t`` is ``batches[t]`` followed by ``[b for b in binding if b not in batches[t]]``.
    ``n`` (optional) range-checks the indices.
    """
    bnd = _index_array(binding, n, "binding")
    if bnd.size == 0:
        raise ValueError("binding is empty")
    if isinstance(batches, np.ndarray) and batches.ndim == 1:
        raise ValueError("batches must be a list of index arrays (one per batch), got a single 1-D array")
    out = []
    for t, b in enumerate(batches):
        b = _index_array(b, n, f"batch {t}")
        extra = bnd[~np.isin(bnd, b)]
        out.append(np.concatenate([b, extra]))
    if not out:
        raise ValueError("the batching is empty")
    return out


def epochs_of_batches(
    labels,
    batch_size: int,
    seed: int,
    epochs: int | None = None,
    drop_last: bool = False,
    binding: bool | np.ndarray = False,
) -> Iterator[list[np.ndarray]]:
    """Generator of epochs of random batches; epoch ``e`` uses ``epoch_seed(seed, e)``.

    ``binding``: ``False`` (plain random batches), ``True`` (binding examples drawn with ``seed``, the
    same for every epoch) or an explicit array of binding indices. ``epochs=None`` runs forever.
    """
    y = _labels(labels)
    _check_batch_size(batch_size)
    seed = _check_seed(seed)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0):
        raise ValueError(f"epochs must be a non-negative integer or None, got {epochs!r}")
    bnd = _resolve_binding(y, binding, seed)
    e = 0
    while epochs is None or e < epochs:
        batches = random_batches(y, batch_size, epoch_seed(seed, e), drop_last)
        yield bind(batches, bnd, y.size) if bnd is not None else batches
        e += 1


def epoch_batcher(labels, batch_size: int, seed: int, binding: bool | np.ndarray = False,
                  drop_last: bool = False):
    """The batching of :func:`epochs_of_batches` as a function ``epoch -> list of batches`` (the form
    ``ufm.solvers.solve_gd`` takes for mini-batch training): epoch ``e`` is random batches with seed
    ``epoch_seed(seed, e)``, plus the binding examples (drawn once with ``seed``) when asked.
    """
    y = _labels(labels)
    _check_batch_size(batch_size)
    seed = _check_seed(seed)
    bnd = _resolve_binding(y, binding, seed)

    def batches_of_epoch(epoch: int) -> list[np.ndarray]:
        batches = random_batches(y, batch_size, epoch_seed(seed, epoch), drop_last)
        return bind(batches, bnd, y.size) if bnd is not None else batches

    return batches_of_epoch


def _resolve_binding(y: np.ndarray, binding, seed: int) -> np.ndarray | None:
    if binding is None or binding is False:
        return None
    if binding is True:
        return binding_examples(y, seed)
    return _index_array(binding, y.size, "binding")


class BindingBatchSampler:
    """Batch sampler for ``torch.utils.data.DataLoader(dataset, batch_sampler=...)``.

    Each epoch is ``random_batches(labels, batch_size, epoch_seed(seed, epoch), drop_last)``, with the
    ``k`` binding examples (``binding_examples(labels, seed)``, fixed for the whole run) appended to
    every batch when ``binding=True``; a bound batch thus holds up to ``batch_size + k`` samples.
    Iteration yields lists of python ints.

    Epochs: ``set_epoch(e)`` selects the shuffle of epoch ``e`` (as with ``DistributedSampler``). Each
    ``iter()`` uses the current epoch and then advances it by one, so a loop that never calls
    ``set_epoch`` sees epochs 0, 1, 2, ... and one that calls it sees exactly the epochs it asks for.
    """

    def __init__(self, labels, batch_size: int, seed: int = 0, binding: bool = True, drop_last: bool = False):
        self.labels = _labels(labels)
        self.batch_size = _check_batch_size(batch_size)
        self.seed = _check_seed(seed)
        self.drop_last = bool(drop_last)
        if self.drop_last and self.batch_size > self.labels.size:
            raise ValueError(f"drop_last with batch_size={self.batch_size} > n={self.labels.size} leaves no batch")
        self.binding = binding_examples(self.labels, self.seed) if binding else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = _check_seed(epoch)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The batches of epoch ``epoch`` as index arrays (does not change the current epoch)."""
        out = random_batches(self.labels, self.batch_size, epoch_seed(self.seed, epoch), self.drop_last)
        return bind(out, self.binding, self.labels.size) if self.binding is not None else out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        for b in batches:
            yield b.tolist()

    def __len__(self) -> int:
        n, bs = self.labels.size, self.batch_size
        return n // bs if self.drop_last else -(-n // bs)


# ----------------------------------------------------------------------------- interaction graph
def _batch_class_presence(y: np.ndarray, batches: list[np.ndarray], k: int) -> np.ndarray:
    """Boolean (num_batches, k): which classes each batch holds."""
    return _batch_class_counts(y, batches, k) > 0


def _batch_class_counts(y: np.ndarray, batches: list[np.ndarray], k: int) -> np.ndarray:
    """Integer (num_batches, k): how many samples of each class each batch holds."""
    cnt = np.zeros((len(batches), k), dtype=np.int64)
    for t, b in enumerate(batches):
        cnt[t] = np.bincount(y[b], minlength=k)
    return cnt


def batch_graph(labels, batches, refined: bool = True, max_entries: int = 4_000_000) -> sp.csr_matrix:
    """Adjacency (``n x n``, ``scipy.sparse.csr_matrix`` of 0/1 ``int8``, no self-loops) of the
    batch-interaction graph: ``i ~ j`` when some batch holds both.

    ``refined=True`` drops the same-class edges that come only from batches holding a single class
    (at the OF such a batch's derivative on those pairs is zero, see the module docstring);
    cross-class edges are kept in both rules. Memory: ``sum_B |B|^2`` index pairs, accumulated in
    pieces of ``max_entries`` (``n = 10^4`` in batches of 100: ``10^6`` pairs per epoch).
    """
    y = _labels(labels)
    n = y.size
    bl = _batches(batches, n)
    acc = sp.csr_matrix((n, n), dtype=np.int32)
    rows, cols, size = [], [], 0

    def flush():
        nonlocal acc, rows, cols, size
        if rows:
            r, c = np.concatenate(rows), np.concatenate(cols)
            acc = acc + sp.csr_matrix((np.ones(r.size, dtype=np.int32), (r, c)), shape=(n, n))
            acc.data[:] = 1  # duplicates summed: back to 0/1 so the counts cannot overflow
        rows, cols, size = [], [], 0

    for b in bl:
        if b.size < 2:
            continue
        single_class = np.unique(y[b]).size == 1
        if refined and single_class:
            continue  # only same-class pairs here, and they do not count under the refined rule
        r = np.repeat(b, b.size)
        c = np.tile(b, b.size)
        keep = r != c
        rows.append(r[keep])
        cols.append(c[keep])
        size += int(keep.sum())
        if size >= max_entries:
            flush()
    flush()
    acc.eliminate_zeros()
    return acc.astype(np.int8)


@dataclass
class UniquenessConditions:
    """Result of :func:`uniqueness_conditions` (class ids are the labels' own values).

    class_connected: class -> its same-class subgraph is connected (a class of one sample is).
    class_components: class -> number of connected components of that subgraph.
    missing_pairs: class pairs ``(a, b)``, ``a < b``, that never share a batch.
    unique: both conditions hold, so the OF is the unique minimiser (for ``d >= k``, with ReLU).
    """

    class_connected: dict[int, bool]
    class_components: dict[int, int]
    missing_pairs: list[tuple[int, int]]
    refined: bool
    classes: list[int] = field(default_factory=list)

    @property
    def all_connected(self) -> bool:
        return all(self.class_connected.values())

    @property
    def all_pairs(self) -> bool:
        return not self.missing_pairs

    @property
    def unique(self) -> bool:
        return self.all_connected and self.all_pairs


def uniqueness_conditions(labels, batches, refined: bool = True) -> UniquenessConditions:
    """The two conditions of the module docstring for a batching (a list of index arrays).

    Connectivity: inside one batch the samples of a class form a clique, so it suffices to join each
    to the first sample of its class there (a forest with ``O(sum_B |B|)`` edges, not the cliques).
    With ``refined=True`` (default) a batch that holds a single class joins nothing; with
    ``refined=False`` every batch joins its same-class samples. Two classes interact when some batch
    holds both; with ``refined=True`` that batch must also hold two samples of one of them (a
    singleton pair of classes in a batch is read by no anchor term). A sample in no batch is its own component.
    """
    y = _labels(labels)
    n = y.size
    bl = _batches(batches, n)
    classes, yi = np.unique(y, return_inverse=True)
    k = classes.size
    rows, cols = [], []
    for b in bl:
        if b.size < 2:
            continue
        yb = yi[b]
        present, first = np.unique(yb, return_index=True)
        if refined and present.size < 2:
            continue
        head = np.empty(k, dtype=np.int64)
        head[present] = b[first]
        rows.append(b)
        cols.append(head[yb])  # each sample joined to the first sample of its class in this batch
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    g = sp.csr_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n, n))
    _, roots = connected_components(g, directed=False)
    connected, comps = {}, {}
    for ci, c in enumerate(classes):
        ncomp = np.unique(roots[yi == ci]).size
        comps[int(c)] = int(ncomp)
        connected[int(c)] = ncomp == 1
    cnt = _batch_class_counts(yi, bl, k)
    one, two = (cnt >= 1).astype(np.int64), (cnt >= 2).astype(np.int64)
    if refined:  # an anchor with a positive must see the other class as a negative
        co = (two.T @ one + one.T @ two) > 0
    else:
        co = one.T @ one > 0
    missing = [(int(classes[a]), int(classes[b])) for a in range(k) for b in range(a + 1, k) if not co[a, b]]
    return UniquenessConditions(connected, comps, missing, bool(refined), [int(c) for c in classes])
