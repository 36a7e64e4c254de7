"""Overlap view: heatmap of overlap(row | column) over files or labels.

overlap(A | B) is the fraction of A's environments with dH(. | B) <= 0, i.e.
already covered by B. Values are annotated; clicking a cell shows the
histograms of dH(row | column) and dH(column | row).
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import param

from .. import dhscale
from ..state import OverlapResult
from .atoms import dh_histogram
from .base import EMPTY_TEXT, ZOOM_OPTS, View, placeholder, plot_pane

#: Width (px) of each of the two histograms of a clicked cell: fixed, as a responsive
#: plot in a fixed-width column collapses to nothing in Bokeh's layout.
HISTOGRAM_WIDTH = 440


def heatmap_table(result: OverlapResult):
    """Long table for the heatmap with a text column (values to 2 decimals)."""
    table = result.long_table()
    table["text"] = np.array([f"{v:.2f}" for v in table["overlap"]], dtype=object)
    for column in ("row", "column"):
        table[column] = table[column].astype(object)
    return table


def cell_at(result: OverlapResult, x, y) -> tuple[int, int] | None:
    """(row, column) indices of the heatmap cell at a clicked position.

    Categorical axes report the category name; numeric positions are rounded.
    """
    names = result.names

    def index(value):
        if value is None:
            return None
        if isinstance(value, str):
            return names.index(value) if value in names else None
        i = int(round(float(value)))
        return i if 0 <= i < len(names) else None

    col, row = index(x), index(y)
    if row is None or col is None:
        return None
    return row, col


def overlap_histogram(result: OverlapResult, row: int, col: int, color: str,
                      mode: str = "linear") -> hv.Histogram:
    """Histogram of dH(row | column) on ``mode``'s dH scale, titled with the overlap value."""
    edges, counts = dh_histogram(result.delta[(row, col)], 60, mode=mode, bulk_bins=15)
    # two lines: file names are long and the plot is narrow
    title = (f"dH({result.names[row]} | {result.names[col]}):\n"
             f"overlap {result.matrix[row, col]:.2f}")
    xlabel = dhscale.axis_label("dH (nats)", mode)
    return hv.Histogram((edges, counts), kdims=[hv.Dimension("dH", label=xlabel)],
                        vdims=[hv.Dimension("count", label="environments")]).opts(
        title=title, color=color, line_color=None, width=HISTOGRAM_WIDTH, height=240,
        xlabel=xlabel, hooks=[dhscale.axis_hook("x", mode, target=6)], framewise=True,
        fontsize={"title": "10pt"}, **ZOOM_OPTS)


class OverlapView(View):
    """Overlap matrix heatmap with per-cell dH histograms."""

    title = "Overlap"

    grouping = param.Selector(default=None, objects=[], allow_None=True,
                              doc="Group environments by file or by label.")
    cell = param.NumericTuple(default=None, allow_None=True, length=2,
                              doc="(row, column) clicked.")

    @param.depends("state.results", watch=True, on_init=True)
    def _on_results(self, *_):
        res = self.results
        if res is None:
            return
        options = list(res.overlap)
        self.param.grouping.objects = list(options)
        self.cell = None
        self.grouping = options[0] if options else None

    def result(self) -> OverlapResult | None:
        if self.results is None or self.grouping is None:
            return None
        return self.results.overlap.get(self.grouping)

    def _on_tap(self, x=None, y=None, **_):
        res = self.result()
        if res is None:
            return
        cell = cell_at(res, x, y)
        if cell is not None:
            self.cell = cell

    @param.depends("grouping", "state.results")
    def heatmap(self):
        if self.results is None:
            return placeholder(EMPTY_TEXT)
        res = self.result()
        if res is None:
            return placeholder("The overlap needs at least two files (or two labels).")
        table = heatmap_table(res)
        kd = [hv.Dimension("column", label="reference (column)"),
              hv.Dimension("row", label="test (row)")]
        heat = hv.HeatMap(table[["column", "row", "overlap"]], kd,
                          [hv.Dimension("overlap", range=(0, 1))]).opts(
            cmap="Blues", clim=(0, 1), colorbar=True, clabel="overlap(row | column)",
            tools=["tap", "hover"], responsive=True, height=420, xrotation=30,
            title=f"overlap(row | column) by {res.grouping}", invert_yaxis=True,
            # the clicked cell is outlined; the others keep their colour (a faded matrix
            # could not be read against its colour bar)
            nonselection_alpha=1.0, selection_line_color="black", selection_line_width=3,
        )
        text_color = np.where(table["overlap"].to_numpy() > 0.6, "white", "black").astype(object)
        labels = hv.Labels(table.assign(color=text_color), kd, ["text", "color"]).opts(
            text_color="color", text_font_size="11pt")
        tap = hv.streams.Tap(source=heat)
        tap.add_subscriber(self._on_tap)
        note = pn.pane.Markdown(
            "Overlap of a row with a column: the fraction of the row's environments with "
            "dH(row | column) <= 0. Sampled environments per group: "
            + ", ".join(f"{k}: {v:,}" for k, v in res.sizes.items()) + ". "
            + _bandwidth_text(res.bandwidths) + "Click a cell.",
        )
        return pn.Column(plot_pane(heat * labels, name="overlap-heatmap"), note,
                         sizing_mode="stretch_width")

    @param.depends("cell", "grouping", "state.results", "state.dh_scale")
    def histograms(self):
        res = self.result()
        if res is None:
            return pn.Spacer()
        if self.cell is None:
            return placeholder("Click a cell to see its two dH histograms.")
        i, j = (int(v) for v in self.cell)
        mode = self.state.dh_scale
        # two different distributions: each histogram is its own plot with its own axes
        # and its own dH = 0 line (one element drawn in two plots is one Bokeh model
        # referenced twice)
        panes = [
            plot_pane(overlap_histogram(res, a, b, color, mode)
                      * hv.VLine(0).opts(color="black", line_dash="dashed"),
                      sizing_mode="fixed", name=f"overlap-histogram-{k}")
            for k, (a, b, color) in enumerate(((i, j, "#4c72b0"), (j, i, "#dd8452")))
            if k == 0 or i != j  # a diagonal cell has one distribution
        ]
        return pn.Column(*panes, name="overlap-histograms", width=HISTOGRAM_WIDTH + 20)

    def panel(self) -> pn.viewable.Viewable:
        controls = pn.Param(self.param, parameters=["grouping"], show_name=False,
                            default_layout=pn.Row)
        return pn.Column(
            controls,
            pn.Row(pn.Column(self.heatmap, sizing_mode="stretch_width"),
                   pn.Column(self.histograms, width=460), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
            name="Overlap",
        )


def _bandwidth_text(bandwidths: dict[str, float]) -> str:
    """``"h = 0.015 Å⁻¹. "``, or each column's h when they differ (the volume rule)."""
    values = set(bandwidths.values())
    if not values:
        return ""
    if len(values) == 1:
        return f"h\u00a0=\u00a0{values.pop():.4g}\u00a0Å⁻¹. "
    return "h of each column (its volume rule): " + ", ".join(
        f"{k}: {v:.4g}" for k, v in bandwidths.items()) + " Å⁻¹. "

