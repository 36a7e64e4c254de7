"""Approximate dH from the nearest reference environments only (SPEC section 2).

The kernel sum is restricted to the ``n_neighbors`` reference points returned
by an approximate nearest-neighbour index. A sum over a subset of positive
terms can only be smaller, so ``dH_approx >= dH_exact``: a positive
approximate dH is a conservative novelty flag.

The index is an inverted file (IVF): k-means cells over the reference set
(``scipy.cluster.vq.kmeans2``), and a query scans only the points of the
``n_probe`` cells whose centroids are nearest, with an exact top-m selection in
a Numba kernel (compiled once and cached on disk).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._validate import check_bandwidth, check_int, check_pair
from .entropy import DEFAULT_BANDWIDTH, _shape
from .settings import DEFAULTS
from .threads import thread_limit


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


@nb.njit(parallel=True, cache=True)
def _scan_cells(y, x, order, start, probes, m, out_idx, out_d2):
    """Exact top-m nearest points of ``x`` among the probed cells, for every row of y."""
    for i in nb.prange(y.shape[0]):
        best_d = np.full(m, np.inf)
        best_i = np.full(m, -1, dtype=np.int64)
        for pc in range(probes.shape[1]):
            cell = probes[i, pc]
            for q in range(start[cell], start[cell + 1]):
                p = order[q]
                d = 0.0
                for c in range(y.shape[1]):
                    diff = y[i, c] - x[p, c]
                    d += diff * diff
                if d < best_d[m - 1]:
                    pos = m - 1
                    while pos > 0 and best_d[pos - 1] > d:
                        best_d[pos] = best_d[pos - 1]
                        best_i[pos] = best_i[pos - 1]
                        pos -= 1
                    best_d[pos] = d
                    best_i[pos] = p
        for t in range(m):
            out_idx[i, t] = best_i[t]
            out_d2[i, t] = best_d[t]


class NeighborIndex:
    """Inverted-file nearest-neighbour index over reference descriptors (reusable).

    Parameters
    ----------
    x : (n, d) array
        Reference descriptors.
    n_cells : int, optional
        Number of k-means cells (default ``ceil(sqrt(n))``).
    n_probe : int, optional
        Cells scanned per query (default ``max(4, n_cells // 10)``); more is slower
        and closer to exact.
    seed : int
        Seed of the k-means initialisation (results are deterministic).
    """

    def __init__(self, x, n_cells: int | None = None, n_probe: int | None = None,
                 seed: int = DEFAULTS.seed):
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        n = len(self.x)
        n_cells = int(n_cells) if n_cells else max(1, math.ceil(math.sqrt(n)))
        n_cells = min(n_cells, n)
        if n_cells > 1:
            from scipy.cluster.vq import kmeans2  # imported here: 0.5 s off `import quests_core`

            rng = np.random.default_rng(seed)
            sample = self.x[rng.choice(n, size=min(n, 64 * n_cells), replace=False)]
            centroids, _ = kmeans2(sample, n_cells, iter=10, minit="++", seed=seed)
        else:
            centroids = self.x.mean(axis=0, keepdims=True)
        self.centroids = np.ascontiguousarray(centroids)
        labels = np.empty(n, dtype=np.int64)
        for i0 in range(0, n, 8192):
            labels[i0 : i0 + 8192] = _sq_dists(self.x[i0 : i0 + 8192], self.centroids).argmin(1)
        self.order = np.argsort(labels, kind="stable").astype(np.int64)
        self.start = np.zeros(len(self.centroids) + 1, dtype=np.int64)
        np.cumsum(np.bincount(labels, minlength=len(self.centroids)), out=self.start[1:])
        self.n_probe = min(len(self.centroids), int(n_probe) if n_probe else max(4, n_cells // 10))

    def query(self, y, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and exact squared distances of the (approximately) nearest references."""
        y = np.ascontiguousarray(y, dtype=np.float64)
        m = min(int(n_neighbors), len(self.x))
        dc = _sq_dists(y, self.centroids)
        dc[:, self.start[1:] == self.start[:-1]] = np.inf  # never probe an empty cell
        probes = np.argsort(dc, axis=1)[:, : self.n_probe]
        idx = np.empty((len(y), m), dtype=np.int64)
        d2 = np.empty((len(y), m))
        _scan_cells(y, self.x, self.order, self.start, np.ascontiguousarray(probes), m, idx, d2)
        return idx, d2


def approx_delta_entropy(
    y,
    x,
    h=DEFAULT_BANDWIDTH,
    n_neighbors: int = 5,
    *,
    index: NeighborIndex | None = None,
    n_probe: int | None = None,
    seed: int = DEFAULTS.seed,
    n_threads: int | None = None,
    batch_size: int = 65536,
):
    """dH of every test row from its ``n_neighbors`` nearest reference rows.

    Returns the same shape as :func:`quests_core.delta_entropy` and is never
    below it. Pass a prebuilt ``index`` (:class:`NeighborIndex`) to reuse it.
    """
    y, x = check_pair(y, x)
    harr, scalar = check_bandwidth(h)
    n_neighbors = check_int(n_neighbors, "n_neighbors")
    batch_size = check_int(batch_size, "batch_size")
    if n_probe is not None:
        n_probe = check_int(n_probe, "n_probe")
    with thread_limit(n_threads):
        if index is None:
            index = NeighborIndex(x, n_probe=n_probe, seed=seed)
        out = np.empty((len(y), len(harr)))
        inv2h2 = 1.0 / (2.0 * harr**2)
        for i0 in range(0, len(y), batch_size):
            _, d2 = index.query(y[i0 : i0 + batch_size], n_neighbors)
            found = np.isfinite(d2)  # cells may hold fewer than m points in all
            e = np.where(found[:, :, None], -d2[:, :, None] * inv2h2[None, None, :], -np.inf)
            top = e.max(axis=1)
            s = np.exp(e - top[:, None, :]).sum(axis=1)
            out[i0 : i0 + batch_size] = -(top + np.log(s))
    return _shape(out, scalar)


def warm_up() -> None:
    """Compile the cell scan (or load it from Numba's on-disk cache) on a few rows."""
    x = np.random.default_rng(0).random((16, 5))
    approx_delta_entropy(x[:4], x, n_neighbors=2)
