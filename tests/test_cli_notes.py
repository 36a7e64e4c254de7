"""The CLI warns where the dashboard warns, in the same words (quests_core.notes): a
LAMMPS dump whose numeric types are read as H, He, ...; a run almost all novel against
its own first frame at a fixed bandwidth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from dashboard.compute import type_map_warning
from dashboard.pipeline import run_pipeline
from dashboard.state import ComputeSettings, FileSpec
from quests_core.cli import main

RUN = Path(__file__).resolve().parents[1] / "sample_data" / "cu_failed_simulation.extxyz"


def _dump(path: Path) -> Path:
    """A LAMMPS dump of two frames of Cu/Au named only by numeric types 1 and 2."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(0)
    lines = []
    for step in (0, 100):
        pos = atoms.positions + rng.normal(0, 0.05, atoms.positions.shape)
        lines += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(len(atoms)),
                  "ITEM: BOX BOUNDS pp pp pp", *["0 7.2"] * 3, "ITEM: ATOMS id type x y z"]
        lines += [f"{i + 1} {1 + i % 2} {x:.5f} {y:.5f} {z:.5f}"
                  for i, (x, y, z) in enumerate(pos)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _warnings(err: str) -> list[str]:
    return [x.removeprefix("warning: ") for x in err.splitlines() if x.startswith("warning:")]


def test_type_map_note_in_the_cli_and_the_dashboard(tmp_path, fresh_cache, capsys):
    dump = _dump(tmp_path / "alloy.lammpstrj")
    assert main(["entropy", str(dump), "-k", "8", "--cutoff", "4", "--no-progress"]) == 0
    (cli,) = [w for w in _warnings(capsys.readouterr().err) if "atom types" in w]
    board = type_map_warning(FileSpec(str(dump), dump.name, "trajectory"))
    fact = ("alloy.lammpstrj: LAMMPS atom types carry no element names and were read as H, "
            "He, ... (type 1 as H, 2 as He); give a type map such as '1:O,2:H' "
            "(type:element) or 'O H' (elements in type order)")
    assert cli == f"{fact} with --type-map."
    assert board == f"{fact} in the files table's 'types' column."
    # with a type map: no note
    assert main(["entropy", str(dump), "--type-map", "Cu,Au", "-k", "8", "--cutoff", "4",
                 "--no-progress"]) == 0
    assert [w for w in _warnings(capsys.readouterr().err) if "atom types" in w] == []


def test_narrow_bandwidth_note_in_the_cli_and_the_dashboard(fresh_cache, capsys):
    argv = ["trajectory", str(RUN), "--index", ":4", "--bandwidth", "0.004", "-k", "8",
            "--cutoff", "4", "--no-progress"]
    assert main(argv) == 0
    (cli,) = _warnings(capsys.readouterr().err)
    settings = ComputeSettings(learning_max_n=50, learning_repeats=1, overlap_max_n=50,
                               k=8, cutoff=4.0, bandwidth=0.004).frozen()
    res = run_pipeline([FileSpec(str(RUN), RUN.name, "trajectory", index=":4")], settings)
    (board,) = [w for w in res.warnings if "novel" in w]
    head = cli.split("; the bandwidth may be too small")[0]
    assert head.startswith(f"{RUN}: ") and "% of the atoms are novel (dH > 0) against its "\
        "own first frame with h = 0.004 1/Å" in head
    # the same numbers in both: the percentage and the h the volume rule would use
    assert cli.removeprefix(str(RUN)).replace("try --bandwidth auto", "X") == \
        board.removeprefix(RUN.name).replace("try Bandwidth 'volume rule'", "X")
    # a fitting bandwidth: no note
    assert main([*argv[:4], "--bandwidth", "auto", *argv[6:]]) == 0
    assert _warnings(capsys.readouterr().err) == []


def test_lammps_step_times_agree_and_are_noted(tmp_path, fresh_cache, capsys):
    """A dump records MD step numbers (0 and 100 here), not times: the CLI used to write
    NaN times and the dashboard step x 1 fs without a word; now both give step x 1 fs by
    default, say so, and take another step length (also on a cached rerun)."""
    import pandas as pd

    dump = _dump(tmp_path / "alloy.lammpstrj")
    base = ["trajectory", str(dump), "--type-map", "Cu,Au", "-k", "8", "--cutoff", "4",
            "--no-progress"]
    out = tmp_path / "t.csv"
    for fs, times in ((None, [0.0, 0.1]), (2.0, [0.0, 0.2])):
        extra = [] if fs is None else ["--lammps-timestep-fs", str(fs)]
        assert main([*base, *extra, "-o", str(out)]) == 0
        (note,) = _warnings(capsys.readouterr().err)
        assert note == (f"{dump}: the frames record MD step numbers, not times: time = step "
                        f"x {fs or 1:g} fs; give --lammps-timestep-fs if the run used "
                        "another step length")
        assert pd.read_csv(out)["time"].tolist() == pytest.approx(times)
    settings = ComputeSettings(learning_max_n=50, learning_repeats=1, overlap_max_n=50,
                               k=8, cutoff=4.0).frozen()
    spec = FileSpec(str(dump), dump.name, "trajectory", type_map="Cu,Au")
    res = run_pipeline([spec], settings)
    assert res.frames["time"].tolist() == pytest.approx([0.0, 0.1])
    assert (f"{dump.name}: the frames record MD step numbers, not times: time = step x 1 fs; "
            "set 'LAMMPS time step (fs)' in Advanced settings if the run used another step "
            "length") in res.warnings
