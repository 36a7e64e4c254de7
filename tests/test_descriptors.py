"""Descriptors: analytic values, invariances, periodicity, bad input (SPEC section 1)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from conftest import noisy_cu
from scipy.spatial.transform import Rotation

import quests_core as qc
from quests_core import QuestsError


def w(r, rc=5.0):
    return (1 - (r / rc) ** 2) ** 2 if r <= rc else 0.0


def test_shape_and_dtype(cu_noisy):
    x = qc.descriptors(cu_noisy)
    assert x.shape == (len(cu_noisy), 63) and x.dtype == np.float64
    x16 = qc.descriptors(cu_noisy, k=16, dtype=np.float32)
    assert x16.shape == (len(cu_noisy), 31) and x16.dtype == np.float32
    # several structures are stacked in order
    both = qc.descriptors([cu_noisy, cu_noisy[:10]])
    np.testing.assert_array_equal(both[: len(cu_noisy)], x)
    assert both.shape[0] == len(cu_noisy) + 10


def test_trimer_analytic_values():
    """Non-periodic trimer: every entry follows from the formulas by hand."""
    pos = np.array([[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [0.0, 3.0, 0.0]])
    k = 4
    x = qc.descriptors(Atoms("Cu3", positions=pos), k=k)
    r1, r2, r12 = 2.5, 3.0, np.hypot(2.5, 3.0)
    # atom 0: neighbours at 2.5 and 3.0, X1 largest first, zeros for missing neighbours
    np.testing.assert_allclose(x[0, :k], [w(r1) / r1, w(r2) / r2, 0, 0], rtol=1e-12)
    c12 = np.sqrt(w(r1) * w(r2)) / r12
    # rows 1 and 2 of C each hold c12 as their largest entry; mean over k rows
    np.testing.assert_allclose(x[0, k:], [2 * c12 / k, 0, 0], rtol=1e-12)
    # atom 1: neighbours atom 0 (2.5) and atom 2 (r12)
    np.testing.assert_allclose(x[1, :2], [w(r1) / r1, w(r12) / r12], rtol=1e-12)
    np.testing.assert_allclose(x[1, k], 2 * np.sqrt(w(r1) * w(r12)) / r2 / k, rtol=1e-12)


def test_isolated_atom_is_zero():
    x = qc.descriptors(Atoms("Cu", positions=[[0, 0, 0]]))
    assert x.shape == (1, 63) and np.all(x == 0)


def test_translation_rotation_permutation_invariance():
    atoms = noisy_cu((3, 3, 3), seed=1)
    ref = qc.descriptors(atoms)
    moved = atoms.copy()
    moved.translate([1.3, -7.2, 40.1])
    np.testing.assert_allclose(qc.descriptors(moved), ref, atol=1e-12)

    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    turned.positions = atoms.positions @ rot.T
    np.testing.assert_allclose(qc.descriptors(turned), ref, atol=1e-11)

    perm = np.random.default_rng(3).permutation(len(atoms))
    np.testing.assert_allclose(qc.descriptors(atoms[perm]), ref[perm], atol=1e-12)


@pytest.mark.parametrize(("cubic", "reps"), [(True, (1, 1, 2)), (False, (2, 2, 2))])
def test_supercell_replication_of_small_noisy_cell(cubic, reps):
    """Cells thinner than the cutoff: atoms see several images of their neighbours.

    (A 1- or 2-atom primitive cell is avoided on purpose: there the images of an atom
    itself come in exactly tied +/- pairs at the k-th neighbour, see SPEC section 1.)
    """
    cell = bulk("Cu", "fcc", a=3.61, cubic=cubic) * reps
    cell.rattle(0.08, seed=7)
    small = qc.descriptors(cell)
    big = qc.descriptors(cell * (2, 3, 2))
    np.testing.assert_allclose(big, np.tile(small, (12, 1)), atol=1e-11)
    assert min(qc.neighbors.cell_heights(cell.cell.array)) < 5.0
    assert np.all(small[:, 0] > 0)


def test_continuity_across_cutoff():
    """A neighbour moving out through r_c changes the descriptor continuously to zero."""
    base = np.array([[0.0, 0, 0], [2.5, 0, 0], [0, 2.6, 0], [0, 0, 2.7]])

    def desc(r):
        atoms = Atoms("Cu5", positions=np.vstack([base, [[-r, 0.0, 0.0]]]))
        return qc.descriptors(atoms, k=8)[0]

    inside, outside = desc(5.0 - 1e-6), desc(5.0 + 1e-6)
    # sqrt(w) vanishes linearly at r_c, so the jump is O(distance moved)
    assert np.max(np.abs(inside - outside)) < 1e-6
    assert np.max(np.abs(desc(4.9) - outside)) > 1e-5


def test_per_axis_periodicity_matches_explicit_images():
    """A slab periodic in x, y only equals the centre copy of an explicit 3x3 replica."""
    slab = fcc111("Cu", size=(3, 3, 4), vacuum=6.0, a=3.61)
    slab.rattle(0.05, seed=2)
    slab.pbc = (True, True, False)
    periodic = qc.descriptors(slab)
    replica = slab * (3, 3, 1)
    replica.pbc = False
    n = len(slab)
    centre = 4  # copy (1, 1) of the 3x3 replica
    explicit = qc.descriptors(replica)[centre * n : (centre + 1) * n]
    np.testing.assert_allclose(periodic, explicit, atol=1e-11)
    # periodic along z too would make surface atoms see the other side through 12 Å? no:
    # the vacuum (12 Å) exceeds the cutoff, so full pbc gives the same numbers
    full = slab.copy()
    full.pbc = True
    np.testing.assert_allclose(qc.descriptors(full), periodic, atol=1e-11)
    # with a thin vacuum full pbc differs for surface atoms but not for the slab pbc
    thin = slab.copy()
    thin.cell[2, 2] -= 10.0
    thin.pbc = (True, True, False)
    np.testing.assert_allclose(qc.descriptors(thin), periodic, atol=1e-11)
    thin.pbc = True
    assert np.max(np.abs(qc.descriptors(thin) - periodic)) > 1e-3


def test_overlapping_atoms_give_finite_values():
    atoms = Atoms("Cu3", positions=[[0, 0, 0], [0, 0, 0], [2.0, 0, 0]])
    x = qc.descriptors(atoms)
    assert np.all(np.isfinite(x))
    assert x[0, 0] > 1e10  # w(0) / eps


def test_multicomponent_blocks():
    """Reference layout: [X1_all, X1_Ag, X1_Cu, X2_all, X2_Ag, X2_Cu] (species sorted)."""
    from quests_core.descriptors import block_columns

    atoms = noisy_cu((2, 2, 2), seed=4)
    symbols = np.array(["Cu", "Ag"] * (len(atoms) // 2))
    atoms.set_chemical_symbols(symbols)
    x = qc.descriptors(atoms, species=["Cu", "Ag"])
    assert x.shape == (len(atoms), 3 * 63)
    plain = qc.descriptors(atoms)
    np.testing.assert_allclose(x[:, :32], plain[:, :32], atol=1e-12)
    np.testing.assert_allclose(x[:, 96:127], plain[:, 32:], atol=1e-12)
    ag, cu = symbols == "Ag", symbols == "Cu"
    x_ag, x_cu = qc.descriptors(atoms[ag]), qc.descriptors(atoms[cu])
    np.testing.assert_allclose(x[ag, 32:64], x_ag[:, :32], atol=1e-12)
    np.testing.assert_allclose(x[ag, 127:158], x_ag[:, 32:], atol=1e-12)
    np.testing.assert_allclose(x[cu, 64:96], x_cu[:, :32], atol=1e-12)
    np.testing.assert_allclose(x[cu, 158:], x_cu[:, 32:], atol=1e-12)
    assert np.all(x[cu, 32:64] == 0) and np.all(x[cu, 127:158] == 0)
    assert np.all(x[ag, 64:96] == 0) and np.all(x[ag, 158:] == 0)
    assert block_columns(32, 2, 1) == (slice(32, 64), slice(127, 158))
    assert block_columns(32, 0, 0) == (slice(0, 32), slice(32, 63))
    with pytest.raises(QuestsError, match="block 3 out of range"):
        block_columns(32, 2, 3)
    with pytest.raises(QuestsError, match="not in the species list"):
        qc.descriptors(atoms, species=["Cu", "Au"])


def test_frame_descriptors_in_atom_blocks_equal_the_whole_frame():
    """Blocks of atoms (cloud built once) give the same rows, multicomponent included."""
    from quests_core.descriptors import FrameDescriptors

    atoms = noisy_cu((3, 3, 3), seed=5)
    symbols = np.where(np.arange(len(atoms)) % 3 == 0, "Ag", "Cu")
    atoms.set_chemical_symbols(symbols)
    for species in ((), ("Ag", "Cu")):
        whole = qc.descriptors(atoms, species=list(species) or None)
        frame = FrameDescriptors(atoms, species=species)
        edges = [0, 1, 17, 18, 64, len(atoms)]
        pairs = zip(edges[:-1], edges[1:], strict=True)
        blocks = np.concatenate([frame.rows(a, b) for a, b in pairs])
        np.testing.assert_array_equal(blocks, whole)
        assert frame.rows(5, 5).shape == (0, whole.shape[1])


def test_thread_count_does_not_change_results():
    atoms = noisy_cu((4, 4, 4), seed=5)
    one = qc.descriptors(atoms, n_threads=1)
    two = qc.descriptors(atoms, n_threads=qc.get_num_threads())
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: [], "no structures"),
        (lambda: [noisy_cu((1, 1, 1)), Atoms()], "structure 1: structure has zero atoms"),
        (lambda: Atoms("Cu2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "atom 1 has NaN"),
        (lambda: Atoms("Cu", positions=[[0, 0, 0]], cell=[0, 0, 0], pbc=True), "zero length"),
        (
            lambda: Atoms("Cu", positions=[[0, 0, 0]], cell=[[1, 0, 0], [2, 0, 0], [0, 0, 1]],
                          pbc=True),
            "zero volume",
        ),
        (lambda: [Atoms("Cu")] + ["not atoms"], "structure 1: is a str"),
    ],
)
def test_bad_structures(make, match):
    with pytest.raises(QuestsError, match=match) as err:
        qc.descriptors(make())
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("k", "cutoff"), [(0, 5.0), (-3, 5.0), (2.5, 5.0), (32, 0.0), (32, -1)])
def test_bad_parameters(k, cutoff):
    with pytest.raises(QuestsError, match="k must be|cutoff must be"):
        qc.descriptors(noisy_cu((1, 1, 1)), k=k, cutoff=cutoff)


def test_non_periodic_axis_may_have_zero_cell_vector():
    wire = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]],
                 cell=[10.0, 0.0, 0.0], pbc=(True, False, False))
    x = qc.descriptors(wire)
    assert np.all(np.isfinite(x)) and x.shape == (4, 63)


def test_cache_keys_follow_the_descriptor_version():
    """Descriptors cached with the earlier layout (version 1) are never reused."""
    from quests_core import cache_keys
    from quests_core.descriptors import DESCRIPTOR_VERSION

    assert DESCRIPTOR_VERSION == "2"
    key = cache_keys.descriptor_key("content", 32, 5.0, species=["Au", "Cu"])
    assert key == cache_keys.descriptor_key("content", 32, 5.0, species=["Cu", "Au"], version="2")
    assert key != cache_keys.descriptor_key("content", 32, 5.0, species=["Au", "Cu"], version="1")
