"""The one exception type of quests_core.

Every error that bad input can cause is raised as :class:`QuestsError` with a
one-line message that names where the problem is (file, structure/frame index)
and what it is, so the CLI can print it and the dashboard can show it as a
notification without a traceback.
"""

from __future__ import annotations


class QuestsError(ValueError):
    """Bad input or an impossible request; the message is one line.

    ``detail`` is the message without its location prefix, so a caller that knows
    more (the file, the frame number in that file) can re-raise it with
    :meth:`located`.
    """

    def __init__(self, message: str, *, source: str | None = None, index: int | None = None):
        parts = []
        if source is not None:
            parts.append(str(source))
        if index is not None:
            parts.append(f"structure {index}")
        prefix = ": ".join([", ".join(parts)]) + ": " if parts else ""
        text = (prefix + str(message)).replace("\r", " ").replace("\n", " ")
        super().__init__(text)
        self.source = source
        self.index = index
        self.detail = str(message).replace("\r", " ").replace("\n", " ")

    def located(self, source: str | None = None, index: int | None = None) -> QuestsError:
        """The same error with another location (``None`` keeps this error's own)."""
        return QuestsError(
            self.detail,
            source=self.source if source is None else source,
            index=self.index if index is None else index,
        )


class Cancelled(Exception):
    """A long computation was cancelled by its caller (not an error of the input)."""
