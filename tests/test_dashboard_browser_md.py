"""An XTC trajectory with its topology in a real headless Chromium: the files table's
topology column, the one-line warning before a topology is named, and a Compute.

The screenshot ``test-artifacts/dashboard/md_topology.png`` shows the Data tab with
the column filled in.
"""

from __future__ import annotations

import re

import pytest
from test_browser_e2e import ARTIFACTS, Session, running_server
from test_dashboard_md import write_xtc_and_pdb

pytestmark = pytest.mark.browser


def test_topology_column_in_a_real_browser(browser, tmp_path_factory):
    from ase.io import read

    from dashboard._testing import make_sample_dir

    folder = tmp_path_factory.mktemp("md_browser")
    sample = make_sample_dir(folder)
    (folder / "top").mkdir()
    write_xtc_and_pdb(read(sample["failed_traj.extxyz"], index=":"), folder / "traj.xtc",
                      folder / "top" / "cu.pdb")
    with running_server(folder, tmp_path_factory.mktemp("md_cache"), "server_md.log") as info:
        s = Session(browser, info["url"], viewport=(1400, 900))
        page = s.page
        try:
            s.open()
            for name in [r.inner_text() for r in page.locator(
                    ".tabulator-cell[tabulator-field='file']").all()]:
                s.remove(name.strip())
            s.add(["solid.extxyz"], "reference")
            s.add(["traj.xtc"], "trajectory")
            page.get_by_text(re.compile("traj.xtc: GROMACS XTC files do not name their atoms")
                             ).first.wait_for(timeout=30_000)
            header = page.locator(".tabulator-col[tabulator-field='topology']")
            header.wait_for(timeout=20_000)
            cell = page.locator(".tabulator-row", has_text="traj.xtc").locator(
                ".tabulator-cell[tabulator-field='topology']")
            cell.click()
            editor = cell.locator("input")
            editor.fill("top/cu.pdb")
            editor.press("Enter")
            page.locator(".tabulator-row", has_text="traj.xtc").locator(
                ".tabulator-cell[tabulator-field='topology']", has_text="top/cu.pdb").wait_for(
                timeout=20_000)
            # the column lies inside the table, left of the remove marks, not on them
            table = page.locator(".tabulator").first.bounding_box()
            top, remove = header.bounding_box(), page.locator(
                ".tabulator-col[tabulator-field='remove']").bounding_box()
            assert top["width"] >= 40 and top["x"] + top["width"] <= remove["x"] + 1
            assert remove["x"] + remove["width"] <= table["x"] + table["width"] + 1
            s.compute()
            s.wait_done(timeout=300)
            status = page.get_by_text(re.compile(r"Done in [0-9.]+ s: ")).first.inner_text()
            assert "16 frames, 1,728 atoms" in status, status
            page.screenshot(path=str(ARTIFACTS / "md_topology.png"))
            assert s.external == [] and s.errors == []
        finally:
            s.close()
