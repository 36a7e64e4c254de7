"""What every reader module needs (:mod:`quests_core.io_xyz`, ``io_lammps``,
``io_ase``, ``io_checks``, ``io_mdanalysis``, ...).

The frame record (:class:`Frame`), the truncated-last-frame rule
(:class:`TruncatedFrameWarning`, :func:`skip_last`), the type-map parser
(:func:`parse_type_map`: LAMMPS types or atom names), the input-path checks
(:func:`check_path`) and the one-line error helpers (:func:`one_line`, :func:`frame_error`).

Invariants
----------
- This module imports nothing of ``quests_core`` but :mod:`quests_core.errors`:
  every reader module imports it, never the other way, so the readers have no
  import cycle.
- :mod:`quests_core.io` re-exports :class:`Frame`, :class:`TruncatedFrameWarning`,
  :func:`parse_type_map` and :func:`type_map_names`; import them from there.
- Nothing here reads a file's content (memory: constant).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from quests_core.errors import QuestsError

__all__ = [
    "Frame",
    "FrameRequest",
    "TruncatedFrameWarning",
    "check_path",
    "frame_error",
    "noting",
    "one_line",
    "parse_type_map",
    "skip_last",
    "type_map_names",
]


class TruncatedFrameWarning(UserWarning):
    """The last frame of a multi-frame file ends early and was skipped.

    The rule (issue 11): a frame cut short (fewer atom lines than its header
    declares, or the file ends inside it) is an error naming the frame, except
    the *last* frame of a file that holds at least one complete frame before
    it -- a trajectory still being written. That frame is skipped with this
    warning and counted (``skipped`` of :func:`iter_frames`,
    ``Dataset.skipped_frames``). Everything else (a short frame followed by
    more frames, extra atom lines, a cut single-frame file) is an error.

    The binary MD trajectories (XTC, TRR, DCD) also use it when their frames
    end before the file does (garbage, a zero-filled tail or a broken frame
    header after them): the frames before are read, and the warning names the
    frame and byte offset where reading stopped and how many frames were read.
    """


@dataclass(frozen=True)
class FrameRequest:
    """What a reader of the format registry (:mod:`quests_core.formats`) is asked for.

    The frames ``range(start, stop, step)`` of ``path`` (``stop`` None: to the end)
    in the format ``entry`` (an :class:`~quests_core.formats.IOFormat`), with the
    options a reader may use: the parsed ``type_map``, the ``skipped`` list that
    receives a truncated last frame the reader skips (:func:`skip_last`), and the
    ``topology`` (and its ``topology_format``) of an MD trajectory.
    """

    path: str
    entry: Any
    start: int = 0
    stop: int | None = None
    step: int = 1
    type_map: Mapping[Any, str] = field(default_factory=dict)
    skipped: list | None = None
    topology: str | os.PathLike | None = None
    topology_format: str | None = None

    @property
    def fmt(self) -> str:
        """The format's name."""
        return self.entry.name


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


def parse_type_map(
    type_map: Mapping[int | str, str] | Sequence[str] | str | None,
) -> dict[int, str] | dict[str, str]:
    """Normalise a type map: LAMMPS type -> element, or atom name -> element.

    Parameters
    ----------
    type_map : mapping, sequence, str or None
        LAMMPS types: ``{1: "Cu", 2: "Ni"}``, ``["Cu", "Ni"]`` (type 1 is the
        first entry), ``"Cu,Ni"``, ``"Cu Ni"`` or ``"1=Cu,2=Ni"`` /
        ``"1:Cu 2:Ni"``. Atom names (of an MD trajectory's topology, see
        :mod:`quests_core.io_mdanalysis`): ``"OW=O,HW1=H"`` / ``"MW:O"`` or
        ``{"OW": "O"}``: every entry whose key is not an integer is a name
        (case-sensitive; matched against the topology's atom names, else its
        atom types). One map holds either kind, not both.

    Returns
    -------
    dict[int, str] or dict[str, str]
        LAMMPS type (int) or atom name (str) -> element symbol; empty if
        ``type_map`` is None.

    Raises
    ------
    QuestsError
        On unknown element symbols (``X`` is none), malformed entries, or a
        mix of LAMMPS types and names.
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
    types: dict[int, str] = {}
    names: dict[str, str] = {}
    for key, symbol in pairs:
        symbol = str(symbol).strip()
        if symbol not in atomic_numbers or symbol == "X":
            raise QuestsError(f"type map: {symbol!r} is not a chemical element")
        if isinstance(key, bool) or not isinstance(key, (int, str, np.integer)):
            raise QuestsError(f"type map: {key!r} is neither a LAMMPS type nor an atom name")
        text = str(key).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            lammps_type = int(text)
            if lammps_type < 1:
                raise QuestsError(f"type map: LAMMPS types start at 1, got {lammps_type}")
            types[lammps_type] = symbol
        elif text and not re.search(r"\s", text):
            names[text] = symbol
        else:
            raise QuestsError(f"type map: {key!r} is neither a LAMMPS type nor an atom name")
    if types and names:
        raise QuestsError(
            f"type map {type_map!r}: mix of LAMMPS types (1=Cu) and atom names (OW=O); "
            "give one or the other"
        )
    return names or types


def type_map_names(type_map: Mapping[Any, str]) -> bool:
    """Whether a parsed type map (:func:`parse_type_map`) maps atom names, not LAMMPS types."""
    return any(isinstance(k, str) for k in type_map)


def check_path(path: str | os.PathLike) -> Path:
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


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not text:
        text = type(exc).__name__
    return text[:300]


def frame_error(source: str, frame: int, message: str) -> QuestsError:
    err = QuestsError(f"frame {frame}: {message}", source=str(source))
    err.index = frame
    return err


def skip_last(path: str, frame: int, reason: str, skipped: list | None) -> None:
    """The truncated-last-frame rule: warn, count, go on (see TruncatedFrameWarning)."""
    message = f"{path}: frame {frame}: {reason}; skipped (file still being written?)"
    warnings.warn(TruncatedFrameWarning(message), stacklevel=4)
    if skipped is not None:
        skipped.append((path, frame, reason))


@contextlib.contextmanager
def noting(category: type[Warning], notes: list[str]) -> Iterator[None]:
    """Record the messages of ``category`` warned inside into ``notes``; every warning
    (of any category) still reaches the caller's filters and handlers, on leaving."""
    pending: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                pending = list(caught)
    finally:  # also when reading failed: the warnings before the error are shown
        for w in pending:
            if issubclass(w.category, category):
                notes.append(str(w.message))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
