"""quests_core.ase_observer: a real ASE EMT run stopped when it extrapolates.

The run is the example's (examples/ase_stop_on_extrapolation.py) on 4x4x4 Cu
(256 atoms) with a 28 fs step, which blows up (T > 10^7 K) near step 40; the
observer checks every 5 steps against the bundled 400 K crystal.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read
from ase.md.verlet import VelocityVerlet

import quests_core as qc
from quests_core.ase_observer import (
    ExtrapolationDetected,
    ExtrapolationObserver,
    StopFileFound,
    StopFileObserver,
)
from quests_core.errors import QuestsError
from quests_core.settings import DEFAULTS
from quests_core.trajectory import frame_statistics
from quests_core.watch import load_reference

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "sample_data" / "cu_solid_400K.extxyz"
STEPS = 200


def _example():
    spec = importlib.util.spec_from_file_location(
        "ase_stop_on_extrapolation", ROOT / "examples" / "ase_stop_on_extrapolation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference():
    return load_reference(str(REFERENCE))


def test_observer_stops_a_blowing_up_emt_run(tmp_path, reference):
    atoms, dyn = _example().make_run(reps=4, timestep_fs=28.0)
    out = tmp_path / "bad.extxyz"
    observer = ExtrapolationObserver(atoms, reference, every=5, out=out).attach(dyn)
    with pytest.raises(ExtrapolationDetected) as caught:
        dyn.run(STEPS)
    exc = caught.value
    assert exc.step == dyn.nsteps < STEPS
    assert exc.step % 5 == 0 and exc.path == out
    # stopped before the blow-up: the same run reaches T > 1e7 K by step 40
    assert atoms.get_temperature() < 2000
    # the rule: the last two checks above 5 % novel, none before that pair
    fracs = [h[3] for h in observer.history]
    assert fracs[-1] > 0.05 and fracs[-2] > 0.05
    assert not any(a > 0.05 and b > 0.05 for a, b in zip(fracs[:-2], fracs[1:-1], strict=True))
    assert [h[0] for h in observer.history] == list(range(0, exc.step + 1, 5))
    # the written frame: the stopped structure with its per-atom dH
    frame = read(out)
    dh = frame.arrays["dH"]
    assert len(frame) == 256 and np.sum(dh > 0) > 0.05 * 256
    assert frame.info["step"] == exc.step
    assert frame.info["frac_novel"] == pytest.approx(np.mean(dh > 0))
    np.testing.assert_allclose(frame.positions, atoms.positions, atol=1e-7)
    np.testing.assert_allclose(dh, exc.report.dh, rtol=0, atol=1e-8)  # extxyz: 8 decimals
    stats, again = frame_statistics(qc.descriptors([atoms]), reference.x, reference.h)
    np.testing.assert_array_equal(again, exc.report.dh)
    assert stats.frac_novel == exc.report.stats.frac_novel
    assert "extrapolation at step" in str(exc) and str(out) in str(exc)


def test_halt_ends_run_normally_at_the_detection(reference):
    atoms, dyn = _example().make_run(reps=4, timestep_fs=28.0)
    observer = ExtrapolationObserver(atoms, reference, every=5, out=None, stop="halt")
    observer.attach(dyn)
    dyn.run(STEPS)  # returns, no exception
    assert observer.detected is not None
    assert dyn.nsteps == observer.history[-1][0] < STEPS
    assert observer.detected.stats.frac_novel > 0.05


def test_a_sane_run_is_not_stopped(reference):
    atoms = bulk("Cu", "fcc", a=3.5935, cubic=True).repeat(4)
    atoms.calc = EMT()
    _example().thermalize(atoms, 300.0, np.random.default_rng(1))
    dyn = VelocityVerlet(atoms, 5.0 * units.fs)
    observer = ExtrapolationObserver(atoms, reference, every=10, out=None).attach(dyn)
    dyn.run(30)
    assert observer.detected is None
    assert [h[0] for h in observer.history] == [0, 10, 20, 30]
    assert max(h[3] for h in observer.history) <= 0.05


def test_stop_file_observer(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.5935, cubic=True).repeat(2)
    atoms.calc = EMT()
    dyn = VelocityVerlet(atoms, 2.0 * units.fs)
    stop = tmp_path / "STOP"
    dyn.attach(lambda: stop.write_text("extrapolation frame=3\n") if dyn.nsteps == 7 else None)
    dyn.attach(StopFileObserver(stop, dyn=dyn), interval=5)
    with pytest.raises(StopFileFound, match=r"found at step 10: extrapolation frame=3") as caught:
        dyn.run(50)
    assert caught.value.step == 10 == dyn.nsteps
    with pytest.raises(QuestsError, match="stop must be"):
        StopFileObserver(stop, stop="later")


def test_reference_as_descriptors_needs_the_fixed_rule(reference):
    atoms = bulk("Cu", "fcc", a=3.5935, cubic=True).repeat(2)
    obs = ExtrapolationObserver(atoms, reference.x, out=None)
    obs()
    assert obs.history[0][0] is None and obs.checks == 1
    with pytest.raises(QuestsError, match="volume rule needs reference structures"):
        ExtrapolationObserver(atoms, reference.x, settings=DEFAULTS.replace(
            bandwidth_rule="volume"))
    with pytest.raises(QuestsError, match="stop='halt' needs the dynamics"):
        obs = ExtrapolationObserver(atoms, reference, out=None, stop="halt",
                                    novel_fraction=0.0, patience=1)
        atoms.positions[0] += 1.2  # a defect: some atoms novel
        obs()
