"""Per-frame H of large frames: ``quests-dashboard trajectory`` on 4 x 256,000 Cu atoms.

Writes a LAMMPS text dump of ``--frames`` frames of fcc Cu (``ase.build.bulk`` cubic
cell repeated ``--repeat`` times per axis: 40 -> 256,000 atoms) with Gaussian
thermal displacements (``--sigma`` Å, new ones per frame), runs

    quests-dashboard trajectory FILE --type-map Cu --reference sample_data/cu_solid_400K.extxyz \
        --reference-index ::2 --no-progress --no-cache -o out.csv

(dH against 5 x 864 = 4,320 reference environments, like the paper's 4,224) timed
(frames above 40,000 atoms get the sampled H with its standard error), and,
unless ``--skip-exact``, computes the exact H of frame 0 once (n^2 kernel pairs:
minutes for 256,000 atoms) from the same dump to compare with the sampled value.
Last, the z-scores (sampled - exact) / stderr of 20 seeds on a 32,000-atom frame
check that the standard error is honest.

Usage::

    python benchmarks/bench_sampled_entropy.py                     # 4 x 256,000 atoms
    python benchmarks/bench_sampled_entropy.py --repeat 25 --out benchmarks/results/x.json

Results go to ``benchmarks/results/sampled_entropy.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_dump(path: Path, frames: int, repeat: int, sigma: float, seed: int) -> int:
    """A LAMMPS dump (id type x y z) of noisy fcc Cu; returns the atoms per frame."""
    from ase.build import bulk

    base = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((repeat, repeat, repeat))
    pos0 = base.get_positions()
    n = len(pos0)
    length = float(base.cell[0, 0])
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    with open(path, "w") as fh:
        for f in range(frames):
            pos = (pos0 + rng.normal(scale=sigma, size=pos0.shape)) % length
            fh.write(f"ITEM: TIMESTEP\n{f * 100}\nITEM: NUMBER OF ATOMS\n{n}\n")
            fh.write("ITEM: BOX BOUNDS pp pp pp\n")
            for _ in range(3):
                fh.write(f"0.0 {length:.6f}\n")
            fh.write("ITEM: ATOMS id type x y z\n")
            table = np.column_stack([ids, np.ones(n), pos])
            np.savetxt(fh, table, fmt=["%d", "%d", "%.6f", "%.6f", "%.6f"])
    return n


def calibrate(repeat: int, sigma: float, seeds: int) -> dict:
    """z-scores (sampled - exact) / stderr of the default sampled H over ``seeds`` seeds
    on one frame small enough for the exact H in seconds (20^3 cells: 32,000 atoms)."""
    from ase.build import bulk

    import quests_core as qc

    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((repeat, repeat, repeat))
    rng = np.random.default_rng(5)
    atoms.positions += rng.normal(scale=sigma, size=atoms.positions.shape)
    x = qc.descriptors([atoms])
    exact = float(qc.entropy(x, 0.015))
    z, zp, err, errp = [], [], [], []
    for seed in range(seeds):
        est = qc.frame_entropy(x, 0.015, threshold=10, seed=seed)  # force the sampled path
        plain = qc.sampled_entropy(x, 0.015, m=est.m, seed=seed)
        z.append((est.H - exact) / est.stderr)
        zp.append((plain.H - exact) / plain.stderr)
        err.append(est.stderr)
        errp.append(plain.stderr)
    z, zp = np.array(z), np.array(zp)
    out = {
        "atoms": len(x),
        "seeds": seeds,
        "exact_H": round(exact, 6),
        "sample_rows": int(est.m),
        "stderr_mean": float(f"{np.mean(err):.3g}"),
        "z_mean": round(float(z.mean()), 3),
        "z_std": round(float(z.std()), 3),
        "max_abs_z": round(float(np.abs(z).max()), 3),
        "max_abs_error": float(f"{np.max(np.abs(z) * np.array(err)):.3g}"),
        "plain_stderr_mean": float(f"{np.mean(errp):.3g}"),
        "plain_z_std": round(float(zp.std()), 3),
    }
    print(f"calibration on {len(x)} atoms, {seeds} seeds: {out}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=40, help="cubic cells per axis (40: 256,000)")
    ap.add_argument("--sigma", type=float, default=0.1, help="thermal displacement (Å)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-exact", action="store_true", help="no exact H of frame 0")
    ap.add_argument("--calibration-seeds", type=int, default=20,
                    help="seeds of the z-score check on a 32,000-atom frame (0: skip)")
    ap.add_argument("--workdir", default=None, help="where the dump goes (default: a temp dir)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/sampled_entropy.json"))
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_sampled_"))
    work.mkdir(parents=True, exist_ok=True)
    dump = work / "cu.lammpstrj"
    t = time.perf_counter()
    n = write_dump(dump, args.frames, args.repeat, args.sigma, args.seed)
    t_write = time.perf_counter() - t
    print(f"wrote {dump}: {args.frames} x {n} atoms, {dump.stat().st_size / 1e6:.0f} MB "
          f"in {t_write:.1f} s", flush=True)

    exe = str(Path(sys.executable).with_name("quests-dashboard"))
    csv = work / "out.csv"
    ref = str(ROOT / "sample_data/cu_solid_400K.extxyz")
    cmd = [exe, "trajectory", str(dump), "--type-map", "Cu", "--reference", ref,
           "--reference-index", "::2", "--no-progress", "--no-cache", "-o", str(csv)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    t_cli = time.perf_counter() - t
    print(proc.stdout)
    print(proc.stderr, file=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"trajectory failed with status {proc.returncode}")
    import pandas as pd

    table = pd.read_csv(csv)
    print(f"trajectory: {t_cli:.1f} s", flush=True)
    result = {
        "benchmark": "sampled per-frame H through `quests-dashboard trajectory`",
        "command": " ".join(["quests-dashboard", *cmd[1:]]).replace(str(ROOT) + "/", ""),
        "frames": args.frames,
        "atoms_per_frame": n,
        "sigma_A": args.sigma,
        "dump_MB": round(dump.stat().st_size / 1e6, 1),
        "trajectory_seconds": round(t_cli, 2),
        "H": table["H"].round(6).tolist(),
        "H_stderr": table["H_stderr"].round(6).tolist(),
        "mean_dH": table["mean_dH"].round(6).tolist(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "stdout": proc.stdout,
    }
    if not args.skip_exact:
        import quests_core as qc
        from quests_core.io import read_structures

        atoms = read_structures(str(dump), index="0", type_map="Cu")[0]
        t = time.perf_counter()
        x = qc.descriptors([atoms])
        t_desc = time.perf_counter() - t
        t = time.perf_counter()
        exact = float(qc.entropy(x, 0.015))
        t_exact = time.perf_counter() - t
        diff = float(table["H"].iat[0]) - exact
        print(f"frame 0: exact H {exact:.6f} in {t_exact:.1f} s ({n * n / t_exact:.3g} pairs/s); "
              f"sampled {table['H'].iat[0]:.6f} +- {table['H_stderr'].iat[0]:.6f}, "
              f"difference {diff:+.6f} nats", flush=True)
        result.update(
            exact_H_frame0=round(exact, 6),
            exact_seconds=round(t_exact, 1),
            exact_pairs_per_second=float(f"{n * n / t_exact:.3g}"),
            descriptor_seconds_frame0=round(t_desc, 2),
            sampled_minus_exact=round(diff, 6),
            within_3_stderr=bool(abs(diff) <= 3 * float(table["H_stderr"].iat[0])),
        )
    if args.calibration_seeds:
        result["calibration"] = calibrate(20, args.sigma, args.calibration_seeds)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
