"""Every CLI command that computes entropy runs its kernels at ``--precision``.

A spy on the kernel entry (:func:`quests_core.kernels.log_kernel_sums`, which every
backend call of the Numba engine reaches) records the dtype each call works in; each
command runs in-process through ``main([...])`` on small slices of the bundled data,
once with the default precision and once with ``--precision float32``. Before issue
20, ``compress``, ``active-learning`` and ``phase-entropy`` accepted the option and ran
in float64.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from quests_core.cli import build_parser, main

DATA = Path(__file__).resolve().parents[1] / "sample_data"
SOLID = str(DATA / "cu_solid_400K.extxyz")
MELT = str(DATA / "cu_melt.extxyz")
FAILED = str(DATA / "cu_failed_simulation.extxyz")
QUENCH = str(DATA / "cu_quench.extxyz")
LABELLED = str(DATA / "cu_dataset_labelled.extxyz")
GENERATIONS = str(DATA / "cu_generations.extxyz")
FORCES = str(DATA / "cu_forces_two_models.extxyz")

#: every command whose result comes from the entropy kernels, on a few frames
KERNEL_COMMANDS = {
    "entropy": ["entropy", SOLID, "--index", ":2"],
    "dh": ["dh", FAILED, "-r", SOLID, "--index", ":1", "--reference-index", ":2"],
    "overlap": ["overlap", SOLID, MELT, "--index", ":1"],
    "learning-curve": ["learning-curve", SOLID, "--index", ":1", "--repeats", "1"],
    "trajectory": ["trajectory", FAILED, "-r", SOLID, "--index", ":2",
                   "--reference-index", ":2"],
    "nucleation": ["nucleation", QUENCH, "-r", SOLID, "--index", "30:32",
                   "--reference-index", ":2", "--frames", "all"],
    "compress": ["compress", LABELLED, "--index", ":10", "--fraction", "0.3", "--compare",
                 "--seeds", "1"],
    "active-learning": ["active-learning", GENERATIONS, "--index", ":8"],
    "uq": ["uq", FORCES, "-r", SOLID, "--index", ":3", "--reference-index", ":1",
           "--forces", "forces_model", "forces_emt"],
    "phase-entropy": ["phase-entropy", SOLID, MELT, "--index", ":1", "--max-envs", "400"],
}
#: commands with ``--precision`` that are not run here, and why
NOT_RUN = {
    "descriptors": "computes descriptors only: no kernel call, the option cannot matter",
    "report": "runs the dashboard's pipeline, whose precision tests/test_front_ends_agree* "
              "check",
    "watch": "follows a growing file; tests/test_watch.py",
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One descriptor cache for the module: the second run of a command reads it."""
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("precision-cache")
        mp.setenv("QUESTS_CACHE_DIR", str(folder))
        yield folder


def test_every_command_with_the_option_is_checked():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    with_option = {name for name, p in sub.choices.items()
                   if any(a.dest == "precision" for a in p._actions)}
    assert with_option == set(KERNEL_COMMANDS) | set(NOT_RUN)


@pytest.mark.parametrize("command", list(KERNEL_COMMANDS))
def test_precision_reaches_every_kernel_call(command, kernel_dtypes, cache, tmp_path, capsys,
                                             monkeypatch):
    spy = kernel_dtypes
    monkeypatch.chdir(tmp_path)
    argv = [*KERNEL_COMMANDS[command], "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    assert spy and set(spy) == {"float64"}, spy
    n_default = len(spy)
    spy.clear()
    assert main([*argv, "--precision", "float32"]) == 0, capsys.readouterr().err
    assert set(spy) == {"float32"}, f"{command}: kernel dtypes {spy}"
    assert len(spy) == n_default  # the same calls, in the other precision
