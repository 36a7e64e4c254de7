"""The browser tour on files the dashboard did not make itself: a LAMMPS text dump of a
Cu3Au alloy (numeric types, a type map typed into the files table, time from the
timestep) and GROMACS ``.gro`` files of argon, each made by real molecular dynamics
(ASE's EMT potential for Cu-Au, a Lennard-Jones potential for argon).

Same checks as :mod:`test_browser_tour`: no Range shared across tabs or quantities,
ranges within their data, wheel zoom, readable hover labels, no request to another
host, no console error; screenshots under ``test-artifacts/dashboard/tour``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import thermalize
from test_browser_e2e import Session, running_server
from test_browser_tour import TOUR, VIEWPORT, Tour, check_document

pytestmark = pytest.mark.browser

DUMP = "cu3au_md.lammpstrj"
DUMP_EVERY = 20          # MD steps between frames (the dump's TIMESTEP values)
DUMP_FRAMES = 16
TYPES = {"Cu": 1, "Au": 2}
TYPE_WARNING = "LAMMPS atom types carry no element names"


def cu3au_md(n_frames: int = DUMP_FRAMES, every: int = DUMP_EVERY, seed: int = 3):
    """L1_2 Cu3Au (108 atoms) heated to 1400 K with ASE's EMT potential, 2 fs steps."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    cell = bulk("Cu", "fcc", a=3.75, cubic=True)
    cell.set_chemical_symbols(["Au", "Cu", "Cu", "Cu"])
    atoms = cell.repeat((3, 3, 3))
    atoms.calc = EMT()
    thermalize(atoms, 1400, np.random.default_rng(seed))
    dyn = VelocityVerlet(atoms, timestep=2 * fs)
    frames = []
    for i in range(n_frames):
        if i:
            dyn.run(every)
        frames.append((i * every, atoms.copy()))
    return frames


def write_lammps_dump(path: Path, frames) -> None:
    """A LAMMPS ``dump atom``-style text file: numeric types only, no element column."""
    lines = []
    for step, atoms in frames:
        cell = np.diag(atoms.cell.array)
        lines += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(len(atoms)),
                  "ITEM: BOX BOUNDS pp pp pp"]
        lines += [f"0.0 {length:.6f}" for length in cell]
        lines.append("ITEM: ATOMS id type x y z")
        for i, (symbol, pos) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions,
                                              strict=True)):
            lines.append(f"{i + 1} {TYPES[symbol]} {pos[0]:.6f} {pos[1]:.6f} {pos[2]:.6f}")
    path.write_text("\n".join(lines) + "\n")


def argon(temperature: float, steps: int, a: float = 5.30, seed: int = 5):
    """256 argon atoms (fcc 4x4x4) after ``steps`` of Lennard-Jones MD (5 fs) at a
    starting ``temperature``."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat((4, 4, 4))
    atoms.calc = LennardJones(sigma=3.405, epsilon=0.0103, rc=8.5, smooth=True)
    thermalize(atoms, temperature, np.random.default_rng(seed))
    VelocityVerlet(atoms, timestep=5 * fs).run(steps)
    atoms.wrap()
    return atoms


def test_tour_on_a_lammps_dump_with_a_type_map(browser, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lammps_data")
    frames = cu3au_md()
    write_lammps_dump(folder / DUMP, frames)
    with running_server(folder, tmp_path_factory.mktemp("lammps_cache"),
                        "server_tour_lammps.log") as info:
        s = Session(browser, info["url"], viewport=VIEWPORT)
        tour = Tour(s, "lammps")
        page = s.page
        try:
            s.open()
            # the lone run is preselected; its numeric types draw a warning naming the file
            page.locator(".tabulator-row", has_text=DUMP).first.wait_for(timeout=30_000)
            page.locator(".alert-warning", has_text=f"{DUMP}: {TYPE_WARNING}").first.wait_for(
                timeout=30_000)
            page.screenshot(path=str(TOUR / "lammps_landing.png"))
            # the same file again: its first frames are the reference, the rest the run
            s.add([DUMP], "reference")
            page.locator(".tabulator-row", has_text=f"{DUMP} #2").first.wait_for(
                timeout=30_000)
            tour.set_frames(f"{DUMP} #2", ":4")
            tour.edit_cell(DUMP, "frames", "4:", exclude="#2")
            tour.edit_cell(DUMP, "types", "1:Cu,2:Au", exclude="#2")
            tour.edit_cell(f"{DUMP} #2", "types", "1:Cu,2:Au")
            status = tour.compute()
            n_run = (DUMP_FRAMES - 4) * 108
            assert f"{DUMP_FRAMES} frames, {DUMP_FRAMES * 108:,} atoms" in status, status
            tour.visit("Data")
            table = page.locator(".tabulator", has_text="V/atom").first.inner_text()  # frames table
            assert "Cu,Au" in table and "H,He" not in table, "type map not applied"
            assert page.locator(".alert-warning", has_text=TYPE_WARNING).count() == 0
            tour.visit("Atoms", ["Per-atom dH (", "dH histogram"])
            tour.visit("Structure", ["Slab z ="])
            tour.visit("Trajectory", ["H (nats) per frame"])
            tour.visit("Learning curves", ["Learning curves (h ="])
            tour.visit("Overlap", ["overlap(row | column) by file"])
            curves = [p for p in tour.plots.values() if p["title"] == "H (nats) per frame"]
            assert curves and curves[-1]["xlabel"] == "time (ps)"
            # time = TIMESTEP x 1 fs (the default LAMMPS time step), frames 4..15 of the run
            lo, hi = curves[-1]["xdata"]
            assert lo == pytest.approx(4 * DUMP_EVERY * 1e-3)
            assert hi == pytest.approx((DUMP_FRAMES - 1) * DUMP_EVERY * 1e-3)
            atoms = [p for p in tour.plots.values() if p["title"].startswith("Per-atom dH (")]
            assert atoms and f"({DUMP_FRAMES * 108:,} atoms)" in atoms[-1]["title"]
            assert n_run > 0
            check_document(tour, s)
        finally:
            s.close()


def test_tour_on_gro_files(browser, tmp_path_factory):
    from ase.io import write

    folder = tmp_path_factory.mktemp("gro_data")
    write(folder / "argon_solid_reference.gro", argon(20.0, 40), format="gromacs")
    write(folder / "argon_liquid.gro", argon(400.0, 300, a=5.6), format="gromacs")
    with running_server(folder, tmp_path_factory.mktemp("gro_cache"),
                        "server_tour_gro.log") as info:
        s = Session(browser, info["url"], viewport=VIEWPORT)
        tour = Tour(s, "gro")
        page = s.page
        try:
            s.open()
            assert page.locator("select[multiple] option", has_text=".gro").count() == 2
            if page.locator(".tabulator-row", has_text="argon_liquid.gro").count() == 0:
                s.add(["argon_liquid.gro"], "test")
            if page.locator(".tabulator-row", has_text="argon_solid_reference.gro").count() == 0:
                s.add(["argon_solid_reference.gro"], "reference")
            page.screenshot(path=str(TOUR / "gro_landing.png"))
            status = tour.compute()
            assert "2 frames, 512 atoms" in status, status
            tour.visit("Data")
            table = page.locator(".tabulator", has_text="V/atom").first.inner_text()  # frames table
            cells = table.split()
            assert "argon_liquid.gro" in cells and "Ar" in cells, table[:300]
            tour.visit("Atoms", ["Per-atom dH (", "dH histogram"])
            tour.visit("Structure", ["Slab z ="])
            tour.visit("Learning curves", ["Learning curves (h ="])
            tour.visit("Overlap", ["overlap(row | column) by file"])
            check_document(tour, s)
        finally:
            s.close()
