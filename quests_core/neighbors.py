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

Everything that could make the compiled kernels index out of bounds, overflow an
integer or run for hours is checked here in numpy before they run (one-line
:class:`QuestsError` naming the structure and the axis): finite coordinates and
cells, coordinates within :data:`COORDINATE_FACTOR` times the cutoff or the periodic
cell, a periodic cell with a nonzero height along every periodic axis, at most
:data:`MAX_ATOMS_PER_SPHERE` atoms per cutoff sphere, a bounded number of periodic
images, and cell-list sizes computed with Python integers.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from ase.geometry import complete_cell

from .errors import QuestsError

#: The first ``n_atoms`` points of the cloud are the atoms themselves.
#: Bins are never more numerous than this many per point (keeps sparse clouds cheap).
_MAX_BINS_PER_POINT = 8

AXES = "xyz"
VECTORS = "abc"
#: density limit: atoms within one cutoff sphere. Typical values are 40-400 (Cu at 5 Å:
#: 45; diamond at 12 Å: 1,300); the neighbour search costs about 6 distance evaluations
#: per atom in the sphere, so the limit keeps any accepted structure within ~1e5
#: evaluations per atom, while cells shrunk with their atoms or 1e4 atoms in a few Å^3
#: (1e5-1e20 per sphere) are refused at once.
MAX_ATOMS_PER_SPHERE = 10_000
#: coordinates must lie within this many times max(cutoff, longest periodic cell vector)
#: of the origin (5e6 Å at the default cutoff: float64 still resolves 1e-9 Å there), and
#: periodic cell vectors must be at most this many cutoffs long
COORDINATE_FACTOR = 1e6
#: periodic images: a cell thinner than the cutoff needs images of every atom
#: (a one-atom fcc cell at a 10 Å cutoff: ~1,200). Refused when the expected cloud is
#: larger than both this many points and ``_MAX_IMAGES_PER_ATOM`` times the atoms.
_MAX_IMAGE_POINTS = 2_000_000
_MAX_IMAGES_PER_ATOM = 32
#: distance evaluations of the neighbour search when the cloud is so sparse that the cell
#: list uses bins larger than the cutoff (far-apart groups of atoms): refused beyond
#: max(this, ``_MAX_EVALS_PER_ATOM`` per atom)
_MAX_EVALS = 10_000_000_000
_MAX_EVALS_PER_ATOM = 2_000
#: lengths (Å) below which a periodic cell vector or height counts as zero
_ZERO_LENGTH = 1e-8
_ZERO_HEIGHT = 1e-6


def _count(value: float) -> str:
    """A count for a message: 12,345 or 4.45e+19."""
    return f"{value:,.0f}" if value < 1e7 else f"{value:.3g}"


def _axes(idx) -> str:
    return ", ".join(AXES[int(a)] for a in idx)


def _vectors(idx) -> str:
    return ", ".join(VECTORS[int(a)] for a in idx)


def cell_heights(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of a (complete) cell, one per axis."""
    volume = abs(np.linalg.det(cell))
    heights = np.empty(3)
    for a in range(3):
        b, c = cell[(a + 1) % 3], cell[(a + 2) % 3]
        area = np.linalg.norm(np.cross(b, c))
        heights[a] = volume / area if area > 0 else 0.0
    return heights


def prepare_cell(
    cell, pbc, index: int | None = None, source: str | None = None, cutoff: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the cell on periodic axes and complete it for fractional coordinates.

    Returns the completed cell and the pbc flags as a boolean array. Vectors of
    non-periodic axes only serve as coordinate axes: when they are missing, not
    finite or degenerate they are replaced by the completion of the periodic ones.
    """

    def fail(message):
        return QuestsError(message, index=index, source=source)

    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    cell = np.array(cell, dtype=np.float64).reshape(3, 3)
    if not pbc.any():
        return cell, pbc
    per = np.flatnonzero(pbc)
    finite = np.isfinite(cell).all(axis=1)
    bad = [a for a in per if not finite[a]]
    if bad:
        raise fail(
            f"cell vector {VECTORS[bad[0]]} has NaN or Inf entries on periodic axis "
            f"{AXES[bad[0]]}"
        )
    lengths = np.linalg.norm(cell, axis=1)
    if np.all(lengths[per] < _ZERO_LENGTH) and np.all(lengths[finite] < _ZERO_LENGTH):
        raise fail(
            f"periodic along {_axes(per)} but the structure has no cell "
            f"(cell vector{'s' if len(per) > 1 else ''} {_vectors(per)} of zero length)"
        )
    for a in per:
        if lengths[a] < _ZERO_LENGTH:
            raise fail(f"cell vector {VECTORS[a]} has zero length on periodic axis {AXES[a]}")
    if cutoff is not None and lengths[per].max() > COORDINATE_FACTOR * cutoff:
        a = per[int(np.argmax(lengths[per]))]
        raise fail(
            f"cell vector {VECTORS[a]} on periodic axis {AXES[a]} is {lengths[a]:.3g} Å long, "
            f"beyond the limit of {COORDINATE_FACTOR * cutoff:.3g} Å "
            f"({COORDINATE_FACTOR:g} × the cutoff)"
        )
    work = cell.copy()
    work[~pbc & ~finite] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        full = complete_cell(work)
        if not abs(np.linalg.det(full)) >= 1e-8 and not pbc.all():
            # a non-periodic vector in the plane of the periodic ones: replace it
            work[~pbc] = 0.0
            full = complete_cell(work)
        heights = np.nan_to_num(cell_heights(full), nan=0.0)
    flat = [a for a in per if not heights[a] >= _ZERO_HEIGHT]
    if flat:
        raise fail(
            f"cell has zero volume: height {heights[flat[0]]:.3g} Å along periodic axis "
            f"{_axes(flat)} (cell vectors {_vectors(range(3) if pbc.all() else per)} "
            "are coplanar or collinear)"
        )
    return full, pbc


def check_positions(
    positions: np.ndarray, scale: float, index: int | None = None, source: str | None = None
) -> None:
    """Finite coordinates within ``COORDINATE_FACTOR * scale`` Å (two reductions, no copy)."""
    lo, hi = float(positions.min()), float(positions.max())
    if np.isfinite(lo) and np.isfinite(hi) and max(-lo, hi) <= COORDINATE_FACTOR * scale:
        return
    finite = np.isfinite(positions)
    if not finite.all():
        atom, axis = (int(v) for v in np.argwhere(~finite)[0])
        raise QuestsError(
            f"atom {atom} has NaN or Inf position ({AXES[axis]} = {positions[atom, axis]})",
            index=index, source=source,
        )
    atom, axis = (int(v) for v in np.unravel_index(np.argmax(np.abs(positions)), positions.shape))
    raise QuestsError(
        f"atom {atom} has coordinate {AXES[axis]} = {positions[atom, axis]:.3g} Å, beyond the "
        f"limit of ±{COORDINATE_FACTOR * scale:.3g} Å ({COORDINATE_FACTOR:g} × max(cutoff, "
        "periodic cell size)): coordinates absurdly far away",
        index=index, source=source,
    )


def _density_error(per_sphere, detail, cutoff, index, source):
    return QuestsError(
        f"about {_count(per_sphere)} atoms per cutoff sphere ({detail}, cutoff {cutoff:g} Å); "
        f"the limit is {MAX_ATOMS_PER_SPHERE:,}: atoms packed far too densely (a cell "
        "shrunk with its atoms, coordinates in the wrong unit?) or a cutoff far too large",
        index=index, source=source,
    )


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
def _bin_cloud(pts, lo, edge, nbins):
    """Counting sort of points into the ``nbins`` cubic bins of edge ``edge`` from ``lo``.

    ``lo`` is the cloud's minimum and ``nbins`` covers its extent (see
    :func:`_bin_geometry`), so every bin index lies in range.
    """
    m = pts.shape[0]
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
    return start, order, max_occ


def _bin_geometry(pts: np.ndarray, cutoff: float) -> tuple[np.ndarray, float, np.ndarray]:
    """``(lo, edge, nbins)`` of the cell list: cubic bins of edge >= cutoff, at most
    ``_MAX_BINS_PER_POINT`` per point (+27), sizes in Python integers (no overflow)."""
    lo = pts.min(axis=0)
    span = pts.max(axis=0) - lo
    limit = _MAX_BINS_PER_POINT * len(pts) + 27
    edge = float(cutoff)
    while True:
        counts = [max(1, int(np.floor(float(s) / edge)) + 1) for s in span]
        if counts[0] * counts[1] * counts[2] <= limit:
            break
        edge *= 2.0
    return np.ascontiguousarray(lo), edge, np.array(counts, dtype=np.int64)


def _check_lattice(full, pbc, cutoff, index, source):
    """The periodic images of one atom alone within its cutoff sphere must be within the
    density limit: at least ``2 rc / |a|`` for the shortest periodic vector ``a`` (a
    needle-thin cell), and about ``pi rc^2 / |a x b|`` over a periodic face (slabs)."""
    per = np.flatnonzero(pbc)
    lengths = np.linalg.norm(full[per], axis=1)
    shortest = per[int(np.argmin(lengths))]
    images = 2.0 * cutoff / float(lengths.min())
    what = f"cell vector {VECTORS[shortest]} is {float(lengths.min()):.3g} Å long"
    if len(per) == 2:
        area = float(np.linalg.norm(np.cross(full[per[0]], full[per[1]])))
        if np.pi * cutoff**2 / area > images:
            images = np.pi * cutoff**2 / area
            what = f"periodic cell face {_vectors(per)} is {area:.3g} Å^2"
    if images > MAX_ATOMS_PER_SPHERE:
        raise _density_error(
            images, f"periodic images of each atom alone: {what}", cutoff, index, source
        )


def _check_images(n, reach, pbc, cutoff, heights, index, source):
    """Refuse a cell so thin for the cutoff that the periodic images would not fit."""
    expected = float(n) * float(np.prod(np.where(pbc, 1.0 + 2.0 * reach, 1.0)))
    if expected <= max(_MAX_IMAGE_POINTS, _MAX_IMAGES_PER_ATOM * n):
        return
    per = np.flatnonzero(pbc)
    a = per[int(np.argmin(heights[per]))]
    raise QuestsError(
        f"periodic cell too thin for the cutoff: {cutoff:g} Å is {reach[a]:.3g} cell heights "
        f"along periodic axis {AXES[a]} (height {heights[a]:.3g} Å); the neighbour search "
        f"would need about {expected:.3g} periodic images (limit "
        f"{max(_MAX_IMAGE_POINTS, _MAX_IMAGES_PER_ATOM * n):.3g})",
        index=index, source=source,
    )


def _max_cube_count(pts: np.ndarray, lo: np.ndarray, edge: float) -> int:
    """Most points in one cube of a grid of edge ``edge`` from ``lo`` (sort, no dense grid)."""
    keys = np.floor((pts - lo) / edge).astype(np.int64)
    ranges = [int(v) + 1 for v in keys.max(axis=0)]
    if ranges[0] * ranges[1] * ranges[2] < 2**62:
        flat = np.sort((keys[:, 0] * ranges[1] + keys[:, 1]) * ranges[2] + keys[:, 2])
        change = np.flatnonzero(flat[1:] != flat[:-1])
    else:
        order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))
        sk = keys[order]
        change = np.flatnonzero(np.any(sk[1:] != sk[:-1], axis=1))
    bounds = np.concatenate([[-1], change, [len(pts) - 1]])
    return int(np.diff(bounds).max())


def _box_totals(counts: np.ndarray, nbins: np.ndarray) -> np.ndarray:
    """Points in each bin and the 26 around it (the points an atom of that bin scans)."""
    occ = counts.reshape(tuple(int(v) for v in nbins))
    box = np.pad(occ, 1)
    total = np.zeros_like(occ)
    sx, sy, sz = occ.shape
    for dx in range(3):
        for dy in range(3):
            for dz in range(3):
                total += box[dx : dx + sx, dy : dy + sy, dz : dz + sz]
    return total


def _check_local_density(pts, n_atoms, lo, edge, nbins, start, max_occ, cutoff, index, source):
    """Refuse clouds whose densest region holds too many atoms per cutoff sphere, or
    whose neighbour search would take too many distance evaluations."""
    sphere = 4.0 / 3.0 * np.pi
    if edge == cutoff:
        if max_occ * sphere <= MAX_ATOMS_PER_SPHERE:
            return
        # a cube holding max_occ atoms suggests max_occ * 4.19 per sphere, but the atoms in
        # range of any atom are never more than those of the 27 cubes around it (a compact
        # cluster smaller than one cube: all its atoms, not 4.19 times as many)
        counts = np.diff(start)
        per_sphere = min(max_occ * sphere, float(_box_totals(counts, nbins).max()))
        if per_sphere <= MAX_ATOMS_PER_SPHERE:
            return
        b = np.unravel_index(int(np.argmax(counts)), tuple(int(v) for v in nbins))
        corner = lo + np.asarray(b) * edge
        raise _density_error(
            per_sphere,
            f"{max_occ:,} atoms in a cube of {edge:g} Å at ({corner[0]:.4g}, {corner[1]:.4g}, "
            f"{corner[2]:.4g}) Å",
            cutoff, index, source,
        )
    # sparse cloud, bins larger than the cutoff: count at the cutoff's resolution
    if max_occ * sphere > MAX_ATOMS_PER_SPHERE:
        top = _max_cube_count(pts, lo, cutoff)
        if top * sphere > MAX_ATOMS_PER_SPHERE:
            raise _density_error(
                top * sphere, f"{top:,} atoms in one cube of {cutoff:g} Å", cutoff, index, source
            )
    # distance evaluations: every atom scans its bin and the 26 around it
    total = _box_totals(np.diff(start), nbins)
    atom_bins = np.minimum(((pts[:n_atoms] - lo) / edge).astype(np.int64), nbins - 1)
    evals = int(total[atom_bins[:, 0], atom_bins[:, 1], atom_bins[:, 2]].sum())
    limit = max(_MAX_EVALS, _MAX_EVALS_PER_ATOM * n_atoms)
    if evals > limit:
        raise QuestsError(
            f"atoms spread over {float(np.max(pts.max(axis=0) - lo)):.3g} Å in dense groups far "
            f"apart: the neighbour search would need {evals:.3g} distance evaluations "
            f"(limit {limit:.3g}); split the structure or check its coordinates",
            index=index, source=source,
        )


def neighbor_cloud(positions, cell, pbc, cutoff, index: int | None = None, source=None):
    """Build the ghost-padded point cloud and its cell list for one structure.

    Returns ``(pts, src, lo, edge, nbins, start, order, max_occ)``; the first
    ``len(positions)`` rows of ``pts`` are the (wrapped) atoms themselves and
    ``src`` maps every point to the atom it is an image of.

    Raises :class:`QuestsError` (naming the structure and the axis) for input the
    kernels must not see: see the module docstring.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cutoff = float(cutoff)
    n = len(positions)
    full, pbc = prepare_cell(cell, pbc, index=index, source=source, cutoff=cutoff)
    scale = cutoff
    if pbc.any():
        scale = max(scale, float(np.linalg.norm(full[pbc], axis=1).max()))
    check_positions(positions, scale, index=index, source=source)
    if pbc.any():
        heights = cell_heights(full)
        if pbc.all():
            volume = abs(float(np.linalg.det(full)))
            per_sphere = n / volume * 4.0 / 3.0 * np.pi * cutoff**3
            if per_sphere > MAX_ATOMS_PER_SPHERE:
                raise _density_error(
                    per_sphere, f"{n:,} atoms in a periodic cell of {volume:.3g} Å^3",
                    cutoff, index, source,
                )
        _check_lattice(full, pbc, cutoff, index, source)
        reach = np.where(pbc, cutoff / np.where(heights > 0, heights, 1.0), 0.0)
        _check_images(n, reach, pbc, cutoff, heights, index, source)
        frac = np.linalg.solve(full.T, positions.T).T
        n_rep = np.where(pbc, np.ceil(reach).astype(np.int64), 0)
        pts, src = _ghost_cloud(
            np.ascontiguousarray(frac), np.ascontiguousarray(full), pbc, reach, n_rep
        )
    else:
        pts, src = positions.copy(), np.arange(n, dtype=np.int64)
    lo, edge, nbins = _bin_geometry(pts, cutoff)
    start, order, max_occ = _bin_cloud(pts, lo, edge, nbins)
    _check_local_density(pts, n, lo, edge, nbins, start, max_occ, cutoff, index, source)
    return pts, src, lo, edge, nbins, start, order, max_occ
