"""Trajectory formats of MD codes read through MDAnalysis (quests_core.io_mdanalysis).

The trajectories are written by MDAnalysis itself from frames of the bundled Cu
melt (864 atoms, cubic) and of a rattled fcc Cu cell with a triclinic box (216
atoms), read back through :func:`quests_core.io.iter_frames` and compared with
the same frames read from extxyz.

Tolerances (what each format stores):

* DCD, Amber NetCDF: float32 Å, one rounding: ``|dx| <= 2**-24 |x|`` (half an
  ulp); we allow one ulp of the largest coordinate, ``2**-23 max|x|`` (2.8e-6 Å
  for the 23 Å melt box).
* TRR: float32 nm, so two roundings (Å -> nm in float32, then the stored value);
  we allow two ulps, ``2**-22 max|x|``.
* XTC: integers on a grid of 1/precision nm, precision 1000 (GROMACS's default):
  0.01 Å steps, so ``|dx| <= 0.005 Å`` (half a step) plus float32 rounding. The
  1e-6 Å of the issue cannot hold for XTC; instead the extxyz frame quantised
  exactly as the XTC writer does (float32 nm, round half away from zero to the
  grid) must agree to float32 rounding (2 ulps, < 1e-5 Å).

Descriptors then agree within the derivative bound of SPEC section 1 for
positions moved by at most ``d`` (each distance moves by at most ``2d``):
``X1 = w(r)/r`` gives ``|dX1/dr| <= 4/rc^2 + 1/rmin^2``; ``C_jl = sqrt(w_j w_l)/r_jl``
gives ``|dC| <= 2d (4/(rc rmin) + 1/rmin^2)``; sorting and the t-th largest are
1-Lipschitz in the max norm. The bound holds where the set of k nearest
neighbours cannot change, i.e. where the gap between the k-th and (k+1)-th
neighbour distance exceeds ``4d``; X2 rows of the (counted) other atoms, whose
k-th neighbour may swap, are held to the bound plus 1 % of the largest X2 value
(X1 is bounded for every atom: the sorted k smallest distances are 1-Lipschitz).
Measured on the melt (d = 0.005 Å for XTC): X1 within 0.0029 (bound 0.0041),
X2 within 0.00033 on the 64 % stable atoms (bound 0.0065) and 0.00073 on all;
DCD/NetCDF (d = 9.5e-7 Å): X1 within 5.0e-7 (bound 7.8e-7), X2 within 8.3e-8.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.cell import Cell
from ase.io import read, write
from ase.neighborlist import neighbor_list

from quests_core.descriptors import descriptors
from quests_core.errors import QuestsError
from quests_core.io import (
    TruncatedFrameWarning,
    count_frames,
    detect_format,
    iter_frames,
    read_structures,
)
from quests_core.io_mdanalysis import EXTRA, find_topology, load_topology, topology_path
from quests_core.settings import DEFAULTS

mda = pytest.importorskip("MDAnalysis")

ROOT = Path(__file__).resolve().parents[1]
MELT = ROOT / "sample_data" / "cu_melt.extxyz"
EXTENSIONS = {"xtc": "xtc", "trr": "trr", "dcd": "dcd", "ncdf": "amber-netcdf"}
K, RC = DEFAULTS.k, DEFAULTS.cutoff


# ----------------------------------------------------------------------------
# Writing test trajectories with MDAnalysis
# ----------------------------------------------------------------------------


def _universe(n: int, name: str = "Cu"):
    u = mda.Universe.empty(n, trajectory=True)
    u.add_TopologyAttr("names", [name] * n)
    u.add_TopologyAttr("types", [name] * n)
    u.add_TopologyAttr("elements", [name] * n)
    u.add_TopologyAttr("resnames", ["CU"])
    u.add_TopologyAttr("resids", [1])
    return u


def write_trajectory(path: Path, frames) -> None:
    """Write ``frames`` (ase.Atoms) with MDAnalysis's writer for the extension."""
    u = _universe(len(frames[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NCDF without netCDF4: slow scipy writer
        with mda.Writer(str(path), len(frames[0])) as w:
            for atoms in frames:
                u.atoms.positions = atoms.positions
                u.dimensions = list(atoms.cell.cellpar())
                u.trajectory.ts.time = float(atoms.info.get("time", 0.0))
                w.write(u.atoms)


def write_topology(path: Path, atoms, name: str = "Cu") -> None:
    """PDB / GRO with MDAnalysis, PSF by hand (MDAnalysis writes none), LAMMPS data by ASE."""
    n = len(atoms)
    suffix = path.suffix
    if suffix in (".pdb", ".gro"):
        u = _universe(n, name)  # GRO has no element column: only names are written
        u.atoms.positions = atoms.positions
        u.dimensions = list(atoms.cell.cellpar())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u.atoms.write(str(path))
    elif suffix == ".psf":
        lines = ["PSF", "", "       1 !NTITLE", " REMARKS quests test", "", f"{n:8d} !NATOM"]
        for i in range(n):
            lines.append(
                f"{i + 1:8d} CU   1    CU   {name.upper():<4} {name.upper():<4}  0.000000"
                f"       63.5460           0"
            )
        lines += ["", "       0 !NBOND: bonds", "", "       0 !NTHETA: angles", "",
                  "       0 !NPHI: dihedrals", "", "       0 !NIMPHI: impropers", "",
                  "       0 !NDON: donors", "", "       0 !NACC: acceptors", "",
                  "       0 !NNB", ""]
        path.write_text("\n".join(lines) + "\n")
    elif suffix == ".data":
        write(path, atoms, format="lammps-data", atom_style="atomic", masses="mass" in name)
    else:  # pragma: no cover
        raise ValueError(suffix)


@pytest.fixture(scope="module")
def melt():
    """Three frames of the bundled Cu melt (864 atoms, cubic 23.2 Å box)."""
    return read(MELT, index=":3")


@pytest.fixture(scope="module")
def triclinic():
    """Two frames of 216 rattled fcc Cu atoms in a triclinic cell, standard orientation
    (a along x, b in the xy plane: the orientation MDAnalysis's triclinic_vectors gives)."""
    base = bulk("Cu", "fcc", a=3.61) * (6, 6, 6)  # primitive cell: angles of 60 degrees
    base.set_cell(Cell.fromcellpar(base.cell.cellpar()), scale_atoms=True)
    frames = []
    for i in range(2):
        atoms = base.copy()
        atoms.rattle(0.08, seed=10 + i)
        atoms.wrap()
        atoms.info["time"] = 5.0 * (i + 1)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def files(tmp_path_factory, melt, triclinic):
    """The melt and the triclinic frames in every format, with their topologies."""
    d = tmp_path_factory.mktemp("md")
    out = {}
    for tag, frames in (("melt", melt), ("tric", triclinic)):
        write(d / f"{tag}.extxyz", frames)
        for ext in EXTENSIONS:
            write_trajectory(d / f"{tag}.{ext}", frames)
        topo = d / "top"
        topo.mkdir(exist_ok=True)
        for suffix in (".pdb", ".gro", ".psf", ".data"):
            write_topology(topo / f"{tag}{suffix}", frames[0])
        write_topology(topo / f"{tag}_mass.data", frames[0], name="Cu mass")
        out[tag] = d
    return d


def reference(files, tag):
    return read_structures(files / f"{tag}.extxyz")


# ----------------------------------------------------------------------------
# Tolerances
# ----------------------------------------------------------------------------


def position_tolerance(ext: str, frames) -> float:
    top = max(float(np.abs(a.positions).max()) for a in frames)
    if ext == "xtc":
        return 0.005 + 2.0**-22 * top
    if ext == "trr":
        return 2.0**-22 * top
    return 2.0**-23 * top


def xtc_quantised(positions: np.ndarray) -> np.ndarray:
    """The positions as the XTC writer stores them (precision 1000/nm): float32 nm,
    rounded half away from zero to the grid in float32, read back as int * 0.001f."""
    nm = positions.astype(np.float32) * np.float32(0.1)
    lf = nm * np.float32(1000.0)
    lf = np.where(lf >= 0, lf + np.float32(0.5), lf - np.float32(0.5)).astype(np.float32)
    ints = np.trunc(lf).astype(np.int64)
    return (ints.astype(np.float32) * np.float32(1.0 / 1000.0)).astype(np.float64) * 10.0


def derivative_bound(frames, d: float) -> tuple[float, float]:
    """(X1 bound, X2 bound) for positions moved by at most ``d`` Å (module docstring)."""
    rmin = min(float(neighbor_list("d", a, RC).min()) for a in frames)
    l1 = 4.0 / RC**2 + 1.0 / rmin**2
    l2 = 4.0 / (RC * rmin) + 1.0 / rmin**2
    return 2 * d * l1, 2 * d * l2


def stable_rows(frames, d: float) -> np.ndarray:
    """Atoms whose k nearest neighbours cannot change when every atom moves by <= d."""
    keep = []
    for atoms in frames:
        i, dist = neighbor_list("id", atoms, RC)
        ok = np.ones(len(atoms), dtype=bool)
        for a in range(len(atoms)):
            r = np.sort(dist[i == a])
            if len(r) > K:
                ok[a] = r[K] - r[K - 1] > 4 * d
        keep.append(ok)
    return np.concatenate(keep)


def assert_descriptors_close(frames, ref, d: float) -> None:
    x = descriptors(frames, k=K, cutoff=RC)
    y = descriptors(ref, k=K, cutoff=RC)
    b1, b2 = derivative_bound(ref, d)
    stable = stable_rows(ref, d)
    err1 = np.abs(x[:, :K] - y[:, :K]).max()
    err2 = np.abs(x[stable, K:] - y[stable, K:]).max()
    assert err1 <= b1, (err1, b1)
    assert err2 <= b2, (err2, b2)
    # the melt: most atoms; the rattled crystal's third shell holds the 32nd and 33rd
    # neighbours of most atoms at nearly equal distances
    assert stable.mean() > 0.1, stable.mean()
    # the others: a swap of the k-th neighbour changes X2 by less than its largest value
    assert np.abs(x[:, K:] - y[:, K:]).max() <= 0.01 * np.abs(y[:, K:]).max() + b2


# ----------------------------------------------------------------------------
# Values: positions, cells, elements, time, descriptors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["melt", "tric"])
@pytest.mark.parametrize("ext", list(EXTENSIONS))
def test_positions_cell_time_and_descriptors_match_extxyz(files, tag, ext):
    ref = reference(files, tag)
    frames = list(iter_frames(files / f"{tag}.{ext}", topology=files / "top" / f"{tag}.pdb"))
    assert [f.frame for f in frames] == list(range(len(ref)))
    atoms = [f.atoms for f in frames]
    tol = position_tolerance(ext, ref)
    cell_tol = 2.0**-22 * max(float(np.abs(a.cell[:]).max()) for a in ref)
    for a, r in zip(atoms, ref, strict=True):
        assert a.get_chemical_symbols() == r.get_chemical_symbols()
        assert a.pbc.all()
        assert np.abs(a.positions - r.positions).max() <= tol
        assert np.abs(a.cell[:] - r.cell[:]).max() <= cell_tol
    dx = max(np.abs(a.positions - r.positions).max() for a, r in zip(atoms, ref, strict=True))
    if ext == "xtc":
        assert dx > 0.004  # XTC really is on the 0.01 Å grid (not a float32 copy)
        for a, r in zip(atoms, ref, strict=True):
            assert np.abs(a.positions - xtc_quantised(r.positions)).max() < 1e-5
    times = [a.info.get("time") for a in atoms]
    if ext == "dcd":  # DCD stores no per-frame time: start + frame * dt (MDAnalysis: 1 ps)
        assert times == pytest.approx([0.0, 1.0, 2.0][: len(ref)], abs=1e-6)
    else:
        assert times == pytest.approx([r.info["time"] for r in ref], abs=1e-4)
    assert_descriptors_close(atoms, ref, dx)


@pytest.mark.parametrize("topology", ["melt.pdb", "melt.gro", "melt.psf", "melt_mass.data"])
def test_every_topology_names_the_atoms(files, topology):
    top = load_topology(files / "top" / topology)
    assert top.numbers.tolist() == [29] * 864
    assert top.how == {
        "melt.pdb": "elements",
        "melt.gro": "guessed from names",
        "melt.psf": "masses",  # a PSF has masses: they come before the names
        "melt_mass.data": "masses",
    }[topology]
    frames = read_structures(files / "melt.dcd", index="1", topology=files / "top" / topology)
    ref = reference(files, "melt")[1]
    assert np.abs(frames[0].positions - ref.positions).max() <= position_tolerance("dcd", [ref])


def test_lammps_data_topology_type_map_and_lammps_dcd_time(files):
    data = files / "top" / "melt.data"  # no Masses section: only numeric types
    with pytest.raises(QuestsError,
                       match=r"melt\.data: atom 1 \(1-based\) has LAMMPS type 1 .*type map"):
        list(iter_frames(files / "melt.dcd", topology=data))
    with pytest.raises(QuestsError, match=r"type\(s\) \[1\] missing from the type map"):
        list(iter_frames(files / "melt.dcd", topology=data, type_map="2:Ni"))
    frames = list(iter_frames(files / "melt.dcd", topology=data, type_map="1:Ni"))
    assert set(frames[0].atoms.get_chemical_symbols()) == {"Ni"}
    # a DCD with a LAMMPS data topology is a LAMMPS DCD: its time step is in fs
    from MDAnalysis import units

    akma_per_ps = units.convert(1.0, "ps", "AKMA")
    assert [f.atoms.info["time"] for f in frames] == pytest.approx(
        [0.0, akma_per_ps / 1000.0, 2 * akma_per_ps / 1000.0], rel=1e-6
    )
    assert frames[1].atoms.info["time"] != pytest.approx(1.0)
    fmt = detect_format(files / "melt.dcd", "lammps-dcd")
    assert fmt == "lammps-dcd"
    again = list(iter_frames(files / "melt.dcd", format=fmt, topology=files / "top/melt.pdb"))
    assert again[2].atoms.info["time"] == pytest.approx(frames[2].atoms.info["time"])


def test_selection_count_and_streaming(files):
    path = files / "melt.xtc"
    top = files / "top" / "melt.pdb"
    assert detect_format(path) == "xtc"
    assert [detect_format(files / f"melt.{e}") for e in EXTENSIONS] == list(EXTENSIONS.values())
    for ext in EXTENSIONS:
        assert count_frames(files / f"melt.{ext}") == 3
    assert [f.frame for f in iter_frames(path, index="1:", topology=top)] == [1, 2]
    assert [f.frame for f in iter_frames(path, index="::2", topology=top)] == [0, 2]
    last = list(iter_frames(path, index=-1, topology=top))
    assert [f.frame for f in last] == [2]
    whole = list(iter_frames(path, topology=top))
    assert np.array_equal(last[0].atoms.positions, whole[2].atoms.positions)
    with pytest.raises(QuestsError, match=r"melt\.xtc: frame 7 does not exist"):
        list(iter_frames(path, index=7, topology=top))
    # frames are independent objects (one frame of memory each, not views of a buffer)
    gen = iter_frames(path, topology=top)
    first = next(gen).atoms.positions.copy()
    next(gen)
    assert np.array_equal(whole[0].atoms.positions, first)
    assert not any(name.startswith(".") for name in os.listdir(files))  # no offset caches


def test_dataset_reads_md_trajectories(files, tmp_path):
    """The Dataset loader streams them too (the topology next to the trajectory)."""
    from quests_core.dataset import Dataset

    traj = tmp_path / "run.trr"
    traj.write_bytes((files / "melt.trr").read_bytes())
    (tmp_path / "run.pdb").write_bytes((files / "top" / "melt.pdb").read_bytes())
    ds = Dataset.from_files([traj], lazy=True)
    assert ds.frames["frame"].tolist() == [0, 1, 2]
    assert ds.frames["time"].tolist() == pytest.approx([20.0, 22.0, 24.0])
    assert ds.frames["n_atoms"].tolist() == [864] * 3
    assert set(ds.frames["elements"]) == {"Cu"}
    ref = reference(files, "melt")
    for a, r in zip(ds.iter_structures(), ref, strict=True):
        assert np.abs(a.positions - r.positions).max() <= position_tolerance("trr", ref)


def test_topology_found_next_to_the_trajectory(files, tmp_path):
    traj = tmp_path / "run.xtc"
    traj.write_bytes((files / "melt.xtc").read_bytes())
    with pytest.raises(QuestsError) as info:
        list(iter_frames(traj))
    assert str(info.value).startswith(f"{traj}: GROMACS XTC files do not name their atoms")
    assert "\n" not in str(info.value)
    assert topology_path(traj) is None
    (tmp_path / "run.gro").write_bytes((files / "top" / "melt.gro").read_bytes())
    assert find_topology(traj) == str(tmp_path / "run.gro")
    assert topology_path(traj) == str(tmp_path / "run.gro")
    assert topology_path(traj, topology="other.pdb") == "other.pdb"
    assert topology_path(files / "melt.extxyz", topology="other.pdb") is None
    assert len(read_structures(traj)) == 3
    (tmp_path / "run.pdb").write_bytes((files / "top" / "melt.pdb").read_bytes())
    assert find_topology(traj) is None  # two candidates: the user must choose
    with pytest.raises(QuestsError, match="give a topology file"):
        read_structures(traj)


def test_topology_errors_name_the_file(files, tmp_path, triclinic):
    small = tmp_path / "small.pdb"
    write_topology(small, triclinic[0])
    with pytest.raises(QuestsError, match=r"melt\.xtc: the trajectory has 864 atoms, the "
                                          r"topology 216"):
        list(iter_frames(files / "melt.xtc", topology=small))
    odd = tmp_path / "odd.gro"
    write_topology(odd, triclinic[0], name="Qq")
    with pytest.raises(QuestsError, match=r"odd\.gro: atom 1 \(1-based; name 'Qq'\): cannot "
                                          r"tell its element .*'Qq=O'"):
        load_topology(odd)
    bad = tmp_path / "bad.psf"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(QuestsError, match=r"bad\.psf: cannot read the PSF topology"):
        load_topology(bad)
    with pytest.raises(QuestsError, match=r"x\.txt: not a topology file"):
        (tmp_path / "x.txt").write_text("hello\n")
        load_topology(tmp_path / "x.txt")


def test_without_the_extra_one_line_names_it(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "MDAnalysis", None)  # import MDAnalysis -> ImportError
    for ext in EXTENSIONS:
        path = files / f"melt.{ext}"
        assert detect_format(path) == EXTENSIONS[ext]  # detection needs no MDAnalysis
        for call in (lambda p=path: list(iter_frames(p, topology=files / "top" / "melt.pdb")),
                     lambda p=path: count_frames(p)):
            with pytest.raises(QuestsError) as info:
                call()
            text = str(info.value)
            assert text.startswith(f"{path}: reading ")
            assert text.endswith(f"files needs MDAnalysis: {EXTRA}")
            assert "\n" not in text
    assert EXTRA == 'pip install "quests-dashboard[md]"'


# ----------------------------------------------------------------------------
# Hostile input
# ----------------------------------------------------------------------------


def _cut(src: Path, dst: Path, keep: int) -> Path:
    dst.write_bytes(src.read_bytes()[:keep])
    return dst


def test_truncated_last_frame_is_skipped_with_a_warning(files, tmp_path):
    top = files / "top" / "melt.pdb"
    for ext in ("xtc", "trr", "dcd"):
        src = files / f"melt.{ext}"
        cut = _cut(src, tmp_path / f"cut.{ext}", src.stat().st_size - 100)
        assert count_frames(cut) == 2
        skipped = []
        with pytest.warns(TruncatedFrameWarning, match=rf"cut\.{ext}: frame 2: the file ends"):
            frames = list(iter_frames(cut, topology=top, skipped=skipped))
        assert [f.frame for f in frames] == [0, 1]
        assert skipped == [(str(cut), 2, "the file ends inside it")]
        whole = read_structures(src, index=":2", topology=top)
        for a, b in zip(frames, whole, strict=True):
            assert np.array_equal(a.atoms.positions, b.positions)


def test_corrupt_middle_frame_is_an_error_naming_it(files, tmp_path):
    data = bytearray((files / "melt.xtc").read_bytes())
    from MDAnalysis.lib.formats.libmdaxdr import XTCFile

    with XTCFile(str(files / "melt.xtc")) as f:
        offsets = f.offsets
    start = int(offsets[1]) + 100  # inside the compressed coordinates of frame 1
    data[start:start + 2000] = b"\xff" * 2000
    bad = tmp_path / "bad.xtc"
    bad.write_bytes(bytes(data))
    with pytest.raises(QuestsError) as info:
        list(iter_frames(bad, topology=files / "top" / "melt.pdb"))
    assert str(info.value) == (
        f"{bad}: frame 1: corrupt GROMACS XTC data: decoding it aborts the reader "
        "(checked in a separate process)"
    )
    # the frames before it are read; those after it are refused, naming where it starts
    assert len(read_structures(bad, index="0", topology=files / "top" / "melt.pdb")) == 1
    with pytest.raises(QuestsError, match=r"bad\.xtc: frame 2: not read: the file is corrupt "
                                          r"from frame 1 on"):
        read_structures(bad, index="2", topology=files / "top" / "melt.pdb")


HOSTILE = r"""
import sys, warnings
warnings.simplefilter("ignore")
from quests_core.errors import QuestsError
from quests_core.io import count_frames, iter_frames
for path in sys.argv[2:]:
    for call in (lambda: list(iter_frames(path, topology=sys.argv[1])), lambda: count_frames(path)):
        try:
            call()
            print("READ", path)
        except QuestsError as exc:
            print(exc)
import gc; gc.collect()
"""


def test_hostile_files_give_one_line_never_a_traceback(files, tmp_path):
    rng = np.random.default_rng(7)
    paths = []
    for ext in ("xtc", "trr", "dcd", "nc"):
        garbage = tmp_path / f"garbage.{ext}"
        garbage.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
        paths.append(garbage)
    for ext in ("xtc", "dcd", "trr", "ncdf"):
        src = files / f"melt.{ext}"
        paths.append(_cut(src, tmp_path / f"stub.{ext}", 50))  # inside the header
        paths.append(_cut(src, tmp_path / f"half.{ext}", src.stat().st_size // 3))
    huge = tmp_path / "huge.xtc"  # an XTC header declaring 2**30 atoms
    huge.write_bytes(struct.pack(">iii", 1995, 2**30, 0) + b"\0" * 200)
    paths.append(huge)
    proc = subprocess.run(
        [sys.executable, "-c", HOSTILE, str(files / "top" / "melt.pdb"), *map(str, paths)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 * len(paths)
    by_path = {str(p): [] for p in paths}
    for line in lines:
        path = line[len("READ "):] if line.startswith("READ ") else line.split(": ", 1)[0]
        by_path[path].append(line)
    for path, got in by_path.items():
        assert len(got) == 2, (path, got)
        if "half." in path and not path.endswith(".ncdf"):
            # a third of the file: frame 0 whole, frame 1 cut -> read with a warning
            assert got[0] == f"READ {path}" or got[0].startswith(f"{path}: frame"), got
        else:
            assert all(g.startswith(f"{path}: ") for g in got), got
    assert any("more than the" in line for line in by_path[str(huge)])
