"""Dask: dH, frame entropies, overlap and chunk stores on a LocalCluster equal one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.io import write
from conftest import noisy_cu

import quests_core as qc
from quests_core import QuestsError
from quests_core.chunk_store import ChunkStore
from quests_core.chunked import chunked_delta_entropy

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")

from quests_core.chunk_store import read_atoms_dask  # noqa: E402
from quests_core.dask_tools import dask_client  # noqa: E402
from quests_core.distributed import (  # noqa: E402
    dask_delta_entropy,
    dask_frame_entropies,
    dask_overlap_matrix,
)


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def descriptors():
    """Three noisy Cu structures of 108 atoms (rows of one are the test set)."""
    return [qc.descriptors(noisy_cu((3, 3, 3), noise=0.04 + 0.03 * i, seed=i)) for i in range(3)]


@pytest.fixture(scope="module")
def test_and_reference(descriptors):
    y = np.concatenate(descriptors * 3)  # 972 rows: several 256-row kernel blocks
    return y, descriptors[0]


def test_delta_entropy_equals_single_process(client, test_and_reference):
    y, x = test_and_reference
    expected = qc.delta_entropy(y, x, 0.015)
    got = dask_delta_entropy(y, x, 0.015, client=client, chunk_rows=300)  # rounded to 512
    np.testing.assert_array_equal(got, expected)
    hs = [0.01, 0.015, 0.05]
    np.testing.assert_array_equal(
        dask_delta_entropy(y, x, hs, client=client, chunk_rows=256), qc.delta_entropy(y, x, hs)
    )
    y32, x32 = y.astype(np.float32), x.astype(np.float32)
    got32 = dask_delta_entropy(y32, x32, 0.015, client=client, chunk_rows=256)
    np.testing.assert_array_equal(got32, qc.delta_entropy(y32, x32, 0.015))
    assert np.max(np.abs(got32 - expected)) <= 1e-3


def test_delta_entropy_of_a_dask_array(client, test_and_reference):
    y, x = test_and_reference
    lazy = da.from_array(y, chunks=(100, y.shape[1]))
    got = dask_delta_entropy(lazy, x, 0.015, client=client, chunk_rows=512)
    np.testing.assert_array_equal(got, qc.delta_entropy(y, x, 0.015))
    bad = y.copy()
    bad[700, 3] = np.nan
    with pytest.raises(QuestsError, match=r"NaN.*rows 512\.\.971"):
        dask_delta_entropy(da.from_array(bad, chunks=(256, -1)), x, client=client, chunk_rows=512)
    with pytest.raises(QuestsError, match="columns"):
        dask_delta_entropy(lazy[:, :10], x, client=client)


def test_default_local_cluster_and_address(test_and_reference):
    y, x = test_and_reference
    expected = qc.delta_entropy(y[:300], x, 0.015)
    np.testing.assert_array_equal(dask_delta_entropy(y[:300], x, 0.015), expected)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        got = dask_delta_entropy(y[:300], x, 0.015, client=cluster.scheduler_address)
    np.testing.assert_array_equal(got, expected)


def test_dask_client_passes_an_existing_client_through(client):
    with dask_client(client) as c:
        assert c is client
    assert client.status == "running"


def test_frame_entropies_equal_single_process(client, descriptors):
    frames = [d[: 40 + 20 * i] for i, d in enumerate(descriptors)] + [descriptors[1]]
    expected = np.array([qc.entropy(f, 0.015) for f in frames])
    got = dask_frame_entropies(frames, None, 0.015, client=client, frames_per_task=3)
    np.testing.assert_array_equal(got, expected)
    counts = [len(f) for f in frames]
    np.testing.assert_array_equal(
        dask_frame_entropies(np.concatenate(frames), counts, 0.015, client=client), expected
    )
    hs = [0.01, 0.1]
    vec = dask_frame_entropies(frames, None, hs, client=client, frames_per_task=1)
    assert vec.shape == (4, 2)
    np.testing.assert_array_equal(vec, [qc.entropy(f, hs) for f in frames])
    assert np.all(vec >= 0) and np.all(vec <= np.log(counts)[:, None])
    with pytest.raises(QuestsError, match="n_atoms sums to"):
        dask_frame_entropies(np.concatenate(frames), [1, 2], client=client)


def test_overlap_matrix_equals_pairwise_overlap(client, descriptors):
    groups = {"cold": descriptors[0], "warm": descriptors[1], "hot": descriptors[2][:77]}
    matrix = dask_overlap_matrix(groups, 0.015, client=client, chunk_rows=256)
    assert list(matrix.index) == list(matrix.columns) == ["cold", "warm", "hot"]
    for a, ya in groups.items():
        for b, xb in groups.items():
            assert matrix.loc[a, b] == qc.overlap(ya, xb, 0.015)
    # every point covers itself: dH(x | X) <= 0
    np.testing.assert_array_equal(np.diag(matrix.to_numpy()), 1.0)
    as_list = dask_overlap_matrix(list(groups.values()), 0.015, client=client)
    np.testing.assert_array_equal(as_list.to_numpy(), matrix.to_numpy())
    with pytest.raises(QuestsError, match="widths"):
        dask_overlap_matrix([descriptors[0], descriptors[1][:, :5]], client=client)


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory):
    path = tmp_path_factory.mktemp("dask-traj") / "cu.extxyz"
    write(path, [noisy_cu((2, 2, 2), noise=0.03 + 0.02 * i, seed=i) for i in range(6)])
    return str(path)


def test_chunked_store_on_a_cluster_equals_sequential(client, tmp_path, trajectory, descriptors):
    ref = descriptors[0]
    local = chunked_delta_entropy(trajectory, ref, tmp_path / "local", chunk_frames=2)
    remote = chunked_delta_entropy(
        trajectory, ref, tmp_path / "remote", chunk_frames=2, client=client
    )
    assert sorted(remote.computed) == local.computed and remote.complete
    pd.testing.assert_frame_equal(remote.store.atoms(), local.store.atoms())
    pd.testing.assert_frame_equal(remote.store.frames(), local.store.frames())


def test_chunked_on_a_cluster_resumes(client, tmp_path, trajectory, descriptors):
    store = tmp_path / "store"

    def stop(done, total):
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        chunked_delta_entropy(
            trajectory, descriptors[0], store, chunk_frames=2, client=client, progress=stop
        )
    first = ChunkStore(store).chunk_ids
    assert 1 <= len(first) < 3
    address = client.scheduler.address  # a scheduler address works as well as a client
    run = chunked_delta_entropy(trajectory, descriptors[0], store, chunk_frames=2, client=address)
    assert run.skipped == first and run.complete
    assert sorted(run.computed + run.skipped) == ["000-000000", "000-000001", "000-000002"]


def test_read_atoms_dask_reads_finished_chunks_only(tmp_path, trajectory, descriptors):
    store = tmp_path / "store"
    run = chunked_delta_entropy(trajectory, descriptors[0], store, chunk_frames=2)
    # a part file no manifest knows about (a run killed before recording it)
    run.store.atoms().iloc[:5].to_parquet(store / "atoms" / "part-000-000099.parquet")
    ddf = read_atoms_dask(store, columns=["x", "y", "dH"])
    assert ddf.npartitions == 3
    assert list(ddf.columns) == ["x", "y", "dH"]
    pdf = ddf.compute(scheduler="sync")
    np.testing.assert_array_equal(pdf["dH"].to_numpy(), run.store.delta_entropy())
    assert run.store.atoms_dask().npartitions == 3
    with pytest.raises(QuestsError, match="not a chunk store"):
        read_atoms_dask(tmp_path / "nowhere")


def test_datashader_aggregates_the_dask_frame_like_pandas(tmp_path, trajectory, descriptors):
    ds = pytest.importorskip("datashader")
    run = chunked_delta_entropy(trajectory, descriptors[0], tmp_path / "s", chunk_frames=2)
    ddf = read_atoms_dask(run.store, columns=["x", "y", "dH"])
    pdf = run.store.atoms(columns=["x", "y", "dH"])
    canvas = ds.Canvas(plot_width=16, plot_height=16, x_range=(-1, 8), y_range=(-1, 8))
    lazy = canvas.points(ddf, "x", "y", agg=ds.mean("dH")).compute()
    eager = canvas.points(pdf, "x", "y", agg=ds.mean("dH"))
    np.testing.assert_allclose(lazy.values, eager.values, rtol=1e-12, equal_nan=True)
    # every atom lands in a pixel of the canvas: the non-empty pixels hold the mean of their atoms
    inside = np.isfinite(lazy.values)
    assert inside.sum() > 10
    col = np.clip(((pdf["x"] + 1) / 9 * 16).astype(int), 0, 15)
    row = np.clip(((pdf["y"] + 1) / 9 * 16).astype(int), 0, 15)
    first = pdf[(row == row.iloc[0]) & (col == col.iloc[0])]["dH"].mean()
    assert lazy.values[row.iloc[0], col.iloc[0]] == pytest.approx(first, rel=1e-12)


SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.mark.skipif(not (SAMPLE / "cu_melt.extxyz").exists(), reason="sample data missing")
def test_sample_data_chunked_dask_and_in_memory_agree(client, tmp_path):
    """Real Cu MD: liquid frames against a 400 K solid frame, computed three ways."""
    from ase.io import read

    melt = str(SAMPLE / "cu_melt.extxyz")
    ref = qc.descriptors(read(SAMPLE / "cu_solid_400K.extxyz", 0))
    x = qc.descriptors(read(melt, ":"))
    in_memory = qc.delta_entropy(x, ref, 0.015)
    np.testing.assert_array_equal(dask_delta_entropy(x, ref, 0.015, client=client), in_memory)
    local = chunked_delta_entropy(melt, ref, tmp_path / "local", chunk_frames=3)
    np.testing.assert_allclose(local.store.delta_entropy(), in_memory, rtol=1e-13, atol=1e-13)
    remote = chunked_delta_entropy(melt, ref, tmp_path / "remote", chunk_frames=3, client=client)
    pd.testing.assert_frame_equal(remote.store.atoms(), local.store.atoms())
    # a liquid is poorly covered by one solid frame: most environments are novel
    assert local.store.frames()["frac_novel"].min() > 0.5


def test_overlap_matrix_is_the_overlaps_module_matrix(client, descriptors):
    """One definition of the overlap matrix: the Dask executor gives overlaps.overlap_matrix
    (unsampled sets) entry for entry, as an OverlapMatrix or its DataFrame."""
    from quests_core.overlaps import OverlapMatrix, overlap_matrix

    groups = {"cold": descriptors[0], "hot": descriptors[2][:77], "warm": descriptors[1][5:]}
    h = 0.02
    expected = overlap_matrix(groups, h)
    got = dask_overlap_matrix(groups, h, client=client, chunk_rows=256, as_frame=False)
    assert isinstance(got, OverlapMatrix)
    assert got.names == expected.names == ["cold", "hot", "warm"]
    assert got.sizes == expected.sizes == {"cold": 108, "hot": 77, "warm": 103}
    np.testing.assert_array_equal(got.bandwidths, expected.bandwidths)
    np.testing.assert_array_equal(got.matrix, expected.matrix)
    off = expected.matrix[~np.eye(3, dtype=bool)]
    assert np.any((off > 0) & (off < 1)), expected.matrix  # not a trivial all-0/1 case
    pd.testing.assert_frame_equal(dask_overlap_matrix(groups, h, client=client),
                                  expected.to_frame())
