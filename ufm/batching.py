"""Batchings of a labelled training set: full batch, random mini-batches, batch binding, and the
rule that decides whether the orthogonal frame (OF) is the UNIQUE minimiser of the supervised
contrastive loss (SCL) of the unconstrained features model with non-negative features.

Everything here is pure index logic (numpy, seeded). A batching is a list of 1-D ``int64`` index
arrays into ``range(n)``; one epoch of random mini-batches is a seeded permutation of ``range(n)``
cut into consecutive pieces of ``batch_size``.

Batch binding (Kini et al. 2023): choose ``k`` fixed "binding" examples, one per class, and append
them to every batch (a binding example already in the batch is not repeated). Then every batch holds
every class, and every sample shares a batch holding another class with its class's binding example,
so every class collapses; every pair of classes is tied when one of the two has two samples in some
batch. Binding does NOT always give uniqueness: two classes of one sample each (counts 6, 6, 1, 1)
meet in every batch, but neither ever has a positive, so no anchor term reads their cosine.

Uniqueness of the OF (see :func:`uniqueness_conditions`; proofs in ``theory/scl-orthogonal-frame.md``,
Theorem 2). Write the objective on the Gram matrix ``G = Z^T Z`` of the unit, non-negative features
(``G`` PSD, ``diag G = 1``, ``0 <= G <= 1``), ``f(G) = sum_B f_B(G)``. Theorem 1 applied to one batch
says the OF restricted to ``B`` minimises ``f_B``; the OF minimises all of them at once, so the
minimiser set of ``f`` is the intersection over batches of ``argmin f_B``. The equality cases of
Theorem 1's bound, anchor by anchor, give ``argmin f_B``:

* ``B`` holds at least two classes: ``G_ij = 1`` for every same-class pair of a class with two or more
  samples in ``B``, ``G_il = 0`` for every cross-class pair that is *read* (``i`` or ``l`` has a positive
  in ``B``); unread pairs are free. (First-order view: at the OF the derivative is ``> 0`` on read
  cross pairs and ``< 0`` on same-class pairs, since the batch holds a negative.)
* ``B`` holds ``m >= 3`` samples of one class: all its off-diagonal entries equal one common ``t`` in
  ``[0, 1]`` (Jensen's equality case, row by row); ``m = 2``: no constraint.

``G_ij = 1`` means ``z_i = z_j``, which is transitive, so union-find the pinned pairs; a single-class
batch with two samples in one component has ``t = 1`` and merges all its samples; iterate to a
fixpoint. Then the OF is the unique minimiser IFF every class ends as one component and every pair of
classes has a read cross pair. The "if" is immediate; for "only if" another minimiser is built from
the OF (an untied class moved towards another, a split class's components moved apart), which needs
spare dimensions: the rule is exact in the Gram model (any ``d``), and with a given feature dimension
``dim`` it answers ``"unknown"`` where its construction does not fit. :func:`batch_graph` (pairs
sharing a batch) is the graph of step 1; connectivity there is sufficient for collapse, not necessary.
The paper's plain rule (every shared batch joins, every shared batch ties) is necessary (every merge
above joins samples that share a batch, every tie is a shared batch) but not sufficient;
``refined=False`` reports it for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ufm._checks import as_index_array, as_label_array, check_int

__all__ = [
    "full_batch",
    "epoch_seed",
    "random_batches",
    "epochs_of_batches",
    "EpochBatcher",
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


def _check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_batch_list(batches) -> None:
    """A batching is a list (or other sequence) of index arrays, not one array, nor None / a number."""
    if isinstance(batches, np.ndarray) and batches.ndim == 1:
        raise ValueError("batches must be a list of index arrays (one per batch), got a single 1-D array")
    if batches is None or isinstance(batches, (str, bytes, int, float)) or not hasattr(batches, "__iter__"):
        raise TypeError(f"batches must be a list of index arrays (one per batch), got {batches!r}")


def _index_array(b, n: int, what: str) -> np.ndarray:
    arr = as_index_array(b, n, what)
    if np.unique(arr).size != arr.size:
        raise ValueError(f"{what} repeats a sample index; a sample may appear once per batch")
    return arr


def _batches(batches, n: int) -> list[np.ndarray]:
    if batches is None:
        return [np.arange(n, dtype=np.int64)]
    _check_batch_list(batches)
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
    seed, epoch = _check_seed(seed), _check_seed(epoch, "epoch")
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
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", low=1)
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
    _check_batch_list(batches)
    out = []
    for t, b in enumerate(batches):
        b = _index_array(b, n, f"batch {t}")
        extra = bnd[~np.isin(bnd, b)]
        out.append(np.concatenate([b, extra]))
    if not out:
        raise ValueError("the batching is empty")
    return out


def _epoch_batches(y: np.ndarray, batch_size: int, seed: int, epoch: int, drop_last: bool,
                   binding: np.ndarray | None) -> list[np.ndarray]:
    """THE epoch batching, shared by :func:`epochs_of_batches`, :func:`epoch_batcher` and
    :meth:`BindingBatchSampler.batches`: random batches with seed ``epoch_seed(seed, epoch)``, then the
    binding examples appended to every batch when ``binding`` is not ``None``."""
    batches = random_batches(y, batch_size, epoch_seed(seed, epoch), drop_last)
    return bind(batches, binding, y.size) if binding is not None else batches


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
    bs = _check_batch_size(batch_size)
    seed = _check_seed(seed)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0):
        raise ValueError(f"epochs must be a non-negative integer or None, got {epochs!r}")
    bnd = _resolve_binding(y, binding, seed)
    e = 0
    while epochs is None or e < epochs:
        yield _epoch_batches(y, bs, seed, e, drop_last, bnd)
        e += 1


class EpochBatcher:
    """The batching of :func:`epochs_of_batches` as a callable ``epoch -> list of batches`` (the form
    ``ufm.solvers.solve_gd`` takes for mini-batch training): epoch ``e`` is random batches with seed
    ``epoch_seed(seed, e)``, plus the binding examples (drawn once with ``seed``) when asked.

    A class rather than a closure so that it pickles: a solve that holds one can run in a worker process
    (:func:`ufm.parallel.run_parallel`).
    """

    def __init__(self, labels, batch_size: int, seed: int, binding: bool | np.ndarray = False,
                 drop_last: bool = False):
        self.labels = _labels(labels)
        self.batch_size = _check_batch_size(batch_size)
        self.seed = _check_seed(seed)
        self.drop_last = bool(drop_last)
        self.binding = _resolve_binding(self.labels, binding, self.seed)

    def __call__(self, epoch: int) -> list[np.ndarray]:
        return _epoch_batches(self.labels, self.batch_size, self.seed, epoch, self.drop_last, self.binding)


def epoch_batcher(labels, batch_size: int, seed: int, binding: bool | np.ndarray = False,
                  drop_last: bool = False) -> EpochBatcher:
    """:class:`EpochBatcher` ``(labels, batch_size, seed, binding, drop_last)``: epoch ``e`` -> its batches."""
    return EpochBatcher(labels, batch_size, seed, binding, drop_last)


def _resolve_binding(y: np.ndarray, binding, seed: int) -> np.ndarray | None:
    if binding is None or binding is False:
        return None
    if binding is True:
        return binding_examples(y, seed)
    if isinstance(binding, (str, bytes, float)) or np.ndim(binding) == 0:
        raise TypeError(f"binding must be True, False or an array of sample indices, got {binding!r}")
    return _index_array(binding, y.size, "binding")


class BindingBatchSampler:
    """Batch sampler for ``torch.utils.data.DataLoader(dataset, batch_sampler=...)``.

    Each epoch is ``random_batches(labels, batch_size, epoch_seed(seed, epoch), drop_last)``, with the
    ``k`` binding examples (``binding_examples(labels, seed)``, fixed for the whole run) appended to
    every batch when ``binding=True``; a bound batch thus holds up to ``batch_size + k`` samples.
    Epoch ``e`` is the same list of batches as ``epoch_batcher(labels, batch_size, seed, binding,
    drop_last)(e)`` and as epoch ``e`` of :func:`epochs_of_batches` (one shared implementation).
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
        self.binding = _resolve_binding(self.labels, bool(binding), self.seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = _check_seed(epoch, "epoch")

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The batches of epoch ``epoch`` as index arrays (does not change the current epoch)."""
        return _epoch_batches(self.labels, self.batch_size, self.seed, epoch, self.drop_last, self.binding)

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

    ``refined=True`` drops the same-class edges that come only from batches holding a single class;
    cross-class edges are kept in both rules. With ``refined=True`` a same-class edge is a pair that every
    minimiser pins to ``G_ij = 1`` (module docstring), so a class whose subgraph is connected collapses
    at every minimiser: connectivity here is SUFFICIENT for the collapse, not necessary -- single-class
    batches of three or more samples can merge components that this graph leaves apart (see
    :func:`uniqueness_conditions`, which applies them; its ``graph_components`` are the components of
    this graph's class subgraphs). A cross-class edge is read by the loss only when one of the two
    samples has a positive in that batch; this graph does not mark which. Memory: ``sum_B |B|^2`` index
    pairs, accumulated in pieces of ``max_entries`` (``n = 10^4`` in batches of 100: ``10^6`` pairs per
    epoch).
    """
    y = _labels(labels)
    n = y.size
    bl = _batches(batches, n)
    max_entries = check_int(max_entries, "max_entries", low=1)
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


VERDICTS = ("unique", "not unique", "unknown")


@dataclass
class UniquenessConditions:
    """Result of :func:`uniqueness_conditions` (class ids are the labels' own values).

    verdict: ``"unique"`` (the OF is the unique minimiser), ``"not unique"`` (another minimiser exists;
    :func:`uniqueness_conditions` builds one), or ``"unknown"`` (the rule cannot decide: a feature
    dimension ``dim`` was given that is below ``k`` or below ``directions_needed``). With ``dim=None``
    (the Gram model: any ``d``, the ``n x n`` program) the verdict is never ``"unknown"``.
    unique: ``verdict == "unique"`` (a bool).
    reason: one sentence saying which rule decided (and, when not unique, the other minimiser built).
    class_components: class -> number of components of its samples under the rule of ``refined``:
    ``refined=True`` (default): the exact rule -- pairs pinned to ``G_ij = 1`` by batches holding another
    class, then merged to a fixpoint by the single-class batches of three or more samples that hold two
    samples of one component; ``refined=False``: the paper's plain rule (every shared batch joins), kept
    for comparison only -- necessary for uniqueness, not sufficient.
    class_connected: class -> ``class_components[c] == 1`` (a class of one sample is connected).
    missing_pairs: class pairs ``(a, b)``, ``a < b``, with no pair the loss reads (``refined=True``: no
    batch holds both with two samples of one of them; ``refined=False``: no batch holds both).
    graph_components: class -> components of that class in ``batch_graph(labels, batches, refined)``
    (with ``refined=True``: before the single-class merges).
    single_class_merges: indices (into the batching) of the single-class batches whose equality forced
    ``G_ij = 1`` on their samples and merged components, in the order the fixpoint applied them.
    dim: the feature dimension given (``None``: unrestricted). directions_needed: the dimension the
    non-uniqueness construction uses (``None`` when the rule finds the OF unique).
    The verdict always comes from the exact rule, whatever ``refined`` says about the descriptive fields.
    """

    class_connected: dict[int, bool]
    class_components: dict[int, int]
    missing_pairs: list[tuple[int, int]]
    refined: bool
    classes: list[int] = field(default_factory=list)
    verdict: str = "unique"
    reason: str = ""
    graph_components: dict[int, int] = field(default_factory=dict)
    single_class_merges: list[int] = field(default_factory=list)
    dim: int | None = None
    directions_needed: int | None = None

    @property
    def all_connected(self) -> bool:
        return all(self.class_connected.values())

    @property
    def all_pairs(self) -> bool:
        return not self.missing_pairs

    @property
    def conditions_hold(self) -> bool:
        """Both descriptive conditions hold (every class one component, no missing pair) under the rule of
        ``refined``; with ``refined=True`` this equals ``unique`` unless the verdict is ``"unknown"``."""
        return self.all_connected and self.all_pairs

    @property
    def unique(self) -> bool:
        return self.verdict == "unique"


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        p = self.parent
        root = i
        while p[root] != root:
            root = p[root]
        while p[i] != root:
            p[i], i = root, p[i]
        return int(root)

    def union(self, i: int, j: int) -> bool:
        a, b = self.find(i), self.find(j)
        if a == b:
            return False
        self.parent[max(a, b)] = min(a, b)
        return True


def _mixed_components(yi: np.ndarray, bl: list[np.ndarray], k: int, single_class_too: bool) -> np.ndarray:
    """Component id per sample of the graph joining the same-class samples of every batch that holds
    another class (and of every batch when ``single_class_too``): each sample joined to the first sample
    of its class in the batch (a forest with ``O(sum_B |B|)`` edges, not the cliques)."""
    n = yi.size
    rows, cols = [], []
    for b in bl:
        if b.size < 2:
            continue
        yb = yi[b]
        present, first = np.unique(yb, return_index=True)
        if not single_class_too and present.size < 2:
            continue
        head = np.empty(k, dtype=np.int64)
        head[present] = b[first]
        rows.append(b)
        cols.append(head[yb])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    g = sp.csr_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _count_components(comp: np.ndarray, yi: np.ndarray, classes: np.ndarray) -> dict[int, int]:
    return {int(c): int(np.unique(comp[yi == ci]).size) for ci, c in enumerate(classes)}


def uniqueness_conditions(labels, batches, refined: bool = True, dim: int | None = None) -> UniquenessConditions:
    """Decide whether the orthogonal frame is the unique minimiser of the SCL with non-negative features
    for this batching (a list of index arrays), by the exact rule of the module docstring.

    1. Union the same-class samples of every batch that holds at least two classes (those pairs are pinned
       to ``G_ij = 1``, i.e. ``z_i = z_j``).
    2. Fixpoint: a batch of ``m >= 3`` samples of a single class pins its entries to one common value
       ``t``; if two of its samples are already in one component, ``t = 1`` and all its samples merge.
       Repeat until nothing merges.
    3. Classes ``a, b`` are tied (``G = 0`` between them) when some batch holds both and two samples of
       one of them (that sample is an anchor that reads the pair).

    The OF is the unique minimiser iff every class ends as one component and every class pair is tied
    (``verdict="unique"``). Otherwise ``verdict="not unique"`` and ``reason`` names the other minimiser
    built from the OF: class ``b`` moved to ``(e_a + e_b)/sqrt 2`` for an untied pair (``d >= k``); a
    group of components of a class that no single-class batch links to the rest moved to
    ``(e_c + e_spare)/sqrt 2``, ``e_spare`` a new direction (``d >= k + 1``); else all ``r`` components of the class at equal pairwise
    cosine ``t < 1`` (``d >= k + r - 1``). ``dim`` (optional): the feature dimension; the verdict is
    ``"unknown"`` when ``dim < k`` (the OF itself does not fit in non-negative ``R^dim``) or when it is
    not unique in the Gram model but ``dim < directions_needed`` (the construction does not fit; with
    few dimensions non-negativity can force uniqueness). ``refined`` selects the rule the descriptive
    fields follow (:class:`UniquenessConditions`); it does not change the verdict. A sample in no batch
    is its own component.
    """
    y = _labels(labels)
    n = y.size
    bl = _batches(batches, n)
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1):
        raise ValueError(f"dim must be a positive integer or None, got {dim!r}")
    classes, yi = np.unique(y, return_inverse=True)
    k = classes.size
    cnt = _batch_class_counts(yi, bl, k)
    one, two = (cnt >= 1).astype(np.int64), (cnt >= 2).astype(np.int64)

    # ---- exact rule: '= 1' pairs from mixed batches, then the single-class fixpoint
    comp0 = _mixed_components(yi, bl, k, single_class_too=False)
    uf = _UnionFind(n)
    rep: dict[int, int] = {}  # component label -> its first sample
    for i, c in enumerate(comp0.tolist()):
        if c in rep:
            uf.union(rep[c], i)
        else:
            rep[c] = i
    single = [t for t, b in enumerate(bl) if b.size >= 3 and np.all(yi[b] == yi[b[0]])]
    merged_by: list[int] = []
    changed = True
    while changed:
        changed = False
        for t in single:
            roots = {uf.find(int(i)) for i in bl[t]}
            if 1 < len(roots) < bl[t].size:  # two samples share a component: t = 1, merge them all
                first = min(roots)
                for q in roots:
                    uf.union(first, q)
                merged_by.append(t)
                changed = True
    comp = np.array([uf.find(i) for i in range(n)])
    exact_comps = _count_components(comp, yi, classes)
    tied = (two.T @ one + one.T @ two) > 0
    exact_missing = [(int(classes[a]), int(classes[b])) for a in range(k) for b in range(a + 1, k) if not tied[a, b]]

    # ---- verdict and, when not unique, the cheapest construction of another minimiser
    split = [ci for ci, c in enumerate(classes) if exact_comps[int(c)] > 1]
    merges_txt = (f"; single-class batches {merged_by} forced t = 1 and merged components" if merged_by else "")
    if not split and not exact_missing:
        needed = None
        verdict = "unique"
        reason = (f"every class is one component and every pair of classes has a read cross pair{merges_txt}: "
                  f"the OF is the unique minimiser (for any d >= k = {k})")
    else:
        options = []
        if exact_missing:
            a, b = exact_missing[0]
            options.append((k, f"classes {a} and {b} have no pair the loss reads: class {b} moved to "
                               f"(e_{a} + e_{b})/sqrt 2 is another minimiser (d >= k = {k})"))
        for ci in split:
            c = int(classes[ci])
            members = np.flatnonzero(yi == ci)
            roots = sorted(set(comp[members].tolist()))
            r = len(roots)
            hyper = _UnionFind(n)  # components linked by single-class batches that span several of them
            for t in single:
                if yi[bl[t][0]] != ci:
                    continue
                rb = sorted(set(comp[bl[t]].tolist()))
                for q in rb[1:]:
                    hyper.union(rb[0], q)
            groups = len({hyper.find(q) for q in roots})
            if groups >= 2:
                options.append((k + 1, f"class {c} splits into {r} components (in {groups} groups no single-class "
                                       f"batch links){merges_txt}: one group moved to (e_{c} + e_spare)/sqrt 2 "
                                       f"gives another minimiser (d >= k + 1 = {k + 1})"))
            else:
                options.append((k + r - 1, f"class {c} splits into {r} components that single-class batches tie "
                                           f"to one common cosine t{merges_txt}: any t < 1 gives another minimiser "
                                           f"(d >= k + r - 1 = {k + r - 1})"))
        needed, reason = min(options, key=lambda o: o[0])
        verdict = "not unique"
    if dim is not None and dim < k:
        verdict, reason = "unknown", (f"dim = {dim} < k = {k}: the OF does not fit in non-negative R^{dim}, "
                                      f"the rule does not apply (Gram model: {reason})")
    elif dim is not None and needed is not None and dim < needed:
        verdict, reason = "unknown", (f"not unique in the Gram model, but the construction needs d >= {needed} "
                                      f"> dim = {dim}; with fewer dimensions non-negativity may force "
                                      f"uniqueness ({reason})")

    # ---- descriptive fields under the rule asked for
    if refined:
        comps, missing = exact_comps, exact_missing
        graph = _count_components(comp0, yi, classes)
    else:
        plain = _mixed_components(yi, bl, k, single_class_too=True)
        comps = graph = _count_components(plain, yi, classes)
        co = one.T @ one > 0
        missing = [(int(classes[a]), int(classes[b])) for a in range(k) for b in range(a + 1, k) if not co[a, b]]
    return UniquenessConditions(
        class_connected={c: v == 1 for c, v in comps.items()}, class_components=comps, missing_pairs=missing,
        refined=bool(refined), classes=[int(c) for c in classes], verdict=verdict, reason=reason,
        graph_components=graph, single_class_merges=merged_by, dim=None if dim is None else int(dim),
        directions_needed=needed)
