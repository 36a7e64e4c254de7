"""Shared base classes and helpers of the views: :class:`View` (a view of the session
state), :class:`AnalysisView` (a tab that runs one analysis as a job), plot panes and
small formatting rules."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param

from quests_core.errors import QuestsError

from ..state import AppState
from .job_panel import JobPanel, Outcome

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


#: ``task(files, request, progress, cancel, n_threads) -> result``, a module-level
#: function of :mod:`dashboard.tasks` (the worker process imports it by name).
Task = Callable[..., Any]


class AnalysisView(View):
    """Base of the analysis views (compression, active learning, uncertainty): pick a
    file, Run off the event loop through a :class:`~dashboard.views.job_panel.JobPanel`,
    show the result.

    Subclasses set :attr:`task` (a module-level function of :mod:`dashboard.tasks`),
    implement :meth:`request` (checked inputs as a frozen request, raising
    QuestsError) and :meth:`body` (the plots of :attr:`result`), and list their
    controls in :attr:`controls`. The job's running flag, progress and status are the
    job panel's, :attr:`jobs` (nothing here keeps a copy).
    """

    #: The analysis function run by the job (wrapped in ``staticmethod`` by subclasses).
    task: Task
    #: Parameters shown above the Run button.
    controls: tuple[str, ...] = ()
    #: Words that make a file the default choice of :attr:`source`.
    name_hints: tuple[str, ...] = ()

    source = param.Selector(default=None, objects=[], allow_None=True,
                            doc="File analysed (chosen in the Data view).")
    job_mode = param.Selector(default="process", objects=["process", "thread"],
                              doc="Run the analysis in a worker process or a thread.")
    result = param.Parameter(default=None, doc="Result of the last run.")

    def __init__(self, **params):
        super().__init__(**params)
        self.jobs = JobPanel(
            type(self).task, state=self.state, title=self.title, on_run=self.run,
            on_done=self.use_result,
            status="Choose a file and press Run.",
            busy_text="an analysis is already running.")
        self.state.param.watch(self._on_files, "files")
        self._on_files()

    # ------------------------------------------------------------------ inputs

    #: The file was picked by :meth:`_on_files`, not by the user (so a better one may replace it).
    _auto_source = True
    _setting_source = False

    def _on_files(self, *_) -> None:
        names = [f.name for f in self.state.files]
        # a copy: the Select widget bound to the parameter may add its current value
        # (None) to the very list it was given, which then held None here
        self.param.source.objects = list(names)
        if self.source not in names or self._auto_source:
            self._setting_source = True
            try:
                self.source = (self.preferred(names) or names or [None])[0]
            finally:
                self._setting_source = False
            self._auto_source = True

    def preferred(self, names: list[str]) -> list[str]:
        """The chosen files this analysis should open with, best first (by default those
        whose name holds one of :attr:`name_hints`)."""
        return [n for n in names if any(w in n.lower() for w in self.name_hints)]

    @param.depends("source", watch=True)
    def _on_source_chosen(self) -> None:
        if not self._setting_source:
            self._auto_source = False

    def spec(self, name: str | None = None):
        """The chosen file (``name`` or :attr:`source`)."""
        name = self.source if name is None else name
        for f in self.state.files:
            if f.name == name:
                return f
        raise QuestsError("no file chosen: add a file in the sidebar (Data) and choose it here")

    def base_settings(self):
        """Descriptor settings (k, cutoff, bandwidth, seed) from the sidebar, frozen."""
        return self.state.settings.frozen()

    def request(self) -> tuple[list, Any]:  # pragma: no cover - abstract
        """Files and the frozen request of the job; raises QuestsError for bad input."""
        raise NotImplementedError

    # --------------------------------------------------------------------- run

    def make_job(self):
        """A job for the current inputs, or None (with a notification) when they are bad
        or another analysis of this tab runs."""
        if self.jobs.busy():
            return None
        try:
            files, request = self.request()
        except QuestsError as exc:
            self.jobs.refuse(exc)
            return None
        return self.jobs.start(files, request, mode=self.job_mode)

    async def run(self):
        """Run the analysis off the event loop; the result lands in :attr:`result`."""
        return await self.jobs.drive(self.make_job())

    def run_sync(self, timeout: float = 600.0):
        """Run to completion in the calling thread (scripts and tests)."""
        return self.jobs.drive_sync(self.make_job(), timeout)

    def cancel(self) -> None:
        self.jobs.cancel()

    def use_result(self, result) -> Outcome:
        """Keep a finished job's result; the job panel's status and notification."""
        self.result = result
        text = self.describe(result)
        return Outcome(f"Done: {text}", f"{self.title}: {text}")

    def describe(self, result) -> str:
        """One line about a result (status bar and notification)."""
        return "done"

    # ------------------------------------------------------------------ layout

    def body(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def panel(self) -> pn.viewable.Viewable:
        widgets = control_box(self, ["source", *self.controls], self.widget_types())
        return pn.Column(
            widgets,
            self.jobs,
            pn.Column(pn.bind(lambda _: self.body(), self.param.result),
                      sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
            name=self.title,
        )

    def widget_types(self) -> dict:
        """Widget overrides for :meth:`panel` (subclasses extend)."""
        return {}
