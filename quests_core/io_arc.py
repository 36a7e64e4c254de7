"""DMol3 / Materials Studio ``.arc`` trajectories (BIOSYM archive 3), split frame by frame.

The MD and geometry-optimisation trajectories of DMol3, Forcite and Discover:
``!BIOSYM archive 3``, ``PBC=ON`` or ``PBC=OFF``, then one block per frame: a
``!DATE`` line, the cell as ``PBC a b c alpha beta gamma`` (periodic files
only), one line per atom (name, x, y, z in Å, ..., element, charge) and two
``end`` lines. ASE's reader (``dmol-arc``) reads the whole file into memory and
gives nothing for a file whose last frame is cut; here the file is split into
frames as bytes (:func:`iter_arc_frames`; memory: one frame) and each frame is
parsed by ASE on its own, after the file's two header lines.

Truncation (the rule of :class:`~quests_core.io_common.TruncatedFrameWarning`):
a last frame without its two ``end`` lines is skipped with a warning when a
complete frame precedes it (a run still being written), else it is an error.
A frame without its ``end`` lines followed by a next ``!DATE`` is an error
naming it, and so are atom lines after a frame's first ``end`` (a second
molecule, which ASE would silently drop).

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

from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.io_checks import decode_frame, open_binary
from quests_core.io_common import Frame, FrameRequest, frame_error, skip_last
from quests_core.io_errors import describe_line, reader_error
from quests_core.io_index import NOTHING, Selection, kept

__all__ = ["count_arc_frames", "iter_arc_frames"]

_FORMAT = "dmol-arc"


@dataclass
class _ArcChunk:
    frame: int
    text: str | None
    header: str
    last: bool = False  # the file ends inside this frame


def _header(fd, path: str) -> str:
    """The file's header (magic line and ``PBC=ON``/``PBC=OFF``), checked."""
    first, second = fd.readline(), fd.readline()
    if not second.strip().startswith((b"PBC=ON", b"PBC=OFF")):
        raise QuestsError(
            f"line 2 should be PBC=ON or PBC=OFF, found {describe_line(second)} "
            "(not a BIOSYM archive?)",
            source=path,
        )
    return (first + second).decode("utf-8", "replace")


def _iter_arc_chunks(path: str, keep: Selection | None) -> Iterator[_ArcChunk]:
    """Split an ``.arc`` file into frames at ``!DATE``, keeping the text of wanted ones.

    A frame ends with its second ``end`` line; one that the file ends inside is
    yielded with ``last`` set. Kept frames are decoded on their own, so binary
    garbage is reported in its frame.
    """
    last_wanted = None if keep is None else keep.last()
    with open_binary(path) as fd:
        header = _header(fd, path)
        frame = -1
        lines: list[bytes] | None = None
        ends = 2  # "end" lines seen in the current frame (2: between frames)
        for line in fd:
            word = line.strip()
            if line.startswith(b"!DATE"):
                if ends < 2:
                    raise frame_error(
                        path, frame, "no closing 'end' lines before the next frame's '!DATE' "
                        "(a frame cut short)"
                    )
                frame += 1
                lines = [line] if (keep is None or frame in keep) else None
                ends = 0
                continue
            if ends == 2:
                if word:
                    raise frame_error(
                        path, frame + 1,
                        f"expected '!DATE' (the start of a frame), found {describe_line(line)}",
                    )
                continue
            if lines is not None:
                lines.append(line)
            if word == b"end":
                ends += 1
                if ends == 2:
                    text = decode_frame(b"".join(lines), path, frame) if lines else None
                    yield _ArcChunk(frame, text, header)
                    if last_wanted is not None and frame >= last_wanted:
                        return
            elif ends == 1 and word:
                raise frame_error(
                    path, frame, "atom lines after the frame's first 'end' (a second "
                    "molecule): only single-molecule frames are read"
                )
        if ends < 2:
            yield _ArcChunk(frame, None, header, last=True)


def _read_arc_frame(chunk: _ArcChunk, path: str) -> Atoms:
    """One frame parsed by ASE's reader, after the file's header (ASE's ``read`` wants a
    file name for this format, and its reader's ``index=0`` finds no frame: ``-1``)."""
    from ase.io.dmol import read_dmol_arc

    try:
        return read_dmol_arc(_stdio.StringIO(chunk.header + "\n" + (chunk.text or "")),
                             index=-1)
    except QuestsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise reader_error(path, chunk.frame, exc, _FORMAT) from None


def iter_arc_frames(request: FrameRequest) -> Iterator[Frame]:
    """The requested frames of an ``.arc`` file, each parsed by ASE's ``dmol-arc`` reader.

    A last frame the file ends inside is skipped with a warning and recorded in
    ``request.skipped`` when a complete frame precedes it, else it is an error.
    """
    path = request.path
    for chunk in _iter_arc_chunks(path, kept(request.start, request.stop, request.step)):
        if chunk.last:
            reason = "the file ends inside it (no closing 'end' lines)"
            if chunk.frame > 0:
                skip_last(path, chunk.frame, reason, request.skipped)
                return
            raise frame_error(path, max(chunk.frame, 0), f"truncated file: {reason}")
        if chunk.text is not None:
            yield Frame(path, chunk.frame, _read_arc_frame(chunk, path))


def count_arc_frames(path: str) -> int:
    """Frames of an ``.arc`` file, not counting a truncated last frame (the reader skips it)."""
    n = 0
    for chunk in _iter_arc_chunks(path, NOTHING):
        if chunk.last:
            return n if chunk.frame > 0 else 1  # a cut frame 0 is reported when it is read
        n += 1
    return n
