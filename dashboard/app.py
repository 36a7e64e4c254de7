"""The QUESTS dashboard application.

``panel serve dashboard/app.py`` serves it (options after ``--args``:
``--data-dir DIR``, ``--max-upload-mb MB``, ``--job-mode process|thread``);
``python launch.py`` wraps that command. Every browser session builds its
own :class:`DashboardApp` (own state, own uploads, own results).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script by `panel serve dashboard/app.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import holoviews as hv  # noqa: E402
import panel as pn  # noqa: E402

from dashboard.notebook import (  # noqa: E402
    MESSAGE_COLOURS,  # noqa: F401 - the colours the notebook's message line uses
    NotebookLayout,
    RenderProbe,
    message_line,
)
from dashboard.paths import (  # noqa: E402
    MAX_UPLOAD_MB,
    check_data_dir,
    default_data_dir,
    effective_upload_mb,
    server_message_limit,
)
from dashboard.serverlog import install_browser_value_filter  # noqa: E402
from dashboard.state import AppState  # noqa: E402
from dashboard.theme import ACCENT, design, keep_assets_local  # noqa: E402
from dashboard.views import (  # noqa: E402
    ActiveLearningView,
    AtomsView,
    CompressionView,
    DataView,
    LearningView,
    NucleationView,
    OverlapView,
    StoreView,
    StructureView,
    TrajectoryView,
    UncertaintyView,
)

TITLE = "QUESTS dashboard: information entropy of atomistic data"
TAB_NAMES = ("Data", "Atoms", "Structure", "Trajectory", "Learning curves", "Overlap",
             "Nucleation", "Compression", "Active learning", "Uncertainty", "Stores")
_EXTENSION_LOADED = False
#: The tab bar wraps onto a second row where the tabs do not fit (a notebook cell, a
#: narrow window): every tab stays visible and clickable.
TABS_CSS = """
:host .bk-header .bk-headers-wrapper { flex-wrap: wrap; row-gap: 2px; overflow: visible; }
"""


def load_extensions(notebook: bool = False) -> None:
    """Load the Panel/HoloViews extensions the views need.

    Served (``notebook=False``, once per process): Panel's files come from the server
    (:func:`dashboard.theme.keep_assets_local`), with the offline Fast design and
    notifications. In a notebook (``notebook=True``, every call, as Panel's
    extension must run in each kernel and page): every script and style is put inline
    into the cell's output, and stylesheets of components built later become ``data:``
    URLs (:func:`dashboard.theme.keep_assets_local`), so the page needs no other host.
    The Fast design and the pop-up notifications are left out there (Panel loads the
    design's scripts from its CDN in a notebook, and inline Notyf does not define its
    global): :meth:`DashboardApp.notebook_layout` shows the latest message as a line.
    """
    global _EXTENSION_LOADED
    if notebook:
        pn.extension("plotly", "tabulator", sizing_mode="stretch_width", inline=True,
                     notifications=False)
        keep_assets_local()  # stylesheets of tabs built later are inlined too
        return
    if _EXTENSION_LOADED and pn.state.curdoc is not None:
        return
    pn.extension("plotly", "tabulator", notifications=True, design=design(),
                 sizing_mode="stretch_width")
    keep_assets_local()
    hv.extension("bokeh", logo=False)
    _EXTENSION_LOADED = True


def drawing_placeholder(tab: str) -> pn.Row:
    """What a tab shows while its views are drawn for the first time."""
    return pn.Row(pn.indicators.LoadingSpinner(value=True, size=24, margin=(12, 8)),
                  pn.pane.Markdown(f"Drawing the {tab} tab ...", margin=(12, 0)),
                  name="drawing")


class DashboardApp:
    """One session of the dashboard: state, views, tabs and the page template.

    Parameters
    ----------
    data_dir : path, optional
        Directory the file picker lists (default: ``$QUESTS_DATA_DIR`` or
        ``sample_data``).
    job_mode : {"process", "thread"}
        Where computations run (see :class:`dashboard.jobs.ComputeJob`).
    max_upload_mb : float
        Upload size cap.
    """

    def __init__(self, data_dir=None, job_mode: str = "process",
                 max_upload_mb: float = MAX_UPLOAD_MB):
        root = check_data_dir(data_dir or default_data_dir())
        self.upload_dir = tempfile.mkdtemp(prefix="quests-upload-")
        self.state = AppState(data_dir=str(root), upload_dir=self.upload_dir,
                              max_upload_mb=float(max_upload_mb))
        self.data = DataView(state=self.state, job_mode=job_mode)
        self.atoms = AtomsView(state=self.state)
        self.structure = StructureView(state=self.state)
        self.trajectory = TrajectoryView(state=self.state)
        self.learning = LearningView(state=self.state)
        self.overlap = OverlapView(state=self.state)
        self.nucleation = NucleationView(state=self.state)
        self.compression = CompressionView(state=self.state, job_mode=job_mode)
        self.active_learning = ActiveLearningView(state=self.state, job_mode=job_mode)
        self.uncertainty = UncertaintyView(state=self.state, job_mode=job_mode)
        self.stores = StoreView(state=self.state, job_mode=job_mode)
        self.analyses = [self.compression, self.active_learning, self.uncertainty]
        self.data.analysis_sections = self.analysis_sections
        self.data.tab_figures = self.tab_figures
        self.data.figure_tabs = [name for name in TAB_NAMES if name != "Data"]
        self.views = [self.data, self.atoms, self.structure, self.trajectory, self.learning,
                      self.overlap, self.nucleation, *self.analyses, self.stores]
        # each view's layout is built the first time its tab is opened (faster first page)
        self._built = [False] * len(self.views)
        self.tabs = pn.Tabs(*[(name, pn.Column(sizing_mode="stretch_width"))
                              for name in TAB_NAMES],
                            dynamic=True, sizing_mode="stretch_width", name="views",
                            stylesheets=[TABS_CSS])
        self.build_tab(0)
        self.render_probe = RenderProbe(width=0, height=0, margin=0)
        self._display_timed_out = False
        self.tabs.param.watch(self._on_tab, "active")
        self.state.param.watch(self._on_active_tab, "active_tab")

    def analysis_sections(self) -> list:
        """The analysis tabs' last results as sections of the Data tab's report."""
        from dashboard.report import sections_of_views

        return sections_of_views(self.compression.result, self.active_learning.result,
                                 self.uncertainty.result)

    def tab_figures(self, name: str) -> dict:
        """The plots tab ``name`` shows now (name -> HoloViews object, as zoomed and with
        the tab's choices), for the Data tab's "a tab's figures"; builds the tab first if
        it was never opened."""
        from dashboard.report import _slug
        from dashboard.views.base import PlotPane

        index = TAB_NAMES.index(name)
        panes = [p for p in self.build_tab(index).select(PlotPane) if p.object is not None]
        slug = _slug(name.lower())
        return {f"{slug}_{i + 1}": pane.object for i, pane in enumerate(panes)}

    def build_tab(self, index: int) -> pn.Column:
        """Fill tab ``index`` with its view's layout (once) and return the tab."""
        if not self._built[index]:
            self._built[index] = True
            self.tabs[index].objects = [self.views[index].panel()]
        return self.tabs[index]

    def _on_tab(self, event) -> None:
        index = event.new
        doc = pn.state.curdoc
        if self._built[index] or doc is None or doc.session_context is None:
            self.build_tab(index)
            self.state.active_tab = index
            return
        # served page, first visit: say so at once, and draw on the next tick (a tab's
        # first drawing takes seconds: a 3D view of 5,000 atoms, 100,000 points)
        self.tabs[index].objects = [drawing_placeholder(TAB_NAMES[index])]

        def build() -> None:
            self.build_tab(index)
            self.state.active_tab = index

        doc.add_next_tick_callback(build)

    def _on_active_tab(self, event) -> None:
        self.build_tab(event.new)
        self.tabs.active = event.new

    def sidebar(self) -> list:
        return self.data.sidebar()

    def template(self) -> pn.template.FastListTemplate:
        """The full page: sidebar with data and settings, the views as tabs."""
        return pn.template.FastListTemplate(
            title=TITLE, sidebar=self.sidebar(), main=[self.tabs], design=design(),
            sidebar_width=380, accent_base_color=ACCENT, header_background=ACCENT,
            main_layout=None,
        )

    def layout(self) -> pn.Row:
        """The served page's arrangement without its template: sidebar beside the tabs."""
        return pn.Row(pn.Column(*self.sidebar(), width=380), self.tabs,
                      sizing_mode="stretch_width", min_height=900)

    def notebook_layout(self) -> pn.Column:
        """The app for a notebook cell (about 900-1200 px wide): the latest message, the
        files and the settings side by side in a card that folds away (they wrap under
        each other in a narrower cell), and the tabs below over the cell's full width."""
        files, settings = self.data.sidebar_parts()
        controls = pn.FlexBox(
            pn.Column(*files, width=430, margin=(0, 10)),
            pn.Column(*settings, width=430, margin=(0, 10)),
            flex_wrap="wrap", sizing_mode="stretch_width",
        )
        card = pn.Card(controls, title="Files and settings", collapsible=True,
                       sizing_mode="stretch_width", name="controls")
        message = pn.panel(pn.bind(message_line, self.state.param.messages),
                           sizing_mode="stretch_width")
        return NotebookLayout(message, card, self.tabs, self.render_probe,
                              sizing_mode="stretch_width", min_height=900,
                              name="quests-dashboard")

    async def displayed(self, timeout: float = 20.0) -> bool:
        """Wait until a browser has drawn :meth:`notebook_layout` (True) or ``timeout``
        seconds have passed (False: no browser, e.g. nbclient or papermill; later calls
        then return at once). A notebook cell that changes the app from code awaits it
        first, so that Run All does not send changes before the page can take them."""
        if self.render_probe.rendered:
            return True
        if self._display_timed_out:
            return False
        end = time.monotonic() + timeout
        while not self.render_probe.rendered:
            if time.monotonic() > end:
                self._display_timed_out = True
                return False
            await asyncio.sleep(0.1)
        return True

    def cleanup(self) -> None:
        """Stop this session's computation and delete its uploads."""
        import shutil  # local: Bokeh may have cleared this script module's globals by now

        self.trajectory.follow.stop(timeout=10.0)  # no follow thread outlives the session
        self.data.cancel()
        for view in self.analyses:
            view.cancel()
        self.stores.cancel_store()
        shutil.rmtree(self.upload_dir, ignore_errors=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options passed after ``panel serve dashboard/app.py --args``."""
    parser = argparse.ArgumentParser(prog="dashboard/app.py", add_help=False)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB)
    parser.add_argument("--job-mode", choices=["process", "thread"], default="process")
    # the server's --websocket-max-message-size (launch.py passes it on)
    parser.add_argument("--websocket-max-bytes", type=int, default=None)
    args, _ = parser.parse_known_args(argv)
    return args


def create_app(data_dir=None, notebook: bool = False, **kw) -> DashboardApp:
    load_extensions(notebook=notebook)
    app = DashboardApp(data_dir=data_dir, **kw)
    app.data.preselect_defaults()  # a fresh page starts with a reference and a trajectory
    return app


def serve_session() -> pn.template.FastListTemplate:
    """Build the page of one browser session (called by ``panel serve``)."""
    args = parse_args(sys.argv[1:])
    # an upload whose message the server's websocket limit drops would end the session
    limit = args.websocket_max_bytes or server_message_limit()
    max_upload_mb = effective_upload_mb(args.max_upload_mb, limit)
    install_browser_value_filter()  # a refused value from a page: one log line
    app = create_app(args.data_dir, job_mode=args.job_mode, max_upload_mb=max_upload_mb)
    pn.state.on_session_destroyed(lambda _ctx: app.cleanup())
    return app.template()


if __name__.startswith("bokeh_app"):
    from dashboard.warm import start_background

    start_background()
    serve_session().servable(title=TITLE)
