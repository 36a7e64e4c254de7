"""The data side of the dashboard's sidebar: default files of a fresh session, the
same file chosen several times, LAMMPS type maps and time steps, the bandwidth note
and the files table's layout (no browser)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import panel as pn
import pytest
from ase.io import read

from dashboard._testing import make_sample_dir
from dashboard.compute import unique_names
from dashboard.paths import default_selection, list_data_files
from dashboard.pipeline import bandwidth_advice, run_pipeline
from dashboard.state import AppState, ComputeSettings, FileSpec, unique_display_name
from dashboard.views.data import TABLE_WIDTHS, UPLOAD_ACCEPT, DataView
from quests_core import bandwidth_from_volume
from quests_core.errors import QuestsError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
SMALL = ComputeSettings(learning_max_n=100, learning_repeats=1, overlap_max_n=200).frozen()


pytestmark = pytest.mark.usefixtures("private_cache")


def lammps_dump(frames, steps) -> str:
    """A LAMMPS text dump of Cu frames with numeric types only (type 1)."""
    lines = []
    for step, atoms in zip(steps, frames, strict=True):
        lines += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(len(atoms)),
                  "ITEM: BOX BOUNDS pp pp pp"]
        lines += [f"0.0 {length}" for length in atoms.cell.lengths()]
        lines.append("ITEM: ATOMS id type x y z")
        lines += [f"{i + 1} 1 {x:.6f} {y:.6f} {z:.6f}" for i, (x, y, z) in
                  enumerate(atoms.positions)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- default files


def test_default_selection_of_the_bundled_data():
    files = list_data_files(SAMPLE)
    assert "cu_melt.extxyz" in files and "cu_quench.extxyz" in files  # other runs are there
    assert default_selection(files) == [("cu_solid_400K.extxyz", "reference"),
                                        ("cu_failed_simulation.extxyz", "trajectory")]


def test_default_selection_generalises():
    synthetic = ["failed_traj.extxyz", "labelled.extxyz", "melt.extxyz", "solid.extxyz"]
    assert default_selection(synthetic) == [("solid.extxyz", "reference"),
                                            ("failed_traj.extxyz", "trajectory")]
    assert default_selection(["water/train_set.xyz", "water/npt_300K.lammpstrj"]) == [
        ("water/train_set.xyz", "reference"), ("water/npt_300K.lammpstrj", "trajectory")]
    # ambiguous roles are left out, each on its own
    assert default_selection(["ref_a.xyz", "ref_b.xyz", "md_run.dump"]) == [
        ("md_run.dump", "trajectory")]
    assert default_selection(["reference.extxyz", "traj_1.xyz", "traj_2.xyz"]) == [
        ("reference.extxyz", "reference")]
    # names that suggest nothing: nothing, unless the directory holds a single file
    assert default_selection(["a.xyz", "b.xyz"]) == []
    assert default_selection([]) == []
    assert default_selection(["POSCAR"]) == [("POSCAR", "trajectory")]
    # a file is never both, and a run called "ref" is still a run
    assert default_selection(["md_run_ref.lammpstrj"]) == [("md_run_ref.lammpstrj",
                                                            "trajectory")]


def test_fresh_session_starts_with_reference_and_trajectory(sample):
    from dashboard.app import create_app

    app = create_app(data_dir=SAMPLE, job_mode="thread")
    try:
        assert [(f.name, f.role, f.index) for f in app.state.files] == [
            ("cu_solid_400K.extxyz", "reference", ":"),
            ("cu_failed_simulation.extxyz", "trajectory", ":")]
        assert app.state.files[0].path == str(SAMPLE.resolve() / "cu_solid_400K.extxyz")
        landing = app.data.landing_text()
        assert landing.startswith("### Start here") and "Compute" in landing
        body = landing.split("\n", 1)[1]
        assert len(re.findall(r"[.!?](?:\s|$)", body)) == 2  # two sentences
    finally:
        app.cleanup()
    # a session that already has files keeps them; an empty directory gets nothing
    st = AppState(data_dir=str(sample["solid.extxyz"].parent))
    st.add_file(str(sample["melt.extxyz"]), "melt.extxyz", "test")
    view = DataView(state=st, job_mode="thread")
    assert view.preselect_defaults() == [] and [f.name for f in st.files] == ["melt.extxyz"]
    fresh = DataView(state=AppState(data_dir=str(sample["solid.extxyz"].parent)),
                     job_mode="thread")
    assert "Choose files" in fresh.landing_text()
    assert fresh.preselect_defaults() == ["solid.extxyz", "failed_traj.extxyz"]
    assert [f.role for f in fresh.state.files] == ["reference", "trajectory"]
    assert "press **Compute**" in fresh.landing_text()
    assert "Choose files" in DataView(state=AppState(), job_mode="thread").landing_text()


# -------------------------------------------------------- the same file, twice


def test_same_file_under_several_names():
    st = AppState()
    a = st.add_file("/d/run.xyz", "run.xyz", "reference", index=":10")
    b = st.add_file("/d/run.xyz", "run.xyz", "trajectory", index="10:")
    c = st.add_file("/d/run.xyz", "run.xyz", "trajectory", index="10:", label="late")
    assert [f.name for f in st.files] == ["run.xyz", "run.xyz #2", "run.xyz #3"]
    assert (a.role, a.index, b.role, b.index, c.label) == ("reference", ":10", "trajectory",
                                                           "10:", "late")
    # an identical entry adds nothing
    again = st.add_file("/d/run.xyz", "run.xyz", "trajectory", index="10:")
    assert again is b and len(st.files) == 3
    # editing and removing touch one entry only
    st.update_file("run.xyz #2", index="20:", type_map="Cu")
    assert [(f.index, f.type_map) for f in st.files] == [(":10", ""), ("20:", "Cu"),
                                                         ("10:", "")]
    st.remove_file("run.xyz")
    assert [f.name for f in st.files] == ["run.xyz #2", "run.xyz #3"]
    # a freed name is used again, then the next free number
    assert st.add_file("/d/run.xyz", "run.xyz", "test").name == "run.xyz"
    assert st.add_file("/d/run.xyz", "run.xyz", "solid reference").name == "run.xyz #4"
    assert unique_display_name("a", {"a", "a #2"}) == "a #3"
    # bad edits are refused and change nothing
    for bad in ({"role": "training"}, {"index": "1:x"}, {"type_map": "1:Qq"},
                {"timestep_fs": -1.0}):
        with pytest.raises(QuestsError, match="run.xyz #2"):
            st.update_file("run.xyz #2", **bad)
    assert st.files[0] == FileSpec("/d/run.xyz", "run.xyz #2", "trajectory", "", "20:", "Cu")


def test_unique_names():
    assert unique_names(["/a/x.xyz", "/b/y.xyz"]) == ["x.xyz", "y.xyz"]
    assert unique_names(["/a/x.xyz", "/b/x.xyz"]) == ["a/x.xyz", "b/x.xyz"]
    assert unique_names(["/a/x.xyz", "/a/x.xyz", "/b/x.xyz", "/a/x.xyz"]) == [
        "a/x.xyz", "a/x.xyz #2", "b/x.xyz", "a/x.xyz #3"]


def test_pipeline_keeps_entries_of_one_file_apart(sample):
    path = str(sample["failed_traj.extxyz"])
    st = AppState()
    st.add_file(path, "failed_traj.extxyz", "reference", index=":4")
    st.add_file(path, "failed_traj.extxyz", "trajectory", index="4:")
    res = run_pipeline(st.files, SMALL)
    frames = res.frames
    first = frames[frames["source"] == "failed_traj.extxyz"]
    late = frames[frames["source"] == "failed_traj.extxyz #2"]
    assert first["frame"].tolist() == [0, 1, 2, 3] and (first["role"] == "reference").all()
    assert late["frame"].tolist() == list(range(4, 12)) and (late["role"] == "trajectory").all()
    np.testing.assert_allclose(late["time"], 0.1 * np.arange(4, 12))
    atoms = res.atoms.groupby("source", observed=True).size()
    assert atoms.to_dict() == {"failed_traj.extxyz": 4 * 108, "failed_traj.extxyz #2": 8 * 108}
    assert res.reference.startswith("failed_traj.extxyz (432 environments)")
    # the reference's own atoms lie inside it; the jump at frame 8 is novel against it
    by_frame = late.set_index("frame")["frac_novel"]
    assert by_frame.loc[8:].min() > 0.9 and by_frame.loc[:7].max() < by_frame.loc[8:].min()
    assert res.overlap["file"].names == ["failed_traj.extxyz", "failed_traj.extxyz #2"]


# ------------------------------------------------------------------- bandwidth


def frames_table(rows):
    return pd.DataFrame(rows, columns=["source", "role", "n_atoms", "frac_novel"])


def test_bandwidth_advice_rule():
    traj = frames_table([("t", "trajectory", 100, 0.0), ("t", "trajectory", 100, 0.95),
                         ("t", "trajectory", 300, 1.0)])
    # against its own first frame: frame 0 is left out, 0.9875 of the rest is novel
    (note,) = bandwidth_advice(traj, "fixed", 0.015, self_reference=True, h_volume=0.0712)
    assert note.startswith("t: 99% of the atoms are novel (dH > 0) against its own first frame")
    assert "h = 0.015 1/Å" in note and "volume rule" in note and "h = 0.0712 1/Å" in note
    # against a reference file, novelty is the finding, not a bandwidth problem
    assert bandwidth_advice(traj, "fixed", 0.015, self_reference=False) == []
    # the volume rule never gets the note; references are never judged
    assert bandwidth_advice(traj, "volume rule", 0.07, self_reference=True) == []
    ref = frames_table([("r", "reference", 10, 0.0), ("r", "reference", 10, 1.0)])
    assert bandwidth_advice(ref, "fixed", 0.015, self_reference=True) == []
    # the threshold is strict, and a file of one frame has nothing to judge
    both = frames_table([("a", "trajectory", 50, 0.0), ("a", "trajectory", 50, 0.91),
                         ("b", "trajectory", 50, 0.0), ("b", "trajectory", 50, 0.90),
                         ("c", "trajectory", 50, 1.0)])
    notes = bandwidth_advice(both, "fixed", 0.015, self_reference=True)
    assert len(notes) == 1 and notes[0].startswith("a: 91% ") and "would use" not in notes[0]


def test_pipeline_notes_a_too_small_bandwidth(sample):
    spec = FileSpec(str(sample["failed_traj.extxyz"]), "failed_traj.extxyz", "trajectory")
    res = run_pipeline([spec], SMALL.replace(bandwidth=0.004))
    later = res.frames.iloc[1:]
    novel = float(np.average(later["frac_novel"], weights=later["n_atoms"]))
    assert novel > 0.9  # one frame as reference, h = 0.004: too narrow
    frames = read(sample["failed_traj.extxyz"], ":")
    h_volume = bandwidth_from_volume(np.mean([a.get_volume() / len(a) for a in frames]))
    notes = [w for w in res.warnings if "volume rule" in w]
    assert notes == [f"failed_traj.extxyz: {100 * novel:.0f}% of the atoms are novel (dH > 0) "
                     "against its own first frame with h = 0.004 1/Å; the bandwidth may be too "
                     "small for this density: try Bandwidth 'volume rule' (it would use "
                     f"h = {h_volume:.4g} 1/Å)."]
    # with the volume rule: that h is used, reported in Results, and no note
    res_v = run_pipeline([spec], SMALL.replace(bandwidth_rule="volume"))
    assert res_v.h == pytest.approx(h_volume, rel=1e-9)
    assert not [w for w in res_v.warnings if "volume rule" in w]
    # the sidebar shows the h actually used
    view = DataView(state=AppState(), job_mode="thread")
    assert view.h_used.object == ""
    view.state.results = res_v
    assert view.h_used.object == f"h used: **{h_volume:.4g}\u00a01/Å**"
    alert = view._results_panel()
    assert not [o for o in alert.objects if getattr(o, "name", "") == "notes"]
    view.state.results = res
    shown = [o for o in view._results_panel().objects if isinstance(o, pn.pane.Alert)]
    assert len(shown) == 1 and "volume rule" in shown[0].object


# ---------------------------------------------------------------------- LAMMPS


def test_pipeline_reads_lammps_with_type_map_and_time(sample, tmp_path):
    frames = read(sample["failed_traj.extxyz"], ":3")
    dump = tmp_path / "cu.lammpstrj"
    dump.write_text(lammps_dump(frames, [0, 2000, 4000]))
    plain = FileSpec(str(dump), "cu.lammpstrj", "trajectory")
    res = run_pipeline([plain], SMALL)
    assert res.atoms["species"].unique().tolist() == ["H"]  # type 1 read as H ...
    (warning,) = [w for w in res.warnings if "LAMMPS atom types" in w]
    assert warning == ("cu.lammpstrj: LAMMPS atom types carry no element names and were read "
                       "as H, He, ... (type 1 as H, 2 as He); give a type map such as '1:Cu' "
                       "(type:element) or 'O H' (elements in type order) in the files "
                       "table's 'types' column.")
    np.testing.assert_allclose(res.frames["time"], [0.0, 2.0, 4.0])  # 1 fs default
    assert ("cu.lammpstrj: the frames record MD step numbers, not times: time = step x 1 fs; "
            "set 'LAMMPS time step (fs)' in Advanced settings if the run used another step "
            "length") in res.warnings
    mapped = FileSpec(str(dump), "cu.lammpstrj", "trajectory", type_map="1:Cu",
                      timestep_fs=0.5)
    res = run_pipeline([mapped], SMALL)
    assert res.atoms["species"].unique().tolist() == ["Cu"]
    assert not [w for w in res.warnings if "LAMMPS atom types" in w]
    assert [w for w in res.warnings if "step numbers" in w] == [
        "cu.lammpstrj: the frames record MD step numbers, not times: time = step x 0.5 fs; "
        "set 'LAMMPS time step (fs)' in Advanced settings if the run used another step length"]
    np.testing.assert_allclose(res.frames["time"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(res.atoms["time"].to_numpy()[::108], [0.0, 1.0, 2.0])


# ---------------------------------------------------------------- the sidebar


def test_sidebar_adds_lammps_files_with_types_and_time_step(tmp_path):
    make_sample_dir(tmp_path)
    frames = read(tmp_path / "solid.extxyz", ":2")
    (tmp_path / "water.lammpstrj").write_text(lammps_dump(frames, [0, 10]))
    st = AppState(data_dir=str(tmp_path), upload_dir=str(tmp_path / "up"))
    view = DataView(state=st, job_mode="thread")
    assert "water.lammpstrj" in view.file_select.options
    assert list(view.files_table.value.columns) == ["file", "role", "label", "frames", "remove"]
    view.add_file("water.lammpstrj", "trajectory")
    level, text = st.messages[-1]
    assert level == "warning" and text.startswith("water.lammpstrj: LAMMPS atom types carry")
    assert text.endswith("in the files table's 'types' column.")
    # the warning stays on the Data tab (a notification sent before the page is shown is
    # lost, e.g. for a preselected file) until the file gets a type map
    assert view.file_warnings() == [text]
    landing = view._results_panel()
    assert [o.name for o in landing.objects] == ["landing", "file-warnings"]
    assert "water.lammpstrj: LAMMPS atom types carry" in landing.objects[1].object
    # a LAMMPS file brings the "types" column; editing it sets that entry's type map
    table = view.files_table.value
    assert list(table.columns) == ["file", "role", "label", "frames", "types", "remove"]
    assert (table["remove"] == "✖").all()
    edit = type("E", (), {"row": 0, "column": "types", "value": " 1:Cu "})()
    view._on_edit(edit)
    assert st.files[0].type_map == "1:Cu" and view.files_table.value["types"].iat[0] == "1:Cu"
    assert view.file_warnings() == []
    view._on_edit(type("E", (), {"row": 0, "column": "types", "value": "1:Zz"})())
    assert st.files[0].type_map == "1:Cu" and st.messages[-1][0] == "error"
    # the sidebar's type map applies to files added later; the time step to every file
    view.types_input.value = "Cu"
    view.add_file("water.lammpstrj", "reference")
    assert [(f.name, f.role, f.type_map) for f in st.files] == [
        ("water.lammpstrj", "trajectory", "1:Cu"), ("water.lammpstrj #2", "reference", "Cu")]
    st.settings.lammps_timestep_fs = 2.0
    assert [f.timestep_fs for f in st.files] == [2.0, 2.0]
    view.add_file("solid.extxyz", "test")
    assert st.files[-1].type_map == "" and st.files[-1].timestep_fs == 2.0
    # adding an identical entry again says so and adds nothing
    view.add_file("solid.extxyz", "test")
    assert len(st.files) == 3 and st.messages[-1][0] == "info"
    # uploads: any listed format is accepted, other files are refused
    gro = tmp_path / "x.gro"
    frames[0].write(gro)
    view.save_upload("argon.gro", gro.read_bytes(), role="test")
    assert st.files[-1].name == "upload/argon.gro"
    with pytest.raises(QuestsError, match="notes.txt: not a structure file"):
        view.save_upload("notes.txt", b"hello")
    assert ".gro" in UPLOAD_ACCEPT.split(",") and ".lmp" in UPLOAD_ACCEPT.split(",")


def test_files_table_fits_the_sidebar():
    view = DataView(state=AppState(), job_mode="thread")
    table = view.files_table
    assert table.layout == "fit_columns"  # no sideways scroll: columns share the width
    assert table.formatters["file"] == {"type": "textarea"}  # long names wrap
    assert table.widths == TABLE_WIDTHS and "file" not in table.widths
    # the fixed columns leave room for the names in the table of a 380 px sidebar (about
    # 355 px wide once the sidebar's padding is off), even with the types column (LAMMPS
    # files) or the topology column (MD trajectories); with both, names wrap in 45 px
    widths = dict(TABLE_WIDTHS)
    types, topology = widths.pop("types"), widths.pop("topology")
    assert 355 - sum(widths.values()) - max(types, topology) >= 90
    assert 355 - sum(widths.values()) - types - topology >= 45
    assert view.file_select.size <= 4 and table.height is None  # as tall as its rows
    sidebar = view.sidebar()
    cards = [o for o in sidebar if isinstance(o, pn.Card)]
    assert len(cards) == 1 and cards[0].title == "Advanced settings" and cards[0].collapsed
    (row,) = [o for o in sidebar if isinstance(o, pn.Row) and view.h_used in o.objects]
    assert sidebar.index(row) < sidebar.index(cards[0])
    assert any(isinstance(o, pn.Row) and view.jobs.run_button in o.objects for o in sidebar)


def test_frames_table_names_the_file_frame_and_units(sample):
    """The Data tab's frames table: the file's own frame numbers, headers in words with
    units, and no column that only serves the program (global structure number, path,
    atom offsets) or says nothing here (no energies, no labels, exact H)."""
    from dashboard.views.data import frames_table

    st = AppState()
    path = sample["failed_traj.extxyz"]
    st.add_file(path, "failed_traj.extxyz", "reference", index=":4")
    st.add_file(path, "failed_traj.extxyz", "trajectory", index="4:")
    res = run_pipeline(st.files, SMALL)
    table = frames_table(res.frames)
    assert list(table.columns[:3]) == ["file", "frame", "time (ps)"]
    assert {"H (nats)", "mean dH (nats)", "fraction dH > 0", "atoms"} <= set(table.columns)
    for internal in ("structure", "path", "atom_offset", "H_stderr", "frac_novel", "mean_dH",
                     "role", "E (eV, frame)", "H std. error (nats)"):
        assert internal not in table.columns
    late = table[table["file"] == "failed_traj.extxyz #2"]
    assert late["frame"].tolist() == list(range(4, 12))  # the file's frames, not 0..7
    np.testing.assert_allclose(table["H (nats)"], res.frames["H"].round(4))
    # a sampled H keeps its standard error; energies that exist are shown
    frames = res.frames.assign(H_stderr=0.01, energy=-3.5)
    shown = frames_table(frames)
    assert shown["H std. error (nats)"].eq(0.01).all() and shown["E (eV, frame)"].eq(-3.5).all()
    assert list(shown.columns[3:7]) == ["H (nats)", "H std. error (nats)", "mean dH (nats)",
                                        "fraction dH > 0"]  # the results on screen
