"""Benchmark of the data layer: streaming memory and cache speed-up.

Targets (issue 3):

1. Streaming descriptors of a 100,000-atom multi-frame extxyz with peak memory
   at most 2x the descriptor array.
2. A second run served from the cache at least 20x faster than the first,
   with identical results.

Each measurement runs in a fresh subprocess so that peak memory (``VmHWM``
minus the resident size before the measured call) belongs to that call only;
Before the baseline is taken, each worker compiles the Numba functions,
imports every module on the measured path (a cache miss and a hit on a tiny
file) and reads the input once (operating system page cache): the figures
are those of the call itself, as in a long-running dashboard process. The CLI
wall times, interpreter start and imports included, are printed as well.

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

    mode, path, cache_dir, k, cutoff, threads, out, repeats = sys.argv[1:9]
    k, cutoff, threads, repeats = int(k), float(cutoff), int(threads), int(repeats)
    import quests_core as qc
    from quests_core.cache import DescriptorCache
    from quests_core.pipeline import file_descriptors
    from quests_core.io import read_structures
    from ase.build import bulk

    qc.set_num_threads(threads)
    warm = bulk("Cu", cubic=True) * (3, 3, 3)
    warm.rattle(0.01, seed=0)
    qc.descriptors([warm], k=k, cutoff=cutoff)        # compile
    import io as _io, os, tempfile, pandas as pd
    from ase.io import write
    pd.DataFrame({"a": [1]}).to_parquet(_io.BytesIO())  # load the Parquet engine
    with tempfile.TemporaryDirectory() as tmp:          # import every module on the path
        write(os.path.join(tmp, "w.extxyz"), [warm, warm])
        file_descriptors(os.path.join(tmp, "w.extxyz"), k=k, cutoff=cutoff,
                         cache=DescriptorCache(tmp))
        file_descriptors(os.path.join(tmp, "w.extxyz"), k=k, cutoff=cutoff,
                         cache=DescriptorCache(tmp))
    with open(path, "rb") as fd:                       # page cache
        while fd.read(1 << 24):
            pass
    def once(cache_dir):
        if mode == "eager":  # read everything, then one descriptors call
            structures = read_structures(path)
            return qc.descriptors(structures, k=k, cutoff=cutoff), False
        cache = DescriptorCache(cache_dir) if cache_dir != "-" else None
        res = file_descriptors(path, k=k, cutoff=cutoff, cache=cache, chunk_atoms=20000)
        return res.descriptors, res.from_cache

    gc.collect()
    base = rss_kb()
    has_reset = reset_peak()
    sampler = None if has_reset else Sampler()
    t0 = time.perf_counter()
    x, hit = once(cache_dir)
    seconds = [time.perf_counter() - t0]
    if sampler is not None:
        sampler.stop = True
        sampler.thread.join()
        peak = sampler.peak
    else:
        peak = hwm_kb()
    nbytes, shape = np.asarray(x).nbytes, np.shape(x)
    if out != "-":
        np.save(out, np.asarray(x))
    del x
    for _ in range(repeats - 1):  # timing only; a miss gets a fresh cache directory
        with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as fresh:
            gc.collect()
            t0 = time.perf_counter()
            once(fresh if mode == "miss" else cache_dir)
            seconds.append(time.perf_counter() - t0)
    print(json.dumps({
        "seconds": seconds, "peak_kb": peak - base, "nbytes": int(nbytes),
        "shape": list(shape), "from_cache": bool(hit),
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
    mode: str,
    path: Path,
    cache_dir: str,
    args: argparse.Namespace,
    save: str = "-",
    repeats: int = 1,
) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            mode,
            str(path),
            cache_dir,
            str(args.k),
            str(args.cutoff),
            str(args.threads),
            save,
            str(repeats),
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
        "--repeats",
        type=int,
        default=3,
        help="timed runs of the miss and hit cases (best is reported)",
    )
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
        r = args.repeats
        first = run_worker("miss", path, cache_dir, args, str(work / "first.npy"), r)
        second = run_worker("hit", path, cache_dir, args, str(work / "second.npy"), r)
        nocache = run_worker("nocache", path, "-", args)
        mb = first["nbytes"] / 2**20
        ratio_first = first["peak_kb"] / 1024 / mb
        t_miss, t_hit = min(first["seconds"]), min(second["seconds"])
        speedup = t_miss / t_hit
        identical = np.array_equal(np.load(work / "first.npy"), np.load(work / "second.npy"))

        def fmt(res: dict) -> str:
            times = ", ".join(f"{t:.3f}" for t in res["seconds"])
            return (
                f"best {min(res['seconds']):7.3f} s ({times}); peak +"
                f"{res['peak_kb'] / 1024:6.1f} MiB = {res['peak_kb'] / 1024 / mb:.2f}x array"
            )

        print(
            f"descriptor array: {first['shape']} float64 = {mb:.1f} MiB "
            f"(peak memory from {first['peak_method']}, first run of each)"
        )
        print(f"streaming, cache miss : {fmt(first)}")
        print(f"streaming, cache hit  : {fmt(second)}, from_cache={second['from_cache']}")
        print(f"streaming, no cache   : {fmt(nocache)}")
        if not args.skip_eager:
            eager = run_worker("eager", path, "-", args)
            print(f"read all + descriptors: {fmt(eager)} (reference, not streaming)")
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
