"""The LAMMPS readers: text dumps split frame by frame, data files with their type map.

ASE on its own silently accepts a truncated dump (a frame with fewer atoms than
its header declares); here a dump is read as bytes and split into frames at
``ITEM: TIMESTEP`` (:func:`iter_dump_frames`), each frame's ``NUMBER OF ATOMS``
checked against its atom lines and the frame decoded and parsed by ASE on its
own (:func:`parse_dump_frame_text` does the same for the bytes of one frame,
for the follower of a file being written). A count followed by fewer atom lines
and then a next frame's ``ITEM: TIMESTEP`` is an error naming the frame; a cut
last frame with a complete frame before it is skipped with a
:class:`~quests_core.io_common.TruncatedFrameWarning`.

Atoms of a dump without an ``element`` column, and of a data file without
``Masses``, carry only numeric types: the type map (:func:`parse_type_map`)
names them (:func:`iter_data_frames` reads a data file with it), and
:func:`type_warning` says when they would be read as H, He, ...

Invariants
----------
- Imports nothing of ``quests_core`` but :mod:`quests_core.errors` and the
  ``io_common``/``io_errors``/``io_checks``/``io_index``/``io_ase`` helpers.
- Memory: one frame's lines.
"""

from __future__ import annotations

import io as _stdio
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from quests_core.errors import QuestsError
from quests_core.io_ase import read_first
from quests_core.io_checks import MAX_FRAME_ATOMS, absurd_count_error, decode_frame, open_binary
from quests_core.io_common import Frame, FrameRequest, frame_error, parse_type_map, skip_last
from quests_core.io_errors import describe_line, reader_error
from quests_core.io_index import NOTHING, Selection, kept

__all__ = [
    "count_dump_frames",
    "iter_data_frames",
    "iter_dump_frames",
    "parse_dump_frame_text",
    "type_warning",
]

_LAMMPS_DUMP = "lammps-dump-text"


@dataclass
class _DumpChunk:
    frame: int
    text: str | None
    declared: int | None
    found: int
    has_element: bool
    last: bool = False  # the file ends inside or right after this frame


def _not_a_dump(line: bytes, path: str) -> QuestsError:
    """The error of a file whose first non-blank line is not ``ITEM: TIMESTEP``."""
    return QuestsError(
        f"not a LAMMPS text dump (no 'ITEM: TIMESTEP' header; line 1 is {describe_line(line)})",
        source=path,
    )


def _dump_count(line: bytes, path: str, frame: int) -> int:
    """The atom count given by the line after ``ITEM: NUMBER OF ATOMS``, checked."""
    try:
        declared = int(line.split()[0])
    except (ValueError, IndexError):
        raise frame_error(
            path, frame, f"bad 'NUMBER OF ATOMS' value {describe_line(line)}"
        ) from None
    if declared < 0:
        raise frame_error(path, frame, f"negative 'NUMBER OF ATOMS' ({declared})")
    return declared


def _dump_item(line: bytes, has_element: bool) -> tuple[bool, bool, bool]:
    """``(in_atoms, expect_count, has_element)`` after an ``ITEM:`` line of a dump.

    ``has_element`` (an ``element`` column) changes only at ``ITEM: ATOMS``.
    """
    in_atoms = line.startswith(b"ITEM: ATOMS")
    if in_atoms:
        has_element = b"element" in line.split()[2:]
    return in_atoms, line.startswith(b"ITEM: NUMBER OF ATOMS"), has_element


def _next_dump_error(path: str, frame: int, declared: int, found: int) -> QuestsError:
    """Dump frame ``frame`` has fewer atom lines than declared before the next frame."""
    return frame_error(
        path, frame,
        f"truncated or corrupt LAMMPS dump: header declares {declared} atoms, found {found} "
        "atom lines and then 'ITEM: TIMESTEP', the start of a next frame (a corrupt count "
        "or a frame cut short)",
    )


def _iter_lammps_chunks(path: str, keep: Selection | None) -> Iterator[_DumpChunk]:
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
        text = decode_frame(b"".join(lines), path, frame) if lines is not None else None
        return _DumpChunk(frame, text, declared, found, has_element, last)

    with open_binary(path) as fd:
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
                raise absurd_count_error(path, frame, declared, found, True)
            yield finish(last=True)


def _read_lammps_frame(chunk: _DumpChunk, path: str, type_map: dict[int, str]) -> Atoms:
    from ase.io import read

    if chunk.declared is None:
        raise frame_error(path, chunk.frame, "missing 'ITEM: NUMBER OF ATOMS' (corrupt dump)")
    if chunk.found != chunk.declared:
        ends = " and the file ends inside it" if chunk.last and chunk.found < chunk.declared else ""
        raise frame_error(
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
            raise frame_error(
                path,
                chunk.frame,
                f"LAMMPS type(s) {sorted(missing)} missing from the type map {type_map}",
            ) from None
        raise frame_error(path, chunk.frame, "corrupt LAMMPS dump frame") from None
    except QuestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise reader_error(path, chunk.frame, exc, _LAMMPS_DUMP) from None
    if type_map and not chunk.has_element and "X" in atoms.get_chemical_symbols():
        types = sorted(set(np.asarray(atoms.arrays.get("type", [])).tolist()) - set(type_map))
        raise frame_error(
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


def count_dump_frames(path: str) -> int:
    """Frames of a dump, not counting a truncated last frame (see TruncatedFrameWarning)."""
    n = 0
    for chunk in _iter_lammps_chunks(path, NOTHING):
        n += 1
        if chunk.last and chunk.frame > 0 and _short(chunk):
            n -= 1
    return n


def _short(chunk: _DumpChunk) -> bool:
    return chunk.declared is not None and chunk.found < chunk.declared


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
        raise frame_error(path, frame, "no 'ITEM: TIMESTEP' header (empty frame)")
    return _DumpChunk(frame, decode_frame(data, path, frame), declared, found, has_element)


def iter_dump_frames(request: FrameRequest) -> Iterator[Frame]:
    """The requested frames of a LAMMPS text dump, parsed by ASE.

    The type map names the numeric types of a dump without an ``element`` column.
    A truncated last frame is skipped with a warning and recorded in
    ``request.skipped``.
    """
    path, type_map, skipped = request.path, dict(request.type_map), request.skipped
    for chunk in _iter_lammps_chunks(path, kept(request.start, request.stop, request.step)):
        if chunk.last and chunk.frame > 0 and _short(chunk):
            skip_last(
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


def iter_data_frames(request: FrameRequest) -> Iterator[Frame]:
    """The one structure of a LAMMPS data file (frame 0), its types named by the type map."""
    if request.start != 0:
        return
    path, type_map = request.path, dict(request.type_map)
    kwargs: dict[str, Any] = {}
    key_error = None
    if type_map:
        kwargs["Z_of_type"] = {t: atomic_numbers[s] for t, s in type_map.items()}

        def key_error(exc: KeyError) -> QuestsError:
            return frame_error(
                path, 0, f"LAMMPS type(s) [{exc.args[0]}] missing from the type map {type_map}"
            )

    atoms = read_first(path, request.fmt, strict=request.entry.strict, key_error=key_error,
                       **kwargs)
    if atoms is not None:
        yield Frame(path, 0, atoms)


def parse_dump_frame_text(data: bytes, fmt: str, source: str, frame: int,
                          type_map: Any = None) -> Atoms:
    """One complete dump frame's bytes (``ITEM: TIMESTEP`` to its last atom line) parsed,
    with the splitter's checks and messages."""
    return _read_lammps_frame(_dump_text_chunk(data, source, frame), source,
                              parse_type_map(type_map))


def type_warning(
    path: str | os.PathLike,
    fmt: str,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    name: str | None = None,
) -> str:
    """The warning of :func:`quests_core.io.lammps_type_warning` for a LAMMPS file of
    format ``fmt`` (``""`` when its types are named or a type map is given)."""
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

