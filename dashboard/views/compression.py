"""Compression view: H, D and overlap of compressed datasets against the subset
size, for every method (MSC, farthest-point sampling, k-means, random).

This module also holds what the three analysis views (compression, active
learning, uncertainty) share: :class:`AnalysisView`, the Param base class with
the file choice, the Run / Cancel buttons and the progress bar, which runs its
task (:mod:`dashboard.tasks`) through a :class:`dashboard.jobs.JobRunner`. The
views hold only widgets and plots; the science is in :mod:`quests_core.analysis`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from quests_core.analysis import compression as comp
from quests_core.errors import QuestsError

from ..jobs import ComputeJob, JobRunner
from ..state import ERROR_MS, FileSpec, RunSettings
from ..tasks import METHOD_LABELS, CompressionRequest, CompressionResult, compression_task
from .base import (
    ZOOM_OPTS,
    View,
    control_box,
    fraction_limits,
    frames_text,
    placeholder,
    plot_pane,
    report_table,
)

#: ``task(files, request, progress, cancel, n_threads) -> result``, a module-level
#: function of :mod:`dashboard.tasks` (the worker process imports it by name).
Task = Callable[..., Any]

class AnalysisView(View):
    """Base of the analysis views: pick a file, Run off the event loop, show the result.

    Subclasses set :attr:`task` (a module-level function of :mod:`dashboard.tasks`),
    implement :meth:`request` (checked inputs as a frozen request, raising
    QuestsError) and
    :meth:`body` (the plots of :attr:`result`), and list their controls in
    :attr:`controls`.
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
    running = param.Boolean(default=False, doc="The analysis is running.")
    progress = param.Integer(default=0, bounds=(0, 100), doc="Progress (%).")
    status = param.String(default="Choose a file and press Run.")
    result = param.Parameter(default=None, doc="Result of the last run.")

    def __init__(self, **params):
        super().__init__(**params)
        self.runner = JobRunner(type(self).task, on_finish=self.finish)
        self.runner.param.watch(self._on_runner, ["running", "progress", "status"])
        self.run_button = pn.widgets.Button(label="Run", color="success", width=120)
        self.cancel_button = pn.widgets.Button(label="Cancel", color="danger", disabled=True,
                                               width=90)
        self.progress_bar = pn.indicators.Progress(value=0, max=100, bar_color="success",
                                                   sizing_mode="stretch_width")
        self.status_text = pn.pane.Markdown(self.status, margin=(0, 10))
        self.run_button.on_click(self._on_run)
        self.cancel_button.on_click(lambda _: self.cancel())
        self.param.watch(self._on_status, ["status", "progress", "running"])
        self.state.param.watch(self._on_files, "files")
        self._on_files()

    def _on_runner(self, *events) -> None:
        """The runner's running, progress and status, shown by this view."""
        self.param.update({e.name: e.new for e in events})

    @property
    def _job(self) -> ComputeJob | None:
        """The last job started."""
        return self.runner.job

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

    def spec(self, name: str | None = None) -> FileSpec:
        """The chosen file (``name`` or :attr:`source`)."""
        name = self.source if name is None else name
        for f in self.state.files:
            if f.name == name:
                return f
        raise QuestsError("no file chosen: add a file in the sidebar (Data) and choose it here")

    def base_settings(self) -> RunSettings:
        """Descriptor settings (k, cutoff, bandwidth, seed) from the sidebar, frozen."""
        return self.state.settings.frozen()

    def request(self) -> tuple[list[FileSpec], Any]:  # pragma: no cover - abstract
        """Files and the frozen request of the job; raises QuestsError for bad input."""
        raise NotImplementedError

    # --------------------------------------------------------------------- run

    def make_job(self) -> ComputeJob | None:
        """A job for the current inputs, or None (with a notification) when they are bad."""
        if self.running:
            self.state.notify("warning", f"{self.title}: an analysis is already running.")
            return None
        try:
            files, request = self.request()
        except QuestsError as exc:
            self.status = f"Not started: {exc}"
            self.state.notify("error", f"{self.title}: {exc}")
            return None
        return self.runner.start(files, request, mode=self.job_mode)

    async def _on_run(self, _event=None) -> None:
        await self.run()

    async def run(self) -> ComputeJob | None:
        """Run the analysis off the event loop; the result lands in :attr:`result`."""
        job = self.make_job()
        return None if job is None else await self.runner.drive(job)

    def run_sync(self, timeout: float = 600.0) -> ComputeJob | None:
        """Run to completion in the calling thread (scripts and tests)."""
        job = self.make_job()
        return None if job is None else self.runner.drive_sync(job, timeout)

    def cancel(self) -> None:
        self.runner.cancel()

    def finish(self, job: ComputeJob) -> None:
        """Put a finished job's outcome into :attr:`result` or a notification."""
        if job.state == "done" and job.result is not None:
            self.result = job.result
            self.progress, self.status = 100, f"Done: {self.describe(job.result)}"
            self.state.notify("success", f"{self.title}: {self.describe(job.result)}")
        elif job.state == "cancelled":
            self.progress, self.status = 0, "Cancelled"
            self.state.notify("info", f"{self.title}: cancelled")
        else:
            self.progress, self.status = 0, f"Failed: {job.error}"
            self.state.notify("error", f"{self.title}: {job.error or 'analysis failed'}",
                              duration=ERROR_MS)

    def describe(self, result) -> str:
        """One line about a result (status bar and notification)."""
        return "done"

    def _on_status(self, *_) -> None:
        self.status_text.object = self.status
        self.progress_bar.value = int(self.progress)
        self.run_button.disabled = self.running
        self.cancel_button.disabled = not self.running

    # ------------------------------------------------------------------ layout

    def body(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def panel(self) -> pn.viewable.Viewable:
        widgets = control_box(self, ["source", *self.controls], self.widget_types())
        return pn.Column(
            widgets,
            pn.Row(self.run_button, self.cancel_button, self.progress_bar,
                   sizing_mode="stretch_width"),
            self.status_text,
            pn.Column(pn.bind(lambda _: self.body(), self.param.result),
                      sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
            name=self.title,
        )

    def widget_types(self) -> dict:
        """Widget overrides for :meth:`panel` (subclasses extend)."""
        return {}

#: What the information gap is measured from (quests_core.analysis.compression.gap_reference).
GAP_KINDS = {
    "asymptote": "asymptote of the full set's learning curve",
    "full": "entropy of the full set: its learning curve gave no asymptote within log n",
}


# ----------------------------------------------------------------------------
# compression
# ----------------------------------------------------------------------------

METHOD_COLORS = {"msc": "#d62728", "fps": "#1f77b4", "kmeans": "#2ca02c", "random": "#7f7f7f"}
#: Report column -> axis label (with unit).
METRICS = {
    "entropy": "H (nats)",
    "diversity": "D (nats)",
    "overlap": "overlap (fraction of the full set)",
}
#: Headers of the report table (words with units).
REPORT_HEADERS = {"size": "structures", "n_envs": "environments (mean over seeds)",
                  "entropy": "H (nats)", "entropy_std": "H std (nats)",
                  "diversity": "D (nats)", "diversity_std": "D std (nats)",
                  "overlap_std": "overlap std", "info_gap": "information gap (nats)"}
#: Plot titles of the metrics.
METRIC_TITLES = {"entropy": "H against subset size", "diversity": "D against subset size",
                 "overlap": "overlap with the full set"}


def parse_fractions(text: str) -> tuple[float, ...]:
    """Fractions in (0, 1] from a comma-separated text, sorted and unique.

    Raises
    ------
    QuestsError
        For an empty list, a non-number or a fraction outside (0, 1].
    """
    parts = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    if not parts:
        raise QuestsError("no compression fraction given (empty selection)")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError as exc:
            raise QuestsError(f"fraction {part!r} is not a number") from exc
        comp.fraction_to_size(value, 1)  # raises for a fraction outside (0, 1]
        values.append(value)
    return tuple(sorted(set(values)))


def metric_plot(report: pd.DataFrame, metric: str) -> hv.Overlay:
    """``metric`` against the subset size, one curve per method (error bars: seeds)."""
    if metric not in METRICS:
        raise QuestsError(f"unknown compression metric {metric!r}; use one of {list(METRICS)}")
    xd = hv.Dimension("size", label="subset size (structures)")
    yd = hv.Dimension(metric, label=METRICS[metric])
    elements = []
    for method in pd.unique(report["method"]):
        df = report.loc[report["method"] == method, ["size", metric, f"{metric}_std"]]
        color = METHOD_COLORS.get(method, "black")
        name = METHOD_LABELS.get(method, method)
        elements.append(hv.Curve(df, xd, yd, label=name).opts(color=color, line_width=2))
        elements.append(hv.Scatter(df, xd, yd, label=name).opts(color=color, size=6,
                                                                tools=["hover"]))
        if (df[f"{metric}_std"] > 0).any():
            elements.append(hv.ErrorBars(df, xd, [yd, f"{metric}_std"]).opts(color=color))
    opts = {}
    if metric == "overlap":  # a fraction: its data's range (error bars in), within [0, 1]
        values, std = report[metric].to_numpy(float), report[f"{metric}_std"].to_numpy(float)
        opts["ylim"] = fraction_limits(np.concatenate([values - std, values + std]))
    # the legend goes below the axes: inside, it covered the curves of small subsets
    return hv.Overlay(elements).opts(
        title=METRIC_TITLES[metric], responsive=True,
        height=360, show_grid=True, legend_position="bottom", legend_cols=2,
        framewise=True, **ZOOM_OPTS, **opts,
    )


class CompressionView(AnalysisView):
    """H, D and overlap of compressed subsets against their size, per method."""

    title = "Compression"
    task = staticmethod(compression_task)
    controls = ("methods", "fractions", "n_seeds", "env_step", "information_gap")
    name_hints = ("dataset", "label", "train")

    methods = param.ListSelector(default=list(comp.METHODS), objects=list(comp.METHODS),
                                 doc="Compression methods compared.")
    fractions = param.String(default="0.1, 0.2, 0.3, 0.5, 0.7, 1.0",
                             doc="Fractions of the structures kept, each in (0, 1].")
    n_seeds = param.Integer(default=3, bounds=(1, 10),
                            doc="Seeds averaged for random and k-means.")
    env_step = param.Integer(default=4, bounds=(1, 64),
                             doc="Keep every n-th environment of each structure (faster).")
    information_gap = param.Boolean(default=True,
                                    doc="Fit the full set's learning curve for the gap.")
    result = param.ClassSelector(class_=CompressionResult, allow_None=True)

    def request(self) -> tuple[list[FileSpec], CompressionRequest]:
        spec = self.spec()
        if not self.methods:
            raise QuestsError("no compression method chosen (empty selection)")
        settings = self.base_settings()
        seed = settings.core.seed
        return [spec], CompressionRequest(
            settings=settings,
            methods=tuple(m for m in comp.METHODS if m in self.methods),
            fractions=parse_fractions(self.fractions),
            seeds=tuple(range(seed, seed + int(self.n_seeds))),
            env_step=int(self.env_step),
            gap=bool(self.information_gap),
        )

    def describe(self, result: CompressionResult) -> str:
        methods = result.report["method"].nunique()
        return (f"compressed {result.source} ({frames_text(result.frames)}: "
                f"{result.n_structures} structures, {result.n_envs:,} environments) with "
                f"{methods} method(s)")

    def widget_types(self) -> dict:
        return {"methods": pn.widgets.MultiChoice}

    def plots(self) -> hv.Layout:
        report = self.result.report
        return hv.Layout([metric_plot(report, m) for m in METRICS]).cols(3)

    def _report_csv(self) -> io.BytesIO:
        if self.result is None:
            raise QuestsError("nothing to download: run the compression first")
        return io.BytesIO(self.result.report.to_csv(index=False).encode())

    def body(self):
        res = self.result
        if res is None:
            return placeholder("Choose a dataset and press **Run** to compare compression "
                               "methods (MSC, farthest-point sampling, k-means, random).")
        gap = ("" if res.gap_kind == "none" else
               f" Information gap = {res.gap_reference:.3f} nats "
               f"({GAP_KINDS.get(res.gap_kind, res.gap_kind)}) - H(subset).")
        note = pn.pane.Markdown(
            f"**{res.source}**: {res.n_structures} structures, {res.n_envs:,} environments "
            f"(every {res.env_step}. of each structure), k = {res.k}, cutoff = "
            f"{res.cutoff:g} Å, h = {res.h:.4g} 1/Å. MSC grows the subset greedily from the "
            "structure of highest entropy, adding the one least covered by the subset; error "
            f"bars: spread over seeds.{gap}", name="compression-info")
        table = report_table(res.report.drop(columns=["gap_reference"]), REPORT_HEADERS,
                             counts=("n_envs",))
        download = pn.widgets.FileDownload(
            callback=lambda: self.safe_download(self._report_csv),
            filename="compression_report.csv", label="Download report (CSV)", width=220)
        return pn.Column(
            note,
            plot_pane(self.plots(), name="compression-plots"),
            download,
            pn.widgets.Tabulator(table, show_index=False, disabled=True, pagination="local",
                                 page_size=12, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
