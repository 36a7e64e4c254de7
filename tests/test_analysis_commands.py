"""CLI subcommands of the analyses: real runs on small files and one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

import quests_core as qc
from quests_core.analysis import commands

SMALL = ["-k", "12", "--cutoff", "4.0"]


def crystal(seed: int, stdev: float = 0.03):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 2))
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def gas(seed: int, n: int = 32, length: float = 7.5):
    rng = np.random.default_rng(seed)
    atoms = Atoms(f"Cu{n}", positions=rng.uniform(0, length, (n, 3)), cell=[length] * 3, pbc=True)
    return atoms


def run(argv, capsys):
    code = commands.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err):
    assert code == 1
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


# ---------------------------------------------------------------------------
# compress
# ---------------------------------------------------------------------------


def test_compress_duplicates_to_one_structure(tmp_path, capsys):
    src = tmp_path / "dups.extxyz"
    write(src, [crystal(1) for _ in range(6)])
    out = tmp_path / "small.extxyz"
    report = tmp_path / "report.csv"
    code, text, _ = run(
        [
            "compress",
            str(src),
            "--fraction",
            "1.0",
            "--until-covered",
            "-o",
            str(out),
            "--compare",
            "--sweep",
            "0.5",
            "--report",
            str(report),
            "--no-gap",
            *SMALL,
        ],
        capsys,
    )
    assert code == 0
    assert "kept 1 of 6 structures" in text and "overlap with full set = 1.0000" in text
    assert len(read(out, index=":")) == 1
    table = pd.read_csv(report)
    assert set(table["method"]) == {"msc", "fps", "kmeans", "random"}
    assert set(table["size"]) == {3, 6}
    np.testing.assert_allclose(table["overlap"], 1.0)


@pytest.mark.parametrize("fraction", ["0", "1.5", "-0.2"])
def test_compress_fraction_outside_unit_interval(tmp_path, capsys, fraction):
    src = tmp_path / "d.extxyz"
    write(src, [crystal(i) for i in range(3)])
    code, _, err = run(["compress", str(src), "--fraction", fraction, *SMALL], capsys)
    assert "fraction" in one_line_error(code, err)


def test_compress_empty_selection(tmp_path, capsys):
    src = tmp_path / "d.extxyz"
    write(src, [crystal(i) for i in range(3)])
    code, _, err = run(
        ["compress", str(src), "--index", "5:9", "--fraction", "0.5", *SMALL], capsys
    )
    one_line_error(code, err)


# ---------------------------------------------------------------------------
# active learning
# ---------------------------------------------------------------------------


def test_active_learning_run_and_missing_key(tmp_path, capsys):
    frames = [crystal(1), crystal(2, 0.1), crystal(1), gas(3)]
    for gen, atoms in zip([0, 0, 1, 2], frames, strict=True):
        atoms.info["round"] = gen
    src = tmp_path / "gens.extxyz"
    write(src, frames)
    out = tmp_path / "al.csv"
    code, _, _ = run(
        ["active-learning", str(src), "--generation-key", "round", "-o", str(out), *SMALL], capsys
    )
    assert code == 0
    table = pd.read_csv(out)
    assert table["generation"].tolist() == [0, 1, 2]
    assert table["novelty"].iloc[1] == 0.0 and table["novelty"].iloc[2] > 0.5
    code, _, err = run(["active-learning", str(src), "--generation-key", "cycle", *SMALL], capsys)
    assert "'cycle' missing" in one_line_error(code, err)


# ---------------------------------------------------------------------------
# uq
# ---------------------------------------------------------------------------


def _forces_file(path):
    frames = []
    rng = np.random.default_rng(0)
    for i, (label, atoms) in enumerate(
        [("train", crystal(1)), ("train", crystal(2)), ("test", crystal(3)), ("test", gas(4))]
    ):
        atoms.info["label"] = label
        ref = rng.normal(0, 0.1, (len(atoms), 3))
        atoms.arrays["forces_emt"] = ref
        shift = 0.02 if label == "train" or i == 2 else 1.0
        atoms.arrays["forces_model"] = ref + shift
        frames.append(atoms)
    write(path, frames)


def test_uq_with_two_force_arrays(tmp_path, capsys):
    src = tmp_path / "f.extxyz"
    _forces_file(src)
    out = tmp_path / "bins.csv"
    per_atom = tmp_path / "atoms.csv"
    code, text, _ = run(
        [
            "uq",
            str(src),
            "--test-label",
            "test",
            "--reference-label",
            "train",
            "--forces",
            "forces_model",
            "forces_emt",
            "--error-threshold",
            "0.5",
            "-o",
            str(out),
            "--atoms",
            str(per_atom),
            *SMALL,
        ],
        capsys,
    )
    assert code == 0
    bins = pd.read_csv(out)
    assert len(bins) == 20
    atoms = pd.read_csv(per_atom)
    assert len(atoms) == 64
    np.testing.assert_allclose(atoms["force_error"].iloc[:32], np.sqrt(3) * 0.02, rtol=1e-6)
    # the gas frame is far from the crystal training set and has the large errors
    assert np.all(atoms["dH"].iloc[32:] > 0)
    assert "catches 100.0% of them" in text


def test_uq_missing_reference_and_mismatched_settings(tmp_path, capsys):
    src = tmp_path / "f.extxyz"
    _forces_file(src)
    code, _, err = run(["uq", str(src), "--error-key", "forces_model", *SMALL], capsys)
    assert "missing reference" in one_line_error(code, err)
    ref = tmp_path / "ref.npz"
    x = qc.descriptors([crystal(1)], k=12, cutoff=4.0)
    commands.save_descriptors(ref, x, k=12, cutoff=4.0)
    code, _, err = run(
        ["uq", str(src), "--reference", str(ref), "--error-key", "forces_model", "-k", "16"],
        capsys,
    )
    assert "k differs" in one_line_error(code, err)
    bare = tmp_path / "ref.npy"
    np.save(bare, x)
    code, _, err = run(
        ["uq", str(src), "--reference", str(bare), "--error-key", "forces_model", "-k", "16"],
        capsys,
    )
    assert "does not match k=16" in one_line_error(code, err)
    code, _, _ = run(
        ["uq", str(src), "--reference", str(bare), "--error-key", "forces_model", *SMALL], capsys
    )
    assert code == 0
    code, _, err = run(
        [
            "uq",
            str(src),
            "--reference",
            str(ref),
            "--error-key",
            "forces_model",
            "-k",
            "12",
            "--cutoff",
            "5.0",
        ],
        capsys,
    )
    assert "cutoff differs" in one_line_error(code, err)
    code, _, err = run(
        ["uq", str(src), "--reference", str(ref), "--error-key", "nope", *SMALL], capsys
    )
    assert "'nope' missing" in one_line_error(code, err)
    code, _, err = run(
        [
            "uq",
            str(src),
            "--test-label",
            "validation",
            "--reference-label",
            "train",
            "--error-key",
            "forces_model",
            *SMALL,
        ],
        capsys,
    )
    assert "validation" in one_line_error(code, err)


# ---------------------------------------------------------------------------
# nucleation
# ---------------------------------------------------------------------------


def test_nucleation_run_writes_cluster_ids(tmp_path, capsys):
    solid = crystal(1)
    traj = [gas(5), solid.copy(), gas(6)]
    for i, atoms in enumerate(traj):
        atoms.info["temperature"] = 900.0 + 10 * i
        atoms.info["time"] = float(i)
    tpath, rpath = tmp_path / "traj.extxyz", tmp_path / "solid.extxyz"
    write(tpath, traj)
    write(rpath, solid)
    table, dist, xyz = tmp_path / "t.csv", tmp_path / "d.csv", tmp_path / "c.extxyz"
    code, text, _ = run(
        [
            "nucleation",
            str(tpath),
            "--reference",
            str(rpath),
            "-o",
            str(table),
            "--distribution",
            str(dist),
            "--extxyz",
            str(xyz),
            "-q",
            *SMALL,
        ],
        capsys,
    )
    assert code == 0
    frames = pd.read_csv(table)
    assert frames["largest_cluster"].iloc[1] == 32  # the reference frame itself
    assert frames["n_solid"].iloc[1] == 32
    # one critical band for the pooled frames, at their mean temperature 910 K
    from quests_core.analysis import cnt

    assert "critical_n_min" not in frames.columns
    r_lo = cnt.cnt_critical_radius(910.0, 0.177, **cnt.CU.kwargs())
    n_lo = cnt.radius_to_size(r_lo, cnt.CU_V_ATOM)
    assert "T = 910.0 K" in text and f"n* = {n_lo:.4g}-" in text and f"r* = {r_lo:.4g}-" in text
    back = read(xyz, index=":")
    assert back[1].arrays["cluster"].tolist() == [0] * 32
    assert "dH" in back[0].arrays
    sizes = pd.read_csv(dist)
    assert 32 in sizes["size"].tolist()


def test_nucleation_constants_default_to_cu_only_for_cu(tmp_path, capsys):
    traj = [gas(5), gas(6)]
    for i, atoms in enumerate(traj):
        atoms.set_chemical_symbols(["Ag"] * len(atoms))
        atoms.info["temperature"] = 1000.0 + 20 * i
    tpath = tmp_path / "ag.extxyz"
    write(tpath, traj)
    base = ["nucleation", str(tpath), "--reference", str(tpath), "-q", *SMALL]
    code, _, err = run(base, capsys)
    line = one_line_error(code, err)
    assert "ag.extxyz" in line and "Ag" in line and "--t-melt (K)" in line
    assert "--density (g/cm^3), --number-density (atoms/Å^3) or --v-atom (Å^3)" in line
    consts = ["--t-melt", "1235", "--latent-heat", "11.3", "--gamma-min", "0.1",
              "--gamma-max", "0.2"]
    code, _, err = run([*base, *consts], capsys)
    assert "--density" in one_line_error(code, err)
    code, text, _ = run([*base, *consts, "--density", "10.49"], capsys)
    assert code == 0
    from ase.data import atomic_masses, atomic_numbers

    from quests_core.analysis import cnt

    v = atomic_masses[atomic_numbers["Ag"]] / (10.49 * cnt.AVOGADRO) * 1e24
    r = cnt.cnt_critical_radius(1010.0, 0.1, t_melt=1235.0, latent_heat=11.3, v_atom=v)
    assert f"V_atom = {v:.4g} Å^3/atom" in text and f"r* = {r:.4g}-" in text
    # the fit weights reach the fit (two frames of a gas have too few cluster sizes)
    code, _, err = run([*base, *consts, "--v-atom", "17.1", "--fit", "--weights", "none"],
                       capsys)
    assert "at least 4 distinct cluster sizes" in one_line_error(code, err)
    with pytest.raises(SystemExit):
        commands.main([*base, "--v-atom", "17", "--density", "10"])
    capsys.readouterr()


def test_nucleation_missing_reference_file_and_bad_frames(tmp_path, capsys):
    tpath = tmp_path / "traj.extxyz"
    write(tpath, [gas(1), gas(2)])
    code, _, err = run(
        ["nucleation", str(tpath), "--reference", str(tmp_path / "none.extxyz"), *SMALL], capsys
    )
    assert "file not found" in one_line_error(code, err)
    with pytest.raises(SystemExit) as exc:
        commands.main(["nucleation", str(tpath)])
    assert exc.value.code != 0
    capsys.readouterr()
    code, _, err = run(
        ["nucleation", str(tpath), "--reference", str(tpath), "--frames", "5:", "-q", *SMALL],
        capsys,
    )
    assert "no frames" in one_line_error(code, err)


# ---------------------------------------------------------------------------
# phase entropy
# ---------------------------------------------------------------------------


def test_phase_entropy_prints_bandwidths(tmp_path, capsys):
    a, b = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    write(a, [crystal(1, 0.02)])
    write(b, [crystal(2, 0.2)])
    code, text, _ = run(["phase-entropy", str(a), str(b), *SMALL], capsys)
    assert code == 0
    h = float(qc.bandwidth_from_volume(3.615**3 / 4))
    assert f"h = {h:.5f}" in text
    assert "H_B - H_A = " in text and "bandwidth mode pooled" in text
    assert "at one bandwidth" in text and "not a melting entropy" not in text
    assert "an entropy drop along a trajectory is not one" in text
    code, _, err = run(["phase-entropy", str(a), str(b), "--max-envs", "1", *SMALL], capsys)
    one_line_error(code, err)


def test_phase_entropy_default_is_one_pooled_bandwidth(tmp_path, capsys):
    a, b = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    dense = crystal(1, 0.02)
    loose = bulk("Cu", "fcc", a=3.8, cubic=True).repeat((2, 2, 2))
    loose.rattle(stdev=0.2, seed=2)
    write(a, [dense])
    write(b, [loose])
    code, text, _ = run(["phase-entropy", str(a), str(b), *SMALL], capsys)
    assert code == 0
    h = float(qc.bandwidth_from_volume((3.615**3 + 3.8**3) / 8))  # 32 atoms each
    assert text.count(f"h = {h:.5f}") == 3 and "bandwidth mode pooled" in text  # A, B, note
    xa = qc.descriptors([dense], k=12, cutoff=4.0)
    xb = qc.descriptors([loose], k=12, cutoff=4.0)
    delta = float(qc.entropy(xb, h)) - float(qc.entropy(xa, h))
    assert f"H_B - H_A = {delta:.4f} k_B/atom" in text
    code, text, _ = run(["phase-entropy", str(a), str(b), "--mode", "each", *SMALL], capsys)
    assert code == 0 and "bandwidth mode each" in text and "not the paper's" in text
    assert f"h = {float(qc.bandwidth_from_volume(3.8**3 / 4)):.5f}" in text


def test_register_adds_all_subcommands():
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    commands.register(sub)
    for name in ("nucleation", "compress", "active-learning", "uq", "phase-entropy"):
        assert name in sub.choices
        assert callable(sub.choices[name].get_default("func"))


def test_main_cli_runs_analysis_subcommands(tmp_path, capsys):
    from quests_core import cli

    src = tmp_path / "d.extxyz"
    write(src, [crystal(i) for i in range(4)])
    code = cli.main(["compress", str(src), "--fraction", "1.5", *SMALL])
    _, err = capsys.readouterr()
    assert "fraction" in one_line_error(code, err)
    code = cli.main(["compress", str(src), "--fraction", "0.5", "--method", "fps", *SMALL])
    out, _ = capsys.readouterr()
    assert code == 0 and "fps: kept 2 of 4 structures" in out
