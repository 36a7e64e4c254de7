"""The dashboard in a real JupyterLab and a real Jupyter Notebook 7, offline: ``jupyter
lab`` (``jupyter notebook``) on 127.0.0.1 with no token, the example notebook opened in
Debian's headless Chromium and run with Run All.

Every request to a host other than the Jupyter server is aborted and counted (there
must be none); the console must stay free of errors; the dashboard must render inside
the cell's output, Compute must end with its results, a tab switch must draw a Bokeh
plot with data, no plot may be narrower than 300 px and every tab must be visible.
Screenshots at 1400x900 go to ``test-artifacts/jupyterlab/``.

``nbclient`` (tests/test_dashboard_notebook.py) executes the notebook's code; only a
browser sees whether the output renders.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_browser_e2e import CHROMIUM, free_port
from test_browser_tour import INSPECT

from dashboard._testing import stop_process, wait_until_serving

pytestmark = pytest.mark.browser
pytest.importorskip("jupyterlab", reason="the test extra installs JupyterLab")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "dashboard.ipynb"
ARTIFACTS = Path(os.environ.get("QUESTS_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "jupyterlab"
LOCAL = re.compile(r"^(https?|wss?)://(127\.0\.0\.1|localhost)[:/]")
VIEWPORT = {"width": 1400, "height": 900}

if not os.path.exists(CHROMIUM):  # pragma: no cover - depends on the machine
    if os.environ.get("QUESTS_REQUIRE_BROWSER"):
        pytest.fail("QUESTS_REQUIRE_BROWSER is set but /usr/bin/chromium is missing",
                    pytrace=False)
    pytest.skip("Debian chromium is not installed (apt-get install chromium)",
                allow_module_level=True)


@contextlib.contextmanager
def jupyter_lab(work: Path, data_dir: Path, cache_dir: Path, front_end: str = "lab"):
    """``jupyter lab`` (or ``jupyter notebook``: ``front_end="notebook"``) serving
    ``work`` on a free 127.0.0.1 port, no token, its own config/runtime/settings folders
    (news and update checks off); yields the base URL."""
    settings = work.parent / "lab-settings"
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    if front_end == "lab":  # Notebook 7 has no news (and fails on settings it lacks)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # every cell stays rendered when scrolled away (JupyterLab 4 skips drawing them)
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True, exist_ok=True)
    # and the notebook's kernel starts without a dialog when the kernel specs arrive late
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps(
        {"windowingMode": "none", "autoStartDefaultKernel": True}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(work.parent / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(work.parent / "jupyter-runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(work.parent / "lab-workspaces"),
               QUESTS_DATA_DIR=str(data_dir), QUESTS_CACHE_DIR=str(cache_dir))
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "jupyter.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", front_end, "--no-browser", "--allow-root",
         "--ip=127.0.0.1", f"--port={port}", "--IdentityProvider.token=",
         "--ServerApp.password=", f"--ServerApp.root_dir={work}",
         "--ServerApp.disable_check_xsrf=True",  # the test starts the kernel by the API
         "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_serving(f"{base}/api/status", proc, timeout=240):
            log.flush()
            pytest.fail("jupyter lab did not start: "
                        + (ARTIFACTS / "jupyter.log").read_text()[-2000:])
        yield base
    finally:
        stop_process(proc)
        log.close()


FRONT_ENDS = {"lab": "lab/tree", "notebook": "notebooks"}  # front end: a notebook's URL


@pytest.fixture(scope="module", params=sorted(FRONT_ENDS))
def lab(request, tmp_path_factory):
    """JupyterLab 4 (``lab``) or Jupyter Notebook 7 (``notebook``) over a folder holding a
    copy of the example notebook (the repository's copy is never saved over) with the
    bundled sample data; yields ``(front end, base URL)``."""
    front_end = request.param
    if front_end == "notebook":
        pytest.importorskip("notebook", minversion="7", reason="the test extra installs it")
    base = tmp_path_factory.mktemp(front_end)
    work = base / "work"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / "dashboard.ipynb")
    data_dir = ROOT / "sample_data"
    if not any(data_dir.glob("*.extxyz")):
        from dashboard._testing import make_sample_dir

        data_dir = base / "data"
        make_sample_dir(data_dir)
    with jupyter_lab(work, data_dir, base / "cache", front_end) as url:
        yield front_end, url


class LabPage:
    """One Chromium page on JupyterLab; every other host aborted and recorded."""

    def __init__(self, browser, base: str, front_end: str = "lab"):
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.base, self.front_end = base, front_end
        self.external: list[str] = []
        self.errors: list[str] = []
        self.front_end_errors: list[str] = []  # the front end's own, known ones
        self.page.route("**/*", self._route)
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" else None)
        self.page.on("pageerror", self._page_error)

    def _page_error(self, error) -> None:
        stack = error.stack or ""
        # Notebook 7.6's shortcut settings fail at start-up in its own bundle, before
        # and without any output of ours (seen with no user settings at all)
        if "reading 'schema'" in str(error) and "/static/notebook/notebook_core." in stack:
            self.front_end_errors.append(str(error))
            return
        self.errors.append(f"pageerror: {error} {stack}")

    def _route(self, route) -> None:
        url = route.request.url
        if LOCAL.match(url) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def start_kernel(self, name: str) -> None:
        """Start the notebook's kernel session through the server's API before the page
        opens it: the front end then joins it instead of asking for a kernel (it asks,
        and a click there replaces the kernel, when the kernel specs arrive after the
        notebook)."""
        body = json.dumps({"path": name, "type": "notebook", "name": name,
                           "kernel": {"name": "python3"}}).encode()
        request = urllib.request.Request(f"{self.base}/api/sessions", data=body,
                                         method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 201, response.status

    def open_notebook(self, name: str, front_end: str = "lab") -> None:
        self.start_kernel(name)
        self.page.goto(f"{self.base}/{FRONT_ENDS[front_end]}/{name}")
        self.page.locator(".jp-Notebook").wait_for(timeout=120_000)
        self.wait_for_kernel()
        # the front end may still ask for a kernel (seen seconds after the kernel was
        # idle, under load): answer before anything runs
        end = time.monotonic() + 5
        while time.monotonic() < end:
            if self.choose_kernel():
                self.wait_for_kernel()
            time.sleep(0.5)

    def wait_for_kernel(self, timeout: float = 120) -> None:
        """Until the kernel is idle (the toolbar's indicator, in both front ends)."""
        idle = self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
        end = time.monotonic() + timeout
        while not idle.count():
            assert time.monotonic() < end, "the notebook's kernel did not start"
            self.choose_kernel()
            time.sleep(0.5)

    def choose_kernel(self) -> bool:
        """Accept the notebook's own kernel where the front end asks for one (it does when
        the kernel specs or sessions arrive after the notebook); True if it asked."""
        choose = self.page.locator(".jp-Dialog").get_by_role("button", name="Select")
        if choose.count():
            choose.first.click()
            return True
        return False

    def run_all(self, n_code_cells: int, timeout: float = 400) -> None:
        page = self.page
        prompt = page.locator(".jp-InputArea-prompt")
        for _ in range(5):  # the menu can open before the notebook takes commands
            if self.choose_kernel():  # a late kernel dialog blocks the menu: answer it
                self.wait_for_kernel()
            try:
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click(
                    timeout=10_000)
                page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")) \
                    .click(timeout=10_000)
                prompt.filter(has_text=re.compile(r"\[(\*|\d+)\]")).first.wait_for(
                    timeout=10_000)
                break
            except Exception:
                continue
        end = time.monotonic() + timeout
        while True:
            done = prompt.filter(has_text=re.compile(r"\[\d+\]")).count()
            if done >= n_code_cells and prompt.filter(has_text="[*]").count() == 0:
                return
            assert time.monotonic() < end, f"{done} of {n_code_cells} cells ran"
            time.sleep(1)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{self.front_end}-{name}.png"))

    def plot_widths(self) -> list[int]:
        """Widths of the drawn plot canvases visible in the notebook (px)."""
        return self.page.evaluate(
            """() => {
                const out = [];
                const walk = (root) => {
                  for (const el of root.querySelectorAll('*')) {
                    if (el.shadowRoot) walk(el.shadowRoot);
                    if (el.classList && el.classList.contains('bk-Canvas')) {
                      const r = el.getBoundingClientRect();
                      if (r.width > 0 && r.height > 0) out.push(Math.round(r.width));
                    }
                  }
                };
                walk(document);
                return out;
            }""")

    def close(self) -> None:
        self.context.close()


def code_cells(path: Path) -> int:
    return sum(c["cell_type"] == "code" for c in json.loads(path.read_text())["cells"])


def test_example_notebook_in_jupyterlab_offline(lab, browser):
    front_end, url = lab
    s = LabPage(browser, url, front_end)
    page = s.page
    try:
        s.open_notebook("dashboard.ipynb", front_end)
        s.run_all(code_cells(NOTEBOOK))
        # the app renders inside the first output: its tabs and its Compute button
        dashboard = page.locator(".jp-OutputArea-output", has=page.locator(".bk-tab"))
        dashboard.first.wait_for(timeout=60_000)
        tabs = dashboard.first.locator(".bk-tab")
        names = [t.strip() for t in tabs.all_inner_texts()]
        assert names[:2] == ["Data", "Atoms"] and names[-1] == "Stores", names
        # every tab is inside the cell's width (the bar wraps rather than clips)
        cell = dashboard.first.bounding_box()
        for i in range(tabs.count()):
            box = tabs.nth(i).bounding_box()
            assert box and box["x"] >= cell["x"] - 1 and \
                box["x"] + box["width"] <= cell["x"] + cell["width"] + 1, (names[i], box, cell)
        # the scripted compute of the notebook shows its results in the app (every update
        # reached the page: the frame selection typed from code, the status), and no
        # message line complains (the example chooses its files from none)
        app = dashboard.first
        app.scroll_into_view_if_needed()
        done = app.get_by_text(re.compile(r"Done in [0-9.]+ s")).first
        done.wait_for(timeout=120_000)
        app.locator(".tabulator-row", has_text="fail").locator(
            '.tabulator-cell[tabulator-field="frames"]', has_text="::4").wait_for(timeout=10_000)
        complaints = app.locator(".quests-message[data-level='error'], "
                                 ".quests-message[data-level='warning']")
        assert complaints.count() == 0, complaints.all_inner_texts()
        done.scroll_into_view_if_needed()
        s.shot("1-after-run-all")
        # a click on Compute (volume rule: another h) ends with its results text
        app.get_by_role("button", name="volume rule").click()
        app.get_by_role("button", name="Compute", exact=True).click()
        app.get_by_text(re.compile(r"Done in [0-9.]+ s: .*h = (?!0\.015 )[0-9.]+ 1/Å")).first \
            .wait_for(timeout=300_000)
        s.shot("2-after-compute")
        # a tab switch draws its plots, with data, none narrower than 300 px
        for tab, title in (("Trajectory", "H (nats) per frame"), ("Atoms", "dH histogram")):
            tabs.filter(has_text=re.compile(f"^{tab}$")).first.click()
            end = time.monotonic() + 60
            while True:
                figs = [f for f in page.evaluate(INSPECT) if f["title"].startswith(title)]
                if figs and figs[0]["xdata"] is not None and figs[0]["ydata"] is not None:
                    break
                assert time.monotonic() < end, f"{tab}: no plot {title!r} with data"
                time.sleep(0.5)
            app.locator(".bk-Canvas:visible").first.scroll_into_view_if_needed()
            time.sleep(1.0)
            widths = s.plot_widths()
            assert widths and min(widths) >= 300, (tab, widths)
            s.shot(f"3-tab-{tab.lower()}")
        assert not s.errors, s.errors
        assert not s.external, "\n".join(sorted(set(s.external)))
    except BaseException:
        s.page.screenshot(path=str(ARTIFACTS / f"{front_end}-failure.png"), full_page=True)
        (ARTIFACTS / f"{front_end}-failure-console.txt").write_text("\n".join(s.errors))
        (ARTIFACTS / f"{front_end}-failure-sources.txt").write_text(json.dumps(page.evaluate(
            """() => { const out = [];
                if (!window.Bokeh) return out;
                for (const d of Bokeh.documents) for (const m of d.all_models)
                  if (m.data && m.data.frames) out.push(Array.from(m.data.frames));
                return out; }"""), default=str))
        raise
    finally:
        s.close()
