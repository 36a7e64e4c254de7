"""Trajectory formats of MD codes, read through MDAnalysis (the optional ``md`` extra).

What ASE cannot read: GROMACS XTC and TRR, CHARMM/NAMD/LAMMPS DCD and Amber
NetCDF (``.nc``/``.ncdf``, NetCDF-3 as Amber writes it, read with scipy).
None of these files names its atoms, so the elements come from a *topology*
file (PDB, GRO, PSF, LAMMPS data, Amber prmtop, GROMACS tpr) parsed by
MDAnalysis: its ``elements`` attribute where the file has one, else a LAMMPS
type map (:func:`quests_core.io.parse_type_map`, for numeric types), else the
masses of a LAMMPS data file, else MDAnalysis's guess from the atom names (or
types). Without an explicit topology, a single file next to the trajectory
with the same stem and a topology extension is used.

Every frame becomes an :class:`ase.Atoms` with positions in Å (float64), the
cell from the trajectory's box (XTC/TRR: the box vectors; DCD/NetCDF: the
``(a, b, c, alpha, beta, gamma)`` dimensions through MDAnalysis's
``triclinic_vectors``), periodic when the file has a box, and
``info["time"]`` in ps. Frames are read one at a time from the file (memory:
one frame, plus the XTC/TRR frame offsets, 8 bytes per frame); nothing is
written next to the trajectory (MDAnalysis's XTC offset cache is not used).

MDAnalysis's XTC decoder (C) aborts the process on some corrupt compressed
coordinates; XTC and TRR frames are therefore decoded once in a child process
first (one process per file version, remembered) and the frames from a fatal
one on are refused with an error instead of being decoded here.

Errors follow :mod:`quests_core.io`: one-line
:class:`~quests_core.errors.QuestsError` messages naming the file and frame.
The atom count of the trajectory's header is checked against the topology
before any frame is allocated. A last frame cut short (a run still writing)
is skipped with a :class:`~quests_core.io.TruncatedFrameWarning` when at
least one complete frame precedes it, else it is an error. Without MDAnalysis
installed these formats give one line naming the extra to install.
"""

from __future__ import annotations

import functools
import os
import struct
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers, chemical_symbols

from quests_core.errors import QuestsError
from quests_core.io_common import (
    Frame,
    _check_path,
    _frame_error,
    _one_line,
    _skip_last,
    parse_type_map,
)

__all__ = [
    "EXTRA",
    "MD_EXTENSIONS",
    "MD_FORMATS",
    "TOPOLOGY_FORMATS",
    "Topology",
    "count_md_frames",
    "find_topology",
    "iter_md_frames",
    "load_topology",
    "md_format",
    "mdanalysis_available",
    "topology_path",
]

#: Our format name -> what it is, in words.
MD_FORMATS: dict[str, str] = {
    "xtc": "GROMACS XTC",
    "trr": "GROMACS TRR",
    "dcd": "CHARMM/NAMD DCD",
    "lammps-dcd": "LAMMPS DCD",
    "amber-netcdf": "Amber NetCDF",
}
#: File extension -> format name.
MD_EXTENSIONS: dict[str, str] = {
    "xtc": "xtc",
    "trr": "trr",
    "dcd": "dcd",
    "nc": "amber-netcdf",
    "ncdf": "amber-netcdf",
}
#: Topology file extension -> MDAnalysis topology format.
TOPOLOGY_FORMATS: dict[str, str] = {
    "pdb": "PDB",
    "ent": "PDB",
    "gro": "GRO",
    "psf": "PSF",
    "data": "DATA",
    "lmp": "DATA",
    "lammpsdata": "DATA",
    "prmtop": "PRMTOP",
    "parm7": "PARM7",
    "tpr": "TPR",
}
#: What to install for these formats.
EXTRA = 'pip install "quests-dashboard[md]"'

#: LAMMPS ``atom_style`` (the comment after ``Atoms #``) -> MDAnalysis column list.
_LAMMPS_STYLES: dict[str, str] = {
    "atomic": "id type x y z",
    "charge": "id type charge x y z",
    "bond": "id resid type x y z",
    "angle": "id resid type x y z",
    "molecular": "id resid type x y z",
    "full": "id resid type charge x y z",
}
#: A mass from a LAMMPS data file names an element when it is this close (u).
_MASS_TOLERANCE = 0.1
_NM = 10.0  # Å per nm
_XTC_HEADER = 92  # bytes of an XTC frame up to the end of its compressed byte count


def mdanalysis_available() -> bool:
    """Whether MDAnalysis can be imported (the ``md`` extra is installed)."""
    try:
        import MDAnalysis  # noqa: F401
    except ImportError:
        return False
    return True


def _require(path: str, fmt: str) -> None:
    try:
        import MDAnalysis  # noqa: F401
    except ImportError:
        raise QuestsError(
            f"reading {MD_FORMATS.get(fmt, fmt)} files needs MDAnalysis: {EXTRA}", source=path
        ) from None


# ----------------------------------------------------------------------------
# Topology: one atomic number per atom
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """The elements of a trajectory's atoms, from a topology file.

    Attributes
    ----------
    source : str
        The topology file.
    numbers : numpy.ndarray
        Atomic number of every atom, in trajectory order (read-only).
    lammps : bool
        A LAMMPS data file (then a DCD trajectory is a LAMMPS DCD, time in fs).
    how : str
        Where the elements came from: ``"elements"``, ``"type map"``,
        ``"masses"`` or ``"guessed from names"`` / ``"guessed from types"``.
    """

    source: str
    numbers: np.ndarray
    lammps: bool
    how: str


def find_topology(path: str | os.PathLike) -> str | None:
    """The one file next to ``path`` with its stem and a topology extension, else None."""
    p = Path(path)
    stem = p.name.split(".", 1)[0]
    try:
        found = sorted(
            str(q) for q in p.parent.iterdir()
            if q.is_file() and q.name.split(".", 1)[0] == stem
            and q.suffix[1:].lower() in TOPOLOGY_FORMATS
        )
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def load_topology(
    topology: str | os.PathLike,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
) -> Topology:
    """Parse a topology file and give every atom its element.

    Parameters
    ----------
    topology : path-like
        PDB, GRO, PSF, LAMMPS data (``.data``/``.lmp``), Amber prmtop or
        GROMACS tpr file.
    type_map : optional
        LAMMPS type -> element (see :func:`quests_core.io.parse_type_map`),
        used when the topology's atom types are integers.

    Returns
    -------
    Topology

    Raises
    ------
    QuestsError
        Naming the topology file: unreadable, no atoms, or an atom whose
        element cannot be told.
    """
    spath = str(topology)
    _require(spath, "topology")
    p = _check_path(spath)
    tmap = parse_type_map(type_map)
    st = p.stat()
    return _load_topology(spath, st.st_size, st.st_mtime_ns, tuple(sorted(tmap.items())))


@functools.lru_cache(maxsize=8)
def _load_topology(
    path: str, size: int, mtime: int, type_map: tuple[tuple[int, str], ...]
) -> Topology:
    ext = Path(path).suffix[1:].lower()
    fmt = TOPOLOGY_FORMATS.get(ext)
    if fmt is None:
        raise QuestsError(
            f"not a topology file (expected one of .{', .'.join(TOPOLOGY_FORMATS)})",
            source=path,
        )
    atoms = _parse_topology(path, fmt)
    n = len(atoms)
    if n == 0:
        raise QuestsError("the topology has no atoms", source=path)
    numbers, how = _topology_numbers(path, fmt, atoms, dict(type_map))
    numbers = np.asarray(numbers, dtype=np.int64)
    numbers.setflags(write=False)
    return Topology(path, numbers, fmt == "DATA", how)


def _parse_topology(path: str, fmt: str):
    """The AtomGroup of the topology (MDAnalysis), every failure as one line."""
    import MDAnalysis as mda

    styles: list[str | None] = [None]
    if fmt == "DATA":
        hinted = _lammps_style(path)
        styles = [hinted] if hinted else []
        styles += [s for s in dict.fromkeys(_LAMMPS_STYLES.values()) if s not in styles]
    last: BaseException | None = None
    for style in styles:
        kwargs: dict[str, Any] = {"topology_format": fmt}
        if style is not None:
            kwargs["atom_style"] = style
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                universe = mda.Universe(path, **kwargs)
            return universe.atoms
        except (MemoryError, RecursionError) as exc:
            last = exc
            break
        except Exception as exc:  # noqa: BLE001 - every parser failure becomes one line
            last = exc
    assert last is not None
    what = f"{fmt} topology" if fmt != "DATA" else "LAMMPS data topology"
    raise QuestsError(f"cannot read the {what} ({_one_line(last)})", source=path) from None


def _lammps_style(path: str) -> str | None:
    """The MDAnalysis atom_style for the ``Atoms # style`` comment of a LAMMPS data file."""
    try:
        with open(path, "rb") as fd:
            for i, line in enumerate(fd):
                if line.startswith(b"Atoms"):
                    words = line.decode("utf-8", "replace").split("#", 1)
                    style = words[1].strip() if len(words) > 1 else "full"
                    return _LAMMPS_STYLES.get(style)
                if i > 100_000:
                    return None
    except OSError:
        return None
    return None


def _symbol(text: Any) -> str | None:
    """``"CU"``/``"cu"``/``"Cu"`` -> ``"Cu"``; None when not an element."""
    word = str(text).strip()
    if not word:
        return None
    word = word[0].upper() + word[1:].lower()
    if word in atomic_numbers and atomic_numbers[word] > 0:
        return word
    return None


def _topology_numbers(path: str, fmt: str, atoms, type_map: dict[int, str]):
    n = len(atoms)
    types = np.asarray(atoms.types).astype(str) if hasattr(atoms, "types") else None
    numeric = types is not None and all(t.strip().isdigit() for t in types)
    if type_map and numeric:
        ints = types.astype(np.int64)
        missing = sorted(set(ints.tolist()) - set(type_map))
        if missing:
            raise QuestsError(
                f"LAMMPS type(s) {missing} missing from the type map {type_map}", source=path
            )
        return [atomic_numbers[type_map[int(t)]] for t in ints], "type map"
    out = np.zeros(n, dtype=np.int64)
    how = ""
    if hasattr(atoms, "elements"):
        for i, e in enumerate(np.asarray(atoms.elements).astype(str)):
            s = _symbol(e)
            if s is not None:
                out[i] = atomic_numbers[s]
        how = "elements"
    if fmt == "DATA" and not out.all() and hasattr(atoms, "masses"):
        masses = np.asarray(atoms.masses, dtype=float)
        if (masses > 0).all():
            for i in np.flatnonzero(out == 0):
                out[i] = _element_of_mass(path, masses[i], types[i] if types is not None else "?")
            how = "masses"
    if not out.all():
        source = "names" if hasattr(atoms, "names") else "types"
        labels = np.asarray(getattr(atoms, source)).astype(str)
        if fmt == "DATA" or (source == "types" and numeric):
            i = int(np.flatnonzero(out == 0)[0])
            raise QuestsError(
                f"atom {i} has LAMMPS type {labels[i]} and no element or mass: give a type map "
                f"such as '1:Cu' (type:element)",
                source=path,
            )
        guessed = _guess_elements(labels)
        for i in np.flatnonzero(out == 0):
            s = _symbol(guessed[i])
            if s is None:
                raise QuestsError(
                    f"atom {i} ({source[:-1]} {str(labels[i])!r}): cannot tell its element "
                    f"(MDAnalysis guessed {str(guessed[i])!r}); use a topology with elements "
                    "(e.g. a PDB with the element column) or a type map",
                    source=path,
                )
            out[i] = atomic_numbers[s]
        how = f"guessed from {source}" if how == "" else f"{how}, some guessed from {source}"
    return out, how


def _element_of_mass(path: str, mass: float, label: str) -> int:
    z = int(np.argmin(np.abs(atomic_masses[1:] - mass))) + 1
    if abs(atomic_masses[z] - mass) > _MASS_TOLERANCE:
        raise QuestsError(
            f"LAMMPS type {label} has mass {mass:g}, not the mass of an element "
            f"(nearest {chemical_symbols[z]}, {atomic_masses[z]:g}): give a type map",
            source=path,
        )
    return z


def _guess_elements(labels: np.ndarray) -> np.ndarray:
    """MDAnalysis's element guess for atom names or types (its default guesser)."""
    try:
        from MDAnalysis.guesser.default_guesser import DefaultGuesser
    except ImportError:  # MDAnalysis < 2.8
        from MDAnalysis.topology.guessers import guess_types

        return np.asarray(guess_types(labels)).astype(str)
    return np.asarray(DefaultGuesser(None).guess_types(atom_types=labels)).astype(str)


def md_format(path: str | os.PathLike, format: str | None = None) -> str | None:
    """The MD format (:data:`MD_FORMATS`) a read of ``path`` uses, None for an ASE format.

    ``format`` when it is one of :data:`MD_FORMATS`; with no ``format``, the
    format of the file's extension (:data:`MD_EXTENSIONS`, after a ``.gz``/
    ``.bz2``/``.xz`` suffix); else None. The rule
    :func:`quests_core.io.detect_format` applies (the file is not opened).
    """
    from ase.io.formats import get_compression

    if format is not None:
        return format if format in MD_FORMATS else None
    root, _ = get_compression(Path(path).name)
    lower = root.lower()
    ext = lower.rsplit(".", 1)[-1] if "." in lower else ""
    return MD_EXTENSIONS.get(ext)


def topology_path(
    path: str | os.PathLike,
    format: str | None = None,
    topology: str | os.PathLike | None = None,
) -> str | None:
    """The topology file a read of ``path`` uses: ``topology`` or the one next to it.

    None for formats that need none (everything ASE reads) and for an MD
    trajectory without one (reading it then says so). Cache keys of reads of
    MD trajectories must include this file's content (the elements come from it).
    """
    if md_format(path, format) is None:
        return None
    if topology is not None:
        return str(topology)
    return find_topology(path)


def resolve_topology(
    path: str,
    fmt: str,
    topology: str | os.PathLike | None,
    type_map: Mapping[int, str] | Sequence[str] | str | None,
) -> Topology:
    """The topology given, or the one found next to the trajectory, loaded."""
    if topology is None:
        topology = find_topology(path)
        if topology is None:
            raise QuestsError(
                f"{MD_FORMATS[fmt]} files do not name their atoms: give a topology file "
                "(PDB/GRO/PSF/LAMMPS data; topology=... or --topology) or put one with the "
                "same name next to it",
                source=path,
            )
    return load_topology(topology, type_map)


# ----------------------------------------------------------------------------
# Trajectory access: one frame at a time
# ----------------------------------------------------------------------------


@dataclass
class _Raw:
    positions: np.ndarray  # Å, float64
    cell: np.ndarray | None  # 3x3 Å, None without a box
    time: float  # ps
    step: int | None


class _Trajectory:
    """n_atoms, frame count, whether the file ends inside one more frame, read(i)."""

    n_atoms: int
    n_frames: int  # frames whose data starts in the file
    cut_last: bool  # the last of them (or one more, for DCD) is cut short
    partial_extra: bool = False  # DCD: the cut frame is beyond n_frames

    def read(self, i: int) -> _Raw:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        pass

    @property
    def complete(self) -> int:
        """Frames that can be read whole."""
        if self.cut_last and not self.partial_extra:
            return self.n_frames - 1
        return self.n_frames


class _Xdr(_Trajectory):
    """GROMACS XTC/TRR through MDAnalysis's libmdaxdr (offsets kept in memory only)."""

    def __init__(self, path: str, fmt: str):
        from MDAnalysis.lib.formats.libmdaxdr import TRRFile, XTCFile

        self.path, self.fmt = path, fmt
        self._file = (XTCFile if fmt == "xtc" else TRRFile)(path)
        try:
            self.n_atoms = int(self._file.n_atoms)
            offsets = np.asarray(self._file.offsets, dtype=np.int64)
        except BaseException:
            self._file.close()
            raise
        self.n_frames = len(offsets)
        size = os.path.getsize(path)
        self.cut_last = self.n_frames > 0 and self._last_end(offsets) > size

    def _last_end(self, offsets: np.ndarray) -> int:
        """Where the last frame ends according to its header (XTC) or the frame size (TRR)."""
        last = int(offsets[-1])
        if self.fmt == "xtc":
            with open(self.path, "rb") as fd:
                fd.seek(last)
                head = fd.read(_XTC_HEADER)
            if self.n_atoms <= 9:  # stored uncompressed
                return last + 56 + 12 * self.n_atoms
            if len(head) < _XTC_HEADER:
                return last + _XTC_HEADER
            nbytes = struct.unpack(">i", head[88:92])[0]
            return last + _XTC_HEADER + ((nbytes + 3) // 4) * 4
        if len(offsets) > 1:
            return last + int(offsets[-1] - offsets[-2])
        return last  # one TRR frame: a cut shows as a read error

    def read(self, i: int) -> _Raw:
        crash = _xdr_probe(self.path, self.fmt)
        if crash is not None and i >= crash:
            if i == crash:
                raise _Crash(f"corrupt {MD_FORMATS[self.fmt]} data: decoding it aborts the "
                             "reader (checked in a separate process)")
            raise _Crash(f"not read: the file is corrupt from frame {crash} on (decoding "
                         "that frame aborts the reader)")
        self._file.seek(i)
        frame = self._file.read()
        if self.fmt == "trr" and not frame.hasx:
            raise _NoPositions()
        box = np.asarray(frame.box, dtype=np.float64) * _NM
        return _Raw(
            np.asarray(frame.x, dtype=np.float64) * _NM,
            box if np.any(box) else None,
            float(frame.time),
            int(frame.step),
        )

    def close(self) -> None:
        self._file.close()


class _NoPositions(Exception):
    pass


class _Crash(Exception):
    pass


#: Decodes every frame of an XTC/TRR file, printing each index before decoding it.
_PROBE = r"""
import sys
from MDAnalysis.lib.formats.libmdaxdr import TRRFile, XTCFile
f = (XTCFile if sys.argv[2] == "xtc" else TRRFile)(sys.argv[1])
n = len(f.offsets)
for i in range(n):
    print(i, flush=True)
    try:
        f.seek(i)
        f.read()
    except Exception:
        pass
print("done", flush=True)
"""


def _xdr_probe(path: str, fmt: str) -> int | None:
    """The first frame whose decoding kills the process, else None.

    MDAnalysis's XTC decoder (libxdrfile, C) aborts the whole process on some
    corrupt compressed coordinates (a stack-smashing check), which no
    ``except`` can catch. So every frame is first decoded once in a child
    process; frames from the one that killed it on are then refused with an
    error instead of being decoded here. The result is remembered per file
    version (path, size, modification time).
    """
    st = os.stat(path)
    return _xdr_probe_cached(os.path.abspath(path), fmt, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _xdr_probe_cached(path: str, fmt: str, size: int, mtime: int) -> int | None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, path, fmt],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )
    if proc.returncode >= 0:  # done, or a Python error the reading process reports itself
        return None
    started = [int(w) for w in proc.stdout.split() if w.isdigit()]  # killed by a signal
    return started[-1] if started else 0


def _quiet_close(cls):
    """A reader class whose close() tolerates a constructor that failed half-way
    (MDAnalysis's own close() raises from __del__ then, printed as a traceback)."""

    class Reader(cls):
        def close(self):
            try:
                super().close()
            except AttributeError:
                pass

    Reader.__name__ = cls.__name__
    return Reader


@functools.cache
def _reader_class(fmt: str):
    if fmt == "dcd":
        from MDAnalysis.coordinates.DCD import DCDReader

        return _quiet_close(DCDReader)
    if fmt == "lammps-dcd":
        from MDAnalysis.coordinates.LAMMPS import DCDReader

        return _quiet_close(DCDReader)
    from MDAnalysis.coordinates.TRJ import NCDFReader

    return _quiet_close(NCDFReader)


class _Mda(_Trajectory):
    """DCD and Amber NetCDF through MDAnalysis's readers (one Timestep)."""

    def __init__(self, path: str, fmt: str, n_atoms: int):
        self.path, self.fmt = path, fmt
        kwargs: dict[str, Any] = {"n_atoms": n_atoms}
        if fmt == "lammps-dcd":
            kwargs.update(timeunit="fs", lengthunit="Angstrom")
        with warnings.catch_warnings():  # the DCD reader's notice about MDAnalysis 3.0
            warnings.simplefilter("ignore", DeprecationWarning)
            self._reader = _reader_class(fmt)(path, **kwargs)
        self.n_atoms = int(self._reader.n_atoms)
        self.n_frames = int(self._reader.n_frames)
        self.cut_last = False
        if fmt in ("dcd", "lammps-dcd"):
            f = self._reader._file
            end = f._header_size + (
                f._firstframesize + (self.n_frames - 1) * f._framesize if self.n_frames else 0
            )
            self.cut_last = os.path.getsize(path) > end
            self.partial_extra = self.cut_last

    def read(self, i: int) -> _Raw:
        from MDAnalysis.lib.mdamath import triclinic_vectors

        ts = self._reader[i]
        dims = ts.dimensions
        cell = None
        if dims is not None and np.any(np.asarray(dims[:3]) != 0):
            dims = np.asarray(dims, dtype=np.float64)
            if not np.isfinite(dims).all():
                raise _BadBox(dims)
            cell = np.asarray(triclinic_vectors(dims, dtype=np.float64), dtype=np.float64)
            if not np.any(cell):
                raise _BadBox(dims)
        return _Raw(np.asarray(ts.positions, dtype=np.float64), cell, float(ts.time), None)

    def close(self) -> None:
        self._reader.close()


class _BadBox(Exception):
    def __init__(self, dims):
        super().__init__(dims)
        self.dims = dims


def _header_atoms(path: str, fmt: str) -> int:
    """The atom count of the file's header, read without MDAnalysis allocating frames."""
    if fmt in ("xtc", "trr"):
        from MDAnalysis.lib.formats.libmdaxdr import TRRFile, XTCFile

        with (XTCFile if fmt == "xtc" else TRRFile)(path) as f:
            return int(f.n_atoms)
    if fmt in ("dcd", "lammps-dcd"):
        from MDAnalysis.lib.formats.libdcd import DCDFile

        with DCDFile(path) as f:
            return int(f.header["natoms"])
    from scipy.io import netcdf_file

    with netcdf_file(path, "r", mmap=False) as f:
        if "atom" not in f.dimensions:
            raise ValueError("no 'atom' dimension (not an Amber trajectory)")
        return int(f.dimensions["atom"])


def _max_atoms(path: str, fmt: str) -> int:
    """Most atoms a file of this size can hold: DCD/TRR/NetCDF store 12 bytes per atom
    and frame, XTC compresses to no less than about one bit per atom (checked before
    MDAnalysis allocates a frame for the header's count)."""
    size = os.path.getsize(path)
    return 8 * size + 64 if fmt == "xtc" else size // 12 + 1


def _check_dcd_frames(path: str) -> None:
    """A DCD file that ends inside its first frame (MDAnalysis: "opened empty file")."""
    from MDAnalysis.lib.formats.libdcd import DCDFile

    with DCDFile(path) as f:
        empty = f.n_frames == 0
        header = f._header_size
    if empty:
        if os.path.getsize(path) > header:
            raise _frame_error(path, 0, "truncated file: the file ends inside it")
        raise QuestsError("the DCD file holds no frames", source=path)


def _netcdf_frames(path: str) -> int:
    from scipy.io import netcdf_file

    with netcdf_file(path, "r", mmap=False) as f:
        if "coordinates" not in f.variables:
            raise ValueError("no 'coordinates' variable (not an Amber trajectory)")
        return int(f.variables["coordinates"].shape[0])


def _open(path: str, fmt: str, n_atoms: int | None) -> _Trajectory:
    """The trajectory, checked against ``n_atoms`` (the topology's) before any frame is read."""
    from ase.io.formats import get_compression

    if get_compression(path)[1] is not None:
        raise QuestsError(
            f"compressed {MD_FORMATS[fmt]} files are not read: decompress it first", source=path
        )
    try:
        declared = _header_atoms(path, fmt)
        if declared <= 0:
            raise QuestsError(f"the header declares {declared} atoms", source=path)
        if declared > _max_atoms(path, fmt):
            raise QuestsError(
                f"the header declares {declared} atoms, more than the "
                f"{os.path.getsize(path)}-byte file can hold (corrupt file?)",
                source=path,
            )
        if n_atoms is not None and declared != n_atoms:
            raise QuestsError(
                f"the trajectory has {declared} atoms, the topology {n_atoms}", source=path
            )
        if fmt in ("xtc", "trr"):
            return _Xdr(path, fmt)
        if fmt in ("dcd", "lammps-dcd"):
            _check_dcd_frames(path)
        return _Mda(path, fmt, declared)
    except QuestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise QuestsError(
            f"not a valid {MD_FORMATS[fmt]} file, or truncated ({_one_line(exc)})", source=path
        ) from None


def _effective_format(fmt: str, topology: Topology | None) -> str:
    """A DCD with a LAMMPS data topology is a LAMMPS DCD (time in fs)."""
    if fmt == "dcd" and topology is not None and topology.lammps:
        return "lammps-dcd"
    return fmt


def count_md_frames(path: str | os.PathLike, fmt: str) -> int:
    """Frames of an MD trajectory that can be read whole (no topology needed).

    A last frame cut short is not counted (it is skipped when read, see
    :class:`~quests_core.io.TruncatedFrameWarning`) unless it is the only one.
    """
    spath = str(path)
    _require(spath, fmt)
    if fmt == "amber-netcdf":
        try:
            _header_atoms(spath, fmt)
            return _netcdf_frames(spath)
        except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
            raise QuestsError(
                f"not a valid {MD_FORMATS[fmt]} file, or truncated ({_one_line(exc)})",
                source=spath,
            ) from None
    traj = _open(spath, fmt, None)
    try:
        return max(traj.complete, min(traj.n_frames, 1))
    finally:
        traj.close()


def iter_md_frames(
    path: str,
    fmt: str,
    start: int,
    stop: int | None,
    step: int,
    *,
    topology: str | os.PathLike | None = None,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    skipped: list | None = None,
) -> Iterator[Any]:
    """Stream frames ``range(start, stop, step)`` of an MD trajectory as io.Frame objects.

    Parameters
    ----------
    path : str
        The trajectory.
    fmt : str
        One of :data:`MD_FORMATS`.
    start, stop, step : int
        Non-negative frame selection (``stop`` None: to the end).
    topology : path-like, optional
        The topology file; default: the one next to the trajectory
        (:func:`find_topology`).
    type_map : optional
        LAMMPS type -> element for topologies with numeric types.
    skipped : list, optional
        Receives ``(file, frame, reason)`` for a truncated last frame skipped
        with a :class:`~quests_core.io.TruncatedFrameWarning`.

    Yields
    ------
    quests_core.io.Frame
        Not yet validated (:func:`quests_core.io.iter_frames` validates).
    """
    _require(path, fmt)
    top = resolve_topology(path, fmt, topology, type_map)
    fmt = _effective_format(fmt, top)
    traj = _open(path, fmt, len(top.numbers))
    try:
        end = traj.n_frames if stop is None else min(stop, traj.n_frames)
        for i in range(start, end, step):
            if traj.cut_last and not traj.partial_extra and i == traj.n_frames - 1:
                reason = "the file ends inside it"
                if i == 0:
                    raise _frame_error(path, 0, f"truncated file: {reason}")
                _skip_last(path, i, reason, skipped)
                return
            yield Frame(path, i, _read_frame(traj, path, i, top))
        if traj.partial_extra and (stop is None or traj.n_frames < stop) and (
            traj.n_frames - start
        ) % step == 0 and traj.n_frames >= start:
            if traj.n_frames == 0:
                raise _frame_error(path, 0, "truncated file: the file ends inside it")
            _skip_last(path, traj.n_frames, "the file ends inside it", skipped)
    finally:
        traj.close()


def _read_frame(traj: _Trajectory, path: str, i: int, top: Topology) -> Atoms:
    try:
        raw = traj.read(i)
    except _NoPositions:
        raise _frame_error(path, i, "the TRR frame has no positions") from None
    except _Crash as exc:
        raise _frame_error(path, i, str(exc)) from None
    except _BadBox as exc:
        dims = ", ".join(f"{v:.6g}" for v in exc.dims)
        raise _frame_error(
            path, i, f"the box (a, b, c, alpha, beta, gamma) = ({dims}) is not a valid cell"
        ) from None
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise _frame_error(path, i, f"cannot read it, corrupt file? ({_one_line(exc)})") from None
    if raw.positions.shape != (len(top.numbers), 3):
        raise _frame_error(
            path, i, f"has {len(raw.positions)} atoms, the topology {len(top.numbers)}"
        )
    if raw.cell is None:
        atoms = Atoms(numbers=top.numbers, positions=raw.positions, pbc=False)
    else:
        atoms = Atoms(numbers=top.numbers, positions=raw.positions, cell=raw.cell, pbc=True)
    if np.isfinite(raw.time):
        atoms.info["time"] = raw.time
    if raw.step is not None:
        atoms.info["step"] = raw.step
    return atoms
