"""The overlap matrix of several descriptor sets (SPEC section 2).

``matrix[i, j] = overlap(groups[i] | groups[j])``: the fraction of environments
of set i with ``dH(i | j) <= 0``. The one implementation behind the CLI
``overlap`` command and the dashboard's Overlap view
(:func:`quests_core.distributed.dask_overlap_matrix` is its Dask executor and
gives the same numbers on unsampled sets).

Invariants
----------
- Rows are test sets, columns reference sets; the diagonal of unsampled sets is 1
  (every point lies inside its own set's kernel density).
- With ``max_n``, each set is subsampled once (sorted rows, ``numpy`` generator
  of ``seed``) and the same sample serves as row and as column.
- Memory: the sampled sets plus, with ``keep_delta``, one float32 dH array per pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ._validate import check_bandwidth, check_descriptors
from .errors import QuestsError
from .settings import DEFAULTS

#: Kernel-pair cost charged for one call on top of rows x columns (for progress).
CALL_PAIRS = 2.0e5


def sample_rows(n: int, max_n: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted random rows (all rows when ``max_n`` is None or ``n <= max_n``)."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=int(max_n), replace=False))


@dataclass
class OverlapMatrix:
    """Result of :func:`overlap_matrix`.

    Attributes
    ----------
    names : list of str
        Set names, in order (rows and columns).
    matrix : (n, n) float array
        ``matrix[i, j]``: fraction of set i with dH(i | j) <= 0.
    bandwidths : (n,) float array
        Bandwidth of each column (reference) set.
    sizes : dict
        Environments of each set used (after sampling).
    delta : dict
        ``(i, j) -> float32 dH`` of every pair, when asked for.
    """

    names: list[str]
    matrix: np.ndarray
    bandwidths: np.ndarray
    sizes: dict[str, int]
    delta: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    def to_frame(self):
        """The matrix as a ``pandas.DataFrame`` (index: test, columns: reference)."""
        import pandas as pd

        out = pd.DataFrame(self.matrix, index=list(self.names), columns=list(self.names))
        out.index.name = "test"
        out.columns.name = "reference"
        return out


def overlap_matrix(
    groups: Mapping[str, np.ndarray],
    h: float | Mapping[str, float],
    *,
    max_n: int | None = None,
    seed=DEFAULTS.seed,
    keep_delta: bool = False,
    progress: Callable[[float, float], None] | None = None,
    **kernel_kw,
) -> OverlapMatrix:
    """``overlap(row | column)`` for every ordered pair of descriptor sets.

    Parameters
    ----------
    groups : mapping of str to (n_i, d) arrays
        The descriptor sets, in the order of the result.
    h : float or mapping of str to float
        Bandwidth, one for all, or one per reference (column) set, e.g. from the
        volume rule of each set.
    max_n : int, optional
        Subsample each set to at most this many environments.
    seed : int or sequence of ints
        Seed of the subsample.
    keep_delta : bool
        Keep every pair's per-environment dH (float32) in the result.
    progress : callable, optional
        ``progress(done, total)`` in kernel pairs (rows x columns + a per-call cost).
    **kernel_kw
        ``precision``, ``n_threads``, ``backend``, ``cancel``.
    """
    from .entropy import delta_entropy

    if not groups:
        raise QuestsError("no descriptor sets given")
    names = [str(name) for name in groups]
    arrays = [check_descriptors(groups[name], f"descriptors of {name!r}") for name in groups]
    widths = sorted({a.shape[1] for a in arrays})
    if len(widths) > 1:
        raise QuestsError(f"descriptor sets have different widths {widths}")
    if isinstance(h, Mapping):
        hs = np.array([float(check_bandwidth(h[name])[0][0]) for name in groups])
    else:
        harr, scalar = check_bandwidth(h)
        if not scalar:
            raise QuestsError("the overlap matrix takes one bandwidth h per set (a number)")
        hs = np.full(len(names), float(harr[0]))
    rng = np.random.default_rng(seed)
    sampled = [a[sample_rows(len(a), max_n, rng)] for a in arrays]
    n = len(names)
    cost = np.array([[len(sampled[i]) * len(sampled[j]) + CALL_PAIRS for j in range(n)]
                     for i in range(n)], dtype=np.float64)
    total, done = float(cost.sum()), 0.0
    matrix = np.zeros((n, n))
    delta: dict[tuple[int, int], np.ndarray] = {}
    for i in range(n):
        for j in range(n):
            inner = None
            if progress is not None:
                cols = len(sampled[j])

                def inner(rows, _rows_total, base=done, cols=cols):
                    progress(base + rows * cols, total)
            dh = np.asarray(delta_entropy(sampled[i], sampled[j], hs[j], progress=inner,
                                          **kernel_kw), dtype=np.float64)
            matrix[i, j] = float(np.mean(dh <= 0))
            if keep_delta:
                delta[(i, j)] = dh.astype(np.float32)
            done += cost[i, j]
            if progress is not None:
                progress(done, total)
    return OverlapMatrix(names=names, matrix=matrix, bandwidths=hs,
                         sizes={name: len(s) for name, s in zip(names, sampled, strict=True)},
                         delta=delta)
