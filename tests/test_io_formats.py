"""Every structure format the dashboard lists and accepts is read, through the same
loader the dashboard uses (``dashboard.compute.load_files`` -> ``Dataset.from_files`` ->
``quests_core.io``), with the right species, and LAMMPS files get their type map,
their time from the timestep and a warning when their types fall back to H, He, ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write

from dashboard.compute import Progress, load_files
from dashboard.paths import DATA_SUFFIXES, is_data_file, is_lammps_file
from dashboard.state import FileSpec
from dashboard.views.data import UPLOAD_ACCEPT
from quests_core.dataset import Dataset
from quests_core.errors import QuestsError
from quests_core.io import detect_format, lammps_type_warning, read_structures


def cu_ni(seed: int = 0) -> Atoms:
    """A 32-atom fcc cell, 24 Cu and 8 Ni, slightly rattled (orthogonal box)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.symbols[::4] = "Ni"
    atoms.rattle(0.02, seed=seed)
    return atoms


def load(path: Path, **spec) -> Dataset:
    """Read a file exactly as the dashboard does."""
    item = FileSpec(str(path), path.name, "test", **spec)
    (loaded,) = load_files([item], Progress(None, None))
    return loaded.dataset


def wrapped_difference(a: Atoms, b: Atoms) -> np.ndarray:
    """Position differences (Å) of two structures up to whole cell vectors."""
    frac = np.linalg.solve(b.cell[:].T, (a.positions - b.positions).T).T
    return (frac - np.round(frac)) @ b.cell[:]


def species_counts(ds: Dataset) -> dict[str, int]:
    values, counts = np.unique(ds.atoms_table()["species"].to_numpy(), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def dump_text(frames: list[Atoms], steps: list[int], element: bool = False) -> str:
    """A LAMMPS text dump (types 1 = Cu, 2 = Ni), written as LAMMPS writes it."""
    lines = []
    for step, atoms in zip(steps, frames, strict=True):
        cols = "id type element x y z" if element else "id type x y z"
        lines += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(len(atoms)),
                  "ITEM: BOX BOUNDS pp pp pp"]
        lines += [f"0.0 {length}" for length in atoms.cell.lengths()]
        lines.append(f"ITEM: ATOMS {cols}")
        for i, (symbol, pos) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions,
                                              strict=True)):
            t = 1 if symbol == "Cu" else 2
            el = f" {symbol}" if element else ""
            lines.append(f"{i + 1} {t}{el} {pos[0]:.8f} {pos[1]:.8f} {pos[2]:.8f}")
    return "\n".join(lines) + "\n"


#: (file name, ASE format used to write it, format quests_core.io must detect, frames)
WRITTEN = [
    ("a.extxyz", "extxyz", "extxyz", 3),
    ("a.xyz", "extxyz", "extxyz", 2),
    ("a.traj", "traj", "traj", 3),
    ("a.cif", "cif", "cif", 1),
    ("a.pdb", "proteindatabank", "proteindatabank", 2),
    ("a.gro", "gromacs", "gromacs", 1),
    ("a.vasp", "vasp", "vasp", 1),
    ("POSCAR", "vasp", "vasp", 1),
    ("CONTCAR", "vasp", "vasp", 1),
    ("POSCAR_relaxed", "vasp", "vasp", 1),
    ("XDATCAR", "vasp-xdatcar", "vasp-xdatcar", 3),
    ("run.xdatcar", "vasp-xdatcar", "vasp-xdatcar", 2),
    ("a.data", "lammps-data", "lammps-data", 1),
    ("a.lmp", "lammps-data", "lammps-data", 1),
    ("a.xyz.gz", "extxyz", "extxyz", 2),
]


@pytest.mark.parametrize(("name", "writer", "detected", "n"), WRITTEN,
                         ids=[w[0] for w in WRITTEN])
def test_every_listed_format_loads(tmp_path, name, writer, detected, n):
    frames = [cu_ni(seed) for seed in range(n)]
    path = tmp_path / name
    kwargs = {"masses": True, "specorder": ["Cu", "Ni"]} if writer == "lammps-data" else {}
    write(path, frames if n > 1 else frames[0], format=writer, **kwargs)
    # listed in the picker and offered by the upload dialog
    assert is_data_file(path)
    if "." in name:
        suffix = "." + name.rsplit(".", 1)[1].lower()
        assert suffix in DATA_SUFFIXES and suffix in UPLOAD_ACCEPT.split(",")
    assert detect_format(path) == detected
    ds = load(path)
    assert len(ds) == n
    assert ds.frames["n_atoms"].tolist() == [32] * n
    assert species_counts(ds) == {"Cu": 24 * n, "Ni": 8 * n}
    # the positions come back, up to wrapping into the cell (within the format's
    # precision; .gro stores nm to 1e-3)
    first = ds.structures[0]
    tol = 2e-2 if writer == "gromacs" else 1e-3
    np.testing.assert_allclose(wrapped_difference(first, frames[0]), 0.0, atol=tol)
    if writer not in ("proteindatabank", "gromacs") or n == 1:
        assert np.isfinite(ds.frames["volume_per_atom"]).all()
    assert lammps_type_warning(path) == ""


def test_accept_list_covers_the_required_formats():
    accepted = set(UPLOAD_ACCEPT.split(","))
    for suffix in (".extxyz", ".xyz", ".traj", ".cif", ".pdb", ".gro", ".vasp", ".xdatcar",
                   ".lammpstrj", ".dump", ".data", ".lmp", ".gz"):
        assert suffix in accepted
    for name in ("POSCAR", "CONTCAR", "XDATCAR", "run.lammpstrj", "x.DUMP", "w.data.gz"):
        assert is_data_file(name)
    for name in ("notes.txt", ".hidden.xyz", "script.py", "poscar.md"):
        assert not is_data_file(name)
    assert [is_lammps_file(n) for n in ("a.lammpstrj", "a.dump", "a.data", "a.lmp.gz",
                                        "a.xyz", "POSCAR")] == [True] * 4 + [False] * 2


# ------------------------------------------------------------------ LAMMPS dumps


@pytest.mark.parametrize("suffix", [".lammpstrj", ".dump"])
def test_lammps_dump_type_map_and_time(tmp_path, suffix):
    frames = [cu_ni(seed) for seed in range(3)]
    path = tmp_path / f"md{suffix}"
    path.write_text(dump_text(frames, [0, 500, 1000]))
    assert detect_format(path) == "lammps-dump-text"

    # no type map: ASE reads type 1 as H and 2 as He, and the warning says so
    plain = load(path)
    assert species_counts(plain) == {"H": 72, "He": 24}
    warning = lammps_type_warning(path)
    assert warning.startswith(f"md{suffix}: LAMMPS atom types carry no element names")
    assert "H, He" in warning and "1:O,2:H" in warning
    assert lammps_type_warning(path, name="shown name").startswith("shown name:")
    # default 1 fs per step: time = timestep * 1 fs = 0, 0.5 and 1 ps
    np.testing.assert_allclose(plain.frames["time"], [0.0, 0.5, 1.0])

    # a type map in each accepted form gives Cu and Ni; the time step scales the time
    for type_map in ("1:Cu,2:Ni", "Cu Ni", "1=Cu 2=Ni"):
        ds = load(path, type_map=type_map, timestep_fs=2.0)
        assert species_counts(ds) == {"Cu": 72, "Ni": 24}
        assert lammps_type_warning(path, type_map) == ""
        np.testing.assert_allclose(ds.frames["time"], [0.0, 1.0, 2.0])  # 1000 * 2 fs = 2 ps
        np.testing.assert_allclose(ds.structures[1].positions, frames[1].positions, atol=1e-6)
    # frame ranges keep the file's frame numbers and times
    later = load(path, type_map="Cu Ni", index="1:", timestep_fs=0.5)
    assert later.frames["frame"].tolist() == [1, 2]
    np.testing.assert_allclose(later.frames["time"], [0.25, 0.5])
    # a type map that misses a type is an error naming file, frame and type
    with pytest.raises(QuestsError, match=r"md.*frame 0: .*type\(s\) \[2\]"):
        load(path, type_map="1:Cu")


def test_lammps_dump_with_element_column_needs_no_map(tmp_path):
    path = tmp_path / "named.lammpstrj"
    path.write_text(dump_text([cu_ni()], [10], element=True))
    assert lammps_type_warning(path) == ""
    ds = load(path)
    assert species_counts(ds) == {"Cu": 24, "Ni": 8}
    assert ds.frames["time"].tolist() == [pytest.approx(0.01)]


def test_time_step_in_the_core_loader(tmp_path):
    path = tmp_path / "md.lammpstrj"
    path.write_text(dump_text([cu_ni(0), cu_ni(1)], [0, 250]))
    assert np.isnan(Dataset.from_files(path).frames["time"]).all()  # core default: unknown
    ds = Dataset.from_files(path, type_map=["Cu", "Ni"], timestep_fs=4.0)
    np.testing.assert_allclose(ds.frames["time"], [0.0, 1.0])
    # files with a time of their own keep it
    xyz = tmp_path / "timed.extxyz"
    atoms = cu_ni()
    atoms.info["time"] = 7.5
    write(xyz, atoms, format="extxyz")
    assert Dataset.from_files(xyz, timestep_fs=4.0).frames["time"].tolist() == [7.5]


# ------------------------------------------------------------------ LAMMPS data


def test_lammps_data_type_map_and_warning(tmp_path):
    atoms = cu_ni()
    bare = tmp_path / "bare.data"
    write(bare, atoms, format="lammps-data", specorder=["Cu", "Ni"], masses=False)
    with_masses = tmp_path / "masses.lmp"
    write(with_masses, atoms, format="lammps-data", specorder=["Cu", "Ni"], masses=True)

    # no Masses section, no map: H and He, with a warning
    assert species_counts(load(bare)) == {"H": 24, "He": 8}
    assert lammps_type_warning(bare).startswith("bare.data: LAMMPS atom types")
    # a type map fixes it, and silences the warning
    ds = load(bare, type_map="Cu Ni")
    assert species_counts(ds) == {"Cu": 24, "Ni": 8}
    assert lammps_type_warning(bare, "1:Cu,2:Ni") == ""
    np.testing.assert_allclose(ds.structures[0].positions, atoms.positions, atol=1e-6)
    swapped = load(bare, type_map="2:Cu,1:Ni")
    assert species_counts(swapped) == {"Ni": 24, "Cu": 8}
    with pytest.raises(QuestsError, match=r"bare.data: frame 0: .*type\(s\) \[2\]"):
        load(bare, type_map="1:Cu")
    # masses name the elements: no map needed, no warning
    assert lammps_type_warning(with_masses) == ""
    assert species_counts(load(with_masses)) == {"Cu": 24, "Ni": 8}
    # only LAMMPS files are ever warned about
    xyz = tmp_path / "a.extxyz"
    write(xyz, atoms)
    assert lammps_type_warning(xyz) == ""
    assert read_structures(bare, type_map="Cu Ni")[0].get_chemical_formula() == "Cu24Ni8"
