"""Periodic neighbour search: ghost atoms for the periodic axes plus a Cartesian cell list.

The approach works for any cell shape, per-axis periodicity (slabs, wires,
molecules) and cells smaller than the cutoff:

1. positions are wrapped into the cell along the periodic axes;
2. *ghost* images of atoms lying within ``cutoff`` of a periodic face are added
   (as many periodic repeats as the cell height requires), so every point that
   lies within ``cutoff`` of an atom is in the point cloud, images of the atom
   itself included;
3. the cloud is sorted into cubic bins of edge >= ``cutoff`` (counting sort),
   so the neighbours of an atom are in its own bin and the 26 around it.

Memory is O(N + ghosts); nothing is O(N^2).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from ase.geometry import complete_cell

from .errors import QuestsError

#: The first ``n_atoms`` points of the cloud are the atoms themselves.
#: Bins are never more numerous than this many per point (keeps sparse clouds cheap).
_MAX_BINS_PER_POINT = 8


def cell_heights(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of a (complete) cell, one per axis."""
    volume = abs(np.linalg.det(cell))
    heights = np.empty(3)
    for a in range(3):
        b, c = cell[(a + 1) % 3], cell[(a + 2) % 3]
        area = np.linalg.norm(np.cross(b, c))
        heights[a] = volume / area if area > 0 else 0.0
    return heights


def prepare_cell(cell, pbc, index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate the cell on periodic axes and complete it for fractional coordinates.

    Returns the completed cell and the pbc flags as a boolean array.
    """
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if not pbc.any():
        return cell, pbc
    if not np.all(np.isfinite(cell)):
        raise QuestsError("cell has NaN or Inf entries", index=index)
    for a in np.flatnonzero(pbc):
        if np.linalg.norm(cell[a]) < 1e-8:
            raise QuestsError(f"cell vector {a} has zero length on a periodic axis", index=index)
    full = complete_cell(cell)
    heights = cell_heights(full)
    if abs(np.linalg.det(full)) < 1e-8 or np.any(heights[pbc] < 1e-6):
        raise QuestsError("cell has zero volume on a periodic axis", index=index)
    return full, pbc


@nb.njit(cache=True)
def _ghost_cloud(frac, cell, pbc, reach, n_rep):
    """Wrapped atoms followed by the ghost images needed within ``reach`` (fractional)."""
    n = frac.shape[0]
    f = frac.copy()
    for i in range(n):
        for a in range(3):
            if pbc[a]:
                f[i, a] -= np.floor(f[i, a])
                if f[i, a] >= 1.0:
                    f[i, a] -= 1.0
    # count, then fill
    total = n
    for pass_ in range(2):
        if pass_ == 1:
            pts = np.empty((total, 3))
            src = np.empty(total, dtype=np.int64)
            for i in range(n):
                src[i] = i
                for c in range(3):
                    pts[i, c] = f[i, 0] * cell[0, c] + f[i, 1] * cell[1, c] + f[i, 2] * cell[2, c]
            total = n
        for sx in range(-n_rep[0], n_rep[0] + 1):
            for sy in range(-n_rep[1], n_rep[1] + 1):
                for sz in range(-n_rep[2], n_rep[2] + 1):
                    if sx == 0 and sy == 0 and sz == 0:
                        continue
                    for i in range(n):
                        gx = f[i, 0] + sx
                        gy = f[i, 1] + sy
                        gz = f[i, 2] + sz
                        if pbc[0] and (gx < -reach[0] or gx > 1.0 + reach[0]):
                            continue
                        if pbc[1] and (gy < -reach[1] or gy > 1.0 + reach[1]):
                            continue
                        if pbc[2] and (gz < -reach[2] or gz > 1.0 + reach[2]):
                            continue
                        if pass_ == 1:
                            src[total] = i
                            for c in range(3):
                                pts[total, c] = gx * cell[0, c] + gy * cell[1, c] + gz * cell[2, c]
                        total += 1
    return pts, src


@nb.njit(cache=True)
def _bin_cloud(pts, cutoff):
    """Counting sort of points into cubic bins of edge >= cutoff."""
    m = pts.shape[0]
    lo = np.empty(3)
    hi = np.empty(3)
    for c in range(3):
        lo[c] = pts[0, c]
        hi[c] = pts[0, c]
    for p in range(m):
        for c in range(3):
            v = pts[p, c]
            if v < lo[c]:
                lo[c] = v
            if v > hi[c]:
                hi[c] = v
    edge = cutoff
    nbins = np.empty(3, dtype=np.int64)
    while True:
        for c in range(3):
            nbins[c] = max(1, int(np.floor((hi[c] - lo[c]) / edge)) + 1)
        if nbins[0] * nbins[1] * nbins[2] <= _MAX_BINS_PER_POINT * m + 27:
            break
        edge *= 2.0
    nb_total = nbins[0] * nbins[1] * nbins[2]
    bin_of = np.empty(m, dtype=np.int64)
    start = np.zeros(nb_total + 1, dtype=np.int64)
    for p in range(m):
        bx = min(int((pts[p, 0] - lo[0]) / edge), nbins[0] - 1)
        by = min(int((pts[p, 1] - lo[1]) / edge), nbins[1] - 1)
        bz = min(int((pts[p, 2] - lo[2]) / edge), nbins[2] - 1)
        b = (bx * nbins[1] + by) * nbins[2] + bz
        bin_of[p] = b
        start[b + 1] += 1
    for b in range(nb_total):
        start[b + 1] += start[b]
    fill = start[:-1].copy()
    order = np.empty(m, dtype=np.int64)
    for p in range(m):
        b = bin_of[p]
        order[fill[b]] = p
        fill[b] += 1
    max_occ = 0
    for b in range(nb_total):
        occ = start[b + 1] - start[b]
        if occ > max_occ:
            max_occ = occ
    return lo, edge, nbins, start, order, max_occ


def neighbor_cloud(positions, cell, pbc, cutoff, index: int | None = None):
    """Build the ghost-padded point cloud and its cell list for one structure.

    Returns ``(pts, src, lo, edge, nbins, start, order, max_occ)``; the first
    ``len(positions)`` rows of ``pts`` are the (wrapped) atoms themselves and
    ``src`` maps every point to the atom it is an image of.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    full, pbc = prepare_cell(cell, pbc, index=index)
    if pbc.any():
        frac = np.linalg.solve(full.T, positions.T).T
        heights = cell_heights(full)
        reach = np.where(pbc, cutoff / np.where(heights > 0, heights, 1.0), 0.0)
        n_rep = np.where(pbc, np.ceil(reach).astype(np.int64), 0)
        pts, src = _ghost_cloud(
            np.ascontiguousarray(frac), np.ascontiguousarray(full), pbc, reach, n_rep
        )
    else:
        pts, src = positions.copy(), np.arange(len(positions), dtype=np.int64)
    lo, edge, nbins, start, order, max_occ = _bin_cloud(pts, float(cutoff))
    return pts, src, lo, edge, nbins, start, order, max_occ
