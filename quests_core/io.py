"""Streaming readers for atomistic structure files.

Everything :mod:`ase.io` reads is accepted (extxyz, xyz, LAMMPS text dumps,
ASE ``.traj``, POSCAR/CONTCAR/XDATCAR, CIF, ...). Frames are read one at a
time, so a multi-gigabyte trajectory is never held in memory whole, and every
frame is validated before it is handed on. Every problem caused by the input
becomes a :class:`~quests_core.errors.QuestsError` whose one-line message
names the file, the frame and the problem.

LAMMPS text dumps are split into frames here and each frame is parsed by ASE:
ASE on its own silently accepts a truncated dump (a frame with fewer atoms
than its header declares), which this module reports as an error.
"""

from __future__ import annotations

import io as _stdio
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from quests_core.errors import QuestsError

__all__ = [
    "Frame",
    "count_frames",
    "detect_format",
    "iter_frames",
    "iter_structures",
    "lammps_type_warning",
    "parse_index",
    "parse_type_map",
    "read_structures",
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


@dataclass(frozen=True)
class Frame:
    """One validated structure and where it came from.

    Attributes
    ----------
    source : str
        The path of the file, as given.
    frame : int
        Index of the frame in its file (0-based, counted over the whole file).
    atoms : ase.Atoms
        The structure.
    """

    source: str
    frame: int
    atoms: Atoms


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


def parse_type_map(type_map: Mapping[int, str] | Sequence[str] | str | None) -> dict[int, str]:
    """Normalise a LAMMPS type-to-element map.

    Parameters
    ----------
    type_map : mapping, sequence, str or None
        ``{1: "Cu", 2: "Ni"}``, ``["Cu", "Ni"]`` (type 1 is the first entry),
        ``"Cu,Ni"``, ``"Cu Ni"`` or ``"1=Cu,2=Ni"`` / ``"1:Cu 2:Ni"``.

    Returns
    -------
    dict[int, str]
        LAMMPS type -> element symbol; empty if ``type_map`` is None.

    Raises
    ------
    QuestsError
        On unknown element symbols or malformed entries.
    """
    if type_map is None:
        return {}
    pairs: list[tuple[Any, Any]]
    if isinstance(type_map, Mapping):
        pairs = list(type_map.items())
    elif isinstance(type_map, str):
        tokens = [t for t in re.split(r"[,\s]+", type_map.strip()) if t]
        if not tokens:
            raise QuestsError("type map: empty")
        if all(("=" in t or ":" in t) for t in tokens):
            pairs = [tuple(re.split(r"[=:]", t, maxsplit=1)) for t in tokens]
        elif any(("=" in t or ":" in t) for t in tokens):
            raise QuestsError(f"type map {type_map!r}: mix of 'type=element' and plain entries")
        else:
            pairs = [(i + 1, t) for i, t in enumerate(tokens)]
    else:
        pairs = [(i + 1, t) for i, t in enumerate(type_map)]
    result: dict[int, str] = {}
    for key, symbol in pairs:
        try:
            lammps_type = int(key)
        except (TypeError, ValueError):
            raise QuestsError(f"type map: {key!r} is not an integer LAMMPS type") from None
        symbol = str(symbol).strip()
        if symbol not in atomic_numbers or symbol == "X":
            raise QuestsError(f"type map: {symbol!r} is not a chemical element")
        if lammps_type < 1:
            raise QuestsError(f"type map: LAMMPS types start at 1, got {lammps_type}")
        result[lammps_type] = symbol
    return result


# ----------------------------------------------------------------------------
# Format detection and file checks
# ----------------------------------------------------------------------------


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise QuestsError("file not found", source=str(path))
    if p.is_dir():
        raise QuestsError("is a directory, expected a structure file", source=str(path))
    if not p.is_file():
        raise QuestsError("not a regular file", source=str(path))
    if not os.access(p, os.R_OK):
        raise QuestsError("permission denied", source=str(path))
    if p.stat().st_size == 0:
        raise QuestsError("empty file", source=str(path))
    return p


def detect_format(path: str | os.PathLike, format: str | None = None) -> str:
    """Return the ASE format name used to read ``path``.

    Parameters
    ----------
    path : path-like
        The file (must exist, be a regular file and not be empty).
    format : str, optional
        An explicit ASE format name (``"extxyz"``, ``"lammps-dump-text"``,
        ...). Checked against the formats ASE can read.

    Raises
    ------
    QuestsError
        For missing, empty or directory paths and unknown or unreadable formats.
    """
    from ase.io.formats import UnknownFileTypeError, filetype, get_compression, ioformats

    p = _check_path(path)
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not text:
        text = type(exc).__name__
    return text[:300]


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


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
    positions = atoms.positions
    finite = np.isfinite(positions).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise _frame_error(
            source,
            frame,
            f"non-finite (NaN/Inf) position for atom {bad} ({int((~finite).sum())} atoms affected)",
        )
    cell = np.asarray(atoms.cell[:], dtype=float)
    if not np.isfinite(cell).all():
        raise _frame_error(source, frame, "non-finite (NaN/Inf) cell")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        periodic = cell[pbc]
        lengths = np.linalg.norm(periodic, axis=1)
        if (lengths <= 1e-8).any():
            axis = "xyz"[int(np.flatnonzero(pbc)[int(np.argmax(lengths <= 1e-8))])]
            raise _frame_error(
                source, frame, f"periodic along {axis} but the cell vector has zero length"
            )
        # Rank of the periodic cell vectors: a zero area/volume cell is degenerate.
        singular = np.linalg.svd(periodic / lengths[:, None], compute_uv=False)
        if singular.min() <= 1e-8:
            raise _frame_error(source, frame, "periodic cell has zero volume (degenerate cell)")


def _frame_error(source: str, frame: int, message: str) -> QuestsError:
    err = QuestsError(f"frame {frame}: {message}", source=str(source))
    err.index = frame
    return err


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


def _iter_lammps_chunks(path: str, keep: _Selection | None) -> Iterator[_DumpChunk]:
    """Split a LAMMPS text dump into frames, keeping the text of wanted ones.

    ``keep`` selects the frames whose text is kept (``None``: every frame);
    the others are only counted. The number of atoms declared in each header
    is compared with the atom lines actually present, which detects truncated
    files.
    """
    from ase.io.formats import open_with_compression

    last_wanted = None if keep is None else keep.last()
    frame = -1
    lines: list[str] | None = None
    declared: int | None = None
    found = 0
    in_atoms = False
    expect_count = False
    has_element = False

    def finish() -> _DumpChunk:
        return _DumpChunk(
            frame, "".join(lines) if lines is not None else None, declared, found, has_element
        )

    with open_with_compression(path, "r") as fd:
        for line in fd:
            if line.startswith("ITEM: TIMESTEP"):
                if frame >= 0:
                    yield finish()
                    if last_wanted is not None and frame >= last_wanted:
                        return
                frame += 1
                lines = [line] if (keep is None or frame in keep) else None
                declared, found, in_atoms, expect_count, has_element = None, 0, False, False, False
                continue
            if frame < 0:
                if line.strip():
                    raise QuestsError(
                        "not a LAMMPS text dump (no 'ITEM: TIMESTEP' header)", source=path
                    )
                continue
            if lines is not None:
                lines.append(line)
            if expect_count:
                try:
                    declared = int(line.split()[0])
                except (ValueError, IndexError):
                    raise _frame_error(path, frame, "bad 'NUMBER OF ATOMS' value") from None
                expect_count = False
            elif line.startswith("ITEM:"):
                in_atoms = line.startswith("ITEM: ATOMS")
                if in_atoms:
                    has_element = "element" in line.split()[2:]
                expect_count = line.startswith("ITEM: NUMBER OF ATOMS")
            elif in_atoms and line.strip():
                found += 1
        if frame >= 0:
            yield finish()


def _read_lammps_frame(chunk: _DumpChunk, path: str, type_map: dict[int, str]) -> Atoms:
    from ase.io import read

    if chunk.declared is None:
        raise _frame_error(path, chunk.frame, "missing 'ITEM: NUMBER OF ATOMS' (corrupt dump)")
    if chunk.found != chunk.declared:
        raise _frame_error(
            path,
            chunk.frame,
            f"truncated or corrupt LAMMPS dump: header declares {chunk.declared} atoms, "
            f"found {chunk.found}",
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
    except _PARSE_ERRORS as exc:
        raise _frame_error(path, chunk.frame, f"cannot parse ({_one_line(exc)})") from None
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
    from ase.io.formats import open_with_compression

    n = 0
    with open_with_compression(path, "r") as fd:
        for line in fd:
            if line.startswith("ITEM: TIMESTEP"):
                n += 1
    return n


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
# Frame counting (only needed for negative indices)
# ----------------------------------------------------------------------------


def _count_xyz_frames(path: str) -> int:
    from ase.io.formats import open_with_compression

    n = 0
    with open_with_compression(path, "r") as fd:
        while True:
            line = fd.readline()
            if not line:
                return n
            if not line.strip():
                continue
            try:
                natoms = int(line.split()[0])
            except ValueError:
                raise QuestsError(
                    f"frame {n}: expected an atom count, found {line.strip()[:40]!r}",
                    source=path,
                ) from None
            for _ in range(natoms + 1):
                if not fd.readline():
                    return n + 1  # truncated frame: reported when it is parsed
            n += 1


def count_frames(path: str | os.PathLike, format: str | None = None) -> int:
    """Number of frames in a file, without keeping them in memory.

    Fast paths for extxyz/xyz, LAMMPS text dumps and ``.traj``; other formats
    are parsed frame by frame.
    """
    fmt = detect_format(path, format)
    spath = str(path)
    from ase.io.formats import ioformats

    try:
        if ioformats[fmt].single:
            return 1
        if fmt in ("extxyz", "xyz"):
            return _count_xyz_frames(spath)
        if fmt == _LAMMPS_DUMP:
            return _count_lammps_frames(spath)
        if fmt == "traj":
            from ase.io.trajectory import Trajectory

            with Trajectory(spath, "r") as traj:
                return len(traj)
        from ase.io import iread

        return sum(1 for _ in iread(spath, index=":", format=fmt, do_not_split_by_at_sign=True))
    except QuestsError:
        raise
    except _PARSE_ERRORS as exc:
        raise QuestsError(f"cannot read ({_one_line(exc)})", source=spath) from None


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
        LAMMPS type -> element for dumps without an ``element`` column, see
        :func:`parse_type_map`. Ignored for other formats.
    validate : bool
        Run :func:`validate_atoms` on every frame (default True).

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
    start, stop, step, total = _resolve(selection, spath, fmt)
    if stop is not None and stop <= start:
        raise QuestsError(f"index {_index_text(selection)!r} selects no frames", source=spath)

    frames = _iter_selected(spath, fmt, start, stop, step, tmap, selection)
    n_yielded = 0
    for frame in frames:
        if validate:
            validate_atoms(frame.atoms, spath, frame.frame)
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
) -> Iterator[Frame]:
    from ase.io import iread
    from ase.io.formats import ioformats

    if fmt == _LAMMPS_DUMP:
        wanted = (
            None if stop is None and start == 0 and step == 1 else _Selection(start, stop, step)
        )
        for chunk in _iter_lammps_chunks(path, wanted):
            if chunk.text is None:
                continue
            yield Frame(path, chunk.frame, _read_lammps_frame(chunk, path, type_map))
        return

    if ioformats[fmt].single:
        if start != 0:
            return
        kwargs: dict[str, Any] = {}
        if fmt == _LAMMPS_DATA and type_map:
            kwargs["Z_of_type"] = {t: atomic_numbers[s] for t, s in type_map.items()}
        try:
            atoms = next(iter(iread(path, index=0, format=fmt, do_not_split_by_at_sign=True,
                                    **kwargs)))
        except StopIteration:
            return
        except KeyError as exc:
            if fmt == _LAMMPS_DATA and type_map:
                raise _frame_error(
                    path, 0, f"LAMMPS type(s) [{exc.args[0]}] missing from the type map {type_map}"
                ) from None
            raise _frame_error(path, 0, f"cannot parse ({_one_line(exc)})") from None
        except _PARSE_ERRORS as exc:
            raise _frame_error(path, 0, f"cannot parse ({_one_line(exc)})") from None
        yield Frame(path, 0, atoms)
        return

    frame = start
    iterator = iread(path, index=slice(start, stop, step), format=fmt, do_not_split_by_at_sign=True)
    while True:
        try:
            atoms = next(iterator)
        except StopIteration:
            return
        except QuestsError:
            raise
        except _PARSE_ERRORS as exc:
            raise _frame_error(
                path, frame, f"cannot parse, truncated or corrupt file? ({_one_line(exc)})"
            ) from None
        yield Frame(path, frame, atoms)
        frame += step


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


def iter_structures(
    path: str | os.PathLike,
    index: int | slice | str | None = ":",
    format: str | None = None,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    validate: bool = True,
) -> Iterator[Atoms]:
    """Stream the selected structures of a file (see :func:`iter_frames`).

    Use :func:`iter_frames` to also get the index of each frame in its file.
    """
    for item in iter_frames(path, index=index, format=format, type_map=type_map, validate=validate):
        yield item.atoms


def read_structures(
    path: str | os.PathLike,
    index: int | slice | str | None = ":",
    format: str | None = None,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    validate: bool = True,
) -> list[Atoms]:
    """Read the selected structures of a file into a list (see :func:`iter_frames`)."""
    return list(
        iter_structures(path, index=index, format=format, type_map=type_map, validate=validate)
    )


def element_symbols(numbers: Iterable[int]) -> list[str]:
    """Element symbols for atomic numbers, sorted by atomic number."""
    return [chemical_symbols[z] for z in sorted(set(int(z) for z in numbers))]
