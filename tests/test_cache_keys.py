"""One cache key for the descriptors of a file: the CLI path (``file_descriptors``) and the
dashboard path (``DescriptorCache.get_or_compute`` of a ``Dataset.from_files`` read) share
entries; other parameters, selections and edited structures get other keys."""

from __future__ import annotations

import os

import numpy as np
import pytest
from ase.io import write
from conftest import cu_frames

import quests_core as qc
from quests_core.cache import DescriptorCache
from quests_core.cache_keys import descriptor_key, file_descriptor_key, structures_digest
from quests_core.dataset import Dataset
from quests_core.pipeline import dataset_key, file_descriptors

K, CUTOFF = 6, 4.0


class Counting:
    """``quests_core.descriptors`` with the dashboard's signature, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, structures, k, cutoff, species=None):
        self.calls += 1
        return qc.descriptors(structures, k=k, cutoff=cutoff, species=species)


@pytest.fixture()
def traj(tmp_path):
    path = tmp_path / "traj.extxyz"
    write(path, cu_frames(4))
    return path


def dashboard_read(path, index=":"):
    """How dashboard.compute loads a file (then sets the label of the frames)."""
    ds = Dataset.from_files(str(path), index=index, name="traj", type_map=None,
                            timestep_fs=None)
    ds.frames["label"] = "md"
    return ds


def test_cli_entry_is_a_hit_for_the_dashboard(tmp_path, traj):
    cache = DescriptorCache(tmp_path / "c")
    cli = Counting()
    res = file_descriptors(traj, k=K, cutoff=CUTOFF, compute=cli, cache=cache, chunk_atoms=64)
    assert cli.calls == 2 and not res.from_cache
    dash = Counting()
    x = cache.get_or_compute(dashboard_read(traj), k=K, cutoff=CUTOFF, compute=dash)
    assert dash.calls == 0 and cache.hits == 1
    np.testing.assert_array_equal(x, res.descriptors)
    np.testing.assert_allclose(x, qc.descriptors(cu_frames(4), k=K, cutoff=CUTOFF))
    assert cache.entries() == [res.key]


def test_dashboard_entry_is_a_hit_for_the_cli(tmp_path, traj):
    cache = DescriptorCache(tmp_path / "c")
    dash = Counting()
    x = cache.get_or_compute(dashboard_read(traj, "1:"), k=K, cutoff=CUTOFF, compute=dash)
    assert dash.calls == 1 and x.shape[0] == 3 * 32
    cli = Counting()
    res = file_descriptors(traj, index="1:", k=K, cutoff=CUTOFF, compute=cli, cache=cache)
    assert res.from_cache and cli.calls == 0
    np.testing.assert_array_equal(res.descriptors, x)
    # the per-frame table stored by the dashboard path is the CLI's own
    assert list(res.dataset.frames["frame"]) == [1, 2, 3]
    assert list(res.dataset.frames["n_atoms"]) == [32, 32, 32]
    # and a lazy read of the same selection is the same entry too
    lazy = Dataset.from_files(traj, index="1:", lazy=True)
    assert cache.get_or_compute(lazy, k=K, cutoff=CUTOFF, compute=dash) is not None
    assert dash.calls == 1 and len(cache.entries()) == 1


def test_the_dashboard_call_itself_hits_the_cli_entry(tmp_path, traj, monkeypatch):
    """dashboard.compute's descriptor function (unchanged) reads what the CLI wrote."""
    compute = pytest.importorskip("dashboard.compute")
    cache = DescriptorCache(tmp_path / "c")
    res = file_descriptors(traj, k=K, cutoff=CUTOFF, cache=cache)
    monkeypatch.setattr(compute, "_CACHE", cache)
    ds = dashboard_read(traj)
    from quests_core.settings import Settings

    x = compute.file_descriptors(ds, Settings(k=K, cutoff=CUTOFF), compute.Progress(None, None))
    assert (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(x, res.descriptors)


def test_keys_differ_by_selection_type_map_and_parameters(traj):
    base = file_descriptor_key(traj, ":", "extxyz", None, K, CUTOFF)
    others = [
        file_descriptor_key(traj, "1:", "extxyz", None, K, CUTOFF),
        file_descriptor_key(traj, ":", "extxyz", {1: "Cu"}, K, CUTOFF),
        file_descriptor_key(traj, ":", "extxyz", None, K + 1, CUTOFF),
        file_descriptor_key(traj, ":", "extxyz", None, K, CUTOFF + 0.5),
        file_descriptor_key(traj, ":", "extxyz", None, K, CUTOFF, ["Cu"]),
        file_descriptor_key(traj, ":", "extxyz", None, K, CUTOFF, dtype=np.float32),
    ]
    assert len({base[1]} | {key for _, key in others}) == 7
    assert len({base[0]} | {fkey for fkey, _ in others[:2]}) == 3
    # species go through settings.normalize_species: text, order and repeats do not matter
    assert (file_descriptor_key(traj, ":", "extxyz", None, K, CUTOFF, "Cu, Au")
            == file_descriptor_key(traj, ":", "extxyz", None, K, CUTOFF, ["Au", "Cu", "Cu"]))
    # the dataset path resolves index text and format like the CLI path
    assert dataset_key(Dataset.from_files(traj), K, CUTOFF) == base
    assert dataset_key(Dataset.from_files(traj, index="1::1"), K, CUTOFF) == others[0]
    assert dataset_key(Dataset.from_files(traj, format="extxyz"), K, CUTOFF) == base
    assert dataset_key(Dataset.from_files(traj), K + 1, CUTOFF) == others[2]


def test_edited_subset_or_changed_datasets_are_keyed_by_their_structures(tmp_path, traj):
    frames = cu_frames(4)
    ds = Dataset.from_files(traj)
    assert ds.file_source() is not None and ds.file_source().path == str(traj)
    # a subset, a concatenation, a dataset of structures: keyed by their content
    for other in (ds.subset([0, 1]), qc_concat(ds), Dataset.from_structures(frames)):
        fkey, key = dataset_key(other, K, CUTOFF)
        assert fkey is None
        assert key == descriptor_key(structures_digest(other.structures), K, CUTOFF)
    # labels do not matter, positions do
    ds.frames["label"] = "x"
    assert ds.file_source() is not None
    ds.structure(2).positions[0, 0] += 0.1
    assert ds.file_source() is None
    cache = DescriptorCache(tmp_path / "c")
    counting = Counting()
    x = cache.get_or_compute(ds, k=K, cutoff=CUTOFF, compute=counting)
    assert counting.calls == 1
    edited = [a.copy() for a in frames]
    edited[2].positions[0, 0] += 0.1
    np.testing.assert_allclose(x, qc.descriptors(edited, k=K, cutoff=CUTOFF))
    # a file changed after it was read into memory is no longer its source
    ds2 = Dataset.from_files(traj)
    write(traj, cu_frames(5))
    os.utime(traj, ns=(1, 1))
    assert ds2.file_source() is None
    # a lazy read streams the file, so it stays keyed by the file's (new) content
    assert Dataset.from_files(traj, lazy=True).file_source() is not None


def qc_concat(ds):
    from quests_core.dataset import concat

    return concat([ds, ds])
