"""The format registry (quests_core.formats): one entry per format, and everything that
lists formats (detection, the follower's formats, the dashboard's suffixes) derived from
it; the io facade keeps its names; the MD reader imports no private helper."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write
from ase.io.formats import ioformats as ase_formats

from quests_core import formats
from quests_core.errors import QuestsError
from quests_core.formats import (
    EXTENSION_FORMATS,
    FRAME_TEXT_FORMATS,
    define_io_format,
    format_from_name,
    ioformat,
    ioformats,
)
from quests_core.io import (
    TruncatedFrameWarning,
    count_frames,
    detect_format,
    read_structures,
)

ROOT = Path(__file__).resolve().parents[1]

#: The hand-written table quests_core.io held before the registry (suffix -> format).
OLD_EXTENSION_FORMATS = {
    "lammpstrj": "lammps-dump-text",
    "dump": "lammps-dump-text",
    "lammpsdump": "lammps-dump-text",
    "data": "lammps-data",
    "lmp": "lammps-data",
    "lammpsdata": "lammps-data",
    "extxyz": "extxyz",
    "xyz": "extxyz",
    "traj": "traj",
    "cif": "cif",
    "pdb": "proteindatabank",
    "gro": "gromacs",
    "xsf": "xsf",
    "poscar": "vasp",
    "contcar": "vasp",
    "vasp": "vasp",
    "xdatcar": "vasp-xdatcar",
}


def test_the_table_holds_every_format_of_the_old_hand_written_tables():
    for ext, fmt in OLD_EXTENSION_FORMATS.items():
        assert EXTENSION_FORMATS[ext] == fmt
    assert FRAME_TEXT_FORMATS[:3] == ("extxyz", "xyz", "lammps-dump-text")
    assert {"xtc", "trr", "dcd", "lammps-dcd", "amber-netcdf"} <= set(ioformats)


@pytest.mark.parametrize("name", [n for n, e in ioformats.items() if not e.topology])
def test_entries_agree_with_ase_on_frames_and_reading(name):
    entry = ioformats[name]
    assert name in ase_formats and ase_formats[name].can_read
    assert entry.multi_frame == (not ase_formats[name].single)
    assert entry.description and entry.reader is not None


@pytest.mark.parametrize(("file_name", "fmt"), [
    ("run.extxyz", "extxyz"), ("a.XYZ", "extxyz"), ("a.xyz.gz", "extxyz"),
    ("POSCAR", "vasp"), ("POSCAR_relaxed", "vasp"), ("CONTCAR.bz2", "vasp"),
    ("XDATCAR", "vasp-xdatcar"), ("XDATCAR-2", "vasp-xdatcar"), ("run.xdatcar", "vasp-xdatcar"),
    ("melt.lammpstrj", "lammps-dump-text"), ("x.lmp", "lammps-data"),
    ("a.pdb", "proteindatabank"), ("notes.txt", None), ("run.xtc", None),
])
def test_format_from_name(file_name, fmt):
    assert format_from_name(file_name) == fmt


def test_a_suffix_or_name_is_defined_once():
    with pytest.raises(ValueError, match="share a suffix"):
        define_io_format("not-a-format", "x", multi_frame=True, ext="xyz")
    with pytest.raises(ValueError, match="share a file name"):
        define_io_format("not-a-format", "x", multi_frame=False, names=("poscar",))
    with pytest.raises(ValueError, match="defined twice"):
        define_io_format("extxyz", "x", multi_frame=True)
    assert "not-a-format" not in ioformats


def test_a_format_ase_reads_outside_the_table_gets_ase_defaults():
    entry = ioformat("castep-md")
    assert entry.multi_frame and entry.counter is None and entry.precheck is None
    assert ioformat("extxyz") is ioformats["extxyz"]


def test_dashboard_suffix_lists_come_from_the_registry():
    from dashboard import paths

    assert paths.DATA_SUFFIXES == (*formats.suffixes(), ".gz")
    assert set(paths.MD_SUFFIXES) <= set(paths.DATA_SUFFIXES)
    assert paths.DATA_NAMES == ("POSCAR", "CONTCAR", "XDATCAR")
    assert paths.LAMMPS_SUFFIXES == (
        ".lammpstrj", ".lammpsdump", ".dump", ".data", ".lmp", ".lammpsdata")


def test_the_io_facade_keeps_its_names():
    import quests_core.io as qio

    for name in (*qio.__all__, "element_symbols"):
        assert hasattr(qio, name), name


def test_the_md_reader_imports_no_private_helper_of_io_common():
    tree = ast.parse((ROOT / "quests_core" / "io_mdanalysis.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "quests_core.io_common":
            assert not [a.name for a in node.names if a.name.startswith("_")]


# ----------------------------------------------------------------------------
# A format added through the registry: DMol3 / Materials Studio .arc trajectories
# ----------------------------------------------------------------------------

SAMPLE = ROOT / "sample_data" / "cu_melt.extxyz"


@pytest.fixture(scope="module")
def melt(tmp_path_factory):
    """Three frames of the Cu melt, written by ASE as extxyz and as a DMol3 .arc file."""
    frames = read(SAMPLE, ":3")
    folder = tmp_path_factory.mktemp("arc")
    write(folder / "melt.extxyz", frames, format="extxyz")
    write(folder / "melt.arc", frames, format="dmol-arc")
    return folder, frames


def _cli_entropy(path: Path, tmp_path: Path) -> float:
    out = tmp_path / f"{path.stem}-{path.suffix[1:]}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "quests_core.cli", "entropy", str(path), "--bandwidth", "0.015",
         "--no-cache", "--no-progress", "-o", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(json.loads(out.read_text())["rows"][0]["H"])


def test_dmol_arc_loads_and_gives_the_h_of_the_extxyz(melt, tmp_path):
    import quests_core as qc

    folder, frames = melt
    arc, ext = folder / "melt.arc", folder / "melt.extxyz"
    assert detect_format(arc) == "dmol-arc" and count_frames(arc) == 3
    structures = read_structures(arc)
    assert len(structures) == 3
    for got, want in zip(structures, frames, strict=True):
        assert got.get_chemical_symbols() == want.get_chemical_symbols()
        np.testing.assert_allclose(got.positions, want.positions, atol=1e-7)
        np.testing.assert_allclose(got.cell[:], want.cell[:], atol=1e-5)  # %9.5f in the file
        assert got.pbc.all()
    h_api = [qc.entropy(qc.descriptors(read_structures(p)), 0.015) for p in (arc, ext)]
    h_cli = [_cli_entropy(p, tmp_path) for p in (arc, ext)]
    # the .arc file holds the cell lengths to 1e-5 Å (%9.5f): H agrees to 1e-7 (2e-8 here)
    np.testing.assert_allclose(h_api[0], h_api[1], rtol=1e-7)
    np.testing.assert_allclose(h_cli[0], h_cli[1], rtol=1e-7)
    np.testing.assert_allclose(h_cli, h_api, rtol=1e-9)  # the CLI reads what the API reads
    assert f"{h_cli[0]:.5f}" == f"{h_cli[1]:.5f}"  # the CLI's table shows the same H


def test_dmol_arc_cut_last_frame_is_skipped_and_a_foreign_arc_is_one_line(melt, tmp_path):
    folder, _ = melt
    data = (folder / "melt.arc").read_bytes()
    cut = tmp_path / "running.arc"
    cut.write_bytes(data[: len(data) - 5000])  # inside the last frame's atom lines
    with pytest.warns(TruncatedFrameWarning, match="frame 2: the file ends inside it"):
        assert len(read_structures(cut)) == 2
    assert count_frames(cut) == 2
    tinker = tmp_path / "tinker.arc"
    tinker.write_text("     3  water\n     1  O  0.0 0.0 0.0  1  2 3\n")
    with pytest.raises(QuestsError) as err:
        read_structures(tinker)
    assert str(err.value).count("\n") == 0
    assert "does not start with '!BIOSYM archive 3'" in str(err.value)
    renamed = tmp_path / "trajectory"  # no suffix: found by its magic bytes
    renamed.write_bytes(data)
    assert detect_format(renamed) == "dmol-arc"
    car = tmp_path / "cell.car"  # ASE's DMol3 .car starts the same: it stays ASE's
    car.write_bytes(data)
    assert detect_format(car) == "dmol-car"


def test_dmol_arc_is_listed_by_the_dashboard():
    from dashboard.paths import DATA_SUFFIXES, is_data_file

    assert ".arc" in DATA_SUFFIXES and is_data_file("md/run.arc")
