"""The committed copper MD sample data: files, manifest, and the physics they claim.

Every check reads the committed files under ``sample_data/`` (made by
``sample_data/generate.py``); nothing is regenerated here.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

DATA = Path(__file__).resolve().parents[1] / "sample_data"
FILES = (
    "cu_solid_400K.extxyz",
    "cu_melt.extxyz",
    "cu_quench.extxyz",
    "cu_dataset_labelled.extxyz",
    "cu_generations.extxyz",
    "cu_failed_simulation.extxyz",
    "cu_forces_two_models.extxyz",
)
MAX_TOTAL_BYTES = 30 * 1024 * 1024


@cache
def frames(name: str) -> list:
    return read(DATA / name, index=":", format="extxyz")


@cache
def manifest() -> dict:
    return json.loads((DATA / "manifest.json").read_text())


def info(name: str, key: str) -> np.ndarray:
    return np.array([atoms.info[key] for atoms in frames(name)])


def test_every_file_is_committed_and_listed_in_the_manifest():
    listed = [entry["name"] for entry in manifest()["files"]]
    assert sorted(listed) == sorted(FILES)
    for name in FILES:
        assert (DATA / name).is_file(), name


@pytest.mark.parametrize("name", FILES)
def test_manifest_matches_file(name):
    entry = next(e for e in manifest()["files"] if e["name"] == name)
    path = DATA / name
    assert entry["size_bytes"] == path.stat().st_size
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    structures = frames(name)
    assert entry["n_structures"] == len(structures)
    assert entry["n_atoms_total"] == sum(len(a) for a in structures)


def test_total_size_is_within_budget():
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total <= MAX_TOTAL_BYTES


@pytest.mark.parametrize("name", FILES)
def test_positions_are_finite_and_everything_is_copper(name):
    for atoms in frames(name):
        assert np.isfinite(atoms.positions).all()
        assert set(atoms.get_chemical_symbols()) == {"Cu"}
        assert "label" in atoms.info and atoms.info["label"] != ""


def test_solid_is_fcc_near_400k():
    structures = frames("cu_solid_400K.extxyz")
    assert len(structures) >= 8
    assert set(info("cu_solid_400K.extxyz", "label")) == {"fcc_400K"}
    temps = info("cu_solid_400K.extxyz", "temperature")
    assert 360 < temps.mean() < 440
    assert np.all(np.diff(info("cu_solid_400K.extxyz", "time")) > 0)
    # per-atom EMT potential energy of a 400 K crystal: about 3/2 k_B T above the 0 K minimum
    epot = info("cu_solid_400K.extxyz", "epot")
    assert np.all((epot > 0.02) & (epot < 0.09))
    for atoms in structures:
        assert atoms.get_forces().shape == (len(atoms), 3)
        assert atoms.get_potential_energy() / len(atoms) == pytest.approx(
            atoms.info["epot"], abs=1e-5
        )


def test_melt_is_liquid_and_above_the_solid():
    assert set(info("cu_melt.extxyz", "label")) == {"liquid"}
    assert info("cu_melt.extxyz", "temperature").mean() > 1400
    assert info("cu_melt.extxyz", "frac_fcc_hcp").max() < 0.1
    assert len(frames("cu_melt.extxyz")[0]) == len(frames("cu_solid_400K.extxyz")[0])
    gap = info("cu_melt.extxyz", "epot").mean() - info("cu_solid_400K.extxyz", "epot").mean()
    assert gap > 0.2  # latent heat plus heating from 400 K to the melt


def test_quench_crystallises():
    name = "cu_quench.extxyz"
    structures = frames(name)
    assert len(structures) >= 50
    assert set(info(name, "label")) == {"quench"}
    assert np.all(np.diff(info(name, "time")) > 0)
    frac = info(name, "frac_fcc_hcp")
    # the stored per-atom CNA class (0 fcc, 1 hcp, 2 other) agrees with the frame summary
    for atoms, f in zip(structures, frac, strict=True):
        assert np.mean(atoms.arrays["cna"] < 2) == pytest.approx(f, abs=1e-4)
    assert frac[0] < 0.1 and frac[-1] > 0.5
    epot = info(name, "epot")
    assert epot[1:6].mean() - epot[-5:].mean() > 0.04
    facts = manifest()["facts"]["quench"]
    first = int(np.argmax(frac >= 0.5))
    assert facts["crystallisation_frame"] == first
    assert first > 5  # it happens during the run, not at the start
    temps = info(name, "temperature")[5:]
    assert abs(temps.mean() - facts["quench_temperature_K"]) < 50


def test_labelled_dataset_subsets():
    name = "cu_dataset_labelled.extxyz"
    labels = info(name, "label")
    expected = {"fcc_300K", "fcc_600K", "fcc_900K", "bcc", "hcp", "liquid", "surface",
                "vacancy", "strained_tensile", "strained_compressive"}
    assert set(labels) == expected
    for label in expected:
        assert np.sum(labels == label) >= 3
    for atoms in frames(name):
        assert 100 <= len(atoms) <= 500
        assert atoms.get_forces().shape == (len(atoms), 3)
        assert np.isfinite(atoms.get_potential_energy())
        expected_pbc = [True, True, False] if atoms.info["label"] == "surface" else [True] * 3
        assert atoms.pbc.tolist() == expected_pbc
    surface = next(a for a in frames(name) if a.info["label"] == "surface")
    z = surface.positions[:, 2]
    assert surface.cell[2, 2] - (z.max() - z.min()) > 15.0  # vacuum on both sides
    perfect = next(a for a in frames(name) if a.info["label"] == "fcc_300K")
    vacancy = next(a for a in frames(name) if a.info["label"] == "vacancy")
    assert len(perfect) - len(vacancy) == 2


def test_generations_get_harder_and_repeat_earlier_structures():
    name = "cu_generations.extxyz"
    structures = frames(name)
    gens = info(name, "generation")
    assert set(gens) == {0, 1, 2, 3, 4}
    assert np.all(np.diff(gens) >= 0)
    origin = info(name, "origin")
    new = origin == "new"
    target = info(name, "target_temperature")
    means = [target[new & (gens == g)].mean() for g in range(5)]
    assert np.all(np.diff(means) > 0)
    vacancies = [info(name, "n_vacancies")[new & (gens == g)].max() for g in range(5)]
    assert vacancies[0] == 0 and vacancies[4] > vacancies[2] > 0
    repeats = np.flatnonzero(origin == "repeat")
    assert len(repeats) >= 4
    for i in repeats:
        source = structures[i].info["repeated_from"]
        assert source < gens[i]
        match = [j for j in range(i) if gens[j] == source and new[j]
                 and len(structures[j]) == len(structures[i])
                 and np.array_equal(structures[j].positions, structures[i].positions)]
        assert match, f"repeat {i} has no identical structure in generation {source}"


def test_failed_simulation_blows_up_late():
    name = "cu_failed_simulation.extxyz"
    assert len(frames(name)) >= 30
    assert set(info(name, "label")) == {"failed"}
    temps = info(name, "temperature")
    facts = manifest()["facts"]["failed"]
    blowup = facts["blowup_frame"]
    assert blowup == int(np.argmax(temps > 1.0e4))
    assert blowup >= 20
    early = temps[1:6].mean()
    assert early < 1000
    assert temps[-1] > 10 * early


def test_bundled_chunk_store_matches_a_fresh_computation():
    """cu_failed_simulation_store/: dH of the failed run against the 400 K solid, as the
    chunked pipeline wrote it, equals dH computed now in memory; it flags the blow-up."""
    import quests_core as qc
    from quests_core.chunk_store import ChunkStore

    store = ChunkStore(DATA / "cu_failed_simulation_store")
    assert store.complete and len(store.chunk_ids) == 7
    params = store.params
    assert params["files"][0]["path"] == "../cu_failed_simulation.extxyz"
    assert (params["k"], params["cutoff"], params["h"]) == (32, 5.0, 0.015)
    assert params["files"][0]["sha256"] == hashlib.sha256(
        (DATA / "cu_failed_simulation.extxyz").read_bytes()).hexdigest()
    y = qc.descriptors(frames("cu_failed_simulation.extxyz"))
    x = qc.descriptors(frames("cu_solid_400K.extxyz"))
    np.testing.assert_allclose(store.delta_entropy(), qc.delta_entropy(y, x, 0.015),
                               rtol=1e-10, atol=1e-10)
    table = store.frames()
    blowup = manifest()["facts"]["failed"]["blowup_frame"]
    assert table["frac_novel"].iloc[:10].max() < 0.05  # equilibrated at 400-460 K: known
    assert (table["frac_novel"].iloc[blowup:] > 0.9).all()  # exploded: nothing is known
    assert table["max_dH"].iloc[blowup:].min() > 10 * max(table["max_dH"].iloc[:10].max(), 1.0)


def test_two_models_forces_differ_more_off_equilibrium():
    name = "cu_forces_two_models.extxyz"
    labels = info(name, "label")
    assert set(labels) == {"train", "test"}
    errors = []
    for atoms in frames(name):
        f_emt, f_model = atoms.arrays["forces_emt"], atoms.arrays["forces_model"]
        assert f_emt.shape == f_model.shape == (len(atoms), 3)
        assert not np.allclose(f_emt, f_model, atol=1e-3)
        assert np.corrcoef(f_emt.ravel(), f_model.ravel())[0, 1] > 0.8  # same physics
        errors.append(np.linalg.norm(f_emt - f_model, axis=1).mean())
    errors = np.array(errors)
    assert errors[labels == "test"].mean() > errors[labels == "train"].mean()
