"""The one settings object, the one volume rule, the one overlap matrix and per-frame statistics."""

from __future__ import annotations

import numpy as np
import pytest

import quests_core as qc
from quests_core.errors import QuestsError
from quests_core.overlaps import overlap_matrix, sample_rows
from quests_core.settings import (
    DEFAULTS,
    Settings,
    normalize_species,
    volume_rule_bandwidth,
)
from quests_core.trajectory import frame_statistics, per_frame_stats


def test_defaults_are_the_papers():
    assert (DEFAULTS.k, DEFAULTS.cutoff, DEFAULTS.bandwidth) == (32, 5.0, 0.015)
    assert DEFAULTS.bandwidth_rule == "fixed" and DEFAULTS.species is None


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"k": 0}, "k must be an integer >= 1"),
        ({"k": 2000}, "between 1 and 1024"),
        ({"cutoff": -1}, "cutoff"),
        ({"bandwidth": 0}, "bandwidth h must be finite and > 0"),
        ({"bandwidth": [0.01, 0.02]}, "one number"),
        ({"precision": "float16"}, "precision must be one of float64, float32"),
        ({"backend": "fortran"}, "backend must be one of"),
        ({"bandwidth_rule": "median"}, "bandwidth_rule must be one of fixed, volume"),
        ({"threads": 0}, "threads must be an integer"),
        ({"species": "Cu,Qq"}, "'Qq' is not an element symbol"),
    ],
)
def test_bad_settings_are_one_line_errors(changes, message):
    with pytest.raises(QuestsError, match=message) as info:
        DEFAULTS.replace(**changes)
    assert "\n" not in str(info.value)


def test_settings_are_frozen_hashable_and_round_trip():
    s = Settings(k="16", cutoff=4, species=["Cu", "Au", "Cu"], threads=2.0)
    assert (s.k, s.cutoff, s.species, s.threads) == (16, 4.0, ("Au", "Cu"), 2)
    assert hash(s) == hash(Settings.from_mapping(s.as_dict()))
    assert Settings.from_mapping({**s.as_dict(), "unrelated": 1}) == s
    with pytest.raises(AttributeError):
        s.k = 8  # type: ignore[misc]
    assert s.descriptor_kwargs() == {"k": 16, "cutoff": 4.0, "species": ["Au", "Cu"]}
    assert s.kernel_kwargs() == {"precision": "float64", "n_threads": 2, "backend": "auto"}


@pytest.mark.parametrize(
    "given, expected",
    [(None, None), ("", None), ([], None), ("Cu", ("Cu",)), ("Cu, Au", ("Au", "Cu")),
     ("Ni Cu Ni", ("Cu", "Ni")), (["Zr", "Cu", "Al"], ("Al", "Cu", "Zr"))],
)
def test_normalize_species(given, expected):
    assert normalize_species(given) == expected


def test_volume_rule_is_the_atom_weighted_mean_volume_per_atom():
    # two frames: 4 atoms at 20 Å^3/atom and 100 atoms at 11 Å^3/atom
    v, n = np.array([20.0, 11.0]), np.array([4, 100])
    mean_v = (20.0 * 4 + 11.0 * 100) / 104
    assert volume_rule_bandwidth(v, n) == pytest.approx(float(qc.bandwidth_from_volume(mean_v)),
                                                        rel=1e-15)
    # SPEC section 2: h(V) = 0.0897141 exp(-0.5 (V/10.896)^2) + 0.0119417
    expected = 0.0897141 * np.exp(-0.5 * (mean_v / 10.896) ** 2) + 0.0119417
    assert volume_rule_bandwidth(v, n) == pytest.approx(expected, rel=1e-12)
    # frames without a cell are left out; none at all is an error naming the source
    assert volume_rule_bandwidth([np.nan, 11.0], [5, 100]) == pytest.approx(
        float(qc.bandwidth_from_volume(11.0)))
    with pytest.raises(QuestsError, match="^cluster.xyz: the volume rule needs periodic cells"):
        volume_rule_bandwidth([np.nan], [3], source="cluster.xyz")


def test_resolve_bandwidth_reads_the_frames_table(tmp_path):
    from ase.build import bulk

    from quests_core.dataset import Dataset

    frames = [bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2), bulk("Cu", "fcc", a=3.7)]
    ds = Dataset.from_structures(frames, name="two")
    v = np.array([a.get_volume() / len(a) for a in frames])
    n = np.array([len(a) for a in frames])
    expected = float(qc.bandwidth_from_volume(float((v * n).sum() / n.sum())))
    assert Settings(bandwidth_rule="volume").resolve_bandwidth(ds.frames) == pytest.approx(expected)
    assert Settings(bandwidth=0.02).resolve_bandwidth(ds.frames) == 0.02


def _clouds():
    rng = np.random.default_rng(7)
    return {"a": rng.normal(size=(240, 6)), "b": rng.normal(size=(180, 6)) + 0.8,
            "c": rng.normal(size=(150, 6)) * 2.0}


def test_overlap_matrix_is_overlap_of_every_pair():
    groups = _clouds()
    seen = []
    res = overlap_matrix(groups, 0.6, keep_delta=True, progress=lambda d, t: seen.append((d, t)))
    for i, a in enumerate(groups):
        for j, b in enumerate(groups):
            assert res.matrix[i, j] == qc.overlap(groups[a], groups[b], 0.6)
            np.testing.assert_allclose(res.delta[(i, j)],
                                       qc.delta_entropy(groups[a], groups[b], 0.6), rtol=1e-6)
    assert np.all(np.diag(res.matrix) == 1.0)
    assert res.sizes == {"a": 240, "b": 180, "c": 150}
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1][0] == seen[-1][1]
    assert list(res.to_frame().columns) == ["a", "b", "c"]


def test_overlap_matrix_with_one_bandwidth_per_reference_and_sampling():
    groups = _clouds()
    hs = {"a": 0.5, "b": 0.7, "c": 0.9}
    res = overlap_matrix(groups, hs)
    assert res.matrix[0, 2] == qc.overlap(groups["a"], groups["c"], 0.9)
    assert res.matrix[2, 0] == qc.overlap(groups["c"], groups["a"], 0.5)
    sampled = overlap_matrix(groups, 0.6, max_n=100, seed=3)
    rng = np.random.default_rng(3)
    rows = {name: sample_rows(len(x), 100, rng) for name, x in groups.items()}
    assert sampled.matrix[1, 0] == qc.overlap(groups["b"][rows["b"]], groups["a"][rows["a"]], 0.6)
    assert sampled.sizes == {"a": 100, "b": 100, "c": 100}
    with pytest.raises(QuestsError, match="different widths"):
        overlap_matrix({"a": groups["a"], "x": np.ones((3, 4))}, 0.5)


def test_frame_statistics_match_the_entropy_functions():
    groups = _clouds()
    stats, dh = frame_statistics(groups["b"], groups["a"], 0.6, h_frame=0.7)
    assert stats.H == pytest.approx(qc.entropy(groups["b"], 0.7), rel=1e-12)
    np.testing.assert_allclose(dh, qc.delta_entropy(groups["b"], groups["a"], 0.6), rtol=1e-12)
    assert stats.mean_dH == pytest.approx(dh.mean()) and stats.max_dH == dh.max()
    assert stats.frac_novel == np.mean(dh > 0) and stats.exact and stats.H_stderr == 0.0
    big = np.random.default_rng(5).normal(size=(4000, 6))
    sampled, _ = frame_statistics(big, groups["a"], 0.6, threshold=1000, seed=1)
    assert not sampled.exact and sampled.H_rows < 4000 and sampled.H_stderr > 0
    assert abs(sampled.H - qc.entropy(big, 0.6)) < 5 * sampled.H_stderr


def test_per_frame_stats():
    dh = np.array([-1.0, 2.0, 3.0, -4.0, -5.0, 0.0])
    mean, frac = per_frame_stats(dh, [2, 3, 1])
    np.testing.assert_allclose(mean, [0.5, -2.0, 0.0])
    np.testing.assert_allclose(frac, [0.5, 1 / 3, 0.0])
    with pytest.raises(QuestsError, match="6 dH values for 5 atoms"):
        per_frame_stats(dh, [2, 3])


def test_species_reach_the_engine_through_one_conversion():
    """``Settings.species_list`` (and ``descriptor_kwargs``) give the engine None for the
    single-component descriptor and the sorted symbols otherwise; the engine takes both
    (it refuses an empty list, which the old ``list(species or ())`` gave)."""
    from ase.build import bulk

    from quests_core.descriptors import descriptors
    from quests_core.errors import QuestsError

    one, two = Settings(), Settings(species="Cu,Au")
    assert one.species_list is None and two.species_list == ["Au", "Cu"]
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.symbols[0] = "Au"
    assert descriptors([atoms], **one.descriptor_kwargs()).shape == (32, 2 * one.k - 1)
    assert descriptors([atoms], **two.descriptor_kwargs()).shape == (32, 3 * (2 * two.k - 1))
    with pytest.raises(QuestsError, match="species list is empty"):
        descriptors([atoms], k=one.k, cutoff=one.cutoff, species=[])
