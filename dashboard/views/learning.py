"""Learning-curves view: H(N) with the spread of repeats, the log N bound, the
fitted asymptote and the information gap, for several datasets overlaid."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from quests_core.learning import asymptote_within_bound

from ..state import LearningResult
from .base import EMPTY_TEXT, ZOOM_OPTS, View, placeholder, plot_pane

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


def gap_table(curves: dict[str, LearningResult]) -> pd.DataFrame:
    """One row per dataset: environments, H at the largest N, asymptote, gap (nats)."""
    rows = []
    for name, lc in curves.items():
        note = lc.fit_error
        if not note and not plausible_asymptote(lc):
            note = "asymptote above log(total environments): fit unreliable"
        rows.append({
            "dataset": name,
            "environments": lc.n_total,
            "largest N": int(lc.sizes[-1]) if len(lc.sizes) else 0,
            "H(N) (nats)": float(lc.mean[-1]) if len(lc.mean) else np.nan,
            "asymptote (nats)": lc.asymptote,
            "information gap (nats)": lc.final_gap,
            "note": note,
        })
    return pd.DataFrame(rows)


def plausible_asymptote(lc: LearningResult) -> bool:
    """A fitted asymptote is plausible when finite and at most log(total environments)."""
    return asymptote_within_bound(lc.asymptote, lc.n_total)


def curve_elements(lc: LearningResult, color: str) -> hv.Overlay:
    """Mean H(N), its spread (± std), and the asymptote of one dataset."""
    xd = hv.Dimension("N", label="N (environments)")
    yd = hv.Dimension("H", label="H (nats)")
    df = pd.DataFrame({"N": lc.sizes, "H": lc.mean, "std": lc.std})
    spread = hv.Spread(df, xd, [yd, "std"], label=lc.name).opts(color=color, alpha=0.25,
                                                                line_width=0)
    curve = hv.Curve(df, xd, yd, label=lc.name).opts(color=color, line_width=2)
    points = hv.Scatter(df, xd, yd, label=lc.name).opts(color=color, size=5)
    parts = spread * curve * points
    if plausible_asymptote(lc):
        parts = parts * hv.HLine(lc.asymptote).opts(color=color, line_dash="dashed",
                                                    line_width=1.5)
    return parts


class LearningView(View):
    """H against N for every dataset, with the log N bound and the asymptote."""

    title = "Learning curves"

    datasets = param.ListSelector(default=[], objects=[], doc="Datasets overlaid.")
    log_x = param.Boolean(default=True, doc="Logarithmic N axis.")

    @param.depends("state.results", watch=True, on_init=True)
    def _on_results(self, *_):
        res = self.results
        if res is None:
            return
        names = list(res.learning)
        self.param.datasets.objects = list(names)
        self.datasets = names

    @param.depends("datasets", "log_x", "state.results")
    def plot(self):
        res = self.results
        if res is None:
            return placeholder(EMPTY_TEXT)
        if not res.learning:
            return placeholder("No learning curves: every file has fewer than 20 environments.")
        chosen = [n for n in self.datasets if n in res.learning]
        if not chosen:
            return placeholder("Choose at least one dataset.")
        overlay = None
        top = max(int(res.learning[n].sizes[-1]) for n in chosen)
        n_grid = np.unique(np.geomspace(1, top, 60))
        bound = hv.Curve((n_grid, np.log(n_grid)), "N", "H", label="log N bound").opts(
            color="gray", line_dash="dotted", line_width=2)
        overlay = bound
        for i, name in enumerate(chosen):
            overlay = overlay * curve_elements(res.learning[name], PALETTE[i % len(PALETTE)])
        overlay = overlay.opts(
            title=f"Learning curves (h = {res.h:.4g} 1/Å)", logx=self.log_x, responsive=True,
            height=460, legend_position="bottom_right", xlabel="N (environments)",
            ylabel="H (nats)", show_grid=True, framewise=True, **ZOOM_OPTS,
        )
        return plot_pane(overlay, name="learning-plot")

    @param.depends("state.results")
    def table(self):
        res = self.results
        if res is None or not res.learning:
            return pn.Spacer()
        table = gap_table(res.learning).round(4)
        return pn.Column(
            pn.pane.Markdown("**Information gap** = fitted asymptote - H at the largest N "
                             "(dashed lines: asymptotes; dotted: log N, the largest possible H)."),
            pn.widgets.Tabulator(table, show_index=False, disabled=True,
                                 sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def panel(self) -> pn.viewable.Viewable:
        controls = pn.Param(self.param, parameters=["datasets", "log_x"], show_name=False,
                            widgets={"datasets": pn.widgets.MultiChoice},
                            default_layout=pn.Row, sizing_mode="stretch_width")
        return pn.Column(controls, self.plot, self.table, sizing_mode="stretch_width",
                         name="Learning curves")
