"""Side-by-side benchmark of quests_core against the reference implementation (PyPI quests).

Same inputs, same thread count, one process, warm JIT on both sides (compilation
is reported separately as cold/warm start-up). Prints a table of throughputs and
ratios and writes ``benchmarks/results/core.json``.

    python benchmarks/bench_core.py                 # full run (a few minutes on 2 cores)
    python benchmarks/bench_core.py --quick         # smaller inputs, smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numba
import numpy as np
from ase.build import bulk
from threadpoolctl import threadpool_limits

import quests_core as qc

RESULTS = Path(__file__).with_name("results")


def noisy_cu(n_atoms: int, noise: float = 0.05, seed: int = 0):
    reps = max(1, int(np.ceil((n_atoms / 4) ** (1 / 3))))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (reps, reps, reps)
    atoms.rattle(noise, seed=seed)
    return atoms


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_descriptors(n_atoms: int, repeats: int) -> dict:
    from quests.descriptor import get_descriptors

    atoms = noisy_cu(n_atoms)
    small = noisy_cu(500)
    qc.descriptors(small)
    get_descriptors([small])  # JIT warm-up on both sides
    ours = best_of(lambda: qc.descriptors(atoms), repeats)
    ref = best_of(lambda: get_descriptors([atoms]), repeats)
    diff = float(np.abs(qc.descriptors(atoms) - get_descriptors([atoms])).max())
    n = len(atoms)
    return {
        "what": f"descriptors, {n} atoms noisy periodic Cu, k=32, cutoff 5 Å",
        "ours_per_s": n / ours,
        "oracle_per_s": n / ref,
        "unit": "environments/s",
        "ratio": ref / ours,
        "max_abs_diff": diff,
    }


def bench_kernels(n_test: int, n_ref: int, repeats: int) -> list[dict]:
    from quests.entropy import delta_entropy as ref_delta
    from quests.entropy import entropy as ref_entropy

    x_all = qc.descriptors(noisy_cu(n_test + n_ref, noise=0.08, seed=1))
    y, x = x_all[:n_test], x_all[n_test : n_test + n_ref]
    qc.delta_entropy(y[:64], x[:64])
    qc.delta_entropy(y[:64], x[:64], precision="float32")
    ref_delta(y[:64], x[:64])  # JIT warm-up
    pairs_dh = len(y) * len(x)
    pairs_h = len(x) ** 2
    rows = []
    t_ref = best_of(lambda: ref_delta(y, x, 0.015), repeats)
    t64 = best_of(lambda: qc.delta_entropy(y, x, 0.015), repeats)
    t32 = best_of(lambda: qc.delta_entropy(y, x, 0.015, precision="float32"), repeats)
    d64 = qc.delta_entropy(y, x)
    d32 = qc.delta_entropy(y, x, precision="float32")
    rows.append(
        {
            "what": f"dH float64, {len(y)} test x {len(x)} reference",
            "ours_per_s": pairs_dh / t64,
            "oracle_per_s": pairs_dh / t_ref,
            "unit": "kernel pairs/s",
            "ratio": t_ref / t64,
        }
    )
    rows.append(
        {
            "what": f"dH float32, {len(y)} test x {len(x)} reference",
            "ours_per_s": pairs_dh / t32,
            "oracle_per_s": pairs_dh / t_ref,
            "unit": "kernel pairs/s",
            "ratio": t_ref / t32,
            "max_abs_dH32_minus_dH64": float(np.abs(d32 - d64).max()),
        }
    )
    t_ref = best_of(lambda: ref_entropy(x, 0.015), repeats)
    t64 = best_of(lambda: qc.entropy(x, 0.015), repeats)
    t32 = best_of(lambda: qc.entropy(x, 0.015, precision="float32"), repeats)
    h64, h32, href = qc.entropy(x), qc.entropy(x, precision="float32"), ref_entropy(x, 0.015)
    rows.append(
        {
            "what": f"entropy float64, {len(x)} environments",
            "ours_per_s": pairs_h / t64,
            "oracle_per_s": pairs_h / t_ref,
            "unit": "kernel pairs/s",
            "ratio": t_ref / t64,
            "rel_diff_vs_oracle": abs(h64 - href) / abs(href),
        }
    )
    rows.append(
        {
            "what": f"entropy float32, {len(x)} environments",
            "ours_per_s": pairs_h / t32,
            "oracle_per_s": pairs_h / t_ref,
            "unit": "kernel pairs/s",
            "ratio": t_ref / t32,
            "abs_H32_minus_H64": abs(h32 - h64),
        }
    )
    return rows


_MEMORY_CHILD = textwrap.dedent(
    """
    import sys, time, numpy as np
    import quests_core as qc
    from ase.build import bulk
    n_test, n_ref = int(sys.argv[1]), int(sys.argv[2])
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (12, 12, 12)
    atoms.rattle(0.08, seed=3)
    base = qc.descriptors(atoms)
    x = base[:n_ref].copy()
    rng = np.random.default_rng(0)
    # a million test environments: real descriptors with extra thermal-like jitter
    y = np.empty((n_test, base.shape[1]))
    for i0 in range(0, n_test, len(base)):
        i1 = min(i0 + len(base), n_test)
        y[i0:i1] = base[: i1 - i0] + rng.normal(0, 0.002, (i1 - i0, base.shape[1]))
    def hwm():
        # VmHWM: this process's peak RSS (ru_maxrss would keep the parent's peak across exec)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    before = hwm()
    t0 = time.perf_counter()
    dh = qc.delta_entropy(y, x, 0.015)
    dt = time.perf_counter() - t0
    peak = hwm()
    print(peak, before, dt, float(np.median(dh)), y.nbytes)
    """
)


def bench_memory(n_test: int, n_ref: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(n_test), str(n_ref)],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    peak, before, dt, median, ybytes = (float(v) for v in out)
    return {
        "what": f"dH of {n_test} test vs {n_ref} reference environments (float64)",
        "peak_rss_GB": peak / 1e9,
        "rss_before_dH_GB": before / 1e9,
        "input_GB": ybytes / 1e9,
        "seconds": dt,
        "pairs_per_s": n_test * n_ref / dt,
        "median_dH": median,
    }


_STARTUP_CHILD = textwrap.dedent(
    """
    import time
    t0 = time.perf_counter()
    import numpy as np
    import quests_core as qc
    from ase.build import bulk
    t1 = time.perf_counter()
    a = bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)
    a.rattle(0.05, seed=0)
    x = qc.descriptors(a)
    qc.entropy(x); qc.delta_entropy(x[:10], x)
    t2 = time.perf_counter()
    print(t1 - t0, t2 - t1)
    """
)


def bench_startup() -> dict:
    def child(env):
        out = subprocess.run(
            [sys.executable, "-c", _STARTUP_CHILD], capture_output=True, text=True, check=True,
            env=env,
        ).stdout.split()
        return float(out[0]), float(out[1])

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp)
        cold = child(env)  # empty JIT cache: compiles everything
        warm = child(env)  # second process: loads the on-disk cache
    return {
        "what": "start-up: import + first descriptors/entropy/dH on 256 atoms",
        "cold_import_s": cold[0],
        "cold_first_compute_s": cold[1],
        "warm_import_s": warm[0],
        "warm_first_compute_s": warm[1],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=32000, help="descriptor benchmark size")
    ap.add_argument("--test", type=int, default=20000, help="dH test environments")
    ap.add_argument("--reference", type=int, default=5000, help="dH reference environments")
    ap.add_argument("--memory-test", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--skip", nargs="*", default=[], choices=["descriptors", "kernels", "memory",
                                                              "startup"])
    args = ap.parse_args(argv)
    if args.quick:
        args.atoms, args.test, args.reference, args.memory_test = 4000, 2000, 1000, 20000
        args.repeats = 1
    numba.set_num_threads(args.threads)
    report = {
        "command": "python benchmarks/bench_core.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "rows": [],
    }
    with threadpool_limits(limits=args.threads, user_api="blas"):
        if "descriptors" not in args.skip:
            report["rows"].append(bench_descriptors(args.atoms, args.repeats))
        if "kernels" not in args.skip:
            report["rows"].extend(bench_kernels(args.test, args.reference, args.repeats))
    if "memory" not in args.skip:
        report["memory"] = bench_memory(args.memory_test, args.reference)
    if "startup" not in args.skip:
        report["startup"] = bench_startup()
    print(f"threads: {args.threads}")
    print(f"{'benchmark':62s} {'ours':>12s} {'oracle':>12s} {'ratio':>7s}")
    for row in report["rows"]:
        print(f"{row['what']:62s} {row['ours_per_s']:12.4g} {row['oracle_per_s']:12.4g} "
              f"{row['ratio']:6.2f}x  ({row['unit']})")
    for key in ("memory", "startup"):
        if key in report:
            print(key, json.dumps(report[key], indent=None))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("core_quick.json" if args.quick else "core.json")).write_text(
        json.dumps(report, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
