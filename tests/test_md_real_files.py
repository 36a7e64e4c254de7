"""Real MD files (MDAnalysis's own test data, the ``MDAnalysisTests`` package) read
through :mod:`quests_core.io_mdanalysis`, compared with MDAnalysis read directly.

* GROMACS with TIP4P water (adk_oplsaa .gro + .xtc, cobrotoxin .tpr + .xtc): the
  massless virtual sites MW are left out with one warning, the other atoms keep
  their elements (those of the tpr, or of their masses);
* NAMD SiN (PSF + DCD): elements from the masses, so N1A/N2A are N, not Na;
* Amber prmtop + NetCDF, and an Amber topology named ``.top`` (``topology_format``);
* LAMMPS data + DCD: elements from the ``Masses`` section.

Positions are compared frame by frame with MDAnalysis's (both decode the same
stored numbers: XTC integers on a 0.001 nm grid, float32 DCD/NetCDF), within
1e-4 Å. Only the first 2-3 frames are read.
"""

from __future__ import annotations

import bz2
import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase.data import atomic_masses, chemical_symbols

pytest.importorskip("MDAnalysis")
datafiles = pytest.importorskip("MDAnalysisTests.datafiles")

from quests_core.errors import QuestsError  # noqa: E402
from quests_core.io import iter_frames  # noqa: E402
from quests_core.io_mdanalysis import TopologyWarning, load_topology  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-4  # Å: both sides decode the same stored numbers


def _universe(topology, trajectory, **kw):
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(topology, trajectory, **kw)


def _mass_elements(masses) -> list[str]:
    """What the masses say: the element within 0.1 u (hydrogen isotopes: H)."""
    out = []
    for m in np.asarray(masses, dtype=float):
        if abs(m - 2.014) <= 0.1 or abs(m - 3.016) <= 0.1:
            out.append("H")
            continue
        z = int(np.argmin(np.abs(atomic_masses[1:] - m))) + 1
        assert abs(atomic_masses[z] - m) <= 0.1, m
        out.append(chemical_symbols[z])
    return out


def _read(trajectory, topology, n_frames, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(iter_frames(trajectory, index=f":{n_frames}", topology=topology, **kw))
    notes = [str(w.message) for w in caught if issubclass(w.category, TopologyWarning)]
    return frames, notes


def _compare(frames, universe, keep):
    assert len(frames) >= 2 or universe.trajectory.n_frames == 1
    for item, ts in zip(frames, universe.trajectory, strict=False):
        assert item.frame == ts.frame
        np.testing.assert_allclose(item.atoms.positions, ts.positions[keep], rtol=0, atol=ATOL)
        if ts.dimensions is not None:
            np.testing.assert_allclose(item.atoms.cell.cellpar(), ts.dimensions, atol=1e-3)


def test_gromacs_tip4p_gro_xtc_leaves_out_the_virtual_sites():
    frames, notes = _read(datafiles.XTC, datafiles.GRO, 2)
    u = _universe(datafiles.GRO, datafiles.XTC)
    names = np.asarray(u.atoms.names).astype(str)
    keep = np.flatnonzero(names != "MW")
    assert (names == "MW").sum() == 11084
    assert len(frames) == 2 and len(frames[0].atoms) == 47681 - 11084
    assert len(notes) == 1
    assert notes[0] == (
        f"{datafiles.XTC}: 11,084 virtual sites (no mass and no element, named like virtual "
        f"sites: MW) left out of the descriptors (topology {datafiles.GRO})"
    )
    # the counts of the tpr's elements (adk_oplsaa.tpr gives the same atoms)
    assert Counter(frames[0].atoms.get_chemical_symbols()) == {
        "H": 23853, "O": 11404, "C": 1040, "N": 289, "S": 7, "Na": 4,
    }
    _compare(frames, u, keep)
    # the .pdb names the same atoms the same way
    pdb = load_topology(datafiles.PDB)
    assert pdb.numbers.tolist() == frames[0].atoms.numbers.tolist()
    assert pdb.left_out.startswith("11,084 virtual sites")


def test_gromacs_tip4p_tpr_xtc_elements_of_the_tpr():
    frames, notes = _read(datafiles.XTC_sub_sol, datafiles.TPR_xvf, 3)
    u = _universe(datafiles.TPR_xvf, datafiles.XTC_sub_sol)
    masses = np.asarray(u.atoms.masses)
    keep = np.flatnonzero(masses > 0)
    assert len(keep) == 19385 - 4612
    assert notes == [
        f"{datafiles.XTC_sub_sol}: 4,612 virtual sites (mass 0: MW) left out of the "
        f"descriptors (topology {datafiles.TPR_xvf})"
    ]
    symbols = frames[0].atoms.get_chemical_symbols()
    assert symbols == [str(e) for e in np.asarray(u.atoms.elements)[keep]]
    assert symbols == _mass_elements(masses[keep])
    assert len(frames) == 3
    _compare(frames, u, keep)


def test_name_map_keeps_the_virtual_sites():
    """``MW=O`` gives the virtual sites an element: every atom is kept, no warning."""
    top = load_topology(datafiles.GRO, "MW=O")
    assert top.keep is None and top.left_out == ""
    assert len(top.numbers) == 47681
    assert Counter(chemical_symbols[z] for z in top.numbers)["O"] == 11404 + 11084
    with pytest.raises(QuestsError, match=r"adk_oplsaa\.gro: type map: no atom of the topology "
                                          r"is named or typed 'mw'"):
        load_topology(datafiles.GRO, "mw=O")
    with pytest.raises(QuestsError, match="'X' is not a chemical element"):
        load_topology(datafiles.GRO, "MW=X")


def test_namd_psf_dcd_elements_from_masses():
    frames, notes = _read(datafiles.DCD_NAMD_TRICLINIC, datafiles.PSF_NAMD_TRICLINIC, 1)
    u = _universe(datafiles.PSF_NAMD_TRICLINIC, datafiles.DCD_NAMD_TRICLINIC)
    symbols = frames[0].atoms.get_chemical_symbols()
    assert symbols == _mass_elements(u.atoms.masses)
    counts = Counter(symbols)
    assert "Na" not in counts
    assert counts["N"] == 1012 and counts["Si"] == 746
    names = np.asarray(u.atoms.names).astype(str)
    solid = np.isin(names, [n for n in set(names) if n.startswith(("N", "SI"))])
    assert set(np.asarray(symbols)[solid]) == {"N", "Si"}
    assert notes == [
        f"{datafiles.PSF_NAMD_TRICLINIC}: 255 atoms take the element of their mass, not the "
        "one their name reads as (N1A: N, not Na; N2A: N, not Na)"
    ]
    _compare(frames, u, slice(None))


def test_amber_prmtop_netcdf():
    frames, notes = _read(datafiles.NCDF, datafiles.PRMncdf, 3)
    u = _universe(datafiles.PRMncdf, datafiles.NCDF)
    assert notes == []
    symbols = frames[0].atoms.get_chemical_symbols()
    assert symbols == _mass_elements(u.atoms.masses)
    assert Counter(symbols) == {"H": 1766, "O": 876, "C": 15, "N": 3, "Na": 1}
    _compare(frames, u, slice(None))


def test_amber_top_needs_its_format_named():
    with pytest.raises(QuestsError, match=r"posfor\.top: not a topology file .*"
                                          r"--topology-format"):
        list(iter_frames(datafiles.PFncdf_Trj, index=":2", topology=datafiles.PFncdf_Top))
    frames, notes = _read(datafiles.PFncdf_Trj, datafiles.PFncdf_Top, 2, topology_format="TOP")
    u = _universe(datafiles.PFncdf_Top, datafiles.PFncdf_Trj, topology_format="TOP")
    assert notes == []
    symbols = frames[0].atoms.get_chemical_symbols()
    assert symbols == [str(e) for e in u.atoms.elements]
    assert symbols == _mass_elements(u.atoms.masses)
    _compare(frames, u, slice(None))
    with pytest.raises(QuestsError, match=r"topology format 'NOPE' is not one of"):
        load_topology(datafiles.PFncdf_Top, topology_format="NOPE")


@pytest.fixture(scope="module")
def lammps_data(tmp_path_factory) -> str:
    """ifabp_apo_100mM.data, decompressed (a topology is read by its extension)."""
    out = tmp_path_factory.mktemp("lammps") / "ifabp_apo_100mM.data"
    out.write_bytes(bz2.decompress(Path(datafiles.LAMMPSdata2).read_bytes()))
    return str(out)


def test_lammps_data_dcd(lammps_data):
    frames, notes = _read(datafiles.LAMMPSdcd2, lammps_data, 2)
    u = _universe(lammps_data, datafiles.LAMMPSdcd2, format="LAMMPS")
    assert notes == []
    symbols = frames[0].atoms.get_chemical_symbols()
    assert symbols == _mass_elements(u.atoms.masses)
    assert Counter(symbols) == {"H": 7920, "O": 3636, "C": 670, "N": 180, "Na": 6, "Cl": 6,
                                "S": 3}
    _compare(frames, u, slice(None))


# ----------------------------------------------------------------------------
# the command line, one test per new option
# ----------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QUESTS_CACHE_DIR": os.devnull}
    return subprocess.run(
        [sys.executable, "-m", "quests_core.cli", "trajectory", *args, "-k", "4",
         "--cutoff", "3", "--no-cache"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )


def test_cli_tip4p_virtual_sites_warning(tmp_path):
    out = tmp_path / "x.csv"
    res = _cli(datafiles.XTC_sub_sol, "--topology", datafiles.TPR_xvf, "--index", "0:1",
               "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert (
        f"warning: {datafiles.XTC_sub_sol}: 4,612 virtual sites (mass 0: MW) left out of the "
        f"descriptors (topology {datafiles.TPR_xvf})"
    ) in res.stderr.splitlines()
    assert ",14773," in out.read_text()


def test_cli_type_map_of_names_keeps_them(tmp_path):
    out = tmp_path / "x.csv"
    res = _cli(datafiles.XTC_sub_sol, "--topology", datafiles.TPR_xvf, "--index", "0:1",
               "--type-map", "MW=O", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "virtual site" not in res.stderr
    assert ",19385," in out.read_text()


def test_cli_topology_format(tmp_path):
    out = tmp_path / "x.csv"
    res = _cli(datafiles.PFncdf_Trj, "--topology", datafiles.PFncdf_Top, "--index", "0:1",
               "-o", str(out))
    assert res.returncode == 1
    assert "--topology-format" in res.stderr
    res = _cli(datafiles.PFncdf_Trj, "--topology", datafiles.PFncdf_Top,
               "--topology-format", "TOP", "--index", "0:1", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert ",442," in out.read_text()


def test_cli_repeats_the_virtual_sites_warning_on_a_cached_rerun(tmp_path):
    """The second run takes the descriptors from the cache without reading the topology;
    the topology's warning travels with the cached table and is given again."""
    env = {**os.environ, "QUESTS_CACHE_DIR": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "quests_core.cli", "trajectory", datafiles.XTC_sub_sol,
            "--topology", datafiles.TPR_xvf, "--index", "0:1", "-k", "4", "--cutoff", "3",
            "--no-progress"]
    line = (f"warning: {datafiles.XTC_sub_sol}: 4,612 virtual sites (mass 0: MW) left out of "
            f"the descriptors (topology {datafiles.TPR_xvf})")
    outputs = []
    for _ in range(2):
        res = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env,
                             timeout=300)
        assert res.returncode == 0, res.stderr
        assert res.stderr.splitlines().count(line) == 1, res.stderr
        outputs.append(res.stdout)
    assert outputs[0] == outputs[1]
    assert any((tmp_path / "cache").rglob("*.parquet"))  # the second run was a cache hit


def test_dashboard_shows_the_topology_notes(tmp_path, monkeypatch):
    """The Data tab lists what the topology made of the atoms (virtual sites left out,
    elements from masses), named by the file's name in the table."""
    import dashboard.compute as compute
    from dashboard.pipeline import run_pipeline
    from dashboard.state import ComputeSettings, FileSpec

    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(compute, "_CACHE", None)
    spec = FileSpec(datafiles.XTC_sub_sol, "cobrotoxin.xtc", "trajectory", index="0:2",
                    topology=datafiles.TPR_xvf)
    settings = ComputeSettings(k=4, cutoff=3.0, learning_max_n=50, learning_repeats=1,
                               overlap_max_n=50).frozen()
    res = run_pipeline([spec], settings)
    assert (f"cobrotoxin.xtc: 4,612 virtual sites (mass 0: MW) left out of the descriptors "
            f"(topology {datafiles.TPR_xvf})") in res.warnings
    assert len(res.atoms) == 2 * 14_773


def test_dashboard_topology_column_names_a_format(tmp_path, monkeypatch):
    """The files table's topology column takes "posfor.top as TOP" for a topology whose
    ending does not say its format (an Amber .top); the plain name is refused with the
    hint, and the named format reaches the reader (the same atoms as --topology-format)."""
    import shutil

    import dashboard.compute as compute
    from dashboard.pipeline import run_pipeline
    from dashboard.state import AppState, ComputeSettings
    from dashboard.views.data import DataView, split_topology_cell

    assert split_topology_cell("posfor.top as TOP") == ("posfor.top", "TOP")
    assert split_topology_cell("my file.prmtop") == ("my file.prmtop", "")
    assert split_topology_cell(" upload/x.top  as  top ") == ("upload/x.top", "TOP")
    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(compute, "_CACHE", None)
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(datafiles.PFncdf_Trj, folder / "posfor.ncdf")
    shutil.copy(datafiles.PFncdf_Top, folder / "posfor.top")
    state = AppState(data_dir=str(folder), upload_dir=str(tmp_path / "up"))
    view = DataView(state=state, job_mode="thread")
    view.add_file("posfor.ncdf", "trajectory")
    state.update_file("posfor.ncdf", index="0:2")
    row = state.files_table()["file"].tolist().index("posfor.ncdf")

    def edit(value):
        view._on_edit(type("E", (), {"row": row, "column": "topology", "value": value})())

    edit("posfor.top")
    level, text = state.messages[-1]
    assert level == "error" and "'posfor.top as TOP' (an Amber .top)" in text
    edit("posfor.top as TOP")
    spec = next(f for f in state.files if f.name == "posfor.ncdf")
    assert spec.topology == str((folder / "posfor.top").resolve())
    assert spec.topology_format == "TOP"
    assert state.files_table()["topology"].tolist()[row] == "posfor.top as TOP"
    assert view.topology_warning(spec) == ""
    settings = ComputeSettings(k=4, cutoff=3.0, learning_max_n=50, learning_repeats=1,
                               overlap_max_n=50).frozen()
    res = run_pipeline([spec], settings)
    u = _universe(datafiles.PFncdf_Top, datafiles.PFncdf_Trj, topology_format="TOP")
    assert len(res.atoms) == 2 * len(u.atoms)
    first = res.atoms[res.atoms["frame"] == 0]
    assert first["species"].astype(str).tolist() == [str(e) for e in u.atoms.elements]


def test_dh_store_and_report_honour_the_topology_format(tmp_path):
    """``--topology-format`` reaches the chunk store (its parameters record it) and the
    report, as it reaches the in-memory ``dh``: an Amber .top read the same way by all."""
    import json

    import pandas as pd

    env = {**os.environ, "QUESTS_CACHE_DIR": str(tmp_path / "cache")}
    common = [datafiles.PFncdf_Trj, "-r", datafiles.PFncdf_Trj, "--reference-index", "0",
              "--topology", datafiles.PFncdf_Top, "--topology-format", "TOP", "--index", "0:3",
              "-k", "4", "--cutoff", "3", "--no-progress"]

    def cli(*args):
        res = subprocess.run([sys.executable, "-m", "quests_core.cli", *args],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        return res

    memory = tmp_path / "memory.parquet"
    cli("dh", *common, "-o", str(memory))
    store = tmp_path / "store"
    cli("dh", *common, "--store", str(store))
    from quests_core.chunk_store import ChunkStore

    stored = ChunkStore(store).atoms()
    np.testing.assert_allclose(np.sort(stored["dH"].to_numpy()),
                               np.sort(pd.read_parquet(memory)["dH"].to_numpy()), atol=1e-12)
    params = json.loads((store / "manifest.json").read_text())["params"]
    assert params["topology_format"] == ["TOP"] and params["topology_rules"] >= 2
    report = tmp_path / "report.html"
    cli("report", *common, "-o", str(report))
    assert report.stat().st_size > 0
