"""The (ext)xyz reader: frames split by their atom-count lines, each parsed by ASE.

ASE on its own spends minutes on an xyz header declaring 10^9 atoms and reads a
corrupt count as one long frame; here the file is read as bytes and split into
frames by counting lines (:func:`iter_xyz_frames`), every atom line is checked
for the start of a next frame, and each kept frame is decoded and parsed on its
own (:func:`parse_xyz_frame_text` does the same for the bytes of one frame, for
the follower of a file being written). :func:`count_xyz_frames` counts frames
without parsing them.

A corrupt atom-count line (``999999999999``, or ``100000`` in a frame of 864
atoms) must not swallow the frames after it as one "cut last frame": a frame is
refused as soon as one of its atom lines is a next frame's count line, as the
follower's framer does (``quests_core.follow._Framer._check_atom_lines``), and
a count above :data:`~quests_core.io_checks.MAX_FRAME_ATOMS` is an error.

Truncation (the rule of :class:`~quests_core.io_common.TruncatedFrameWarning`):
the last frame of a file with a complete frame before it that the file ends
inside (or inside its last line) is skipped with a warning; a cut single-frame
file is an error.

Invariants
----------
- Imports nothing of ``quests_core`` but :mod:`quests_core.errors` and the
  ``io_common``/``io_errors``/``io_checks``/``io_index`` helpers.
- Memory: one frame's lines.
"""

from __future__ import annotations

import io as _stdio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.io_checks import (
    MAX_FRAME_ATOMS,
    MIN_ATOM_LINE,
    absurd_count_error,
    decode_frame,
    inflated_size,
    open_binary,
)
from quests_core.io_common import Frame, FrameRequest, frame_error, skip_last
from quests_core.io_errors import describe_line, reader_error
from quests_core.io_index import NOTHING, Selection, kept

__all__ = ["count_xyz_frames", "iter_xyz_frames", "parse_xyz_frame_text"]

#: Lines scanned after a count above :data:`MAX_FRAME_ATOMS` for the next frame's start
#: (only for the message: the count is refused either way).
_ABSURD_SCAN_LINES = 1_000_000
#: Longest line looked at as a possible count line (longer ones are atom lines).
_COUNT_LINE_MAX = 32


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
        what = describe_line(line)
        hint = (
            f" (frame {frame - 1} has more atom lines than its count?)"
            if frame and what != "binary data"
            else ""
        )
        raise frame_error(
            path, frame, f"expected the number of atoms, found {what}{hint}"
        ) from None
    if declared < 0:
        raise frame_error(path, frame, f"negative number of atoms ({declared})")
    return declared


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
    return frame_error(
        path, frame,
        f"header declares {declared} atoms, found {found} atom lines and then {shown!r}, "
        "the count line of a next frame (a corrupt count or a frame cut short)",
    )


def _iter_xyz_chunks(path: str, keep: Selection | None) -> Iterator[_XyzChunk]:
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
    size = inflated_size(path)
    consumed = 0
    frame = 0
    with open_binary(path) as fd:
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
            hopeless = absurd or declared * MIN_ATOM_LINE > remaining + 1
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
                raise absurd_count_error(path, frame, declared, max(found, 0), last)
            if hopeless and not last:
                raise frame_error(
                    path, frame,
                    f"header declares {declared} atoms, more than the {remaining} bytes "
                    f"after it can hold (at least {MIN_ATOM_LINE} per atom line): a "
                    "corrupt frame",
                )
            # a frame that ends the file without a newline may have its last line cut
            cut = not last and not nxt.endswith(b"\n")
            text = None
            if lines is not None and not last:
                text = decode_frame(b"".join(lines), path, frame)
            yield _XyzChunk(frame, text, declared, max(found, 0), last, cut)
            if last:
                return
            if last_wanted is not None and frame >= last_wanted:
                return
            frame += 1


def count_xyz_frames(path: str) -> int:
    """Frames of an (ext)xyz file, not counting a truncated last frame (the reader skips it)."""
    n = 0
    for chunk in _iter_xyz_chunks(path, NOTHING):
        if chunk.last:
            if chunk.frame == 0:
                return 1  # reported when it is parsed
            return n
        if chunk.cut and chunk.frame > 0:
            return n  # skipped when read, see iter_xyz_frames
        n += 1
    return n


def _read_xyz_frame(chunk: _XyzChunk, path: str, fmt: str) -> Atoms:
    from ase.io import read

    try:
        atoms = read(_stdio.StringIO(chunk.text or ""), format=fmt, index=0)
    except QuestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise reader_error(path, chunk.frame, exc, fmt) from None
    if len(atoms) != chunk.declared:
        raise frame_error(
            path, chunk.frame, f"header declares {chunk.declared} atoms, read {len(atoms)}"
        )
    return atoms


def _xyz_text_chunk(data: bytes, path: str, frame: int) -> _XyzChunk:
    """The chunk of one (ext)xyz frame's bytes, its count line checked as the splitter does."""
    lines = data.splitlines(keepends=True)
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first == len(lines):
        raise frame_error(path, frame, "no atom-count line (empty frame)")
    declared = _xyz_count(lines[first], path, frame)
    for k, atom_line in enumerate(lines[first + 2 : first + 2 + declared]):
        if _is_count_line(atom_line):
            raise _next_frame_error(path, frame, declared, k, atom_line)
    found = max(len(lines) - first - 2, 0)
    text = decode_frame(b"".join(lines[first:]), path, frame)
    return _XyzChunk(frame, text, declared, found, False)


def iter_xyz_frames(request: FrameRequest) -> Iterator[Frame]:
    """The requested frames of an (ext)xyz file, parsed by ASE.

    The reader of the ``extxyz`` and ``xyz`` entries of :mod:`quests_core.formats`
    (the entry's name is the ASE format each frame is parsed with). A truncated
    last frame is skipped with a warning and recorded in ``request.skipped``.
    """
    path, fmt, skipped = request.path, request.fmt, request.skipped
    for chunk in _iter_xyz_chunks(path, kept(request.start, request.stop, request.step)):
        if chunk.last:
            reason = (
                f"the file ends inside it (header declares {chunk.declared} atoms, "
                f"found {chunk.found})"
            )
            if chunk.frame > 0:
                skip_last(path, chunk.frame, reason, skipped)
                return
            raise frame_error(path, chunk.frame, f"truncated file: {reason}")
        if chunk.cut and chunk.frame > 0:
            # every writer ends its lines: the last line of this last frame may be cut
            # mid-number (still parsable, silently wrong), so it is not trusted
            skip_last(path, chunk.frame, "the file ends inside its last line", skipped)
            return
        if chunk.text is None:
            continue
        yield Frame(path, chunk.frame, _read_xyz_frame(chunk, path, fmt))


def parse_xyz_frame_text(data: bytes, fmt: str, source: str, frame: int,
                         type_map: Any = None) -> Atoms:
    """One complete (ext)xyz frame's bytes (count line, comment, atom lines) parsed,
    with the splitter's checks and messages (``type_map`` is not used)."""
    return _read_xyz_frame(_xyz_text_chunk(data, source, frame), source, fmt)
