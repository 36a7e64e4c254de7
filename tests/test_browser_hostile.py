"""Hostile uploads in a real headless Chromium (issue 11).

A server (``launch.py --max-upload-mb 1``) over a data directory holding a symlink
loop: the page lists the good files and says one entry was skipped; a 2 MB upload
is refused in the browser before it is sent, with "... MB is over the 1 MB upload
limit", and the session lives on; hostile files (random bytes, a truncated .gro,
1e300 coordinates) and a malformed (list-valued) upload message end in one line
each; a later good Compute finishes; no console errors, no external requests.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from ase.io import write
from conftest import noisy_cu
from test_browser_e2e import ARTIFACTS, Session, running_server

pytestmark = pytest.mark.browser


def capped_server(folder, cache_dir, max_upload_mb: float = 1.0):
    """``launch.py`` on 127.0.0.1 with an upload cap (a context manager yielding the
    server facts of :func:`running_server`)."""
    return running_server(folder, cache_dir, "server_hostile.log",
                          extra_args=("--max-upload-mb", str(max_upload_mb)))


#: The file names the page's FileInput models hold (None: never set, nothing was read).
FILE_INPUT_NAMES = """() => {
    const out = [];
    for (const d of Bokeh.documents) for (const m of d.all_models)
      if (m.type === 'FileInput' || m.constructor.__name__ === 'FileInput')
        try { out.push(m.filename || null) } catch (e) { out.push(null) }  // unset: throws
    return out;
}"""


#: A page script's forged value for the follow mode's file selector (not among its options).
FORGE_FOLLOW_FILE = """() => { let n = 0;
    for (const d of Bokeh.documents) for (const m of d.all_models)
      if (m.title === 'File to follow') { m.value = '../../etc/passwd'; n++; }
    return n; }"""


def _hostile_files() -> list[dict]:
    rng = np.random.default_rng(11)
    atoms = noisy_cu((2, 2, 2), noise=0.02, seed=5)
    gro = "\n".join(
        ["argon", f"{len(atoms)}"]
        + [f"{i + 1:5d}CU      CU{i + 1:5d}{x / 10:8.3f}{y / 10:8.3f}{z / 10:8.3f}"
           for i, (x, y, z) in enumerate(atoms.positions[:10])])  # cut: 10 of 32, no box
    huge = "2\n\nCu 1e300 0 0\nCu 0 0 0\n"
    return [
        {"name": "noise.extxyz", "mimeType": "text/plain",
         "buffer": rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()},
        {"name": "truncated.gro", "mimeType": "text/plain", "buffer": gro.encode()},
        {"name": "huge_1e300.xyz", "mimeType": "text/plain", "buffer": huge.encode()},
    ]


def test_hostile_uploads_keep_the_page_working(browser, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write(data / "reference_solid.extxyz",
          [noisy_cu((2, 2, 2), noise=0.02, seed=i) for i in range(2)], format="extxyz")
    write(data / "traj_run.extxyz",
          [noisy_cu((2, 2, 2), noise=0.05 * (i + 1), seed=10 + i) for i in range(2)],
          format="extxyz")
    os.symlink("loop.extxyz", data / "loop.extxyz")  # a symlink loop must not blank the page

    with capped_server(data, tmp_path / "cache") as info:
        s = Session(browser, info["url"])
        page = s.page
        try:
            s.open()
            page.get_by_text("1 entry of the data directory skipped").wait_for(timeout=20_000)
            assert page.locator("select[multiple] option").all_inner_texts() == [
                "reference_solid.extxyz", "traj_run.extxyz"]
            upload = page.locator("input[type=file]")

            # over the cap: refused in the browser, before it is read or sent
            upload.set_input_files(files=[{"name": "big.extxyz", "mimeType": "text/plain",
                                           "buffer": b"x" * 2_000_000}])
            page.get_by_text(re.compile(r"big\.extxyz: 2 MB is over the 1 MB upload limit")
                             ).first.wait_for(timeout=20_000)
            s.shot("hostile_00_over_cap")
            assert page.evaluate(FILE_INPUT_NAMES) == [None], "the browser sent the file"
            # past the server's websocket message limit (11.4 MiB here), which used to
            # drop the connection and kill the session without a word
            upload.set_input_files(files=[{"name": "huge.extxyz", "mimeType": "text/plain",
                                           "buffer": b"x" * 13_000_000}])
            page.get_by_text(re.compile(r"huge\.extxyz: 13 MB is over the 1 MB upload limit")
                             ).first.wait_for(timeout=20_000)

            for f in _hostile_files():
                upload.set_input_files(files=[f])
                page.locator(".tabulator-cell", has_text=f"upload/{f['name']}").wait_for(
                    timeout=20_000)

            # a malformed (list-valued) upload message, as a hostile page script sends it
            page.evaluate("""() => {
                for (const d of Bokeh.documents) for (const m of d.all_models)
                  if (m.type === 'FileInput' || m.constructor.__name__ === 'FileInput')
                    m.setv({filename: ['a.extxyz', 'b.extxyz'], mime_type: ['', ''],
                            value: ['MQoKQ3UgMCAwIDAK', 'MQoKQ3UgMCAwIDAK']});
            }""")
            page.get_by_text("upload refused: 2 files in one message").first.wait_for(
                timeout=20_000)

            # forged widget values, as a page script sends them: refused, one log line each
            s.tab("Trajectory")
            page.get_by_text("Follow a running simulation").wait_for(timeout=60_000)
            assert page.evaluate(FORGE_FOLLOW_FILE) == 1
            page.get_by_text("Follow a running simulation").wait_for(timeout=20_000)
            s.tab("Data")

            # a compute over the hostile files fails in one line naming a file
            s.compute()
            failed = page.get_by_text(re.compile(r"^Failed: upload/")).first
            failed.wait_for(timeout=120_000)
            assert "\n" not in failed.inner_text().strip()
            s.shot("hostile_01_failed")

            # the session lives on: without them, Compute finishes
            for f in _hostile_files():
                s.remove(f"upload/{f['name']}")
            s.compute()
            s.wait_done(timeout=300)
            s.shot("hostile_02_done")
            assert s.external == []
            assert s.errors == [], s.errors
        finally:
            s.close()
    log = (ARTIFACTS / "server_hostile.log").read_text()
    refused = [x for x in log.splitlines() if "refused a value sent by the browser" in x]
    assert refused and all("../../etc/passwd not in list" in x for x in refused), log[-3000:]
    assert "Traceback" not in log, log[-3000:]
