"""Nucleation view: largest solid-like cluster against time with the one CNT
critical-size band of the pooled pre-nucleation frames, and their cluster-size
distribution with its CNT fit (:mod:`quests_core.analysis.clusters`,
:mod:`quests_core.analysis.cnt`; computed by :func:`dashboard.pipeline._nucleation`).

The fit weights (default unweighted, the paper's) and the volume per atom that
sizes the fit's clusters (default the constants', Cu 11.78 Å^3/atom; the band
uses 12.893) are controls of this view: changing them refits the stored
distribution (:func:`dashboard.pipeline.fit_nucleation`, the fit of
:func:`quests_core.analysis.nucleation_study.refit`; no recomputation). On a server or in a
notebook the refit runs in a thread off the event loop, and the new result replaces the
stored one (results are never changed in place); without an event loop (scripts,
tests) it runs at once.
"""

from __future__ import annotations

import asyncio
import functools

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from quests_core.analysis.cnt import FIT_WEIGHT_WORDS, FIT_WEIGHTS

from ..pipeline import fit_nucleation
from ..state import NucleationResult
from .base import EMPTY_TEXT, ZOOM_OPTS, View, control_box, placeholder, plot_pane
from .trajectory import STRUCTURE_TAB, nearest_structure

#: How the result text names the fit weights.
WEIGHT_WORDS = FIT_WEIGHT_WORDS
#: The labels of the weights selector, in the order of FIT_WEIGHTS (default first).
WEIGHT_LABELS = {"none": "unweighted (paper)", "poisson": "Poisson"}


def _frames_text(frames: np.ndarray) -> str:
    """The file's frame numbers in words: ``frames 0-30``, ``frames 0-120 (every 4th)``,
    ``frame 7`` or ``12 frames``."""
    frames = np.asarray(frames)
    if len(frames) == 0:
        return "no frames"
    if len(frames) == 1:
        return f"frame {int(frames[0])}"
    steps = np.unique(np.diff(frames))
    if len(steps) == 1 and steps[0] > 0:
        every = "" if steps[0] == 1 else f" (every {_ordinal(int(steps[0]))})"
        return f"frames {int(frames[0])}-{int(frames[-1])}{every}"
    return f"{len(frames)} frames"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


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
            f"V_atom = {c['V_atom (Å^3)']:g} Å^3 (critical band), gamma_SL {lo:g}-{hi:g} "
            "J/m^2.")
        if np.isfinite(result.t_pooled):
            n_lo, n_hi = result.critical_band
            parts.append(
                f"Pre-nucleation {_frames_text(result.file_frames()[result.pre_frames])} "
                "pooled at their mean "
                f"temperature **{result.t_pooled:.1f} K**: one critical size band "
                f"**{n_lo:.0f}-{n_hi:.0f} atoms**.")
        else:
            parts.append("No frame below the melting point with a temperature: no critical "
                         "band.")
    if result.fit:
        parts.append(f"CNT fit of the pooled cluster sizes by "
                     f"{WEIGHT_WORDS.get(result.weights, result.weights)}, cluster radii "
                     f"from V_atom = {result.fit_volume():.4g} Å^3: the table below the "
                     "plots.")
    elif result.fit_error:
        parts.append(result.fit_error + ".")
    return " ".join(parts)


def fit_table(result: NucleationResult) -> pd.DataFrame:
    """Fitted CNT parameters as a two-column table."""
    if not result.fit:
        return pd.DataFrame({"quantity": [], "value": []})
    return pd.DataFrame({"quantity": list(result.fit), "value": list(result.fit.values())})


def default_trajectory(found: dict[str, NucleationResult]) -> str | None:
    """The trajectory the tab opens with: the first with a CNT fit, else the first."""
    fitted = [name for name, result in found.items() if result.fit]
    return (fitted or list(found) or [None])[0]


class NucleationView(View):
    """Largest-cluster timeline and cluster-size distribution."""

    title = "Nucleation"

    source = param.Selector(
        default=None, objects=[], allow_None=True, label="Trajectory",
        doc="The trajectory analysed (every file with the role 'trajectory' is, against the "
            "solid reference). By default the first with a CNT fit, else the first.")

    fit_weights = param.Selector(
        default=FIT_WEIGHTS[0], objects={WEIGHT_LABELS[w]: w for w in FIT_WEIGHTS},
        label="CNT fit weights",
        doc="unweighted (paper): ordinary least squares on log N, every cluster size weighs "
            "the same (the default, the paper's); Poisson: each size weighted with its count "
            "(docs/spec.md).")

    fit_v_atom = param.Number(
        default=None, allow_None=True, bounds=(0, None), inclusive_bounds=(False, True),
        label="CNT fit V_atom (Å^3)",
        doc="Volume per atom that sizes the clusters of the CNT fit, n V = (4/3) pi r^3. "
            "Empty: the constants' (Cu: the paper's 11.78, from 8.96 g/cm^3); the critical "
            "band keeps its own (Advanced settings, Cu 12.893).")

    @param.depends("state.results", watch=True, on_init=True)
    def _on_results(self, *_) -> None:
        """New results: offer their trajectories; default to the first with a fit."""
        res = self.results
        found = {} if res is None else res.nucleations
        self.param.source.objects = list(found)
        self.source = default_trajectory(found)
        self._refit()  # results fitted otherwise than the controls say

    def timeline(self, result: NucleationResult) -> hv.Overlay:
        df = result.timeline()
        xcol = "time" if np.isfinite(df["time"]).all() else "frame"
        xd = hv.Dimension(xcol, label="time (ps)" if xcol == "time" else
                          "frame (file's own, 0-based)")
        yd = hv.Dimension("largest_cluster", label="largest solid-like cluster (atoms)")
        extra = [] if xcol == "frame" else [hv.Dimension("frame", label="frame (file)")]
        curve = hv.Curve(df, xd, [yd, *extra]).opts(color="black", line_width=1.5,
                                                      tools=["hover", "tap"])
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

    #: Bumped when a refit has replaced the stored result (the body is drawn again).
    refits = param.Integer(default=0, precedence=-1)

    @param.depends("fit_weights", "fit_v_atom", "source", watch=True)
    def _refit(self) -> None:
        """New weights, fit volume or trajectory: refit the shown distribution off the
        event loop when one runs (at once otherwise); the text, the fit table and the
        exports follow once the new result is stored."""
        request = self._refit_request()
        if request is None:
            return
        name, nuc, weights, v_atom = request
        job = functools.partial(fit_nucleation, nuc, weights, v_atom)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (scripts, tests): nothing to keep free
            self._store(name, nuc, job())
            return

        async def off_the_loop() -> None:
            self._store(name, nuc, await loop.run_in_executor(None, job))

        pn.state.execute(off_the_loop)

    def _refit_request(self):
        """``(name, stored result, weights, fit volume)`` when the shown result's fit
        differs from the controls, else None."""
        res = self.results
        if res is None or not res.nucleations:
            return None
        name = self.source if self.source in res.nucleations else \
            default_trajectory(res.nucleations)
        nuc = res.nucleations[name]
        if nuc.weights == self.fit_weights and nuc.fit_v_atom == self.fit_v_atom:
            return None
        return name, nuc, self.fit_weights, self.fit_v_atom

    def _store(self, name: str, old: NucleationResult, new: NucleationResult) -> None:
        """Replace the stored result ``old`` of ``name`` by its refit ``new`` (a new
        mapping; dropped when the results or that entry changed meanwhile, or the
        controls moved on: their own refit follows)."""
        res = self.results
        if res is None or res.nucleations.get(name) is not old:
            return
        res.nucleations = {**res.nucleations, name: new}
        self.refits += 1
        self._refit()  # the controls may have changed while this refit ran

    def result(self) -> NucleationResult | None:
        """The stored nucleation result of :attr:`source` (refitted with
        :attr:`fit_weights` and :attr:`fit_v_atom` by :meth:`_refit`)."""
        res = self.results
        if res is None or not res.nucleations:
            return None
        name = self.source if self.source in res.nucleations else \
            default_trajectory(res.nucleations)
        return res.nucleations[name]

    def which_text(self) -> str:
        """Which file and frames the tab shows, and which others can be chosen (Markdown)."""
        res = self.results
        nuc = self.result()
        if res is None or nuc is None:
            return ""
        text = (f"Shown: **{nuc.source}**, {_frames_text(nuc.file_frames())} (the file's "
                "own 0-based frame numbers), against the solid reference.")
        if len(res.nucleations) > 1:
            text += (f" {len(res.nucleations)} trajectories were analysed "
                     f"({', '.join(res.nucleations)}): choose one under *Trajectory*.")
        return text

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
            pn.pane.Markdown(self.which_text(), name="nucleation-which",
                             sizing_mode="stretch_width"),
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
        controls = control_box(self, ["source", "fit_weights", "fit_v_atom"], width=260,
                               widgets={"fit_v_atom": {"type": pn.widgets.FloatInput,
                                                       "step": 0.1}},
                               name="nucleation-controls")
        return pn.Column(controls,
                         pn.bind(lambda *_: self.body(), self.state.param.results,
                                 self.param.source, self.param.fit_weights,
                                 self.param.fit_v_atom, self.param.refits),
                         sizing_mode="stretch_width", name="Nucleation")
