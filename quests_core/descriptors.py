"""QUESTS descriptors of atomic environments (SPEC section 1), computed with Numba.

For atom *i* with neighbours sorted by distance ``r_1 <= ... <= r_k``:

* ``X1 = [w(r_j) / r_j]`` with the smooth cutoff ``w(r) = (1 - (r/r_c)^2)^2``;
* ``X2[t] = (1/k) sum_j (t-th largest of row j of C)``, ``C_jl = sqrt(w_j w_l) / r_jl``.

Only neighbours within the cutoff contribute (``w`` vanishes beyond it), so the
neighbour search stops at ``r_c`` and missing neighbours are zeros.

Column layout
-------------
Single component: ``[X1 (k), X2 (k - 1)]``, width ``2k - 1``.  Multicomponent
(``n >= 2`` species ``s_1 < ... < s_n``, sorted): the layout of the reference
package ``quests``, all X1 blocks first, then all X2 blocks::

    [X1_all, X1_s1, ..., X1_sn, X2_all, X2_s1, ..., X2_sn]

``*_all`` is computed on the whole structure, ``*_s`` on the sub-structure of
species ``s`` (zeros in the rows of atoms of other species).  Width
``(n + 1)(2k - 1)``; :func:`block_columns` gives the columns of each block.
:data:`DESCRIPTOR_VERSION` changes whenever values or layout change (cache keys
include it); :data:`LAYOUT` names the block order in descriptor files.

Memory: a frame's neighbour clouds plus the rows asked for (see
:class:`FrameDescriptors`).
"""

from __future__ import annotations

import functools

import numba as nb
import numpy as np

from ._validate import as_structure_list, check_k_cutoff
from .errors import QuestsError
from .neighbors import neighbor_cloud
from .settings import DEFAULTS
from .threads import thread_limit

DEFAULT_K = DEFAULTS.k
DEFAULT_CUTOFF = DEFAULTS.cutoff
#: version of the descriptor's values and column layout (part of every cache key);
#: "2": multicomponent columns in the reference layout (was: one [X1, X2] per block)
DESCRIPTOR_VERSION = "2"
#: block order of the multicomponent descriptor, as recorded in descriptor files
LAYOUT = "reference: [X1_all, X1_s..., X2_all, X2_s...]"
EPS = 1e-15
#: atoms per parallel work item (scratch buffers are allocated once per chunk)
_CHUNK = 64


def descriptor_width(k: int = DEFAULT_K, n_species: int = 0) -> int:
    """Number of columns of the descriptor: ``(n_species + 1) * (2k - 1)`` if multicomponent."""
    blocks = 1 if n_species <= 1 else n_species + 1
    return blocks * (2 * k - 1)


def block_columns(k: int, n_species: int, block: int) -> tuple[slice, slice]:
    """Columns ``(X1, X2)`` of one block of the descriptor.

    Parameters
    ----------
    k : int
        Number of neighbours.
    n_species : int
        Number of species of the multicomponent descriptor (0 or 1: single component).
    block : int
        0 for the whole structure, ``b >= 1`` for the ``b``-th species (sorted order).

    Returns
    -------
    tuple of slice
        Columns of ``X1`` (``k`` wide) and ``X2`` (``k - 1`` wide) of that block.
    """
    blocks = 1 if n_species <= 1 else n_species + 1
    if not 0 <= block < blocks:
        raise QuestsError(f"block {block} out of range for {blocks} block(s)")
    x2 = blocks * k
    return (
        slice(block * k, (block + 1) * k),
        slice(x2 + block * (k - 1), x2 + (block + 1) * (k - 1)),
    )


def _merge_sort_network(n: int) -> np.ndarray:
    """Comparators of Batcher's odd-even merge sort for ``n`` (a power of two) keys."""
    pairs = []
    p = 1
    while p < n:
        step = p
        while step >= 1:
            for j in range(step % p, n - step, 2 * step):
                for i in range(min(step, n - j - step)):
                    if (i + j) // (2 * p) == (i + j + step) // (2 * p):
                        pairs.append((i + j, i + j + step))
            step //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@functools.lru_cache(maxsize=16)
def _network_for(k: int) -> tuple[int, np.ndarray]:
    size = 1
    while size < k:
        size *= 2
    return size, _merge_sort_network(size)


@nb.njit(cache=True, parallel=True, fastmath={"nnan", "ninf", "nsz"})
def _descriptor_kernel(
    pts, first, lo, edge, nbins, start, order, k, cutoff, eps, size, network, out
):
    # atoms first .. first + len(out) - 1 of the cloud; row i - first of out
    rc2 = cutoff * cutoff
    n_atoms = out.shape[0]
    n_chunks = (n_atoms + _CHUNK - 1) // _CHUNK
    n_comp = network.shape[0]
    for ch in nb.prange(n_chunks):
        # the k nearest candidates so far, sorted by (squared distance, index): memory
        # O(k) and work O(k) per candidate whatever the number of atoms in range
        top_d2 = np.empty(k)
        top_idx = np.empty(k, dtype=np.int64)
        vx = np.empty(k)
        vy = np.empty(k)
        vz = np.empty(k)
        r = np.empty(k)
        s = np.empty(k)
        # C is symmetric, so column j of cmat is row j of C and one comparator of the
        # sorting network acts on contiguous memory for all rows at once (SIMD)
        cmat = np.zeros((max(size, k), max(size, k)))
        i0 = first + ch * _CHUNK
        i1 = min(i0 + _CHUNK, first + n_atoms)
        for i in range(i0, i1):
            row = i - first
            px = pts[i, 0]
            py = pts[i, 1]
            pz = pts[i, 2]
            bx = min(int((px - lo[0]) / edge), nbins[0] - 1)
            by = min(int((py - lo[1]) / edge), nbins[1] - 1)
            bz = min(int((pz - lo[2]) / edge), nbins[2] - 1)
            nc = 0
            for ix in range(max(bx - 1, 0), min(bx + 2, nbins[0])):
                for iy in range(max(by - 1, 0), min(by + 2, nbins[1])):
                    for iz in range(max(bz - 1, 0), min(bz + 2, nbins[2])):
                        b = (ix * nbins[1] + iy) * nbins[2] + iz
                        for q in range(start[b], start[b + 1]):
                            p = order[q]
                            if p == i:
                                continue
                            dx = pts[p, 0] - px
                            dy = pts[p, 1] - py
                            dz = pts[p, 2] - pz
                            d2 = dx * dx + dy * dy + dz * dz
                            if d2 >= rc2:
                                continue
                            # insert (d2, p) into the sorted top-k list (ties by index)
                            if nc < k:
                                t = nc - 1
                                nc += 1
                            elif d2 < top_d2[k - 1] or (d2 == top_d2[k - 1] and p < top_idx[k - 1]):
                                t = k - 2  # the last entry drops out
                            else:
                                continue
                            while t >= 0 and (
                                top_d2[t] > d2 or (top_d2[t] == d2 and top_idx[t] > p)
                            ):
                                top_d2[t + 1] = top_d2[t]
                                top_idx[t + 1] = top_idx[t]
                                t -= 1
                            top_d2[t + 1] = d2
                            top_idx[t + 1] = p
            m = nc
            for j in range(m):
                p = top_idx[j]
                vx[j] = pts[p, 0] - px
                vy[j] = pts[p, 1] - py
                vz[j] = pts[p, 2] - pz
                r[j] = np.sqrt(top_d2[j])
                z = r[j] / cutoff
                s[j] = 1.0 - z * z  # sqrt(w)
            # X1, largest first (neighbours are sorted by distance)
            for j in range(k):
                out[row, j] = s[j] * s[j] / (r[j] + eps) if j < m else 0.0
            # cross terms C_jl = sqrt(w_j w_l) / r_jl; zero diagonal, zero padding
            for j in range(m):
                for l in range(m):
                    dx = vx[j] - vx[l]
                    dy = vy[j] - vy[l]
                    dz = vz[j] - vz[l]
                    c = s[j] * s[l] / (np.sqrt(dx * dx + dy * dy + dz * dz) + eps)
                    cmat[j, l] = c if l != j else 0.0
            for l in range(m, size):
                for j in range(m):
                    cmat[l, j] = 0.0
            # sort every row of C descending (entries are >= 0, so padding stays last)
            for c_ in range(n_comp):
                a = network[c_, 0]
                b = network[c_, 1]
                for j in range(m):
                    u = cmat[a, j]
                    v = cmat[b, j]
                    cmat[a, j] = max(u, v)
                    cmat[b, j] = min(u, v)
            # X2[t]: mean over the k rows of the t-th largest (rows beyond m are zero)
            for t in range(k - 1):
                acc = 0.0
                for j in range(m):
                    acc += cmat[t, j]
                out[row, k + t] = acc / k


class _Cloud:
    """The neighbour cloud of one set of positions, built once, queried in atom blocks."""

    def __init__(self, atoms, k, cutoff, index, source=None):
        pos = np.asarray(atoms.positions, dtype=np.float64)
        if pos.shape[0] == 0:
            raise QuestsError("structure has zero atoms", index=index, source=source)
        self.n_atoms = pos.shape[0]
        self.k, self.cutoff = k, cutoff
        # every bound the kernels rely on is checked in there (QuestsError otherwise)
        pts, _src, lo, edge, nbins, start, order, _max_occ = neighbor_cloud(
            pos, atoms.cell.array, atoms.pbc, cutoff, index=index, source=source
        )
        self._pts = pts
        self._grid = (lo, edge, nbins, start, order)

    def rows(self, a0: int, a1: int) -> np.ndarray:
        """Descriptors of atoms ``a0 .. a1 - 1`` (float64)."""
        a0, a1 = max(0, int(a0)), min(int(a1), self.n_atoms)
        out = np.empty((max(a1 - a0, 0), 2 * self.k - 1))
        if a1 > a0:
            size, network = _network_for(self.k)
            lo, edge, nbins, start, order = self._grid
            _descriptor_kernel(
                self._pts, a0, lo, edge, nbins, start, order, self.k, self.cutoff,
                EPS, size, network, out,
            )
        return out


class FrameDescriptors:
    """Descriptors of one ``ase.Atoms``, computed block by block of atoms.

    The neighbour clouds (one, plus one per species for the multicomponent
    descriptor) are built once; :meth:`rows` then computes any range of atoms.
    Peak memory is the clouds plus the block asked for, so a frame of tens of
    millions of atoms never needs all its descriptors at once.
    """

    def __init__(
        self, atoms, k=DEFAULT_K, cutoff=DEFAULT_CUTOFF, species=(), index=None, source=None
    ):
        k, cutoff = check_k_cutoff(k, cutoff)
        self.n_atoms = len(atoms)
        self.width = descriptor_width(k, len(species))
        self._plain = _Cloud(atoms, k, cutoff, index, source)
        self._species: list[tuple[np.ndarray, np.ndarray, _Cloud | None]] = []
        if len(species) > 1:
            symbols = np.asarray(atoms.get_chemical_symbols())
            unknown = sorted(str(s) for s in set(symbols) - set(species))
            if unknown:
                raise QuestsError(
                    f"species {unknown} not in the species list {species}",
                    index=index, source=source,
                )
            for sp in species:
                mask = symbols == sp
                # sub-structure row of each atom: the species' atoms keep their order
                before = np.concatenate([[0], np.cumsum(mask)])
                cloud = _Cloud(atoms[mask], k, cutoff, index, source) if mask.any() else None
                self._species.append((mask, before, cloud))

    def rows(self, a0: int = 0, a1: int | None = None) -> np.ndarray:
        """Descriptors of atoms ``a0 .. a1 - 1`` (float64, ``(a1 - a0, width)``)."""
        a1 = self.n_atoms if a1 is None else min(int(a1), self.n_atoms)
        plain = self._plain.rows(a0, a1)
        if not self._species:
            return plain
        out = np.zeros((a1 - a0, self.width))
        k, n = self._plain.k, len(self._species)
        c1, c2 = block_columns(k, n, 0)
        out[:, c1] = plain[:, :k]
        out[:, c2] = plain[:, k:]
        for b, (mask, before, cloud) in enumerate(self._species, start=1):
            if cloud is not None and before[a1] > before[a0]:
                part = cloud.rows(before[a0], before[a1])
                rows = np.flatnonzero(mask[a0:a1])
                c1, c2 = block_columns(k, n, b)
                out[rows, c1] = part[:, :k]
                out[rows, c2] = part[:, k:]
        return out


def _species_list(structs, species) -> list[str]:
    if species is None:
        return []
    if isinstance(species, str):
        species = [species]
    try:
        species = sorted({s if isinstance(s, str) else str(s) for s in species})
    except TypeError:
        raise QuestsError(
            f"species must be a list of element symbols, got {type(species).__name__}"
        ) from None
    if not species:
        raise QuestsError("species list is empty")
    return species


def structure_descriptors(
    atoms, k=DEFAULT_K, cutoff=DEFAULT_CUTOFF, species=(), index=None, source=None
):
    """Descriptors of one ``ase.Atoms`` (float64), multicomponent when ``species`` is given."""
    return FrameDescriptors(atoms, k, cutoff, species, index, source).rows()


def descriptors(
    structures,
    k: int = DEFAULT_K,
    cutoff: float = DEFAULT_CUTOFF,
    species=None,
    dtype=np.float64,
    n_threads: int | None = None,
    progress=None,
    source: str | None = None,
    indices=None,
) -> np.ndarray:
    """QUESTS descriptors of every atom of ``structures``.

    Parameters
    ----------
    structures : ase.Atoms or iterable of ase.Atoms
        Periodicity per axis follows ``atoms.pbc``; any cell shape is accepted.
    k : int
        Number of nearest neighbours (default 32).
    cutoff : float
        Cutoff radius in Å (default 5.0).
    species : list of str, optional
        Multicomponent descriptor (two or more species), in the reference layout
        ``[X1_all, X1_s..., X2_all, X2_s...]``: the plain descriptor's X1 and X2
        blocks, each followed by one block per species (sorted) computed on that
        species' sub-structure (zeros for other atoms); see :func:`block_columns`.
    dtype : numpy dtype
        Output dtype; the computation itself is float64.
    n_threads : int, optional
        Numba threads for this call (default: the current setting).
    progress : callable, optional
        Called as ``progress(done_structures, total_structures)`` after each structure.
    source : str, optional
        File the structures come from; error messages name it.
    indices : sequence of int, optional
        Number of each structure in ``source`` (e.g. its frame), used in error
        messages instead of its position in ``structures``.

    Returns
    -------
    numpy.ndarray
        ``(total atoms, 2k - 1)``, or ``(total atoms, (n_species + 1)(2k - 1))``.
    """
    k, cutoff = check_k_cutoff(k, cutoff)
    structs = as_structure_list(structures)
    if indices is not None:
        indices = [int(i) for i in indices]
        if len(indices) != len(structs):
            raise QuestsError(
                f"indices has {len(indices)} entries for {len(structs)} structures",
                source=source,
            )
    species = _species_list(structs, species)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise QuestsError(f"dtype must be a floating-point dtype, got {dtype!r}") from None
    if dtype.kind != "f":
        raise QuestsError(f"dtype must be a floating-point dtype, got {dtype}")
    total = sum(len(a) for a in structs)
    out = np.empty((total, descriptor_width(k, len(species))), dtype=dtype)
    row = 0
    with thread_limit(n_threads):
        for idx, atoms in enumerate(structs):
            name = idx if indices is None else indices[idx]
            d = structure_descriptors(atoms, k, cutoff, species, index=name, source=source)
            out[row : row + len(d)] = d
            row += len(d)
            if progress is not None:
                progress(idx + 1, len(structs))
    return out


def warm_up() -> None:
    """Compile the neighbour search and descriptor kernels (or load them from Numba's
    on-disk cache) on a periodic crystal, a slab and a molecule of a few atoms.

    The kernels see the same argument types whatever the structure, so the first real
    call finds the machine code ready (about 6 s on 2 cores when nothing is cached).
    """
    from ase import Atoms

    a = 3.61
    cube = Atoms("Cu4", scaled_positions=[(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)],
                 cell=[a, a, a], pbc=True)
    slab = cube.copy()
    slab.pbc = (True, True, False)
    molecule = Atoms("CuCu", positions=[(0, 0, 0), (0, 0, 2.5)])
    descriptors([cube, slab, molecule], k=4, cutoff=3.0)
    descriptors(cube, k=4, cutoff=3.0, species=["Cu"])
