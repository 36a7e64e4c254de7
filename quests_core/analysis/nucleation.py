"""Solid-like clusters in a trajectory and classical nucleation theory (CNT).

Atoms whose environment is covered by a solid reference, dH(X | X_solid) <= 0,
are *solid-like*. Solid-like atoms closer than ``cutoff`` (3.0 Å, minimum
image) are joined by an edge; clusters are the connected components of that
graph, or its biconnected (2-connected) components.

Everything here is a pure function of numpy arrays or :class:`ase.Atoms`; the
only call into the numerical core is :func:`solid_like_delta_entropy`.

Units: lengths in Å, volumes in Å^3, energies in eV, temperatures in K. The
CNT inputs are accepted in the units of the literature (J/m^2 for interfacial
energies, kJ/mol for the latent heat) and converted with the explicit
constants below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import curve_fit
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from quests_core.errors import QuestsError

# ---------------------------------------------------------------------------
# Physical constants and unit conversions (CODATA 2018, exact where defined)
# ---------------------------------------------------------------------------

ELEMENTARY_CHARGE = 1.602176634e-19  # J per eV
AVOGADRO = 6.02214076e23  # 1/mol
BOLTZMANN_EV = 8.617333262e-5  # eV/K

#: 1 J/m^2 expressed in eV/Å^2 (1 m^2 = 1e20 Å^2).
J_PER_M2_TO_EV_PER_A2 = 1.0 / ELEMENTARY_CHARGE / 1e20
#: 1 kJ/mol expressed in eV per atom.
KJ_PER_MOL_TO_EV_PER_ATOM = 1e3 / (AVOGADRO * ELEMENTARY_CHARGE)

# CNT constants for the Cu EAM potential used in the QUESTS paper (SPEC section 3).
CU_T_MELT = 1323.0  # K
CU_LATENT_HEAT = 11.99  # kJ/mol
CU_V_ATOM = 12.893  # Å^3/atom
CU_GAMMA_SL_RANGE = (0.177, 0.221)  # J/m^2

DEFAULT_CLUSTER_CUTOFF = 3.0  # Å
CLUSTER_METHODS = ("connected", "biconnected")


def j_per_m2_to_ev_per_a2(gamma: float | np.ndarray) -> float | np.ndarray:
    """Convert an interfacial energy from J/m^2 to eV/Å^2."""
    return np.asarray(gamma, dtype=float) * J_PER_M2_TO_EV_PER_A2


def ev_per_a2_to_j_per_m2(gamma: float | np.ndarray) -> float | np.ndarray:
    """Convert an interfacial energy from eV/Å^2 to J/m^2."""
    return np.asarray(gamma, dtype=float) / J_PER_M2_TO_EV_PER_A2


def kj_per_mol_to_ev_per_atom(energy: float | np.ndarray) -> float | np.ndarray:
    """Convert a molar energy from kJ/mol to eV per atom."""
    return np.asarray(energy, dtype=float) * KJ_PER_MOL_TO_EV_PER_ATOM


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
    k: int = 32,
    cutoff: float = 5.0,
    h: float = 0.015,
    n_threads: int | None = None,
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


# ---------------------------------------------------------------------------
# Classical nucleation theory
# ---------------------------------------------------------------------------


def size_to_radius(n: float | np.ndarray, v_atom: float = CU_V_ATOM) -> float | np.ndarray:
    """Radius (Å) of a sphere holding ``n`` atoms: n V_atom = (4/3) pi r^3."""
    return np.cbrt(3.0 * np.asarray(n, dtype=float) * v_atom / (4.0 * np.pi))


def radius_to_size(r: float | np.ndarray, v_atom: float = CU_V_ATOM) -> float | np.ndarray:
    """Number of atoms in a sphere of radius ``r`` (Å)."""
    return 4.0 * np.pi * np.asarray(r, dtype=float) ** 3 / (3.0 * v_atom)


def latent_heat_per_volume(latent_heat: float = CU_LATENT_HEAT, v_atom: float = CU_V_ATOM) -> float:
    """Latent heat of melting per volume in eV/Å^3 from kJ/mol and Å^3/atom."""
    if not v_atom > 0:
        raise QuestsError(f"atomic volume must be positive, got {v_atom}")
    return float(kj_per_mol_to_ev_per_atom(latent_heat)) / v_atom


def cnt_critical_radius(
    temperature: float | np.ndarray,
    gamma: float | np.ndarray = CU_GAMMA_SL_RANGE[0],
    *,
    t_melt: float = CU_T_MELT,
    latent_heat: float = CU_LATENT_HEAT,
    v_atom: float = CU_V_ATOM,
) -> float | np.ndarray:
    """CNT critical radius r* = 2 gamma T_m / (dH_m,vol (T_m - T)), in Å.

    Parameters
    ----------
    temperature : float or array
        Temperature(s) in K. At or above ``t_melt`` the radius is ``inf``.
    gamma : float or array
        Solid-liquid interfacial energy in J/m^2.
    t_melt : float
        Melting temperature in K.
    latent_heat : float
        Latent heat of melting in kJ/mol.
    v_atom : float
        Atomic volume in Å^3/atom.
    """
    t = np.asarray(temperature, dtype=float)
    if not t_melt > 0:
        raise QuestsError(f"melting temperature must be positive, got {t_melt}")
    if np.any(np.asarray(gamma) < 0):
        raise QuestsError("interfacial energy must be non-negative")
    g = j_per_m2_to_ev_per_a2(gamma)
    dh_vol = latent_heat_per_volume(latent_heat, v_atom)
    undercooling = t_melt - t
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(undercooling > 0, 2.0 * g * t_melt / (dh_vol * undercooling), np.inf)
    return float(r) if np.ndim(r) == 0 else r


@dataclass(frozen=True)
class CriticalBand:
    """Critical radius and size band for a range of interfacial energies.

    All arrays have the shape of the temperature input; radii in Å, sizes in
    atoms; ``inf`` at or above the melting temperature.
    """

    temperature: np.ndarray
    r_min: np.ndarray
    r_max: np.ndarray
    n_min: np.ndarray
    n_max: np.ndarray
    gamma_range: tuple[float, float]


def critical_size_band(
    temperature: float | np.ndarray,
    gamma_range: tuple[float, float] = CU_GAMMA_SL_RANGE,
    *,
    t_melt: float = CU_T_MELT,
    latent_heat: float = CU_LATENT_HEAT,
    v_atom: float = CU_V_ATOM,
) -> CriticalBand:
    """Band of CNT critical radii / cluster sizes over an interfacial energy range.

    Parameters
    ----------
    temperature : float or array
        Temperature per frame (K).
    gamma_range : (low, high)
        Interfacial energy range in J/m^2.
    """
    lo, hi = (float(v) for v in gamma_range)
    if lo > hi:
        raise QuestsError(f"interfacial energy range ({lo}, {hi}) is reversed")
    t = np.atleast_1d(np.asarray(temperature, dtype=float))
    kwargs = dict(t_melt=t_melt, latent_heat=latent_heat, v_atom=v_atom)
    r_lo = np.asarray(cnt_critical_radius(t, lo, **kwargs))
    r_hi = np.asarray(cnt_critical_radius(t, hi, **kwargs))
    return CriticalBand(
        temperature=t,
        r_min=r_lo,
        r_max=r_hi,
        n_min=np.asarray(radius_to_size(r_lo, v_atom)),
        n_max=np.asarray(radius_to_size(r_hi, v_atom)),
        gamma_range=(lo, hi),
    )


@dataclass(frozen=True)
class CNTFit:
    """Fit of a cluster-size distribution to the CNT form.

    log N(n) = log N0 - (4 pi r^3 / 3kT) dg_SL - (4 pi r^2 / kT) gamma_SL,
    with n V_atom = (4/3) pi r^3.

    Attributes
    ----------
    n0, n0_err : float
        Prefactor (clusters) and its standard error.
    dg_sl, dg_sl_err : float
        Free-energy difference per volume, eV/Å^3.
    gamma_sl, gamma_sl_err : float
        Interfacial energy, eV/Å^2.
    covariance : (3, 3) array
        Covariance of (log N0, dg_sl, gamma_sl).
    temperature : float
        Temperature of the fit (K).
    """

    n0: float
    n0_err: float
    dg_sl: float
    dg_sl_err: float
    gamma_sl: float
    gamma_sl_err: float
    covariance: np.ndarray
    temperature: float
    v_atom: float

    @property
    def gamma_sl_j_m2(self) -> float:
        """Interfacial energy in J/m^2."""
        return float(ev_per_a2_to_j_per_m2(self.gamma_sl))

    @property
    def gamma_sl_err_j_m2(self) -> float:
        return float(ev_per_a2_to_j_per_m2(self.gamma_sl_err))

    @property
    def dg_sl_per_atom(self) -> float:
        """Free-energy difference per atom, eV/atom."""
        return self.dg_sl * self.v_atom

    def log_counts(self, sizes: np.ndarray) -> np.ndarray:
        """Model log N at the given cluster sizes."""
        return cnt_log_distribution(
            sizes, np.log(self.n0), self.dg_sl, self.gamma_sl, self.temperature, self.v_atom
        )


def cnt_log_distribution(
    sizes: np.ndarray,
    log_n0: float,
    dg_sl: float,
    gamma_sl: float,
    temperature: float,
    v_atom: float = CU_V_ATOM,
) -> np.ndarray:
    """CNT log cluster count for sizes ``n`` (dg in eV/Å^3, gamma in eV/Å^2)."""
    n = np.asarray(sizes, dtype=float)
    kt = BOLTZMANN_EV * temperature
    r = size_to_radius(n, v_atom)
    volume = 4.0 * np.pi * r**3 / 3.0
    area = 4.0 * np.pi * r**2
    return log_n0 - volume * dg_sl / kt - area * gamma_sl / kt


def fit_cnt_distribution(
    sizes: np.ndarray,
    counts: np.ndarray,
    temperature: float,
    *,
    v_atom: float = CU_V_ATOM,
    weighted: bool = True,
) -> CNTFit:
    """Fit a cluster-size distribution to the CNT form.

    Parameters
    ----------
    sizes : (m,) array
        Cluster sizes (atoms).
    counts : (m,) array
        Number of clusters of each size (sizes with zero count are skipped).
    temperature : float
        Temperature in K (the mean over the pooled frames).
    v_atom : float
        Atomic volume in Å^3.
    weighted : bool
        Weight each point with the Poisson error of its log count,
        sigma = 1/sqrt(N), and report absolute uncertainties. Otherwise the
        fit is unweighted and the covariance is scaled by the residuals.

    Returns
    -------
    CNTFit
        Parameters with standard errors from the fit covariance.

    Notes
    -----
    The model is fitted as log N = c0 - c1 n - c2 n^(2/3) (well conditioned)
    with :func:`scipy.optimize.curve_fit`; c1 = V dg/kT and
    c2 = 4 pi (3V/4pi)^(2/3) gamma/kT are linear maps, so the covariance
    converts exactly.
    """
    n = np.asarray(sizes, dtype=float).ravel()
    c = np.asarray(counts, dtype=float).ravel()
    if n.shape != c.shape:
        raise QuestsError(f"{n.size} cluster sizes but {c.size} counts")
    if not temperature > 0:
        raise QuestsError(f"temperature must be positive for the CNT fit, got {temperature}")
    if not v_atom > 0:
        raise QuestsError(f"atomic volume must be positive, got {v_atom}")
    keep = (c > 0) & (n > 0)
    n, c = n[keep], c[keep]
    if len(n) < 4:
        raise QuestsError(
            f"the CNT fit needs at least 4 distinct cluster sizes with counts, got {len(n)}"
        )
    y = np.log(c)
    sigma = 1.0 / np.sqrt(c) if weighted else None

    def model(x, c0, c1, c2):
        return c0 - c1 * x - c2 * x ** (2.0 / 3.0)

    design = np.stack([np.ones_like(n), -n, -(n ** (2.0 / 3.0))], axis=1)
    w = np.ones_like(n) if sigma is None else 1.0 / sigma
    p0, *_ = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)
    popt, pcov = curve_fit(model, n, y, p0=p0, sigma=sigma, absolute_sigma=weighted)
    kt = BOLTZMANN_EV * temperature
    area_per_n23 = 4.0 * np.pi * (3.0 * v_atom / (4.0 * np.pi)) ** (2.0 / 3.0)
    scale = np.diag([1.0, kt / v_atom, kt / area_per_n23])
    cov = scale @ pcov @ scale
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    n0 = float(np.exp(popt[0]))
    return CNTFit(
        n0=n0,
        n0_err=n0 * float(err[0]),
        dg_sl=float(popt[1] * kt / v_atom),
        dg_sl_err=float(err[1]),
        gamma_sl=float(popt[2] * kt / area_per_n23),
        gamma_sl_err=float(err[2]),
        covariance=cov,
        temperature=float(temperature),
        v_atom=float(v_atom),
    )
