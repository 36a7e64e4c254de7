"""Follow a trajectory file that a running simulation is still appending.

:class:`Follower` polls an extxyz/xyz file or a LAMMPS text dump and yields
each frame as soon as it is complete, as a :class:`FollowedFrame` (frame number
in the file, byte offsets, ``ase.Atoms``). It is the reader of
:func:`quests_core.watch.watch` (the ``quests-dashboard watch`` command) and of
the dashboard's follow mode.

When a frame is complete
------------------------
Only whole lines are ever looked at: bytes after the last newline are kept
back until their newline arrives, so a writer that flushes in the middle of a
line (any buffered writer does, at its buffer size) is never read half-way.
A frame is complete when its header and all the atom lines its header declares
are present, each ended by a newline: for (ext)xyz the count line, the comment
line and ``n`` atom lines; for a LAMMPS dump the ``ITEM:`` header with its
``NUMBER OF ATOMS`` and ``n`` atom lines after ``ITEM: ATOMS``. A partial last
frame is waited for, never an error; when the follow ends (timeout or stop)
with a partial frame pending it is named in one message and not read.

The bytes of a complete frame are parsed by
:func:`quests_core.io.parse_frame_text` (the same header checks, readers and
messages as :func:`quests_core.io.iter_frames`), so a corrupt frame gives the
same one-line :class:`~quests_core.errors.QuestsError` naming the file and the
frame, and every frame is checked by :func:`quests_core.io.validate_atoms`. A
header the framer cannot read (an atom count that is not a number, a dump
without ``ITEM: TIMESTEP``) is handed to that parser as an erroneous frame, so
it names the problem in the words of the offline reader.

Only regular files are followed: a named pipe, a directory or a device at
the path is refused with one line (:func:`check_followable`, an ``os.stat``
before any ``open``: opening a named pipe would block until a writer comes),
when the follow starts and whenever the file (re)appears; files are opened
with ``O_NONBLOCK`` and checked again with ``fstat``, so a pipe put there
between the two looks cannot block either.

A header declaring an absurd number of atoms is an error naming the frame,
never a frame that waits forever and swallows the frames after it: a count
above :data:`MAX_FRAME_ATOMS`, or an atom line that is the count line of a next
(ext)xyz frame or an ``ITEM:`` line of a LAMMPS dump (the frame has fewer atom
lines than its header declares; noticed as soon as that line has arrived).

Truncated, rewritten, replaced or deleted files
-----------------------------------------------
Each poll compares the file with what was read. A size below the bytes
already read (truncated) or bytes already read that changed (rewritten in
place, anywhere before the read position; see :class:`_PrefixDigest`) restart
the follow from the start of the file, with frame numbers from 0 again,
``FollowedFrame.restarts`` increased and one message (``notify``). The
rewrite check compares, at every poll, the last :data:`ANCHOR_BYTES` bytes
read and, in rotation, CRC-32 digests of the blocks of :data:`VERIFY_BLOCK`
bytes already read, at most ``verify_bytes`` (:data:`VERIFY_BYTES`) per poll:
a part already read up to that size is checked whole at every poll, a longer
one within ``ceil(position / verify_bytes)`` polls.

A path that no longer holds the file that was being read is reported by
:class:`FollowedFileGone` (a :class:`~quests_core.errors.QuestsError`, one line
naming the file and the last frame read) when it became a directory, a pipe or
a device, and with ``on_replace="end"`` (what ``watch`` uses) also when it
was deleted or replaced by another file (a new inode). With
``on_replace="restart"`` (the default, the dashboard's follow mode) a new
inode restarts the follow (a new run wrote the file again), and a deleted file
is named in one message and still read through the open descriptor (a writer
that keeps it open still appends to it) until a file appears at the path again.

Invariants and memory
---------------------
- Frames are yielded in file order, each once per (re)start; ``frame`` counts
  every frame of the file, also those skipped by ``from_start=False``.
- Frame numbers count from 0 (the first frame of the file is frame 0), in
  :class:`FollowedFrame` and in every message.
- Memory is O(one frame + one read block): the bytes of the current
  incomplete frame and of the block being cut, never the file; plus 4 bytes
  of digest per :data:`VERIFY_BLOCK` (1 MiB) already read.
- The follow ends on ``timeout`` seconds without growth, on ``stop`` (an
  event, a callable or :meth:`Follower.stop`), or when the consumer stops
  iterating; it never ends on a partial frame. It ends with an error on a
  corrupt frame and on :class:`FollowedFileGone`.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.io import FRAME_TEXT_FORMATS, MAX_FRAME_ATOMS

__all__ = ["DEFAULT_INTERVAL", "FOLLOW_FORMATS", "MAX_FRAME_ATOMS", "ON_REPLACE",
           "FollowedFileGone", "FollowedFrame", "Follower", "check_followable", "file_kind",
           "follow", "follow_format"]

log = logging.getLogger(__name__)

#: Formats that can be followed while they are written.
FOLLOW_FORMATS = FRAME_TEXT_FORMATS
#: Seconds between two looks at the file.
DEFAULT_INTERVAL = 0.5
#: Bytes read at a time (frames are cut after each block).
READ_BLOCK = 1 << 20
#: A header line (xyz count, LAMMPS ``ITEM:`` lines) longer than this is not one.
MAX_HEADER_LINE = 1 << 16
#: Bytes before the read position compared at every poll to notice an in-place rewrite.
ANCHOR_BYTES = 64
#: Bytes per digest (CRC-32) of the part already read (the rewrite check, :class:`_PrefixDigest`).
VERIFY_BLOCK = 1 << 20
#: Default bytes already read that are re-read and compared with their digests per poll.
VERIFY_BYTES = 8 << 20
# MAX_FRAME_ATOMS (quests_core.io): the largest atom count a followed frame's header may
# declare, as for a finished file. The follower holds a frame's text in memory (at least
# 7 bytes per atom line, so 7 GB there): a larger count is a corrupt count line, not a
# frame being written.
#: What a path that holds another file (new inode) or no file any more does to a follow.
ON_REPLACE = ("restart", "end")

#: An (ext)xyz atom line that is a lone integer: the count line of a next frame
#: (with the newline before it: searched from the newline that ends the line before).
_XYZ_COUNT_LINE = re.compile(rb"\n[ \t]*[0-9]+[ \t]*\r?\n")
#: A LAMMPS dump atom line that is a header line: the next frame (or item) started.
_LAMMPS_ITEM_LINE = re.compile(rb"\nITEM:")

_LAMMPS = "lammps-dump-text"


@dataclass(frozen=True)
class FollowedFrame:
    """One complete frame of a followed file.

    Attributes
    ----------
    frame : int
        Index of the frame in the file (0-based; from 0 again after a restart).
    offset, end : int
        Byte offsets of the frame's first byte and one past its last newline.
    atoms : ase.Atoms
        The validated structure.
    restarts : int
        How many times the file was truncated or replaced before this frame.
    """

    frame: int
    offset: int
    end: int
    atoms: Atoms
    restarts: int = 0


class FollowedFileGone(QuestsError):
    """The followed path no longer holds the file being read (deleted or replaced).

    A :class:`~quests_core.errors.QuestsError` (one line naming the file and the
    last frame read); ``what`` is ``"deleted"``, ``"replaced"`` (another regular
    file, a new inode) or ``"not a regular file"`` (a directory, pipe, device).
    """

    def __init__(self, message: str, *, source: str, what: str):
        super().__init__(message, source=source)
        self.what = what


def file_kind(mode: int) -> str:
    """What an ``st_mode`` is, in words ("a regular file", "a named pipe", ...)."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def _stat(path: str) -> os.stat_result | None:
    """``os.stat(path)`` (symbolic links followed), None when nothing is there."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise QuestsError(f"cannot look at the file ({exc.strerror or exc})",
                          source=path) from None


def _not_regular(path: str, st: os.stat_result) -> QuestsError:
    return QuestsError(
        f"not a regular file ({file_kind(st.st_mode)}): only a regular file that a "
        "simulation appends can be followed", source=path)


def check_followable(path: str | os.PathLike) -> os.stat_result | None:
    """Refuse a path that holds something other than a regular file.

    Uses ``os.stat`` only, never ``open`` (opening a named pipe blocks until a
    writer opens it). Returns the stat result, or None when nothing is at the
    path yet (a file that does not exist yet can be waited for).

    Raises
    ------
    QuestsError
        One line naming the file and what it is (a named pipe, a directory, a
        device, a socket).
    """
    spath = str(path)
    st = _stat(spath)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise _not_regular(spath, st)
    return st


def _open_regular(path: str):
    """Open a regular file without blocking: ``(binary file, fstat)``, None if it vanished.

    ``O_NONBLOCK`` keeps a named pipe put at the path after :func:`check_followable`
    from blocking the open; ``fstat`` of the open descriptor then refuses it.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fdn = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise QuestsError(f"cannot open the file ({exc.strerror or exc})", source=path) from None
    st = os.fstat(fdn)
    if not stat.S_ISREG(st.st_mode):
        os.close(fdn)
        raise _not_regular(path, st)
    return os.fdopen(fdn, "rb", buffering=0), st


def follow_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format used to follow ``path``: one of :data:`FOLLOW_FORMATS`.

    Known from ``format`` or the extension, so a file that does not exist yet
    can be waited for; else detected from the content by
    :func:`quests_core.io.detect_format`.

    Raises
    ------
    QuestsError
        For paths that are not regular files (:func:`check_followable`, before
        anything opens them), compressed files and formats that cannot be followed.
    """
    from ase.io.formats import get_compression

    from quests_core.io import EXTENSION_FORMATS, detect_format

    spath = str(path)
    check_followable(spath)
    if get_compression(spath)[1] is not None:
        raise QuestsError("a compressed file cannot be followed while it is written",
                          source=spath)
    if format is None:
        lower = Path(spath).name.lower()
        ext = lower.rsplit(".", 1)[-1] if "." in lower else ""
        format = EXTENSION_FORMATS.get(ext)
        if format is None and os.path.exists(spath):
            format = detect_format(spath)
        if format is None:
            raise QuestsError(
                "cannot tell the format from the name of a file that does not exist yet "
                "(give it, e.g. --format extxyz)", source=spath)
    if format not in FOLLOW_FORMATS:
        raise QuestsError(
            f"the {format!r} format cannot be followed while it is written "
            f"(followed formats: {', '.join(FOLLOW_FORMATS)})", source=spath)
    return format


# ----------------------------------------------------------------------------
# Cutting complete frames out of a growing byte buffer
# ----------------------------------------------------------------------------


@dataclass
class _Cut:
    """A complete frame: ``buf[start:end]`` and what its header says."""

    start: int
    end: int
    declared: int | None
    error: bool = False  # a header the framer cannot read: the parser names the problem


class _Framer:
    """Line-based state machine over ``buf`` (bytes from a frame boundary on).

    ``next_frame()`` returns a :class:`_Cut` once a whole frame is in ``buf``,
    else ``None`` (wait for more bytes). ``scan`` is always at a line start;
    bytes after the last newline are never interpreted (except a header line
    longer than :data:`MAX_HEADER_LINE`, which is an error). ``frame`` is the
    0-based number in the file of the frame being cut.

    Stages: xyz ``header`` (count line) -> ``comment`` -> ``body`` (atom lines);
    LAMMPS ``header`` -> ``items``/``count`` -> ``atoms``. An atom count above
    :data:`MAX_FRAME_ATOMS`, or an atom line that starts the next frame (an xyz
    count line, a LAMMPS ``ITEM:`` line), is an error naming the frame.
    """

    def __init__(self, path: str, fmt: str):
        self.path = path
        self.fmt = fmt
        self.buf = bytearray()
        self.frame = 0
        self.prev_declared: int | None = None
        self.intruder = _LAMMPS_ITEM_LINE if fmt == _LAMMPS else _XYZ_COUNT_LINE
        self.reset_frame()

    def reset_frame(self) -> None:
        self.scan = 0
        self.start = 0
        self.stage = "header"
        self.declared: int | None = None
        self.left = 0
        self.body = 0  # offset in buf of the first atom line

    def consume(self, cut: _Cut) -> None:
        """Drop the bytes of a frame that was handed on; the next frame starts."""
        del self.buf[: cut.end]
        self.frame += 1
        self.prev_declared = cut.declared
        self.reset_frame()

    # -- one line -------------------------------------------------------------
    def _line(self) -> bytes | None:
        """The next whole header line (scan moves past it), or None to wait."""
        nl = self.buf.find(b"\n", self.scan)
        if nl < 0:
            if len(self.buf) - self.scan > MAX_HEADER_LINE:
                raise _frame_error(
                    self.path, self.frame,
                    f"a header line longer than {MAX_HEADER_LINE} bytes without a newline: "
                    "not a trajectory being written")
            return None
        line = bytes(self.buf[self.scan : nl + 1])
        self.scan = nl + 1
        return line

    def _declared(self, line: bytes) -> int | None:
        """The atom count of a header line (None: not a count); refuses absurd counts."""
        declared = _count(line)
        if declared is not None and declared > MAX_FRAME_ATOMS:
            raise _frame_error(
                self.path, self.frame,
                f"header declares {declared} atoms, more than the {MAX_FRAME_ATOMS:,} a "
                "followed frame may hold: a corrupt atom count")
        return declared

    def _count_lines(self) -> bool:
        """Advance over ``self.left`` whole atom lines; True when all are there.

        Every atom line passed over is checked for the start of a next frame
        (:meth:`_check_atom_lines`).
        """
        buf = self.buf
        n = buf.count(b"\n", self.scan)
        if n < self.left:
            if n:
                end = buf.rfind(b"\n") + 1
                self._check_atom_lines(end)
                self.scan = end
                self.left -= n
            return False
        end = self.scan
        for _ in range(self.left):
            end = buf.find(b"\n", end) + 1
        self._check_atom_lines(end)
        self.scan = end
        self.left = 0
        return True

    def _check_atom_lines(self, end: int) -> None:
        """Refuse an atom line in ``buf[scan:end]`` that starts a next frame.

        Such a line means the frame has fewer atom lines than its header
        declares (a corrupt count or a frame cut short): waiting for the rest
        would swallow every later frame.
        """
        # scan > 0 here (a header line precedes the atom lines): buf[scan - 1] is a newline
        m = self.intruder.search(self.buf, self.scan - 1, end)
        if m is None:
            return
        at = m.start() + 1  # the line's first byte
        found = self.buf.count(b"\n", self.body, at)
        line = bytes(self.buf[at : self.buf.find(b"\n", at)]).strip()[:40]
        line = line.decode("utf-8", "replace")
        if self.fmt == _LAMMPS:
            message = (f"truncated or corrupt LAMMPS dump: header declares {self.declared} "
                       f"atoms, found {found} (then {line!r})")
        else:
            message = (f"header declares {self.declared} atoms, found {found} atom lines and "
                       f"then {line!r}, the count line of a next frame (a corrupt count or a "
                       "frame cut short)")
        raise _frame_error(self.path, self.frame, message)

    def next_frame(self) -> _Cut | None:
        return self._next_xyz() if self.fmt != _LAMMPS else self._next_lammps()

    # -- (ext)xyz -----------------------------------------------------------
    def _next_xyz(self) -> _Cut | None:
        while self.stage == "header":
            line = self._line()
            if line is None:
                return None
            if not line.strip():
                self.start = self.scan  # blank lines between frames
                continue
            declared = self._declared(line)
            if declared is None:  # not a count: parse_frame_text names it
                return _Cut(self.start, self.scan, None, error=True)
            self.declared, self.stage = declared, "comment"
        if self.stage == "comment":  # any length, not interpreted
            nl = self.buf.find(b"\n", self.scan)
            if nl < 0:
                return None
            self.scan = nl + 1
            self.body, self.left, self.stage = self.scan, self.declared, "body"
        if not self._count_lines():
            return None
        return _Cut(self.start, self.scan, self.declared)

    # -- LAMMPS text dump -------------------------------------------------------
    def _next_lammps(self) -> _Cut | None:
        while self.stage in ("header", "items", "count"):
            line = self._line()
            if line is None:
                return None
            if self.stage == "header":
                if not line.strip():
                    self.start = self.scan
                    continue
                if not line.startswith(b"ITEM: TIMESTEP"):
                    if self.frame == 0:  # parse_frame_text: "not a LAMMPS text dump"
                        return _Cut(self.start, self.scan, None, error=True)
                    raise _frame_error(
                        self.path, self.frame - 1,
                        "truncated or corrupt LAMMPS dump: more lines after the "
                        f"{self.prev_declared} atoms its header declares (line "
                        f"{line.split(maxsplit=1)[0][:20]!r}...)")
                self.stage = "items"
            elif self.stage == "count":
                self.declared = self._declared(line)
                if self.declared is None:  # parse_frame_text names the bad count
                    return _Cut(self.start, self.scan, None, error=True)
                self.stage = "items"
            elif line.startswith(b"ITEM: TIMESTEP"):
                # a frame without ITEM: ATOMS: hand it on, the reader names the problem
                self.scan -= len(line)
                return _Cut(self.start, self.scan, self.declared)
            elif line.startswith(b"ITEM: NUMBER OF ATOMS"):
                self.stage = "count"
            elif line.startswith(b"ITEM: ATOMS"):
                if self.declared is None:  # the reader reports the missing count
                    return _Cut(self.start, self.scan, None, error=True)
                self.body, self.left, self.stage = self.scan, self.declared, "atoms"
        if not self._count_lines():
            return None
        return _Cut(self.start, self.scan, self.declared)

    # -- what is pending when the follow ends -------------------------------------
    def pending(self) -> str | None:
        """A description of the incomplete frame in ``buf``, or None when there is none."""
        rest = bytes(self.buf[self.start :])
        if not rest.strip():
            return None
        if self.declared is None:
            return "its header is incomplete"
        if self.stage in ("comment", "body", "atoms"):
            atoms = 0 if self.stage == "comment" else max(0, self.declared - self.left)
            cut = "" if rest.endswith(b"\n") else " and a line cut short"
            return f"header declares {self.declared} atoms, {atoms} complete atom lines{cut}"
        return "its header is incomplete"


def _count(line: bytes) -> int | None:
    """The atom count of a header line, or None when it is not a count >= 0."""
    try:
        n = int(line.split()[0])
    except (ValueError, IndexError):
        return None
    return n if n >= 0 else None


def _frame_error(path: str, frame: int, message: str) -> QuestsError:
    """An error of the follower itself about frame ``frame`` of ``path``."""
    err = QuestsError(f"frame {frame}: {message}", source=path)
    err.index = frame
    return err


def _parse(cut: _Cut, framer: _Framer, type_map: dict[int, str], validate: bool) -> Atoms:
    """The atoms of a complete frame, through :func:`quests_core.io.parse_frame_text`."""
    from quests_core.io import parse_frame_text, validate_atoms

    path, frame = framer.path, framer.frame
    atoms = parse_frame_text(bytes(framer.buf[cut.start : cut.end]), framer.fmt, source=path,
                             frame=frame, type_map=type_map)
    if cut.error:  # the parser names every header the framer cannot read
        raise _frame_error(path, frame, "unreadable frame header")
    if validate:
        validate_atoms(atoms, path, frame)
    return atoms


# ----------------------------------------------------------------------------
# Noticing a rewrite of the part already read
# ----------------------------------------------------------------------------


def _read_at(fd, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes of the open binary file ``fd`` from byte ``offset`` on."""
    fd.seek(offset)
    return fd.read(size)


class _PrefixDigest:
    """CRC-32 digests of the bytes already read, to notice an in-place rewrite.

    The part read, ``[0, position)``, is cut in blocks of ``block`` bytes (the
    last one partial); :meth:`update` extends the digests as bytes are read,
    :meth:`changed` re-reads and compares the last :data:`ANCHOR_BYTES` bytes
    and, in rotation from where the previous call stopped, blocks until
    ``budget`` bytes were compared (every block at least once per
    ``ceil(position / budget)`` calls; all of them at each call while
    ``position <= budget``). Memory: 4 bytes per full block.
    """

    def __init__(self, block: int = VERIFY_BLOCK):
        self.block = int(block)
        self.full = array("I")  # CRC-32 of each full block, in file order
        self.tail_crc = 0  # CRC-32 of the partial last block
        self.tail_len = 0
        self.anchor = b""  # the last ANCHOR_BYTES bytes read
        self.cursor = 0  # next block to compare
        self.position = 0

    def update(self, data: bytes) -> None:
        """Account for ``data``, the bytes read right after ``position``."""
        self.anchor = (self.anchor + data[-ANCHOR_BYTES:])[-ANCHOR_BYTES:]
        view, i = memoryview(data), 0
        while i < len(view):
            piece = view[i : i + self.block - self.tail_len]
            self.tail_crc = zlib.crc32(piece, self.tail_crc)
            self.tail_len += len(piece)
            i += len(piece)
            if self.tail_len == self.block:
                self.full.append(self.tail_crc)
                self.tail_crc, self.tail_len = 0, 0
        self.position += len(data)

    def changed(self, fd, budget: int) -> tuple[int, int] | None:
        """The byte range ``[a, b)`` found changed in the open file ``fd``, or None."""
        if self.anchor:
            a = self.position - len(self.anchor)
            if _read_at(fd, len(self.anchor), a) != self.anchor:
                return a, self.position
        n_blocks = len(self.full) + (1 if self.tail_len else 0)
        compared = 0
        for _ in range(n_blocks):
            k = self.cursor % n_blocks
            start = k * self.block
            if k < len(self.full):
                length, expected = self.block, self.full[k]
            else:
                length, expected = self.tail_len, self.tail_crc
            data = _read_at(fd, length, start)
            if len(data) != length or zlib.crc32(data) != expected:
                return start, start + length
            self.cursor = k + 1
            compared += length
            if compared >= budget:
                break
        return None


# ----------------------------------------------------------------------------
# The follower
# ----------------------------------------------------------------------------

Stop = threading.Event | Callable[[], bool] | None


class Follower:
    """Yield the complete frames of a file that is being written, as they appear.

    Parameters
    ----------
    path : path-like
        The file; it may not exist yet (it is waited for). Anything but a
        regular file at the path (a named pipe, a directory, a device) is
        refused (:func:`check_followable`).
    format : str, optional
        ``"extxyz"``, ``"xyz"`` or ``"lammps-dump-text"`` (default: from the
        name, see :func:`follow_format`).
    type_map : optional
        LAMMPS type -> element (:func:`quests_core.io.parse_type_map`).
    interval : float
        Seconds between two looks at the file.
    timeout : float, optional
        End after this many seconds without growth (``None``: never).
    from_start : bool
        Yield the frames already in the file (default); else only the frames
        completed after the follow started (the frame being written included).
        A file that does not exist when the follow starts is new as a whole:
        all its frames are yielded, from frame 0. After a restart the new file
        is always followed from its start.
    stop : threading.Event or callable, optional
        End the follow when set / when it returns True (checked between reads
        and while waiting).
    notify : callable, optional
        Receives the one-line messages (waiting, restart, deletion, end,
        pending frame); default: the ``quests_core.follow`` logger.
    validate : bool
        Check every frame with :func:`quests_core.io.validate_atoms`.
    block_size : int
        Bytes read at a time.
    on_replace : {"restart", "end"}
        What a path that holds another file (new inode) or no file any more
        does: ``"restart"`` (default) follows the new file from its start and
        names a deletion in one message (reading on through the open
        descriptor); ``"end"`` raises :class:`FollowedFileGone`. A path that
        holds a directory, pipe or device raises it in both cases.
    verify_bytes : int
        Bytes already read that are re-read per poll to notice an in-place
        rewrite (:class:`_PrefixDigest`; default :data:`VERIFY_BYTES`).

    Raises
    ------
    QuestsError
        From the constructor: a path that is not a regular file, a format that
        cannot be followed, bad options. While iterating: a corrupt frame (one
        line naming the file and the 0-based frame), :class:`FollowedFileGone`.

    Examples
    --------
    >>> for item in Follower("run.extxyz", timeout=60):        # doctest: +SKIP
    ...     print(item.frame, len(item.atoms))
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        format: str | None = None,
        type_map: Mapping[int, str] | Sequence[str] | str | None = None,
        interval: float = DEFAULT_INTERVAL,
        timeout: float | None = None,
        from_start: bool = True,
        stop: Stop = None,
        notify: Callable[[str], None] | None = None,
        validate: bool = True,
        block_size: int = READ_BLOCK,
        on_replace: str = "restart",
        verify_bytes: int = VERIFY_BYTES,
    ):
        from quests_core.io import parse_type_map

        self.path = str(path)
        check_followable(self.path)
        self.format = follow_format(self.path, format)
        self.type_map = parse_type_map(type_map)
        if not (interval > 0):
            raise QuestsError(f"the poll interval must be > 0 s, got {interval}")
        if timeout is not None and not (timeout >= 0):
            raise QuestsError(f"the timeout must be >= 0 s, got {timeout}")
        if on_replace not in ON_REPLACE:
            raise QuestsError(f"on_replace must be one of {', '.join(ON_REPLACE)}, "
                              f"got {on_replace!r}")
        if not (verify_bytes >= 0):
            raise QuestsError(f"verify_bytes must be >= 0, got {verify_bytes}")
        self.interval = float(interval)
        self.timeout = None if timeout is None else float(timeout)
        self.from_start = bool(from_start)
        self.validate = bool(validate)
        self.block_size = int(block_size)
        self.on_replace = on_replace
        self.verify_bytes = int(verify_bytes)
        self._stop_arg = stop
        self._stopped = threading.Event()
        self._notify = notify or log.warning
        #: Bytes of the file read so far (since the last restart).
        self.position = 0
        #: Frames yielded so far (all restarts together).
        self.frames_read = 0
        #: Times the file was truncated, rewritten or replaced.
        self.restarts = 0
        #: Why the follow ended: "timeout", "stop", "gone" (:class:`FollowedFileGone`)
        #: or None while it runs.
        self.ended: str | None = None
        self._deleted_told = False

    # -- control ---------------------------------------------------------------
    def stop(self) -> None:
        """End the follow at the next check (thread-safe)."""
        self._stopped.set()

    def _should_stop(self) -> bool:
        if self._stopped.is_set():
            return True
        s = self._stop_arg
        if s is None:
            return False
        return s.is_set() if isinstance(s, threading.Event) else bool(s())

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._should_stop():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stopped.wait(min(left, 0.05))

    # -- what happened to the file ---------------------------------------------
    def _gone(self, framer: _Framer, what: str, how: str) -> FollowedFileGone:
        """The error of a path that no longer holds the file being read."""
        self._end("gone", framer)
        last = (f"after frame {framer.frame - 1} (frames count from 0)" if framer.frame
                else "before its first complete frame")
        return FollowedFileGone(
            f"the followed file {how} while it was followed, {last}, {self.position} bytes "
            "read", source=self.path, what=what)

    def _change(self, fd, st: os.stat_result | None, ident: tuple[int, int],
                digest: _PrefixDigest, framer: _Framer) -> str | None:
        """Why the follow restarts (None: it goes on), after one look at the path.

        Raises :class:`FollowedFileGone` where the path no longer holds the file.
        """
        if st is None:
            if self.on_replace == "end":
                raise self._gone(framer, "deleted", "was deleted")
            if not self._deleted_told:
                self._deleted_told = True
                self._notify(f"{self.path}: the file was deleted; reading on what its writer "
                             "still appends, until a file appears there again")
            return None
        self._deleted_told = False
        if not stat.S_ISREG(st.st_mode):
            raise self._gone(framer, "not a regular file",
                             f"was replaced by {file_kind(st.st_mode)}")
        if (st.st_dev, st.st_ino) != ident:
            if self.on_replace == "end":
                raise self._gone(framer, "replaced", "was replaced by another file (a new inode)")
            return "was replaced by a new file"
        if st.st_size < self.position:
            return f"was truncated ({st.st_size} bytes, {self.position} already read)"
        changed = digest.changed(fd, self.verify_bytes)
        if changed is not None:
            return (f"was rewritten (bytes {changed[0]}-{changed[1] - 1} of those already "
                    "read changed)")
        return None

    # -- iteration ----------------------------------------------------------------
    def __iter__(self) -> Iterator[FollowedFrame]:
        return self.frames()

    def frames(self) -> Iterator[FollowedFrame]:
        """Yield every complete frame until the timeout, a stop or an error."""
        fd = None
        ident: tuple[int, int] = (0, 0)
        framer = _Framer(self.path, self.format)
        digest = _PrefixDigest()
        skip_until = 0  # frames ending at or before this offset are not parsed
        first_look = True
        last_growth = time.monotonic()
        waited = False
        try:
            while True:
                if self._should_stop():
                    self._end("stop", framer)
                    return
                st = _stat(self.path)
                restart = None
                if fd is None:
                    if st is None:
                        if not waited:
                            self._notify(f"{self.path}: waiting for the file to appear")
                            waited = True
                    else:
                        if not stat.S_ISREG(st.st_mode):  # never open() a pipe
                            raise _not_regular(self.path, st)
                        opened = _open_regular(self.path)
                        if opened is not None:
                            fd, fst = opened
                            ident = (fst.st_dev, fst.st_ino)
                            # frames already there are skipped only in a file that
                            # existed when the follow started
                            if first_look and not self.from_start:
                                skip_until = fst.st_size
                            if waited:
                                last_growth = time.monotonic()
                else:
                    restart = self._change(fd, st, ident, digest, framer)
                first_look = False
                if restart is not None:
                    self.restarts += 1
                    self._notify(f"{self.path}: the file {restart}; following it again "
                                 "from the start (frame numbers from 0)")
                    fd.close()
                    fd, ident, skip_until = None, (0, 0), 0
                    framer = _Framer(self.path, self.format)
                    digest = _PrefixDigest()
                    self.position = 0
                    last_growth = time.monotonic()
                    continue
                grew = False
                while fd is not None:
                    data = _read_at(fd, self.block_size, self.position)
                    if not data:
                        break
                    grew = True
                    framer.buf += data
                    self.position += len(data)
                    digest.update(data)
                    while True:
                        cut = framer.next_frame()
                        if cut is None:
                            break
                        base = self.position - len(framer.buf)
                        offset, end = base + cut.start, base + cut.end
                        if end <= skip_until and not cut.error:
                            framer.consume(cut)
                            continue
                        atoms = _parse(cut, framer, self.type_map, self.validate)
                        item = FollowedFrame(framer.frame, offset, end, atoms, self.restarts)
                        framer.consume(cut)
                        self.frames_read += 1
                        yield item
                        if self._should_stop():
                            self._end("stop", framer)
                            return
                now = time.monotonic()
                if grew:
                    last_growth = now
                elif self.timeout is not None and now - last_growth >= self.timeout:
                    self._end("timeout", framer)
                    return
                self._sleep(self.interval)
        finally:
            if fd is not None:
                fd.close()

    def _end(self, why: str, framer: _Framer) -> None:
        self.ended = why
        pending = framer.pending()
        if pending is not None:
            self._notify(f"{self.path}: frame {framer.frame} is incomplete ({pending}); "
                         "not read")


def follow(path: str | os.PathLike, **kwargs) -> Iterator[FollowedFrame]:
    """``iter(Follower(path, **kwargs))``: the complete frames of a growing file."""
    return iter(Follower(path, **kwargs))
