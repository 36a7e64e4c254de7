"""Solid-like clusters: neighbour pairs, graph components, clusters, size distribution."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from quests_core.analysis import clusters as cl
from quests_core.errors import QuestsError

A_CU = 3.615  # fcc lattice constant of Cu, Å


def fcc_points(length: float, a: float = A_CU) -> np.ndarray:
    """fcc lattice points filling [0, length)^3 (with a margin of one cell)."""
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * a
    n = int(np.ceil(length / a)) + 1
    cells = np.array(list(itertools.product(range(-1, n), repeat=3)), dtype=float) * a
    return (cells[:, None, :] + basis[None, :, :]).reshape(-1, 3)


def grain(center: np.ndarray, radius: float, cell: np.ndarray) -> np.ndarray:
    """Lattice atoms within ``radius`` of ``center`` (fractional-wrapped into cell)."""
    pts = fcc_points(2 * radius + 2 * A_CU) - (radius + A_CU)
    pts = pts[np.linalg.norm(pts, axis=1) < radius] + center
    frac = np.linalg.solve(cell.T, pts.T).T % 1.0
    return frac @ cell


def random_matrix(
    rng: np.random.Generator,
    cell: np.ndarray,
    centers: list[np.ndarray],
    exclusion: float,
    n: int,
    min_sep: float = 2.2,
) -> np.ndarray:
    """Random atoms at least ``exclusion`` from the grain centres (minimum image)."""
    inv = np.linalg.inv(cell)
    out: list[np.ndarray] = []
    tries = 0
    while len(out) < n and tries < 200_000:
        tries += 1
        p = rng.uniform(0, 1, 3) @ cell
        ok = True
        for c in centers:
            d = (p - c) @ inv
            d -= np.round(d)
            if np.linalg.norm(d @ cell) < exclusion:
                ok = False
                break
        if ok and out:
            d = (np.array(out) - p) @ inv
            d -= np.round(d)
            ok = np.linalg.norm(d @ cell, axis=1).min() >= min_sep
        if ok:
            out.append(p)
    return np.array(out)


def brute_force_pairs(pos, cell, pbc, cutoff):
    shifts = [range(-2, 3) if p else range(1) for p in pbc]
    images = np.array(list(itertools.product(*shifts)), dtype=float) @ cell
    pairs = []
    for i in range(len(pos)):
        for j in range(i + 1, len(pos)):
            d = np.linalg.norm(pos[j] - pos[i] + images, axis=1).min()
            if d < cutoff:
                pairs.append((i, j))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


# ---------------------------------------------------------------------------
# neighbour pairs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell, pbc",
    [
        (np.diag([9.0, 10.0, 11.0]), (True, True, True)),
        (np.array([[9.0, 0, 0], [3.0, 9.0, 0], [-2.0, 1.5, 8.5]]), (True, True, True)),
        (np.array([[9.0, 0, 0], [4.0, 8.0, 0], [0, 0, 30.0]]), (True, True, False)),
        (np.diag([5.5, 6.0, 7.0]), (True, True, True)),  # cell below 2 x cutoff
        (np.zeros((3, 3)), (False, False, False)),
    ],
)
def test_neighbor_pairs_match_brute_force(cell, pbc):
    rng = np.random.default_rng(1)
    box = cell if np.any(cell) else np.diag([9.0, 9.0, 9.0])
    pos = rng.uniform(0, 1, (70, 3)) @ box
    expected = brute_force_pairs(pos, cell, pbc, 3.0)
    got = cl.neighbor_pairs(pos, cell, pbc, 3.0)
    np.testing.assert_array_equal(got, expected)
    general = cl.neighbor_pairs(pos, cell, pbc, 3.0, method="general")
    np.testing.assert_array_equal(general, expected)


def test_neighbor_pairs_kdtree_and_general_agree_on_unwrapped_positions():
    rng = np.random.default_rng(2)
    cell = np.diag([12.0, 12.0, 12.0])
    pos = rng.uniform(-30, 30, (400, 3))  # far outside the cell
    a = cl.neighbor_pairs(pos, cell, True, 3.0, method="kdtree")
    b = cl.neighbor_pairs(pos, cell, True, 3.0, method="general")
    assert len(a) > 100
    np.testing.assert_array_equal(a, b)


def test_neighbor_pairs_bad_input():
    with pytest.raises(QuestsError):
        cl.neighbor_pairs(np.zeros((4, 2)), None, False, 3.0)
    with pytest.raises(QuestsError, match="zero"):
        cl.neighbor_pairs(np.zeros((4, 3)), np.zeros((3, 3)), True, 3.0)
    with pytest.raises(QuestsError):
        cl.neighbor_pairs(np.zeros((4, 3)), None, False, -1.0)


# ---------------------------------------------------------------------------
# graph components
# ---------------------------------------------------------------------------


def _is_connected(vertices: set[int], edges: set[tuple[int, int]]) -> bool:
    if not vertices:
        return True
    start = next(iter(vertices))
    seen = {start}
    frontier = [start]
    while frontier:
        v = frontier.pop()
        for a, b in edges:
            for x, y in ((a, b), (b, a)):
                if x == v and y in vertices and y not in seen:
                    seen.add(y)
                    frontier.append(y)
    return seen == vertices


def test_biconnected_small_graphs():
    bowtie = np.array([[0, 1], [1, 2], [0, 2], [2, 3], [3, 4], [2, 4]])
    comps = sorted(map(tuple, cl.biconnected_component_sets(5, bowtie)))
    assert comps == [(0, 1, 2), (2, 3, 4)]
    path = np.array([[0, 1], [1, 2]])
    assert sorted(map(tuple, cl.biconnected_component_sets(4, path))) == [(0, 1), (1, 2), (3,)]
    ring = np.array([[i, (i + 1) % 6] for i in range(6)])
    ring = np.sort(ring, axis=1)
    assert [len(c) for c in cl.biconnected_component_sets(6, ring)] == [6]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_biconnected_components_properties_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    n = 25
    all_pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = rng.choice(len(all_pairs), size=32, replace=False)
    edges = {all_pairs[c] for c in chosen}
    pairs = np.array(sorted(edges))
    comps = [set(c.tolist()) for c in cl.biconnected_component_sets(n, pairs)]
    # every edge lies in exactly one component
    for a, b in edges:
        assert sum(a in c and b in c for c in comps) == 1
    # components of 3+ vertices stay connected after removing any one vertex
    for c in comps:
        inner = {(a, b) for a, b in edges if a in c and b in c}
        assert _is_connected(c, inner)
        if len(c) >= 3:
            for v in c:
                assert _is_connected(c - {v}, {e for e in inner if v not in e})
    # a vertex is in several components exactly when it is an articulation point
    full = set(range(n))
    base = cl.connected_component_sets(n, pairs)
    for v in range(n):
        rest = pairs[(pairs[:, 0] != v) & (pairs[:, 1] != v)]
        n_without = len(cl.connected_component_sets(n, rest)) - 1  # v is now isolated
        articulation = n_without > len(base)
        assert (sum(v in c for c in comps) > 1) == articulation
    assert set().union(*comps) == full


# ---------------------------------------------------------------------------
# clusters: constructed cases with known answers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        np.diag([32.0, 32.0, 32.0]),
        np.array([[32.0, 0, 0], [9.0, 31.0, 0], [4.0, -5.0, 31.0]]),
    ],
)
def test_two_grains_in_random_matrix(cell):
    rng = np.random.default_rng(7)
    c1 = np.array([0.25, 0.25, 0.25]) @ cell
    c2 = np.array([0.98, 0.7, 0.99]) @ cell  # straddles the periodic boundary
    g1 = grain(c1, 6.0, cell)
    g2 = grain(c2, 5.0, cell)
    matrix = random_matrix(rng, cell, [c1, c2], exclusion=7.5, n=250)
    pos = np.concatenate([matrix, g1, g2])
    mask = np.zeros(len(pos), dtype=bool)
    mask[len(matrix) :] = True
    clusters = cl.find_clusters(pos, mask, cell, True)
    assert clusters.n_clusters == 2
    np.testing.assert_array_equal(clusters.sizes, sorted([len(g1), len(g2)], reverse=True))
    big = 0 if len(g1) >= len(g2) else 1
    labels = clusters.labels
    assert np.all(labels[: len(matrix)] == -1)
    assert np.all(labels[len(matrix) : len(matrix) + len(g1)] == big)
    assert np.all(labels[len(matrix) + len(g1) :] == 1 - big)
    # without periodicity the straddling grain falls apart into pieces
    open_clusters = cl.find_clusters(pos, mask, cell, False)
    assert open_clusters.n_clusters > 2
    assert open_clusters.largest == len(g1)


def test_isolated_masked_atoms_are_singletons_and_bridge_is_split_by_biconnected():
    cell = np.diag([60.0, 30.0, 30.0])
    blob1 = grain(np.array([12.0, 15.0, 15.0]), 5.0, cell)
    blob2 = grain(np.array([40.0, 15.0, 15.0]), 5.0, cell)
    # a chain of atoms 2.5 Å apart links the two blobs along x
    x1 = blob1[:, 0].max()
    x2 = blob2[np.abs(blob2[:, 1] - 15.0) + np.abs(blob2[:, 2] - 15.0) < 1.9][:, 0].min()
    end1 = blob1[np.argmax(blob1[:, 0])]
    end2 = blob2[np.argmin(np.where(np.abs(blob2[:, 1] - end1[1]) < 1.9, blob2[:, 0], 1e9))]
    n_links = int(np.ceil((end2[0] - end1[0]) / 2.5))
    chain = np.linspace(end1, end2, n_links + 1)[1:-1]
    assert x2 > x1 and np.all(np.linalg.norm(np.diff(chain, axis=0), axis=1) < 3.0)
    lonely = np.array([[55.0, 2.0, 2.0], [55.0, 28.0, 10.0]])
    pos = np.concatenate([blob1, blob2, chain, lonely])
    mask = np.ones(len(pos), dtype=bool)
    conn = cl.find_clusters(pos, mask, cell, True)
    assert conn.sizes.tolist() == [len(blob1) + len(blob2) + len(chain), 1, 1]
    bic = cl.find_clusters(pos, mask, cell, True, method="biconnected")
    assert bic.sizes[:2].tolist() == sorted([len(blob1), len(blob2)], reverse=True)
    # every link of the chain is a bridge: a component of two atoms
    assert np.sum(bic.sizes == 2) == len(chain) + 1
    assert np.sum(bic.sizes == 1) == 2
    assert set(bic.labels[: len(blob1)]) == {0} or set(bic.labels[: len(blob1)]) == {1}


def test_clusters_empty_and_bad_mask():
    pos = np.zeros((3, 3))
    c = cl.find_clusters(pos, np.zeros(3, bool), None, False)
    assert c.largest == 0 and c.n_clusters == 0 and np.all(c.labels == -1)
    with pytest.raises(QuestsError, match="mask"):
        cl.find_clusters(pos, np.zeros(4, bool), None, False)
    with pytest.raises(QuestsError, match="method"):
        cl.find_clusters(pos, np.ones(3, bool), None, False, method="tricolored")


def test_trajectory_clusters_and_size_distribution():
    from ase import Atoms

    cell = np.diag([20.0, 20.0, 20.0])
    g = grain(np.array([10.0, 10.0, 10.0]), 4.0, cell)
    far = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 3.5]])  # a pair 2.5 Å apart
    frames, dhs = [], []
    for n_solid in (0, 1, 2):
        at = Atoms("Cu" * (len(g) + 2), positions=np.concatenate([g, far]), cell=cell, pbc=True)
        dh = np.full(len(at), 1.0)
        if n_solid >= 1:
            dh[: len(g)] = -0.5
        if n_solid == 2:
            dh[len(g) :] = 0.0  # dH = 0 counts as solid-like
        frames.append(at)
        dhs.append(dh)
    res = cl.trajectory_clusters(frames, dhs)
    assert res.largest.tolist() == [0, len(g), len(g)]
    assert res.n_solid.tolist() == [0, len(g), len(g) + 2]
    labels = res.labels()
    assert labels.shape == (3 * (len(g) + 2),)
    dist = cl.cluster_size_distribution(res.clusters, frames=[1, 2])
    assert dist.sizes.tolist() == [2, len(g)]
    assert dist.counts.tolist() == [1, 2]
    np.testing.assert_allclose(dist.per_frame, [0.5, 1.0])
    with pytest.raises(QuestsError, match="no frames"):
        cl.cluster_size_distribution(res.clusters, frames=[])
    with pytest.raises(QuestsError, match="out of range"):
        cl.cluster_size_distribution(res.clusters, frames=[7])
    with pytest.raises(QuestsError, match="structure 1"):
        cl.trajectory_clusters(frames, [dhs[0], dhs[1][:-1], dhs[2]])


def test_sample_quench_largest_cluster_grows_when_melt_crystallises():
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    quench_path, solid_path = sample / "cu_quench.extxyz", sample / "cu_solid_400K.extxyz"
    if not (quench_path.exists() and solid_path.exists()):
        pytest.skip("sample Cu quench / solid trajectories not generated yet")
    from ase.io import read

    import quests_core as qc

    frames = read(quench_path, index="::4")
    reference = qc.descriptors(read(solid_path, index="-2:"))
    dhs = cl.solid_like_delta_entropy(frames, reference)
    res = cl.trajectory_clusters(frames, dhs)
    assert np.all(res.largest <= res.n_solid)
    # the crystalline fraction from common-neighbour analysis of inherent structures,
    # stored by the generator, tells independently when the melt crystallised
    cna = np.array([f.info["frac_fcc_hcp"] for f in frames])
    liquid, crystal = cna < 0.05, cna > 0.5
    assert liquid.sum() >= 3 and crystal.sum() >= 3
    n_atoms = len(frames[0])
    assert res.largest[liquid].max() < 0.025 * n_atoms  # small before nucleation
    assert res.largest[crystal].min() > 0.1 * n_atoms  # large once crystallised
    assert res.largest[crystal].min() > 10 * max(res.largest[liquid].max(), 1)
    # cluster ids as a per-atom array, ready for extxyz export
    labels = res.labels()
    assert labels.shape == (n_atoms * len(frames),)
    last = labels[-n_atoms:]
    assert np.sum(last == 0) == res.largest[-1]
