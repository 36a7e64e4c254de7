"""Small synthetic Cu data for the dashboard's tests and benchmarks.

fcc copper (a = 3.61 Å) with Gaussian displacements: small ones are a
"solid", large ones a "liquid-like" disordered structure. The failing
trajectory is solid for its first frames and then jumps to disorder, so its
novelty jumps at a known frame (:data:`JUMP_FRAME`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.io import write

from dashboard.warm import synthetic_atoms_table as big_atoms_table  # noqa: F401
from quests_core.settings import DEFAULTS

A_CU = 3.61
JUMP_FRAME = 8
N_TRAJ_FRAMES = 12


def cu_frame(rng: np.random.Generator, sigma: float, reps: int = 3, **info):
    """One fcc Cu supercell (4 reps^3 atoms) with displacements of std ``sigma`` Å."""
    atoms = bulk("Cu", "fcc", a=A_CU, cubic=True).repeat((reps, reps, reps))
    atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
    atoms.wrap()
    atoms.info.update(info)
    return atoms


def make_sample_dir(folder: str | Path, seed: int = DEFAULTS.seed) -> dict[str, Path]:
    """Write the synthetic files into ``folder``; returns name -> path.

    Files: ``solid.extxyz`` (4 frames, sigma 0.05 Å), ``melt.extxyz``
    (4 frames, sigma 0.45 Å), ``failed_traj.extxyz`` (12 frames, 0.1 ps
    apart, jump to sigma 0.45 Å at frame 8, 900 K) and ``labelled.extxyz``
    (3 frames labelled "solid", 3 labelled "liquid").
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "solid.extxyz": [cu_frame(rng, 0.05, time=0.1 * i, temperature=300.0) for i in range(4)],
        "melt.extxyz": [cu_frame(rng, 0.45, time=0.1 * i, temperature=1600.0) for i in range(4)],
        "failed_traj.extxyz": [
            cu_frame(rng, 0.05 if i < JUMP_FRAME else 0.45, time=0.1 * i, temperature=900.0)
            for i in range(N_TRAJ_FRAMES)
        ],
        "labelled.extxyz": [cu_frame(rng, 0.05, label="solid") for _ in range(3)]
        + [cu_frame(rng, 0.45, label="liquid") for _ in range(3)],
    }
    out = {}
    for name, frames in files.items():
        path = folder / name
        write(path, frames, format="extxyz")
        out[name] = path
    return out




def wait_until_serving(url: str, proc, timeout: float, poll: float = 0.5) -> bool:
    """Poll ``url`` until it answers 200 (tests and benchmarks starting ``launch.py``).

    Returns False as soon as the server process ``proc`` has exited or ``timeout``
    seconds have passed without an answer.
    """
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(poll)


def stop_process(proc, timeout: float = 20.0) -> None:
    """Terminate a server started by a test or benchmark; kill it after ``timeout`` s."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
