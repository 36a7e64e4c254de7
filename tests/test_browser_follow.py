"""The Trajectory view's follow mode in a real headless Chromium (1400x900).

A server runs on a temporary data directory holding the reference
(``cu_solid_400K.extxyz``) and ``md_run.extxyz``, which holds frame 0 of the
bundled failed run. The test presses Start in the Trajectory tab, then a writer
process appends the other 34 frames (every third frame flushed in two parts
cut mid-line) and records when each frame's last byte was written. From
``Bokeh.documents[0]`` it asserts that the ``follow-frames`` source grows
frame by frame and that every frame is in the page within 2 s of being
written, that the ``follow-flags`` source (the flagged-frames table) starts at
the blow-up (frame 19, where the offline rule flags it), that Stop ends the
follow, that switching tabs and back keeps the sources whole and streaming, that no
request left the machine and that the console stayed clean.
Screenshots go to ``test-artifacts/dashboard/follow/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_browser_e2e import ARTIFACTS, Session, running_server

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
REFERENCE, FAILED = SAMPLE / "cu_solid_400K.extxyz", SAMPLE / "cu_failed_simulation.extxyz"
SHOTS = ARTIFACTS / "follow"
VIEWPORT = (1400, 900)
RUN = "md_run.extxyz"
#: The latency the issue allows between a frame written and the frame drawn (s).
MAX_LATENCY = 2.0

# Appends frames 1.. of SRC to DST, one every PACE s; every third frame in two parts
# cut mid-line; prints "frame unix_time" after each frame's last byte.
WRITER = r'''
import os, sys, time
src, dst, pace = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = open(src, "rb").read()
starts, pos = [], 0
while pos < len(data):
    starts.append(pos)
    n = int(data[pos:data.index(b"\n", pos)].split()[0])
    for _ in range(n + 2):
        pos = data.index(b"\n", pos) + 1
bounds = list(zip(starts, starts[1:] + [len(data)]))
fd = os.open(dst, os.O_WRONLY | os.O_APPEND)
for k, (a, b) in enumerate(bounds):
    if k == 0:
        continue
    chunk = data[a:b]
    if k % 3 == 0:
        cut = len(chunk) // 2 + 7
        os.write(fd, chunk[:cut])
        os.fsync(fd)
        time.sleep(pace / 2)
        chunk = chunk[cut:]
    os.write(fd, chunk)
    os.fsync(fd)
    print(k, repr(time.time()), flush=True)
    time.sleep(pace)
os.close(fd)
'''

#: The follow sources of the page: frames shown, newest frame, flagged frames.
SOURCES = """() => {
  const out = {frames: null, flags: null};
  for (const d of Bokeh.documents) for (const m of d.all_models) {
    if (m.name !== 'follow-frames' && m.name !== 'follow-flags') continue;
    const data = m.data, col = (f) => Array.from(data instanceof Map ? data.get(f) : data[f]);
    if (m.name === 'follow-frames') out.frames = col('frame');
    else out.flags = col('frame');
  }
  return out;
}"""

#: Axis labels and titles of the follow figures.
AXES = """() => {
  const out = [];
  for (const d of Bokeh.documents) for (const m of d.all_models) {
    if (!m.name || !m.name.startsWith('follow-') || m.below === undefined) continue;
    out.push({name: m.name, title: m.title.text,
              x: m.below.map((a) => a.axis_label).join('|'),
              y: m.left.map((a) => a.axis_label).join('|')});
  }
  return out;
}"""


def first_frame(path: Path) -> bytes:
    data = path.read_bytes()
    pos = data.index(b"\n")
    n = int(data[:pos].split()[0])
    for _ in range(n + 1):
        pos = data.index(b"\n", pos + 1)
    return data[: pos + 1]


def last_frame(path: Path) -> bytes:
    data = path.read_bytes()
    pos, start = 0, 0
    while pos < len(data):
        start = pos
        n = int(data[pos : data.index(b"\n", pos)].split()[0])
        for _ in range(n + 2):
            pos = data.index(b"\n", pos) + 1
    return data[start:]


@pytest.mark.skipif(not (REFERENCE.exists() and FAILED.exists()),
                    reason="needs the bundled sample_data/")
def test_follow_a_run_being_written(browser, tmp_path_factory):
    folder = tmp_path_factory.mktemp("follow_data")
    shutil.copy(REFERENCE, folder / REFERENCE.name)
    (folder / RUN).write_bytes(first_frame(FAILED))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running_server(folder, tmp_path_factory.mktemp("follow_cache"),
                        "server_follow.log") as info:
        s = Session(browser, info["url"], viewport=VIEWPORT)
        page = s.page
        writer = None
        try:
            s.open()
            s.tab("Trajectory")
            page.get_by_text("Follow a running simulation").wait_for(timeout=30_000)
            select = page.locator(".bk-input-group", has_text="File to follow").locator("select")
            assert select.input_value() == RUN  # the Data tab's trajectory
            page.get_by_role("button", name="Start").click()
            # the reference is computed, then frame 0 (already in the file) is shown
            deadline = time.monotonic() + 60
            while (page.evaluate(SOURCES)["frames"] or []) != [0]:
                assert time.monotonic() < deadline, "frame 0 never shown"
                time.sleep(0.1)
            page.get_by_text(f"following {RUN}: 1 frame, last at t = 0 ps, waiting").wait_for(
                timeout=10_000)

            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(FAILED), str(folder / RUN), "0.25"],
                stdout=subprocess.PIPE, text=True)
            seen: dict[int, float] = {}
            sizes: list[int] = []
            deadline = time.monotonic() + 40
            while len(seen) < 35:
                frames = page.evaluate(SOURCES)["frames"] or []
                now = time.time()
                for f in frames:
                    seen.setdefault(f, now)
                if not sizes or sizes[-1] != len(frames):
                    sizes.append(len(frames))
                if len(seen) == 18 and not (SHOTS / "follow_running.png").exists():
                    page.screenshot(path=str(SHOTS / "follow_running.png"), full_page=True)
                assert time.monotonic() < deadline, f"only frames {sorted(seen)} shown"
                time.sleep(0.05)
            out, _ = writer.communicate(timeout=30)
            assert writer.returncode == 0
            written = {int(k): float(t) for k, t in (line.split() for line in out.splitlines())}
            assert sorted(written) == list(range(1, 35))
            latency = {k: seen[k] - written[k] for k in written}
            (SHOTS / "latency.json").write_text(json.dumps(latency, indent=1))
            assert max(latency.values()) <= MAX_LATENCY, latency
            assert min(latency.values()) > -0.05  # never shown before it was written
            # the source grew frame by frame, in file order
            assert sizes == sorted(sizes) and len(sizes) >= 10
            assert page.evaluate(SOURCES)["frames"] == list(range(35))

            end = time.monotonic() + MAX_LATENCY  # the flags arrive in their own message
            while (flags := page.evaluate(SOURCES)["flags"])[-1:] != [34]:
                assert time.monotonic() < end, flags
                time.sleep(0.05)
            assert flags[0] == 19  # the offline rule's frame (tests/test_watch.py)
            assert flags == list(range(19, 35))  # the run stays novel after the blow-up
            summary = "16 novel frame(s) of 35 (red triangles), first at frame 19"
            page.get_by_text(summary).wait_for(timeout=10_000)
            table = page.locator(".slick-row")
            assert table.first.inner_text().split()[0] == "19"

            axes = {a["name"]: a for a in page.evaluate(AXES)}
            assert {a["x"] for a in axes.values()} == {"time (ps)"}
            assert axes["follow-H"]["y"] == "H (nats)"
            assert axes["follow-mean_dH"]["y"] == "mean dH (nats, asinh)"
            assert axes["follow-max_dH"]["y"] == "max dH (nats, asinh)"
            assert axes["follow-frac_novel"]["y"] == "fraction of atoms with dH > 0"
            page.locator(".slick-row").last.scroll_into_view_if_needed()
            time.sleep(0.3)
            page.screenshot(path=str(SHOTS / "follow_table.png"))
            page.screenshot(path=str(SHOTS / "follow_done.png"), full_page=True)

            # another tab and back: the sources are whole, and the next frame still streams
            s.tab("Data")
            time.sleep(1.0)
            s.tab("Trajectory")
            page.get_by_text("Follow a running simulation").wait_for(timeout=10_000)
            assert page.evaluate(SOURCES)["frames"] == list(range(35))
            with open(folder / RUN, "ab") as fd:  # frame 35: a copy of frame 34
                fd.write(last_frame(FAILED))
            written_at = time.time()
            while page.evaluate(SOURCES)["frames"] != list(range(36)):
                assert time.time() - written_at <= MAX_LATENCY, "frame 35 not shown in time"
                time.sleep(0.05)
            page.get_by_text("Follow a running simulation").scroll_into_view_if_needed()
            time.sleep(0.5)
            page.screenshot(path=str(SHOTS / "follow_after_tab_switch.png"))

            page.get_by_role("button", name="Stop").click()
            page.get_by_text(f"stopped (36 frames of {RUN})").wait_for(timeout=10_000)
            assert s.external == [], f"requests left the machine: {s.external}"
            assert s.errors == [], f"browser console errors: {s.errors}"
        finally:
            if writer is not None and writer.poll() is None:
                writer.kill()
            s.close()
