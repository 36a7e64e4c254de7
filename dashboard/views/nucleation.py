"""Nucleation view: largest solid-like cluster against time with the one CNT
critical-size band of the pooled pre-nucleation frames, and their cluster-size
distribution with its CNT fit (:mod:`quests_core.analysis.clusters`,
:mod:`quests_core.analysis.cnt`; computed by :func:`dashboard.pipeline._nucleation`).

The fit weights are a control of this view: changing them refits the stored
distribution (:func:`dashboard.pipeline.fit_nucleation`, no recomputation).
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from quests_core.analysis.cnt import FIT_WEIGHTS

from ..pipeline import fit_nucleation
from ..state import NucleationResult
from .base import EMPTY_TEXT, ZOOM_OPTS, View, control_box, placeholder, plot_pane
from .trajectory import STRUCTURE_TAB, nearest_structure

#: How the result text names the fit weights.
WEIGHT_WORDS = {"poisson": "Poisson weights (each size weighted with its count)",
                "none": "no weights (every size weighs the same)"}


def _frames_text(frames: np.ndarray) -> str:
    """``frames 1-38`` for a contiguous run, else ``12 frames``."""
    frames = np.asarray(frames)
    if len(frames) == 0:
        return "no frames"
    if len(frames) > 1 and np.all(np.diff(frames) == 1):
        return f"frames {int(frames[0])}-{int(frames[-1])}"
    return f"frame {int(frames[0])}" if len(frames) == 1 else f"{len(frames)} frames"


def nucleation_text(result: NucleationResult) -> str:
    """The result in words (Markdown): clusters, the pooled frames and their one critical
    band, the constants used (or the one-line note why there are none), and the fit with
    its weights (or why there is none)."""
    parts = [
        "Solid-like atoms: dH(atom | solid reference) <= 0; clusters join solid-like atoms "
        f"closer than 3 Å. Largest cluster overall: **{int(result.largest.max())} atoms**."
    ]
    if result.constants is None:
        parts.append(result.note or "No CNT constants: no critical band and no fit.")
    else:
        c = result.constants
        lo, hi = c["gamma_SL range (J/m^2)"]
        parts.append(
            f"CNT constants{' of ' + c['element'] if c.get('element') else ''}: "
            f"T_m = {c['T_melt (K)']:g} K, latent heat {c['latent heat (kJ/mol)']:g} kJ/mol, "
            f"V_atom = {c['V_atom (Å^3)']:g} Å^3, gamma_SL {lo:g}-{hi:g} J/m^2.")
        if np.isfinite(result.t_pooled):
            n_lo, n_hi = result.critical_band
            parts.append(
                f"Pre-nucleation {_frames_text(result.pre_frames)} pooled at their mean "
                f"temperature **{result.t_pooled:.1f} K**: one critical size band "
                f"**{n_lo:.0f}-{n_hi:.0f} atoms**.")
        else:
            parts.append("No frame below the melting point with a temperature: no critical "
                         "band.")
    if result.fit:
        parts.append(f"CNT fit of the pooled cluster sizes with "
                     f"{WEIGHT_WORDS.get(result.weights, result.weights)}: the table below "
                     "the plots.")
    elif result.fit_error:
        parts.append(result.fit_error + ".")
    return " ".join(parts)


def fit_table(result: NucleationResult) -> pd.DataFrame:
    """Fitted CNT parameters as a two-column table."""
    if not result.fit:
        return pd.DataFrame({"quantity": [], "value": []})
    return pd.DataFrame({"quantity": list(result.fit), "value": list(result.fit.values())})


class NucleationView(View):
    """Largest-cluster timeline and cluster-size distribution."""

    title = "Nucleation"

    fit_weights = param.Selector(
        default=FIT_WEIGHTS[0], objects=list(FIT_WEIGHTS), label="CNT fit weights",
        doc="poisson: each cluster size weighted with its count (the default, docs/spec.md); "
            "none: every size weighs the same.")

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

    @param.depends("fit_weights", watch=True)
    def _refit(self) -> None:
        """New weights: refit the session's distribution at once (the text, the fit table
        and the exports follow)."""
        self.result()

    def result(self) -> NucleationResult | None:
        """The session's nucleation result fitted with :attr:`fit_weights` (refitted and
        kept in the results when the weights changed)."""
        res = self.results
        if res is None or res.nucleation is None:
            return None
        if res.nucleation.weights != self.fit_weights:
            res.nucleation = fit_nucleation(res.nucleation, self.fit_weights)
        return res.nucleation

    def body(self):
        res = self.results
        if res is None:
            return placeholder(EMPTY_TEXT)
        nuc = self.result()
        if nuc is None:
            return placeholder(res.nucleation_note or "No solid-like clusters computed.")
        open_button = pn.widgets.Button(label="Open in Structure", color="primary",
                                        width=180)
        open_button.on_click(self.open_in_structure)
        parts = [
            pn.Row(pn.pane.Markdown("Click a frame on the timeline, then open it in Structure "
                                    "(colour by *cluster* there to see the solid-like clusters)."),
                   open_button),
            pn.pane.Markdown(nucleation_text(nuc), name="nucleation-text",
                             sizing_mode="stretch_width"),
            plot_pane(self.timeline(nuc), name="nucleation-timeline"),
            plot_pane(self.distribution(nuc), name="nucleation-distribution"),
        ]
        fit = fit_table(nuc)
        if len(fit):
            parts.append(pn.widgets.Tabulator(fit, show_index=False, disabled=True,
                                              width=420))
        return pn.Column(*parts, sizing_mode="stretch_width")

    def panel(self) -> pn.viewable.Viewable:
        controls = control_box(self, ["fit_weights"], name="nucleation-controls")
        return pn.Column(controls,
                         pn.bind(lambda *_: self.body(), self.state.param.results,
                                 self.param.fit_weights),
                         sizing_mode="stretch_width", name="Nucleation")
