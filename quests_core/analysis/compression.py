"""Dataset compression: choose structures that keep the most information.

Every method works on a list of per-structure descriptor arrays (one
``(n_atoms_i, d)`` array per structure) and returns structure indices in the
order they were chosen.

- ``msc`` (minimum set coverage, the information-based method): start from the
  structure with the highest entropy; repeatedly add the structure whose
  environments are least covered by the current subset, scored by the largest
  dH of its environments against the subset plus its own entropy.
- ``fps``: farthest-point sampling on mean descriptors (Euclidean).
- ``kmeans``: k-means on mean descriptors; the structure nearest to each centroid.
- ``random``: a uniform random subset.

Metrics of a subset: entropy H and diversity D of its environments and the
overlap of the full set with it (fraction of all environments with
dH(X | subset) <= 0). The information gap of a subset is a - H(subset), with a
the asymptote of the full set's learning curve (SPEC section 2).

:func:`compression_study` is the whole analysis of the dashboard's Compression
tab: every method's report with one gap reference, with progress.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

import quests_core as qc
from quests_core.errors import QuestsError
from quests_core.learning import asymptote_within_bound
from quests_core.settings import DEFAULTS

METHODS = ("msc", "fps", "kmeans", "random")
#: Fractions of the structures kept in a report (each a subset size).
DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
#: Seeds a report averages the seeded methods over: three from the settings' seed.
DEFAULT_SEEDS = tuple(range(DEFAULTS.seed, DEFAULTS.seed + 3))
#: Methods whose result depends on the random seed (averaged over seeds in reports).
SEEDED_METHODS = ("kmeans", "random")
#: Greedy / permutation methods: the subset of size m is the first m of a larger one.
NESTED_METHODS = ("msc", "fps", "random")


def fraction_to_size(fraction: float, n_structures: int) -> int:
    """Number of structures kept for a fraction in (0, 1] (at least one)."""
    try:
        f = float(fraction)
    except (TypeError, ValueError) as exc:
        raise QuestsError(f"fraction must be a number in (0, 1], got {fraction!r}") from exc
    if not 0.0 < f <= 1.0:
        raise QuestsError(f"fraction must be in (0, 1], got {fraction}")
    if n_structures < 1:
        raise QuestsError("the dataset has no structures to compress")
    # the small slack keeps 0.3 * 10 at 3 despite rounding (3.0000000000000004)
    return int(min(n_structures, max(1, math.ceil(f * n_structures - 1e-9))))


def _check_structures(descs: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(descs) == 0:
        raise QuestsError("the dataset has no structures (empty selection)")
    out = []
    width = None
    for i, x in enumerate(descs):
        arr = np.asarray(x)
        if arr.ndim != 2 or len(arr) == 0:
            raise QuestsError(f"structure has no descriptors (shape {arr.shape})", index=i)
        if width is None:
            width = arr.shape[1]
        elif arr.shape[1] != width:
            raise QuestsError(
                f"descriptor dimension {arr.shape[1]} differs from {width} of structure 0",
                index=i,
            )
        out.append(arr)
    return out


def _check_size(size: int, n: int) -> int:
    if int(size) != size or size < 1:
        raise QuestsError(f"subset size must be a positive integer, got {size}")
    return int(min(size, n))


def structure_means(descs: Sequence[np.ndarray]) -> np.ndarray:
    """Mean descriptor of every structure, shape (n_structures, d)."""
    descs = _check_structures(descs)
    return np.stack([x.mean(axis=0) for x in descs]).astype(np.float64)


def structure_entropies(descs: Sequence[np.ndarray], h: float = DEFAULTS.bandwidth,
                        **kernel_kw) -> np.ndarray:
    """Entropy H of each structure's own environments (nats); ``kernel_kw``: the
    entropy functions' ``precision``, ``backend``, ``n_threads``."""
    descs = _check_structures(descs)
    return np.array([float(qc.entropy(x, h, **kernel_kw)) for x in descs])


# ---------------------------------------------------------------------------
# Selection methods
# ---------------------------------------------------------------------------


def random_selection(n_structures: int, size: int, seed: int = DEFAULTS.seed) -> np.ndarray:
    """A uniform random subset of ``size`` structure indices.

    The first ``size`` entries of a seeded random permutation, so subsets of
    one seed are nested as the size grows.
    """
    size = _check_size(size, n_structures)
    rng = np.random.default_rng(seed)
    return rng.permutation(n_structures)[:size].astype(np.int64)


def fps_selection(
    means: np.ndarray, size: int, *, start: int | None = None, exclude: Sequence[int] = ()
) -> np.ndarray:
    """Farthest-point sampling on mean descriptors.

    Parameters
    ----------
    means : (n, d) array
        One point per structure.
    size : int
        Number of new structures to pick (``exclude`` ones are not counted).
    start : int, optional
        First pick; by default the structure farthest from the centroid.
    exclude : sequence of int
        Already chosen structures: distances are measured to them too and
        they are not picked again.
    """
    pts = np.asarray(means, dtype=np.float64)
    n = len(pts)
    size = _check_size(size, n)
    chosen: list[int] = []
    dist = np.full(n, np.inf)
    taken = np.zeros(n, dtype=bool)
    for e in exclude:
        taken[e] = True
        dist = np.minimum(dist, np.linalg.norm(pts - pts[e], axis=1))
    if start is None:
        if len(exclude):
            start = int(np.argmax(np.where(taken, -np.inf, dist)))
        else:
            start = int(np.argmax(np.linalg.norm(pts - pts.mean(axis=0), axis=1)))
    nxt = start
    while len(chosen) < size and not taken.all():
        chosen.append(nxt)
        taken[nxt] = True
        dist = np.minimum(dist, np.linalg.norm(pts - pts[nxt], axis=1))
        nxt = int(np.argmax(np.where(taken, -np.inf, dist)))
    return np.array(chosen, dtype=np.int64)


def kmeans_selection(means: np.ndarray, size: int, seed: int = DEFAULTS.seed) -> np.ndarray:
    """k-means (k = size) on mean descriptors; the structure nearest each centroid.

    Centroids are taken in order; one whose nearest structure is already
    chosen (empty or coinciding clusters) takes its next nearest, so exactly
    ``size`` distinct structures come back.
    """
    from scipy.cluster.vq import kmeans2

    pts = np.asarray(means, dtype=np.float64)
    n = len(pts)
    size = _check_size(size, n)
    if size == n:
        return np.arange(n, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        centroids, _ = kmeans2(pts, size, minit="++", rng=np.random.default_rng(seed))
    d = np.linalg.norm(pts[None, :, :] - centroids[:, None, :], axis=2)
    chosen: list[int] = []
    taken = np.zeros(n, dtype=bool)
    for row in d:
        for j in np.argsort(row, kind="stable"):
            if not taken[j]:
                taken[j] = True
                chosen.append(int(j))
                break
    return np.array(chosen[:size], dtype=np.int64)


def msc_selection(
    descs: Sequence[np.ndarray],
    size: int,
    *,
    h: float = DEFAULTS.bandwidth,
    entropies: np.ndarray | None = None,
    until_covered: bool = False,
    n_threads: int | None = None,
    **kernel_kw,
) -> np.ndarray:
    """Minimum-set-coverage compression (greedy, information based).

    Parameters
    ----------
    descs : sequence of (n_i, d) arrays
        Descriptors of each structure.
    size : int
        Largest number of structures to keep.
    h : float
        Kernel bandwidth.
    entropies : (n,) array, optional
        Entropy of each structure; computed when omitted.
    until_covered : bool
        Stop early once every environment of the dataset has dH <= 0 against
        the subset (the subset then overlaps the full set completely).
    n_threads, **kernel_kw
        Keywords of every kernel call (``precision``, ``backend``).

    Returns
    -------
    (m,) int64 array
        Chosen structures in order, m <= size.

    Notes
    -----
    dH of every remaining environment against the subset is kept as an
    accumulated log kernel sum, so each step only evaluates the kernel against
    the structure added last: log S_new = logaddexp(log S_old, -dH(X | last)).
    """
    descs = _check_structures(descs)
    n = len(descs)
    size = _check_size(size, n)
    kw = {"n_threads": n_threads, **kernel_kw}
    ent = structure_entropies(descs, h, **kw) if entropies is None else \
        np.asarray(entropies, float)
    if ent.shape != (n,):
        raise QuestsError(f"{ent.size} structure entropies for {n} structures")
    counts = np.array([len(x) for x in descs])
    all_x = np.concatenate(descs)
    owner = np.repeat(np.arange(n), counts)
    log_sum = np.full(len(all_x), -np.inf)

    chosen = [int(np.argmax(ent))]
    remaining = np.ones(n, dtype=bool)
    remaining[chosen[0]] = False
    while len(chosen) < size:
        rows = remaining[owner]
        last = descs[chosen[-1]]
        dh_last = np.asarray(qc.delta_entropy(all_x[rows], last, h, **kw))
        log_sum[rows] = np.logaddexp(log_sum[rows], -dh_last)
        idx = np.flatnonzero(remaining)
        # rows of the remaining structures are contiguous per structure, in order
        starts = np.concatenate([[0], np.cumsum(counts[idx])[:-1]])
        worst = np.maximum.reduceat(-log_sum[rows], starts)
        if until_covered and worst.max() <= 0.0:
            break
        pick = int(idx[np.argmax(worst + ent[idx])])
        chosen.append(pick)
        remaining[pick] = False
    return np.array(chosen, dtype=np.int64)


def select_structures(
    descs: Sequence[np.ndarray],
    method: str,
    size: int,
    *,
    h: float = DEFAULTS.bandwidth,
    seed: int = DEFAULTS.seed,
    entropies: np.ndarray | None = None,
    until_covered: bool = False,
    n_threads: int | None = None,
    **kernel_kw,
) -> np.ndarray:
    """Structure indices chosen by ``method`` (one of :data:`METHODS`); ``kernel_kw``
    (``precision``, ``backend``) go to every kernel call of msc."""
    descs = _check_structures(descs)
    if method not in METHODS:
        raise QuestsError(f"unknown compression method {method!r}; use one of {METHODS}")
    if method == "msc":
        return msc_selection(
            descs,
            size,
            h=h,
            entropies=entropies,
            until_covered=until_covered,
            n_threads=n_threads,
            **kernel_kw,
        )
    if method == "random":
        return random_selection(len(descs), size, seed)
    means = structure_means(descs)
    if method == "fps":
        return fps_selection(means, size)
    return kmeans_selection(means, size, seed)


# ---------------------------------------------------------------------------
# Metrics and report
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SubsetMetrics:
    """Information content of a subset of structures.

    Attributes
    ----------
    n_structures, n_envs : int
        Size of the subset.
    entropy, diversity : float
        H and D of the subset's environments (nats).
    overlap : float
        Fraction of the full set's environments with dH(X | subset) <= 0.
    """

    n_structures: int
    n_envs: int
    entropy: float
    diversity: float
    overlap: float


def subset_metrics(
    descs: Sequence[np.ndarray],
    selected: Sequence[int],
    *,
    h: float = DEFAULTS.bandwidth,
    n_threads: int | None = None,
    **kernel_kw,
) -> SubsetMetrics:
    """H, D and overlap with the full set of the chosen structures (``kernel_kw``:
    ``precision``, ``backend`` of the kernel calls).

    One kernel pass over the subset gives H and dH(subset | subset), hence D;
    the overlap only needs dH of the environments outside the subset (those
    inside always have dH <= 0 through their own kernel term).
    """
    from scipy.special import logsumexp

    descs = _check_structures(descs)
    sel = np.asarray(selected, dtype=np.int64).ravel()
    if sel.size == 0:
        raise QuestsError("empty selection: no structures chosen")
    if sel.min() < 0 or sel.max() >= len(descs):
        raise QuestsError(f"selection index out of range for {len(descs)} structures")
    sel = np.unique(sel)
    x = np.concatenate([descs[i] for i in sel])
    ent, dh_self = qc.entropy_and_delta(x, h, n_threads=n_threads, **kernel_kw)
    rest_ids = np.setdiff1d(np.arange(len(descs)), sel)
    n_total = sum(len(d) for d in descs)
    covered = len(x)
    if len(rest_ids):
        rest = np.concatenate([descs[i] for i in rest_ids])
        dh_rest = np.asarray(qc.delta_entropy(rest, x, h, n_threads=n_threads, **kernel_kw))
        covered += int(np.count_nonzero(dh_rest <= 0.0))
    return SubsetMetrics(
        n_structures=int(sel.size),
        n_envs=int(len(x)),
        entropy=float(ent),
        diversity=float(logsumexp(np.asarray(dh_self, dtype=float))),
        overlap=covered / n_total,
    )


@dataclass(frozen=True)
class GapReference:
    """Entropy the information gap is measured from.

    ``kind`` is ``"asymptote"`` (fit of the full set's learning curve) or
    ``"full"`` (entropy of the full set, used when the set is too small to fit).
    """

    value: float
    kind: str


def gap_reference(
    full: np.ndarray, *, h: float = DEFAULTS.bandwidth, repeats: int = 3,
    seed: int = DEFAULTS.seed, **kernel_kw,
) -> GapReference:
    """Asymptotic entropy of the full set from its learning curve (SPEC section 2).

    The fit is used only within its bound (:func:`quests_core.learning.
    asymptote_within_bound`: at most log n); otherwise, and for sets too small to
    fit, the entropy of the full set itself (kind ``"full"``).
    """
    n = len(full)
    if n >= 40:
        sizes = np.unique(np.geomspace(10, n, 12).astype(int))
        if len(sizes) >= 8:
            try:
                curve = qc.learning_curve(full, sizes, h=h, repeats=repeats, seed=seed,
                                          **kernel_kw)
                fit = qc.fit_asymptote(curve.sizes, curve.mean)
                if asymptote_within_bound(fit.a, n):
                    return GapReference(float(fit.a), "asymptote")
            except QuestsError:
                pass
    return GapReference(float(qc.entropy(full, h, **kernel_kw)), "full")


def _check_request(
    methods: Sequence[str], fractions: Sequence[float], seeds: Sequence[int], n: int
) -> list[int]:
    """The sorted distinct subset sizes of ``fractions`` of ``n`` structures.

    Raises
    ------
    QuestsError
        For no or an unknown method, no fraction, no seed, or a fraction
        outside (0, 1].
    """
    if len(methods) == 0:
        raise QuestsError("no compression method chosen (empty selection)")
    for m in methods:
        if m not in METHODS:
            raise QuestsError(f"unknown compression method {m!r}; use one of {METHODS}")
    if len(fractions) == 0:
        raise QuestsError("no compression fraction chosen")
    if len(seeds) == 0:
        raise QuestsError("no random seed given")
    return sorted({fraction_to_size(f, n) for f in fractions})


def _reference(descs: Sequence[np.ndarray], h: float, gap: bool, **kernel_kw) -> GapReference:
    """:func:`gap_reference` of all environments, or kind ``"none"`` (NaN) without ``gap``."""
    if not gap:
        return GapReference(float("nan"), "none")
    return gap_reference(np.concatenate(descs), h=h, **kernel_kw)


def _method_rows(descs: list[np.ndarray], method: str, sizes: list[int], h: float,
                 seeds: Sequence[int], entropies: np.ndarray | None, kw: dict) -> list[dict]:
    """Rows of one method in :func:`compression_study`'s table (without the gap)."""
    n = len(descs)
    runs = seeds if method in SEEDED_METHODS else (seeds[0],)
    orders = {}
    if method in NESTED_METHODS:  # one greedy run at the largest size serves every size
        for s in runs:
            orders[s] = select_structures(descs, method, sizes[-1], h=h, seed=s,
                                          entropies=entropies, **kw)
    rows = []
    for size in sizes:
        metrics = []
        for s in runs:
            if method in NESTED_METHODS:
                chosen = orders[s][:size]
            else:
                chosen = select_structures(descs, method, size, h=h, seed=s,
                                           entropies=entropies, **kw)
            metrics.append(subset_metrics(descs, chosen, h=h, **kw))
        table = np.array([[m.n_envs, m.entropy, m.diversity, m.overlap] for m in metrics])
        mean, std = table.mean(axis=0), table.std(axis=0)
        rows.append({
            "method": method,
            "fraction": size / n,
            "size": size,
            "n_envs": float(mean[0]),
            "entropy": float(mean[1]),
            "entropy_std": float(std[1]),
            "diversity": float(mean[2]),
            "diversity_std": float(std[2]),
            "overlap": float(mean[3]),
            "overlap_std": float(std[3]),
        })
    return rows


def compression_report(descs: Sequence[np.ndarray], **options) -> pd.DataFrame:
    """H, D, overlap and information gap per method and subset size: the table of
    :func:`compression_study` (``options``: its keywords, e.g. ``methods``,
    ``fractions``, ``h``, ``seeds``, ``gap``, ``n_threads``, ``precision``).

    Seeded methods (k-means, random) are averaged over ``seeds``; the
    ``*_std`` columns hold the spread (0 for deterministic methods).

    Returns
    -------
    DataFrame
        Columns: method, fraction, size, n_envs, entropy, entropy_std,
        diversity, diversity_std, overlap, overlap_std, info_gap, gap_reference.
        ``info_gap`` is reference - entropy, see :func:`gap_reference`.
    """
    return compression_study(descs, **options).report


def every_nth(descs: Sequence[np.ndarray], step: int) -> list[np.ndarray]:
    """Every ``step``-th environment of each structure (exact copies stay copies).

    Raises
    ------
    QuestsError
        For a step below 1.
    """
    if int(step) != step or int(step) < 1:
        raise QuestsError(f"environment step must be at least 1, got {step}")
    return [np.asarray(x)[:: int(step)] for x in descs]


@dataclass(frozen=True)
class Compressed:
    """A compressed set (:func:`compress`): the structures kept, in the order chosen,
    and their :class:`SubsetMetrics` against the full set."""

    selected: np.ndarray
    metrics: SubsetMetrics


def compress(
    descs: Sequence[np.ndarray],
    method: str,
    size: int,
    *,
    h: float = DEFAULTS.bandwidth,
    seed: int = DEFAULTS.seed,
    until_covered: bool = False,
    n_threads: int | None = None,
    **kernel_kw,
) -> Compressed:
    """The ``size`` structures ``method`` keeps (:func:`select_structures`) with their
    H, D and overlap with the full set (:func:`subset_metrics`); ``kernel_kw``
    (``precision``, ``backend``) go to every kernel call."""
    kw = {"n_threads": n_threads, **kernel_kw}
    selected = select_structures(descs, method, size, h=h, seed=seed,
                                 until_covered=until_covered, **kw)
    return Compressed(selected=selected, metrics=subset_metrics(descs, selected, h=h, **kw))


@dataclass(frozen=True)
class CompressionStudy:
    """Result of :func:`compression_study`.

    Attributes
    ----------
    report : DataFrame
        :func:`compression_report`'s table of every method (``info_gap`` measured
        from ``gap``).
    gap : GapReference
        Entropy the information gap is measured from (kind ``"none"``, NaN value,
        when not asked for).
    n_structures, n_envs : int
        Structures and environments of the compressed set.
    """

    report: pd.DataFrame
    gap: GapReference
    n_structures: int
    n_envs: int


def compression_study(
    descs: Sequence[np.ndarray],
    *,
    methods: Sequence[str] = METHODS,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    h: float = DEFAULTS.bandwidth,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    gap: bool = True,
    n_threads: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    **kernel_kw,
) -> CompressionStudy:
    """H, D, overlap and information gap of every method and subset size, one method at
    a time (the Compression tab and ``quests-dashboard compress --compare/--sweep``).

    The information-gap reference is computed once for all methods;
    ``progress(step, done, total)`` is called before each step (the gap reference,
    then each method; ``step`` says what runs) and once at the end. ``n_threads``
    and ``kernel_kw`` (``precision``, ``backend``) go to every kernel call.

    Raises
    ------
    QuestsError
        For no structures, an unknown method, no method or seed, or a fraction
        outside (0, 1] (checked before any long work).
    """
    descs = _check_structures(descs)
    methods = list(methods)
    sizes = _check_request(methods, fractions, seeds, len(descs))
    kw = {"n_threads": n_threads, **kernel_kw}
    total = 1 + len(methods)

    def say(step: str, done: int) -> None:
        if progress is not None:
            progress(step, done, total)

    say("information gap reference", 0)
    ref = _reference(descs, h, gap, **kw)
    rows = []
    for i, method in enumerate(methods):
        say(method, 1 + i)
        ent = structure_entropies(descs, h, **kw) if method == "msc" else None
        rows += _method_rows(descs, method, sizes, h, seeds, ent, kw)
    say("done", total)
    table = pd.DataFrame(rows)
    table["info_gap"] = ref.value - table["entropy"]
    table["gap_reference"] = ref.kind
    return CompressionStudy(report=table, gap=ref, n_structures=len(descs),
                            n_envs=int(sum(len(x) for x in descs)))
