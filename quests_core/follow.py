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

Truncated or replaced files
---------------------------
Each poll compares the file with what was read: a new inode (the file was
replaced, e.g. a new run wrote it again), a size below the bytes already read
(truncated), or different bytes just before the read position (rewritten in
place) restart the follow from the start of the file, with frame numbers from
0 again, ``FollowedFrame.restarts`` increased and one message (``notify``).

Invariants and memory
---------------------
- Frames are yielded in file order, each once per (re)start; ``frame`` counts
  every frame of the file, also those skipped by ``from_start=False``.
- Memory is O(one frame + one read block): the bytes of the current
  incomplete frame and of the block being cut, never the file.
- The follow ends on ``timeout`` seconds without growth, on ``stop`` (an
  event, a callable or :meth:`Follower.stop`), or when the consumer stops
  iterating; it never ends on a partial frame.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.io import FRAME_TEXT_FORMATS

__all__ = ["DEFAULT_INTERVAL", "FOLLOW_FORMATS", "FollowedFrame", "Follower", "follow",
           "follow_format"]

log = logging.getLogger(__name__)

#: Formats that can be followed while they are written.
FOLLOW_FORMATS = FRAME_TEXT_FORMATS
#: Seconds between two looks at the file.
DEFAULT_INTERVAL = 0.5
#: Bytes read at a time (frames are cut after each block).
READ_BLOCK = 1 << 20
#: A header line (xyz count, LAMMPS ``ITEM:`` lines) longer than this is not one.
MAX_HEADER_LINE = 1 << 16
#: Bytes before the read position compared at each poll to notice an in-place rewrite.
ANCHOR_BYTES = 64

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


def follow_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format used to follow ``path``: one of :data:`FOLLOW_FORMATS`.

    Known from ``format`` or the extension, so a file that does not exist yet
    can be waited for; else detected from the content by
    :func:`quests_core.io.detect_format`.

    Raises
    ------
    QuestsError
        For compressed files and formats that cannot be followed.
    """
    from ase.io.formats import get_compression

    from quests_core.io import EXTENSION_FORMATS, detect_format

    spath = str(path)
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
    longer than :data:`MAX_HEADER_LINE`, which is an error).
    """

    def __init__(self, path: str, fmt: str):
        self.path = path
        self.fmt = fmt
        self.buf = bytearray()
        self.frame = 0
        self.prev_declared: int | None = None
        self.reset_frame()

    def reset_frame(self) -> None:
        self.scan = 0
        self.start = 0
        self.stage = "header"
        self.declared: int | None = None
        self.left = 0

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

    def _count_lines(self) -> bool:
        """Advance over ``self.left`` whole lines; True when all are there."""
        buf = self.buf
        n = buf.count(b"\n", self.scan)
        if n < self.left:
            if n:
                self.scan = buf.rfind(b"\n") + 1
                self.left -= n
            return False
        for _ in range(self.left):
            self.scan = buf.find(b"\n", self.scan) + 1
        self.left = 0
        return True

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
            declared = _count(line)
            if declared is None:  # not a count: parse_frame_text names it
                return _Cut(self.start, self.scan, None, error=True)
            self.declared, self.left, self.stage = declared, declared + 1, "body"
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
                self.declared = _count(line)
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
                self.left, self.stage = self.declared, "atoms"
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
        if self.stage in ("body", "atoms"):
            # xyz: ``left`` counts the comment line too; LAMMPS: atom lines only
            atoms = max(0, self.declared - self.left)
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
# The follower
# ----------------------------------------------------------------------------

Stop = threading.Event | Callable[[], bool] | None


class Follower:
    """Yield the complete frames of a file that is being written, as they appear.

    Parameters
    ----------
    path : path-like
        The file; it may not exist yet (it is waited for).
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
        After a restart the new file is always followed from its start.
    stop : threading.Event or callable, optional
        End the follow when set / when it returns True (checked between reads
        and while waiting).
    notify : callable, optional
        Receives the one-line messages (waiting, restart, end, pending frame);
        default: the ``quests_core.follow`` logger.
    validate : bool
        Check every frame with :func:`quests_core.io.validate_atoms`.
    block_size : int
        Bytes read at a time.

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
    ):
        from quests_core.io import parse_type_map

        self.path = str(path)
        self.format = follow_format(self.path, format)
        self.type_map = parse_type_map(type_map)
        if not (interval > 0):
            raise QuestsError(f"the poll interval must be > 0 s, got {interval}")
        if timeout is not None and not (timeout >= 0):
            raise QuestsError(f"the timeout must be >= 0 s, got {timeout}")
        self.interval = float(interval)
        self.timeout = None if timeout is None else float(timeout)
        self.from_start = bool(from_start)
        self.validate = bool(validate)
        self.block_size = int(block_size)
        self._stop_arg = stop
        self._stopped = threading.Event()
        self._notify = notify or log.warning
        #: Bytes of the file read so far (since the last restart).
        self.position = 0
        #: Frames yielded so far (all restarts together).
        self.frames_read = 0
        #: Times the file was truncated or replaced.
        self.restarts = 0
        #: Why the follow ended: "timeout", "stop" or None while it runs.
        self.ended: str | None = None

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

    # -- iteration ----------------------------------------------------------------
    def __iter__(self) -> Iterator[FollowedFrame]:
        return self.frames()

    def frames(self) -> Iterator[FollowedFrame]:
        """Yield every complete frame until the timeout or a stop."""
        fd = None
        ident: tuple[int, int] | None = None
        framer = _Framer(self.path, self.format)
        skip_until = 0  # frames ending at or before this offset are not parsed
        first_open = True
        anchor = b""
        last_growth = time.monotonic()
        waited = False
        try:
            while True:
                if self._should_stop():
                    self._end("stop", framer)
                    return
                try:
                    st = os.stat(self.path)
                except FileNotFoundError:
                    st = None
                restart = None
                if st is None:
                    if fd is None and not waited:
                        self._notify(f"{self.path}: waiting for the file to appear")
                        waited = True
                elif fd is None:
                    fd = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed below
                    ident = (st.st_dev, st.st_ino)
                    if first_open and not self.from_start:
                        skip_until = st.st_size
                    first_open = False
                    if waited:
                        last_growth = time.monotonic()
                elif (st.st_dev, st.st_ino) != ident:
                    restart = "was replaced by a new file"
                elif st.st_size < self.position:
                    restart = (f"was truncated ({st.st_size} bytes, {self.position} "
                               "already read)")
                elif anchor:
                    fd.seek(self.position - len(anchor))
                    if fd.read(len(anchor)) != anchor:
                        restart = "was rewritten (the bytes already read changed)"
                if restart is not None:
                    self.restarts += 1
                    self._notify(f"{self.path}: the file {restart}; following it again "
                                 "from the start (frame numbers from 0)")
                    fd.close()
                    fd, ident, anchor, skip_until = None, None, b"", 0
                    framer = _Framer(self.path, self.format)
                    self.position = 0
                    last_growth = time.monotonic()
                    continue
                grew = False
                while fd is not None:
                    fd.seek(self.position)
                    data = fd.read(self.block_size)
                    if not data:
                        break
                    grew = True
                    framer.buf += data
                    self.position += len(data)
                    anchor = (anchor + data[-ANCHOR_BYTES:])[-ANCHOR_BYTES:]
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
