"""Frame selections: the index a user gives and the frames a splitter keeps.

:func:`parse_index` turns ``":"``, ``"3"``, ``"-1"``, ``"::10"`` into an ``int``
or a ``slice`` (one line for a bad one), :func:`index_text` writes one back for
the messages, and :class:`Selection` is the membership test the frame splitters
(:mod:`quests_core.io_xyz`, :mod:`quests_core.io_lammps`) use to keep only the
text of the wanted frames (:data:`NOTHING` keeps none: counting).

Invariants
----------
- Imports nothing of ``quests_core`` but :mod:`quests_core.errors`.
- Memory: constant.
"""

from __future__ import annotations

import numpy as np

from quests_core.errors import QuestsError

__all__ = ["NOTHING", "Selection", "index_text", "kept", "parse_index"]


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
        raise QuestsError(f"index {index_text(result)!r}: the step must be a positive integer")
    return result


def index_text(index: int | slice) -> str:
    """A selection as ``parse_index`` reads it (``"3"``, ``"::10"``, ``"5:"``)."""
    if isinstance(index, int):
        return str(index)
    parts = ["" if v is None else str(v) for v in (index.start, index.stop, index.step)]
    text = ":".join(parts).rstrip(":")
    return text if ":" in text else text + ":"


class Selection:
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


class _Nothing(Selection):
    """Selects no frame but lets the whole file be scanned."""

    def __init__(self):
        super().__init__(0, None, 1)

    def __contains__(self, frame: int) -> bool:
        return False

    def last(self) -> int | None:
        return None


NOTHING = _Nothing()


def kept(start: int, stop: int | None, step: int) -> Selection | None:
    """The frames a splitter keeps the text of: None for every frame, else a Selection."""
    if stop is None and start == 0 and step == 1:
        return None
    return Selection(start, stop, step)

