"""Streaming readers for atomistic structure files.

Everything :mod:`ase.io` reads is accepted (extxyz, xyz, LAMMPS text dumps,
ASE ``.traj``, POSCAR/CONTCAR/XDATCAR, CIF, ...). Frames are read one at a
time, so a multi-gigabyte trajectory is never held in memory whole, and every
frame is validated before it is handed on. Every problem caused by the input
becomes a :class:`~quests_core.errors.QuestsError` whose one-line message
names the file, the frame and the problem.

LAMMPS text dumps and (ext)xyz files are split into frames here (as bytes, each
frame decoded on its own) and each frame is parsed by ASE: ASE on its own
silently accepts a truncated dump (a frame with fewer atoms than its header
declares) and spends minutes on an xyz header declaring 10^9 atoms. The atom
counts of ``.gro`` and POSCAR files are checked against their lines, a ``.pdb``
MODEL needs its ENDMDL, a CIF row with the wrong number of values is an error,
and compressed files that inflate more than :data:`MAX_INFLATE_RATIO` times
(beyond 256 MiB) are refused as decompression bombs.

Truncated frames (the rule of :class:`TruncatedFrameWarning`): a frame cut
short is an error naming the frame, except the *last* frame of a file with at
least one complete frame before it (xyz/extxyz, LAMMPS dump, pdb: a trajectory
still being written), which is skipped with a warning and counted. A short
frame followed by more frames, extra atom lines, or a cut single-frame file is
an error. ``.traj`` files have no visible frame boundaries: any damage is an
error.

The trajectory formats of MD codes that ASE cannot read (GROMACS XTC/TRR,
CHARMM/NAMD/LAMMPS DCD, Amber NetCDF) are detected here and read through
MDAnalysis by :mod:`quests_core.io_mdanalysis` (the optional ``md`` extra;
without it, one line naming the extra), with a ``topology`` file for the
elements; the same rules and messages apply.

Every frame is also checked by :func:`validate_atoms` (atomic numbers,
finite and sane coordinates and cells, zero-volume periodic cells with the
axis named), and :func:`locate_error` turns a later error of the descriptor
engine about "structure i" of a chunk into one naming the file and frame.

:func:`parse_frame_text` parses the bytes of one complete (ext)xyz or LAMMPS
dump frame with the same splitter checks, readers and messages (the follower of
a file being written, :mod:`quests_core.follow`, cuts the frames itself).

:class:`Frame`, :class:`TruncatedFrameWarning` and :func:`parse_type_map` are
defined in :mod:`quests_core.io_common` (shared with
:mod:`quests_core.io_mdanalysis`, which never imports this module) and
re-exported here.
"""

from __future__ import annotations

import io as _stdio
import os
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from quests_core.errors import QuestsError
from quests_core.io_common import (
    Frame,
    TruncatedFrameWarning,
    _check_path,
    _frame_error,
    _one_line,
    _skip_last,
    parse_type_map,
    type_map_names,
)
from quests_core.io_mdanalysis import MD_FORMATS, count_md_frames, iter_md_frames, md_format

__all__ = [
    "MAX_INFLATE_RATIO",
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

#: Extensions ASE does not map (or maps to another format) that we know.
EXTENSION_FORMATS: dict[str, str] = {
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

_LAMMPS_DUMP = "lammps-dump-text"
_LAMMPS_DATA = "lammps-data"
_PARSE_ERRORS = (
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    RuntimeError,
    EOFError,
    AssertionError,
    AttributeError,
    UnicodeDecodeError,
    OSError,
    StopIteration,
)

#: A compressed input may inflate to at most this many times its size (above
#: :data:`MIN_INFLATE_LIMIT`): more is refused as a decompression bomb.
MAX_INFLATE_RATIO = 100
#: Compressed inputs always may inflate to this many bytes.
MIN_INFLATE_LIMIT = 256 << 20
#: Smallest atom line of a text format (``"H 0 0 0"``), to refuse absurd counts fast.
_MIN_ATOM_LINE = 7
#: Largest |coordinate| or cell vector length accepted, in Å (1 cm).
MAX_COORDINATE = 1e8


# ----------------------------------------------------------------------------
# Where each structure came from (for errors raised later, by the engine)
# ----------------------------------------------------------------------------

_ORIGINS: dict[int, tuple[weakref.ref, str, int]] = {}


def _remember(atoms: Atoms, source: str, frame: int) -> None:
    key = id(atoms)

    def forget(ref, key=key) -> None:
        entry = _ORIGINS.get(key)
        if entry is not None and entry[0] is ref:
            del _ORIGINS[key]

    try:
        _ORIGINS[key] = (weakref.ref(atoms, forget), str(source), int(frame))
    except TypeError:  # pragma: no cover - not weak-referenceable
        pass


def frame_origin(atoms: Any) -> tuple[str, int] | None:
    """``(file, frame)`` of a structure read by this module (or a Dataset), else None."""
    entry = _ORIGINS.get(id(atoms))
    if entry is None or entry[0]() is not atoms:
        return None
    return entry[1], entry[2]


def locate_error(exc: QuestsError, structures: Sequence[Any] | None = None,
                 source: str | None = None) -> QuestsError:
    """The same error naming the file and frame of the structure it is about.

    Errors of the descriptor engine say ``structure i`` with ``i`` the position
    in the list it was given (a chunk of a file). When ``structures[i]`` was read
    by :func:`iter_frames` the result names its file and frame instead; else,
    ``source`` (a file name) is put in front. Errors that already name a file
    are returned unchanged.
    """
    if exc.source is not None:
        return exc
    message = str(exc)
    detail = getattr(exc, "detail", None)
    index = exc.index
    if index is not None and structures is not None and 0 <= index < len(structures):
        origin = frame_origin(structures[index])
        if origin is not None:
            if detail is None:
                prefix = f"structure {index}: "
                detail = message[len(prefix):] if message.startswith(prefix) else message
            out = QuestsError(f"frame {origin[1]}: {detail}", source=origin[0])
            out.index = origin[1]
            return out
    if source is None:
        return exc
    out = QuestsError(message, source=source)
    out.index = exc.index
    return out


def _cause(exc: BaseException, fmt: str | None = None) -> str:
    """The cause of a reader exception in words."""
    name = type(exc).__name__
    text = _one_line(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "binary data where text was expected (not a text file, or corrupt)"
    if isinstance(exc, MemoryError):
        return "too large to read into memory (corrupt sizes?)"
    if name == "SpacegroupNotFoundError":
        return f"unknown space group ({text})"
    if name == "UnknownFileTypeError" or fmt == "json":
        return f"not a valid {'ASE database ' if fmt == 'json' else ''}{fmt or 'structure'} file " \
            f"({text})"
    if isinstance(exc, AssertionError):
        return f"not a valid {fmt or 'structure'} file (the reader's consistency check failed)"
    if isinstance(exc, KeyError):
        return f"unknown element or missing field {text} (truncated or corrupt file?)"
    if isinstance(exc, (ValueError, IndexError, TypeError)):
        return f"cannot parse, truncated or corrupt file? ({text})"
    return f"cannot parse{f' as {fmt}' if fmt else ''} ({name}: {text})"


def _wrap(path: str, frame: int | None, exc: BaseException, fmt: str | None = None) -> QuestsError:
    if frame is None:
        return QuestsError(_cause(exc, fmt), source=path)
    return _frame_error(path, frame, _cause(exc, fmt))


def _describe_line(line: bytes) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    text = text.strip()
    if any(ord(c) < 32 and c not in "\t" for c in text):
        return "binary data"
    return repr(text[:40])


# ----------------------------------------------------------------------------
# Index and type-map parsing
# ----------------------------------------------------------------------------


def parse_index(index: int | slice | str | None) -> int | slice:
    """Turn a frame selection into an ``int`` or a ``slice``.

    Parameters
    ----------
    index : int, slice, str or None
        ``None`` or ``":"`` (all frames), an integer (``"3"``, ``"-1"``) or a
        ``"start:stop:step"`` string in Python slice syntax (``"::10"``,
        ``"-100:"``, ``"5:50:5"``).

    Returns
    -------
    int or slice

    Raises
    ------
    QuestsError
        If the text is not an integer or a slice, or the step is not positive.
    """
    if index is None:
        return slice(None)
    if isinstance(index, (bool, np.bool_)):
        raise QuestsError(f"index {index!r}: expected an integer or 'start:stop:step'")
    if isinstance(index, (int, np.integer)):
        return int(index)
    if isinstance(index, slice):
        result = index
    else:
        text = str(index).strip()
        if text in ("", ":", "::"):
            return slice(None)
        parts = text.split(":")
        if len(parts) == 1:
            try:
                return int(parts[0])
            except ValueError:
                raise QuestsError(
                    f"index {text!r}: expected an integer or 'start:stop:step'"
                ) from None
        if len(parts) > 3:
            raise QuestsError(f"index {text!r}: expected 'start:stop:step'")
        values: list[int | None] = []
        for part in parts:
            part = part.strip()
            if part == "":
                values.append(None)
                continue
            try:
                values.append(int(part))
            except ValueError:
                raise QuestsError(f"index {text!r}: {part!r} is not an integer") from None
        values += [None] * (3 - len(values))
        result = slice(*values)
    if result.step is not None and result.step <= 0:
        raise QuestsError(f"index {_index_text(result)!r}: the step must be a positive integer")
    return result


def _index_text(index: int | slice) -> str:
    if isinstance(index, int):
        return str(index)
    parts = ["" if v is None else str(v) for v in (index.start, index.stop, index.step)]
    text = ":".join(parts).rstrip(":")
    return text if ":" in text else text + ":"


# ----------------------------------------------------------------------------
# Format detection and file checks
# ----------------------------------------------------------------------------


_INFLATED: dict[tuple[str, int, int], int] = {}


def _open_binary(path: str):
    """The file opened for reading bytes, decompressing ``.gz``/``.bz2``/``.xz``."""
    from ase.io.formats import get_compression

    _, compression = get_compression(path)
    if compression == "gz":
        import gzip

        return gzip.open(path, "rb")
    if compression == "bz2":
        import bz2

        return bz2.open(path, "rb")
    if compression == "xz":
        import lzma

        return lzma.open(path, "rb")
    return open(path, "rb")


def _inflated_size(path: str) -> int:
    """Size of the file's content in bytes (decompressed), refusing decompression bombs.

    A compressed file is decompressed once, streaming, and refused when it
    inflates past ``max(MIN_INFLATE_LIMIT, MAX_INFLATE_RATIO * size)``; the
    result is remembered per (path, size, mtime).
    """
    from ase.io.formats import get_compression

    st = os.stat(path)
    if get_compression(path)[1] is None:
        return st.st_size
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key in _INFLATED:
        return _INFLATED[key]
    limit = max(MIN_INFLATE_LIMIT, MAX_INFLATE_RATIO * st.st_size)
    total = 0
    try:
        with _open_binary(path) as fd:
            while True:
                block = fd.read(1 << 20)
                if not block:
                    break
                total += len(block)
                if total > limit:
                    raise QuestsError(
                        f"decompresses to more than {limit / 2**20:.0f} MiB from "
                        f"{st.st_size / 2**20:.2f} MiB (over {MAX_INFLATE_RATIO} times its size): "
                        "refused as a possible decompression bomb (decompress it yourself if "
                        "it is genuine)",
                        source=path,
                    )
    except QuestsError:
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise QuestsError(
            f"corrupt or not really compressed ({_one_line(exc)})", source=path
        ) from None
    if total == 0:
        raise QuestsError("empty file (after decompression)", source=path)
    _INFLATED[key] = total
    return total


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

    Raises
    ------
    QuestsError
        For missing, empty or directory paths and unknown or unreadable formats.
    """
    from ase.io.formats import UnknownFileTypeError, filetype, get_compression, ioformats

    p = _check_path(path)
    _inflated_size(str(p))
    md = md_format(p, format)
    if md is not None:  # read through MDAnalysis (quests_core.io_mdanalysis)
        return md
    if format is None:
        root, _ = get_compression(p.name)
        lower = root.lower()
        ext = lower.rsplit(".", 1)[-1] if "." in lower else ""
        if ext in EXTENSION_FORMATS:
            format = EXTENSION_FORMATS[ext]
        elif lower in EXTENSION_FORMATS:  # POSCAR, CONTCAR, XDATCAR
            format = EXTENSION_FORMATS[lower]
        elif lower.startswith(("poscar", "contcar", "xdatcar")):  # POSCAR_relaxed, XDATCAR-2
            format = "vasp-xdatcar" if lower.startswith("xdatcar") else "vasp"
        else:
            try:
                format = filetype(str(p), read=True)
            except UnknownFileTypeError:
                format = None
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                raise QuestsError(
                    f"cannot detect the format ({_one_line(exc)})", source=str(path)
                ) from None
        if format is None or format not in ioformats:
            raise QuestsError(
                "unknown file format (give one explicitly, e.g. format='extxyz')",
                source=str(path),
            )
    if format not in ioformats:
        raise QuestsError(f"unknown format {format!r}", source=str(path))
    if not ioformats[format].can_read:
        raise QuestsError(f"ASE cannot read the {format!r} format", source=str(path))
    return format


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


def _absurd_row(rows: np.ndarray) -> int | None:
    """Index of the first row with a coordinate beyond :data:`MAX_COORDINATE`, or None."""
    far = np.abs(rows).max(axis=1) > MAX_COORDINATE
    return int(np.flatnonzero(far)[0]) if far.any() else None


def _absurd_text(row: np.ndarray) -> str:
    """``"(<largest |value|> Å, limit <MAX_COORDINATE> Å)"`` of a row beyond the limit."""
    return f"({np.abs(row).max():.3g} Å, limit {MAX_COORDINATE:.0e} Å)"


def validate_atoms(atoms: Atoms, source: str = "<memory>", frame: int = 0) -> None:
    """Check that a structure can be used to compute descriptors.

    Parameters
    ----------
    atoms : ase.Atoms
    source : str
        File name used in the error message.
    frame : int
        Frame index used in the error message.

    Raises
    ------
    QuestsError
        If the structure has no atoms, non-finite positions or cell, or a cell
        that is degenerate along its periodic axes.
    """
    if not isinstance(atoms, Atoms):
        raise _frame_error(source, frame, f"expected ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    if n == 0:
        raise _frame_error(source, frame, "has zero atoms")
    numbers = np.asarray(atoms.numbers)
    bad_z = (numbers < 0) | (numbers >= len(chemical_symbols))
    if bad_z.any():
        i = int(np.flatnonzero(bad_z)[0])
        raise _frame_error(
            source, frame, f"atom {i} has atomic number {int(numbers[i])}, not a chemical element"
        )
    positions = atoms.positions
    finite = np.isfinite(positions).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise _frame_error(
            source,
            frame,
            f"non-finite (NaN/Inf) position for atom {bad} ({int((~finite).sum())} atoms affected)",
        )
    bad = _absurd_row(positions)
    if bad is not None:
        raise _frame_error(source, frame, f"atom {bad} has an absurd coordinate "
                           f"{_absurd_text(positions[bad])}")
    cell = np.asarray(atoms.cell[:], dtype=float)
    if not np.isfinite(cell).all():
        raise _frame_error(source, frame, "non-finite (NaN/Inf) cell")
    axis = _absurd_row(cell)
    if axis is not None:
        raise _frame_error(source, frame, f"cell vector {'abc'[axis]} has an absurd length "
                           f"{_absurd_text(cell[axis])}")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        lengths = np.linalg.norm(cell, axis=1)
        for a in np.flatnonzero(pbc):
            if lengths[a] <= 1e-8:
                raise _frame_error(
                    source,
                    frame,
                    f"periodic along {'xyz'[a]} but the cell vector has zero length "
                    f"(cell vector {'abc'[a]}; no cell?)",
                )
        # The descriptor engine's own test (quests_core.neighbors.prepare_cell), with the axis.
        from quests_core.neighbors import cell_heights, complete_cell

        full = complete_cell(cell)
        heights = cell_heights(full)
        periodic = np.flatnonzero(pbc)
        thin = periodic[int(np.argmin(heights[periodic]))]
        if abs(np.linalg.det(full)) < 1e-8 or heights[thin] < 1e-6:
            raise _frame_error(
                source,
                frame,
                f"periodic cell has zero volume: its height along periodic axis {'abc'[thin]} "
                f"is {heights[thin]:.3g} Å (flat, collinear or collapsed cell)",
            )


# ----------------------------------------------------------------------------
# LAMMPS text dumps
# ----------------------------------------------------------------------------


@dataclass
class _DumpChunk:
    frame: int
    text: str | None
    declared: int | None
    found: int
    has_element: bool
    last: bool = False  # the file ends inside or right after this frame


def _decode(data: bytes, path: str, frame: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _frame_error(
            path, frame, f"binary data where text was expected (line {line} of the frame)"
        ) from None


def _not_a_dump(line: bytes, path: str) -> QuestsError:
    """The error of a file whose first non-blank line is not ``ITEM: TIMESTEP``."""
    return QuestsError(
        f"not a LAMMPS text dump (no 'ITEM: TIMESTEP' header; line 1 is {_describe_line(line)})",
        source=path,
    )


def _dump_count(line: bytes, path: str, frame: int) -> int:
    """The atom count given by the line after ``ITEM: NUMBER OF ATOMS``, checked."""
    try:
        declared = int(line.split()[0])
    except (ValueError, IndexError):
        raise _frame_error(
            path, frame, f"bad 'NUMBER OF ATOMS' value {_describe_line(line)}"
        ) from None
    if declared < 0:
        raise _frame_error(path, frame, f"negative 'NUMBER OF ATOMS' ({declared})")
    return declared


def _dump_item(line: bytes, has_element: bool) -> tuple[bool, bool, bool]:
    """``(in_atoms, expect_count, has_element)`` after an ``ITEM:`` line of a dump.

    ``has_element`` (an ``element`` column) changes only at ``ITEM: ATOMS``.
    """
    in_atoms = line.startswith(b"ITEM: ATOMS")
    if in_atoms:
        has_element = b"element" in line.split()[2:]
    return in_atoms, line.startswith(b"ITEM: NUMBER OF ATOMS"), has_element


# A corrupt atom-count line (``999999999999``, or ``100000`` in a frame of 864 atoms)
# must not swallow the frames after it as one "cut last frame": the splitters refuse a
# frame as soon as one of its atom lines is the start of a next frame (an (ext)xyz count
# line, a dump's ``ITEM: TIMESTEP``), as the follower's framer does
# (quests_core.follow._Framer._check_atom_lines), and a count above MAX_FRAME_ATOMS.

#: Largest atom count a frame's header may declare (also the live follower's,
#: ``follow.MAX_FRAME_ATOMS``).
MAX_FRAME_ATOMS = 10**9
#: Lines scanned after a count above :data:`MAX_FRAME_ATOMS` for the next frame's start
#: (only for the message: the count is refused either way).
_ABSURD_SCAN_LINES = 1_000_000
#: Longest line looked at as a possible count line (longer ones are atom lines).
_COUNT_LINE_MAX = 32


def _is_count_line(line: bytes) -> bool:
    """A complete line holding a bare non-negative integer: an (ext)xyz count line.

    Never a valid atom line (symbol and three coordinates); a cut write ends inside a
    line, so a complete one is not an artefact of a file still being written.
    """
    return (len(line) <= _COUNT_LINE_MAX and line.endswith(b"\n")
            and line.strip().isdigit())


def _next_frame_error(path: str, frame: int, declared: int, found: int,
                      line: bytes) -> QuestsError:
    """Frame ``frame`` declares ``declared`` atoms but its atom line ``found + 1`` is
    ``line``, the count line of a next (ext)xyz frame."""
    shown = line.strip()[:40].decode("utf-8", "replace")
    return _frame_error(
        path, frame,
        f"header declares {declared} atoms, found {found} atom lines and then {shown!r}, "
        "the count line of a next frame (a corrupt count or a frame cut short)",
    )


def _next_dump_error(path: str, frame: int, declared: int, found: int) -> QuestsError:
    """Dump frame ``frame`` has fewer atom lines than declared before the next frame."""
    return _frame_error(
        path, frame,
        f"truncated or corrupt LAMMPS dump: header declares {declared} atoms, found {found} "
        "atom lines and then 'ITEM: TIMESTEP', the start of a next frame (a corrupt count "
        "or a frame cut short)",
    )


def _absurd_count_error(path: str, frame: int, declared: int, found: int,
                        at_end: bool) -> QuestsError:
    """A count above :data:`MAX_FRAME_ATOMS` with no next frame found after it."""
    where = (f"found {found} atom lines before the end of the file" if at_end
             else f"no next frame in the {found:,} lines after it")
    return _frame_error(
        path, frame,
        f"header declares {declared} atoms, more than the {MAX_FRAME_ATOMS:,} a frame may "
        f"hold ({where}): a corrupt atom count",
    )


def _iter_lammps_chunks(path: str, keep: _Selection | None) -> Iterator[_DumpChunk]:
    """Split a LAMMPS text dump into frames, keeping the text of wanted ones.

    ``keep`` selects the frames whose text is kept (``None``: every frame);
    the others are only counted. The number of atoms declared in each header
    is compared with the atom lines actually present, which detects truncated
    files. The file is read as bytes and each kept frame decoded on its own,
    so binary garbage is reported in the frame that holds it.
    """
    last_wanted = None if keep is None else keep.last()
    frame = -1
    lines: list[bytes] | None = None
    declared: int | None = None
    found = 0
    in_atoms = False
    expect_count = False
    has_element = False

    def finish(last: bool = False) -> _DumpChunk:
        text = _decode(b"".join(lines), path, frame) if lines is not None else None
        return _DumpChunk(frame, text, declared, found, has_element, last)

    with _open_binary(path) as fd:
        for line in fd:
            if line.startswith(b"ITEM: TIMESTEP"):
                if frame >= 0:
                    if declared is not None and found < declared:
                        # a corrupt count (or a frame cut short) followed by more frames:
                        # refused even when the frame is not read, so counts agree
                        raise _next_dump_error(path, frame, declared, found)
                    yield finish()
                    if last_wanted is not None and frame >= last_wanted:
                        return
                frame += 1
                lines = [line] if (keep is None or frame in keep) else None
                declared, found, in_atoms, expect_count, has_element = None, 0, False, False, False
                continue
            if frame < 0:
                if line.strip():
                    raise _not_a_dump(line, path)
                continue
            if lines is not None:
                lines.append(line)
            if expect_count:
                declared, expect_count = _dump_count(line, path, frame), False
            elif line.startswith(b"ITEM:"):
                in_atoms, expect_count, has_element = _dump_item(line, has_element)
            elif in_atoms and line.strip():
                found += 1
        if frame >= 0:
            if in_atoms and lines is not None and lines and not lines[-1].endswith(b"\n"):
                found -= 1  # the file ends inside an atom line (LAMMPS ends every line)
                lines.pop()
            elif in_atoms and lines is None and not line.endswith(b"\n") and line.strip():
                found -= 1
            if declared is not None and declared > MAX_FRAME_ATOMS:
                raise _absurd_count_error(path, frame, declared, found, True)
            yield finish(last=True)


def _read_lammps_frame(chunk: _DumpChunk, path: str, type_map: dict[int, str]) -> Atoms:
    from ase.io import read

    if chunk.declared is None:
        raise _frame_error(path, chunk.frame, "missing 'ITEM: NUMBER OF ATOMS' (corrupt dump)")
    if chunk.found != chunk.declared:
        ends = " and the file ends inside it" if chunk.last and chunk.found < chunk.declared else ""
        raise _frame_error(
            path,
            chunk.frame,
            f"truncated or corrupt LAMMPS dump: header declares {chunk.declared} atoms, "
            f"found {chunk.found}{ends}",
        )
    specorder = None
    if type_map and not chunk.has_element:
        specorder = [type_map.get(t, "X") for t in range(1, max(type_map) + 1)]
    try:
        atoms = read(
            _stdio.StringIO(chunk.text or ""),
            format=_LAMMPS_DUMP,
            index=0,
            **({"specorder": specorder} if specorder else {}),
        )
    except IndexError:
        missing = _dump_types(chunk.text or "") - set(type_map)
        if type_map and missing:
            raise _frame_error(
                path,
                chunk.frame,
                f"LAMMPS type(s) {sorted(missing)} missing from the type map {type_map}",
            ) from None
        raise _frame_error(path, chunk.frame, "corrupt LAMMPS dump frame") from None
    except QuestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise _wrap(path, chunk.frame, exc, _LAMMPS_DUMP) from None
    if type_map and not chunk.has_element and "X" in atoms.get_chemical_symbols():
        types = sorted(set(np.asarray(atoms.arrays.get("type", [])).tolist()) - set(type_map))
        raise _frame_error(
            path, chunk.frame, f"LAMMPS type(s) {types} missing from the type map {type_map}"
        )
    return atoms


def _dump_types(text: str) -> set[int]:
    """The LAMMPS types used in the atom lines of one dump frame (error path only)."""
    types: set[int] = set()
    column = None
    for line in text.splitlines():
        if line.startswith("ITEM:"):
            names = line.split()[2:]
            column = (
                names.index("type") if line.startswith("ITEM: ATOMS") and "type" in names else None
            )
        elif column is not None and line.strip():
            try:
                types.add(int(line.split()[column]))
            except (ValueError, IndexError):
                continue
    return types


def _count_lammps_frames(path: str) -> int:
    """Frames of a dump, not counting a truncated last frame (see TruncatedFrameWarning)."""
    n = 0
    for chunk in _iter_lammps_chunks(path, _NOTHING):
        n += 1
        if chunk.last and chunk.frame > 0 and _short(chunk):
            n -= 1
    return n


def _short(chunk: _DumpChunk) -> bool:
    return chunk.declared is not None and chunk.found < chunk.declared


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
    if fmt not in (_LAMMPS_DUMP, _LAMMPS_DATA):
        return ""
    try:
        if parse_type_map(type_map):
            return ""
    except QuestsError:
        return ""  # reading with this map reports the bad map
    from ase.io.formats import open_with_compression

    named = False
    n_types = 0
    try:
        with open_with_compression(str(path), "r") as fd:
            if fmt == _LAMMPS_DUMP:
                for line in fd:
                    if line.startswith("ITEM: ATOMS"):
                        columns = line.split()[2:]
                        named = "element" in columns or "mass" in columns
                        if not named and "type" in columns:
                            n_types = _first_frame_types(fd, columns.index("type"))
                        break
            else:
                for i, line in enumerate(fd):
                    words = line.split("#", 1)[0].split()
                    if len(words) == 3 and words[1:] == ["atom", "types"]:
                        n_types = int(words[0]) if words[0].isdigit() else 0
                    if words[:1] == ["Masses"]:
                        named = True
                        break
                    if words[:1] == ["Atoms"] or i > 10_000:
                        break
    except (OSError, UnicodeDecodeError):
        return ""
    if named:
        return ""
    label = name or Path(path).name
    guessed = ", ".join(
        f"{t} as {chemical_symbols[t]}" for t in range(1, min(max(n_types, 2), 4) + 1)
    )
    example = "1:O,2:H" if n_types != 1 else "1:Cu"
    return (
        f"{label}: LAMMPS atom types carry no element names and were read as H, He, ... "
        f"(type {guessed}); give a type map such as '{example}' (type:element) or "
        "'O H' (elements in type order)"
    )


def _first_frame_types(fd, column: int) -> int:
    """The largest LAMMPS type among the atom lines that follow (first frame only)."""
    top = 0
    for line in fd:
        if line.startswith("ITEM:"):
            break
        words = line.split()
        if len(words) > column:
            try:
                top = max(top, int(words[column]))
            except ValueError:
                continue
    return top


# ----------------------------------------------------------------------------
# xyz / extxyz
# ----------------------------------------------------------------------------


@dataclass
class _XyzChunk:
    frame: int
    text: str | None
    declared: int
    found: int
    last: bool  # the file ends inside this frame
    cut: bool = False  # the frame ends the file without a final newline


def _xyz_count(line: bytes, path: str, frame: int) -> int:
    """The atom count of a frame's first (non-blank) line, checked."""
    try:
        declared = int(line.split()[0])
    except ValueError:
        what = _describe_line(line)
        hint = (
            f" (frame {frame - 1} has more atom lines than its count?)"
            if frame and what != "binary data"
            else ""
        )
        raise _frame_error(
            path, frame, f"expected the number of atoms, found {what}{hint}"
        ) from None
    if declared < 0:
        raise _frame_error(path, frame, f"negative number of atoms ({declared})")
    return declared


def _iter_xyz_chunks(path: str, keep: _Selection | None) -> Iterator[_XyzChunk]:
    """Split an (ext)xyz file into frames by their atom-count lines.

    Detects counts that are not numbers or negative, and files that end inside
    a frame. Every atom line is checked for the start of a next frame (a bare
    integer, its count line): a frame that holds one is an error naming it (a
    corrupt count or a frame cut short), never a cut last frame that swallows
    the frames after it. A count above :data:`MAX_FRAME_ATOMS` is an error
    (the next :data:`_ABSURD_SCAN_LINES` lines are scanned, for the message); a
    count larger than what the rest of the file can hold is not kept in memory:
    its lines are only scanned (a 20-byte file declaring 10^9 atoms fails at
    once), and it is a cut last frame only when nothing after it starts another
    frame. Kept frames are decoded on their own, so binary garbage is reported
    in its frame. Memory: one frame's lines.
    """
    last_wanted = None if keep is None else keep.last()
    size = _inflated_size(path)
    consumed = 0
    frame = 0
    with _open_binary(path) as fd:
        while True:
            line = fd.readline()
            if not line:
                return
            consumed += len(line)
            if not line.strip():
                continue
            declared = _xyz_count(line, path, frame)
            wanted = keep is None or frame in keep
            remaining = size - consumed
            absurd = declared > MAX_FRAME_ATOMS
            # more atoms than the rest of the file can hold: never complete, so its
            # lines are only scanned for the start of a next frame, not kept
            hopeless = absurd or declared * _MIN_ATOM_LINE > remaining + 1
            lines: list[bytes] | None = [line] if wanted and not hopeless else None
            limit = min(declared, _ABSURD_SCAN_LINES) if absurd else declared
            found = -1  # the comment line comes first
            last = False
            nxt = line
            for _ in range(limit + 1):
                nxt = fd.readline()
                if not nxt:
                    last = True
                    break
                consumed += len(nxt)
                found += 1
                if lines is not None:
                    lines.append(nxt)
                if len(nxt) <= _COUNT_LINE_MAX and nxt.strip().isdigit() and found and (
                    _is_count_line(nxt)
                ):
                    raise _next_frame_error(path, frame, declared, found - 1, nxt)
            if absurd:
                raise _absurd_count_error(path, frame, declared, max(found, 0), last)
            if hopeless and not last:
                raise _frame_error(
                    path, frame,
                    f"header declares {declared} atoms, more than the {remaining} bytes "
                    f"after it can hold (at least {_MIN_ATOM_LINE} per atom line): a "
                    "corrupt frame",
                )
            # a frame that ends the file without a newline may have its last line cut
            cut = not last and not nxt.endswith(b"\n")
            text = None
            if lines is not None and not last:
                text = _decode(b"".join(lines), path, frame)
            yield _XyzChunk(frame, text, declared, max(found, 0), last, cut)
            if last:
                return
            if last_wanted is not None and frame >= last_wanted:
                return
            frame += 1


def _count_xyz_frames(path: str) -> int:
    """Frames of an (ext)xyz file, not counting a truncated last frame."""
    n = 0
    for chunk in _iter_xyz_chunks(path, _NOTHING):
        if chunk.last:
            if chunk.frame == 0:
                return 1  # reported when it is parsed
            return n
        if chunk.cut and chunk.frame > 0:
            return n  # skipped when read, see _iter_selected
        n += 1
    return n


def _read_xyz_frame(chunk: _XyzChunk, path: str, fmt: str) -> Atoms:
    from ase.io import read

    try:
        atoms = read(_stdio.StringIO(chunk.text or ""), format=fmt, index=0)
    except QuestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise _wrap(path, chunk.frame, exc, fmt) from None
    if len(atoms) != chunk.declared:
        raise _frame_error(
            path, chunk.frame, f"header declares {chunk.declared} atoms, read {len(atoms)}"
        )
    return atoms


# ----------------------------------------------------------------------------
# One frame's text (the follower of a file being written)
# ----------------------------------------------------------------------------

#: Formats whose single frames :func:`parse_frame_text` reads.
FRAME_TEXT_FORMATS = ("extxyz", "xyz", _LAMMPS_DUMP)


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
    if fmt == _LAMMPS_DUMP:
        return _read_lammps_frame(_dump_text_chunk(data, source, frame), source,
                                  parse_type_map(type_map))
    return _read_xyz_frame(_xyz_text_chunk(data, source, frame), source, fmt)


def _xyz_text_chunk(data: bytes, path: str, frame: int) -> _XyzChunk:
    """The chunk of one (ext)xyz frame's bytes, its count line checked as the splitter does."""
    lines = data.splitlines(keepends=True)
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first == len(lines):
        raise _frame_error(path, frame, "no atom-count line (empty frame)")
    declared = _xyz_count(lines[first], path, frame)
    for k, atom_line in enumerate(lines[first + 2 : first + 2 + declared]):
        if _is_count_line(atom_line):
            raise _next_frame_error(path, frame, declared, k, atom_line)
    found = max(len(lines) - first - 2, 0)
    text = _decode(b"".join(lines[first:]), path, frame)
    return _XyzChunk(frame, text, declared, found, False)


def _dump_text_chunk(data: bytes, path: str, frame: int) -> _DumpChunk:
    """The chunk of one LAMMPS dump frame's bytes, its header checked as the splitter does."""
    declared: int | None = None
    found = 0
    started = in_atoms = expect_count = has_element = False
    for line in data.splitlines(keepends=True):
        if not started:
            if not line.strip():
                continue
            if not line.startswith(b"ITEM: TIMESTEP"):
                raise _not_a_dump(line, path)
            started = True
            continue
        if expect_count:
            declared, expect_count = _dump_count(line, path, frame), False
        elif line.startswith(b"ITEM:"):
            in_atoms, expect_count, has_element = _dump_item(line, has_element)
        elif in_atoms and line.strip():
            found += 1
    if not started:
        raise _frame_error(path, frame, "no 'ITEM: TIMESTEP' header (empty frame)")
    return _DumpChunk(frame, _decode(data, path, frame), declared, found, has_element)


# ----------------------------------------------------------------------------
# Frame counting (only needed for negative indices)
# ----------------------------------------------------------------------------


def count_frames(path: str | os.PathLike, format: str | None = None) -> int:
    """Number of frames in a file, without keeping them in memory.

    Fast paths for extxyz/xyz, LAMMPS text dumps and ``.traj``; other formats
    are parsed frame by frame.
    """
    fmt = detect_format(path, format)
    spath = str(path)
    from ase.io.formats import ioformats

    if fmt in MD_FORMATS:
        return count_md_frames(spath, fmt)
    try:
        if ioformats[fmt].single:
            return 1
        if fmt in ("extxyz", "xyz"):
            return _count_xyz_frames(spath)
        if fmt == _LAMMPS_DUMP:
            return _count_lammps_frames(spath)
        if fmt == "proteindatabank":
            models = _pdb_complete_models(spath)
            if models is not None:
                return max(models[0], 1)  # a cut last MODEL is skipped (or, alone, an error)
        if fmt == "traj":
            from ase.io.trajectory import Trajectory

            with Trajectory(spath, "r") as traj:
                return len(traj)
        from ase.io import iread

        return sum(1 for _ in iread(spath, index=":", format=fmt, do_not_split_by_at_sign=True))
    except QuestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise _wrap(spath, None, exc, fmt) from None


# ----------------------------------------------------------------------------
# Streaming iteration
# ----------------------------------------------------------------------------


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
    if tmap and type_map_names(tmap) and fmt not in MD_FORMATS:
        if fmt in (_LAMMPS_DUMP, _LAMMPS_DATA):
            raise QuestsError(
                f"the type map {type_map!r} names atoms; LAMMPS files take numeric types "
                "(1=Cu,2=Ni): atom names apply to the topology of an XTC/TRR/DCD/NetCDF "
                "trajectory",
                source=spath,
            )
        tmap = {}  # ignored, as a LAMMPS type map is, by the formats that name their atoms
    start, stop, step, total = _resolve(selection, spath, fmt)
    if stop is not None and stop <= start:
        raise QuestsError(f"index {_index_text(selection)!r} selects no frames", source=spath)

    frames = _iter_selected(spath, fmt, start, stop, step, tmap, selection, skipped, topology,
                            topology_format)
    n_yielded = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except QuestsError:
            raise
        except RecursionError as exc:
            raise _wrap(spath, None, exc, fmt) from None
        if validate:
            validate_atoms(frame.atoms, spath, frame.frame)
        _remember(frame.atoms, spath, frame.frame)
        n_yielded += 1
        yield frame
    if n_yielded == 0:
        if isinstance(selection, int):
            raise QuestsError(f"frame {selection} does not exist", source=spath)
        if selection == slice(None):
            raise QuestsError("no structures found (empty or unreadable file)", source=spath)
        raise QuestsError(
            f"index {_index_text(selection)!r} selects no frames"
            + (f" (file has {total} frames)" if total is not None else ""),
            source=spath,
        )


def _iter_selected(
    path: str,
    fmt: str,
    start: int,
    stop: int | None,
    step: int,
    type_map: dict[int, str],
    selection: int | slice,
    skipped: list | None = None,
    topology: str | os.PathLike | None = None,
    topology_format: str | None = None,
) -> Iterator[Frame]:
    from ase.io import iread
    from ase.io.formats import ioformats

    if fmt in MD_FORMATS:
        yield from iter_md_frames(
            path, fmt, start, stop, step, topology=topology, type_map=type_map, skipped=skipped,
            topology_format=topology_format,
        )
        return

    whole = stop is None and start == 0 and step == 1
    if fmt == _LAMMPS_DUMP:
        wanted = None if whole else _Selection(start, stop, step)
        for chunk in _iter_lammps_chunks(path, wanted):
            if chunk.last and chunk.frame > 0 and _short(chunk):
                _skip_last(
                    path,
                    chunk.frame,
                    f"the file ends inside it (header declares {chunk.declared} atoms, "
                    f"found {chunk.found})",
                    skipped,
                )
                return
            if chunk.text is None:
                continue
            yield Frame(path, chunk.frame, _read_lammps_frame(chunk, path, type_map))
        return

    if fmt in ("extxyz", "xyz"):
        wanted = None if whole else _Selection(start, stop, step)
        for chunk in _iter_xyz_chunks(path, wanted):
            if chunk.last:
                reason = (
                    f"the file ends inside it (header declares {chunk.declared} atoms, "
                    f"found {chunk.found})"
                )
                if chunk.frame > 0:
                    _skip_last(path, chunk.frame, reason, skipped)
                    return
                raise _frame_error(path, chunk.frame, f"truncated file: {reason}")
            if chunk.cut and chunk.frame > 0:
                # every writer ends its lines: the last line of this last frame may be cut
                # mid-number (still parsable, silently wrong), so it is not trusted
                _skip_last(path, chunk.frame, "the file ends inside its last line", skipped)
                return
            if chunk.text is None:
                continue
            yield Frame(path, chunk.frame, _read_xyz_frame(chunk, path, fmt))
        return

    _precheck(path, fmt)
    if ioformats[fmt].single:
        if start != 0:
            return
        kwargs: dict[str, Any] = {}
        if fmt == _LAMMPS_DATA and type_map:
            kwargs["Z_of_type"] = {t: atomic_numbers[s] for t, s in type_map.items()}
        try:
            with _strict_warnings(path, 0, fmt):
                atoms = next(iter(iread(path, index=0, format=fmt, do_not_split_by_at_sign=True,
                                        **kwargs)))
        except StopIteration:
            return
        except QuestsError:
            raise
        except KeyError as exc:
            if fmt == _LAMMPS_DATA and type_map:
                raise _frame_error(
                    path, 0, f"LAMMPS type(s) [{exc.args[0]}] missing from the type map {type_map}"
                ) from None
            raise _wrap(path, 0, exc, fmt) from None
        except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
            raise _wrap(path, 0, exc, fmt) from None
        yield Frame(path, 0, atoms)
        return

    frame = start
    complete = _pdb_complete_models(path) if fmt == "proteindatabank" else None
    iterator = iread(path, index=slice(start, stop, step), format=fmt, do_not_split_by_at_sign=True)
    while True:
        if complete is not None and frame >= complete[0]:
            if complete[1] and frame == complete[0] and (stop is None or frame < stop):
                if frame == 0:
                    raise _frame_error(path, 0, "truncated file: MODEL 1 has no ENDMDL")
                _skip_last(path, frame, "the file ends inside it (no ENDMDL)", skipped)
            return
        try:
            with _strict_warnings(path, frame, fmt):
                atoms = next(iterator)
        except StopIteration:
            return
        except QuestsError:
            raise
        except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
            raise _wrap(path, frame, exc, fmt) from None
        if fmt == "cif":
            _check_cif_cell(path, frame, atoms)
        yield Frame(path, frame, atoms)
        frame += step


class _strict_warnings:
    """Reader warnings that mean lost data (a CIF row with the wrong number of values)
    become errors naming the frame; the other warnings pass. Only CIF files are
    watched (``warnings.catch_warnings`` is process-wide state)."""

    def __init__(self, path: str, frame: int, fmt: str):
        self.path, self.frame, self.fmt = path, frame, fmt
        self._cm = warnings.catch_warnings(record=True) if fmt == "cif" else None

    def __enter__(self):
        if self._cm is not None:
            self._log = self._cm.__enter__()
            warnings.simplefilter("always")
        return self

    def __exit__(self, *exc_info):
        if self._cm is None:
            return False
        self._cm.__exit__(*exc_info)
        if exc_info[0] is not None:
            return False
        for item in self._log:
            text = _one_line(item.message)
            if "tokens" in text or "Wrong number" in text:
                raise _frame_error(self.path, self.frame, f"corrupt {self.fmt} data ({text})")
        for item in self._log:
            warnings.warn_explicit(
                item.message, item.category, item.filename, item.lineno
            )
        return False


def _precheck(path: str, fmt: str) -> None:
    """Atom counts of fixed-layout formats against their lines (ASE does not check them)."""
    if fmt == "gromacs":
        _check_gro(path)
    elif fmt == "vasp":
        _check_poscar(path)


def _lines(path: str, limit: int):
    """Up to ``limit`` lines of the file as bytes (a generator)."""
    with _open_binary(path) as fd:
        for i, line in enumerate(fd):
            if i >= limit:
                return
            yield line


def _check_gro(path: str) -> None:
    size = _inflated_size(path)
    with _open_binary(path) as fd:
        fd.readline()
        count_line = fd.readline()
        try:
            declared = int(count_line.split()[0])
        except (ValueError, IndexError):
            raise _frame_error(
                path, 0, f"line 2 should be the number of atoms, found {_describe_line(count_line)}"
            ) from None
        if declared < 0:
            raise _frame_error(path, 0, f"negative number of atoms ({declared})")
        if declared * _MIN_ATOM_LINE > size:
            raise _frame_error(
                path, 0, f"truncated file: header declares {declared} atoms, the file has "
                f"{size} bytes"
            )
        found = 0
        for _ in range(declared):
            line = fd.readline()
            if not line:
                break
            found += 1
        box = fd.readline()
        more = any(line.strip() for line in (fd.readline(), fd.readline()))
    if more and found == declared and box:
        raise _frame_error(
            path,
            1,
            "more lines after the box line of frame 0: multi-frame .gro files are not read "
            "(split the file or convert it to extxyz)",
        )
    if found < declared or not box:
        raise _frame_error(
            path,
            0,
            f"truncated file: header declares {declared} atoms, found {found}"
            + (" and no box line" if found == declared else ""),
        )
    try:
        values = [float(v) for v in box.split()]
    except ValueError:
        values = []
    if len(values) not in (3, 9):
        raise _frame_error(
            path,
            0,
            f"the line after the {declared} atoms is not a box line ({_describe_line(box)}): "
            "more atom lines than the header declares, or a corrupt file",
        )


def _check_poscar(path: str) -> None:
    lines = [line.decode("utf-8", "replace") for line in _lines(path, 9)]
    if len(lines) < 7:
        return  # ASE reports it
    counts_at = 5
    words = lines[5].split()
    if not all(w.isdigit() for w in words):
        counts_at = 6
        words = lines[6].split()
    if not words or not all(w.lstrip("-").isdigit() for w in words):
        return  # ASE reports it
    counts = [int(w) for w in words]
    if min(counts) < 0:
        raise _frame_error(path, 0, f"negative atom count in {lines[counts_at].strip()!r}")
    if counts_at == 6:
        _check_poscar_species(path, lines[5].split(), lines[6].split())
    n = sum(counts)
    header = counts_at + 2
    if len(lines) > counts_at + 1 and lines[counts_at + 1].strip()[:1] in ("s", "S"):
        header += 1  # Selective dynamics
    size = _inflated_size(path)
    if n * _MIN_ATOM_LINE > size:
        raise _frame_error(
            path, 0, f"truncated file: the counts declare {n} atoms, the file has {size} bytes"
        )
    found = 0
    after = b""
    for i, line in enumerate(_lines(path, header + n + 1)):
        if i < header:
            continue
        if i < header + n:
            if line.strip():
                found += 1
        else:
            after = line
    if found < n:
        raise _frame_error(path, 0, f"truncated file: the counts declare {n} atoms, found {found}")
    try:
        extra = len(after.split()) >= 3 and all(
            np.isfinite(float(w)) for w in after.split()[:3]
        )
    except ValueError:
        extra = False
    if extra:
        raise _frame_error(
            path,
            0,
            f"more position lines than the {n} atoms the counts declare "
            "(velocities must follow a blank line)",
        )


def _check_poscar_species(path: str, species: list[str], counts: list[str]) -> None:
    """The species line (VASP 5) names as many elements as the counts line has counts
    (ASE reads ``Cu Au`` over one count as all Cu)."""
    if len(species) != len(counts):
        raise _frame_error(
            path, 0,
            f"the species line names {len(species)} element(s) ({' '.join(species)!r}), the "
            f"counts line has {len(counts)} count(s) ({' '.join(counts)!r})",
        )


def _check_cif_cell(path: str, frame: int, atoms: Atoms) -> None:
    """A CIF block with fractional coordinates has a unit cell with volume (ASE reads a
    missing or zero cell as a cell of zeros and puts every atom at the origin)."""
    cell = atoms.cell
    lengths = cell.lengths()
    if cell.rank == 3 and abs(cell.volume) > 1e-6 * float(np.prod(lengths)):
        return
    fractional, has_cell = _cif_tags(path)
    if not fractional:
        return  # Cartesian coordinates without a cell: a molecule
    if not has_cell:
        raise _frame_error(
            path, frame,
            "no unit cell: fractional coordinates (_atom_site_fract_x/y/z) need "
            "_cell_length_a, _cell_length_b and _cell_length_c",
        )
    par = ", ".join(f"{v:.6g}" for v in cell.cellpar())
    raise _frame_error(
        path, frame,
        f"the unit cell (a, b, c, alpha, beta, gamma) = ({par}) has no volume: fractional "
        "coordinates need a usable cell",
    )


def _cif_tags(path: str) -> tuple[bool, bool]:
    """(the CIF has fractional coordinates, the CIF has cell lengths), from its text."""
    fractional = has_cell = False
    with _open_binary(path) as fd:
        for line in fd:
            word = line.strip().lower()
            fractional = fractional or word.startswith(b"_atom_site_fract_")
            has_cell = has_cell or word.startswith(b"_cell_length_")
            if fractional and has_cell:
                break
    return fractional, has_cell


def _pdb_complete_models(path: str) -> tuple[int, bool] | None:
    """(complete MODEL blocks, whether one more MODEL has no ENDMDL); None without MODEL."""
    complete = 0
    open_model = False
    seen = False
    with _open_binary(path) as fd:
        for line in fd:
            if line.startswith(b"MODEL"):
                seen = True
                open_model = True
            elif line.startswith(b"ENDMDL"):
                if open_model:
                    complete += 1
                open_model = False
    if not seen:
        return None
    return complete, open_model


class _Selection:
    """Membership test and maximum for ``range(start, stop, step)`` with open stop."""

    def __init__(self, start: int, stop: int | None, step: int):
        self.start, self.stop, self.step = start, stop, step

    def __contains__(self, frame: int) -> bool:
        if frame < self.start or (self.stop is not None and frame >= self.stop):
            return False
        return (frame - self.start) % self.step == 0

    def last(self) -> int | None:
        """The last selected frame, or None for an open selection."""
        if self.stop is None:
            return None
        frames = range(self.start, self.stop, self.step)
        return frames[-1] if len(frames) else -1


class _Nothing(_Selection):
    """Selects no frame but lets the whole file be scanned."""

    def __init__(self):
        super().__init__(0, None, 1)

    def __contains__(self, frame: int) -> bool:
        return False

    def last(self) -> int | None:
        return None


_NOTHING = _Nothing()


def iter_structures(
    path: str | os.PathLike,
    index: int | slice | str | None = ":",
    format: str | None = None,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    validate: bool = True,
    topology: str | os.PathLike | None = None,
    topology_format: str | None = None,
) -> Iterator[Atoms]:
    """Stream the selected structures of a file (see :func:`iter_frames`).

    Use :func:`iter_frames` to also get the index of each frame in its file.
    """
    for item in iter_frames(
        path, index=index, format=format, type_map=type_map, validate=validate, topology=topology,
        topology_format=topology_format,
    ):
        yield item.atoms


def read_structures(
    path: str | os.PathLike,
    index: int | slice | str | None = ":",
    format: str | None = None,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    validate: bool = True,
    topology: str | os.PathLike | None = None,
    topology_format: str | None = None,
) -> list[Atoms]:
    """Read the selected structures of a file into a list (see :func:`iter_frames`)."""
    return list(
        iter_structures(
            path, index=index, format=format, type_map=type_map, validate=validate,
            topology=topology, topology_format=topology_format,
        )
    )


def element_symbols(numbers: Iterable[int]) -> list[str]:
    """Element symbols for atomic numbers, sorted by atomic number."""
    return [chemical_symbols[z] for z in sorted(set(int(z) for z in numbers))]
