"""Benchmark of the data layer: streaming memory and cache speed-up.

Targets (issue 3):

1. Streaming descriptors of a 100,000-atom multi-frame extxyz with peak memory
   at most 2x the descriptor array.
2. A second run served from the cache at least 20x faster than the first,
   with identical results.

Each measurement runs in a fresh subprocess so that peak memory (``VmHWM``
minus the resident size before the measured call) belongs to that call only;
Numba functions are compiled, the Parquet engine is loaded and the file is
read once (operating system page cache) before the baseline is taken.

Usage::

    python benchmarks/bench_io.py [--atoms 100000] [--frames 25] [--threads N]

Prints the figures and exits with status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

WORKER = textwrap.dedent(
    """
    import gc, json, sys, threading, time
    import numpy as np

    def rss_kb():
        with open("/proc/self/status") as fd:
            for line in fd:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    def hwm_kb():
        with open("/proc/self/status") as fd:
            for line in fd:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as fd:
                fd.write("5")
            return True
        except OSError:
            return False

    class Sampler:
        # fallback when VmHWM cannot be reset: poll VmRSS every 2 ms
        def __init__(self):
            self.peak = rss_kb()
            self.stop = False
            self.thread = threading.Thread(target=self.run, daemon=True)
            self.thread.start()
        def run(self):
            while not self.stop:
                self.peak = max(self.peak, rss_kb())
                time.sleep(0.002)

    mode, path, cache_dir, k, cutoff, threads = sys.argv[1:7]
    k, cutoff, threads = int(k), float(cutoff), int(threads)
    import quests_core as qc
    from quests_core.cache import DescriptorCache, file_descriptors
    from quests_core.io import read_structures
    from ase.build import bulk

    qc.set_num_threads(threads)
    warm = bulk("Cu", cubic=True) * (3, 3, 3)
    warm.rattle(0.01, seed=0)
    qc.descriptors([warm], k=k, cutoff=cutoff)        # compile
    import io as _io, pandas as pd                     # load the Parquet engine (library
    pd.DataFrame({"a": [1]}).to_parquet(_io.BytesIO())  # code is not data)
    with open(path, "rb") as fd:                       # page cache
        while fd.read(1 << 24):
            pass
    cache = DescriptorCache(cache_dir) if cache_dir != "-" else None
    gc.collect()
    base = rss_kb()
    has_reset = reset_peak()
    sampler = None if has_reset else Sampler()
    t0 = time.perf_counter()
    if mode == "stream":
        res = file_descriptors(path, k=k, cutoff=cutoff, cache=cache, chunk_atoms=20000)
        x, hit = res.descriptors, res.from_cache
    else:  # "eager": read everything, then one descriptors call
        structures = read_structures(path)
        x, hit = qc.descriptors(structures, k=k, cutoff=cutoff), False
    seconds = time.perf_counter() - t0
    if sampler is not None:
        sampler.stop = True
        sampler.thread.join()
        peak = sampler.peak
    else:
        peak = hwm_kb()
    out = sys.argv[7]
    if out != "-":
        np.save(out, np.asarray(x))
    print(json.dumps({
        "seconds": seconds, "peak_kb": peak - base, "nbytes": int(np.asarray(x).nbytes),
        "shape": list(np.shape(x)), "from_cache": bool(hit),
        "peak_method": "VmHWM" if has_reset else "sampling",
    }))
    """
)


def make_trajectory(path: Path, n_atoms: int, n_frames: int, seed: int = 0) -> int:
    """Write a rattled fcc Cu extxyz with about ``n_atoms`` atoms over ``n_frames`` frames."""
    from ase.build import bulk
    from ase.io import write

    per_frame = max(4, n_atoms // n_frames)
    reps = max(1, round((per_frame / 4) ** (1 / 3)))
    base = bulk("Cu", cubic=True) * (reps, reps, reps)
    while len(base) * n_frames < n_atoms:
        reps += 1
        base = bulk("Cu", cubic=True) * (reps, reps, reps)
    rng = np.random.default_rng(seed)
    total = 0
    with open(path, "w") as fd:
        for i in range(n_frames):
            atoms = base.copy()
            atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
            atoms.info["time"] = 0.1 * i
            write(fd, atoms, format="extxyz")
            total += len(atoms)
    return total


def run_worker(
    mode: str, path: Path, cache_dir: str, k: int, cutoff: float, threads: int, save: str = "-"
) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            mode,
            str(path),
            cache_dir,
            str(k),
            str(cutoff),
            str(threads),
            save,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cli_seconds(path: Path, cache_dir: str, k: int, cutoff: float, threads: int) -> float:
    exe = [sys.executable, "-m", "quests_core.cli"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            *exe,
            "descriptors",
            str(path),
            "-k",
            str(k),
            "--cutoff",
            str(cutoff),
            "--threads",
            str(threads),
            "--cache-dir",
            cache_dir,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"CLI failed:\n{proc.stderr}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atoms", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("-k", type=int, default=32)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--skip-eager", action="store_true", help="skip the read-everything reference measurement"
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_io_"))
    try:
        path = work / "traj.extxyz"
        n = make_trajectory(path, args.atoms, args.frames)
        print(
            f"input: {path.name}, {args.frames} frames, {n} atoms, "
            f"{path.stat().st_size / 1e6:.1f} MB; k={args.k}, cutoff={args.cutoff}, "
            f"threads={args.threads}"
        )
        cache_dir = str(work / "cache")

        first = run_worker(
            "stream", path, cache_dir, args.k, args.cutoff, args.threads, str(work / "first.npy")
        )
        second = run_worker(
            "stream", path, cache_dir, args.k, args.cutoff, args.threads, str(work / "second.npy")
        )
        nocache = run_worker("stream", path, "-", args.k, args.cutoff, args.threads)
        mb = first["nbytes"] / 2**20
        ratio_first = first["peak_kb"] / 1024 / mb
        speedup = first["seconds"] / second["seconds"]
        identical = np.array_equal(np.load(work / "first.npy"), np.load(work / "second.npy"))

        print(f"descriptor array: {first['shape']} float64 = {mb:.1f} MiB")
        print(
            f"streaming, cache miss : {first['seconds']:7.3f} s, peak +"
            f"{first['peak_kb'] / 1024:6.1f} MiB = {ratio_first:.2f}x array "
            f"({first['peak_method']})"
        )
        print(
            f"streaming, cache hit  : {second['seconds']:7.3f} s, peak +"
            f"{second['peak_kb'] / 1024:6.1f} MiB = {second['peak_kb'] / 1024 / mb:.2f}x array"
            f", from_cache={second['from_cache']}"
        )
        print(
            f"streaming, no cache   : {nocache['seconds']:7.3f} s, peak +"
            f"{nocache['peak_kb'] / 1024:6.1f} MiB = {nocache['peak_kb'] / 1024 / mb:.2f}x "
            "array"
        )
        if not args.skip_eager:
            eager = run_worker("eager", path, "-", args.k, args.cutoff, args.threads)
            print(
                f"read all + descriptors: {eager['seconds']:7.3f} s, peak +"
                f"{eager['peak_kb'] / 1024:6.1f} MiB = {eager['peak_kb'] / 1024 / mb:.2f}x "
                "array (reference, not streaming)"
            )
        cli_dir = str(work / "cli_cache")
        cli_first = cli_seconds(path, cli_dir, args.k, args.cutoff, args.threads)
        cli_second = cli_seconds(path, cli_dir, args.k, args.cutoff, args.threads)
        print(
            f"CLI 'descriptors' wall time incl. interpreter start: first {cli_first:.2f} s, "
            f"cached {cli_second:.2f} s ({cli_first / cli_second:.1f}x)"
        )

        ok_memory = ratio_first <= 2.0
        ok_speed = speedup >= 20.0 and identical and second["from_cache"]
        print()
        print(
            f"target 1, streaming peak <= 2x descriptor array: {ratio_first:.2f}x "
            f"-> {'PASS' if ok_memory else 'FAIL'}"
        )
        print(
            f"target 2, cached run >= 20x faster, identical: {speedup:.1f}x, "
            f"identical={identical} -> {'PASS' if ok_speed else 'FAIL'}"
        )
        return 0 if ok_memory and ok_speed else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
