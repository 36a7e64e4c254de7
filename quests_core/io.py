"""Streaming readers for atomistic structure files: the public face of the readers.

Everything :mod:`ase.io` reads is accepted (extxyz, xyz, LAMMPS text dumps,
ASE ``.traj``, POSCAR/CONTCAR/XDATCAR, CIF, ...). Frames are read one at a
time, so a multi-gigabyte trajectory is never held in memory whole, and every
frame is validated before it is handed on. Every problem caused by the input
becomes a :class:`~quests_core.errors.QuestsError` whose one-line message
names the file, the frame and the problem.

Which format a file is, and how it is read, counted and checked, is one entry
of the format registry, :mod:`quests_core.formats`; this module runs an entry
(:func:`iter_frames`, :func:`count_frames`, :func:`parse_frame_text`) and
re-exports the names of the modules below it:

- :mod:`quests_core.formats` -- the registry, :func:`detect_format`.
- :mod:`quests_core.io_xyz` -- the (ext)xyz splitter (frames split by counting
  lines: a header declaring 10^9 atoms fails at once) and one frame's text.
- :mod:`quests_core.io_lammps` -- LAMMPS text dumps (read as bytes frame by
  frame, their counts checked), data files, the numeric-type warning.
- :mod:`quests_core.io_arc` -- DMol3/Materials Studio ``.arc`` trajectories,
  split frame by frame.
- :mod:`quests_core.io_ase` -- every other format, through ``ase.io.iread``.
- :mod:`quests_core.io_mdanalysis` -- XTC/TRR/DCD/Amber NetCDF through
  MDAnalysis (the ``md`` extra; without it, one line naming the extra), with a
  ``topology`` file for the elements.
- :mod:`quests_core.io_checks` -- the bounds, the decompression guard (files
  inflating more than :data:`MAX_INFLATE_RATIO` times beyond 256 MiB are
  refused), :func:`validate_atoms`, the ``.gro``/POSCAR/``.pdb``/CIF checks.
- :mod:`quests_core.io_errors` -- :func:`locate_error` (an engine error about
  "structure i" of a chunk named by file and frame), reader exceptions in words.
- :mod:`quests_core.io_index` -- :func:`parse_index`.
- :mod:`quests_core.io_common` -- :class:`Frame`, :class:`TruncatedFrameWarning`,
  :func:`parse_type_map`, the one-line error helpers.

Truncated frames (the rule of :class:`TruncatedFrameWarning`): a frame cut
short is an error naming the frame, except the *last* frame of a file with at
least one complete frame before it (xyz/extxyz, LAMMPS dump, pdb, arc: a trajectory
still being written), which is skipped with a warning and counted. A short
frame followed by more frames, extra atom lines, or a cut single-frame file is
an error. ``.traj`` files have no visible frame boundaries: any damage is an
error.

:func:`parse_frame_text` parses the bytes of one complete (ext)xyz or LAMMPS
dump frame with the same splitter checks, readers and messages (the follower of
a file being written, :mod:`quests_core.follow`, cuts the frames itself).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ase import Atoms
from ase.data import chemical_symbols

from quests_core.errors import QuestsError
from quests_core.formats import (
    EXTENSION_FORMATS,
    FRAME_TEXT_FORMATS,
    LAMMPS_TYPES,
    TOPOLOGY_TYPES,
    check_magic,
    detect_format,
    ioformat,
)
from quests_core.io_checks import (
    MAX_COORDINATE,
    MAX_FRAME_ATOMS,
    MAX_INFLATE_RATIO,
    MIN_INFLATE_LIMIT,
    validate_atoms,
)
from quests_core.io_common import (
    Frame,
    FrameRequest,
    TruncatedFrameWarning,
    parse_type_map,
    type_map_names,
)
from quests_core.io_errors import frame_origin, locate_error, reader_error, remember_origin
from quests_core.io_index import index_text, parse_index
from quests_core.io_lammps import type_warning

__all__ = [
    "EXTENSION_FORMATS",
    "FRAME_TEXT_FORMATS",
    "MAX_COORDINATE",
    "MAX_FRAME_ATOMS",
    "MAX_INFLATE_RATIO",
    "MIN_INFLATE_LIMIT",
    "Frame",
    "TruncatedFrameWarning",
    "frame_origin",
    "locate_error",
    "count_frames",
    "detect_format",
    "iter_frames",
    "iter_structures",
    "lammps_type_warning",
    "parse_frame_text",
    "parse_index",
    "parse_type_map",
    "read_structures",
    "type_map_names",
    "validate_atoms",
]

def count_frames(path: str | os.PathLike, format: str | None = None) -> int:
    """Number of frames in a file, without keeping them in memory.

    The registry entry's counter where it has one (extxyz/xyz, LAMMPS text dumps,
    ``.pdb`` MODELs, ``.traj``, the MD trajectories); one for a single-frame
    format; other formats are parsed frame by frame.
    """
    fmt = detect_format(path, format)
    spath = str(path)
    entry = ioformat(fmt)
    if entry.topology:
        return entry.counter(spath)
    try:
        if not entry.multi_frame:
            return 1
        n = entry.counter(spath) if entry.counter is not None else None
        if n is not None:
            return n
        from ase.io import iread

        return sum(1 for _ in iread(spath, index=":", format=fmt, do_not_split_by_at_sign=True))
    except QuestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise reader_error(spath, None, exc, fmt) from None


def _resolve(index: int | slice, path: str, fmt: str) -> tuple[int, int | None, int, int | None]:
    """Resolve a selection to non-negative (start, stop, step, count or None)."""
    if isinstance(index, int):
        if index >= 0:
            return index, index + 1, 1, None
        n = count_frames(path, fmt)
        if -index > n:
            raise QuestsError(f"frame {index} does not exist (file has {n} frames)", source=path)
        return n + index, n + index + 1, 1, n
    start, stop, step = index.start, index.stop, index.step or 1
    if (start is not None and start < 0) or (stop is not None and stop < 0):
        n = count_frames(path, fmt)
        start, stop, step = slice(start, stop, step).indices(n)
        return start, stop, step, n
    return (start or 0), stop, step, None


def iter_frames(
    path: str | os.PathLike,
    index: int | slice | str | None = ":",
    format: str | None = None,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    validate: bool = True,
    skipped: list[tuple[str, int, str]] | None = None,
    topology: str | os.PathLike | None = None,
    topology_format: str | None = None,
) -> Iterator[Frame]:
    """Stream the selected frames of a file, one validated :class:`Frame` at a time.

    Parameters
    ----------
    path : path-like
        A file readable by :mod:`ase.io`.
    index : int, slice or str
        Frame selection, see :func:`parse_index` (default: all frames).
    format : str, optional
        ASE format name; detected from the name and contents if omitted.
    type_map : mapping, sequence or str, optional
        LAMMPS type -> element for dumps without an ``element`` column, and for
        the numeric types of an MD trajectory's LAMMPS data topology; or atom
        name -> element (``"OW=O,MW=O"``) for an MD trajectory's topology
        (a name map given for a LAMMPS file is an error), see
        :func:`parse_type_map`. Ignored for other formats.
    validate : bool
        Run :func:`validate_atoms` on every frame (default True).
    skipped : list, optional
        Receives ``(file, frame, reason)`` for a truncated last frame that was
        skipped with a :class:`TruncatedFrameWarning`.
    topology : path-like, optional
        The topology file (PDB/GRO/PSF/LAMMPS data, ...) that names the atoms
        of an MD trajectory read through MDAnalysis (XTC, TRR, DCD, Amber
        NetCDF; see :mod:`quests_core.io_mdanalysis`); default: a file with
        the trajectory's stem next to it. Ignored for other formats.
    topology_format : str, optional
        MDAnalysis topology format of ``topology`` (``PRMTOP``, ``TOP``,
        ``PSF``, ``GRO``, ``PDB``, ``TPR``, ``DATA``, ...) when its extension
        does not say it (an Amber ``.top``). Ignored for other formats.

    Yields
    ------
    Frame
        ``Frame(source, frame, atoms)`` with ``frame`` the index in the file.

    Raises
    ------
    QuestsError
        Naming the file and the frame, for unreadable, truncated or invalid input.
    """
    spath = str(path)
    fmt = detect_format(spath, format)
    selection = parse_index(index)
    tmap = parse_type_map(type_map)
    entry = ioformat(fmt)
    if tmap and type_map_names(tmap) and entry.type_map != TOPOLOGY_TYPES:
        if entry.type_map == LAMMPS_TYPES:
            raise QuestsError(
                f"the type map {type_map!r} names atoms; LAMMPS files take numeric types "
                "(1=Cu,2=Ni): atom names apply to the topology of an XTC/TRR/DCD/NetCDF "
                "trajectory",
                source=spath,
            )
        tmap = {}  # ignored, as a LAMMPS type map is, by the formats that name their atoms
    start, stop, step, total = _resolve(selection, spath, fmt)
    if stop is not None and stop <= start:
        raise QuestsError(f"index {index_text(selection)!r} selects no frames", source=spath)

    frames = _read(FrameRequest(spath, entry, start, stop, step, type_map=tmap, skipped=skipped,
                                topology=topology, topology_format=topology_format))
    n_yielded = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except QuestsError:
            raise
        except RecursionError as exc:
            raise reader_error(spath, None, exc, fmt) from None
        if entry.frame_check is not None:
            entry.frame_check(spath, frame.frame, frame.atoms)
        if validate:
            validate_atoms(frame.atoms, spath, frame.frame)
        remember_origin(frame.atoms, spath, frame.frame)
        n_yielded += 1
        yield frame
    if n_yielded == 0:
        if isinstance(selection, int):
            raise QuestsError(f"frame {selection} does not exist", source=spath)
        if selection == slice(None):
            raise QuestsError("no structures found (empty or unreadable file)", source=spath)
        raise QuestsError(
            f"index {index_text(selection)!r} selects no frames"
            + (f" (file has {total} frames)" if total is not None else ""),
            source=spath,
        )


def _read(request: FrameRequest) -> Iterator[Frame]:
    """The entry's frames, after its checks of the whole file (magic bytes, precheck)."""
    entry = request.entry
    check_magic(request.path, entry)
    if entry.precheck is not None:
        entry.precheck(request.path)
    return entry.reader(request)


def parse_frame_text(
    data: bytes,
    fmt: str,
    *,
    source: str,
    frame: int,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
) -> Atoms:
    """The structure of one complete frame given as text, with the readers' messages.

    Parameters
    ----------
    data : bytes
        The frame's bytes: for (ext)xyz the count line, the comment line and
        the atom lines; for a LAMMPS text dump from ``ITEM: TIMESTEP`` to the
        last atom line. Blank lines before the header are ignored.
    fmt : str
        ``"extxyz"``, ``"xyz"`` or ``"lammps-dump-text"``.
    source, frame : str, int
        The file and the frame's index in it, for the messages.
    type_map : optional
        LAMMPS type -> element (:func:`parse_type_map`).

    Returns
    -------
    ase.Atoms
        The structure, not validated (see :func:`validate_atoms`).

    Raises
    ------
    QuestsError
        One line naming ``source`` and ``frame``, the messages of
        :func:`iter_frames` (binary data, a bad or negative atom count, a
        missing ``ITEM: TIMESTEP``/``NUMBER OF ATOMS``, fewer atom lines than
        declared, a frame ASE cannot parse, LAMMPS types missing from the map).

    Notes
    -----
    Memory: the frame's text and its structure.
    """
    source = str(source)
    if fmt not in FRAME_TEXT_FORMATS:
        raise QuestsError(
            f"cannot parse a single frame of the {fmt!r} format "
            f"(formats: {', '.join(FRAME_TEXT_FORMATS)})",
            source=source,
        )
    return ioformat(fmt).frame_text(data, fmt, source, frame, type_map)


def iter_structures(
    path: str | os.PathLike, index: int | slice | str | None = ":", **options: Any
) -> Iterator[Atoms]:
    """Stream the selected structures of a file.

    ``options`` are those of :func:`iter_frames` (``format``, ``type_map``,
    ``validate``, ``topology``, ``topology_format``); use :func:`iter_frames` to
    also get the index of each frame in its file.
    """
    for item in iter_frames(path, index=index, **options):
        yield item.atoms


def read_structures(
    path: str | os.PathLike, index: int | slice | str | None = ":", **options: Any
) -> list[Atoms]:
    """Read the selected structures of a file into a list (see :func:`iter_structures`)."""
    return list(iter_structures(path, index=index, **options))


def lammps_type_warning(
    path: str | os.PathLike,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    format: str | None = None,
    name: str | None = None,
) -> str:
    """Say whether a LAMMPS file's numeric types will be read as H, He, Li, ...

    A LAMMPS text dump without an ``element`` (or ``mass``) column, or a
    LAMMPS data file without a ``Masses`` section, names its atoms only by
    numeric type; ASE then reads type 1 as H, type 2 as He and so on. That
    happens when no type map is given.

    Parameters
    ----------
    path : path-like
        The file.
    type_map : optional
        The type map that will be used (see :func:`parse_type_map`); any
        non-empty map means no warning.
    format : str, optional
        ASE format name (detected if omitted).
    name : str, optional
        Name used in the message (default: the file name).

    Returns
    -------
    str
        A one-line warning naming the file and how to fix it, or ``""`` when
        the species are known (element column, masses, a type map, or not a
        LAMMPS file). Unreadable files give ``""``: reading them reports the
        error.
    """
    try:
        fmt = detect_format(path, format)
    except QuestsError:
        return ""
    if ioformat(fmt).type_map != LAMMPS_TYPES:
        return ""
    return type_warning(path, fmt, type_map, name)


def element_symbols(numbers: Iterable[int]) -> list[str]:
    """Element symbols for atomic numbers, sorted by atomic number."""
    return [chemical_symbols[z] for z in sorted(set(int(z) for z in numbers))]

