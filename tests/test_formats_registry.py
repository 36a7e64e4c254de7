"""The format registry (quests_core.formats): one entry per format, and everything that
lists formats (detection, the follower's formats, the dashboard's suffixes) derived from
it; the io facade keeps its names; the MD reader imports no private helper."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from ase.io.formats import ioformats as ase_formats

from quests_core import formats
from quests_core.formats import (
    EXTENSION_FORMATS,
    FRAME_TEXT_FORMATS,
    define_io_format,
    format_from_name,
    ioformat,
    ioformats,
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

    for name in (*qio.__all__, "_remember", "element_symbols"):
        assert hasattr(qio, name), name


def test_the_md_reader_imports_no_private_helper_of_io_common():
    tree = ast.parse((ROOT / "quests_core" / "io_mdanalysis.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "quests_core.io_common":
            assert not [a.name for a in node.names if a.name.startswith("_")]
