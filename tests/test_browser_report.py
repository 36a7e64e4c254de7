"""The report (``quests-dashboard report``) opened from a ``file://`` URL in headless
Chromium with every request to anything but file:/data:/blob: refused and recorded:
it renders (Bokeh roots, drawn canvases), the console stays free of errors, its
numbers equal ``quests-dashboard trajectory``'s and its size stays bounded.
Screenshots (1400x900) go to test-artifacts/report/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quests_core.cli import main

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "report"
FAILED = ROOT / "sample_data" / "cu_failed_simulation.extxyz"
SOLID = ROOT / "sample_data" / "cu_solid_400K.extxyz"
#: size bound of the bundled run's report (30,240 + 8,640 atoms; 2.6 MB when written)
BOUND = 15e6

if not Path("/usr/bin/chromium").exists():
    pytest.skip("no /usr/bin/chromium", allow_module_level=True)
pytest.importorskip("playwright")
if not (FAILED.exists() and SOLID.exists()):
    pytest.skip("bundled sample data missing", allow_module_level=True)


def open_offline(browser, url: str):
    """A page opened at ``url`` with every request but file:/data:/blob: aborted."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    record = {"blocked": [], "errors": []}
    page.on("console", lambda m: record["errors"].append(m.text) if m.type == "error"
            else None)
    page.on("pageerror", lambda e: record["errors"].append(str(e)))

    def route(r):
        if r.request.url.startswith(("file:", "data:", "blob:")):
            r.continue_()
        else:
            record["blocked"].append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url)
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && "
                           "Bokeh.documents[0].roots().length > 0", timeout=60_000)
    page.wait_for_timeout(2500)
    return context, page, record


def test_report_opens_offline_with_the_trajectory_numbers(browser, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(FAILED), "-r", str(SOLID), "-o", str(out), "-q",
                 "--learning-max-n", "300", "--overlap-max-n", "300"]) == 0
    csv = tmp_path / "t.csv"
    assert main(["trajectory", str(FAILED), "-r", str(SOLID), "-o", str(csv), "-q"]) == 0
    table = pd.read_csv(csv)
    assert out.stat().st_size < BOUND
    context, page, record = open_offline(browser, out.as_uri())
    try:
        # rendered: Bokeh roots, canvases drawn (non-blank pixels)
        roots = page.evaluate("() => Bokeh.documents[0].roots().length")
        assert roots >= 1
        drawn = page.evaluate("""() => {
            const out = [];
            const walk = (root) => root.querySelectorAll('*').forEach((el) => {
                if (el.shadowRoot) walk(el.shadowRoot);
                if (el.tagName === 'CANVAS' && el.width > 50 && el.height > 50) {
                    try {
                        const ctx = el.getContext('2d');
                        const d = ctx.getImageData(0, 0, el.width, el.height).data;
                        let ink = 0;
                        for (let i = 3; i < d.length; i += 4 * 97) if (d[i] > 0) ink++;
                        out.push(ink);
                    } catch (e) { out.push(-1); }
                }
            });
            walk(document);
            return out;
        }""")
        assert sum(1 for ink in drawn if ink > 0) >= 6, drawn
        data = json.loads(page.evaluate(
            "() => document.getElementById('quests-report-data').textContent"))
        traj = data["trajectories"][FAILED.name]
        np.testing.assert_allclose(traj["H"], table["H"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(traj["frac_novel"], table["frac_novel"], atol=1e-12)
        assert traj["flagged_frames"] == [31]
        text = page.evaluate("""() => {
            let t = document.body.innerText;
            const walk = (root) => root.querySelectorAll('*').forEach((el) => {
                if (el.shadowRoot) { t += ' ' + el.shadowRoot.textContent; walk(el.shadowRoot); }
            });
            walk(document);
            return t;
        }""")
        assert "First jump frame: frame 31" in text
        assert "1 jump frame(s)" in text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report_top.png"))
        page.evaluate("window.scrollTo(0, document.body.scrollHeight * 0.45)")
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "report_trajectory.png"))
        assert record["blocked"] == [], record["blocked"]
        assert record["errors"] == [], record["errors"]
    finally:
        context.close()
