"""Compression view: H, D and overlap of compressed datasets against the subset
size, for every method (MSC, farthest-point sampling, k-means, random).

An :class:`~dashboard.views.base.AnalysisView`: the job runs
:func:`dashboard.tasks.compression_task`; the science is in
:mod:`quests_core.analysis.compression`.
"""

from __future__ import annotations

import io

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from quests_core.analysis import compression as comp
from quests_core.errors import QuestsError

from ..state import FileSpec
from ..tasks import METHOD_LABELS, CompressionRequest, CompressionResult, compression_task
from .base import (
    ZOOM_OPTS,
    AnalysisView,
    fraction_limits,
    frames_text,
    placeholder,
    plot_pane,
    report_table,
)

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


def gap_text(report: pd.DataFrame, gap_reference: float, gap_kind: str) -> str:
    """The information gap in words, for the tab and the report: what it is measured
    from and, when a subset's gap is negative, why that is no error."""
    if gap_kind == "none":
        return ""
    text = (f" Information gap = {gap_reference:.4g} nats "
            f"({GAP_KINDS.get(gap_kind, gap_kind)}) − H(subset).")
    below = report.loc[report["info_gap"] < 0]
    full = report.loc[report["size"] == report["size"].max(), "info_gap"]
    if gap_kind == "asymptote" and len(full) and full.iloc[0] < 0:
        text += (f" The fitted asymptote lies {-full.iloc[0]:.3f} nats below the full set's "
                 "own H (the scatter of the fit): read gaps within that of 0 as 0.")
        below = below.loc[below["size"] < report["size"].max()]
    if len(below):
        methods = ", ".join(METHOD_LABELS.get(m, m) for m in pd.unique(below["method"]))
        text += (
            f" Negative gaps ({methods}; down to {below['info_gap'].min():.3f} nats at "
            f"{int(below.loc[below['info_gap'].idxmin(), 'size'])} structures): those "
            "subsets have a higher entropy than the reference. H is not monotone in the "
            "data: a subset chosen for diversity spreads its environments more evenly than "
            "the full set, whose many similar environments lower its H, so by this measure "
            "no information is missing (small subsets also scatter: see the error bars).")
    return text


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
        gap = gap_text(res.report, res.gap_reference, res.gap_kind)
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
