"""Active-learning view: for each generation of a dataset, the novelty of its
environments against all earlier generations (fraction with dH > 0), and the
entropy H and diversity D of the cumulative dataset
(:func:`quests_core.analysis.active_learning.active_learning_report`)."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from quests_core.errors import QuestsError

from ..state import FileSpec
from ..tasks import ActiveLearningRequest, ActiveLearningResult, active_learning_task
from .base import (
    ZOOM_OPTS,
    AnalysisView,
    fraction_limits,
    frames_text,
    placeholder,
    plot_pane,
    report_table,
)

#: Report column -> axis label (with unit), in the order drawn.
CURVES = {
    "novelty": "novelty (fraction dH > 0)",
    "entropy": "H of generations ≤ g (nats)",
    "diversity": "D of generations ≤ g (nats)",
}
#: Plot titles (the full definitions are in the note above the plots).
TITLES = {"novelty": "novelty against earlier generations", "entropy": "H (cumulative)",
          "diversity": "D (cumulative)"}
COLORS = {"novelty": "#d62728", "entropy": "#1f77b4", "diversity": "#2ca02c"}
#: Headers of the report table (words with units).
REPORT_HEADERS = {"n_envs": "environments", "n_envs_cumulative": "environments, gen. ≤ g",
                  "novelty": "novelty (fraction dH > 0)", "mean_dH": "mean dH (nats)",
                  "entropy": "H, gen. ≤ g (nats)", "diversity": "D, gen. ≤ g (nats)"}


def generation_plot(report: pd.DataFrame, column: str) -> hv.Overlay:
    """One report column against the generation (points joined by a line)."""
    if column not in CURVES:
        raise QuestsError(f"unknown active-learning column {column!r}; use one of {list(CURVES)}")
    xd = hv.Dimension("generation", label="generation")
    yd = hv.Dimension(column, label=CURVES[column])
    df = report[["generation", column, "n_envs", "n_envs_cumulative"]]
    df = df[np.isfinite(df[column].to_numpy(float))]
    color = COLORS[column]
    curve = hv.Curve(df, xd, yd).opts(color=color, line_width=2)
    points = hv.Scatter(df, xd, [yd, hv.Dimension("n_envs", label="environments"),
                                 hv.Dimension("n_envs_cumulative",
                                              label="environments, generations ≤ g")]).opts(
        color=color, size=8, tools=["hover"])
    opts = {"ylim": fraction_limits(df[column])} if column == "novelty" else {}
    return (curve * points).opts(
        title=TITLES[column], responsive=True, height=320, show_grid=True, framewise=True,
        padding=0.06,
        xticks=[int(g) for g in report["generation"]], **ZOOM_OPTS, **opts,
    )


class ActiveLearningView(AnalysisView):
    """Novelty, H and D per generation of an active-learning dataset."""

    title = "Active learning"
    task = staticmethod(active_learning_task)
    controls = ("generation_key", "env_step")
    name_hints = ("gen", "active")

    generation_key = param.String(default="generation",
                                  doc="Info key holding each structure's generation.")
    env_step = param.Integer(default=4, bounds=(1, 64),
                             doc="Keep every n-th environment of each structure (faster).")
    result = param.ClassSelector(class_=ActiveLearningResult, allow_None=True)

    def request(self) -> tuple[list[FileSpec], ActiveLearningRequest]:
        spec = self.spec()
        key = self.generation_key.strip()
        if not key:
            raise QuestsError("no generation key given: name the info key of the generations")
        return [spec], ActiveLearningRequest(settings=self.base_settings(), generation_key=key,
                                             env_step=int(self.env_step))

    def describe(self, result: ActiveLearningResult) -> str:
        return (f"{len(result.report)} generations of {result.source} "
                f"({frames_text(result.frames)}, "
                f"{int(result.report['n_envs_cumulative'].iat[-1]):,} environments)")

    def plots(self) -> hv.Layout:
        report = self.result.report
        return hv.Layout([generation_plot(report, c) for c in CURVES]).cols(3)

    def body(self):
        res = self.result
        if res is None:
            return placeholder("Choose a dataset whose structures carry a generation "
                               "(info key) and press **Run**.")
        note = pn.pane.Markdown(
            f"**{res.source}**: {res.n_structures} structures, generations from info key "
            f"`{res.key}`, every {res.env_step}. environment of each structure, k = {res.k}, "
            f"cutoff = {res.cutoff:g} Å, h = {res.h:.4g} 1/Å. Novelty of generation g: "
            "fraction of its environments with dH > 0 against all earlier generations (none "
            "for the first). H and D: the dataset of generations <= g.",
            name="active-learning-info")
        return pn.Column(
            note,
            plot_pane(self.plots(), name="active-learning-plots"),
            pn.widgets.Tabulator(report_table(res.report, REPORT_HEADERS,
                                              counts=("n_envs", "n_envs_cumulative")),
                                 show_index=False, disabled=True, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
