"""The dashboard as a scientist sees it: a tour of every tab in a real headless Chromium
at 1400x900, checked from the Bokeh document.

On the bundled data: a fresh page (files preselected, Compute visible), the main
computation, every analysis tab run, the nucleation computation, every tab visited
twice. From ``Bokeh.documents[0].all_models`` it asserts that

* no Range is shared between plots of different tabs or different quantities (the
  Trajectory curves share their time axis on purpose);
* every plot's ranges lie within its own data plus a margin (no stale ranges);
* the central 90% of the atoms span at least a fifth of the per-atom dH axis;
* Ctrl + mouse wheel zooms every plot without picking a tool (the wheel alone scrolls
  the page);

and that the page made no request to another host and logged no console error.
Screenshots of every tab (both passes) are kept under ``test-artifacts/dashboard/tour``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from test_browser_e2e import ARTIFACTS, Session, running_server

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
TOUR = ARTIFACTS / "tour"
VIEWPORT = (1400, 900)
REFERENCE, FAILED = "cu_solid_400K.extxyz", "cu_failed_simulation.extxyz"
ANALYSIS_SOURCES = {"Compression": "cu_dataset_labelled.extxyz",
                    "Active learning": "cu_generations.extxyz",
                    "Uncertainty": "cu_forces_two_models.extxyz"}
#: Titles each tab draws after the main computation (prefixes).
TAB_TITLES = {
    "Atoms": ["Per-atom dH (", "dH histogram", "dH CDF"],
    "Structure": ["Slab z ="],
    "Trajectory": ["H (nats) per frame", "mean dH (nats) per frame", "fraction dH > 0 per frame"],
    "Learning curves": ["Learning curves (h ="],
    "Overlap": ["overlap(row | column) by file"],
    "Compression": ["H against subset size", "D against subset size"],
    "Active learning": ["novelty against earlier generations", "H (cumulative)"],
    "Uncertainty": ["Force error against dH"],
    "Stores": ["Per-atom dH, 30,240 atoms", "mean dH (nats) per frame"],
}
TABS = ("Data", "Atoms", "Structure", "Trajectory", "Learning curves", "Overlap", "Nucleation",
        "Compression", "Active learning", "Uncertainty", "Stores")

#: Every Bokeh plot of the page: ranges, axis labels, the extent of its glyphs' data,
#: the active scroll and drag tools.
INSPECT = """() => {
  const nums = (v, out) => { if (v == null) return out;
    if (typeof v === 'number') { if (Number.isFinite(v)) out.push(v); }
    else if (ArrayBuffer.isView(v) || Array.isArray(v)) { for (const e of v) nums(e, out); }
    return out; };
  const span = (a) => a.length ? [a.reduce((u, v) => Math.min(u, v)),
                                  a.reduce((u, v) => Math.max(u, v))] : null;
  // no push(...big) or Math.min(...big): 100,000 points overflow the call stack
  const add = (to, vs) => { for (const v of vs) to.push(v); };
  const field = (g, n) => { const p = g[n]; return p && typeof p === 'object' && 'field' in p
                                                   ? p.field : null; };
  const kind = (m) => m ? (m.type || m.constructor.__name__) : null;
  const plots = [];
  for (const d of Bokeh.documents) for (const m of d.all_models) {
    if (m.x_range === undefined || m.renderers === undefined || m.toolbar === undefined)
      continue;
    const xs = [], ys = [];
    for (const r of m.renderers) {
      if (!r.glyph || !r.data_source || !r.visible) continue;
      const g = r.glyph, src = r.data_source.data;
      const col = (f) => { if (!f) return [];
        const v = src instanceof Map ? src.get(f) : src[f]; return nums(v, []); };
      if (kind(g) === 'Image') {
        const x = col(field(g, 'x')), y = col(field(g, 'y'));
        const dw = col(field(g, 'dw')), dh = col(field(g, 'dh'));
        if (x.length && dw.length) xs.push(x[0], x[0] + dw[0]);
        if (y.length && dh.length) ys.push(y[0], y[0] + dh[0]);
        continue;
      }
      for (const n of ['x', 'x0', 'x1', 'left', 'right']) add(xs, col(field(g, n)));
      for (const n of ['y', 'y0', 'y1', 'y2', 'top', 'bottom']) add(ys, col(field(g, n)));
    }
    for (const a of m.center || []) {  // error bars (Whisker): base and lower/upper ends
      if (!a.source || a.lower === undefined) continue;
      const src = a.source.data, col = (f) => { if (!f) return [];
        const v = src instanceof Map ? src.get(f) : src[f]; return nums(v, []); };
      const ends = col(field(a, 'lower')).concat(col(field(a, 'upper')));
      add(a.dimension === 'height' ? ys : xs, ends);
    }
    const tips = [];
    for (const tool of m.toolbar.tools) {
      if (kind(tool) !== 'HoverTool' || !Array.isArray(tool.tooltips)) continue;
      for (const t of tool.tooltips) tips.push(Array.isArray(t) ? t[0] : String(t));
    }
    const labels = (axes) => (axes || []).map((a) => a.axis_label).filter((t) => t).join('|');
    plots.push({id: m.id, title: m.title ? m.title.text : '',
      x_range: [m.x_range.id, kind(m.x_range), m.x_range.start, m.x_range.end],
      y_range: [m.y_range.id, kind(m.y_range), m.y_range.start, m.y_range.end],
      xlabel: labels(m.below.concat(m.above)), ylabel: labels(m.left.concat(m.right)),
      xdata: span(xs), ydata: span(ys), log_x: kind(m.x_scale) === 'LogScale',
      log_y: kind(m.y_scale) === 'LogScale',
      scroll: kind(m.toolbar.active_scroll), drag: kind(m.toolbar.active_drag), tips: tips,
      scroll_ctrl: !!(m.toolbar.active_scroll && m.toolbar.active_scroll.modifiers
                      && m.toolbar.active_scroll.modifiers.ctrl)});
  }
  return plots;
}"""


class Tour:
    """Drives one browser session through the tabs and records every plot it meets."""

    def __init__(self, session: Session, name: str):
        self.s = session
        self.page = session.page
        self.name = name
        self.owner: dict[str, str] = {}     # plot id -> tab where it was first seen
        self.plots: dict[str, dict] = {}    # plot id -> last inspection
        self.visits: list[str] = []
        TOUR.mkdir(parents=True, exist_ok=True)

    def inspect(self, tab: str) -> list[dict]:
        found = self.s.page.evaluate(INSPECT)
        for p in found:
            self.owner.setdefault(p["id"], tab)
            self.plots[p["id"]] = {**p, "tab": self.owner[p["id"]]}
        return found

    def visit(self, tab: str, titles: list[str] | None = None, settle: float = 1.5) -> None:
        self.s.tab(tab)
        self.page.locator(".bk-tab.bk-active", has_text=tab).first.wait_for(timeout=30_000)
        if titles:
            self.s.wait_titles(titles, timeout=300)
        time.sleep(settle)  # DataRange1d ends are computed by the browser after a render
        self.inspect(tab)
        index = len(self.visits)
        self.visits.append(tab)
        self.page.screenshot(path=str(TOUR / f"{self.name}_{index:02d}_{_slug(tab)}.png"))

    def compute(self) -> str:
        """Press Compute and wait for this computation's "Done in ..." status; returns it."""
        done = re.compile(r"Done in [0-9.]+ s: .*h = ")
        before = self.page.get_by_text(done)
        old = before.first.inner_text() if before.count() else None
        self.s.compute()
        deadline = time.monotonic() + 400
        while True:
            status = self.page.get_by_text(done)
            text = status.first.inner_text() if status.count() else None
            if text is not None and text != old:
                return text
            assert time.monotonic() < deadline, f"no new 'Done in' status (still {text!r})"
            time.sleep(0.5)

    def edit_cell(self, name: str, field: str, value: str, exclude: str | None = None,
                  tries: int = 4) -> None:
        """Type ``value`` into column ``field`` of the files-table row of ``name`` (rows
        containing ``exclude`` skipped); retried if the table redraws under the editor."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for attempt in range(tries):
            row = self.page.locator(".tabulator-row", has_text=name)
            if exclude:
                row = row.filter(has_not_text=exclude)
            row = row.first
            cell = row.locator(f'.tabulator-cell[tabulator-field="{field}"]')
            try:
                cell.click(timeout=10_000)
                editor = cell.locator("input")
                editor.fill(value, timeout=10_000)
                editor.press("Enter", timeout=10_000)
                row.locator(f'.tabulator-cell[tabulator-field="{field}"]',
                            has_text=value).wait_for(timeout=15_000)
                return
            except PlaywrightTimeout:
                if attempt == tries - 1:
                    raise
                self.page.keyboard.press("Escape")
                time.sleep(1.0)

    def set_frames(self, name: str, selection: str) -> None:
        self.edit_cell(name, "frames", selection)

    def run_analysis(self, tab: str) -> None:
        self.s.tab(tab)
        source = self.page.locator(".bk-input-group:visible", has_text="Source").locator("select")
        source.first.select_option(label=ANALYSIS_SOURCES[tab])
        run = self.page.locator("button:visible", has_text=re.compile(r"^\s*Run\s*$")).first
        run.wait_for(timeout=30_000)
        run.click()
        self.visit(tab, TAB_TITLES[tab])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# ------------------------------------------------------------------ assertions


def shared_range_problems(plots: dict[str, dict]) -> list[str]:
    """Ranges used by plots of different tabs, or by axes of different quantities."""
    users: dict[str, list[tuple[dict, str]]] = {}
    for p in plots.values():
        users.setdefault(p["x_range"][0], []).append((p, p["xlabel"]))
        users.setdefault(p["y_range"][0], []).append((p, p["ylabel"]))
    problems = []
    for rid, used in users.items():
        if len(used) < 2:
            continue
        tabs = {p["tab"] for p, _ in used}
        labels = {label for _, label in used}
        if len(tabs) > 1 or len(labels) > 1:
            problems.append(f"range {rid} shared by " + "; ".join(
                f"{p['tab']}: {p['title']!r} ({label})" for p, label in used))
    return problems


def _fraction_axis(label: str) -> bool:
    return any(w in label for w in ("fraction", "novelty", "overlap"))


def range_problems(plots: dict[str, dict], margin: float = 0.3) -> list[str]:
    """Numeric ranges that leave their plot's data (stale ranges) or are far wider than
    it: each end within ``margin`` of the data's width (log axes: in decades) of the data
    (of every plot sharing the range, for ranges shared on purpose); fractions may span
    [0, 1]."""
    extents: dict[str, list[float]] = {}
    for p in plots.values():
        for axis in ("x", "y"):
            data = p[f"{axis}data"]
            if data is not None:
                ext = extents.setdefault(p[f"{axis}_range"][0], [data[0], data[1]])
                ext[:] = [min(ext[0], data[0]), max(ext[1], data[1])]
    problems = []
    for p in plots.values():
        for axis in ("x", "y"):
            rid, kind, start, end = p[f"{axis}_range"]
            data = extents.get(rid)
            if kind == "FactorRange" or data is None or start is None or end is None:
                continue
            lo, hi = sorted((start, end))
            dlo, dhi = data
            if p[f"log_{axis}"]:
                lo, hi, dlo, dhi = (np.log10(max(v, 1e-300)) for v in (lo, hi, dlo, dhi))
            width = max(dhi - dlo, 1e-9 * max(abs(dlo), abs(dhi), 1.0))
            if _fraction_axis(p[f"{axis}label"]):
                dlo, dhi = min(dlo, 0.0), max(dhi, 1.0)
                width = max(width, 1.0)
            if hi < dlo or lo > dhi:
                problems.append(f"{p['tab']}: {p['title']!r} {axis} range {start:.4g}..{end:.4g}"
                                f" misses its data {data}")
            elif lo < dlo - margin * width or hi > dhi + margin * width:
                problems.append(f"{p['tab']}: {p['title']!r} {axis} range {start:.4g}..{end:.4g}"
                                f" much wider than its data {data}")
    return problems


def wheel_problems(plots: dict[str, dict]) -> list[str]:
    return [f"{p['tab']}: {p['title']!r} scroll={p['scroll']} drag={p['drag']} "
            f"ctrl={p.get('scroll_ctrl')}"
            for p in plots.values()
            if p["scroll"] != "WheelZoomTool" or p["drag"] not in ("PanTool", None)
            or not p.get("scroll_ctrl")]


def hover_problems(plots: dict[str, dict]) -> list[str]:
    """Hover labels that are internal column names instead of words with units."""
    internal = re.compile(r"_colour|index_|^plotted$|^value$|^n_envs|^dH_nats$")
    return [f"{p['tab']}: {p['title']!r} hover label {tip!r}" for p in plots.values()
            for tip in p.get("tips", []) if internal.search(tip)]


def check_document(tour: Tour, s: Session) -> None:
    """Everything a tour asserts about the page: axes, ranges, tools, hover labels, no
    request to another host, no console error."""
    assert shared_range_problems(tour.plots) == []
    assert range_problems(tour.plots) == []
    assert wheel_problems(tour.plots) == []
    assert hover_problems(tour.plots) == []
    assert s.external == [], f"requests left the machine: {s.external}"
    assert s.errors == [], f"browser console errors: {s.errors}"


def bundled_dh(h: float) -> np.ndarray:
    """Per-atom dH the dashboard computes for reference + failed run (default k, cutoff)."""
    from ase.io import read

    import quests_core as qc

    x_ref = qc.descriptors(read(SAMPLE / REFERENCE, index=":"))
    x_run = qc.descriptors(read(SAMPLE / FAILED, index=":"))
    return np.concatenate([qc.delta_entropy(x_ref, x_ref, h=h), qc.delta_entropy(x_run, x_ref,
                                                                                 h=h)])


def central_fraction_on_axis(dh: np.ndarray, axis: tuple[float, float], label: str) -> float:
    from dashboard import dhscale

    mode = "asinh" if "asinh" in label else "linear"
    return dhscale.central_fraction(dh, axis, mode)


# ------------------------------------------------------------------------ tests


@pytest.mark.skipif(not all((SAMPLE / n).exists() for n in
                            (REFERENCE, FAILED, *ANALYSIS_SOURCES.values())),
                    reason="the tour runs on the bundled sample_data/")
def test_tour_of_every_tab_on_the_bundled_data(browser, tmp_path_factory):
    with running_server(SAMPLE, tmp_path_factory.mktemp("tour_cache"), "server_tour.log") as info:
        s = Session(browser, info["url"], viewport=VIEWPORT)
        tour = Tour(s, "bundled")
        page = s.page
        try:
            s.open()
            page.screenshot(path=str(TOUR / "bundled_landing.png"))
            # a first-time page: reference and failed run preselected, Compute on screen
            for name, role in ((REFERENCE, "reference"), (FAILED, "trajectory")):
                row = page.locator(".tabulator-row", has_text=name)
                row.first.wait_for(timeout=30_000)
                assert role in row.first.inner_text()
            button = page.get_by_role("button", name="Compute").bounding_box()
            assert button is not None and button["y"] + button["height"] <= VIEWPORT[1]
            assert page.evaluate("() => window.scrollY") == 0

            status = tour.compute()
            assert "45 frames, 38,880 atoms" in status, status
            h = float(re.search(r"h = ([0-9.eE+-]+) 1/Å", status).group(1))
            for tab in TABS:
                if tab in ANALYSIS_SOURCES:
                    if tab == "Compression":
                        s.add(list(ANALYSIS_SOURCES.values()), "test")
                    tour.run_analysis(tab)
                elif tab == "Stores":
                    s.tab(tab)
                    page.locator(".bk-input-group:visible", has_text="Store").locator(
                        "select").first.select_option(label="cu_failed_simulation_store")
                    page.get_by_text(re.compile(r"Raster \d+: .* 30,240 atoms aggregated")
                                     ).wait_for(timeout=120_000)
                    tour.visit(tab, TAB_TITLES[tab])
                else:
                    tour.visit(tab, TAB_TITLES.get(tab))
                if tab == "Overlap":  # a click on a cell draws its two dH histograms
                    box = page.locator("canvas:visible").first.bounding_box()
                    page.mouse.click(box["x"] + box["width"] * 0.3,
                                     box["y"] + box["height"] * 0.3)
                    tour.visit(tab, ["dH("])

            # the per-atom dH axis: the central 90 % of the atoms fill at least a fifth
            atoms = [p for p in tour.plots.values() if p["title"].startswith("Per-atom dH (")]
            assert len(atoms) == 1
            axis = tuple(sorted(atoms[0]["y_range"][2:]))
            assert "dH (nats" in atoms[0]["ylabel"]
            fraction = central_fraction_on_axis(bundled_dh(h), axis, atoms[0]["ylabel"])
            assert fraction >= 0.2, f"central 90% of dH spans {fraction:.1%} of the axis"

            # files used by the analyses are removed: no error, the session goes on
            for name in (*ANALYSIS_SOURCES.values(), REFERENCE, FAILED):
                s.remove(name)

            # second pass, after the nucleation computation (new results everywhere)
            s.add(["cu_melt.extxyz"], "reference")
            s.add(["cu_quench.extxyz"], "trajectory")
            s.add([REFERENCE], "solid reference")
            tour.set_frames("cu_melt.extxyz", "::5")
            tour.set_frames("cu_quench.extxyz", "::6")
            tour.set_frames(REFERENCE, "::5")
            status = tour.compute()
            assert "cu_melt" not in status and " 0 atoms" not in status
            second = dict(TAB_TITLES, Trajectory=["largest solid-like cluster (atoms) per frame"],
                          Nucleation=["Largest solid-like cluster in cu_quench.extxyz",
                                      "Cluster-size distribution"])
            for tab in TABS:
                tour.visit(tab, None if tab in ANALYSIS_SOURCES else second.get(tab))
            atoms = [p for p in tour.inspect("Atoms") if p["title"].startswith("Per-atom dH (")]
            assert atoms and atoms[-1]["ydata"] is not None  # not blank after the recompute

            report = {"visits": tour.visits, "plots": list(tour.plots.values()),
                      "external": s.external, "errors": s.errors}
            (TOUR / "bundled_report.json").write_text(json.dumps(report, indent=1))
            check_document(tour, s)
        finally:
            s.close()
