"""Shared fixtures: small noisy copper structures built with ASE."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = ROOT / "sample_data"
ARTIFACTS = Path(os.environ.get("QUESTS_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def noisy_cu(reps=(3, 3, 3), noise=0.05, seed=0, cubic=True):
    """FCC Cu supercell with Gaussian thermal-like noise on the positions."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=cubic) * reps
    atoms.rattle(noise, seed=seed)
    return atoms


def cu_frames(n: int, reps=(2, 2, 2)):
    """``n`` frames of a 32-atom Cu cell, each rattled with its own seed."""
    return [noisy_cu(reps, noise=0.05, seed=i) for i in range(n)]


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
