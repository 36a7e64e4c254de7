"""Generate the bundled copper molecular-dynamics sample data.

Every file is real molecular dynamics of copper with the effective-medium
theory (EMT) potential of asap3 (C++, about 100x faster than ASE's pure-Python
EMT), integrated with ASE's MD drivers and fixed random seeds.  Every file is
written with ``ase.io.write(..., format="extxyz")`` and a ``manifest.json``
(structure and atom counts, sizes, sha256, key facts) is written next to them.

Usage::

    python sample_data/generate.py            # full data into sample_data/
    python sample_data/generate.py --quick --out /tmp/cu   # tiny smoke test

Requires ``asap3`` (``pip install asap3``) besides ase and numpy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ase
import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.lattice.cubic import BodyCenteredCubic, FaceCenteredCubic
from ase.lattice.hexagonal import HexagonalClosedPacked
from ase.md.langevin import Langevin
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase.optimize import FIRE

try:
    import asap3
    from asap3 import EMT, EMTRasmussenParameters
    from asap3.analysis.localstructure import CNA
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit(
        "sample_data/generate.py needs asap3 (pip install asap3); " f"import failed: {exc}"
    ) from exc

# LangevinBAOAB announces its heuristic barostat mass every time; that is expected.
warnings.filterwarnings("ignore", message="Using heuristic P_mass")

HERE = Path(__file__).resolve().parent
TIMESTEP_FS = 5.0
SEEDS = {
    "solid": 11,
    "melt": 12,
    "quench": 13,
    "dataset": 14,
    "generations": 15,
    "failed": 16,
    "two_models": 17,
}
FILES = (
    "cu_solid_400K.extxyz",
    "cu_melt.extxyz",
    "cu_quench.extxyz",
    "cu_dataset_labelled.extxyz",
    "cu_generations.extxyz",
    "cu_failed_simulation.extxyz",
    "cu_forces_two_models.extxyz",
)


@dataclass(frozen=True)
class Config:
    """Sizes and lengths of every run (``full`` for the committed data, ``quick`` for tests)."""

    solid_reps: int = 6  # conventional FCC cells per side: 4 * 6**3 = 864 atoms
    solid_equil_ps: float = 10.0
    solid_frames: int = 10
    solid_every_ps: float = 2.0
    melt_heat_ps: float = 10.0
    melt_hold_ps: float = 10.0
    quench_reps: int = 8  # 2048 atoms
    quench_melt_ps: float = 10.0
    quench_temperature: float = 800.0
    quench_every_ps: float = 3.0
    quench_min_frames: int = 50
    quench_after_frames: int = 15  # frames kept after the crystal fraction passes 50 %
    quench_max_frames: int = 110
    small_reps: int = 4  # 256 atoms for the labelled / generation / two-model sets
    small_equil_ps: float = 2.0
    small_every_ps: float = 0.5
    subset_size: int = 5
    gen_new: int = 8
    gen_repeats: int = 2
    failed_reps: int = 6
    failed_timestep_fs: float = 25.0
    failed_temperature: float = 900.0
    failed_steps_per_frame: int = 8
    failed_max_frames: int = 80
    failed_frames_after_blowup: int = 3
    two_models_train: int = 6
    two_models_test_each: int = 3


FULL = Config()
QUICK = Config(
    solid_reps=3,
    solid_equil_ps=0.5,
    solid_frames=3,
    solid_every_ps=0.2,
    melt_heat_ps=2.0,
    melt_hold_ps=0.5,
    quench_reps=3,
    quench_melt_ps=1.0,
    quench_every_ps=0.2,
    quench_min_frames=4,
    quench_after_frames=0,
    quench_max_frames=4,
    small_reps=3,
    small_equil_ps=0.2,
    small_every_ps=0.1,
    subset_size=2,
    gen_new=2,
    gen_repeats=1,
    failed_reps=3,
    failed_max_frames=6,
    two_models_train=2,
    two_models_test_each=1,
)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def steps(ps: float, timestep_fs: float = TIMESTEP_FS) -> int:
    """Number of MD steps covering ``ps`` picoseconds (at least one)."""
    return max(1, int(round(ps * 1000.0 / timestep_fs)))


def calculator(rasmussen: bool = False) -> EMT:
    """asap3 EMT for Cu: default parameters, or Rasmussen's refit (the 'other model')."""
    return EMT(EMTRasmussenParameters()) if rasmussen else EMT()


def lattice_constant() -> float:
    """Zero-temperature FCC lattice constant of asap3 EMT Cu (Å), from a parabola fit."""
    trial = np.linspace(3.55, 3.65, 11)
    energies = []
    for a in trial:
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.calc = calculator()
        energies.append(atoms.get_potential_energy())
    c2, c1, _ = np.polyfit(trial, energies, 2)
    return float(-c1 / (2.0 * c2))


def fcc(a0: float, reps: int) -> Atoms:
    """Cubic FCC Cu supercell with ``4 * reps**3`` atoms."""
    return FaceCenteredCubic("Cu", size=(reps, reps, reps), latticeconstant=a0)


def start(atoms: Atoms, temperature: float, rng: np.random.Generator) -> Atoms:
    """Attach EMT and draw Maxwell-Boltzmann momenta (zero total momentum)."""
    atoms.calc = calculator()
    thermalize_momenta(atoms, temperature, rng=rng)
    Stationary(atoms)
    return atoms


def npt(atoms: Atoms, temperature: float, rng: np.random.Generator) -> LangevinBAOAB:
    """Langevin (BAOAB) NPT at zero pressure with an isotropic (hydrostatic) cell."""
    return LangevinBAOAB(
        atoms,
        TIMESTEP_FS * units.fs,
        temperature_K=temperature,
        externalstress=0.0,
        hydrostatic=True,
        T_tau=100 * units.fs,
        P_tau=2000 * units.fs,
        rng=rng,
    )


def nvt(atoms: Atoms, temperature: float, rng: np.random.Generator) -> Langevin:
    """Langevin NVT with friction 0.02 / fs."""
    return Langevin(
        atoms,
        TIMESTEP_FS * units.fs,
        temperature_K=temperature,
        friction=0.02 / units.fs,
        fixcm=False,
        rng=rng,
    )


def epot_per_atom(atoms: Atoms) -> float:
    return float(atoms.get_potential_energy()) / len(atoms)


def snapshot(
    atoms: Atoms,
    info: dict,
    *,
    arrays: dict[str, np.ndarray] | None = None,
    with_calc: bool = False,
    wrap: bool = True,
) -> Atoms:
    """A bare copy (positions, numbers, cell, pbc) with ``info``, per-atom ``arrays``.

    With ``with_calc`` the EMT energy and forces are attached so that extxyz
    writes them as ``energy`` (info) and ``forces`` (per-atom array).
    """
    snap = Atoms(
        numbers=atoms.numbers.copy(),
        positions=atoms.get_positions(wrap=wrap and bool(atoms.pbc.any())),
        cell=atoms.cell.copy(),
        pbc=atoms.pbc.copy(),
    )
    snap.info.update(info)
    for name, values in (arrays or {}).items():
        snap.new_array(name, np.asarray(values))
    if with_calc:
        snap.calc = SinglePointCalculator(
            snap, energy=float(atoms.get_potential_energy()), forces=atoms.get_forces().copy()
        )
    return snap


def inherent_cna(atoms: Atoms, max_steps: int = 150) -> np.ndarray:
    """Restricted CNA (0 FCC, 1 HCP, 2 other) of the energy-minimised (inherent) structure.

    Thermal noise at 800 K hides much of the crystal from CNA on the raw
    positions; a short FIRE minimisation at fixed cell removes it without
    letting atoms hop, so the liquid stays disordered and the crystal shows.
    """
    relaxed = Atoms(atoms.numbers, atoms.get_positions(), cell=atoms.cell, pbc=atoms.pbc)
    relaxed.calc = calculator()
    FIRE(relaxed, logfile=None).run(fmax=0.05, steps=max_steps)
    return np.asarray(CNA(relaxed), dtype=np.int8)


def thermo_info(atoms: Atoms, frame: int, time_ps: float, label: str) -> dict:
    return {
        "label": label,
        "frame": frame,
        "time": round(time_ps, 6),
        "temperature": round(float(atoms.get_temperature()), 3),
        "epot": round(epot_per_atom(atoms), 6),
    }


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------
# 1-2: solid at 400 K and melt
# ---------------------------------------------------------------------------


def solid_400k(cfg: Config, a0: float) -> tuple[list[Atoms], Atoms]:
    """FCC Cu equilibrated at 400 K (NPT); returns the frames and the final state."""
    rng = np.random.default_rng(SEEDS["solid"])
    atoms = start(fcc(a0, cfg.solid_reps), 400.0, rng)
    dyn = npt(atoms, 400.0, rng)
    dyn.run(steps(cfg.solid_equil_ps))
    frames = []
    for i in range(cfg.solid_frames):
        if i:
            dyn.run(steps(cfg.solid_every_ps))
        t = cfg.solid_equil_ps + i * cfg.solid_every_ps
        frames.append(snapshot(atoms, thermo_info(atoms, i, t, "fcc_400K"), with_calc=True))
    return frames, atoms


def melt(cfg: Config, solid: Atoms) -> list[Atoms]:
    """The 400 K cell heated to 2000 K (NPT), then held at 1600 K (above EMT T_m)."""
    rng = np.random.default_rng(SEEDS["melt"])
    atoms = solid.copy()
    atoms.calc = calculator()
    atoms.set_momenta(solid.get_momenta())
    npt(atoms, 2000.0, rng).run(steps(cfg.melt_heat_ps))
    dyn = npt(atoms, 1600.0, rng)
    dyn.run(steps(cfg.melt_hold_ps))
    frames = []
    t0 = cfg.melt_heat_ps + cfg.melt_hold_ps
    for i in range(cfg.solid_frames):
        if i:
            dyn.run(steps(cfg.solid_every_ps))
        info = thermo_info(atoms, i, t0 + i * cfg.solid_every_ps, "liquid")
        info["frac_fcc_hcp"] = round(float(np.mean(inherent_cna(atoms) < 2)), 4)
        frames.append(snapshot(atoms, info, with_calc=True))
    return frames


# ---------------------------------------------------------------------------
# 3: quench with homogeneous crystallisation
# ---------------------------------------------------------------------------


def quench(cfg: Config, a0: float) -> tuple[list[Atoms], dict]:
    """Melt at 2000 K, quench to ``quench_temperature`` (NPT) and watch it crystallise.

    Frames are kept every ``quench_every_ps``; the run is at least
    ``quench_min_frames`` long and continues (up to ``quench_max_frames``) until
    ``quench_after_frames`` frames after the inherent-structure FCC+HCP
    fraction first exceeds 50 %.
    """
    rng = np.random.default_rng(SEEDS["quench"])
    atoms = start(fcc(a0, cfg.quench_reps), 2000.0, rng)
    npt(atoms, 2000.0, rng).run(steps(cfg.quench_melt_ps))
    dyn = npt(atoms, cfg.quench_temperature, rng)
    frames: list[Atoms] = []
    fractions: list[float] = []
    crystallised_at: int | None = None
    frame = 0
    while True:
        if frame:
            dyn.run(steps(cfg.quench_every_ps))
        cna = inherent_cna(atoms)
        frac = float(np.mean(cna < 2))
        fractions.append(frac)
        if crystallised_at is None and frac >= 0.5:
            crystallised_at = frame
        info = thermo_info(atoms, frame, frame * cfg.quench_every_ps, "quench")
        info["frac_fcc_hcp"] = round(frac, 4)
        frames.append(snapshot(atoms, info, arrays={"cna": cna}))
        log(
            f"  quench frame {frame:3d}  t={frame * cfg.quench_every_ps:6.1f} ps  "
            f"T={info['temperature']:7.1f} K  epot={info['epot']:.4f} eV/atom  "
            f"fcc+hcp={frac:.3f}"
        )
        frame += 1
        done_min = frame >= cfg.quench_min_frames
        done_after = (
            crystallised_at is not None and frame > crystallised_at + cfg.quench_after_frames
        )
        if (done_min and done_after) or frame >= cfg.quench_max_frames:
            break
    onset = next((i for i, f in enumerate(fractions) if f >= 0.1), None)
    facts = {
        "quench_temperature_K": cfg.quench_temperature,
        "nucleation_onset_frame": onset,
        "crystallisation_frame": crystallised_at,
        "frac_fcc_hcp_first": round(fractions[0], 4),
        "frac_fcc_hcp_last": round(fractions[-1], 4),
        "epot_first_10_mean": round(float(np.mean([f.info["epot"] for f in frames[1:11]])), 4)
        if len(frames) > 1
        else None,
        "epot_last_10_mean": round(float(np.mean([f.info["epot"] for f in frames[-10:]])), 4),
    }
    return frames, facts


# ---------------------------------------------------------------------------
# 4: labelled dataset
# ---------------------------------------------------------------------------


def md_snapshots(
    atoms: Atoms,
    temperature: float,
    rng: np.random.Generator,
    n: int,
    cfg: Config,
    info: dict,
    dynamics: Callable = nvt,
) -> list[Atoms]:
    """``n`` snapshots (with EMT energy and forces) from an NVT run after equilibration."""
    start(atoms, temperature, rng)
    dyn = dynamics(atoms, temperature, rng)
    dyn.run(steps(cfg.small_equil_ps))
    out = []
    for i in range(n):
        if i:
            dyn.run(steps(cfg.small_every_ps))
        snap_info = dict(info)
        snap_info["temperature"] = round(float(atoms.get_temperature()), 3)
        snap_info["target_temperature"] = temperature
        out.append(snapshot(atoms, snap_info, with_calc=True))
    return out


def strained(atoms: Atoms, strain: float | np.ndarray) -> Atoms:
    """Apply a (scalar isotropic or 3x3 symmetric) linear strain, scaling the atoms."""
    eps = np.eye(3) * strain if np.ndim(strain) == 0 else np.asarray(strain)
    atoms.set_cell(atoms.cell @ (np.eye(3) + eps), scale_atoms=True)
    return atoms


def with_vacancies(atoms: Atoms, n: int, rng: np.random.Generator) -> Atoms:
    """Remove ``n`` randomly chosen atoms."""
    if n:
        del atoms[sorted(rng.choice(len(atoms), size=n, replace=False).tolist())]
    return atoms


def liquid_cell(a0: float, reps: int, rng: np.random.Generator, cfg: Config) -> Atoms:
    """A small FCC cell melted at 2500 K (NVT at the liquid's NPT volume is not needed here)."""
    atoms = strained(fcc(a0, reps), 0.02)  # ~6 % more volume, close to the liquid's
    start(atoms, 2500.0, rng)
    nvt(atoms, 2500.0, rng).run(steps(2 * cfg.small_equil_ps))
    return atoms


def labelled_dataset(cfg: Config, a0: float) -> list[Atoms]:
    """Subsets of 100-500-atom snapshots, one ``label`` per structure."""
    rng = np.random.default_rng(SEEDS["dataset"])
    r, n = cfg.small_reps, cfg.subset_size
    v_atom = a0**3 / 4.0
    out: list[Atoms] = []
    for temperature in (300, 600, 900):
        out += md_snapshots(fcc(a0, r), temperature, rng, n, cfg, {"label": f"fcc_{temperature}K"})
    a_bcc = (2.0 * v_atom) ** (1.0 / 3.0)
    bcc = BodyCenteredCubic("Cu", size=(r + 1, r + 1, r + 1), latticeconstant=a_bcc)
    out += md_snapshots(bcc, 300.0, rng, n, cfg, {"label": "bcc"})
    a_hcp = a0 / np.sqrt(2.0)
    hcp = HexagonalClosedPacked(
        "Cu", size=(r + 2, r + 2, r), latticeconstant={"a": a_hcp, "c": a_hcp * np.sqrt(8 / 3)}
    )
    out += md_snapshots(hcp, 300.0, rng, n, cfg, {"label": "hcp"})
    liquid = liquid_cell(a0, r, rng, cfg)
    out += md_snapshots(liquid, 1800.0, rng, n, cfg, {"label": "liquid"})
    slab = fcc111("Cu", size=(r + 2, r + 2, r + 2), a=a0, vacuum=10.0, periodic=False)
    slab.pbc = (True, True, False)
    out += md_snapshots(slab, 500.0, rng, n, cfg, {"label": "surface"})
    vac = with_vacancies(fcc(a0, r), 2, rng)
    out += md_snapshots(vac, 600.0, rng, n, cfg, {"label": "vacancy"})
    for sign, name in ((1, "strained_tensile"), (-1, "strained_compressive")):
        atoms = strained(fcc(a0, r), sign * 0.03)
        out += md_snapshots(atoms, 300.0, rng, n, cfg, {"label": name, "strain": sign * 0.03})
    for i, atoms in enumerate(out):
        atoms.info["frame"] = i
    return out


# ---------------------------------------------------------------------------
# 5: active-learning-like generations
# ---------------------------------------------------------------------------

# generation -> (temperature K, max |strain component|, vacancies per structure)
GENERATIONS = ((300.0, 0.0, 0), (600.0, 0.01, 0), (900.0, 0.02, 1), (1200.0, 0.03, 2),
               (1500.0, 0.04, 4))


def random_strain(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Symmetric strain tensor with components uniform in [-amplitude, amplitude]."""
    e = rng.uniform(-amplitude, amplitude, size=(3, 3))
    return 0.5 * (e + e.T)


def generations(cfg: Config, a0: float) -> list[Atoms]:
    """Generations 0..4, each hotter, more strained and more defective than the last.

    Each generation has ``gen_new`` new structures (two independent NVT runs,
    each with its own random strain) and, from generation 1 on,
    ``gen_repeats`` exact copies of new structures from earlier generations
    (``origin="repeat"``, ``repeated_from`` = the generation they were new in).
    """
    rng = np.random.default_rng(SEEDS["generations"])
    out: list[Atoms] = []
    half = max(1, cfg.gen_new // 2)
    for gen, (temperature, amp, n_vac) in enumerate(GENERATIONS):
        new: list[Atoms] = []
        for _chain in range(cfg.gen_new // half):
            eps = random_strain(rng, amp)
            atoms = with_vacancies(strained(fcc(a0, cfg.small_reps), eps), n_vac, rng)
            info = {
                "generation": gen,
                "label": "vacancy" if n_vac else "fcc",
                "origin": "new",
                "repeated_from": -1,
                "max_strain": round(float(np.abs(eps).max()), 5),
                "n_vacancies": n_vac,
            }
            new += md_snapshots(atoms, temperature, rng, half, cfg, info)
        repeats: list[Atoms] = []
        if gen:
            pool = [i for i, a in enumerate(out) if a.info["origin"] == "new"]
            picks = rng.choice(pool, size=min(cfg.gen_repeats, len(pool)), replace=False)
            for idx in sorted(picks.tolist()):
                copy = out[idx].copy()
                copy.calc = SinglePointCalculator(
                    copy, energy=out[idx].get_potential_energy(), forces=out[idx].get_forces()
                )
                copy.info.update(
                    {"generation": gen, "origin": "repeat",
                     "repeated_from": int(out[idx].info["generation"])}
                )
                repeats.append(copy)
        out += new + repeats
    for i, atoms in enumerate(out):
        atoms.info["frame"] = i
    return out


# ---------------------------------------------------------------------------
# 6: a simulation that goes wrong
# ---------------------------------------------------------------------------


def failed_simulation(cfg: Config, a0: float) -> tuple[list[Atoms], dict]:
    """NVE velocity Verlet with a far too large 25 fs step from a 900 K start.

    The energy drifts up slowly (the crystal heats), then the integration
    becomes unstable and the temperature explodes within a few frames.  The
    run stops ``failed_frames_after_blowup`` frames after T first exceeds
    10 000 K, or at the first non-finite value or calculator error.
    """
    rng = np.random.default_rng(SEEDS["failed"])
    atoms = start(fcc(a0, cfg.failed_reps), cfg.failed_temperature, rng)
    dyn = VelocityVerlet(atoms, cfg.failed_timestep_fs * units.fs)
    dt_frame = cfg.failed_steps_per_frame * cfg.failed_timestep_fs / 1000.0
    frames: list[Atoms] = []
    blowup: int | None = None
    for frame in range(cfg.failed_max_frames):
        if frame:
            try:
                dyn.run(cfg.failed_steps_per_frame)
            except Exception as exc:  # asap3 may refuse atoms that moved absurdly far
                log(f"  failed run stopped at frame {frame}: {type(exc).__name__}: {exc}")
                break
        pos = atoms.get_positions()
        temperature = float(atoms.get_temperature())
        if not (np.isfinite(pos).all() and np.isfinite(temperature)):
            break
        frames.append(
            snapshot(atoms, thermo_info(atoms, frame, frame * dt_frame, "failed"), wrap=False)
        )
        if blowup is None and temperature > 1.0e4:
            blowup = frame
        if blowup is not None and frame >= blowup + cfg.failed_frames_after_blowup:
            break
    # frame 0 holds all the energy as kinetic energy (T0); equipartition halves it
    # within the first frame, so the reference temperature is that of frames 1-5.
    temps = np.array([f.info["temperature"] for f in frames])
    base = float(np.mean(temps[1:6])) if len(temps) > 1 else float(temps[0])
    drift = next((i for i, t in enumerate(temps) if i > 0 and t > 1.2 * base), None)
    facts = {
        "timestep_fs": cfg.failed_timestep_fs,
        "initial_temperature_K": cfg.failed_temperature,
        "equilibrated_temperature_K": round(base, 1),
        "heating_visible_frame": drift,
        "blowup_frame": blowup,
        "n_frames": len(frames),
    }
    return frames, facts


# ---------------------------------------------------------------------------
# 7: forces from two models
# ---------------------------------------------------------------------------


def two_models(cfg: Config, a0: float) -> list[Atoms]:
    """Structures with ``forces_emt`` (reference) and ``forces_model`` (EMT, Rasmussen refit).

    ``label="train"``: near-equilibrium FCC at 300 K (lattice within +/-0.5 %).
    ``label="test"``: liquid, hot solid, vacancies and a surface slab.
    """
    rng = np.random.default_rng(SEEDS["two_models"])
    r = cfg.small_reps
    raw: list[tuple[Atoms, str, str]] = []
    for _ in range(cfg.two_models_train):
        atoms = strained(fcc(a0, r), float(rng.uniform(-0.005, 0.005)))
        raw += [(s, "train", "fcc_300K") for s in md_snapshots(atoms, 300.0, rng, 1, cfg, {})]
    m = cfg.two_models_test_each
    liquid = liquid_cell(a0, r, rng, cfg)
    raw += [(s, "test", "liquid") for s in md_snapshots(liquid, 1800.0, rng, m, cfg, {})]
    raw += [(s, "test", "fcc_1200K") for s in md_snapshots(fcc(a0, r), 1200.0, rng, m, cfg, {})]
    vac = with_vacancies(fcc(a0, r), 3, rng)
    raw += [(s, "test", "vacancy") for s in md_snapshots(vac, 900.0, rng, m, cfg, {})]
    slab = fcc111("Cu", size=(r + 2, r + 2, r + 2), a=a0, vacuum=10.0, periodic=False)
    slab.pbc = (True, True, False)
    raw += [(s, "test", "surface") for s in md_snapshots(slab, 600.0, rng, m, cfg, {})]
    out = []
    for i, (snap, label, kind) in enumerate(raw):
        f_emt = snap.get_forces()
        e_emt = snap.get_potential_energy()
        other = Atoms(snap.numbers, snap.positions, cell=snap.cell, pbc=snap.pbc)
        other.calc = calculator(rasmussen=True)
        f_model = other.get_forces()
        info = {
            "label": label,
            "kind": kind,
            "frame": i,
            "temperature": snap.info["temperature"],
            "energy_emt": round(float(e_emt), 6),
            "energy_model": round(float(other.get_potential_energy()), 6),
        }
        out.append(snapshot(other, info, arrays={"forces_emt": f_emt, "forces_model": f_model}))
    return out


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_frames(path: Path, frames: list[Atoms]) -> None:
    write(path, frames, format="extxyz")
    log(f"wrote {path.name}: {len(frames)} structures, {path.stat().st_size / 1e6:.2f} MB")


def manifest(out: Path, facts: dict, quick: bool) -> dict:
    """File table (counts read back from disk, size, sha256) plus provenance and facts."""
    files = []
    for name in FILES:
        path = out / name
        frames = read(path, index=":", format="extxyz")
        files.append(
            {
                "name": name,
                "n_structures": len(frames),
                "n_atoms_total": int(sum(len(f) for f in frames)),
                "size_bytes": path.stat().st_size,
                "sha256": sha256(path),
            }
        )
    return {
        "generator": "sample_data/generate.py" + (" --quick" if quick else ""),
        "potential": "asap3 EMT (Cu); forces_model: asap3 EMT with EMTRasmussenParameters",
        "versions": {
            "asap3": asap3.__version__,
            "ase": ase.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "timestep_fs": TIMESTEP_FS,
        "seeds": SEEDS,
        "facts": facts,
        "files": files,
    }


def generate(out: Path, quick: bool = False) -> dict:
    """Run every simulation and write the files and ``manifest.json`` into ``out``."""
    cfg = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    a0 = lattice_constant()
    log(f"EMT Cu lattice constant a0 = {a0:.4f} Å")
    facts: dict = {"lattice_constant_A": round(a0, 5)}

    def step(name: str, job: Callable[[], list[Atoms]]) -> None:
        t0 = time.perf_counter()
        log(f"{name} ...")
        write_frames(out / name, job())
        log(f"  {time.perf_counter() - t0:.1f} s")

    solid_frames, solid_state = solid_400k(cfg, a0)
    write_frames(out / "cu_solid_400K.extxyz", solid_frames)
    step("cu_melt.extxyz", lambda: melt(cfg, solid_state))
    t0 = time.perf_counter()
    quench_frames, facts["quench"] = quench(cfg, a0)
    write_frames(out / "cu_quench.extxyz", quench_frames)
    if not quick and facts["quench"]["crystallisation_frame"] is None:
        raise SystemExit(
            "cu_quench.extxyz: the melt did not crystallise within "
            f"{cfg.quench_max_frames} frames; raise quench_max_frames or use a crystal seed"
        )
    log(f"  quench {time.perf_counter() - t0:.1f} s, facts {facts['quench']}")
    step("cu_dataset_labelled.extxyz", lambda: labelled_dataset(cfg, a0))
    step("cu_generations.extxyz", lambda: generations(cfg, a0))
    failed_frames, facts["failed"] = failed_simulation(cfg, a0)
    write_frames(out / "cu_failed_simulation.extxyz", failed_frames)
    log(f"  failed-run facts {facts['failed']}")
    step("cu_forces_two_models.extxyz", lambda: two_models(cfg, a0))

    data = manifest(out, facts, quick)
    (out / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    total = sum(f["size_bytes"] for f in data["files"])
    log(f"total {total / 1e6:.2f} MB in {time.perf_counter() - t_start:.0f} s")
    return data


#: The bundled chunk store: dH of the failed run against the 400 K solid (Stores tab).
STORE_NAME = "cu_failed_simulation_store"


def write_store(out: Path) -> Path:
    """dH of ``cu_failed_simulation.extxyz`` against ``cu_solid_400K.extxyz``, written by
    the out-of-core pipeline (``quests_core.chunked``) as a chunk store of 5-frame chunks:
    the same store ``quests-dashboard dh ... --store`` makes, small enough to bundle."""
    sys.path.insert(0, str(HERE.parent))
    from quests_core.chunked import chunked_delta_entropy
    from quests_core.descriptors import descriptors

    reference = descriptors(read(out / "cu_solid_400K.extxyz", index=":"))
    t0 = time.perf_counter()
    here = os.getcwd()
    os.chdir(out.resolve().parent)  # the tables' `source` column: "<folder>/<file>", no host path
    try:
        run = chunked_delta_entropy(f"{out.resolve().name}/cu_failed_simulation.extxyz",
                                    reference, f"{out.resolve().name}/{STORE_NAME}", 0.015,
                                    chunk_frames=5, overwrite=True)
    finally:
        os.chdir(here)
    log(f"{STORE_NAME}: {run.store} in {time.perf_counter() - t0:.1f} s")
    return out / STORE_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    parser.add_argument("--quick", action="store_true", help="tiny, fast version (smoke test)")
    parser.add_argument("--store-only", action="store_true",
                        help=f"only (re)write {STORE_NAME}/ from the existing files")
    args = parser.parse_args(argv)
    if not args.store_only:
        generate(args.out, quick=args.quick)
    write_store(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
