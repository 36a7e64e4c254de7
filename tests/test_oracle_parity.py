"""Parity with the published reference implementation (PyPI ``quests``, a test-only oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from conftest import noisy_cu

import quests_core as qc

quests_descriptor = pytest.importorskip("quests.descriptor")
quests_entropy = pytest.importorskip("quests.entropy")

pytestmark = pytest.mark.oracle


def _structures():
    cubic = noisy_cu((3, 3, 3), noise=0.07, seed=1)
    triclinic = bulk("Cu", "fcc", a=3.61) * (2, 2, 2)  # heights 4.2 Å < cutoff
    triclinic.rattle(0.06, seed=2)
    sheared = noisy_cu((2, 2, 3), noise=0.05, seed=3)
    cell = sheared.cell.array.copy()
    cell[2] += [2.0, 1.1, 0.0]
    sheared.set_cell(cell, scale_atoms=True)
    small_cubic = noisy_cu((1, 1, 2), noise=0.08, seed=4)  # 3.61 Å < cutoff
    cluster = noisy_cu((3, 3, 3), noise=0.05, seed=5)
    cluster.pbc = False
    return {
        "cubic": cubic,
        "triclinic_small": triclinic,
        "sheared": sheared,
        "small_cubic": small_cubic,
        "non_periodic": cluster,
    }


@pytest.mark.parametrize("name", list(_structures()))
def test_descriptors_match_oracle(name):
    atoms = _structures()[name]
    ours = qc.descriptors(atoms)
    ref = quests_descriptor.get_descriptors([atoms], k=32, cutoff=5.0)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("k", [8, 16])
def test_descriptors_match_oracle_other_k(k):
    atoms = noisy_cu((3, 3, 3), noise=0.05, seed=9)
    ours = qc.descriptors(atoms, k=k, cutoff=4.0)
    ref = quests_descriptor.get_descriptors([atoms], k=k, cutoff=4.0)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)


@pytest.fixture(scope="module")
def sets():
    x = qc.descriptors(noisy_cu((4, 4, 4), noise=0.05, seed=6))
    y = qc.descriptors(noisy_cu((3, 3, 3), noise=0.12, seed=7))
    return x, y


@pytest.mark.parametrize("h", [0.01, 0.015, 0.05])
def test_entropy_delta_diversity_match_oracle(sets, h):
    x, y = sets
    assert qc.entropy(x, h) == pytest.approx(quests_entropy.entropy(x, h), rel=1e-8)
    assert qc.diversity(x, h) == pytest.approx(quests_entropy.diversity(x, h), rel=1e-8)
    ref = quests_entropy.delta_entropy(y, x, h)
    ours = qc.delta_entropy(y, x, h)
    finite = np.isfinite(ref)
    assert finite.any()
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-8, atol=1e-12)
    assert np.all(np.isfinite(ours))
    if not finite.all():  # the oracle underflows to inf: ours stays finite and above
        assert ours[~finite].min() > ours[finite].max()


def test_oracle_infinities_become_large_finite_values(sets):
    x, y = sets
    y_far = np.vstack([y[:20], y[:20] + 0.5])
    with np.errstate(divide="ignore"):
        ref = quests_entropy.delta_entropy(y_far, x, 0.015)
    ours = qc.delta_entropy(y_far, x, 0.015)
    assert np.isinf(ref).any()
    finite = np.isfinite(ref)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-8, atol=1e-12)
    assert np.all(np.isfinite(ours))
    assert ours[~finite].min() > ours[finite].max()


def test_bandwidth_vector_matches_oracle(sets):
    x, _ = sets
    hs = np.array([0.01, 0.02, 0.04])
    np.testing.assert_allclose(qc.entropy(x, hs), quests_entropy.entropy(x, hs), rtol=1e-8)


def test_bandwidth_rule_matches_oracle():
    for v in (8.0, 11.8, 17.5):
        assert qc.bandwidth_from_volume(v) == pytest.approx(quests_entropy.get_bandwidth(v))
