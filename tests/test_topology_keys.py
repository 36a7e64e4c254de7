"""The topology of an MD trajectory is part of every cache key of its reads.

The elements of an XTC's atoms come from its topology file: the same XTC read
with a Cu topology and with a Ni one are two different datasets, so the file
keys (:func:`quests_core.cache_keys.frames_key`), the descriptor cache
(CLI path :func:`quests_core.pipeline.file_descriptors` and dashboard path
:meth:`DescriptorCache.get_or_compute` of a :class:`Dataset`) and the chunk
store parameters must tell them apart, while a topology found next to the
trajectory keys like the same file passed explicitly. Keys of reads without a
topology are those computed before the topology entered the key (values
recorded from the code before the change).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from quests_core.cache import DescriptorCache
from quests_core.cache_keys import file_descriptor_key, frames_key
from quests_core.chunk_store import ChunkStore
from quests_core.chunked import chunked_delta_entropy, plan_chunks
from quests_core.dataset import Dataset, FileSpec
from quests_core.descriptors import block_columns, descriptors
from quests_core.errors import QuestsError
from quests_core.io_mdanalysis import topology_path
from quests_core.pipeline import dataset_key, file_descriptors

mda = pytest.importorskip("MDAnalysis")

K, RC = 8, 4.0
SPECIES = ("Cu", "Ni")


def _universe(n: int, name: str):
    u = mda.Universe.empty(n, trajectory=True)
    u.add_TopologyAttr("names", [name] * n)
    u.add_TopologyAttr("types", [name] * n)
    u.add_TopologyAttr("elements", [name] * n)
    u.add_TopologyAttr("resnames", ["MET"])
    u.add_TopologyAttr("resids", [1])
    return u


@pytest.fixture(scope="module")
def md(tmp_path_factory):
    """``run.xtc`` (3 frames of 32 rattled fcc atoms) with ``cu.pdb`` and ``ni.pdb``
    (same atoms, elements Cu or Ni) in ``top/``, and a copy ``near/run.xtc`` with
    ``near/run.pdb`` (the Cu topology) next to it."""
    d = tmp_path_factory.mktemp("topo")
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    frames = []
    for i in range(3):
        atoms = base.copy()
        atoms.rattle(0.05, seed=i)
        atoms.wrap()
        frames.append(atoms)
    n = len(base)
    u = _universe(n, "Cu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mda.Writer(str(d / "run.xtc"), n) as w:
            for atoms in frames:
                u.atoms.positions = atoms.positions
                u.dimensions = list(atoms.cell.cellpar())
                w.write(u.atoms)
        (d / "top").mkdir()
        for name in SPECIES:
            t = _universe(n, name)
            t.atoms.positions = base.positions
            t.dimensions = list(base.cell.cellpar())
            t.atoms.write(str(d / "top" / f"{name.lower()}.pdb"))
    (d / "near").mkdir()
    shutil.copy(d / "run.xtc", d / "near" / "run.xtc")
    shutil.copy(d / "top" / "cu.pdb", d / "near" / "run.pdb")
    return {
        "xtc": str(d / "run.xtc"),
        "cu": str(d / "top" / "cu.pdb"),
        "ni": str(d / "top" / "ni.pdb"),
        "near": str(d / "near" / "run.xtc"),
        "near_top": str(d / "near" / "run.pdb"),
        "n": n,
    }


# ----------------------------------------------------------------------------
# Keys
# ----------------------------------------------------------------------------


def test_keys_without_topology_are_unchanged(tmp_path):
    """Recorded from cache_keys before ``topology`` entered the key."""
    p = tmp_path / "a.xyz"
    p.write_text("1\n\nCu 0 0 0\n")
    expected = "ff6f725b03525a8d28b3ff79715674686947ecd1b642caeb482070fb1af94167"
    assert frames_key(p, ":", "extxyz", None) == expected
    assert frames_key(p, ":", "extxyz", None, topology=None) == expected
    assert frames_key(p, "::2", "xtc", {1: "Cu"}) == (
        "cd33a7f2d2346a3034c19ddb4a6f37641f4829181aa83a1ec543d68ef9143529"
    )
    assert file_descriptor_key(p, ":", "extxyz", None, 32, 5.0, None) == (
        expected, "7dcf649ca983f1329bceb20c4898d4655c9b3e2c43955ca9181cdd30f51d5500"
    )


def test_frames_key_depends_on_the_topology_content(md, tmp_path):
    no_top = frames_key(md["xtc"], ":", "xtc", None)
    cu = frames_key(md["xtc"], ":", "xtc", None, md["cu"])
    ni = frames_key(md["xtc"], ":", "xtc", None, md["ni"])
    assert len({no_top, cu, ni}) == 3
    copy = tmp_path / "other_name.pdb"  # the content is keyed, not the path
    shutil.copy(md["cu"], copy)
    assert frames_key(md["xtc"], ":", "xtc", None, copy) == cu
    fcu = file_descriptor_key(md["xtc"], ":", "xtc", None, K, RC, SPECIES, topology=md["cu"])
    fni = file_descriptor_key(md["xtc"], ":", "xtc", None, K, RC, SPECIES, topology=md["ni"])
    assert fcu[0] == cu and fni[0] == ni and fcu[1] != fni[1]


def test_topology_found_next_to_the_file_keys_like_the_explicit_one(md):
    assert topology_path(md["near"]) == md["near_top"]
    assert topology_path(md["near"], None, md["ni"]) == md["ni"]
    assert topology_path(md["cu"]) is None  # a PDB needs no topology
    found = file_descriptor_key(
        md["near"], ":", "xtc", None, K, RC, SPECIES, topology=topology_path(md["near"])
    )
    explicit = file_descriptor_key(
        md["near"], ":", "xtc", None, K, RC, SPECIES, topology=md["near_top"]
    )
    assert found == explicit
    a = Dataset.from_files(md["near"])
    b = Dataset.from_files(md["near"], topology=md["near_top"])
    assert a.file_source() == b.file_source() == FileSpec(md["near"], ":", None, (), md["near_top"])
    assert dataset_key(a, K, RC, SPECIES) == dataset_key(b, K, RC, SPECIES) == explicit


# ----------------------------------------------------------------------------
# Descriptor cache, CLI and dashboard paths
# ----------------------------------------------------------------------------


def _block(x: np.ndarray, block: int) -> np.ndarray:
    """Columns of one block of the Cu,Ni descriptor (0: all atoms, 1: Cu, 2: Ni)."""
    x1, x2 = block_columns(K, len(SPECIES), block)
    return np.hstack([x[:, x1], x[:, x2]])


def test_file_descriptors_cache_tells_topologies_apart(md, tmp_path):
    cache = DescriptorCache(tmp_path / "cache")
    kw = dict(k=K, cutoff=RC, species=list(SPECIES), cache=cache)
    cu = file_descriptors(md["xtc"], topology=md["cu"], **kw)
    assert not cu.from_cache
    ni = file_descriptors(md["xtc"], topology=md["ni"], **kw)
    assert not ni.from_cache and ni.key != cu.key
    assert cu.descriptors.shape == ni.descriptors.shape and cu.descriptors.shape[0] == 3 * md["n"]
    assert not np.array_equal(cu.descriptors, ni.descriptors)
    # same positions, every atom Cu or every atom Ni: the Cu and Ni blocks swap
    np.testing.assert_array_equal(_block(cu.descriptors, 0), _block(ni.descriptors, 0))
    np.testing.assert_array_equal(_block(cu.descriptors, 1), _block(ni.descriptors, 2))
    np.testing.assert_array_equal(_block(cu.descriptors, 2), _block(ni.descriptors, 1))
    assert not np.array_equal(_block(cu.descriptors, 1), _block(cu.descriptors, 2))
    assert list(cu.dataset.frames["elements"]) == ["Cu"] * 3
    assert list(ni.dataset.frames["elements"]) == ["Ni"] * 3
    again = file_descriptors(md["xtc"], topology=md["cu"], **kw)
    assert again.from_cache and again.key == cu.key
    np.testing.assert_array_equal(again.descriptors, cu.descriptors)
    assert again.dataset.file_source().topology == md["cu"]
    assert list(again.dataset.structure(0).get_chemical_symbols()) == ["Cu"] * md["n"]
    # the same values as computing the structures directly
    ref = descriptors(Dataset.from_files(md["xtc"], topology=md["ni"]).structures,
                      k=K, cutoff=RC, species=list(SPECIES))
    np.testing.assert_allclose(ni.descriptors, ref, rtol=0, atol=0)


def test_dataset_path_shares_the_topology_keyed_entry(md, tmp_path):
    cache = DescriptorCache(tmp_path / "cache")
    cu_ds = Dataset.from_files(md["xtc"], topology=md["cu"], lazy=True)
    ni_ds = Dataset.from_files(md["xtc"], topology=md["ni"], lazy=True)
    assert cu_ds.file_source().topology == md["cu"]
    assert ni_ds.file_source().topology == md["ni"]
    assert cu_ds.structure(1).get_chemical_symbols()[0] == "Cu"  # lazy: _iter_spec
    assert ni_ds.structure(1).get_chemical_symbols()[0] == "Ni"
    x_cu = cache.get_or_compute(cu_ds, K, RC, list(SPECIES))
    assert (cache.hits, cache.misses) == (0, 1)
    x_ni = cache.get_or_compute(ni_ds, K, RC, list(SPECIES))
    assert (cache.hits, cache.misses) == (0, 2)
    assert not np.array_equal(x_cu, x_ni)
    x_cu2 = cache.get_or_compute(Dataset.from_files(md["xtc"], topology=md["cu"]),
                                 K, RC, list(SPECIES))
    assert (cache.hits, cache.misses) == (1, 2)
    np.testing.assert_array_equal(x_cu2, x_cu)
    # the CLI path is a hit for the entry the dashboard path wrote, per topology
    hit = file_descriptors(md["xtc"], topology=md["ni"], k=K, cutoff=RC,
                           species=list(SPECIES), cache=cache)
    assert hit.from_cache
    np.testing.assert_array_equal(hit.descriptors, x_ni)


# ----------------------------------------------------------------------------
# Chunk stores
# ----------------------------------------------------------------------------


def test_chunk_store_is_not_resumed_with_another_topology(md, tmp_path):
    files, _ = plan_chunks([md["xtc"], md["near"]], chunk_frames=2, topology=md["ni"])
    assert [f.topology for f in files] == [md["ni"], md["ni"]]
    files, _ = plan_chunks([md["near"]], chunk_frames=2)
    assert files[0].topology == md["near_top"]

    reference = descriptors([bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)], k=K, cutoff=RC)
    store = tmp_path / "store"
    kw = dict(k=K, cutoff=RC, chunk_frames=2)
    run = chunked_delta_entropy(md["xtc"], reference, store, 0.1, topology=md["cu"], **kw)
    assert run.computed == ["000-000000", "000-000001"]
    params = ChunkStore(store).params
    assert len(params["topology"]) == 1 and len(params["topology"][0]) == 64
    with pytest.raises(QuestsError, match=r"holds a run with other parameters \(topology\)"):
        chunked_delta_entropy(md["xtc"], reference, store, 0.1, topology=md["ni"], **kw)
    again = chunked_delta_entropy(md["xtc"], reference, store, 0.1, topology=md["cu"], **kw)
    assert again.computed == [] and again.skipped == ["000-000000", "000-000001"]
    species = ChunkStore(store).atoms()["species"]
    assert set(species) == {"Cu"} and len(species) == 3 * md["n"]


def test_chunk_store_params_without_topology_have_no_topology_entry(tmp_path):
    traj = tmp_path / "t.extxyz"
    from ase.io import write

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    write(traj, [atoms, atoms])
    reference = descriptors([atoms], k=K, cutoff=RC)
    chunked_delta_entropy(str(traj), reference, tmp_path / "s", 0.1, k=K, cutoff=RC,
                          topology=os.devnull)  # ignored: extxyz needs no topology
    assert "topology" not in ChunkStore(tmp_path / "s").params
    assert Path(tmp_path / "s" / "manifest.json").exists()
