"""Structure view: one frame coloured by dH.

* a slab projection (axis, position, thickness) rasterised by Datashader,
  which works for frames with millions of atoms;
* a 3D view (Plotly, served from the local Panel bundle, so it works with no
  internet) for frames up to :data:`MAX_3D_ATOMS` atoms.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from .. import dhscale
from ..theme import DH_CMAP, plotly_colorscale
from .atoms import dh_clim, dh_image, plot_frame
from .base import EMPTY_TEXT, ZOOM_OPTS, View, dh_scale_widget, placeholder, plot_pane

#: Largest frame drawn in 3D.
MAX_3D_ATOMS = 50_000
#: Largest slab drawn atom by atom (larger ones are rasterised by Datashader).
MAX_MARKER_ATOMS = 20_000
AXES = ("x", "y", "z")


def default_slab(xyz: np.ndarray, axis: int) -> tuple[float, float]:
    """``(position, thickness)`` of a slab normal to ``axis`` that holds one layer of
    atoms: centred on the atom nearest the middle of the frame along ``axis``, as thick
    as 0.6 of the mean interatomic distance ``a = (V / n)^(1/3)`` (``V`` the frame's
    bounding box). Crystal planes are at least ~0.7 a apart (fcc (100): 0.79 a), so the
    slab holds that atom's plane and no neighbouring one; atoms do not hide each other.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    c = xyz[:, axis]
    lo, hi = float(c.min()), float(c.max())
    extents = np.maximum(xyz.max(axis=0) - xyz.min(axis=0), 1.0)
    a = float(np.prod(extents) / len(xyz)) ** (1.0 / 3.0)
    middle = (lo + hi) / 2.0
    position = float(c[np.argmin(np.abs(c - middle))])
    return round(position, 3), round(max(0.6 * a, 0.3), 3)


def slab_mask(coords: np.ndarray, position: float, thickness: float) -> np.ndarray:
    """Atoms whose coordinate lies within ``thickness / 2`` of ``position``."""
    return np.abs(np.asarray(coords) - position) <= thickness / 2.0


def projection_axes(axis: str) -> tuple[str, str]:
    """The two in-plane axes of a slab normal to ``axis``."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}")
    others = [a for a in AXES if a != axis]
    return others[0], others[1]


#: colours of solid-like clusters: the largest (id 0) first; non-solid atoms (-1) are grey
CLUSTER_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                  "#e377c2", "#17becf", "#bcbd22")
NON_SOLID_COLOR = "#c8c8c8"


def cluster_colors(cluster: np.ndarray) -> list[str]:
    """One colour per atom: grey for -1 (not solid-like), a palette colour per cluster id."""
    return [NON_SOLID_COLOR if c < 0 else CLUSTER_COLORS[c % len(CLUSTER_COLORS)]
            for c in cluster.tolist()]


def plotly_figure(frame: pd.DataFrame, clim: tuple[float, float], title: str,
                  color_by: str = "dH", mode: str = "linear") -> dict:
    """Plotly scatter3d figure (a plain dict) of one frame coloured by dH or cluster id.

    dH colours are on ``mode``'s scale (:mod:`dashboard.dhscale`); ``clim`` is in
    plotted coordinates and the colour bar is labelled in nats.
    """
    n = len(frame)
    size = 6 if n < 2000 else 4 if n < 10_000 else 2
    values = frame[color_by].to_numpy()
    fmt = "dH {:.2f}" if color_by == "dH" else "cluster {:d}"
    text = [f"atom {a} {s}: " + fmt.format(v) for a, s, v in
            zip(frame["atom"].to_numpy(), frame["species"].astype(str).to_numpy(),
                values.tolist(), strict=True)] if n <= 20_000 else None
    if color_by == "cluster":
        marker = {"size": size, "color": cluster_colors(values.astype(int)), "opacity": 1.0}
    else:
        ticks = dhscale.nice_ticks(clim[0], clim[1], mode, target=6)
        marker = {
            "size": size,
            "color": dhscale.forward(values.astype(np.float64), mode),
            "colorscale": plotly_colorscale(),
            "cmin": clim[0],
            "cmax": clim[1],
            "cmid": 0.0,
            "colorbar": {"title": {"text": dhscale.axis_label("dH (nats)", mode)},
                         "tickvals": dhscale.forward(np.array(ticks), mode).tolist(),
                         "ticktext": [dhscale.format_tick(t) for t in ticks]},
            "opacity": 1.0,
        }
    trace = {
        "type": "scatter3d",
        "mode": "markers",
        "x": frame["x"].to_numpy(np.float64),
        "y": frame["y"].to_numpy(np.float64),
        "z": frame["z"].to_numpy(np.float64),
        "marker": marker,
        "hoverinfo": "text" if text is not None else "x+y+z",
    }
    if text is not None:
        trace["text"] = text
    layout = {
        "title": {"text": title},
        "scene": {
            "aspectmode": "data",
            "xaxis": {"title": {"text": "x (Å)"}},
            "yaxis": {"title": {"text": "y (Å)"}},
            "zaxis": {"title": {"text": "z (Å)"}},
        },
        "margin": {"l": 0, "r": 0, "t": 40, "b": 0},
        "autosize": True,
    }
    return {"data": [trace], "layout": layout}


def slab_markers(atoms: pd.DataFrame, u: str, v: str, clim: tuple[float, float], mode: str,
                 **opts) -> hv.Points:
    """Atoms of a slab as round markers of about an atom's size, coloured by dH on
    ``mode``'s scale (hover: atom, species and dH in nats)."""
    data = pd.DataFrame({
        u: atoms[u].to_numpy(np.float64), v: atoms[v].to_numpy(np.float64),
        "dH_colour": dhscale.forward(atoms["dH"].to_numpy(np.float64), mode),
        "dH": atoms["dH"].to_numpy(np.float64),
        "atom": atoms["atom"].to_numpy(), "species": atoms["species"].astype(str).to_numpy(),
    })
    size = 10 if len(data) < 2000 else 7 if len(data) < 8000 else 5
    return hv.Points(data, kdims=[hv.Dimension(u, label=f"{u} (Å)"),
                                  hv.Dimension(v, label=f"{v} (Å)")],
                     vdims=[hv.Dimension("dH_colour", label="dH"), "dH", "atom", "species"]).opts(
        color="dH_colour", cmap=DH_CMAP, clim=clim, colorbar=True, size=size,
        line_color="#333333", line_width=0.3,
        clabel=dhscale.axis_label("dH (nats)", mode), colorbar_opts=dhscale.colorbar_opts(mode),
        hover_tooltips=[("atom", "@atom"), ("species", "@species"), ("dH (nats)", "@dH{0.000}"),
                        (f"{u} (Å)", f"@{{{u}}}{{0.00}}"), (f"{v} (Å)", f"@{{{v}}}{{0.00}}")],
        framewise=True, **{**ZOOM_OPTS, **opts})


class StructureView(View):
    """One frame: datashaded slab projection and 3D view."""

    title = "Structure"

    structure = param.Integer(default=0, bounds=(0, None), doc="Structure (frame) shown.")
    axis = param.Selector(default="z", objects=list(AXES), doc="Slab normal.")
    position = param.Number(default=0.0, doc="Slab centre along the axis (Å).")
    thickness = param.Number(default=1e6, bounds=(0.0, None), doc="Slab thickness (Å).")
    show_3d = param.Boolean(default=True, doc="Draw the 3D view (frames up to 50,000 atoms).")
    color_by = param.Selector(default="dH", objects=["dH", "cluster"],
                              doc="Colour of the 3D view: dH, or solid-like cluster ids "
                                  "(after a computation with a solid reference).")

    def __init__(self, **params):
        super().__init__(**params)
        self._syncing = False
        self.structure_widget = pn.widgets.EditableIntSlider(
            label="Structure (all files, in order)", start=0, end=1, fixed_start=0, fixed_end=1,
            value=0, width=260)
        self.position_widget = pn.widgets.EditableFloatSlider(
            label="Slab position (Å)", start=0.0, end=1.0, value=0.0, step=0.1, width=260)
        self.thickness_widget = pn.widgets.EditableFloatSlider(
            label="Slab thickness (Å)", start=0.0, end=1.0, value=1.0, step=0.1, width=260,
            fixed_start=0.0)
        for widget, name in ((self.structure_widget, "structure"),
                             (self.position_widget, "position"),
                             (self.thickness_widget, "thickness")):
            self._link(widget, name)
        self.state.param.watch(self._on_results, "results")
        self.state.param.watch(self._on_selected, "selected_structure")
        self.param.watch(self._on_structure, "structure")
        self.param.watch(self._on_axis, "axis")
        self._on_results()

    # --------------------------------------------------------------- state sync

    def _link(self, widget, name: str) -> None:
        """Keep a widget's value and a parameter equal (both directions)."""

        def to_param(event):
            if getattr(self, name) != event.new:
                setattr(self, name, event.new)

        def to_widget(event):
            if widget.value != event.new:
                widget.value = event.new

        widget.param.watch(to_param, "value")
        self.param.watch(to_widget, name)

    def _on_results(self, *_):
        res = self.results
        if res is None:
            return
        top = max(len(res.frames) - 1, 0)
        w = self.structure_widget
        w.param.update(end=max(top, 1), fixed_end=max(top, 1))
        self.structure = min(self.structure, top)
        self._reset_slab()

    def _on_selected(self, event):
        if event.new is not None and self.results is not None and not self._syncing:
            self._syncing = True
            try:
                self.structure = int(event.new)
            finally:
                self._syncing = False

    def _on_structure(self, event):
        self._reset_slab()
        if not self._syncing:
            self._syncing = True
            try:
                self.state.selected_structure = int(event.new)
            finally:
                self._syncing = False

    def _on_axis(self, *_):
        self._reset_slab()

    def _reset_slab(self):
        """A slab of one layer of atoms through the middle of the frame
        (:func:`default_slab`); the sliders span the whole frame."""
        if self.results is None:
            return
        frame = self.frame()
        if len(frame) == 0:
            return
        c = frame[self.axis].to_numpy(np.float64)
        lo, hi = float(c.min()), float(c.max())
        span = max(hi - lo, 1.0) + 1.0
        self.position_widget.param.update(start=round(lo, 2), end=round(max(hi, lo + 0.1), 2))
        self.thickness_widget.param.update(end=round(span, 2))
        position, thickness = default_slab(frame[["x", "y", "z"]].to_numpy(),
                                           "xyz".index(self.axis))
        with param.parameterized.batch_call_watchers(self):
            self.position = position
            self.thickness = min(thickness, round(span, 2))

    # --------------------------------------------------------------------- data

    def frame(self) -> pd.DataFrame:
        return self.results.frame_atoms(int(self.structure))

    def describe(self) -> str:
        row = self.results.frames.loc[self.results.frames["structure"] == self.structure]
        if row.empty:
            return ""
        r = row.iloc[0]
        t = "" if not np.isfinite(r["time"]) else f", t = {r['time']:.3f} ps"
        return (f"{self.results.frame_name(int(self.structure))}{t}: "
                f"{int(r['n_atoms']):,} atoms, "
                f"H = {r['H']:.3f} nats, mean dH = {r['mean_dH']:.3f} nats, "
                f"fraction dH > 0 = {r['frac_novel']:.3f}")

    # -------------------------------------------------------------------- plots

    @param.depends("structure", "axis", "position", "thickness", "state.results",
                   "state.dh_scale")
    def slab(self):
        if self.results is None:
            return placeholder(EMPTY_TEXT)
        frame = self.frame()
        u, v = projection_axes(self.axis)
        mask = slab_mask(frame[self.axis].to_numpy(), self.position, self.thickness)
        mode = self.state.dh_scale
        clim = dh_clim(frame["dH"].to_numpy(), mode)
        title = (f"Slab {self.axis} = {self.position:.2f} ± {self.thickness / 2:.2f} Å "
                 f"({int(mask.sum()):,} atoms)")
        opts = {"data_aspect": 1, "responsive": True, "min_height": 420, "title": title}
        if mask.sum() <= MAX_MARKER_ATOMS:
            shown = slab_markers(frame.loc[mask], u, v, clim, mode, **opts)
        else:
            shown = dh_image(plot_frame(frame.loc[mask], u, v, mode), u, v, clim, mode, **opts)
        return plot_pane(shown, min_height=440, name="structure-slab")

    @param.depends("structure", "show_3d", "color_by", "state.results", "state.dh_scale")
    def view3d(self):
        if self.results is None:
            return pn.Spacer()
        frame = self.frame()
        if not self.show_3d:
            return placeholder("3D view switched off.")
        if len(frame) > MAX_3D_ATOMS:
            return placeholder(
                f"This frame has {len(frame):,} atoms; the 3D view draws frames up to "
                f"{MAX_3D_ATOMS:,} atoms. Use the slab projection."
            )
        if self.color_by == "cluster" and "cluster" not in frame:
            return placeholder("No cluster ids yet: give a file the role 'solid reference' "
                               "and compute (see the Nucleation tab).")
        mode = self.state.dh_scale
        clim = dh_clim(frame["dH"].to_numpy(), mode)
        what = "solid-like clusters (largest red, non-solid grey)" if self.color_by == "cluster" \
            else "dH"
        name = self.results.frame_name(int(self.structure))
        fig = plotly_figure(frame, clim, f"{name} in 3D, coloured by {what}",
                            color_by=self.color_by, mode=mode)
        return pn.pane.Plotly(fig, sizing_mode="stretch_width", height=480, name="structure-3d",
                              config={"displaylogo": False, "responsive": True})

    @param.depends("structure", "state.results")
    def info(self):
        if self.results is None:
            return pn.pane.Markdown("")
        return pn.pane.Markdown(self.describe(), name="structure-info")

    def controls(self) -> pn.FlexBox:
        axis = pn.widgets.RadioButtonGroup.from_param(self.param.axis, name="Slab normal",
                                                      color="light", width=120)
        colour = pn.widgets.Select.from_param(self.param.color_by, name="3D colour", width=130,
                                              sizing_mode="fixed")
        show = pn.widgets.Checkbox.from_param(self.param.show_3d, name="Show 3D", width=90,
                                              margin=(32, 10, 10, 10), sizing_mode="fixed")
        normal = pn.Column(pn.pane.Markdown("Slab normal", margin=(0, 10)), axis, margin=0,
                           sizing_mode="fixed", width=140)
        for widget in (self.structure_widget, self.position_widget, self.thickness_widget):
            widget.sizing_mode = "fixed"
        return pn.FlexBox(self.structure_widget, normal, self.position_widget,
                          self.thickness_widget, dh_scale_widget(self.state), colour, show,
                          sizing_mode="stretch_width")

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.controls(),
            self.info,
            pn.Row(
                pn.Column(self.slab, sizing_mode="stretch_width"),
                pn.Column(self.view3d, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
            name="Structure",
        )
