"""Solid-like clusters of a trajectory: neighbour pairs, graph components, size distribution.

What it holds
-------------
- :func:`neighbor_pairs`: pairs of points closer than a cutoff under the
  minimum image convention (k-d tree for orthorhombic or open cells, ASE's
  binned list for any cell).
- :func:`connected_component_sets`, :func:`biconnected_component_sets`: the
  components of an undirected graph.
- :class:`Clusters`, :func:`find_clusters`, :func:`atoms_clusters`: clusters
  of the atoms of one frame selected by a mask.
- :func:`solid_like_delta_entropy`: dH(X | X_solid) of every atom of every
  frame (the only call into the numerical core).
- :class:`TrajectoryClusters`, :func:`trajectory_clusters`: clusters of every
  frame.
- :class:`SizeDistribution`, :func:`cluster_size_distribution`: cluster sizes
  pooled over chosen frames.

Method (SPEC section 3): atoms whose environment is covered by a solid
reference, dH(X | X_solid) <= 0, are *solid-like*. Solid-like atoms closer
than ``cutoff`` (3.0 Å, minimum image) are joined by an edge; clusters are the
connected components of that graph, or its biconnected (2-connected)
components.

Invariants
----------
- Pairs are unique ``(i, j)`` with ``i < j``, sorted lexicographically; two
  atoms are paired when any periodic image of one lies strictly within the
  cutoff of the other, whatever the cell shape.
- Cluster ids are ranked by size: 0 is the largest cluster (ties by lowest
  atom index); atoms that are not selected have id -1. Every selected atom
  has an id (isolated atoms are clusters of size one).
- ``TrajectoryClusters.largest[f] <= TrajectoryClusters.n_solid[f]``.
- Everything is a pure function of numpy arrays or :class:`ase.Atoms`; lengths
  in Å.

Memory bounds
-------------
One frame at a time: O(n_atoms + n_pairs) for the pairs and the sparse graph
of a frame; :class:`TrajectoryClusters` keeps one int64 label per atom of
every frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from quests_core.errors import QuestsError
from quests_core.settings import DEFAULTS

DEFAULT_CLUSTER_CUTOFF = 3.0  # Å
CLUSTER_METHODS = ("connected", "biconnected")


# ---------------------------------------------------------------------------
# Neighbour pairs under the minimum image convention
# ---------------------------------------------------------------------------


def _is_orthorhombic(cell: np.ndarray, tol: float = 1e-10) -> bool:
    scale = max(float(np.abs(cell).max()), 1.0)
    off = cell - np.diag(np.diag(cell))
    return bool(np.all(np.abs(off) <= tol * scale) and np.all(np.diag(cell) > 0))


def neighbor_pairs(
    positions: np.ndarray,
    cell: np.ndarray | None = None,
    pbc: Sequence[bool] | bool = False,
    cutoff: float = DEFAULT_CLUSTER_CUTOFF,
    *,
    method: str = "auto",
) -> np.ndarray:
    """Pairs of points closer than ``cutoff`` under the minimum image convention.

    Parameters
    ----------
    positions : (n, 3) array
        Cartesian positions in Å.
    cell : (3, 3) array or None
        Cell vectors as rows (ASE convention). Ignored on axes without ``pbc``.
    pbc : bool or three bools
        Periodicity per axis.
    cutoff : float
        Distance below which two points are joined (strictly less than).
    method : {"auto", "kdtree", "general"}
        ``"kdtree"`` uses :class:`scipy.spatial.cKDTree` (with ``boxsize`` for a
        fully periodic orthorhombic cell), ``"general"`` uses ASE's binned
        neighbour list, valid for any cell shape and any ``pbc``. ``"auto"``
        picks the k-d tree where it applies.

    Returns
    -------
    (m, 2) int64 array
        Unique pairs ``(i, j)`` with ``i < j``, sorted lexicographically. Two
        points are paired when any periodic image of one lies within ``cutoff``
        of the other.
    """
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise QuestsError(f"positions must have shape (n, 3), got {pos.shape}")
    if not cutoff > 0:
        raise QuestsError(f"cluster cutoff must be positive, got {cutoff}")
    n = len(pos)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    pbc_arr = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    cell_arr = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=float).reshape(3, 3)
    if pbc_arr.any():
        periodic_vectors = cell_arr[pbc_arr]
        if np.any(np.linalg.norm(periodic_vectors, axis=1) == 0):
            raise QuestsError("periodic axis with a zero-length cell vector")
        if pbc_arr.all() and abs(np.linalg.det(cell_arr)) < 1e-12:
            raise QuestsError("periodic cell has zero volume")

    kdtree_ok = (not pbc_arr.any()) or (pbc_arr.all() and _is_orthorhombic(cell_arr))
    if method == "auto":
        method = "kdtree" if kdtree_ok else "general"
    if method == "kdtree":
        if not kdtree_ok:
            raise QuestsError("the k-d tree path needs an orthorhombic fully periodic cell")
        pairs = _pairs_kdtree(pos, cell_arr, pbc_arr, cutoff)
    elif method == "general":
        pairs = _pairs_general(pos, cell_arr, pbc_arr, cutoff)
    else:
        raise QuestsError(f"unknown neighbour method {method!r}")
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order]


def _pairs_kdtree(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> np.ndarray:
    if pbc.all():
        box = np.diag(cell).copy()
        wrapped = np.mod(pos, box)
        wrapped[wrapped >= box] = 0.0  # np.mod can return box itself for tiny negatives
        tree = cKDTree(wrapped, boxsize=box)
        pairs = tree.query_pairs(cutoff, output_type="ndarray")
        d = wrapped[pairs[:, 1]] - wrapped[pairs[:, 0]]
        d -= box * np.round(d / box)
    else:
        tree = cKDTree(pos)
        pairs = tree.query_pairs(cutoff, output_type="ndarray")
        d = pos[pairs[:, 1]] - pos[pairs[:, 0]]
    keep = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    pairs = pairs[keep].astype(np.int64)
    return np.sort(pairs, axis=1)


def _pairs_general(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> np.ndarray:
    from ase.neighborlist import primitive_neighbor_list

    i, j = primitive_neighbor_list("ij", pbc, cell, pos, cutoff, self_interaction=False)
    keep = i < j
    pairs = np.stack([i[keep], j[keep]], axis=1).astype(np.int64)
    if len(pairs) == 0:
        return pairs
    return np.unique(pairs, axis=0)


# ---------------------------------------------------------------------------
# Graph components
# ---------------------------------------------------------------------------


def _csr(n: int, pairs: np.ndarray) -> sparse.csr_matrix:
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    data = np.ones(len(rows), dtype=np.int8)
    return sparse.csr_matrix((data, (rows, cols)), shape=(n, n))


def connected_component_sets(n: int, pairs: np.ndarray) -> list[np.ndarray]:
    """Connected components of an undirected graph on ``n`` vertices.

    Isolated vertices are components of size one.
    """
    if n == 0:
        return []
    _, labels = connected_components(_csr(n, pairs), directed=False)
    order = np.argsort(labels, kind="stable")
    splits = np.flatnonzero(np.diff(labels[order])) + 1
    return [np.sort(c) for c in np.split(order, splits)]


def biconnected_component_sets(n: int, pairs: np.ndarray) -> list[np.ndarray]:
    """Biconnected (2-connected) components of an undirected graph.

    An iterative Hopcroft-Tarjan depth-first search with an edge stack. As in
    the usual definition, a bridge forms a component of two vertices and an
    articulation point belongs to every component it joins. Isolated vertices
    are returned as components of size one so that every vertex is covered.

    Returns
    -------
    list of int arrays
        Sorted vertex sets, one per component.
    """
    if n == 0:
        return []
    graph = _csr(n, pairs)
    indptr = graph.indptr.tolist()
    indices = graph.indices.tolist()
    disc = [-1] * n
    low = [0] * n
    components: list[np.ndarray] = []
    clock = 0
    for root in range(n):
        if disc[root] != -1:
            continue
        disc[root] = low[root] = clock
        clock += 1
        if indptr[root] == indptr[root + 1]:
            components.append(np.array([root], dtype=np.int64))
            continue
        # frames: [vertex, parent, next edge pointer]
        stack = [[root, -1, indptr[root]]]
        edges: list[tuple[int, int]] = []
        while stack:
            frame = stack[-1]
            v, parent, ptr = frame
            if ptr < indptr[v + 1]:
                frame[2] = ptr + 1
                w = indices[ptr]
                if disc[w] == -1:
                    edges.append((v, w))
                    disc[w] = low[w] = clock
                    clock += 1
                    stack.append([w, v, indptr[w]])
                elif w != parent and disc[w] < disc[v]:
                    edges.append((v, w))
                    if disc[w] < low[v]:
                        low[v] = disc[w]
                continue
            stack.pop()
            if not stack:
                continue
            u = stack[-1][0]
            if low[v] < low[u]:
                low[u] = low[v]
            if low[v] >= disc[u]:
                members = set()
                while True:
                    a, b = edges.pop()
                    members.add(a)
                    members.add(b)
                    if a == u and b == v:
                        break
                components.append(np.array(sorted(members), dtype=np.int64))
    return components


# ---------------------------------------------------------------------------
# Clusters of solid-like atoms
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Clusters:
    """Clusters of one frame.

    Attributes
    ----------
    labels : (n_atoms,) int64
        Cluster id of every atom, ``-1`` for atoms that are not solid-like.
        Ids are ranked by size, 0 being the largest cluster (ties by lowest
        atom index). With biconnected components an articulation atom belongs
        to several components; it is labelled with the largest of them.
    sizes : (n_clusters,) int64
        Number of atoms in each cluster, in id order (non-increasing). For
        biconnected components, atoms shared by several components are counted
        in each.
    method : str
        ``"connected"`` or ``"biconnected"``.
    """

    labels: np.ndarray
    sizes: np.ndarray
    method: str

    @property
    def largest(self) -> int:
        """Size of the largest cluster (0 when there is none)."""
        return int(self.sizes[0]) if len(self.sizes) else 0

    @property
    def n_clusters(self) -> int:
        return len(self.sizes)


def find_clusters(
    positions: np.ndarray,
    mask: np.ndarray,
    cell: np.ndarray | None = None,
    pbc: Sequence[bool] | bool = False,
    *,
    cutoff: float = DEFAULT_CLUSTER_CUTOFF,
    method: str = "connected",
) -> Clusters:
    """Cluster the atoms selected by ``mask``.

    Parameters
    ----------
    positions : (n, 3) array
        Positions of all atoms of the frame (Å).
    mask : (n,) bool array
        Atoms that take part (for nucleation: dH(X | solid) <= 0).
    cell, pbc
        Cell (rows are vectors) and periodicity, as in ASE.
    cutoff : float
        Edge length in Å (3.0 Å by default).
    method : {"connected", "biconnected"}
        Cluster definition.

    Returns
    -------
    Clusters
    """
    pos = np.asarray(positions, dtype=float)
    sel = np.asarray(mask, dtype=bool)
    if sel.shape != (len(pos),):
        raise QuestsError(f"mask has shape {sel.shape} but the frame has {len(pos)} atoms")
    if method not in CLUSTER_METHODS:
        raise QuestsError(f"unknown cluster method {method!r}; use one of {CLUSTER_METHODS}")
    members = np.flatnonzero(sel)
    labels = np.full(len(pos), -1, dtype=np.int64)
    if len(members) == 0:
        return Clusters(labels, np.zeros(0, dtype=np.int64), method)
    pairs = neighbor_pairs(pos[members], cell, pbc, cutoff)
    if method == "connected":
        comps = connected_component_sets(len(members), pairs)
    else:
        comps = biconnected_component_sets(len(members), pairs)
    sizes = np.array([len(c) for c in comps], dtype=np.int64)
    firsts = np.array([c[0] for c in comps], dtype=np.int64)
    rank = np.lexsort((firsts, -sizes))
    local = np.full(len(members), -1, dtype=np.int64)
    # assign in reverse rank order so that the largest component wins shared atoms
    for new_id in range(len(rank) - 1, -1, -1):
        local[comps[rank[new_id]]] = new_id
    labels[members] = local
    return Clusters(labels, sizes[rank], method)


def atoms_clusters(
    atoms,
    mask: np.ndarray,
    *,
    cutoff: float = DEFAULT_CLUSTER_CUTOFF,
    method: str = "connected",
) -> Clusters:
    """:func:`find_clusters` on an :class:`ase.Atoms` (its positions, cell, pbc)."""
    return find_clusters(
        atoms.get_positions(),
        mask,
        np.asarray(atoms.cell[:]),
        atoms.pbc,
        cutoff=cutoff,
        method=method,
    )


def solid_like_delta_entropy(
    structures: Sequence,
    reference: np.ndarray,
    *,
    k: int = DEFAULTS.k,
    cutoff: float = DEFAULTS.cutoff,
    h: float = DEFAULTS.bandwidth,
    n_threads: int | None = DEFAULTS.threads,
) -> list[np.ndarray]:
    """dH of every atom of every frame against solid reference descriptors.

    Parameters
    ----------
    structures : sequence of ase.Atoms
        The trajectory frames.
    reference : (m, d) array
        Descriptors of the solid reference, computed with the same ``k`` and
        ``cutoff``.

    Returns
    -------
    list of (n_atoms_f,) arrays, one per frame.
    """
    from quests_core import delta_entropy, descriptors

    ref = np.asarray(reference)
    if ref.ndim != 2 or len(ref) == 0:
        raise QuestsError("the solid reference has no descriptors")
    expected = 2 * k - 1
    if ref.shape[1] != expected:
        raise QuestsError(
            f"reference descriptors have dimension {ref.shape[1]}, but k={k} gives {expected}"
        )
    out = []
    for frame in structures:
        x = descriptors([frame], k=k, cutoff=cutoff, n_threads=n_threads)
        out.append(np.asarray(delta_entropy(x, ref, h=h, n_threads=n_threads), dtype=float))
    return out


@dataclass(frozen=True)
class TrajectoryClusters:
    """Clusters of every frame of a trajectory.

    Attributes
    ----------
    largest : (n_frames,) int64
        Largest cluster of each frame.
    n_solid : (n_frames,) int64
        Number of solid-like atoms of each frame.
    clusters : list of Clusters
        Per-frame results.
    """

    largest: np.ndarray
    n_solid: np.ndarray
    clusters: list[Clusters]

    @classmethod
    def from_clusters(cls, clusters: Sequence[Clusters]) -> TrajectoryClusters:
        """Collect per-frame :class:`Clusters` (e.g. computed while streaming)."""
        clusters = list(clusters)
        largest = np.array([c.largest for c in clusters], dtype=np.int64)
        n_solid = np.array([int((c.labels >= 0).sum()) for c in clusters], dtype=np.int64)
        return cls(largest, n_solid, clusters)

    def labels(self) -> np.ndarray:
        """Concatenated per-atom cluster ids (for ``Dataset.arrays['cluster']``)."""
        if not self.clusters:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([c.labels for c in self.clusters])


def trajectory_clusters(
    structures: Sequence,
    delta_entropies: Sequence[np.ndarray],
    *,
    threshold: float = 0.0,
    cutoff: float = DEFAULT_CLUSTER_CUTOFF,
    method: str = "connected",
) -> TrajectoryClusters:
    """Solid-like clusters of every frame from per-atom dH values.

    Parameters
    ----------
    structures : sequence of ase.Atoms
    delta_entropies : sequence of (n_atoms_f,) arrays
        dH(X | X_solid) of each atom of each frame.
    threshold : float
        Atoms with dH <= threshold are solid-like (0 in the method).
    """
    if len(structures) != len(delta_entropies):
        raise QuestsError(
            f"{len(structures)} frames but {len(delta_entropies)} per-frame dH arrays"
        )
    results = []
    for i, (atoms, dh) in enumerate(zip(structures, delta_entropies, strict=True)):
        dh = np.asarray(dh)
        if dh.shape != (len(atoms),):
            raise QuestsError(
                f"dH has {dh.size} values but the frame has {len(atoms)} atoms", index=i
            )
        results.append(atoms_clusters(atoms, dh <= threshold, cutoff=cutoff, method=method))
    return TrajectoryClusters.from_clusters(results)


@dataclass(frozen=True)
class SizeDistribution:
    """Cluster-size distribution pooled over frames.

    Attributes
    ----------
    sizes : (m,) int64
        Distinct cluster sizes, ascending.
    counts : (m,) int64
        Number of clusters of each size, summed over the frames.
    n_frames : int
        Number of frames pooled.
    """

    sizes: np.ndarray
    counts: np.ndarray
    n_frames: int

    @property
    def per_frame(self) -> np.ndarray:
        """Mean number of clusters of each size per frame."""
        return self.counts / max(self.n_frames, 1)


def cluster_size_distribution(
    clusters: Sequence[Clusters], frames: Sequence[int] | None = None
) -> SizeDistribution:
    """Pool the cluster sizes of the chosen frames into a distribution.

    Parameters
    ----------
    clusters : sequence of Clusters
        One per frame.
    frames : sequence of int, optional
        Frame indices to pool; all frames when omitted.
    """
    idx = range(len(clusters)) if frames is None else list(frames)
    if len(idx) == 0:
        raise QuestsError("no frames selected for the cluster-size distribution")
    pooled = []
    for f in idx:
        if not -len(clusters) <= f < len(clusters):
            raise QuestsError(f"frame {f} is out of range (trajectory has {len(clusters)})")
        pooled.append(clusters[f].sizes)
    all_sizes = np.concatenate(pooled) if pooled else np.zeros(0, dtype=np.int64)
    sizes, counts = np.unique(all_sizes, return_counts=True)
    return SizeDistribution(sizes.astype(np.int64), counts.astype(np.int64), len(idx))
