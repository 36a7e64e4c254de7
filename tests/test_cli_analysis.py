"""The analysis subcommands of ``quests-dashboard`` (nucleation, compress, active-learning,
uq, phase-entropy): real runs on small files, the values they print and write, and
one-line errors. They share the common options and output of the other commands."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

import quests_core as qc
from quests_core.cli import build_parser, main
from quests_core.descriptor_files import save_descriptors

SMALL = ["-k", "12", "--cutoff", "4.0", "--no-progress"]
ANALYSES = ("nucleation", "compress", "active-learning", "uq", "phase-entropy")


def crystal(seed: int, stdev: float = 0.03):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 2))
    atoms.rattle(stdev=stdev, seed=seed)
    return atoms


def gas(seed: int, n: int = 32, length: float = 7.5):
    rng = np.random.default_rng(seed)
    return Atoms(f"Cu{n}", positions=rng.uniform(0, length, (n, 3)), cell=[length] * 3, pbc=True)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def summary(text: str) -> dict[str, str]:
    """The ``key  value`` lines printed before the first blank line."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        out[key] = value
    return out


def close(text: str, value: float) -> bool:
    """A printed number (6 significant digits) equals ``value``."""
    return float(text) == pytest.approx(value, rel=1e-5, abs=1e-9)


def one_line_error(code, err):
    assert code == 1
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_every_analysis_takes_the_common_options():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ANALYSES:
        p = sub.choices[name]
        options = {o for a in p._actions for o in a.option_strings}
        assert {"-k", "--cutoff", "--bandwidth", "--species", "--topology", "--cache-dir",
                "--no-cache", "--no-progress", "--quiet", "--threads", "-o"} <= options, name
        assert p.get_default("func").__module__.startswith("quests_core.cli."), name


@pytest.mark.parametrize("option", ["-k", "--cutoff", "--threads", "--bandwidth"])
def test_analysis_options_are_checked_positive(tmp_path, capsys, option):
    src = tmp_path / "d.extxyz"
    write(src, [crystal(1)])
    code = main(["compress", str(src), "--fraction", "0.5", option, "0"])
    _, err = capsys.readouterr()
    assert code == 2 and "expected a positive" in err


# ---------------------------------------------------------------------------
# compress
# ---------------------------------------------------------------------------


def test_compress_duplicates_to_one_structure(tmp_path, capsys):
    src = tmp_path / "dups.extxyz"
    write(src, [crystal(1) for _ in range(6)])
    out = tmp_path / "small.extxyz"
    report = tmp_path / "report.csv"
    code, text, err = run(
        ["compress", src, "--fraction", "1.0", "--until-covered", "-o", out, "--compare",
         "--sweep", "0.5", "--report", report, "--no-gap", *SMALL],
        capsys,
    )
    assert code == 0, err
    s = summary(text)
    assert s["structures"] == "6" and s["kept_structures"] == "1" and s["kept_environments"] == "32"
    assert close(s["overlap"], 1.0) and close(s["bandwidth"], 0.015)
    assert len(read(out, index=":")) == 1
    table = pd.read_csv(report)
    assert set(table["method"]) == {"msc", "fps", "kmeans", "random"}
    assert set(table["size"]) == {3, 6}
    np.testing.assert_allclose(table["overlap"], 1.0)


def test_compress_bandwidth_auto_is_the_volume_rule(tmp_path, capsys):
    src = tmp_path / "d.extxyz"
    write(src, [crystal(i) for i in range(4)])
    code, text, err = run(
        ["compress", src, "--fraction", "0.5", "--method", "fps", "--bandwidth", "auto", *SMALL],
        capsys,
    )
    assert code == 0, err
    s = summary(text)
    assert s["kept_structures"] == "2"
    assert close(s["bandwidth"], float(qc.bandwidth_from_volume(3.615**3 / 4)))


@pytest.mark.parametrize("fraction", ["0", "1.5", "-0.2"])
def test_compress_fraction_outside_unit_interval(tmp_path, capsys, fraction):
    src = tmp_path / "d.extxyz"
    write(src, [crystal(i) for i in range(3)])
    code, _, err = run(["compress", src, "--fraction", fraction, *SMALL], capsys)
    assert "fraction" in one_line_error(code, err)


def test_compress_empty_selection_and_bad_output(tmp_path, capsys):
    src = tmp_path / "d.extxyz"
    write(src, [crystal(i) for i in range(3)])
    code, _, err = run(["compress", src, "--index", "5:9", "--fraction", "0.5", *SMALL], capsys)
    assert "d.extxyz" in one_line_error(code, err)
    code, _, err = run(["compress", src, "--fraction", "0.5", "--report", tmp_path / "r.txt",
                        *SMALL], capsys)
    assert "for --report" in one_line_error(code, err)
    code, _, err = run(["compress", src, "--fraction", "0.5", "--report", tmp_path / "r.csv",
                        *SMALL], capsys)
    assert "--compare or --sweep" in one_line_error(code, err)


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
    code, text, err = run(
        ["active-learning", src, "--generation-key", "round", "-o", out, *SMALL], capsys
    )
    assert code == 0, err
    assert summary(text)["generations"] == "3"
    table = pd.read_csv(out)
    assert table["generation"].tolist() == [0, 1, 2]
    assert table["novelty"].iloc[1] == 0.0 and table["novelty"].iloc[2] > 0.5
    code, _, err = run(["active-learning", src, "--generation-key", "cycle", *SMALL], capsys)
    line = one_line_error(code, err)
    assert "'cycle' missing" in line and "gens.extxyz" in line


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
    code, text, err = run(
        ["uq", src, "--test-label", "test", "--reference-label", "train",
         "--forces", "forces_model", "forces_emt", "--error-threshold", "0.5",
         "-o", out, "--atoms", per_atom, *SMALL],
        capsys,
    )
    assert code == 0, err
    bins = pd.read_csv(out)
    assert len(bins) == 20
    atoms = pd.read_csv(per_atom)
    assert len(atoms) == 64
    np.testing.assert_allclose(atoms["force_error"].iloc[:32], np.sqrt(3) * 0.02, rtol=1e-6)
    # the gas frame is far from the crystal training set and has the large errors
    assert np.all(atoms["dH"].iloc[32:] > 0)
    s = summary(text)
    assert s["test_atoms"] == "64" and s["reference_atoms"] == "64"
    assert s["high_error_atoms"] == "32" and close(s["recall"], 1.0)
    # the same dH as the engine's
    x_ref = qc.descriptors([crystal(1), crystal(2)], k=12, cutoff=4.0)
    frames = read(src, index="2:")
    dh = qc.delta_entropy(qc.descriptors(frames, k=12, cutoff=4.0), x_ref, 0.015)
    np.testing.assert_allclose(atoms["dH"], dh, rtol=1e-6)


def test_uq_reference_descriptor_files_and_errors(tmp_path, capsys):
    src = tmp_path / "f.extxyz"
    _forces_file(src)
    code, _, err = run(["uq", src, "--error-key", "forces_model", *SMALL], capsys)
    assert "missing reference" in one_line_error(code, err)
    ref = tmp_path / "ref.npz"
    x = qc.descriptors([crystal(1)], k=12, cutoff=4.0)
    save_descriptors(ref, x, k=12, cutoff=4.0)
    base = ["uq", src, "--error-key", "forces_model"]
    code, _, err = run([*base, "--reference", ref, "-k", "16", "--cutoff", "4.0"], capsys)
    assert "k 12 in the file, 16 asked" in one_line_error(code, err)
    bare = tmp_path / "ref.npy"
    np.save(bare, x)
    code, _, err = run([*base, "--reference", bare, "-k", "16", "--cutoff", "4.0"], capsys)
    assert "width 23 in the file, 31 asked" in one_line_error(code, err)
    code, text, err = run([*base, "--reference", bare, *SMALL], capsys)
    assert code == 0, err
    assert summary(text)["reference_atoms"] == "32"
    code, _, err = run([*base, "--reference", ref, "-k", "12", "--cutoff", "5.0"], capsys)
    assert "cutoff 4 in the file, 5 asked" in one_line_error(code, err)
    code, _, err = run([*base, "--reference", ref, "--bandwidth", "auto", *SMALL], capsys)
    assert "--bandwidth auto needs the reference structures" in one_line_error(code, err)
    code, _, err = run(["uq", src, "--reference", ref, "--error-key", "nope", *SMALL], capsys)
    assert "'nope' missing" in one_line_error(code, err)
    code, _, err = run(["uq", src, "--test-label", "validation", "--reference-label", "train",
                        "--error-key", "forces_model", *SMALL], capsys)
    assert "validation" in one_line_error(code, err)


# ---------------------------------------------------------------------------
# nucleation
# ---------------------------------------------------------------------------


def test_nucleation_run_writes_cluster_ids(tmp_path, capsys):
    from quests_core.analysis import cnt

    solid = crystal(1)
    traj = [gas(5), solid.copy(), gas(6)]
    for i, atoms in enumerate(traj):
        atoms.info["temperature"] = 900.0 + 10 * i
        atoms.info["time"] = float(i)
    tpath, rpath = tmp_path / "traj.extxyz", tmp_path / "solid.extxyz"
    write(tpath, traj)
    write(rpath, solid)
    table, dist, xyz = tmp_path / "t.csv", tmp_path / "d.csv", tmp_path / "c.extxyz"
    code, text, err = run(
        ["nucleation", tpath, "--reference", rpath, "-o", table, "--distribution", dist,
         "--extxyz", xyz, "-q", *SMALL],
        capsys,
    )
    assert code == 0, err
    frames = pd.read_csv(table)
    assert frames["largest_cluster"].iloc[1] == 32  # the reference frame itself
    assert frames["n_solid"].iloc[1] == 32
    # one critical band for the pooled frames, at their mean temperature 910 K
    s = summary(text)
    assert "critical_n_min" not in frames.columns
    r_lo = cnt.cnt_critical_radius(910.0, 0.177, **cnt.CU.kwargs())
    r_hi = cnt.cnt_critical_radius(910.0, 0.221, **cnt.CU.kwargs())
    assert close(s["T_pooled_K"], 910.0) and s["pooled_frames"] == "3"
    assert close(s["r_star_min_A"], r_lo) and close(s["r_star_max_A"], r_hi)
    assert close(s["n_star_min"], cnt.radius_to_size(r_lo, cnt.CU_V_ATOM))
    back = read(xyz, index=":")
    assert back[1].arrays["cluster"].tolist() == [0] * 32
    assert "dH" in back[0].arrays and back[1].info["largest_cluster"] == 32
    sizes = pd.read_csv(dist)
    assert 32 in sizes["size"].tolist()
    # a reference given as the descriptor file of the solid gives the same table
    npy = tmp_path / "solid.npy"
    code, _, err = run(["descriptors", rpath, "-o", npy, *SMALL], capsys)
    assert code == 0, err
    again = tmp_path / "t2.csv"
    code, _, err = run(["nucleation", tpath, "--reference", npy, "-o", again, *SMALL], capsys)
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(again), frames)


def test_nucleation_constants_default_to_cu_only_for_cu(tmp_path, capsys):
    from ase.data import atomic_masses, atomic_numbers

    from quests_core.analysis import cnt

    traj = [gas(5), gas(6)]
    for i, atoms in enumerate(traj):
        atoms.set_chemical_symbols(["Ag"] * len(atoms))
        atoms.info["temperature"] = 1000.0 + 20 * i
    tpath = tmp_path / "ag.extxyz"
    write(tpath, traj)
    base = ["nucleation", tpath, "--reference", tpath, *SMALL]
    code, _, err = run(base, capsys)
    line = one_line_error(code, err)
    assert "ag.extxyz" in line and "Ag" in line and "--t-melt (K)" in line
    assert "--density (g/cm^3), --number-density (atoms/Å^3) or --v-atom (Å^3)" in line
    consts = ["--t-melt", "1235", "--latent-heat", "11.3", "--gamma-min", "0.1",
              "--gamma-max", "0.2"]
    code, _, err = run([*base, *consts], capsys)
    assert "--density" in one_line_error(code, err)
    code, text, err = run([*base, *consts, "--density", "10.49"], capsys)
    assert code == 0, err
    v = atomic_masses[atomic_numbers["Ag"]] / (10.49 * cnt.AVOGADRO) * 1e24
    r = cnt.cnt_critical_radius(1010.0, 0.1, t_melt=1235.0, latent_heat=11.3, v_atom=v)
    s = summary(text)
    assert close(s["V_atom_A3"], v) and close(s["r_star_min_A"], r)
    # the fit weights reach the fit (two frames of a gas have too few cluster sizes)
    code, _, err = run([*base, *consts, "--v-atom", "17.1", "--fit", "--weights", "none"],
                       capsys)
    assert "at least 4 distinct cluster sizes" in one_line_error(code, err)
    code, _, err = run([*base, "--v-atom", "17", "--density", "10"], capsys)
    assert code == 2 and "not allowed with argument" in err
    code, _, err = run([*base, "--v-atom", "-17"], capsys)
    assert code == 2 and "expected a positive number" in err


def test_nucleation_missing_reference_file_and_bad_frames(tmp_path, capsys):
    tpath = tmp_path / "traj.extxyz"
    write(tpath, [gas(1), gas(2)])
    code, _, err = run(
        ["nucleation", tpath, "--reference", tmp_path / "none.extxyz", *SMALL], capsys
    )
    line = one_line_error(code, err)
    assert "none.extxyz" in line
    code, _, err = run(["nucleation", tpath, *SMALL], capsys)
    assert code == 2 and "--reference" in err
    code, _, err = run(
        ["nucleation", tpath, "--reference", tpath, "--frames", "5:", *SMALL], capsys
    )
    assert "no frames" in one_line_error(code, err)


# ---------------------------------------------------------------------------
# phase entropy
# ---------------------------------------------------------------------------


def test_phase_entropy_default_bandwidth_is_its_own():
    """phase-entropy defaults to --bandwidth auto; the other commands keep the fixed default."""
    from quests_core.settings import DEFAULTS

    parser = build_parser()
    assert parser.parse_args(["phase-entropy", "a", "b"]).bandwidth == "auto"
    for argv in (["entropy", "a"], ["compress", "a", "--fraction", "1"], ["uq", "a"]):
        assert parser.parse_args(argv).bandwidth == DEFAULTS.bandwidth


def test_phase_entropy_prints_bandwidths(tmp_path, capsys):
    a, b = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    write(a, [crystal(1, 0.02)])
    write(b, [crystal(2, 0.2)])
    code, text, err = run(["phase-entropy", a, b, *SMALL], capsys)
    assert code == 0, err
    s = summary(text)
    h = float(qc.bandwidth_from_volume(3.615**3 / 4))
    assert close(s["h_A"], h) and close(s["h_B"], h) and s["bandwidth_mode"] == "pooled"
    assert f"at one bandwidth h = {h:.5f}" in s["note"]
    assert "an entropy drop along a trajectory is not one" in s["note"]
    code, _, err = run(["phase-entropy", a, b, "--max-envs", "1", *SMALL], capsys)
    assert "max_envs" in one_line_error(code, err)


def test_phase_entropy_default_is_one_pooled_bandwidth(tmp_path, capsys):
    a, b = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    dense = crystal(1, 0.02)
    loose = bulk("Cu", "fcc", a=3.8, cubic=True).repeat((2, 2, 2))
    loose.rattle(stdev=0.2, seed=2)
    write(a, [dense])
    write(b, [loose])
    code, text, err = run(["phase-entropy", a, b, *SMALL], capsys)
    assert code == 0, err
    s = summary(text)
    h = float(qc.bandwidth_from_volume((3.615**3 + 3.8**3) / 8))  # 32 atoms each
    assert close(s["h_A"], h) and close(s["h_B"], h) and s["bandwidth_mode"] == "pooled"
    xa = qc.descriptors([dense], k=12, cutoff=4.0)
    xb = qc.descriptors([loose], k=12, cutoff=4.0)
    delta = float(qc.entropy(xb, h)) - float(qc.entropy(xa, h))
    assert close(s["delta_H"], delta)
    code, text, err = run(["phase-entropy", a, b, "--mode", "each", *SMALL], capsys)
    s = summary(text)
    assert code == 0 and s["bandwidth_mode"] == "each" and "not the paper's" in s["note"]
    assert close(s["h_B"], float(qc.bandwidth_from_volume(3.8**3 / 4)))
    code, text, err = run(["phase-entropy", a, b, "--bandwidth", "0.02", *SMALL], capsys)
    s = summary(text)
    assert code == 0 and s["bandwidth_mode"] == "fixed" and close(s["h_A"], 0.02)
    delta = float(qc.entropy(xb, 0.02)) - float(qc.entropy(xa, 0.02))
    assert close(s["delta_H"], delta)


def test_analysis_does_not_import_the_cli():
    import subprocess
    import sys

    code = ("import sys, quests_core.analysis as a\n"
            "from quests_core.analysis import active_learning, clusters, cnt, compression, "
            "thermo, uncertainty\n"
            "assert not [m for m in sys.modules if m.startswith('quests_core.cli')]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nucleation_pools_the_pre_nucleation_frames_of_the_bundled_quench(capsys):
    """Default ``--frames pre``: frames 1-38 and their one band at 794.3 K, the paper's
    unweighted fit with the clusters sized at 11.78 Å^3/atom (docs/spec.md section 6; the
    dashboard pools the same frames), Poisson weights as an option; ``--frames all``
    pools every frame."""
    sample = Path(__file__).resolve().parents[1] / "sample_data"
    args = ["nucleation", sample / "cu_quench.extxyz", "-r", sample / "cu_solid_400K.extxyz",
            "--fit", "-q"]
    code, text, err = run(args, capsys)
    assert code == 0, err
    s = summary(text)
    assert s["pooled_frames"] == "38"
    assert close(s["T_pooled_K"], 794.346) and close(s["n_star_min"], 61.3433)
    assert s["fit_weights"] == "none" and abs(float(s["fit_gamma_SL_J_m2"]) - 0.129) < 2e-3
    assert close(s["V_atom_A3"], 12.893) and close(s["V_atom_fit_A3"], 11.7769)
    assert "unweighted" in s["fit_note"] and "11.777 Å^3/atom" in s["fit_note"]
    assert "critical band: 12.893" in s["fit_note"]
    code, text, err = run([*args, "--fit-weights", "poisson"], capsys)
    s = summary(text)
    assert code == 0, err
    assert s["fit_weights"] == "poisson" and abs(float(s["fit_gamma_SL_J_m2"]) - 0.177) < 2e-3
    code, text, err = run([*args, "--fit-weights", "poisson", "--fit-v-atom", "12.893"],
                          capsys)
    s = summary(text)
    assert code == 0, err  # the old default (Poisson, one volume 12.893)
    assert abs(float(s["fit_gamma_SL_J_m2"]) - 0.166) < 2e-3
    code, text, err = run([*args, "--frames", "all"], capsys)
    assert code == 0, err
    assert summary(text)["pooled_frames"] == "65"
