"""Shared base class and helpers of the views."""

from __future__ import annotations

import io

import numpy as np
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


#: Tools of every zoomable plot: Ctrl + wheel zooms (:class:`PlotPane`) and a drag pans
#: from the start.
ZOOM_OPTS: dict = {"tools": ["hover"], "active_tools": ["pan", "wheel_zoom"],
                   "default_tools": ["pan", "box_zoom", "wheel_zoom", "reset", "save"]}


def report_table(report, headers: dict[str, str], counts: tuple[str, ...] = ()):
    """A report as shown in a table: ``counts`` columns rounded to whole numbers (a
    count of environments, or its mean over seeds, reads "216", not "216.0"), the
    others to 4 decimals, and the columns renamed to ``headers`` (words with units)."""
    import pandas as pd

    table = report.copy()
    for column in counts:
        if column in table:
            table[column] = pd.array(np.round(table[column].to_numpy(float)), dtype="Int64")
    return table.round(4).rename(columns=headers)


def frames_text(index: str) -> str:
    """A file's frame selection in words: ``all frames`` or ``frames ::2``."""
    index = (index or ":").strip()
    return "all frames" if index in (":", "::", "0:") else f"frames {index}"


def fraction_limits(values, pad: float = 0.05) -> tuple[float, float]:
    """y limits of a fraction: the finite values' range with ``pad`` (5 %) of it on each
    side, inside [0, 1] (an axis to 2 for data up to 1, or to 1 for data up to 0.04,
    hides the data)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return 0.0, 1.0
    lo, hi = float(np.clip(v.min(), 0.0, 1.0)), float(np.clip(v.max(), 0.0, 1.0))
    span = hi - lo if hi > lo else max(hi, 0.02)
    return max(0.0, lo - pad * span), min(1.0, hi + pad * span)


class PlotPane(pn.pane.HoloViews):
    """A HoloViews pane whose wheel zoom needs Ctrl held: the plain wheel scrolls the
    page (over a tall tab full of plots it zoomed them, linked ones all at once)."""

    def _render(self, doc, comm, root):
        plot = super()._render(doc, comm, root)
        ctrl_wheel(plot.state)
        return plot


def ctrl_wheel(model) -> None:
    """Every wheel zoom of a Bokeh model tree zooms only with Ctrl held."""
    from bokeh.models import WheelZoomTool

    for tool in model.select({"type": WheelZoomTool}):
        tool.modifiers = {"ctrl": True}
        tool.description = "Wheel zoom (hold Ctrl; the wheel alone scrolls the page)"


def plot_pane(obj, **kw) -> pn.pane.HoloViews:
    """A HoloViews pane that owns its axes.

    Panel links the axes of every HoloViews pane in a document that shares a
    dimension name (``linked_axes=True``): a dH histogram would take the
    per-atom plot's dH range, a Stores time axis a trajectory's. Plots that
    must share an axis do it inside one HoloViews Layout (``shared_axes``),
    never across panes. The views build their elements ``framewise``, so ranges
    follow the data on every update.
    """
    kw.setdefault("sizing_mode", "stretch_width")
    return PlotPane(obj, linked_axes=False, **kw)


def dh_scale_widget(state: AppState) -> pn.Column:
    """The session's dH-scale switch (asinh | linear) under its label; every view shows
    the same value (``AppState.dh_scale``)."""
    toggle = pn.widgets.RadioButtonGroup.from_param(
        state.param.dh_scale, name="dH scale", color="light", width=150, sizing_mode="fixed",
        description="asinh: linear within ±1 nat, logarithmic beyond, so the bulk and "
                    "the outliers both show; linear: plain dH.")
    return pn.Column(pn.pane.Markdown("dH scale", margin=(0, 10)), toggle, margin=0,
                     width=170, sizing_mode="fixed")


def control_box(parameterized: param.Parameterized, parameters: list[str],
                widgets: dict | None = None, width: int = 170, **kw) -> pn.FlexBox:
    """Widgets of ``parameters`` side by side at a fixed width, wrapping onto new rows
    (labels never collide, however narrow the window)."""
    box = pn.Param(parameterized.param, parameters=list(parameters), widgets=widgets or {},
                   show_name=False, default_layout=pn.Row)
    items = box.layout.objects[0].objects
    for widget in items:
        widget.sizing_mode = "fixed"
        if isinstance(widget, pn.widgets.Checkbox):
            widget.param.update(width=min(width, 150), margin=(30, 10, 10, 10))
        elif isinstance(widget, pn.widgets.MultiChoice):
            widget.width = 2 * width
        else:
            widget.width = width
    kw.setdefault("sizing_mode", "stretch_width")
    return pn.FlexBox(*items, **kw)


def placeholder(text: str, name: str = "placeholder") -> pn.pane.Alert:
    """An info box used while a view has nothing to show."""
    return pn.pane.Alert(text, alert_type="info", name=name, sizing_mode="stretch_width")
