"""The format registry: one entry per structure format the readers know.

In the spirit of ASE's ``ase.io.formats`` (one ``ioformats`` table filled by
``define_io_format``): each :class:`IOFormat` says what a format is (name,
description, suffixes, file names, magic bytes, one frame or many), which
reader streams its frames (an ASE format read by :mod:`quests_core.io_ase`,
or a reader of its own: the (ext)xyz splitter of :mod:`quests_core.io_xyz`, the
LAMMPS dump splitter of :mod:`quests_core.io_lammps`, the MD trajectories of
:mod:`quests_core.io_mdanalysis`), how its frames are counted, what is checked
before it is read and after each frame, whether one frame's text can be parsed
on its own (the follower of a file being written) and which type map applies.

Everything else is derived from the table: :func:`detect_format` (suffix, file
name, magic bytes, else ASE's own detection), :data:`EXTENSION_FORMATS`,
:data:`FRAME_TEXT_FORMATS`, and the suffix lists of the dashboard
(:func:`suffixes`, :func:`file_names`, :func:`lammps_suffixes`). A format ASE
reads that the table does not list is read through ASE with the defaults
(:func:`ioformat`).

Adding a format is one :func:`define_io_format` call here, and its reader
function in one reader module when ASE's own reader is not enough.

Reader protocol
---------------
``reader(request) -> Iterator[Frame]`` yields the frames a
:class:`~quests_core.io_common.FrameRequest` asks for (``range(start, stop,
step)`` of its path, with its type map, topology and ``skipped`` list) as
:class:`~quests_core.io_common.Frame` records, every error one line naming the
file and the frame; a truncated last frame it skips is appended to ``skipped``
(:func:`~quests_core.io_common.skip_last`). ``counter(path) -> int | None``
counts frames (None: count by reading), ``precheck(path)`` runs before the first
frame is read, ``frame_check(path, frame, atoms)`` after each, and
``frame_text(data, fmt, source, frame, type_map) -> Atoms`` parses the bytes of
one complete frame.

Invariants
----------
- Imports the reader modules, never :mod:`quests_core.io` (the facade above it).
- Suffixes and file names are unique across the table (checked when defined).
- Memory: constant (detection reads at most the first bytes of a file, and ASE's
  detection what it reads).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from quests_core.errors import QuestsError
from quests_core.io_arc import count_arc_frames, iter_arc_frames
from quests_core.io_ase import count_traj_frames, iter_ase_frames, iter_pdb_frames
from quests_core.io_checks import (
    check_cif_cell,
    check_gro,
    check_poscar,
    count_pdb_frames,
    inflated_size,
    open_binary,
)
from quests_core.io_common import FrameRequest, check_path, one_line
from quests_core.io_lammps import (
    count_dump_frames,
    iter_data_frames,
    iter_dump_frames,
    parse_dump_frame_text,
)
from quests_core.io_mdanalysis import MD_EXTENSIONS, MD_FORMATS, count_md_frames, iter_md_frames
from quests_core.io_mdanalysis import md_format as _md_format
from quests_core.io_xyz import count_xyz_frames, iter_xyz_frames, parse_xyz_frame_text

__all__ = [
    "EXTENSION_FORMATS",
    "FRAME_TEXT_FORMATS",
    "IOFormat",
    "define_io_format",
    "detect_format",
    "file_names",
    "format_from_magic",
    "format_from_name",
    "ioformat",
    "ioformats",
    "lammps_suffixes",
    "suffixes",
]

#: Type maps: LAMMPS numeric types only (atom names are refused).
LAMMPS_TYPES = "lammps"
#: Type maps: LAMMPS types or atom names, applied to the topology (MD trajectories).
TOPOLOGY_TYPES = "topology"


@dataclass(frozen=True)
class IOFormat:
    """One format the readers know.

    Attributes
    ----------
    name : str
        The format name (ASE's, or ours for the MD trajectories).
    description : str
        What it is, in words.
    multi_frame : bool
        Whether a file may hold several frames (ASE's ``+``; else frame 0 only).
    extensions : tuple of str
        Lower-case suffixes without the dot (``"extxyz"``); the compression
        suffix (``.gz``/``.bz2``/``.xz``) comes after them.
    names : tuple of str
        File names without a suffix (``"POSCAR"``), also as the start of a name
        (``POSCAR_relaxed``); case-insensitive when detecting.
    magic : bytes or None
        What the file starts with (after leading blank space), used to detect
        it when neither suffix nor name says, and checked before it is read.
    reader : callable
        Streams the frames (see the module's reader protocol).
    counter : callable or None
        ``counter(path) -> int | None``: the frames, without parsing them.
    precheck, frame_check : callable or None
        Run before the first frame is read, and on each frame read.
    frame_text : callable or None
        Parses the bytes of one complete frame (formats that can be followed).
    type_map : str or None
        :data:`LAMMPS_TYPES`, :data:`TOPOLOGY_TYPES` or None (ignored).
    strict : bool
        Reader warnings that mean lost data are errors (CIF).
    topology : bool
        Read through MDAnalysis with a topology (``md`` extra).
    """

    name: str
    description: str
    multi_frame: bool
    extensions: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    magic: bytes | None = None
    reader: Callable[..., Iterator[Any]] = iter_ase_frames
    counter: Callable[[str], int | None] | None = None
    precheck: Callable[[str], None] | None = None
    frame_check: Callable[..., None] | None = None
    frame_text: Callable[..., Any] | None = None
    type_map: str | None = None
    strict: bool = False
    topology: bool = False

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The extensions with their dot (``".extxyz"``)."""
        return tuple(f".{ext}" for ext in self.extensions)


#: The registry: format name -> entry, in the order the formats are listed.
ioformats: dict[str, IOFormat] = {}


def define_io_format(name: str, description: str, *, multi_frame: bool,
                     ext: str | tuple[str, ...] = (), **fields: Any) -> IOFormat:
    """Add a format to :data:`ioformats` (see :class:`IOFormat` for ``fields``)."""
    extensions = (ext,) if isinstance(ext, str) else tuple(ext)
    entry = IOFormat(name, description, multi_frame, extensions, **fields)
    if name in ioformats:
        raise ValueError(f"format {name!r} defined twice")
    for other in ioformats.values():
        if set(other.extensions) & set(extensions):
            raise ValueError(f"{name!r} and {other.name!r} share a suffix")
        if {n.lower() for n in other.names} & {n.lower() for n in entry.names}:
            raise ValueError(f"{name!r} and {other.name!r} share a file name")
    ioformats[name] = entry
    return entry


# ----------------------------------------------------------------------------
# The table (the order is the order the dashboard lists the suffixes in)
# ----------------------------------------------------------------------------

define_io_format("extxyz", "Extended XYZ (also plain .xyz)", multi_frame=True,
                 ext=("extxyz", "xyz"), reader=iter_xyz_frames, counter=count_xyz_frames,
                 frame_text=parse_xyz_frame_text)
define_io_format("xyz", "plain XYZ (format='xyz'; .xyz files are read as extxyz)",
                 multi_frame=True, reader=iter_xyz_frames, counter=count_xyz_frames,
                 frame_text=parse_xyz_frame_text)
define_io_format("traj", "ASE trajectory", multi_frame=True, ext="traj",
                 counter=count_traj_frames)
define_io_format("cif", "CIF (one structure per data block)", multi_frame=True, ext="cif",
                 frame_check=check_cif_cell, strict=True)
define_io_format("proteindatabank", "Protein Data Bank (MODEL ... ENDMDL frames)",
                 multi_frame=True, ext="pdb", reader=iter_pdb_frames, counter=count_pdb_frames)
define_io_format("gromacs", "GROMACS .gro (one frame)", multi_frame=False, ext="gro",
                 precheck=check_gro)
define_io_format("vasp", "VASP POSCAR/CONTCAR", multi_frame=False,
                 ext=("vasp", "poscar", "contcar"), names=("POSCAR", "CONTCAR"),
                 precheck=check_poscar)
define_io_format("vasp-xdatcar", "VASP XDATCAR trajectory", multi_frame=True, ext="xdatcar",
                 names=("XDATCAR",))
define_io_format("lammps-dump-text", "LAMMPS text dump", multi_frame=True,
                 ext=("lammpstrj", "lammpsdump", "dump"), reader=iter_dump_frames,
                 counter=count_dump_frames, frame_text=parse_dump_frame_text,
                 type_map=LAMMPS_TYPES)
define_io_format("lammps-data", "LAMMPS data file", multi_frame=False,
                 ext=("data", "lmp", "lammpsdata"), reader=iter_data_frames,
                 type_map=LAMMPS_TYPES)
define_io_format("xsf", "XCrySDen structure file", multi_frame=True, ext="xsf")
define_io_format("dmol-arc", "DMol3/Materials Studio archive (BIOSYM archive 3)",
                 multi_frame=True, ext="arc", magic=b"!BIOSYM archive 3",
                 reader=iter_arc_frames, counter=count_arc_frames)


def _iter_md(request: FrameRequest) -> Iterator[Any]:
    """The reader of the MD trajectories (:func:`quests_core.io_mdanalysis.iter_md_frames`)."""
    return iter_md_frames(request.path, request.fmt, request.start, request.stop, request.step,
                          topology=request.topology, type_map=dict(request.type_map),
                          skipped=request.skipped, topology_format=request.topology_format)


for _name, _description in MD_FORMATS.items():
    define_io_format(
        _name, f"{_description} trajectory (through MDAnalysis, with a topology)",
        multi_frame=True, ext=tuple(e for e, f in MD_EXTENSIONS.items() if f == _name),
        reader=_iter_md, counter=functools.partial(count_md_frames, fmt=_name),
        type_map=TOPOLOGY_TYPES, topology=True,
    )


# ----------------------------------------------------------------------------
# What the table gives
# ----------------------------------------------------------------------------

#: Suffix (lower case, no dot) -> format read through ASE or our splitters (not the
#: MD trajectories), e.g. ``"lammpstrj" -> "lammps-dump-text"``.
EXTENSION_FORMATS: dict[str, str] = {
    ext: entry.name for entry in ioformats.values() if not entry.topology
    for ext in entry.extensions
}
#: Formats whose single frames can be parsed from their text (:func:`quests_core.io.
#: parse_frame_text`; the formats the follower of a growing file reads).
FRAME_TEXT_FORMATS: tuple[str, ...] = tuple(
    entry.name for entry in ioformats.values() if entry.frame_text is not None)


def suffixes() -> tuple[str, ...]:
    """Every suffix of the table, with its dot, in the table's order."""
    return tuple(s for entry in ioformats.values() for s in entry.suffixes)


def file_names() -> tuple[str, ...]:
    """Every file name of the table (``POSCAR``, ``CONTCAR``, ``XDATCAR``)."""
    return tuple(n for entry in ioformats.values() for n in entry.names)


def lammps_suffixes() -> tuple[str, ...]:
    """The suffixes of the formats whose atoms may carry only LAMMPS numeric types."""
    return tuple(s for entry in ioformats.values() if entry.type_map == LAMMPS_TYPES
                 for s in entry.suffixes)


@functools.cache
def ioformat(name: str) -> IOFormat:
    """The entry of a format: the table's, or for another format ASE reads, one with
    ASE's reader and ASE's frame count (``KeyError`` for a format nobody reads)."""
    if name in ioformats:
        return ioformats[name]
    from ase.io.formats import ioformats as ase_formats

    ase = ase_formats[name]
    return IOFormat(name, ase.description, multi_frame=not ase.single)


def format_from_name(name: str) -> str | None:
    """The format a file name says (its suffix, or a name such as ``POSCAR_relaxed``),
    after a compression suffix; None when it does not say."""
    from ase.io.formats import get_compression

    root, _ = get_compression(os.path.basename(name))
    lower = root.lower()
    ext = lower.rsplit(".", 1)[-1] if "." in lower else ""
    if ext in EXTENSION_FORMATS:
        return EXTENSION_FORMATS[ext]
    if lower in EXTENSION_FORMATS:  # a file named like a suffix ("poscar", "xyz")
        return EXTENSION_FORMATS[lower]
    for entry in ioformats.values():  # POSCAR, CONTCAR, XDATCAR-2, POSCAR_relaxed
        if not entry.topology and lower.startswith(tuple(n.lower() for n in entry.names)):
            return entry.name
    return None


#: Bytes read from the start of a file to compare with the magic of the table.
_MAGIC_BYTES = 256


def _head(path: str) -> bytes:
    """The first bytes of the file's content (decompressed), leading blank space removed."""
    with open_binary(path) as fd:
        return fd.read(_MAGIC_BYTES).lstrip()


def format_from_magic(path: str | os.PathLike) -> str | None:
    """The format of the table whose magic bytes the file starts with, else None.

    Only for a file whose suffix no format of ASE claims either (a DMol3 ``.car`` file
    starts as an ``.arc`` does, and stays ASE's ``dmol-car``).
    """
    from ase.io.formats import extension2format, get_compression
    from ase.io.formats import ioformats as ase_formats

    if not any(entry.magic for entry in ioformats.values()):
        return None
    root = get_compression(os.path.basename(path))[0].lower()
    ext = root.rsplit(".", 1)[-1] if "." in root else ""
    if ext and (ext in extension2format
                or any(ext in f.extensions for f in ase_formats.values())):
        return None
    head = _head(str(path))
    for entry in ioformats.values():
        if entry.magic is not None and head.startswith(entry.magic):
            return entry.name
    return None


def check_magic(path: str, entry: IOFormat) -> None:
    """A file of a format with magic bytes starts with them (else one line saying so)."""
    if entry.magic is not None and not _head(path).startswith(entry.magic):
        raise QuestsError(
            f"not a {entry.description} file (it does not start with "
            f"{entry.magic.decode('ascii', 'replace')!r}; give the format if it is another one)",
            source=path,
        )


def detect_format(path: str | os.PathLike, format: str | None = None) -> str:
    """Return the format name used to read ``path``.

    Parameters
    ----------
    path : path-like
        The file (must exist, be a regular file and not be empty).
    format : str, optional
        An explicit ASE format name (``"extxyz"``, ``"lammps-dump-text"``,
        ...), checked against the formats ASE can read, or one of the MD
        formats read through MDAnalysis
        (:data:`quests_core.io_mdanalysis.MD_FORMATS`: ``"xtc"``, ``"trr"``,
        ``"dcd"``, ``"lammps-dcd"``, ``"amber-netcdf"``; detected from the
        extensions ``.xtc .trr .dcd .nc .ncdf``).

    Without ``format``: the suffix or file name (:func:`format_from_name`), else
    the magic bytes of the table (:func:`format_from_magic`), else ASE's own
    detection.

    Raises
    ------
    QuestsError
        For missing, empty or directory paths and unknown or unreadable formats.
    """
    from ase.io.formats import UnknownFileTypeError, filetype
    from ase.io.formats import ioformats as ase_formats

    p = check_path(path)
    inflated_size(str(p))
    md = _md_format(p, format)
    if md is not None:  # read through MDAnalysis (quests_core.io_mdanalysis)
        return md
    if format is None:
        format = format_from_name(p.name) or format_from_magic(p)
        if format is None:
            try:
                format = filetype(str(p), read=True)
            except UnknownFileTypeError:
                format = None
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                raise QuestsError(
                    f"cannot detect the format ({one_line(exc)})", source=str(path)
                ) from None
        if format is None or format not in ase_formats:
            raise QuestsError(
                "unknown file format (give one explicitly, e.g. format='extxyz')",
                source=str(path),
            )
    if format not in ase_formats:
        raise QuestsError(f"unknown format {format!r}", source=str(path))
    if not ase_formats[format].can_read:
        raise QuestsError(f"ASE cannot read the {format!r} format", source=str(path))
    return format
