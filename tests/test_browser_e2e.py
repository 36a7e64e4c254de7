"""End-to-end tests of the dashboard in a real headless Chromium.

A server is started with ``python launch.py`` on 127.0.0.1; Debian's
``chromium`` is driven by Playwright. Every request to a host other than
127.0.0.1 is recorded and blocked (the app must work offline), the browser
console must stay free of errors, and screenshots are kept under
``test-artifacts/``.

Data: the bundled ``sample_data`` when its Cu files exist, otherwise the small
synthetic Cu files of :mod:`dashboard._testing`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dashboard._testing import stop_process, wait_until_serving

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SAMPLE = ROOT / "sample_data"
SAMPLE_FILES = {
    "reference": "cu_solid_400K.extxyz",
    "trajectory": "cu_failed_simulation.extxyz",
    "test": "cu_melt.extxyz",
    "labelled": "cu_dataset_labelled.extxyz",
    "other": "cu_generations.extxyz",
}
#: Frame selections typed into the files table (keeps the sample-data runs short).
SAMPLE_FRAMES = {"reference": "::2", "test": "::5", "labelled": "::5", "other": "::6",
                 "trajectory_alone": "::5", "quench": "::6", "solid": "::5"}
#: Nucleation run: liquid reference, crystallising trajectory, solid reference.
SAMPLE_NUCLEATION = {"reference": "cu_melt.extxyz", "quench": "cu_quench.extxyz",
                     "solid": "cu_solid_400K.extxyz"}
SYNTHETIC_NUCLEATION = {"reference": "melt.extxyz", "quench": "failed_traj.extxyz",
                        "solid": "solid.extxyz"}
SYNTHETIC_FILES = {
    "reference": "solid.extxyz",
    "trajectory": "failed_traj.extxyz",
    "test": "melt.extxyz",
    "labelled": "labelled.extxyz",
    "other": "solid.extxyz",
}
TAB_TITLES = {
    "Atoms": ["Per-atom dH", "dH histogram", "dH CDF"],
    "Structure": ["Slab z ="],
    "Trajectory": ["H (nats) per frame", "mean dH (nats) per frame", "fraction dH > 0 per frame"],
    "Learning curves": ["Learning curves (h ="],
    "Overlap": ["overlap(row | column) by file"],
}

playwright_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):  # pragma: no cover - depends on the machine
    if os.environ.get("QUESTS_REQUIRE_BROWSER"):  # set by .ci/run: CI must run these
        pytest.fail("QUESTS_REQUIRE_BROWSER is set but /usr/bin/chromium is missing",
                    pytrace=False)
    pytest.skip("Debian chromium is not installed (apt-get install chromium)",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(data directory, role -> file name, role -> frame selection)."""
    if all((SAMPLE / name).exists() for name in SAMPLE_FILES.values()):
        return SAMPLE, SAMPLE_FILES, SAMPLE_FRAMES, SAMPLE_NUCLEATION
    from dashboard._testing import make_sample_dir

    folder = tmp_path_factory.mktemp("e2e_data")
    make_sample_dir(folder)
    return folder, SYNTHETIC_FILES, {}, SYNTHETIC_NUCLEATION


@contextlib.contextmanager
def running_server(folder, cache_dir, log_name: str = "server.log", extra_args=()):
    """A dashboard server on 127.0.0.1 over ``folder`` (``extra_args``: more ``launch.py``
    options); yields its URL and start-up facts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ, QUESTS_CACHE_DIR=str(cache_dir))
    log = open(ARTIFACTS / log_name, "w")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--port", str(port), "--address", "127.0.0.1",
         "--data-dir", str(folder), "--no-show", *extra_args],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/app"
    if not wait_until_serving(url, proc, timeout=240):
        proc.kill()
        log.close()
        pytest.fail(f"server did not start: {(ARTIFACTS / log_name).read_text()[-2000:]}")
    try:
        yield {"url": url, "startup_s": time.monotonic() - t0}
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def server(data, tmp_path_factory):
    """A dashboard server over the data directory (sample_data/ when present)."""
    with running_server(data[0], tmp_path_factory.mktemp("e2e_cache")) as info:
        yield info


#: A Bokeh tooltip on screen, and its text (inside its shadow root).
TOOLTIP = ".bk-Tooltip:visible, .bk-tooltip:visible"
TOOLTIP_TEXT = """(el) => { const c = el.shadowRoot &&
    el.shadowRoot.querySelector('.bk-tooltip-content'); return c ? c.innerText : ''; }"""

#: x range (start, end) of the first plot whose title starts with the argument.
X_RANGE = """(title) => { for (const d of Bokeh.documents) for (const m of d.all_models)
    if (m.title && m.title.text && m.title.text.startsWith(title) && m.x_range)
      return [m.x_range.start, m.x_range.end];
  return null; }"""

#: JS statements that fill ``drawn`` with the models that have a view in the page now
#: (not a figure replaced by a later click).
DRAWN_MODELS = """const drawn = new Set(), seen = new Set();
  const walk = (v) => { if (seen.has(v)) return; seen.add(v);
    if (v.el && v.el.isConnected) drawn.add(v.model);
    for (const c of (v.child_views || [])) walk(c); };
  for (const v of Bokeh.index) walk(v);"""

#: The dH histograms of a clicked Overlap cell drawn in the page: title, environments
#: counted (the sum of the bars) and the drawn width of the plot area (px).
OVERLAP_HISTOGRAMS = """() => { const out = [];
""" + DRAWN_MODELS + """
  for (const d of Bokeh.documents) for (const m of d.all_models) {
    if (!m.title || !m.title.text || !m.title.text.startsWith('dH(') || !m.renderers) continue;
    if (!drawn.has(m)) continue;
    let total = 0;
    for (const r of m.renderers) {
      if (!r.glyph || !r.data_source || !r.glyph.top || !r.glyph.top.field) continue;
      const src = r.data_source.data, f = r.glyph.top.field;
      for (const v of (src instanceof Map ? src.get(f) : src[f])) total += v;
    }
    out.push({title: m.title.text, total: total, width: m.inner_width});
  }
  return out; }"""


#: Shape and largest value of the drawn Image of a plot whose title starts with the
#: argument (a rasterised count).
IMAGE_MAX = """(title) => {
""" + DRAWN_MODELS + """
  for (const d of Bokeh.documents) for (const m of d.all_models) {
    if (!m.title || !m.title.text || !m.title.text.startsWith(title) || !drawn.has(m)) continue;
    for (const r of m.renderers) {
      const g = r.glyph;
      if (!g || (g.type || g.constructor.__name__) !== 'Image') continue;
      const src = r.data_source.data, img = (src instanceof Map ? src.get('image')
                                                                : src['image'])[0];
      let max = 0; for (const v of img) if (Number.isFinite(v) && v > max) max = v;
      return {max: max, shape: img.shape ? Array.from(img.shape) : [img.length]};
    }
  }
  return null; }"""


class Session:
    """One browser session (own context) with console and network recording."""

    def __init__(self, browser, url: str, viewport: tuple[int, int] = (1600, 1000)):
        self.context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.external: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.route("**/*", self._route)
        self.url = url

    def _console(self, msg) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    def _route(self, route) -> None:
        url = route.request.url
        if re.match(r"^(https?|wss?)://(127\.0\.0\.1|localhost)[:/]", url) or \
                url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def open(self) -> float:
        t = time.monotonic()
        self.page.goto(self.url)
        self.page.get_by_text("Start here").wait_for(timeout=60_000)
        return time.monotonic() - t

    def add(self, files: list[str], role: str, label: str = "") -> None:
        page = self.page
        page.locator("select[multiple]").select_option(files)
        page.locator(".bk-input-group", has_text="Role").locator("select").select_option(role)
        if label:
            page.get_by_placeholder("keep file labels").fill(label)
        page.get_by_role("button", name="Add selected files").click()
        for name in files:
            page.locator(".tabulator-cell", has_text=name).first.wait_for(timeout=20_000)

    def set_frames(self, name: str, selection: str) -> None:
        """Type a frame selection into the files table (column "frames")."""
        cell = self.page.locator(".tabulator-row", has_text=name).locator(
            '.tabulator-cell[tabulator-field="frames"]')
        cell.click()
        editor = cell.locator("input")
        editor.fill(selection)
        editor.press("Enter")
        self.page.locator(".tabulator-row", has_text=name).locator(
            '.tabulator-cell[tabulator-field="frames"]', has_text=selection).wait_for(
            timeout=20_000)

    def remove(self, name: str) -> None:
        """Remove a chosen file with its ✖. A click in the first moments after the table
        is drawn can go unheard (seen once in a clean-clone run on a loaded machine):
        the click is repeated while the row stays."""
        page = self.page
        row = page.locator(".tabulator-row", has_text=name)
        for attempt in range(3):
            if not row.count():
                return
            row.locator(".tabulator-cell", has_text="✖").first.click()
            try:
                row.wait_for(state="detached", timeout=10_000)
                return
            except Exception:
                if attempt == 2:
                    raise

    def compute(self) -> None:
        self.page.get_by_role("button", name="Compute").click()

    def wait_done(self, timeout: float = 400) -> None:
        self.page.get_by_text(re.compile(r"Done in [0-9.]+ s")).wait_for(timeout=timeout * 1000)

    def tab(self, name: str) -> None:
        self.page.locator(".bk-tab", has_text=name).first.click()

    def titles(self) -> list[str]:
        return self.page.evaluate(
            """() => { const out = [];
                for (const d of Bokeh.documents) for (const m of d.all_models)
                  if ((m.type === 'Title' || m.constructor.__name__ === 'Title') && m.text)
                    out.push(m.text);
                return out; }""")

    def wait_titles(self, wanted: list[str], timeout: float = 60) -> list[str]:
        end = time.monotonic() + timeout
        while True:
            titles = self.titles()
            if all(any(t.startswith(w) for t in titles) for w in wanted):
                return titles
            if time.monotonic() > end:
                raise AssertionError(f"titles {wanted} not all found in {titles}")
            time.sleep(0.5)

    def canvases(self) -> int:
        return self.page.locator("canvas").count()

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def _overlapping(page, selector: str) -> list:
    """Pairs of visible controls matching ``selector`` (in the open tab, shadow roots
    included) whose boxes overlap by more than 2 px."""
    return page.evaluate(
        """(selector) => {
            const boxes = [];
            const walk = (root) => {
              for (const el of root.querySelectorAll('*')) {
                if (el.shadowRoot) walk(el.shadowRoot);
                if (el.matches && el.matches(selector)) {
                  const r = el.getBoundingClientRect();
                  if (r.width > 0 && r.height > 0 && r.top < window.innerHeight)
                    boxes.push([el.textContent.trim().slice(0, 30), r]);
                }
              }
            };
            walk(document);
            const out = [];
            for (let i = 0; i < boxes.length; i++)
              for (let j = i + 1; j < boxes.length; j++) {
                const [a, ra] = boxes[i], [b, rb] = boxes[j];
                const inside = (p, q) => p.left >= q.left - 1 && p.right <= q.right + 1
                  && p.top >= q.top - 1 && p.bottom <= q.bottom + 1;
                if (inside(ra, rb) || inside(rb, ra)) continue;  // a part of a control
                const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
                const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
                if (w > 2 && h > 2) out.push([a, b]);
              }
            return out;
        }""", selector)


def test_workflow_in_a_real_browser(server, browser, data):
    _, files, frames, _ = data
    s = Session(browser, server["url"])
    first_render = s.open()
    assert "QUESTS" in s.page.title()
    page = s.page
    s.shot("00_start")

    # a bad upload is reported in the page and the session keeps working
    page.locator("input[type=file]").set_input_files(
        files=[{"name": "broken.extxyz", "mimeType": "text/plain",
                "buffer": b"3\nnot a valid comment line\nCu 0 0\n"}])
    page.locator(".tabulator-cell", has_text="upload/broken.extxyz").wait_for(timeout=20_000)
    page.locator(".bk-input-group", has_text="Role").locator("select").select_option("test")
    s.compute()
    page.locator(".notyf__toast--error").first.wait_for(timeout=120_000)
    page.get_by_text(re.compile("Failed:")).wait_for(timeout=10_000)
    s.shot("01_error_notification")
    s.remove("upload/broken.extxyz")

    s.add([files["reference"]], "reference")
    s.add([files["trajectory"]], "trajectory")
    if "reference" in frames:
        s.set_frames(files["reference"], frames["reference"])
    s.compute()
    t = time.monotonic()
    page.get_by_text(re.compile(r"\(\d+%\)")).first.wait_for(timeout=120_000)  # progress shown
    s.wait_done()
    compute_s = time.monotonic() - t
    s.shot("02_data_done")
    summary = page.locator(".tabulator", has_text="fraction dH > 0")
    assert summary.count() >= 1
    assert page.get_by_text(files["trajectory"]).count() >= 1
    # the report: Build (a job with progress), then Download gives the page built
    download = page.get_by_role("button", name=re.compile(r"^Download"))
    assert download.is_disabled()
    page.get_by_role("button", name="Build", exact=True).click()
    page.get_by_text(re.compile(r"Built quests_report\.html \([0-9.]+ [kM]B\)")).wait_for(
        timeout=240_000)
    s.shot("02_report_built")
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name=re.compile(r"Download quests_report\.html")).click()
    report = Path(dl.value.path()).read_text(encoding="utf-8")
    assert report.startswith("<!DOCTYPE html>") and files["trajectory"] in report
    assert not re.search(r'<script[^>]*\bsrc="(?!data:)', report)
    # a tab's figures: the plots the Atoms tab shows, as SVG
    page.get_by_role("button", name="a tab's figures (.zip)").click()
    page.locator("select").filter(has_text="Learning curves").select_option("Atoms")
    page.locator("select").filter(has_text="PNG").select_option("SVG")
    assert _overlapping(page, ".bk-btn-group, select, input, .bk-btn") == []
    page.get_by_role("button", name="Build", exact=True).click()
    page.get_by_text(re.compile(r"Built quests_atoms_figures\.zip")).wait_for(timeout=240_000)
    s.shot("02_tab_figures_built")
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name=re.compile(r"Download quests_atoms_figures")).click()
    with zipfile.ZipFile(dl.value.path()) as zf:
        assert sorted(zf.namelist()) == ["atoms_1.svg", "atoms_2.svg", "atoms_3.svg"]
        assert "atom index" in zf.read("atoms_1.svg").decode("utf-8")

    checked = {}
    for name, wanted in TAB_TITLES.items():
        s.tab(name)
        checked[name] = s.wait_titles(wanted)
        assert s.canvases() > 0
        s.shot(f"03_{name.replace(' ', '_').lower()}")
        if name == "Atoms":
            box = page.locator("canvas:visible").first.bounding_box()
            # the hover names one atom under the cursor: its file, its frame in the file,
            # its index and its dH (over the dense band of known atoms near the bottom)
            named = None
            for fx, fy in [(fx, fy) for fy in (0.86, 0.84, 0.88, 0.82, 0.8)
                           for fx in (0.4, 0.55, 0.3)]:
                page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
                time.sleep(1.0)
                tips = [t.evaluate(TOOLTIP_TEXT) for t in page.locator(TOOLTIP).all()]
                named = next((t for t in tips if "frame (file):" in t), None)
                if named:
                    break
            if not named:
                s.shot("03_atoms_no_hover")
            assert named, "no atom named by the Atoms hover"
            fields = dict(re.findall(r"([a-zA-Z() ]+):\s*(\S+)", named))
            assert fields["file"] in files.values() and int(fields["atom"]) >= 0
            assert int(fields["frame (file)"]) >= 0 and np.isfinite(float(fields["dH (nats)"]))
            assert len(page.locator(TOOLTIP).all()) == 1  # one atom, one box
            page.mouse.move(box["x"] - 50, box["y"] - 50)
            # the wheel alone scrolls the page; Ctrl + wheel zooms the plot
            before = page.evaluate(X_RANGE, "Per-atom dH")
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -300)
            time.sleep(1.0)
            assert page.evaluate(X_RANGE, "Per-atom dH") == before
            page.keyboard.down("Control")
            page.mouse.wheel(0, -300)
            page.keyboard.up("Control")
            time.sleep(1.0)
            zoomed = page.evaluate(X_RANGE, "Per-atom dH")
            assert zoomed[1] - zoomed[0] < before[1] - before[0], (before, zoomed)
            text = page.get_by_text(re.compile(r"Fraction dH > 0: [0-9.]+")).first.inner_text()
            assert 0.0 <= float(re.search(r"Fraction dH > 0: ([0-9.]+)", text).group(1)) <= 1.0
        if name == "Structure":
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        if name == "Trajectory":
            # click a frame on the first curve, then open it in Structure
            box = page.locator("canvas").first.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
            selected = page.get_by_text(re.compile(r"Selected: \S+ frame \d+"))
            selected.wait_for(timeout=30_000)
            # the file and its own frame number, as Structure then names it
            chosen = re.search(r"Selected: (\S+ frame \d+)", selected.inner_text()).group(1)
            with page.expect_download(timeout=60_000) as dl:
                page.get_by_role("button", name=re.compile("Export jump frames")).click()
            path = dl.value.path()
            body = Path(path).read_text()
            assert body == "" or "dH" in body.splitlines()[1]
            page.get_by_role("button", name="Open in Structure").click()
            page.get_by_text(re.compile(re.escape(chosen) + r"\b.*atoms, H =")).wait_for(
                timeout=30_000)
            assert page.locator(".bk-tab.bk-active", has_text="Structure").count() == 1
            s.shot("04_trajectory_frame_in_structure")
            checked["selected"] = chosen
    s.tab("Overlap")
    s.wait_titles(["overlap(row | column) by file"])
    box = page.locator("canvas").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    s.wait_titles(["dH("])
    time.sleep(1.0)
    assert len(page.evaluate(OVERLAP_HISTOGRAMS)) == 1  # the top-left cell: diagonal
    # along the top row to an off-diagonal cell: two drawn histograms, each holding
    # every sampled environment of its group
    for fx in (0.72, 0.65, 0.58, 0.5):
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * 0.3)
        time.sleep(1.5)
        hists = page.evaluate(OVERLAP_HISTOGRAMS)
        if len(hists) == 2:
            break
    note = page.get_by_text("Sampled environments per group").first.inner_text()
    sizes = [int(v.replace(",", "")) for v in
             re.findall(r":\s*([\d,]+)", note.split("per group:")[1].split(". ")[0])]
    assert len(hists) == 2, hists
    for h in hists:
        assert h["total"] in sizes and h["width"] >= 300, (h, sizes)
    s.shot("05_overlap_cell")
    s.tab("Nucleation")
    page.get_by_text(re.compile("Give one file the role|Largest cluster overall|not available")
                     ).first.wait_for(timeout=30_000)
    s.shot("06_nucleation")

    # the same session computes again: a crystallising trajectory against a solid reference
    _, _, _, nuc = data
    s.remove(files["reference"])
    s.remove(files["trajectory"])
    s.add([nuc["reference"]], "reference")
    s.add([nuc["quench"]], "trajectory")
    s.add([nuc["solid"]], "solid reference")
    for key in ("reference", "quench", "solid"):
        if key in frames:
            s.set_frames(nuc[key], frames["test" if key == "reference" else key])
    s.compute()
    page.get_by_text(re.compile(r"\(\d+%\)")).first.wait_for(timeout=120_000)
    s.wait_done()
    s.tab("Nucleation")
    s.wait_titles([f"Largest solid-like cluster in {nuc['quench']}",
                   "Cluster-size distribution"])
    assert page.get_by_text(re.compile(r"Largest cluster overall: \d+ atoms")).count() == 1
    s.shot("07_nucleation_computed")
    s.tab("Trajectory")
    s.wait_titles(["largest solid-like cluster (atoms) per frame"])

    report = {"first_render_s": first_render, "compute_s": compute_s,
              "server_startup_s": server["startup_s"], "titles": checked}
    (ARTIFACTS / "workflow.json").write_text(json.dumps(report, indent=1))
    assert s.external == [], f"requests left the machine: {s.external}"
    bad = [e for e in s.errors if "broken.extxyz" not in e]
    assert bad == [], f"browser console errors: {bad}"
    s.close()


def test_three_sessions_compute_at_once(server, browser, data):
    _, files, frames, _ = data
    plans = [
        ([(files["reference"], "reference", "reference"), (files["test"], "test", "test")],
         files["test"]),
        ([(files["labelled"], "reference", "labelled"), (files["other"], "test", "other")],
         files["labelled"]),
        ([(files["trajectory"], "trajectory", "trajectory_alone")], files["trajectory"]),
    ]
    sessions = []
    for plan, _ in plans:
        s = Session(browser, server["url"])
        s.open()
        for name in (files["reference"], files["trajectory"]):  # preselected on a fresh page
            s.remove(name)
        for name, role, key in plan:
            s.add([name], role)
            if key in frames:
                s.set_frames(name, frames[key])
        sessions.append(s)
    for s in sessions:
        s.compute()
    # while three computations run, the server still answers: a fresh page renders,
    # and each session's status keeps updating
    probe = Session(browser, server["url"])
    during = probe.open()
    for s in sessions:
        s.page.get_by_text(re.compile(r"\(\d+%\)|Queued|Done in")).first.wait_for(timeout=120_000)
    for i, s in enumerate(sessions):
        s.wait_done(timeout=500)
        s.shot(f"10_session_{i}")
    # each session sees only its own files
    for i, (s, (plan, own)) in enumerate(zip(sessions, plans, strict=True)):
        table = s.page.locator(".tabulator", has_text="fraction dH > 0").first.inner_text()
        assert own in table
        others = {name for j, (p, _) in enumerate(plans) if j != i for name, _, _ in p}
        mine = {name for name, _, _ in plan}
        for name in others - mine:
            assert name not in table, f"session {i} shows {name}"
        assert s.external == [] and s.errors == [], (s.external, s.errors)
    (ARTIFACTS / "concurrency.json").write_text(json.dumps({"render_during_compute_s": during}))
    assert during < 60, f"the app took {during:.1f} s to render while 3 sessions computed"
    for s in sessions + [probe]:
        s.close()


def test_no_external_resources_in_page(server):
    """The HTML itself references only local resources."""
    with urllib.request.urlopen(server["url"], timeout=30) as r:
        html = r.read().decode()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    external = [u for u in refs if re.match(r"^(https?:)?//", u)
                and not re.match(r"^https?://(127\.0\.0\.1|localhost)", u)]
    assert refs and external == []


@pytest.mark.parametrize("width", [1400, 1100])
def test_every_tab_is_visible_and_opens(server, browser, width):
    """The tab bar wraps onto a second row rather than clipping its last tabs (at
    1400x900 Stores used to start at x = 1380); every tab lies inside the window and
    the last one opens."""
    s = Session(browser, server["url"], viewport=(width, 900))
    try:
        s.open()
        tabs = s.page.locator(".bk-tab")
        names = [t.strip() for t in tabs.all_inner_texts()]
        assert names[0] == "Data" and names[-1] == "Stores" and len(names) == 11, names
        for i, name in enumerate(names):
            box = tabs.nth(i).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (name, box)
        rows = {round(tabs.nth(i).bounding_box()["y"]) for i in range(len(names))}
        assert len(rows) <= 2, rows  # one or two rows, not a column
        tabs.filter(has_text="Stores").first.click()
        s.page.get_by_role("button", name="Rescan").wait_for(timeout=30_000)
        s.shot(f"tabs-{width}")
        assert not s.errors and not s.external, (s.errors, s.external)
    finally:
        s.close()


@pytest.mark.skipif(not all((SAMPLE / n).exists() for n in (
    "cu_dataset_labelled.extxyz", "cu_generations.extxyz", "cu_forces_two_models.extxyz")),
    reason="the analysis tabs pick their sample files from sample_data/")
def test_analysis_tabs_in_a_real_browser(server, browser):
    """Compression, Active learning and Uncertainty each run on their sample file and plot."""
    s = Session(browser, server["url"])
    s.open()
    page = s.page
    wanted = {
        "Compression": ["H against subset size", "D against subset size"],
        "Active learning": ["novelty", "H (cumulative)", "D (cumulative)"],
        "Uncertainty": ["Force error against dH"],
    }
    sources = {"Compression": "cu_dataset_labelled.extxyz",
               "Active learning": "cu_generations.extxyz",
               "Uncertainty": "cu_forces_two_models.extxyz"}
    s.add(list(sources.values()), "test")
    try:
        for name, titles in wanted.items():
            s.tab(name)
            source = page.locator(".bk-input-group:visible", has_text="Source").locator("select")
            if name == "Uncertainty":  # opens on the one chosen file with two force arrays
                assert source.first.input_value() == sources[name]
            else:
                source.first.select_option(label=sources[name])
            run = page.locator("button:visible", has_text=re.compile(r"^\s*Run\s*$")).first
            run.wait_for(timeout=30_000)
            run.click()
            s.wait_titles(titles, timeout=300)
            assert s.canvases() > 0
            if name == "Uncertainty":
                # the error-dH cloud is binned on one fixed grid: the first draw counts as
                # many atoms per cell as a redraw after a scale toggle (it once binned at
                # the plot's pixel size first: 1-4 atoms per cell, the cloud invisible)
                time.sleep(2.0)
                first = page.evaluate(IMAGE_MAX, "Force error against dH")
                for scale in ("linear", "asinh"):
                    page.locator(".bk-btn:visible", has_text=scale).first.click()
                    time.sleep(2.5)
                assert first == page.evaluate(IMAGE_MAX, "Force error against dH"), first
                assert first["max"] > 1 and first["shape"] == [100, 160], first
            s.shot(f"08_{name.replace(' ', '_').lower()}")
        assert s.errors == [], f"browser console errors: {s.errors}"
        assert s.external == [], f"requests left the machine: {s.external}"
    finally:
        s.close()


@pytest.mark.skipif(not (SAMPLE / "cu_failed_simulation_store" / "manifest.json").exists(),
                    reason="the bundled chunk store is in sample_data/")
def test_stores_tab_rasterises_through_dask_and_zooms(server, browser):
    """Stores tab: open the bundled chunk store; the raster arrives from the background
    thread, a wheel zoom re-aggregates, and a second session stays responsive meanwhile."""
    s = Session(browser, server["url"])
    other = Session(browser, server["url"])
    s.open()
    other.open()
    page = s.page
    try:
        s.tab("Stores")
        store = page.locator(".bk-input-group:visible", has_text="Store").locator("select")
        store.first.select_option(label="cu_failed_simulation_store")
        status = page.get_by_text(re.compile(r"Raster \d+: .* 30,240 atoms aggregated in"))
        status.wait_for(timeout=120_000)

        def raster_number() -> int:
            try:
                match = re.search(r"Raster (\d+)", status.inner_text(timeout=1_000))
            except playwright_api.TimeoutError:  # "Aggregating ..." is shown meanwhile
                return -1
            return int(match.group(1)) if match else -1

        first = raster_number()
        assert first >= 1
        s.wait_titles(["Per-atom dH, 30,240 atoms", "mean dH (nats)", "max dH"])
        assert page.get_by_text("7 of 7 chunks finished").count() == 1
        s.shot("09_stores_full")
        # the other session switches tabs while this one zooms
        other.tab("Trajectory")
        canvas = page.locator(".store-plot canvas:visible").first
        canvas.wait_for(timeout=30_000)
        plot = canvas.bounding_box()
        assert plot is not None
        page.mouse.move(plot["x"] + plot["width"] * 0.4, plot["y"] + plot["height"] * 0.5)
        page.keyboard.down("Control")  # Ctrl + wheel zooms (the wheel alone scrolls)
        page.mouse.wheel(0, -600)
        page.keyboard.up("Control")
        deadline = time.monotonic() + 120
        while raster_number() <= first:
            assert time.monotonic() < deadline, "the zoom did not re-aggregate"
            time.sleep(0.25)
        assert other.page.locator(".bk-tab.bk-active", has_text="Trajectory").count() == 1
        s.shot("09_stores_zoomed")
        assert s.errors == [] and other.errors == [], f"console errors: {s.errors + other.errors}"
        assert s.external == [] and other.external == []
    finally:
        s.close()
        other.close()


def test_stores_tab_writes_a_store_in_a_real_browser(browser, tmp_path_factory):
    """On its own server over a scratch data directory (nothing is written into
    sample_data/): pick reference and trajectory in the sidebar, write a store from the
    Stores tab with progress, and see it listed, opened and rasterised."""
    from dashboard._testing import make_sample_dir

    folder = tmp_path_factory.mktemp("e2e_store_data")
    make_sample_dir(folder)
    with running_server(folder, tmp_path_factory.mktemp("e2e_store_cache"),
                        "server_store.log") as info:
        s = Session(browser, info["url"])
        s.open()
        page = s.page
        try:
            s.add(["solid.extxyz"], "reference")
            s.add(["failed_traj.extxyz"], "trajectory")
            s.tab("Stores")
            page.get_by_text("New store from the files in the sidebar").click()
            name = page.locator(".bk-input-group:visible", has_text="New store").locator("input")
            name.first.fill("failed_run")
            name.first.press("Enter")
            page.get_by_role("button", name="Write store").click()
            page.get_by_text("Done: stores/failed_run").wait_for(timeout=300_000)
            page.get_by_text(re.compile(r"Raster \d+: .* 1,296 atoms aggregated in")).wait_for(
                timeout=120_000)
            assert (folder / "stores" / "failed_run" / "manifest.json").is_file()
            s.wait_titles(["Per-atom dH, 1,296 atoms", "mean dH (nats) per frame"])
            s.shot("10_stores_written")
            assert s.errors == [], f"browser console errors: {s.errors}"
            assert s.external == []
        finally:
            s.close()
