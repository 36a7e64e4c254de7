"""Dashboard benchmarks: first render, zoom re-aggregation on 10 M atoms, server memory,
drawing new results of 1 M atoms.

Targets (issue 4):

* first render of the app <= 5 s after the server is up (headless Chromium,
  fresh browser context, from navigation to the sidebar and Data tab shown);
* re-aggregation after a zoom on 10 million per-atom points <= 1 s
  server-side on 2 cores;
* server memory <= 3x the raw per-atom arrays;
* the per-atom views of 1,000,000 atoms drawn <= 2 s after a computation ends
  (issue 18; server side, 2 cores).

Usage::

    python benchmarks/bench_dashboard.py                    # everything, 10 M points
    python benchmarks/bench_dashboard.py --points 1000000 --skip-browser
    python benchmarks/bench_dashboard.py --out benchmarks/results/dashboard.json

The zoom benchmark builds the Atoms view on a synthetic per-atom table with
the dashboard's dtypes (the same as a computed one), renders it with Bokeh,
then replays zooms through HoloViews' RangeXY stream exactly as a browser
zoom does, timing the server-side work (Datashader aggregation, spreading,
Bokeh model update). Numba threads are limited to ``--threads``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def rss_mb() -> float:
    """Resident memory of this process (MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# ----------------------------------------------------------------------------- zoom


def bench_zoom(n_points: int, threads: int, repeats: int) -> dict:
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    import holoviews as hv
    import numpy as np
    from bokeh.document import Document

    from dashboard._testing import big_atoms_table
    from dashboard.app import load_extensions
    from dashboard.state import AppState, Results
    from dashboard.views.atoms import AtomsView
    from dashboard.warm import warm_up

    load_extensions()
    warm_up()
    gc.collect()
    base = rss_mb()
    atoms = big_atoms_table(n_points, frames=1000)
    gc.collect()
    raw = int(sum(atoms[c].memory_usage(index=False, deep=True) for c in atoms.columns))
    with_table = rss_mb()
    frames = atoms.groupby("structure", observed=True).size().rename("n_atoms").reset_index()
    frames["atom_offset"] = np.concatenate([[0], np.cumsum(frames["n_atoms"])[:-1]])
    frames["source"], frames["role"], frames["time"] = "bench.extxyz", "trajectory", 0.0
    frames["frame"] = frames["structure"]
    for c in ("H", "mean_dH", "frac_novel"):
        frames[c] = 0.0
    results = Results(frames=frames, atoms=atoms, h=0.015, k=32, cutoff=5.0,
                      reference="bench", files=[])
    reset_peak()
    t = time.perf_counter()
    state = AppState()
    state.results = results
    view = AtomsView(state=state)
    setup_s = time.perf_counter() - t

    t = time.perf_counter()
    pane = view.plot()
    dmap = pane.object
    plot = hv.renderer("bokeh").get_plot(dmap, doc=Document())
    first_s = time.perf_counter() - t
    rxy = [s for s in plot.streams if isinstance(s, hv.streams.RangeXY)]
    if not rxy:
        raise RuntimeError("no RangeXY stream on the Atoms plot")
    x_max = float(n_points)
    zooms = []
    rng = np.random.default_rng(0)
    for i in range(repeats):
        width = x_max / (2 ** (i % 4 + 1))
        x0 = float(rng.uniform(0, x_max - width))
        y0, y1 = -6.0 + 0.5 * (i % 3), 2.0 + 0.5 * (i % 3)
        t = time.perf_counter()
        for s in rxy:
            s.event(x_range=(x0, x0 + width), y_range=(y0, y1))
        zooms.append(time.perf_counter() - t)
        # the image now covers the zoomed range only: it really was re-aggregated
        left, _, right, _ = plot.current_frame.bounds.lbrt()
        if not (abs(left - x0) < 0.01 * width and abs(right - x0 - width) < 0.01 * width):
            raise RuntimeError(f"zoom to {x0}..{x0 + width} rendered {left}..{right}")
    del plot
    peak = peak_mb()
    # the other per-atom work of the view: histogram/CDF and the picked atoms
    t = time.perf_counter()
    view.histogram()
    hist_s = time.perf_counter() - t
    t = time.perf_counter()
    view.threshold = 1.0
    select_s = time.perf_counter() - t
    peak = max(peak, peak_mb())
    return {
        "points": n_points,
        "numba_threads": numba.get_num_threads(),
        "raw_arrays_mb": raw / 1e6,
        "rss_baseline_mb": base,
        "rss_with_table_mb": with_table,
        "peak_rss_mb": peak,
        "server_memory_over_raw": (peak - base) * 1.048576 / (raw / 1e6),
        "view_setup_s": setup_s,
        "first_aggregation_s": first_s,
        "zoom_s": zooms,
        "zoom_median_s": statistics.median(zooms),
        "zoom_max_s": max(zooms),
        "histogram_s": hist_s,
        "threshold_selection_s": select_s,
    }


def bench_draw(n_points: int, threads: int, repeats: int) -> dict:
    """Seconds from new results in a session to the per-atom views drawn (server side).

    A session showing one tab (Data, Atoms, Structure or Trajectory) is rendered into a
    Bokeh document; then ``state.results`` is set to a computation of ``n_points`` atoms
    (1,000 frames), which is what the end of a Compute does. The tab on screen rebuilds
    its plots into the document during that assignment (Datashader aggregation,
    histograms, the Structure frame, the per-frame curves), so its duration is the
    server's drawing time. Not included: sending the models to the browser and the
    browser's drawing.
    """
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    import numpy as np
    from bokeh.document import Document

    from dashboard._testing import big_atoms_table
    from dashboard.app import DashboardApp, load_extensions
    from dashboard.state import Results
    from dashboard.warm import warm_up

    load_extensions()
    warm_up()

    def results(seed: int) -> Results:
        atoms = big_atoms_table(n_points, seed=seed, frames=1000)
        frames = atoms.groupby("structure", observed=True).size().rename("n_atoms")
        frames = frames.reset_index()
        frames["atom_offset"] = np.concatenate([[0], np.cumsum(frames["n_atoms"])[:-1]])
        frames["source"], frames["role"] = "bench.extxyz", "trajectory"
        frames["time"] = frames["structure"] * 0.01
        frames["frame"] = frames["structure"]
        for c in ("H", "mean_dH", "frac_novel"):
            frames[c] = 0.0
        return Results(frames=frames, atoms=atoms, h=0.015, k=32, cutoff=5.0,
                       reference="bench", files=[])

    # the tab on screen is the one drawn (the tabs are dynamic: hidden ones are drawn
    # when opened); each is timed on its own, with a text that shows it was drawn
    tabs = {"Data": (0, "h = 0.015 1/Å, float64"),
            "Atoms": (1, f"Per-atom dH ({n_points:,} atoms)"),
            "Structure": (2, "bench.extxyz frame"), "Trajectory": (3, "H (nats) per frame")}
    per_tab: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        for name, (index, wanted) in tabs.items():
            app = DashboardApp(data_dir=data_dir, job_mode="thread")
            app.tabs.active = index
            doc = Document()
            doc.add_root(app.tabs.get_root(doc))
            per_tab[name] = []
            for i in range(repeats):
                res = results(i)
                gc.collect()
                t = time.perf_counter()
                app.state.results = res
                per_tab[name].append(time.perf_counter() - t)
                texts = {str(getattr(m, "text", "")) for m in doc.models}
                if not any(wanted in text for text in texts):
                    raise RuntimeError(f"{name}: new results not drawn ({wanted!r} missing)")
    times = [t for ts in per_tab.values() for t in ts]
    return {"points": n_points, "numba_threads": numba.get_num_threads(),
            "draw_s": per_tab, "draw_median_s": {k: statistics.median(v)
                                                  for k, v in per_tab.items()},
            "draw_max_s": max(times)}


# -------------------------------------------------------------------------- browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_first_render(repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    from dashboard._testing import make_sample_dir, wait_until_serving

    data_dir = ROOT / "sample_data"
    if not any(data_dir.glob("*.extxyz")):
        data_dir = Path(tempfile.mkdtemp(prefix="quests-bench-"))
        make_sample_dir(data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}/app"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--port", str(port), "--data-dir", str(data_dir),
         "--no-show"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_until_serving(url, proc, timeout=300, poll=0.2):
            raise RuntimeError("server did not start")
        startup = time.monotonic() - t0
        html_times = []
        for _ in range(3):
            t = time.monotonic()
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
            html_times.append(time.monotonic() - t)
        renders, external = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            for _ in range(repeats):
                context = browser.new_context()  # fresh: nothing cached
                page = context.new_page()
                page.on("request", lambda r: external.append(r.url)
                        if not re.match(r"^(https?|wss?)://127\.0\.0\.1", r.url)
                        and not r.url.startswith(("data:", "blob:")) else None)
                t = time.monotonic()
                page.goto(url)
                page.get_by_text("Start here").wait_for(timeout=120_000)
                renders.append(time.monotonic() - t)
                context.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "server_startup_s": startup,
        "html_response_s": html_times,
        "first_render_s": renders,
        "first_render_median_s": statistics.median(renders),
        "external_requests": external,
        "data_dir": str(data_dir),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--renders", type=int, default=5)
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--skip-zoom", action="store_true")
    parser.add_argument("--skip-draw", action="store_true")
    parser.add_argument("--draw-points", type=int, default=1_000_000)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    out: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
    }
    if not args.skip_browser:
        out["first_render"] = bench_first_render(args.renders)
        print(f"first render: median {out['first_render']['first_render_median_s']:.2f} s "
              f"({', '.join(f'{t:.2f}' for t in out['first_render']['first_render_s'])}); "
              f"server up after {out['first_render']['server_startup_s']:.1f} s; "
              f"external requests: {len(out['first_render']['external_requests'])}")
    if not args.skip_zoom:
        out["zoom"] = z = bench_zoom(args.points, args.threads, args.repeats)
        print(f"{z['points']:,} points, {z['numba_threads']} threads: zoom re-aggregation "
              f"median {z['zoom_median_s']:.3f} s, max {z['zoom_max_s']:.3f} s; first "
              f"aggregation {z['first_aggregation_s']:.2f} s; memory {z['peak_rss_mb']:.0f} MB "
              f"peak vs {z['raw_arrays_mb']:.0f} MB raw arrays "
              f"(x{z['server_memory_over_raw']:.2f} over the baseline "
              f"{z['rss_baseline_mb']:.0f} MB)")
    if not args.skip_draw:
        out["draw"] = d = bench_draw(args.draw_points, args.threads, max(3, args.repeats // 2))
        print(f"{d['points']:,} atoms, {d['numba_threads']} threads: new results drawn "
              "(median s) " + ", ".join(f"{k} {v:.2f}" for k, v in d["draw_median_s"].items())
              + f"; slowest {d['draw_max_s']:.2f} s")
    out["machine"]["load_average_end"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
