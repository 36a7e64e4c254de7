"""MD trajectories (XTC + a topology) in the dashboard, without a browser.

The Data tab's pipeline reads an XTC written by MDAnalysis with its PDB
topology and gives the dH of the same frames written as extxyz: exactly (to
float rounding) for the extxyz of the positions as the XTC stores them, and
within what the XTC grid (0.01 Å, positions within 0.005 Å: docs/formats.md)
moves dH for the original positions. The files table's topology column, its
one-line checks and the message without MDAnalysis are checked too.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write

from dashboard._testing import make_sample_dir
from dashboard.compute import topology_problem
from dashboard.pipeline import run_pipeline
from dashboard.state import AppState, ComputeSettings, FileSpec
from dashboard.views.data import UPLOAD_ACCEPT, DataView
from quests_core.descriptors import descriptors
from quests_core.io import read_structures
from quests_core.io_mdanalysis import EXTRA

mda = pytest.importorskip("MDAnalysis")

SMALL = ComputeSettings(learning_max_n=200, learning_repeats=2, overlap_max_n=2000).frozen()
#: half the XTC grid at GROMACS's default precision (docs/formats.md), plus float32 rounding
XTC_POSITIONS = 0.005 + 2.0**-22 * 30.0


def _universe(n: int):
    u = mda.Universe.empty(n, trajectory=True)
    for attr, value in (("names", "Cu"), ("types", "Cu"), ("elements", "Cu")):
        u.add_TopologyAttr(attr, [value] * n)
    u.add_TopologyAttr("resnames", ["CU"])
    u.add_TopologyAttr("resids", [1])
    return u


def write_xtc_and_pdb(frames, xtc: Path, pdb: Path) -> None:
    """The frames as MDAnalysis writes an XTC, and their PDB topology."""
    u = _universe(len(frames[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mda.Writer(str(xtc), len(frames[0])) as w:
            for atoms in frames:
                u.atoms.positions = atoms.positions
                u.dimensions = list(atoms.cell.cellpar())
                u.trajectory.ts.time = float(atoms.info.get("time", 0.0))
                w.write(u.atoms)
        u.atoms.positions = frames[0].positions
        u.dimensions = list(frames[0].cell.cellpar())
        u.atoms.write(str(pdb))


def xtc_quantised(positions: np.ndarray) -> np.ndarray:
    """Positions as the XTC writer stores them (1000/nm grid, float32 arithmetic)."""
    lf = positions.astype(np.float32) * np.float32(0.1) * np.float32(1000.0)
    lf = np.where(lf >= 0, lf + np.float32(0.5), lf - np.float32(0.5)).astype(np.float32)
    ints = np.trunc(lf).astype(np.int64)
    return (ints.astype(np.float32) * np.float32(1.0 / 1000.0)).astype(np.float64) * 10.0


pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(scope="module")
def md(tmp_path_factory):
    """A data directory: the sample's solid, its failed trajectory as extxyz, as XTC + PDB
    (``traj.xtc``, ``top/cu.pdb``) and as extxyz of the XTC-quantised positions."""
    folder = tmp_path_factory.mktemp("md_data")
    sample = make_sample_dir(folder)
    frames = read(sample["failed_traj.extxyz"], index=":")
    (folder / "top").mkdir()
    write_xtc_and_pdb(frames, folder / "traj.xtc", folder / "top" / "cu.pdb")
    quantised = [a.copy() for a in frames]
    for a in quantised:
        a.positions = xtc_quantised(a.positions)
    write(folder / "quantised.extxyz", quantised, format="extxyz")
    return folder, sample, frames


def test_xtc_gives_the_dh_of_the_extxyz(md):
    folder, sample, frames = md
    ref = FileSpec(str(sample["solid.extxyz"]), "solid.extxyz", "reference")

    def run(path, **kw):
        return run_pipeline([ref, FileSpec(str(path), path.name, "trajectory", **kw)], SMALL)

    xtc = run(folder / "traj.xtc", topology=str(folder / "top" / "cu.pdb"))
    plain = run(sample["failed_traj.extxyz"])
    quantised = run(folder / "quantised.extxyz")
    pick = {name: res.atoms.loc[res.atoms["source"] == name]
            for res, name in ((xtc, "traj.xtc"), (plain, "failed_traj.extxyz"),
                              (quantised, "quantised.extxyz"))}
    a, b, q = pick["traj.xtc"], pick["failed_traj.extxyz"], pick["quantised.extxyz"]
    assert len(a) == len(b) == 12 * 108 and set(a["species"]) == {"Cu"}
    # positions within the XTC tolerance of docs/formats.md (the per-atom table keeps
    # float32 coordinates: their rounding is added)
    pos = lambda t: t[["x", "y", "z"]].to_numpy(np.float64)  # noqa: E731
    assert np.abs(pos(a) - pos(b)).max() <= XTC_POSITIONS + 2.0**-22 * 30
    # the positions as stored give the same dH (the box is stored as float32 nm, so
    # the periodic images move by ~1e-6 relative: measured 1.1e-3 x max(1, |dH|))
    dh_a, dh_b, dh_q = (t["dH"].to_numpy(np.float64) for t in (a, b, q))
    assert np.all(np.abs(dh_a - dh_q) <= 5e-3 * np.maximum(1.0, np.abs(dh_q)))
    # the original positions: dH = log n - LSE_j(-|x - y_j|^2 / 2h^2) and the log-sum-exp
    # is 1-Lipschitz in the max norm, so each atom's dH moves by at most
    # max_j delta (2 |x - y_j| + delta) / 2h^2, delta = |x_xtc - x_extxyz|, its
    # descriptor's move under the XTC grid
    x_xtc = descriptors(read_structures(folder / "traj.xtc", topology=folder / "top/cu.pdb"))
    x_ext = descriptors(frames)
    y = descriptors(read(sample["solid.extxyz"], index=":"))
    delta = np.linalg.norm(x_xtc - x_ext, axis=1)
    dist = np.sqrt(((x_ext[:, None, :] - y[None, :, :]) ** 2).sum(-1)).max(axis=1)
    bound = delta * (2 * dist + delta) / (2 * xtc.h**2)
    moved = np.abs(dh_a - dh_b)
    f32 = 2.0**-23 * np.maximum(np.abs(dh_a), np.abs(dh_b)) * 2  # the float32 table
    assert np.all(moved <= bound + f32), (moved - bound).max()
    assert 0 < moved.max() and np.median(moved / np.maximum(bound, 1e-300)) < 0.5
    # where it matters, the verdict is the same: novel (dH > 0) or not
    np.testing.assert_array_equal(dh_a > 0, dh_b > 0)
    # the per-frame table: the same frames and times
    ft = xtc.frames.loc[xtc.frames["source"] == "traj.xtc"]
    np.testing.assert_allclose(ft["time"], [f.info["time"] for f in frames], atol=1e-4)


def test_topology_next_to_the_trajectory_and_its_problems(md, tmp_path, monkeypatch):
    folder, sample, frames = md
    xtc = folder / "traj.xtc"
    given = FileSpec(str(xtc), "traj.xtc", "trajectory", topology=str(folder / "top/cu.pdb"))
    assert topology_problem(given, "top/cu.pdb") == ""
    assert given.core_spec().topology == str(folder / "top/cu.pdb")
    assert FileSpec(str(xtc), "t", "trajectory").core_spec().topology is None
    assert not given.same_input(FileSpec(str(xtc), "traj.xtc", "trajectory"))
    # none given and none next to it: one line naming the column
    text = topology_problem(FileSpec(str(xtc), "traj.xtc", "trajectory"))
    assert text.startswith("traj.xtc: GROMACS XTC files do not name their atoms")
    assert "'topology' column" in text and "\n" not in text
    # one next to it, with the trajectory's name, is used
    alone = tmp_path / "run.xtc"
    alone.write_bytes(xtc.read_bytes())
    (tmp_path / "run.pdb").write_bytes((folder / "top/cu.pdb").read_bytes())
    assert topology_problem(FileSpec(str(alone), "run.xtc", "trajectory")) == ""
    # a bad topology: one line naming both files by the names the user knows
    empty = tmp_path / "empty.pdb"
    empty.write_text("REMARK nothing\nEND\n")
    text = topology_problem(FileSpec(str(alone), "run.xtc", "trajectory",
                                     topology=str(empty)), "empty.pdb")
    assert text.startswith("run.xtc: topology empty.pdb: ") and "\n" not in text
    assert str(tmp_path) not in text
    # without MDAnalysis: the extra to install
    monkeypatch.setitem(sys.modules, "MDAnalysis", None)
    from quests_core.io_mdanalysis import _load_topology

    _load_topology.cache_clear()
    text = topology_problem(given, "top/cu.pdb")
    assert text.startswith("traj.xtc: topology ") and text.endswith(EXTRA)
    assert "\n" not in text
    # not an MD trajectory: nothing to check
    assert topology_problem(FileSpec(str(sample["solid.extxyz"]), "s", "reference")) == ""


def test_files_table_topology_column(md, tmp_path):
    folder, sample, frames = md
    state = AppState(data_dir=str(folder), upload_dir=str(tmp_path / "up"))
    view = DataView(state=state, job_mode="thread")
    assert "traj.xtc" in view.file_select.options  # MD trajectories are listed
    for suffix in (".xtc", ".trr", ".dcd", ".nc", ".ncdf", ".psf", ".prmtop", ".tpr"):
        assert suffix in UPLOAD_ACCEPT.split(",")
    view.add_file("solid.extxyz", "reference")
    assert "topology" not in state.files_table().columns  # only with an MD trajectory
    view.add_file("traj.xtc", "trajectory")
    # no topology next to traj.xtc: the one-line warning on adding it
    level, text = state.messages[-1]
    assert level == "warning" and text.startswith("traj.xtc: GROMACS XTC files do not name")
    table = state.files_table()
    assert table["topology"].tolist() == ["", ""]
    row = table["file"].tolist().index("traj.xtc")

    def edit(value):
        view._on_edit(type("E", (), {"row": row, "column": "topology", "value": value})())

    edit("top/cu.pdb")
    spec = next(f for f in state.files if f.name == "traj.xtc")
    assert spec.topology == str((folder / "top" / "cu.pdb").resolve())
    assert state.files_table()["topology"].tolist()[row] == "top/cu.pdb"
    assert view.file_warnings() == []
    # refused: outside the data directory, missing, not a topology
    for bad, words in (("../x.pdb", "'..' is not allowed"), ("top/none.pdb", "no such file"),
                       ("solid.extxyz", "not a topology file")):
        before = len(state.messages)
        edit(bad)
        assert state.messages[before:] and state.messages[-1][0] == "error"
        assert words in state.messages[-1][1] and "\n" not in state.messages[-1][1]
        assert next(f for f in state.files if f.name == "traj.xtc").topology == spec.topology
    # an uploaded topology next to an uploaded trajectory of the same name
    view.save_upload("run.xtc", (folder / "traj.xtc").read_bytes(), role="trajectory")
    assert state.messages[-1][1].startswith("upload/run.xtc: GROMACS XTC files")
    view.save_upload("run.pdb", (folder / "top" / "cu.pdb").read_bytes())
    up = next(f for f in state.files if f.name == "upload/run.xtc")
    assert view.topology_warning(up) == ""
    edit_row = state.files_table()["file"].tolist().index("upload/run.xtc")
    view._on_edit(type("E", (), {"row": edit_row, "column": "topology",
                                 "value": "upload/run.pdb"})())
    assert state.files_table()["topology"].tolist()[edit_row] == "upload/run.pdb"
