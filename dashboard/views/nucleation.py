"""Nucleation view: largest solid-like cluster against time with the CNT
critical-size band, and the pre-nucleation cluster-size distribution with its
CNT fit (quests_core.analysis.nucleation)."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn

from ..pipeline import nucleation_available
from ..state import NucleationResult
from .base import EMPTY_TEXT, ZOOM_OPTS, View, placeholder, plot_pane
from .trajectory import STRUCTURE_TAB, nearest_structure

PLACEHOLDER = (
    "**Nucleation analysis not available.** This view needs `quests_core.analysis.nucleation` "
    "(solid-like clusters and the CNT fit), which is not installed."
)


def fit_table(result: NucleationResult) -> pd.DataFrame:
    """Fitted CNT parameters as a two-column table."""
    if not result.fit:
        return pd.DataFrame({"quantity": [], "value": []})
    return pd.DataFrame({"quantity": list(result.fit), "value": list(result.fit.values())})


class NucleationView(View):
    """Largest-cluster timeline and cluster-size distribution."""

    title = "Nucleation"

    def timeline(self, result: NucleationResult) -> hv.Overlay:
        df = result.timeline()
        xcol = "time" if np.isfinite(df["time"]).all() else "structure"
        xd = hv.Dimension(xcol, label="time (ps)" if xcol == "time" else "frame")
        yd = hv.Dimension("largest_cluster", label="largest solid-like cluster (atoms)")
        curve = hv.Curve(df, xd, yd).opts(color="black", line_width=1.5, tools=["hover", "tap"])
        tap = hv.streams.Tap(source=curve)
        tap.add_subscriber(lambda x=None, **_: self._on_tap(df, xcol, x))
        overlay = curve
        band = df[[xcol, "critical_min", "critical_max"]].replace([np.inf, -np.inf], np.nan)
        band = band.dropna()  # no critical size above the melting point
        if len(band) >= 2:
            area = hv.Area(band, xd, [hv.Dimension("critical_min"),
                                      hv.Dimension("critical_max")],
                           label="CNT critical size").opts(color="#f4a582", alpha=0.5,
                                                           line_width=0)
            overlay = area * curve
        return overlay.opts(title=f"Largest solid-like cluster in {result.source}",
                            ylabel="largest solid-like cluster (atoms)", xlabel=xd.label,
                            responsive=True, height=320, show_grid=True,
                            legend_position="top_left", framewise=True,
                            **{**ZOOM_OPTS, "tools": ["hover", "tap"]})

    def _on_tap(self, timeline: pd.DataFrame, xcol: str, x) -> None:
        """A click on the timeline selects the nearest frame (shown by Structure)."""
        if x is not None:
            self.state.selected_structure = nearest_structure(timeline, xcol, float(x))

    def open_in_structure(self, *_) -> None:
        if self.state.selected_structure is None:
            self.state.notify("warning", "Click a frame on the largest-cluster timeline first.")
            return
        self.state.active_tab = STRUCTURE_TAB

    def distribution(self, result: NucleationResult) -> hv.Overlay:
        df = result.distribution()
        df = df[df["count"] > 0]
        xd = hv.Dimension("size", label="cluster size (atoms)")
        yd = hv.Dimension("per_frame", label="clusters per frame")
        pts = hv.Scatter(df, xd, yd, label="measured").opts(color="#3b4cc0", size=6,
                                                           tools=["hover"])
        overlay = pts
        if result.fit_curve is not None:
            xs, ys = result.fit_curve
            overlay = overlay * hv.Curve((xs, ys), xd, yd, label="CNT fit").opts(
                color="#b40426", line_width=2)
        return overlay.opts(title=f"Cluster-size distribution ({result.n_frames} frames)",
                            logy=True, responsive=True, height=320, show_grid=True,
                            legend_position="top_right", framewise=True, **ZOOM_OPTS)

    def body(self):
        if not nucleation_available():
            return pn.pane.Alert(PLACEHOLDER, alert_type="warning", name="nucleation-placeholder")
        res = self.results
        if res is None:
            return placeholder(EMPTY_TEXT)
        if res.nucleation is None:
            return placeholder(res.nucleation_note or "No solid-like clusters computed.")
        nuc = res.nucleation
        open_button = pn.widgets.Button(label="Open in Structure", color="primary",
                                        width=180)
        open_button.on_click(self.open_in_structure)
        parts = [
            pn.Row(pn.pane.Markdown("Click a frame on the timeline, then open it in Structure "
                                    "(colour by *cluster* there to see the solid-like clusters)."),
                   open_button),
            plot_pane(self.timeline(nuc), name="nucleation-timeline"),
            plot_pane(self.distribution(nuc), name="nucleation-distribution"),
        ]
        fit = fit_table(nuc)
        info = nuc.fit_error or "CNT fit of the pre-nucleation cluster sizes:"
        parts.append(pn.pane.Markdown(
            f"Solid-like atoms: dH(atom | solid reference) <= 0; clusters join solid-like atoms "
            f"closer than 3 Å. Largest cluster overall: **{int(nuc.largest.max())} atoms**. "
            f"{info}"))
        if len(fit):
            parts.append(pn.widgets.Tabulator(fit, show_index=False, disabled=True,
                                              width=420))
        return pn.Column(*parts, sizing_mode="stretch_width")

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(pn.bind(lambda _: self.body(), self.state.param.results),
                         sizing_mode="stretch_width", name="Nucleation")
