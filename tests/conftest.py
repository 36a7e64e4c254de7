"""Shared fixtures: small noisy copper structures built with ASE."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = ROOT / "sample_data"
ARTIFACTS = Path(os.environ.get("QUESTS_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def main_dependency_versions(dist: str = "quests-dashboard") -> dict[str, str]:
    """Installed version of every requirement of ``dist`` (its extras included), by name."""
    names = set()
    for req in metadata.requires(dist) or []:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        if match:
            names.add(match.group(0))
    versions = {}
    for name in sorted(names, key=str.lower):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def pytest_report_header(config):
    """The versions this run resolved (compare with .ci/constraints.txt, the last green set)."""
    try:
        versions = main_dependency_versions()
    except metadata.PackageNotFoundError:
        return "quests-dashboard is not installed: dependency versions unknown"
    pairs = ", ".join(f"{name} {version}" for name, version in versions.items()
                      if version != "not installed")
    return f"dependencies ({platform.machine()}): {pairs}"


def noisy_cu(reps=(3, 3, 3), noise=0.05, seed=0, cubic=True):
    """FCC Cu supercell with Gaussian thermal-like noise on the positions."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=cubic) * reps
    atoms.rattle(noise, seed=seed)
    return atoms


def cu_frames(n: int, reps=(2, 2, 2)):
    """``n`` frames of a 32-atom Cu cell, each rattled with its own seed."""
    return [noisy_cu(reps, noise=0.05, seed=i) for i in range(n)]


def thermalize(atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_K`` (ASE >= 3.29 names it
    ``thermalize_momenta`` and deprecates ``MaxwellBoltzmannDistribution``)."""
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ASE < 3.29
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)


@pytest.fixture
def cu_noisy():
    return noisy_cu()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never write into the user's descriptor cache."""
    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "quests-cache"))


def use_private_cache(mp: pytest.MonkeyPatch, folder: Path) -> Path:
    """Point the descriptor cache at ``folder`` through ``mp``: ``$QUESTS_CACHE_DIR`` and
    ``dashboard.compute``'s process-wide cache, dropped so that its next use opens
    ``folder``. The one place the tests reset that cache."""
    import dashboard.compute as compute

    mp.setenv("QUESTS_CACHE_DIR", str(folder))
    mp.setattr(compute, "_CACHE", None)
    return folder


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """A descriptor cache of the module's own (a fresh folder) for all its tests; yields the
    folder. Modules whose every test needs it say
    ``pytestmark = pytest.mark.usefixtures("private_cache")``."""
    with pytest.MonkeyPatch.context() as mp:
        yield use_private_cache(mp, tmp_path_factory.mktemp("cache"))


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A descriptor cache of the test's own: ``tmp_path / "cache"`` (returned)."""
    return use_private_cache(monkeypatch, tmp_path / "cache")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The dashboard's synthetic Cu files (``dashboard._testing.make_sample_dir``: solid,
    melt, failed_traj and labelled ``.extxyz``, 108 atoms a frame) in a folder of the
    module's own: name -> path."""
    from dashboard._testing import make_sample_dir

    return make_sample_dir(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def specs(sample):
    """``specs((name, role), (name, role, index), ...)``: the dashboard's ``FileSpec`` of
    each file of :func:`sample` named, with its role (and frame selection, all frames by
    default)."""
    from dashboard.state import FileSpec

    def make(*entries: tuple[str, ...]) -> list:
        return [FileSpec(str(sample[name]), name, role, **({"index": index[0]} if index else {}))
                for name, role, *index in entries]

    return make


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (the browser tests' modules skip or
    fail before this is used when it is missing)."""
    from playwright.sync_api import sync_playwright
    from test_browser_e2e import CHROMIUM, FLAGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def stop_process_group(proc) -> None:
    """Stop a process a test started with ``start_new_session=True`` and every process it
    started (its process group): SIGTERM, then SIGKILL after 15 s."""
    import contextlib
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture
def kernel_dtypes(monkeypatch):
    """The dtype of every kernel call, in order: a spy on the kernel entry
    (:func:`quests_core.kernels.log_kernel_sums`, which every call of the Numba engine
    reaches), for the tests that a precision setting reaches the engine."""
    from quests_core import kernels

    seen: list[str] = []
    kernel = kernels.log_kernel_sums

    def recording(y, x, h, *, precision=None, **kw):
        seen.append(kernels._resolve_dtype(y, x, precision).__name__)
        return kernel(y, x, h, precision=precision, **kw)

    monkeypatch.setattr(kernels, "log_kernel_sums", recording)
    return seen
