"""Where an error is and what it means: the one-line messages of the readers.

- Where each structure came from (:func:`remember_origin`, :func:`frame_origin`), so
  that :func:`locate_error` turns a later error of the descriptor engine about
  "structure i" of a chunk into one naming the file and the frame.
- A reader's exception in words (:func:`reader_error`): ASE's exceptions become a
  cause a user can act on, in one :class:`~quests_core.errors.QuestsError` line
  naming the file and the frame.
- :func:`describe_line`: a line of the input as a message shows it.
- :class:`StrictWarnings`: reader warnings that mean lost data (a CIF row with the
  wrong number of values) become errors naming the frame.

Invariants
----------
- Imports nothing of ``quests_core`` but :mod:`quests_core.errors` and
  :mod:`quests_core.io_common`; :mod:`quests_core.io` re-exports the public names.
- Memory: one entry per living structure read (weak references; an entry goes
  when its structure does).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from typing import Any

from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.io_common import frame_error, one_line

__all__ = [
    "StrictWarnings",
    "describe_line",
    "frame_origin",
    "locate_error",
    "reader_error",
    "remember_origin",
]

_ORIGINS: dict[int, tuple[weakref.ref, str, int]] = {}


def remember_origin(atoms: Atoms, source: str, frame: int) -> None:
    """Remember that ``atoms`` is frame ``frame`` of ``source`` (see :func:`frame_origin`)."""
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
    text = one_line(exc)
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


def reader_error(path: str, frame: int | None, exc: BaseException,
                 fmt: str | None = None) -> QuestsError:
    """The one-line error of a reader's exception, naming the file (and the frame)."""
    if frame is None:
        return QuestsError(_cause(exc, fmt), source=path)
    return frame_error(path, frame, _cause(exc, fmt))


def describe_line(line: bytes) -> str:
    """A line of the input as a message shows it: quoted (40 characters), or "binary data"."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    text = text.strip()
    if any(ord(c) < 32 and c not in "\t" for c in text):
        return "binary data"
    return repr(text[:40])


class StrictWarnings:
    """Reader warnings that mean lost data (a CIF row with the wrong number of values)
    become errors naming the frame; the other warnings pass. Only the formats whose
    registry entry asks for it (``strict``: CIF) are watched
    (``warnings.catch_warnings`` is process-wide state)."""

    def __init__(self, path: str, frame: int, fmt: str, strict: bool):
        self.path, self.frame, self.fmt = path, frame, fmt
        self._cm = warnings.catch_warnings(record=True) if strict else None

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
            text = one_line(item.message)
            if "tokens" in text or "Wrong number" in text:
                raise frame_error(self.path, self.frame, f"corrupt {self.fmt} data ({text})")
        for item in self._log:
            warnings.warn_explicit(
                item.message, item.category, item.filename, item.lineno
            )
        return False

