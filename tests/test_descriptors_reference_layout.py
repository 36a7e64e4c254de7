"""Column-for-column parity of the multicomponent descriptor with the reference
package ``quests`` (a test-only oracle): same values, same layout
``[X1_all, X1_s..., X2_all, X2_s...]``."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

import quests_core as qc
from quests_core.descriptors import block_columns, descriptor_width

quests_descriptor = pytest.importorskip("quests.descriptor")

pytestmark = pytest.mark.oracle


def random_alloy(fractions: dict[str, float], seed: int, reps=(4, 4, 4), noise=0.1):
    """fcc Cu supercell, sites given to other species at random, Gaussian noise on positions."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * reps
    atoms.positions += rng.normal(0.0, noise, atoms.positions.shape)
    symbols = np.array(atoms.get_chemical_symbols(), dtype=object)
    u = rng.random(len(atoms))
    lo = 0.0
    for sym, frac in fractions.items():
        symbols[(u >= lo) & (u < lo + frac)] = sym
        lo += frac
    atoms.set_chemical_symbols(list(symbols))
    return atoms


@pytest.mark.parametrize(
    ("fractions", "species", "k", "cutoff"),
    [
        ({"Au": 0.3}, ["Au", "Cu"], 32, 5.0),
        ({"Au": 0.3}, ["Au", "Cu"], 12, 4.0),
        ({"Au": 0.25, "Ag": 0.2}, ["Ag", "Au", "Cu"], 16, 5.0),
    ],
)
def test_multicomponent_descriptor_matches_the_reference_column_for_column(
    fractions, species, k, cutoff
):
    atoms = random_alloy(fractions, seed=12)
    counts = {s: atoms.get_chemical_symbols().count(s) for s in species}
    assert all(c > 10 for c in counts.values()), counts
    ours = qc.descriptors(atoms, k=k, cutoff=cutoff, species=species[::-1])
    ref = quests_descriptor.get_descriptors_multicomponent(
        [atoms], k=k, cutoff=cutoff, species=species
    )
    assert ours.shape == ref.shape == (len(atoms), descriptor_width(k, len(species)))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)
    # the blocks are where block_columns says: X1 of the whole structure first, then the
    # species' X1, then the X2s; the reference's plain descriptor is block 0
    plain = quests_descriptor.get_descriptors([atoms], k=k, cutoff=cutoff)
    x1, x2 = block_columns(k, len(species), 0)
    np.testing.assert_allclose(ours[:, x1], plain[:, :k], rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours[:, x2], plain[:, k:], rtol=0, atol=1e-10)
    symbols = np.array(atoms.get_chemical_symbols())
    for b, sp in enumerate(species, start=1):
        x1, x2 = block_columns(k, len(species), b)
        assert np.all(ours[symbols != sp][:, x1] == 0) and np.all(ours[symbols != sp][:, x2] == 0)
        assert np.all(ours[symbols == sp][:, x1].max(axis=1) > 0)


def test_multicomponent_dh_matches_the_reference():
    """Same descriptors, same dH: ours on our descriptors equals the reference's on its own."""
    quests_entropy = pytest.importorskip("quests.entropy")
    train = random_alloy({"Au": 0.3}, seed=1)
    test = random_alloy({"Au": 0.3}, seed=2, noise=0.2)
    species, h = ["Au", "Cu"], 0.015
    x_ref = quests_descriptor.get_descriptors_multicomponent([train], k=16, cutoff=5.0,
                                                             species=species)
    y_ref = quests_descriptor.get_descriptors_multicomponent([test], k=16, cutoff=5.0,
                                                             species=species)
    ours = qc.delta_entropy(qc.descriptors(test, k=16, cutoff=5.0, species=species),
                            qc.descriptors(train, k=16, cutoff=5.0, species=species), h=h)
    theirs = quests_entropy.delta_entropy(y_ref, x_ref, h=h)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8)
    assert np.ptp(ours) > 0.1  # a test set that differs from the training set somewhere
