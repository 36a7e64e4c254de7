"""Shared base class and helpers of the views."""

from __future__ import annotations

import io

import panel as pn
import param

from quests_core.errors import QuestsError

from ..state import AppState

#: Message shown by views before anything was computed.
EMPTY_TEXT = "Nothing computed yet: pick files in the sidebar and press **Compute**."


class View(param.Parameterized):
    """A view reads :class:`AppState` and returns a Panel layout from :meth:`panel`."""

    title: str = "View"

    state = param.ClassSelector(class_=AppState, doc="The session state.")

    def panel(self) -> pn.viewable.Viewable:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def results(self):
        return self.state.results

    def safe_download(self, make) -> io.BytesIO:
        """Run a download callback; a QuestsError becomes a notification (empty file)."""
        try:
            return make()
        except QuestsError as exc:
            self.state.notify("error", str(exc))
            return io.BytesIO(b"")


def placeholder(text: str, name: str = "placeholder") -> pn.pane.Alert:
    """An info box used while a view has nothing to show."""
    return pn.pane.Alert(text, alert_type="info", name=name, sizing_mode="stretch_width")
