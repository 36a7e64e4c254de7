"""Stop an ASE molecular dynamics run when it leaves its training data.

The run is made the way ``sample_data/cu_failed_simulation.extxyz`` was made
(sample_data/generate.py, ``failed_simulation``): 6x6x6 FCC copper (864
atoms, a0 = 3.5935 Å), velocities drawn at 900 K, NVE velocity Verlet with a
far too long 25 fs time step. The energy drifts up, the crystal heats, and
after a few hundred steps the integration blows up (10^7 K and more). Here the
potential is ASE's own EMT (the sample data used asap3's, which is the same
potential, only faster) and the reference (training data) is the bundled
400 K crystal ``sample_data/cu_solid_400K.extxyz``.

:class:`quests_core.ase_observer.ExtrapolationObserver` checks the structure
every 8 steps (one frame of the sample run) and stops the run when more than
5 % of the atoms have dH > 0 in two checks in a row; the offending structure is
written to ``extrapolation.extxyz`` with a per-atom ``dH`` column.

Run from the repository root::

    python examples/ase_stop_on_extrapolation.py            # about 1 min on one core
    python examples/ase_stop_on_extrapolation.py --no-observer   # let it blow up

It prints one line per check (step, temperature, mean dH, max dH, fraction
novel, H) and the step at which the run was stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from quests_core.ase_observer import ExtrapolationDetected, ExtrapolationObserver

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "sample_data" / "cu_solid_400K.extxyz"
A0 = 3.5935  # Å, the EMT lattice constant fitted by sample_data/generate.py


def thermalize(atoms, temperature_k: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann velocities at ``temperature_k`` with zero total momentum."""
    try:
        from ase.md.velocitydistribution import thermalize_momenta  # ASE >= 3.29
    except ImportError:  # pragma: no cover - older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_k, rng=rng)
    else:
        thermalize_momenta(atoms, temperature_K=temperature_k, rng=rng)
    Stationary(atoms)


def make_run(reps: int = 6, timestep_fs: float = 25.0, temperature_k: float = 900.0,
             seed: int = 16):
    """The failing run: FCC Cu, EMT, NVE velocity Verlet with a too long time step."""
    atoms = bulk("Cu", "fcc", a=A0, cubic=True).repeat(reps)
    atoms.calc = EMT()
    thermalize(atoms, temperature_k, np.random.default_rng(seed))
    return atoms, VelocityVerlet(atoms, timestep_fs * units.fs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600, help="steps requested (default 600)")
    p.add_argument("--every", type=int, default=8, help="steps between checks (default 8)")
    p.add_argument("--reps", type=int, default=6, help="FCC cells per side (default 6)")
    p.add_argument("--timestep", type=float, default=25.0, help="time step in fs (default 25)")
    p.add_argument("--out", default="extrapolation.extxyz", help="offending structure")
    p.add_argument("--no-observer", action="store_true",
                   help="run without the observer (print the temperature only)")
    args = p.parse_args(argv)

    atoms, dyn = make_run(args.reps, args.timestep)
    print(f"{len(atoms)} Cu atoms, EMT, NVE, {args.timestep:g} fs steps; reference "
          f"{REFERENCE.name}", flush=True)
    print(f"{'step':>6} {'T (K)':>12} {'mean dH':>9} {'max dH':>9} {'novel':>7} {'H':>7}",
          flush=True)
    if args.no_observer:
        def show():
            print(f"{dyn.nsteps:>6} {atoms.get_temperature():>12.4g}", flush=True)

        dyn.attach(show, interval=args.every)
        dyn.run(args.steps)
        return 0

    observer = ExtrapolationObserver(atoms, str(REFERENCE), every=args.every, out=args.out)

    def show():  # runs after the observer (attached first) at the same steps
        step, mean, top, frac, h = observer.history[-1]
        print(f"{step:>6} {atoms.get_temperature():>12.4g} {mean:>9.4g} {top:>9.4g} "
              f"{frac:>7.4f} {h:>7.4f}", flush=True)

    observer.attach(dyn)
    dyn.attach(show, interval=args.every)
    try:
        dyn.run(args.steps)
    except ExtrapolationDetected as exc:
        step, mean, top, frac, h = observer.history[-1]
        print(f"{step:>6} {atoms.get_temperature():>12.4g} {mean:>9.4g} {top:>9.4g} "
              f"{frac:>7.4f} {h:>7.4f}", flush=True)
        print(f"the observer stopped the run at step {exc.step} of {args.steps} "
              f"(T = {atoms.get_temperature():.0f} K): {frac:.1%} of the atoms have dH > 0; "
              f"structure with per-atom dH in {exc.path}")
        return 0
    print(f"no extrapolation in {args.steps} steps (T = {atoms.get_temperature():.0f} K)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
