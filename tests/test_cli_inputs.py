"""Inputs and outputs shared by the ``quests-dashboard`` commands: descriptor files with
their layout (written by ``descriptors``, read as ``--reference``), ``--topology`` for MD
trajectories, and the per-frame columns of structure exports."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

import quests_core as qc
from quests_core.cli import main
from quests_core.descriptor_files import read_layout, sidecar_path

K, CUTOFF = 8, 4.0
OPTS = ["-k", str(K), "--cutoff", str(CUTOFF), "--no-progress"]


def cu_frames(n: int, amplitude: float, seed: int = 0):
    out = []
    for i in range(n):
        atoms = bulk("Cu", cubic=True) * (2, 2, 2)
        atoms.rattle(amplitude, seed=seed + i)
        out.append(atoms)
    return out


def alloy(seed: int):
    atoms = bulk("Cu", cubic=True) * (2, 2, 2)
    atoms.symbols[::3] = "Au"
    atoms.rattle(0.05, seed=seed)
    return atoms


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err):
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def result(path):
    return json.loads(path.read_text())


@pytest.fixture()
def files(tmp_path):
    write(tmp_path / "solid.extxyz", cu_frames(3, 0.03))
    write(tmp_path / "hot.extxyz", cu_frames(2, 0.25, seed=10))
    write(tmp_path / "alloy.extxyz", [alloy(1), alloy(2)])
    return tmp_path


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_descriptor_file_reference_gives_the_same_dh(files, capsys, suffix):
    saved = files / f"x{suffix}"
    rc, _, err = run(["descriptors", files / "solid.extxyz", "-o", saved, *OPTS], capsys)
    assert rc == 0, err
    layout = read_layout(saved)
    assert (layout["k"], layout["cutoff"], layout["species"], layout["width"]) == (
        K, CUTOFF, [], 2 * K - 1)
    assert sidecar_path(saved).is_file() == (suffix == ".npy")
    a, b = files / "a.csv", files / "b.csv"
    rc, _, err = run(["dh", files / "hot.extxyz", "-r", files / "solid.extxyz", "-o", a, *OPTS],
                     capsys)
    assert rc == 0, err
    rc, _, err = run(["dh", files / "hot.extxyz", "-r", saved, "-o", b, *OPTS], capsys)
    assert rc == 0, err
    dh_a, dh_b = pd.read_csv(a)["dH"].to_numpy(), pd.read_csv(b)["dH"].to_numpy()
    np.testing.assert_array_equal(dh_a, dh_b)
    x_ref = qc.descriptors(read(files / "solid.extxyz", ":"), k=K, cutoff=CUTOFF)
    y = qc.descriptors(read(files / "hot.extxyz", ":"), k=K, cutoff=CUTOFF)
    np.testing.assert_allclose(dh_b, qc.delta_entropy(y, x_ref, 0.015), rtol=1e-6)
    # trajectory takes the same reference
    rc, _, err = run(["trajectory", files / "hot.extxyz", "-r", saved, *OPTS], capsys)
    assert rc == 0, err


def test_multicomponent_descriptor_file_refused_for_a_single_species_run(files, capsys):
    saved = files / "alloy.npy"
    rc, _, err = run(["descriptors", files / "alloy.extxyz", "--species", "Cu,Au", "-o", saved,
                      *OPTS], capsys)
    assert rc == 0, err
    assert read_layout(saved)["species"] == ["Cu", "Au"] or read_layout(saved)["species"] == [
        "Au", "Cu"]
    rc, _, err = run(["dh", files / "alloy.extxyz", "-r", saved, *OPTS], capsys)
    line = one_line_error(rc, err)
    assert line.startswith(f"error: {saved}: descriptor layout differs: ")
    assert "width 45 in the file, 15 asked" in line
    # the same species: accepted, the same dH as the structure file
    rc, out, err = run(["dh", files / "alloy.extxyz", "-r", saved, "--species", "Au,Cu",
                        "-o", files / "m.json", *OPTS], capsys)
    assert rc == 0, err
    rc, out, err = run(["dh", files / "alloy.extxyz", "-r", files / "alloy.extxyz", "--species",
                        "Au,Cu", "-o", files / "s.json", *OPTS], capsys)
    assert rc == 0, err
    m, s = result(files / "m.json"), result(files / "s.json")
    assert m["summary"]["mean_dH"] == s["summary"]["mean_dH"]
    # --bandwidth auto needs cell volumes, which descriptor files do not hold
    rc, _, err = run(["dh", files / "alloy.extxyz", "-r", saved, "--species", "Au,Cu",
                      "--bandwidth", "auto", *OPTS], capsys)
    assert "--bandwidth auto needs the reference structures" in one_line_error(rc, err)


def test_descriptor_file_skip_bad_and_unknown_suffix(files, capsys):
    bad = files / "bad.npy"
    bad.write_bytes(b"not numpy")
    rc, out, err = run(["dh", files / "hot.extxyz", "-r", bad, files / "solid.extxyz",
                        "--skip-bad", *OPTS], capsys)
    assert rc == 0, err
    assert "skipped 1 bad file(s)" in err and "bad.npy" in err
    rc, _, err = run(["descriptors", files / "solid.extxyz", "-o", files / "x.txt", *OPTS],
                     capsys)
    assert "unsupported output extension '.txt'" in one_line_error(rc, err)


def test_trajectory_extxyz_has_max_dh_and_h_stderr(files, capsys):
    out = files / "t.extxyz"
    table = files / "t.csv"
    rc, _, err = run(["trajectory", files / "hot.extxyz", "-o", out, *OPTS], capsys)
    assert rc == 0, err
    rc, _, err = run(["trajectory", files / "hot.extxyz", "-o", table, *OPTS], capsys)
    assert rc == 0, err
    rows = pd.read_csv(table)
    back = read(out, ":")
    assert len(back) == 2
    for frame, (_, row) in zip(back, rows.iterrows(), strict=True):
        assert frame.info["max_dH"] == pytest.approx(row["max_dH"], rel=1e-12)
        assert frame.info["H_stderr"] == row["H_stderr"] == 0.0
        assert frame.info["max_dH"] == pytest.approx(frame.arrays["dH"].max(), abs=1e-7)


def _xtc_quantised(atoms: Atoms) -> Atoms:
    out = atoms.copy()
    out.positions = np.round(atoms.positions / 10.0, 3) * 10.0  # XTC keeps 1e-3 nm
    return out


def test_topology_option_reads_md_trajectories(tmp_path, capsys):
    mda = pytest.importorskip("MDAnalysis")
    frames = [_xtc_quantised(a) for a in cu_frames(2, 0.1, seed=3)]
    n = len(frames[0])
    u = mda.Universe.empty(n, trajectory=True)
    for attr in ("names", "types", "elements"):
        u.add_TopologyAttr(attr, ["Cu"] * n)
    u.add_TopologyAttr("resnames", ["CU"])
    u.add_TopologyAttr("resids", [1])
    xtc, top = tmp_path / "traj.xtc", tmp_path / "elsewhere" / "top.pdb"
    top.parent.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u.atoms.positions = frames[0].positions
        u.dimensions = list(frames[0].cell.cellpar())
        u.atoms.write(str(top))
        with mda.Writer(str(xtc), n) as w:
            for atoms in frames:
                u.atoms.positions = atoms.positions
                u.dimensions = list(atoms.cell.cellpar())
                w.write(u.atoms)
    write(tmp_path / "traj.extxyz", frames)
    rc, _, err = run(["entropy", xtc, *OPTS], capsys)
    assert "topology" in one_line_error(rc, err)
    rc, _, err = run(["entropy", xtc, "--topology", top, "-o", tmp_path / "md.json", *OPTS],
                     capsys)
    assert rc == 0, err
    rc, _, err = run(["entropy", tmp_path / "traj.extxyz", "-o", tmp_path / "xyz.json", *OPTS],
                     capsys)
    assert rc == 0, err
    md, xyz = result(tmp_path / "md.json")["rows"][0], result(tmp_path / "xyz.json")["rows"][0]
    assert md["atoms"] == xyz["atoms"] == 2 * n
    assert md["H"] == pytest.approx(xyz["H"], abs=1e-3)
    assert md["D"] == pytest.approx(xyz["D"], abs=1e-3)
    # the topology is part of the cache key: the second read is a hit
    for hit in (False, True):
        rc, _, err = run(["descriptors", xtc, "--topology", top, "-o", tmp_path / "d.json",
                          "--cache-dir", tmp_path / "cache", *OPTS], capsys)
        assert rc == 0, err
        assert result(tmp_path / "d.json")["rows"][0]["from_cache"] is hit
    # commands that read the frames again (lazily) and the chunked store use it too
    kept = tmp_path / "kept.extxyz"
    rc, _, err = run(["compress", xtc, "--topology", top, "--fraction", "0.5", "-o", kept,
                      *OPTS], capsys)
    assert rc == 0, err
    assert read(kept, ":")[0].get_chemical_symbols() == ["Cu"] * n
    rc, _, err = run(["dh", xtc, "--topology", top, "-r", tmp_path / "traj.extxyz", "--store",
                      tmp_path / "store", "-o", tmp_path / "s.json", *OPTS], capsys)
    assert rc == 0, err
    assert result(tmp_path / "s.json")["summary"]["test_atoms"] == 2 * n
