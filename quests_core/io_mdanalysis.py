"""Trajectory formats of MD codes, read through MDAnalysis (the optional ``md`` extra).

What ASE cannot read: GROMACS XTC and TRR, CHARMM/NAMD/LAMMPS DCD and Amber
NetCDF (``.nc``/``.ncdf``, NetCDF-3 as Amber writes it, read with scipy).
None of these files names its atoms, so the elements come from a *topology*
file (PDB, GRO, PSF, LAMMPS data, Amber prmtop, GROMACS tpr; any MDAnalysis
topology format named with ``topology_format``) parsed by MDAnalysis. Each
atom's element is, in this order: the type map
(:func:`quests_core.io.parse_type_map`: LAMMPS types when the topology's types
are integers, or atom names such as ``OW=O,MW=O``); the topology's
``elements`` attribute; where the file has masses (PSF, prmtop, tpr, LAMMPS
data), the element of the mass (within 0.1 u; deuterium is H); last,
MDAnalysis's guess from the atom names (or types). Virtual sites -- mass 0 in
a topology with masses, or, without masses, no element and a name like MW, M,
LP*, EP*, VS*, DUM* -- are left out of every frame with one
:class:`TopologyWarning` (how many, which names); a name map keeps them.
Names that read as another element than the mass gives are one warning.
Atoms in messages are numbered from 1 in file order. Without an explicit
topology, a single file next to the trajectory with the same stem and a
topology extension is used.

Every frame becomes an :class:`ase.Atoms` with positions in Å (float64), the
cell from the trajectory's box (XTC/TRR: the box vectors; DCD/NetCDF: the
``(a, b, c, alpha, beta, gamma)`` dimensions through MDAnalysis's
``triclinic_vectors``), periodic when the file has a box, and
``info["time"]`` in ps. Frames are read one at a time from the file (memory:
one frame, plus the XTC/TRR frame offsets, 8 bytes per frame); nothing is
written next to the trajectory (MDAnalysis's XTC offset cache is not used).

No C decoder of MDAnalysis sees an unchecked header: the frame offsets of
XTC/TRR files are found here, in Python, from each frame's header (magic
number, atom count, block sizes; MDAnalysis's own C offset scan crashes on
some garbage and is never run), and a DCD header and each frame's Fortran
record markers are checked in Python before MDAnalysis opens the file (libdcd
trusts the title count and the fixed-atom indexes). MDAnalysis's XTC decoder
(C) also aborts the process on some corrupt compressed coordinates, or writes
out of bounds without crashing at once: XTC frames are decompressed only in a
child process (one per open file), never here. XTC and TRR frames are also
decoded once in a child process first (one per file version, remembered) and
the frames from a fatal one on are refused with an error. Amber NetCDF is read
by scipy (Python).

Frames that end before the file does -- garbage, a zero-filled tail or a
broken frame header after them -- are read, and the rest of the file is left
with one :class:`~quests_core.io.TruncatedFrameWarning` naming the frame
where reading stopped, its byte offset and how many frames were read
(recorded in ``skipped`` as a truncated last frame is).

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
import re
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
    TruncatedFrameWarning,
    check_path,
    frame_error,
    one_line,
    parse_type_map,
    skip_last,
)

__all__ = [
    "EXTRA",
    "MD_EXTENSIONS",
    "MD_FORMATS",
    "TOPOLOGY_FORMATS",
    "Topology",
    "TopologyWarning",
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
#: (also the longest TRR frame header: double precision; what the scan reads of each frame)


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


class TopologyWarning(UserWarning):
    """Atoms of a topology left out of the frames (virtual sites), or elements whose
    masses and names disagree: one line naming the file."""


@dataclass(frozen=True)
class Topology:
    """The elements of a trajectory's atoms, from a topology file.

    Attributes
    ----------
    source : str
        The topology file.
    numbers : numpy.ndarray
        Atomic number of every atom kept, in trajectory order (read-only).
    lammps : bool
        A LAMMPS data file (then a DCD trajectory is a LAMMPS DCD, time in fs).
    how : str
        Where the elements came from: ``"elements"``, ``"type map"``,
        ``"masses"`` or ``"guessed from names"`` / ``"guessed from types"``,
        joined by ``", "`` when several apply.
    n_atoms : int
        Atoms of the topology (and of the trajectory), virtual sites included.
    keep : numpy.ndarray or None
        Indexes of the atoms kept (None: every atom); the others are virtual
        sites / massless particles, left out of every frame.
    left_out : str
        What was left out, in words (``"11,084 virtual sites (mass 0: MW)"``),
        ``""`` when nothing was.
    notes : tuple of str
        One-line warnings about the topology (naming it): names and masses that
        disagree.
    """

    source: str
    numbers: np.ndarray
    lammps: bool
    how: str
    n_atoms: int
    keep: np.ndarray | None = None
    left_out: str = ""
    notes: tuple[str, ...] = ()


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
    type_map: Mapping[Any, str] | Sequence[str] | str | None = None,
    topology_format: str | None = None,
) -> Topology:
    """Parse a topology file and give every atom its element.

    Parameters
    ----------
    topology : path-like
        PDB, GRO, PSF, LAMMPS data (``.data``/``.lmp``), Amber prmtop or
        GROMACS tpr file (any other MDAnalysis topology with ``topology_format``).
    type_map : optional
        LAMMPS type -> element (see :func:`quests_core.io.parse_type_map`),
        used when the topology's atom types are integers; or atom name ->
        element (``"OW=O,MW=O"``), which comes before every other rule.
    topology_format : str, optional
        MDAnalysis topology format (``PRMTOP``, ``TOP``, ``PSF``, ``GRO``,
        ``PDB``, ``TPR``, ``DATA``, ...); default: from the extension
        (:data:`TOPOLOGY_FORMATS`).

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
    p = check_path(spath)
    tmap = parse_type_map(type_map)
    fmt = _topology_format(spath, topology_format)
    st = p.stat()
    return _load_topology(spath, st.st_size, st.st_mtime_ns, tuple(sorted(tmap.items())), fmt)


#: MDAnalysis topology formats that are no file (or name no atoms): refused.
_NOT_FILE_FORMATS = frozenset(
    {"MINIMAL", "OPENMMAPP", "OPENMMTOPOLOGY", "PARMED", "RDKIT", "MMTF"}
)
#: Topology formats whose masses are read from the file (not guessed by MDAnalysis).
_MASS_FORMATS = frozenset({"PSF", "PRMTOP", "PARM7", "TOP", "TPR", "DATA", "ITP"})
#: Hydrogen isotopes: a mass this close to one of them is hydrogen.
_HYDROGEN_MASSES = (2.014, 3.016)
#: Names of virtual sites (checked only where the topology has no masses: GRO, PDB):
#: TIP4P's M/MW, lone pairs LP*/EP*, VS*, DUM*.
_VSITE_NAME = re.compile(r"(MW?|LP\w*|EP\w*|VS\w*|DUM\w*)\d*", re.IGNORECASE)


def _topology_format(path: str, given: str | None) -> str:
    """The MDAnalysis topology format: ``given`` (checked), else the extension's."""
    if given is not None and str(given).strip():
        fmt = str(given).strip().upper()
        try:
            import MDAnalysis as mda

            known = set(mda._PARSERS) - _NOT_FILE_FORMATS
        except (ImportError, AttributeError):  # pragma: no cover - checked by _require
            known = set(TOPOLOGY_FORMATS.values())
        if fmt not in known:
            raise QuestsError(
                f"topology format {given!r} is not one of MDAnalysis's "
                f"({', '.join(sorted(known))})",
                source=path,
            )
        return fmt
    ext = Path(path).suffix[1:].lower()
    fmt = TOPOLOGY_FORMATS.get(ext)
    if fmt is None:
        raise QuestsError(
            f"not a topology file (expected one of .{', .'.join(TOPOLOGY_FORMATS)}; "
            "name the format of another with --topology-format / topology_format=, e.g. "
            "TOP for an Amber .top)",
            source=path,
        )
    return fmt


@functools.lru_cache(maxsize=8)
def _load_topology(
    path: str, size: int, mtime: int, type_map: tuple[tuple[Any, str], ...], fmt: str
) -> Topology:
    atoms, masses_read = _parse_topology(path, fmt)
    n = len(atoms)
    if n == 0:
        raise QuestsError("the topology has no atoms", source=path)
    numbers, how, vsite, notes = _topology_numbers(path, fmt, atoms, dict(type_map),
                                                   masses_read)
    numbers = np.asarray(numbers, dtype=np.int64)
    keep = None
    left_out = ""
    if vsite.any():
        if vsite.all():
            raise QuestsError(
                f"every atom is a virtual site ({_left_out_text(vsite, atoms, masses_read)}): "
                "give their elements in a type map such as 'MW=O' (name=element)",
                source=path,
            )
        left_out = _left_out_text(vsite, atoms, masses_read)
        keep = np.flatnonzero(~vsite)
        keep.setflags(write=False)
        numbers = numbers[keep]
    numbers.setflags(write=False)
    return Topology(path, numbers, fmt == "DATA", how, n, keep, left_out, tuple(notes))


def _left_out_text(vsite: np.ndarray, atoms, masses_read: bool) -> str:
    labels = _labels(atoms)[1]
    names = _name_list(labels[vsite])
    count = int(vsite.sum())
    what = "virtual site" if count == 1 else "virtual sites"
    why = "mass 0" if masses_read else "no mass and no element, named like virtual sites"
    return f"{count:,} {what} ({why}: {names})"


def _name_list(labels: np.ndarray, most: int = 8) -> str:
    """The distinct labels, most frequent first: ``"N1A, N2A"`` (``", ... (12 names)"``)."""
    values, counts = np.unique(labels.astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    shown = [str(values[i]) for i in order[:most]]
    more = f", ... ({len(values)} names)" if len(values) > most else ""
    return ", ".join(shown) + more


def _labels(atoms) -> tuple[str, np.ndarray]:
    """``("name", names)`` of the atoms, else ``("type", types)``."""
    source = "name" if hasattr(atoms, "names") else "type"
    return source, np.asarray(getattr(atoms, source + "s")).astype(str)


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
            return universe.atoms, _masses_read(universe, fmt)
        except (MemoryError, RecursionError) as exc:
            last = exc
            break
        except Exception as exc:  # noqa: BLE001 - every parser failure becomes one line
            last = exc
    assert last is not None
    what = f"{fmt} topology" if fmt != "DATA" else "LAMMPS data topology"
    raise QuestsError(f"cannot read the {what} ({one_line(last)})", source=path) from None


def _masses_read(universe, fmt: str) -> bool:
    """Whether the atoms' masses come from the file (not guessed by MDAnalysis)."""
    if fmt not in _MASS_FORMATS or not hasattr(universe.atoms, "masses"):
        return False
    guessed = getattr(universe._topology, "guessed_attributes", ())
    return not any(type(attr).__name__ == "Masses" for attr in guessed)


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


def _topology_numbers(path: str, fmt: str, atoms, type_map: dict, masses_read: bool):
    """Atomic numbers (0 for virtual sites), how they were found, the virtual-site mask
    and the notes (one-line warnings) of a topology's atoms.

    In this order: the type map (LAMMPS types when the topology's types are
    integers; atom names, else types, for a name map); the topology's element
    column; where the file has masses: mass 0 is a virtual site, else the
    element of that mass (within :data:`_MASS_TOLERANCE`); where it has none,
    names like virtual sites (:data:`_VSITE_NAME`) are virtual sites; last,
    MDAnalysis's guess from the names (or types).
    """
    n = len(atoms)
    types = np.asarray(atoms.types).astype(str) if hasattr(atoms, "types") else None
    numeric = types is not None and all(t.strip().isdigit() for t in types)
    source, labels = _labels(atoms)
    out = np.zeros(n, dtype=np.int64)
    vsite = np.zeros(n, dtype=bool)
    hows: list[str] = []
    notes: list[str] = []
    names_map = {k: v for k, v in type_map.items() if isinstance(k, str)}
    if type_map and not names_map and numeric:
        ints = types.astype(np.int64)
        missing = sorted(set(ints.tolist()) - set(type_map))
        if missing:
            raise QuestsError(
                f"LAMMPS type(s) {missing} missing from the type map {type_map}", source=path
            )
        return [atomic_numbers[type_map[int(t)]] for t in ints], "type map", vsite, notes
    if names_map:
        names = np.asarray(atoms.names).astype(str) if hasattr(atoms, "names") else None
        for key, symbol in names_map.items():
            hit = names == key if names is not None else np.zeros(n, dtype=bool)
            if not hit.any() and types is not None:
                hit = types == key
            if not hit.any():
                raise QuestsError(
                    f"type map: no atom of the topology is named or typed {key!r} "
                    "(names are case-sensitive)",
                    source=path,
                )
            out[hit] = atomic_numbers[symbol]
        hows.append("type map")
    if hasattr(atoms, "elements"):
        before = int((out > 0).sum())
        for i in np.flatnonzero(out == 0):
            s = _symbol(atoms.elements[i])
            if s is not None:
                out[i] = atomic_numbers[s]
        if int((out > 0).sum()) > before:
            hows.append("elements")
    masses = np.asarray(atoms.masses, dtype=float) if masses_read else None
    if masses is not None:
        todo = out == 0
        vsite |= todo & (masses == 0)
        todo &= ~vsite
        if fmt == "DATA" and todo.any() and not (masses[todo] > 0).all():
            masses = None  # no Masses section: LAMMPS types need a type map (below)
    if masses is not None:
        from_mass = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(todo):
            z = _element_of_mass(masses[i])
            if z is None and fmt == "DATA":
                nearest = int(np.argmin(np.abs(atomic_masses[1:] - masses[i]))) + 1
                raise QuestsError(
                    f"LAMMPS type {labels[i]} has mass {masses[i]:g}, not the mass of an "
                    f"element (nearest {chemical_symbols[nearest]}, "
                    f"{atomic_masses[nearest]:g}): give a type map",
                    source=path,
                )
            if z is not None:
                out[i] = z
                from_mass[i] = True
        if from_mass.any():
            hows.append("masses")
            if source == "name":
                note = _disagreement(path, labels, out, from_mass)
                if note:
                    notes.append(note)
    todo = (out == 0) & ~vsite
    if todo.any() and source == "name" and masses is None:
        vsite |= todo & np.array([bool(_VSITE_NAME.fullmatch(x.strip())) for x in labels])
        todo &= ~vsite
    if todo.any():
        if fmt == "DATA" or (source == "type" and numeric):
            i = int(np.flatnonzero(todo)[0])
            raise QuestsError(
                f"atom {i + 1} (1-based) has LAMMPS type {labels[i]} and no element or mass: "
                "give a type map such as '1:Cu' (type:element)",
                source=path,
            )
        guessed = _guess_elements(labels)
        for i in np.flatnonzero(todo):
            s = _symbol(guessed[i])
            if s is None:
                raise QuestsError(
                    f"atom {i + 1} (1-based; {source} {str(labels[i])!r}): cannot tell its "
                    f"element (MDAnalysis guessed {str(guessed[i])!r}); give it in a type map "
                    f"such as '{str(labels[i])}=O' ({source}=element), or use a topology with "
                    "elements or masses",
                    source=path,
                )
            out[i] = atomic_numbers[s]
        hows.append(f"guessed from {source}s")
    how = ", ".join(hows) if hows else "virtual sites"
    return out, how, vsite, notes


def _element_of_mass(mass: float) -> int | None:
    """The element whose mass is within :data:`_MASS_TOLERANCE` of ``mass`` (hydrogen
    for deuterium and tritium masses), else None."""
    if not np.isfinite(mass) or mass <= 0:
        return None
    if any(abs(mass - m) <= _MASS_TOLERANCE for m in _HYDROGEN_MASSES):
        return 1
    z = int(np.argmin(np.abs(atomic_masses[1:] - mass))) + 1
    if abs(atomic_masses[z] - mass) > _MASS_TOLERANCE:
        return None
    return z


def _disagreement(path: str, names: np.ndarray, out: np.ndarray, from_mass: np.ndarray) -> str:
    """The warning for atoms whose element from their mass is not the one their name reads
    as (MDAnalysis's guess), "" when none."""
    idx = np.flatnonzero(from_mass)
    unique, inverse = np.unique(names[idx], return_inverse=True)
    guessed = _guess_elements(unique)
    guessed_z = np.array([atomic_numbers.get(_symbol(g) or "", 0) for g in guessed])
    bad = np.zeros(len(idx), dtype=bool)
    for u in np.flatnonzero(guessed_z > 0):
        sel = inverse == u
        bad[sel] = out[idx[sel]] != guessed_z[u]
    if not bad.any():
        return ""
    atoms_bad = idx[bad]
    pairs = []
    for u in np.unique(inverse[bad]):
        sel = idx[inverse == u]
        pairs.append(
            f"{unique[u]}: {chemical_symbols[int(out[sel[0]])]}, not "
            f"{chemical_symbols[int(guessed_z[u])]}"
        )
    shown = "; ".join(pairs[:8]) + (f"; ... ({len(pairs)} names)" if len(pairs) > 8 else "")
    count = len(atoms_bad)
    return (
        f"{path}: {count:,} atom{'s' if count != 1 else ''} take the element of their mass, "
        f"not the one their name reads as ({shown})"
    )


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
    type_map: Mapping[Any, str] | Sequence[str] | str | None,
    topology_format: str | None = None,
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
    return load_topology(topology, type_map, topology_format)


# ----------------------------------------------------------------------------
# Trajectory access: one frame at a time
# ----------------------------------------------------------------------------


@dataclass
class _Raw:
    positions: np.ndarray  # Å, float64
    cell: np.ndarray | None  # 3x3 Å, None without a box
    time: float  # ps
    step: int | None


@dataclass(frozen=True)
class _Stop:
    """Where a trajectory's sequence of frames ends before the file does.

    Attributes
    ----------
    frame : int
        The frame that would start there (the file's frames before it are read).
    byte : int
        Its offset in the file.
    reason : str
        Why no frame starts there (a header or record marker that is not one).
    size : int
        The file's size in bytes.
    """

    frame: int
    byte: int
    reason: str
    size: int

    def text(self) -> str:
        """The warning's words after ``PATH: frame N: ``."""
        plural = "" if self.frame == 1 else "s"
        return (
            f"at byte {self.byte}: {self.reason}; reading stopped there: {self.frame} "
            f"frame{plural} read, the last {self.size - self.byte} bytes of the file ignored"
        )


class _Trajectory:
    """n_atoms, frame count, whether the file ends inside one more frame, read(i)."""

    n_atoms: int
    n_frames: int  # frames whose data starts in the file
    cut_last: bool  # the last of them (or one more, for DCD) is cut short
    partial_extra: bool = False  # DCD: the cut frame is beyond n_frames
    stop: _Stop | None = None  # the frames end before the file does (garbage after them)

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


# ----------------------------------------------------------------------------
# XTC/TRR frame headers, parsed in Python (no C decoder sees an unchecked header)
# ----------------------------------------------------------------------------

_XTC_MAGIC = 1995
_TRR_MAGIC = 1993
_XTC_SHORT = 56  # bytes of an XTC frame before its coordinates (<= 9 atoms: stored as floats)
_TRR_HEAD = 76  # bytes of a TRR frame header before its time and lambda
_TRR_TAG = b"GMX_trn_file"
_XTC_SMALLIDX = (9, 72)  # libxdrfile's magicints[] indexes (FIRSTIDX, LASTIDX - 1)


@dataclass(frozen=True)
class _XdrScan:
    """The frames of an XTC/TRR file, found from their headers.

    Attributes
    ----------
    n_atoms : int
        Atoms of the first frame (every frame must have as many).
    offsets : numpy.ndarray
        Byte offset of every frame whose header is valid (int64, read-only),
        the last one possibly cut short by the end of the file.
    cut_last : bool
        The last frame runs past the end of the file.
    stop : _Stop or None
        Bytes after the last frame that are no frame (garbage, zeros, a
        broken header): the frames before them are read, with a warning.
    """

    n_atoms: int
    offsets: np.ndarray
    cut_last: bool
    stop: _Stop | None


def _int(head: bytes, at: int) -> int:
    return struct.unpack_from(">i", head, at)[0]


def _xtc_max_bytes(n_atoms: int) -> int:
    """Most bytes of compressed coordinates libxdrfile's buffer holds for ``n_atoms``
    (``3 n 1.2`` ints, the first three not data): more would overflow it."""
    return 4 * (int(3 * n_atoms * 1.2) - 3)


def _xtc_frame(head: bytes, n_atoms: int) -> int | str | None:
    """Size in bytes of the XTC frame whose first (up to 92) bytes are ``head``.

    Returns the size; None when ``head`` is a consistent beginning of a frame
    that the end of the file cuts short; else why ``head`` is not a frame.
    """
    if len(head) < 4:
        return None
    magic = _int(head, 0)
    if magic != _XTC_MAGIC:
        return f"not a GROMACS XTC frame (magic number {magic}, expected {_XTC_MAGIC})"
    if len(head) < 8:
        return None
    natoms = _int(head, 4)
    if natoms != n_atoms:
        return f"its header declares {natoms} atoms, the first frame {n_atoms}"
    if len(head) < _XTC_SHORT:
        return None
    if _int(head, 52) != natoms:
        return f"corrupt XTC frame header (atom counts {natoms} and {_int(head, 52)})"
    if natoms <= 9:
        return _XTC_SHORT + 12 * natoms
    if len(head) < _XTC_HEADER:
        return None
    precision = struct.unpack_from(">f", head, 56)[0]
    if not (np.isfinite(precision) and precision > 0):
        return f"corrupt XTC frame header (precision {precision:g})"
    low, high = struct.unpack_from(">3i", head, 60), struct.unpack_from(">3i", head, 72)
    if any(h < lo for lo, h in zip(low, high, strict=True)):
        return f"corrupt XTC frame header (coordinate range {list(low)} to {list(high)})"
    if not _XTC_SMALLIDX[0] <= _int(head, 84) <= _XTC_SMALLIDX[1]:
        return f"corrupt XTC frame header (small-integer index {_int(head, 84)})"
    nbytes = _int(head, 88)
    if not 0 < nbytes <= _xtc_max_bytes(natoms):
        return f"corrupt XTC frame header ({nbytes} bytes of coordinates for {natoms} atoms)"
    return _XTC_HEADER + (nbytes + 3) // 4 * 4


def _trr_frame(head: bytes, n_atoms: int) -> int | str | None:
    """Size in bytes of the TRR frame whose first (up to 92) bytes are ``head``.

    Same contract as :func:`_xtc_frame`. Block sizes must be those GROMACS
    writes: box, virial and pressure 0 or 9 reals, positions, velocities and
    forces 0 or 3 reals per atom, the obsolete ir/e/top/sym blocks 0, all in one
    precision (4 or 8 bytes per real).
    """
    if len(head) < 4:
        return None
    magic = _int(head, 0)
    if magic != _TRR_MAGIC:
        return f"not a GROMACS TRR frame (magic number {magic}, expected {_TRR_MAGIC})"
    if len(head) < 24:
        return None
    if (_int(head, 4), _int(head, 8), head[12:24]) != (13, 12, _TRR_TAG):
        return "corrupt TRR frame header (no GMX_trn_file tag)"
    if len(head) < _TRR_HEAD:
        return None
    ir, e, box, vir, pres, top, sym, x, v, f = struct.unpack_from(">10i", head, 24)
    natoms = _int(head, 64)
    if natoms != n_atoms:
        return f"its header declares {natoms} atoms, the first frame {n_atoms}"
    blocks = (ir, e, box, vir, pres, top, sym, x, v, f)
    if any(b < 0 for b in blocks) or (ir, e, top, sym) != (0, 0, 0, 0):
        return f"corrupt TRR frame header (block sizes {list(blocks)})"
    reals = {b // 9 for b in (box, vir, pres) if b} | {
        b // (3 * natoms) for b in (x, v, f) if b
    }
    exact = all(b in (0, 36, 72) for b in (box, vir, pres)) and all(
        b in (0, 12 * natoms, 24 * natoms) for b in (x, v, f)
    )
    if not exact or len(reals) != 1:
        return f"corrupt TRR frame header (block sizes {list(blocks)} for {natoms} atoms)"
    return _TRR_HEAD + 2 * reals.pop() + sum(blocks)


def _xdr_declared_atoms(path: str, fmt: str) -> int:
    """The atom count of the first frame's header (magic number and TRR tag checked)."""
    need = _TRR_HEAD if fmt == "trr" else 8
    with open(path, "rb") as fd:
        head = fd.read(need)
    if len(head) < need:
        raise ValueError("the file ends inside the first frame's header")
    magic = _XTC_MAGIC if fmt == "xtc" else _TRR_MAGIC
    if _int(head, 0) != magic:
        raise ValueError(f"magic number {_int(head, 0)}, expected {magic}")
    if fmt == "trr" and head[12:24] != _TRR_TAG:
        raise ValueError("no GMX_trn_file tag")
    return _int(head, 64 if fmt == "trr" else 4)


def _scan_xdr(path: str, fmt: str, n_atoms: int) -> _XdrScan:
    """Every frame of an XTC/TRR file, from its header (remembered per file version).

    Reads one header per frame (92 bytes), in Python: bounded, and nothing
    reaches MDAnalysis's C offset scanner (which crashes on some garbage).
    """
    st = os.stat(path)
    return _scan_xdr_cached(os.path.abspath(path), fmt, n_atoms, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _scan_xdr_cached(path: str, fmt: str, n_atoms: int, size: int, mtime: int) -> _XdrScan:
    from array import array

    frame_size = _xtc_frame if fmt == "xtc" else _trr_frame
    offsets = array("q")
    cut, stop = False, None
    with open(path, "rb") as fd:
        off = 0
        while off < size:
            fd.seek(off)
            got = frame_size(fd.read(_XTC_HEADER), n_atoms)
            if isinstance(got, str):
                stop = _Stop(len(offsets), off, got, size)
                break
            offsets.append(off)
            if got is None or off + got > size:
                cut = True
                break
            off += got
    out = np.frombuffer(offsets, dtype=np.int64) if offsets else np.zeros(0, np.int64)
    out = out.copy()
    out.setflags(write=False)
    return _XdrScan(n_atoms, out, cut, stop)


class _Xdr(_Trajectory):
    """GROMACS XTC/TRR through MDAnalysis's libmdaxdr, at the offsets of :func:`_scan_xdr`.

    TRR frames (plain reals, block sizes checked by the scan) are decoded here;
    XTC frames only in a child process (:class:`_XtcDecoder`): libxdrfile's
    decompressor writes out of bounds on some corrupt data without always
    crashing at once, so no XTC frame is ever decompressed in this process.
    """

    def __init__(self, path: str, fmt: str, n_atoms: int):
        self.path, self.fmt = path, fmt
        scan = _scan_xdr(path, fmt, n_atoms)
        if scan.stop is not None and scan.stop.frame == 0:
            raise ValueError(f"frame 0: {scan.stop.reason}")
        self.n_atoms = n_atoms
        self.n_frames = len(scan.offsets)
        self.cut_last = scan.cut_last
        self.stop = scan.stop
        self._offsets = scan.offsets
        self._file: Any = None
        self._decoder: _XtcDecoder | None = None
        if fmt == "trr":
            from MDAnalysis.lib.formats.libmdaxdr import TRRFile

            self._file = TRRFile(path)
            self._file.set_offsets(np.array(scan.offsets, dtype=np.int64))

    def read(self, i: int) -> _Raw:
        crash = _xdr_probe(self.path, self.fmt, self.n_atoms)
        if crash is not None and i >= crash:
            if i == crash:
                raise _Crash(f"corrupt {MD_FORMATS[self.fmt]} data: decoding it aborts the "
                             "reader (checked in a separate process)")
            raise _Crash(f"not read: the file is corrupt from frame {crash} on (decoding "
                         "that frame aborts the reader)")
        if self.fmt == "xtc":
            if self._decoder is None:
                self._decoder = _XtcDecoder(self.path, self.n_atoms, self._offsets)
            x, box, time, step = self._decoder.read(i)
        else:
            self._file.seek(i)
            frame = self._file.read()
            if not frame.hasx:
                raise _NoPositions()
            x, box, time, step = frame.x, frame.box, frame.time, frame.step
        box = np.asarray(box, dtype=np.float64) * _NM
        return _Raw(
            np.asarray(x, dtype=np.float64) * _NM,
            box if np.any(box) else None,
            float(time),
            int(step),
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._decoder is not None:
            self._decoder.close()


#: Decodes the XTC frames the parent asks for (one index a line on stdin) at the
#: offsets it sent first; answers status, time, step, box and positions (float32).
_DECODER = r"""
import struct, sys
import numpy as np
from MDAnalysis.lib.formats.libmdaxdr import XTCFile
inp, out = sys.stdin.buffer, sys.stdout.buffer
n = int(inp.readline())
offsets = np.frombuffer(inp.read(8 * n), dtype=np.int64).copy()
f = XTCFile(sys.argv[1])
f.set_offsets(offsets)
for line in inp:
    try:
        f.seek(int(line))
        fr = f.read()
        data = (np.asarray(fr.box, dtype=np.float32).tobytes()
                + np.asarray(fr.x, dtype=np.float32).tobytes())
        out.write(struct.pack("<idq", len(data), float(fr.time), int(fr.step)) + data)
    except Exception as exc:
        text = " ".join(str(exc).split())[:300].encode() or type(exc).__name__.encode()
        out.write(struct.pack("<idq", -len(text), 0.0, 0) + text)
    out.flush()
"""


class _XtcDecoder:
    """A child process that decompresses the XTC frames of one file for this one."""

    def __init__(self, path: str, n_atoms: int, offsets: np.ndarray):
        import subprocess
        import sys

        self.n_atoms = n_atoms
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _DECODER, os.path.abspath(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self._send(f"{len(offsets)}\n".encode() + np.asarray(offsets, np.int64).tobytes())

    def _send(self, data: bytes) -> None:
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except OSError:
            pass  # the child died: reading its answer says so

    def _recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self._proc.stdout.read(n - len(out))
            if not chunk:
                raise _Crash("corrupt GROMACS XTC data: decoding it aborts the reader "
                             "(decoded in a separate process)")
            out += chunk
        return out

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray, float, int]:
        """Positions (n, 3) and box (3, 3) in nm, time (ps) and step of frame ``i``."""
        self._send(f"{i}\n".encode())
        size, time, step = struct.unpack("<idq", self._recv(20))
        if size < 0:
            raise RuntimeError(self._recv(-size).decode("utf-8", "replace"))
        if size != 4 * (9 + 3 * self.n_atoms):
            raise _Crash(f"the decoder answered {size} bytes for {self.n_atoms} atoms")
        data = np.frombuffer(self._recv(size), dtype=np.float32)
        return data[9:].reshape(-1, 3), data[:9].reshape(3, 3), time, step

    def close(self) -> None:
        """End the child (it ends itself when its input closes)."""
        import subprocess

        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()


class _NoPositions(Exception):
    pass


class _Crash(Exception):
    pass


#: Decodes every frame of an XTC/TRR file at the offsets given on stdin (found by
#: _scan_xdr: MDAnalysis's own offset scan is never run), printing each index first.
_PROBE = r"""
import sys
import numpy as np
from MDAnalysis.lib.formats.libmdaxdr import TRRFile, XTCFile
offsets = np.array(sys.stdin.read().split(), dtype=np.int64)
f = (XTCFile if sys.argv[2] == "xtc" else TRRFile)(sys.argv[1])
f.set_offsets(offsets)
for i in range(len(offsets)):
    print(i, flush=True)
    try:
        f.seek(i)
        f.read()
    except Exception:
        pass
print("done", flush=True)
"""


def _xdr_probe(path: str, fmt: str, n_atoms: int) -> int | None:
    """The first frame whose decoding kills the process, else None.

    MDAnalysis's XTC decoder (libxdrfile, C) aborts the whole process on some
    corrupt compressed coordinates (a stack-smashing check), which no
    ``except`` can catch. So every complete frame (at the offsets of
    :func:`_scan_xdr`) is first decoded once in a child process, one per file;
    frames from the one that killed it on are then refused with an error
    instead of being decoded here. The result is remembered per file version
    (path, size, modification time).
    """
    st = os.stat(path)
    return _xdr_probe_cached(os.path.abspath(path), fmt, n_atoms, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _xdr_probe_cached(path: str, fmt: str, n_atoms: int, size: int, mtime: int) -> int | None:
    import subprocess
    import sys

    scan = _scan_xdr_cached(path, fmt, n_atoms, size, mtime)
    complete = scan.offsets[: len(scan.offsets) - int(scan.cut_last)]
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, path, fmt], input=" ".join(map(str, complete.tolist())),
        capture_output=True, text=True, check=False,
    )
    if proc.returncode >= 0:  # done, or a Python error the reading process reports itself
        return None
    started = [int(w) for w in proc.stdout.split() if w.isdigit()]  # killed by a signal
    return started[-1] if started else 0


# ----------------------------------------------------------------------------
# DCD header and frame records, checked in Python before MDAnalysis's C reader
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _DcdLayout:
    """What a DCD header says about the file's frames (checked, see :func:`_dcd_layout`).

    Attributes
    ----------
    endian : str
        ``"<"`` or ``">"``: the byte order of the Fortran record markers.
    n_atoms, n_fixed : int
        Atoms, and atoms fixed (stored in the first frame only).
    header : int
        Bytes before the first frame.
    cell : bool
        Every frame starts with a unit-cell record (48 bytes).
    ndims : int
        Coordinate records per frame (3, or 4 for CHARMM 4-D files).
    """

    endian: str
    n_atoms: int
    n_fixed: int
    header: int
    cell: bool
    ndims: int

    def records(self, first: bool) -> list[int]:
        """Byte length of every record of a frame (the first holds the fixed atoms too)."""
        n = self.n_atoms if first else self.n_atoms - self.n_fixed
        return ([48] if self.cell else []) + [4 * n] * self.ndims

    def frame_size(self, first: bool) -> int:
        """Bytes of a frame: its records, each between two 4-byte markers."""
        return sum(r + 8 for r in self.records(first))


def _dcd_layout(path: str) -> _DcdLayout:
    """Parse and check a DCD header in Python, as libdcd's ``read_dcdheader`` reads it.

    Every record marker, the title count and the free-atom indexes are checked
    (libdcd trusts the title count and the indexes: a hostile value makes it
    allocate or write out of bounds).

    Raises
    ------
    ValueError
        Saying what is wrong with the header (the caller names the file).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fd:
        head = fd.read(100)
        if len(head) < 100:
            raise ValueError("the file ends inside the DCD header")
        endian = next((e for e in "<>" if struct.unpack_from(e + "i", head)[0] == 84), None)
        if endian is None or head[4:8] != b"CORD":
            raise ValueError("not a DCD file (no 84-byte CORD header record)")

        def i32(buf: bytes, at: int) -> int:
            return struct.unpack_from(endian + "i", buf, at)[0]

        charmm = i32(head, 84) != 0
        title, lines = i32(head, 92), i32(head, 96)
        if i32(head, 88) != 84 or title < 4 or lines < 0 or 80 * lines + 4 != title:
            raise ValueError(f"corrupt DCD header (title record of {title} bytes, {lines} lines)")
        header = 112 + title
        if header > size:
            raise ValueError("the file ends inside the DCD header")
        fd.seek(96 + title)
        rest = fd.read(16)
        if (i32(rest, 0), i32(rest, 4), i32(rest, 12)) != (title, 4, 4):
            raise ValueError("corrupt DCD header (atom count record)")
        n_atoms, n_fixed = i32(rest, 8), i32(head, 40)
        if n_atoms > 0 and n_fixed != 0:
            header = _dcd_free_atoms(fd, endian, header, n_atoms, n_fixed, size)
    return _DcdLayout(
        endian, n_atoms, n_fixed, header,
        cell=charmm and i32(head, 48) != 0,
        ndims=4 if charmm and i32(head, 52) == 1 else 3,
    )


def _dcd_free_atoms(fd, endian: str, at: int, n_atoms: int, n_fixed: int, size: int) -> int:
    """Check the free-atom index record at ``at``; returns where it ends."""
    if not 0 < n_fixed < n_atoms:
        raise ValueError(f"corrupt DCD header ({n_fixed} fixed atoms of {n_atoms})")
    n_free = n_atoms - n_fixed
    end = at + 8 + 4 * n_free
    if end > size:
        raise ValueError("the file ends inside the DCD header")
    fd.seek(at)
    data = np.frombuffer(fd.read(end - at), dtype=endian + "i4")
    index = data[1:-1]
    if data[0] != 4 * n_free or data[-1] != 4 * n_free or index.min() < 1 or index.max() > n_atoms:
        raise ValueError("corrupt DCD header (free atom index record)")
    return end


@dataclass(frozen=True)
class _DcdScan:
    """The whole frames of a DCD file, found from their record markers.

    Attributes
    ----------
    layout : _DcdLayout
    n_frames : int
        Whole frames whose record markers are right.
    partial : bool
        After them the file ends inside one more frame (it starts like one).
    stop : _Stop or None
        After them come bytes that are no frame (a wrong record marker).
    """

    layout: _DcdLayout
    n_frames: int
    partial: bool
    stop: _Stop | None


def _dcd_frame(fd, off: int, layout: _DcdLayout, first: bool, size: int) -> int | str | None:
    """Size of the DCD frame at ``off`` (:func:`_xtc_frame`'s contract): every record
    marker of the first frame is checked, the first and last marker of the others."""
    records = layout.records(first)
    marks: list[tuple[int, int]] = []
    at = off
    for n in records:
        marks += [(at, n), (at + 4 + n, n)]
        at += n + 8
    if not first:
        marks = [marks[0], marks[-1]]
    for where, want in marks:
        if where + 4 > size:
            return None
        fd.seek(where)
        got = struct.unpack(layout.endian + "i", fd.read(4))[0]
        if got != want:
            at_byte = "" if where == off else f" at byte {where}"
            return f"not a DCD frame (record marker {got}{at_byte}, expected {want})"
    return at - off


def _scan_dcd(path: str) -> _DcdScan:
    """Header and frames of a DCD file (remembered per file version)."""
    st = os.stat(path)
    return _scan_dcd_cached(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _scan_dcd_cached(path: str, size: int, mtime: int) -> _DcdScan:
    layout = _dcd_layout(path)
    n, off, partial, stop = 0, layout.header, False, None
    if layout.n_atoms <= 0:
        return _DcdScan(layout, 0, False, None)
    with open(path, "rb") as fd:
        while off < size:
            got = _dcd_frame(fd, off, layout, n == 0, size)
            if isinstance(got, str):
                stop = _Stop(n, off, got, size)
                break
            if got is None:
                partial = True
                break
            n += 1
            off += got
    return _DcdScan(layout, n, partial, stop)


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

    def __init__(self, path: str, fmt: str, n_atoms: int, scan: _DcdScan | None = None):
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
        if scan is not None:  # DCD: the frames whose record markers are right
            self.n_frames = scan.n_frames
            self.cut_last = self.partial_extra = scan.partial
            self.stop = scan.stop

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
    """The atom count of the file's header, read in Python (XTC/TRR/DCD) or by scipy
    (NetCDF) before MDAnalysis's C readers see the file or allocate a frame."""
    if fmt in ("xtc", "trr"):
        return _xdr_declared_atoms(path, fmt)
    if fmt in ("dcd", "lammps-dcd"):
        return _scan_dcd(path).layout.n_atoms
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


def _check_dcd_frames(path: str, scan: _DcdScan) -> None:
    """A DCD file without one whole frame: the file ends inside its first frame, the
    first frame is no frame, or the file holds none."""
    if scan.n_frames > 0:
        return
    if scan.partial:
        raise frame_error(path, 0, "truncated file: the file ends inside it")
    if scan.stop is not None:
        raise ValueError(f"frame 0 at byte {scan.stop.byte}: {scan.stop.reason}")
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
            return _Xdr(path, fmt, declared)
        if fmt in ("dcd", "lammps-dcd"):
            scan = _scan_dcd(path)
            _check_dcd_frames(path, scan)
            return _Mda(path, fmt, declared, scan)
        return _Mda(path, fmt, declared)
    except QuestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise QuestsError(
            f"not a valid {MD_FORMATS[fmt]} file, or truncated ({one_line(exc)})", source=path
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
                f"not a valid {MD_FORMATS[fmt]} file, or truncated ({one_line(exc)})",
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
    type_map: Mapping[Any, str] | Sequence[str] | str | None = None,
    skipped: list | None = None,
    topology_format: str | None = None,
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
        LAMMPS type -> element for topologies with numeric types, or atom
        name -> element (see :func:`load_topology`).
    skipped : list, optional
        Receives ``(file, frame, reason)`` for a truncated last frame skipped
        with a :class:`~quests_core.io.TruncatedFrameWarning`.
    topology_format : str, optional
        MDAnalysis topology format of the topology (default: its extension's).

    Virtual sites of the topology are left out of every frame, with one
    :class:`TopologyWarning` naming the trajectory, how many and their names;
    the topology's notes (names and masses that disagree) are warned too.

    Yields
    ------
    quests_core.io.Frame
        Not yet validated (:func:`quests_core.io.iter_frames` validates).
    """
    _require(path, fmt)
    top = resolve_topology(path, fmt, topology, type_map, topology_format)
    if top.left_out:
        warnings.warn(TopologyWarning(f"{path}: {top.left_out} left out of the descriptors "
                                      f"(topology {top.source})"), stacklevel=3)
    for note in top.notes:
        warnings.warn(TopologyWarning(note), stacklevel=3)
    fmt = _effective_format(fmt, top)
    traj = _open(path, fmt, top.n_atoms)
    try:
        end = traj.n_frames if stop is None else min(stop, traj.n_frames)
        for i in range(start, end, step):
            if traj.cut_last and not traj.partial_extra and i == traj.n_frames - 1:
                reason = "the file ends inside it"
                if i == 0:
                    raise frame_error(path, 0, f"truncated file: {reason}")
                skip_last(path, i, reason, skipped)
                return
            yield Frame(path, i, _read_frame(traj, path, i, top))
        if traj.partial_extra and (stop is None or traj.n_frames < stop) and (
            traj.n_frames - start
        ) % step == 0 and traj.n_frames >= start:
            if traj.n_frames == 0:
                raise frame_error(path, 0, "truncated file: the file ends inside it")
            skip_last(path, traj.n_frames, "the file ends inside it", skipped)
        if traj.stop is not None and (stop is None or stop >= traj.stop.frame):
            _warn_stop(path, traj.stop, skipped)
    finally:
        traj.close()


def _warn_stop(path: str, stop: _Stop, skipped: list | None) -> None:
    """Frames that end before the file does: warn and record it as a truncated last
    frame is (:class:`~quests_core.io.TruncatedFrameWarning`, ``skipped``)."""
    reason = stop.text()
    warnings.warn(TruncatedFrameWarning(f"{path}: frame {stop.frame}: {reason}"), stacklevel=4)
    if skipped is not None:
        skipped.append((path, stop.frame, reason))


def _read_frame(traj: _Trajectory, path: str, i: int, top: Topology) -> Atoms:
    try:
        raw = traj.read(i)
    except _NoPositions:
        raise frame_error(path, i, "the TRR frame has no positions") from None
    except _Crash as exc:
        raise frame_error(path, i, str(exc)) from None
    except _BadBox as exc:
        dims = ", ".join(f"{v:.6g}" for v in exc.dims)
        raise frame_error(
            path, i, f"the box (a, b, c, alpha, beta, gamma) = ({dims}) is not a valid cell"
        ) from None
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise frame_error(path, i, f"cannot read it, corrupt file? ({one_line(exc)})") from None
    if raw.positions.shape != (top.n_atoms, 3):
        raise frame_error(
            path, i, f"has {len(raw.positions)} atoms, the topology {top.n_atoms}"
        )
    if top.keep is not None:
        raw.positions = raw.positions[top.keep]
    if raw.cell is None:
        atoms = Atoms(numbers=top.numbers, positions=raw.positions, pbc=False)
    else:
        atoms = Atoms(numbers=top.numbers, positions=raw.positions, cell=raw.cell, pbc=True)
    if np.isfinite(raw.time):
        atoms.info["time"] = raw.time
    if raw.step is not None:
        atoms.info["step"] = raw.step
    return atoms
