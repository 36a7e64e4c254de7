"""Scale benchmarks: the paper's dH workload, the chunked pipeline, Datashader, the GPU.

Parts (each runs in its own process, so its peak memory is its own):

``dh``
    The paper's workload: dH of N test environments against 4,224 reference
    environments (float32 storage and GEMM, the Numba fast path), reporting
    kernel pairs/s, the time extrapolated to 32.5 M atoms and
    ``max |dH32 - dH64|`` on a subsample. Test environments are real
    descriptors of noisy Cu (a pool of up to 1 M computed here); beyond the
    pool they are tiled with extra jitter (the kernel cost does not depend
    on the values).
``dask-dh``
    The same dH through :func:`quests_core.distributed.dask_delta_entropy` on a
    LocalCluster of single-threaded worker processes.
``pipeline``
    File to Parquet store: an extxyz trajectory of N atoms through
    :func:`quests_core.chunked.chunked_delta_entropy` (parse, descriptors, dH,
    write), then the same call again (every chunk skipped).
``shade``
    Datashader mean-dH raster of N points held in a pandas DataFrame.
``shade-dask``
    The same from a Parquet folder on disk read as a Dask dataframe
    (:func:`quests_core.chunk_store.read_atoms_dask`), partition by partition:
    no process holds all N points.
``store-view``
    The dashboard's Stores tab machinery (:mod:`dashboard.stores`) on the same
    kind of folder: open it, the first raster and a zoom raster in the
    background thread, while an asyncio loop ticking every 10 ms measures how
    long the server's event loop would stall.
``big-frame``
    One frame of N atoms (an ASE ``.traj`` file) through the chunked pipeline
    in blocks of 1 M atoms: time and peak memory, against the size of the
    descriptor array the frame would need at once.
``gpu``
    dH of N test environments against 4,224 references with the PyTorch
    backend on a CUDA device (skipped without one), float32, and parity
    with the CPU path at float64 on a subsample.

Usage::

    python benchmarks/bench_scale.py                       # every part, default sizes
    python benchmarks/bench_scale.py --quick               # small sizes, a smoke run
    python benchmarks/bench_scale.py --parts dh --dh-sizes 1000000 --threads 1

Results are printed and written to ``benchmarks/results/scale.json``
(``scale_quick.json`` with ``--quick``, or the name given with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("results")
N_REFERENCE = 4224
PAPER_ATOMS = 32_500_000
PAPER_SECONDS = 255.0
BANDWIDTH = 0.015
POOL_MAX = 1_000_000
CHECK_ROWS = 20_000
NOISES = (0.02, 0.05, 0.08, 0.12, 0.18, 0.25)


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


def noisy_cu(n_atoms: int, noise: float, seed: int):
    from ase.build import bulk

    reps = max(1, int(np.ceil((n_atoms / 4) ** (1 / 3))))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (reps, reps, reps)
    atoms.rattle(noise, seed=seed)
    return atoms


def reference_set() -> np.ndarray:
    """4,224 reference environments: Cu at three noise levels (a small 'training set')."""
    import quests_core as qc

    parts = [qc.descriptors(noisy_cu(1500, noise, 100 + i)) for i, noise in enumerate(NOISES[1:4])]
    return np.concatenate(parts)[:N_REFERENCE]


def descriptor_pool(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``min(n_rows, 1 M)`` real descriptors as float32, and the first rows in float64."""
    import quests_core as qc

    n = min(n_rows, POOL_MAX)
    pool = np.empty((n, 63), dtype=np.float32)
    check = None
    row, i = 0, 0
    while row < n:
        x = qc.descriptors(noisy_cu(32000, NOISES[i % len(NOISES)], i))
        take = min(len(x), n - row)
        pool[row : row + take] = x[:take]
        if check is None:
            check = x[: min(CHECK_ROWS, take)].copy()
        row += take
        i += 1
    return pool, check


def test_set(n_rows: int, pool: np.ndarray, seed: int = 0) -> np.ndarray:
    """``n_rows`` float32 test environments: the pool, then jittered copies of it."""
    if n_rows <= len(pool):
        return pool[:n_rows]
    rng = np.random.default_rng(seed)
    y = np.empty((n_rows, pool.shape[1]), dtype=np.float32)
    y[: len(pool)] = pool
    for i0 in range(len(pool), n_rows, len(pool)):
        i1 = min(i0 + len(pool), n_rows)
        y[i0:i1] = pool[: i1 - i0]
        y[i0:i1] += rng.normal(0.0, 0.002, (i1 - i0, pool.shape[1])).astype(np.float32)
    return y


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


# ----------------------------------------------------------------------------
# parts (run in a child process)
# ----------------------------------------------------------------------------


def part_dh(size: int, threads: int, **_) -> dict:
    import quests_core as qc

    t0 = time.perf_counter()
    x64 = reference_set()
    pool, check64 = descriptor_pool(size)
    y = test_set(size, pool)
    setup = time.perf_counter() - t0
    x32 = x64.astype(np.float32)
    qc.delta_entropy(y[:2048], x32, BANDWIDTH, n_threads=threads)  # JIT warm-up
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    dh = qc.delta_entropy(y, x32, BANDWIDTH, n_threads=threads)
    seconds = time.perf_counter() - t0
    d32 = qc.delta_entropy(check64.astype(np.float32), x32, BANDWIDTH, n_threads=threads)
    d64 = qc.delta_entropy(check64, x64, BANDWIDTH, n_threads=threads)
    pairs = size * N_REFERENCE / seconds
    return {
        "part": "dh",
        "what": f"dH float32, {size:,} test x {N_REFERENCE:,} reference, {threads} thread(s)",
        "n_test": size,
        "threads": threads,
        "seconds": seconds,
        "pairs_per_s": pairs,
        "extrapolated_32_5M_s": PAPER_ATOMS * N_REFERENCE / pairs,
        "max_abs_dH32_minus_dH64": float(np.max(np.abs(d32 - d64))),
        "check_rows": len(check64),
        "median_dH": float(np.median(dh)),
        "frac_novel": float(np.mean(dh > 0)),
        "setup_s": setup,
        "load_average_at_start": load,
        "peak_rss_GB": peak_rss_gb(),
    }


def part_dask_dh(size: int, threads: int, **_) -> dict:
    import distributed

    import quests_core as qc
    from quests_core.distributed import dask_delta_entropy

    x32 = reference_set().astype(np.float32)
    pool, _ = descriptor_pool(size)
    y = test_set(size, pool)
    with (
        distributed.LocalCluster(
            n_workers=threads, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dask_delta_entropy(y[:4096], x32, client=client, chunk_rows=1024, n_threads=1)  # warm
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        dh = dask_delta_entropy(y, x32, BANDWIDTH, client=client, chunk_rows=65536, n_threads=1)
        seconds = time.perf_counter() - t0
    same = bool(np.array_equal(dh[:50000], qc.delta_entropy(y[:50000], x32, BANDWIDTH)))
    pairs = size * N_REFERENCE / seconds
    return {
        "part": "dask-dh",
        "what": f"Dask dH float32, {size:,} x {N_REFERENCE:,}, {threads} worker process(es)",
        "n_test": size,
        "workers": threads,
        "seconds": seconds,
        "pairs_per_s": pairs,
        "extrapolated_32_5M_s": PAPER_ATOMS * N_REFERENCE / pairs,
        "identical_to_single_process_first_50k": same,
        "load_average_at_start": load,
        "peak_rss_GB_client": peak_rss_gb(),
    }


def part_pipeline(size: int, threads: int, data_dir: str, **_) -> dict:
    from ase.io import write

    from quests_core.chunked import chunked_delta_entropy

    per_frame = 4000
    n_frames = max(1, size // per_frame)
    folder = Path(data_dir) / f"pipeline-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    traj = folder / "traj.extxyz"
    t0 = time.perf_counter()
    if not traj.exists():
        frames = (noisy_cu(per_frame, NOISES[i % len(NOISES)], 1000 + i) for i in range(n_frames))
        write(traj, frames, format="extxyz")
    write_s = time.perf_counter() - t0
    x = reference_set()
    store = folder / "store"
    shutil.rmtree(store, ignore_errors=True)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    run = chunked_delta_entropy(
        traj, x, store, chunk_frames=25, precision="float32", n_threads=threads
    )
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = chunked_delta_entropy(
        traj, x, store, chunk_frames=25, precision="float32", n_threads=threads
    )
    resume_s = time.perf_counter() - t0
    n_atoms = run.store.n_atoms
    return {
        "part": "pipeline",
        "what": f"extxyz -> Parquet store, {n_atoms:,} atoms in {n_frames} frames, "
        f"{threads} thread(s)",
        "n_atoms": n_atoms,
        "seconds": seconds,
        "atoms_per_s": n_atoms / seconds,
        "chunks": len(run.computed),
        "rerun_all_skipped_s": resume_s,
        "rerun_skipped": len(again.skipped),
        "file_GB": traj.stat().st_size / 1e9,
        "store_GB": sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e9,
        "write_input_s": write_s,
        "load_average_at_start": load,
        "peak_rss_GB": peak_rss_gb(),
    }


def _points(n: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.uniform(0.0, 400.0, n).astype(np.float32),
            "y": rng.uniform(0.0, 400.0, n).astype(np.float32),
            "dH": rng.normal(-2.0, 3.0, n).astype(np.float32),
        }
    )


def _canvas():
    import datashader as ds

    return ds.Canvas(plot_width=1200, plot_height=800, x_range=(0, 400), y_range=(0, 400))


def _render(frame) -> tuple[float, float, object]:
    import datashader as ds
    import datashader.transfer_functions as tf

    t0 = time.perf_counter()
    agg = _canvas().points(frame, "x", "y", agg=ds.mean("dH"))
    image = tf.shade(agg, cmap=["#2166ac", "#f7f7f7", "#b2182b"], how="linear")
    return time.perf_counter() - t0, float(np.nanmean(agg.values)), image


def part_shade(size: int, threads: int, **_) -> dict:
    frame = _points(size, 0)
    cold, _, _ = _render(frame)
    warm, mean, image = _render(frame)
    return {
        "part": "shade",
        "what": f"Datashader mean-dH raster 1200x800, {size:,} points in pandas",
        "n_points": size,
        "cold_s": cold,
        "warm_s": warm,
        "points_per_s_warm": size / warm,
        "image_shape": list(image.shape),
        "peak_rss_GB": peak_rss_gb(),
        "data_GB": frame.memory_usage(index=False).sum() / 1e9,
    }


def part_shade_dask(size: int, threads: int, data_dir: str, **_) -> dict:
    import dask

    from quests_core.chunk_store import read_atoms_dask

    folder, write_s = _points_folder(data_dir, size)
    n_parts = len(list(folder.glob("*.parquet")))
    rss_after_write = peak_rss_gb()
    ddf = read_atoms_dask(folder, columns=["x", "y", "dH"])
    with dask.config.set(scheduler="threads", num_workers=threads):
        cold, _, _ = _render(ddf)
        warm, mean, image = _render(ddf)
    return {
        "part": "shade-dask",
        "what": f"Datashader mean-dH raster 1200x800, {size:,} points, Dask dataframe from "
        f"{n_parts} Parquet parts on disk, {threads} thread(s)",
        "n_points": size,
        "partitions": ddf.npartitions,
        "cold_s": cold,
        "warm_s": warm,
        "points_per_s_warm": size / warm,
        "image_shape": list(image.shape),
        "data_on_disk_GB": sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1e9,
        "points_in_memory_GB_if_held": size * 12 / 1e9,
        "peak_rss_GB_writing": rss_after_write,
        "peak_rss_GB": peak_rss_gb(),
        "write_s": write_s,
    }


def _points_folder(data_dir: str, size: int) -> tuple[Path, float]:
    """A folder of Parquet parts of 5 M synthetic points each (written once, reused)."""
    folder = Path(data_dir) / f"points-{size}"
    per_part = 5_000_000
    n_parts = -(-size // per_part)
    t0 = time.perf_counter()
    if not folder.is_dir() or len(list(folder.glob("*.parquet"))) != n_parts:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for p in range(n_parts):  # one part in memory at a time
            n = min(per_part, size - p * per_part)
            _points(n, p).to_parquet(folder / f"part-{p:05d}.parquet", index=False)
    return folder, time.perf_counter() - t0


def part_store_view(size: int, threads: int, data_dir: str, **_) -> dict:
    """The dashboard's Stores machinery on N points: open, first raster, zoom raster, both
    in the background thread, while an asyncio loop (standing in for the server's event
    loop) ticks every 10 ms; its worst lag says whether other sessions would stall."""
    import asyncio
    import threading

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dashboard.stores import BackgroundRaster, RasterRequest, open_store, rasterize_store

    folder, write_s = _points_folder(data_dir, size)
    rss_after_write = peak_rss_gb()
    t0 = time.perf_counter()
    data = open_store(folder.parent, folder.name)
    open_s = time.perf_counter() - t0
    done = threading.Event()
    timings: list[float] = []

    def compute(request):
        start = time.perf_counter()
        agg = rasterize_store(data.atoms_dask(["x", "y", "dH"]), request)
        timings.append(time.perf_counter() - start)
        return agg

    def deliver(request, result):
        if isinstance(result, Exception):
            raise result
        done.set()

    raster = BackgroundRaster(compute, deliver)
    (x0, x1), (y0, y1) = data.extent("x"), data.extent("y")
    full = RasterRequest("x", "y", (x0, x1), (y0, y1))
    requests = [full, RasterRequest("x", "y", (x0, x1), (y0, y1 + 1e-9 * (y1 - y0))),
                RasterRequest("x", "y", (x0, x0 + (x1 - x0) / 8), (y0, y0 + (y1 - y0) / 8)),
                # the dashboard's default dH scale: the colour aggregated as asinh(dH)
                RasterRequest("x", "y", (x0, x1), (y0, y1), scale="asinh")]

    async def loop() -> list[float]:
        lags = []
        for request in requests:
            done.clear()
            raster.submit(request)
            while not done.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - t - 0.01)
        return lags

    import dask

    with dask.config.set(scheduler="threads", num_workers=threads):
        lags = asyncio.run(loop())
    return {
        "part": "store-view",
        "what": f"dashboard Stores raster (background thread, Dask), {size:,} points in "
        f"{len(data.parts)} Parquet parts, {threads} thread(s)",
        "n_points": size,
        "open_s": open_s,
        "cold_s": timings[0],
        "warm_s": timings[1],
        "zoom_s": timings[2],
        "asinh_s": timings[3],
        "event_loop_max_lag_s": max(lags),
        "event_loop_p99_lag_s": float(np.quantile(lags, 0.99)),
        "event_loop_ticks": len(lags),
        "write_s": write_s,
        "points_in_memory_GB_if_held": size * 12 / 1e9,
        "peak_rss_GB_writing": rss_after_write,
        "peak_rss_GB": peak_rss_gb(),
    }


def part_big_frame(size: int, threads: int, data_dir: str, **_) -> dict:
    """One frame of N atoms (ASE .traj) through the chunked pipeline in blocks of 1 M atoms:
    time and peak memory against the descriptor array the frame would need at once."""
    from ase.io import write

    import quests_core as qc
    from quests_core.chunked import chunked_delta_entropy

    path = Path(data_dir) / f"big-frame-{size}.traj"
    t0 = time.perf_counter()
    if not path.exists():
        write(path, noisy_cu(size, 0.08, 7))
    write_s = time.perf_counter() - t0
    x_ref = reference_set().astype(np.float32)
    qc.delta_entropy(x_ref[:512], x_ref, BANDWIDTH, n_threads=threads)  # JIT warm-up
    rss_before = peak_rss_gb()
    store = Path(data_dir) / f"big-frame-store-{size}"
    t0 = time.perf_counter()
    run = chunked_delta_entropy(path, x_ref, store, BANDWIDTH, precision="float32",
                                block_atoms=1_000_000, n_threads=threads, overwrite=True)
    seconds = time.perf_counter() - t0
    n = run.store.n_atoms
    return {
        "part": "big-frame",
        "what": f"one frame of {n:,} atoms (.traj) -> chunk store, float32, blocks of 1 M atoms, "
        f"{threads} thread(s)",
        "n_atoms": n,
        "seconds": seconds,
        "atoms_per_s": n / seconds,
        "descriptors_GB_if_held_float64": n * 63 * 8 / 1e9,
        "peak_rss_GB_before_run": rss_before,
        "peak_rss_GB": peak_rss_gb(),
        "write_s": write_s,
        "store_GB": sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e9,
    }


def part_gpu(size: int, threads: int, **_) -> dict:
    from quests_core.gpu import cuda_available, log_kernel_sums_torch
    from quests_core.kernels import log_kernel_sums

    if not cuda_available():
        return {"part": "gpu", "skipped": "no CUDA device (or PyTorch not installed)"}
    import torch

    x64 = reference_set()
    x32 = x64.astype(np.float32)
    pool, check64 = descriptor_pool(size)
    y = test_set(size, pool)
    h = np.array([BANDWIDTH])
    log_kernel_sums_torch(y[:100_000], x32, h, device="cuda")  # CUDA context and kernels
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    dh = -log_kernel_sums_torch(y, x32, h, device="cuda")[:, 0]
    seconds = time.perf_counter() - t0
    cpu64 = log_kernel_sums(check64, x64, h)[:, 0]
    gpu64 = log_kernel_sums_torch(check64, x64, h, device="cuda", precision="float64")[:, 0]
    gpu32 = log_kernel_sums_torch(check64.astype(np.float32), x32, h, device="cuda")[:, 0]
    rel = np.abs(gpu64 - cpu64) / np.maximum(1.0, np.abs(cpu64))
    pairs = size * N_REFERENCE / seconds
    return {
        "part": "gpu",
        "what": f"dH float32 on {torch.cuda.get_device_name(0)}, {size:,} x {N_REFERENCE:,} "
        "(host arrays in, host arrays out)",
        "n_test": size,
        "seconds": seconds,
        "pairs_per_s": pairs,
        "extrapolated_32_5M_s": PAPER_ATOMS * N_REFERENCE / pairs,
        "max_rel_gpu64_vs_cpu64": float(rel.max()),
        "max_abs_gpu32_vs_cpu64": float(np.max(np.abs(gpu32 - cpu64))),
        "median_dH": float(np.median(dh)),
        "peak_rss_GB": peak_rss_gb(),
    }


PARTS = {
    "dh": part_dh,
    "dask-dh": part_dask_dh,
    "pipeline": part_pipeline,
    "shade": part_shade,
    "shade-dask": part_shade_dask,
    "store-view": part_store_view,
    "big-frame": part_big_frame,
    "gpu": part_gpu,
}


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------


def run_child(part: str, size: int, threads: int, data_dir: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        part,
        "--size",
        str(size),
        "--threads",
        str(threads),
        "--data-dir",
        data_dir,
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"part": part, "n": size, "error": " | ".join(tail)}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT ") :])
    out["process_wall_s"] = time.perf_counter() - t0
    return out


def summary_line(row: dict) -> str:
    if "error" in row:
        return f"{row['part']} ({row['n']}): FAILED {row['error']}"
    if "skipped" in row:
        return f"{row['part']}: skipped ({row['skipped']})"
    what = row["what"]
    if row["part"] in ("dh", "dask-dh", "gpu"):
        extra = (
            f"{row['seconds']:.1f} s, {row['pairs_per_s']:.3g} pairs/s, "
            f"32.5 M atoms -> {row['extrapolated_32_5M_s']:.0f} s"
        )
        if "max_abs_dH32_minus_dH64" in row:
            extra += f", max|dH32-dH64| = {row['max_abs_dH32_minus_dH64']:.2g} nats"
    elif row["part"] == "pipeline":
        extra = (
            f"{row['seconds']:.1f} s ({row['atoms_per_s']:.3g} atoms/s), "
            f"rerun {row['rerun_all_skipped_s']:.2f} s"
        )
    elif row["part"] == "big-frame":
        extra = (
            f"{row['seconds']:.1f} s ({row['atoms_per_s']:.3g} atoms/s); descriptors if held "
            f"{row['descriptors_GB_if_held_float64']:.2f} GB"
        )
    elif row["part"] == "store-view":
        extra = (
            f"first raster {row['cold_s']:.2f} s, again {row.get('warm_s', float('nan')):.2f} s, "
            f"zoom {row['zoom_s']:.2f} s, the full view on the asinh dH scale "
            f"{row.get('asinh_s', float('nan')):.2f} s, "
            f"event-loop lag max {row['event_loop_max_lag_s'] * 1e3:.0f} ms "
            f"(p99 {row['event_loop_p99_lag_s'] * 1e3:.0f} ms)"
        )
    else:
        extra = f"cold {row['cold_s']:.2f} s, warm {row['warm_s']:.2f} s"
    rss = row.get("peak_rss_GB", row.get("peak_rss_GB_client", 0.0))
    return f"{what}: {extra}; peak RSS {rss:.2f} GB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="*", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dh-sizes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    ap.add_argument("--dask-sizes", type=int, nargs="*", default=[1_000_000])
    ap.add_argument("--pipeline-sizes", type=int, nargs="*", default=[1_000_000])
    ap.add_argument("--shade-sizes", type=int, nargs="*", default=[10_000_000])
    ap.add_argument("--shade-dask-sizes", type=int, nargs="*", default=[10_000_000, 100_000_000])
    ap.add_argument("--store-view-sizes", type=int, nargs="*", default=[100_000_000])
    ap.add_argument("--big-frame-sizes", type=int, nargs="*", default=[4_000_000])
    ap.add_argument("--gpu-sizes", type=int, nargs="*", default=[PAPER_ATOMS])
    ap.add_argument("--data-dir", default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--keep-data", action="store_true", help="keep the scratch folder")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--out", default=None, help="results file name in benchmarks/results/")
    ap.add_argument("--child", choices=list(PARTS), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        result = PARTS[args.child](size=args.size, threads=args.threads, data_dir=args.data_dir)
        print("RESULT " + json.dumps(result))
        return 0

    if args.quick:
        args.dh_sizes, args.dask_sizes, args.pipeline_sizes = [50_000], [50_000], [20_000]
        args.shade_sizes, args.shade_dask_sizes, args.gpu_sizes = (
            [1_000_000],
            [2_000_000],
            [200_000],
        )
        args.store_view_sizes, args.big_frame_sizes = [2_000_000], [100_000]
    sizes = {
        "dh": args.dh_sizes,
        "dask-dh": args.dask_sizes,
        "pipeline": args.pipeline_sizes,
        "shade": args.shade_sizes,
        "shade-dask": args.shade_dask_sizes,
        "store-view": args.store_view_sizes,
        "big-frame": args.big_frame_sizes,
        "gpu": args.gpu_sizes,
    }
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="quests-bench-")
    report = {
        "command": "python benchmarks/bench_scale.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "paper": {"atoms": PAPER_ATOMS, "reference": N_REFERENCE, "seconds_56_threads": 255},
        "rows": [],
    }
    try:
        for part in args.parts:
            for size in sizes[part]:
                row = run_child(part, size, args.threads, data_dir)
                report["rows"].append(row)
                print(summary_line(row), flush=True)
    finally:
        if not args.keep_data and args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    name = args.out or ("scale_quick.json" if args.quick else "scale.json")
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
