"""Descriptor files with their layout record (quests_core.descriptor_files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk

import quests_core as qc
from quests_core import QuestsError
from quests_core.descriptor_files import (
    OLD_LAYOUT,
    load_descriptors,
    read_layout,
    save_descriptors,
    sidecar_path,
)
from quests_core.descriptors import DESCRIPTOR_VERSION, LAYOUT, block_columns


def alloy(seed: int, noise: float = 0.1, reps=(3, 3, 3)):
    """fcc Cu with ~30 % Au at random sites and Gaussian noise on the positions."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * reps
    atoms.positions += rng.normal(0.0, noise, atoms.positions.shape)
    atoms.set_chemical_symbols(np.where(rng.random(len(atoms)) < 0.3, "Au", "Cu"))
    return atoms


@pytest.fixture(scope="module")
def x_alloy():
    return qc.descriptors(alloy(0), k=8, cutoff=4.5, species=["Au", "Cu"])


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_round_trip_keeps_values_and_records_the_layout(tmp_path, x_alloy, suffix):
    path = tmp_path / f"train{suffix}"
    assert save_descriptors(path, x_alloy, k=8, cutoff=4.5, species=["Cu", "Au"],
                            source="train.xyz") == path
    back = load_descriptors(path, k=8, cutoff=4.5, species=("Au", "Cu"))
    np.testing.assert_array_equal(back, x_alloy)
    assert back.dtype == np.float64 and back.shape == (108, 45)
    assert read_layout(path) == {
        "format": "quests-descriptors", "descriptor_version": DESCRIPTOR_VERSION,
        "block_order": "reference: [X1_all, X1_s..., X2_all, X2_s...]",
        "k": 8, "cutoff": 4.5, "species": ["Au", "Cu"], "width": 45, "source": "train.xyz",
    }
    assert sidecar_path(path).is_file() == (suffix == ".npy")
    if suffix == ".npy":  # the bare array is readable by anyone
        np.testing.assert_array_equal(np.load(path), x_alloy)
    else:
        with np.load(path) as data:
            assert sorted(data.files) == ["cutoff", "k", "layout", "x"]
    assert LAYOUT == read_layout(path)["block_order"]


def test_float32_round_trip(tmp_path, x_alloy):
    save_descriptors(tmp_path / "a.npz", x_alloy.astype(np.float32), k=8, cutoff=4.5,
                     species="Au,Cu")
    back = load_descriptors(tmp_path / "a.npz", k=8, cutoff=4.5, species="Cu Au")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, x_alloy.astype(np.float32))


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_file_for_other_species_is_refused_naming_both(tmp_path, suffix):
    atoms = alloy(1)
    atoms.set_chemical_symbols(["Cu"] * len(atoms))
    path = tmp_path / f"cu{suffix}"
    save_descriptors(path, qc.descriptors(atoms, k=8, cutoff=4.5, species=["Cu"]), k=8,
                     cutoff=4.5, species=["Cu"])
    with pytest.raises(QuestsError) as err:
        load_descriptors(path, k=8, cutoff=4.5, species=["Au", "Cu"])
    assert str(err.value) == (
        f"{path}: descriptor layout differs: species ['Cu'] in the file, ['Au', 'Cu'] asked; "
        "width 15 in the file, 45 asked"
    )
    # a single-component descriptor does not depend on the species
    assert load_descriptors(path, k=8, cutoff=4.5, species=None).shape == (108, 15)


def test_file_for_other_k_and_cutoff_is_refused(tmp_path, x_alloy):
    path = tmp_path / "a.npz"
    save_descriptors(path, x_alloy, k=8, cutoff=4.5, species=["Au", "Cu"])
    with pytest.raises(QuestsError) as err:
        load_descriptors(path, k=16, cutoff=5.0, species=["Au", "Cu"])
    assert str(err.value) == (
        f"{path}: descriptor layout differs: k 8 in the file, 16 asked; "
        "cutoff 4.5 in the file, 5 asked; width 45 in the file, 93 asked"
    )


def old_layout(x, k, n_species):
    """The descriptor-version-1 column order: [X_all, X_s...], each block [X1, X2]."""
    return np.concatenate(
        [x[:, c] for b in range(n_species + 1) for c in block_columns(k, n_species, b)], axis=1
    )


def test_file_with_the_old_layout_record_is_refused(tmp_path, x_alloy):
    path = tmp_path / "old.npz"
    record = {"format": "quests-descriptors", "descriptor_version": "1",
              "block_order": OLD_LAYOUT, "k": 8, "cutoff": 4.5, "species": ["Au", "Cu"],
              "width": 45}
    np.savez(path, x=old_layout(x_alloy, 8, 2), layout=np.array(json.dumps(record)), k=8,
             cutoff=4.5)
    with pytest.raises(QuestsError) as err:
        load_descriptors(path, k=8, cutoff=4.5, species=["Au", "Cu"])
    assert str(err.value) == (
        f"{path}: descriptor layout differs: block order {OLD_LAYOUT!r} in the file, "
        f"{LAYOUT!r} expected; descriptor version '1' in the file, {DESCRIPTOR_VERSION!r} "
        "expected"
    )


def test_earlier_npz_format_single_component_read_multicomponent_refused(tmp_path, x_alloy):
    def old_save(path, x, k, cutoff):  # the format of the earlier CLI's descriptor files
        np.savez(path, descriptors=x, k=k, cutoff=cutoff)

    single = x_alloy[:, np.r_[block_columns(8, 2, 0)[0], block_columns(8, 2, 0)[1]]]
    np.testing.assert_array_equal(single, qc.descriptors(alloy(0), k=8, cutoff=4.5))
    old_save(tmp_path / "single.npz", single, k=8, cutoff=4.5)
    np.testing.assert_array_equal(load_descriptors(tmp_path / "single.npz", k=8, cutoff=4.5),
                                  single)
    with pytest.raises(QuestsError, match=r"single.npz: descriptor layout differs: k 8 in "):
        load_descriptors(tmp_path / "single.npz", k=12, cutoff=4.5)
    old_save(tmp_path / "multi.npz", old_layout(x_alloy, 8, 2), k=8, cutoff=4.5)
    with pytest.raises(QuestsError, match=r"multi.npz: descriptor layout differs: no layout "
                                          r"record \(written before descriptor version 2"):
        load_descriptors(tmp_path / "multi.npz", k=8, cutoff=4.5, species=["Au", "Cu"])


def test_plain_npy_is_checked_by_width(tmp_path, x_alloy):
    path = tmp_path / "plain.npy"
    np.save(path, x_alloy)
    np.testing.assert_array_equal(load_descriptors(path, k=8, cutoff=4.5, species=["Au", "Cu"]),
                                  x_alloy)
    with pytest.raises(QuestsError) as err:
        load_descriptors(path, k=8, cutoff=4.5, species=["Ag", "Au", "Cu"])
    assert str(err.value) == (f"{path}: descriptor layout differs: width 45 in the file, 60 "
                              "asked (k=8, species ['Ag', 'Au', 'Cu'])")


def test_sidecar_is_checked_against_the_array(tmp_path, x_alloy):
    path = tmp_path / "a.npy"
    save_descriptors(path, x_alloy, k=8, cutoff=4.5, species=["Au", "Cu"])
    np.save(path, x_alloy[:, :15])  # array replaced, sidecar left behind
    with pytest.raises(QuestsError, match=r"a.npy: descriptor layout differs: width 15 in the "
                                          r"file, 45 asked"):
        load_descriptors(path, k=8, cutoff=4.5, species=["Au", "Cu"])
    sidecar_path(path).write_text("{not json")
    with pytest.raises(QuestsError, match=r"a.npy.layout.json: layout record is not JSON"):
        load_descriptors(path, k=8, cutoff=4.5, species=["Au", "Cu"])


@pytest.mark.parametrize(
    ("name", "write", "match"),
    [
        ("missing.npz", None, "missing.npz: file not found"),
        ("a.txt", lambda p: p.write_text("1"), "a.txt: a descriptor file ends with .npz or .npy"),
        ("bad.npz", lambda p: p.write_bytes(b"junk"), "bad.npz: cannot read descriptor file"),
        ("noarr.npz", lambda p: np.savez(p, y=np.zeros((2, 15))), "no 'x' or 'descriptors'"),
        ("nan.npy", lambda p: np.save(p, np.full((2, 15), np.nan)), "NaN or infinite"),
        ("int.npy", lambda p: np.save(p, np.zeros((2, 15), int)), "dtype int64, expected float"),
        ("flat.npy", lambda p: np.save(p, np.zeros(15)), r"shape \(15,\), expected \(n, d\)"),
        ("obj.npy", lambda p: np.save(p, np.array([None, 1]), allow_pickle=True),
         "obj.npy: object arrays are not descriptor data"),
    ],
)
def test_bad_files(tmp_path, name, write, match):
    path = tmp_path / name
    if write is not None:
        write(path)
    with pytest.raises(QuestsError, match=match):
        load_descriptors(path, k=8, cutoff=4.5)


def test_save_refuses_a_width_that_does_not_match(tmp_path, x_alloy):
    with pytest.raises(QuestsError, match=r"x.npz: descriptor width 45 does not match k=8, "
                                          r"species \[\] \(width 15\)"):
        save_descriptors(tmp_path / "x.npz", x_alloy, k=8, cutoff=4.5)
    assert not (tmp_path / "x.npz").exists()


def test_reference_package_descriptors_as_plain_npy_give_our_dh(tmp_path):
    """Descriptors written by the reference package load in its layout: same dH as ours."""
    quests_descriptor = pytest.importorskip("quests.descriptor")
    train, test = alloy(3), alloy(4, noise=0.15)
    species, h = ["Au", "Cu"], 0.015
    theirs = quests_descriptor.get_descriptors_multicomponent([train], k=8, cutoff=4.5,
                                                              species=species)
    np.save(tmp_path / "ref.npy", theirs)
    x_ref = load_descriptors(tmp_path / "ref.npy", k=8, cutoff=4.5, species=species)
    y = qc.descriptors(test, k=8, cutoff=4.5, species=species)
    dh_file = qc.delta_entropy(y, x_ref, h=h)
    dh_ours = qc.delta_entropy(y, qc.descriptors(train, k=8, cutoff=4.5, species=species), h=h)
    np.testing.assert_allclose(dh_file, dh_ours, rtol=1e-10, atol=1e-9)
    assert np.ptp(dh_ours) > 0.1
    # the earlier layout would have given another dH without a word
    dh_old = qc.delta_entropy(old_layout(y, 8, 2), x_ref, h=h)
    assert np.max(np.abs(dh_old - dh_ours)) > 1.0


def test_write_layout_for_a_streamed_npy(tmp_path, x_alloy):
    from numpy.lib.format import open_memmap

    from quests_core.descriptor_files import write_layout

    path = tmp_path / "streamed.npy"
    out = open_memmap(path, mode="w+", dtype=np.float64, shape=x_alloy.shape)
    out[:50], out[50:] = x_alloy[:50], x_alloy[50:]
    out.flush()
    del out
    assert write_layout(path, k=8, cutoff=4.5, species=["Au", "Cu"]) == sidecar_path(path)
    assert read_layout(path)["species"] == ["Au", "Cu"]
    np.testing.assert_array_equal(load_descriptors(path, k=8, cutoff=4.5, species=["Au", "Cu"]),
                                  x_alloy)
    with pytest.raises(QuestsError, match=r"streamed.npy: descriptor array has shape \(108, 45\), "
                                          r"expected width 15 for k=8, species \[\]"):
        write_layout(path, k=8, cutoff=4.5)
    with pytest.raises(QuestsError, match="a layout sidecar belongs to a .npy file"):
        write_layout(tmp_path / "a.npz", k=8, cutoff=4.5)
