"""Entropy difference between phases at the volume-rule bandwidth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

import quests_core as qc
from quests_core.analysis import thermo
from quests_core.errors import QuestsError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def cu(stdev: float, seed: int = 0, a: float = 3.615):
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((3, 3, 3))
    if stdev:
        atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def desc(atoms):
    return qc.descriptors([atoms], k=16, cutoff=4.5)


def test_identical_phases_have_zero_difference():
    x = desc(cu(0.1, 1))
    res = thermo.phase_entropy_difference(x, x.copy(), volume_a=11.8, volume_b=11.8)
    assert res.delta == 0.0
    assert res.h_a == res.h_b == pytest.approx(float(qc.bandwidth_from_volume(11.8)))
    assert res.mode == "each" and res.n_envs == len(x)


def test_perfect_crystal_has_zero_entropy_and_disorder_adds_entropy():
    perfect = desc(cu(0.0))
    hot = desc(cu(0.15, 2))
    res = thermo.phase_entropy_difference(perfect, hot, volume_a=11.81, volume_b=11.81)
    assert 0.0 <= res.entropy_a < 1e-2  # near 0: lattice ties perturb X2 very slightly
    assert res.delta == pytest.approx(res.entropy_b - res.entropy_a) and res.delta > 0.5
    assert res.delta_j_per_mol_k == pytest.approx(res.delta * 8.314462618)


def test_bandwidth_modes_and_fixed_bandwidth_match_core_entropy():
    a, b = desc(cu(0.05, 3)), desc(cu(0.12, 4, a=3.7))
    each = thermo.phase_entropy_difference(a, b, volume_a=11.8, volume_b=12.7)
    assert each.h_a == pytest.approx(float(qc.bandwidth_from_volume(11.8)))
    assert each.h_b == pytest.approx(float(qc.bandwidth_from_volume(12.7)))
    assert each.h_a > each.h_b  # the rule decreases with volume above ~0
    common = thermo.phase_entropy_difference(a, b, volume_a=11.8, volume_b=12.7, mode="common")
    assert common.h_a == common.h_b == pytest.approx(float(qc.bandwidth_from_volume(12.25)))
    fixed = thermo.phase_entropy_difference(a, b, h=0.05)
    expected = float(qc.entropy(b, 0.05)) - float(qc.entropy(a, 0.05))
    assert fixed.mode == "fixed" and fixed.delta == pytest.approx(expected, abs=1e-9)


def test_equal_size_subsampling():
    a, b = desc(cu(0.05, 5)), desc(cu(0.1, 6))
    res = thermo.phase_entropy_difference(a[:50], b, h=0.05)
    assert res.n_envs == 50
    res = thermo.phase_entropy_difference(a, b, h=0.05, max_envs=20, seed=1)
    assert res.n_envs == 20
    assert res.entropy_a <= np.log(20) + 1e-12


def test_bad_input():
    x = desc(cu(0.1, 7))
    with pytest.raises(QuestsError, match="volumes"):
        thermo.phase_entropy_difference(x, x)
    with pytest.raises(QuestsError, match="dimension"):
        thermo.phase_entropy_difference(x, x[:, :-1], h=0.05)
    with pytest.raises(QuestsError, match="at least 2"):
        thermo.phase_entropy_difference(x[:1], x, h=0.05)
    with pytest.raises(QuestsError, match="positive"):
        thermo.phase_entropy_difference(x, x, volume_a=-1.0, volume_b=12.0)
    with pytest.raises(QuestsError, match="mode"):
        thermo.phase_entropy_difference(x, x, volume_a=12.0, volume_b=12.0, mode="median")
    with pytest.raises(QuestsError, match="periodic"):
        from ase import Atoms

        thermo.volume_per_atom([Atoms("Cu2", positions=[[0, 0, 0], [2, 0, 0]])])
    assert thermo.volume_per_atom([cu(0.0)]) == pytest.approx(3.615**3 / 4)


def test_sample_solid_versus_melt():
    solid_path = SAMPLE / "cu_solid_400K.extxyz"
    quench_path = SAMPLE / "cu_quench.extxyz"
    if not (solid_path.exists() and quench_path.exists()):
        pytest.skip("sample Cu solid / quench trajectories not generated yet")
    from ase.io import read

    solid = read(solid_path, index=":")[-3:]
    melt = read(quench_path, index=":3")  # the first frames are liquid
    res = thermo.phase_entropy_difference(
        qc.descriptors(solid),
        qc.descriptors(melt),
        volume_a=thermo.volume_per_atom(solid),
        volume_b=thermo.volume_per_atom(melt),
        max_envs=3000,
    )
    assert res.volume_b > res.volume_a  # the melt is less dense
    assert res.delta > 0.0  # and has more entropy
