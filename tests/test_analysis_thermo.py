"""Entropy difference between two sets of structures at one bandwidth (the paper's way)."""

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
    assert res.mode == "pooled" and res.n_envs == len(x)
    assert res.one_bandwidth and res.volume_pooled == pytest.approx(11.8)


def test_perfect_crystal_has_zero_entropy_and_disorder_adds_entropy():
    perfect = desc(cu(0.0))
    hot = desc(cu(0.15, 2))
    res = thermo.phase_entropy_difference(perfect, hot, volume_a=11.81, volume_b=11.81)
    assert 0.0 <= res.entropy_a < 1e-2  # near 0: lattice ties perturb X2 very slightly
    assert res.delta == pytest.approx(res.entropy_b - res.entropy_a) and res.delta > 0.5
    assert res.delta_j_per_mol_k == pytest.approx(res.delta * 8.314462618)


def test_bandwidth_modes_and_fixed_bandwidth_match_core_entropy():
    a, b = desc(cu(0.05, 3)), desc(cu(0.12, 4, a=3.7))
    each = thermo.phase_entropy_difference(a, b, volume_a=11.8, volume_b=12.7, mode="each")
    assert each.h_a == pytest.approx(float(qc.bandwidth_from_volume(11.8)))
    assert each.h_b == pytest.approx(float(qc.bandwidth_from_volume(12.7)))
    assert each.h_a > each.h_b  # the rule decreases with volume above ~0
    assert not each.one_bandwidth and "not the paper's" in each.describe()
    pooled = thermo.phase_entropy_difference(a, b, volume_a=11.8, volume_b=12.7)
    assert pooled.mode == "pooled"
    assert pooled.h_a == pooled.h_b == pytest.approx(float(qc.bandwidth_from_volume(12.25)))
    expected = float(qc.entropy(b, pooled.h_a)) - float(qc.entropy(a, pooled.h_a))
    assert pooled.delta == pytest.approx(expected, abs=1e-12)
    # each phase counts once (the paper's "average of the volumes between the alpha and
    # beta phases"): 50 atoms at 11.8 and 108 at 12.7 Å^3/atom still pool to 12.25
    part = thermo.phase_entropy_difference(a[:50], b, volume_a=11.8, volume_b=12.7)
    assert part.volume_pooled == (11.8 + 12.7) / 2
    assert part.h_a == pooled.h_a == float(qc.bandwidth_from_volume((11.8 + 12.7) / 2))
    assert "mean of the two phases'" in part.volume_text()
    fixed = thermo.phase_entropy_difference(a, b, h=0.05)
    expected = float(qc.entropy(b, 0.05)) - float(qc.entropy(a, 0.05))
    assert fixed.mode == "fixed" and fixed.delta == pytest.approx(expected, abs=1e-9)
    assert "one fixed bandwidth h = 0.05000" in fixed.describe()


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
    # atom-weighted: total volume over total atoms (108 atoms at a=3.615, 32 at a=3.7)
    small = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 2, 2))
    v = (108 * 3.615**3 / 4 + 32 * 3.7**3 / 4) / 140
    assert thermo.volume_per_atom([cu(0.0), small]) == pytest.approx(v, rel=1e-12)


def test_sample_solid_versus_melt_at_one_bandwidth():
    solid_path = SAMPLE / "cu_solid_400K.extxyz"
    melt_path = SAMPLE / "cu_melt.extxyz"
    if not (solid_path.exists() and melt_path.exists()):
        pytest.skip("sample Cu solid / melt trajectories not generated yet")
    from ase.io import read

    from quests_core.settings import volume_rule_bandwidth

    solid = read(solid_path, index=":")
    melt = read(melt_path, index=":")
    xa, xb = qc.descriptors(solid), qc.descriptors(melt)
    va, vb = thermo.volume_per_atom(solid), thermo.volume_per_atom(melt)
    assert len(xa) == len(xb) == 8640 and vb > va  # the melt is less dense
    res = thermo.phase_entropy_difference(xa, xb, volume_a=va, volume_b=vb)
    # the default: one bandwidth, the volume rule of the mean of the two phases' volumes
    # per atom (each phase's own atom-weighted mean, then each phase once)
    h = volume_rule_bandwidth([va, vb], [1, 1])
    assert h == float(qc.bandwidth_from_volume((va + vb) / 2))
    assert res.mode == "pooled" and res.h_a == res.h_b == pytest.approx(h, rel=1e-12)
    expected = float(qc.entropy(xb, h)) - float(qc.entropy(xa, h))
    assert res.delta == pytest.approx(expected, abs=1e-9)
    assert res.delta == pytest.approx(1.526, abs=1e-3)
    # a bandwidth per phase reports a different number
    each = thermo.phase_entropy_difference(xa, xb, volume_a=va, volume_b=vb, mode="each")
    assert each.delta == pytest.approx(1.953, abs=1e-3)
